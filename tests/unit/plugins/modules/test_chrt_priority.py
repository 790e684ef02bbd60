# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import gzip
import json
import os

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import sched, state
from ansible_collections.medai.llmhost.plugins.modules import chrt_priority
from ansible_collections.medai.llmhost.tests.unit.plugins.modules.sched_fakes import (
    FakeSched, FakeSystemctl, ModuleRunner, make_proc)

UNIT = 'vllm.service'
CG = '/system.slice/vllm.service'
DROPIN = '/etc/systemd/system/vllm.service.d/50-medai-llmhost-sched.conf'
ENGINE = {101: 'python3', 102: 'EngineCore', 103: 'tokenizer-0', 104: 'tokenizer-1'}


@pytest.fixture
def env(fake, monkeypatch, capsys):
    fs = FakeSched()
    monkeypatch.setattr(sched, 'SYS', fs)
    monkeypatch.setattr(sched, 'own_lineage', lambda: {1})
    fake.file('/sys/devices/system/cpu/online', '0-7')
    fake.file('/proc/sys/kernel/sched_rt_runtime_us', '950000')
    make_proc(fake, fs, 101, 'python3', ['/opt/vllm/bin/python3', '-m', 'vllm.entrypoints.openai.api_server'],
              threads=ENGINE, cgroup=CG)
    make_proc(fake, fs, 200, 'bash', ['bash'], cgroup='/user.slice/user-1000.slice/session-1.scope')
    fake.file('/sys/fs/cgroup/system.slice/vllm.service/cgroup.procs', '101')
    sc = FakeSystemctl(units={UNIT: {'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': '101',
                                     'ControlGroup': CG}})
    run = ModuleRunner(monkeypatch, capsys, sc)

    class Env(object):
        pass
    e = Env()
    e.fake, e.sched, e.systemctl, e.run = fake, fs, sc, run
    e.mod = lambda args, **kw: run(chrt_priority, args, **kw)
    return e


def fifo50(**kw):
    args = dict(unit='vllm', policy='fifo', priority=50, rt_allowlist=['vllm.service'])
    args.update(kw)
    return dict((k, v) for k, v in args.items() if v is not None)


def test_unit_all_threads_fifo(env):
    res = env.mod(fifo50())
    assert res['changed'] is True
    assert res['unit'] == UNIT and res['pids'] == [101] and res['selection'] == 'unit:vllm.service'
    assert [(t['tid'], t['comm'], t['changed']) for t in res['threads']] == [
        (101, 'python3', True), (102, 'EngineCore', True), (103, 'tokenizer-0', True), (104, 'tokenizer-1', True)]
    t = res['threads'][1]
    assert t['before'] == {'policy': 'other', 'priority': 0, 'cpus': '0-7'}
    assert t['after'] == {'policy': 'fifo', 'priority': 50, 'cpus': '0-7'}
    assert all(env.sched.state(tid) == ('fifo', 50) for tid in ENGINE)
    assert env.sched.state(200) == ('other', 0)
    assert ['show', '-p', 'MainPID', '-p', 'ControlGroup', '-p', 'LoadState', '-p', 'ActiveState', UNIT] \
        in env.systemctl.commands
    assert env.systemctl.mutating() == []   # no persist: no daemon-reload
    assert res['dropin'] == DROPIN and res['dropin_changed'] is False
    assert not os.path.exists(env.fake.path(DROPIN))


def test_thread_regex_selects_only_engine_loop(env):
    res = env.mod(fifo50(thread_regex='^EngineCore$', policy='rr', priority=20))
    assert [t['tid'] for t in res['threads']] == [102]
    assert env.sched.state(102) == ('rr', 20)
    assert [env.sched.state(t) for t in (101, 103, 104)] == [('other', 0)] * 3
    assert env.sched.calls == [('setscheduler', 102, sched.SCHED_RR, 20)]


def test_idempotent(env):
    env.mod(fifo50(cpus='2,3'))
    calls = len(env.sched.calls)
    res = env.mod(fifo50(cpus='2-3'))
    assert res['changed'] is False
    assert all(not t['changed'] for t in res['threads'])
    assert len(env.sched.calls) == calls
    assert res['threads'][0]['after'] == {'policy': 'fifo', 'priority': 50, 'cpus': '2-3'}


def test_check_mode_no_syscalls_no_files(env):
    res = env.mod(fifo50(persist=True, cpus='2-3'), check=True, diff=True)
    assert res['changed'] is True and res['dropin_changed'] is True
    assert res['threads'][0]['after'] == {'policy': 'fifo', 'priority': 50, 'cpus': '2-3'}
    assert env.sched.calls == []
    assert env.systemctl.mutating() == []
    assert not os.path.exists(env.fake.path(DROPIN))
    assert not os.path.exists(env.fake.path('/var/lib/medai-llmhost'))
    assert 'pid 101 tid 102 (EngineCore): other 0 cpus 0-7' in res['diff'][0]['before']
    assert 'pid 101 tid 102 (EngineCore): fifo 50 cpus 2-3' in res['diff'][0]['after']
    assert 'CPUSchedulingPolicy=fifo' in res['diff'][1]['after']


def test_persist_dropin_content_and_daemon_reload(env):
    res = env.mod(fifo50(persist=True, cpus='2-3'), diff=True)
    assert res['dropin_changed'] is True
    text = env.fake.read(DROPIN)
    assert text.splitlines()[1:] == ['[Service]', 'CPUSchedulingPolicy=fifo', 'CPUSchedulingPriority=50',
                                     'CPUAffinity=2-3']
    assert text.startswith('# Managed by Ansible (medai.llmhost)')
    assert env.systemctl.mutating() == [['daemon-reload']]
    assert env.sched.threads[103]['cpus'] == {2, 3}
    res2 = env.mod(fifo50(persist=True, cpus='2-3'))
    assert res2['changed'] is False and env.systemctl.mutating() == [['daemon-reload']]


def test_persist_other_policy_has_no_priority_line(env):
    env.mod(dict(unit='vllm', policy='batch', persist=True))
    assert env.fake.read(DROPIN).splitlines()[1:] == ['[Service]', 'CPUSchedulingPolicy=batch']
    assert env.sched.state(104) == ('batch', 0)


def test_persist_refused_with_thread_regex(env):
    res = env.mod(fifo50(persist=True, thread_regex='Engine'))
    assert res['failed'] and 'not allowed with thread_regex' in res['msg']
    assert env.sched.calls == []


@pytest.mark.parametrize('args,msg', [
    (dict(priority=0), 'priority 0 is invalid for policy=fifo: real-time priorities are 1..99'),
    (dict(priority=100), 'priority 100 is invalid for policy=fifo: real-time priorities are 1..99'),
    (dict(priority=None), 'priority is required with policy=fifo (1..99)'),
    (dict(policy='other', priority=10), 'priority 10 is invalid for policy=other: only fifo and rr take a priority'),
    (dict(policy=None, priority=None), 'state=present needs policy and/or cpus'),
    (dict(cpus='6-9'), 'cpus'),   # the wording of cpulist errors is cpus.py's
    (dict(cpus='3-1'), '3-1'),
    (dict(unit=None, pid=101, persist=True), 'persist=true needs unit'),
])
def test_validation_refusals(env, args, msg):
    res = env.mod(fifo50(**args))
    assert res['failed'] is True
    assert msg in res['msg']
    assert '\n' not in res['msg']
    assert env.sched.calls == []


def test_rt_refused_outside_allowlist(env):
    res = env.mod(fifo50(rt_allowlist=['nginx', 'haproxy.service']))
    assert res['failed'] and res['msg'] == "refusing SCHED_FIFO: not on rt_allowlist: 101 ('python3')"
    assert env.sched.calls == []


def test_nonempty_allowlist_not_overridden_by_force(env):
    res = env.mod(fifo50(rt_allowlist=['nginx'], force=True))
    assert res['failed'] and 'not on rt_allowlist' in res['msg']


def test_allowlist_matches_process_comm_and_glob(env):
    res = env.mod(dict(cmdline_regex=r'vllm\.entrypoints', policy='rr', priority=5, rt_allowlist=['py*']))
    assert res['changed'] and res['pids'] == [101] and res['selection'] == r'cmd:vllm\.entrypoints'
    assert env.sched.state(101) == ('rr', 5)


def test_empty_allowlist_refuses_rt_unless_force(env):
    res = env.mod(fifo50(rt_allowlist=[]))
    assert res['failed'] and 'rt_allowlist is empty' in res['msg']
    res = env.mod(fifo50(rt_allowlist=[], force=True))
    assert res['changed'] and any('empty rt_allowlist' in w for w in res['warnings'])
    assert env.sched.state(101) == ('fifo', 50)


def test_non_rt_policy_needs_no_allowlist(env):
    res = env.mod(dict(pid=200, policy='idle'))
    assert res['changed'] and env.sched.state(200) == ('idle', 0)


def test_rt_throttling_disabled_refused_without_force(env):
    env.fake.file('/proc/sys/kernel/sched_rt_runtime_us', '-1')
    res = env.mod(fifo50())
    assert res['failed']
    assert res['msg'].startswith('refusing SCHED_FIFO: kernel.sched_rt_runtime_us is -1 (RT throttling disabled)')
    assert env.sched.calls == []
    res = env.mod(fifo50(force=True))
    assert res['changed'] and res['rt_runtime_us'] == -1
    assert any('RT throttling is disabled' in w for w in res['warnings'])


def test_unit_not_found(env):
    res = env.mod(fifo50(unit='nosuch'))
    assert res['failed']
    assert res['msg'].startswith('systemd unit nosuch.service not found (LoadState=not-found)')


def test_no_process_matched(env):
    res = env.mod(dict(cmdline_regex='llama-server', policy='batch'))
    assert res['failed'] and res['msg'] == "no process matched cmd:'llama-server'"
    env.systemctl.units['idle.service'] = {'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0',
                                           'ControlGroup': ''}
    res = env.mod(dict(unit='idle', policy='batch'))
    assert res['failed'] and res['msg'] == 'no process matched unit:idle.service (unit is inactive)'


def test_inactive_unit_with_persist_writes_dropin_only(env):
    env.systemctl.units['idle.service'] = {'LoadState': 'loaded', 'ActiveState': 'inactive', 'MainPID': '0',
                                           'ControlGroup': ''}
    res = env.mod(dict(unit='idle', policy='batch', persist=True))
    assert res['changed'] and res['threads'] == [] and res['dropin_changed']
    assert 'CPUSchedulingPolicy=batch' in env.fake.read('/etc/systemd/system/idle.service.d/50-medai-llmhost-sched.conf')


def test_thread_regex_matching_nothing(env):
    res = env.mod(fifo50(thread_regex='^nosuch'))
    assert res['failed'] and "no thread of pid(s) 101 has a name matching thread_regex '^nosuch'" == res['msg']


def test_own_lineage_never_selected(env, monkeypatch):
    monkeypatch.setattr(sched, 'own_lineage', lambda: {101})
    res = env.mod(dict(cmdline_regex='vllm', policy='batch'))
    assert res['failed'] and res['msg'] == "no process matched cmd:'vllm'"


def test_cgroup_subtree_pids_selected(env):
    make_proc(env.fake, env.sched, 150, 'worker', ['worker'], cgroup=CG + '/workers')
    env.fake.file('/sys/fs/cgroup/system.slice/vllm.service/workers/cgroup.procs', '150')
    res = env.mod(dict(unit='vllm', policy='batch'))
    assert res['pids'] == [101, 150]


def _rt_group_sched(env, rt_runtime=None, via='config.gz'):
    env.sched.eperm_rt.update(ENGINE)
    cfg = b'CONFIG_CGROUP_SCHED=y\nCONFIG_FAIR_GROUP_SCHED=y\nCONFIG_RT_GROUP_SCHED=y\n'
    if via == 'config.gz':
        os.makedirs(env.fake.path('/proc'), exist_ok=True)
        with gzip.open(env.fake.path('/proc/config.gz'), 'wb') as f:
            f.write(cfg)
    else:
        env.fake.file('/boot/config-6.1.0-28-amd64', cfg.decode())
    if rt_runtime is not None:
        env.fake.file('/sys/fs/cgroup/system.slice/vllm.service/cpu.rt_runtime_us', str(rt_runtime))


def test_eperm_explains_rt_group_sched(env):
    _rt_group_sched(env, rt_runtime=0)
    res = env.mod(fifo50())
    assert res['failed']
    assert res['msg'].startswith(
        'SCHED_FIFO refused with EPERM for pid 101: kernel has CONFIG_RT_GROUP_SCHED=y and cgroup '
        '/system.slice/vllm.service has no RT budget (cpu.rt_runtime_us=0)')
    assert '\n' not in res['msg'] and 'Traceback' not in json.dumps(res)
    assert all(env.sched.state(t) == ('other', 0) for t in ENGINE)


def test_eperm_rt_group_sched_from_boot_config_without_file(env):
    _rt_group_sched(env, via='boot')
    res = env.mod(fifo50())
    assert 'CONFIG_RT_GROUP_SCHED=y and cgroup /system.slice/vllm.service has no RT budget' in res['msg']
    assert 'cgroup v2 has no file to raise it' in res['msg']


def test_eperm_without_rt_group_sched(env):
    env.sched.eperm_rt.add(101)
    res = env.mod(fifo50())
    assert res['failed'] and res['msg'].startswith('SCHED_FIFO refused with EPERM for pid 101: run the module as root')


def test_failure_midway_rolls_back(env):
    env.sched.eperm_rt.add(103)
    res = env.mod(fifo50())
    assert res['failed'] and 'EPERM' in res['msg']
    assert all(env.sched.state(t) == ('other', 0) for t in ENGINE)


def test_originals_journal_and_absent_restores(env):
    env.sched.threads[102]['policy'] = sched.SCHED_BATCH
    env.mod(fifo50(persist=True, cpus='4-7'))
    rec = state.get_original('sched', 'unit:vllm.service')
    assert rec['original']['threads']['102'] == {'pid': 101, 'comm': 'EngineCore', 'starttime': 1102,
                                                 'policy': 'batch', 'priority': 0, 'cpus': '0-7'}
    assert rec['original']['applied'] == {'policy': 'fifo', 'priority': 50, 'cpus': '4-7'}
    jr = state.read_journal()
    assert [j['setting'] for j in jr] == ['sched:unit:vllm.service:tid:%d' % t for t in sorted(ENGINE)] + \
        ['dropin:' + DROPIN]
    # a second run with other values keeps the first-seen originals
    env.mod(fifo50(priority=60))
    assert state.get_original('sched', 'unit:vllm.service')['original']['threads']['102']['policy'] == 'batch'
    # thread 104 exited; 105 appeared later (inherits FIFO)
    del env.sched.threads[104]
    os.unlink(env.fake.path('/proc/101/task/104/stat'))
    os.unlink(env.fake.path('/proc/101/task/104/comm'))
    env.fake.file('/proc/101/task/105/comm', 'tokenizer-2')
    env.fake.file('/proc/101/task/105/stat', '105 (tokenizer-2) S 1 0')
    env.sched.add(105, 'fifo', 60)
    chk = env.mod(dict(unit='vllm', state='absent'), check=True)
    assert chk['changed'] and chk['restored'] == 3 and env.sched.state(102) == ('fifo', 60)
    res = env.mod(dict(unit='vllm', state='absent'), diff=True)
    assert res['changed'] is True and res['restored'] == 3 and res['dropin_changed'] is True
    assert env.sched.state(101) == ('other', 0) and env.sched.state(102) == ('batch', 0)
    assert env.sched.threads[101]['cpus'] == set(range(8))
    assert env.sched.state(105) == ('fifo', 60)
    assert any('created after the originals were recorded' in w and '105' in w for w in res['warnings'])
    assert not os.path.exists(env.fake.path(DROPIN))
    assert env.systemctl.mutating() == [['daemon-reload'], ['daemon-reload']]
    assert state.get_original('sched', 'unit:vllm.service') is None
    again = env.mod(dict(unit='vllm', state='absent'))
    assert again['changed'] is False


def test_absent_skips_reused_tid(env):
    env.mod(dict(pid=200, policy='batch'))
    # pid 200 exits, a new process reuses the pid with another start time
    env.fake.file('/proc/200/task/200/stat', '200 (bash) S 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 99999')
    res = env.mod(dict(pid=200, state='absent'))
    assert res['changed'] is False and env.sched.state(200) == ('batch', 0)


def test_pidfile_selection(env):
    env.fake.file('/run/vllm.pid', '101\n')
    res = env.mod(dict(pidfile='/run/vllm.pid', policy='batch', thread_regex='tokenizer'))
    assert res['selection'] == 'pidfile:/run/vllm.pid'
    assert [t['tid'] for t in res['threads']] == [103, 104]


def test_affinity_rejected_rolls_back_policy(env):
    env.sched.allowed_cpus[102] = {0, 1}   # thread 102 sits in a cpuset of CPUs 0-1
    res = env.mod(fifo50(cpus='4-5'))
    assert res['failed'] and res['msg'].startswith('the kernel rejected the change for thread 102 of pid 101 (EINVAL)')
    assert all(env.sched.state(t) == ('other', 0) for t in ENGINE)
    assert env.sched.threads[101]['cpus'] == set(range(8))


def test_affinity_partly_effective_fails_read_back(env):
    env.sched.allowed_cpus[103] = {0, 1, 4}
    res = env.mod(dict(unit='vllm', cpus='4-5'))
    assert res['failed']
    assert res['msg'].startswith('thread 103 of pid 101 reads back other 0 cpus 4 after setting other 0 cpus 4-5')


# ---------------------------------------------------------------- issue 14: refusals change nothing

STATE_DIR = '/var/lib/medai-llmhost'


def assert_refused(env, res, start, asked_systemd=True):
    """Refused with one bounded line starting with `start`; no syscall, file, record or journal line."""
    assert res['failed'] is True, res
    assert res['msg'].startswith(start), res['msg']
    assert '\n' not in res['msg'] and len(res['msg']) <= 300
    assert env.sched.calls == []
    assert env.systemctl.mutating() == []
    if not asked_systemd:
        assert env.systemctl.commands == []
    assert not os.path.exists(env.fake.path(STATE_DIR))
    assert not os.path.exists(env.fake.path('/etc/systemd/system'))


def add_service(env, unit, pid, comm, threads=None):
    cg = '/system.slice/%s' % unit
    make_proc(env.fake, env.sched, pid, comm, ['/usr/sbin/' + comm], threads=threads, cgroup=cg)
    env.fake.file('/sys/fs/cgroup%s/cgroup.procs' % cg, str(pid))
    env.systemctl.units[unit] = {'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': str(pid),
                                 'ControlGroup': cg}


@pytest.mark.parametrize('unit', [
    'systemd-journald', 'sshd', 'ssh', 'rsyslog', 'syslog-ng', 'fluent-bit', 'restic-backup.service', 'borgmatic',
    'prometheus-node-exporter', 'zabbix-agent2', 'telegraf', 'systemd-resolved', 'cron', 'dbus', 'nvidia-dcgm',
    'backup.service', 'Telegraf.service'])
def test_rt_denylist_refuses_unit_before_asking_systemd(env, unit):
    res = env.mod(fifo50(unit=unit, rt_allowlist=['*']))
    assert_refused(env, res, "refusing SCHED_FIFO for unit '%s" % unit.split('.')[0], asked_systemd=False)
    assert 'on the RT deny-list' in res['msg'] and res['msg'].endswith('(force=true overrides)')
    assert res['error_kind'] == 'denied'


@pytest.mark.parametrize('policy', ['fifo', 'rr'])
def test_rt_denylist_refuses_process_by_comm_and_by_its_unit(env, policy):
    add_service(env, 'rsyslog.service', 300, 'rsyslogd')
    make_proc(env.fake, env.sched, 310, 'python3', ['python3', 'dump.py'], cgroup='/system.slice/nightly-job.service')
    make_proc(env.fake, env.sched, 320, 'worker', ['worker'], cgroup='/system.slice/backup.service/workers')
    prio = dict(policy=policy, priority=10, rt_allowlist=['*'], unit=None)
    res = env.mod(fifo50(pid=300, **prio))
    assert_refused(env, res, "refusing SCHED_%s for pid 300 ('rsyslogd'): on the RT deny-list ('*syslog*')"
                   % policy.upper())
    res = env.mod(fifo50(pid=320, **prio))
    assert_refused(env, res, "refusing SCHED_%s for pid 320 ('backup.service'): on the RT deny-list ('*backup*')"
                   % policy.upper())
    res = env.mod(fifo50(cmdline_regex='dump', **prio))   # neither comm nor unit is deny-listed (cmdline is not)
    assert res['changed'] and res['pids'] == [310]


def test_rt_denylist_cmdline_selection_refuses_all_or_nothing(env):
    add_service(env, 'fluent-bit.service', 300, 'fluent-bit')
    with open(env.fake.path('/proc/300/cmdline'), 'wb') as f:
        f.write(b'/opt/fluent-bit/bin/fluent-bit\0-c\0/etc/vllm-logs.conf\0')
    res = env.mod(dict(cmdline_regex='vllm', policy='rr', priority=5, rt_allowlist=['*']))
    assert_refused(env, res, "refusing SCHED_RR for pid 300 ('fluent-bit')")
    assert res['details']['rt_denied'] == [{'subject': "pid 300 ('fluent-bit')", 'entry': 'fluent-bit*'}]
    assert env.sched.state(101) == ('other', 0)


def test_rt_denylist_only_for_rt_policies(env):
    add_service(env, 'rsyslog.service', 300, 'rsyslogd')
    res = env.mod(dict(unit='rsyslog', policy='batch', cpus='0-1'))
    assert res['changed'] and env.sched.state(300) == ('batch', 0)


def test_rt_denylist_force_overrides_with_warning(env):
    add_service(env, 'rsyslog.service', 300, 'rsyslogd')
    res = env.mod(dict(unit='rsyslog', policy='rr', priority=5, rt_allowlist=['rsyslog'], force=True))
    assert res['changed'] and env.sched.state(300) == ('rr', 5)
    warned = [w for w in res['warnings'] if 'RT deny-list' in w]
    assert len(warned) == 3 and all('overridden by force=true' in w for w in warned)   # unit, entry, process


def test_rt_allowlist_entry_on_denylist_refused(env):
    res = env.mod(fifo50(rt_allowlist=['vllm.service', 'backup.service']))
    assert_refused(env, res, "rt_allowlist entry 'backup.service' is on the RT deny-list ('*backup*')",
                   asked_systemd=False)


def test_rt_denylist_extra_entries_and_returned_list(env):
    res = env.mod(fifo50(rt_denylist=['vllm*']))
    assert_refused(env, res, "refusing SCHED_FIFO for unit 'vllm.service': on the RT deny-list ('vllm*')",
                   asked_systemd=False)
    res = env.mod(dict(unit='vllm', policy='batch', rt_denylist=['vllm*', '*journal*']))
    assert res['rt_denylist'] == list(sched.RT_DENYLIST) + ['vllm*']


def test_affinity_outside_cpuset_leaves_no_record(env):
    env.sched.allowed_cpus[102] = {0, 1}   # EINVAL: CPUs outside the thread's cpuset
    res = env.mod(fifo50(cpus='4-5', persist=True))
    assert res['failed'] and 'EINVAL' in res['msg']
    assert all(env.sched.state(t) == ('other', 0) for t in ENGINE)
    assert all(env.sched.threads[t]['cpus'] == set(range(8)) for t in (101, 103, 104))
    assert not os.path.exists(env.fake.path(STATE_DIR))
    assert not os.path.exists(env.fake.path(DROPIN)) and env.systemctl.mutating() == []


def test_eperm_rt_group_sched_leaves_no_record(env):
    _rt_group_sched(env, rt_runtime=0)
    res = env.mod(fifo50())
    assert res['failed'] and 'EPERM' in res['msg'] and len(res['msg']) <= 300
    assert res['msg'].endswith('or a kernel without CONFIG_RT_GROUP_SCHED')   # the hint is not cut off
    assert not os.path.exists(env.fake.path(STATE_DIR))


def test_refusal_keeps_earlier_record_unchanged(env):
    env.mod(fifo50(thread_regex='^EngineCore$'))
    before = env.fake.read(STATE_DIR + '/originals.json')
    journal = state.read_journal()
    env.sched.allowed_cpus[103] = {0}
    res = env.mod(fifo50(thread_regex='^tokenizer', cpus='4'))
    assert res['failed']
    assert env.fake.read(STATE_DIR + '/originals.json') == before and state.read_journal() == journal
    assert env.sched.state(103) == ('other', 0) and env.sched.state(102) == ('fifo', 50)


def test_daemon_reload_failure_sets_back_and_records_nothing(env):
    env.systemctl.on_command = lambda args: (1, '', 'Failed to reload daemon: Access denied')
    res = env.mod(fifo50(persist=True))
    assert res['failed'] and res['msg'].startswith('systemctl daemon-reload failed (rc=1)')
    assert all(env.sched.state(t) == ('other', 0) for t in ENGINE)
    assert not os.path.exists(env.fake.path(DROPIN))
    assert not os.path.exists(env.fake.path(STATE_DIR))


def test_changed_threads_only_are_recorded(env):
    env.sched.threads[103]['policy'] = sched.SCHED_FIFO
    env.sched.threads[103]['priority'] = 50
    env.mod(fifo50())
    rec = state.get_original('sched', 'unit:vllm.service')['original']
    assert sorted(rec['threads']) == ['101', '102', '104']
    assert [j['setting'] for j in state.read_journal()] == ['sched:unit:vllm.service:tid:%d' % t for t in (101, 102, 104)]


BIG = 'x' * 10240


@pytest.mark.parametrize('unit,why', [
    ('a/b', "only letters"),
    ('../../etc/passwd', "only letters"),
    ('foo..service', "'..' and a leading '.'"),
    ('.service', "'..' and a leading '.'"),
    ('vllm\nExecStart=/bin/sh', 'only letters'),
    ('vllm service', 'only letters'),
    ('x' * 300, 'longer than 255'),
    ('x' * 250, 'longer than 255'),   # 255 with '.service' added
    ('getty@.service', 'a template unit has no processes'),
    ('', 'unit must be a systemd unit name'),
])
@pytest.mark.parametrize('state_', ['present', 'absent'])
def test_unit_name_validated_first(env, unit, why, state_):
    res = env.mod(dict(unit=unit, policy='batch', state=state_))
    assert_refused(env, res, 'unit', asked_systemd=False)
    assert why in res['msg']
    assert BIG not in res['msg']


@pytest.mark.parametrize('unit,normal', [
    ('vllm', 'vllm.service'), ('vllm.service', 'vllm.service'), ('user@1000.service', 'user@1000.service'),
    ('llminference.slice', 'llminference.slice'), ('session-1.scope', 'session-1.scope'),
    ('model.v2', 'model.v2.service'), ('sys-devices-x2dcpu.device', 'sys-devices-x2dcpu.device'),
    ('x' * 247, 'x' * 247 + '.service')])
def test_unit_names_systemd_accepts(unit, normal):
    assert sched.normalize_unit(unit) == normal


@pytest.mark.parametrize('args,start', [
    (dict(thread_regex='(EngineCore'), "thread_regex '(EngineCore' is not a valid regular expression: missing ),"),
    (dict(unit=None, cmdline_regex='[vllm'), "cmdline_regex '[vllm' is not a valid regular expression:"),
    (dict(thread_regex='(' + BIG), "thread_regex '(xxxxxxxx"),
    (dict(unit=None, cmdline_regex=''), 'cmdline_regex is empty: it would select every process'),
    (dict(unit=None, cmdline_regex='   '), 'cmdline_regex is empty'),
    (dict(unit=None, pidfile='run/vllm.pid'), "pidfile 'run/vllm.pid' must be an absolute path"),
    (dict(rt_allowlist=['vllm.service', BIG]), "rt_allowlist entry 'xxxxxxxx"),
    (dict(rt_allowlist=['vllm\n.service']), "rt_allowlist entry 'vllm\\n.service' is invalid"),
    (dict(rt_allowlist=['']), "rt_allowlist entry '' is invalid"),
    (dict(rt_denylist=['*\x1b[2J*']), "rt_denylist entry '*\\x1b[2J*' is invalid"),
    (dict(cpus=BIG), 'invalid cpus'),
    (dict(policy='other', priority=10 ** 12), 'priority 1000000000000 is invalid for policy=other'),
])
def test_bad_input_one_bounded_line_nothing_asked(env, args, start):
    res = env.mod(fifo50(**args))
    assert_refused(env, res, start, asked_systemd=False)
    assert BIG not in res['msg']


def test_big_values_in_runtime_messages_are_bounded(env):
    res = env.mod(dict(cmdline_regex='nosuch' + BIG, policy='batch'))
    assert_refused(env, res, "no process matched cmd:'nosuchxxx")
    assert '...(10246 chars)' in res['msg']
    res = env.mod(fifo50(thread_regex='^nosuch\n' + BIG))
    assert_refused(env, res, "no thread of pid(s) 101 has a name matching thread_regex '^nosuch\\nxxx")
    env.fake.file('/run/x.pid', 'garbage\n' + BIG)
    res = env.mod(dict(pidfile='/run/x.pid', policy='batch'))
    assert_refused(env, res, "pidfile '/run/x.pid' does not hold a pid ('garbage\\nxxx")
    res = env.mod(dict(pidfile='/run/none.pid', policy='batch'))
    assert_refused(env, res, "pidfile '/run/none.pid' does not exist")


def test_cpus_with_offline_hole_shown_bounded(env):
    env.fake.file('/sys/devices/system/cpu/online', '0-3,6-7')
    res = env.mod(fifo50(cpus='4'))
    assert_refused(env, res, '', asked_systemd=False)
    assert '4' in res['msg']


# ---------------------------------------------------------------- issue 14: state=absent always completes

def refuse(env, tid, call, err, then=None):
    """The kernel refuses `call` ('setscheduler' or 'setaffinity') for `tid` with errno `err`."""
    real = getattr(env.sched, call)

    def fake_call(t, *args):
        if t == tid:
            env.sched.calls.append((call + ' refused', t))
            if then:
                then()
            raise OSError(err, os.strerror(err))
        return real(t, *args)
    setattr(env.sched, call, fake_call)


def test_absent_restores_every_thread_it_can_and_keeps_only_the_rest(env):
    env.mod(fifo50(persist=True, cpus='4-7'))
    refuse(env, 103, 'setscheduler', 1)                    # EPERM
    env.sched.allowed_cpus[104] = set()                    # its cpuset has none of the recorded CPUs: EINVAL

    def exit_102():
        del env.sched.threads[102]
    refuse(env, 102, 'setscheduler', 3, then=exit_102)     # ESRCH: exited between read and write
    journal = len(state.read_journal())
    res = env.mod(dict(unit='vllm', state='absent'))
    assert res['failed'] is True and res['error_kind'] == 'rejected'
    assert '\n' not in res['msg'] and len(res['msg']) <= 300
    assert res['msg'].startswith('2 recorded thread(s) of unit:vllm.service still exist and could not be restored '
                                 '(tids 103, 104): SCHED_OTHER refused with EPERM for pid 101')
    # the others were restored, not set back: 101 fully, 104's policy (its affinity is what failed)
    assert env.sched.state(101) == ('other', 0) and env.sched.threads[101]['cpus'] == set(range(8))
    assert env.sched.state(103) == ('fifo', 50)
    assert env.sched.state(104) == ('other', 0) and env.sched.threads[104]['cpus'] == {4, 5, 6, 7}
    assert res['restored'] == 1 and res['changed'] is True and res['dropin_changed'] is True
    assert [(t['tid'], t['exists']) for t in res['not_restored']] == [(103, True), (104, True)]
    assert 'EINVAL' in res['not_restored'][1]['error']
    assert [w for w in res['warnings'] if 'could not be restored' in w] == [
        w for w in res['warnings'] if w.startswith('2 of 4 thread(s) of unit:vllm.service could not be restored '
                                                   '(tids 103, 104); their record is kept for the next state=absent')]
    assert all('\n' not in w and len(w) <= 300 for w in res['warnings'])
    # the drop-in went all the same; the journal has what was restored; the record only what was not
    assert not os.path.exists(env.fake.path(DROPIN))
    assert [(j['setting'], j['action']) for j in state.read_journal()[journal:]] == [
        ('sched:unit:vllm.service:tid:101', 'restore'), ('sched:unit:vllm.service:tid:104', 'partly restored'),
        ('dropin:' + DROPIN, 'remove')]
    rec = state.get_original('sched', 'unit:vllm.service')
    assert sorted(rec['original']['threads']) == ['103', '104']
    assert rec['original']['threads']['104']['cpus'] == '0-7'
    assert rec['extra']['first_recorded_at']
    # once the kernel lets it, the next state=absent finishes exactly those
    env.sched.setscheduler = FakeSched.setscheduler.__get__(env.sched)
    env.sched.allowed_cpus.pop(104)
    again = env.mod(dict(unit='vllm', state='absent'))
    assert not again.get('failed') and again['restored'] == 2 and again['not_restored'] == []
    assert [t['tid'] for t in again['threads']] == [103, 104]
    assert env.sched.state(103) == ('other', 0) and env.sched.threads[104]['cpus'] == set(range(8))
    assert state.get_original('sched', 'unit:vllm.service') is None


def test_absent_thread_refused_then_gone_is_forgotten(env):
    """A refused thread that no longer exists (its tid now another thread's) is warned about, not failed on."""
    env.mod(fifo50())

    def reuse_103():
        env.fake.file('/proc/101/task/103/stat', '103 (tokenizer-0) S 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 99999')
    refuse(env, 103, 'setscheduler', 22, then=reuse_103)  # EINVAL
    res = env.mod(dict(unit='vllm', state='absent'))
    assert not res.get('failed'), res.get('msg')
    assert res['restored'] == 3 and [(t['tid'], t['exists']) for t in res['not_restored']] == [(103, False)]
    assert any(w.startswith('1 of 4 thread(s) of unit:vllm.service could not be restored (tids 103) - 1 exited '
                            'since; nothing left to restore') for w in res['warnings'])
    assert state.get_original('sched', 'unit:vllm.service') is None


def test_absent_thread_that_exited_meanwhile_is_no_failure(env):
    env.mod(fifo50())

    def exit_104():
        del env.sched.threads[104]
    refuse(env, 104, 'setscheduler', 3, then=exit_104)
    res = env.mod(dict(unit='vllm', state='absent'))
    assert not res.get('failed') and res['restored'] == 3 and res['not_restored'] == []
    assert [t.get('vanished') for t in res['threads']] == [None, None, None, True]
    assert not [w for w in res['warnings'] if 'could not be restored' in w]
    assert state.get_original('sched', 'unit:vllm.service') is None


def test_absent_affinity_confined_by_cpuset_is_restored_with_warning(env):
    """The thread now sits in a partition of CPUs 4-5: 0-7 cannot come back whole (the cpuset decides)."""
    env.mod(fifo50(cpus='4-7'))
    env.sched.allowed_cpus[102] = {4, 5}
    res = env.mod(dict(unit='vllm', state='absent'))
    assert not res.get('failed') and res['restored'] == 4
    assert env.sched.state(102) == ('other', 0) and env.sched.threads[102]['cpus'] == {4, 5}
    assert any(w.startswith('1 thread(s) of unit:vllm.service restored with fewer CPUs than recorded (tids 102)')
               for w in res['warnings'])
    assert state.get_original('sched', 'unit:vllm.service') is None


def test_absent_dropin_failure_restores_threads_and_keeps_record(env):
    env.mod(fifo50(persist=True))
    env.systemctl.on_command = lambda args: (1, '', 'Failed to reload daemon: Access denied')
    res = env.mod(dict(unit='vllm', state='absent'))
    assert res['failed'] and res['msg'].startswith('systemctl daemon-reload failed (rc=1)')
    assert all(env.sched.state(t) == ('other', 0) for t in ENGINE) and res['restored'] == 4
    rec = state.get_original('sched', 'unit:vllm.service')
    assert rec is not None and rec['original']['threads'] == {}   # kept, so rollback.yml tries again
    env.systemctl.on_command = None
    again = env.mod(dict(unit='vllm', state='absent'))
    assert not again.get('failed') and state.get_original('sched', 'unit:vllm.service') is None


def test_absent_check_mode_unchanged_by_refusals(env):
    env.mod(fifo50())
    refuse(env, 103, 'setscheduler', 1)
    before = env.fake.read(STATE_DIR + '/originals.json')
    res = env.mod(dict(unit='vllm', state='absent'), check=True)
    assert not res.get('failed') and res['restored'] == 4 and res['not_restored'] == []
    assert env.fake.read(STATE_DIR + '/originals.json') == before
    assert not [c for c in env.sched.calls if c[0].endswith('refused')]
