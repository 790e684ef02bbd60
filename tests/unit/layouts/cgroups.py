# -*- coding: utf-8 -*-
"""cgroup layouts: v2 (unified, systemd default since Debian 11 / RHEL 9 / Ubuntu 21.10), v1 (legacy,
e.g. RHEL 7/8 defaults and CentOS-era GPU servers) and systemd's hybrid mode (v1 controllers + /unified)."""
from __future__ import absolute_import, division, print_function

V1_HIERARCHIES = ('blkio', 'cpu,cpuacct', 'cpuset', 'devices', 'freezer', 'hugetlb', 'memory', 'misc',
                  'net_cls,net_prio', 'perf_event', 'pids', 'rdma')
V1_LINKS = {'cpu': 'cpu,cpuacct', 'cpuacct': 'cpu,cpuacct', 'net_cls': 'net_cls,net_prio',
            'net_prio': 'net_cls,net_prio'}


def layout_cgroup_v2(fk, partition_child=True, cpus='0-127', mems='0-1'):
    r = '/sys/fs/cgroup/'
    fk.file(r + 'cgroup.controllers', 'cpuset cpu io memory hugetlb pids rdma misc', mode=0o444)
    fk.file(r + 'cgroup.subtree_control', 'cpuset cpu io memory pids')
    fk.file(r + 'cgroup.procs', '1')
    fk.file(r + 'cgroup.max.depth', 'max')
    fk.file(r + 'cpuset.cpus.effective', cpus, mode=0o444)
    fk.file(r + 'cpuset.mems.effective', mems, mode=0o444)
    for child in ('init.scope', 'system.slice', 'user.slice'):
        fk.file(r + child + '/cgroup.procs', '')
        fk.file(r + child + '/cgroup.controllers', 'cpuset cpu io memory pids', mode=0o444)
        fk.file(r + child + '/cpuset.cpus', '')
        if partition_child:
            fk.file(r + child + '/cpuset.cpus.partition', 'member')


def layout_cgroup_v2_no_cpuset(fk):
    """A v2 host whose root offers no cpuset controller (e.g. a container's delegated subtree)."""
    r = '/sys/fs/cgroup/'
    fk.file(r + 'cgroup.controllers', 'cpu io memory pids', mode=0o444)
    fk.file(r + 'cgroup.subtree_control', '')
    fk.file(r + 'cgroup.procs', '1')


def _v1(fk, r='/sys/fs/cgroup/'):
    for h in V1_HIERARCHIES:
        fk.file(r + h + '/cgroup.procs', '1')
        fk.file(r + h + '/tasks', '1')
        fk.file(r + h + '/release_agent', '')
    fk.file(r + 'cpuset/cpuset.cpus', '0-127')
    fk.file(r + 'cpuset/cpuset.mems', '0-1')
    fk.file(r + 'cpuset/cpuset.cpu_exclusive', '1')
    for name, target in V1_LINKS.items():
        fk.symlink(target, r + name)  # relative links, as systemd creates them
    fk.file(r + 'systemd/cgroup.procs', '1')
    fk.file(r + 'systemd/tasks', '1')


def layout_cgroup_v1(fk):
    _v1(fk)


def layout_cgroup_hybrid(fk):
    _v1(fk)
    fk.file('/sys/fs/cgroup/unified/cgroup.controllers', '', mode=0o444)
    fk.file('/sys/fs/cgroup/unified/cgroup.subtree_control', '')
    fk.file('/sys/fs/cgroup/unified/cgroup.procs', '1')
