#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: io_scheduler
short_description: Select the blk-mq I/O scheduler, nr_requests and read-ahead of block devices, persisted by a udev rule
version_added: 0.1.0
description:
  - Sets C(queue/scheduler), C(queue/nr_requests) and C(queue/read_ahead_kb) of whole block devices, selected by
    name, C(/dev) path, stable C(/dev/disk/by-id/...) link (O(device)) or by a glob on kernel names (O(pattern)),
    optionally only rotational or only non-rotational devices (O(rotational)).
  - Only the schedulers a device offers in C(/sys/block/<dev>/queue/scheduler) are accepted (blk-mq offers
    C(none), C(mq-deadline), C(kyber), C(bfq); kyber and bfq appear once their modules are loaded).
    Legacy single-queue names, removed in kernel 5.0, are mapped, C(noop) to C(none) and C(deadline) to
    C(mq-deadline) (reported as a warning); C(cfq) fails unless O(translate_legacy=true), which maps it to C(bfq).
  - The scheduler is set first because changing it resets C(nr_requests); then C(nr_requests), then C(read_ahead_kb).
    Every value is read back. All devices are checked before the first write; if the kernel still rejects a value
    (for example C(nr_requests) above the hardware tag depth with scheduler C(none)), what this task already
    changed is set back.
  - With O(persist=true) one udev rule per device (or one per O(pattern)) in
    C(/etc/udev/rules.d/60-medai-llmhost-iosched.rules) applies the same attributes whenever the device appears
    (scheduler first); C(udevadm control --reload) runs when the rules changed. Lines of the file that the task
    does not manage stay.
  - Values before the first change are recorded in the originals store; O(state=absent) restores them and
    removes the devices' (or the pattern's) rules.
  - Every parameter is checked before the first change (no module load, knob, record, journal line or rule is
    written for a refused request). Device names and patterns may hold only what a kernel block-device name and a
    glob on it can (letters, digits and C(_.:!-), plus C(*?[]) in O(pattern)); C(/dev/disk/by-*) links also
    C(+ @ = , \\). So no quote, comma or C(RUN+=)/C(PROGRAM=) can reach the udev rule.
author:
  - medai.llmhost contributors (@medai-llmhost)
options:
  device:
    description:
      - Whole block devices, each as a kernel name (V(nvme0n1)), a C(/dev) path (V(/dev/nvme0n1)) or a stable
        symlink such as V(/dev/disk/by-id/nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0R123456), which is resolved to
        the kernel name.
      - Named devices are used even if they are virtual (C(loop*), C(dm-*), C(md*)); a partition fails (the
        scheduler belongs to its disk), and so does a device without an I/O scheduler (bio-based device-mapper
        or md devices read a bare C(none)) when a scheduler other than C(none) is asked for.
      - The udev rule matches the kernel name; kernel names of NVMe namespaces can change between boots when
        controllers enumerate in another order, so prefer O(pattern) for persistent rules on hosts with several.
      - Mutually exclusive with O(pattern); one of them is required.
    type: list
    elements: str
  pattern:
    description:
      - Shell glob on kernel names of whole disks in C(/sys/block), for example V(nvme*n1) or V(sd[a-d]).
      - Virtual devices (C(loop*), C(ram*), C(zram*), C(dm-*), C(md*), C(nbd*), C(sr*), C(fd*)) are matched only
        when the pattern starts with their prefix (V(dm-*) matches device-mapper volumes, V(*) does not).
        Devices without an I/O scheduler are skipped with a warning.
      - When nothing matches, nothing is changed (no rule is written) and a warning says so.
    type: str
  rotational:
    description:
      - Only act on devices whose C(queue/rotational) is 1 (V(true), spinning disks) or 0 (V(false), SSD/NVMe).
      - With O(pattern) the udev rule carries the same condition (C(ATTR{queue/rotational}=="0")).
    type: bool
  scheduler:
    description:
      - I/O scheduler, one of those the device offers (usually V(none), V(mq-deadline), V(kyber), V(bfq)).
      - V(noop) and V(deadline) are accepted as legacy names of V(none) and V(mq-deadline).
    type: str
  translate_legacy:
    description:
      - Map V(cfq) (removed in kernel 5.0) to V(bfq) instead of failing.
    type: bool
    default: false
  load_module:
    description:
      - When the requested scheduler is V(kyber), V(bfq) or V(mq-deadline) and a device does not offer it yet,
        load its module (C(kyber-iosched), C(bfq), C(mq-deadline)) with C(modprobe) first.
      - In check mode no module is loaded; the scheduler is assumed to become available and a warning says so.
      - Loading the module is not persisted; make it load at boot (for example C(/etc/modules-load.d/)) or rely on
        the udev rule, which makes the kernel request the module when the attribute is written.
    type: bool
    default: false
  nr_requests:
    description:
      - Request queue depth (1 to 100000). Set after the scheduler.
      - With scheduler C(none) it cannot exceed the device's hardware tag depth (the kernel answers EINVAL);
        with a scheduler the kernel allows up to 2048 (kernel-dependent).
    type: int
  read_ahead_kb:
    description:
      - Read-ahead in KiB (0 to 1048576). Large sequential reads such as model weight loading profit from values
        like 4096 on NVMe.
    type: int
  persist:
    description:
      - Write (or with O(state=absent) remove) the udev rule so the settings apply at every boot and hot-plug.
    type: bool
    default: true
  state:
    description:
      - V(present) applies the values.
      - V(absent) restores the values recorded before the collection first changed each device (devices without a
        record keep their running values, with a warning), removes the devices' or pattern's udev rule lines
        (always, whatever O(persist) says) and forgets the records. O(scheduler), O(nr_requests) and
        O(read_ahead_kb) are ignored.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - medai.llmhost.state
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Nothing is written in check mode (no sysfs attribute, udev rule, originals or journal file), and no
      module is loaded.
  diff_mode:
    support: full
    details: Shows each device's attributes and the udev rules file before and after.
  platform:
    support: full
    platforms: linux
notes:
  - Needs root on the managed host (C(become=true)).
seealso:
  - module: medai.llmhost.sysfs_param
  - name: Kernel documentation, switching I/O schedulers
    description: Documentation/block/switching-sched.rst
    link: https://docs.kernel.org/block/switching-sched.html
'''

EXAMPLES = r'''
- name: NVMe namespaces that hold the model weights and KV-cache spill files - no scheduler, large read-ahead
  medai.llmhost.io_scheduler:
    pattern: "nvme*n1"
    rotational: false
    scheduler: none
    read_ahead_kb: 4096
    change_context: "vllm-baichuan-m2 storage tuning, ticket OPS-1234"
  become: true

- name: The PACS archive disk (spinning) by its stable id - mq-deadline with a deeper queue
  medai.llmhost.io_scheduler:
    device:
      - /dev/disk/by-id/ata-ST8000NM000A-2KE101_WSD0ABCD
    scheduler: mq-deadline
    nr_requests: 1024
  become: true

- name: The field report said "cfq -> noop"; noop is translated to none on current kernels
  medai.llmhost.io_scheduler:
    device: [sda]
    scheduler: noop
  become: true

- name: bfq for the log disk, loading its module if needed
  medai.llmhost.io_scheduler:
    device: [sdb]
    scheduler: bfq
    load_module: true
  become: true

- name: Roll the NVMe settings back and drop their udev rule
  medai.llmhost.io_scheduler:
    pattern: "nvme*n1"
    rotational: false
    state: absent
  become: true
'''

RETURN = r'''
devices:
  description: One entry per selected device.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Kernel name.
      type: str
      sample: nvme0n1
    given:
      description: How the device was named in O(device) (null when selected by O(pattern)).
      type: str
      sample: /dev/disk/by-id/nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0R123456
    rotational:
      description: Whether the device is rotational.
      type: bool
      sample: false
    scheduler:
      description: C(before), C(after), C(changed) of the scheduler; null when not requested.
      type: dict
      sample: {before: mq-deadline, after: none, changed: true}
    nr_requests:
      description: C(before), C(after), C(changed) of nr_requests (values as strings); null when not requested.
      type: dict
      sample: {before: '256', after: '1023', changed: true}
    read_ahead_kb:
      description: C(before), C(after), C(changed) of read_ahead_kb; null when not requested.
      type: dict
      sample: {before: '128', after: '4096', changed: true}
    changed:
      description: Whether any attribute of this device changed.
      type: bool
      sample: true
scheduler:
  description: The scheduler name actually used after translating legacy names (null if none was requested).
  returned: always
  type: str
  sample: none
rules_file:
  description: The udev rules file.
  returned: always
  type: str
  sample: /etc/udev/rules.d/60-medai-llmhost-iosched.rules
rules_changed:
  description: Whether the udev rules file changed (or would change in check mode).
  returned: always
  type: bool
  sample: true
modules_loaded:
  description: Kernel modules loaded with modprobe (O(load_module)); in check mode, the ones that would be.
  returned: always
  type: list
  elements: str
  sample: [kyber-iosched]
diff:
  description: Device attributes (header C(block devices)) and the udev rules file, before and after.
  returned: always
  type: list
  elements: dict
  sample:
    - before_header: block devices
      after_header: block devices
      before: "nvme0n1: scheduler=mq-deadline nr_requests=256 read_ahead_kb=128\n"
      after: "nvme0n1: scheduler=none nr_requests=1023 read_ahead_kb=4096\n"
msg:
  description: One-line summary, including legacy scheduler name translations.
  returned: always
  type: str
  sample: "2 of 2 device(s) changed; udev rules updated"
'''

import fnmatch
import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.plugins.module_utils import persist as mpersist
from ansible_collections.medai.llmhost.plugins.module_utils import state as mstate

MODULE = 'medai.llmhost.io_scheduler'
KIND = 'knob'
RULES_FILE = '/etc/udev/rules.d/60-medai-llmhost-iosched.rules'
ATTRS = ('scheduler', 'nr_requests', 'read_ahead_kb')   # order of writes and of udev assignments
LEGACY = {'noop': 'none', 'deadline': 'mq-deadline'}
SCHED_MODULES = {'kyber': 'kyber-iosched', 'bfq': 'bfq', 'mq-deadline': 'mq-deadline'}
VIRTUAL_PREFIXES = ('loop', 'ram', 'zram', 'dm-', 'md', 'nbd', 'sr', 'fd')
SCHED_RE = re.compile(r'^[A-Za-z0-9_-]{1,32}\Z')
RANGES = {'nr_requests': (1, 100000), 'read_ahead_kb': (0, 1048576)}


# a kernel block-device name (at most 32 chars, DISK_NAME_LEN; cciss!c0d0 has a '!'), and a /dev/disk/by-* link (udev escapes as \x20)
NAME_RE = re.compile(r'^[A-Za-z0-9_.:!-]{1,32}\Z')
BY_LINK_RE = re.compile(r'^/dev/disk/by-[a-z-]+/[A-Za-z0-9_.:!+@=,\\-]+\Z')


def fail(msg, details=None):
    raise knob.KnobError(msg, kind='invalid', details=details)


def check_name(given, name):
    if not NAME_RE.match(name) or name in ('.', '..'):
        fail('device %s is not a kernel block device name (letters, digits and _ . : ! -, at most 32)'
             % knob.show(given))
    return name


def kernel_name(dev):
    """nvme0n1 | /dev/nvme0n1 | /dev/disk/by-id/... -> kernel name (checked: it goes into the udev rule)."""
    if knob.has_control_char(dev):
        fail('device %s contains a newline or another control character' % knob.show(dev))
    dev = dev.strip()
    if not dev.startswith('/'):
        return check_name(dev, dev)
    if not dev.startswith('/dev/') or '..' in dev.split('/'):
        fail('device %s: give a kernel name, a /dev path or a /dev/disk/by-* link' % knob.show(dev))
    rest = dev[len('/dev/'):]
    if '/' not in rest:
        return check_name(dev, rest)
    if not BY_LINK_RE.match(dev):
        fail('device %s: a link must be /dev/disk/by-<kind>/<name> (letters, digits and _ . : ! + @ = , \\ - only)'
             % knob.show(dev))
    if not os.path.lexists(knob.host_path(dev)):
        fail('device %s does not exist on this host' % knob.show(dev))
    real = knob.host_realpath(dev)
    if not real.startswith('/dev/') or '/' in real[len('/dev/'):]:
        fail('device %s does not resolve to a /dev node' % knob.show(dev), details={'resolved_path': real})
    return check_name(dev, os.path.basename(real))


def sched_choices(path):
    k = knob.read_knob(path)
    return k['value'], (k['choices'] or [k['value']])


class IoScheduler(object):

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.warnings = []
        self.notes = []
        self.devices = []
        self.modules_loaded = []
        self.log = mstate.ChangeLog(KIND, MODULE, self.p['state_dir'], self.p['change_context'], self.check)

    # ---------------------------------------------------------------- selection
    def queue(self, name, attr):
        return '/sys/block/%s/queue/%s' % (name, attr)

    def select(self):
        p = self.p
        picked = []
        if p['device'] is not None:
            if not p['device']:
                fail('device is an empty list')
            names = [kernel_name(given) for given in p['device']]   # all checked before any is looked at
            for given, name in zip(p['device'], names):
                sysdir = '/sys/class/block/' + name
                if not os.path.exists(knob.host_path(sysdir)):
                    fail('block device %s (%s) does not exist on this host' % (name, knob.show(given)))
                if os.path.exists(knob.host_path(sysdir + '/partition')):
                    parent = os.path.basename(os.path.dirname(knob.host_realpath(sysdir)))
                    fail('%s is a partition: the I/O scheduler belongs to the whole disk, use %s'
                         % (knob.show(given), parent))
                if not os.path.exists(knob.host_path(self.queue(name, 'scheduler'))):
                    fail('%s has no queue/scheduler: not a request-based block device' % name)
                if name in [d['name'] for d in picked]:
                    continue
                picked.append({'name': name, 'given': given, 'explicit': True})
        else:
            pat = mpersist.check_udev_glob('pattern', p['pattern'])
            names = sorted(os.listdir(knob.host_path('/sys/block'))) \
                if os.path.isdir(knob.host_path('/sys/block')) else []
            for name in names:
                if not fnmatch.fnmatchcase(name, pat):
                    continue
                virt = [x for x in VIRTUAL_PREFIXES if name.startswith(x)]
                if virt and not pat.startswith(virt[0]):
                    continue
                if not os.path.exists(knob.host_path(self.queue(name, 'scheduler'))):
                    self.warnings.append('%s matches %s but has no queue/scheduler: skipped' % (name, knob.show(pat)))
                    continue
                picked.append({'name': name, 'given': None, 'explicit': False})
        for d in picked:
            rot = knob.read_knob(self.queue(d['name'], 'rotational'))['value'] \
                if os.path.exists(knob.host_path(self.queue(d['name'], 'rotational'))) else None
            d['rotational'] = None if rot is None else rot == '1'
            if p['rotational'] is not None and d['rotational'] != p['rotational']:
                self.notes.append('%s skipped (rotational=%s)' % (d['name'], d['rotational']))
                continue
            for attr in ATTRS:
                d[attr + '_path'] = knob.resolve_knob_path(self.queue(d['name'], attr))
            self.devices.append(d)
        if not self.devices:
            self.warnings.append('no block device matched %s%s: nothing done' % (
                knob.show(p['pattern'] or ', '.join(p['device'])),
                '' if p['rotational'] is None else ' with rotational=%s' % p['rotational']))

    # ---------------------------------------------------------------- scheduler name
    def wanted_scheduler(self):
        s = self.p['scheduler']
        if s is None:
            return None
        s = s.strip()
        if not SCHED_RE.match(s):
            fail('scheduler %s is not an I/O scheduler name (letters, digits, _ and -, at most 32)' % knob.show(s))
        if s in LEGACY:
            note = 'scheduler %s is the legacy (pre-5.0) name of %s: using %s' % (s, LEGACY[s], LEGACY[s])
            self.warnings.append(note)
            self.notes.append(note)
            return LEGACY[s]
        if s == 'cfq':
            if not self.p['translate_legacy']:
                fail('scheduler cfq was removed in kernel 5.0 with the legacy block layer; use bfq (its blk-mq '
                     'successor), or set translate_legacy: true to map cfq to bfq')
            note = 'scheduler cfq (removed in 5.0) translated to bfq'
            self.warnings.append(note)
            self.notes.append(note)
            return 'bfq'
        return s

    def check_offered(self, sched):
        """Every device must offer `sched`, or its module may be loaded (load_module). Writes nothing.
        Returns the devices that need the module loaded first (empty when all offer it)."""
        missing = []
        for d in list(self.devices):
            value, choices = sched_choices(d['scheduler_path'])
            d['choices'] = choices
            if not d['explicit'] and knob.read_knob(d['scheduler_path'])['choices'] is None and sched not in choices:
                self.warnings.append('%s matches %s but has no I/O scheduler (reads a bare %s): skipped'
                                     % (d['name'], self.p['pattern'], value))
                self.devices.remove(d)
                continue
            if sched not in choices:
                missing.append(d)
        if not missing:
            return []
        mod = SCHED_MODULES.get(sched)
        first = missing[0]
        if not (self.p['load_module'] and mod):
            hint = ' (or set load_module: true to modprobe %s)' % mod if mod else ''
            fail('%s does not offer scheduler %s on this kernel (%s); offered: %s%s'
                 % (first['name'], knob.show(sched), knob.kernel_release(), ', '.join(first['choices']), hint))
        if not self.module.get_bin_path('modprobe'):
            fail('scheduler %s needs module %s but modprobe was not found' % (sched, mod))
        return missing

    def load_scheduler_module(self, sched, missing):
        """modprobe the module of `sched` (after every check passed); in check mode only say so."""
        mod = SCHED_MODULES[sched]
        self.modules_loaded.append(mod)
        if self.check:
            self.warnings.append('check mode: %s is not offered by %s; would modprobe %s and assume it is then'
                                 % (sched, ', '.join(d['name'] for d in missing), mod))
            return
        modprobe = self.module.get_bin_path('modprobe')
        rc, out, err = self.module.run_command([modprobe, mod])
        if rc != 0:
            self.modules_loaded.remove(mod)
            fail('modprobe %s failed (rc=%d): %s' % (mod, rc, (err or out).strip()))
        self.log.journal([{'setting': 'kmod:' + mod, 'action': 'modprobe', 'before': None, 'after': 'loaded'}])
        for d in missing:
            value, choices = sched_choices(d['scheduler_path'])
            if sched not in choices:
                fail('%s still does not offer scheduler %s after modprobe %s; offered: %s'
                     % (d['name'], sched, mod, ', '.join(choices)))

    # ---------------------------------------------------------------- udev
    def set_rule(self, rules, name_or_pattern, with_rot, values):
        """Plan the udev rule for a device or pattern (persist.udev_rule checks its syntax)."""
        match_attrs = [('queue/rotational', int(self.p['rotational']))] \
            if with_rot and self.p['rotational'] is not None else []
        assigns = [('queue/' + a, values[a]) for a in ATTRS if values.get(a) is not None]
        match, line = mpersist.udev_rule(name_or_pattern, match_attrs, assigns)
        rules.set(match, line)

    # ---------------------------------------------------------------- run
    def run(self):
        p = self.p
        present = p['state'] == 'present'
        sched = self.wanted_scheduler() if present else None
        if present and sched is None and p['nr_requests'] is None and p['read_ahead_kb'] is None:
            fail('nothing to set: give scheduler, nr_requests and/or read_ahead_kb')
        self.select()
        rules = mpersist.udev_file(RULES_FILE)

        to_load = self.check_offered(sched) if present and sched is not None and self.devices else []
        pending_load = bool(to_load)

        wanted = {'scheduler': sched, 'nr_requests': p['nr_requests'], 'read_ahead_kb': p['read_ahead_kb']}
        items = []
        records = []
        for d in self.devices:
            d['before'] = dict((a, knob.read_knob(d[a + '_path'])['value']) for a in ATTRS
                               if os.path.exists(knob.host_path(d[a + '_path'])))
            d['target'] = {}
            for a in ATTRS:
                if present:
                    if wanted[a] is None:
                        continue
                    if a not in d['before']:
                        fail('%s has no queue/%s on this kernel (%s)' % (d['name'], a, knob.kernel_release()))
                    d['target'][a] = str(wanted[a])
                else:
                    rec = mstate.get_original(KIND, d[a + '_path'], p['state_dir'])
                    if rec is not None:
                        d['target'][a] = knob.normalize(rec['original'])
                        records.append(d[a + '_path'])
            if not present and not d['target']:
                self.warnings.append('no original values recorded for %s: its running values were left as they are'
                                     % d['name'])
            for a in ATTRS:
                if a in d['target']:
                    items.append((d[a + '_path'], d['target'][a]))

        # ---- predict (validates everything; nothing written)
        names = dict((d[a + '_path'], self.queue(d['name'], a)) for d in self.devices for a in ATTRS)
        if pending_load:
            checkable = [(path, v) for path, v in items if not path.endswith('/queue/scheduler')]
            predicted = knob.apply_knobs(checkable, check_mode=True, names=names)
            for path, v in items:
                if path.endswith('/queue/scheduler'):
                    cur = knob.read_knob(path)['value']
                    predicted.append({'path': path, 'before': cur, 'after': v, 'changed': cur != v})
        else:
            predicted = knob.apply_knobs(items, check_mode=True, names=names)
        by_path = dict((r['path'], r) for r in predicted)
        for d in self.devices:
            # changing the scheduler resets nr_requests: treat the device's attributes as one unit
            d['changing'] = any(by_path[d[a + '_path']]['changed'] for a in d['target'])

        # ---- udev rules plan
        if self.devices:
            if present and p['persist']:
                values = dict((a, d_t) for a, d_t in wanted.items() if d_t is not None)
                if p['pattern'] is not None:
                    self.drop_rules(rules, p['pattern'])
                    self.set_rule(rules, p['pattern'], True, values)
                else:
                    for d in self.devices:
                        self.set_rule(rules, d['name'], False, values)
            elif not present:
                for key in ([p['pattern']] if p['pattern'] is not None else [d['name'] for d in self.devices]):
                    self.drop_rules(rules, key)

        # ---- everything is checked: from here on things change
        self.log.check()
        if to_load:
            self.load_scheduler_module(sched, to_load)

        # ---- apply
        results = by_path
        if not self.check and items:
            # Originals (the device's true values from before this task, not the nr_requests a
            # scheduler switch reset) are recorded once a change has happened: after success, or for
            # what a failed set-back left changed; a refused or rolled-back change leaves no record.
            # After success: every attribute of a changing device (a scheduler switch changes nr_requests too).
            changes = [(d[a + '_path'], d['before'][a], {'device': d['name'], 'attribute': a})
                       for d in self.devices if d['changing'] for a in d['target']] if present else []
            applied = self.log.apply(items, 'set' if present else 'restore', changes, record_all=True,
                                     explain=self.explain, names=names)
            results = dict((r['path'], r) for r in applied)

        devices = []
        for d in self.devices:
            entry = {'name': d['name'], 'given': d['given'], 'rotational': d['rotational'], 'changed': False}
            for a in ATTRS:
                r = results.get(d[a + '_path']) if a in d['target'] else None
                if r is None:
                    entry[a] = None
                    continue
                entry[a] = {'before': d['before'][a], 'after': r['after'], 'changed': d['before'][a] != r['after']}
                entry['changed'] = entry['changed'] or entry[a]['changed']
            devices.append(entry)

        def show(key):
            out = ''
            for d in devices:
                vals = ['%s=%s' % (a, d[a][key]) for a in ATTRS if d[a] is not None]
                if vals:
                    out += '%s: %s\n' % (d['name'], ' '.join(vals))
            return out

        diffs = [{'before_header': 'block devices', 'after_header': 'block devices',
                  'before': show('before'), 'after': show('after')}]
        rules_changed, rdiff = rules.commit(check_mode=self.check)
        if rules_changed:
            diffs.append(rdiff)
            if not self.check:
                self.log.journal([{'setting': 'file:' + RULES_FILE, 'action': 'update' if rules.render() else 'remove',
                                   'before': rules.original, 'after': rules.render()}])
                udevadm = self.module.get_bin_path('udevadm')
                if udevadm:
                    rc, out, err = self.module.run_command([udevadm, 'control', '--reload'])
                    if rc != 0:
                        self.warnings.append('udevadm control --reload failed (rc=%d): %s' % (rc, (err or out).strip()))
        if not self.check and not present:
            for path in records:
                mstate.forget_original(KIND, path, p['state_dir'])

        nchanged = sum(1 for d in devices if d['changed'])
        msg = '%d of %d device(s) %s' % (nchanged, len(devices), 'changed' if present else 'restored')
        if rules_changed:
            msg += '; udev rules updated'
        if self.modules_loaded:
            msg += '; loaded %s' % ', '.join(self.modules_loaded)
        if self.notes:
            msg += '; ' + '; '.join(self.notes)
        return dict(changed=bool(nchanged or rules_changed or self.modules_loaded), devices=devices, scheduler=sched,
                    rules_file=RULES_FILE, rules_changed=rules_changed, modules_loaded=self.modules_loaded,
                    diff=diffs, msg=msg)

    def drop_rules(self, rules, name_or_pattern):
        needle = 'KERNEL=="%s"' % name_or_pattern
        for key in rules.keys():
            if needle in key.split(', '):
                rules.remove(key)

    def explain(self, e):
        if e.path and e.path.endswith('/queue/nr_requests') and e.kind == 'rejected':
            dev = [d for d in self.devices if d['nr_requests_path'] == e.path]
            name = dev[0]['name'] if dev else e.path
            sched = dev[0]['target'].get('scheduler') or dev[0]['before'].get('scheduler') if dev else None
            why = ("with scheduler none nr_requests cannot exceed %s's hardware tag depth; use less, or a scheduler "
                   'such as mq-deadline (up to 2048)' % name) if sched == 'none' else \
                ('%s allows less with scheduler %s (up to 2048 with a scheduler, the hardware tag depth with none)'
                 % (name, sched))
            return e.reason.replace('value out of range or not offered here', why)
        return e.reason


def main():
    argument_spec = dict(
        device=dict(type='list', elements='str'),
        pattern=dict(type='str'),
        rotational=dict(type='bool'),
        scheduler=dict(type='str'),
        translate_legacy=dict(type='bool', default=False),
        load_module=dict(type='bool', default=False),
        nr_requests=dict(type='int'),
        read_ahead_kb=dict(type='int'),
        persist=dict(type='bool', default=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
    )
    argument_spec.update(mstate.STATE_ARGS)
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('device', 'pattern')],
        required_one_of=[('device', 'pattern')],
        supports_check_mode=True,
    )
    for opt, (lo, hi) in RANGES.items():
        v = module.params[opt]
        if v is not None and not lo <= v <= hi:
            module.fail_json(msg='%s must be between %d and %d, got %d' % (opt, lo, hi, v))
    io = IoScheduler(module)
    knob.run_and_exit(module, io.run, io.warnings)


if __name__ == '__main__':
    main()
