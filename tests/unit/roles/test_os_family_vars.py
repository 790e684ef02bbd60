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


GRUBBY_INFO = ('index=0\nkernel="/boot/vmlinuz-5.14.0-427.el9.x86_64"\n'
               'args="ro crashkernel=1G-4G:192M rd.lvm.lv=rl/root isolcpus=2-3"\nroot="/dev/mapper/rl-root"\n')


@pytest.mark.parametrize('facts, bootloader, irqbalance', [
    (DEBIAN12, 'grub_dropin', '/etc/default/irqbalance'),
    (EL8, 'grubby', '/etc/sysconfig/irqbalance'),
    (EL9, 'grubby', '/etc/sysconfig/irqbalance'),
])
def test_scheduling_boot_configuration_per_family(facts, bootloader, irqbalance):
    family = render('scheduling', '__scheduling_family', facts)[facts['os_family']]
    assert family == {'bootloader': bootloader, 'irqbalance_config': irqbalance}


def test_scheduling_grubby_adds_only_the_missing_arguments():
    layout = {'numa': {'online_cpus': [0, 1, 2, 3], 'nodes': [{'id': 0, 'cpus': [0, 1]}, {'id': 1, 'cpus': [2, 3]}]}}
    missing = render('scheduling', '__scheduling_boot_args_missing', dict(EL9, llmhost=layout),
                     scheduling_numa_node=1, __scheduling_grubby={'stdout': GRUBBY_INFO})
    assert sorted(missing) == ['nohz_full=2-3', 'rcu_nocbs=2-3']   # 'difference' keeps no order
