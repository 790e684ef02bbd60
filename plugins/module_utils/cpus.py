# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel cpulist strings (``0-3,8,10-11``), as used by /sys/devices/system/cpu/online,
cpuset.cpus, cpuset.mems and systemd's CPUAffinity=/AllowedCPUs=.

Used by chrt_priority and cpuset. Parsing and formatting are facts.py's (:func:`facts.parse_cpulist`,
:func:`facts.format_cpulist`); this module keeps the stricter syntax these modules accept and the
KnobError messages they report.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.medai.llmhost.plugins.module_utils import facts
from ansible_collections.medai.llmhost.plugins.module_utils import knob

CPU_ONLINE = '/sys/devices/system/cpu/online'
CPU_ISOLATED = '/sys/devices/system/cpu/isolated'
NODE_ONLINE = '/sys/devices/system/node/online'


CPU_POSSIBLE = '/sys/devices/system/cpu/possible'
NODE_POSSIBLE = '/sys/devices/system/node/possible'
# hard caps when the host does not say: the kernel's largest NR_CPUS and MAX_NUMNODES (NODES_SHIFT 10)
MAX_CPUS = facts.MAX_CPUS
MAX_NODES = 1024


def parse_cpulist(text, what='cpulist', bound=None):
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]; '' -> []. Raises KnobError (one bounded line naming
    `what` and the value) on bad syntax or a number at or above `bound`.

    `bound` (exclusive) defaults to this host's possible CPUs (:func:`cpu_bound`, else 8192); every number is
    checked against it before a range is expanded ('0-4294967295' fails at once). White space is
    accepted as a separator (systemd style); the ``a-b:used/size`` stride form, ``N`` and ``(null)``,
    which facts.parse_cpulist also reads, are refused (rarely used; spell the CPUs out)."""
    if text is None:
        return []
    text = str(text)
    parts = [x for x in re.split(r'[\s,]+', text.strip()) if x]
    if not parts:
        return []
    if any(':' in x or x in ('N', '(null)') for x in parts):
        raise knob.KnobError('invalid %s %s: expected a list like 0-3,8,10-11 (no stride, N or (null))'
                             % (what, knob.show(text)), kind='invalid')
    if bound is None:
        bound = cpu_bound()
    try:
        return facts.parse_cpulist(','.join(parts), bound=bound)
    except facts.CpulistError as e:
        raise knob.KnobError('invalid %s %s: %s' % (what, knob.show(text), e.reason), kind='invalid')


def parse_nodelist(text, what='mems'):
    """A NUMA node list ('0-1'), bounded by this host's possible nodes (:func:`node_bound`)."""
    return parse_cpulist(text, what, bound=node_bound())


def _bound(possible, cap):
    """One more than the highest number in the host's `possible` list; `cap` when it cannot be read.
    (Not the online list: an offline CPU gets the clearer 'not online' message from the caller.)"""
    try:
        nums = facts.parse_cpulist(knob.read_raw(possible), bound=cap)
    except (knob.KnobError, ValueError):
        return cap
    return nums[-1] + 1 if nums else cap


def cpu_bound():
    return _bound(CPU_POSSIBLE, MAX_CPUS)


def node_bound():
    return _bound(NODE_POSSIBLE, MAX_NODES)


def format_cpulist(cpus):
    """[0, 1, 2, 3, 8, 10, 11] -> '0-3,8,10-11'; [] -> ''."""
    return facts.format_cpulist(cpus)


def normalize_cpulist(text, what='cpulist', bound=None):
    return format_cpulist(parse_cpulist(text, what, bound))


def _read_list(path):
    try:
        return parse_cpulist(knob.read_raw(path), path, bound=MAX_CPUS)
    except knob.KnobError as e:
        if e.kind == 'missing':
            return None
        raise


def online_cpus():
    """Online CPUs of the host, from /sys/devices/system/cpu/online."""
    cpus = _read_list(CPU_ONLINE)
    if cpus is None:
        raise knob.KnobError('%s does not exist: cannot tell which CPUs are online' % CPU_ONLINE, kind='missing')
    return cpus


def boot_isolated_cpus():
    """CPUs isolated with the isolcpus= boot parameter (empty when none or the file is missing)."""
    return _read_list(CPU_ISOLATED) or []


def online_nodes():
    """Online NUMA nodes; [0] on a kernel without NUMA (no /sys/devices/system/node)."""
    nodes = _read_list(NODE_ONLINE)
    if nodes is None:
        return [0] if not os.path.isdir(knob.host_path('/sys/devices/system/node')) else []
    return nodes
