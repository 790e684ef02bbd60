# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import errno
import os
import shutil
import time

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.plugins.module_utils import state
from ansible_collections.medai.llmhost.plugins.modules import cpuset
from ansible_collections.medai.llmhost.plugins.module_utils import sched
from ansible_collections.medai.llmhost.tests.unit.plugins.modules.sched_fakes import (
    FakeCgroupFS, FakeSched, FakeSystemctl, ModuleRunner, make_proc)

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
    fsched = FakeSched()
    monkeypatch.setattr(sched, 'SYS', fsched)   # never the real affinity syscalls
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
        if args[0] == 'stop' and args[1] == SLICE:
            if os.path.isdir(fake.path(SCG)) and not procs_below(fake, SCG):
                shutil.rmtree(fake.path(SCG))
            units[SLICE]['ActiveState'] = 'inactive'
        if args[0] == 'restart':
            # back into the slice while its Slice= drop-in (or the unit's own Slice=) says so
            in_slice = os.path.exists(fake.path(ETC + '/%s.d/50-medai-llmhost-cpuset.conf' % args[1])) \
                or units[args[1]].get('UnitSlice') == SLICE
            rel = ('/llminference.slice/' if in_slice else '/system.slice/') + args[1]
            units[args[1]]['ControlGroup'] = rel
            move_proc(fake, fcg, int(units[args[1]].get('MainPID') or 0), '/sys/fs/cgroup' + rel)
        return 0, '', ''
    sc = FakeSystemctl(units=units, on_command=on_command)
    run = ModuleRunner(monkeypatch, capsys, sc)

    class Env(object):
        pass
    e = Env()
    e.fake, e.cg, e.systemctl, e.units, e.sched = fake, fcg, sc, units, fsched
    e.mod = lambda args, **kw: run(cpuset, args, **kw)
    return e


def procs_below(fake, cg):
    """Pids in cg or any cgroup below it (what the kernel calls populated)."""
    out = []
    for d, _dirs, names in os.walk(fake.path(cg)):
        if 'cgroup.procs' in names:
            with open(os.path.join(d, 'cgroup.procs')) as f:
                out += f.read().split()
    return out


def sync_populated(fake):
    for d, _dirs, names in os.walk(fake.path('/sys/fs/cgroup')):
        if 'cgroup.events' in names:
            rel = d[len(fake.root):]
            with open(os.path.join(d, 'cgroup.events'), 'w') as f:
                f.write('populated %d\nfrozen 0\n' % (1 if procs_below(fake, rel) else 0))


def move_proc(fake, fcg, pid, cg):
    """A process moving between cgroups outside the module (systemd starting a unit somewhere)."""
    if not pid:
        return
    if not os.path.isdir(fake.path(cg)):
        fcg.mk(cg)
    old = '/sys/fs/cgroup' + (fake.read('/proc/%d/cgroup' % pid).strip()[3:].rstrip('/'))
    if os.path.exists(fake.path(old + '/cgroup.procs')):
        left = [x for x in fake.read(old + '/cgroup.procs').split() if x != str(pid)]
        with open(fake.path(old + '/cgroup.procs'), 'w') as f:
            f.write('\n'.join(left))
    fcg.proc(pid, cg)
    sync_populated(fake)


class KernelRules(object):
    """The cpuset rules the module has to live with, on top of FakeCgroupFS:
    - ENOSPC for an empty cpuset.cpus/mems while the cgroup or one below it has tasks (validate_change);
    - a partition change resets every non-per-CPU task of the root cgroup - kswapdN, kcompactdN - to the
      root's effective CPUs (update_tasks_cpumask(&top_cpuset)), and the root's effective CPUs follow
      the valid partitions."""

    def __init__(self, env, monkeypatch):
        self.env = env
        self.inner = knob._write_file
        self.kthreads = {}
        monkeypatch.setattr(knob, '_write_file', self.write_file)
        sync_populated(env.fake)

    def add_kthreads(self, nodes):
        """nodes: {node: cpulist}; kswapdN and kcompactdN start on their node's CPUs."""
        f = self.env.fake
        for node, cpus in nodes.items():
            f.file('/sys/devices/system/node/node%d/cpulist' % node, cpus)
            for i, comm in enumerate(('kswapd%d' % node, 'kcompactd%d' % node)):
                pid = 40 + 2 * node + i
                make_proc(f, self.env.sched, pid, comm, [], cgroup='/')
                self.env.sched.threads[pid]['cpus'] = set(cpus_of(cpus))
                self.kthreads[comm] = pid

    def affinity(self, comm):
        return cpulist(self.env.sched.threads[self.kthreads[comm]]['cpus'])

    def write_file(self, hp, data):
        f = self.env.fake
        name = os.path.basename(hp)
        cg = os.path.dirname(hp)[len(f.root):]
        if name in ('cpuset.cpus', 'cpuset.mems') and data.strip() == '':
            with open(hp) as fh:
                if fh.read().strip() and procs_below(f, cg):
                    raise OSError(errno.ENOSPC, 'No space left on device')
        self.inner(hp, data)
        if name == 'cpuset.cpus.partition':
            self.repartition()

    def repartition(self):
        f = self.env.fake
        taken = set()
        for child in os.listdir(f.path('/sys/fs/cgroup')):
            part = f.path('/sys/fs/cgroup/%s/cpuset.cpus.partition' % child)
            if os.path.exists(part) and open(part).read().strip() in ('root', 'isolated'):
                taken |= set(cpus_of(f.read('/sys/fs/cgroup/%s/cpuset.cpus' % child)))
        eff = sorted(set(cpus_of(self.env.cg.online)) - taken)
        hp = f.path('/sys/fs/cgroup/cpuset.cpus.effective')
        os.chmod(hp, 0o644)
        with open(hp, 'w') as fh:
            fh.write(cpulist(eff) + '\n')
        os.chmod(hp, 0o444)
        for pid in self.kthreads.values():
            self.env.sched.threads[pid]['cpus'] = set(eff)


def cpus_of(text):
    from ansible_collections.medai.llmhost.plugins.module_utils import facts
    return facts.parse_cpulist(text)


def cpulist(cpus):
    from ansible_collections.medai.llmhost.plugins.module_utils import facts
    return facts.format_cpulist(cpus)


@pytest.fixture
def kernel(env, monkeypatch):
    return KernelRules(env, monkeypatch)


def assert_nothing_written(env, subtree='cpu io memory pids', etc=False, cgroups=()):
    """No cgroup dir, no subtree_control change, no drop-in, no originals.json, no journal."""
    assert sorted(os.listdir(env.fake.path('/sys/fs/cgroup'))) == sorted(BASE_CGROUPS + list(cgroups) + [
        n for n in os.listdir(env.fake.path('/sys/fs/cgroup')) if n.startswith(('cgroup.', 'cpuset.'))])
    assert env.cg.read('/sys/fs/cgroup', 'cgroup.subtree_control') == subtree
    assert os.path.exists(env.fake.path(ETC)) is etc
    assert not os.path.exists(env.fake.path('/var/lib/medai-llmhost'))
    assert not os.path.exists(env.fake.path('/var'))


BASE_CGROUPS = ['system.slice']


def assert_one_bounded_line(msg):
    assert '\n' not in msg and len(msg) <= 300, msg


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
    ('2', "mems '2' names NUMA node(s) that do not exist or are offline: 2 (online nodes: 0-1)"),
    ('0-3', "mems '0-3' names NUMA node(s) that do not exist or are offline: 2-3 (online nodes: 0-1)"),
    ('x', "invalid mems 'x': invalid number 'x'"),
])
def test_nonexistent_node_refused(env, mems, msg):
    res = env.mod(dict(path='llm', cpus='2-3', mems=mems))
    assert res['failed'] and msg in res['msg']
    assert not os.path.exists(env.fake.path('/sys/fs/cgroup/llm'))


def test_offline_cpu_refused(env):
    res = env.mod(dict(path='llm', cpus='6-9'))
    assert res['failed'] and res['msg'] == "cpus '6-9' include CPUs that are not online: 8-9 (online: 0-7)"


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


def test_partition_invalid_sets_everything_back(env):
    """The kernel marks the new partition 'root invalid': the cgroups made, +cpuset enabled and the
    record are all gone again; one line with the kernel's reason; no journal."""
    env.cg.invalid_reason = 'Cpu list in cpuset.cpus not exclusive'
    res = env.mod(dict(path='bench/engine', cpus='2-3', partition='root'))
    assert res['failed']
    assert res['msg'] == ("cpuset.cpus.partition of /sys/fs/cgroup/bench/engine reads 'root invalid (Cpu list in "
                          "cpuset.cpus not exclusive)': the kernel refused the root partition; all set back")
    assert res['details']['reason'] == 'Cpu list in cpuset.cpus not exclusive'
    assert env.cg.removed == ['/sys/fs/cgroup/bench/engine', '/sys/fs/cgroup/bench']
    assert_nothing_written(env)
    assert ('/sys/fs/cgroup/cgroup.subtree_control', '-cpuset') in env.fake.writes


def test_partition_invalid_existing_cgroup_values_restored(env):
    env.fake.file('/sys/fs/cgroup/cgroup.subtree_control', 'cpuset cpu io memory pids')
    env.cg.mk('/sys/fs/cgroup/llm', cpus='1-2', mems='0')
    env.cg.invalid_reason = 'Cpu list in cpuset.cpus not exclusive'
    res = env.mod(dict(path='llm', cpus='2-3', mems='1', partition='isolated'))
    assert res['failed'] and res['msg'].endswith('the kernel refused the isolated partition; all set back')
    assert [env.cg.read('/sys/fs/cgroup/llm', f) for f in ('cpuset.cpus', 'cpuset.mems', 'cpuset.cpus.partition')] \
        == ['1-2', '0', 'member']
    assert_nothing_written(env, subtree='cpuset cpu io memory pids', cgroups=['llm'])
    assert os.path.isdir(env.fake.path('/sys/fs/cgroup/llm')) and env.cg.removed == []


def test_partition_invalid_nested_slice_hint_and_set_back(env):
    env.cg.invalid_reason = 'Parent is not a partition root'
    env.units['llm-inference.slice'] = {'LoadState': 'loaded', 'ActiveState': 'inactive', 'ControlGroup': ''}

    def on_command(args):
        if args[:2] == ['start', 'llm-inference.slice']:
            env.cg.mk('/sys/fs/cgroup/llm.slice')
            env.cg.mk('/sys/fs/cgroup/llm.slice/llm-inference.slice')
        if args[:2] == ['stop', 'llm-inference.slice']:
            shutil.rmtree(env.fake.path('/sys/fs/cgroup/llm.slice/llm-inference.slice'))
        if args[:2] == ['stop', 'llm.slice']:   # systemd started the parent slice too
            shutil.rmtree(env.fake.path('/sys/fs/cgroup/llm.slice'))
        return 0, '', ''
    env.systemctl.on_command = on_command
    res = env.mod(dict(slice='llm-inference.slice', cpus='4-7', partition='isolated', units=['vllm']))
    assert res['failed']
    assert res['msg'] == ("cpuset.cpus.partition of /sys/fs/cgroup/llm.slice/llm-inference.slice reads 'isolated "
                          "invalid (Parent is not a partition root)': the kernel refused the isolated partition (parent "
                          "/sys/fs/cgroup/llm.slice is no partition root: systemd nests slices at each '-'; use a "
                          "top-level slice); all set back")
    assert_one_bounded_line(res['msg'])
    # drop-ins and the partition unit written, then removed again; the slice started, then stopped
    assert env.systemctl.mutating() == [['daemon-reload'], ['start', 'llm-inference.slice'],
                                        ['stop', 'llm-inference.slice'], ['stop', 'llm.slice'], ['daemon-reload']]
    assert_nothing_written(env)


def test_partition_invalid_slice_mode_restores_existing_dropins(env):
    env.fake.file(SLICE_DROPIN, '# old\n[Slice]\nAllowedCPUs=6-7\n', mode=0o640)
    env.cg.invalid_reason = 'Cpu list in cpuset.cpus not exclusive'
    res = env.mod(slice_args())
    assert res['failed'] and res['msg'].endswith('; all set back')
    assert env.fake.read(SLICE_DROPIN) == '# old\n[Slice]\nAllowedCPUs=6-7\n'
    assert os.stat(env.fake.path(SLICE_DROPIN)).st_mode & 0o777 == 0o640
    for f in (UNIT_DROPIN, TEMPLATE, INSTANCE):
        assert not os.path.exists(env.fake.path(f)), f
    assert not os.path.exists(env.fake.path(ETC + '/vllm.service.d'))
    assert not os.path.exists(env.fake.path('/var/lib/medai-llmhost'))


def test_partition_overlapping_another_refused_before_writing(env):
    env.fake.file('/sys/fs/cgroup/cgroup.subtree_control', 'cpuset cpu io memory pids')
    env.cg.mk('/sys/fs/cgroup/batch', cpus='0-3', partition='root')
    for check in (True, False):
        res = env.mod(dict(path='llm', cpus='3-4', partition='root'), check=check)
        assert res['failed'] and res['msg'] == ("cpus '3-4' overlap the partition /sys/fs/cgroup/batch (CPUs 3): a root "
                                                "partition needs CPUs no other partition holds")
    assert env.fake.writes == [] and not os.path.exists(env.fake.path('/sys/fs/cgroup/llm'))
    assert env.mod(dict(path='llm', cpus='3-4'))['changed']   # a member may share CPUs


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


def test_slice_absent(env, kernel):
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
    assert res['removed'] is False and os.path.isdir(env.fake.path(SCG))  # systemd owns the slice's cgroup
    again = env.mod(dict(slice=SLICE, state='absent', restart_units=True, units=['vllm']))
    assert again['units_restarted'] == ['vllm.service']  # still running in the slice: restarted out of it
    # emptied, then the slice (nothing runs in it any more) stopped: its cgroup is gone
    assert env.systemctl.mutating()[-1] == ['stop', SLICE] and not os.path.isdir(env.fake.path(SCG))
    assert state.get_original('cpuset', 'slice:' + SLICE) is None


def test_slice_absent_with_live_service_dissolves_partition(env, kernel):
    """rollback.yml on a host tuned by site.yml: vllm.service runs in the partition (its unit file has
    Slice=), cpuset state=absent without restarts. The kernel refuses an empty cpuset.cpus there (ENOSPC);
    the partition is dissolved first and the slice gets every online CPU/node instead."""
    env.units['vllm.service']['UnitSlice'] = SLICE
    env.mod(slice_args(restart_units=True))
    assert env.fake.read('/proc/300/cgroup').strip() == '0::/llminference.slice/vllm.service'
    with pytest.raises(knob.KnobError, match="writing '' to .*cpuset.cpus failed: .*No space left on device"):
        knob.write_raw(SCG + '/cpuset.cpus', '')
    n = len(env.fake.writes)
    res = env.mod(dict(slice=SLICE, state='absent'))
    assert not res.get('failed'), res.get('msg')
    writes = [(w[0].rsplit('/', 1)[1], w[1]) for w in env.fake.writes[n:] if w[0].startswith(SCG + '/')]
    assert writes == [('cpuset.cpus.partition', 'member'), ('cpuset.cpus', '0-7'), ('cpuset.mems', '0-1')]
    assert (res['partition'], res['cpus_effective'], res['mems_effective']) == ('member', '0-7', '0-1')
    assert any('refuses to empty cpuset.cpus and cpuset.mems while it has (ENOSPC)' in w for w in res['warnings'])
    for f in (SLICE_DROPIN, UNIT_DROPIN, TEMPLATE, INSTANCE):
        assert not os.path.exists(env.fake.path(f)), f
    assert state.get_original('cpuset', 'slice:' + SLICE) is not None   # not finished: the next rollback ends it
    again = env.mod(dict(slice=SLICE, state='absent'))
    assert again['changed'] is False and not again.get('failed')
    # once the service has left the slice, the cpuset empties and the record goes
    env.units['vllm.service']['UnitSlice'] = None
    last = env.mod(dict(slice=SLICE, state='absent', units=['vllm'], restart_units=True))
    assert last['units_restarted'] == ['vllm.service'] and last['warnings'] == []
    # emptied, then the slice (nothing runs in it any more) stopped: its cgroup is gone
    assert (SCG + '/cpuset.cpus', '') in [(w[0], w[1].strip()) for w in env.fake.writes]
    assert env.systemctl.mutating()[-1] == ['stop', SLICE] and not os.path.isdir(env.fake.path(SCG))
    assert state.get_original('cpuset', 'slice:' + SLICE) is None


def test_partition_keeps_node_kthreads_on_their_nodes(env, kernel):
    """The kernel resets kswapdN/kcompactdN to the root's CPUs on every partition change; the module puts
    those that were on their node's CPUs back (journalled), and leaves an operator's choice alone."""
    kernel.add_kthreads({0: '0-3', 1: '4-7'})
    env.sched.threads[kernel.kthreads['kcompactd0']]['cpus'] = {0, 1}   # an operator's choice
    res = env.mod(dict(path='llm', cpus='6-7', partition='root'))
    # the kernel moved all four to the root's CPUs 0-5
    assert res['changed'] and res['kthreads_reaffined'] == ['kswapd0', 'kswapd1', 'kcompactd1']
    assert [kernel.affinity(k) for k in ('kswapd0', 'kcompactd0', 'kswapd1', 'kcompactd1')] == \
        ['0-3', '0-5', '4-5', '4-5']   # kcompactd0: the kernel's reset stands (it was not node-affine)
    res = env.mod(dict(path='llm', state='absent'))
    # kcompactd0 on exactly the root's CPUs 0-5 is where the kernel's reset put it (the operator's choice
    # was gone when the partition was made): it goes to its node like the others
    assert res['kthreads_reaffined'] == ['kswapd0', 'kcompactd0', 'kswapd1', 'kcompactd1']
    assert [kernel.affinity(k) for k in ('kswapd0', 'kcompactd0', 'kswapd1', 'kcompactd1')] == \
        ['0-3', '0-3', '4-7', '4-7']
    entries = [e for e in state.read_journal() if e['setting'].startswith('affinity:')]
    assert [(e['setting'], e['before'], e['after']) for e in entries] == [
        ('affinity:kswapd0', '0-5', '0-3'), ('affinity:kswapd1', '0-5', '4-5'), ('affinity:kcompactd1', '0-5', '4-5'),
        ('affinity:kswapd0', '0-7', '0-3'), ('affinity:kcompactd0', '0-7', '0-3'), ('affinity:kswapd1', '0-7', '4-7'),
        ('affinity:kcompactd1', '0-7', '4-7')]


def test_boot_time_partition_dissolved_kthreads_go_home(env, kernel):
    """The hardening scenario: the partition (CPUs 6-7, part of node 1) was made at boot by its unit, so the
    kernel put kswapdN/kcompactdN on the root's CPUs 0-5 before any module saw them; rollback.yml dissolves
    it and each goes back to its node (the lab found them left on every CPU)."""
    kernel.add_kthreads({0: '0-3', 1: '4-7'})
    env.mod(dict(path='llm', cpus='6-7', partition='root'))
    for pid in kernel.kthreads.values():
        env.sched.threads[pid]['cpus'] = set(range(6))   # the boot: the kernel's reset, nobody re-pinned
    res = env.mod(dict(path='llm', state='absent'))
    assert res['kthreads_reaffined'] == ['kswapd0', 'kcompactd0', 'kswapd1', 'kcompactd1']
    assert [kernel.affinity(k) for k in ('kswapd0', 'kcompactd0', 'kswapd1', 'kcompactd1')] == \
        ['0-3', '0-3', '4-7', '4-7']


def test_partition_on_a_whole_node_then_dissolved(env, kernel):
    """The lab case (6.1: node 1 = CPUs 2-3 made a partition, then dissolved): kswapd1 sits where the kernel
    put it while its node is all partitioned, and goes home when the partition goes."""
    kernel.add_kthreads({0: '0-3', 1: '4-7'})
    res = env.mod(dict(path='llm', cpus='4-7', partition='root'))
    assert res['kthreads_reaffined'] == [] and kernel.affinity('kswapd1') == '0-3'
    res = env.mod(dict(path='llm', state='absent'))
    assert sorted(res['kthreads_reaffined']) == ['kcompactd0', 'kcompactd1', 'kswapd0', 'kswapd1']
    assert [kernel.affinity(k) for k in ('kswapd0', 'kcompactd0', 'kswapd1', 'kcompactd1')] == \
        ['0-3', '0-3', '4-7', '4-7']


def test_partition_invalid_restores_kthread_affinity(env, kernel):
    kernel.add_kthreads({0: '0-3', 1: '4-7'})
    env.cg.invalid_reason = 'Cpu list in cpuset.cpus not exclusive'
    res = env.mod(dict(path='llm', cpus='6-7', partition='root'))
    assert res['failed'] and res['msg'].endswith('all set back')
    assert [kernel.affinity(k) for k in ('kswapd0', 'kswapd1')] == ['0-3', '4-7']
    assert not os.path.exists(env.fake.path('/var/lib/medai-llmhost'))


def test_unit_not_found(env):
    res = env.mod(slice_args(units=['nosuch']))
    assert res['failed'] and res['msg'] == 'systemd unit nosuch.service not found (LoadState=not-found)'
    assert env.fake.writes == [] and not os.path.exists(env.fake.path(ETC))


@pytest.mark.parametrize('args,msg', [
    (dict(slice='bad name.slice', cpus='1'), "invalid slice 'bad name.slice': expected a systemd slice name"),
    (dict(slice=SLICE, cpus='1', pids=[1]), 'pids are only used with path'),
    (dict(path='llm', cpus='1', units=['x']), 'units and restart_units are only used with slice'),
    (dict(path='/sys/fs/cgroup/../etc', cpus='1'), 'has an empty, "." or ".." component: refused'),
    (dict(path='/sys/fs/cgroup', cpus='1'), 'is the root cgroup'),
    (dict(path='llm'), 'cpus is required with state=present'),
    (dict(path='llm', cpus='1', pids=[999999]), 'pid 999999 does not exist'),
])
def test_argument_refusals(env, args, msg):
    res = env.mod(args)
    assert res['failed'] and msg in res['msg']
    assert env.fake.writes == []


BIG = 'x' * 10000


@pytest.mark.parametrize('args,msg', [
    (dict(cpus='0-4294967295'), "invalid cpus '0-4294967295': number '4294967295' is out of range: at most 8191"),
    (dict(cpus='2-3', mems='0-4294967295'), "invalid mems '0-4294967295': number '4294967295' is out of range: at most 1023"),
    (dict(cpus='1,' + '9' * 5000), "invalid cpus '1,99999999"),
    (dict(cpus='0-3:1/2'), "invalid cpus '0-3:1/2': expected a list like 0-3,8,10-11 (no stride, N or (null))"),
])
@pytest.mark.parametrize('check', [False, True])
def test_cpulists_bounded_before_expansion(env, args, msg, check):
    start = time.time()
    res = env.mod(dict(path='llm', **args), check=check)
    assert time.time() - start < 5
    assert res['failed'] and res['msg'].startswith(msg), res['msg']
    assert_one_bounded_line(res['msg'])
    assert env.fake.writes == []
    assert_nothing_written(env)


def test_cpulists_bounded_by_possible_cpus_and_nodes(env):
    env.fake.file('/sys/devices/system/cpu/possible', '0-15')
    env.fake.file('/sys/devices/system/node/possible', '0-3')
    res = env.mod(dict(path='llm', cpus='0-4294967295'))
    assert res['msg'] == "invalid cpus '0-4294967295': number '4294967295' is out of range: at most 15"
    res = env.mod(dict(path='llm', cpus='12-13'))   # possible, not online
    assert res['msg'] == "cpus '12-13' include CPUs that are not online: 12-13 (online: 0-7)"
    res = env.mod(dict(path='llm', cpus='2', mems='0-9'))
    assert res['msg'] == "invalid mems '0-9': number '9' is out of range: at most 3"
    assert_nothing_written(env)


@pytest.mark.parametrize('path,msg', [
    ('system.slice/vllm.service/engine', "path 'system.slice/vllm.service/engine' is inside the unit cgroup "
     "'vllm.service', which systemd owns"),
    ('/sys/fs/cgroup/system.slice/vllm.service', "is inside the unit cgroup 'vllm.service'"),
    ('init.scope', "path 'init.scope' is inside the unit cgroup 'init.scope'"),
    ('init.scope/x', "is inside the unit cgroup 'init.scope'"),
    ('user.slice/user-1000.slice/session-1.scope/bench', "is inside the unit cgroup 'session-1.scope'"),
    ('dev-hugepages.mount/x', "is inside the unit cgroup 'dev-hugepages.mount'"),
    ('a.socket', "unit cgroup 'a.socket'"),
    ('dev-sda2.swap', "unit cgroup 'dev-sda2.swap'"),
    ('bench//engine', "path 'bench//engine' has an empty, \".\" or \"..\" component: refused"),
    ('bench/engine//', 'has an empty'),
    ('bench/./x', 'has an empty'),
    ('bench/../init.scope', 'has an empty'),
    ('bench/en\ngine', "path 'bench/en\\ngine': component 'en\\ngine' is not a cgroup name"),
    ('bench/a b', "component 'a b' is not a cgroup name"),
    ('bench/' + 'y' * 256, 'is not a cgroup name'),
    ('bench/' + BIG, "path 'bench/xxxxxxxx"),
    ('bench/cgroup.procs', 'names a cgroup interface file'),
    ('/sys/fs/cgroup/', 'is the root cgroup'),
])
@pytest.mark.parametrize('check', [False, True])
def test_path_refusals(env, path, msg, check):
    res = env.mod(dict(path=path, cpus='2-3'), check=check)
    assert res['failed'] and msg in res['msg'], res['msg']
    assert_one_bounded_line(res['msg'])
    assert env.fake.writes == [] and env.systemctl.mutating() == []
    assert_nothing_written(env)


@pytest.mark.parametrize('name', ['a/b.slice', 'llm.slice\n', 'llminference', '-.slice', 'llm--x.slice',
                                  '-llm.slice', 'llm.slice/../../x.slice', BIG + '.slice', 'llm inference.slice',
                                  'vllm.service'])
def test_slice_name_refusals(env, name):
    res = env.mod(dict(slice=name, cpus='2-3'), check=True)
    assert res['failed'] and res['msg'].startswith('invalid slice ') and 'expected a systemd slice name' in res['msg']
    assert_one_bounded_line(res['msg'])
    assert env.systemctl.commands == [] and env.fake.writes == []


def test_absent_undoes_a_path_recorded_inside_a_unit_cgroup(env):
    """A record an older release made inside a unit cgroup can still be rolled back; nothing else can."""
    cg = '/sys/fs/cgroup/system.slice/vllm.service/engine'
    env.fake.file('/sys/fs/cgroup/system.slice/vllm.service/cpuset.cpus.effective', '0-7')
    env.fake.file('/sys/fs/cgroup/system.slice/vllm.service/cpuset.mems.effective', '0-1')
    env.cg.mk(cg, cpus='2-3', cpuset=True)
    state.record_original('cpuset', 'path:' + cg, {'created': False, 'cpus': '', 'mems': None, 'partition': 'member',
                                                   'units': [], 'pids': {}}, 'test')
    res = env.mod(dict(path=cg, state='absent'))
    assert not res.get('failed') and res['changed'], res.get('msg')
    assert state.get_original('cpuset', 'path:' + cg) is None
    res = env.mod(dict(path=cg, state='absent'))
    assert res['failed'] and 'inside the unit cgroup' in res['msg']


# ---------------------------------------------------------------- issue 14: rollback with services in the slice

def live_partition(env):
    """site.yml's state: vllm.service moved into the root partition by its Slice= drop-in (recorded)."""
    env.mod(slice_args(restart_units=True))
    assert env.fake.read('/proc/300/cgroup').strip() == '0::/llminference.slice/vllm.service'
    sync_populated(env.fake)


def add_own_slice_service(env, name='other.service', pid=400):
    """A service in the slice by its own unit file's Slice= (no record of ours)."""
    env.fake.file('/proc/%d/cgroup' % pid, '0::/system.slice')
    env.units[name] = {'LoadState': 'loaded', 'ActiveState': 'active', 'MainPID': str(pid),
                       'ControlGroup': '/llminference.slice/' + name, 'UnitSlice': SLICE}
    move_proc(env.fake, env.cg, pid, SCG + '/' + name)


def test_absent_without_restart_names_the_units_left_in_the_slice(env, kernel):
    live_partition(env)
    add_own_slice_service(env)
    n = len(env.systemctl.commands)
    res = env.mod(dict(slice=SLICE, state='absent'))
    assert not res.get('failed'), res.get('msg')
    assert res['units_restarted'] == [] and res['restart_required'] is True
    assert res['units_restart_required'] == ['vllm.service', 'other.service']
    assert not [c for c in env.systemctl.commands[n:] if c[0] == 'restart']   # never restarted unasked
    left = [w for w in res['warnings'] if 'still run in it' in w]
    assert left == [SCG + ': cpuset released (partition dissolved) while vllm.service, other.service still run in it; '
                    'threads that set their own affinity keep the old CPUs: restart the units to take the new CPU set '
                    'and leave the slice (not restarted: restart_units=false)']
    assert all('\n' not in w and len(w) <= 300 for w in res['warnings'])
    assert (res['partition'], res['cpus_effective']) == ('member', '0-7')
    assert env.fake.read('/proc/300/cgroup').strip() == '0::/llminference.slice/vllm.service'
    assert state.get_original('cpuset', 'slice:' + SLICE) is not None   # the cpuset is not empty yet


def test_absent_restart_units_restarts_after_the_dissolve_and_finishes(env, kernel):
    """rollback.yml with rollback_restart_units=true: the partition is dissolved first (the service starts on
    every CPU, not on the housekeeping ones), then the unit restarts out of the slice and the cpuset empties."""
    live_partition(env)
    seen = {}
    inner = env.systemctl.on_command

    def on_command(args):
        if args[0] == 'restart':
            seen[args[1]] = (env.cg.read(SCG, 'cpuset.cpus.partition'), env.cg.read(SCG, 'cpuset.cpus.effective'))
        return inner(args)
    env.systemctl.on_command = on_command
    res = env.mod(dict(slice=SLICE, state='absent', restart_units=True), diff=True)
    assert not res.get('failed'), res.get('msg')
    assert seen == {'vllm.service': ('member', '0-7')}
    assert res['units_restarted'] == ['vllm.service'] and res['restart_required'] is False
    assert env.fake.read('/proc/300/cgroup').strip() == '0::/system.slice/vllm.service'
    # emptied, then the slice (nothing runs in it any more) stopped: its cgroup is gone
    assert (SCG + '/cpuset.cpus', '') in [(w[0], w[1].strip()) for w in env.fake.writes]
    assert env.systemctl.mutating()[-1] == ['stop', SLICE] and not os.path.isdir(env.fake.path(SCG))
    assert res['warnings'] == []
    assert state.get_original('cpuset', 'slice:' + SLICE) is None
    journal = [(e['setting'], e['after']) for e in state.read_journal()]
    assert journal[-7:] == [(SCG + '/cpuset.cpus.partition', 'member'), (SCG + '/cpuset.cpus', '0-7'),
                            (SCG + '/cpuset.mems', '0-1'), ('restart:vllm.service', 'restarted'),
                            (SCG + '/cpuset.cpus', ''), (SCG + '/cpuset.mems', ''), ('stop:' + SLICE, 'stopped')]
    assert res['diff'][0]['after'].splitlines()[-2:] == [SCG + '/cpuset.cpus: ', SCG + '/cpuset.mems: ']


def test_absent_restart_units_service_with_its_own_slice_stays_widened(env, kernel):
    """A service whose own unit file says Slice= comes back into the slice when restarted: it takes the new CPU
    set (every online CPU), the cpuset cannot empty, and the record stays for a later state=absent."""
    live_partition(env)
    add_own_slice_service(env)
    res = env.mod(dict(slice=SLICE, state='absent', restart_units=True))
    assert not res.get('failed'), res.get('msg')
    assert res['units_restarted'] == ['vllm.service', 'other.service']
    assert env.fake.read('/proc/400/cgroup').strip() == '0::/llminference.slice/other.service'
    assert env.cg.read(SCG, 'cpuset.cpus') == '0-7' and env.cg.read(SCG, 'cpuset.cpus.partition') == 'member'
    assert [w for w in res['warnings'] if 'still run in it' in w] == []
    assert any('refuses to empty cpuset.cpus and cpuset.mems while it has (ENOSPC)' in w for w in res['warnings'])
    assert state.get_original('cpuset', 'slice:' + SLICE) is not None


def test_running_units_looks_through_nested_slices(env, kernel):
    env.cg.mk(SCG)
    env.cg.mk(SCG + '/llminference-batch.slice')
    env.cg.mk(SCG + '/llminference-batch.slice/batch.service', procs=[501])
    env.cg.mk(SCG + '/idle.service')                       # no process: not running
    env.cg.mk(SCG + '/run-u7.scope', procs=[502])
    sync_populated(env.fake)
    from ansible_collections.medai.llmhost.plugins.module_utils import cgroup2
    assert [u for u, _c in cgroup2.running_units(SCG)] == ['batch.service', 'run-u7.scope']


def test_absent_stops_the_emptied_slice(env, kernel):
    """rollback.yml with rollback_restart_units=true: once the units left and the cpuset is empty, the slice is
    stopped, so its cgroup goes (the hardening scenario found llminference.slice left behind, empty)."""
    live_partition(env)
    res = env.mod(dict(slice=SLICE, state='absent', restart_units=True))
    assert not res.get('failed'), res.get('msg')
    assert env.systemctl.mutating()[-1] == ['stop', SLICE]
    assert not os.path.exists(env.fake.path(SCG))
    assert state.get_original('cpuset', 'slice:' + SLICE) is None


def test_absent_keeps_a_slice_something_still_runs_in(env, kernel):
    live_partition(env)
    res = env.mod(dict(slice=SLICE, state='absent'))
    assert not res.get('failed'), res.get('msg')
    assert ['stop', SLICE] not in env.systemctl.mutating()
    assert os.path.exists(env.fake.path(SCG))


def test_kthreads_read_before_the_partition_unit_dissolves_the_partition(env, kernel):
    """After a reboot the partition is held by its unit, whose ExecStop writes 'member': the rollback stops the
    unit before it removes its drop-in, and the kernel then moves the per-node kthreads to every CPU. They must
    be read before that, or nothing tells where they belong (the hardening scenario found them on every CPU)."""
    kernel.add_kthreads({0: '0-3', 1: '4-7'})
    live_partition(env)
    for pid in kernel.kthreads.values():
        env.sched.threads[pid]['cpus'] = set(range(4))   # the boot: the kernel's placement on the root's CPUs
    inst = 'medai-cpuset-partition@llminference.slice.service'
    env.units[inst] = {'LoadState': 'loaded', 'ActiveState': 'active'}
    inner = env.systemctl.on_command

    def on_command(args):
        if args == ['stop', inst]:   # ExecStop
            knob._write_file(env.fake.path(SCG + '/cpuset.cpus.partition'), 'member')
            env.units[inst]['ActiveState'] = 'inactive'
        return inner(args)
    env.systemctl.on_command = on_command
    res = env.mod(dict(slice=SLICE, state='absent', restart_units=True))
    assert not res.get('failed'), res.get('msg')
    assert ['stop', inst] in env.systemctl.mutating()
    assert [kernel.affinity(k) for k in ('kswapd0', 'kcompactd0', 'kswapd1', 'kcompactd1')] == \
        ['0-3', '0-3', '4-7', '4-7']
