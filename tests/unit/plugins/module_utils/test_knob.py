# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import knob
from ansible_collections.medai.llmhost.tests.unit.fake_trees import layout_thp, layout_vm_sysctls, layout_block

THP = '/sys/kernel/mm/transparent_hugepage/enabled'


@pytest.mark.parametrize('text,value,choices', [
    ('always [madvise] never\n', 'madvise', ['always', 'madvise', 'never']),
    ('[none] mq-deadline kyber bfq', 'none', ['none', 'mq-deadline', 'kyber', 'bfq']),
    ('always defer defer+madvise [madvise] never', 'madvise', ['always', 'defer', 'defer+madvise', 'madvise', 'never']),
    ('60\n', '60', None),
    ('Y', 'Y', None),
])
def test_parse_knob(text, value, choices):
    assert knob.parse_knob(text) == (value, choices)


def test_apply_changes_and_reads_back(fake):
    layout_thp(fake)
    res = knob.apply_knob(THP, 'never')
    assert res == {'path': THP, 'before': 'madvise', 'after': 'never', 'changed': True,
                   'choices': ['always', 'madvise', 'never']}
    assert fake.read(THP) == 'always madvise [never]\n'
    again = knob.apply_knob(THP, 'never')
    assert again['changed'] is False


def test_check_mode_writes_nothing(fake):
    layout_thp(fake)
    res = knob.apply_knob(THP, 'never', check_mode=True)
    assert res['changed'] and res['after'] == 'never' and res['before'] == 'madvise'
    assert fake.read(THP) == 'always [madvise] never\n'
    assert fake.writes == []


def test_choice_not_offered(fake):
    layout_thp(fake)
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knob(THP, 'sometimes')
    assert 'offered: always, madvise, never' in e.value.msg
    assert fake.writes == []


def test_einval_is_clear(fake):
    layout_vm_sysctls(fake)
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knob('/proc/sys/vm/swappiness', '500')
    assert e.value.kind == 'rejected' and 'EINVAL' in e.value.msg
    assert fake.read('/proc/sys/vm/swappiness') == '60\n'


def test_readonly(fake):
    layout_thp(fake)
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knob('/sys/kernel/mm/transparent_hugepage/hpage_pmd_size', '4096')
    assert e.value.kind == 'readonly'


def test_not_effective(fake):
    layout_vm_sysctls(fake)
    fake.set_sticky('/proc/sys/vm/min_free_kbytes', '67584')
    with pytest.raises(knob.KnobError) as e:
        knob.apply_knob('/proc/sys/vm/min_free_kbytes', '131072')
    assert e.value.kind == 'not_effective' and "reports '67584'" in e.value.msg


def test_missing_known_replacement(fake):
    layout_vm_sysctls(fake)
    with pytest.raises(knob.KnobError) as e:
        knob.read_knob('/sys/module/zswap/parameters/comp_algorithm')
    assert e.value.kind == 'missing'
    assert 'compressor' in e.value.msg and '6.1.0-28-amd64' in e.value.msg


@pytest.mark.parametrize('path', ['/etc/passwd', '/sys/../etc/passwd', 'sys/kernel', '/proc/1/environ', '/system'])
def test_outside_roots_refused(fake, path):
    with pytest.raises(knob.KnobError) as e:
        knob.resolve_knob_path(path)
    assert e.value.kind == 'invalid'


def test_symlink_escape_refused(fake):
    fake.file('/etc/shadow', 'secret')
    fake.symlink('/etc/shadow', '/sys/kernel/evil')
    with pytest.raises(knob.KnobError) as e:
        knob.resolve_knob_path('/sys/kernel/evil')
    assert "resolves to '/etc/shadow'" in e.value.msg


def test_symlink_inside_sys_resolves(fake):
    devs = layout_block(fake)
    assert knob.resolve_knob_path('/sys/block/vdb/queue/scheduler') == devs['vdb'][0] + '/queue/scheduler'


def test_sysctl_names():
    assert knob.sysctl_name('/proc/sys/vm/swappiness') == 'vm.swappiness'
    assert knob.sysctl_path('vm.swappiness') == '/proc/sys/vm/swappiness'
    assert knob.sysctl_name('/proc/sys/net/ipv4/conf/eth0.100/rp_filter') == 'net.ipv4.conf.eth0/100.rp_filter'
    assert knob.sysctl_path('net.ipv4.conf.eth0/100.rp_filter') == '/proc/sys/net/ipv4/conf/eth0.100/rp_filter'
    assert knob.sysctl_name('/sys/kernel/mm/x') is None


# ---------------------------------------------------------------- action files (issue 14)

@pytest.mark.parametrize('path', [
    '/sys/power/state', '/sys/power/disk', '/sys/power/wakeup_count', '/sys/power/resume', '/sys/power/autosleep',
    '/sys/firmware/efi/efivars/Boot0000-8be4df61-93ca-11d2-aa0d-00e098032b8c',
    '/proc/sys/vm/drop_caches', '/proc/sys/vm/compact_memory', '/proc/sys/vm/stat_refresh',
    '/proc/sys/net/ipv4/route/flush', '/proc/sys/fs/binfmt_misc/register',
    '/sys/devices/system/memory/probe', '/sys/bus/pci/rescan', '/sys/bus/pci/devices/0000:3d:00.0/remove',
    '/sys/bus/pci/devices/0000:3d:00.0/reset', '/sys/bus/pci/drivers/nvme/bind', '/sys/bus/pci/drivers/nvme/new_id',
    '/sys/class/scsi_host/host0/scan', '/sys/class/nvme/nvme0/delete_controller', '/sys/module/zswap/uevent',
    '/sys/fs/cgroup/llm.slice/cgroup.procs',
])
def test_action_files_refused(fake, path):
    fake.file(path, '0')
    with pytest.raises(knob.KnobError) as e:
        knob.resolve_knob_path(path)
    assert e.value.kind == 'action'
    assert e.value.msg.startswith("'%s' is an action file, not a knob: " % path) and e.value.msg.endswith('; refused')
    assert len(e.value.msg) <= 300


def test_action_file_refused_even_when_missing(fake):
    with pytest.raises(knob.KnobError) as e:
        knob.resolve_knob_path('/sys/power/state')
    assert e.value.kind == 'action'


def test_write_only_file_refused(fake):
    fake.file('/sys/kernel/mm/whatever', '', mode=0o200)
    with pytest.raises(knob.KnobError) as e:
        knob.resolve_knob_path('/sys/kernel/mm/whatever')
    assert 'write-only' in e.value.msg


@pytest.mark.parametrize('path', ['/sys/power_supply_x', '/proc/sys/vm/drop_caches_x', '/sys/kernel/mm/ksm/run',
                                  '/proc/sys/vm/compact_unevictable_allowed'])
def test_settings_next_to_action_files_allowed(fake, path):
    fake.file(path, '1')
    assert knob.resolve_knob_path(path) == path


def test_action_name_through_symlink(fake):
    real = '/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0'
    fake.file(real + '/rescan', '')
    fake.symlink(real, '/sys/block/sda/device')
    with pytest.raises(knob.KnobError) as e:
        knob.resolve_knob_path('/sys/block/sda/device/rescan')
    assert e.value.details == {'resolved_path': real + '/rescan'}
    assert real not in e.value.msg


@pytest.mark.parametrize('path', ['/sys/kernel/mm/x\n', '/sys/kernel/\x1b[2J', '/etc/' + 'a' * 10240])
def test_bad_paths_one_bounded_line(fake, path):
    with pytest.raises(knob.KnobError) as e:
        knob.resolve_knob_path(path)
    assert '\n' not in e.value.msg and len(e.value.msg) <= 300


def test_long_missing_path_keeps_the_reason(fake):
    with pytest.raises(knob.KnobError) as e:
        knob.read_knob(knob.resolve_knob_path('/sys/' + 'a' * 1000))
    assert len(e.value.msg) <= 300 and e.value.msg.endswith('(6.1.0-28-amd64)')
