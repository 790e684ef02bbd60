# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only host facts for LLM-serving hosts: kernel, cgroup, NUMA, GPUs, block devices, memory,
swap and scheduler tunables.

Everything here is a pure function over files read through :func:`knob.host_path` (so unit tests
run on fake trees). Nothing is written and no command is run. A file that is missing or cannot be
read gives ``None`` (never an exception); callers decide what that means.

Reusable helpers for other modules and roles:

* :func:`parse_cpulist` / :func:`format_cpulist` - ``'0-3,8,10-11'`` <-> ``[0, 1, 2, 3, 8, 10, 11]``
* :func:`parse_cpumask` / :func:`format_cpumask` - ``'ff,00000000'`` <-> CPU list (IRQ affinity masks)
* :func:`kernel_version` - ``'6.1.0-28-amd64'`` -> ``[6, 1]``
* :func:`kernel_config` - selected CONFIG_* values from /proc/config.gz or /boot/config-<release>
* :func:`cgroup_info`, :func:`numa_info`, :func:`gpu_list`, :func:`gpu_numa_map`, :func:`block_info`,
  :func:`memory_info`, :func:`swap_info`, :func:`sched_tunables`, :func:`gather`
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import os
import re

from ansible_collections.medai.llmhost.plugins.module_utils import knob

SUBSETS = ('kernel', 'cgroup', 'numa', 'gpus', 'block', 'memory', 'sched', 'swap')

NVIDIA_VENDOR = '0x10de'

CONFIG_KEYS = ('CONFIG_RT_GROUP_SCHED', 'CONFIG_CPUSETS', 'CONFIG_CPUSETS_V1', 'CONFIG_SCHED_DEBUG',
               'CONFIG_IKCONFIG_PROC', 'CONFIG_NUMA')
CONFIG_PREFIXES = ('CONFIG_PREEMPT', 'CONFIG_ZSWAP', 'CONFIG_TRANSPARENT_HUGEPAGE')

# Block devices that are skipped: memory- or file-backed, no I/O scheduler worth tuning.
# (zram swap shows up in the swap facts.)
SKIP_BLOCK_PREFIXES = ('loop', 'ram', 'zram')

VMSTAT_COUNTERS = ('thp_fault_alloc', 'thp_fault_fallback', 'thp_collapse_alloc', 'thp_collapse_alloc_failed',
                   'pswpin', 'pswpout', 'zswpin', 'zswpout', 'oom_kill')
VMSTAT_PREFIXES = ('allocstall_',)

VM_SYSCTLS = ('vm.swappiness', 'vm.min_free_kbytes', 'vm.watermark_scale_factor', 'vm.watermark_boost_factor',
              'kernel.numa_balancing')

# Scheduler tunables: canonical name -> path per location.
SCHED_PROCFS = {
    'latency_ns': '/proc/sys/kernel/sched_latency_ns',
    'min_granularity_ns': '/proc/sys/kernel/sched_min_granularity_ns',
    'wakeup_granularity_ns': '/proc/sys/kernel/sched_wakeup_granularity_ns',
    'migration_cost_ns': '/proc/sys/kernel/sched_migration_cost_ns',
}
SCHED_DEBUGFS_DIR = '/sys/kernel/debug/sched'
SCHED_DEBUGFS = {
    'latency_ns': SCHED_DEBUGFS_DIR + '/latency_ns',
    'min_granularity_ns': SCHED_DEBUGFS_DIR + '/min_granularity_ns',
    'wakeup_granularity_ns': SCHED_DEBUGFS_DIR + '/wakeup_granularity_ns',
    'migration_cost_ns': SCHED_DEBUGFS_DIR + '/migration_cost_ns',
}
SCHED_DEBUGFS_EEVDF = {
    'base_slice_ns': SCHED_DEBUGFS_DIR + '/base_slice_ns',
    'migration_cost_ns': SCHED_DEBUGFS_DIR + '/migration_cost_ns',
}
# How the kernel scales the tunables with the CPU count (0 none, 1 log, 2 linear), per location. The kernel keeps
# each tunable as value / factor and recomputes value = factor * base whenever scheduling domains are rebuilt
# (CPU hotplug, a cpuset partition created at boot); a debugfs write of a tunable does not update the base, a
# write of tunable_scaling does.
SCHED_SCALING = {
    'procfs': '/proc/sys/kernel/sched_tunable_scaling',
    'debugfs': SCHED_DEBUGFS_DIR + '/tunable_scaling',
    'debugfs_eevdf': SCHED_DEBUGFS_DIR + '/tunable_scaling',
}
SCHED_SCALING_NAMES = {0: 'none', 1: 'log', 2: 'linear'}
# The file whose presence identifies each location.
_SCHED_MARKERS = (
    ('debugfs_eevdf', ('base_slice_ns',), SCHED_DEBUGFS_EEVDF),
    ('debugfs', ('latency_ns', 'min_granularity_ns', 'wakeup_granularity_ns'), SCHED_DEBUGFS),
    ('procfs', ('latency_ns', 'min_granularity_ns', 'wakeup_granularity_ns'), SCHED_PROCFS),
)


# ---------------------------------------------------------------- low-level readers

def read_text(path):
    """Content of a host file (stripped), or None when it is missing or unreadable."""
    try:
        return knob.read_raw(path).strip()
    except (knob.KnobError, IOError, OSError, UnicodeDecodeError):
        return None


def read_int(path):
    """Integer content of a host file, or None (missing, unreadable, not an integer)."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text, 0) if text.lower().startswith('0x') else int(text)
    except ValueError:
        return None


def read_choice(path):
    """Bracketed-choice file -> {'value', 'choices'}; a plain file -> {'value', 'choices': None}; None if missing."""
    text = read_text(path)
    if text is None:
        return None
    value, choices = knob.parse_knob(text)
    return {'value': value, 'choices': choices}


def exists(path):
    return os.path.exists(knob.host_path(path))


def listdir(path):
    """Sorted entries of a host directory ([] when missing or unreadable)."""
    try:
        return sorted(os.listdir(knob.host_path(path)))
    except (IOError, OSError):
        return []


def link_basename(path):
    """Basename of a symlink's target (e.g. a PCI device's driver), or None."""
    try:
        return os.path.basename(os.readlink(knob.host_path(path)).rstrip('/'))
    except (IOError, OSError):
        return None


def _natural_key(name):
    return [int(p) if p.isdigit() else p for p in re.split(r'(\d+)', name)]


# ---------------------------------------------------------------- CPU lists and masks

# The kernel's largest NR_CPUS (CONFIG_NR_CPUS with MAXSMP): no CPU or node number reaches it.
MAX_CPUS = 8192
_CPU_NUMBER_RE = re.compile(r'^[0-9]+\Z')


class CpulistError(ValueError):
    """A cpulist that cannot be parsed: ``reason`` names the offending part, str() adds the list (shown
    with knob.show: quoted, escaped, cut)."""

    def __init__(self, text, reason):
        super(CpulistError, self).__init__('%s in cpulist %s' % (reason, knob.show(text)))
        self.reason = reason


def parse_cpulist(text, nr_cpus=None, bound=None):
    """Expand a kernel CPU list into a sorted list of unique ints.

    Accepts what the kernel prints and what it parses on the command line:
    ``'0-3,8,10-11'`` -> ``[0, 1, 2, 3, 8, 10, 11]``; ``''``, ``None`` and ``'(null)'`` -> ``[]``;
    stride groups ``'0-7:2/4'`` (first 2 CPUs of every group of 4) -> ``[0, 1, 4, 5]``;
    ``'N'`` (the last CPU) when ``nr_cpus`` is given. Raises ValueError (one bounded line) on anything else.

    Every number is checked against ``bound`` (exclusive; default ``nr_cpus``, else :data:`MAX_CPUS`)
    before any range is expanded, so ``'0-4294967295'`` fails at once instead of allocating.
    """
    if text is None:
        return []
    text = str(text).strip()
    if text in ('', '(null)'):
        return []
    if bound is None:
        bound = nr_cpus if nr_cpus is not None else MAX_CPUS
    cpus = set()

    def _num(tok):
        tok = tok.strip()
        if tok == 'N':
            if nr_cpus is None:
                raise CpulistError(text, "'N' is used but the number of CPUs is unknown")
            return nr_cpus - 1
        if not _CPU_NUMBER_RE.match(tok):
            raise CpulistError(text, 'invalid number %s' % knob.show(tok, 20))
        if len(tok) > len(str(bound)) or int(tok) >= bound:
            raise CpulistError(text, 'number %s is out of range: at most %d' % (knob.show(tok, 20), bound - 1))
        return int(tok)

    # every number is checked first: nothing is expanded before the whole list is within bounds
    parts = []
    for part in text.split(','):
        part = part.strip()
        if not part:
            raise CpulistError(text, 'empty element')
        used, group = None, None
        if ':' in part:
            part, stride = part.split(':', 1)
            if '/' not in stride:
                raise CpulistError(text, 'invalid group %s (expected used/size)' % knob.show(stride, 20))
            used, group = (_num(x) for x in stride.split('/', 1))
            if used < 1 or group < 1 or used > group:
                raise CpulistError(text, 'invalid group %s/%s' % (used, group))
        if '-' in part:
            lo, hi = (_num(x) for x in part.split('-', 1))
        else:
            lo = hi = _num(part)
        if lo > hi:
            raise CpulistError(text, 'descending range %d-%d' % (lo, hi))
        parts.append((lo, hi, used, group))
    for lo, hi, used, group in parts:
        for cpu in range(lo, hi + 1):
            if group is None or (cpu - lo) % group < used:
                cpus.add(cpu)
    return sorted(cpus)


def format_cpulist(cpus):
    """Compress CPU numbers into the kernel's list format: ``[0, 1, 2, 3, 8, 10, 11]`` -> ``'0-3,8,10-11'``.

    Duplicates and order do not matter; an empty list gives ``''``. Runs of two are printed as a
    range (``10-11``), as the kernel does.
    """
    nums = sorted(set(int(c) for c in cpus))
    if any(c < 0 for c in nums):
        raise ValueError('negative CPU number in %r' % (cpus,))
    out = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else '%d-%d' % (nums[i], nums[j]))
        i = j + 1
    return ','.join(out)


def parse_cpumask(text):
    """Kernel hex CPU mask (``'00000000,0000ffff'``, as in smp_affinity or local_cpus) -> list of CPUs."""
    if text is None:
        return []
    hexstr = str(text).strip().replace(',', '')
    if hexstr.lower().startswith('0x'):
        hexstr = hexstr[2:]
    if not hexstr:
        return []
    value = int(hexstr, 16)
    cpus = []
    cpu = 0
    while value:
        if value & 1:
            cpus.append(cpu)
        value >>= 1
        cpu += 1
    return cpus


def format_cpumask(cpus, nr_cpus=None):
    """CPU list -> kernel hex mask in 32-bit comma-separated words (``[0, 1]`` -> ``'00000003'``).

    With ``nr_cpus`` the mask is padded to cover that many CPUs, as the kernel prints it.
    """
    value = 0
    for cpu in set(int(c) for c in cpus):
        if cpu < 0:
            raise ValueError('negative CPU number in %r' % (cpus,))
        value |= 1 << cpu
    bits = max(value.bit_length(), nr_cpus or 0, 1)
    words = (bits + 31) // 32
    return ','.join('%08x' % ((value >> (32 * w)) & 0xffffffff) for w in reversed(range(words)))


# ---------------------------------------------------------------- kernel

def kernel_version(release):
    """``'6.1.0-28-amd64'`` -> ``[6, 1]``; ``'5.14.0-427.el9.x86_64'`` -> ``[5, 14]``; None if unparsable."""
    match = re.match(r'^(\d+)\.(\d+)', str(release or ''))
    if not match:
        return None
    return [int(match.group(1)), int(match.group(2))]


def version_at_least(version, major, minor):
    """True when ``version`` ([major, minor]) is >= major.minor; False for an unknown version."""
    if not version:
        return False
    return tuple(version) >= (major, minor)


def parse_kernel_config(text, keys=CONFIG_KEYS, prefixes=CONFIG_PREFIXES):
    """Parse kernel .config text; return the wanted keys -> 'y'/'m'/'n'/value (quotes stripped).

    ``# CONFIG_X is not set`` gives ``'n'``. Every key in ``keys`` is present in the result
    (``None`` when the option does not exist in this config); ``prefixes`` add every matching option.
    """
    result = dict((k, None) for k in keys)
    unset = re.compile(r'^# (CONFIG_\w+) is not set$')
    for line in text.splitlines():
        line = line.strip()
        name = value = None
        match = unset.match(line)
        if match:
            name, value = match.group(1), 'n'
        elif line.startswith('CONFIG_') and '=' in line:
            name, value = line.split('=', 1)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
        if name is None:
            continue
        if name in result or any(name.startswith(p) for p in prefixes):
            result[name] = value
    return result


def kernel_config(release, keys=CONFIG_KEYS, prefixes=CONFIG_PREFIXES):
    """Selected kernel config options from /proc/config.gz (gzip) or /boot/config-<release>.

    Returns ``(config_dict, source_path)``; ``(None, None)`` when neither file exists or can be read.
    """
    gz = knob.host_path('/proc/config.gz')
    if os.path.exists(gz):
        try:
            with gzip.open(gz, 'rb') as f:
                text = f.read().decode('utf-8', 'replace')
            return parse_kernel_config(text, keys, prefixes), '/proc/config.gz'
        except (IOError, OSError, EOFError):
            pass
    if release:
        path = '/boot/config-%s' % release
        text = read_text(path)
        if text is not None:
            return parse_kernel_config(text, keys, prefixes), path
    return None, None


def parse_cmdline(cmdline):
    """Kernel command line -> dict name -> value (``None`` for a bare flag; the last occurrence wins)."""
    args = {}
    for tok in (cmdline or '').split():
        if tok == '--':
            break
        if '=' in tok:
            name, value = tok.split('=', 1)
            args[name] = value
        else:
            args[tok] = None
    return args


def kernel_info(release=None):
    """Kernel facts: release, version, build, cmdline, cmdline_args, lockdown, config, config_source."""
    if release is None:
        release = knob.kernel_release()
    lock = read_choice('/sys/kernel/security/lockdown')
    cmdline = read_text('/proc/cmdline')
    config, source = kernel_config(release)
    return {
        'release': release,
        'version': kernel_version(release),
        'build': read_text('/proc/sys/kernel/version'),
        'cmdline': cmdline,
        'cmdline_args': parse_cmdline(cmdline),
        'lockdown': lock['value'] if lock else None,
        'config': config,
        'config_source': source,
    }


# ---------------------------------------------------------------- mounts / cgroup

def read_mounts():
    """/proc/mounts -> list of {'source', 'path', 'type', 'options'}; None when unreadable."""
    text = read_text('/proc/mounts')
    if text is None:
        return None
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            mounts.append({'source': fields[0], 'path': fields[1].replace('\\040', ' '), 'type': fields[2],
                           'options': fields[3].split(',')})
    return mounts


CGROUP_ROOT = '/sys/fs/cgroup'
_V1_SKIP = ('unified', 'systemd', 'name=systemd')


def cgroup_info():
    """cgroup facts.

    version: 2 (unified: /sys/fs/cgroup/cgroup.controllers exists), 'hybrid' (v1 controller
    hierarchies plus a v2 tree at /sys/fs/cgroup/unified, systemd's hybrid mode), 1 (v1 controller
    hierarchies only) or None (nothing mounted). controllers: the v2 root's cgroup.controllers on
    v2; on v1 and hybrid the mounted v1 controllers (unified_controllers: the v2 tree's, usually
    empty in hybrid mode). cpuset_partitions: cgroup v2 cpuset partitions usable (root offers
    cpuset or a child has cpuset.cpus.partition). cpuset_v1: a v1 cpuset hierarchy is mounted
    (what the legacy `cset` tool needs).
    """
    unified = None
    if exists(CGROUP_ROOT + '/cgroup.controllers'):
        unified = CGROUP_ROOT
    elif exists(CGROUP_ROOT + '/unified/cgroup.controllers'):
        unified = CGROUP_ROOT + '/unified'
    v1 = []
    if unified != CGROUP_ROOT:
        for name in listdir(CGROUP_ROOT):
            if name in _V1_SKIP or os.path.islink(knob.host_path(CGROUP_ROOT + '/' + name)):
                continue
            if exists('%s/%s/cgroup.procs' % (CGROUP_ROOT, name)) or exists('%s/%s/tasks' % (CGROUP_ROOT, name)):
                v1.extend(c for c in name.split(',') if c not in v1)
    if unified == CGROUP_ROOT:
        version = 2
    elif v1 and unified:
        version = 'hybrid'
    elif v1:
        version = 1
    elif unified:
        version = 'hybrid'
    else:
        version = None

    controllers = []
    subtree = []
    partitions = False
    if unified:
        controllers = (read_text(unified + '/cgroup.controllers') or '').split()
        subtree = (read_text(unified + '/cgroup.subtree_control') or '').split()
        if 'cpuset' in controllers:
            partitions = True
        else:
            for child in listdir(unified):
                if exists('%s/%s/cpuset.cpus.partition' % (unified, child)):
                    partitions = True
                    break
    v1_controllers = sorted(v1)
    return {
        'version': version,
        'mount': CGROUP_ROOT if version is not None else None,
        'unified_mount': unified,
        'controllers': controllers if version == 2 else v1_controllers,
        'unified_controllers': controllers,
        'v1_controllers': v1_controllers,
        'subtree_control': subtree,
        'cpuset_partitions': partitions,
        'cpuset_v1': 'cpuset' in v1,
        'cpus_effective': read_text(unified + '/cpuset.cpus.effective') if unified else None,
        'mems_effective': read_text(unified + '/cpuset.mems.effective') if unified else None,
    }


# ---------------------------------------------------------------- NUMA

NODE_ROOT = '/sys/devices/system/node'
CPU_ROOT = '/sys/devices/system/cpu'


def _safe_cpulist(text):
    try:
        return parse_cpulist(text)
    except ValueError:
        return []


def _meminfo_kib(text, key):
    """Value in KiB of `key` in a meminfo text (/proc/meminfo or nodeN/meminfo), or None."""
    pat = re.compile(r'(?:^|\s)%s:\s+(\d+)(?:\s+kB)?' % re.escape(key))
    for line in (text or '').splitlines():
        match = pat.search(line)
        if match:
            return int(match.group(1))
    return None


def numa_nodes():
    """NUMA nodes sorted by id: [{id, cpulist, cpus, memory_mib, distance}]. [] without /sys/devices/system/node."""
    nodes = []
    ids = []
    for name in listdir(NODE_ROOT):
        match = re.match(r'^node(\d+)$', name)
        if match:
            ids.append(int(match.group(1)))
    for nid in sorted(ids):
        base = '%s/node%d' % (NODE_ROOT, nid)
        cpulist = read_text(base + '/cpulist')
        mem_kib = _meminfo_kib(read_text(base + '/meminfo'), 'MemTotal')
        distance = read_text(base + '/distance')
        try:
            distance = [int(d) for d in distance.split()] if distance else []
        except ValueError:
            distance = []
        nodes.append({
            'id': nid,
            'cpulist': cpulist if cpulist is not None else '',
            'cpus': _safe_cpulist(cpulist),
            'memory_mib': mem_kib // 1024 if mem_kib is not None else None,
            'distance': distance,
        })
    return nodes


def _cpulist_fact(path):
    text = read_text(path)
    if text == '(null)':
        text = ''
    return text, _safe_cpulist(text)


def numa_info():
    """NUMA and CPU facts: nodes, node_count, online/possible/isolated/nohz_full (cpulist string + ints)."""
    nodes = numa_nodes()
    out = {'nodes': nodes, 'node_count': len(nodes)}
    for key, path in (('online', CPU_ROOT + '/online'), ('possible', CPU_ROOT + '/possible'),
                      ('isolated', CPU_ROOT + '/isolated'), ('nohz_full', CPU_ROOT + '/nohz_full')):
        text, cpus = _cpulist_fact(path)
        out[key] = text
        out[key + '_cpus'] = cpus
    return out


def cpu_node_map(nodes=None):
    """CPU number -> NUMA node id."""
    result = {}
    for node in (numa_nodes() if nodes is None else nodes):
        for cpu in node['cpus']:
            result[cpu] = node['id']
    return result


# ---------------------------------------------------------------- PCI / GPUs

PCI_ROOT = '/sys/bus/pci/devices'
_PCI_ADDR_RE = re.compile(r'^([0-9a-fA-F]{4,}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$')


def pci_sort_key(address):
    """'0000:3a:00.0' -> (0, 0x3a, 0, 0): numeric PCI bus order (domain, bus, device, function)."""
    match = _PCI_ADDR_RE.match(address)
    if not match:
        return (1 << 32, 0, 0, 0, address)
    return tuple(int(g, 16) for g in match.groups()) + (address,)


def pci_devices(vendor=None):
    """Every PCI device under /sys/bus/pci/devices (optionally of one vendor), in PCI bus order.

    Each: {pci, vendor, device, subsystem_vendor, subsystem_device, class, numa_node (raw int or None),
    local_cpulist, driver}.
    """
    out = []
    for addr in sorted(listdir(PCI_ROOT), key=pci_sort_key):
        base = '%s/%s' % (PCI_ROOT, addr)
        dev_vendor = (read_text(base + '/vendor') or '').lower()
        if vendor is not None and dev_vendor != vendor.lower():
            continue
        out.append({
            'pci': addr,
            'vendor': dev_vendor or None,
            'device': (read_text(base + '/device') or '').lower() or None,
            'subsystem_vendor': (read_text(base + '/subsystem_vendor') or '').lower() or None,
            'subsystem_device': (read_text(base + '/subsystem_device') or '').lower() or None,
            'class': (read_text(base + '/class') or '').lower() or None,
            'numa_node': read_int(base + '/numa_node'),
            'local_cpulist': read_text(base + '/local_cpulist'),
            'driver': link_basename(base + '/driver'),
        })
    return out


def is_display_class(pci_class):
    """PCI class 0x03xxxx: display controller (0x030000 VGA, 0x030200 3D controller, 0x038000 other)."""
    try:
        return (int(pci_class, 16) >> 16) == 0x03
    except (TypeError, ValueError):
        return False


def gpu_list():
    """NVIDIA GPUs (vendor 0x10de, class 0x03xxxx) in PCI bus order.

    ``index`` is the position in PCI bus-id order: it equals nvidia-smi's index, and CUDA's device
    index only when CUDA_DEVICE_ORDER=PCI_BUS_ID (CUDA's default order is FASTEST_FIRST), and only
    while CUDA_VISIBLE_DEVICES is unset. NVSwitches (class 0x068000), the GPUs' HDA audio functions
    (0x040300) and other NVIDIA functions are not GPUs. ``numa_node`` -1 (no NUMA info from the
    firmware) is reported as None with a note.
    """
    gpus = []
    for dev in pci_devices(NVIDIA_VENDOR):
        if not is_display_class(dev['class']):
            continue
        notes = []
        node = dev['numa_node']
        if node is None:
            notes.append('no NUMA info (numa_node missing)')
        elif node < 0:
            node = None
            notes.append('no NUMA info (numa_node is -1)')
        cpulist = dev['local_cpulist']
        gpus.append({
            'index': len(gpus),
            'pci': dev['pci'],
            'vendor': dev['vendor'],
            'device': dev['device'],
            'subsystem_device': dev['subsystem_device'],
            'class': dev['class'],
            'numa_node': node,
            'local_cpulist': cpulist,
            'local_cpus': _safe_cpulist(cpulist),
            'driver': dev['driver'],
            'notes': notes,
        })
    return gpus


def gpu_numa_map(gpus=None):
    """NUMA node id -> list of GPU indexes (ints as keys; GPUs without NUMA info under key None)."""
    result = {}
    for gpu in (gpu_list() if gpus is None else gpus):
        result.setdefault(gpu['numa_node'], []).append(gpu['index'])
    return result


def gpu_nodes_fact(gpus):
    """gpu_numa_map with string keys, as facts carry them (JSON): {'0': [0, 1], 'unknown': [2]}.

    GPUs without NUMA info are listed under 'unknown'.
    """
    nodes = {}
    for node, idx in gpu_numa_map(gpus).items():
        nodes['unknown' if node is None else str(node)] = idx
    return nodes


# ---------------------------------------------------------------- block devices

BLOCK_ROOT = '/sys/block'
BY_ID_DIR = '/dev/disk/by-id'


def disk_by_id():
    """Device name -> sorted list of /dev/disk/by-id names pointing at it."""
    result = {}
    for name in listdir(BY_ID_DIR):
        target = None
        try:
            target = os.readlink(knob.host_path(BY_ID_DIR + '/' + name))
        except (IOError, OSError):
            continue
        dev = os.path.basename(os.path.normpath(os.path.join(BY_ID_DIR, target)))
        result.setdefault(dev, []).append(name)
    return result


def block_device(name, by_id=None):
    """Facts of one /sys/block/<name> device (see block_info)."""
    base = '%s/%s' % (BLOCK_ROOT, name)
    sched = read_choice(base + '/queue/scheduler')
    if sched is not None and sched['choices'] is None:
        sched['choices'] = [sched['value']] if sched['value'] else []
    rot = read_int(base + '/queue/rotational')
    rem = read_int(base + '/removable')
    sectors = read_int(base + '/size')
    model = read_text(base + '/device/model')
    if by_id is None:
        by_id = disk_by_id()
    return {
        'name': name,
        'scheduler': sched['value'] if sched else None,
        'schedulers': sched['choices'] if sched else [],
        'rotational': bool(rot) if rot is not None else None,
        'nr_requests': read_int(base + '/queue/nr_requests'),
        'read_ahead_kb': read_int(base + '/queue/read_ahead_kb'),
        'size_bytes': sectors * 512 if sectors is not None else None,
        'model': model or None,
        'removable': bool(rem) if rem is not None else None,
        'by_id': sorted(by_id.get(name, [])),
    }


def block_info():
    """Block devices under /sys/block, by name (natural order), except loop*, ram* and zram*.

    Returns a list of dicts with name, scheduler (current), schedulers (offered), rotational,
    nr_requests, read_ahead_kb, size_bytes (/sys/block/<dev>/size counts 512-byte sectors whatever
    the logical block size), model, removable, by_id.
    """
    by_id = disk_by_id()
    devices = []
    for name in sorted(listdir(BLOCK_ROOT), key=_natural_key):
        if name.startswith(SKIP_BLOCK_PREFIXES):
            continue
        devices.append(block_device(name, by_id))
    return devices


# ---------------------------------------------------------------- memory / swap

THP_DIR = '/sys/kernel/mm/transparent_hugepage'
ZSWAP_DIR = '/sys/module/zswap/parameters'


def parse_vmstat(text, counters=VMSTAT_COUNTERS, prefixes=VMSTAT_PREFIXES):
    """Counters of interest from /proc/vmstat text; named counters missing on this kernel are None."""
    result = dict((c, None) for c in counters)
    for line in (text or '').splitlines():
        fields = line.split()
        if len(fields) != 2:
            continue
        if fields[0] in result or fields[0].startswith(prefixes):
            try:
                result[fields[0]] = int(fields[1])
            except ValueError:
                pass
    return result


def zswap_params():
    """All zswap parameters (raw strings) from /sys/module/zswap/parameters; None when absent."""
    if not exists(ZSWAP_DIR):
        return None
    params = {}
    for name in listdir(ZSWAP_DIR):
        params[name] = read_text(ZSWAP_DIR + '/' + name)
    return params


def sysctl_value(name):
    """A sysctl's value by name (int when numeric), or None when the kernel does not have it."""
    text = read_text(knob.sysctl_path(name))
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return text


def memory_info():
    """Memory facts: thp (enabled/defrag/shmem_enabled/khugepaged_defrag), zswap, sysctl, vmstat, totals."""
    thp = {}
    for key in ('enabled', 'defrag', 'shmem_enabled'):
        thp[key] = read_choice('%s/%s' % (THP_DIR, key))
    thp['khugepaged_defrag'] = read_int(THP_DIR + '/khugepaged/defrag')
    meminfo = read_text('/proc/meminfo')
    total = _meminfo_kib(meminfo, 'MemTotal')
    avail = _meminfo_kib(meminfo, 'MemAvailable')
    return {
        'thp': thp,
        'zswap': zswap_params(),
        'sysctl': dict((name, sysctl_value(name)) for name in VM_SYSCTLS),
        'vmstat': parse_vmstat(read_text('/proc/vmstat')),
        'total_mib': total // 1024 if total is not None else None,
        'available_mib': avail // 1024 if avail is not None else None,
    }


def parse_swaps(text):
    """/proc/swaps text -> [{name, type, size_kib, used_kib, priority}] (names with \\040 unescaped)."""
    out = []
    for line in (text or '').splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        try:
            out.append({'name': fields[0].replace('\\040', ' '), 'type': fields[1], 'size_kib': int(fields[2]),
                        'used_kib': int(fields[3]), 'priority': int(fields[4])})
        except ValueError:
            continue
    return out


def swap_info():
    """Swap facts: devices (active swap areas), active (bool), total_kib, used_kib."""
    devices = parse_swaps(read_text('/proc/swaps'))
    return {
        'devices': devices,
        'active': bool(devices),
        'total_kib': sum(d['size_kib'] for d in devices),
        'used_kib': sum(d['used_kib'] for d in devices),
    }


# ---------------------------------------------------------------- scheduler

def expected_sched_location(version):
    """Where CFS/EEVDF tunables live by kernel version: procfs (<=5.12), debugfs (5.13-6.5),
    debugfs_eevdf (>=6.6); None for an unknown version."""
    if not version:
        return None
    if not version_at_least(version, 5, 13):
        return 'procfs'
    if not version_at_least(version, 6, 6):
        return 'debugfs'
    return 'debugfs_eevdf'


def _debugfs_mounted(mounts):
    if mounts is not None:
        return any(m['type'] == 'debugfs' and m['path'] == '/sys/kernel/debug' for m in mounts)
    return bool(listdir('/sys/kernel/debug'))


def sched_tunables(release=None, lockdown=None, config=None, mounts=None):
    """Scheduler facts: where the CFS/EEVDF tunables are on this kernel, their values, and RT throttling.

    ``expected_location`` comes from the kernel version; ``tunables_location`` from what exists and
    can be read (procfs, debugfs, debugfs_eevdf or unavailable with ``unavailable_reason``).
    ``tunables`` maps a canonical name (latency_ns, min_granularity_ns, wakeup_granularity_ns,
    base_slice_ns, migration_cost_ns) to {'path', 'value'}. ``lockdown``/``config``/``mounts`` are
    read when not given.
    """
    if release is None:
        release = knob.kernel_release()
    version = kernel_version(release)
    if lockdown is None:
        lock = read_choice('/sys/kernel/security/lockdown')
        lockdown = lock['value'] if lock else None
    if config is None:
        config = kernel_config(release)[0]
    expected = expected_sched_location(version)

    location = 'unavailable'
    tunables = {}
    present = None
    for loc, markers, paths in _SCHED_MARKERS:
        if any(exists(paths[m]) for m in markers if m in paths):
            present = present or loc
            for name, path in sorted(paths.items()):
                value = read_int(path)
                if value is not None:
                    tunables[name] = {'path': path, 'value': value}
            if any(m in tunables for m in markers):
                location = loc
                break
            tunables = {}

    scaling = None
    if location in SCHED_SCALING:
        value = read_int(SCHED_SCALING[location])
        if value is not None:
            scaling = {'path': SCHED_SCALING[location], 'value': value,
                       'name': SCHED_SCALING_NAMES.get(value, str(value))}

    reason = None
    if location == 'unavailable':
        if mounts is None:
            mounts = read_mounts()
        locked = lockdown not in (None, 'none')
        if present is not None:
            reason = ('the %s tunables exist but cannot be read: %s' % (
                present, 'kernel lockdown (%s) blocks debugfs' % lockdown if locked and present != 'procfs'
                else 'permission denied (run with become: true)'))
        elif expected == 'procfs':
            reason = 'not in this kernel: before 5.13 the procfs tunables need CONFIG_SCHED_DEBUG=y'
        elif locked:
            reason = 'kernel lockdown (%s) blocks debugfs' % lockdown
        elif not _debugfs_mounted(mounts):
            reason = 'debugfs is not mounted at /sys/kernel/debug'
        elif exists('/sys/kernel/debug') and not os.access(knob.host_path('/sys/kernel/debug'), os.R_OK | os.X_OK):
            reason = 'permission denied on /sys/kernel/debug (run with become: true)'
        else:
            reason = '%s not present (CONFIG_SCHED_DEBUG off?)' % SCHED_DEBUGFS_DIR

    runtime = read_int('/proc/sys/kernel/sched_rt_runtime_us')
    period = read_int('/proc/sys/kernel/sched_rt_period_us')
    if runtime is None:
        throttling = None
    else:
        throttling = 'disabled' if runtime < 0 else 'enabled'

    fair_dir = SCHED_DEBUGFS_DIR + '/fair_server'
    fair_cpus = [c for c in listdir(fair_dir) if re.match(r'^cpu\d+$', c)]
    fair_cpus.sort(key=_natural_key)
    if any(exists('%s/%s/runtime' % (fair_dir, c)) for c in fair_cpus):
        fair = True
    elif exists(SCHED_DEBUGFS_DIR):
        fair = False
    else:
        fair = None  # debugfs unavailable: cannot tell
    fair_runtime = read_int('%s/%s/runtime' % (fair_dir, fair_cpus[0])) if fair else None

    # An option missing from a readable config is off (its dependencies are not enabled).
    rt_group = None if config is None else config.get('CONFIG_RT_GROUP_SCHED') == 'y'

    preempt = read_choice(SCHED_DEBUGFS_DIR + '/preempt')
    return {
        'expected_location': expected,
        'tunables_location': location,
        'location_matches_version': location == expected,
        'unavailable_reason': reason,
        'tunables': tunables,
        'tunable_scaling': scaling,
        'preempt': preempt['value'] if preempt else None,
        'rt': {
            'sched_rt_runtime_us': runtime,
            'sched_rt_period_us': period,
            'rt_throttling': throttling,
            'fair_server': fair,
            'fair_server_expected': version_at_least(version, 6, 12),
            'fair_server_runtime_ns': fair_runtime,
            'rt_group_sched': rt_group,
        },
    }


# ---------------------------------------------------------------- everything

def _notes(facts):
    notes = []
    kernel = facts.get('kernel')
    if kernel is not None and kernel['config'] is None:
        notes.append('kernel config not found (/proc/config.gz or /boot/config-%s): kernel.config is null'
                     % kernel['release'])
    for gpu in facts.get('gpus') or []:
        for note in gpu['notes']:
            notes.append('GPU %d (%s): %s' % (gpu['index'], gpu['pci'], note))
    sched = facts.get('sched')
    if sched is not None:
        if sched['tunables_location'] == 'unavailable':
            notes.append('scheduler tunables unavailable: %s' % sched['unavailable_reason'])
        elif not sched['location_matches_version'] and sched['expected_location']:
            notes.append('scheduler tunables found in %s, expected %s for this kernel version (backport?)'
                         % (sched['tunables_location'], sched['expected_location']))
        if sched['rt']['rt_throttling'] == 'disabled':
            notes.append('RT throttling is disabled (kernel.sched_rt_runtime_us = -1): a runaway SCHED_FIFO '
                         'thread can starve the host')
    memory = facts.get('memory')
    swap = facts.get('swap')
    if memory is not None and swap is not None and memory['zswap'] and not swap['active']:
        if str(memory['zswap'].get('enabled')).upper() in ('Y', '1'):
            notes.append('zswap is enabled but no swap is active: zswap does nothing without swap')
    return notes


def gather(subsets=None, release=None):
    """Gather the given fact subsets (default: all) into one dict, plus 'gathered' and 'notes'."""
    if subsets is None or 'all' in subsets:
        subsets = SUBSETS
    subsets = [s for s in SUBSETS if s in subsets]
    if release is None:
        release = knob.kernel_release()
    facts = {}
    kernel = None
    if 'kernel' in subsets or 'sched' in subsets:
        kernel = kernel_info(release)
    if 'kernel' in subsets:
        facts['kernel'] = kernel
    if 'cgroup' in subsets:
        facts['cgroup'] = cgroup_info()
    if 'numa' in subsets:
        facts['numa'] = numa_info()
    if 'gpus' in subsets:
        facts['gpus'] = gpu_list()
        facts['gpu_nodes'] = gpu_nodes_fact(facts['gpus'])
    if 'block' in subsets:
        facts['block'] = block_info()
    if 'memory' in subsets:
        facts['memory'] = memory_info()
    if 'swap' in subsets:
        facts['swap'] = swap_info()
    if 'sched' in subsets:
        facts['sched'] = sched_tunables(release, lockdown=kernel['lockdown'], config=kernel['config'])
    facts['gathered'] = list(subsets)
    facts['notes'] = _notes(facts)
    return facts
