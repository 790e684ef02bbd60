# -*- coding: utf-8 -*-
"""knob.preflight / apply_knobs / kernel_bool / host_realpath."""
from __future__ import absolute_import, division, print_function

import os

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.tests.unit.fake_trees import layout_thp, layout_vm_sysctls

THP = '/sys/kernel/mm/transparent_hugepage/enabled'
SWAP = '/proc/sys/vm/swappiness'


@pytest.mark.parametrize('v,out', [(True, 'Y'), (False, 'N'), ('yes', 'Y'), ('0', 'N'), (1, 'Y'), ('Y', 'Y'),
                                   ('off', 'N'), ('madvise', None), (2, None)])
def test_kernel_bool(v, out):
    assert knob.kernel_bool(v) == out


def test_host_realpath(fake):
    os.makedirs(fake.path('/dev/disk/by-id'))
    os.symlink('../../nvme0n1', fake.path('/dev/disk/by-id/nvme-X'))
    assert knob.host_realpath('/dev/disk/by-id/nvme-X') == '/dev/nvme0n1'


def test_preflight(fake):
    layout_thp(fake)
    assert knob.preflight(THP, 'never')['changed'] is True
    assert knob.preflight(THP, 'madvise')['changed'] is False
    with pytest.raises(knob.KnobError) as e:
        knob.preflight('/sys/kernel/mm/transparent_hugepage/hpage_pmd_size', '1')
    assert e.value.kind == 'readonly'
    # read-only but already at the value: nothing to write, no error
    assert knob.preflight('/sys/kernel/mm/transparent_hugepage/hpage_pmd_size', '2097152')['changed'] is False


def test_apply_knobs_all_or_nothing(fake):
    layout_thp(fake)
    layout_vm_sysctls(fake)
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knobs([(THP, 'never'), (SWAP, '10'), ('/proc/sys/vm/nope', '1')])
    assert e.value.kind == 'missing' and fake.writes == []
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knobs([(THP, 'never'), (SWAP, '10'), ('/proc/sys/vm/watermark_scale_factor', '0')])
    assert e.value.kind == 'rejected'
    assert e.value.rolled_back == [THP + '=madvise', SWAP + '=60']
    assert [r['path'] for r in e.value.applied] == [THP, SWAP] and e.value.index == 2
    assert fake.read(THP) == 'always [madvise] never\n' and fake.read(SWAP) == '60\n'
    assert 'nothing left half-applied' in e.value.msg


def test_apply_knobs_rollback_failure_is_reported(fake):
    layout_thp(fake)
    layout_vm_sysctls(fake)
    fake.set_range('/proc/sys/vm/watermark_scale_factor', 1, 3000)

    def lock_thp(value):
        if value == 'madvise':
            raise OSError(16, 'Device or resource busy')
    fake.hooks[fake.path(THP)] = lock_thp
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knobs([(THP, 'never'), ('/proc/sys/vm/watermark_scale_factor', '0')])
    assert 'rollback FAILED for %s' % THP in e.value.msg


def test_apply_knobs_check_mode(fake):
    layout_thp(fake)
    res = knob.apply_knobs([(THP, 'never')], check_mode=True)
    assert res[0]['changed'] and res[0]['after'] == 'never' and fake.writes == []


# ---------------------------------------------------------------- names in messages (issue 14)

LONG = '/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda/queue/'


def test_messages_use_the_name_and_put_the_resolved_path_in_details(fake):
    fake.file(LONG + 'scheduler', '[none] mq-deadline')
    names = {LONG + 'scheduler': '/sys/block/sda/queue/scheduler'}
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knobs([(LONG + 'scheduler', 'x' * 10240)], check_mode=True, names=names)
    assert e.value.msg.startswith("/sys/block/sda/queue/scheduler does not offer 'xxx")
    assert '(10240 chars)' in e.value.msg and LONG not in e.value.msg and len(e.value.msg) <= 300
    assert e.value.details == {'resolved_path': LONG + 'scheduler'} and e.value.path == LONG + 'scheduler'


def test_long_rollback_list_is_counted_and_detailed(fake):
    items = []
    for i in range(6):
        path = LONG + 'attr_with_a_long_name_%d' % i
        fake.file(path, '1')
        items.append((path, '2'))
    fake.set_range(items[-1][0], 0, 1)
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knobs(items)
    assert e.value.msg.endswith('nothing left half-applied: restored 5 knob(s) (see details)')
    assert len(e.value.details['restored']) == 5 and e.value.reason.startswith("the kernel rejected '2' for")
    assert all(fake.read(p) == '1\n' for p, _v in items)


def test_rollback_message():
    assert knob.rollback_message('r', [], []) == 'r'
    assert knob.rollback_message('r', ['/a=1'], [], {'/a': 'A'}) == 'r; nothing left half-applied: restored A=1'
    assert knob.rollback_message('r', [], ['/a'], {'/a': 'A'}) == 'rollback FAILED for A: check the host; r'
