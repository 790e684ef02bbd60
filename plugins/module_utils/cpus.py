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

from ansible_collections.medai.llmhost.plugins.module_utils import facts
from ansible_collections.medai.llmhost.plugins.module_utils import knob

CPU_ONLINE = '/sys/devices/system/cpu/online'
CPU_ISOLATED = '/sys/devices/system/cpu/isolated'
NODE_ONLINE = '/sys/devices/system/node/online'


def parse_cpulist(text, what='cpulist'):
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]; '' -> []. Raises KnobError on bad syntax.

    Also accepts white space as a separator (systemd style); the ``a-b:used/size`` stride form,
    ``N`` and ``(null)``, which facts.parse_cpulist also reads, are refused (rarely used; spell the
    CPUs out)."""
    if text is None:
        return []
    text = str(text).strip()
    out = set()
    if not text:
        return []
    for part in text.replace(' ', ',').replace('\t', ',').replace('\n', ',').split(','):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition('-')
        try:
            if ':' in part or part == '(null)':
                raise ValueError('refused here: %s' % part)
            out.update(facts.parse_cpulist(part))
        except ValueError:
            # two plain numbers can only fail as a descending range
            if sep and lo.strip().isdecimal() and hi.strip().isdecimal():
                raise knob.KnobError('invalid %s %r: range %r is empty or negative' % (what, text, part), kind='invalid')
            raise knob.KnobError('invalid %s %r: expected a list like 0-3,8,10-11' % (what, text), kind='invalid')
    return sorted(out)


def format_cpulist(cpus):
    """[0, 1, 2, 3, 8, 10, 11] -> '0-3,8,10-11'; [] -> ''."""
    return facts.format_cpulist(cpus)


def normalize_cpulist(text, what='cpulist'):
    return format_cpulist(parse_cpulist(text, what))


def _read_list(path):
    try:
        return parse_cpulist(knob.read_raw(path))
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
