# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import os

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import state
from ansible_collections.medai.llmhost.plugins.modules import cpuset
from ansible_collections.medai.llmhost.tests.unit.plugins.modules.sched_fakes import (
    FakeCgroupFS, FakeSystemctl, ModuleRunner)

SLICE = 'llminference.slice'
SCG = '/sys/fs/cgroup/llminference.slice'
ETC = '/etc/systemd/system'
SLICE_DROPIN = ETC + '/llminference.slice.d/50-medai-llmhost-cpuset.conf'
UNIT_DROPIN = ETC + '/vllm.service.d/50-medai-llmhost-cpuset.conf'
TEMPLATE = ETC + '/medai-cpuset-partition@.service'
INSTANCE = ETC + '/medai-cpuset-partition@llminference.slice.service.d/50-medai-llmhost.conf'


@pytest.fixture
def env(fake, monkeypatch, capsys):
    fcg = FakeCgroupFS(fake, monkeypatch)
    fcg.mk('/sys/fs/cgroup/system.slice', procs=[1])
    fcg.mk('/sys/fs/cgroup/system.slice/vllm.service', procs=[300])
    units = {'vllm.service': {'LoadState': 'loaded', 'ActiveState': 'active',
                              'ControlGroup': '/system.slice/vllm.service', 'MainPID': '300'},
             SLICE: {'LoadState': 'loaded', 'ActiveState': 'inactive', 'ControlGroup': ''}}

    def on_command(args):
        if args[0] == 'start' and args[1] == SLICE:
            if not os.path.isdir(fake.path(SCG)):
                fcg.mk(SCG)
            units[SLICE]['ActiveState'] = 'active'
        if args[0] == 'restart':
            units[args[1]]['ControlGroup'] = '/llminference.slice/' + args[1]
        return 0, '', ''
    sc = FakeSystemctl(units=units, on_command=on_command)
    run = ModuleRunner(monkeypatch, capsys, sc)

    class Env(object):
        pass
    e = Env()
    e.fake, e.cg, e.systemctl, e.units = fake, fcg, sc, units
    e.mod = lambda args, **kw: run(cpuset, args, **kw)
    return e


def slice_args(**kw):
    args = dict(slice=SLICE, cpus='4-7', mems='1', partition='root', units=['vllm'])
    args.update(kw)
    return args


def body(text):
    return text.splitlines()[1:]  # without the "Managed by Ansible" header


def test_cgroup_v1_refused(fake, monkeypatch, capsys):
    FakeCgroupFS(fake, monkeypatch, v2=False)
    run = ModuleRunner(monkeypatch, capsys, FakeSystemctl())
    res = run(cpuset, dict(path='llm', cpus='2-3'))
    assert res['failed']
    assert res['msg'].startswith('cgroup v1 host: /sys/fs/cgroup/cgroup.controllers does not exist')
    assert 'use cgroup v2 (boot with systemd.unified_cgroup_hierarchy=1)' in res['msg']


def test_all_cpus_refused(env):
    res = env.mod(dict(path='llm', cpus='0-7'))
    assert res['failed']
    assert res['msg'].startswith('refusing cpus 0-7: it leaves 0 online CPU(s) (none) outside partitions and '
                                 'isolcpus, fewer than housekeeping_min=1')
    assert env.fake.writes == []


def test_housekeeping_counts_other_partitions_and_isolcpus(env):
    env.fake.file('/sys/fs/cgroup/cgroup.subtree_control', 'cpuset cpu io memory pids')
    env.cg.mk('/sys/fs/cgroup/batch', cpus='0-3', partition='root')
    env.fake.file('/sys/devices/system/cpu/isolated', '7')
    res = env.mod(dict(path='llm', cpus='4-6', housekeeping_min=1))
    assert res['failed']
    assert 'leaves 0 online CPU(s) (none)' in res['msg']
    assert 'other partitions: /sys/fs/cgroup/batch=0-3; isolcpus: 7' in res['msg']
    res = env.mod(dict(path='llm', cpus='4-5', housekeeping_min=2))
    assert res['failed'] and 'leaves 1 online CPU(s) (6)' in res['msg']
    res = env.mod(dict(path='llm', cpus='4-5'))
    assert res['changed'] and res['housekeeping_cpus'] == '6'


def test_housekeeping_min_zero_refused(env):
    res = env.mod(dict(path='llm', cpus='1', housekeeping_min=0))
    assert res['failed'] and 'housekeeping_min must be at least 1' in res['msg']


@pytest.mark.parametrize('mems,msg', [
    ('2', 'mems 2 names NUMA node(s) that do not exist or are offline: 2 (online nodes: 0-1)'),
    ('0-3', 'mems 0-3 names NUMA node(s) that do not exist or are offline: 2-3 (online nodes: 0-1)'),
    ('x', "invalid mems 'x'"),
])
def test_nonexistent_node_refused(env, mems, msg):
    res = env.mod(dict(path='llm', cpus='2-3', mems=mems))
    assert res['failed'] and msg in res['msg']
    assert not os.path.exists(env.fake.path('/sys/fs/cgroup/llm'))


def test_offline_cpu_refused(env):
    res = env.mod(dict(path='llm', cpus='6-9'))
    assert res['failed'] and res['msg'] == 'cpus 6-9 include CPUs that are not online: 8-9 (online: 0-7)'


def test_path_mode_creates_enables_and_moves(env):
    env.cg.proc(4242, '/sys/fs/cgroup/system.slice')
    res = env.mod(dict(path='bench/engine', cpus='2-3', mems='0', partition='root', pids=[4242]), diff=True)
    cg = '/sys/fs/cgroup/bench/engine'
    assert res['changed'] and res['created'] and res['cgroup'] == cg
    assert 'cpuset' in env.cg.read('/sys/fs/cgroup', 'cgroup.subtree_control').split()
    assert 'cpuset' in env.cg.read('/sys/fs/cgroup/bench', 'cgroup.subtree_control').split()
    assert env.cg.read(cg, 'cpuset.cpus') == '2-3' and env.cg.read(cg, 'cpuset.mems') == '0'
    assert (res['cpus_effective'], res['mems_effective'], res['partition']) == ('2-3', '0', 'root')
    assert res['pids_moved'] == [4242]
    assert env.cg.read(cg, 'cgroup.procs') == '4242'
    assert env.fake.read('/proc/4242/cgroup').strip() == '0::/bench/engine'
    assert state.get_original('cpuset', 'path:' + cg)['original']['created_dirs'] == ['/sys/fs/cgroup/bench', cg]
    # write order: cpus, mems, partition, then the pid
    order = [w[0].rsplit('/', 1)[1] for w in env.fake.writes if w[0].startswith(cg + '/')]
    assert order == ['cpuset.cpus', 'cpuset.mems', 'cpuset.cpus.partition', 'cgroup.procs']
    assert res['diff'][0]['after'] == ('%s/cpuset.cpus: 2-3\n%s/cpuset.mems: 0\n%s/cpuset.cpus.partition: root\n'
                                       % (cg, cg, cg))
    assert res['files'] == [] and env.systemctl.mutating() == []
    rec = state.get_original('cpuset', 'path:' + cg)['original']
    assert rec['created'] is True and rec['pids'] == {'4242': '/sys/fs/cgroup/system.slice'}
    again = env.mod(dict(path='bench/engine', cpus='2,3', mems='0', partition='root', pids=[4242]))
    assert again['changed'] is False and again['created'] is False and again['pids_moved'] == []


def test_path_absent_moves_back_and_removes(env):
    env.cg.proc(4242, '/sys/fs/cgroup/system.slice')
    env.mod(dict(path='bench/engine', cpus='2-3', partition='isolated', pids=[4242]))
    chk = env.mod(dict(path='bench/engine', state='absent'), check=True)
    assert chk['changed'] and chk['removed'] and chk['pids_moved'] == [4242]
    assert os.path.isdir(env.fake.path('/sys/fs/cgroup/bench/engine'))
    res = env.mod(dict(path='bench/engine', state='absent'))
    assert res['changed'] and res['removed'] and res['pids_moved'] == [4242]
    assert env.fake.read('/proc/4242/cgroup').strip() == '0::/system.slice'
    assert env.cg.removed == ['/sys/fs/cgroup/bench/engine', '/sys/fs/cgroup/bench']
    assert ('/sys/fs/cgroup/bench/engine/cpuset.cpus.partition', 'member') in env.fake.writes
    # tasks leave before the cpuset is reset (the kernel refuses to empty cpuset.cpus, ENOSPC, while
    # tasks are inside; found by the benchmark on a lab VM)
    moved = env.fake.writes.index(('/sys/fs/cgroup/system.slice/cgroup.procs', '4242'))
    reset = env.fake.writes.index(('/sys/fs/cgroup/bench/engine/cpuset.cpus.partition', 'member'))
    assert moved < reset
    assert state.get_original('cpuset', 'path:/sys/fs/cgroup/bench/engine') is None
    assert env.mod(dict(path='bench/engine', state='absent'))['changed'] is False


def test_partition_invalid_reason_surfaced_and_reverted(env):
    env.cg.invalid_reason = 'Cpu list in cpuset.cpus not exclusive'
    res = env.mod(dict(path='llm', cpus='2-3', partition='root'))
    assert res['failed']
    assert res['msg'] == ("cpuset.cpus.partition of /sys/fs/cgroup/llm reads 'root invalid (Cpu list in cpuset.cpus "
                          "not exclusive)': the kernel refused the root partition: Cpu list in cpuset.cpus not "
                          "exclusive; reverted it to member")
    assert env.cg.read('/sys/fs/cgroup/llm', 'cpuset.cpus.partition') == 'member'


def test_partition_invalid_nested_slice_hint(env):
    env.cg.invalid_reason = 'Parent is not a partition root'
    env.units['llm-inference.slice'] = {'LoadState': 'loaded', 'ActiveState': 'inactive', 'ControlGroup': ''}

    def on_command(args):
        if args[0] == 'start':
            env.cg.mk('/sys/fs/cgroup/llm.slice')
            env.cg.mk('/sys/fs/cgroup/llm.slice/llm-inference.slice')
        return 0, '', ''
    env.systemctl.on_command = on_command
    res = env.mod(dict(slice='llm-inference.slice', cpus='4-7', partition='isolated'))
    assert res['failed']
    assert "reads 'isolated invalid (Parent is not a partition root)'" in res['msg']
    assert 'the parent /sys/fs/cgroup/llm.slice is not a partition root: use a top-level slice' in res['msg']
    assert env.cg.read('/sys/fs/cgroup/llm.slice/llm-inference.slice', 'cpuset.cpus.partition') == 'member'


def test_slice_dropins_and_partition_unit(env):
    res = env.mod(slice_args(), diff=True)
    assert res['changed'] and res['slice'] == SLICE and res['cgroup'] == SCG
    assert body(env.fake.read(SLICE_DROPIN)) == [
        '[Unit]', 'Wants=medai-cpuset-partition@llminference.slice.service', '',
        '[Slice]', 'AllowedCPUs=4-7', 'AllowedMemoryNodes=1']
    assert body(env.fake.read(UNIT_DROPIN)) == [
        '[Unit]', 'Wants=medai-cpuset-partition@llminference.slice.service',
        'After=medai-cpuset-partition@llminference.slice.service', '', '[Service]', 'Slice=llminference.slice']
    assert body(env.fake.read(INSTANCE)) == [
        '[Service]', 'Environment=MEDAI_CGROUP=/sys/fs/cgroup/llminference.slice MEDAI_PARTITION=root']
    tpl = env.fake.read(TEMPLATE)
    assert 'After=%i' in tpl and 'PartOf=%i' in tpl and 'Type=oneshot' in tpl
    assert 'echo "$${MEDAI_PARTITION}" > "$$f"' in tpl and '*invalid*) echo member > "$$f"; exit 1;;' in tpl
    assert sorted(res['files']) == sorted([SLICE_DROPIN, TEMPLATE, INSTANCE, UNIT_DROPIN])
    assert env.systemctl.mutating() == [['daemon-reload'], ['start', SLICE]]
    assert (res['cpus_effective'], res['mems_effective'], res['partition']) == ('4-7', '1', 'root')
    assert res['units_moved'] == ['vllm.service']
    assert res['restart_required'] is True and res['units_restart_required'] == ['vllm.service']
    assert res['units_restarted'] == []
    assert 'cpuset' in env.cg.read('/sys/fs/cgroup', 'cgroup.subtree_control').split()
    assert len(res['diff']) == 5


def test_slice_restart_units_and_idempotence(env):
    res = env.mod(slice_args(restart_units=True))
    assert res['units_restarted'] == ['vllm.service'] and res['restart_required'] is False
    assert ['restart', 'vllm.service'] in env.systemctl.mutating()
    n = len(env.systemctl.mutating())
    writes = len(env.fake.writes)
    again = env.mod(slice_args(restart_units=True))
    assert again['changed'] is False and again['units_restarted'] == [] and again['files'] == []
    assert len(env.systemctl.mutating()) == n and len(env.fake.writes) == writes
    assert again['partition'] == 'root' and again['cpus_effective'] == '4-7'


def test_slice_member_removes_partition_unit(env):
    env.mod(slice_args())
    res = env.mod(slice_args(partition='member', mems=None, units=[]))
    assert res['changed'] and res['partition'] == 'member'
    assert not os.path.exists(env.fake.path(INSTANCE)) and not os.path.exists(env.fake.path(TEMPLATE))
    assert body(env.fake.read(SLICE_DROPIN)) == ['[Slice]', 'AllowedCPUs=4-7']


def test_check_mode_writes_nothing(env):
    res = env.mod(slice_args(restart_units=True), check=True, diff=True)
    assert res['changed'] is True and res['created'] is True
    assert (res['cpus_effective'], res['mems_effective'], res['partition']) == ('4-7', '1', 'root')
    assert res['units_restarted'] == ['vllm.service']
    assert sorted(res['files']) == sorted([SLICE_DROPIN, TEMPLATE, INSTANCE, UNIT_DROPIN])
    assert env.fake.writes == []
    assert env.systemctl.mutating() == []
    assert not os.path.exists(env.fake.path(ETC))
    assert not os.path.exists(env.fake.path('/var/lib/medai-llmhost'))
    assert not os.path.exists(env.fake.path(SCG))
    res = env.mod(dict(path='x/y', cpus='1-2'), check=True)
    assert res['changed'] and not os.path.exists(env.fake.path('/sys/fs/cgroup/x'))
    assert env.fake.writes == []


def test_slice_absent(env):
    env.mod(slice_args(restart_units=True))
    inst = 'medai-cpuset-partition@llminference.slice.service'
    env.units[inst] = {'LoadState': 'loaded', 'ActiveState': 'active'}
    res = env.mod(dict(slice=SLICE, state='absent'), diff=True)
    assert env.systemctl.mutating()[-2:] == [['stop', inst], ['daemon-reload']]
    assert res['changed'] is True
    for f in (SLICE_DROPIN, UNIT_DROPIN, TEMPLATE, INSTANCE):
        assert not os.path.exists(env.fake.path(f)), f
    assert res['units_moved'] == ['vllm.service']   # recorded when applied
    assert res['restart_required'] is True and res['units_restart_required'] == ['vllm.service']
    assert res['partition'] == 'member'
    assert env.cg.read(SCG, 'cpuset.cpus') == '' and env.cg.read(SCG, 'cpuset.mems') == ''
    assert res['removed'] is False and os.path.isdir(env.fake.path(SCG))  # systemd owns the slice's cgroup
    again = env.mod(dict(slice=SLICE, state='absent', restart_units=True, units=['vllm']))
    assert again['units_restarted'] == ['vllm.service']  # still running in the slice: restarted out of it


def test_unit_not_found(env):
    res = env.mod(slice_args(units=['nosuch']))
    assert res['failed'] and res['msg'] == 'systemd unit nosuch.service not found (LoadState=not-found)'
    assert env.fake.writes == [] and not os.path.exists(env.fake.path(ETC))


@pytest.mark.parametrize('args,msg', [
    (dict(slice='bad name.slice', cpus='1'), "invalid slice name 'bad name.slice'"),
    (dict(slice=SLICE, cpus='1', pids=[1]), 'pids are only used with path'),
    (dict(path='llm', cpus='1', units=['x']), 'units and restart_units are only used with slice'),
    (dict(path='/sys/fs/cgroup/../etc', cpus='1'), 'contains "." or ".."'),
    (dict(path='/sys/fs/cgroup', cpus='1'), 'is the root cgroup'),
    (dict(path='llm'), 'cpus is required with state=present'),
    (dict(path='llm', cpus='1', pids=[999999]), 'pid 999999 does not exist'),
])
def test_argument_refusals(env, args, msg):
    res = env.mod(args)
    assert res['failed'] and msg in res['msg']
    assert env.fake.writes == []
