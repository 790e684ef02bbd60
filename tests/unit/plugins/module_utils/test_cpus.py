# -*- coding: utf-8 -*-
"""cpus.py: cpulists as cpuset and chrt_priority accept them - bounds before expansion, one bounded line."""
from __future__ import absolute_import, division, print_function

import time

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import cpus
from ansible_collections.medai.llmhost.plugins.module_utils import knob


@pytest.mark.parametrize('text,expected', [
    ('0-3,8,10-11', [0, 1, 2, 3, 8, 10, 11]),
    ('2 3\t4', [2, 3, 4]),
    (' 1, 3 ', [1, 3]),
    ('', []),
    (None, []),
    ('8191', [8191]),
])
def test_parse(fake, text, expected):
    assert cpus.parse_cpulist(text, 'cpus') == expected


@pytest.mark.parametrize('text', ['0-4294967295', '4294967295', '0-8192', '1-' + '9' * 100000, '0-7,8192-8193'])
def test_bound_checked_before_expansion_hard_cap(fake, text):
    start = time.time()
    with pytest.raises(knob.KnobError) as e:
        cpus.parse_cpulist(text, 'cpus')
    assert time.time() - start < 0.5
    assert e.value.msg.startswith('invalid cpus ') and 'is out of range: at most 8191' in e.value.msg
    assert len(e.value.msg) <= 300 and '\n' not in e.value.msg


def test_bound_from_possible_cpus_and_nodes(fake):
    fake.file('/sys/devices/system/cpu/possible', '0-7')
    fake.file('/sys/devices/system/node/possible', '0-1')
    assert cpus.cpu_bound() == 8 and cpus.node_bound() == 2
    with pytest.raises(knob.KnobError, match=r"^invalid cpus '6-8': number '8' is out of range: at most 7$"):
        cpus.parse_cpulist('6-8', 'cpus')
    with pytest.raises(knob.KnobError, match=r"^invalid mems '0-2': number '2' is out of range: at most 1$"):
        cpus.parse_nodelist('0-2')
    assert cpus.parse_nodelist('1') == [1]


def test_hard_caps_without_possible(fake):
    assert (cpus.cpu_bound(), cpus.node_bound()) == (8192, 1024)
    fake.file('/sys/devices/system/cpu/possible', 'garbage')
    assert cpus.cpu_bound() == 8192


@pytest.mark.parametrize('text,start', [
    ('0-7:2/4', "invalid cpus '0-7:2/4': expected a list like 0-3,8,10-11"),
    ('N', "invalid cpus 'N'"),
    ('(null)', "invalid cpus '(null)'"),
    ('3-1', "invalid cpus '3-1': descending range 3-1"),
    ('a', "invalid cpus 'a': invalid number 'a'"),
    ('1,x\n' + 'y' * 10000, "invalid cpus '1,x\\nyyyyyyyyyyy"),
    ('１', "invalid cpus '１': invalid number '１'"),
])
def test_refusals_one_bounded_line(fake, text, start):
    with pytest.raises(knob.KnobError) as e:
        cpus.parse_cpulist(text, 'cpus')
    assert e.value.msg.startswith(start), e.value.msg
    assert e.value.kind == 'invalid' and len(e.value.msg) <= 300 and '\n' not in e.value.msg


def test_kernel_lists_read_with_hard_cap(fake):
    fake.file('/sys/devices/system/cpu/online', '0-3')
    fake.file('/sys/devices/system/cpu/isolated', '')
    assert cpus.online_cpus() == [0, 1, 2, 3] and cpus.boot_isolated_cpus() == []
    assert cpus.online_nodes() == [0]
