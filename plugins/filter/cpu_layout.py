# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CPU layout of an inference host, computed once from llmhost_facts: the scheduling role (partition) and
the vllm role (CPUAffinity, numactl, container cpuset) both take it from here, so they cannot disagree about
which CPUs are housekeeping."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: cpu_layout
short_description: CPU layout of an inference host (housekeeping CPUs, the inference CPUs, memory nodes)
version_added: 0.1.0
description:
  - Input is C(ansible_facts.llmhost) (M(medai.llmhost.llmhost_facts), subset C(numa)).
  - Housekeeping CPUs are O(housekeeping_cpus) when given, else the first O(housekeeping_count) online CPUs.
  - The inference CPUs are O(cpus) when given, else the CPUs of O(nodes) minus the housekeeping CPUs (all online CPUs
    on a host without NUMA information; none when O(nodes) is empty on a NUMA host).
  - C(cpulist_expand) (C(2-3,6) to C([2, 3, 6]), bounded like the kernel) and C(cpulist_compact) (the reverse) are
    the same parsing for other lists of the roles.
  - Returns C(online), C(nodes), C(node_cpus), C(housekeeping), C(cpus) (lists of ints), C(cpulist) and
    C(housekeeping_cpulist) (kernel format, C(2-3,6)), C(mems) (C(1) or C(0,1)) and C(errors) (one bounded line each;
    a list that cannot be parsed leaves C(cpus) empty).
author:
  - medai.llmhost contributors (@medai-llmhost)
positional: _input
options:
  _input:
    description: C(ansible_facts.llmhost).
    type: dict
    required: true
  nodes:
    description: NUMA node ids the inference service follows (the GPUs' nodes, or an override).
    type: list
    elements: int
    default: []
  housekeeping_cpus:
    description: Explicit housekeeping CPUs (cpulist string or list of ints); empty or null to use O(housekeeping_count).
    type: raw
  housekeeping_count:
    description: How many of the first online CPUs are housekeeping when O(housekeeping_cpus) is empty.
    type: int
    default: 2
  cpus:
    description: Explicit inference CPUs (cpulist string or list of ints); empty or null for the computed ones.
    type: raw
  cpus_var:
    description: How errors name O(cpus) (the caller's variable).
    type: str
    default: cpus
  housekeeping_var:
    description: How errors name O(housekeeping_cpus) (the caller's variable).
    type: str
    default: housekeeping CPUs
'''

EXAMPLES = r'''
- name: The layout both roles use
  ansible.builtin.set_fact:
    layout: >-
      {{ ansible_facts.llmhost | medai.llmhost.cpu_layout(nodes=[1], housekeeping_count=3) }}
'''

RETURN = r'''
_value:
  description: The layout (see the description).
  type: dict
'''

import re

from ansible.errors import AnsibleFilterError
from ansible_collections.medai.llmhost.plugins.module_utils import facts as mfacts


def _given(value):
    """False for the 'not set' values of a cpulist variable (null, '' or [])."""
    return value not in (None, '', [])


def _cpus(value, what, errors):
    """A cpulist string or a list of ints -> sorted list of ints; [] (and an error) when it cannot be read."""
    if not _given(value):
        return []
    if isinstance(value, (list, tuple)):
        text = ','.join(str(v) for v in value)
    else:
        # white space separates too (systemd style): '2-3, 6' and '2-3 6' are '2-3,6'
        text = ','.join(p for p in re.split(r'[\s,]+', str(value).strip()) if p)
    try:
        return mfacts.parse_cpulist(text)
    except ValueError as e:
        errors.append('%s: %s' % (what, e))
        return []


def cpu_layout(llmhost, nodes=None, housekeeping_cpus=None, housekeeping_count=2, cpus=None,
               cpus_var='cpus', housekeeping_var='housekeeping CPUs'):
    numa = (llmhost or {}).get('numa') or {}
    online = sorted(int(c) for c in numa.get('online_cpus') or [])
    node_map = dict((int(n['id']), sorted(int(c) for c in n.get('cpus') or [])) for n in numa.get('nodes') or [])
    nodes = sorted(set(int(n) for n in nodes or []))
    errors = []
    missing = [n for n in nodes if node_map and n not in node_map]
    if missing:
        errors.append('NUMA node(s) %s do not exist (nodes: %s)'
                      % (mfacts.format_cpulist(missing), mfacts.format_cpulist(node_map)))
    if node_map:  # no node selected on a NUMA host: no CPUs (the caller reports why)
        node_cpus = sorted(set(c for n in nodes for c in node_map.get(n, [])))
    else:
        node_cpus = list(online)
    if _given(housekeeping_cpus):
        housekeeping = _cpus(housekeeping_cpus, housekeeping_var, errors)
    else:
        count = int(housekeeping_count)
        if count < 1:
            errors.append('housekeeping_count must be at least 1 (the system needs a CPU), got %d' % count)
        housekeeping = online[:max(count, 0)]
    if _given(cpus):
        chosen = _cpus(cpus, cpus_var, errors)
    else:
        chosen = [c for c in node_cpus if c not in housekeeping]
    offline = [c for c in housekeeping + chosen if online and c not in online]
    if offline:
        errors.append('CPU(s) %s are not online (online: %s)'
                      % (mfacts.format_cpulist(offline), mfacts.format_cpulist(online)))
    return {'online': online, 'nodes': nodes, 'node_cpus': node_cpus, 'housekeeping': housekeeping,
            'cpus': chosen, 'cpulist': mfacts.format_cpulist(chosen),
            'housekeeping_cpulist': mfacts.format_cpulist(housekeeping),
            'mems': ','.join(str(n) for n in nodes), 'errors': errors}


def cpulist_expand(value):
    errors = []
    cpus = _cpus(value, 'cpulist', errors)
    if errors:
        raise AnsibleFilterError(errors[0])
    return cpus


def cpulist_compact(cpus):
    return mfacts.format_cpulist(cpus or [])


class FilterModule(object):
    def filters(self):
        return {'cpu_layout': cpu_layout, 'cpulist_expand': cpulist_expand, 'cpulist_compact': cpulist_compact}
