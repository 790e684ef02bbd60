# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.medai.llmhost.plugins.modules import llmhost_facts
from ansible_collections.medai.llmhost.tests.unit.fake_trees import layout_thp, layout_vm_sysctls, layout_zswap
from ansible_collections.medai.llmhost.tests.unit.layouts.block import layout_block_full
from ansible_collections.medai.llmhost.tests.unit.layouts.cgroups import layout_cgroup_v1, layout_cgroup_v2
from ansible_collections.medai.llmhost.tests.unit.layouts.hosts import layout_hgx_h100, layout_workstation
from ansible_collections.medai.llmhost.tests.unit.layouts.kernels import (
    layout_kernel_5_10, layout_kernel_6_12, layout_kernel_6_1_lockdown)
from ansible_collections.medai.llmhost.tests.unit.layouts.memory import layout_memory


def run(capsys, args=None):
    with patch_module_args(args or {}):
        with pytest.raises(SystemExit) as exc:
            llmhost_facts.main()
    out = json.loads(capsys.readouterr().out)
    return exc.value.code, out


def snapshot(root):
    """Every file under the fake root with its content (to prove nothing was written)."""
    result = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                result[p] = os.readlink(p)
                continue
            with open(p, 'rb') as f:
                result[p] = (f.read(), os.stat(p).st_mtime_ns)
    return result


def h100_host(fake):
    layout_kernel_6_12(fake)
    layout_cgroup_v2(fake)
    layout_hgx_h100(fake)
    layout_block_full(fake)
    layout_thp(fake)
    layout_vm_sysctls(fake)
    layout_zswap(fake, with_newer=True)
    layout_memory(fake)


def test_module_all_facts(fake, capsys):
    h100_host(fake)
    code, out = run(capsys)
    assert code == 0
    assert out['changed'] is False
    llm = out['ansible_facts']['llmhost']
    assert sorted(llm) == ['block', 'cgroup', 'gathered', 'gpu_nodes', 'gpus', 'kernel', 'memory', 'notes', 'numa',
                           'sched', 'swap']
    assert llm['kernel']['release'] == '6.12.38+deb13-amd64'
    assert llm['kernel']['version'] == [6, 12]
    assert llm['kernel']['config_source'] == '/proc/config.gz'
    assert llm['kernel']['config']['CONFIG_CPUSETS_V1'] == 'n'
    assert llm['kernel']['lockdown'] == 'none'
    assert llm['cgroup']['version'] == 2 and llm['cgroup']['cpuset_partitions'] is True
    assert [n['cpulist'] for n in llm['numa']['nodes']] == ['0-31,64-95', '32-63,96-127']
    assert len(llm['gpus']) == 8
    assert [g['numa_node'] for g in llm['gpus']] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert llm['gpus'][3]['pci'] == '0000:5d:00.0' and llm['gpus'][3]['index'] == 3
    assert llm['gpu_nodes'] == {'0': [0, 1, 2, 3], '1': [4, 5, 6, 7]}
    assert [d['name'] for d in llm['block']] == ['dm-0', 'nvme0n1', 'nvme1n1', 'sda', 'vda', 'vdb']
    assert llm['memory']['thp']['enabled']['value'] == 'madvise'
    assert llm['memory']['sysctl']['vm.watermark_scale_factor'] == 10
    assert llm['swap']['active'] is True and llm['swap']['total_kib'] == 75497464
    assert llm['sched']['tunables_location'] == 'debugfs_eevdf'
    assert llm['sched']['tunables']['base_slice_ns']['value'] == 3000000
    assert llm['sched']['rt']['fair_server'] is True
    assert llm['notes'] == []


def test_module_check_mode_is_identical_and_writes_nothing(fake, capsys):
    h100_host(fake)
    before = snapshot(fake.root)
    _code, normal = run(capsys)
    code, checked = run(capsys, {'_ansible_check_mode': True})
    assert code == 0
    assert checked['changed'] is False
    assert checked['ansible_facts'] == normal['ansible_facts']
    assert snapshot(fake.root) == before
    assert fake.writes == []


def test_module_gather_subset(fake, capsys):
    h100_host(fake)
    code, out = run(capsys, {'gather': ['gpus', 'sched']})
    assert code == 0
    llm = out['ansible_facts']['llmhost']
    assert llm['gathered'] == ['gpus', 'sched']
    assert sorted(llm) == ['gathered', 'gpu_nodes', 'gpus', 'notes', 'sched']


def test_module_gather_all_with_others_is_all(fake, capsys):
    h100_host(fake)
    _code, out = run(capsys, {'gather': ['swap', 'all']})
    assert out['ansible_facts']['llmhost']['gathered'] == [
        'kernel', 'cgroup', 'numa', 'gpus', 'block', 'memory', 'sched', 'swap']


def test_module_rejects_unknown_subset(fake, capsys):
    code, out = run(capsys, {'gather': ['gpu']})
    assert code == 1
    assert out['failed'] is True
    assert 'gather' in out['msg'] and 'gpu' in out['msg']


def test_module_workstation_locked_down(fake, capsys):
    layout_workstation(fake)
    layout_kernel_6_1_lockdown(fake)
    layout_cgroup_v1(fake)
    _code, out = run(capsys)
    llm = out['ansible_facts']['llmhost']
    assert llm['gpus'][0]['numa_node'] is None
    assert llm['gpu_nodes'] == {'unknown': [0]}
    assert llm['cgroup']['version'] == 1 and llm['cgroup']['cpuset_v1'] is True
    assert llm['sched']['tunables_location'] == 'unavailable'
    assert llm['sched']['unavailable_reason'] == 'kernel lockdown (integrity) blocks debugfs'
    assert llm['kernel']['lockdown'] == 'integrity'
    assert llm['notes'] == ['GPU 0 (0000:01:00.0): no NUMA info (numa_node is -1)',
                            'scheduler tunables unavailable: kernel lockdown (integrity) blocks debugfs']


def test_module_kernel_5_10(fake, capsys):
    layout_kernel_5_10(fake)
    _code, out = run(capsys, {'gather': ['kernel', 'sched']})
    llm = out['ansible_facts']['llmhost']
    assert llm['kernel']['version'] == [5, 10]
    assert llm['sched']['tunables_location'] == 'procfs'
    assert llm['sched']['tunables']['latency_ns'] == {'path': '/proc/sys/kernel/sched_latency_ns', 'value': 24000000}


def test_module_docs_parse():
    import yaml
    doc = yaml.safe_load(llmhost_facts.DOCUMENTATION)
    ret = yaml.safe_load(llmhost_facts.RETURN)
    yaml.safe_load(llmhost_facts.EXAMPLES)
    assert doc['module'] == 'llmhost_facts'
    assert doc['options']['gather']['choices'] == ['all', 'kernel', 'cgroup', 'numa', 'gpus', 'block', 'memory',
                                                   'sched', 'swap']
    assert doc['attributes']['check_mode']['support'] == 'full'
    assert doc['attributes']['diff_mode']['support'] == 'none'
    assert doc['attributes']['facts']['support'] == 'full'
    documented = set(ret['ansible_facts']['contains']['llmhost']['contains'])
    assert documented == {'gathered', 'notes', 'kernel', 'cgroup', 'numa', 'gpus', 'gpu_nodes', 'block', 'memory',
                          'swap', 'sched'}
