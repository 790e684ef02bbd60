# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import os
import time

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import facts
from ansible_collections.medai.llmhost.tests.unit.fake_trees import layout_thp, layout_vm_sysctls, layout_zswap
from ansible_collections.medai.llmhost.tests.unit.layouts.block import layout_block_full
from ansible_collections.medai.llmhost.tests.unit.layouts.cgroups import (
    layout_cgroup_hybrid, layout_cgroup_v1, layout_cgroup_v2, layout_cgroup_v2_no_cpuset)
from ansible_collections.medai.llmhost.tests.unit.layouts.hosts import (
    H100_GPUS_NODE0, H100_GPUS_NODE1, layout_hgx_h100, layout_workstation)
from ansible_collections.medai.llmhost.tests.unit.layouts.kernels import (
    CONFIG_6_1, layout_kernel_5_10, layout_kernel_6_1, layout_kernel_6_12, layout_kernel_6_1_lockdown,
    write_config_gz)
from ansible_collections.medai.llmhost.tests.unit.layouts.memory import (
    SWAPS_NONE, VMSTAT_5_10, layout_memory)


# ---------------------------------------------------------------- cpulist helpers

@pytest.mark.parametrize('text,cpus', [
    ('0-3,8,10-11', [0, 1, 2, 3, 8, 10, 11]),
    ('0-31,64-95', list(range(0, 32)) + list(range(64, 96))),
    ('5', [5]),
    ('0,0,1', [0, 1]),
    ('3,1,2', [1, 2, 3]),
    ('', []),
    ('   \n', []),
    (None, []),
    ('(null)', []),
    ('0-7:2/4', [0, 1, 4, 5]),
    ('0-15:1/8', [0, 8]),
    (' 2-4\n', [2, 3, 4]),
])
def test_parse_cpulist(text, cpus):
    assert facts.parse_cpulist(text) == cpus


def test_parse_cpulist_last_cpu_n():
    assert facts.parse_cpulist('N', nr_cpus=8) == [7]
    assert facts.parse_cpulist('4-N', nr_cpus=8) == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="'N'"):
        facts.parse_cpulist('4-N')


@pytest.mark.parametrize('bad', ['a', '1-', '-1', '3-1', '1,,2', '0-7:2', '0-7:5/4', '1.5', '0x3'])
def test_parse_cpulist_rejects_garbage(bad):
    with pytest.raises(ValueError):
        facts.parse_cpulist(bad)


@pytest.mark.parametrize('cpus,text', [
    ([0, 1, 2, 3, 8, 10, 11], '0-3,8,10-11'),
    ([11, 10, 8, 3, 2, 1, 0, 8], '0-3,8,10-11'),
    ([], ''),
    ([7], '7'),
    ([0, 2, 4], '0,2,4'),
    ([0, 1], '0-1'),
    (list(range(0, 32)) + list(range(64, 96)), '0-31,64-95'),
    (['1', '2'], '1-2'),
])
def test_format_cpulist(cpus, text):
    assert facts.format_cpulist(cpus) == text


def test_format_cpulist_rejects_negative():
    with pytest.raises(ValueError):
        facts.format_cpulist([-1, 0])


@pytest.mark.parametrize('text', ['0-3,8,10-11', '0-31,64-95', '32-63,96-127', '0', '1,3,5-6', ''])
def test_cpulist_round_trip(text):
    assert facts.format_cpulist(facts.parse_cpulist(text)) == text


def test_cpumask():
    node0 = facts.parse_cpulist('0-31,64-95')
    assert facts.format_cpumask(node0, nr_cpus=128) == '00000000,ffffffff,00000000,ffffffff'
    assert facts.parse_cpumask('00000000,ffffffff,00000000,ffffffff') == node0
    assert facts.format_cpumask([0, 1]) == '00000003'
    assert facts.format_cpumask([0, 1], nr_cpus=24) == '00000003'
    assert facts.format_cpumask([]) == '00000000'
    assert facts.format_cpumask([32]) == '00000001,00000000'
    assert facts.parse_cpumask('ff0') == [4, 5, 6, 7, 8, 9, 10, 11]
    assert facts.parse_cpumask('0x3') == [0, 1]
    assert facts.parse_cpumask('') == []


# ---------------------------------------------------------------- kernel

@pytest.mark.parametrize('release,version', [
    ('6.1.0-28-amd64', [6, 1]),
    ('5.14.0-427.13.1.el9_4.x86_64', [5, 14]),
    ('6.12.38+deb13-amd64', [6, 12]),
    ('5.15.153.1-microsoft-standard-WSL2', [5, 15]),
    ('garbage', None),
    ('', None),
])
def test_kernel_version(release, version):
    assert facts.kernel_version(release) == version


def test_expected_sched_location_boundaries():
    assert facts.expected_sched_location([4, 18]) == 'procfs'
    assert facts.expected_sched_location([5, 12]) == 'procfs'
    assert facts.expected_sched_location([5, 13]) == 'debugfs'
    assert facts.expected_sched_location([6, 5]) == 'debugfs'
    assert facts.expected_sched_location([6, 6]) == 'debugfs_eevdf'
    assert facts.expected_sched_location([6, 12]) == 'debugfs_eevdf'
    assert facts.expected_sched_location(None) is None


def test_parse_kernel_config():
    cfg = facts.parse_kernel_config(CONFIG_6_1)
    assert cfg['CONFIG_RT_GROUP_SCHED'] == 'n'
    assert cfg['CONFIG_CPUSETS'] == 'y'
    assert cfg['CONFIG_CPUSETS_V1'] is None  # the option does not exist before 6.12
    assert cfg['CONFIG_PREEMPT_DYNAMIC'] == 'y'
    assert cfg['CONFIG_PREEMPT_VOLUNTARY'] == 'y'
    assert cfg['CONFIG_PREEMPT'] == 'n'
    assert cfg['CONFIG_PREEMPTION'] == 'y'
    assert cfg['CONFIG_ZSWAP'] == 'y'
    assert cfg['CONFIG_ZSWAP_COMPRESSOR_DEFAULT'] == 'lz4'  # quotes stripped
    assert cfg['CONFIG_TRANSPARENT_HUGEPAGE'] == 'y'
    assert cfg['CONFIG_TRANSPARENT_HUGEPAGE_MADVISE'] == 'y'
    assert cfg['CONFIG_IKCONFIG_PROC'] is None
    assert 'CONFIG_HZ' not in cfg and 'CONFIG_LOCALVERSION' not in cfg


def test_kernel_5_10_boot_config(fake):
    layout_kernel_5_10(fake)
    k = facts.kernel_info()
    assert k['release'] == '5.10.0-33-amd64'
    assert k['version'] == [5, 10]
    assert k['build'] == '#1 SMP Debian 5.10.226-1 (2024-10-03)'
    assert k['config_source'] == '/boot/config-5.10.0-33-amd64'
    assert k['config']['CONFIG_PREEMPT_VOLUNTARY'] == 'y'
    assert k['config']['CONFIG_SCHED_DEBUG'] == 'y'
    assert k['config']['CONFIG_ZSWAP_ZPOOL_DEFAULT'] == 'z3fold'
    assert 'CONFIG_PREEMPT_DYNAMIC' not in k['config']
    assert k['lockdown'] == 'none'
    assert k['cmdline'].startswith('BOOT_IMAGE=/boot/vmlinuz-5.10.0-33-amd64 root=UUID=')
    assert k['cmdline_args']['ro'] is None
    assert k['cmdline_args']['root'] == 'UUID=2f1c7a3e-9b1d-4c55-8f0e-6a2b1c9d7e01'


def test_kernel_config_gz_wins_over_boot(fake):
    """(f) /proc/config.gz is gzip and describes the running kernel: it wins over a stale /boot file."""
    layout_kernel_6_12(fake, rt_group_sched=True)
    with open(fake.path('/proc/config.gz'), 'rb') as f:
        assert f.read(2) == b'\x1f\x8b'  # really gzip
    cfg, source = facts.kernel_config(fake.release)
    assert source == '/proc/config.gz'
    assert cfg['CONFIG_PREEMPT_VOLUNTARY'] == 'y'  # the /boot copy says "is not set"
    assert cfg['CONFIG_RT_GROUP_SCHED'] == 'y'
    assert cfg['CONFIG_CPUSETS_V1'] == 'n'
    assert cfg['CONFIG_IKCONFIG_PROC'] == 'y'
    assert cfg['CONFIG_PREEMPT_RT'] == 'n'
    assert cfg['CONFIG_ZSWAP_COMPRESSOR_DEFAULT'] == 'zstd'
    assert cfg['CONFIG_ZSWAP_SHRINKER_DEFAULT_ON'] == 'n'


def test_kernel_config_gz_only(fake):
    layout_kernel_6_12(fake, boot_config=False)
    cfg, source = facts.kernel_config('6.12.38+deb13-amd64')
    assert source == '/proc/config.gz'
    assert cfg['CONFIG_RT_GROUP_SCHED'] == 'n'


def test_kernel_config_corrupt_gz_falls_back_to_boot(fake):
    layout_kernel_6_1(fake)
    fake.file('/proc/config.gz', 'not gzip at all')
    cfg, source = facts.kernel_config('6.1.0-28-amd64')
    assert source == '/boot/config-6.1.0-28-amd64'
    assert cfg['CONFIG_PREEMPT_DYNAMIC'] == 'y'


def test_kernel_config_absent(fake):
    fake.file('/proc/cmdline', 'ro')
    assert facts.kernel_config('6.1.0-28-amd64') == (None, None)
    info = facts.kernel_info('6.1.0-28-amd64')
    assert info['config'] is None and info['config_source'] is None
    assert info['lockdown'] is None
    assert info['build'] is None


def test_kernel_config_gz_parsing_direct(fake):
    write_config_gz(fake, '# CONFIG_RT_GROUP_SCHED is not set\nCONFIG_PREEMPT_RT=y\nCONFIG_CPUSETS_V1=y\n')
    cfg, source = facts.kernel_config('x')
    assert source == '/proc/config.gz'
    assert cfg['CONFIG_RT_GROUP_SCHED'] == 'n'
    assert cfg['CONFIG_PREEMPT_RT'] == 'y'
    assert cfg['CONFIG_CPUSETS_V1'] == 'y'
    assert cfg['CONFIG_NUMA'] is None


def test_parse_cmdline():
    args = facts.parse_cmdline('BOOT_IMAGE=/vmlinuz ro isolcpus=managed_irq,domain,16-31 nohz_full=16-31 '
                               'quiet isolcpus=8-15 -- init-arg=1')
    assert args == {'BOOT_IMAGE': '/vmlinuz', 'ro': None, 'isolcpus': '8-15', 'nohz_full': '16-31', 'quiet': None}
    assert facts.parse_cmdline(None) == {}


def test_lockdown_bracket(fake):
    layout_kernel_6_1_lockdown(fake)
    assert facts.kernel_info()['lockdown'] == 'integrity'


# ---------------------------------------------------------------- cgroup

def test_cgroup_v2(fake):
    layout_cgroup_v2(fake)
    cg = facts.cgroup_info()
    assert cg['version'] == 2
    assert cg['mount'] == '/sys/fs/cgroup'
    assert cg['unified_mount'] == '/sys/fs/cgroup'
    assert cg['controllers'] == ['cpuset', 'cpu', 'io', 'memory', 'hugetlb', 'pids', 'rdma', 'misc']
    assert cg['subtree_control'] == ['cpuset', 'cpu', 'io', 'memory', 'pids']
    assert cg['cpuset_partitions'] is True
    assert cg['cpuset_v1'] is False
    assert cg['v1_controllers'] == []
    assert cg['cpus_effective'] == '0-127'
    assert cg['mems_effective'] == '0-1'


def test_cgroup_v2_partition_file_in_child_only(fake):
    layout_cgroup_v2_no_cpuset(fake)
    assert facts.cgroup_info()['cpuset_partitions'] is False
    fake.file('/sys/fs/cgroup/llm.slice/cpuset.cpus.partition', 'root')
    assert facts.cgroup_info()['cpuset_partitions'] is True


def test_cgroup_v1(fake):
    layout_cgroup_v1(fake)
    cg = facts.cgroup_info()
    assert cg['version'] == 1
    assert cg['unified_mount'] is None
    assert cg['controllers'] == ['blkio', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'hugetlb', 'memory',
                                 'misc', 'net_cls', 'net_prio', 'perf_event', 'pids', 'rdma']
    assert cg['controllers'] == cg['v1_controllers']
    assert cg['cpuset_v1'] is True
    assert cg['cpuset_partitions'] is False
    assert cg['subtree_control'] == []
    assert cg['cpus_effective'] is None


def test_cgroup_hybrid(fake):
    layout_cgroup_hybrid(fake)
    cg = facts.cgroup_info()
    assert cg['version'] == 'hybrid'
    assert cg['unified_mount'] == '/sys/fs/cgroup/unified'
    assert cg['unified_controllers'] == []
    assert 'cpuset' in cg['controllers']
    assert cg['cpuset_v1'] is True
    assert cg['cpuset_partitions'] is False


def test_cgroup_none(fake):
    cg = facts.cgroup_info()
    assert cg['version'] is None and cg['mount'] is None and cg['controllers'] == []


# ---------------------------------------------------------------- NUMA

def test_numa_h100_server(fake):
    layout_hgx_h100(fake)
    numa = facts.numa_info()
    assert numa['node_count'] == 2
    n0, n1 = numa['nodes']
    assert n0 == {'id': 0, 'cpulist': '0-31,64-95', 'cpus': list(range(0, 32)) + list(range(64, 96)),
                  'memory_mib': 1031706, 'distance': [10, 21]}
    assert n1['id'] == 1 and n1['cpulist'] == '32-63,96-127' and n1['memory_mib'] == 1032180
    assert n1['cpus'][:2] == [32, 33] and n1['cpus'][-1] == 127 and len(n1['cpus']) == 64
    assert n1['distance'] == [21, 10]
    assert numa['online'] == '0-127' and numa['online_cpus'] == list(range(128))
    assert numa['possible'] == '0-127'
    assert numa['isolated'] == '' and numa['isolated_cpus'] == []
    assert numa['nohz_full'] == '' and numa['nohz_full_cpus'] == []  # the kernel prints "(null)"
    assert facts.cpu_node_map()[70] == 0 and facts.cpu_node_map()[100] == 1


def test_numa_isolated_and_nohz_full(fake):
    layout_hgx_h100(fake, isolated='16-31,80-95', nohz_full='16-31,80-95')
    numa = facts.numa_info()
    assert numa['isolated'] == '16-31,80-95'
    assert numa['isolated_cpus'] == list(range(16, 32)) + list(range(80, 96))
    assert numa['nohz_full_cpus'] == numa['isolated_cpus']


def test_numa_nodes_sorted_numerically(fake):
    for nid in (0, 2, 10):
        fake.file('/sys/devices/system/node/node%d/cpulist' % nid, '')
        fake.file('/sys/devices/system/node/node%d/meminfo' % nid, 'Node %d MemTotal:  2097152 kB' % nid)
    fake.file('/sys/devices/system/node/online', '0,2,10')
    nodes = facts.numa_nodes()
    assert [n['id'] for n in nodes] == [0, 2, 10]
    assert nodes[2] == {'id': 10, 'cpulist': '', 'cpus': [], 'memory_mib': 2048, 'distance': []}


def test_numa_absent(fake):
    numa = facts.numa_info()
    assert numa['nodes'] == [] and numa['node_count'] == 0
    assert numa['online'] is None and numa['online_cpus'] == []


# ---------------------------------------------------------------- GPUs

def test_gpus_h100_server(fake):
    layout_hgx_h100(fake)
    gpus = facts.gpu_list()
    assert [g['pci'] for g in gpus] == list(H100_GPUS_NODE0 + H100_GPUS_NODE1)
    assert [g['index'] for g in gpus] == list(range(8))
    assert gpus[0] == {
        'index': 0, 'pci': '0000:18:00.0', 'vendor': '0x10de', 'device': '0x2330', 'subsystem_device': '0x16c1',
        'class': '0x030200', 'numa_node': 0, 'local_cpulist': '0-31,64-95',
        'local_cpus': list(range(0, 32)) + list(range(64, 96)), 'driver': 'nvidia', 'notes': []}
    assert [g['numa_node'] for g in gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert gpus[4]['pci'] == '0000:9a:00.0' and gpus[4]['local_cpulist'] == '32-63,96-127'
    assert gpus[7]['local_cpus'][-1] == 127
    # NVSwitches (0x068000), Mellanox NICs (0x15b3) and the ASPEED VGA (0x030000, not NVIDIA) are not GPUs
    listed = set(g['pci'] for g in gpus)
    for other in ('0000:05:00.0', '0000:08:00.0', '0000:1a:00.0', '0000:31:00.0', '0000:9c:00.0', '0000:03:00.0'):
        assert other not in listed
    assert facts.gpu_numa_map(gpus) == {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}
    assert facts.gpu_nodes_fact(gpus) == {'0': [0, 1, 2, 3], '1': [4, 5, 6, 7]}


def test_pci_devices_sees_everything_in_bus_order(fake):
    layout_hgx_h100(fake)
    nvidia = facts.pci_devices('0x10de')
    assert len(nvidia) == 12  # 8 GPUs + 4 NVSwitches
    assert [d['pci'] for d in nvidia][:5] == [
        '0000:05:00.0', '0000:06:00.0', '0000:07:00.0', '0000:08:00.0', '0000:18:00.0']
    mlx = facts.pci_devices('0x15B3')
    assert [(d['pci'], d['class'], d['driver']) for d in mlx] == [
        ('0000:1a:00.0', '0x020700', 'mlx5_core'), ('0000:31:00.0', '0x020000', 'mlx5_core'),
        ('0000:3c:00.0', '0x020700', 'mlx5_core'), ('0000:9c:00.0', '0x020700', 'mlx5_core'),
        ('0000:bc:00.0', '0x020700', 'mlx5_core')]
    assert facts.pci_devices('0x1a03')[0]['numa_node'] == 0


def test_pci_sort_key_is_numeric():
    addrs = ['0000:9a:00.0', '0000:0a:00.0', '0001:00:00.0', '0000:0a:00.1', '0000:0a:1f.0']
    assert sorted(addrs, key=facts.pci_sort_key) == [
        '0000:0a:00.0', '0000:0a:00.1', '0000:0a:1f.0', '0000:9a:00.0', '0001:00:00.0']


@pytest.mark.parametrize('cls,result', [
    ('0x030000', True), ('0x030200', True), ('0x038000', True), ('0x068000', False), ('0x040300', False),
    ('0x020700', False), (None, False), ('junk', False)])
def test_is_display_class(cls, result):
    assert facts.is_display_class(cls) is result


def test_gpu_workstation_no_numa(fake):
    layout_workstation(fake)
    gpus = facts.gpu_list()
    assert len(gpus) == 1  # not the HDA audio function, not the Intel iGPU
    gpu = gpus[0]
    assert gpu['pci'] == '0000:01:00.0' and gpu['device'] == '0x2684' and gpu['class'] == '0x030000'
    assert gpu['numa_node'] is None
    assert gpu['notes'] == ['no NUMA info (numa_node is -1)']
    assert gpu['local_cpulist'] == '0-23' and gpu['local_cpus'] == list(range(24))
    assert facts.gpu_numa_map(gpus) == {None: [0]}
    assert facts.gpu_nodes_fact(gpus) == {'unknown': [0]}
    numa = facts.numa_info()
    assert numa['node_count'] == 1 and numa['nodes'][0]['memory_mib'] == 64201


def test_gpu_without_driver_and_vfio(fake):
    layout_workstation(fake, gpu_driver=None)
    assert facts.gpu_list()[0]['driver'] is None
    fake.symlink('/sys/bus/pci/drivers/vfio-pci', '/sys/devices/pci0000:01/0000:01:00.0/driver')
    assert facts.gpu_list()[0]['driver'] == 'vfio-pci'


def test_no_gpus(fake):
    assert facts.gpu_list() == []
    assert facts.gpu_numa_map([]) == {}


# ---------------------------------------------------------------- block

def test_block_devices(fake):
    layout_block_full(fake)
    devs = facts.block_info()
    assert [d['name'] for d in devs] == ['dm-0', 'nvme0n1', 'nvme1n1', 'sda', 'vda', 'vdb']  # no loop0, zram0
    by = dict((d['name'], d) for d in devs)
    assert by['nvme0n1'] == {
        'name': 'nvme0n1', 'scheduler': 'none', 'schedulers': ['none', 'mq-deadline', 'kyber', 'bfq'],
        'rotational': False, 'nr_requests': 1023, 'read_ahead_kb': 128, 'size_bytes': 3840755982336,
        'model': 'SAMSUNG MZQL23T8HCLS-00A07', 'removable': False,
        'by_id': ['nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0R612345', 'nvme-eui.36344830526123450025384500000001']}
    assert by['sda']['scheduler'] == 'mq-deadline'
    assert by['sda']['rotational'] is True
    assert by['sda']['nr_requests'] == 64
    assert by['sda']['size_bytes'] == 8001563222016
    assert by['sda']['model'] == 'ST8000NM017B-2TJ'
    assert by['sda']['by_id'] == ['ata-ST8000NM017B-2TJ103_WWZ1ABCD', 'wwn-0x5000c500d1234567']
    assert by['vda'] == {
        'name': 'vda', 'scheduler': 'none', 'schedulers': ['none', 'mq-deadline'], 'rotational': False,
        'nr_requests': 256, 'read_ahead_kb': 128, 'size_bytes': 107374182400, 'model': None, 'removable': False,
        'by_id': []}
    assert by['vdb']['by_id'] == ['virtio-data01']
    assert by['dm-0']['scheduler'] == 'none' and by['dm-0']['schedulers'] == ['none']
    assert by['dm-0']['size_bytes'] == 214748364800
    assert by['dm-0']['by_id'] == ['dm-name-vg0-models']


def test_block_device_natural_order_and_missing_files(fake):
    for name in ('sdb', 'nvme10n1', 'nvme2n1', 'sda'):
        fake.file('/sys/block/%s/size' % name, '8')
    devs = facts.block_info()
    assert [d['name'] for d in devs] == ['nvme2n1', 'nvme10n1', 'sda', 'sdb']
    assert devs[0]['scheduler'] is None and devs[0]['schedulers'] == []
    assert devs[0]['rotational'] is None and devs[0]['size_bytes'] == 4096


# ---------------------------------------------------------------- memory / swap

def test_memory(fake):
    layout_thp(fake)
    layout_vm_sysctls(fake)
    layout_zswap(fake, with_newer=True)
    layout_memory(fake)
    mem = facts.memory_info()
    assert mem['thp']['enabled'] == {'value': 'madvise', 'choices': ['always', 'madvise', 'never']}
    assert mem['thp']['defrag'] == {'value': 'madvise',
                                    'choices': ['always', 'defer', 'defer+madvise', 'madvise', 'never']}
    assert mem['thp']['shmem_enabled']['value'] == 'never'
    assert mem['thp']['khugepaged_defrag'] == 1
    assert mem['zswap'] == {'enabled': 'N', 'compressor': 'lzo', 'max_pool_percent': '20', 'zpool': 'zbud',
                            'accept_threshold_percent': '90', 'shrinker_enabled': 'N'}
    assert mem['sysctl'] == {'vm.swappiness': 60, 'vm.min_free_kbytes': 67584, 'vm.watermark_scale_factor': 10,
                             'vm.watermark_boost_factor': 15000, 'kernel.numa_balancing': 1}
    assert mem['vmstat'] == {
        'thp_fault_alloc': 184467, 'thp_fault_fallback': 68253, 'thp_collapse_alloc': 5123,
        'thp_collapse_alloc_failed': 12, 'pswpin': 1024, 'pswpout': 4096, 'zswpin': 512, 'zswpout': 2048,
        'oom_kill': 2, 'allocstall_dma': 0, 'allocstall_dma32': 0, 'allocstall_normal': 17,
        'allocstall_movable': 3, 'allocstall_device': 0}
    assert mem['total_mib'] == 2063886
    assert mem['available_mib'] == 2019425


def test_memory_old_kernel_and_absent_zswap(fake):
    layout_memory(fake, vmstat=VMSTAT_5_10)
    mem = facts.memory_info()
    assert mem['zswap'] is None
    assert mem['vmstat']['zswpin'] is None and mem['vmstat']['zswpout'] is None
    assert 'allocstall_device' not in mem['vmstat']
    assert mem['vmstat']['thp_fault_alloc'] == 1000
    assert mem['thp']['enabled'] is None
    assert mem['sysctl']['vm.swappiness'] is None


def test_swaps(fake):
    layout_memory(fake)
    swap = facts.swap_info()
    assert swap == {
        'devices': [
            {'name': '/dev/nvme0n1p3', 'type': 'partition', 'size_kib': 67108860, 'used_kib': 4096, 'priority': -2},
            {'name': '/swap file', 'type': 'file', 'size_kib': 8388604, 'used_kib': 0, 'priority': 10}],
        'active': True, 'total_kib': 75497464, 'used_kib': 4096}


def test_swaps_none(fake):
    layout_memory(fake, swaps=SWAPS_NONE)
    assert facts.swap_info() == {'devices': [], 'active': False, 'total_kib': 0, 'used_kib': 0}
    os.remove(fake.path('/proc/swaps'))
    assert facts.swap_info()['active'] is False


# ---------------------------------------------------------------- scheduler

def test_sched_5_10_procfs(fake):
    layout_kernel_5_10(fake)
    s = facts.sched_tunables()
    assert s['expected_location'] == 'procfs'
    assert s['tunables_location'] == 'procfs'
    assert s['location_matches_version'] is True
    assert s['unavailable_reason'] is None
    assert s['tunables'] == {
        'latency_ns': {'path': '/proc/sys/kernel/sched_latency_ns', 'value': 24000000},
        'min_granularity_ns': {'path': '/proc/sys/kernel/sched_min_granularity_ns', 'value': 3000000},
        'wakeup_granularity_ns': {'path': '/proc/sys/kernel/sched_wakeup_granularity_ns', 'value': 4000000},
        'migration_cost_ns': {'path': '/proc/sys/kernel/sched_migration_cost_ns', 'value': 500000}}
    assert s['tunable_scaling'] == {'path': '/proc/sys/kernel/sched_tunable_scaling', 'value': 1, 'name': 'log'}
    assert s['preempt'] is None
    assert s['rt'] == {'sched_rt_runtime_us': 950000, 'sched_rt_period_us': 1000000, 'rt_throttling': 'enabled',
                       'fair_server': None, 'fair_server_expected': False, 'fair_server_runtime_ns': None,
                       'rt_group_sched': False}


def test_sched_6_1_debugfs(fake):
    layout_kernel_6_1(fake)
    s = facts.sched_tunables()
    assert s['expected_location'] == 'debugfs'
    assert s['tunables_location'] == 'debugfs'
    assert s['location_matches_version'] is True
    assert s['tunables'] == {
        'latency_ns': {'path': '/sys/kernel/debug/sched/latency_ns', 'value': 24000000},
        'min_granularity_ns': {'path': '/sys/kernel/debug/sched/min_granularity_ns', 'value': 3000000},
        'wakeup_granularity_ns': {'path': '/sys/kernel/debug/sched/wakeup_granularity_ns', 'value': 4000000},
        'migration_cost_ns': {'path': '/sys/kernel/debug/sched/migration_cost_ns', 'value': 500000}}
    assert 'base_slice_ns' not in s['tunables']
    assert s['tunable_scaling'] == {'path': '/sys/kernel/debug/sched/tunable_scaling', 'value': 1, 'name': 'log'}
    assert s['preempt'] == 'voluntary'
    assert s['rt']['fair_server'] is False  # debugfs readable, no fair_server directory
    assert s['rt']['fair_server_expected'] is False
    assert s['rt']['rt_group_sched'] is False


def test_sched_6_12_eevdf_fair_server(fake):
    layout_kernel_6_12(fake, nr_cpus=4, rt_group_sched=True)
    s = facts.sched_tunables()
    assert s['expected_location'] == 'debugfs_eevdf'
    assert s['tunables_location'] == 'debugfs_eevdf'
    assert s['tunables'] == {
        'base_slice_ns': {'path': '/sys/kernel/debug/sched/base_slice_ns', 'value': 3000000},
        'migration_cost_ns': {'path': '/sys/kernel/debug/sched/migration_cost_ns', 'value': 500000}}
    assert s['tunable_scaling']['path'] == '/sys/kernel/debug/sched/tunable_scaling'
    assert s['rt'] == {'sched_rt_runtime_us': 950000, 'sched_rt_period_us': 1000000, 'rt_throttling': 'enabled',
                       'fair_server': True, 'fair_server_expected': True, 'fair_server_runtime_ns': 50000000,
                       'rt_group_sched': True}


def test_sched_6_1_lockdown(fake):
    layout_kernel_6_1_lockdown(fake)
    s = facts.sched_tunables()
    assert s['expected_location'] == 'debugfs'
    assert s['tunables_location'] == 'unavailable'
    assert s['location_matches_version'] is False
    assert s['unavailable_reason'] == 'kernel lockdown (integrity) blocks debugfs'
    assert s['tunables'] == {}
    assert s['tunable_scaling'] is None
    assert s['rt']['fair_server'] is None
    assert s['rt']['rt_throttling'] == 'enabled'


def test_sched_6_1_debugfs_not_mounted(fake):
    layout_kernel_6_1(fake, debugfs=False)
    s = facts.sched_tunables()
    assert s['tunables_location'] == 'unavailable'
    assert s['unavailable_reason'] == 'debugfs is not mounted at /sys/kernel/debug'


def test_sched_debugfs_present_but_unreadable_under_lockdown(fake, monkeypatch):
    """Lockdown with debugfs mounted: the files are listed but open() fails with EPERM."""
    layout_kernel_6_1(fake)
    fake.file('/sys/kernel/security/lockdown', 'none [integrity] confidentiality')
    real = facts.read_text
    monkeypatch.setattr(facts, 'read_text',
                        lambda p: None if p.startswith('/sys/kernel/debug/') else real(p))
    s = facts.sched_tunables()
    assert s['tunables_location'] == 'unavailable'
    assert s['unavailable_reason'] == 'the debugfs tunables exist but cannot be read: kernel lockdown (integrity) blocks debugfs'


def test_sched_procfs_expected_but_sched_debug_off(fake):
    fake.release = '5.4.0-200-generic'
    fake.file('/proc/sys/kernel/sched_rt_runtime_us', '-1')
    fake.file('/proc/sys/kernel/sched_rt_period_us', '1000000')
    s = facts.sched_tunables()
    assert s['expected_location'] == 'procfs'
    assert s['tunables_location'] == 'unavailable'
    assert 'CONFIG_SCHED_DEBUG' in s['unavailable_reason']
    assert s['rt']['rt_throttling'] == 'disabled'
    assert s['rt']['rt_group_sched'] is None  # no config found


def test_sched_backport_found_elsewhere(fake):
    """A vendor kernel 5.14 (RHEL 9) reports debugfs as expected; finding EEVDF there is reported as a mismatch."""
    fake.release = '5.14.0-570.el9.x86_64'
    fake.file('/sys/kernel/debug/sched/base_slice_ns', '750000')
    s = facts.sched_tunables()
    assert s['expected_location'] == 'debugfs'
    assert s['tunables_location'] == 'debugfs_eevdf'
    assert s['location_matches_version'] is False
    notes = facts._notes({'sched': s})
    assert notes == ['scheduler tunables found in debugfs_eevdf, expected debugfs for this kernel version (backport?)']


# ---------------------------------------------------------------- gather

def _full_h100(fake):
    layout_kernel_6_12(fake)
    layout_cgroup_v2(fake)
    layout_hgx_h100(fake)
    layout_block_full(fake)
    layout_thp(fake)
    layout_vm_sysctls(fake)
    layout_zswap(fake, with_newer=True)
    layout_memory(fake)


def test_gather_all(fake):
    _full_h100(fake)
    f = facts.gather()
    assert f['gathered'] == ['kernel', 'cgroup', 'numa', 'gpus', 'block', 'memory', 'sched', 'swap']
    assert sorted(f) == ['block', 'cgroup', 'gathered', 'gpu_nodes', 'gpus', 'kernel', 'memory', 'notes', 'numa',
                         'sched', 'swap']
    assert f['kernel']['version'] == [6, 12]
    assert f['gpu_nodes'] == {'0': [0, 1, 2, 3], '1': [4, 5, 6, 7]}
    assert f['sched']['tunables_location'] == 'debugfs_eevdf'
    assert f['cgroup']['version'] == 2
    assert f['notes'] == []


def test_gather_subset_reads_only_what_is_asked(fake, monkeypatch):
    _full_h100(fake)

    def boom(*a, **k):
        raise AssertionError('should not be called')
    monkeypatch.setattr(facts, 'block_info', boom)
    monkeypatch.setattr(facts, 'kernel_config', boom)
    f = facts.gather(['gpus', 'numa'])
    assert f['gathered'] == ['numa', 'gpus']
    assert sorted(f) == ['gathered', 'gpu_nodes', 'gpus', 'notes', 'numa']


def test_gather_sched_alone_uses_kernel_config(fake):
    layout_kernel_6_12(fake, rt_group_sched=True)
    f = facts.gather(['sched'])
    assert 'kernel' not in f
    assert f['sched']['rt']['rt_group_sched'] is True


def test_gather_notes(fake):
    layout_workstation(fake)
    layout_kernel_6_1_lockdown(fake)
    layout_zswap(fake)
    fake.file('/sys/module/zswap/parameters/enabled', 'Y')
    fake.file('/proc/sys/kernel/sched_rt_runtime_us', '-1')
    os.remove(fake.path('/boot/config-6.1.0-28-amd64'))
    f = facts.gather()
    assert f['notes'] == [
        'kernel config not found (/proc/config.gz or /boot/config-6.1.0-28-amd64): kernel.config is null',
        'GPU 0 (0000:01:00.0): no NUMA info (numa_node is -1)',
        'scheduler tunables unavailable: kernel lockdown (integrity) blocks debugfs',
        'RT throttling is disabled (kernel.sched_rt_runtime_us = -1): a runaway SCHED_FIFO thread can starve the host',
        'zswap is enabled but no swap is active: zswap does nothing without swap',
    ]


def test_gather_empty_tree_never_fails(fake):
    f = facts.gather()
    assert f['gpus'] == [] and f['block'] == [] and f['swap']['active'] is False
    assert f['kernel']['release'] == '6.1.0-28-amd64'
    assert f['sched']['tunables_location'] == 'unavailable'


# -- bounds before expansion (issue 14): numbers are checked before any range is expanded

@pytest.mark.parametrize('text', ['0-4294967295', '4294967295', '0-' + '9' * 5000, '0-8192', '1-3,0-99999:1/2'])
def test_parse_cpulist_bound_checked_before_expanding(text):
    start = time.time()
    with pytest.raises(ValueError) as e:
        facts.parse_cpulist(text)
    assert time.time() - start < 0.5
    msg = str(e.value)
    assert 'is out of range: at most 8191' in msg and '\n' not in msg and len(msg) <= 300


def test_parse_cpulist_bound_from_caller_and_nr_cpus():
    assert facts.parse_cpulist('0-8191')[-1] == 8191
    with pytest.raises(ValueError, match=r"^number '4' is out of range: at most 3 in cpulist '0-4'$"):
        facts.parse_cpulist('0-4', bound=4)
    with pytest.raises(ValueError, match='at most 7'):
        facts.parse_cpulist('8', nr_cpus=8)


def test_parse_cpulist_message_bounded_and_escaped():
    with pytest.raises(ValueError) as e:
        facts.parse_cpulist('1,x\n' + 'y' * 10000)
    msg = str(e.value)
    assert '\n' not in msg and '\\n' in msg and len(msg) <= 300 and '(10004 chars)' in msg
