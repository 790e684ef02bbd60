# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scheduling policy / CPU affinity of processes and threads, and how to find them.

* Every scheduler syscall goes through :data:`SYS` (an instance of :class:`Syscalls`). Unit tests
  replace it with a fake so that no test ever changes the policy or affinity of a real process.
* Every /proc and /sys file is opened through :func:`knob.host_path`, so a fake /proc tree works.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fnmatch
import gzip
import os
import re

from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.plugins.module_utils import cpus as cpulib

# Linux policy numbers (include/uapi/linux/sched.h); os.SCHED_* only exist where Python was built with them.
SCHED_OTHER = 0
SCHED_FIFO = 1
SCHED_RR = 2
SCHED_BATCH = 3
SCHED_IDLE = 5
SCHED_DEADLINE = 6
SCHED_RESET_ON_FORK = 0x40000000

POLICIES = {'other': SCHED_OTHER, 'fifo': SCHED_FIFO, 'rr': SCHED_RR, 'batch': SCHED_BATCH, 'idle': SCHED_IDLE}
POLICY_NAMES = dict((v, k) for k, v in POLICIES.items())
POLICY_NAMES[SCHED_DEADLINE] = 'deadline'
RT_POLICIES = ('fifo', 'rr')
RT_PRIO_MIN = 1
RT_PRIO_MAX = 99

# Policies the RT deny-list applies to (deadline cannot be set by this collection, but is real-time too).
RT_DENY_POLICIES = ('fifo', 'rr', 'deadline')

# Units and processes that never get a real-time policy (unless `force`): a runaway or merely busy RT thread
# starves what is needed to see and repair the host - logging (the field report froze a box with FIFO on
# logging), backups, monitoring, remote access and systemd itself. Case-insensitive shell globs, matched
# against unit names (with and without the unit suffix) and process names (/proc/<pid>/comm, <= 15 chars).
# THE deny-list of the collection: chrt_priority enforces it, the scheduling role and its thread watcher
# receive it from chrt_priority's `rt_denylist` return value and add only their own extra entries.
RT_DENYLIST = (
    # logging
    '*journal*', '*syslog*', '*log*', 'fluent-bit*', 'fluentd*', 'td-agent*', 'filebeat*', 'logstash*', 'promtail*',
    'vector', 'auditd', 'loki*',
    # backup
    '*backup*', '*restic*', '*borg*', '*bacula*', '*bareos*', '*dump*', 'rsnapshot*', 'duplicity*', 'amanda*',
    'urbackup*', 'veeam*',
    # monitoring
    '*monitor*', '*exporter*', '*prometheus*', 'zabbix*', 'telegraf*', 'collectd*', 'netdata*', 'datadog*',
    'nagios*', 'nrpe*', 'icinga*', 'munin*', 'grafana-agent*', 'alloy', 'snmpd', '*dcgm*', 'nv-hostengine',
    # remote access and the system itself
    '*sshd*', '*ssh', 'dropbear*', 'systemd', 'systemd-*', 'init', '*cron*', '*dbus*', 'polkit*',
)

# systemd unit types (systemd.unit(5)); a name without one of these suffixes gets '.service'.
UNIT_SUFFIXES = ('service', 'socket', 'device', 'mount', 'automount', 'swap', 'target', 'path', 'timer', 'slice',
                 'scope')
UNIT_NAME_MAX = 255
_UNIT_SUFFIX_RE = re.compile(r'\.(%s)$' % '|'.join(UNIT_SUFFIXES))
_UNIT_CHARS_RE = re.compile(r'^[A-Za-z0-9:_.@\\-]+\Z')
PATTERN_MAX = 255

RT_RUNTIME = '/proc/sys/kernel/sched_rt_runtime_us'
CGROUP_ROOT = '/sys/fs/cgroup'


class SchedError(knob.KnobError):
    pass


class Syscalls(object):
    """Thin wrapper around the scheduler syscalls (the only place they are called)."""

    def getscheduler(self, tid):
        return os.sched_getscheduler(tid)

    def getparam(self, tid):
        return os.sched_getparam(tid).sched_priority

    def setscheduler(self, tid, policy, priority):
        os.sched_setscheduler(tid, policy, os.sched_param(priority))

    def getaffinity(self, tid):
        return set(os.sched_getaffinity(tid))

    def setaffinity(self, tid, cpus):
        os.sched_setaffinity(tid, set(cpus))


SYS = Syscalls()


# ---------------------------------------------------------------- validation

def validate_policy(policy, priority):
    """Return the priority to use; raise SchedError (one line) for an invalid combination."""
    if policy not in POLICIES:
        raise SchedError('unknown scheduling policy %r; use one of %s' % (policy, ', '.join(sorted(POLICIES))),
                         kind='invalid')
    if policy in RT_POLICIES:
        if priority is None:
            raise SchedError('priority is required with policy=%s (%d..%d)' % (policy, RT_PRIO_MIN, RT_PRIO_MAX),
                             kind='invalid')
        if not RT_PRIO_MIN <= priority <= RT_PRIO_MAX:
            raise SchedError('priority %d is invalid for policy=%s: real-time priorities are %d..%d'
                             % (priority, policy, RT_PRIO_MIN, RT_PRIO_MAX), kind='invalid')
        return priority
    if priority not in (None, 0):
        raise SchedError('priority %d is invalid for policy=%s: only fifo and rr take a priority (use 0 or omit it)'
                         % (priority, policy), kind='invalid')
    return 0


# ---------------------------------------------------------------- /proc

def _read(path):
    with open(knob.host_path(path)) as f:
        return f.read()


def _read_or_none(path):
    try:
        return _read(path)
    except (IOError, OSError):
        return None


def list_pids():
    """All process ids in /proc."""
    try:
        names = os.listdir(knob.host_path('/proc'))
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def list_tids(pid):
    try:
        names = os.listdir(knob.host_path('/proc/%d/task' % pid))
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def read_comm(pid, tid=None):
    path = '/proc/%d/comm' % pid if tid is None else '/proc/%d/task/%d/comm' % (pid, tid)
    text = _read_or_none(path)
    return text.rstrip('\n') if text is not None else None


def read_cmdline(pid):
    """/proc/<pid>/cmdline with NULs turned into spaces ('' for kernel threads, None if gone)."""
    try:
        with open(knob.host_path('/proc/%d/cmdline' % pid), 'rb') as f:
            raw = f.read()
    except (IOError, OSError):
        return None
    return ' '.join(p.decode('utf-8', 'replace') for p in raw.split(b'\0') if p)


def parse_stat(text):
    """Fields of /proc/<pid>/task/<tid>/stat we use (comm may hold spaces and parentheses)."""
    rpar = text.rfind(')')
    comm = text[text.find('(') + 1:rpar]
    rest = text[rpar + 2:].split()
    # rest[0] is field 3 (state): field n is rest[n - 3]
    out = {'comm': comm, 'state': rest[0], 'ppid': int(rest[1])}
    if len(rest) > 19:
        out['starttime'] = int(rest[19])
    if len(rest) > 38:
        out['rt_priority'] = int(rest[37])
        out['policy'] = int(rest[38])
    return out


def thread_stat(pid, tid):
    text = _read_or_none('/proc/%d/task/%d/stat' % (pid, tid))
    if text is None:
        return None
    try:
        return parse_stat(text)
    except (ValueError, IndexError):
        return None


def parent_pid(pid):
    text = _read_or_none('/proc/%d/status' % pid)
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith('PPid:'):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def own_lineage():
    """This module's pid and its ancestors: never select them (the ansible/sshd/sudo chain)."""
    out = set()
    pid = os.getpid()
    while pid and pid not in out and len(out) < 64:
        out.add(pid)
        pid = parent_pid(pid) or 0
    return out


def proc_cgroup(pid):
    """Cgroup v2 path of a process ('0::/system.slice/x.service' line), or None."""
    text = _read_or_none('/proc/%d/cgroup' % pid)
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith('0::'):
            return line[3:].strip() or '/'
    return None


def proc_cgroup_lines(pid):
    text = _read_or_none('/proc/%d/cgroup' % pid) or ''
    out = []
    for line in text.splitlines():
        parts = line.split(':', 2)
        if len(parts) == 3:
            out.append((parts[1], parts[2].strip() or '/'))
    return out


# ---------------------------------------------------------------- systemd

def normalize_unit(unit):
    """A unit name as systemd accepts it (systemd.unit(5)), '.service' added when it has no unit suffix.

    Refused: characters outside [A-Za-z0-9:_.@\\-] (so no '/', white space or control characters), '..',
    a leading '.', more than 255 characters, and a template without instance (name@.service)."""
    if not isinstance(unit, str) or not unit:
        raise SchedError('unit must be a systemd unit name, got %s' % knob.show(unit), kind='invalid')
    why = None
    if not _UNIT_CHARS_RE.match(unit):
        why = "only letters, digits and ':_.@\\-' are allowed (no '/', no white space or control characters)"
    elif '..' in unit or unit.startswith('.'):
        why = "'..' and a leading '.' are not allowed"
    if why is None and not _UNIT_SUFFIX_RE.search(unit):
        unit += '.service'
    if why is None and len(unit) > UNIT_NAME_MAX:
        why = 'longer than %d characters' % UNIT_NAME_MAX
    elif why is None and '@.' in unit:
        why = 'a template unit has no processes; name an instance (name@instance.service)'
    if why:
        raise SchedError('unit %s is not a valid systemd unit name: %s' % (knob.show(unit), why), kind='invalid')
    return unit


def compile_regex(param, text):
    """re.compile(text); a syntax error becomes one bounded line naming the parameter."""
    try:
        return re.compile(text)
    except (re.error, OverflowError, RecursionError) as e:
        raise SchedError('%s %s is not a valid regular expression: %s'
                         % (param, knob.show(text), getattr(e, 'msg', None) or e), kind='invalid')


def validate_patterns(param, patterns):
    """Entries of an allow/deny list: non-empty names or globs of at most PATTERN_MAX printable characters."""
    for entry in patterns or ():
        if not isinstance(entry, str) or not entry.strip() or len(entry) > PATTERN_MAX \
                or knob.has_control_char(entry):
            raise SchedError('%s entry %s is invalid: expected a unit or process name or glob of 1..%d printable '
                             'characters' % (param, knob.show(entry), PATTERN_MAX), kind='invalid')
    return list(patterns or ())


def unit_stem(name):
    """'rsyslog.service' -> 'rsyslog'; a name without a unit suffix is returned as it is."""
    return _UNIT_SUFFIX_RE.sub('', name)


def rt_deny_match(name, denylist):
    """The entry of `denylist` that `name` (a unit or process name) matches, or None.

    Case-insensitive shell globs, tried on the name and on the name without its unit suffix (so 'ssh' covers
    ssh.service). roles/scheduling/templates/sched-threads.py.j2 has the same rule (a unit test compares them)."""
    if not name:
        return None
    candidates = (name.lower(), unit_stem(name).lower())
    for entry in denylist:
        pattern = entry.lower()
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            return entry
    return None


def effective_denylist(extra=()):
    """The built-in RT deny-list followed by the caller's extra entries (duplicates dropped)."""
    out = list(RT_DENYLIST)
    out.extend(e for e in extra or () if e not in out)
    return out


def process_units(pid):
    """Units a process belongs to: every '.service'/'.scope' component of its cgroup v2 path (outermost first)."""
    cg = proc_cgroup(pid) or ''
    return [c for c in cg.split('/') if c.endswith('.service') or c.endswith('.scope')]


def rt_denied_subjects(denylist, unit=None, pids=(), checked_unit=None):
    """[(subject, entry)] for the selected unit and processes that match the deny-list.

    A process is checked by its name (comm) and by the unit(s) it belongs to (but `checked_unit`)."""
    found = []
    if unit:
        hit = rt_deny_match(unit, denylist)
        if hit:
            found.append(('unit %s' % knob.show(unit), hit))
    for pid in pids:
        comm = read_comm(pid)
        for name in [comm] + [u for u in process_units(pid) if u not in (unit, checked_unit)]:
            hit = rt_deny_match(name, denylist)
            if hit:
                found.append(('pid %d (%s)' % (pid, knob.show(name, 40)), hit))
                break
    return found


def systemctl_show(module, unit, props):
    """`systemctl show -p A -p B <unit>` parsed into a dict.

    `--value` is not used: it prints values in the manager's property order, not in the order of
    the -p options, so values could not be attributed to properties reliably."""
    systemctl = module.get_bin_path('systemctl')
    if not systemctl:
        raise SchedError('systemctl not found: selecting or persisting by unit needs systemd', kind='missing')
    cmd = [systemctl, 'show']
    for p in props:
        cmd += ['-p', p]
    cmd.append(unit)
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        raise SchedError('systemctl show %s failed (rc=%d): %s' % (unit, rc, (err or out).strip()), kind='io')
    info = {}
    for line in out.splitlines():
        k, sep, v = line.partition('=')
        if sep:
            info[k.strip()] = v.strip()
    return info


def unit_info(module, unit):
    info = systemctl_show(module, unit, ['MainPID', 'ControlGroup', 'LoadState', 'ActiveState'])
    if info.get('LoadState') == 'not-found':
        raise SchedError('systemd unit %s not found (LoadState=not-found): check the name with '
                         '`systemctl list-units --all %s`' % (unit, unit), kind='missing')
    try:
        info['MainPID'] = int(info.get('MainPID') or 0)
    except ValueError:
        info['MainPID'] = 0
    return info


def cgroup_pids(control_group):
    """All pids in a cgroup and its sub-cgroups (cgroup.procs files, cgroup v2 layout)."""
    if not control_group:
        return []
    base = knob.host_path(CGROUP_ROOT + '/' + control_group.strip('/'))
    pids = set()
    for dirpath, dirnames, filenames in os.walk(base):
        if 'cgroup.procs' in filenames:
            try:
                with open(os.path.join(dirpath, 'cgroup.procs')) as f:
                    for line in f:
                        if line.strip().isdigit():
                            pids.add(int(line.strip()))
            except (IOError, OSError):
                pass
    return sorted(pids)


# ---------------------------------------------------------------- selection

def read_pidfile(path):
    try:
        with open(knob.host_path(path)) as f:
            text = f.read(64)   # a pid is short; never read a huge or endless file whole
    except (IOError, OSError):
        raise SchedError('pidfile %s does not exist or cannot be read' % knob.show(path), kind='missing')
    try:
        return int(text.strip().split()[0])
    except (ValueError, IndexError):
        raise SchedError('pidfile %s does not hold a pid (%s)' % (knob.show(path), knob.show(text.strip(), 40)),
                         kind='invalid')


def select_pids(module, unit=None, pid=None, pidfile=None, cmdline_regex=None):
    """Return (pids, unit_info or None). Own process lineage and kernel threads are never selected."""
    info = None
    exclude = own_lineage()
    if unit:
        info = unit_info(module, unit)
        pids = set(cgroup_pids(info.get('ControlGroup')))
        if info['MainPID']:
            pids.add(info['MainPID'])
    elif pid is not None:
        pids = {pid}
    elif pidfile:
        pids = {read_pidfile(pidfile)}
    else:
        rx = compile_regex('cmdline_regex', cmdline_regex)
        pids = set()
        for p in list_pids():
            cmd = read_cmdline(p)
            if cmd and rx.search(cmd):
                pids.add(p)
    alive = [p for p in sorted(pids) if p not in exclude and os.path.isdir(knob.host_path('/proc/%d' % p))]
    return alive, info


def select_threads(pids, thread_regex=None):
    """[{'pid', 'tid', 'comm', 'process_comm', 'starttime'}] for the threads of `pids` (filtered by name)."""
    rx = compile_regex('thread_regex', thread_regex) if thread_regex else None
    out = []
    for pid in pids:
        pcomm = read_comm(pid)
        for tid in list_tids(pid):
            comm = read_comm(pid, tid)
            if comm is None:
                continue
            if rx is not None and not rx.search(comm):
                continue
            st = thread_stat(pid, tid) or {}
            out.append({'pid': pid, 'tid': tid, 'comm': comm, 'process_comm': pcomm,
                        'starttime': st.get('starttime')})
    return out


def allowed_rt(names, allowlist):
    """True when one of `names` (unit, process comm) matches an allowlist entry (exact or glob)."""
    for entry in allowlist or ():
        for n in names:
            if not n:
                continue
            if n == entry or n == entry + '.service' or fnmatch.fnmatchcase(n, entry):
                return True
    return False


# ---------------------------------------------------------------- get / set

def get_thread(tid, with_cpus=True):
    """{'policy': name, 'priority': int, 'reset_on_fork': bool, 'cpus': cpulist} of one thread.
    Raises OSError(ESRCH) when the thread is gone."""
    pol = SYS.getscheduler(tid)
    out = {'policy': POLICY_NAMES.get(pol & ~SCHED_RESET_ON_FORK, str(pol & ~SCHED_RESET_ON_FORK)),
           'priority': SYS.getparam(tid)}
    if pol & SCHED_RESET_ON_FORK:
        out['reset_on_fork'] = True
    if with_cpus:
        out['cpus'] = cpulib.format_cpulist(SYS.getaffinity(tid))
    return out


def set_thread(tid, policy=None, priority=0, cpus=None):
    """Set policy/priority and/or affinity of one thread (OSError passes through)."""
    if policy is not None:
        SYS.setscheduler(tid, POLICIES[policy], priority)
    if cpus is not None:
        SYS.setaffinity(tid, cpulib.parse_cpulist(cpus))


def rt_runtime_us():
    """kernel.sched_rt_runtime_us as int, or None when the file does not exist."""
    text = _read_or_none(RT_RUNTIME)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def kernel_config_value(option):
    """'y'/'m'/value of a kernel config option, 'n' when not set, None when no config is readable.

    Looks in /proc/config.gz, then /boot/config-<release>."""
    texts = []
    try:
        with gzip.open(knob.host_path('/proc/config.gz'), 'rt') as f:
            texts.append(f.read())
    except (IOError, OSError, EOFError):
        pass
    if not texts:
        t = _read_or_none('/boot/config-%s' % knob.kernel_release())
        if t is not None:
            texts.append(t)
    if not texts:
        return None
    for line in texts[0].splitlines():
        if line.startswith(option + '='):
            return line.split('=', 1)[1].strip().strip('"')
        if line.strip() == '# %s is not set' % option:
            return 'n'
    return 'n'


def _rt_runtime_file(pid):
    """(cgroup path, host path of its cpu.rt_runtime_us or None)."""
    lines = proc_cgroup_lines(pid)
    for controllers, path in lines:
        # cgroup v1: a hierarchy with the cpu controller
        if 'cpu' in controllers.split(','):
            for mnt in ('cpu,cpuacct', 'cpu', 'cpuacct,cpu'):
                f = '%s/%s%s/cpu.rt_runtime_us' % (CGROUP_ROOT, mnt, '' if path == '/' else path)
                if os.path.exists(knob.host_path(f)):
                    return path, f
            return path, None
    for controllers, path in lines:
        if controllers == '':
            f = '%s%s/cpu.rt_runtime_us' % (CGROUP_ROOT, '' if path == '/' else path)
            return path, (f if os.path.exists(knob.host_path(f)) else None)
    return None, None


def explain_eperm(pid, policy):
    """One-line explanation of EPERM from sched_setscheduler for an RT policy."""
    name = 'SCHED_%s' % policy.upper()
    rtgs = kernel_config_value('CONFIG_RT_GROUP_SCHED') if policy in RT_POLICIES else None
    cg, rtfile = _rt_runtime_file(pid)
    if policy in RT_POLICIES and rtgs == 'y' and cg and cg != '/':
        runtime = None
        if rtfile:
            try:
                runtime = int(_read(rtfile).strip())
            except (IOError, OSError, ValueError):
                runtime = None
        if rtfile is None or runtime == 0:
            where = 'cpu.rt_runtime_us=0' if rtfile else 'cgroup v2 has no file to raise it'
            return ('%s refused with EPERM for pid %d: kernel has CONFIG_RT_GROUP_SCHED=y and cgroup %s has no RT '
                    'budget (%s); give the cgroup and its parents one (cgroup v1 cpu.rt_runtime_us), use the root '
                    'cgroup, or a kernel without CONFIG_RT_GROUP_SCHED' % (name, pid, cg, where))
    return ('%s refused with EPERM for pid %d: run the module as root (become: true) or grant CAP_SYS_NICE / '
            'RLIMIT_RTPRIO (LimitRTPRIO=) to the caller' % (name, pid))


def errno_message(e, pid, tid, policy):
    if e.errno == errno.EPERM:
        return explain_eperm(pid, policy or 'other')
    if e.errno == errno.EINVAL:
        return ('the kernel rejected the change for thread %d of pid %d (EINVAL): invalid policy/priority, or the CPUs '
                'are outside what its cpuset allows' % (tid, pid))
    return 'changing thread %d of pid %d failed: %s' % (tid, pid, e.strerror or e)
