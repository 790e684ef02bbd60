# -*- coding: utf-8 -*-
"""module_utils used by chrt_priority and cpuset: cpus, sched, cgroup2."""
from __future__ import absolute_import, division, print_function

import gzip
import os

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import cgroup2, knob, sched
from ansible_collections.medai.llmhost.plugins.module_utils.cpus import (
    format_cpulist, normalize_cpulist, online_nodes, parse_cpulist)


@pytest.fixture
def host16(fake):
    """A fake host with 16 possible/online CPUs: cpulists are bounded by the host's CPUs (never the real machine's)."""
    fake.file('/sys/devices/system/cpu/possible', '0-15')
    fake.file('/sys/devices/system/cpu/online', '0-15')
    return fake


@pytest.mark.parametrize('text,cpus', [
    ('0-3,8,10-11', [0, 1, 2, 3, 8, 10, 11]),
    ('0-3,8,10-11\n', [0, 1, 2, 3, 8, 10, 11]),
    ('', []),
    ('5', [5]),
    ('3 1 2', [1, 2, 3]),
    ('2,0-1,1', [0, 1, 2]),
])
def test_parse_cpulist(host16, text, cpus):
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize('bad', ['a', '3-1', '-1', '1-', '0-3:2', '0-7:2/4', '(null)', 'N', '0-N', '1,,x'])
def test_parse_cpulist_refuses(host16, bad):
    with pytest.raises(knob.KnobError) as e:
        parse_cpulist(bad, 'cpus')
    assert e.value.msg.startswith('invalid cpus')


# the exact wording is cpus.py's: here only what every message must hold (parameter, value, one bounded line)
@pytest.mark.parametrize('bad,shown', [
    ('3-1', '3-1'),
    ('0,8 5-4', '5-4'),
    ('0-7:2/4', '0-7:2/4'),
    ('1-x', '1-x'),
])
def test_parse_cpulist_messages(host16, bad, shown):
    with pytest.raises(knob.KnobError) as e:
        parse_cpulist(bad, 'cpus')
    assert e.value.msg.startswith('invalid cpus') and shown in e.value.msg and e.value.kind == 'invalid'


def test_format_cpulist(host16):
    assert format_cpulist([11, 10, 8, 3, 2, 1, 0]) == '0-3,8,10-11'
    assert format_cpulist([]) == ''
    assert format_cpulist({4}) == '4'
    assert normalize_cpulist('4,5,6,7') == '4-7'


def test_online_nodes_without_numa(fake):
    assert online_nodes() == [0]
    fake.file('/sys/devices/system/node/online', '0-1')
    assert online_nodes() == [0, 1]


@pytest.mark.parametrize('policy,prio,result', [
    ('fifo', 1, 1), ('rr', 99, 99), ('other', None, 0), ('batch', 0, 0), ('idle', None, 0)])
def test_validate_policy_ok(policy, prio, result):
    assert sched.validate_policy(policy, prio) == result


@pytest.mark.parametrize('policy,prio,msg', [
    ('fifo', 0, 'priority 0 is invalid for policy=fifo: real-time priorities are 1..99'),
    ('fifo', 100, 'priority 100 is invalid for policy=fifo: real-time priorities are 1..99'),
    ('rr', None, 'priority is required with policy=rr (1..99)'),
    ('idle', 1, 'priority 1 is invalid for policy=idle'),
    ('deadline', 1, "unknown scheduling policy 'deadline'"),
])
def test_validate_policy_refuses(policy, prio, msg):
    with pytest.raises(knob.KnobError) as e:
        sched.validate_policy(policy, prio)
    assert msg in e.value.msg


def test_parse_stat_comm_with_spaces_and_parens():
    text = '1234 (tokio (w) 1) S 1 1234 1234 0 -1 4194560 0 0 0 0 0 0 0 0 -51 0 3 0 98765 0 0 ' \
           '0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 50 1 0 0 0'
    st = sched.parse_stat(text)
    assert st['comm'] == 'tokio (w) 1' and st['ppid'] == 1 and st['starttime'] == 98765
    assert st['rt_priority'] == 50 and st['policy'] == 1


def test_normalize_unit():
    assert sched.normalize_unit('vllm') == 'vllm.service'
    assert sched.normalize_unit('llm.slice') == 'llm.slice'
    assert sched.normalize_unit('getty@tty1.service') == 'getty@tty1.service'
    for bad in ('a b', 'a/b', '..', 'x' * 10240, 'vllm\n[Service]'):
        with pytest.raises(knob.KnobError) as e:
            sched.normalize_unit(bad)
        assert len(e.value.msg) <= 300 and '\n' not in e.value.msg


@pytest.mark.parametrize('name,entry', [
    ('systemd-journald.service', '*journal*'), ('systemd-journal', '*journal*'), ('rsyslogd', '*syslog*'),
    ('syslog-ng.service', '*syslog*'), ('fluent-bit', 'fluent-bit*'), ('td-agent-bit.service', 'td-agent*'),
    ('restic.service', '*restic*'), ('borgbackup', '*backup*'), ('node_exporter', '*exporter*'),
    ('prometheus-node-exporter.service', '*exporter*'), ('zabbix_agent2', 'zabbix*'), ('Telegraf', 'telegraf*'),
    ('sshd', '*sshd*'), ('ssh.service', '*ssh'), ('openssh.service', '*ssh'), ('systemd', 'systemd'), ('systemd-resolved.service', 'systemd-*'),
    ('cron.service', '*cron*'), ('dbus-daemon', '*dbus*'), ('nv-hostengine', 'nv-hostengine'),
    ('vector.service', 'vector'),
])
def test_rt_deny_match_builtin(name, entry):
    assert sched.rt_deny_match(name, sched.RT_DENYLIST) == entry


@pytest.mark.parametrize('name', ['vllm.service', 'python3', 'EngineCore', 'llm-gateway.service', 'model-loader',
                                  'vectordb.service', 'sshuttle', 'initrd-x', None, ''])
def test_rt_deny_match_leaves_inference_alone(name):
    assert sched.rt_deny_match(name, sched.RT_DENYLIST) is None


def test_effective_denylist_adds_extras_once():
    assert sched.effective_denylist(['mine*', '*journal*', 'mine*']) == list(sched.RT_DENYLIST) + ['mine*']
    assert sched.effective_denylist(None) == list(sched.RT_DENYLIST)


def test_process_units(fake):
    fake.file('/proc/7/cgroup', '0::/user.slice/user-1000.slice/user@1000.service/app.slice/fluent-bit.service\n')
    assert sched.process_units(7) == ['user@1000.service', 'fluent-bit.service']
    assert sched.process_units(8) == []


WATCHER = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles', 'scheduling', 'templates',
                       'sched-threads.py.j2')


def load_watcher(tmp_path, config):
    """The scheduling role's thread watcher, rendered with `config` (Ansible's filters stood in for)."""
    import importlib.util
    import json
    import jinja2
    env = jinja2.Environment()
    env.filters['comment'] = lambda s: '# ' + s
    env.filters['to_json'] = json.dumps
    with open(WATCHER) as f:
        text = env.from_string(f.read()).render(__scheduling_watch_config=config, ansible_managed='test', ansible_facts={})
    path = tmp_path / 'watcher.py'
    path.write_text(text)
    spec = importlib.util.spec_from_file_location('sched_watcher', str(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize('name', ['systemd-journald.service', 'rsyslogd', 'Telegraf', 'ssh.service', 'sshuttle',
                                  'vllm.service', 'python3', 'EngineCore', 'mine-x', 'x.mine', 'vector', ''])
def test_watcher_deny_rule_is_the_modules(tmp_path, name):
    denylist = sched.effective_denylist(['mine-*', '*.MINE'])
    watcher = load_watcher(tmp_path, {'interval': 2, 'force': False, 'units': [], 'rt_denylist': denylist})
    assert watcher.rt_deny_match(name, watcher.CONFIG['rt_denylist']) == sched.rt_deny_match(name, denylist)


def test_allowed_rt():
    assert sched.allowed_rt(['vllm.service', 'python3'], ['vllm'])
    assert sched.allowed_rt([None, 'python3'], ['py*'])
    assert not sched.allowed_rt([None, 'python3'], ['vllm.service'])
    assert not sched.allowed_rt(['x.service'], [])


def test_kernel_config_value(fake):
    assert sched.kernel_config_value('CONFIG_RT_GROUP_SCHED') is None
    fake.file('/boot/config-6.1.0-28-amd64', '# CONFIG_RT_GROUP_SCHED is not set\nCONFIG_CGROUP_SCHED=y\n')
    assert sched.kernel_config_value('CONFIG_RT_GROUP_SCHED') == 'n'
    assert sched.kernel_config_value('CONFIG_CGROUP_SCHED') == 'y'
    os.makedirs(fake.path('/proc'))
    with gzip.open(fake.path('/proc/config.gz'), 'wb') as f:
        f.write(b'CONFIG_RT_GROUP_SCHED=y\n')
    assert sched.kernel_config_value('CONFIG_RT_GROUP_SCHED') == 'y'   # /proc/config.gz wins


def test_real_syscalls_are_behind_sys():
    # the production layer is the real one; tests replace sched.SYS (never call setters on the real machine)
    assert isinstance(sched.SYS, sched.Syscalls)


@pytest.mark.parametrize('name,path', [
    ('llminference.slice', '/sys/fs/cgroup/llminference.slice'),
    ('llm-inference.slice', '/sys/fs/cgroup/llm.slice/llm-inference.slice'),
    ('a-b-c.slice', '/sys/fs/cgroup/a.slice/a-b.slice/a-b-c.slice'),
])
def test_slice_cgroup(name, path):
    assert cgroup2.slice_cgroup(name) == path


@pytest.mark.parametrize('bad', ['-.slice', 'x.service', 'a--b.slice', '-a.slice', 'a b.slice', 'a/b.slice'])
def test_slice_cgroup_refuses(bad):
    with pytest.raises(knob.KnobError):
        cgroup2.slice_cgroup(bad)


@pytest.mark.parametrize('text,parsed', [
    ('member', ('member', None)),
    ('root', ('root', None)),
    ('isolated\n', ('isolated', None)),
    ('root invalid (Cpu list in cpuset.cpus not exclusive)', ('root', 'Cpu list in cpuset.cpus not exclusive')),
    ('isolated invalid (Parent is not a partition root)', ('isolated', 'Parent is not a partition root')),
    ('root invalid', ('root', '')),
])
def test_parse_partition(text, parsed):
    assert cgroup2.parse_partition(text) == parsed


@pytest.mark.parametrize('given,path', [
    ('llm/engine', '/sys/fs/cgroup/llm/engine'),
    ('/llm/engine/', '/sys/fs/cgroup/llm/engine'),
    ('/sys/fs/cgroup/llm', '/sys/fs/cgroup/llm'),
])
def test_normalize_path(given, path):
    assert cgroup2.normalize_path(given) == path


def test_ancestors():
    assert cgroup2.ancestors('/sys/fs/cgroup/a/b/c') == ['/sys/fs/cgroup', '/sys/fs/cgroup/a', '/sys/fs/cgroup/a/b']


class _WatcherOS(object):
    """Stands in for the watcher's `os`: /proc task lists from a dict, scheduler calls recorded (never real)."""

    def __init__(self, tasks):
        self.tasks, self.calls = tasks, []

    def listdir(self, path):
        return [str(t) for t in self.tasks[int(path.split('/')[2])]]

    def sched_getscheduler(self, tid):
        return 0

    def sched_getparam(self, tid):
        class P(object):
            sched_priority = 0
        return P()

    def sched_setscheduler(self, tid, policy, param):
        self.calls.append(tid)

    def sched_param(self, prio):
        return prio


@pytest.mark.parametrize('denylist,unit,applied', [
    (sched.effective_denylist(), 'gw.service', [10]),      # pid 11 (rsyslogd) is skipped
    (sched.effective_denylist(['gw*']), 'gw.service', []),  # the unit itself is deny-listed
    (None, 'gw.service', []),                               # no list from chrt_priority: no RT at all
])
def test_watcher_skips_deny_listed_processes(tmp_path, monkeypatch, denylist, unit, applied):
    unit_cfg = {'name': unit, 'policy': 'fifo', 'priority': 5, 'thread_regex': '.'}
    watcher = load_watcher(tmp_path, {'interval': 2, 'force': False, 'units': [unit_cfg], 'rt_denylist': denylist})
    files = {'/proc/10/comm': 'python3\n', '/proc/10/task/10/comm': 'EngineCore\n',
             '/proc/11/comm': 'rsyslogd\n', '/proc/11/task/11/comm': 'rsyslogd\n',
             '/proc/10/cgroup': '0::/system.slice/gw.service\n', '/proc/11/cgroup': '0::/system.slice/gw.service\n'}
    fake_os = _WatcherOS({10: [10], 11: [11]})
    monkeypatch.setattr(watcher, 'os', fake_os)
    monkeypatch.setattr(watcher, 'read', files.get)
    monkeypatch.setattr(watcher, 'control_group', lambda u: '/system.slice/gw.service')
    monkeypatch.setattr(watcher, 'cgroup_pids', lambda cg: {10, 11})
    monkeypatch.setattr(watcher, 'log', lambda *a, **kw: None)
    watcher.apply(unit_cfg, watcher.re.compile('.'), True)
    assert fake_os.calls == applied


def test_a_unit_name_with_a_trailing_newline_is_refused():
    with pytest.raises(sched.SchedError, match='not a valid systemd unit name'):
        sched.normalize_unit('vllm\n')
