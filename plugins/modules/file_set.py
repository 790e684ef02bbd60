#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: file_set
short_description: Write or remove a set of whole files (programs, units, configuration) in one call
version_added: 0.1.0
description:
  - Writes each file of O(files) whose content or mode differs, atomically (temporary file in the same directory,
    then rename), owned by root, creating missing parent directories; removes the entries with V(state=absent).
  - The roles install their host programs, units and configuration with it; one call replaces a C(copy) or
    C(template) loop, which costs one round trip per file. Render templates on the controller with
    C(lookup('template', ...)) and pass the text as O(files[].content).
  - Every entry is validated before the first write (absolute normalized path, no control characters, no
    duplicates, mode, size); a refused entry changes nothing.
  - Check mode reports what would change (with C(--diff) the before and after text); nothing is written.
author:
  - medai.llmhost contributors (@medai-llmhost)
options:
  files:
    description: The files to manage.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description: Whole text of the file (required with V(state=present)).
        type: str
      mode:
        description: Octal permission bits, for example V('0644') or V('0755').
        type: str
        default: '0644'
      state:
        description: V(present) writes the file, V(absent) removes it (a missing file is not a change).
        type: str
        choices: [present, absent]
        default: present
  directory_mode:
    description: Octal permission bits of parent directories the module creates (existing ones are left alone).
    type: str
    default: '0755'
notes:
  - Supports check mode and diff mode.
'''

EXAMPLES = r'''
- name: Install a program and its unit in one call
  medai.llmhost.file_set:
    files:
      - path: /usr/local/sbin/medai-example
        content: "{{ lookup('template', 'medai-example.j2') }}"
        mode: '0755'
      - path: /etc/systemd/system/medai-example.service
        content: "{{ lookup('template', 'medai-example.service.j2') }}"
  register: example_files
  notify: Restart medai-example

- name: Remove them
  medai.llmhost.file_set:
    files:
      - {path: /usr/local/sbin/medai-example, state: absent}
      - {path: /etc/systemd/system/medai-example.service, state: absent}
'''

RETURN = r'''
changed_paths:
  description: Paths written, re-moded or removed (or that would be, in check mode), in the order given.
  type: list
  elements: str
  returned: always
  sample: [/usr/local/sbin/medai-example]
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.medai.llmhost.plugins.module_utils import knob, persist

MAX_FILES = 256
MAX_TOTAL_BYTES = 8 * 1024 * 1024


def _refuse(index, what, value, why):
    raise knob.KnobError('files[%d].%s %s %s' % (index, what, knob.show(value), why), kind='invalid')


def _mode(index, what, text):
    if not knob.is_octal_mode(text):
        _refuse(index, what, text, 'is not an octal mode such as 0644')
    return int(text, 8)


def validate(files, directory_mode):
    """[(path, content or None, mode)] for `files`, or KnobError on the first bad entry (nothing written)."""
    if len(files) > MAX_FILES:
        raise knob.KnobError('files: %d entries, at most %d per call' % (len(files), MAX_FILES), kind='invalid')
    if not knob.is_octal_mode(directory_mode):
        raise knob.KnobError('directory_mode %s is not an octal mode such as 0755' % knob.show(directory_mode),
                             kind='invalid')
    plan, seen, total = [], set(), 0
    for i, entry in enumerate(files):
        path = entry['path']
        if knob.has_control_char(path):
            _refuse(i, 'path', path, 'contains a control character')
        if not path.startswith('/') or os.path.normpath(path) != path or path == '/':
            _refuse(i, 'path', path, 'must be an absolute, normalized file path (no "..", "//" or trailing "/")')
        if path in seen:
            _refuse(i, 'path', path, 'is given twice')
        seen.add(path)
        if os.path.isdir(knob.host_path(path)):
            _refuse(i, 'path', path, 'is a directory')
        content = None
        if entry['state'] == 'present':
            content = entry['content']
            if content is None:
                _refuse(i, 'content', path, 'is required with state=present')
            total += len(content)
        plan.append((path, content, _mode(i, 'mode', entry['mode'])))
    if total > MAX_TOTAL_BYTES:
        raise knob.KnobError('files: %d bytes of content, at most %d per call' % (total, MAX_TOTAL_BYTES), kind='invalid')
    return plan


def _make_parents(path, dir_mode):
    parent = knob.host_path(os.path.dirname(path))
    if not os.path.isdir(parent):
        os.makedirs(parent, dir_mode)


def apply(plan, dir_mode, check_mode):
    """Write what differs. Returns (changed_paths, diffs)."""
    changed, diffs = [], []
    for path, content, mode in plan:
        if content is None:
            ch, diff = persist.remove_file(path, check_mode)
        else:
            if not check_mode:
                _make_parents(path, dir_mode)
            ch, diff = persist.write_text(path, content, check_mode, mode)
        if ch:
            changed.append(path)
            if diff:
                diffs.append(diff)
    return changed, diffs


def main():
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type='list', elements='dict', required=True, options=dict(
                path=dict(type='path', required=True),
                content=dict(type='str', no_log=False),
                mode=dict(type='str', default='0644'),
                state=dict(type='str', choices=['present', 'absent'], default='present'),
            )),
            directory_mode=dict(type='str', default='0755'),
        ),
        supports_check_mode=True,
    )

    def run():
        plan = validate(module.params['files'], module.params['directory_mode'])
        changed, diffs = apply(plan, int(module.params['directory_mode'], 8), module.check_mode)
        result = dict(changed=bool(changed), changed_paths=changed)
        if module._diff:
            result['diff'] = diffs
        return result

    knob.run_and_exit(module, run)


if __name__ == '__main__':
    main()
