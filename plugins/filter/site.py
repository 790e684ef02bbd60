# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the site playbooks (site.yml, audit.yml): which areas a host applies."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: site
short_description: Helpers of the site playbooks (area selection)
version_added: 0.1.0
description:
  - C(area_selection_error) - the one-line reason why a host's C(llmhost_apply) selects nothing or names an area
    that does not exist, or an empty string when the selection is usable. Input is C(llmhost_apply); the
    positional argument is C(llmhost_apply_nothing) (a host left out on purpose is not an error).
author:
  - medai.llmhost contributors (@medai-llmhost)
positional: _input, nothing_on_purpose
options:
  _input:
    description: The host's C(llmhost_apply) dictionary (area name to bool).
    type: raw
    required: true
  nothing_on_purpose:
    description: The host's C(llmhost_apply_nothing).
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Refuse a host with nothing selected
  ansible.builtin.fail:
    msg: "{{ inventory_hostname }}: {{ llmhost_apply | default({}) | medai.llmhost.area_selection_error }}"
  when: (llmhost_apply | default({}) | medai.llmhost.area_selection_error) | length > 0
'''

RETURN = r'''
_value:
  description: The reason, one line; empty when the selection is usable.
  type: str
'''

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

AREAS = ('scheduling', 'memory', 'storage', 'container_runtime', 'vllm', 'profile_schedule')


def area_selection_error(apply, nothing_on_purpose=False):
    if apply is None:
        apply = {}
    if not isinstance(apply, dict):
        raise AnsibleFilterError('llmhost_apply must be a dictionary of area: true/false, got %s' % type(apply).__name__)
    unknown = sorted(str(k) for k in apply if k not in AREAS)
    if unknown:
        return ('llmhost_apply names %s, not an area of medai.llmhost (areas: %s)'
                % (', '.join(repr(k[:40]) for k in unknown[:5]), ', '.join(AREAS)))
    if boolean(nothing_on_purpose, strict=False):
        return ''
    try:
        selected = [k for k, v in apply.items() if boolean(v, strict=True)]
    except TypeError as e:
        return 'llmhost_apply: %s' % str(e)[:200]
    if not selected:
        return ('nothing selected to apply: put the host in a profile_* group or set llmhost_apply '
                '(e.g. {"memory": true}); set llmhost_apply_nothing: true to leave it out on purpose')
    return ''


class FilterModule(object):
    def filters(self):
        return {'area_selection_error': area_selection_error}
