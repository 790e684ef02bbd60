# -*- coding: utf-8 -*-
"""Per-OS-family values of the roles, rendered for Debian and EL 8/9 facts."""
from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.medai.llmhost.tests.unit.roles.role_vars import render

DEBIAN12 = {'os_family': 'Debian', 'distribution': 'Debian', 'distribution_major_version': '12'}
EL8 = {'os_family': 'RedHat', 'distribution': 'Rocky', 'distribution_major_version': '8'}
EL9 = {'os_family': 'RedHat', 'distribution': 'AlmaLinux', 'distribution_major_version': '9'}


def test_container_runtime_packages_on_debian():
    assert render('container_runtime', 'container_runtime_packages', DEBIAN12) == ['docker.io']


@pytest.mark.parametrize('facts', [EL8, EL9])
def test_container_runtime_packages_on_el(facts):
    assert render('container_runtime', 'container_runtime_packages', facts) == ['docker-ce', 'docker-ce-cli', 'containerd.io']


def test_container_runtime_packages_unknown_family_is_empty_so_the_role_refuses():
    assert render('container_runtime', 'container_runtime_packages', {'os_family': 'Suse'}) == []


def test_container_runtime_packages_before_facts_are_gathered():
    # the role's argument spec is validated before its first task gathers the OS family
    assert render('container_runtime', 'container_runtime_packages', {}) == []
