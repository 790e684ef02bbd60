# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cgroup v2 (unified hierarchy) helpers for cpusets: paths, controllers, cpuset files, partitions.

All paths are host paths under /sys/fs/cgroup and go through knob.host_path / knob.read_raw /
knob.write_raw, so unit tests run against a fake tree. Directory creation and removal go through
:func:`mkdir` / :func:`rmdir` (module attributes) because a real cgroupfs fills a new directory with
its interface files and lets a populated-by-files directory be removed, which a plain fake cannot.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.plugins.module_utils import cpus as cpulib
from ansible_collections.medai.llmhost.plugins.module_utils import sched

ROOT = '/sys/fs/cgroup'
PARTITION_VALUES = ('member', 'root', 'isolated')
_PART_RE = re.compile(r'^(member|root|isolated)(?:\s+invalid\s*(?:\((.*)\))?)?$')


class CgroupError(knob.KnobError):
    pass


def _mkdir(hp):
    os.mkdir(hp)


def _rmdir(hp):
    os.rmdir(hp)


# replaced by unit tests (see the module docstring)
mkdir = _mkdir
rmdir = _rmdir


def require_v2():
    """Fail clearly on a cgroup v1 or hybrid host; return the root's available controllers."""
    if not os.path.exists(knob.host_path(ROOT + '/cgroup.controllers')):
        hybrid = os.path.exists(knob.host_path(ROOT + '/unified/cgroup.controllers'))
        raise CgroupError('cgroup v1 host%s: %s/cgroup.controllers does not exist; cpusets here need the unified '
                          'hierarchy (the cpuset/cset v1 interface is deprecated and CONFIG_CPUSETS_V1 is off by '
                          'default since 6.12): use cgroup v2 (boot with systemd.unified_cgroup_hierarchy=1)'
                          % (' (hybrid: v2 only at %s/unified)' % ROOT if hybrid else '', ROOT), kind='unsupported')
    ctrls = controllers(ROOT)
    if 'cpuset' not in ctrls:
        raise CgroupError('the cpuset controller is not available in cgroup v2 on this kernel (%s): %s/cgroup.controllers '
                          'lists %s' % (knob.kernel_release(), ROOT, ' '.join(ctrls) or 'nothing'), kind='unsupported')
    return ctrls


# unit cgroups: systemd owns them, and cgroup v2's no-internal-processes rule forbids children with
# controllers below a cgroup that has processes of its own
UNIT_CGROUP_SUFFIXES = ('.service', '.scope', '.socket', '.mount', '.swap')
_CGROUP_NAME_RE = re.compile(r'^[A-Za-z0-9_.:@\\-]{1,255}\Z')


def normalize_path(path):
    """'llm/engine', '/llm/engine' or '/sys/fs/cgroup/llm/engine' -> '/sys/fs/cgroup/llm/engine'.

    Refused (CgroupError, kind invalid, one line): the root cgroup, empty components ('a//b', 'a//'),
    '.' and '..', characters outside [A-Za-z0-9_.:@\\-], interface file names (cgroup.*, cpuset.*), and
    anything inside systemd's unit cgroups (a *.service, *.scope, *.socket, *.mount or *.swap component,
    which includes init.scope): use slice mode there."""
    if not path or not isinstance(path, str):
        raise CgroupError('path must be a cgroup path under %s' % ROOT, kind='invalid')
    p = path
    if p == ROOT or p.startswith(ROOT + '/'):
        p = p[len(ROOT):]
    if p.endswith('/'):
        p = p[:-1]   # one trailing slash, as in 'llm/engine/'
    parts = p[1:].split('/') if p.startswith('/') else p.split('/')
    if parts == ['']:
        raise CgroupError('path %s is the root cgroup: refused (use a child cgroup)' % knob.show(path), kind='invalid')
    for part in parts:
        if part in ('', '.', '..'):
            raise CgroupError('path %s has an empty, "." or ".." component: refused' % knob.show(path), kind='invalid')
        if not _CGROUP_NAME_RE.match(part):
            raise CgroupError('path %s: component %s is not a cgroup name (letters, digits, "_.:@-\\", at most 255)'
                              % (knob.show(path), knob.show(part, 40)), kind='invalid')
        if part.startswith('cgroup.') or part.startswith('cpuset.'):
            raise CgroupError('path %s names a cgroup interface file, not a cgroup directory' % knob.show(path),
                              kind='invalid')
        if part.endswith(UNIT_CGROUP_SUFFIXES):
            raise CgroupError('path %s is inside the unit cgroup %s, which systemd owns (and cgroup v2 allows no '
                              'cpuset children beside its processes): use slice and units instead'
                              % (knob.show(path), knob.show(part, 40)), kind='invalid')
    return ROOT + '/' + '/'.join(parts)


def relative(cg):
    """'/sys/fs/cgroup/a/b' -> '/a/b' (the form /proc/<pid>/cgroup uses)."""
    return cg[len(ROOT):] or '/'


_SLICE_RE = re.compile(r'^[A-Za-z0-9:_.\\]+(-[A-Za-z0-9:_.\\]+)*\.slice\Z')


def slice_cgroup(slice_name):
    """systemd maps '-' in a slice name to nesting: 'llm-inference.slice' ->
    '/sys/fs/cgroup/llm.slice/llm-inference.slice'."""
    if not isinstance(slice_name, str) or len(slice_name) > 255 or slice_name == '-.slice' \
            or not _SLICE_RE.match(slice_name):
        raise CgroupError('invalid slice %s: expected a systemd slice name like llminference.slice (letters, digits, '
                          '":_.\\", "-" separating nesting levels, no "/", ending in .slice)' % knob.show(slice_name),
                          kind='invalid')
    base = slice_name[:-len('.slice')]
    parts = base.split('-')
    levels = ['-'.join(parts[:i + 1]) + '.slice' for i in range(len(parts))]
    return ROOT + '/' + '/'.join(levels)


def exists(cg):
    return os.path.isdir(knob.host_path(cg))


def read(cg, name):
    return knob.read_raw('%s/%s' % (cg, name)).strip()


def read_opt(cg, name):
    try:
        return read(cg, name)
    except knob.KnobError as e:
        if e.kind == 'missing':
            return None
        raise


def write(cg, name, value):
    knob.write_raw('%s/%s' % (cg, name), value)


def controllers(cg):
    return (read_opt(cg, 'cgroup.controllers') or '').split()


def subtree_control(cg):
    return (read_opt(cg, 'cgroup.subtree_control') or '').split()


def ancestors(cg):
    """Root first, up to (not including) cg: ['/sys/fs/cgroup', '/sys/fs/cgroup/a', ...]."""
    rel = [x for x in relative(cg).split('/') if x]
    return [ROOT + ''.join('/' + x for x in rel[:i]) for i in range(len(rel))]


def cpuset_missing_in(cg):
    """Ancestors whose cgroup.subtree_control lacks cpuset (so cg gets no cpuset files)."""
    return [a for a in ancestors(cg) if not exists(a) or 'cpuset' not in subtree_control(a)]


def enable_cpuset(cg):
    """Write +cpuset to every ancestor's cgroup.subtree_control that lacks it. Returns the list."""
    done = []
    for a in ancestors(cg):
        if not exists(a):
            break
        if 'cpuset' in subtree_control(a):
            continue
        try:
            write(a, 'cgroup.subtree_control', '+cpuset')
        except knob.KnobError as e:
            if 'EBUSY' in e.msg:
                raise CgroupError('cannot enable the cpuset controller below %s (EBUSY): cgroup v2 allows controllers '
                                  'in cgroup.subtree_control only for cgroups without processes of their own; move its '
                                  'processes into a child cgroup first' % a, kind='rejected')
            raise
        done.append(a)
    return done


def create(cg):
    """Create cg and any missing ancestors, enabling +cpuset on the way. Returns (created cgroups,
    cgroups whose subtree_control got +cpuset), both in the order done (top-down)."""
    created, enabled = [], []
    for level in ancestors(cg)[1:] + [cg]:
        if exists(level):
            continue
        enabled += enable_cpuset(level)
        mkdir(knob.host_path(level))
        created.append(level)
    enabled += enable_cpuset(cg)
    return created, enabled


def parse_partition(text):
    """'root' -> ('root', None); 'root invalid (Parent is not a partition root)' ->
    ('root', 'Parent is not a partition root'); 'isolated invalid' -> ('isolated', '')."""
    text = (text or '').strip()
    m = _PART_RE.match(text)
    if not m:
        return text, None
    if 'invalid' in text:
        return m.group(1), m.group(2) or ''
    return m.group(1), None


def procs(cg):
    text = read_opt(cg, 'cgroup.procs') or ''
    return [int(x) for x in text.split() if x.isdigit()]


def children(cg):
    hp = knob.host_path(cg)
    try:
        return sorted(n for n in os.listdir(hp) if os.path.isdir(os.path.join(hp, n)))
    except OSError:
        return []


def populated(cg):
    events = read_opt(cg, 'cgroup.events')
    if events is not None:
        for line in events.splitlines():
            if line.startswith('populated '):
                return line.split()[1] != '0'
    return bool(procs(cg))


def running_units(cg):
    """[(unit, cgroup)] of the populated service and scope cgroups below cg, looking through nested slices
    (what systemd runs there, whichever way it got there: a Slice= drop-in or the unit's own Slice=)."""
    out, stack = [], [cg]
    while stack:
        c = stack.pop()
        for child in children(c):
            path = c + '/' + child
            if child.endswith('.slice'):
                stack.append(path)
            elif child.endswith(('.service', '.scope')) and populated(path):
                out.append((child, path))
    return sorted(out)


def partitions(exclude=None):
    """{cgroup: [cpus]} of every valid root/isolated partition (exclude: a cgroup whose subtree is skipped)."""
    out = {}
    stack = [ROOT]
    while stack:
        cg = stack.pop()
        for child in children(cg):
            c = cg + '/' + child
            if exclude and (c == exclude or c.startswith(exclude + '/')):
                continue
            part = read_opt(c, 'cpuset.cpus.partition')
            if part is None:
                continue  # no cpuset here: none below either
            kind, reason = parse_partition(part)
            if kind in ('root', 'isolated') and reason is None:
                out[c] = cpulib.parse_cpulist(read_opt(c, 'cpuset.cpus.effective') or '')
            stack.append(c)
    return out


def pid_cgroup(pid):
    """Host cgroup path of a process, from its '0::' line in /proc/<pid>/cgroup."""
    try:
        text = knob.read_raw('/proc/%d/cgroup' % pid)
    except knob.KnobError:
        return None
    for line in text.splitlines():
        if line.startswith('0::'):
            rel = line[3:].strip()
            return ROOT if rel in ('', '/') else ROOT + rel
    return None


def move_pid(cg, pid):
    try:
        write(cg, 'cgroup.procs', str(pid))
    except knob.KnobError as e:
        raise CgroupError('moving pid %d into %s failed: %s' % (pid, cg, e.msg), kind=e.kind)


# ---------------------------------------------------------------- per-node kernel threads
# Creating or dissolving a partition makes the kernel set the affinity of every task left in the root
# cgroup that is not a per-CPU kthread (update_tasks_cpumask(&top_cpuset), since 5.19/6.0; 6.1 and
# 6.12 alike): kswapdN and kcompactdN lose their node's CPUs (lab, 6.1: kswapd1 2-3 -> 0-1 on
# creating a 2-3 partition, then 0-3 on dissolving it).

NODE_KTHREAD_RE = re.compile(r'^(kswapd|kcompactd)([0-9]+)\Z')


def node_kthreads():
    """{pid: (comm, node, cpus)} of the per-node kernel threads kswapdN and kcompactdN."""
    out = {}
    for pid in sched.list_pids():
        match = NODE_KTHREAD_RE.match(sched.read_comm(pid) or '')
        if not match:
            continue
        try:
            out[pid] = (match.group(0), int(match.group(2)), sched.SYS.getaffinity(pid))
        except OSError:
            continue
    return out


def node_cpus(node):
    text = read_opt('/sys/devices/system/node/node%d' % node, 'cpulist')
    return set(cpulib.parse_cpulist(text or '', 'node cpulist', bound=cpulib.MAX_CPUS))


def root_effective_cpus():
    return set(cpulib.parse_cpulist(read_opt(ROOT, 'cpuset.cpus.effective') or '', 'root cpus', bound=cpulib.MAX_CPUS))


def _set_affinity(pid, cpus):
    """(before, error): sets pid's affinity unless it already is `cpus`."""
    try:
        now = sched.SYS.getaffinity(pid)
        if now != cpus:
            sched.SYS.setaffinity(pid, cpus)
        return now, None
    except OSError as e:
        return None, e.strerror or str(e)


def reaffine_node_kthreads(before, root_before):
    """After a partition change, put each kthread of `before` (node_kthreads() taken before it) that
    was on its node's CPUs back on them (those the root cgroup still has). A thread on other CPUs
    (an operator's choice) is left alone; a node whose CPUs are all partitioned keeps the kernel's
    placement. Returns ([(comm, before, after)] changed, [(comm, error)] failed).

    A thread on exactly the root's CPUs while a partition exists (root_before is not every online CPU)
    sits where the kernel's last partition change put it - a partition made at boot by the
    medai-cpuset-partition@ unit, before any module saw the thread on its node - and is treated as
    node-affine: dissolving a boot-time partition brings it home. Without a partition, a thread on
    every CPU is left alone (nothing says the kernel put it there)."""
    root_after = root_effective_cpus()
    online = set(cpulib.online_cpus())
    kernel_reset = root_before if root_before and root_before != online else None
    done, failed = [], []
    for pid, (comm, node, was) in sorted(before.items()):
        ncpus = node_cpus(node)
        here = ncpus & root_before
        # on the node, on its part outside partitions, or where the kernel's partition change put it
        if not ncpus or was not in (ncpus, here, kernel_reset, root_before if not here else None):
            continue
        target = ncpus & root_after
        if not target:
            continue
        now, err = _set_affinity(pid, target)
        if err:
            failed.append((comm, err))
        elif now != target:
            done.append((comm, now, target))
    return done, failed


def restore_affinities(before):
    """Set each thread of `before` back to the affinity it had (set-back after a failed change)."""
    return [comm for pid, (comm, _node, was) in sorted(before.items()) if _set_affinity(pid, was)[1]]
