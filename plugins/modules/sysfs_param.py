#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: sysfs_param
short_description: Set kernel knobs under /sys and /proc/sys safely, verify them and optionally persist them
version_added: 0.1.0
description:
  - Sets one knob (O(path) and O(value)) or several (O(params)) under C(/sys) or C(/proc/sys) on the managed host,
    reads every knob back after writing and fails if the kernel reports a different effective value.
  - All knobs are checked before the first write (existence, value offered for bracketed-choice knobs such as
    C(always [madvise] never), writable, persistence backend possible). If the kernel still rejects a value while
    writing (C(EINVAL)), the knobs already written by this task are set back, so nothing is left half-applied.
  - A knob that does not exist on the host's kernel fails with a message naming the kernel release and, for knobs
    that moved or never existed (for example C(/proc/sys/kernel/sched_latency_ns),
    C(/sys/module/zswap/parameters/comp_algorithm), C(/proc/sys/vm/vmstat_refresh)), what to use instead.
  - Paths are resolved before use; C(..) components and symlinks that leave C(/sys) or C(/proc/sys) are refused.
  - Action files are not knobs and are refused. These are files that trigger something when written instead of holding a
    setting, such as everything under C(/sys/power) (C(state) suspends the host, C(disk) and C(resume) hibernate or
    resume, C(wakeup_count), C(autosleep)), C(/sys/firmware), C(/proc/sys/fs/binfmt_misc),
    C(/proc/sys/vm/drop_caches), C(/proc/sys/vm/compact_memory), C(/proc/sys/vm/stat_refresh), the route C(flush)
    files, memory C(probe)/C(soft_offline_page)/C(hard_offline_page), and under C(/sys) the device, bus, driver and
    cgroup triggers named C(delete), C(remove), C(rescan), C(scan), C(reset), C(bind), C(unbind), C(new_id),
    C(remove_id), C(drivers_probe), C(uevent), C(reset_controller), C(rescan_controller), C(delete_controller),
    C(export), C(unexport), C(cgroup.kill), C(cgroup.procs), C(cgroup.threads), C(tasks). Besides this list, any
    file without read permission is a trigger (write-only, its value cannot be read back) and is refused.
  - Values are one line; a value with a newline or another control character is refused (not flattened), and so
    is anything a persistence file's syntax cannot hold (see O(persist)).
  - Numbers with safe upper bounds (the kernel's own limit would leave the host without free memory) are refused
    above them unless O(force=true). C(vm.min_free_kbytes) at most 5 % of C(MemTotal) (C(/proc/meminfo)); the kernel
    keeps that memory free for itself and starts reclaiming from there, so a larger value starves the workload or
    triggers the OOM killer at once. C(vm.watermark_scale_factor) at most 1000 (10 % of RAM between the watermarks;
    the kernel accepts up to 3000 = 30 %).
  - Before the first change of a knob its value is recorded in the originals store (see O(state_dir)), and every
    change is appended to the change journal. O(state=absent) restores that recorded value.
  - Bool knobs that read C(Y)/C(N) (module parameters) accept V(true)/V(false), V(1)/V(0), V(yes)/V(no) and are
    compared as bools.
author:
  - medai.llmhost contributors (@medai-llmhost)
options:
  path:
    description:
      - Absolute path of one knob under C(/sys) or C(/proc/sys), for example C(/sys/kernel/mm/transparent_hugepage/enabled).
      - Mutually exclusive with O(params); one of them is required.
    type: str
  value:
    description:
      - Value for O(path). Required with O(path) when O(state=present); ignored when O(state=absent).
      - Numbers and bools are accepted and written as the kernel expects them.
    type: raw
  params:
    description:
      - Several knobs at once, as a dictionary of knob path to value. They are applied in the order given,
        all or nothing.
      - With O(state=absent) only the keys matter.
    type: dict
  persist:
    description:
      - How the values are made to survive a reboot.
      - V(none) changes the running kernel only.
      - V(sysctl) writes C(name = value) lines to C(/etc/sysctl.d/90-medai-llmhost.conf) (only for C(/proc/sys) knobs).
      - V(tmpfiles) writes systemd-tmpfiles C(w) lines to C(/etc/tmpfiles.d/medai-llmhost.conf), applied at boot by
        C(systemd-tmpfiles-setup.service) (works for C(/sys) and C(/proc/sys) knobs).
      - V(cmdline) adds the knob's kernel command-line equivalent (C(<module>.<parameter>=) for
        C(/sys/module/<module>/parameters/<parameter>), C(transparent_hugepage=) for THP C(enabled)) to
        C(/etc/default/grub.d/90-medai-llmhost.cfg) and regenerates the boot configuration (update-grub,
        grub-mkconfig or grubby). Knobs without a command-line equivalent fail before anything is changed.
        RV(reboot_required) tells whether the running command line differs.
      - Only lines owned by the collection are touched; lines written by the site or other tools stay.
      - What goes into these files is checked against their syntax before anything is written (also in check mode),
        a sysctl name without glob, one-line values, no C(%) or backslash in a tmpfiles.d value (systemd-tmpfiles
        expands them), and only letters, digits and C(_.,:+=/@-) in a kernel command-line value.
    type: str
    choices: [none, tmpfiles, sysctl, cmdline]
    default: none
  force:
    description:
      - Write values above the safe upper bounds of C(vm.min_free_kbytes) (5 % of C(MemTotal)) and
        C(vm.watermark_scale_factor) (1000) anyway; the kernel's own limits still apply.
      - Does not allow action files.
    type: bool
    default: false
    version_added: 0.1.0
  state:
    description:
      - V(present) sets the values.
      - V(absent) sets each knob back to the value recorded before the collection first changed it (if no value
        was recorded, the running value is left as it is and a warning says so), removes the knob's lines from
        every collection-owned persistence file (sysctl.d, tmpfiles.d, kernel command line) whatever O(persist)
        says, and forgets the record.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - medai.llmhost.state
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Nothing is written in check mode, neither the knobs nor persistence, originals or journal files.
  diff_mode:
    support: full
    details: Shows the knob values and the persistence files before and after.
  platform:
    support: full
    platforms: linux
notes:
  - Needs root on the managed host (C(become=true)).
  - Prefer this module's O(persist=sysctl) over mixing with M(ansible.posix.sysctl) for the same key, so that a
    single file owns each setting.
seealso:
  - module: medai.llmhost.zswap
  - module: medai.llmhost.io_scheduler
  - module: ansible.posix.sysctl
'''

EXAMPLES = r'''
- name: THP only where vLLM asks for it (madvise), persisted for boot with tmpfiles.d
  medai.llmhost.sysfs_param:
    path: /sys/kernel/mm/transparent_hugepage/enabled
    value: madvise
    persist: tmpfiles
    change_context: "vllm-baichuan-m2 tuning, ticket OPS-1234"
  become: true

- name: kswapd watermarks for the inference host, all or nothing, persisted in sysctl.d
  medai.llmhost.sysfs_param:
    params:
      /proc/sys/vm/swappiness: 10
      /proc/sys/vm/min_free_kbytes: 1048576
      /proc/sys/vm/watermark_scale_factor: 200
    persist: sysctl
  become: true

- name: THP policy on the kernel command line (takes effect from the next boot)
  medai.llmhost.sysfs_param:
    path: /sys/kernel/mm/transparent_hugepage/enabled
    value: madvise
    persist: cmdline
  become: true
  register: thp

- name: Tell the operator that a reboot is pending
  ansible.builtin.debug:
    msg: "Reboot {{ inventory_hostname }} in the next maintenance window"
  when: thp.reboot_required

- name: Roll the watermark knobs back to the host's own values and drop their sysctl.d lines
  medai.llmhost.sysfs_param:
    params:
      /proc/sys/vm/min_free_kbytes:
      /proc/sys/vm/watermark_scale_factor:
    state: absent
  become: true
'''

RETURN = r'''
knobs:
  description: One entry per knob, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The knob path as given (normalised).
      type: str
      sample: /sys/kernel/mm/transparent_hugepage/enabled
    resolved_path:
      description: The path with symlinks resolved (the key of the originals store).
      type: str
      sample: /sys/kernel/mm/transparent_hugepage/enabled
    before:
      description: Effective value before the task.
      type: str
      sample: always
    after:
      description: Effective value read back after the task (the predicted value in check mode).
      type: str
      sample: madvise
    changed:
      description: Whether the running value was (or in check mode would be) changed.
      type: bool
      sample: true
    persisted_in:
      description: File holding the boot-time setting for this knob, or null when not persisted (O(persist=none),
        O(state=absent)).
      type: str
      sample: /etc/tmpfiles.d/medai-llmhost.conf
  sample:
    - path: /sys/kernel/mm/transparent_hugepage/enabled
      resolved_path: /sys/kernel/mm/transparent_hugepage/enabled
      before: always
      after: madvise
      changed: true
      persisted_in: /etc/tmpfiles.d/medai-llmhost.conf
reboot_required:
  description: True when O(persist=cmdline) (or removing a command-line parameter) leaves the running kernel
    command line different from the configured one.
  returned: always
  type: bool
  sample: false
persist_changed:
  description: Persistence files that were (or in check mode would be) changed.
  returned: always
  type: list
  elements: str
  sample: [/etc/tmpfiles.d/medai-llmhost.conf]
diff:
  description: Knob values (header C(runtime knobs)) and every changed persistence file, before and after.
  returned: always
  type: list
  elements: dict
  sample:
    - before_header: runtime knobs
      after_header: runtime knobs
      before: "/sys/kernel/mm/transparent_hugepage/enabled = always\n"
      after: "/sys/kernel/mm/transparent_hugepage/enabled = madvise\n"
msg:
  description: One-line summary.
  returned: always
  type: str
  sample: "1 of 1 knob(s) changed; persistence: /etc/tmpfiles.d/medai-llmhost.conf"
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.plugins.module_utils import persist as mpersist
from ansible_collections.medai.llmhost.plugins.module_utils import state as mstate

MODULE = 'medai.llmhost.sysfs_param'
KIND = 'knob'

MIN_FREE = '/proc/sys/vm/min_free_kbytes'
WSF = '/proc/sys/vm/watermark_scale_factor'
MIN_FREE_MAX_PERCENT = 5
WSF_MAX = 1000


def mem_total_kb():
    """MemTotal in kB from /proc/meminfo."""
    for line in knob.read_raw('/proc/meminfo').splitlines():
        if line.startswith('MemTotal:'):
            return int(line.split()[1])
    raise knob.KnobError('/proc/meminfo has no MemTotal line', kind='io')


def safe_max(resolved):
    """(upper bound, why) for knobs whose kernel limit is unsafe, or None."""
    if resolved == MIN_FREE:
        total = mem_total_kb()
        return total * MIN_FREE_MAX_PERCENT // 100, '%d %% of MemTotal %d kB' % (MIN_FREE_MAX_PERCENT, total)
    if resolved == WSF:
        return WSF_MAX, '10 % of RAM between the watermarks; the kernel allows up to 3000'
    return None


def check_bound(e):
    """Refuse a value above safe_max() (unless force): the host would keep too much memory free."""
    bound = safe_max(e['resolved'])
    if bound is None or not e['desired'].isdigit() or int(e['desired']) <= bound[0]:
        return
    raise knob.KnobError('%s: %s is above the safe bound %d (%s): it would leave the workload without memory; '
                         'set force: true to write it anyway' % (e['path'], knob.show(e['value']), bound[0], bound[1]),
                         path=e['path'], kind='invalid')


def desired_value(current, value, path=None):
    """Convert a user value (for knob `path`) into what the knob should read back."""
    where = ' for %s' % path if path else ''
    if isinstance(value, (list, dict)):
        raise knob.KnobError('value %s%s is not a scalar' % (knob.show(value), where), kind='invalid')
    if value is None:
        raise knob.KnobError('a value is required%s' % where, kind='invalid')
    if knob.has_control_char(str(value).strip()):
        raise knob.KnobError('value %s%s contains a newline or another control character: give one line'
                             % (knob.show(value), where), kind='invalid')
    if current in ('Y', 'N') and knob.kernel_bool(value) is not None:
        return knob.kernel_bool(value)
    if isinstance(value, bool):
        return '1' if value else '0'
    return knob.normalize(value)


class Plan(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.warnings = []
        self.entries = []   # one per knob: dict(path, resolved, desired, cur)
        self.sysctl = mpersist.sysctl_file()
        self.tmpfiles = mpersist.tmpfiles_file()
        self.cmd_set = {}
        self.cmd_remove = []
        self.log = mstate.ChangeLog(KIND, MODULE, self.p['state_dir'], self.p['change_context'], self.check)

    # ---------------------------------------------------------------- input
    def collect(self):
        p = self.p
        if p['params'] is not None:
            if not p['params']:
                raise knob.KnobError('params is empty: give at least one knob path', kind='invalid')
            pairs = list(p['params'].items())
        else:
            if p['state'] == 'present' and p['value'] is None:
                raise knob.KnobError('value is required with path when state=present', kind='invalid')
            pairs = [(p['path'], p['value'])]
        seen = {}
        for path, value in pairs:
            resolved = knob.resolve_knob_path(path)
            norm = os.path.normpath(path)
            if resolved in seen:
                raise knob.KnobError('%s and %s are the same knob: give it once' % (seen[resolved], norm),
                                     path=norm, kind='invalid', details={'resolved_path': resolved})
            seen[resolved] = norm
            self.entries.append({'path': norm, 'resolved': resolved, 'value': value})

    # ---------------------------------------------------------------- persistence plan
    def persist_line(self, e):
        how = self.p['persist']
        if how == 'none':
            return None
        name = knob.sysctl_name(e['resolved'])
        if how == 'sysctl':
            if name is None:
                raise knob.KnobError('persist=sysctl works only for /proc/sys knobs; %s is not one: use persist=tmpfiles'
                                     % e['path'], path=e['path'], kind='invalid')
            self.sysctl.set(name, mpersist.sysctl_line(name, e['desired']))
            return mpersist.SYSCTL_FILE
        if how == 'tmpfiles':
            self.tmpfiles.set(e['path'], mpersist.tmpfiles_line(e['path'], e['desired']))
            if e['resolved'] != e['path']:
                self.tmpfiles.remove(e['resolved'])
            return mpersist.TMPFILES_FILE
        param = mpersist.cmdline_param_for(e['path']) or mpersist.cmdline_param_for(e['resolved'])
        if param is None:
            raise knob.KnobError('%s has no kernel command-line equivalent: use persist=tmpfiles%s'
                                 % (e['path'], ' or persist=sysctl' if name else ''), path=e['path'], kind='invalid')
        if any(c.isspace() for c in e['desired']):
            raise knob.KnobError('cannot put %s on the kernel command line (%s): it contains white space'
                                 % (knob.show(e['desired']), param), path=e['path'], kind='invalid')
        self.cmd_set[param] = e['desired']
        return mpersist.GRUB_DROPIN

    def unpersist(self, e):
        name = knob.sysctl_name(e['resolved'])
        if name is not None:
            self.sysctl.remove(name)
        self.tmpfiles.remove(e['path'])
        self.tmpfiles.remove(e['resolved'])
        param = mpersist.cmdline_param_for(e['path']) or mpersist.cmdline_param_for(e['resolved'])
        if param is not None:
            self.cmd_remove.append(param)

    # ---------------------------------------------------------------- run
    def run(self):
        present = self.p['state'] == 'present'
        items = []
        names = dict((e['resolved'], e['path']) for e in self.entries)
        for e in self.entries:
            cur = knob.read_knob(e['resolved'], e['path'])
            e['before'] = cur['value']
            if present:
                e['desired'] = desired_value(cur['value'], e['value'], e['path'])
                if not self.p['force']:
                    check_bound(e)
                e['persisted_in'] = self.persist_line(e)
                items.append((e['resolved'], e['desired']))
            else:
                e['persisted_in'] = None
                rec = mstate.get_original(KIND, e['resolved'], self.p['state_dir'])
                e['record'] = rec
                if rec is None:
                    self.warnings.append('no original value recorded for %s: its running value %s was left as it is'
                                         % (e['path'], knob.show(cur['value'])))
                else:
                    e['desired'] = knob.normalize(rec['original'])
                    items.append((e['resolved'], e['desired']))
                self.unpersist(e)

        # everything checked without writing (raises before any change)
        predicted = knob.apply_knobs(items, check_mode=True, names=names)
        by_path = dict((r['path'], r) for r in predicted)
        cmdline = {'changed': False, 'diff': None, 'reboot_required': False}
        if self.cmd_set or self.cmd_remove:
            # check-mode pass: computes the diff and reboot flag without touching anything
            cmdline = mpersist.set_cmdline(self.module, self.cmd_set, self.cmd_remove, check_mode=True)
        self.log.check()

        if not self.check:
            # Originals are recorded once a change has happened (a refused or rolled-back change
            # leaves no record): after success, or for what a failed set-back left changed.
            changes = [(r['path'], r['before'], {'persist': self.p['persist']})
                       for r in predicted if r['changed']] if present else []
            applied = self.log.apply(items, 'set' if present else 'restore', changes, names=names)
            by_path = dict((r['path'], r) for r in applied)

        knobs = []
        for e in self.entries:
            r = by_path.get(e['resolved'])
            knobs.append({'path': e['path'], 'resolved_path': e['resolved'], 'before': e['before'],
                          'after': r['after'] if r else e['before'], 'changed': bool(r and r['changed']),
                          'persisted_in': e['persisted_in']})

        # persistence files (after the runtime values took)
        diffs = [{'before_header': 'runtime knobs', 'after_header': 'runtime knobs',
                  'before': ''.join('%s = %s\n' % (k['path'], k['before']) for k in knobs),
                  'after': ''.join('%s = %s\n' % (k['path'], k['after']) for k in knobs)}]
        persist_changed = []
        journal = []
        for ml in (self.sysctl, self.tmpfiles):
            changed, diff = ml.commit(check_mode=self.check)
            if changed:
                persist_changed.append(ml.path)
                diffs.append(diff)
                journal.append({'setting': 'file:' + ml.path, 'action': 'update' if ml.render() else 'remove',
                                'before': ml.original, 'after': ml.render()})
        if self.cmd_set or self.cmd_remove:
            if not self.check and cmdline['changed']:
                cmdline = mpersist.set_cmdline(self.module, self.cmd_set, self.cmd_remove, check_mode=False)
                journal.append({'setting': 'file:' + mpersist.GRUB_DROPIN, 'action': 'update',
                                'before': cmdline['diff']['before'], 'after': cmdline['diff']['after'],
                                'bootloader_tool': cmdline['tool']})
            if cmdline['changed']:
                persist_changed.append(mpersist.GRUB_DROPIN)
                diffs.append(cmdline['diff'])
        if not self.check:
            self.log.journal(journal)
            if not present:
                for e in self.entries:
                    if e.get('record') is not None:
                        mstate.forget_original(KIND, e['resolved'], self.p['state_dir'])

        nchanged = sum(1 for k in knobs if k['changed'])
        msg = '%d of %d knob(s) %s' % (nchanged, len(knobs), 'changed' if present else 'restored')
        if persist_changed:
            msg += '; persistence: %s' % ', '.join(persist_changed)
        if cmdline['reboot_required']:
            msg += '; reboot required for the kernel command line'
        return dict(changed=bool(nchanged or persist_changed), knobs=knobs,
                    reboot_required=bool(cmdline['reboot_required']), persist_changed=persist_changed,
                    diff=diffs, msg=msg)


def main():
    argument_spec = dict(
        path=dict(type='str'),
        value=dict(type='raw'),
        params=dict(type='dict'),
        persist=dict(type='str', default='none', choices=['none', 'tmpfiles', 'sysctl', 'cmdline']),
        force=dict(type='bool', default=False),
        state=dict(type='str', default='present', choices=['present', 'absent']),
    )
    argument_spec.update(mstate.STATE_ARGS)
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('path', 'params'), ('value', 'params')],
        required_one_of=[('path', 'params')],
        supports_check_mode=True,
    )
    plan = Plan(module)

    def run():
        plan.collect()
        return plan.run()

    knob.run_and_exit(module, run, plan.warnings)


if __name__ == '__main__':
    main()
