# -*- coding: utf-8 -*-
"""Memory layouts: /proc/meminfo, /proc/vmstat (6.1-era counters, or 5.10-era without zswpin/zswpout),
/proc/swaps, THP khugepaged and shmem files. Combine with fake_trees.layout_thp, layout_vm_sysctls
and layout_zswap."""
from __future__ import absolute_import, division, print_function

MEMINFO = """MemTotal:       2113420232 kB
MemFree:        2001234560 kB
MemAvailable:   2067891234 kB
Buffers:          123456 kB
Cached:         60123456 kB
SwapCached:            0 kB
Active:         20123456 kB
Inactive:       45123456 kB
SwapTotal:      67108860 kB
SwapFree:       67104764 kB
AnonHugePages:   8388608 kB
ShmemHugePages:        0 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
"""

VMSTAT_6_1 = """nr_free_pages 500308640
nr_zone_inactive_anon 12345
nr_zone_active_anon 2345678
pgpgin 123456789
pgpgout 987654321
pswpin 1024
pswpout 4096
pgalloc_dma 0
allocstall_dma 0
allocstall_dma32 0
allocstall_normal 17
allocstall_movable 3
allocstall_device 0
pgsteal_kswapd 123456
oom_kill 2
thp_fault_alloc 184467
thp_fault_fallback 68253
thp_fault_fallback_charge 0
thp_collapse_alloc 5123
thp_collapse_alloc_failed 12
thp_split_pmd 3456
zswpin 512
zswpout 2048
"""

# 5.10: no zswpin/zswpout counters yet, and no allocstall_device
VMSTAT_5_10 = """nr_free_pages 500308640
pswpin 0
pswpout 0
allocstall_dma 0
allocstall_dma32 0
allocstall_normal 0
allocstall_movable 0
oom_kill 0
thp_fault_alloc 1000
thp_fault_fallback 10
thp_collapse_alloc 4
thp_collapse_alloc_failed 0
"""

SWAPS_ACTIVE = """Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority
/dev/nvme0n1p3                          partition\t67108860\t4096\t\t-2
/swap\\040file                           file\t\t8388604\t\t0\t\t10
"""
SWAPS_NONE = 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n'


def layout_memory(fk, vmstat=VMSTAT_6_1, swaps=SWAPS_ACTIVE):
    fk.file('/proc/meminfo', MEMINFO, mode=0o444)
    fk.file('/proc/vmstat', vmstat, mode=0o444)
    fk.file('/proc/swaps', swaps, mode=0o444)
    fk.file('/sys/kernel/mm/transparent_hugepage/shmem_enabled', 'always within_size advise [never] deny force')
    fk.file('/sys/kernel/mm/transparent_hugepage/khugepaged/defrag', '1')
    fk.file('/sys/kernel/mm/transparent_hugepage/khugepaged/pages_to_scan', '4096')
