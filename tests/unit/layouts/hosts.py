# -*- coding: utf-8 -*-
"""PCI, NUMA and CPU layouts of real machine types.

* layout_hgx_h100: 2-socket Xeon (2 x 32 cores, SMT: 128 CPUs, node 0 = 0-31,64-95, node 1 = 32-63,96-127)
  with an 8-GPU HGX H100 SXM5 board (4 GPUs per socket), 4 NVSwitches, ConnectX-7 / ConnectX-6 Dx NICs and
  the BMC's ASPEED VGA, as /sys shows it on a Dell XE9680 / Supermicro SYS-821GE-class server.
* layout_workstation: 1-socket 24-thread workstation, one RTX 4090 whose numa_node is -1 (no _PXM in
  the firmware), its HDA audio function, and the CPU's integrated Intel GPU.
"""
from __future__ import absolute_import, division, print_function

import os

from ansible_collections.medai.llmhost.plugins.module_utils.facts import format_cpumask, parse_cpulist

H100_GPUS_NODE0 = ('0000:18:00.0', '0000:2a:00.0', '0000:3a:00.0', '0000:5d:00.0')
H100_GPUS_NODE1 = ('0000:9a:00.0', '0000:ab:00.0', '0000:ba:00.0', '0000:db:00.0')
H100_NODE_CPUS = {0: '0-31,64-95', 1: '32-63,96-127'}
H100_NODE_MEM_KB = {0: 1056467304, 1: 1056952928}


def add_pci(fk, addr, vendor, device, pci_class, numa_node, local_cpulist, driver=None, nr_cpus=None,
            root_bus=None, subsystem=('0x0000', '0x0000')):
    """One PCI function: /sys/devices/pci<domain>:<root>/<addr> and the /sys/bus/pci/devices link."""
    root_bus = root_bus or 'pci%s' % addr[:7]
    real = '/sys/devices/%s/%s' % (root_bus, addr)
    fk.file(real + '/vendor', vendor, mode=0o444)
    fk.file(real + '/device', device, mode=0o444)
    fk.file(real + '/subsystem_vendor', subsystem[0], mode=0o444)
    fk.file(real + '/subsystem_device', subsystem[1], mode=0o444)
    fk.file(real + '/class', pci_class, mode=0o444)
    fk.file(real + '/numa_node', str(numa_node), mode=0o644)
    fk.file(real + '/local_cpulist', local_cpulist, mode=0o444)
    cpus = parse_cpulist(local_cpulist)
    fk.file(real + '/local_cpus', format_cpumask(cpus, nr_cpus or (max(cpus) + 1)), mode=0o444)
    fk.file(real + '/irq', '0', mode=0o444)
    if driver:
        fk.symlink('/sys/bus/pci/drivers/' + driver, real + '/driver')
        if not fk_exists(fk, '/sys/bus/pci/drivers/%s/bind' % driver):
            fk.file('/sys/bus/pci/drivers/%s/bind' % driver, '', mode=0o200)
    fk.symlink(real, '/sys/bus/pci/devices/' + addr)
    return real


def fk_exists(fk, p):
    return os.path.exists(fk.path(p))


def add_node(fk, nid, cpulist, mem_kb, distance, nr_cpus):
    base = '/sys/devices/system/node/node%d' % nid
    fk.file(base + '/cpulist', cpulist, mode=0o444)
    fk.file(base + '/cpumap', format_cpumask(parse_cpulist(cpulist), nr_cpus), mode=0o444)
    fk.file(base + '/distance', distance, mode=0o444)
    free = mem_kb - 52345678 if mem_kb > 52345678 else mem_kb // 2
    fk.file(base + '/meminfo', '\n'.join([
        'Node %d MemTotal:       %d kB' % (nid, mem_kb),
        'Node %d MemFree:        %d kB' % (nid, free),
        'Node %d MemUsed:        %d kB' % (nid, mem_kb - free),
        'Node %d SwapCached:            0 kB' % nid,
        'Node %d Active:          1234567 kB' % nid,
        'Node %d Inactive:        7654321 kB' % nid,
        'Node %d FilePages:       8123456 kB' % nid,
        'Node %d AnonHugePages:   4194304 kB' % nid,
        'Node %d HugePages_Total:     0' % nid,
        'Node %d HugePages_Free:      0' % nid,
        'Node %d HugePages_Surp:      0' % nid,
    ]), mode=0o444)


def add_cpus(fk, online, isolated='', nohz_full='(null)'):
    base = '/sys/devices/system/cpu/'
    fk.file(base + 'online', online, mode=0o444)
    fk.file(base + 'possible', online, mode=0o444)
    fk.file(base + 'present', online, mode=0o444)
    fk.file(base + 'offline', '', mode=0o444)
    fk.file(base + 'isolated', isolated, mode=0o444)
    fk.file(base + 'nohz_full', nohz_full, mode=0o444)


def layout_hgx_h100(fk, isolated='', nohz_full='(null)'):
    """2-socket HGX H100 8-GPU server. Returns the list of GPU PCI addresses in bus order."""
    nr = 128
    fk.file('/sys/devices/system/node/online', '0-1', mode=0o444)
    fk.file('/sys/devices/system/node/possible', '0-1', mode=0o444)
    fk.file('/sys/devices/system/node/has_cpu', '0-1', mode=0o444)
    fk.file('/sys/devices/system/node/has_memory', '0-1', mode=0o444)
    add_node(fk, 0, H100_NODE_CPUS[0], H100_NODE_MEM_KB[0], '10 21', nr)
    add_node(fk, 1, H100_NODE_CPUS[1], H100_NODE_MEM_KB[1], '21 10', nr)
    add_cpus(fk, '0-127', isolated=isolated, nohz_full=nohz_full)

    def on(node):
        return dict(numa_node=node, local_cpulist=H100_NODE_CPUS[node], nr_cpus=nr)

    # Intel host bridges / root ports / PCIe switch ports
    add_pci(fk, '0000:00:00.0', '0x8086', '0x09a2', '0x060000', **on(0))
    add_pci(fk, '0000:15:01.0', '0x8086', '0x352a', '0x060400', driver='pcieport', **on(0))
    add_pci(fk, '0000:16:00.0', '0x1000', '0xc030', '0x060400', driver='pcieport', **on(0))
    add_pci(fk, '0000:97:01.0', '0x8086', '0x352a', '0x060400', driver='pcieport', **on(1))
    # BMC VGA: a display controller, but not NVIDIA
    add_pci(fk, '0000:03:00.0', '0x1a03', '0x2000', '0x030000', driver='ast', subsystem=('0x1a03', '0x2000'), **on(0))
    # NVSwitches (NVIDIA, class 0x068000 "bridge, other"): not GPUs
    for addr in ('0000:05:00.0', '0000:06:00.0', '0000:07:00.0', '0000:08:00.0'):
        add_pci(fk, addr, '0x10de', '0x22a3', '0x068000', driver='nvidia', subsystem=('0x10de', '0x1796'), **on(0))
    # Mellanox ConnectX-7 (InfiniBand, one per GPU pair) and ConnectX-6 Dx (Ethernet)
    add_pci(fk, '0000:1a:00.0', '0x15b3', '0x1021', '0x020700', driver='mlx5_core', subsystem=('0x15b3', '0x0041'), **on(0))
    add_pci(fk, '0000:3c:00.0', '0x15b3', '0x1021', '0x020700', driver='mlx5_core', subsystem=('0x15b3', '0x0041'), **on(0))
    add_pci(fk, '0000:31:00.0', '0x15b3', '0x101d', '0x020000', driver='mlx5_core', subsystem=('0x15b3', '0x0016'), **on(0))
    add_pci(fk, '0000:9c:00.0', '0x15b3', '0x1021', '0x020700', driver='mlx5_core', subsystem=('0x15b3', '0x0041'), **on(1))
    add_pci(fk, '0000:bc:00.0', '0x15b3', '0x1021', '0x020700', driver='mlx5_core', subsystem=('0x15b3', '0x0041'), **on(1))
    # The 8 GPUs (H100 SXM5 80GB: 0x10de:0x2330, subsystem 0x10de:0x16c1, class 0x030200 "3D controller").
    # Created in a shuffled order: the facts must sort by PCI address, not by directory order.
    for addr in (H100_GPUS_NODE1[2], H100_GPUS_NODE0[1], H100_GPUS_NODE1[0], H100_GPUS_NODE0[3],
                 H100_GPUS_NODE0[0], H100_GPUS_NODE1[3], H100_GPUS_NODE0[2], H100_GPUS_NODE1[1]):
        node = 0 if addr in H100_GPUS_NODE0 else 1
        add_pci(fk, addr, '0x10de', '0x2330', '0x030200', driver='nvidia', subsystem=('0x10de', '0x16c1'), **on(node))
    return list(H100_GPUS_NODE0 + H100_GPUS_NODE1)


def layout_workstation(fk, gpu_driver='nvidia'):
    """1-socket workstation: RTX 4090 at 0000:01:00.0 with numa_node -1, 24 CPUs, 64 GB."""
    nr = 24
    fk.file('/sys/devices/system/node/online', '0', mode=0o444)
    fk.file('/sys/devices/system/node/possible', '0', mode=0o444)
    add_node(fk, 0, '0-23', 65742436, '10', nr)
    add_cpus(fk, '0-23')
    add_pci(fk, '0000:00:00.0', '0x8086', '0xa700', '0x060000', numa_node=-1, local_cpulist='0-23', nr_cpus=nr)
    add_pci(fk, '0000:00:01.0', '0x8086', '0xa70d', '0x060400', numa_node=-1, local_cpulist='0-23', nr_cpus=nr,
            driver='pcieport')
    # Integrated Intel GPU: display class, not NVIDIA
    add_pci(fk, '0000:00:02.0', '0x8086', '0xa780', '0x030000', numa_node=-1, local_cpulist='0-23', nr_cpus=nr,
            driver='i915')
    # RTX 4090 (VGA class 0x030000) and its HDA audio function (0x040300)
    add_pci(fk, '0000:01:00.0', '0x10de', '0x2684', '0x030000', numa_node=-1, local_cpulist='0-23', nr_cpus=nr,
            driver=gpu_driver, subsystem=('0x10de', '0x165b'))
    add_pci(fk, '0000:01:00.1', '0x10de', '0x22ba', '0x040300', numa_node=-1, local_cpulist='0-23', nr_cpus=nr,
            driver='snd_hda_intel', subsystem=('0x10de', '0x165b'))
    # NVMe controller (Samsung 990 PRO)
    add_pci(fk, '0000:04:00.0', '0x144d', '0xa80c', '0x010802', numa_node=-1, local_cpulist='0-23', nr_cpus=nr,
            driver='nvme')
    return ['0000:01:00.0']
