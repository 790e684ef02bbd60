#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: zswap
short_description: Configure zswap (compressed cache for swap pages) with validated parameters and boot persistence
version_added: 0.1.0
description:
  - Sets the zswap parameters in C(/sys/module/zswap/parameters/) at runtime, reads them back, and persists them
    for boot with systemd-tmpfiles C(w) lines (default) or kernel command-line C(zswap.*=) parameters.
  - zswap's compressor parameter is C(compressor); C(comp_algorithm) is zram's, not zswap's.
  - O(compressor) is checked against the compression algorithms the kernel lists in C(/proc/crypto) (types
    C(compression), C(scomp), C(acomp)) or can load on demand (a C(crypto-<name>) alias in the running kernel's
    C(modules.alias), which the kernel loads when the compressor is written). A parameter the host's kernel does not have (for example
    O(shrinker_enabled) before 6.8) fails with "not available on this kernel (<release>)" when it is asked for.
  - The compressor and the zpool are written before C(enabled). All parameters are checked before the first
    write; if the kernel rejects one while writing, those already changed by the task are set back.
  - zswap only caches pages on their way to swap; without an active swap device or file it does nothing. A warning
    says so when zswap is (or is being) enabled and C(/proc/swaps) lists no swap.
  - Values before the first change are recorded in the originals store; O(state=absent) restores them and removes
    the collection's zswap persistence.
author:
  - medai.llmhost contributors (@medai-llmhost)
options:
  enabled:
    description: Turn zswap on or off (C(zswap.enabled)).
    type: bool
  compressor:
    description:
      - Compression algorithm, for example V(lz4), V(zstd), V(lzo-rle); must be listed in C(/proc/crypto) with a
        compression type, or be a loadable module (C(crypto-<name>) alias in C(/lib/modules/<release>/modules.alias)),
        which the kernel loads when the compressor is written.
    type: str
  max_pool_percent:
    description: Largest share of RAM, in percent (0 to 100), that the compressed pool may use.
    type: int
  zpool:
    description:
      - Allocator of the compressed pool. V(zsmalloc) is the default of current kernels; V(zbud) and V(z3fold) were
        removed in 6.15. If the kernel does not have the allocator, the write is rejected and the task fails (with
        anything already written set back).
    type: str
    choices: [zbud, z3fold, zsmalloc]
  accept_threshold_percent:
    description: After the pool was full, accept new pages again only once it shrank below this percentage
      (0 to 100) of O(max_pool_percent).
    type: int
  shrinker_enabled:
    description: Let the kernel shrink the pool under memory pressure by writing cold pages back to swap (6.8 and later).
    type: bool
  persist:
    description:
      - How the values given in this task survive a reboot.
      - V(tmpfiles) writes C(w /sys/module/zswap/parameters/<name> - - - - <value>) lines to
        C(/etc/tmpfiles.d/medai-llmhost.conf) (applied early at boot by C(systemd-tmpfiles-setup.service)); the same
        parameters are removed from the collection's kernel command-line drop-in, so only one source sets them.
      - V(cmdline) adds C(zswap.<name>=<value>) (bools as C(1)/C(0)) to C(/etc/default/grub.d/90-medai-llmhost.cfg),
        regenerates the boot configuration and reports RV(reboot_required); the same parameters are removed from the
        tmpfiles.d file. A compressor given on the command line must be built into the kernel (or be in the
        initramfs), otherwise zswap falls back to its default compressor at boot.
      - V(none) changes the running kernel only and leaves persistence files alone.
    type: str
    choices: [none, cmdline, tmpfiles]
    default: tmpfiles
  state:
    description:
      - V(present) applies the given parameters (parameters not given are left alone).
      - V(absent) restores every zswap parameter recorded before the collection first changed it (a warning says
        so when nothing was recorded), removes all collection-owned zswap lines from the tmpfiles.d file and the
        kernel command-line drop-in whatever O(persist) says, and forgets the records. Values given are ignored.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - medai.llmhost.state
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Nothing is written in check mode (no parameter, persistence, originals or journal file).
  diff_mode:
    support: full
    details: Shows the zswap parameters and the persistence files before and after.
  platform:
    support: full
    platforms: linux
notes:
  - Needs root on the managed host (C(become=true)) and a kernel built with C(CONFIG_ZSWAP).
seealso:
  - module: medai.llmhost.sysfs_param
  - name: Kernel documentation, zswap
    description: Documentation/admin-guide/mm/zswap.rst
    link: https://docs.kernel.org/admin-guide/mm/zswap.html
'''

EXAMPLES = r'''
- name: zswap in front of the NVMe swap file of the vLLM host (host RAM only; GPU KV cache is not affected)
  medai.llmhost.zswap:
    enabled: true
    compressor: lz4
    zpool: zsmalloc
    max_pool_percent: 20
    change_context: "vllm-baichuan-m2 memory tuning, ticket OPS-1234"
  become: true
  register: zswap_result

- name: Show whether zswap has anything to do
  ansible.builtin.debug:
    msg: "zswap {{ zswap_result.zswap.enabled }} with {{ zswap_result.zswap.compressor }}; swap active: {{ zswap_result.swap_active }}"

- name: Same settings from the kernel command line (takes effect after a reboot)
  medai.llmhost.zswap:
    enabled: true
    compressor: lz4
    max_pool_percent: 20
    persist: cmdline
  become: true

- name: Newer kernels only - let the kernel write cold compressed pages back under pressure
  medai.llmhost.zswap:
    shrinker_enabled: true
    accept_threshold_percent: 90
  become: true
  when: ansible_kernel is version('6.8', '>=')

- name: Roll zswap back to the host's own settings and drop its persistence
  medai.llmhost.zswap:
    state: absent
  become: true
'''

RETURN = r'''
zswap:
  description: Effective zswap parameters after the task (predicted in check mode); every file of
    C(/sys/module/zswap/parameters/), bools as bools and numbers as integers.
  returned: always
  type: dict
  sample:
    enabled: true
    compressor: lz4
    zpool: zsmalloc
    max_pool_percent: 20
    accept_threshold_percent: 90
    shrinker_enabled: false
params:
  description: One entry per parameter written or checked, in write order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Parameter name.
      type: str
      sample: compressor
    path:
      description: Its sysfs file.
      type: str
      sample: /sys/module/zswap/parameters/compressor
    before:
      description: Raw value before the task.
      type: str
      sample: lzo
    after:
      description: Raw value read back after the task.
      type: str
      sample: lz4
    changed:
      description: Whether it changed.
      type: bool
      sample: true
swap_active:
  description: Whether C(/proc/swaps) lists at least one active swap area.
  returned: always
  type: bool
  sample: true
reboot_required:
  description: True when O(persist=cmdline) leaves the running kernel command line different from the configured one.
  returned: always
  type: bool
  sample: false
persist_changed:
  description: Persistence files that were (or would be) changed.
  returned: always
  type: list
  elements: str
  sample: [/etc/tmpfiles.d/medai-llmhost.conf]
diff:
  description: zswap parameters (header C(zswap)) and changed persistence files, before and after.
  returned: always
  type: list
  elements: dict
  sample:
    - before_header: zswap
      after_header: zswap
      before: "compressor = lzo\nenabled = N\n"
      after: "compressor = lz4\nenabled = Y\n"
msg:
  description: One-line summary.
  returned: always
  type: str
  sample: "2 zswap parameter(s) changed; persistence: /etc/tmpfiles.d/medai-llmhost.conf"
'''

import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.plugins.module_utils import persist as mpersist
from ansible_collections.medai.llmhost.plugins.module_utils import state as mstate

MODULE = 'medai.llmhost.zswap'
KIND = 'knob'
BASE = '/sys/module/zswap/parameters'
# write order: compressor and zpool before enabled
ORDER = ('compressor', 'zpool', 'max_pool_percent', 'accept_threshold_percent', 'shrinker_enabled', 'enabled')
BOOLS = ('enabled', 'shrinker_enabled')
PERCENTS = ('max_pool_percent', 'accept_threshold_percent')
SINCE = {'shrinker_enabled': ' (added in 6.8)'}
COMPRESSION_TYPES = ('compression', 'scomp', 'acomp')
# a crypto algorithm or driver name (lzo-rle, zstd, lz4-generic, 842); CRYPTO_MAX_ALG_NAME is 128
COMPRESSOR_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z')


def fail(msg, kind='invalid'):
    raise knob.KnobError(msg, kind=kind)


def param_path(name):
    return '%s/%s' % (BASE, name)


def crypto_compressors():
    """Names (and driver names) of compression algorithms in /proc/crypto; None if it cannot be read."""
    try:
        text = knob.read_raw('/proc/crypto')
    except knob.KnobError:
        return None
    names, drivers = set(), set()
    for block in text.split('\n\n'):
        fields = {}
        for line in block.splitlines():
            k, sep, v = line.partition(':')
            if sep:
                fields[k.strip()] = v.strip()
        if fields.get('type') in COMPRESSION_TYPES and fields.get('name'):
            names.add(fields['name'])
            if fields.get('driver'):
                drivers.add(fields['driver'])
    return sorted(names), drivers


def crypto_module_available(name, release):
    """True when the kernel can load algorithm `name` on demand (a `crypto-<name>` module alias exists).

    /proc/crypto lists only loaded algorithms; writing the compressor makes the kernel request_module()
    `crypto-<name>`, so a modular lz4/zstd is usable although not listed yet."""
    try:
        text = knob.read_raw('/lib/modules/%s/modules.alias' % release)
    except knob.KnobError:
        return False
    want = 'alias crypto-%s ' % name
    return any(line.startswith(want) for line in text.splitlines())


def swap_active():
    try:
        text = knob.read_raw('/proc/swaps')
    except knob.KnobError:
        return False
    return any(line.strip() for line in text.splitlines()[1:])


def typed(value):
    if value in ('Y', 'N'):
        return value == 'Y'
    if value.isdigit():
        return int(value)
    return value


class Zswap(object):

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.check = module.check_mode
        self.warnings = []
        self.log = mstate.ChangeLog(KIND, MODULE, self.p['state_dir'], self.p['change_context'], self.check)

    def desired(self):
        out = []
        for name in ORDER:
            v = self.p[name]
            if v is None:
                continue
            if name in PERCENTS and not 0 <= v <= 100:
                fail('%s must be between 0 and 100, got %d' % (name, v))
            if name == 'compressor' and not COMPRESSOR_RE.match(v.strip()):
                fail('compressor %s is not a crypto algorithm name (letters, digits and _ . - only, at most 64)'
                     % knob.show(v))
            out.append((name, knob.kernel_bool(v) if name in BOOLS else str(v).strip()))
        return out

    def run(self):
        p = self.p
        present = p['state'] == 'present'
        rel = knob.kernel_release()
        if not os.path.isdir(knob.host_path(BASE)):
            fail('zswap is not available on this kernel (%s): %s is missing (kernel built without CONFIG_ZSWAP)'
                 % (rel, BASE), kind='missing')
        wanted = self.desired() if present else []
        for name, value in wanted:
            if not os.path.exists(knob.host_path(param_path(name))):
                fail('zswap parameter %s is not available on this kernel (%s)%s' % (name, rel, SINCE.get(name, '')),
                     kind='missing')
        for name, value in wanted:
            if name == 'compressor':
                avail = crypto_compressors()
                if avail is None:
                    self.warnings.append('/proc/crypto cannot be read: compressor %s not checked' % knob.show(value))
                elif value not in avail[0] and value not in avail[1] and not crypto_module_available(value, rel):
                    fail('compressor %s is not a compression algorithm in /proc/crypto on this kernel (%s); available: '
                         '%s (nor a loadable crypto-%s module in /lib/modules/%s/modules.alias)'
                         % (knob.show(value), rel, ', '.join(avail[0]), value, rel))

        if not present:
            wanted = []
            records = []
            for name in ORDER:
                rec = mstate.get_original(KIND, param_path(name), p['state_dir'])
                if rec is not None:
                    wanted.append((name, knob.normalize(rec['original'])))
                    records.append(param_path(name))
            if not records:
                self.warnings.append('no original zswap values recorded: the running values were left as they are')

        before = dict((n, knob.read_knob(param_path(n))['value']) for n in self.all_params())
        items = [(param_path(n), v) for n, v in wanted]

        # ---- persistence plan (validated before any write)
        tmpf = mpersist.tmpfiles_file()
        cmd_set, cmd_remove = {}, []
        if present and p['persist'] == 'tmpfiles':
            for name, value in wanted:
                tmpf.set(param_path(name), mpersist.tmpfiles_line(param_path(name), value))
                cmd_remove.append('zswap.' + name)
        elif present and p['persist'] == 'cmdline':
            for name, value in wanted:
                cmd_set['zswap.' + name] = {'Y': '1', 'N': '0'}.get(value, value) if name in BOOLS else value
                tmpf.remove(param_path(name))
        elif not present:
            for name in ORDER:
                tmpf.remove(param_path(name))
                cmd_remove.append('zswap.' + name)
        cmd_remove = [k for k in cmd_remove if k in mpersist.read_grub_dropin()]
        cmdline = {'changed': False, 'diff': None, 'reboot_required': False}
        if cmd_set or cmd_remove:
            cmdline = mpersist.set_cmdline(self.module, cmd_set, cmd_remove, check_mode=True)

        # ---- runtime (the check pass validates every knob; then the state dir, before the first write)
        predicted = knob.apply_knobs(items, check_mode=True)
        self.log.check()
        results = predicted
        if not self.check:
            # Originals are recorded once a change has happened (a refused or rolled-back change
            # leaves no record): after success, or for what a failed set-back left changed.
            changes = [(r['path'], r['before'], {'persist': p['persist']})
                       for r in predicted if r['changed']] if present else []
            results = self.log.apply(items, 'set' if present else 'restore', changes,
                                     explain=lambda e: self.explain(e, dict(wanted)))
        by_path = dict((r['path'], r) for r in results)
        after = dict(before)
        params = []
        for name, value in wanted:
            r = by_path[param_path(name)]
            after[name] = r['after']
            params.append({'name': name, 'path': r['path'], 'before': r['before'], 'after': r['after'],
                           'changed': r['changed']})

        # ---- persistence
        persist_changed = []
        diffs = [{'before_header': 'zswap', 'after_header': 'zswap',
                  'before': ''.join('%s = %s\n' % (n, before[n]) for n in sorted(before)),
                  'after': ''.join('%s = %s\n' % (n, after[n]) for n in sorted(after))}]
        changed, diff = tmpf.commit(check_mode=self.check)
        if changed:
            persist_changed.append(tmpf.path)
            diffs.append(diff)
            self.log.journal([{'setting': 'file:' + tmpf.path, 'action': 'update' if tmpf.render() else 'remove',
                               'before': tmpf.original, 'after': tmpf.render()}])
        if cmdline['changed']:
            if not self.check:
                cmdline = mpersist.set_cmdline(self.module, cmd_set, cmd_remove, check_mode=False)
                self.log.journal([{'setting': 'file:' + mpersist.GRUB_DROPIN, 'action': 'update',
                                   'before': cmdline['diff']['before'], 'after': cmdline['diff']['after'],
                                   'bootloader_tool': cmdline['tool']}])
            persist_changed.append(mpersist.GRUB_DROPIN)
            diffs.append(cmdline['diff'])
        if not self.check and not present:
            for path in records:
                mstate.forget_original(KIND, path, p['state_dir'])

        active = swap_active()
        if after.get('enabled') == 'Y' and not active:
            self.warnings.append('no swap is active (/proc/swaps lists none): zswap only compresses pages on their way '
                                 'to swap, so it does nothing until a swap partition or file is enabled')
        nchanged = sum(1 for x in params if x['changed'])
        msg = '%d zswap parameter(s) %s' % (nchanged, 'changed' if present else 'restored')
        if persist_changed:
            msg += '; persistence: %s' % ', '.join(persist_changed)
        if cmdline['reboot_required']:
            msg += '; reboot required for the kernel command line'
        return dict(changed=bool(nchanged or persist_changed), zswap=dict((n, typed(v)) for n, v in after.items()),
                    params=params, swap_active=active, reboot_required=bool(cmdline['reboot_required']),
                    persist_changed=persist_changed, diff=diffs, msg=msg)

    def all_params(self):
        return sorted(n for n in os.listdir(knob.host_path(BASE))
                      if os.path.isfile(knob.host_path(param_path(n))))

    def explain(self, e, wanted):
        name = os.path.basename(e.path or '')
        if name in ('compressor', 'zpool') and e.kind in ('missing', 'rejected'):
            value = knob.show(wanted.get(name))
            what = ('the kernel has no zpool allocator %s (not built, or its module cannot be loaded; zbud and z3fold '
                    'were removed in 6.15, zsmalloc remains)' % value) if name == 'zpool' else \
                ('the kernel could not load compressor %s for zswap' % value)
            return 'writing %s %s was rejected (%s): %s' % (name, value, knob.kernel_release(), what)
        return e.reason


def main():
    argument_spec = dict(
        enabled=dict(type='bool'),
        compressor=dict(type='str'),
        max_pool_percent=dict(type='int'),
        zpool=dict(type='str', choices=['zbud', 'z3fold', 'zsmalloc']),
        accept_threshold_percent=dict(type='int'),
        shrinker_enabled=dict(type='bool'),
        persist=dict(type='str', default='tmpfiles', choices=['none', 'cmdline', 'tmpfiles']),
        state=dict(type='str', default='present', choices=['present', 'absent']),
    )
    argument_spec.update(mstate.STATE_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    zs = Zswap(module)
    knob.run_and_exit(module, zs.run, zs.warnings)


if __name__ == '__main__':
    main()
