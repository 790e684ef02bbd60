# -*- coding: utf-8 -*-
"""Role inputs refused by the roles' first task (before any change), rendered as a play would."""
from __future__ import absolute_import, division, print_function

from ansible_collections.medai.llmhost.tests.unit.roles.role_vars import render


def test_scheduling_refuses_a_thread_regex_that_does_not_compile():
    errors = render('scheduling', '__scheduling_errors', {},
                    scheduling_units=[{'name': 'vllm', 'policy': 'rr', 'priority': 10, 'thread_regex': '(['}],
                    scheduling_rt_allowlist=['vllm.service'])
    assert [e for e in errors if e.startswith("scheduling_units[].thread_regex '(['") and 'regular expression' in e]


def test_vllm_refuses_a_port_out_of_range():
    problems = render('vllm', '__vllm_problems', {}, vllm_port=70000)
    assert [p for p in problems if p.startswith("vllm_port '70000'")]


def test_scheduling_names_a_partition_cpulist_out_of_range():
    facts = {'llmhost': {'numa': {'online_cpus': [0, 1, 2, 3], 'nodes': [{'id': 0, 'cpus': [0, 1]}, {'id': 1, 'cpus': [2, 3]}]},
                         'cgroup': {'version': 2, 'controllers': ['cpuset']}}}
    errors = render('scheduling', '__scheduling_layout_errors', facts, scheduling_numa_node=1,
                    scheduling_partition={'enabled': True, 'cpus': '0-4294967295'})
    assert [e for e in errors if e.startswith('scheduling_partition.cpus:') and '4294967295' in e]
