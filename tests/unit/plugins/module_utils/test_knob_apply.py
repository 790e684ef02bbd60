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
