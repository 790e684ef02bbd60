# -*- coding: utf-8 -*-
"""Render a role's defaults and vars the way a play would (Ansible's own templar, the collection's filters), for
given host facts.

Not a test file: imported by tests of per-OS-family values and of the CPU layout. Each render runs in a fresh
interpreter (this file as a script): the collection loader must own ``ansible_collections`` before anything imports
it, and the unit tests' conftest imports it first.
"""
from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys

ROLES = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'roles'))


def render(role, name, facts, **overrides):
    """The value of variable `name` of `role` for a host with `facts` (ansible_facts) and `overrides`."""
    import ansible_collections
    collections_root = os.path.dirname(list(ansible_collections.__path__)[0])
    request = json.dumps({'role': role, 'name': name, 'facts': facts, 'overrides': overrides})
    run = subprocess.run([sys.executable, os.path.abspath(__file__), collections_root], input=request,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if run.returncode != 0:
        raise AssertionError('rendering %s of role %s failed:\n%s' % (name, role, run.stderr[-3000:]))
    return json.loads(run.stdout)


def _render_here(collections_root, request):
    import yaml
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader
    from ansible.template import Templar, trust_as_template

    init_plugin_loader([collections_root])

    def load(part):
        path = os.path.join(ROLES, request['role'], part, 'main.yml')
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return yaml.safe_load(f) or {}

    def trusted(value):
        if isinstance(value, str):
            return trust_as_template(value)
        if isinstance(value, dict):
            return dict((k, trusted(v)) for k, v in value.items())
        if isinstance(value, list):
            return [trusted(v) for v in value]
        return value

    variables = load('defaults')
    variables.update(load('vars'))
    variables.update(request['overrides'])
    variables = trusted(variables)
    variables['ansible_facts'] = request['facts']
    variables['role_path'] = os.path.join(ROLES, request['role'])
    return Templar(loader=DataLoader(), variables=variables).template(variables[request['name']])


if __name__ == '__main__':
    print(json.dumps(_render_here(sys.argv[1], json.loads(sys.stdin.read()))))
