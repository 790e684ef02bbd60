# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""testinfra checks of the memory_storage scenario (run before and after the reboot).

One ssh round trip: a probe script on the guest prints every effective value as JSON (THP, zswap, swap,
sysctls read from /proc/sys, the data disk's queue attributes, the XFS mount and fstab, the cache layout);
expectations come from ../vars/scenario.yml. LAB_PHASE is "before-reboot" or "after-reboot" (set by _shared/verify.yml).
"""
import json
import os
import re

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, '..', 'vars', 'scenario.yml')) as f:
    VARS = yaml.safe_load(f)

PHASE = os.environ.get('LAB_PHASE', 'verify')
DISK = VARS['scn_data_disk']
VOL = VARS['scn_xfs_volumes'][0]
USER = VARS['scn_service_user']
CACHE = VARS['storage_model_cache_dir']

PROBE = r'''
import json, os, subprocess

def read(p):
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError as e:
        return 'ERROR %s' % e

def sh(cmd):
    return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True).stdout.strip()

dev = os.path.realpath(DISK)
name = os.path.basename(dev)
thp = '/sys/kernel/mm/transparent_hugepage/'
zs = '/sys/module/zswap/parameters/'
out = {
    'dev': dev,
    'thp_enabled': read(thp + 'enabled'), 'thp_defrag': read(thp + 'defrag'),
    'zswap': {p: read(zs + p) for p in os.listdir(zs)},
    'swaps': [l.split() for l in read('/proc/swaps').splitlines()[1:]],
    'sysctl': {k: read('/proc/sys/' + k.replace('.', '/')) for k in
               ['vm.min_free_kbytes', 'vm.watermark_scale_factor', 'vm.watermark_boost_factor', 'vm.swappiness',
                'kernel.numa_balancing']},
    'queue': {a: read('/sys/block/%s/queue/%s' % (name, a)) for a in ['scheduler', 'nr_requests', 'read_ahead_kb']},
    'findmnt': json.loads(sh('findmnt -J -o TARGET,SOURCE,FSTYPE,OPTIONS %s' % MP) or '{}'),
    'uuid': sh('blkid -p -s UUID -o value %s' % dev),
    'fstype': sh('blkid -p -s TYPE -o value %s' % dev),
    'fstab': read('/etc/fstab').splitlines(),
    'dirs': {d: sh("stat -c '%U %G %a' " + d) for d in DIRS},
    'boot_id': read('/proc/sys/kernel/random/boot_id'),
    'vmstat': {l.split()[0]: int(l.split()[1]) for l in read('/proc/vmstat').splitlines()
               if l.startswith(('thp_fault', 'zswp', 'pswp'))},
    'record': read('/var/lib/medai-llmhost/storage-format.jsonl').splitlines(),
}
print(json.dumps(out))
'''


def bracketed(text):
    m = re.search(r'\[([^\]]+)\]', text)
    return m.group(1) if m else None


@pytest.fixture(scope='module')
def state(host):
    dirs = [VOL['mountpoint'], CACHE] + ['%s/%s' % (CACHE, d) for d in ['huggingface', 'vllm']]
    script = 'DISK = %r\nMP = %r\nDIRS = %r\n' % (DISK, VOL['mountpoint'], dirs) + PROBE
    out = host.check_output("python3 -c %s" % _quote(script))
    return json.loads(out)


def _quote(s):
    return "'" + s.replace("'", "'\"'\"'") + "'"


def test_thp_policy(state):
    assert bracketed(state['thp_enabled']) == VARS['memory_thp_enabled']
    assert bracketed(state['thp_defrag']) == VARS['memory_thp_defrag']


def test_zswap_parameters(state):
    z = state['zswap']
    assert z['enabled'] == ('Y' if VARS['memory_zswap_enabled'] else 'N')
    assert z['compressor'] == VARS['memory_zswap_compressor']
    assert int(z['max_pool_percent']) == VARS['memory_zswap_max_pool_percent']
    assert 'comp_algorithm' not in z  # the report's parameter does not exist for zswap


def test_swap_file_active_for_zswap(state):
    swaps = {s[0]: s for s in state['swaps']}
    path = VARS['memory_swapfile_path']
    assert path in swaps, 'swap file not active: %s' % state['swaps']
    assert swaps[path][1] == 'file'
    size_kib = VARS['memory_swapfile_size_mb'] * 1024
    assert size_kib - 8 <= int(swaps[path][2]) <= size_kib  # the header page is not counted
    assert any(re.match(r'^%s\s+none\s+swap\s+sw\b' % re.escape(path), l) for l in state['fstab'])


def test_sysctls_effective(state):
    s = state['sysctl']
    assert int(s['vm.watermark_scale_factor']) == VARS['memory_watermark_scale_factor']
    assert int(s['vm.watermark_boost_factor']) == VARS['memory_watermark_boost_factor']
    assert int(s['vm.min_free_kbytes']) == VARS['memory_min_free_kbytes']
    assert int(s['vm.swappiness']) == VARS['memory_swappiness']
    assert int(s['kernel.numa_balancing']) == (1 if VARS['memory_numa_balancing'] else 0)


def test_data_disk_queue(state):
    want = VARS['storage_devices'][0]
    assert state['dev'] == '/dev/' + VARS['scn_data_kernel_name']
    assert bracketed(state['queue']['scheduler']) == want['scheduler']
    assert int(state['queue']['nr_requests']) == want['nr_requests']
    assert int(state['queue']['read_ahead_kb']) == want['read_ahead_kb']


def test_xfs_mounted_with_options_by_uuid(state):
    fs = state['findmnt'].get('filesystems') or []
    assert len(fs) == 1, 'not mounted: %s' % state['findmnt']
    m = fs[0]
    assert m['source'] == state['dev'] and m['fstype'] == 'xfs'
    opts = m['options'].split(',')
    for o in ('noatime', 'logbufs=8', 'logbsize=256k'):
        assert o in opts, '%s missing from %s' % (o, m['options'])
    assert state['fstype'] == 'xfs' and state['uuid']
    line = 'UUID=%s %s xfs %s 0 0' % (state['uuid'], VOL['mountpoint'],
                                      VOL.get('mount_opts', 'noatime,logbufs=8,logbsize=256k'))
    assert line in state['fstab'], state['fstab']


def test_formatted_once(state):
    # the blank data disk was formatted exactly once (converge); idempotence, the safety test and the reboot did not
    recs = [json.loads(l) for l in state['record'] if l.strip()]
    mine = [r for r in recs if r['resolved'] == state['dev']]
    assert len(mine) == 1 and mine[0]['action'] == 'format' and mine[0]['uuid'] == state['uuid'], recs
    assert not [r for r in recs if r['resolved'] != state['dev']], 'something else was formatted: %s' % recs


def test_model_cache_ownership(state):
    d = state['dirs']
    assert d[VOL['mountpoint']] == '%s %s %s' % (USER, USER, VOL['mode'].lstrip('0'))
    for path in [CACHE, CACHE + '/huggingface', CACHE + '/vllm']:
        assert d[path] == '%s %s 755' % (USER, USER), (path, d[path])


def test_report_measurements(state):
    # not an assertion: the numbers for the closing note, in the test log
    print('PHASE=%s vmstat=%s queue=%s' % (PHASE, state['vmstat'], state['queue']))
