# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read, parse, write and verify one kernel knob (a file under /sys or /proc/sys).

Every path given by a user is a *host* path such as ``/sys/kernel/mm/transparent_hugepage/enabled``.
All file access goes through :func:`host_path`, which prefixes :data:`ROOT` (``/`` in production).
Unit tests point :data:`ROOT` at a fake tree so they never touch the real machine's kernel.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import platform
import re

ROOT = '/'

ALLOWED_ROOTS = ('/sys', '/proc/sys')

# Knobs that the field report (and many blog posts) name but that moved or never existed.
# path -> one-line hint naming what is true instead.
KNOWN_REPLACEMENTS = {
    '/proc/sys/kernel/sched_latency_ns': (
        'moved to /sys/kernel/debug/sched/latency_ns in 5.13 and removed with EEVDF in 6.6; '
        'use the llmhost_facts sched_tunables fact to find what this kernel has'),
    '/proc/sys/kernel/sched_min_granularity_ns': (
        'moved to /sys/kernel/debug/sched/min_granularity_ns in 5.13 and became '
        '/sys/kernel/debug/sched/base_slice_ns in 6.6 (EEVDF)'),
    '/proc/sys/kernel/sched_wakeup_granularity_ns': (
        'moved to /sys/kernel/debug/sched/wakeup_granularity_ns in 5.13 and removed in 6.6'),
    '/sys/kernel/debug/sched/latency_ns': 'removed in 6.6 (EEVDF); use /sys/kernel/debug/sched/base_slice_ns',
    '/sys/kernel/debug/sched/min_granularity_ns': 'renamed /sys/kernel/debug/sched/base_slice_ns in 6.6 (EEVDF)',
    '/sys/module/zswap/parameters/comp_algorithm': (
        "zswap's parameter is /sys/module/zswap/parameters/compressor (comp_algorithm is zram's); "
        'use the medai.llmhost.zswap module'),
    '/proc/sys/vm/vmstat_refresh': (
        'no such file; the kswapd watermark knobs are vm.min_free_kbytes, vm.watermark_scale_factor '
        'and vm.watermark_boost_factor (/proc/sys/vm/...)'),
    '/sys/kernel/mm/transparent_hugepage/enable': 'the file is /sys/kernel/mm/transparent_hugepage/enabled',
}

# Action files: files under /sys and /proc/sys that trigger something when written instead of holding
# a setting that reads back. A module that "set" them would suspend the host, drop caches, remove a
# device, ... so resolve_knob_path() refuses them (see refuse_action_file). Besides these lists, any
# file without read permission is a trigger (write-only: nothing to read back).
ACTION_TREES = {
    '/sys/power': 'power management: writing it suspends, hibernates or resumes the host or arms autosleep',
    '/sys/firmware': 'a firmware interface (EFI variables, ACPI tables), not a kernel knob',
    '/proc/sys/fs/binfmt_misc': 'binfmt_misc registers or removes program interpreters',
}
ACTION_FILES = {
    '/proc/sys/vm/drop_caches': 'writing it drops the page cache and slab caches once',
    '/proc/sys/vm/compact_memory': 'writing it compacts all memory once',
    '/proc/sys/vm/stat_refresh': 'writing it flushes the per-CPU vm counters once',
    '/proc/sys/net/ipv4/route/flush': 'writing it flushes the routing cache',
    '/proc/sys/net/ipv6/route/flush': 'writing it flushes the routing cache',
    '/sys/devices/system/memory/probe': 'writing it hot-adds memory',
    '/sys/devices/system/memory/soft_offline_page': 'writing it takes a memory page offline',
    '/sys/devices/system/memory/hard_offline_page': 'writing it takes a memory page offline',
}
# file names (anywhere under /sys) of device, bus, driver and cgroup triggers
ACTION_NAMES = {
    'delete': 'writing it deletes the device', 'remove': 'writing it removes the device',
    'rescan': 'writing it rescans the bus or device', 'scan': 'writing it scans the host for devices',
    'reset': 'writing it resets the device', 'bind': 'writing it binds a driver to a device',
    'unbind': 'writing it unbinds a device from its driver', 'new_id': 'writing it adds a device ID to a driver',
    'remove_id': 'writing it removes a device ID from a driver', 'drivers_probe': 'writing it probes drivers',
    'uevent': 'writing it sends a uevent (udev runs its rules for the device)',
    'reset_controller': 'writing it resets the NVMe controller',
    'rescan_controller': 'writing it rescans the NVMe controller',
    'delete_controller': 'writing it deletes the NVMe controller',
    'export': 'writing it exports a GPIO/PWM line', 'unexport': 'writing it unexports a GPIO/PWM line',
    'cgroup.kill': 'writing it kills every process of the cgroup',
    'cgroup.procs': 'writing it moves a process (use medai.llmhost.cpuset)',
    'cgroup.threads': 'writing it moves a thread (use medai.llmhost.cpuset)',
    'tasks': 'writing it moves a process (use medai.llmhost.cpuset)',
}

_BRACKET_RE = re.compile(r'\[([^\]]+)\]')


MAX_VALUE_CHARS = 80
MAX_MSG_CHARS = 300

_CONTROL_RE = re.compile(r'[\x00-\x1f\x7f]')


def has_control_char(text):
    """True when `text` holds a newline, tab or another control character."""
    return bool(_CONTROL_RE.search(text))


_OCTAL_MODE_RE = re.compile(r'^0?[0-7]{3}\Z')


def is_octal_mode(text):
    """True for a file mode written as an octal string: '644' or '0644'."""
    return isinstance(text, str) and bool(_OCTAL_MODE_RE.match(text))


def _escape_control(text):
    return _CONTROL_RE.sub(lambda m: {'\n': '\\n', '\t': '\\t', '\r': '\\r'}.get(
        m.group(0), '\\x%02x' % ord(m.group(0))), text)


def show(value, limit=MAX_VALUE_CHARS):
    """A user-given value as it may appear in a message: quoted, control characters escaped
    (``\\n``, ``\\x1b``), cut after `limit` characters with the full length named."""
    text = value if isinstance(value, str) else str(value)
    shown = _escape_control(text)
    if len(shown) > limit:
        shown = '%s...(%d chars)' % (shown[:limit], len(text))
    return "'%s'" % shown


def one_line(msg, limit=MAX_MSG_CHARS):
    """A message as a module may report it: one line, control characters escaped, at most `limit`
    characters; a longer one keeps its start and its end (where the reason and the hint stand)."""
    msg = _escape_control(str(msg))
    if len(msg) <= limit:
        return msg
    head = limit * 2 // 5
    tail = limit - head - 5
    return msg[:head] + ' ... ' + msg[-tail:]


class KnobError(Exception):
    """A one-line, actionable error about a knob (missing, read-only, rejected, unsafe).

    ``msg`` is always one line of at most MAX_MSG_CHARS (see one_line); ``details`` (a dict) carries
    what does not fit there, and is returned by the failing module as ``details``."""

    def __init__(self, msg, path=None, kind='error', details=None):
        msg = one_line(msg)
        super(KnobError, self).__init__(msg)
        self.msg = msg
        self.path = path
        self.kind = kind
        self.details = details or {}


def kernel_release():
    """Kernel release of the host (the real one: modules run on the managed host)."""
    return platform.release()


def host_path(path):
    """Map an absolute host path to the file to open (prefixing ROOT for fake trees)."""
    if not path.startswith('/'):
        raise KnobError('path %r must be absolute' % path, path=path, kind='invalid')
    if ROOT in ('/', ''):
        return path
    return os.path.join(ROOT, path.lstrip('/'))


def _strip_root(real):
    root = os.path.realpath(ROOT)
    if root == '/':
        return real
    if real == root:
        return '/'
    if real.startswith(root + os.sep):
        return real[len(root):]
    return real


def resolve_knob_path(path, allowed_roots=ALLOWED_ROOTS):
    """Resolve a user-given knob path; refuse anything that escapes the allowed roots, and action files.

    Returns the canonical host path (symlinks resolved, e.g. /sys/block/vdb -> /sys/devices/...).
    ``..`` components are refused outright, and so is a symlink whose target leaves /sys or /proc/sys,
    and a file that triggers something instead of holding a setting (refuse_action_file).
    """
    roots = ' or '.join(allowed_roots)
    if not isinstance(path, str) or not path.startswith('/'):
        raise KnobError('knob path %s must be an absolute path under %s' % (show(path), roots),
                        path=path, kind='invalid')
    if has_control_char(path):
        raise KnobError('knob path %s contains a control character: refused' % show(path), path=path, kind='invalid')
    if '..' in path.split('/'):
        raise KnobError('knob path %s contains "..": refused' % show(path), path=path, kind='invalid')
    norm = os.path.normpath(path)
    if not any(norm == r or norm.startswith(r + '/') for r in allowed_roots):
        raise KnobError('knob path %s is outside %s: refused' % (show(path), ' and '.join(allowed_roots)),
                        path=path, kind='invalid')
    real = _strip_root(os.path.realpath(host_path(norm)))
    if not any(real == r or real.startswith(r + '/') for r in allowed_roots):
        raise KnobError('knob path %s resolves to %s, outside %s: refused' % (show(path), show(real), ' and '.join(allowed_roots)),
                        path=path, kind='invalid', details={'resolved_path': real})
    refuse_action_file(norm, real)
    return real


def action_file_reason(path):
    """Why the host path `path` is an action file (a trigger, not a knob), or None."""
    for tree, reason in ACTION_TREES.items():
        if path == tree or path.startswith(tree + '/'):
            return reason
    if path in ACTION_FILES:
        return ACTION_FILES[path]
    if path.startswith('/sys/'):
        return ACTION_NAMES.get(os.path.basename(path))
    return None


def refuse_action_file(given, resolved):
    """Raise KnobError(kind='action') when `given` (the path the user gave) or `resolved` (its canonical
    path) is an action file: listed in ACTION_TREES / ACTION_FILES / ACTION_NAMES, or write-only."""
    reason = action_file_reason(given) or action_file_reason(resolved)
    hp = host_path(resolved)
    if reason is None and os.path.isfile(hp) and not os.stat(hp).st_mode & 0o444:
        reason = 'it has no read permission (write-only): a trigger whose value cannot be read back'
    if reason:
        raise KnobError('%s is an action file, not a knob: %s; refused' % (show(given, 120), reason),
                        path=given, kind='action', details={'resolved_path': resolved} if resolved != given else None)


def missing_message(path):
    msg = '%s does not exist on this kernel (%s)' % (path, kernel_release())
    hint = KNOWN_REPLACEMENTS.get(os.path.normpath(path))
    if hint:
        msg += ': ' + hint
    elif path.startswith('/sys/kernel/debug/'):
        msg += ': debugfs is not mounted or is locked down (Secure Boot), or the knob is not in this kernel'
    elif path.startswith('/sys/module/'):
        msg += ': the module is not loaded or not built into this kernel'
    return msg


def parse_knob(text):
    """Parse a knob's content.

    ``always [madvise] never`` -> ('madvise', ['always', 'madvise', 'never'])
    ``[none] mq-deadline``     -> ('none', ['none', 'mq-deadline'])
    ``10\\n``                  -> ('10', None)
    Multi-line content is kept as is (whitespace at both ends stripped).
    """
    text = text.strip()
    if '\n' not in text:
        match = _BRACKET_RE.search(text)
        if match:
            choices = [c.strip('[]') for c in text.split()]
            return match.group(1).strip(), choices
    return text, None


def normalize(value):
    """Normalise a value for comparison: strings stripped, inner whitespace runs folded."""
    if isinstance(value, bool):
        value = int(value)
    return ' '.join(str(value).split())


def _named(path, name):
    """(label for messages, details) of a knob: `name` is how the user or the module names the knob
    (e.g. /sys/block/sda/queue/nr_requests), `path` its resolved path, which then goes to details."""
    if name and name != path:
        return name, {'resolved_path': path}
    return path, None


def read_raw(path, name=None):
    """Read the raw text of a knob (host path). Raises KnobError with a clear reason; messages name
    the knob `name` (default: path)."""
    label, details = _named(path, name)
    try:
        with open(host_path(path), 'r') as f:
            return f.read()
    except (IOError, OSError) as e:
        if e.errno == errno.ENOENT:
            raise KnobError(missing_message(label), path=path, kind='missing', details=details)
        if e.errno in (errno.EACCES, errno.EPERM):
            raise KnobError('%s cannot be read (%s): permission denied; run with become: true' % (label, e.strerror),
                            path=path, kind='permission', details=details)
        if e.errno == errno.EISDIR:
            raise KnobError('%s is a directory, not a knob' % label, path=path, kind='invalid', details=details)
        raise KnobError('%s cannot be read: %s' % (label, e.strerror or e), path=path, kind='io', details=details)


def read_knob(path, name=None):
    """Return {'path', 'raw', 'value', 'choices'} for a knob."""
    raw = read_raw(path, name)
    value, choices = parse_knob(raw)
    return {'path': path, 'raw': raw, 'value': value, 'choices': choices}


def is_writable(path):
    hp = host_path(path)
    if not os.path.exists(hp):
        return False
    st = os.stat(hp)
    return bool(st.st_mode & 0o222) and os.access(hp, os.W_OK)


def _write_file(hp, data):
    """One open(O_WRONLY|O_TRUNC) + write(2), like `echo data > file`. Unit tests replace this
    with a fake kernel that emulates bracketed choices and EINVAL."""
    fd = os.open(hp, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data.encode('utf-8'))
    finally:
        os.close(fd)


def write_raw(path, value, name=None):
    """Write a value to a knob (one write(2), as `echo value > knob` does). Clear errors, naming the
    knob `name` (default: path)."""
    label, details = _named(path, name)
    data = str(value)
    if not data.endswith('\n'):
        data += '\n'
    hp = host_path(path)
    if not os.path.exists(hp):
        raise KnobError(missing_message(label), path=path, kind='missing', details=details)
    if not os.stat(hp).st_mode & 0o222:
        raise KnobError('%s is read-only on this kernel (%s)' % (label, kernel_release()), path=path, kind='readonly',
                        details=details)
    try:
        _write_file(hp, data)
    except (IOError, OSError) as e:
        if e.errno == errno.EINVAL:
            raise KnobError('the kernel rejected %s for %s (EINVAL): value out of range or not offered here'
                            % (show(value), label), path=path, kind='rejected', details=details)
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise KnobError('%s cannot be written (%s): read-only on this kernel, or not running as root'
                            % (label, e.strerror), path=path, kind='readonly', details=details)
        if e.errno == errno.EBUSY:
            raise KnobError('%s is busy (EBUSY): the kernel refused the change now; retry or stop its user first'
                            % label, path=path, kind='rejected', details=details)
        if e.errno == errno.ENOENT:
            raise KnobError(missing_message(label), path=path, kind='missing', details=details)
        raise KnobError('writing %s to %s failed: %s' % (show(value), label, e.strerror or e), path=path, kind='io',
                        details=details)


def values_match(current, desired):
    """True when the knob's effective value equals the desired one (after normalisation)."""
    return normalize(current) == normalize(desired)


def validate_choice(path, desired, choices, name=None):
    """For bracketed-choice knobs: refuse a value the kernel does not offer, naming what it offers."""
    if choices is not None and normalize(desired) not in choices:
        label, details = _named(path, name)
        raise KnobError('%s does not offer %s on this kernel (%s); offered: %s'
                        % (label, show(desired), kernel_release(), ', '.join(choices)), path=path, kind='invalid',
                        details=details)


def apply_knob(path, desired, check_mode=False, read_back=True, name=None):
    """Set one knob to `desired` if it differs; return a result dict.

    Result: {'path', 'before', 'after', 'changed', 'choices'}. In check mode nothing is written and
    'after' is the desired value. After a write, 'after' is what the kernel reports back; if it
    differs from what was asked, KnobError(kind='not_effective') is raised.
    """
    cur = read_knob(path, name)
    validate_choice(path, desired, cur['choices'], name)
    result = {'path': path, 'before': cur['value'], 'after': cur['value'], 'changed': False,
              'choices': cur['choices']}
    if values_match(cur['value'], desired):
        return result
    result['changed'] = True
    if check_mode:
        result['after'] = normalize(desired)
        return result
    write_raw(path, desired, name)
    if read_back:
        eff = read_knob(path, name)['value']
        result['after'] = eff
        if not values_match(eff, desired):
            label, details = _named(path, name)
            raise KnobError('wrote %s to %s but the kernel reports %s: the value did not take effect'
                            % (show(desired), label, show(eff)), path=path, kind='not_effective', details=details)
    else:
        result['after'] = normalize(desired)
    return result


def sysctl_name(path):
    """/proc/sys/vm/swappiness -> vm.swappiness ; None for paths outside /proc/sys."""
    if not path.startswith('/proc/sys/'):
        return None
    return path[len('/proc/sys/'):].replace('.', '\0').replace('/', '.').replace('\0', '/')


def sysctl_path(name):
    """vm.swappiness -> /proc/sys/vm/swappiness (a '/' in a sysctl name stands for a literal dot)."""
    return '/proc/sys/' + name.replace('.', '\0').replace('/', '.').replace('\0', '/')


# ---------------------------------------------------------------- helpers added for the knob modules

_TRUE = ('1', 'y', 'yes', 'on', 'true')
_FALSE = ('0', 'n', 'no', 'off', 'false')


def kernel_bool(value):
    """Bool-like value -> 'Y'/'N' (how module bool parameters read back); None if not bool-like."""
    if isinstance(value, bool):
        return 'Y' if value else 'N'
    s = normalize(value).lower()
    if s in _TRUE:
        return 'Y'
    if s in _FALSE:
        return 'N'
    return None


def host_realpath(path):
    """Host path with every symlink resolved (inside ROOT for fake trees), e.g.
    /dev/disk/by-id/nvme-X -> /dev/nvme0n1. The target need not exist."""
    return _strip_root(os.path.realpath(host_path(path)))


def preflight(path, desired, name=None):
    """Check, without writing, that `desired` can be applied to `path`: the knob exists, offers the
    value (bracketed choices) and is writable when a change is needed. Returns read_knob()'s dict
    plus 'changed' (whether a write would be needed). Raises KnobError."""
    cur = read_knob(path, name)
    validate_choice(path, desired, cur['choices'], name)
    cur['changed'] = not values_match(cur['value'], desired)
    if cur['changed'] and not os.stat(host_path(path)).st_mode & 0o222:
        label, details = _named(path, name)
        raise KnobError('%s is read-only on this kernel (%s)' % (label, kernel_release()), path=path, kind='readonly',
                        details=details)
    return cur


def rollback_message(reason, rolled_back, unrestored, names=None):
    """The message of a failed apply_knobs(): `reason` (why the write failed) with what the set-back did:
    'rollback FAILED for <paths>: check the host; <reason>' (the paths first), or '<reason>; nothing
    left half-applied: restored <path=value, ...>' (a count when the list would not fit in one message)."""
    names = names or {}
    if unrestored:
        return 'rollback FAILED for %s: check the host; %s' % (', '.join(names.get(p) or p for p in unrestored), reason)
    if not rolled_back:
        return reason
    restored = ', '.join('%s=%s' % (names.get(p) or p, v) for p, v in (x.split('=', 1) for x in rolled_back))
    if len(reason) + len(restored) > MAX_MSG_CHARS - 35:
        restored = '%d knob(s) (see details)' % len(rolled_back)
    return '%s; nothing left half-applied: restored %s' % (reason, restored)


def apply_knobs(items, check_mode=False, names=None):
    """Apply [(path, desired), ...] in order, all or nothing (as far as the kernel allows).

    Every item is checked with preflight() before the first write. If a write then fails (EINVAL,
    EBUSY, value not effective), the knobs already written by this call are set back to their
    previous values in the same order they were applied (so e.g. a block device's scheduler is
    restored before its nr_requests) and the KnobError is re-raised with a note appended; the
    error carries ``applied`` (results written before the failure), ``rolled_back`` (paths
    restored), ``unrestored`` (paths whose set-back failed: still changed), ``reason`` (the failed
    write's own message) and ``names``; see rollback_message(). Returns the list of
    apply_knob() results. `names` ({path: name}) gives the names messages use for resolved paths
    (the resolved paths then go to the error's details).
    """
    names = names or {}
    befores = [preflight(path, desired, names.get(path))['value'] for path, desired in items]
    results = []
    for i, (path, desired) in enumerate(items):
        try:
            results.append(apply_knob(path, desired, check_mode=check_mode, name=names.get(path)))
        except KnobError as e:
            applied = [r for r in results if r['changed']]
            # the failing knob too: a write that "did not take effect" may still have changed it
            restore = [(r['path'], r['before']) for r in applied] + [(path, befores[i])]
            rolled, failed, unrestored = [], [], []
            for rpath, before in restore:
                try:
                    if apply_knob(rpath, before, name=names.get(rpath))['changed']:
                        rolled.append('%s=%s' % (rpath, before))
                except KnobError as re_err:
                    failed.append({'path': rpath, 'error': re_err.msg})
                    unrestored.append(rpath)
            msg = rollback_message(e.msg, rolled, unrestored, names)
            details = dict(e.details)
            if failed:
                details['set_back_failed'] = failed
            if rolled:
                details['restored'] = rolled
            err = KnobError(msg, path=e.path, kind=e.kind, details=details)
            err.applied = applied
            err.rolled_back = rolled
            err.unrestored = unrestored
            err.index = i
            err.reason = e.msg
            err.names = names
            raise err
    return results


def run_and_exit(module, run, warnings=None, io_errors=True):
    """End a module's main(): module.exit_json(**run()), after module.warn() for each of `warnings`
    (the list run() appends to). A KnobError fails the module with its one-line message; with
    io_errors, an IOError/OSError (writing a state or persistence file) with 'cannot write <file>:
    <reason>' (without, it is not caught)."""
    io_error_types = (IOError, OSError) if io_errors else ()
    try:
        result = run()
    except KnobError as e:
        extra = {'details': e.details} if e.details else {}
        module.fail_json(msg=e.msg, error_kind=e.kind, **extra)
    except io_error_types as e:
        module.fail_json(msg=one_line('cannot write %s: %s' % (getattr(e, 'filename', None) or 'a file',
                                                               e.strerror or e)))
    for w in warnings or ():
        module.warn(w)
    module.exit_json(**result)
