# -*- coding: utf-8 -*-
"""Render a role's defaults and vars the way a play would (Ansible's own templar), for given host facts.

Not a test file: imported by tests of per-OS-family values (no host, no play, no module runs).
"""
from __future__ import absolute_import, division, print_function

import os

import yaml

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'roles')


def _load(role, part):
    path = os.path.join(ROLES, role, part, 'main.yml')
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return yaml.safe_load(f) or {}


def _trusted(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: _trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    return value


def render(role, name, facts, **overrides):
    """The value of variable `name` of `role` for a host with `facts` (ansible_facts) and `overrides`."""
    variables = dict(_load(role, 'defaults'))
    variables.update(_load(role, 'vars'))
    variables.update(overrides)
    variables = _trusted(variables)
    variables['ansible_facts'] = facts
    variables['role_path'] = os.path.join(ROLES, role)
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(variables[name])
