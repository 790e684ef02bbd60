# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.tests.unit.fake_trees import layout_thp, layout_vm_sysctls, layout_block

THP = '/sys/kernel/mm/transparent_hugepage/enabled'


@pytest.mark.parametrize('text,value,choices', [
    ('always [madvise] never\n', 'madvise', ['always', 'madvise', 'never']),
    ('[none] mq-deadline kyber bfq', 'none', ['none', 'mq-deadline', 'kyber', 'bfq']),
    ('always defer defer+madvise [madvise] never', 'madvise', ['always', 'defer', 'defer+madvise', 'madvise', 'never']),
    ('60\n', '60', None),
    ('Y', 'Y', None),
])
def test_parse_knob(text, value, choices):
    assert knob.parse_knob(text) == (value, choices)


def test_apply_changes_and_reads_back(fake):
    layout_thp(fake)
    res = knob.apply_knob(THP, 'never')
    assert res == {'path': THP, 'before': 'madvise', 'after': 'never', 'changed': True,
                   'choices': ['always', 'madvise', 'never']}
    assert fake.read(THP) == 'always madvise [never]\n'
    again = knob.apply_knob(THP, 'never')
    assert again['changed'] is False


def test_check_mode_writes_nothing(fake):
    layout_thp(fake)
    res = knob.apply_knob(THP, 'never', check_mode=True)
    assert res['changed'] and res['after'] == 'never' and res['before'] == 'madvise'
    assert fake.read(THP) == 'always [madvise] never\n'
    assert fake.writes == []


def test_choice_not_offered(fake):
    layout_thp(fake)
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knob(THP, 'sometimes')
    assert 'offered: always, madvise, never' in e.value.msg
    assert fake.writes == []


def test_einval_is_clear(fake):
    layout_vm_sysctls(fake)
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knob('/proc/sys/vm/swappiness', '500')
    assert e.value.kind == 'rejected' and 'EINVAL' in e.value.msg
    assert fake.read('/proc/sys/vm/swappiness') == '60\n'


def test_readonly(fake):
    layout_thp(fake)
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knob('/sys/kernel/mm/transparent_hugepage/hpage_pmd_size', '4096')
    assert e.value.kind == 'readonly'


def test_not_effective(fake):
    layout_vm_sysctls(fake)
    fake.set_sticky('/proc/sys/vm/min_free_kbytes', '67584')
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knob('/proc/sys/vm/min_free_kbytes', '131072')
    assert e.value.kind == 'not_effective' and "reports '67584'" in e.value.msg


def test_missing_known_replacement(fake):
    layout_vm_sysctls(fake)
    with pytest.raises(knob.KnobError) as e:
        knob.read_knob('/sys/module/zswap/parameters/comp_algorithm')
    assert e.value.kind == 'missing'
    assert 'compressor' in e.value.msg and '6.1.0-28-amd64' in e.value.msg


@pytest.mark.parametrize('path', ['/etc/passwd', '/sys/../etc/passwd', 'sys/kernel', '/proc/1/environ', '/system'])
def test_outside_roots_refused(fake, path):
    with pytest.raises(knob.KnobError) as e:
        knob.resolve_knob_path(path)
    assert e.value.kind == 'invalid'


def test_symlink_escape_refused(fake):
    fake.file('/etc/shadow', 'secret')
    fake.symlink('/etc/shadow', '/sys/kernel/evil')
    with pytest.raises(knob.KnobError) as e:
        knob.resolve_knob_path('/sys/kernel/evil')
    assert "resolves to '/etc/shadow'" in e.value.msg


def test_symlink_inside_sys_resolves(fake):
    devs = layout_block(fake)
    assert knob.resolve_knob_path('/sys/block/vdb/queue/scheduler') == devs['vdb'][0] + '/queue/scheduler'


def test_sysctl_names():
    assert knob.sysctl_name('/proc/sys/vm/swappiness') == 'vm.swappiness'
    assert knob.sysctl_path('vm.swappiness') == '/proc/sys/vm/swappiness'
    assert knob.sysctl_name('/proc/sys/net/ipv4/conf/eth0.100/rp_filter') == 'net.ipv4.conf.eth0/100.rp_filter'
    assert knob.sysctl_path('net.ipv4.conf.eth0/100.rp_filter') == '/proc/sys/net/ipv4/conf/eth0.100/rp_filter'
    assert knob.sysctl_name('/sys/kernel/mm/x') is None
