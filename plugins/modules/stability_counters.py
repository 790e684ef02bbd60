#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: stability_counters
short_description: Read a host's memory stability counters (OOM kills, THP fallbacks, allocation stalls, swap, zswap)
version_added: 0.1.0
description:
  - Reads, and changes nothing - the counters the field report's method watches while changes are applied one
    at a time, sampled before and after each step (the M(medai.llmhost.latency_probe) measures the latency).
  - 'C(/proc/vmstat): C(oom_kill) (every OOM kill since boot, kernel 4.13+), C(thp_fault_alloc),
    C(thp_fault_fallback) (a huge page fault that fell back to small pages - the report''s "THP allocation failures"),
    C(thp_fault_fallback_charge), the per-zone C(allocstall_*) (direct reclaim stalls) and their sum C(allocstall),
    C(pswpin)/C(pswpout) (pages swapped in/out), C(zswpin)/C(zswpout)/C(zswpwb) (zswap loads, stores and write-backs,
    kernel 6.x), C(pgmajfault), C(compact_stall). Counters this kernel lacks are listed in RV(vmstat_missing).'
  - 'zswap pool size: C(stored_pages) from C(/sys/kernel/debug/zswap/) where debugfs is mounted and readable (it is
    not under kernel lockdown / Secure Boot), and C(Zswap:)/C(Zswapped:) from C(/proc/meminfo) (kernel 5.19+).'
  - 'Per service: the cgroup v2 C(memory.events) of each of O(units) (C(oom_kill) = processes of that service killed
    by an OOM, C(oom) = times it hit its limit, C(max)/C(high) = times it reached C(memory.max)/C(memory.high)).'
  - Optionally the OOM lines of the kernel log of the current boot (O(kernel_log)).
author:
  - medai.llmhost contributors (@medai-llmhost)
options:
  units:
    description:
      - systemd units whose cgroup C(memory.events) are read (C(.service) is appended to names without a suffix).
        The cgroup is found with C(systemctl show -p ControlGroup), or by walking C(/sys/fs/cgroup) when systemctl
        is missing. A unit that is not running is reported with C(available=false) and a reason, not an error.
    type: list
    elements: str
    default: []
  cgroups:
    description: Further cgroup v2 directories (absolute, or relative to C(/sys/fs/cgroup)) whose C(memory.events) are read.
    type: list
    elements: str
    default: []
  kernel_log:
    description:
      - Also scan the kernel log of the current boot (C(journalctl -k -b), or C(dmesg)) for OOM lines and count
        C(Killed process) lines.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Read-only; runs the same in check mode.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: linux
notes:
  - Counters are cumulative since boot (vmstat) or since the cgroup was created (memory.events; a restarted service
    gets a new cgroup and starts from zero). Compare two samples with the C(medai.llmhost.counters_delta) filter.
  - Reading debugfs needs root (C(become=true)); without it C(stored_pages) in RV(zswap) is V(null) with a reason.
seealso:
  - module: medai.llmhost.latency_probe
  - name: cgroup v2 memory.events
    description: Meaning of oom, oom_kill, max, high.
    link: https://docs.kernel.org/admin-guide/cgroup-v2.html#memory-interface-files
'''

EXAMPLES = r'''
- name: Counters before a change
  medai.llmhost.stability_counters:
    units: [vllm]
  become: true
  register: before

- name: Counters after it, with the kernel log's OOM lines
  medai.llmhost.stability_counters:
    units: [vllm]
    kernel_log: true
  become: true
  register: after

- name: What changed in between
  ansible.builtin.debug:
    msg: "{{ after | medai.llmhost.counters_delta(before) }}"
'''

RETURN = r'''
vmstat:
  description: Selected /proc/vmstat counters (only those this kernel has).
  returned: always
  type: dict
  sample: {oom_kill: 0, thp_fault_alloc: 1043, thp_fault_fallback: 12, allocstall: 3, allocstall_normal: 3,
           pswpin: 0, pswpout: 0, zswpin: 0, zswpout: 0}
vmstat_missing:
  description: Counters asked for that this kernel does not have.
  returned: always
  type: list
  elements: str
  sample: [zswpwb]
oom_kills:
  description: Kernel-wide OOM kills since boot (C(oom_kill) of /proc/vmstat; V(null) on kernels before 4.13).
  returned: always
  type: int
  sample: 0
zswap:
  description: zswap pool size and where it was read from.
  returned: always
  type: dict
  sample: {stored_pages: 5120, pool_total_size: 8388608, source: debugfs, meminfo_kb: {Zswap: 8192, Zswapped: 20480},
           reason: null}
meminfo:
  description: MemTotal, MemAvailable, SwapTotal, SwapFree, Zswap, Zswapped, AnonHugePages from /proc/meminfo (kB).
  returned: always
  type: dict
cgroups:
  description: Per unit name (or cgroup path) - path, available, events (memory.events), reason.
  returned: always
  type: dict
  sample: {vllm.service: {path: /sys/fs/cgroup/system.slice/vllm.service, available: true,
           events: {low: 0, high: 0, max: 0, oom: 0, oom_kill: 0, oom_group_kill: 0}, reason: null}}
kernel_log:
  description: OOM lines of the kernel log of this boot (last 20) and the number of killed processes.
  returned: when O(kernel_log=true)
  type: dict
  sample: {lines: [], killed_processes: 0, source: journalctl}
flat:
  description: All numeric counters as one flat dict (C(vmstat.oom_kill), C(cgroup.vllm.service.oom_kill), ...).
  returned: always
  type: dict
timestamp:
  description: Unix time of the sample on the managed host.
  returned: always
  type: float
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.medai.llmhost.plugins.module_utils import stability


def unit_name(name):
    return name if '.' in name.rsplit('/', 1)[-1] else name + '.service'


def unit_cgroup(module, unit):
    systemctl = module.get_bin_path('systemctl')
    if systemctl:
        rc, out, _err = module.run_command([systemctl, 'show', '-p', 'ControlGroup', '--value', unit])
        if rc == 0 and out.strip():
            return stability.normalize_cgroup(out.strip())
        if rc == 0:
            return None  # unit known but has no cgroup: not running
    return stability.find_unit_cgroup(unit)


def kernel_log(module):
    jc = module.get_bin_path('journalctl')
    if jc:
        rc, out, err = module.run_command([jc, '-k', '-b', '--no-pager', '-q', '-o', 'short-monotonic',
                                           '--grep', 'Out of memory|oom-kill|oom-killer|Memory cgroup out of memory'])
        if rc in (0, 1):  # 1 = no match
            res = stability.kernel_log_ooms(out)
            res['source'] = 'journalctl'
            return res
    dmesg = module.get_bin_path('dmesg')
    if dmesg:
        rc, out, err = module.run_command([dmesg])
        if rc == 0:
            res = stability.kernel_log_ooms(out)
            res['source'] = 'dmesg'
            return res
    return {'lines': [], 'killed_processes': None, 'source': None,
            'reason': 'neither journalctl -k nor dmesg could be read'}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            units=dict(type='list', elements='str', default=[]),
            cgroups=dict(type='list', elements='str', default=[]),
            kernel_log=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    vm = stability.vmstat()
    result = {
        'changed': False,
        'timestamp': time.time(),
        'vmstat': vm['counters'],
        'vmstat_missing': vm['missing'],
        'oom_kills': vm['counters'].get('oom_kill'),
        'zswap': stability.zswap_stats(),
        'meminfo': stability.meminfo(),
        'cgroups': {},
    }
    if not vm['available']:
        module.warn('/proc/vmstat is not readable: no kernel counters')
    for u in module.params['units']:
        name = unit_name(u)
        cg = unit_cgroup(module, name)
        if cg is None:
            result['cgroups'][name] = {'path': None, 'available': False, 'events': {},
                                       'reason': 'unit %s has no cgroup (not running or unknown)' % name}
        else:
            result['cgroups'][name] = stability.memory_events(cg)
    for cg in module.params['cgroups']:
        result['cgroups'][cg] = stability.memory_events(cg)
    if module.params['kernel_log']:
        result['kernel_log'] = kernel_log(module)
    result['flat'] = stability.flatten(result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
