# -*- coding: utf-8 -*-
"""The CPU layout both the scheduling and the vllm role use (lab VM and a two-socket GPU server)."""
from __future__ import absolute_import, division, print_function

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.medai.llmhost.plugins.filter.cpu_layout import cpu_layout, cpulist_compact, cpulist_expand

# the lab VM: 4 CPUs on 2 nodes
LAB = {'numa': {'online_cpus': [0, 1, 2, 3], 'nodes': [{'id': 0, 'cpus': [0, 1]}, {'id': 1, 'cpus': [2, 3]}]}}
# a two-socket server: node 0 CPUs 0-15, node 1 CPUs 16-31, GPUs on node 0
SERVER = {'numa': {'online_cpus': list(range(32)),
                   'nodes': [{'id': 0, 'cpus': list(range(16))}, {'id': 1, 'cpus': list(range(16, 32))}]}}


def test_lab_defaults():
    lay = cpu_layout(LAB, nodes=[1])
    assert lay['housekeeping'] == [0, 1] and lay['cpus'] == [2, 3] and lay['cpulist'] == '2-3' and lay['mems'] == '1'
    assert lay['errors'] == []


def test_field_report_count_of_three_on_the_gpus_node():
    lay = cpu_layout(SERVER, nodes=[0], housekeeping_count=3)
    assert lay['housekeeping_cpulist'] == '0-2' and lay['cpulist'] == '3-15' and lay['mems'] == '0'


def test_explicit_housekeeping_and_cpus_as_strings_or_lists():
    assert cpu_layout(SERVER, nodes=[1], housekeeping_cpus='0-1 16')['cpulist'] == '17-31'
    assert cpu_layout(SERVER, nodes=[1], housekeeping_cpus=[0, 16])['housekeeping'] == [0, 16]
    assert cpu_layout(SERVER, nodes=[1], cpus='20-23')['cpus'] == [20, 21, 22, 23]


def test_host_without_numa_information_uses_the_online_cpus():
    lay = cpu_layout({'numa': {'online_cpus': [0, 1, 2, 3]}}, nodes=[])
    assert lay['cpus'] == [2, 3] and lay['mems'] == ''


def test_errors_are_one_bounded_line_and_nothing_is_expanded():
    lay = cpu_layout(LAB, nodes=[1], cpus='0-4294967295')
    assert lay['cpus'] == [] and len(lay['errors']) == 1
    assert 'cpus:' in lay['errors'][0] and 'out of range' in lay['errors'][0] and len(lay['errors'][0]) <= 300
    assert 'do not exist' in cpu_layout(LAB, nodes=[3])['errors'][0]
    assert 'not online' in cpu_layout(LAB, nodes=[1], cpus='2-5')['errors'][0]
    assert 'at least 1' in cpu_layout(LAB, nodes=[1], housekeeping_count=0)['errors'][0]


def test_no_node_selected_on_a_numa_host_gives_no_cpus():
    assert cpu_layout(LAB, nodes=[])['cpus'] == []


def test_cpulist_expand_and_compact():
    assert cpulist_expand('2-3, 6') == [2, 3, 6] and cpulist_expand([3, 2]) == [2, 3] and cpulist_expand('') == []
    assert cpulist_compact([6, 2, 3]) == '2-3,6' and cpulist_compact(None) == ''
    with pytest.raises(AnsibleFilterError, match='out of range'):
        cpulist_expand('0-4294967295')
