# -*- coding: utf-8 -*-
"""playbooks/rollback.yml: services left in a dissolved partition's slice (rollback_restart_units).

The playbook is read as YAML and its expressions rendered with Ansible's templar on the results the cpuset
module returns (the module's behaviour itself is tested in test_cpuset.py); nothing runs against a host."""
from __future__ import absolute_import, division, print_function

import os

import pytest
import yaml

PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'playbooks', 'rollback.yml')


@pytest.fixture(scope='module')
def play():
    with open(PLAYBOOK) as f:
        return yaml.safe_load(f)[0]


def task(play, name_start):
    found = [t for t in play['tasks'] if t['name'].startswith(name_start)]
    assert len(found) == 1, name_start
    return found[0]


def render(expr, **variables):
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    try:
        from ansible.template import trust_as_template
    except ImportError:  # ansible-core < 2.19
        def trust_as_template(x):
            return x
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expr))


def test_default_never_restarts(play):
    assert play['vars']['rollback_restart_units'] is False
    args = task(play, 'Dissolve CPU partitions')['medai.llmhost.cpuset']
    expr = args['restart_units']
    assert render(expr, rollback_restart_units=False, item='slice:llminference.slice') is False
    assert render(expr, rollback_restart_units='true', item='slice:llminference.slice') is True
    # path records take no restart_units (the module refuses it there)
    assert render(expr, rollback_restart_units=True, item='path:/sys/fs/cgroup/x', omit='__omit__') == '__omit__'


def test_services_left_in_the_slice_are_named(play):
    t = task(play, 'Tell which services still run in a dissolved partition')
    results = {'results': [
        {'item': 'slice:llminference.slice', 'units_restart_required': ['vllm.service', 'other.service']},
        {'item': 'slice:batch.slice', 'units_restart_required': ['vllm.service']},
        {'item': 'path:/sys/fs/cgroup/x', 'units_restart_required': []},
        {'item': 'slice:broken.slice', 'failed': True, 'msg': 'x'},
    ]}
    left = render(t['vars']['__rollback_left'], __rollback_cpuset_result=results)
    assert left == ['vllm.service', 'other.service']
    msg = render(t['ansible.builtin.debug']['msg'], __rollback_left=left, inventory_hostname='gpu01')
    assert msg.startswith('gpu01: vllm.service, other.service still run in the slice whose partition was dissolved')
    assert 'rollback_restart_units=true' in msg
    assert render(t['vars']['__rollback_left'], __rollback_cpuset_result={'results': [
        {'item': 'slice:llminference.slice', 'units_restart_required': []}]}) == []
    # the loop was skipped (no cpuset record): nothing to tell
    assert render(t['vars']['__rollback_left'], __rollback_cpuset_result={'skipped': True, 'results': []}) == []


def test_header_documents_the_variable(play):
    with open(PLAYBOOK) as f:
        header = f.read().split('\n- name:', 1)[0]
    assert 'rollback_restart_units (default false)' in header
    assert 'never restarts what serves patients unasked' in header.replace('\n# ', ' ')
