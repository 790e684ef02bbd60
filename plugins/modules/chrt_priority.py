#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: chrt_priority
short_description: Set the scheduling policy, real-time priority and CPU affinity of every selected thread
version_added: 0.1.0
description:
  - Selects processes by systemd O(unit), O(pid), O(pidfile) or O(cmdline_regex), and optionally only the threads whose
    name (C(/proc/<pid>/task/<tid>/comm)) matches O(thread_regex). Sets the policy and priority of each selected
    B(thread) with C(sched_setscheduler(2)) (what C(chrt -a -p) does; C(chrt -p) alone changes only one thread) and
    optionally the CPU affinity with C(sched_setaffinity(2)), then reads every thread back.
  - For a unit, O(persist=true) writes the systemd drop-in
    C(/etc/systemd/system/<unit>.d/50-medai-llmhost-sched.conf) with C(CPUSchedulingPolicy=), C(CPUSchedulingPriority=)
    and C(CPUAffinity=). systemd applies it to the service's processes when they start; threads created later
    inherit the policy of the thread that creates them.
  - The original policy, priority (and affinity, when O(cpus) is used) of every changed thread is recorded in
    O(state_dir) before the first change; O(state=absent) restores them for the threads that still exist (same pid,
    tid and start time) and removes the drop-in.
  - B(When real-time helps and when it hurts.) SCHED_FIFO/SCHED_RR help a B(single) latency-critical loop (for
    example only the inference engine's scheduling loop, selected with O(thread_regex)) compete with batch work.
    They hurt a B(thread pool) with more runnable threads than CPUs - FIFO threads of equal priority do not
    time-slice, so a request waits behind whole CPU bursts of others (head-of-line blocking).
  - 'In the lab pilot (4 vCPUs, HTTP service doing CPU work per request, 8 clients, 6 CPU hogs + 1 I/O writer),
    C(chrt -a -f 50) on every thread of the service gave P99 716 ms against 866 ms untuned, a cpuset partition alone
    522 ms, but FIFO on top of the partition 1006 ms - worse than untuned: the run-queue wait grew from 0.3 s to
    2.5 s per run. P95 ratios vs untuned: partition alone 0.49 / 0.62 / 0.70 at 4 / 8 / 16 clients, partition + FIFO
    0.69 / ~1.0 / 1.15 - the sign flips once requests outnumber the partition''s CPUs. Prefer the
    M(medai.llmhost.cpuset) module first; use RT only for the engine loop (or O(policy=rr)), and measure one change at a time.'
  - 'Safety: RT policies (fifo, rr) are refused when C(kernel.sched_rt_runtime_us) is -1 (RT throttling disabled: a
    runaway FIFO thread would freeze the machine) unless O(force=true), and are only given to processes on
    O(rt_allowlist). EPERM is reported in one line with its cause, for example a kernel with
    C(CONFIG_RT_GROUP_SCHED=y) where the process''s cgroup has no RT budget.'
  - 'RT deny-list: logging (journald, syslog, rsyslog, syslog-ng, fluent-bit, fluentd, filebeat, promtail, ...),
    backup (restic, borg, bacula, ...), monitoring (node and other exporters, prometheus, zabbix, telegraf, collectd,
    netdata, DCGM, ...), remote access (sshd) and systemd itself (C(systemd), C(systemd-*), cron, dbus) never get a
    real-time policy: a busy RT thread there starves what is needed to see and repair the host. Checked against the
    unit name (before systemd is asked anything), and for every selected process against its name
    (C(/proc/<pid>/comm)) and the unit(s) its cgroup belongs to. Case-insensitive shell globs, also tried without
    the unit suffix. O(rt_denylist) adds entries; O(force=true) is the only way around it (with a warning).
    The effective list is returned as RV(rt_denylist).'
  - All parameters are checked before systemd or C(/proc) is asked anything, and a refused request changes
    nothing. Changes are made first and recorded after they took effect - a change the kernel refuses (EINVAL for
    CPUs outside the process''s cpuset, EPERM) is set back and leaves no originals record, journal line or drop-in.
  - The module never selects its own process or its ancestors (the Ansible/sudo/sshd chain), nor kernel threads
    (empty command line) for O(cmdline_regex).
author:
  - medai.llmhost contributors (@medai-llmhost)
options:
  unit:
    description:
      - systemd unit whose processes are selected - its C(MainPID) and every pid in its cgroup (C(ControlGroup), with
        sub-cgroups). C(.service) is appended when the name has no unit suffix (C(.service), C(.scope), C(.slice),
        C(.socket), C(.mount), ... - the unit types of systemd.unit(5)).
      - Checked against systemd's unit-name syntax first - letters, digits and C(:_.@\-) only (no C(/), white space
        or control characters), no C(..), at most 255 characters, no template without instance (C(name@.service)).
      - A unit that does not exist (C(LoadState=not-found)) is an error.
    type: str
  pid:
    description: Select this process (all of its threads).
    type: int
  pidfile:
    description: Select the process whose pid is in this file.
    type: path
  cmdline_regex:
    description:
      - Select every process whose command line (C(/proc/<pid>/cmdline), arguments joined by spaces) matches this
        Python regular expression (C(re.search)).
    type: str
  thread_regex:
    description:
      - Only threads whose name (C(/proc/<pid>/task/<tid>/comm), at most 15 characters) matches this regular
        expression (C(re.search)). Default is all threads.
      - Not allowed with O(persist=true) - systemd has no per-thread setting, the drop-in would apply to every thread.
    type: str
  policy:
    description:
      - Scheduling policy. V(fifo) and V(rr) are real-time policies and need O(priority) 1..99.
      - At least one of O(policy) and O(cpus) is needed with O(state=present).
    type: str
    choices: [fifo, rr, other, batch, idle]
  priority:
    description:
      - Real-time priority, 1..99 for V(fifo)/V(rr). Must be 0 or omitted for V(other), V(batch), V(idle).
    type: int
  cpus:
    description:
      - CPU affinity as a kernel cpulist (V(2-5,8)). Every CPU must be online. In a cpuset cgroup only CPUs of the
        cpuset take effect; the module fails when the read-back affinity differs.
    type: str
  persist:
    description:
      - Only with O(unit) (a C(.service)). Write C(/etc/systemd/system/<unit>.d/50-medai-llmhost-sched.conf) and run
        C(systemctl daemon-reload), so the setting survives restarts and reboots.
      - When the unit is not running, only the drop-in is written (it applies at the next start).
    type: bool
    default: false
  rt_allowlist:
    description:
      - Unit names and process names (C(/proc/<pid>/comm)) allowed to receive a real-time policy. Shell-style globs
        are allowed; V(vllm) also matches unit C(vllm.service).
      - An entry that is on the RT deny-list (see O(rt_denylist)) is refused unless O(force=true).
      - Every selected process must match an entry (by the selecting unit's name or its own process name), otherwise
        the module refuses and changes nothing. O(force) does B(not) override a non-empty allowlist.
      - An empty list (the default) refuses every real-time request unless O(force=true).
    type: list
    elements: str
    default: []
  rt_denylist:
    description:
      - Extra unit or process names (case-insensitive shell globs) that never receive a real-time policy, added to the
        module's built-in deny-list (logging, backup, monitoring, sshd, systemd and C(systemd-*) units and processes;
        see the description). The built-in entries cannot be removed; only O(force=true) overrides the list.
    type: list
    elements: str
    default: []
  force:
    description:
      - Allow real-time policies when O(rt_allowlist) is empty, when C(kernel.sched_rt_runtime_us) is -1 (RT
        throttling disabled), and for units and processes on the RT deny-list (O(rt_denylist)). A warning is returned
        in each case.
    type: bool
    default: false
  state:
    description:
      - V(present) applies the settings.
      - V(absent) restores the recorded original policy, priority (and affinity) of every recorded thread that still
        exists and removes the drop-in. Use the same selector (O(unit), O(pid), O(pidfile) or O(cmdline_regex)) as
        when applying; O(policy), O(priority), O(cpus) are ignored.
      - With V(absent) a thread the kernel refuses (EPERM, EINVAL for CPUs outside its cpuset) or that exits
        meanwhile does not stop the others and is not set back; the drop-in is removed all the same. One warning
        names the count and tids of the threads not restored (RV(not_restored)), the originals record keeps only
        those that still exist (a later V(absent) retries exactly them; the rest is forgotten), and the task fails
        with one line only when such a thread still exists (or the drop-in could not be removed). A thread whose
        cpuset now allows only part of its recorded CPUs is restored to those (with a warning).
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - medai.llmhost.state
attributes:
  check_mode:
    support: full
    description: Reads policies; calls no setter syscall and writes no file.
  diff_mode:
    support: full
    description: Per-thread policy summary (pid, tid, name, policy, priority, affinity) and the drop-in file.
  platform:
    platforms: linux
    support: full
    description: Linux only (sched_setscheduler(2), /proc); O(unit) and O(persist) need systemd.
notes:
  - Originals are keyed C(unit:<unit>), C(pid:<pid>), C(pidfile:<path>) or C(cmd:<regex>) (kind C(sched)); a
    second run with another O(thread_regex) adds its threads to the same record (the first-seen value of a thread
    is kept).
  - Threads created after the original was recorded are not in the record; when they still carry the applied
    policy after O(state=absent) a warning says so (restart the service).
  - The SCHED_RESET_ON_FORK flag of a thread is not changed or restored.
seealso:
  - module: medai.llmhost.cpuset
  - name: sched(7)
    description: Linux scheduling policies, RT throttling and priorities.
    link: https://man7.org/linux/man-pages/man7/sched.7.html
  - name: systemd.exec CPUSchedulingPolicy=
    description: Drop-in settings used for persistence.
    link: https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html
'''

EXAMPLES = r'''
- name: Only the vLLM engine-core loop gets SCHED_RR 20 (runtime only - a drop-in cannot select threads)
  medai.llmhost.chrt_priority:
    unit: vllm.service
    thread_regex: '^(EngineCore|VLLM::EngineCor)'
    policy: rr
    priority: 20
    rt_allowlist: [vllm.service]

- name: A single-threaded latency-critical proxy gets FIFO 50 on CPUs 2-3, persisted in a drop-in
  medai.llmhost.chrt_priority:
    unit: llm-gateway
    policy: fifo
    priority: 50
    cpus: 2-3
    persist: true
    rt_allowlist: [llm-gateway.service]
    change_context: 'CHG-1234 latency tuning'

- name: Log shippers run as SCHED_BATCH (no allowlist needed for non-RT policies)
  medai.llmhost.chrt_priority:
    cmdline_regex: '(fluent-bit|vector) '
    policy: batch

- name: Undo (restore each recorded thread and remove the drop-in)
  medai.llmhost.chrt_priority:
    unit: llm-gateway
    state: absent
'''

RETURN = r'''
threads:
  description: One entry per selected thread (sorted by pid, tid).
  returned: always
  type: list
  elements: dict
  contains:
    pid: {description: Process id., type: int}
    tid: {description: Thread id., type: int}
    comm: {description: Thread name., type: str}
    before:
      description: Policy (V(other), V(fifo), ...), priority and affinity (cpulist) before the run.
      type: dict
      sample: {policy: other, priority: 0, cpus: 0-7}
    after:
      description: Same keys, read back after the change (the planned values in check mode).
      type: dict
      sample: {policy: fifo, priority: 50, cpus: 2-3}
    changed: {description: Whether this thread was (or would be) changed., type: bool}
    vanished: {description: Present and true when the thread exited during the run., type: bool}
    error: {description: 'With O(state=absent), why the thread could not be restored (one line).', type: str}
  sample:
    - {pid: 1234, tid: 1234, comm: python3, before: {policy: other, priority: 0, cpus: 0-7},
       after: {policy: fifo, priority: 50, cpus: 0-7}, changed: true}
pids:
  description: Selected process ids.
  returned: always
  type: list
  elements: int
unit:
  description: The systemd unit (normalised name), when selecting by unit.
  returned: when O(unit) is given
  type: str
  sample: vllm.service
selection:
  description: The key under which originals are recorded (C(unit:<unit>), C(pid:<pid>), C(pidfile:<path>), C(cmd:<regex>)).
  returned: always
  type: str
  sample: unit:vllm.service
dropin:
  description: Path of the drop-in (written, removed or unchanged), or null without O(unit).
  returned: always
  type: str
  sample: /etc/systemd/system/vllm.service.d/50-medai-llmhost-sched.conf
dropin_changed:
  description: Whether the drop-in was (or would be) written or removed.
  returned: always
  type: bool
rt_runtime_us:
  description: Value of C(kernel.sched_rt_runtime_us) (-1 means RT throttling is disabled), null when absent.
  returned: always
  type: int
  sample: 950000
rt_denylist:
  description: The effective RT deny-list - the built-in entries followed by O(rt_denylist).
  returned: always
  type: list
  elements: str
  sample: ['*journal*', '*syslog*', '*log*', 'fluent-bit*', '...', 'my-log-shipper*']
restored:
  description: With O(state=absent), number of threads restored (or that would be).
  returned: when O(state=absent)
  type: int
not_restored:
  description:
    - With O(state=absent), the recorded threads that could not be restored, each with the reason and whether
      it still exists (only those keep their originals record).
  returned: when O(state=absent)
  type: list
  elements: dict
  sample: [{pid: 1234, tid: 1240, comm: EngineCore, error: 'SCHED_OTHER refused with EPERM for pid 1234: ...',
            exists: true}]
'''

import errno

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.plugins.module_utils import persist
from ansible_collections.medai.llmhost.plugins.module_utils import sched
from ansible_collections.medai.llmhost.plugins.module_utils import state as statelib
from ansible_collections.medai.llmhost.plugins.module_utils import cpus as cpulib

MODULE = 'medai.llmhost.chrt_priority'
KIND = 'sched'
DROPIN_NAME = '50-medai-llmhost-sched'


def selection_key(p, unit):
    if unit:
        return 'unit:%s' % unit
    if p['pid'] is not None:
        return 'pid:%d' % p['pid']
    if p['pidfile']:
        return 'pidfile:%s' % p['pidfile']
    return 'cmd:%s' % p['cmdline_regex']


def dropin_content(policy, priority, cpus):
    lines = ['[Service]']
    if policy:
        lines.append('CPUSchedulingPolicy=%s' % policy)
        if policy in sched.RT_POLICIES:
            lines.append('CPUSchedulingPriority=%d' % priority)
    if cpus:
        lines.append('CPUAffinity=%s' % cpus)
    return '\n'.join(lines) + '\n'


def describe(t, values):
    s = 'pid %d tid %d (%s): %s %d' % (t['pid'], t['tid'], t['comm'], values['policy'], values['priority'])
    if values.get('cpus') is not None:
        s += ' cpus %s' % values['cpus']
    return s


def thread_diff(rows):
    changed = [r for r in rows if r['changed']]
    return {'before_header': 'threads (%d changed of %d)' % (len(changed), len(rows)),
            'after_header': 'threads (%d changed of %d)' % (len(changed), len(rows)),
            'before': ''.join(describe(r, r['before']) + '\n' for r in changed),
            'after': ''.join(describe(r, r['after']) + '\n' for r in changed)}


def matches(cur, want):
    for k, v in want.items():
        if k == 'cpus':
            if cpulib.parse_cpulist(cur.get('cpus')) != cpulib.parse_cpulist(v):
                return False
        elif cur.get(k) != v:
            return False
    return True


def systemctl(module, *args):
    path = module.get_bin_path('systemctl')
    if not path:
        raise knob.KnobError('systemctl not found: cannot run systemctl %s' % ' '.join(args), kind='missing')
    rc, out, err = module.run_command([path] + list(args))
    if rc != 0:
        raise knob.KnobError('systemctl %s failed (rc=%d): %s' % (' '.join(args), rc, (err or out).strip()), kind='io')


def set_back(done):
    """Give each thread of `done` [(row, want)] its before values again; returns the tids that refused."""
    failed = []
    for row, want in done:
        b = row['before']
        try:
            sched.set_thread(row['tid'], policy=b['policy'] if 'policy' in want else None,
                             priority=b['priority'], cpus=b.get('cpus') if 'cpus' in want else None)
        except OSError as e:
            if e.errno != errno.ESRCH:
                failed.append(row['tid'])
    return failed


def apply_threads(plan):
    """plan: list of (row, want). Applies, reads back; on error sets back what this run changed and raises."""
    done = []
    try:
        for row, want in plan:
            done.append((row, want))  # before the call: policy may be set when the affinity call then fails
            try:
                sched.set_thread(row['tid'], policy=want.get('policy'), priority=want.get('priority', 0),
                                 cpus=want.get('cpus'))
            except OSError as e:
                if e.errno == errno.ESRCH:
                    done.pop()
                    row.update(vanished=True, changed=False, after=row['before'])
                    continue
                raise knob.KnobError(sched.errno_message(e, row['pid'], row['tid'], want.get('policy')),
                                     kind='rejected')
            try:
                after = sched.get_thread(row['tid'])
            except OSError:
                row.update(vanished=True, after=dict(want))
                continue
            row['after'] = after
            if not matches(after, want):
                raise knob.KnobError('thread %d of pid %d reads back %s after setting %s: the change did not take effect'
                                     % (row['tid'], row['pid'], describe(row, after).split(': ', 1)[1],
                                        describe(row, dict(row['before'], **want)).split(': ', 1)[1]),
                                     kind='not_effective')
    except knob.KnobError as e:
        failed = set_back(done)
        if failed:
            e.details = dict(e.details, set_back_failed=failed)
        raise


def thread_alive(row):
    """The thread of `row` still exists (same pid, tid and start time)."""
    st = sched.thread_stat(row['pid'], row['tid'])
    return st is not None and (row.get('starttime') is None or st.get('starttime') == row['starttime'])


def restore_threads(plan):
    """state=absent: give every thread of `plan` [(row, want)] its recorded values, one at a time. A thread
    the kernel refuses (EPERM, EINVAL for CPUs outside its cpuset) or that reads back otherwise does not stop
    the others and is not set back. Returns ([(row, error)] not restored, [row] restored with fewer CPUs than
    recorded - all its cpuset allows now); a thread that exited is marked vanished."""
    failed, confined = [], []
    for row, want in plan:
        error = None
        try:
            sched.set_thread(row['tid'], policy=want.get('policy'), priority=want.get('priority', 0),
                             cpus=want.get('cpus'))
        except OSError as e:
            if e.errno == errno.ESRCH:
                row.update(vanished=True, changed=False, after=row['before'])
                continue
            error = sched.errno_message(e, row['pid'], row['tid'], want.get('policy'))
        try:
            after = sched.get_thread(row['tid'])
        except OSError:
            row.update(vanished=True, changed=error is None, after=dict(row['before'], **want))
            continue
        row['after'] = after
        if error is None and not matches(after, want):
            rest = dict((k, v) for k, v in want.items() if k != 'cpus')
            got = set(cpulib.parse_cpulist(after.get('cpus')))
            if 'cpus' in want and matches(after, rest) and got and got <= set(cpulib.parse_cpulist(want['cpus'])):
                confined.append(row)
            else:
                error = ('thread %d of pid %d reads back %s after restoring %s'
                         % (row['tid'], row['pid'], describe(row, after).split(': ', 1)[1],
                            describe(row, dict(row['before'], **want)).split(': ', 1)[1]))
        if error is not None:
            row['changed'] = not matches(after, row['before'])   # e.g. the policy came back, the affinity not
            row['error'] = error
            failed.append((row, error))
    return failed, confined


def tid_list(rows, limit=10):
    tids = [str(r['tid']) for r in rows]
    return ', '.join(tids[:limit]) + (' ...' if len(tids) > limit else '')


def write_dropin(module, unit, content, dropin_before, plan):
    """Write the drop-in and reload systemd; on failure put the old drop-in back, set the threads back, raise."""
    try:
        persist.set_dropin(unit, DROPIN_NAME, content)
        systemctl(module, 'daemon-reload')
    except (knob.KnobError, IOError, OSError) as e:
        try:
            persist.set_dropin(unit, DROPIN_NAME, dropin_before)
        except (knob.KnobError, IOError, OSError):
            pass
        set_back(plan)
        if isinstance(e, knob.KnobError):
            raise
        raise knob.KnobError('cannot write %s: %s' % (persist.dropin_path(unit, DROPIN_NAME), e.strerror or e),
                             kind='io')


def record(p, key, rows, want, unit, dropin_before):
    """Record first-seen originals of the threads that changed (merged into one record per selection)."""
    old = statelib.get_original(KIND, key, p['state_dir'])
    orig = dict(old['original']) if old else {'threads': {}}
    threads = dict(orig.get('threads', {}))
    added = False
    for r in rows:
        if not r['changed']:
            continue
        tid = str(r['tid'])
        cur = threads.get(tid)
        if cur is not None and cur.get('starttime') != r['starttime']:
            cur = None  # tid reused by a new thread: the old record is stale
        if cur is None:
            cur = {'pid': r['pid'], 'comm': r['comm'], 'starttime': r['starttime'],
                   'policy': r['before']['policy'], 'priority': r['before']['priority']}
            added = True
        if 'cpus' in want and 'cpus' not in cur:
            cur['cpus'] = r['before']['cpus']
            added = True
        threads[tid] = cur
    orig['threads'] = threads
    if unit and 'dropin_before' not in orig:
        orig['dropin_before'] = dropin_before
        added = True
    if 'applied' not in orig or orig['applied'] != want:
        orig['applied'] = want
        added = True
    if not added:
        return
    extra = old['extra'] if old else {}
    if old:
        statelib.forget_original(KIND, key, p['state_dir'])
        extra = dict(extra, first_recorded_at=old.get('recorded_at'))
    statelib.record_original(KIND, key, orig, MODULE, p['state_dir'], extra=extra)


def shown_selection(key):
    """The selection key as it may appear in a message (user-given pidfile paths and regexes shown bounded)."""
    kind, _sep, value = key.partition(':')
    return key if kind in ('unit', 'pid') else '%s:%s' % (kind, knob.show(value))


def refuse_or_warn(module, force, msg, details=None):
    """A safety refusal: raised, or with force=true returned to the user as a warning."""
    if not force:
        raise knob.KnobError(msg + ' (force=true overrides)', kind='denied', details=details)
    module.warn(knob.one_line('%s - overridden by force=true' % msg))


def check_rt_denylist(module, v, pids=None):
    """Refuse a real-time policy for a deny-listed unit (pids None) or deny-listed selected processes."""
    if v['policy'] not in sched.RT_DENY_POLICIES:
        return
    if pids is None:
        found = sched.rt_denied_subjects(v['denylist'], unit=v['unit'])
    else:
        found = sched.rt_denied_subjects(v['denylist'], pids=pids, checked_unit=v['unit'])
    if found:
        subject, entry = found[0]
        more = ' and %d more' % (len(found) - 1) if len(found) > 1 else ''
        refuse_or_warn(module, module.params['force'],
                       'refusing SCHED_%s for %s%s: on the RT deny-list (%s) - logging, backup, monitoring, remote '
                       'access and systemd services never run real-time' % (v['policy'].upper(), subject, more,
                                                                            knob.show(entry, 40)),
                       details={'rt_denied': [{'subject': s_, 'entry': e_} for s_, e_ in found]})


def check_allowlist_entries(module, v):
    if v['policy'] not in sched.RT_DENY_POLICIES:
        return
    for allowed in v['allowlist']:
        entry = sched.rt_deny_match(allowed, v['denylist'])
        if entry:
            refuse_or_warn(module, module.params['force'],
                           'rt_allowlist entry %s is on the RT deny-list (%s): logging, backup, monitoring, remote '
                           'access and systemd services never run real-time; remove it'
                           % (knob.show(allowed, 60), knob.show(entry, 40)))


def validate(module):
    """Every parameter, checked before systemd or /proc is asked anything: returns the normalised values."""
    p = module.params
    v = {'unit': sched.normalize_unit(p['unit']) if p['unit'] is not None else None,
         'policy': p['policy'], 'priority': None, 'cpus': None}
    if p['pidfile'] is not None and not p['pidfile'].startswith('/'):
        raise knob.KnobError('pidfile %s must be an absolute path' % knob.show(p['pidfile']), kind='invalid')
    if p['cmdline_regex'] is not None and not p['cmdline_regex'].strip():
        raise knob.KnobError('cmdline_regex is empty: it would select every process', kind='invalid')
    for name in ('cmdline_regex', 'thread_regex'):
        if p[name]:
            sched.compile_regex(name, p[name])
    v['allowlist'] = sched.validate_patterns('rt_allowlist', p['rt_allowlist'])
    v['denylist'] = sched.effective_denylist(sched.validate_patterns('rt_denylist', p['rt_denylist']))
    if p['state'] == 'absent':
        return v
    policy, unit = p['policy'], v['unit']
    if policy is None and p['cpus'] is None:
        raise knob.KnobError('state=present needs policy and/or cpus', kind='invalid')
    if policy is None and p['priority'] is not None:
        raise knob.KnobError('priority needs a policy (fifo or rr)', kind='invalid')
    if policy:
        v['priority'] = sched.validate_policy(policy, p['priority'])
    if p['cpus'] is not None:
        wanted = cpulib.parse_cpulist(p['cpus'], 'cpus')
        if not wanted:
            raise knob.KnobError('cpus is empty', kind='invalid')
        online = cpulib.online_cpus()
        offline = sorted(set(wanted) - set(online))
        if offline:
            raise knob.KnobError('cpus %s include CPUs that are not online: %s (online: %s)'
                                 % (knob.show(p['cpus']), cpulib.format_cpulist(offline), cpulib.format_cpulist(online)),
                                 kind='invalid')
        v['cpus'] = cpulib.format_cpulist(wanted)
    if p['persist']:
        if not unit:
            raise knob.KnobError('persist=true needs unit (a systemd service)', kind='invalid')
        if not unit.endswith('.service'):
            raise knob.KnobError('persist=true needs a .service unit (CPUSchedulingPolicy= is a service setting), got %s'
                                 % unit, kind='invalid')
        if p['thread_regex']:
            raise knob.KnobError('persist=true is not allowed with thread_regex: the systemd drop-in applies to every '
                                 'thread of the service (no per-thread setting exists); apply the thread selection '
                                 'at runtime only', kind='invalid')
    check_rt_denylist(module, v)
    check_allowlist_entries(module, v)
    return v


def check_rt(module, result, v, pids):
    """Safety checks of a real-time request on the selected processes: deny-list, allowlist, RT throttling."""
    p, key, unit, policy = module.params, result['selection'], v['unit'], v['policy']
    check_rt_denylist(module, v, pids=pids)
    if policy not in sched.RT_POLICIES:
        return
    allow = v['allowlist']
    if not allow:
        if not p['force']:
            raise knob.KnobError('refusing SCHED_%s for %s: rt_allowlist is empty; list the unit or process name in '
                                 'rt_allowlist (or pass force=true)' % (policy.upper(), shown_selection(key)),
                                 kind='unsafe')
        module.warn('SCHED_%s given to %s with an empty rt_allowlist (force=true)'
                    % (policy.upper(), shown_selection(key)))
    else:
        denied = ['%d (%s)' % (pid, knob.show(sched.read_comm(pid) or '?', 40)) for pid in pids
                  if not sched.allowed_rt([unit, sched.read_comm(pid)], allow)]
        if unit and not pids and not sched.allowed_rt([unit], allow):
            denied.append(unit)
        if denied:
            raise knob.KnobError('refusing SCHED_%s: not on rt_allowlist: %s' % (policy.upper(), ', '.join(denied)),
                                 kind='unsafe')
    if result['rt_runtime_us'] == -1:
        if not p['force']:
            raise knob.KnobError('refusing SCHED_%s: kernel.sched_rt_runtime_us is -1 (RT throttling disabled), so a '
                                 'runaway real-time thread would freeze the machine; set it back to 950000 or pass '
                                 'force=true' % policy.upper(), kind='unsafe')
        module.warn('RT throttling is disabled (kernel.sched_rt_runtime_us=-1) and SCHED_%s was forced'
                    % policy.upper())


def present(module, result, v):
    p = module.params
    unit = v['unit']
    key = result['selection']
    policy, priority, cpus = v['policy'], v['priority'], v['cpus']

    pids, info = sched.select_pids(module, unit=unit, pid=p['pid'], pidfile=p['pidfile'],
                                   cmdline_regex=p['cmdline_regex'])
    result['pids'] = pids
    if not pids and not p['persist']:
        why = ' (unit is %s)' % info.get('ActiveState', '?') if info else ''
        raise knob.KnobError('no process matched %s%s' % (shown_selection(key), why), kind='missing')
    if not pids:
        module.warn('%s has no running process: only the drop-in is written (it applies at the next start)' % unit)

    threads = sched.select_threads(pids, p['thread_regex'])
    if pids and not threads:
        raise knob.KnobError('no thread of pid(s) %s%s has a name matching thread_regex %s'
                             % (', '.join(str(x) for x in pids[:10]), ' ...' if len(pids) > 10 else '',
                                knob.show(p['thread_regex'])), kind='missing')
    check_rt(module, result, v, pids)

    want = {}
    if policy:
        want.update(policy=policy, priority=priority)
    if cpus is not None:
        want['cpus'] = cpus
    rows, plan = [], []
    for t in threads:
        try:
            before = sched.get_thread(t['tid'])
        except OSError as e:
            if e.errno == errno.ESRCH:
                continue
            raise knob.KnobError('reading the policy of thread %d of pid %d failed: %s' % (t['tid'], t['pid'], e.strerror),
                                 kind='io')
        row = {'pid': t['pid'], 'tid': t['tid'], 'comm': t['comm'], 'starttime': t['starttime'],
               'before': before, 'after': before, 'changed': False}
        if not matches(before, want):
            row['changed'] = True
            row['after'] = dict(before, **want)
            plan.append((row, want))
        rows.append(row)

    dropin_path = persist.dropin_path(unit, DROPIN_NAME) if unit else None
    dropin_before = persist.read_text(dropin_path) if unit else None
    dropin_changed, dropin_diff = False, None
    content = dropin_content(policy, priority, cpus)
    if p['persist']:
        dropin_changed, dropin_diff = persist.set_dropin(unit, DROPIN_NAME, content, check_mode=True)

    if not module.check_mode and (plan or dropin_changed):
        # change first, record after: a change the kernel (or systemd) refuses is set back and leaves no record
        apply_threads(plan)
        if dropin_changed:
            write_dropin(module, unit, content, dropin_before, plan)
        record(p, key, rows, want, unit, dropin_before)
        entries = [{'setting': '%s:%s:tid:%d' % (KIND, key, r['tid']), 'pid': r['pid'], 'comm': r['comm'],
                    'before': r['before'], 'after': r['after']} for r in rows if r['changed']]
        if dropin_changed:
            entries.append({'setting': 'dropin:%s' % dropin_path, 'before': dropin_before, 'after': content})
        statelib.journal(entries, MODULE, p['state_dir'], p['change_context'])

    return rows, dropin_path, dropin_changed, dropin_diff


def absent(module, result):
    p = module.params
    unit = result.get('unit')
    key = result['selection']
    rec = statelib.get_original(KIND, key, p['state_dir'])
    orig = rec['original'] if rec else {'threads': {}}
    try:
        pids, info = sched.select_pids(module, unit=unit, pid=p['pid'], pidfile=p['pidfile'],
                                       cmdline_regex=p['cmdline_regex'])
    except knob.KnobError as e:
        if e.kind != 'missing' or (unit and 'not-found' in e.msg):
            raise
        pids = []
    result['pids'] = pids
    rows, plan = [], []
    for tid_s, o in sorted(orig.get('threads', {}).items(), key=lambda kv: int(kv[0])):
        tid, pid = int(tid_s), o['pid']
        st = sched.thread_stat(pid, tid)
        if st is None or (o.get('starttime') is not None and st.get('starttime') != o['starttime']):
            continue
        try:
            before = sched.get_thread(tid)
        except OSError:
            continue
        want = {'policy': o['policy'], 'priority': o['priority']}
        if o['policy'] not in sched.POLICIES:
            want = {}  # e.g. deadline: cannot be restored with sched_setscheduler
        if 'cpus' in o:
            want['cpus'] = o['cpus']
        row = {'pid': pid, 'tid': tid, 'comm': sched.read_comm(pid, tid) or o.get('comm'),
               'starttime': o.get('starttime'), 'before': before, 'after': before, 'changed': False}
        if want and not matches(before, want):
            row['changed'] = True
            row['after'] = dict(before, **want)
            plan.append((row, want))
        rows.append(row)

    applied = orig.get('applied') or {}
    if applied.get('policy') in sched.RT_POLICIES:
        recorded = set(int(t) for t in orig.get('threads', {}))
        stray = []
        for t in sched.select_threads(pids):
            if t['tid'] in recorded:
                continue
            try:
                cur = sched.get_thread(t['tid'], with_cpus=False)
            except OSError:
                continue
            if cur['policy'] == applied['policy'] and cur['priority'] == applied['priority']:
                stray.append(t['tid'])
        if stray:
            module.warn('%d thread(s) of %s (tids %s) were created after the originals were recorded and still run '
                        'SCHED_%s %d; restart the service to start them without it'
                        % (len(stray), key, ', '.join(str(x) for x in stray[:10]) + (' ...' if len(stray) > 10 else ''),
                           applied['policy'].upper(), applied['priority']))

    dropin_path = persist.dropin_path(unit, DROPIN_NAME) if unit else None
    dropin_before = persist.read_text(dropin_path) if unit else None
    dropin_changed, dropin_diff = False, None
    if unit:
        dropin_changed, dropin_diff = persist.set_dropin(unit, DROPIN_NAME, None, check_mode=True)

    result['restored'] = len(plan)
    result['not_restored'] = []
    if module.check_mode:
        return rows, dropin_path, dropin_changed, dropin_diff

    # Every thread is tried (one refusal does not keep the others), then the drop-in; the record keeps
    # only what still exists and could not be restored, so the next state=absent retries exactly that.
    failed, confined = restore_threads(plan)
    dropin_error = None
    if dropin_changed:
        try:
            persist.set_dropin(unit, DROPIN_NAME, None)
            systemctl(module, 'daemon-reload')
        except (knob.KnobError, IOError, OSError) as e:
            dropin_error = e.msg if isinstance(e, knob.KnobError) else 'cannot remove %s: %s' % (
                dropin_path, e.strerror or e)
            dropin_changed = persist.read_text(dropin_path) != dropin_before
    entries = [{'setting': '%s:%s:tid:%d' % (KIND, key, r['tid']), 'pid': r['pid'], 'comm': r['comm'],
                'before': r['before'], 'after': r['after'], 'action': 'restore' if 'error' not in r else 'partly restored'}
               for r in rows if r['changed']]
    if dropin_changed:
        entries.append({'setting': 'dropin:%s' % dropin_path, 'before': dropin_before, 'after': None,
                        'action': 'remove'})
    statelib.journal(entries, MODULE, p['state_dir'], p['change_context'])

    alive = [row for row, _e in failed if thread_alive(row)]
    if rec:
        keep = dict((str(r['tid']), orig['threads'][str(r['tid'])]) for r in alive)
        if keep or dropin_error:
            statelib.forget_original(KIND, key, p['state_dir'])
            statelib.record_original(KIND, key, dict(orig, threads=keep), MODULE, p['state_dir'],
                                     extra=dict(rec.get('extra') or {}, first_recorded_at=rec.get('recorded_at')))
        else:
            statelib.forget_original(KIND, key, p['state_dir'])
    result['restored'] = len([r for r in rows if r['changed'] and 'error' not in r and not r.get('vanished')])
    result['not_restored'] = [{'pid': r['pid'], 'tid': r['tid'], 'comm': r['comm'], 'error': r['error'],
                               'exists': any(r is a for a in alive)} for r, _e in failed]
    if confined:
        module.warn(knob.one_line('%d thread(s) of %s restored with fewer CPUs than recorded (tids %s): their '
                                  'cpuset allows only those now'
                                  % (len(confined), shown_selection(key), tid_list(confined))))
    if failed:
        gone = len(failed) - len(alive)
        module.warn(knob.one_line('%d of %d thread(s) of %s could not be restored (tids %s)%s; %s: %s'
                                  % (len(failed), len(plan), shown_selection(key), tid_list([r for r, _e in failed]),
                                     ' - %d exited since' % gone if gone else '',
                                     'their record is kept for the next state=absent' if alive
                                     else 'nothing left to restore', failed[0][1])))
    if alive or dropin_error:
        why = []
        if alive:
            why.append('%d recorded thread(s) of %s still exist and could not be restored (tids %s): %s'
                       % (len(alive), shown_selection(key), tid_list(alive), alive[0]['error']))
        if dropin_error:
            why.append(dropin_error)
        result['failed_msg'] = knob.one_line('; '.join(why))
    return rows, dropin_path, dropin_changed, dropin_diff


def run(module):
    p = module.params
    v = validate(module)
    unit = v['unit']
    result = {'changed': False, 'selection': None, 'pids': [], 'threads': [],
              'rt_runtime_us': sched.rt_runtime_us(), 'rt_denylist': v['denylist']}
    if unit:
        result['unit'] = unit
    result['selection'] = selection_key(p, unit)
    if p['state'] == 'present':
        rows, dropin_path, dropin_changed, dropin_diff = present(module, result, v)
    else:
        rows, dropin_path, dropin_changed, dropin_diff = absent(module, result)
    for r in rows:
        r.pop('starttime', None)
    result['threads'] = rows
    result['dropin'] = dropin_path
    result['dropin_changed'] = dropin_changed
    result['changed'] = dropin_changed or any(r['changed'] for r in rows)
    if module._diff:
        diff = [thread_diff(rows)]
        if dropin_diff:
            diff.append(dropin_diff)
        result['diff'] = diff
    failed_msg = result.pop('failed_msg', None)
    if failed_msg:
        # state=absent restored what it could (journalled, in the result) and kept the record of the rest
        module.fail_json(msg=failed_msg, error_kind='rejected', **result)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            unit=dict(type='str'),
            pid=dict(type='int'),
            pidfile=dict(type='path'),
            cmdline_regex=dict(type='str'),
            thread_regex=dict(type='str'),
            policy=dict(type='str', choices=sorted(sched.POLICIES)),
            priority=dict(type='int'),
            cpus=dict(type='str'),
            persist=dict(type='bool', default=False),
            rt_allowlist=dict(type='list', elements='str', default=[]),
            rt_denylist=dict(type='list', elements='str', default=[]),
            force=dict(type='bool', default=False),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            **statelib.STATE_ARGS
        ),
        mutually_exclusive=[('unit', 'pid', 'pidfile', 'cmdline_regex')],
        required_one_of=[('unit', 'pid', 'pidfile', 'cmdline_regex')],
        supports_check_mode=True,
    )
    knob.run_and_exit(module, lambda: run(module), io_errors=False)


if __name__ == '__main__':
    main()
