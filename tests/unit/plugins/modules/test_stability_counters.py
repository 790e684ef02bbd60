# -*- coding: utf-8 -*-
"""stability_counters on fake /proc, /sys/fs/cgroup and debugfs trees (never the real machine's)."""
from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import stability
from ansible_collections.medai.llmhost.plugins.modules import stability_counters
from ansible_collections.medai.llmhost.tests.unit.plugins.modules.knob_module_helpers import run_module, snapshot

VMSTAT_61 = """nr_free_pages 123456
pgmajfault 77
pswpin 10
pswpout 25
allocstall_dma 0
allocstall_dma32 1
allocstall_normal 4
allocstall_movable 2
allocstall_device 0
compact_stall 3
oom_kill 2
thp_fault_alloc 1043
thp_fault_fallback 12
thp_fault_fallback_charge 0
zswpin 5
zswpout 40
"""

MEMINFO = """MemTotal:        2009400 kB
MemFree:          100000 kB
MemAvailable:    1500000 kB
SwapTotal:       1048572 kB
SwapFree:        1048000 kB
Zswap:               160 kB
Zswapped:            512 kB
AnonHugePages:      4096 kB
"""

EVENTS = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"


@pytest.fixture
def host(fake):
    fake.file('/proc/vmstat', VMSTAT_61)
    fake.file('/proc/meminfo', MEMINFO)
    fake.file('/sys/kernel/debug/zswap/stored_pages', '128')
    fake.file('/sys/kernel/debug/zswap/pool_total_size', '40960')
    fake.file('/sys/fs/cgroup/system.slice/vllm.service/memory.events', EVENTS)
    fake.file('/sys/fs/cgroup/llminference.slice/vllm-standin.service/memory.events', "oom 0\noom_kill 0\n")
    fake.file('/sys/fs/cgroup/system.slice/nomem.service/cgroup.procs', '')
    return fake


def test_vmstat_selection_and_allocstall_sum(host):
    vm = stability.vmstat()
    c = vm['counters']
    assert c['oom_kill'] == 2 and c['thp_fault_fallback'] == 12 and c['thp_fault_alloc'] == 1043
    assert c['allocstall'] == 7 and c['allocstall_normal'] == 4
    assert c['pswpin'] == 10 and c['pswpout'] == 25 and c['zswpin'] == 5 and c['zswpout'] == 40
    assert 'nr_free_pages' not in c
    assert 'zswpwb' in vm['missing'] and 'oom_kill' not in vm['missing']


def test_old_kernel_single_allocstall_and_missing_counters(fake):
    fake.file('/proc/vmstat', 'allocstall 9\npswpin 1\npswpout 2\n')
    vm = stability.vmstat()
    assert vm['counters']['allocstall'] == 9
    assert 'oom_kill' in vm['missing'] and 'thp_fault_fallback' in vm['missing'] and 'allocstall' not in vm['missing']


def test_module_full_sample(host):
    calls = []

    def rc(cmd):
        calls.append(cmd)
        if cmd[:2] == ['/bin/systemctl', 'show']:
            return {'vllm.service': (0, '/system.slice/vllm.service\n', ''),
                    'stopped.service': (0, '\n', '')}[cmd[-1]]
        raise AssertionError(cmd)
    before = snapshot(host.root)
    res = run_module(stability_counters, {'units': ['vllm', 'stopped.service'],
                                          'cgroups': ['llminference.slice/vllm-standin.service',
                                                      '/sys/fs/cgroup/system.slice/nomem.service']},
                     bins={'systemctl': '/bin/systemctl'}, run_command=rc, check_mode=True)
    assert not res.get('failed'), res
    assert snapshot(host.root) == before            # read-only
    assert res['changed'] is False and res['oom_kills'] == 2
    assert res['zswap']['stored_pages'] == 128 and res['zswap']['source'] == 'debugfs'
    assert res['zswap']['pool_total_size'] == 40960
    assert res['zswap']['meminfo_kb'] == {'Zswap': 160, 'Zswapped': 512}
    assert res['meminfo']['SwapTotal'] == 1048572
    v = res['cgroups']['vllm.service']
    assert v['available'] and v['path'] == '/sys/fs/cgroup/system.slice/vllm.service'
    assert v['events']['oom_kill'] == 1 and v['events']['max'] == 3
    assert res['cgroups']['stopped.service']['available'] is False
    assert 'not running' in res['cgroups']['stopped.service']['reason']
    assert res['cgroups']['llminference.slice/vllm-standin.service']['events'] == {'oom': 0, 'oom_kill': 0}
    nomem = res['cgroups']['/sys/fs/cgroup/system.slice/nomem.service']
    assert nomem['available'] is False and 'memory controller' in nomem['reason']
    assert res['flat']['cgroup.vllm.service.oom_kill'] == 1 and res['flat']['vmstat.thp_fault_fallback'] == 12
    assert res['flat']['zswap.stored_pages'] == 128 and 'kernel_log' not in res


def test_unit_cgroup_found_by_walking_without_systemctl(host):
    res = run_module(stability_counters, {'units': ['vllm-standin']})
    cg = res['cgroups']['vllm-standin.service']
    assert cg['path'] == '/sys/fs/cgroup/llminference.slice/vllm-standin.service' and cg['available']


def test_no_debugfs_falls_back_to_meminfo(fake):
    fake.file('/proc/vmstat', VMSTAT_61)
    fake.file('/proc/meminfo', MEMINFO)
    res = run_module(stability_counters, {})
    z = res['zswap']
    assert z['stored_pages'] is None and z['source'] == 'meminfo' and 'debugfs is not mounted' in z['reason']
    assert z['meminfo_kb']['Zswapped'] == 512


def test_kernel_log_oom_lines(host):
    log = ("[ 1234.5] vllm invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0\n"
           "[ 1234.6] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),task=python3,pid=812,uid=0\n"
           "[ 1234.7] Out of memory: Killed process 812 (python3) total-vm:9000kB, anon-rss:8000kB\n")

    def rc(cmd):
        assert cmd[0] == '/usr/bin/journalctl' and '-k' in cmd and '-b' in cmd
        return 0, log, ''
    res = run_module(stability_counters, {'kernel_log': True}, bins={'journalctl': '/usr/bin/journalctl'},
                     run_command=rc)
    kl = res['kernel_log']
    assert kl['killed_processes'] == 1 and len(kl['lines']) == 3 and kl['source'] == 'journalctl'
    assert res['flat']['kernel_log.killed_processes'] == 1


def test_kernel_log_no_match_and_no_tools(host):
    res = run_module(stability_counters, {'kernel_log': True}, bins={'journalctl': '/j'},
                     run_command=lambda cmd: (1, '', ''))
    assert res['kernel_log']['killed_processes'] == 0
    res = run_module(stability_counters, {'kernel_log': True})
    assert res['kernel_log']['killed_processes'] is None and 'reason' in res['kernel_log']
