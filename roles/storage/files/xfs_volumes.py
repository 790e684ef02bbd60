# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""medai.llmhost storage role: decide, and only then format, XFS volumes - never destroying data by accident.

Runs on the managed host (python3 stdlib + util-linux + xfsprogs). Argument: base64 of a JSON document
    {"check": bool, "record": "/var/lib/medai-llmhost/storage-format.jsonl", "context": "...",
     "volumes": [{"device": "...", "mountpoint": "...", "mkfs_opts": "...", "force_format": false}, ...]}
Prints one JSON document: {"changed": bool, "refused": [msg, ...], "volumes": [{...}, ...]}; exit code 0
unless the script itself breaks (the role turns "refused" into a one-line failure).

Per volume, in this order:
  1. the device must exist and be a block device (stable paths such as /dev/disk/by-id/... are resolved);
  2. in use (mounted - itself or a partition -, active swap, held by dm/md/LVM, or O_EXCL open fails with EBUSY):
       - XFS mounted exactly at the requested mount point -> "use" (nothing to do);
       - anything else -> refused, force_format does NOT override this;
  3. XFS signature (and nothing else) -> "use": never reformatted, so the role is idempotent;
  4. any other signature (filesystem, partition table, LVM PV, RAID member, swap ...) or partitions ->
       refused unless force_format: true for that volume ("format-forced": wipefs --all, then mkfs.xfs -f);
  5. blank -> "format" (mkfs.xfs without -f: mkfs.xfs itself refuses existing signatures too).
Every volume is decided, and every mkfs.xfs command line is dry-run (mkfs.xfs -N: geometry check, writes
nothing - catches an agcount or log size that does not fit the device) BEFORE the first device is written.
If any volume is refused, nothing is formatted. Right before formatting, the device is checked again
(O_EXCL open + signatures) so a device mounted meanwhile is not touched. Every format is recorded (JSON line).
"""

from __future__ import absolute_import, division, print_function

import base64
import errno
import json
import os
import shlex
import stat
import subprocess
import sys
import time

FORBIDDEN_MKFS_TOKENS = ('-f', '-N', '--force')
DEFAULT_MKFS_OPTS = ''


def run(argv, check=False):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if check and p.returncode != 0:
        raise RuntimeError('%s failed (rc=%d): %s' % (' '.join(argv), p.returncode,
                                                      (p.stderr or p.stdout).strip().splitlines()[-1:]))
    return p


def dev_numbers(path):
    st = os.stat(path)
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def sys_block_dir(path):
    maj, mnr = dev_numbers(path)
    return os.path.realpath('/sys/dev/block/%d:%d' % (maj, mnr))


def children(sysdir):
    """Partitions of a whole disk: sysfs subdirectories that have a 'partition' file."""
    out = []
    try:
        for name in sorted(os.listdir(sysdir)):
            d = os.path.join(sysdir, name)
            if os.path.isfile(os.path.join(d, 'partition')):
                out.append(name)
    except OSError:
        pass
    return out


def holders(sysdir):
    try:
        return sorted(os.listdir(os.path.join(sysdir, 'holders')))
    except OSError:
        return []


def mounts_by_devnum():
    """{(major, minor): [mount point, ...]} from /proc/self/mountinfo."""
    out = {}
    with open('/proc/self/mountinfo') as f:
        for line in f:
            parts = line.split()
            maj, mnr = parts[2].split(':')
            mp = parts[4].encode().decode('unicode_escape')
            out.setdefault((int(maj), int(mnr)), []).append(mp)
    return out


def active_swaps():
    out = set()
    try:
        with open('/proc/swaps') as f:
            next(f)
            for line in f:
                p = line.split()
                if p and p[0].startswith('/dev/'):
                    out.add(os.path.realpath(p[0]))
    except (OSError, StopIteration):
        pass
    return out


def probe_signatures(dev):
    """List of signatures ({type, usage, uuid, label, offset}) found by a low-level probe (not the blkid cache)."""
    sigs = []
    p = run(['wipefs', '--no-act', '--json', dev])
    if p.returncode == 0 and p.stdout.strip():
        try:
            for s in json.loads(p.stdout).get('signatures', []):
                sigs.append({'type': s.get('type'), 'uuid': s.get('uuid'), 'label': s.get('label'),
                             'offset': s.get('offset'), 'usage': s.get('usage')})
        except ValueError:
            pass
    # blkid -p: 0 = found, 2 = nothing, 8 = ambivalent (several signatures)
    b = run(['blkid', '-p', '-o', 'export', dev])
    info = {}
    for line in b.stdout.splitlines():
        k, sep, v = line.partition('=')
        if sep:
            info[k] = v
    if b.returncode == 8 and not sigs:
        sigs.append({'type': 'ambivalent (several signatures, blkid -p exit 8)', 'uuid': None, 'label': None,
                     'offset': None, 'usage': None})
    if not sigs and b.returncode == 0:
        t = info.get('TYPE') or info.get('PTTYPE')
        if t:
            sigs.append({'type': t, 'uuid': info.get('UUID') or info.get('PTUUID'), 'label': info.get('LABEL'),
                         'offset': None, 'usage': info.get('USAGE') or ('partition table' if info.get('PTTYPE') else None)})
    elif b.returncode not in (0, 2, 8):
        raise RuntimeError('blkid -p %s failed (rc=%d): %s' % (dev, b.returncode, (b.stderr or '').strip()))
    # merge uuid from blkid when wipefs does not print it
    for s in sigs:
        if not s.get('uuid') and info.get('TYPE') == s.get('type'):
            s['uuid'] = info.get('UUID')
    return sigs, info


def excl_busy(dev):
    """True when the kernel holds the device exclusively (mounted, swap, dm/md/LVM member)."""
    try:
        fd = os.open(dev, os.O_RDONLY | os.O_EXCL)
    except OSError as e:
        if e.errno == errno.EBUSY:
            return True
        raise
    os.close(fd)
    return False


def describe(sigs):
    parts = []
    for s in sigs:
        t = s.get('type') or 'unknown'
        noun = 'filesystem'
        if s.get('usage') in ('partition table',) or t in ('gpt', 'dos', 'PMBR'):
            noun = 'partition table'
        elif t in ('LVM2_member', 'linux_raid_member', 'crypto_LUKS', 'swap', 'zfs_member', 'bcache'):
            noun = 'signature'
        d = '%s %s' % (t, noun)
        extra = []
        if s.get('uuid'):
            extra.append('UUID=%s' % s['uuid'])
        if s.get('label'):
            extra.append('LABEL=%s' % s['label'])
        if extra:
            d += ' (%s)' % ', '.join(extra)
        parts.append(d)
    if not parts:
        return 'nothing'
    text = ', '.join(parts)
    article = 'an' if text[:1].lower() in 'aeiou' else 'a'
    return '%s %s' % (article, text)


def probe(vol, mounts, swaps):
    dev_in = vol['device']
    r = {'device': dev_in, 'mountpoint': vol.get('mountpoint'), 'force_format': bool(vol.get('force_format'))}
    if not os.path.exists(dev_in):
        r['refused'] = 'device %s does not exist' % dev_in
        return r
    dev = os.path.realpath(dev_in)
    r['resolved'] = dev
    if not stat.S_ISBLK(os.stat(dev).st_mode):
        r['refused'] = '%s (%s) is not a block device' % (dev_in, dev)
        return r
    name = dev if dev == dev_in else '%s (%s)' % (dev_in, dev)
    sysdir = sys_block_dir(dev)
    parts = children(sysdir)
    sigs, info = probe_signatures(dev)
    r['signatures'] = sigs
    r['partitions'] = parts
    r['fstype'] = info.get('TYPE')
    # uuid = the XFS to mount: known only for an existing XFS ("use"); set after mkfs otherwise
    r['uuid'] = info.get('UUID') if info.get('TYPE') == 'xfs' else None
    # --- in use?
    used = []
    mps = mounts.get(dev_numbers(dev), [])
    if mps:
        used.append('mounted at %s' % ', '.join(mps))
    for p in parts:
        pdev = '/dev/' + p
        if os.path.exists(pdev):
            pm = mounts.get(dev_numbers(pdev), [])
            if pm:
                used.append('its partition %s is mounted at %s' % (pdev, ', '.join(pm)))
            if os.path.realpath(pdev) in swaps:
                used.append('its partition %s is active swap' % pdev)
        for h in holders(os.path.join(sysdir, p)):
            used.append('its partition /dev/%s is held by %s' % (p, h))
    if dev in swaps:
        used.append('it is active swap')
    for h in holders(sysdir):
        used.append('it is held by /dev/%s (device-mapper/RAID/LVM)' % h)
    if not used and excl_busy(dev):
        used.append('the kernel holds it open exclusively (EBUSY)')
    r['in_use'] = used
    r['mounted_at'] = mps
    only_xfs = len(sigs) == 1 and (sigs[0].get('type') == 'xfs') and not parts
    want_mp = vol.get('mountpoint')
    if used:
        if only_xfs and mps and all(os.path.realpath(m) == os.path.realpath(want_mp) for m in mps) \
                and len(used) == 1:
            r['action'] = 'use'
            return r
        if only_xfs and mps:
            r['refused'] = ('%s holds XFS but is mounted at %s, not at %s; unmount it or change the mountpoint'
                            % (name, ', '.join(mps), want_mp))
            return r
        r['refused'] = ('refusing to format %s: it is in use (%s) and holds %s; a mounted or in-use device is '
                        'never formatted, force_format does not override this' % (name, '; '.join(used), describe(sigs)))
        return r
    if only_xfs:
        r['action'] = 'use'
        return r
    if sigs or parts:
        what = describe(sigs)
        if parts:
            what += ' with partitions %s' % ', '.join('/dev/' + p for p in parts)
        r['found'] = what
        if not r['force_format']:
            r['refused'] = ('refusing to format %s: it holds %s; set force_format: true for this volume to '
                            'destroy it' % (name, what))
            return r
        r['action'] = 'format-forced'
        return r
    r['action'] = 'format'
    return r


def mkfs_opts(vol):
    o = vol.get('mkfs_opts')
    return shlex.split(DEFAULT_MKFS_OPTS if o is None else o)


def mkfs_argv(vol, r, dry_run):
    opts = mkfs_opts(vol)
    argv = ['mkfs.xfs']
    if dry_run:
        argv.append('-N')
    if r['action'] == 'format-forced':
        argv.append('-f')
    return argv + opts + [r['resolved']]


def record(path, entry):
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        os.makedirs(d, 0o755)
    with open(path, 'a') as f:
        f.write(json.dumps(entry, sort_keys=True) + '\n')


def main():
    global DEFAULT_MKFS_OPTS
    spec = json.loads(base64.b64decode(sys.argv[1]).decode())
    DEFAULT_MKFS_OPTS = spec.get('default_mkfs_opts') or ''
    check = bool(spec.get('check'))
    vols = spec.get('volumes') or []
    mounts = mounts_by_devnum()
    swaps = active_swaps()
    results, refused = [], []
    seen_dev, seen_mp = {}, {}
    for vol in vols:
        bad = [t for t in mkfs_opts(vol) if t in FORBIDDEN_MKFS_TOKENS]
        if bad:
            refused.append('%s: mkfs_opts must not contain %s (use force_format for overwriting)'
                           % (vol['device'], ' '.join(bad)))
        r = probe(vol, mounts, swaps)
        results.append(r)
        key = r.get('resolved', vol['device'])
        if key in seen_dev:
            refused.append('%s and %s are the same device %s' % (seen_dev[key], vol['device'], key))
        seen_dev[key] = vol['device']
        mp = os.path.normpath(vol.get('mountpoint') or '')
        if mp in seen_mp:
            refused.append('mountpoint %s is given for both %s and %s' % (mp, seen_mp[mp], vol['device']))
        seen_mp[mp] = vol['device']
        if r.get('refused'):
            refused.append(r['refused'])
    # Dry-run every mkfs.xfs before writing anything (option/size errors surface now, not half-way).
    if not refused:
        for vol, r in zip(vols, results):
            if r.get('action', '').startswith('format'):
                p = run(mkfs_argv(vol, r, dry_run=True))
                if p.returncode != 0:
                    msg = ' '.join((p.stderr or p.stdout).split('Usage:')[0].split())[:400]
                    refused.append('mkfs.xfs %s %s rejects these options for this device: %s'
                                   % (' '.join(mkfs_opts(vol)), r['resolved'], msg))
    changed = any(r.get('action', '').startswith('format') for r in results) and not refused
    if refused or check:
        print(json.dumps({'changed': changed, 'refused': refused, 'volumes': results, 'check': check}))
        return
    for vol, r in zip(vols, results):
        if not r.get('action', '').startswith('format'):
            continue
        # Re-check right before writing: nothing mounted or claimed it, and no signature appeared meanwhile.
        dev = r['resolved']
        sigs_now = probe_signatures(dev)[0]
        if excl_busy(dev) or (r['action'] == 'format' and sigs_now):
            refused.append('refusing to format %s: it changed since it was checked (now %s%s)' % (
                dev, 'in use, ' if excl_busy(dev) else '', describe(sigs_now)))
            break
        if r['action'] == 'format-forced':
            run(['wipefs', '--all', '--quiet', dev], check=True)
        p = run(mkfs_argv(vol, r, dry_run=False))
        if p.returncode != 0:
            detail = ' '.join((p.stderr or p.stdout).split())[:400]
            refused.append('mkfs.xfs failed on %s (rc=%d): %s' % (dev, p.returncode, detail))
            break
        run(['udevadm', 'settle', '--timeout=30'])
        u = run(['blkid', '-p', '-o', 'value', '-s', 'UUID', dev])
        r['uuid'] = u.stdout.strip() or None
        r['fstype'] = 'xfs'
        r['formatted'] = True
        record(spec.get('record') or '/var/lib/medai-llmhost/storage-format.jsonl', {
            'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'device': vol['device'], 'resolved': dev,
            'action': r['action'], 'destroyed': r.get('found'), 'uuid': r['uuid'],
            'mkfs': ' '.join(mkfs_argv(vol, r, dry_run=False)), 'context': spec.get('context')})
    changed = any(r.get('formatted') for r in results)
    print(json.dumps({'changed': changed, 'refused': refused, 'volumes': results, 'check': False}))


if __name__ == '__main__':
    try:
        main()
    except Exception as e:  # one clear line instead of a traceback
        print(json.dumps({'changed': False, 'refused': ['storage probe failed: %s: %s' % (type(e).__name__, e)],
                          'volumes': []}))
