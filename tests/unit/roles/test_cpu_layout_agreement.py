# -*- coding: utf-8 -*-
"""The scheduling role's partition and the vllm role's CPUs are the same CPUs (one layout filter, same inputs)."""
from __future__ import absolute_import, division, print_function

import os

import pytest
import yaml

from ansible_collections.medai.llmhost.tests.unit.roles.role_vars import ROLES, render

REPO = os.path.dirname(ROLES)
with open(os.path.join(REPO, 'inventories', 'profiles', 'group_vars', 'profile_field_report.yml')) as f:
    FIELD_REPORT = yaml.safe_load(f)

SERVER = {'numa': {'online_cpus': list(range(32)),
                   'nodes': [{'id': 0, 'cpus': list(range(16))}, {'id': 1, 'cpus': list(range(16, 32))}]},
          'gpus': [{'index': 0, 'numa_node': 0}, {'index': 1, 'numa_node': 0}],
          'gpu_nodes': {'0': [0, 1]}}


@pytest.mark.parametrize('overrides', [
    {},                                                   # the profile: 3 housekeeping CPUs, GPUs on node 0
    {'scheduling_housekeeping_count': 2},
    {'scheduling_housekeeping_cpus': '0-1,16-17'},
])
def test_partition_and_vllm_cpus_agree(overrides):
    shared = {k: v for k, v in FIELD_REPORT.items() if k.startswith('scheduling_')}
    shared.update(overrides)
    facts = {'llmhost': SERVER}
    partition = render('scheduling', '__scheduling_part_cpulist', facts, **shared)
    vllm = render('vllm', '__vllm_cpus', facts, vllm_gpus=[0, 1], **shared)
    assert partition == vllm != ''
    if not overrides:
        assert vllm == '3-15'   # node 0 minus the profile's 3 housekeeping CPUs
