# -*- coding: utf-8 -*-
"""medai-llmhost-profile (roles/profile_schedule) on a fake tree: window choice, per-kernel sched
knob resolution, check mode, apply + journal + originals, status drift."""
from __future__ import absolute_import, division, print_function

import datetime
import json
import os
import runpy

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import state
from ansible_collections.medai.llmhost.tests.unit.fake_trees import layout_block, layout_vm_sysctls

SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'profile_schedule', 'templates',
                      'medai-llmhost-profile.j2')

CFG = {
    'default': 'offpeak',
    'windows': [{'profile': 'peak', 'start': '07:00', 'end': '19:00'},
                {'profile': 'night', 'start': '23:00', 'end': '02:00'}],
    'profiles': {
        'peak': {'knobs': {'/proc/sys/vm/swappiness': '10'},
                 'sched': {'min_slice_ns': 3000000, 'latency_ns': 24000000},
                 'block': {'nvme*n1': {'scheduler': 'mq-deadline', 'nr_requests': '512'}}},
        'offpeak': {'knobs': {'/proc/sys/vm/swappiness': '30'}},
        'night': {'knobs': {'/proc/sys/vm/swappiness': '40'}},
    },
}


@pytest.fixture
def switcher(fake):
    layout_vm_sysctls(fake)
    layout_block(fake)
    fake.file('/etc/medai-llmhost/profiles.json', json.dumps(CFG))
    mod = runpy.run_path(SCRIPT, run_name='switcher')
    return mod


def _at(h, m):
    return datetime.datetime(2026, 11, 25, h, m)


@pytest.mark.parametrize('h,m,expected', [(6, 59, 'offpeak'), (7, 0, 'peak'), (18, 59, 'peak'), (19, 0, 'offpeak'),
                                          (23, 30, 'night'), (1, 59, 'night'), (2, 0, 'offpeak')])
def test_window_choice(switcher, h, m, expected):
    assert switcher['profile_for'](CFG, _at(h, m)) == expected


def test_sched_resolution_eevdf(fake, switcher):
    fake.file('/sys/kernel/debug/sched/base_slice_ns', '3000000')
    targets = dict((s, (p, n)) for s, p, v, n in switcher['resolve_targets'](CFG['profiles']['peak']))
    assert targets['sched:min_slice_ns'][0] == '/sys/kernel/debug/sched/base_slice_ns'
    assert targets['sched:latency_ns'][0] is None and 'not available on this kernel' in targets['sched:latency_ns'][1]


def test_sched_resolution_procfs_5_10(fake, switcher):
    fake.file('/proc/sys/kernel/sched_min_granularity_ns', '3000000')
    fake.file('/proc/sys/kernel/sched_latency_ns', '24000000')
    targets = dict((s, p) for s, p, v, n in switcher['resolve_targets'](CFG['profiles']['peak']))
    assert targets['sched:min_slice_ns'] == '/proc/sys/kernel/sched_min_granularity_ns'
    assert targets['sched:latency_ns'] == '/proc/sys/kernel/sched_latency_ns'


def test_check_mode_writes_nothing(fake, switcher):
    out = switcher['apply']('peak', CFG, True, None)
    assert out['changed'] is True
    assert fake.writes == []
    assert not os.path.exists(fake.path('/var/lib/medai-llmhost'))


def test_apply_orders_scheduler_first_and_journals(fake, switcher):
    out = switcher['apply']('peak', CFG, False, 'timer')
    assert out['failed'] is False
    assert fake.read('/proc/sys/vm/swappiness') == '10\n'
    nvme_writes = [w for w in fake.writes if 'nvme0n1' in w[0]]
    assert [os.path.basename(w[0]) for w in nvme_writes] == ['scheduler', 'nr_requests']
    journal = state.read_journal()
    swappiness = [j for j in journal if j['setting'] == 'knob:/proc/sys/vm/swappiness']
    assert {'before': '60', 'after': '10', 'action': 'set', 'context': 'timer',
            'module': 'medai-llmhost-profile'}.items() <= swappiness[0].items()
    assert state.get_original('knob', '/proc/sys/vm/swappiness')['original'] == '60'
    # second apply: nothing to do, the first original is kept
    again = switcher['apply']('peak', CFG, False, 'timer')
    assert again['changed'] is False
    switcher['apply']('offpeak', CFG, False, 'timer')
    assert state.get_original('knob', '/proc/sys/vm/swappiness')['original'] == '60'


def test_originals_are_what_rollback_restores(fake, switcher):
    """Issue 13: the switcher records under the kind playbooks/rollback.yml restores ('knob'), keyed by the
    resolved path as the modules key it (a block device's queue under /sys/devices/.../<dev>/queue/)."""
    switcher['apply']('peak', CFG, False, 'timer')
    settings = state.load_originals()['settings']
    assert set(r['kind'] for r in settings.values()) == {'knob'}
    nvme_sched = [k for k in settings if k.endswith('/nvme0n1/queue/scheduler')]
    assert nvme_sched and nvme_sched[0].startswith('knob:/sys/devices/'), sorted(settings)
    assert settings[nvme_sched[0]]['original'] == 'none'
    assert settings[nvme_sched[0]]['extra'] == {'profile': 'peak'}


def test_refused_knob_leaves_no_record(fake, switcher):
    """A value the kernel refuses is set back and leaves neither an originals record nor a journal line for it."""
    cfg = {'default': 'x', 'windows': [], 'profiles': {'x': {'knobs': {'/proc/sys/vm/watermark_scale_factor': '99999'}}}}
    out = switcher['apply']('x', cfg, False, None)
    assert out['failed'] is True
    assert state.load_originals()['settings'] == {}
    assert not [j for j in state.read_journal() if j.get('action') == 'set']


def test_rejected_knob_reported_others_applied(fake, switcher):
    cfg = json.loads(json.dumps(CFG))
    cfg['profiles']['peak']['knobs']['/proc/sys/vm/watermark_scale_factor'] = '99999'
    out = switcher['apply']('peak', cfg, False, None)
    assert out['failed'] is True
    bad = [r for r in out['results'] if r.get('failed')]
    assert len(bad) == 1 and 'EINVAL' in bad[0]['msg']
    assert fake.read('/proc/sys/vm/swappiness') == '10\n'


def test_unknown_profile(switcher):
    with pytest.raises(SystemExit) as e:
        switcher['apply']('lunch', CFG, False, None)
    assert 'not defined' in str(e.value)


def test_debugfs_tunables_rebased_after_change(fake, switcher):
    """A debugfs tunable changed -> tunable_scaling rewritten (same value) after it, so a scheduling-domain
    rebuild does not bring the old value back; nothing debugfs changed -> no rewrite."""
    fake.file('/sys/kernel/debug/sched/base_slice_ns', '2100000')
    fake.file('/sys/kernel/debug/sched/tunable_scaling', '1')
    out = switcher['apply']('peak', CFG, False, 'timer')
    assert out['failed'] is False
    paths = [w[0] for w in fake.writes if '/sys/kernel/debug/sched/' in w[0]]
    assert [os.path.basename(p) for p in paths] == ['base_slice_ns', 'tunable_scaling'], fake.writes
    assert fake.read('/sys/kernel/debug/sched/tunable_scaling') == '1\n'
    del fake.writes[:]
    out = switcher['apply']('peak', CFG, False, 'timer')  # already applied: nothing changes, no rewrite
    assert not any('/sys/kernel/debug/sched/' in w[0] for w in fake.writes), fake.writes
