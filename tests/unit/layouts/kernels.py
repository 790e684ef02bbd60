# -*- coding: utf-8 -*-
"""Kernel layouts: release, /proc/sys/kernel/version, cmdline, lockdown, kernel config, /proc/mounts,
RT throttling sysctls and the scheduler tunables where each kernel generation keeps them.

* layout_kernel_5_10: Debian 11 (5.10.0-33-amd64): tunables in /proc/sys/kernel/sched_*_ns (CONFIG_SCHED_DEBUG=y),
  config in /boot/config-<release>.
* layout_kernel_6_1: Debian 12 (6.1.0-28-amd64): tunables in /sys/kernel/debug/sched/{latency,min_granularity,
  wakeup_granularity}_ns, config in /boot.
* layout_kernel_6_1_lockdown: the same kernel booted with Secure Boot: lockdown=integrity, debugfs not mounted.
* layout_kernel_6_12: Debian 13 (6.12.38+deb13-amd64), EEVDF: /sys/kernel/debug/sched/base_slice_ns and
  fair_server/cpuN/{runtime,period}; config in /proc/config.gz (gzip) and /boot.
"""
from __future__ import absolute_import, division, print_function

import gzip
import os

MOUNTS_BASE = [
    'sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0',
    'proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0',
    'udev /dev devtmpfs rw,nosuid,relatime,size=1056123456k,nr_inodes=264030864,mode=755,inode64 0 0',
    'devpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=000 0 0',
    'tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=211234567k,mode=755,inode64 0 0',
    '/dev/nvme0n1p2 / ext4 rw,relatime,errors=remount-ro 0 0',
    'securityfs /sys/kernel/security securityfs rw,nosuid,nodev,noexec,relatime 0 0',
    'tmpfs /dev/shm tmpfs rw,nosuid,nodev,inode64 0 0',
]
MOUNT_CGROUP2 = 'cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0'
MOUNT_DEBUGFS = 'debugfs /sys/kernel/debug debugfs rw,nosuid,nodev,noexec,relatime 0 0'
MOUNT_TRACEFS = 'tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec,relatime 0 0'

CONFIG_HEADER = """#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 %s Kernel Configuration
#
CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14) 12.2.0"
CONFIG_CC_IS_GCC=y
CONFIG_LOCALVERSION=""
# CONFIG_LOCALVERSION_AUTO is not set
CONFIG_DEFAULT_HOSTNAME="(none)"
CONFIG_HZ_250=y
CONFIG_HZ=250
CONFIG_NO_HZ_FULL=y
"""

# Lines the configs below share, in .config order.
PREEMPT_VOLUNTARY = """# CONFIG_PREEMPT_NONE is not set
CONFIG_PREEMPT_VOLUNTARY=y
# CONFIG_PREEMPT is not set
"""
NUMA_THP_ZSWAP = """CONFIG_NUMA=y
CONFIG_TRANSPARENT_HUGEPAGE=y
# CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS is not set
CONFIG_TRANSPARENT_HUGEPAGE_MADVISE=y
CONFIG_ZSWAP=y
"""
ZSWAP_LZ4_Z3FOLD = """CONFIG_ZSWAP_COMPRESSOR_DEFAULT_LZ4=y
CONFIG_ZSWAP_COMPRESSOR_DEFAULT="lz4"
CONFIG_ZSWAP_ZPOOL_DEFAULT_Z3FOLD=y
CONFIG_ZSWAP_ZPOOL_DEFAULT="z3fold"
# CONFIG_ZSWAP_DEFAULT_ON is not set
"""
CONFIG_TAIL = """CONFIG_SCHED_DEBUG=y
CONFIG_SECURITY_LOCKDOWN_LSM=y
"""


def kernel_config(version, preempt, sched, zswap):
    """.config text of kernel `version`: CONFIG_HEADER, its `preempt` lines (CONFIG_PREEMPT*, CONFIG_IKCONFIG*),
    its `sched` lines (group scheduling, cpusets), the NUMA/THP/zswap lines these kernels share, its `zswap`
    defaults, then CONFIG_TAIL."""
    return CONFIG_HEADER % version + preempt + sched + NUMA_THP_ZSWAP + zswap + CONFIG_TAIL


def preempt_dynamic(extra=''):
    """CONFIG_PREEMPT* lines of a Debian 6.x kernel (PREEMPT_DYNAMIC, voluntary by default); `extra` lines
    come after '# CONFIG_PREEMPT is not set'."""
    return 'CONFIG_PREEMPT_BUILD=y\n' + PREEMPT_VOLUNTARY + extra + """CONFIG_PREEMPT_COUNT=y
CONFIG_PREEMPTION=y
CONFIG_PREEMPT_DYNAMIC=y
CONFIG_PREEMPT_RCU=y
CONFIG_PREEMPT_NOTIFIERS=y
"""


CONFIG_5_10 = kernel_config(
    '5.10.226',
    preempt=PREEMPT_VOLUNTARY + """\
CONFIG_PREEMPT_COUNT=y
CONFIG_PREEMPT_NOTIFIERS=y
CONFIG_IKCONFIG=m
""",
    sched="""\
CONFIG_NUMA_BALANCING=y
CONFIG_CGROUP_SCHED=y
CONFIG_FAIR_GROUP_SCHED=y
CONFIG_CFS_BANDWIDTH=y
# CONFIG_RT_GROUP_SCHED is not set
CONFIG_CPUSETS=y
CONFIG_PROC_PID_CPUSET=y
""",
    zswap='# CONFIG_ZSWAP_COMPRESSOR_DEFAULT_DEFLATE is not set\n' + ZSWAP_LZ4_Z3FOLD)

CONFIG_6_1 = kernel_config(
    '6.1.119',
    preempt=preempt_dynamic() + 'CONFIG_IKCONFIG=m\n',
    sched="""\
CONFIG_CGROUP_SCHED=y
CONFIG_FAIR_GROUP_SCHED=y
# CONFIG_RT_GROUP_SCHED is not set
CONFIG_CPUSETS=y
""",
    zswap=ZSWAP_LZ4_Z3FOLD)

# A template: %(rt_group)s stands for the CONFIG_RT_GROUP_SCHED line.
CONFIG_6_12 = kernel_config(
    '6.12.38',
    preempt=preempt_dynamic('# CONFIG_PREEMPT_RT is not set\n') + """\
CONFIG_IKCONFIG=y
CONFIG_IKCONFIG_PROC=y
""",
    sched="""\
CONFIG_CGROUP_SCHED=y
CONFIG_FAIR_GROUP_SCHED=y
%(rt_group)s
CONFIG_CPUSETS=y
# CONFIG_CPUSETS_V1 is not set
""",
    zswap="""\
# CONFIG_ZSWAP_DEFAULT_ON is not set
# CONFIG_ZSWAP_SHRINKER_DEFAULT_ON is not set
CONFIG_ZSWAP_COMPRESSOR_DEFAULT_ZSTD=y
CONFIG_ZSWAP_COMPRESSOR_DEFAULT="zstd"
CONFIG_ZSWAP_ZPOOL_DEFAULT_ZSMALLOC=y
CONFIG_ZSWAP_ZPOOL_DEFAULT="zsmalloc"
""")


def write_mounts(fk, extra):
    fk.file('/proc/mounts', '\n'.join(MOUNTS_BASE + list(extra)), mode=0o444)


def write_config_gz(fk, text):
    hp = fk.path('/proc/config.gz')
    d = os.path.dirname(hp)
    if not os.path.isdir(d):
        os.makedirs(d)
    with gzip.open(hp, 'wb') as f:
        f.write(text.encode('utf-8'))
    os.chmod(hp, 0o444)


def _common(fk, release, build, lockdown='[none] integrity confidentiality', cmdline_extra=''):
    fk.release = release
    fk.file('/proc/sys/kernel/osrelease', release, mode=0o444)
    fk.file('/proc/sys/kernel/version', build, mode=0o444)
    fk.file('/proc/cmdline', 'BOOT_IMAGE=/boot/vmlinuz-%s root=UUID=2f1c7a3e-9b1d-4c55-8f0e-6a2b1c9d7e01 ro quiet%s'
            % (release, cmdline_extra), mode=0o444)
    if lockdown is not None:
        fk.file('/sys/kernel/security/lockdown', lockdown)
    fk.file('/proc/sys/kernel/sched_rt_runtime_us', '950000')
    fk.set_range('/proc/sys/kernel/sched_rt_runtime_us', -1, 1000000)
    fk.file('/proc/sys/kernel/sched_rt_period_us', '1000000')
    fk.file('/proc/sys/kernel/sched_autogroup_enabled', '1')


def layout_kernel_5_10(fk, lockdown=None):
    _common(fk, '5.10.0-33-amd64', '#1 SMP Debian 5.10.226-1 (2024-10-03)',
            lockdown=lockdown or '[none] integrity confidentiality')
    fk.file('/boot/config-5.10.0-33-amd64', CONFIG_5_10, mode=0o644)
    for name, value in (('sched_latency_ns', '24000000'), ('sched_min_granularity_ns', '3000000'),
                        ('sched_wakeup_granularity_ns', '4000000'), ('sched_migration_cost_ns', '500000'),
                        ('sched_nr_migrate', '32'), ('sched_tunable_scaling', '1')):
        fk.file('/proc/sys/kernel/' + name, value)
    # debugfs mounted, but 5.10 has only the sched_features file at its root, no sched/ directory
    fk.file('/sys/kernel/debug/sched_features', 'GENTLE_FAIR_SLEEPERS START_DEBIT NO_NEXT_BUDDY LAST_BUDDY')
    write_mounts(fk, [MOUNT_CGROUP2, MOUNT_DEBUGFS, MOUNT_TRACEFS])


def _debugfs_sched(fk, release, tunables, features):
    """/sys/kernel/debug/sched/ of a 6.x kernel: `tunables` ((name, value), ...), features, debug; returns the dir."""
    d = '/sys/kernel/debug/sched/'
    for name, value in tunables:
        fk.file(d + name, value)
    fk.file(d + 'features', features)
    fk.file(d + 'debug', 'Sched Debug Version: v0.11, %s #1' % release, mode=0o444)
    return d


def _debugfs_sched_6_1(fk):
    d = _debugfs_sched(fk, '6.1.0-28-amd64', (
        ('latency_ns', '24000000'), ('min_granularity_ns', '3000000'), ('idle_min_granularity_ns', '750000'),
        ('wakeup_granularity_ns', '4000000'), ('migration_cost_ns', '500000'), ('nr_migrate', '32'),
        ('latency_warn_ms', '100'), ('latency_warn_once', '1'), ('tunable_scaling', '1'), ('verbose', 'N'),
        ('preempt', 'none [voluntary] full')),
        'PLACE_LAG GENTLE_FAIR_SLEEPERS START_DEBIT NO_NEXT_BUDDY LAST_BUDDY')
    fk.file(d + 'numa_balancing/scan_delay_ms', '1000')
    fk.file(d + 'numa_balancing/scan_period_min_ms', '1000')


def layout_kernel_6_1(fk, debugfs=True, lockdown=None):
    _common(fk, '6.1.0-28-amd64', '#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)',
            lockdown=lockdown or '[none] integrity confidentiality')
    fk.file('/boot/config-6.1.0-28-amd64', CONFIG_6_1, mode=0o644)
    if debugfs:
        _debugfs_sched_6_1(fk)
        write_mounts(fk, [MOUNT_CGROUP2, MOUNT_DEBUGFS, MOUNT_TRACEFS])
    else:
        os.makedirs(fk.path('/sys/kernel/debug'))
        write_mounts(fk, [MOUNT_CGROUP2])


def layout_kernel_6_1_lockdown(fk):
    """Secure Boot: lockdown=integrity; debugfs not mounted (the sched directory does not exist)."""
    layout_kernel_6_1(fk, debugfs=False, lockdown='none [integrity] confidentiality')


def layout_kernel_6_12(fk, nr_cpus=4, rt_group_sched=False, config_gz=True, boot_config=True):
    release = '6.12.38+deb13-amd64'
    _common(fk, release, '#1 SMP PREEMPT_DYNAMIC Debian 6.12.38-1 (2025-07-16)')
    text = CONFIG_6_12 % {'rt_group': 'CONFIG_RT_GROUP_SCHED=y' if rt_group_sched
                          else '# CONFIG_RT_GROUP_SCHED is not set'}
    if config_gz:
        write_config_gz(fk, text)
    if boot_config:
        # /boot disagrees on purpose (a stale file): /proc/config.gz describes the running kernel and wins
        fk.file('/boot/config-' + release, text.replace('CONFIG_PREEMPT_VOLUNTARY=y', '# CONFIG_PREEMPT_VOLUNTARY is not set'))
    d = _debugfs_sched(fk, release, (
        ('base_slice_ns', '3000000'), ('migration_cost_ns', '500000'), ('nr_migrate', '32'),
        ('tunable_scaling', '1'), ('verbose', 'N'), ('preempt', 'none [voluntary] full')),
        'PLACE_LAG PLACE_DEADLINE_INITIAL PLACE_REL_DEADLINE RUN_TO_PARITY PREEMPT_SHORT')
    for cpu in range(nr_cpus):
        fk.file(d + 'fair_server/cpu%d/runtime' % cpu, '50000000')
        fk.file(d + 'fair_server/cpu%d/period' % cpu, '1000000000')
    write_mounts(fk, [MOUNT_CGROUP2, MOUNT_DEBUGFS, MOUNT_TRACEFS])
