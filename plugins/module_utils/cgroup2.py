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


def normalize_path(path):
    """'llm/engine', '/llm/engine' or '/sys/fs/cgroup/llm/engine' -> '/sys/fs/cgroup/llm/engine'."""
    if not path or not isinstance(path, str):
        raise CgroupError('path must be a cgroup path under %s' % ROOT, kind='invalid')
    p = path
    if p == ROOT or p.startswith(ROOT + '/'):
        p = p[len(ROOT):]
    parts = [x for x in p.split('/') if x]
    if not parts:
        raise CgroupError('path %s is the root cgroup: refused (use a child cgroup)' % path, kind='invalid')
    if any(x in ('.', '..') for x in parts):
        raise CgroupError('path %s contains "." or "..": refused' % path, kind='invalid')
    if any(x.startswith('cgroup.') or x.startswith('cpuset.') for x in parts):
        raise CgroupError('path %s names a cgroup interface file, not a cgroup directory' % path, kind='invalid')
    return ROOT + '/' + '/'.join(parts)


def relative(cg):
    """'/sys/fs/cgroup/a/b' -> '/a/b' (the form /proc/<pid>/cgroup uses)."""
    return cg[len(ROOT):] or '/'


_SLICE_RE = re.compile(r'^[A-Za-z0-9:_.\\]+(-[A-Za-z0-9:_.\\]+)*\.slice$')


def slice_cgroup(slice_name):
    """systemd maps '-' in a slice name to nesting: 'llm-inference.slice' ->
    '/sys/fs/cgroup/llm.slice/llm-inference.slice'."""
    if slice_name == '-.slice' or not _SLICE_RE.match(slice_name or ''):
        raise CgroupError('invalid slice name %r: expected a name like llminference.slice (letters, digits, ":_.\\", '
                          '"-" separating nesting levels, ending in .slice)' % slice_name, kind='invalid')
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
    """Create cg and any missing ancestors, enabling +cpuset on the way. Returns the created cgroups (top-down)."""
    created = []
    for level in ancestors(cg)[1:] + [cg]:
        if exists(level):
            continue
        enable_cpuset(level)
        mkdir(knob.host_path(level))
        created.append(level)
    enable_cpuset(cg)
    return created


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
