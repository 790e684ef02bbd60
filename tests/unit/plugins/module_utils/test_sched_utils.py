# -*- coding: utf-8 -*-
"""module_utils used by chrt_priority and cpuset: cpus, sched, cgroup2."""
from __future__ import absolute_import, division, print_function

import gzip
import os

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import cgroup2, knob, sched
from ansible_collections.medai.llmhost.plugins.module_utils.cpus import (
    format_cpulist, normalize_cpulist, online_nodes, parse_cpulist)


@pytest.mark.parametrize('text,cpus', [
    ('0-3,8,10-11', [0, 1, 2, 3, 8, 10, 11]),
    ('0-3,8,10-11\n', [0, 1, 2, 3, 8, 10, 11]),
    ('', []),
    ('5', [5]),
    ('3 1 2', [1, 2, 3]),
    ('2,0-1,1', [0, 1, 2]),
])
def test_parse_cpulist(text, cpus):
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize('bad', ['a', '3-1', '-1', '1-', '0-3:2', '0-7:2/4', '(null)', 'N', '0-N', '1,,x'])
def test_parse_cpulist_refuses(bad):
    with pytest.raises(knob.KnobError) as e:
        parse_cpulist(bad, 'cpus')
    assert e.value.msg.startswith('invalid cpus')


@pytest.mark.parametrize('bad,msg', [
    ('3-1', "invalid cpus '3-1': range '3-1' is empty or negative"),
    ('0,8 5-4', "invalid cpus '0,8 5-4': range '5-4' is empty or negative"),
    ('0-7:2/4', "invalid cpus '0-7:2/4': expected a list like 0-3,8,10-11"),
    ('1-x', "invalid cpus '1-x': expected a list like 0-3,8,10-11"),
])
def test_parse_cpulist_messages(bad, msg):
    with pytest.raises(knob.KnobError) as e:
        parse_cpulist(bad, 'cpus')
    assert e.value.msg == msg and e.value.kind == 'invalid'


def test_format_cpulist():
    assert format_cpulist([11, 10, 8, 3, 2, 1, 0]) == '0-3,8,10-11'
    assert format_cpulist([]) == ''
    assert format_cpulist({4}) == '4'
    assert normalize_cpulist('4,5,6,7') == '4-7'


def test_online_nodes_without_numa(fake):
    assert online_nodes() == [0]
    fake.file('/sys/devices/system/node/online', '0-1')
    assert online_nodes() == [0, 1]


@pytest.mark.parametrize('policy,prio,result', [
    ('fifo', 1, 1), ('rr', 99, 99), ('other', None, 0), ('batch', 0, 0), ('idle', None, 0)])
def test_validate_policy_ok(policy, prio, result):
    assert sched.validate_policy(policy, prio) == result


@pytest.mark.parametrize('policy,prio,msg', [
    ('fifo', 0, 'priority 0 is invalid for policy=fifo: real-time priorities are 1..99'),
    ('fifo', 100, 'priority 100 is invalid for policy=fifo: real-time priorities are 1..99'),
    ('rr', None, 'priority is required with policy=rr (1..99)'),
    ('idle', 1, 'priority 1 is invalid for policy=idle'),
    ('deadline', 1, "unknown scheduling policy 'deadline'"),
])
def test_validate_policy_refuses(policy, prio, msg):
    with pytest.raises(knob.KnobError) as e:
        sched.validate_policy(policy, prio)
    assert msg in e.value.msg


def test_parse_stat_comm_with_spaces_and_parens():
    text = '1234 (tokio (w) 1) S 1 1234 1234 0 -1 4194560 0 0 0 0 0 0 0 0 -51 0 3 0 98765 0 0 ' \
           '0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 50 1 0 0 0'
    st = sched.parse_stat(text)
    assert st['comm'] == 'tokio (w) 1' and st['ppid'] == 1 and st['starttime'] == 98765
    assert st['rt_priority'] == 50 and st['policy'] == 1


def test_normalize_unit():
    assert sched.normalize_unit('vllm') == 'vllm.service'
    assert sched.normalize_unit('llm.slice') == 'llm.slice'
    assert sched.normalize_unit('getty@tty1.service') == 'getty@tty1.service'
    with pytest.raises(knob.KnobError):
        sched.normalize_unit('a b')


def test_allowed_rt():
    assert sched.allowed_rt(['vllm.service', 'python3'], ['vllm'])
    assert sched.allowed_rt([None, 'python3'], ['py*'])
    assert not sched.allowed_rt([None, 'python3'], ['vllm.service'])
    assert not sched.allowed_rt(['x.service'], [])


def test_kernel_config_value(fake):
    assert sched.kernel_config_value('CONFIG_RT_GROUP_SCHED') is None
    fake.file('/boot/config-6.1.0-28-amd64', '# CONFIG_RT_GROUP_SCHED is not set\nCONFIG_CGROUP_SCHED=y\n')
    assert sched.kernel_config_value('CONFIG_RT_GROUP_SCHED') == 'n'
    assert sched.kernel_config_value('CONFIG_CGROUP_SCHED') == 'y'
    os.makedirs(fake.path('/proc'))
    with gzip.open(fake.path('/proc/config.gz'), 'wb') as f:
        f.write(b'CONFIG_RT_GROUP_SCHED=y\n')
    assert sched.kernel_config_value('CONFIG_RT_GROUP_SCHED') == 'y'   # /proc/config.gz wins


def test_real_syscalls_are_behind_sys():
    # the production layer is the real one; tests replace sched.SYS (never call setters on the real machine)
    assert isinstance(sched.SYS, sched.Syscalls)


@pytest.mark.parametrize('name,path', [
    ('llminference.slice', '/sys/fs/cgroup/llminference.slice'),
    ('llm-inference.slice', '/sys/fs/cgroup/llm.slice/llm-inference.slice'),
    ('a-b-c.slice', '/sys/fs/cgroup/a.slice/a-b.slice/a-b-c.slice'),
])
def test_slice_cgroup(name, path):
    assert cgroup2.slice_cgroup(name) == path


@pytest.mark.parametrize('bad', ['-.slice', 'x.service', 'a--b.slice', '-a.slice', 'a b.slice', 'a/b.slice'])
def test_slice_cgroup_refuses(bad):
    with pytest.raises(knob.KnobError):
        cgroup2.slice_cgroup(bad)


@pytest.mark.parametrize('text,parsed', [
    ('member', ('member', None)),
    ('root', ('root', None)),
    ('isolated\n', ('isolated', None)),
    ('root invalid (Cpu list in cpuset.cpus not exclusive)', ('root', 'Cpu list in cpuset.cpus not exclusive')),
    ('isolated invalid (Parent is not a partition root)', ('isolated', 'Parent is not a partition root')),
    ('root invalid', ('root', '')),
])
def test_parse_partition(text, parsed):
    assert cgroup2.parse_partition(text) == parsed


@pytest.mark.parametrize('given,path', [
    ('llm/engine', '/sys/fs/cgroup/llm/engine'),
    ('/llm/engine/', '/sys/fs/cgroup/llm/engine'),
    ('/sys/fs/cgroup/llm', '/sys/fs/cgroup/llm'),
])
def test_normalize_path(given, path):
    assert cgroup2.normalize_path(given) == path


def test_ancestors():
    assert cgroup2.ancestors('/sys/fs/cgroup/a/b/c') == ['/sys/fs/cgroup', '/sys/fs/cgroup/a', '/sys/fs/cgroup/a/b']
