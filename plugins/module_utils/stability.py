# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stability counters of a host, read-only, through :func:`knob.host_path` (fake trees in unit tests).

* :func:`vmstat` - selected /proc/vmstat counters (OOM kills, THP fault fallbacks, allocation stalls,
  swap-in/out, zswap-in/out), with ``allocstall`` = the sum of the per-zone ``allocstall_*``.
* :func:`zswap_stats` - zswap pool: ``stored_pages`` from debugfs (``/sys/kernel/debug/zswap``) where it is
  mounted and readable, and ``Zswap:``/``Zswapped:`` from /proc/meminfo (kernel 5.19+) otherwise.
* :func:`memory_events` - a cgroup v2 ``memory.events`` (``oom``, ``oom_kill``, ``max``, ``high``, ...).
* :func:`find_unit_cgroup` - the cgroup directory of a systemd unit, by walking /sys/fs/cgroup.
* :func:`kernel_log_ooms` - OOM lines out of kernel log text (``journalctl -k`` / ``dmesg`` output).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.medai.llmhost.plugins.module_utils import knob

CGROUP_ROOT = '/sys/fs/cgroup'
ZSWAP_DEBUGFS = '/sys/kernel/debug/zswap'

# /proc/vmstat keys reported (present ones only; missing ones are listed in 'missing').
VMSTAT_KEYS = ('oom_kill', 'thp_fault_alloc', 'thp_fault_fallback', 'thp_fault_fallback_charge',
               'thp_collapse_alloc', 'thp_collapse_alloc_failed', 'thp_split_page',
               'pswpin', 'pswpout', 'zswpin', 'zswpout', 'zswpwb',
               'pgmajfault', 'compact_stall', 'compact_fail', 'pgscan_direct', 'pgsteal_direct')
ALLOCSTALL_PREFIX = 'allocstall_'
MEMINFO_KEYS = ('MemTotal', 'MemAvailable', 'SwapTotal', 'SwapFree', 'Zswap', 'Zswapped', 'AnonHugePages')

OOM_LINE = re.compile(r'Out of memory: Killed process|oom-kill:|Memory cgroup out of memory|invoked oom-killer')


def _read(path):
    try:
        with open(knob.host_path(path)) as f:
            return f.read()
    except (IOError, OSError):
        return None


def parse_kv(text, sep=None):
    out = {}
    for line in (text or '').splitlines():
        parts = line.split(sep, 1) if sep else line.split()
        if len(parts) != 2:
            continue
        k, v = parts[0].strip(), parts[1].strip()
        v = v.split()[0] if v else v
        try:
            out[k] = int(v)
        except ValueError:
            continue
    return out


def vmstat():
    """{'counters': {key: int}, 'missing': [keys this kernel lacks], 'available': bool}."""
    text = _read('/proc/vmstat')
    if text is None:
        return {'counters': {}, 'missing': list(VMSTAT_KEYS) + ['allocstall'], 'available': False}
    raw = parse_kv(text)
    counters = dict((k, raw[k]) for k in VMSTAT_KEYS if k in raw)
    stalls = dict((k, v) for k, v in raw.items() if k.startswith(ALLOCSTALL_PREFIX))
    if 'allocstall' in raw:  # kernels before 4.8 had one counter
        stalls['allocstall'] = raw['allocstall']
    counters.update(stalls)
    if stalls:
        counters['allocstall'] = sum(v for k, v in stalls.items() if k != 'allocstall') or raw.get('allocstall', 0)
    missing = [k for k in VMSTAT_KEYS if k not in raw] + ([] if stalls else ['allocstall'])
    return {'counters': counters, 'missing': missing, 'available': True}


def meminfo():
    """Selected /proc/meminfo values in kB."""
    raw = parse_kv(_read('/proc/meminfo'), ':')
    return dict((k, raw[k]) for k in MEMINFO_KEYS if k in raw)


def zswap_stats():
    """{'stored_pages': int|None, 'pool_total_size': int|None, 'source': 'debugfs'|'meminfo'|None,
    'meminfo_kb': {'Zswap':..,'Zswapped':..}, 'reason': why debugfs was not used}."""
    out = {'stored_pages': None, 'pool_total_size': None, 'source': None, 'meminfo_kb': {}, 'reason': None}
    stored = _read(ZSWAP_DEBUGFS + '/stored_pages')
    if stored is not None and stored.strip().lstrip('-').isdigit():
        out['stored_pages'] = int(stored.strip())
        pool = _read(ZSWAP_DEBUGFS + '/pool_total_size')
        if pool is not None and pool.strip().isdigit():
            out['pool_total_size'] = int(pool.strip())
        out['source'] = 'debugfs'
    elif not os.path.isdir(knob.host_path('/sys/kernel/debug')) or \
            not os.listdir(knob.host_path('/sys/kernel/debug')):
        out['reason'] = 'debugfs is not mounted at /sys/kernel/debug (or not readable, e.g. under lockdown)'
    else:
        out['reason'] = 'no %s/stored_pages (zswap not built in, or debugfs unreadable)' % ZSWAP_DEBUGFS
    mi = meminfo()
    out['meminfo_kb'] = dict((k, mi[k]) for k in ('Zswap', 'Zswapped') if k in mi)
    if out['source'] is None and out['meminfo_kb']:
        out['source'] = 'meminfo'
    return out


def normalize_cgroup(path):
    """'/system.slice/x.service' or '/sys/fs/cgroup/system.slice/x.service' -> absolute host path."""
    p = '/' + path.strip().strip('/')
    if p == CGROUP_ROOT or p.startswith(CGROUP_ROOT + '/'):
        return p
    return CGROUP_ROOT + (p if p != '/' else '')


def memory_events(cgroup):
    """{'path', 'available', 'events': {...}, 'reason'} for a cgroup (absolute or relative to /sys/fs/cgroup)."""
    cg = normalize_cgroup(cgroup)
    out = {'path': cg, 'available': False, 'events': {}, 'reason': None}
    if not os.path.isdir(knob.host_path(cg)):
        out['reason'] = 'cgroup %s does not exist (unit not running?)' % cg
        return out
    text = _read(cg + '/memory.events')
    if text is None:
        out['reason'] = 'no %s/memory.events (memory controller not enabled for this cgroup, or cgroup v1)' % cg
        return out
    out['events'] = parse_kv(text)
    out['available'] = True
    return out


def find_unit_cgroup(unit, max_depth=4):
    """The cgroup path of a systemd unit found by walking /sys/fs/cgroup (first match, breadth first)."""
    base = knob.host_path(CGROUP_ROOT)
    level = [base]
    for _depth in range(max_depth):
        nxt = []
        for d in level:
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue
            for n in names:
                p = os.path.join(d, n)
                if not os.path.isdir(p):
                    continue
                if n == unit:
                    rel = os.path.relpath(p, base)
                    return CGROUP_ROOT + '/' + rel
                nxt.append(p)
        level = nxt
    return None


def kernel_log_ooms(text, limit=20):
    """OOM-related lines of kernel log text (the last ``limit``) and their count."""
    lines = [ln.strip() for ln in (text or '').splitlines() if OOM_LINE.search(ln)]
    kills = [ln for ln in lines if 'Killed process' in ln]
    return {'lines': lines[-limit:], 'killed_processes': len(kills)}


def flatten(snapshot):
    """Numeric counters of a stability_counters result as one flat dict (for deltas):
    vmstat.<key>, zswap.stored_pages, meminfo.<key>, cgroup.<name>.<event>, kernel_log.killed_processes."""
    flat = {}
    for k, v in (snapshot.get('vmstat') or {}).items():
        flat['vmstat.' + k] = v
    z = snapshot.get('zswap') or {}
    if z.get('stored_pages') is not None:
        flat['zswap.stored_pages'] = z['stored_pages']
    for k, v in (z.get('meminfo_kb') or {}).items():
        flat['meminfo.%s_kb' % k] = v
    for name, cg in (snapshot.get('cgroups') or {}).items():
        for k, v in (cg.get('events') or {}).items():
            flat['cgroup.%s.%s' % (name, k)] = v
    kl = snapshot.get('kernel_log')
    if isinstance(kl, dict) and kl.get('killed_processes') is not None:
        flat['kernel_log.killed_processes'] = kl['killed_processes']
    return flat
