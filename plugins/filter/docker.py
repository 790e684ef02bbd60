# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the container_runtime role: daemon.json changes that a reload applies, and daemon.json keys
that the daemon's command line sets too (dockerd refuses to start when a setting is given both ways)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: docker
short_description: Helpers of the container_runtime role (reload or restart, flag conflicts)
version_added: 0.1.0
description:
  - C(docker_restart_needed) - whether a change of C(daemon.json) from the input (before) to the argument (after)
    needs a daemon restart, or a reload (C(SIGHUP)) applies it all. Reloadable keys are dockerd's
    (C(live-restore), C(debug), C(labels), C(runtimes), C(default-runtime), registry and download settings).
  - C(docker_daemon_info) - the output of C(dockerd --version) (the input) as C(version) and C(can_validate)
    (whether C(dockerd --validate) can check a file - Docker 23.0+, or as the argument forces).
  - C(docker_flag_conflicts) - the C(daemon.json) keys (input) that the daemon's command line (the argument,
    C(systemctl show -p ExecStart --value) of the unit, drop-ins included) also sets; dockerd refuses to start
    then.
author:
  - medai.llmhost contributors (@medai-llmhost)
positional: _input, other
options:
  _input:
    description: A C(daemon.json) dictionary (the one before the change, or the merged one).
    type: dict
    required: true
  other:
    description: The C(daemon.json) after the change, or the daemon's C(ExecStart) text.
    type: raw
    required: true
'''

EXAMPLES = r'''
- name: Restart only when a reload is not enough
  ansible.builtin.set_fact:
    restart: "{{ old_config | medai.llmhost.docker_restart_needed(new_config) }}"
'''

RETURN = r'''
_value:
  description: A bool (C(docker_restart_needed)) or the sorted list of conflicting keys (C(docker_flag_conflicts)).
  type: raw
'''

import re
import shlex

from ansible.module_utils.parsing.convert_bool import boolean

# daemon.json keys that dockerd re-reads on SIGHUP (daemon/reload.go)
RELOADABLE = frozenset((
    'live-restore', 'debug', 'labels', 'runtimes', 'default-runtime', 'max-concurrent-downloads',
    'max-concurrent-uploads', 'max-download-attempts', 'shutdown-timeout', 'insecure-registries',
    'registry-mirrors', 'allow-nondistributable-artifacts', 'authorization-plugins', 'features', 'builder',
))

# daemon.json key -> the command-line flags that set it (where the names differ)
FLAGS = {
    'hosts': ('-H', '--host'),
    'exec-opts': ('--exec-opt',),
    'log-opts': ('--log-opt',),
    'storage-opts': ('--storage-opt',),
    'storage-driver': ('-s', '--storage-driver'),
    'default-ulimits': ('--default-ulimit',),
    'runtimes': ('--add-runtime',),
    'labels': ('--label',),
    'insecure-registries': ('--insecure-registry',),
    'registry-mirrors': ('--registry-mirror',),
    'authorization-plugins': ('--authorization-plugin',),
    'dns-opts': ('--dns-opt',),
    'bridge': ('-b', '--bridge'),
    'group': ('-G', '--group'),
    'debug': ('-D', '--debug'),
    'log-level': ('-l', '--log-level'),
    'pidfile': ('-p', '--pidfile'),
}

_ARGV_RE = re.compile(r'argv\[\]=([^;]*)')


def docker_restart_needed(before, after):
    before, after = before or {}, after or {}
    changed = set(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return bool(changed - RELOADABLE)


def _flags(execstart):
    """Flag names on the command line(s) of `systemctl show -p ExecStart --value` (or a plain command)."""
    text = execstart or ''
    lines = _ARGV_RE.findall(text) or [text]
    names = set()
    for line in lines:
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        for word in words[1:]:
            if word.startswith('-'):
                names.add(word.split('=', 1)[0])
    return names


_VERSION_RE = re.compile(r'Docker version v?([0-9]+)\.([0-9]+)[^,\s]*')


def docker_daemon_info(version_text, validate='auto'):
    match = _VERSION_RE.search(version_text or '')
    version = match.group(0)[len('Docker version '):] if match else ''
    if str(validate).lower() in ('auto', ''):
        can_validate = bool(match) and (int(match.group(1)), int(match.group(2))) >= (23, 0)
    else:
        can_validate = boolean(validate, strict=False)
    return {'version': version, 'can_validate': can_validate}


def docker_flag_conflicts(config, execstart):
    given = _flags(execstart)
    return sorted(key for key in (config or {})
                  if given & set(FLAGS.get(key, ('--' + key,))))


class FilterModule(object):
    def filters(self):
        return {'docker_restart_needed': docker_restart_needed, 'docker_flag_conflicts': docker_flag_conflicts,
                'docker_daemon_info': docker_daemon_info}
