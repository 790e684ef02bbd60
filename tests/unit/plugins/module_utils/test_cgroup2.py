# -*- coding: utf-8 -*-
"""cgroup2.reaffine_node_kthreads on a fake /proc and /sys tree with a fake affinity syscall layer.

The kernel (update_tasks_cpumask(&top_cpuset), 5.19+) sets every non-per-CPU task of the root cgroup -
kswapdN, kcompactdN - to the root's effective CPUs whenever a partition is created or dissolved. A
partition made at boot (by the medai-cpuset-partition@ unit, before any play runs) therefore leaves them on
the root's CPUs of that boot, and the rollback's dissolve must still bring them home."""
from __future__ import absolute_import, division, print_function

import errno

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import cgroup2
from ansible_collections.medai.llmhost.plugins.module_utils import sched
from ansible_collections.medai.llmhost.tests.unit.plugins.modules.sched_fakes import FakeSched, make_proc


class Host(object):
    """A host with NUMA nodes {node: cpus}; kswapdN/kcompactdN start on their node's CPUs."""

    def __init__(self, fake, fsched, nodes):
        self.fake, self.sched, self.pids = fake, fsched, {}
        online = sorted(c for cpus in nodes.values() for c in cpus)
        fake.file('/sys/devices/system/cpu/online', '%d-%d' % (online[0], online[-1]))
        for node, cpus in sorted(nodes.items()):
            fake.file('/sys/devices/system/node/node%d/cpulist' % node, fmt(cpus))
            for i, comm in enumerate(('kswapd%d' % node, 'kcompactd%d' % node)):
                pid = 40 + 2 * node + i
                make_proc(fake, fsched, pid, comm, [], cgroup='/')
                fsched.threads[pid]['cpus'] = set(cpus)
                self.pids[comm] = pid
        make_proc(fake, fsched, 500, 'python3', ['python3'], cgroup='/system.slice/x.service')  # not a node kthread
        self.root(online)

    def root(self, cpus):
        """The root cgroup's effective CPUs (what the partitions leave it)."""
        self.fake.file('/sys/fs/cgroup/cpuset.cpus.effective', fmt(cpus))

    def kernel_partition_change(self, root_cpus):
        """What the kernel does on a partition change: root effective CPUs, every root kthread reset to them."""
        self.root(root_cpus)
        for pid in self.pids.values():
            self.sched.threads[pid]['cpus'] = set(root_cpus)

    def affinity(self, comm):
        return sorted(self.sched.threads[self.pids[comm]]['cpus'])


def fmt(cpus):
    from ansible_collections.medai.llmhost.plugins.module_utils import cpus as cpulib
    return cpulib.format_cpulist(cpus)


@pytest.fixture
def fsched(monkeypatch):
    fs = FakeSched(ncpus=8)
    monkeypatch.setattr(sched, 'SYS', fs)   # never the real affinity syscalls
    return fs


def change(host, root_after):
    """A partition change as the cpuset module makes it: snapshot, kernel reset, re-affine."""
    before, root_before = cgroup2.node_kthreads(), cgroup2.root_effective_cpus()
    host.kernel_partition_change(root_after)
    return cgroup2.reaffine_node_kthreads(before, root_before)


def test_node_kthreads_found_by_name_only(fake, fsched):
    host = Host(fake, fsched, {0: [0, 1], 1: [2, 3]})
    found = cgroup2.node_kthreads()
    assert sorted((c, n, sorted(cpus)) for c, n, cpus in found.values()) == [
        ('kcompactd0', 0, [0, 1]), ('kcompactd1', 1, [2, 3]), ('kswapd0', 0, [0, 1]), ('kswapd1', 1, [2, 3])]
    assert 500 not in found and set(found) == set(host.pids.values())


def test_one_node_partition_created_keeps_node_cpus_outside_it(fake, fsched):
    """One node (root's CPUs before == all CPUs of the node): kswapd0 goes to the node's CPUs outside the
    new partition - which here is what the kernel chose too."""
    host = Host(fake, fsched, {0: [0, 1, 2, 3]})
    done, failed = change(host, [0, 1])
    assert failed == [] and done == []
    assert host.affinity('kswapd0') == [0, 1] and host.affinity('kcompactd0') == [0, 1]
    # dissolved again: back on the whole node (the kernel's reset is that too: nothing to set)
    done, failed = change(host, [0, 1, 2, 3])
    assert failed == [] and done == []
    assert host.affinity('kswapd0') == [0, 1, 2, 3]


def test_two_nodes_partition_created_at_runtime_then_dissolved(fake, fsched):
    host = Host(fake, fsched, {0: [0, 1], 1: [2, 3]})
    done, _f = change(host, [0, 1, 2])            # partition: CPU 3 (part of node 1)
    assert sorted(c for c, _b, _a in done) == ['kcompactd0', 'kcompactd1', 'kswapd0', 'kswapd1']
    assert (host.affinity('kswapd0'), host.affinity('kswapd1')) == ([0, 1], [2])   # node CPUs outside it
    done, _f = change(host, [0, 1, 2, 3])         # dissolved
    assert (host.affinity('kswapd0'), host.affinity('kswapd1')) == ([0, 1], [2, 3])


@pytest.mark.parametrize('partition, root_at_boot', [
    ([3], [0, 1, 2]),          # part of node 1: node 1 keeps CPU 2 outside the partition
    ([2, 3], [0, 1]),          # all of node 1 (the lab's layout)
    ([1, 2, 3], [0]),          # all of node 1 and part of node 0
])
def test_boot_time_partition_dissolved_brings_kthreads_home(fake, fsched, partition, root_at_boot):
    """The partition was made at boot: no module saw the kthreads on their nodes; the kernel put all of them
    on the root's CPUs of that boot. Dissolving it (rollback.yml) must bring each back to its node's CPUs
    (the lab found them left on all CPUs 0-3)."""
    host = Host(fake, fsched, {0: [0, 1], 1: [2, 3]})
    host.kernel_partition_change(root_at_boot)   # at boot, before any play
    done, failed = change(host, [0, 1, 2, 3])
    assert failed == []
    assert [host.affinity(c) for c in ('kswapd0', 'kcompactd0', 'kswapd1', 'kcompactd1')] == \
        [[0, 1], [0, 1], [2, 3], [2, 3]]
    assert sorted(c for c, before, _a in done) == ['kcompactd0', 'kcompactd1', 'kswapd0', 'kswapd1']
    assert all(before == set(range(4)) for _c, before, _a in done)   # journalled from the kernel's reset


def test_boot_time_partition_resized_keeps_node_cpus_outside_partitions(fake, fsched):
    """site.yml after a reboot changes the boot-time partition 3 to 2-3: node 0's threads go to node 0,
    node 1's have no CPU outside the partition left and stay where the kernel put them."""
    host = Host(fake, fsched, {0: [0, 1], 1: [2, 3]})
    host.kernel_partition_change([0, 1, 2])
    done, failed = change(host, [0, 1])
    assert failed == [] and done == []            # the kernel's [0, 1] is node 0 already
    assert [host.affinity(c) for c in ('kswapd0', 'kswapd1')] == [[0, 1], [0, 1]]


def test_operator_choice_left_alone(fake, fsched):
    host = Host(fake, fsched, {0: [0, 1], 1: [2, 3]})
    fsched.threads[host.pids['kcompactd1']]['cpus'] = {3}     # an operator pinned it
    fsched.threads[host.pids['kswapd0']]['cpus'] = {0, 1, 2, 3}  # no partition before: all CPUs is no reset
    before, root_before = cgroup2.node_kthreads(), cgroup2.root_effective_cpus()
    host.root([0, 1, 2])
    done, failed = cgroup2.reaffine_node_kthreads(before, root_before)
    assert failed == [] and [c for c, _b, _a in done] == ['kswapd1']
    assert host.affinity('kcompactd1') == [3] and host.affinity('kswapd0') == [0, 1, 2, 3]
    assert host.affinity('kswapd1') == [2]


def test_node_without_cpus_outside_partitions_keeps_kernel_placement(fake, fsched):
    host = Host(fake, fsched, {0: [0, 1], 1: [2, 3]})
    done, _f = change(host, [0, 1])
    assert host.affinity('kswapd1') == [0, 1] and 'kswapd1' not in [c for c, _b, _a in done]


def test_refused_affinity_is_reported_not_raised(fake, fsched, monkeypatch):
    host = Host(fake, fsched, {0: [0, 1], 1: [2, 3]})
    host.kernel_partition_change([0, 1, 2])
    real = fsched.setaffinity

    def setaffinity(tid, cpus):
        if tid == host.pids['kswapd1']:
            raise OSError(errno.EINVAL, 'Invalid argument')
        return real(tid, cpus)
    monkeypatch.setattr(fsched, 'setaffinity', setaffinity)
    done, failed = change(host, [0, 1, 2, 3])
    assert failed == [('kswapd1', 'Invalid argument')]
    assert sorted(c for c, _b, _a in done) == ['kcompactd0', 'kcompactd1', 'kswapd0']
