#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: cpuset
short_description: Confine services to CPUs and memory nodes with cgroup v2 cpusets and partitions
version_added: 0.1.0
description:
  - Manages a cgroup v2 cpuset - C(cpuset.cpus), C(cpuset.mems) and C(cpuset.cpus.partition) (V(member), V(root),
    V(isolated)) - either for a systemd O(slice) (persistent) or for a raw cgroup O(path) (runtime only).
  - Refuses cgroup v1 and hybrid hosts (the v1 C(cpuset)/C(cset) interface that many guides use is deprecated and
    C(CONFIG_CPUSETS_V1) is off by default since kernel 6.12).
  - Values are written in the order C(cpuset.cpus), C(cpuset.mems), C(cpuset.cpus.partition) (after enabling C(+cpuset)
    in every ancestor's C(cgroup.subtree_control)), then read back from C(cpuset.cpus.effective),
    C(cpuset.mems.effective) and C(cpuset.cpus.partition). A partition that reads C(root invalid (<reason>)) or
    C(isolated invalid (<reason>)) fails the task with the kernel's reason, after everything the task did is set back
    (cgroups it created removed, C(+cpuset) it enabled disabled, values and drop-ins it wrote restored, the slice it
    started stopped, no original recorded, no journal line). O(cpus) overlapping another valid partition are refused
    before anything is written.
  - CPU and node lists are checked against the host's possible CPUs and nodes (else 8192 and 1024) before any range
    is expanded.
  - 'Why a partition: in the lab pilot (4 vCPUs, CPU-bound HTTP service, 8 clients, 6 CPU hogs + 1 I/O writer) a v2
    partition for the service cut P99 from 866 ms (untuned) to 522 ms, and P95 to 0.49 / 0.62 / 0.70 of untuned at
    4 / 8 / 16 clients - the best single lever. SCHED_FIFO on every thread on top of it made the tail worse
    (P99 1006 ms; see M(medai.llmhost.chrt_priority)).'
  - 'O(slice) mode, persistence: a drop-in C(/etc/systemd/system/<slice>.d/50-medai-llmhost-cpuset.conf) with
    C(AllowedCPUs=) and C(AllowedMemoryNodes=); for each of O(units) a drop-in
    C(/etc/systemd/system/<unit>.d/50-medai-llmhost-cpuset.conf) with C(Slice=); then C(systemctl daemon-reload) and
    C(systemctl start <slice>). Services only move into the slice when they restart: O(restart_units=true) restarts
    them, otherwise RV(restart_required) says so.'
  - 'Partition persistence: systemd (252) has no property for C(cpuset.cpus.partition). The module installs a oneshot
    template C(/etc/systemd/system/medai-cpuset-partition@.service) and, per slice, an instance drop-in with the
    cgroup path and the partition type. The slice C(Wants=) the instance and the instance is C(After=)/C(PartOf=) the
    slice, so it writes the partition every time the slice starts - after systemd wrote C(AllowedCPUs=) - and moved
    services are ordered after it. It fails visibly (journal, C(systemctl --failed)) when the kernel reports the
    partition invalid, reverting it to member. A tmpfiles.d C(w) line was rejected: C(systemd-tmpfiles-setup) runs
    once early at boot, before a slice''s cgroup exists (systemd creates it when the slice starts), silently skips
    missing paths, and never re-applies when the slice is stopped and re-created.'
  - O(path) mode is runtime only (lost at reboot); O(pids) are moved into the cgroup.
  - 'Housekeeping: a layout is refused when O(cpus) leaves fewer than O(housekeeping_min) online CPUs outside O(cpus),
    all other valid partitions and the C(isolcpus=) CPUs - the kernel, IRQs, sshd, systemd and Ansible itself need them.'
author:
  - medai.llmhost contributors (@medai-llmhost)
options:
  slice:
    description:
      - systemd slice to manage, for example V(llminference.slice).
      - systemd turns C(-) in a slice name into nesting - V(llm-inference.slice) is the cgroup
        C(/sys/fs/cgroup/llm.slice/llm-inference.slice) - and a V(root) partition needs a parent that is a partition
        root (kernels before 6.7 have no remote partitions). Use a top-level name without C(-) for partitions.
      - Exactly one of O(slice) and O(path) is required.
    type: str
  units:
    description:
      - Services to run in O(slice) (a C(Slice=) drop-in each); C(.service) is appended to names without a suffix.
        With O(state=absent) their drop-ins are removed (together with the units recorded when applying).
    type: list
    elements: str
    default: []
  restart_units:
    description:
      - Restart the O(units) that are running outside the slice (present) or inside it (absent). Otherwise
        RV(restart_required) is true and the units keep running where they are until their next restart.
      - With O(state=absent) every service found running in the slice counts, also one that is there by its own
        unit file's C(Slice=) (not in O(units) or the record), and they are restarted B(after) the partition is
        dissolved, so that they start on the CPU set without it; once none is left in the slice its
        C(cpuset.cpus)/C(cpuset.mems) are emptied in the same run and the slice is stopped (its cgroup goes).
        Without O(restart_units) a warning names the
        services left running in the slice (nothing that serves is restarted unasked).
    type: bool
    default: false
  path:
    description:
      - A cgroup under C(/sys/fs/cgroup) (V(llm/engine) or V(/sys/fs/cgroup/llm/engine)); created when missing.
        Runtime only.
      - Refused inside systemd's unit cgroups (a component ending in C(.service), C(.scope) - C(init.scope)
        included -, C(.socket), C(.mount) or C(.swap)) - systemd owns them, and cgroup v2 allows no cpuset children
        beside a cgroup's own processes. Use O(slice) and O(units) there. Components are cgroup names (letters,
        digits, C(_.:@-\\)); empty components, C(.) and C(..) are refused.
    type: str
  pids:
    description: Processes to move into O(path) (written to its C(cgroup.procs)). Only with O(path).
    type: list
    elements: int
    default: []
  cpus:
    description:
      - CPUs of the cpuset as a cpulist (V(4-7), V(2-3,6-7)). Every CPU must be online. Required with O(state=present).
    type: str
  mems:
    description:
      - Memory (NUMA) nodes as a cpulist of node numbers (V(1), V(0-1)). Every node must be online
        (C(/sys/devices/system/node/online)). Left unchanged (inherit the parent's) when omitted.
    type: str
  partition:
    description:
      - V(member) - an ordinary cpuset (CPUs shared with the rest of the system).
      - V(root) - a partition root - O(cpus) become exclusive to this cgroup.
      - V(isolated) - a partition root without load balancing between its CPUs (kernel 5.15+); threads stay on the
        CPU they were placed on - only for pinned workloads.
    type: str
    choices: [member, root, isolated]
    default: member
  housekeeping_min:
    description:
      - Minimum number of online CPUs that must stay outside O(cpus), other partitions and C(isolcpus=). At least 1.
    type: int
    default: 1
  state:
    description:
      - V(present) creates/updates the cpuset (and persistence for O(slice)).
      - V(absent) removes the drop-ins and the partition unit instance, sets the partition back to V(member) (first),
        restores the recorded C(cpuset.cpus)/C(cpuset.mems), moves recorded O(pids) back to their original cgroup and
        removes a O(path) cgroup the module created once it is empty.
      - The kernel refuses to empty C(cpuset.cpus)/C(cpuset.mems) (ENOSPC) while tasks run in the cgroup or below it
        (a service still in the slice) - they are set to every online CPU/node instead (no confinement left), a
        warning says so, and the original stays recorded so that a later V(absent), once the tasks are gone, empties
        them.
      - Creating or dissolving a partition makes the kernel move the per-node kernel threads C(kswapdN) and
        C(kcompactdN) to the root cgroup's CPUs; those that were on their node's CPUs are put back (see
        RV(kthreads_reaffined)). So are those on exactly the root's CPUs while a partition exists - where the
        kernel put them when the partition was made at boot by its unit - so dissolving a boot-time partition
        brings them back to their node.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - medai.llmhost.state
attributes:
  check_mode:
    support: full
    description: Reads the cgroup tree and systemd; writes no cgroup file, no unit file, no state; runs no
      daemon-reload, start or restart.
  diff_mode:
    support: full
    description: The cpuset values and every drop-in/unit file written or removed.
  platform:
    platforms: linux
    support: full
    description: Linux with the cgroup v2 unified hierarchy; O(slice) mode needs systemd.
notes:
  - Originals are recorded with kind C(cpuset), key C(slice:<slice>) or C(path:<cgroup>).
  - C(+cpuset) enabled in ancestors' C(cgroup.subtree_control) is left enabled by O(state=absent) (harmless, and other
    cgroups may rely on it).
  - cgroup v2 lets a cgroup enable controllers for its children only while it has no processes of its own (EBUSY
    otherwise), so create O(path) under a cgroup without processes.
seealso:
  - module: medai.llmhost.chrt_priority
  - name: cgroup v2 cpuset interface files
    description: cpuset.cpus, cpuset.mems, cpuset.cpus.partition and the partition rules.
    link: https://docs.kernel.org/admin-guide/cgroup-v2.html#cpuset-interface-files
  - name: systemd.resource-control AllowedCPUs=
    description: The slice properties used for persistence.
    link: https://www.freedesktop.org/software/systemd/man/latest/systemd.resource-control.html
'''

EXAMPLES = r'''
- name: vLLM gets CPUs 4-7 on NUMA node 1 as an exclusive partition; persisted; restart to move it in
  medai.llmhost.cpuset:
    slice: llminference.slice
    cpus: 4-7
    mems: '1'
    partition: root
    units: [vllm.service]
    restart_units: true
    change_context: 'CHG-1234'

- name: Runtime only - a cgroup for a benchmark process
  medai.llmhost.cpuset:
    path: bench/engine
    cpus: 2-3
    mems: '0'
    pids: ['{{ bench_pid }}']

- name: Undo
  medai.llmhost.cpuset:
    slice: llminference.slice
    units: [vllm.service]
    restart_units: true
    state: absent
'''

RETURN = r'''
cgroup:
  description: Host path of the cgroup.
  returned: always
  type: str
  sample: /sys/fs/cgroup/llminference.slice
slice:
  description: The slice, in O(slice) mode.
  returned: when O(slice) is given
  type: str
cpus:
  description: Requested CPUs, normalised (null with O(state=absent)).
  returned: always
  type: str
  sample: 4-7
cpus_effective:
  description: C(cpuset.cpus.effective) read back (planned value in check mode; null when the cgroup does not exist).
  returned: always
  type: str
  sample: 4-7
mems_effective:
  description: C(cpuset.mems.effective) read back (planned value in check mode when O(mems) is given).
  returned: always
  type: str
  sample: '1'
partition:
  description: C(cpuset.cpus.partition) read back (V(member), V(root), V(isolated)).
  returned: always
  type: str
  sample: root
housekeeping_cpus:
  description: Online CPUs left outside O(cpus), other partitions and C(isolcpus=).
  returned: when O(state=present)
  type: str
  sample: 0-3
created:
  description: Whether the cgroup directory was (or would be) created.
  returned: always
  type: bool
removed:
  description: Whether the cgroup directory was (or would be) removed (O(path), O(state=absent)).
  returned: always
  type: bool
units_moved:
  description: Units whose C(Slice=) drop-in points at the slice (present) or was removed (absent).
  returned: always
  type: list
  elements: str
units_restarted:
  description: Units restarted (or that would be) by O(restart_units).
  returned: always
  type: list
  elements: str
restart_required:
  description:
    - True when some unit still runs outside the slice (present) or inside it (absent) and was not restarted.
    - With O(state=absent) this includes services running in the slice by their own C(Slice=).
  returned: always
  type: bool
kthreads_reaffined:
  description:
    - Per-node kernel threads (C(kswapdN), C(kcompactdN)) put back on their node's CPUs after the partition
      change (the kernel resets the affinity of every non-per-CPU thread in the root cgroup when a partition is
      created or dissolved). Only threads that were on their node's CPUs before, or on exactly the root's CPUs
      while a partition existed (the kernel's placement), are touched; each is journalled.
  returned: always
  type: list
  elements: str
  sample: [kswapd1, kcompactd1]
units_restart_required:
  description: The units meant by RV(restart_required).
  returned: always
  type: list
  elements: str
pids_moved:
  description: Pids written to C(cgroup.procs) (present) or moved back (absent).
  returned: always
  type: list
  elements: int
files:
  description: Drop-ins and unit files written or removed (or that would be).
  returned: always
  type: list
  elements: str
'''

import glob
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.medai.llmhost.plugins.module_utils import cgroup2
from ansible_collections.medai.llmhost.plugins.module_utils import cpus as cpulib
from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.plugins.module_utils import persist
from ansible_collections.medai.llmhost.plugins.module_utils import sched
from ansible_collections.medai.llmhost.plugins.module_utils import state as statelib

MODULE = 'medai.llmhost.cpuset'
KIND = 'cpuset'
DROPIN_NAME = '50-medai-llmhost-cpuset'
PART_DROPIN_NAME = '50-medai-llmhost'
TEMPLATE = 'medai-cpuset-partition@.service'
TEMPLATE_PATH = persist.SYSTEMD_DIR + '/' + TEMPLATE

TEMPLATE_TEXT = persist.HEADER + r'''# Writes cpuset.cpus.partition of a slice every time the slice starts (systemd has no property for it).
# MEDAI_CGROUP and MEDAI_PARTITION come from the instance's drop-in %n.d/50-medai-llmhost.conf.
[Unit]
Description=medai.llmhost: cpuset partition of %i
Documentation=https://docs.kernel.org/admin-guide/cgroup-v2.html#cpuset-interface-files
After=%i
PartOf=%i
ConditionPathExists=/sys/fs/cgroup/cgroup.controllers

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'f="$${MEDAI_CGROUP}/cpuset.cpus.partition"; echo "$${MEDAI_PARTITION}" > "$$f"; \
  p=$$(cat "$$f"); echo "$$f: $$p"; case "$$p" in *invalid*) echo member > "$$f"; exit 1;; esac'
ExecStop=/bin/sh -c 'f="$${MEDAI_CGROUP}/cpuset.cpus.partition"; [ ! -e "$$f" ] || echo member > "$$f"'
'''


def part_unit(slice_name):
    return 'medai-cpuset-partition@%s.service' % slice_name


def slice_dropin(slice_name, cpus, mems, partition):
    lines = []
    if partition != 'member':
        lines += ['[Unit]', 'Wants=%s' % part_unit(slice_name), '']
    lines += ['[Slice]', 'AllowedCPUs=%s' % cpus]
    if mems:
        lines.append('AllowedMemoryNodes=%s' % mems)
    return '\n'.join(lines) + '\n'


def part_dropin(cg, partition):
    return '[Service]\nEnvironment=MEDAI_CGROUP=%s MEDAI_PARTITION=%s\n' % (cg, partition)


def unit_dropin(slice_name, partition):
    lines = []
    if partition != 'member':
        lines += ['[Unit]', 'Wants=%s' % part_unit(slice_name), 'After=%s' % part_unit(slice_name), '']
    lines += ['[Service]', 'Slice=%s' % slice_name]
    return '\n'.join(lines) + '\n'


def other_part_instances(slice_name):
    pattern = knob.host_path(persist.SYSTEMD_DIR + '/medai-cpuset-partition@*.service.d/%s.conf' % PART_DROPIN_NAME)
    mine = part_unit(slice_name)
    return [f for f in glob.glob(pattern) if os.path.basename(os.path.dirname(f)) != mine + '.d']


class SetBack(object):
    """Undo steps for what a task wrote, run newest first when a later step fails (for example the
    kernel marking the new partition 'root invalid'): the host is left as it was, with no record."""

    def __init__(self):
        self.steps = []   # (what, undo)

    def add(self, what, undo):
        self.steps.append((what, undo))

    def run(self):
        """Undo everything; returns what could not be undone."""
        failed = []
        for what, undo in reversed(self.steps):
            try:
                undo()
            except (knob.KnobError, IOError, OSError):
                failed.append(what)
        self.steps = []
        return failed

    def files(self, paths):
        """Before writing host files `paths`: on set-back, put their content (or absence) back and remove
        the directories that writing them created."""
        saved = []
        for path in paths:
            hp = knob.host_path(path)
            mode = os.stat(hp).st_mode & 0o7777 if os.path.exists(hp) else None
            saved.append((path, persist.read_text(path), mode))
        new_dirs = set()
        for path in paths:
            d = os.path.dirname(path)
            while d not in ('', '/') and not os.path.isdir(knob.host_path(d)):
                new_dirs.add(d)
                d = os.path.dirname(d)

        def undo():
            for path, text, mode in saved:
                if text is None:
                    persist.remove_file(path)
                else:
                    statelib.atomic_write(knob.host_path(path), text, mode)
            for d in sorted(new_dirs, key=len, reverse=True):
                hp = knob.host_path(d)
                if os.path.isdir(hp) and not os.listdir(hp):
                    os.rmdir(hp)
        self.add('files %s' % ', '.join(paths), undo)


def state_files(state_dir):
    return [os.path.join(state_dir or statelib.DEFAULT_STATE_DIR, statelib.ORIGINALS)]


class Ctx(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.files = []      # (path, diff)
        self.runtime = []    # (file, before, after)
        self.entries = []
        self.warnings = []

    def systemctl(self, *args):
        path = self.module.get_bin_path('systemctl')
        if not path:
            raise knob.KnobError('systemctl not found: slice mode needs systemd', kind='missing')
        rc, out, err = self.module.run_command([path] + list(args))
        if rc != 0:
            raise knob.KnobError('systemctl %s failed (rc=%d): %s' % (' '.join(args), rc, (err or out).strip()),
                                 kind='io')
        return out

    def show(self, unit, props):
        return sched.systemctl_show(self.module, unit, props)

    def file(self, path, changed_diff):
        changed, diff = changed_diff
        if changed:
            self.files.append((path, diff))
        return changed


def stop_if_active(ctx, unit):
    """Stop `unit` when it is active (journalled)."""
    if ctx.show(unit, ['ActiveState']).get('ActiveState') in ('active', 'activating'):
        ctx.systemctl('stop', unit)
        ctx.entries.append({'setting': 'stop:%s' % unit, 'before': 'active', 'after': 'stopped'})


def stop_part_unit(ctx, slice_name):
    """Stop the partition oneshot of a slice when it is active (before its files go away)."""
    stop_if_active(ctx, part_unit(slice_name))


def merge_original(key, state_dir, updates):
    """Record originals for `key`; keys already recorded keep their first-seen value; dict values merge."""
    old = statelib.get_original(KIND, key, state_dir)
    orig = dict(old['original']) if old else {}
    changed = False
    for k, v in updates.items():
        if isinstance(v, dict):
            cur = dict(orig.get(k) or {})
            for kk, vv in v.items():
                if kk not in cur:
                    cur[kk] = vv
                    changed = True
            orig[k] = cur
        elif isinstance(v, list):
            cur = list(orig.get(k) or [])
            for x in v:
                if x not in cur:
                    cur.append(x)
                    changed = True
            orig[k] = cur
        elif k not in orig:
            orig[k] = v
            changed = True
    if not changed and old:
        return
    if old:
        statelib.forget_original(KIND, key, state_dir)
    statelib.record_original(KIND, key, orig, MODULE, state_dir)


def read_current(cg):
    if not cgroup2.exists(cg):
        return None
    part = cgroup2.read_opt(cg, 'cpuset.cpus.partition')
    cpus = cgroup2.read_opt(cg, 'cpuset.cpus')
    mems = cgroup2.read_opt(cg, 'cpuset.mems')
    return {'cpus': cpulib.normalize_cpulist(cpus) if cpus is not None else None,
            'mems': cpulib.normalize_cpulist(mems, 'cpuset.mems', cpulib.MAX_NODES) if mems is not None else None,
            'partition': cgroup2.parse_partition(part)[0] if part is not None else None,
            'partition_raw': part,
            'has_cpuset': cpus is not None}


def validate(ctx, cg):
    p = ctx.p
    if p['cpus'] is None:
        raise knob.KnobError('cpus is required with state=present', kind='invalid')
    want = cpulib.parse_cpulist(p['cpus'], 'cpus')
    if not want:
        raise knob.KnobError('cpus %s is empty' % knob.show(p['cpus']), kind='invalid')
    online = cpulib.online_cpus()
    bad = sorted(set(want) - set(online))
    if bad:
        raise knob.KnobError('cpus %s include CPUs that are not online: %s (online: %s)'
                             % (knob.show(p['cpus']), cpulib.format_cpulist(bad), cpulib.format_cpulist(online)),
                             kind='invalid')
    if p['housekeeping_min'] < 1:
        raise knob.KnobError('housekeeping_min must be at least 1 (a cpuset may never take every CPU)', kind='invalid')
    others = cgroup2.partitions(exclude=cg)
    if p['partition'] != 'member':
        # the kernel would mark an overlapping partition 'root invalid': refuse before writing anything
        lineage = cgroup2.ancestors(cg)
        for other, cpus in sorted(others.items()):
            overlap = set(want) & set(cpus)
            if overlap and other not in lineage:
                raise knob.KnobError('cpus %s overlap the partition %s (CPUs %s): a %s partition needs CPUs no other '
                                     'partition holds' % (knob.show(p['cpus']), other, cpulib.format_cpulist(overlap),
                                                          p['partition']), kind='invalid')
    taken = set()
    for cpus in others.values():
        taken.update(cpus)
    iso = set(cpulib.boot_isolated_cpus())
    left = sorted(set(online) - set(want) - taken - iso)
    if len(left) < p['housekeeping_min']:
        detail = []
        if others:
            parts = ['%s=%s' % (k, cpulib.format_cpulist(v)) for k, v in sorted(others.items())]
            detail.append('other partitions: %s' % ', '.join(parts))
        if iso:
            detail.append('isolcpus: %s' % cpulib.format_cpulist(iso))
        raise knob.KnobError('refusing cpus %s: it leaves %d online CPU(s) (%s) outside partitions and isolcpus, fewer '
                             'than housekeeping_min=%d needed for the kernel, IRQs, sshd and systemd (online: %s%s)'
                             % (cpulib.format_cpulist(want), len(left), cpulib.format_cpulist(left) or 'none',
                                p['housekeeping_min'], cpulib.format_cpulist(online),
                                '; ' + '; '.join(detail) if detail else ''), kind='unsafe',
                             details={'other_partitions': dict((k, cpulib.format_cpulist(v)) for k, v in others.items()),
                                      'isolcpus': cpulib.format_cpulist(iso)})
    mems = None
    if p['mems'] is not None:
        m = cpulib.parse_nodelist(p['mems'], 'mems')
        if not m:
            raise knob.KnobError('mems %s is empty' % knob.show(p['mems']), kind='invalid')
        nodes = cpulib.online_nodes()
        bad = sorted(set(m) - set(nodes))
        if bad:
            raise knob.KnobError('mems %s names NUMA node(s) that do not exist or are offline: %s (online nodes: %s)'
                                 % (knob.show(p['mems']), cpulib.format_cpulist(bad),
                                    cpulib.format_cpulist(nodes) or 'none'), kind='invalid')
        mems = cpulib.format_cpulist(m)
    return cpulib.format_cpulist(want), mems, cpulib.format_cpulist(left)


def plan_runtime(cur, cpus, mems, partition):
    """[(file, before, after)] of the cpuset files to write, in write order."""
    plan = []
    if cur is None or not cur['has_cpuset']:
        plan.append(('cpuset.cpus', None, cpus))
        if mems is not None:
            plan.append(('cpuset.mems', None, mems))
        if partition != 'member':
            plan.append(('cpuset.cpus.partition', None, partition))
        return plan
    if cur['cpus'] != cpus:
        plan.append(('cpuset.cpus', cur['cpus'], cpus))
    if mems is not None and cur['mems'] != mems:
        plan.append(('cpuset.mems', cur['mems'], mems))
    raw = cur['partition_raw']
    if raw is None:
        if partition != 'member':
            raise knob.KnobError('this kernel (%s) has no cpuset.cpus.partition (needs 5.13+ for root, 5.15+ for '
                                 'isolated)' % knob.kernel_release(), kind='unsupported')
    elif cgroup2.parse_partition(raw) != (partition, None):
        plan.append(('cpuset.cpus.partition', raw, partition))
    return plan


def check_partition(ctx, cg, partition):
    """The partition as read back; KnobError (kind rejected) when the kernel marked it invalid (the
    caller's set-back turns it back into a member)."""
    raw = cgroup2.read_opt(cg, 'cpuset.cpus.partition')
    kind, reason = cgroup2.parse_partition(raw)
    if partition != 'member' and (reason is not None or kind != partition):
        hint = ''
        if reason and 'arent' in reason and len(cgroup2.ancestors(cg)) > 1:
            hint = (" (parent %s is no partition root: systemd nests slices at each '-'; use a top-level slice)"
                    % cgroup2.ancestors(cg)[-1])
        raise knob.KnobError('cpuset.cpus.partition of %s reads %s: the kernel refused the %s partition%s'
                             % (cg, knob.show(raw), partition, hint), kind='rejected',
                             details={'cgroup': cg, 'partition': raw, 'reason': reason})
    return raw


def apply_runtime(ctx, cg, plan, setback=None):
    """Write the planned cpuset files in order; with `setback`, each write can be undone."""
    for name, before, after in plan:
        cgroup2.write(cg, name, after)
        if setback is not None and (before is not None or name == 'cpuset.cpus.partition'):
            undo = cgroup2.parse_partition(before or 'member')[0] if name == 'cpuset.cpus.partition' else before
            setback.add('%s/%s' % (cg, name), lambda n=name, v=undo: cgroup2.write(cg, n, v))
        ctx.entries.append({'setting': '%s/%s' % (cg, name), 'before': before, 'after': after})


def readback(ctx, cg, cpus, mems, partition, result):
    raw = check_partition(ctx, cg, partition)
    eff = cgroup2.read_opt(cg, 'cpuset.cpus.effective')
    effm = cgroup2.read_opt(cg, 'cpuset.mems.effective')
    result['cpus_effective'] = cpulib.normalize_cpulist(eff) if eff is not None else None
    result['mems_effective'] = cpulib.normalize_cpulist(effm) if effm is not None else None
    result['partition'] = cgroup2.parse_partition(raw)[0] if raw is not None else None
    if cpus is not None and eff is not None:
        e, w = set(cpulib.parse_cpulist(eff)), set(cpulib.parse_cpulist(cpus))
        if not e or not e <= w:
            raise knob.KnobError('%s/cpuset.cpus.effective reads %r after writing cpus %s: the parent cgroup or another '
                                 'partition leaves none of these CPUs to it' % (cg, eff.strip(), cpus), kind='not_effective')
        if e != w:
            ctx.module.warn('%s: only CPUs %s of %s are effective (the parent or a partition elsewhere holds the rest)'
                            % (cg, cpulib.format_cpulist(e), cpus))
    if mems is not None and effm is not None and cpulib.normalize_cpulist(effm) != mems:
        ctx.module.warn('%s: effective memory nodes are %s, not %s' % (cg, effm.strip(), mems))


def unit_status(ctx, unit, cg):
    info = ctx.show(unit, ['LoadState', 'ActiveState', 'ControlGroup'])
    rel = cgroup2.relative(cg)
    inside = (info.get('ControlGroup') or '').startswith(rel + '/')
    return info, inside


def write_files(ctx, files, check):
    """files: [('dropin', unit, name, content|None) | ('file', path, None, content|None)].
    Returns the changed paths; in check mode their diffs go to ctx.files, otherwise journal entries."""
    changed = []
    for kind, a, b, content in files:
        if kind == 'dropin':
            path = persist.dropin_path(a, b)
            ch, diff = persist.set_dropin(a, b, content, check)
        else:
            path = a
            ch, diff = persist.write_text(a, content, check) if content is not None else persist.remove_file(a, check)
        if not ch:
            continue
        changed.append(path)
        if check:
            ctx.files.append((path, diff))
        else:
            ctx.entries.append({'setting': 'file:%s' % path, 'before': diff['before'] or None,
                                'after': diff['after'] or None})
    return changed


def cgroup_setback(setback, made, enabled):
    """Undo for cgroups created (removed, deepest first) and +cpuset enabled (-cpuset, deepest first)."""
    for a in enabled:
        setback.add('%s/cgroup.subtree_control' % a, lambda a=a: cgroup2.exists(a) and cgroup2.write(
            a, 'cgroup.subtree_control', '-cpuset'))
    for d in made:
        setback.add(d, lambda d=d: cgroup2.exists(d) and cgroup2.rmdir(knob.host_path(d)))


def setback_error(error, failed):
    """The error that stopped a task, after its set-back: what could not be set back comes first."""
    if failed:
        return knob.KnobError('set-back incomplete (%s) after: %s' % (', '.join(failed), error.msg), kind=error.kind,
                              details=dict(error.details, setback_failed=failed))
    return knob.KnobError('%s; all set back' % error.msg, kind=error.kind,
                          details=error.details)


def node_kthreads_before(plan, partition, setback=None):
    """(kthreads, root cpus) before a change that creates, resizes or dissolves a partition; else None."""
    if not any(name == 'cpuset.cpus.partition' for name, _b, _a in plan) and not (plan and partition != 'member'):
        return None
    before = cgroup2.node_kthreads()
    if setback is not None:
        setback.add('kthread affinities', lambda: cgroup2.restore_affinities(before))
    return before, cgroup2.root_effective_cpus()


def reaffine(ctx, kthreads, result):
    """Per-node kthreads back on their node's CPUs after the kernel reset them (journalled)."""
    result['kthreads_reaffined'] = []
    if not kthreads:
        return
    done, failed = cgroup2.reaffine_node_kthreads(*kthreads)
    for comm, before, after in done:
        result['kthreads_reaffined'].append(comm)
        ctx.entries.append({'setting': 'affinity:%s' % comm, 'before': cpulib.format_cpulist(before),
                            'after': cpulib.format_cpulist(after)})
    for comm, err in failed:
        ctx.module.warn('could not put %s back on its NUMA node\'s CPUs: %s' % (comm, err))


def present(ctx, result, cg, slice_name, key):
    p = ctx.p
    cpus, mems, left = validate(ctx, cg)
    partition = p['partition']
    result['cpus'] = cpus
    result['housekeeping_cpus'] = left
    units = [sched.normalize_unit(u) for u in p['units']]
    statuses = {}
    for u in units:
        info, inside = unit_status(ctx, u, cg)
        if info.get('LoadState') == 'not-found':
            raise knob.KnobError('systemd unit %s not found (LoadState=not-found)' % u, kind='missing')
        statuses[u] = (info, inside)
    for pid in p['pids']:
        if not os.path.isdir(knob.host_path('/proc/%d' % pid)):
            raise knob.KnobError('pid %d does not exist' % pid, kind='missing')

    cur = read_current(cg)
    plan = plan_runtime(cur, cpus, mems, partition)
    result['created'] = cur is None

    # persistence files (slice mode): computed first, written after validation
    files = []
    if slice_name:
        files.append(('dropin', slice_name, DROPIN_NAME, slice_dropin(slice_name, cpus, mems, partition)))
        if partition != 'member':
            files.append(('file', TEMPLATE_PATH, None, TEMPLATE_TEXT))
            files.append(('dropin', part_unit(slice_name), PART_DROPIN_NAME, part_dropin(cg, partition)))
        else:
            files.append(('dropin', part_unit(slice_name), PART_DROPIN_NAME, None))
            if not other_part_instances(slice_name):
                files.append(('file', TEMPLATE_PATH, None, None))
        for u in units:
            files.append(('dropin', u, DROPIN_NAME, unit_dropin(slice_name, partition)))

    file_changes = write_files(ctx, files, check=True)

    pid_moves = [pid for pid in p['pids'] if cgroup2.pid_cgroup(pid) != cg]
    restart = [u for u in units if statuses[u][0].get('ActiveState') in ('active', 'activating', 'reloading')
               and not statuses[u][1]]
    result['units_moved'] = units
    result['pids_moved'] = pid_moves
    if p['restart_units']:
        result['units_restarted'] = restart
        result['units_restart_required'] = []
    else:
        result['units_restarted'] = []
        result['units_restart_required'] = restart
    result['restart_required'] = bool(result['units_restart_required'])
    ctx.runtime = plan
    slice_start = False
    if slice_name:
        slice_start = cur is None or ctx.show(slice_name, ['ActiveState']).get('ActiveState') != 'active'
    changed = bool(plan or file_changes or pid_moves or result['units_restarted'] or slice_start)

    if ctx.check:
        result['cpus_effective'] = cpus if (cur is None or plan) else cpulib.normalize_cpulist(
            cgroup2.read_opt(cg, 'cpuset.cpus.effective') or '')
        if mems is not None:
            result['mems_effective'] = mems
        elif cur is not None:
            result['mems_effective'] = cpulib.normalize_cpulist(cgroup2.read_opt(cg, 'cpuset.mems.effective') or '')
        result['partition'] = partition
        return changed

    setback = SetBack()
    try:
        if changed:
            setback.files(state_files(p['state_dir']))
            merge_original(key, p['state_dir'], {
                'created': cur is None,
                'cpus': cur['cpus'] if cur else None,
                'mems': cur['mems'] if cur else None,
                'partition': cur['partition'] if cur else None,
                'units': units,
                'pids': dict((str(pid), cgroup2.pid_cgroup(pid)) for pid in pid_moves),
            })
        if file_changes:
            if slice_name and partition == 'member' and persist.dropin_path(part_unit(slice_name), PART_DROPIN_NAME) \
                    in file_changes:
                stop_part_unit(ctx, slice_name)
            setback.add('daemon-reload', lambda: ctx.systemctl('daemon-reload'))
            setback.files(file_changes)
            write_files(ctx, files, check=False)
            ctx.systemctl('daemon-reload')
        if slice_start:
            # systemd starts the parent slices too ('-' nests): those not running before are stopped on set-back
            started = [os.path.basename(a) for a in cgroup2.ancestors(cg)[1:] if not cgroup2.exists(a)]
            started += [slice_name] if cur is None else []
            ctx.systemctl('start', slice_name)
            for unit in started:
                setback.add('start %s' % unit, lambda unit=unit: ctx.systemctl('stop', unit))
            ctx.entries.append({'setting': 'start:%s' % slice_name, 'before': None, 'after': 'started'})
        if not cgroup2.exists(cg):
            made, enabled = cgroup2.create(cg)
            cgroup_setback(setback, made, enabled)
            if not slice_name:
                merge_original(key, p['state_dir'], {'created_dirs': made})
            for d in made:
                ctx.entries.append({'setting': d, 'before': None, 'after': 'created'})
            result['created'] = True
            changed = True
        enabled = cgroup2.enable_cpuset(cg)
        if enabled:
            cgroup_setback(setback, [], enabled)
            changed = True
        if cur is None or not cur['has_cpuset']:
            plan = plan_runtime(read_current(cg), cpus, mems, partition)
            ctx.runtime = plan
        kthreads = node_kthreads_before(plan, partition, setback)
        apply_runtime(ctx, cg, plan, setback)
        readback(ctx, cg, cpus, mems, partition, result)
    except knob.KnobError as e:
        raise setback_error(e, setback.run())
    reaffine(ctx, kthreads, result)
    for pid in pid_moves:
        cgroup2.move_pid(cg, pid)
        ctx.entries.append({'setting': '%s/cgroup.procs' % cg, 'before': None, 'after': pid})
    for u in result['units_restarted']:
        ctx.systemctl('restart', u)
        ctx.entries.append({'setting': 'restart:%s' % u, 'before': None, 'after': 'restarted'})
    return changed or bool(plan)


def widen_instead_of_emptying(cg, plan):
    """The kernel refuses to empty cpuset.cpus or cpuset.mems (ENOSPC) while the cgroup or one below it
    has tasks (cpuset.c validate_change, 6.1 and 6.12 alike; the order of the writes does not matter).
    Such a cgroup gets every online CPU/node instead - no confinement left - and empties once its tasks
    are gone. Returns (plan, names of the files widened)."""
    if not any(after == '' for _n, _b, after in plan) or not cgroup2.populated(cg):
        return plan, []
    out, widened = [], []
    for name, before, after in plan:
        if after == '' and name in ('cpuset.cpus', 'cpuset.mems'):
            after = cpulib.format_cpulist(cpulib.online_cpus() if name == 'cpuset.cpus' else cpulib.online_nodes())
            widened.append(name)
            if after == before:
                continue
        out.append((name, before, after))
    return out, widened


def absent(ctx, result, cg, slice_name, key):
    p = ctx.p
    rec = statelib.get_original(KIND, key, p['state_dir'])
    orig = rec['original'] if rec else {}
    units = [sched.normalize_unit(u) for u in p['units']]
    for u in orig.get('units', []):
        if u not in units:
            units.append(u)
    files = []
    if slice_name:
        files.append(('dropin', slice_name, DROPIN_NAME, None))
        files.append(('dropin', part_unit(slice_name), PART_DROPIN_NAME, None))
        for u in units:
            files.append(('dropin', u, DROPIN_NAME, None))
        if not other_part_instances(slice_name):
            files.append(('file', TEMPLATE_PATH, None, None))

    cur = read_current(cg)
    plan = []
    if cur is not None and cur['has_cpuset']:
        if cur['partition_raw'] is not None and cgroup2.parse_partition(cur['partition_raw']) != ('member', None):
            plan.append(('cpuset.cpus.partition', cur['partition_raw'], 'member'))
        ours = rec or (slice_name and persist.read_text(persist.dropin_path(slice_name, DROPIN_NAME)) is not None)
        if ours and (slice_name or not orig.get('created')):
            # a slice without AllowedCPUs=/AllowedMemoryNodes= has empty cpuset.cpus/mems (inherit the parent's)
            for name, k in (('cpuset.cpus', 'cpus'), ('cpuset.mems', 'mems')):
                target = orig.get(k)
                if target is None and slice_name:
                    target = ''
                if target is not None and cur[k] != target:
                    plan.append((name, cur[k], target))
    in_cg = set(cgroup2.procs(cg)) if cur is not None else set()
    moves = []
    for pid_s, origin in sorted((orig.get('pids') or {}).items()):
        pid = int(pid_s)
        if pid in in_cg and origin and origin != cg and cgroup2.exists(origin):
            moves.append((pid, origin))
    restart = []
    for u in units:
        info, inside = unit_status(ctx, u, cg)
        if inside and info.get('ActiveState') in ('active', 'activating', 'reloading'):
            restart.append(u)
    if slice_name and cur is not None:
        # services in the slice that are not ours by record (e.g. a unit file's own Slice=) lose the
        # partition's CPUs all the same: named (and restarted with restart_units) like the recorded ones
        restart += [u for u, _c in cgroup2.running_units(cg) if u.endswith('.service') and u not in restart]
    remove = bool(not slice_name and cur is not None and orig.get('created') and not cgroup2.children(cg)
                  and not (in_cg - set(pid for pid, _o in moves)))
    if not slice_name and cur is not None and orig.get('created') and not remove:
        ctx.module.warn('%s was not removed: it still has processes or child cgroups' % cg)

    result['units_moved'] = units
    result['pids_moved'] = [pid for pid, _o in moves]
    result['units_restarted'] = restart if p['restart_units'] else []
    result['units_restart_required'] = [] if p['restart_units'] else restart
    result['restart_required'] = bool(result['units_restart_required'])
    result['removed'] = remove
    ctx.runtime = widen_instead_of_emptying(cg, plan)[0] if cur is not None else plan
    file_changes = write_files(ctx, files, check=True)
    changed = bool(ctx.runtime or file_changes or moves or remove or result['units_restarted'])

    if ctx.check:
        result['cpus_effective'] = cur and cgroup2.read_opt(cg, 'cpuset.cpus.effective')
        result['mems_effective'] = cur and cgroup2.read_opt(cg, 'cpuset.mems.effective')
        result['partition'] = 'member' if cur and cur['has_cpuset'] else None
        return changed

    # before the partition unit is stopped: its ExecStop dissolves the partition, and the kernel then moves the
    # per-node kthreads to every CPU, so a snapshot taken after it cannot tell where they belong
    kthreads = node_kthreads_before(plan, 'member')
    if file_changes:
        if slice_name and persist.dropin_path(part_unit(slice_name), PART_DROPIN_NAME) in file_changes:
            stop_part_unit(ctx, slice_name)
        write_files(ctx, files, check=False)
        ctx.systemctl('daemon-reload')
    # Processes leave first: the kernel refuses to empty cpuset.cpus (ENOSPC) of a cgroup that still has
    # tasks in it. Units are restarted after the dissolve, so that they start on the CPU set without the
    # partition (a service that pins its threads at start would otherwise keep the housekeeping CPUs).
    for pid, origin in moves:
        cgroup2.move_pid(origin, pid)
        ctx.entries.append({'setting': '%s/cgroup.procs' % origin, 'before': cg, 'after': pid})
    plan, widened = widen_instead_of_emptying(cg, plan)
    ctx.runtime = plan
    apply_runtime(ctx, cg, plan)
    reaffine(ctx, kthreads, result)
    for u in result['units_restarted']:
        ctx.systemctl('restart', u)
        ctx.entries.append({'setting': 'restart:%s' % u, 'before': None, 'after': 'restarted'})
    if widened and result['units_restarted'] and not cgroup2.populated(cg):
        # the restarted units left the slice (their Slice= drop-in is gone): now the kernel lets it empty
        now = read_current(cg)
        rest = [(name, now[name.split('.')[1]], '') for name in widened if now[name.split('.')[1]] != '']
        apply_runtime(ctx, cg, rest)
        ctx.runtime = plan + rest
        widened = []
    if result['units_restart_required'] and (plan or widened or file_changes):
        ctx.module.warn(knob.one_line(
            '%s: cpuset released (partition dissolved) while %s still run in it; threads that set their own affinity '
            'keep the old CPUs: restart the units to take the new CPU set%s (not restarted: restart_units=false)'
            % (cg, ', '.join(result['units_restart_required']),
               ' and leave the slice' if any(u in orig.get('units', []) for u in result['units_restart_required'])
               else '')))
    if widened:
        ctx.module.warn('%s still has tasks and the kernel refuses to empty %s while it has (ENOSPC): set to every '
                        'online CPU/node instead; restart its units out of it and run state=absent again to empty them'
                        % (cg, ' and '.join(widened)))
    if slice_name and rec and not widened and cgroup2.exists(cg) and not cgroup2.populated(cg):
        # no process runs in the slice any more and its settings are gone: stopping it removes its cgroup
        stop_if_active(ctx, slice_name)
    if remove:
        for d in [cg] + [x for x in reversed(orig.get('created_dirs') or []) if x != cg]:
            if d != cg and (not cgroup2.exists(d) or cgroup2.children(d) or cgroup2.procs(d)):
                break
            cgroup2.rmdir(knob.host_path(d))
            ctx.entries.append({'setting': d, 'before': 'exists', 'after': 'removed'})
    if cgroup2.exists(cg) and cur is not None and cur['has_cpuset']:
        raw = cgroup2.read_opt(cg, 'cpuset.cpus.partition')
        result['partition'] = cgroup2.parse_partition(raw)[0] if raw is not None else None
        eff = cgroup2.read_opt(cg, 'cpuset.cpus.effective')
        effm = cgroup2.read_opt(cg, 'cpuset.mems.effective')
        result['cpus_effective'] = cpulib.normalize_cpulist(eff) if eff is not None else None
        result['mems_effective'] = cpulib.normalize_cpulist(effm) if effm is not None else None
    if rec and not widened:
        statelib.forget_original(KIND, key, p['state_dir'])
    return changed


def path_cgroup(p):
    """(cgroup, originals key) of O(path). A path inside a unit cgroup is refused, except to undo a record
    an older release made there (state=absent)."""
    try:
        cg = cgroup2.normalize_path(p['path'])
    except cgroup2.CgroupError:
        if p['state'] != 'absent' or not isinstance(p['path'], str):
            raise
        rel = p['path'][len(cgroup2.ROOT):] if p['path'].startswith(cgroup2.ROOT + '/') else p['path']
        cg = cgroup2.ROOT + '/' + rel.strip('/')
        if statelib.get_original(KIND, 'path:%s' % cg, p['state_dir']) is None:
            raise
    return cg, 'path:%s' % cg


def run(module):
    p = module.params
    ctx = Ctx(module)
    cgroup2.require_v2()
    slice_name = p['slice']
    if slice_name:
        cg = cgroup2.slice_cgroup(slice_name)
        key = 'slice:%s' % slice_name
        if p['pids']:
            raise knob.KnobError('pids are only used with path (a slice gets services through units)', kind='invalid')
    else:
        cg, key = path_cgroup(p)
        if p['units'] or p['restart_units']:
            raise knob.KnobError('units and restart_units are only used with slice', kind='invalid')
    result = {'changed': False, 'cgroup': cg, 'cpus': None, 'cpus_effective': None, 'mems_effective': None,
              'partition': None, 'created': False, 'removed': False, 'units_moved': [], 'units_restarted': [],
              'kthreads_reaffined': [],
              'units_restart_required': [], 'restart_required': False, 'pids_moved': [], 'files': []}
    if slice_name:
        result['slice'] = slice_name
    if p['state'] == 'present':
        changed = present(ctx, result, cg, slice_name, key)
    else:
        changed = absent(ctx, result, cg, slice_name, key)
    statelib_entries = ctx.entries
    if not ctx.check and statelib_entries:
        statelib.journal(statelib_entries, MODULE, p['state_dir'], p['change_context'])
    result['changed'] = changed
    result['files'] = [path for path, _d in ctx.files]
    if module._diff:
        before_text = ''.join('%s/%s: %s\n' % (cg, n, '' if b is None else b) for n, b, _a in ctx.runtime)
        after_text = ''.join('%s/%s: %s\n' % (cg, n, a) for n, _b, a in ctx.runtime)
        diff = [{'before_header': cg, 'after_header': cg, 'before': before_text, 'after': after_text}]
        diff += [d for _p, d in ctx.files]
        result['diff'] = diff
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            slice=dict(type='str'),
            units=dict(type='list', elements='str', default=[]),
            restart_units=dict(type='bool', default=False),
            path=dict(type='str'),
            pids=dict(type='list', elements='int', default=[]),
            cpus=dict(type='str'),
            mems=dict(type='str'),
            partition=dict(type='str', choices=['member', 'root', 'isolated'], default='member'),
            housekeeping_min=dict(type='int', default=1),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            **statelib.STATE_ARGS
        ),
        mutually_exclusive=[('slice', 'path')],
        required_one_of=[('slice', 'path')],
        supports_check_mode=True,
    )
    knob.run_and_exit(module, lambda: run(module), io_errors=False)


if __name__ == '__main__':
    main()
