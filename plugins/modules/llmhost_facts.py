#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: llmhost_facts
short_description: Gather kernel, cgroup, NUMA, GPU, block, memory, swap and scheduler facts of an LLM-serving host
version_added: 0.1.0
description:
  - Reads what the tuning roles of this collection need to decide per host, and nothing else, from
    C(/sys) and C(/proc) (plus C(/boot/config-<release>) and C(/dev/disk/by-id)).
  - Fast and read-only. It runs no command (no C(nvidia-smi), no C(lspci)) and changes nothing.
  - GPU to NUMA mapping comes from the kernel (C(/sys/bus/pci/devices/<address>/numa_node) and
    C(local_cpulist)), not from C(nvidia-smi -q) output.
  - Scheduler tunables are located per kernel. Up to 5.12 they are C(/proc/sys/kernel/sched_*_ns).
    From 5.13 to 6.5 they are in debugfs (C(/sys/kernel/debug/sched/latency_ns) and friends).
    From 6.6 (EEVDF) only C(/sys/kernel/debug/sched/base_slice_ns) is left. The module reports the
    location expected from the version and the location actually found. When none is usable it
    says why (debugfs not mounted, kernel lockdown, permission).
  - A file that is missing or cannot be read gives C(null) (or an empty list) in the facts, never a failure.
  - Use privilege escalation (C(become)) to see root-only files such as debugfs.
  - The facts replace C(ansible_facts.llmhost) as a whole. Gathering a subset drops the other subsets from it.
  - The reading functions live in C(medai.llmhost.plugins.module_utils.facts) for reuse by other modules.
author:
  - medai.llmhost contributors (@medai-llmhost)
options:
  gather:
    description:
      - Fact subsets to gather. V(all) gathers every subset.
      - V(sched) also reads the kernel release, lockdown state and config it needs, but reports the
        C(kernel) subset only when V(kernel) is asked for.
    type: list
    elements: str
    choices: [all, kernel, cgroup, numa, gpus, block, memory, sched, swap]
    default: [all]
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
    details: The module only reads; it behaves identically in check mode.
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: linux
notes:
  - GPU C(index) is the position in PCI bus-id order. That is C(nvidia-smi)'s index. It is also CUDA's device index
    only when C(CUDA_DEVICE_ORDER=PCI_BUS_ID) is set (CUDA's default order is C(FASTEST_FIRST)) and
    C(CUDA_VISIBLE_DEVICES) is unset. Set C(CUDA_DEVICE_ORDER=PCI_BUS_ID) in the inference service's environment.
  - GPUs are the PCI functions with vendor C(0x10de) and a display class C(0x03xxxx) (C(0x030000) VGA,
    C(0x030200) 3D controller). NVSwitches (C(0x068000)), the GPUs' HDA audio functions and non-NVIDIA devices
    such as Mellanox NICs (vendor C(0x15b3)) or a BMC's VGA are not listed.
  - Block devices C(loop*), C(ram*) and C(zram*) are skipped. They are memory- or file-backed, so the I/O scheduler
    is not worth tuning there. zram swap still shows in the C(swap) facts.
  - C(/sys/devices/system/cpu/isolated) reflects only the C(isolcpus=) boot parameter. It does not show cgroup v2
    isolated partitions.
seealso:
  - name: Kernel documentation on the scheduler debugfs interface
    description: Where the CFS/EEVDF tunables moved in 5.13 and 6.6.
    link: https://docs.kernel.org/scheduler/sched-design-CFS.html
  - name: Kernel documentation on cgroup v2 cpuset partitions
    description: cpuset.cpus.partition (root, isolated, member).
    link: https://docs.kernel.org/admin-guide/cgroup-v2.html#cpuset
'''

EXAMPLES = r'''
- name: Gather everything
  medai.llmhost.llmhost_facts:
  become: true

- name: Only the GPU and NUMA facts (fast; no kernel config parsing)
  medai.llmhost.llmhost_facts:
    gather: [gpus, numa]

- name: Bind vLLM to the NUMA node of GPU 0
  ansible.builtin.set_fact:
    vllm_numa_node: "{{ ansible_facts.llmhost.gpus[0].numa_node | default(0, true) }}"
    vllm_cpus: "{{ ansible_facts.llmhost.gpus[0].local_cpulist }}"

- name: Refuse to touch scheduler tunables that this kernel does not expose
  ansible.builtin.debug:
    msg: "CFS/EEVDF tunables: {{ ansible_facts.llmhost.sched.tunables_location }}
          ({{ ansible_facts.llmhost.sched.unavailable_reason | default('available', true) }})"

- name: Fail early on cgroup v1 hosts where cpuset partitions are not available
  ansible.builtin.assert:
    that: ansible_facts.llmhost.cgroup.cpuset_partitions
    fail_msg: "cgroup {{ ansible_facts.llmhost.cgroup.version }}: no cgroup v2 cpuset partitions"
'''

RETURN = r'''
ansible_facts:
  description: Facts to add to C(ansible_facts).
  returned: always
  type: dict
  contains:
    llmhost:
      description:
        - Host facts. Only the gathered subsets are present, plus RV(ansible_facts.llmhost.gathered)
          and RV(ansible_facts.llmhost.notes).
      returned: always
      type: dict
      contains:
        gathered:
          description: The subsets gathered, in canonical order.
          returned: always
          type: list
          elements: str
          sample: [kernel, cgroup, numa, gpus, block, memory, sched, swap]
        notes:
          description:
            - Human-readable findings. Examples are a GPU without NUMA info, unavailable scheduler tunables,
              RT throttling disabled, zswap enabled without swap, and kernel config not found.
          returned: always
          type: list
          elements: str
          sample: ["GPU 0 (0000:01:00.0): no NUMA info (numa_node is -1)"]
        kernel:
          description: Kernel facts.
          returned: when gathered
          type: dict
          contains:
            release:
              description: Kernel release (C(uname -r)).
              type: str
              returned: always
              sample: 6.1.0-28-amd64
            version:
              description: C([major, minor]) parsed from the release; null when it cannot be parsed.
              type: list
              elements: int
              returned: always
              sample: [6, 1]
            build:
              description: C(/proc/sys/kernel/version) (C(uname -v)).
              type: str
              returned: always
              sample: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)"
            cmdline:
              description: C(/proc/cmdline).
              type: str
              returned: always
            cmdline_args:
              description: The command line as a dict, name to value (null for a bare flag; the last occurrence wins).
              type: dict
              returned: always
              sample: {"ro": null, "isolcpus": "16-31", "transparent_hugepage": "madvise"}
            lockdown:
              description: Active kernel lockdown mode (C(none), C(integrity), C(confidentiality)); null without the lockdown LSM.
              type: str
              returned: always
            config:
              description:
                - Selected kernel config options, name to C(y), C(m), C(n) (from C(# ... is not set)) or the value.
                - Always has C(CONFIG_RT_GROUP_SCHED), C(CONFIG_CPUSETS), C(CONFIG_CPUSETS_V1), C(CONFIG_SCHED_DEBUG),
                  C(CONFIG_IKCONFIG_PROC) and C(CONFIG_NUMA), null when absent. Adds every C(CONFIG_PREEMPT*),
                  C(CONFIG_ZSWAP*) and C(CONFIG_TRANSPARENT_HUGEPAGE*) option found.
                - Null when neither C(/proc/config.gz) nor C(/boot/config-<release>) exists.
              type: dict
              returned: always
              sample: {"CONFIG_RT_GROUP_SCHED": "n", "CONFIG_CPUSETS_V1": null, "CONFIG_PREEMPT_DYNAMIC": "y", "CONFIG_ZSWAP": "y"}
            config_source:
              description: File the config was read from (C(/proc/config.gz) wins over C(/boot)); null when none.
              type: str
              returned: always
              sample: /proc/config.gz
        cgroup:
          description: cgroup facts.
          returned: when gathered
          type: dict
          contains:
            version:
              description:
                - V(2) when C(/sys/fs/cgroup/cgroup.controllers) exists (unified hierarchy).
                - V(hybrid) for v1 controller hierarchies plus C(/sys/fs/cgroup/unified).
                - V(1) for v1 hierarchies only, null when nothing is mounted.
              type: raw
              returned: always
              sample: 2
            mount:
              description: C(/sys/fs/cgroup), or null when no cgroup hierarchy was found.
              type: str
              returned: always
            unified_mount:
              description: Mount point of the v2 hierarchy (C(/sys/fs/cgroup) or C(/sys/fs/cgroup/unified)), or null.
              type: str
              returned: always
            controllers:
              description: cgroup v2 the root's C(cgroup.controllers); cgroup v1 and hybrid the mounted v1 controllers.
              type: list
              elements: str
              returned: always
              sample: [cpuset, cpu, io, memory, hugetlb, pids, rdma, misc]
            unified_controllers:
              description: Controllers of the v2 hierarchy (empty in typical hybrid mode).
              type: list
              elements: str
              returned: always
            v1_controllers:
              description: Controllers mounted as v1 hierarchies (sorted).
              type: list
              elements: str
              returned: always
            subtree_control:
              description: The v2 root's C(cgroup.subtree_control).
              type: list
              elements: str
              returned: always
            cpuset_partitions:
              description:
                - Whether cgroup v2 cpuset partitions (C(cpuset.cpus.partition)) can be used.
                - True when the v2 root offers C(cpuset) or a child cgroup has C(cpuset.cpus.partition).
              type: bool
              returned: always
            cpuset_v1:
              description: A v1 cpuset hierarchy is mounted (what the legacy C(cset) tool needs).
              type: bool
              returned: always
            cpus_effective:
              description: The v2 root's C(cpuset.cpus.effective), or null.
              type: str
              returned: always
            mems_effective:
              description: The v2 root's C(cpuset.mems.effective), or null.
              type: str
              returned: always
        numa:
          description: NUMA and CPU facts.
          returned: when gathered
          type: dict
          contains:
            nodes:
              description: NUMA nodes from C(/sys/devices/system/node/node*), sorted by id (empty without NUMA support).
              type: list
              elements: dict
              returned: always
              contains:
                id:
                  description: Node id.
                  type: int
                  returned: always
                cpulist:
                  description: The node's CPUs as the kernel lists them (empty for a memory-only node).
                  type: str
                  returned: always
                  sample: 0-31,64-95
                cpus:
                  description: The node's CPUs, expanded.
                  type: list
                  elements: int
                  returned: always
                memory_mib:
                  description: C(MemTotal) of the node in MiB, or null.
                  type: int
                  returned: always
                distance:
                  description: The node's row of the distance matrix.
                  type: list
                  elements: int
                  returned: always
                  sample: [10, 21]
            node_count:
              description: Number of NUMA nodes.
              type: int
              returned: always
            online:
              description: Online CPUs (cpulist string).
              type: str
              returned: always
            online_cpus:
              description: Online CPUs, expanded.
              type: list
              elements: int
              returned: always
            possible:
              description: Possible CPUs (cpulist string).
              type: str
              returned: always
            possible_cpus:
              description: Possible CPUs, expanded.
              type: list
              elements: int
              returned: always
            isolated:
              description:
                - C(/sys/devices/system/cpu/isolated) (CPUs isolated by C(isolcpus=)). It is an empty string when there are none.
                - Null when the file does not exist (the same applies to C(online), C(possible) and C(nohz_full)).
              type: str
              returned: always
            isolated_cpus:
              description: Isolated CPUs, expanded.
              type: list
              elements: int
              returned: always
            nohz_full:
              description:
                - C(/sys/devices/system/cpu/nohz_full). It is empty when there are none; the kernel then prints C((null)).
                - Null when the kernel has no such file (no C(CONFIG_NO_HZ_FULL)).
              type: str
              returned: always
            nohz_full_cpus:
              description: nohz_full CPUs, expanded.
              type: list
              elements: int
              returned: always
        gpus:
          description: NVIDIA GPUs in PCI bus-id order.
          returned: when gathered
          type: list
          elements: dict
          contains:
            index:
              description: Position in PCI bus-id order (see the notes on CUDA_DEVICE_ORDER).
              type: int
              returned: always
            pci:
              description: PCI address.
              type: str
              returned: always
              sample: "0000:18:00.0"
            vendor:
              description: PCI vendor id (always C(0x10de)).
              type: str
              returned: always
            device:
              description: PCI device id.
              type: str
              returned: always
              sample: "0x2330"
            subsystem_device:
              description: PCI subsystem device id (board variant).
              type: str
              returned: always
            class:
              description: PCI class (C(0x030200) 3D controller, C(0x030000) VGA).
              type: str
              returned: always
            numa_node:
              description: NUMA node of the GPU; null when the kernel reports -1 (no NUMA info).
              type: int
              returned: always
            local_cpulist:
              description: CPUs local to the GPU (C(local_cpulist)).
              type: str
              returned: always
              sample: 0-31,64-95
            local_cpus:
              description: CPUs local to the GPU, expanded.
              type: list
              elements: int
              returned: always
            driver:
              description: Bound kernel driver (C(nvidia), C(vfio-pci), C(nouveau)), or null when none is bound.
              type: str
              returned: always
            notes:
              description: Findings about this GPU, such as C(no NUMA info (numa_node is -1)).
              type: list
              elements: str
              returned: always
        gpu_nodes:
          description: NUMA node id (as a string) to the list of GPU indexes on it. GPUs without NUMA info are under C(unknown).
          returned: when C(gpus) is gathered
          type: dict
          sample: {"0": [0, 1, 2, 3], "1": [4, 5, 6, 7]}
        block:
          description: Block devices from C(/sys/block), natural name order, except C(loop*), C(ram*), C(zram*).
          returned: when gathered
          type: list
          elements: dict
          contains:
            name:
              description: Kernel device name.
              type: str
              returned: always
              sample: nvme0n1
            scheduler:
              description: Current I/O scheduler, or null when the device has no scheduler file.
              type: str
              returned: always
              sample: none
            schedulers:
              description: I/O schedulers this device offers now (more appear when their modules load).
              type: list
              elements: str
              returned: always
              sample: [none, mq-deadline, kyber, bfq]
            rotational:
              description: Whether the device is rotational.
              type: bool
              returned: always
            nr_requests:
              description: C(queue/nr_requests).
              type: int
              returned: always
            read_ahead_kb:
              description: C(queue/read_ahead_kb).
              type: int
              returned: always
            size_bytes:
              description: Size in bytes (C(size) counts 512-byte sectors).
              type: int
              returned: always
            model:
              description: C(device/model), stripped; null when absent (virtio disks have none).
              type: str
              returned: always
            removable:
              description: Whether the device is removable.
              type: bool
              returned: always
            by_id:
              description: Names in C(/dev/disk/by-id) that point at this device (partitions excluded).
              type: list
              elements: str
              returned: always
        memory:
          description: Memory facts.
          returned: when gathered
          type: dict
          contains:
            thp:
              description:
                - Transparent hugepages. C(enabled), C(defrag) and C(shmem_enabled) are C({value, choices}) or null when absent.
                - C(khugepaged_defrag) is an int.
              type: dict
              returned: always
              sample: {"enabled": {"value": "madvise", "choices": ["always", "madvise", "never"]}, "khugepaged_defrag": 1}
            zswap:
              description: Every file under C(/sys/module/zswap/parameters) (raw strings); null when zswap is absent.
              type: dict
              returned: always
              sample: {"enabled": "N", "compressor": "lzo", "max_pool_percent": "20", "zpool": "zbud"}
            sysctl:
              description:
                - C(vm.swappiness), C(vm.min_free_kbytes), C(vm.watermark_scale_factor), C(vm.watermark_boost_factor)
                  and C(kernel.numa_balancing).
                - Each value is an int, or null when the kernel lacks it.
              type: dict
              returned: always
            vmstat:
              description:
                - C(/proc/vmstat) counters C(thp_fault_alloc), C(thp_fault_fallback), C(thp_collapse_alloc),
                  C(thp_collapse_alloc_failed), C(pswpin), C(pswpout), C(zswpin), C(zswpout) and C(oom_kill).
                  These are null when this kernel lacks them.
                - Every C(allocstall_*) counter is added.
              type: dict
              returned: always
            total_mib:
              description: C(MemTotal) in MiB.
              type: int
              returned: always
            available_mib:
              description: C(MemAvailable) in MiB.
              type: int
              returned: always
        swap:
          description: Active swap areas from C(/proc/swaps).
          returned: when gathered
          type: dict
          contains:
            devices:
              description: One dict per area with C(name), C(type), C(size_kib), C(used_kib), C(priority).
              type: list
              elements: dict
              returned: always
              sample: [{"name": "/dev/nvme0n1p3", "type": "partition", "size_kib": 67108860, "used_kib": 4096, "priority": -2}]
            active:
              description: Whether any swap is active (zswap does nothing without swap).
              type: bool
              returned: always
            total_kib:
              description: Total swap size in KiB.
              type: int
              returned: always
            used_kib:
              description: Swap in use in KiB.
              type: int
              returned: always
        sched:
          description: Scheduler facts.
          returned: when gathered
          type: dict
          contains:
            expected_location:
              description:
                - Where the CFS/EEVDF tunables should be for this kernel version.
                - The value is V(procfs) (up to 5.12), V(debugfs) (5.13 to 6.5) or V(debugfs_eevdf) (6.6 and later).
              type: str
              returned: always
            tunables_location:
              description:
                - Where the tunables were actually found and read.
                - V(procfs), V(debugfs), V(debugfs_eevdf) or V(unavailable).
              type: str
              returned: always
              sample: debugfs_eevdf
            location_matches_version:
              description: Whether the found location is the expected one (false hints at a backport or missing debugfs).
              type: bool
              returned: always
            unavailable_reason:
              description: Why the tunables are unavailable (debugfs not mounted, kernel lockdown, permission, CONFIG_SCHED_DEBUG); null when available.
              type: str
              returned: always
            tunables:
              description:
                - Canonical name (C(latency_ns), C(min_granularity_ns), C(wakeup_granularity_ns), C(base_slice_ns),
                  C(migration_cost_ns)) to C({path, value}) for those present at the found location.
              type: dict
              returned: always
              sample: {"base_slice_ns": {"path": "/sys/kernel/debug/sched/base_slice_ns", "value": 3000000}}
            tunable_scaling:
              description:
                - The kernel's tunable scaling mode at the found location as C({path, value, name}) (0 V(none),
                  1 V(log), 2 V(linear)), or null when the tunables are unavailable.
                - The kernel stores each tunable divided by a CPU-count factor and recomputes it from that base whenever
                  it rebuilds the scheduling domains (CPU hotplug, cpuset partitions). A debugfs write of a tunable does
                  not update the base; a write of C(tunable_scaling) does.
              type: dict
              returned: always
              sample: {"path": "/sys/kernel/debug/sched/tunable_scaling", "value": 1, "name": "log"}
            preempt:
              description: Current preemption model from C(/sys/kernel/debug/sched/preempt) (PREEMPT_DYNAMIC kernels), or null.
              type: str
              returned: always
              sample: voluntary
            rt:
              description: Real-time scheduling limits.
              type: dict
              returned: always
              contains:
                sched_rt_runtime_us:
                  description: C(kernel.sched_rt_runtime_us) (-1 disables RT throttling).
                  type: int
                  returned: always
                  sample: 950000
                sched_rt_period_us:
                  description: C(kernel.sched_rt_period_us).
                  type: int
                  returned: always
                  sample: 1000000
                rt_throttling:
                  description: V(enabled) or V(disabled) (runtime -1); null when unknown.
                  type: str
                  returned: always
                fair_server:
                  description:
                    - True when C(/sys/kernel/debug/sched/fair_server/cpu*/runtime) exists (the 6.12+ deadline server).
                    - False when the debugfs sched directory is readable without it. Null when debugfs cannot be read.
                  type: bool
                  returned: always
                fair_server_expected:
                  description: Whether the kernel version (6.12 or later) should have the fair server.
                  type: bool
                  returned: always
                fair_server_runtime_ns:
                  description: The first CPU's fair server runtime in ns, or null.
                  type: int
                  returned: always
                rt_group_sched:
                  description:
                    - C(CONFIG_RT_GROUP_SCHED=y), null when the kernel config is unknown.
                    - When true, SCHED_FIFO in a non-root cgroup v2 group needs C(cpu.rt_runtime_us).
                  type: bool
                  returned: always
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.medai.llmhost.plugins.module_utils import facts as llmfacts

CHOICES = ['all'] + list(llmfacts.SUBSETS)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gather=dict(type='list', elements='str', choices=CHOICES, default=['all']),
        ),
        supports_check_mode=True,
    )
    gathered = llmfacts.gather(module.params['gather'])
    module.exit_json(changed=False, ansible_facts={'llmhost': gathered})


if __name__ == '__main__':
    main()
