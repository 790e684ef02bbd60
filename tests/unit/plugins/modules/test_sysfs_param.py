# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import errno
import os

import pytest

from ansible_collections.medai.llmhost.plugins.modules import sysfs_param
from ansible_collections.medai.llmhost.tests.unit.fake_trees import (
    layout_meminfo, layout_thp, layout_vm_sysctls, layout_zswap)
from ansible_collections.medai.llmhost.tests.unit.plugins.modules.knob_module_helpers import (
    assert_refused, run_module, snapshot, journal, originals)

THP = '/sys/kernel/mm/transparent_hugepage/enabled'
DEFRAG = '/sys/kernel/mm/transparent_hugepage/defrag'
SWAP = '/proc/sys/vm/swappiness'
WSF = '/proc/sys/vm/watermark_scale_factor'
SYSCTL = '/etc/sysctl.d/90-medai-llmhost.conf'
TMPF = '/etc/tmpfiles.d/medai-llmhost.conf'
GRUB = '/etc/default/grub.d/90-medai-llmhost.cfg'


@pytest.fixture
def host(fake):
    layout_thp(fake)
    layout_vm_sysctls(fake)
    layout_meminfo(fake)
    return fake


def run(args, **kw):
    return run_module(sysfs_param, args, **kw)


def test_change_then_idempotent(host):
    res = run({'path': THP, 'value': 'madvise'})
    assert res['changed'] is False and res['knobs'][0]['before'] == 'madvise'
    res = run({'path': THP, 'value': 'never', 'change_context': 'OPS-1'})
    assert res['changed'] is True
    assert res['knobs'] == [{'path': THP, 'resolved_path': THP, 'before': 'madvise', 'after': 'never',
                             'changed': True, 'persisted_in': None}]
    assert host.read(THP) == 'always madvise [never]\n'
    again = run({'path': THP, 'value': 'never'})
    assert again['changed'] is False and again['knobs'][0]['after'] == 'never'
    assert host.writes == [(THP, 'never')]
    # originals + journal written once
    orig = originals(host)
    assert orig['knob:' + THP]['original'] == 'madvise'
    j = journal(host)
    assert [(e['setting'], e['before'], e['after'], e['context']) for e in j] == [('knob:' + THP, 'madvise', 'never', 'OPS-1')]


def test_first_original_is_kept(host):
    run({'path': SWAP, 'value': 10})
    run({'path': SWAP, 'value': 20})
    assert host.read(SWAP) == '20\n'
    assert originals(host)['knob:' + SWAP]['original'] == '60'
    assert [(e['before'], e['after']) for e in journal(host)] == [('60', '10'), ('10', '20')]


def test_check_mode_writes_nothing(host):
    before = snapshot(host.root)
    res = run({'params': {THP: 'never', SWAP: 10}, 'persist': 'tmpfiles'}, check_mode=True)
    assert res['changed'] is True
    assert [(k['before'], k['after'], k['changed']) for k in res['knobs']] == [('madvise', 'never', True),
                                                                               ('60', '10', True)]
    assert res['persist_changed'] == [TMPF]
    assert snapshot(host.root) == before
    assert host.writes == []
    assert journal(host) == [] and originals(host) == {}
    # the diff still shows what would happen
    assert res['diff'][1]['after'].endswith('w %s - - - - never\nw %s - - - - 10\n' % (THP, SWAP))


def test_diff_content(host):
    res = run({'params': {THP: 'never', SWAP: 10}, 'persist': 'tmpfiles'})
    assert res['diff'][0] == {'before_header': 'runtime knobs', 'after_header': 'runtime knobs',
                              'before': '%s = madvise\n%s = 60\n' % (THP, SWAP),
                              'after': '%s = never\n%s = 10\n' % (THP, SWAP)}
    assert res['diff'][1]['before'] == '' and res['diff'][1]['before_header'] == TMPF


def test_persist_sysctl_keeps_foreign_lines(host):
    host.file(SYSCTL, '# site\nnet.core.somaxconn = 4096\n')
    res = run({'params': {SWAP: 10, WSF: 200}, 'persist': 'sysctl'})
    assert res['changed'] and res['persist_changed'] == [SYSCTL]
    assert [k['persisted_in'] for k in res['knobs']] == [SYSCTL, SYSCTL]
    text = host.read(SYSCTL)
    assert text.startswith('# Managed by Ansible (medai.llmhost)')
    assert text.splitlines()[1:] == ['# site', 'net.core.somaxconn = 4096', 'vm.swappiness = 10',
                                     'vm.watermark_scale_factor = 200']
    again = run({'params': {SWAP: 10, WSF: 200}, 'persist': 'sysctl'})
    assert again['changed'] is False and again['persist_changed'] == []


def test_persist_sysctl_refused_for_sys(host):
    res = run({'path': THP, 'value': 'never', 'persist': 'sysctl'})
    assert res['failed'] and 'persist=sysctl works only for /proc/sys knobs' in res['msg']
    assert host.writes == []


def test_persist_tmpfiles_content(host):
    run({'params': {THP: 'madvise', DEFRAG: 'defer+madvise'}, 'persist': 'tmpfiles'})
    assert host.read(TMPF).splitlines()[1:] == ['w %s - - - - madvise' % THP, 'w %s - - - - defer+madvise' % DEFRAG]


def test_persist_cmdline(host):
    calls = []
    res = run({'path': THP, 'value': 'never', 'persist': 'cmdline'},
              bins={'update-grub': '/usr/sbin/update-grub'},
              run_command=lambda cmd: calls.append(cmd) or (0, '', ''))
    assert res['changed'] and res['reboot_required'] is True
    assert calls == [['/usr/sbin/update-grub']]
    assert 'transparent_hugepage=never' in host.read(GRUB)
    assert res['knobs'][0]['persisted_in'] == GRUB
    assert 'reboot required' in res['msg']


def test_persist_cmdline_without_equivalent_fails_before_change(host):
    res = run({'params': {THP: 'never', SWAP: 10}, 'persist': 'cmdline'})
    assert res['failed']
    assert res['msg'] == '/proc/sys/vm/swappiness has no kernel command-line equivalent: use persist=tmpfiles or persist=sysctl'
    assert host.writes == [] and host.read(THP) == 'always [madvise] never\n'
    res = run({'path': DEFRAG, 'value': 'never', 'persist': 'cmdline'})
    assert res['failed'] and 'no kernel command-line equivalent' in res['msg']


def test_bool_knob_y_n(fake):
    layout_zswap(fake)
    p = '/sys/module/zswap/parameters/enabled'
    res = run({'path': p, 'value': True})
    assert res['changed'] and fake.read(p) == 'Y\n' and res['knobs'][0]['after'] == 'Y'
    assert run({'path': p, 'value': 'yes'})['changed'] is False
    assert run({'path': p, 'value': 1})['changed'] is False
    assert run({'path': p, 'value': False})['knobs'][0]['after'] == 'N'


@pytest.mark.parametrize('path', ['/etc/passwd', '/sys/../etc/shadow', '/proc/1/environ', 'sys/kernel/x'])
def test_outside_refused(host, path):
    res = run({'path': path, 'value': '1'})
    assert res['failed'] and ('refused' in res['msg'] or 'must be an absolute path' in res['msg'])
    assert host.writes == []


def test_symlink_escape_refused(host):
    host.file('/etc/shadow', 'secret')
    host.symlink('/etc/shadow', '/sys/kernel/evil')
    res = run({'path': '/sys/kernel/evil', 'value': 'x'})
    assert res['failed'] and res['msg'] == ("knob path '/sys/kernel/evil' resolves to '/etc/shadow', "
                                            'outside /sys and /proc/sys: refused')
    assert host.read('/etc/shadow') == 'secret\n'


@pytest.mark.parametrize('path,hint', [
    ('/sys/module/zswap/parameters/comp_algorithm', "zswap's parameter is /sys/module/zswap/parameters/compressor"),
    ('/proc/sys/kernel/sched_latency_ns', 'moved to /sys/kernel/debug/sched/latency_ns in 5.13'),
    ('/proc/sys/vm/vmstat_refresh', 'vm.watermark_scale_factor'),
])
def test_missing_knob_names_release_and_replacement(host, path, hint):
    res = run({'path': path, 'value': '1'})
    assert res['failed']
    assert res['msg'].startswith('%s does not exist on this kernel (6.1.0-28-amd64): ' % path)
    assert hint in res['msg']


def test_einval_rolls_back_first_knob(host):
    res = run({'params': {THP: 'never', SWAP: 500}})
    assert res['failed']
    assert "the kernel rejected '500' for /proc/sys/vm/swappiness (EINVAL)" in res['msg']
    assert 'restored %s=madvise' % THP in res['msg']
    assert host.read(THP) == 'always [madvise] never\n' and host.read(SWAP) == '60\n'
    assert [(e['action'], e.get('after')) for e in journal(host)] == [('set', 'never'), ('rollback', 'madvise')]
    # a change that was set back leaves no original behind (found on a lab VM: it used to)
    assert originals(host) == {}


def test_failed_set_back_records_the_original_it_left_changed(host):
    """Swappiness rejected, then the set-back of THP fails too (EBUSY): THP stays changed, so its original is
    recorded (a rollback must be able to restore it) and only the write that happened is journaled."""
    def busy_on_restore(value):
        if value == 'madvise':
            raise OSError(errno.EBUSY, 'Device or resource busy')
    host.hooks[host.path(THP)] = busy_on_restore
    res = run({'params': {THP: 'never', SWAP: 500}})
    assert res['failed']
    assert 'rollback FAILED for %s' % THP in res['msg'] and 'check the host' in res['msg']
    assert host.read(THP) == 'always madvise [never]\n' and host.read(SWAP) == '60\n'
    assert [(e['action'], e.get('after')) for e in journal(host)] == [('set', 'never')]
    assert list(originals(host)) == ['knob:' + THP]
    assert originals(host)['knob:' + THP]['original'] == 'madvise'


def test_rejected_single_knob_leaves_no_state(host):
    res = run({'path': SWAP, 'value': 500})
    assert res['failed'] and 'EINVAL' in res['msg']
    assert not os.path.exists(host.path('/var/lib/medai-llmhost'))


def test_second_invalid_nothing_written(host):
    # choice not offered / missing knob are found before any write
    res = run({'params': {SWAP: 10, THP: 'sometimes'}, 'persist': 'tmpfiles'})
    assert res['failed'] and 'offered: always, madvise, never' in res['msg']
    res = run({'params': {SWAP: 10, '/proc/sys/vm/vmstat_refresh': '1'}})
    assert res['failed'] and 'does not exist' in res['msg']
    assert host.writes == [] and host.read(SWAP) == '60\n'
    assert snapshot(host.root).get(TMPF.lstrip('/')) is None
    assert journal(host) == [] and originals(host) == {}


def test_readonly_knob(host):
    res = run({'path': '/sys/kernel/mm/transparent_hugepage/hpage_pmd_size', 'value': 4096})
    assert res['failed'] and 'read-only' in res['msg']


def test_not_effective(host):
    host.set_sticky('/proc/sys/vm/min_free_kbytes', '67584')
    res = run({'path': '/proc/sys/vm/min_free_kbytes', 'value': 131072})
    assert res['failed'] and "the kernel reports '67584'" in res['msg']


def test_absent_restores_and_removes_persistence(host):
    host.file(SYSCTL, 'kernel.foo = 1\n')
    run({'params': {SWAP: 10, WSF: 200}, 'persist': 'sysctl'})
    run({'path': THP, 'value': 'never', 'persist': 'tmpfiles'})
    res = run({'params': {SWAP: None, THP: None}, 'state': 'absent'})
    assert res['changed']
    assert [(k['path'], k['before'], k['after']) for k in res['knobs']] == [(SWAP, '10', '60'), (THP, 'never', 'madvise')]
    assert host.read(SWAP) == '60\n' and host.read(THP) == 'always [madvise] never\n'
    assert host.read(SYSCTL).splitlines()[1:] == ['kernel.foo = 1', 'vm.watermark_scale_factor = 200']
    assert not __import__('os').path.exists(host.path(TMPF))
    assert set(originals(host)) == {'knob:' + WSF}
    assert run({'params': {SWAP: None, THP: None}, 'state': 'absent'})['changed'] is False


def test_absent_without_record_warns(host):
    res = run({'path': SWAP, 'state': 'absent'})
    assert res['changed'] is False and host.read(SWAP) == '60\n'
    assert res['warnings'] == ["no original value recorded for /proc/sys/vm/swappiness: its running value '60' was left as it is"]


def test_absent_check_mode(host):
    run({'path': SWAP, 'value': 10, 'persist': 'tmpfiles'})
    before = snapshot(host.root)
    res = run({'path': SWAP, 'state': 'absent'}, check_mode=True)
    assert res['changed'] and res['knobs'][0]['after'] == '60'
    assert snapshot(host.root) == before


def test_arg_validation(host):
    assert 'mutually exclusive' in run({'path': THP, 'value': 'x', 'params': {SWAP: 1}})['msg']
    assert 'one of the following is required' in run({'value': 'x'})['msg']
    assert run({'path': THP})['msg'] == 'value is required with path when state=present'
    res = run({'params': {SWAP: 1, '/proc/sys/vm//swappiness': 2}})
    assert res['failed'] and 'are the same knob' in res['msg']


# ---------------------------------------------------------------- bad input (issue 14): refused, nothing written

def refused(host, args, *needles):
    return assert_refused(run, host, args, *needles)


@pytest.mark.parametrize('path,content,why', [
    ('/sys/power/state', 'freeze mem disk', 'suspends, hibernates'),
    ('/sys/power/disk', '[platform] shutdown reboot suspend', 'power management'),
    ('/sys/power/wakeup_count', '12', 'power management'),
    ('/proc/sys/vm/drop_caches', '0', 'drops the page cache'),
    ('/proc/sys/vm/compact_memory', '0', 'compacts all memory'),
    ('/sys/bus/pci/devices/0000:00:04.0/remove', '', 'removes the device'),
    ('/sys/bus/pci/rescan', '', 'rescans'),
    ('/sys/bus/pci/drivers/nvme/unbind', '', 'unbinds'),
    ('/sys/class/nvme/nvme0/reset_controller', '', 'resets the NVMe controller'),
    ('/sys/kernel/mm/transparent_hugepage/uevent', '', 'sends a uevent'),
    ('/sys/fs/cgroup/llm.slice/cgroup.kill', '', 'kills every process'),
])
def test_action_file_refused(host, path, content, why):
    host.file(path, content)
    res = refused(host, {'path': path, 'value': '1'}, "'%s' is an action file, not a knob" % path, why)
    assert res['error_kind'] == 'action'


def test_action_file_refused_through_symlink(host):
    real = '/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0'
    host.file(real + '/delete', '', mode=0o200)
    host.symlink(real, '/sys/block/sda/device')
    res = refused(host, {'path': '/sys/block/sda/device/delete', 'value': '1'},
                  "'/sys/block/sda/device/delete' is an action file", 'deletes the device')
    assert res['details'] == {'resolved_path': real + '/delete'}


def test_write_only_file_is_a_trigger(host):
    host.file('/sys/kernel/some_trigger', '', mode=0o200)
    refused(host, {'path': '/sys/kernel/some_trigger', 'value': '1'}, 'write-only', 'cannot be read back')


def test_second_knob_action_file_first_not_written(host):
    host.file('/sys/power/state', 'freeze mem disk')
    refused(host, {'params': {THP: 'never', '/sys/power/state': 'mem'}, 'persist': 'tmpfiles'}, 'action file')


@pytest.mark.parametrize('persist', ['none', 'sysctl', 'tmpfiles'])
def test_value_with_newline_refused(host, persist):
    refused(host, {'params': {WSF: 200, SWAP: '10\nkernel.sysrq = 1'}, 'persist': persist},
            "value '10\\nkernel.sysrq = 1' for %s contains a newline" % SWAP)


@pytest.mark.parametrize('value', ['madvise\x1b[2J', 'a\rb', 'x\x00y'])
def test_value_with_control_character_refused(host, value):
    refused(host, {'path': THP, 'value': value}, 'control character', THP)


def test_10kb_value_one_bounded_line(host):
    res = refused(host, {'path': THP, 'value': 'x' * 10240, 'persist': 'tmpfiles'}, THP, '(10240 chars)')
    assert len(res['msg']) <= 300


def test_10kb_value_with_newlines_one_bounded_line(host):
    refused(host, {'params': {SWAP: ('1\n' * 5000)}, 'persist': 'sysctl'}, SWAP, 'newline', '(10000 chars)')


@pytest.mark.parametrize('value,why', [('50%', '% and backslash'), ('a\\nb', '% and backslash')])
def test_tmpfiles_value_that_systemd_would_expand_refused(host, value, why):
    host.file('/sys/kernel/mm/x', 'y')
    refused(host, {'path': '/sys/kernel/mm/x', 'value': value, 'persist': 'tmpfiles'}, why, '/sys/kernel/mm/x')


@pytest.mark.parametrize('value', ['lz4$(reboot)', 'lz4";reboot;"', 'lz4`id`', 'a;b'])
def test_cmdline_value_cannot_reach_the_shell_sourced_grub_file(host, value):
    layout_zswap(host)
    refused(host, {'path': '/sys/module/zswap/parameters/zpool', 'value': value, 'persist': 'cmdline'},
            'zswap.zpool', 'no white space, quote, $, backslash')


def test_long_resolved_path_named_as_given(host):
    from ansible_collections.medai.llmhost.tests.unit.fake_trees import layout_block
    devs = layout_block(host)
    res = refused(host, {'path': '/sys/block/sda/queue/scheduler', 'value': 'bfq-x'},
                  "/sys/block/sda/queue/scheduler does not offer 'bfq-x'", 'offered: none, mq-deadline, kyber, bfq')
    assert res['details'] == {'resolved_path': devs['sda'][0] + '/queue/scheduler'}


def test_corrupt_originals_refused_before_the_first_write(host):
    host.file('/var/lib/medai-llmhost/originals.json', '{not json')
    refused(host, {'path': SWAP, 'value': 10, 'persist': 'sysctl'}, 'originals.json is not valid JSON')


def test_state_dir_relative_refused(host):
    refused(host, {'path': SWAP, 'value': 10, 'state_dir': '/var/lib/../tmp/x'}, 'state_dir', '".."')


# ---------------------------------------------------------------- safe upper bounds

MIN_FREE = '/proc/sys/vm/min_free_kbytes'


def test_min_free_kbytes_above_five_percent_refused(host):
    # MemTotal 16 GiB (layout_meminfo): 5 % = 838860 kB
    refused(host, {'path': MIN_FREE, 'value': 838861, 'persist': 'sysctl'},
            MIN_FREE, 'safe bound 838860 (5 % of MemTotal 16777216 kB)', 'force: true')
    res = run({'path': MIN_FREE, 'value': 838860})
    assert res['changed'] and host.read(MIN_FREE) == '838860\n'


def test_min_free_kbytes_force(host):
    res = run({'path': MIN_FREE, 'value': 2097152, 'force': True})
    assert res['changed'] and host.read(MIN_FREE) == '2097152\n'


def test_watermark_scale_factor_bound(host):
    refused(host, {'params': {SWAP: 10, WSF: 1001}}, WSF, 'safe bound 1000', 'the kernel allows up to 3000')
    assert run({'path': WSF, 'value': 1000})['changed']
    assert run({'path': WSF, 'value': 3000, 'force': True})['changed'] and host.read(WSF) == '3000\n'


def test_min_free_kbytes_without_meminfo_refused(host):
    os.unlink(host.path('/proc/meminfo'))
    refused(host, {'path': MIN_FREE, 'value': 1024}, '/proc/meminfo does not exist')
