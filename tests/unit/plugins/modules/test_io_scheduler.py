# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import os

import pytest

from ansible_collections.medai.llmhost.plugins.modules import io_scheduler
from ansible_collections.medai.llmhost.tests.unit.fake_trees import (
    layout_block, layout_block_extra, emulate_scheduler_reset)
from ansible_collections.medai.llmhost.tests.unit.plugins.modules.knob_module_helpers import (
    assert_refused, run_module, snapshot, journal, originals)

RULES = '/etc/udev/rules.d/60-medai-llmhost-iosched.rules'
BYID = '/dev/disk/by-id/nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0R123456'
HDR = '# Managed by Ansible (medai.llmhost)'


@pytest.fixture
def host(fake):
    devs = layout_block(fake)
    layout_block_extra(fake)
    emulate_scheduler_reset(fake, devs)
    fake.devs = devs
    return fake


def q(host, name, attr):
    return host.read(host.devs[name][0] + '/queue/' + attr).strip()


def run(args, **kw):
    kw.setdefault('bins', {'udevadm': '/usr/bin/udevadm'})
    calls = kw.pop('calls', [])
    kw.setdefault('run_command', lambda cmd: calls.append(cmd) or (0, '', ''))
    return run_module(io_scheduler, args, **kw)


def test_set_by_name_and_idempotent(host):
    calls = []
    res = run({'device': ['sda'], 'scheduler': 'bfq', 'nr_requests': 512, 'read_ahead_kb': 4096}, calls=calls)
    assert res['changed'] is True, res
    assert res['devices'] == [{'name': 'sda', 'given': 'sda', 'rotational': True, 'changed': True,
                               'scheduler': {'before': 'mq-deadline', 'after': 'bfq', 'changed': True},
                               'nr_requests': {'before': '64', 'after': '512', 'changed': True},
                               'read_ahead_kb': {'before': '128', 'after': '4096', 'changed': True}}]
    assert q(host, 'sda', 'scheduler') == 'none mq-deadline kyber [bfq]'
    assert q(host, 'sda', 'nr_requests') == '512'
    assert host.read(RULES) == (HDR + ': lines below are owned by the collection; edit the inventory instead.\n'
                                'ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="sda", ATTR{queue/scheduler}="bfq", '
                                'ATTR{queue/nr_requests}="512", ATTR{queue/read_ahead_kb}="4096"\n')
    assert calls == [['/usr/bin/udevadm', 'control', '--reload']]
    # journal + originals
    assert [(e['action'], e['setting'].rsplit('/', 1)[-1], e['before'], e['after']) for e in journal(host)
            if e['action'] == 'set'] == [('set', 'scheduler', 'mq-deadline', 'bfq'),
                                         # the journal shows the reset value (switching the scheduler made it 128)
                                         ('set', 'nr_requests', '128', '512'),
                                         ('set', 'read_ahead_kb', '128', '4096')]
    assert sorted(v['original'] for v in originals(host).values()) == ['128', '64', 'mq-deadline']
    calls2 = []
    again = run({'device': ['sda'], 'scheduler': 'bfq', 'nr_requests': 512, 'read_ahead_kb': 4096}, calls=calls2)
    assert again['changed'] is False and calls2 == []


def test_scheduler_set_before_nr_requests(host):
    # switching nvme0n1 to mq-deadline resets nr_requests to 256; 1500 is only valid after the switch
    res = run({'device': ['nvme0n1'], 'scheduler': 'mq-deadline', 'nr_requests': 1500})
    assert not res.get('failed'), res
    assert q(host, 'nvme0n1', 'scheduler') == 'none [mq-deadline] kyber bfq'
    assert q(host, 'nvme0n1', 'nr_requests') == '1500'
    writes = [w for w in host.writes if 'nvme0n1' in w[0]]
    assert [w[0].rsplit('/', 1)[-1] for w in writes] == ['scheduler', 'nr_requests']
    line = host.read(RULES).splitlines()[1]
    assert line.index('queue/scheduler') < line.index('queue/nr_requests')


def test_nr_requests_rewritten_after_reset(host):
    # nr_requests already 256 == what mq-deadline resets it to; a value equal to before must survive the reset
    run({'device': ['nvme0n1'], 'nr_requests': 512, 'persist': False})
    res = run({'device': ['nvme0n1'], 'scheduler': 'mq-deadline', 'nr_requests': 512, 'persist': False})
    assert res['changed'] and q(host, 'nvme0n1', 'nr_requests') == '512'
    assert res['devices'][0]['nr_requests'] == {'before': '512', 'after': '512', 'changed': False}


def test_by_id_and_dev_path(host):
    res = run({'device': [BYID, '/dev/sda'], 'scheduler': 'kyber', 'persist': False})
    assert [(d['name'], d['given']) for d in res['devices']] == [('nvme0n1', BYID), ('sda', '/dev/sda')]
    assert q(host, 'nvme0n1', 'scheduler') == 'none mq-deadline [kyber] bfq'
    assert q(host, 'sda', 'scheduler') == 'none mq-deadline [kyber] bfq'
    assert not os.path.exists(host.path(RULES))


def test_pattern_rotational_rule(host):
    host.file(RULES, '# site rule\nACTION=="add", KERNEL=="sdz", ATTR{queue/scheduler}="bfq"\n')
    res = run({'pattern': 'nvme*n1', 'rotational': False, 'scheduler': 'none', 'read_ahead_kb': 4096})
    assert [d['name'] for d in res['devices']] == ['nvme0n1', 'nvme1n1']
    assert [d['read_ahead_kb']['after'] for d in res['devices']] == ['4096', '4096']
    assert [d['scheduler']['changed'] for d in res['devices']] == [False, False]
    lines = host.read(RULES).splitlines()
    assert lines[1:] == ['# site rule', 'ACTION=="add", KERNEL=="sdz", ATTR{queue/scheduler}="bfq"',
                         'ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="nvme*n1", ATTR{queue/rotational}=="0", '
                         'ATTR{queue/scheduler}="none", ATTR{queue/read_ahead_kb}="4096"']
    # rotational filter on a pattern: only sda
    res = run({'pattern': '*', 'rotational': True, 'scheduler': 'mq-deadline', 'persist': False})
    assert [d['name'] for d in res['devices']] == ['sda']


def test_pattern_skips_virtual_and_schedulerless(host):
    res = run({'pattern': '*', 'read_ahead_kb': 256, 'persist': False})
    assert [d['name'] for d in res['devices']] == ['nvme0n1', 'nvme1n1', 'sda', 'vda', 'vdb']
    assert host.read('/sys/devices/virtual/block/loop0/queue/read_ahead_kb') == '128\n'
    res = run({'pattern': 'dm-*', 'scheduler': 'mq-deadline', 'persist': False})
    assert res['devices'] == [] and res['changed'] is False
    assert res['warnings'][0] == 'dm-0 matches dm-* but has no I/O scheduler (reads a bare none): skipped'
    res = run({'pattern': 'loop*', 'read_ahead_kb': 64, 'persist': False})
    assert [d['name'] for d in res['devices']] == ['loop0']


def test_no_match_warns(host):
    res = run({'pattern': 'xvd*', 'scheduler': 'none'})
    assert res['changed'] is False and res['devices'] == []
    assert res['warnings'] == ["no block device matched 'xvd*': nothing done"]
    assert not os.path.exists(host.path(RULES))


@pytest.mark.parametrize('legacy,mapped', [('noop', 'none'), ('deadline', 'mq-deadline')])
def test_legacy_names_translated(host, legacy, mapped):
    res = run({'device': ['vda'], 'scheduler': legacy, 'persist': False})
    assert res['scheduler'] == mapped
    assert res['devices'][0]['scheduler']['after'] == mapped
    assert 'legacy (pre-5.0) name of %s' % mapped in res['msg']
    assert any(legacy in w for w in res['warnings'])


def test_cfq_fails_unless_translated(host):
    res = run({'device': ['sda'], 'scheduler': 'cfq'})
    assert res['failed'] and res['msg'].startswith('scheduler cfq was removed in kernel 5.0')
    assert 'use bfq' in res['msg']
    assert host.writes == []
    res = run({'device': ['sda'], 'scheduler': 'cfq', 'translate_legacy': True, 'persist': False})
    assert res['changed'] and q(host, 'sda', 'scheduler') == 'none mq-deadline kyber [bfq]'
    assert 'cfq (removed in 5.0) translated to bfq' in res['msg']


def test_scheduler_not_offered(host):
    res = run({'device': ['nvme0n1', 'vda'], 'scheduler': 'bfq'})
    assert res['failed']
    assert res['msg'] == ("vda does not offer scheduler 'bfq' on this kernel (6.1.0-28-amd64); offered: none, mq-deadline "
                          '(or set load_module: true to modprobe bfq)')
    assert host.writes == [] and q(host, 'nvme0n1', 'scheduler') == '[none] mq-deadline kyber bfq'


def test_load_module(host):
    vda = host.devs['vda'][0] + '/queue/scheduler'
    calls = []

    def rc(cmd):
        calls.append(cmd)
        if cmd[0] == '/sbin/modprobe':
            host.file(vda, host.read(vda).strip() + ' kyber')
        return 0, '', ''
    # check mode: no modprobe, warning
    before = snapshot(host.root)
    res = run_module(io_scheduler, {'device': ['vda'], 'scheduler': 'kyber', 'load_module': True},
                     check_mode=True, bins={'modprobe': '/sbin/modprobe'}, run_command=rc)
    assert res['changed'] and res['modules_loaded'] == ['kyber-iosched'] and calls == []
    assert snapshot(host.root) == before
    res = run_module(io_scheduler, {'device': ['vda'], 'scheduler': 'kyber', 'load_module': True},
                     bins={'modprobe': '/sbin/modprobe'}, run_command=rc)
    assert calls == [['/sbin/modprobe', 'kyber-iosched']]
    assert q(host, 'vda', 'scheduler') == 'none mq-deadline [kyber]'
    assert res['modules_loaded'] == ['kyber-iosched']


def test_check_mode_writes_nothing(host):
    before = snapshot(host.root)
    res = run({'pattern': 'nvme*n1', 'scheduler': 'mq-deadline', 'nr_requests': 1024}, check_mode=True)
    assert res['changed'] and res['rules_changed']
    assert [d['scheduler'] for d in res['devices']] == [{'before': 'none', 'after': 'mq-deadline', 'changed': True}] * 2
    assert snapshot(host.root) == before and host.writes == []
    assert res['diff'][0]['after'] == ('nvme0n1: scheduler=mq-deadline nr_requests=1024\n'
                                       'nvme1n1: scheduler=mq-deadline nr_requests=1024\n')
    assert 'KERNEL=="nvme*n1"' in res['diff'][1]['after'] and res['diff'][1]['before'] == ''


def test_nr_requests_einval_with_none_rolls_back(host):
    # sda: switching to none gives it a tag depth of 64; 1024 is refused
    res = run({'device': ['vda', 'sda'], 'scheduler': 'none', 'nr_requests': 1024})
    assert res['failed']
    assert "the kernel rejected '1024' for" in res['msg'] and '(EINVAL)' in res['msg']
    assert "with scheduler none nr_requests cannot exceed sda's hardware tag depth" in res['msg']
    assert 'nothing left half-applied' in res['msg']
    # vda (already none) got nr_requests 1024 first, then it was set back; sda went back to mq-deadline
    assert q(host, 'vda', 'nr_requests') == '256'
    assert q(host, 'sda', 'scheduler') == 'none [mq-deadline] kyber bfq'
    assert not os.path.exists(host.path(RULES))


@pytest.mark.parametrize('args,msg', [
    ({'nr_requests': 0}, 'nr_requests must be between 1 and 100000, got 0'),
    ({'nr_requests': 100001}, 'nr_requests must be between 1 and 100000, got 100001'),
    ({'read_ahead_kb': -1}, 'read_ahead_kb must be between 0 and 1048576, got -1'),
])
def test_range_validation(host, args, msg):
    args.update(device=['sda'])
    res = run(args)
    assert res['failed'] and res['msg'] == msg and host.writes == []


@pytest.mark.parametrize('dev,msg', [
    ('nvme0n1p1', "'nvme0n1p1' is a partition: the I/O scheduler belongs to the whole disk, use nvme0n1"),
    (BYID + '-part1', 'is a partition: the I/O scheduler belongs to the whole disk, use nvme0n1'),
    ('sdq', "block device sdq ('sdq') does not exist on this host"),
    ('/dev/disk/by-id/nope', "device '/dev/disk/by-id/nope' does not exist on this host"),
    ('/etc/passwd', 'give a kernel name, a /dev path or a /dev/disk/by-* link'),
])
def test_bad_devices(host, dev, msg):
    res = run({'device': [dev], 'scheduler': 'none'})
    assert res['failed'] and msg in res['msg'], res['msg']


def test_dm_without_scheduler(host):
    res = run({'device': ['dm-0'], 'scheduler': 'mq-deadline'})
    assert res['failed'] and "dm-0 does not offer scheduler 'mq-deadline'" in res['msg'] and 'offered: none' in res['msg']
    res = run({'device': ['dm-0'], 'scheduler': 'none', 'persist': False})
    assert res['changed'] is False


def test_second_device_invalid_first_untouched(host):
    res = run({'device': ['sda', 'dm-0'], 'scheduler': 'bfq', 'read_ahead_kb': 1024})
    assert res['failed'] and host.writes == []
    assert journal(host) == [] and originals(host) == {}


def test_nothing_to_set(host):
    res = run({'device': ['sda']})
    assert res['failed'] and res['msg'].startswith('nothing to set')


def test_absent_restores(host):
    host.file(RULES, 'ACTION=="add", KERNEL=="sdz", ATTR{queue/scheduler}="bfq"\n')
    run({'device': ['sda'], 'scheduler': 'bfq', 'nr_requests': 512})
    run({'pattern': 'nvme*n1', 'read_ahead_kb': 4096})
    assert len(host.read(RULES).splitlines()) == 4
    res = run({'device': ['sda'], 'state': 'absent'})
    assert res['changed']
    assert res['devices'][0]['scheduler'] == {'before': 'bfq', 'after': 'mq-deadline', 'changed': True}
    assert res['devices'][0]['nr_requests'] == {'before': '512', 'after': '64', 'changed': True}
    assert q(host, 'sda', 'scheduler') == 'none [mq-deadline] kyber bfq' and q(host, 'sda', 'nr_requests') == '64'
    assert [x for x in host.read(RULES).splitlines() if 'sda' in x] == []
    res = run({'pattern': 'nvme*n1', 'state': 'absent'})
    assert q(host, 'nvme0n1', 'read_ahead_kb') == '128'
    assert host.read(RULES).splitlines()[1:] == ['ACTION=="add", KERNEL=="sdz", ATTR{queue/scheduler}="bfq"']
    assert originals(host) == {}
    again = run({'device': ['sda'], 'state': 'absent'})
    assert again['changed'] is False
    assert again['warnings'] == ['no original values recorded for sda: its running values were left as they are']


def test_absent_check_mode(host):
    run({'device': ['sda'], 'scheduler': 'bfq'})
    before = snapshot(host.root)
    res = run({'device': ['sda'], 'state': 'absent'}, check_mode=True)
    assert res['changed'] and res['rules_changed']
    assert snapshot(host.root) == before


# ---------------------------------------------------------------- bad input (issue 14): refused, nothing written

def refused(host, args, *needles):
    # run_command=None: a modprobe or udevadm call would fail the test
    return assert_refused(lambda a, **kw: run_module(io_scheduler, a, **kw), host, args, *needles,
                          bins={'udevadm': '/usr/bin/udevadm'})


@pytest.mark.parametrize('pattern', [
    'sd*", RUN+="/bin/sh -c reboot',
    'nvme*n1", PROGRAM="/tmp/x',
    'sd*,RUN+=x',
    'sd a',
    'sd*\n',
    'sda|sdb',
    '../sda',
    'x' * 10240,
])
def test_pattern_that_could_break_the_udev_rule_refused(host, pattern):
    refused(host, {'pattern': pattern, 'scheduler': 'none'}, 'pattern', 'udev KERNEL match may only hold')


@pytest.mark.parametrize('dev,why', [
    ('sda"', 'is not a kernel block device name'), ('sda", RUN+="x', 'is not a kernel block device name'),
    ('sd*', 'is not a kernel block device name'), ('nvme 0n1', 'is not a kernel block device name'),
    ('/dev/sda"', 'is not a kernel block device name'), ('x' * 33, 'at most 32'),
    ('sda\n', 'contains a newline'), ('/dev/disk/by-id/x\x1b[2J', 'contains a newline'),
])
def test_device_name_that_could_break_the_udev_rule_refused(host, dev, why):
    refused(host, {'device': [dev], 'scheduler': 'none'}, 'device', why)


def test_second_device_bad_name_first_not_written(host):
    refused(host, {'device': ['vda', 'sdb", RUN+="/bin/sh'], 'scheduler': 'mq-deadline', 'read_ahead_kb': 4096},
            'is not a kernel block device name')


def test_by_id_link_to_a_name_with_a_quote_refused(host):
    os.symlink('../../sd"a', host.path('/dev/disk/by-id/evil'))
    refused(host, {'device': ['/dev/disk/by-id/evil'], 'scheduler': 'none'}, 'is not a kernel block device name')


def test_by_link_with_odd_characters_refused(host):
    refused(host, {'device': ['/dev/disk/by-id/a"b'], 'scheduler': 'none'}, '/dev/disk/by-<kind>/<name>')


@pytest.mark.parametrize('sched', ['mq-deadline"', 'bfq\nRUN+="x"', 'x' * 10240])
def test_bad_scheduler_name_refused(host, sched):
    refused(host, {'pattern': 'nvme*n1', 'scheduler': sched}, 'scheduler', 'is not an I/O scheduler name')


def test_no_modprobe_before_a_later_refusal(host):
    # kyber must be loaded for vda, but the state dir is unusable: refused before modprobe runs
    host.file('/var/lib/medai-llmhost/originals.json', '{')
    assert_refused(lambda a, **kw: run_module(io_scheduler, a, **kw), host,
                   {'device': ['vda'], 'scheduler': 'kyber', 'load_module': True}, 'originals.json is not valid JSON',
                   bins={'modprobe': '/sbin/modprobe', 'udevadm': '/usr/bin/udevadm'})


def test_modprobe_after_validation(host):
    calls = []
    res = run({'device': ['vda'], 'scheduler': 'kyber', 'load_module': True},
              bins={'modprobe': '/sbin/modprobe', 'udevadm': '/usr/bin/udevadm'}, calls=calls)
    # the fake kernel does not gain kyber: the module is loaded, then the device is found still without it
    assert res['failed'] and 'still does not offer scheduler kyber after modprobe kyber-iosched' in res['msg']
    assert calls == [['/sbin/modprobe', 'kyber-iosched']]
    assert host.writes == [] and not os.path.exists(host.path(RULES))


def test_einval_message_names_the_short_path(host):
    res = run({'device': ['vda', 'sda'], 'scheduler': 'none', 'nr_requests': 1024})
    assert res['failed'] and len(res['msg']) <= 300
    assert res['msg'].startswith("the kernel rejected '1024' for /sys/block/sda/queue/nr_requests (EINVAL)")
    assert '/sys/devices/' not in res['msg']
    assert res['details']['resolved_path'] == host.devs['sda'][0] + '/queue/nr_requests'
    assert len(res['details']['restored']) == 3
