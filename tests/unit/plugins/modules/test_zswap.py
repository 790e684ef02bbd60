# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import errno
import os

import pytest

from ansible_collections.medai.llmhost.plugins.modules import zswap
from ansible_collections.medai.llmhost.tests.unit.fake_trees import layout_zswap, layout_vm_sysctls
from ansible_collections.medai.llmhost.tests.unit.plugins.modules.knob_module_helpers import (
    assert_refused, run_module, snapshot, journal, originals)

P = '/sys/module/zswap/parameters/'
TMPF = '/etc/tmpfiles.d/medai-llmhost.conf'
GRUB = '/etc/default/grub.d/90-medai-llmhost.cfg'
NOSWAP = 'no swap is active (/proc/swaps lists none)'


@pytest.fixture
def k612(fake):
    """6.12 kernel: has shrinker_enabled; a swap file is active."""
    fake.release = '6.12.9-amd64'
    layout_zswap(fake, with_newer=True)
    layout_vm_sysctls(fake)
    fake.file('/proc/swaps', 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n'
                             '/swapfile                               file\t\t16777212\t0\t\t-2\n')
    return fake


@pytest.fixture
def k510(fake):
    """5.10 kernel: no shrinker_enabled; no swap."""
    fake.release = '5.10.0-30-amd64'
    layout_zswap(fake)
    layout_vm_sysctls(fake)
    return fake


def run(args, **kw):
    return run_module(zswap, args, **kw)


def test_enable_order_persist_and_idempotent(k612):
    args = {'enabled': True, 'compressor': 'lz4', 'zpool': 'zsmalloc', 'max_pool_percent': 25}
    res = run(args)
    assert res['changed'] is True, res
    assert res['zswap'] == {'enabled': True, 'compressor': 'lz4', 'zpool': 'zsmalloc', 'max_pool_percent': 25,
                            'accept_threshold_percent': 90, 'shrinker_enabled': False}
    assert res['swap_active'] is True and res['warnings'] == []
    # compressor and zpool are written before enabled
    assert [w[0].rsplit('/', 1)[-1] for w in k612.writes] == ['compressor', 'zpool', 'max_pool_percent', 'enabled']
    assert k612.read(P + 'enabled') == 'Y\n' and k612.read(P + 'compressor') == 'lz4\n'
    assert k612.read(TMPF).splitlines()[1:] == [
        'w %scompressor - - - - lz4' % P, 'w %szpool - - - - zsmalloc' % P,
        'w %smax_pool_percent - - - - 25' % P, 'w %senabled - - - - Y' % P]
    assert res['persist_changed'] == [TMPF]
    assert [(x['name'], x['before'], x['after']) for x in res['params']] == [
        ('compressor', 'lzo', 'lz4'), ('zpool', 'zbud', 'zsmalloc'), ('max_pool_percent', '20', '25'),
        ('enabled', 'N', 'Y')]
    assert originals(k612)['knob:' + P + 'enabled']['original'] == 'N'
    assert [(e['action'], e.get('before'), e.get('after')) for e in journal(k612)][:4] == [
        ('set', 'lzo', 'lz4'), ('set', 'zbud', 'zsmalloc'), ('set', '20', '25'), ('set', 'N', 'Y')]
    again = run(args)
    assert again['changed'] is False and again['persist_changed'] == []
    assert len(k612.writes) == 4


def test_bool_compare_y_n(k612):
    k612.file(P + 'enabled', 'Y')
    res = run({'enabled': True, 'persist': 'none'})
    assert res['changed'] is False and k612.writes == []
    res = run({'enabled': False, 'shrinker_enabled': True, 'persist': 'none'})
    assert res['changed'] and k612.read(P + 'enabled') == 'N\n' and k612.read(P + 'shrinker_enabled') == 'Y\n'
    assert res['zswap']['enabled'] is False and res['zswap']['shrinker_enabled'] is True


def test_check_mode_writes_nothing(k612):
    before = snapshot(k612.root)
    res = run({'enabled': True, 'compressor': 'zstd', 'persist': 'tmpfiles'}, check_mode=True)
    assert res['changed'] and res['zswap']['enabled'] is True and res['zswap']['compressor'] == 'zstd'
    assert snapshot(k612.root) == before and k612.writes == []
    assert journal(k612) == [] and originals(k612) == {}
    assert res['diff'][0]['before'].startswith('accept_threshold_percent = 90\ncompressor = lzo\nenabled = N\n')
    assert 'compressor = zstd\nenabled = Y\n' in res['diff'][0]['after']
    assert res['diff'][1]['after'].endswith('w %scompressor - - - - zstd\nw %senabled - - - - Y\n' % (P, P))


def test_compressor_not_in_crypto(k612):
    res = run({'enabled': True, 'compressor': 'lz4hc'})
    assert res['failed']
    assert res['msg'] == ("compressor 'lz4hc' is not a compression algorithm in /proc/crypto on this kernel "
                          '(6.12.9-amd64); available: deflate, lz4, lzo, lzo-rle, zstd (nor a loadable crypto-lz4hc '
                          'module in /lib/modules/6.12.9-amd64/modules.alias)')
    assert k612.writes == [] and not os.path.exists(k612.path(TMPF))
    # crc32c is in /proc/crypto but is a hash, not a compressor
    assert 'not a compression algorithm' in run({'compressor': 'crc32c'})['msg']
    # driver names are accepted too
    assert run({'compressor': 'lz4-generic', 'persist': 'none'})['changed'] is True


def test_compressor_loadable_module_accepted(k612):
    """Not loaded yet (absent from /proc/crypto) but the kernel can load it on demand."""
    k612.file('/lib/modules/6.12.9-amd64/modules.alias',
              'alias crypto-lz4hc lz4hc\nalias crypto-lz4hc-generic lz4hc\nalias crypto-842 842\n')
    res = run({'compressor': 'lz4hc', 'persist': 'none'})
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True and k612.read('/sys/module/zswap/parameters/compressor') == 'lz4hc\n'
    # a name that is only a prefix of an alias is not enough
    assert run({'compressor': 'lz4h', 'persist': 'none'})['failed']


def test_missing_param_on_510(k510):
    res = run({'enabled': True, 'shrinker_enabled': True})
    assert res['failed']
    assert res['msg'] == 'zswap parameter shrinker_enabled is not available on this kernel (5.10.0-30-amd64) (added in 6.8)'
    assert k510.writes == []
    res = run({'enabled': True, 'compressor': 'lz4'})
    assert not res.get('failed') and 'shrinker_enabled' not in res['zswap']


def test_no_zswap_at_all(fake):
    layout_vm_sysctls(fake)
    res = run({'enabled': True})
    assert res['failed'] and res['msg'].startswith('zswap is not available on this kernel (6.1.0-28-amd64)')


def test_warns_without_swap(k510):
    res = run({'enabled': True, 'persist': 'none'})
    assert res['swap_active'] is False
    assert any(w.startswith(NOSWAP) for w in res['warnings'])
    res = run({'enabled': False, 'persist': 'none'})
    assert not any(w.startswith(NOSWAP) for w in res['warnings'])


@pytest.mark.parametrize('args,msg', [
    ({'max_pool_percent': 101}, 'max_pool_percent must be between 0 and 100, got 101'),
    ({'accept_threshold_percent': -1}, 'accept_threshold_percent must be between 0 and 100, got -1'),
])
def test_percent_ranges(k612, args, msg):
    res = run(args)
    assert res['failed'] and res['msg'] == msg and k612.writes == []


def test_zpool_choices(k612):
    res = run({'zpool': 'zram'})
    assert res['failed'] and 'value of zpool must be one of: zbud, z3fold, zsmalloc' in res['msg']


def test_zpool_rejected_rolls_back(k612):
    def no_z3fold(value):
        raise OSError(errno.ENOENT, 'No such file or directory')
    k612.hooks[k612.path(P + 'zpool')] = no_z3fold
    res = run({'compressor': 'zstd', 'zpool': 'z3fold', 'enabled': True})
    assert res['failed']
    assert res['msg'].startswith("writing zpool 'z3fold' was rejected (6.12.9-amd64): the kernel has no zpool allocator 'z3fold'")
    assert 'nothing left half-applied: restored %scompressor=lzo' % P in res['msg']
    assert k612.read(P + 'compressor') == 'lzo\n' and k612.read(P + 'enabled') == 'N\n'
    assert not os.path.exists(k612.path(TMPF))


def test_einval_second_param_first_restored(k612):
    k612.set_range(P + 'max_pool_percent', 0, 50)
    res = run({'compressor': 'lz4', 'max_pool_percent': 80})
    assert res['failed'] and "the kernel rejected '80'" in res['msg'] and '(EINVAL)' in res['msg']
    assert k612.read(P + 'compressor') == 'lzo\n' and k612.read(P + 'max_pool_percent') == '20\n'


def test_persist_cmdline(k612):
    calls = []
    k612.file(TMPF, 'w %senabled - - - - N\nw /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise\n' % P)
    res = run({'enabled': True, 'compressor': 'lz4', 'persist': 'cmdline'},
              bins={'update-grub': '/usr/sbin/update-grub'},
              run_command=lambda cmd: calls.append(cmd) or (0, '', ''))
    assert res['reboot_required'] is True and calls == [['/usr/sbin/update-grub']]
    assert 'zswap.compressor=lz4 zswap.enabled=1' in k612.read(GRUB)
    # the same parameter is no longer set by tmpfiles; foreign lines stay
    assert k612.read(TMPF).splitlines()[-1] == 'w /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise'
    assert 'zswap' not in k612.read(TMPF)
    assert sorted(res['persist_changed']) == sorted([TMPF, GRUB])
    # switching back to tmpfiles removes the command-line parameters
    calls[:] = []
    res = run({'enabled': True, 'compressor': 'lz4', 'persist': 'tmpfiles'},
              bins={'update-grub': '/usr/sbin/update-grub'},
              run_command=lambda cmd: calls.append(cmd) or (0, '', ''))
    assert not os.path.exists(k612.path(GRUB)) and calls == [['/usr/sbin/update-grub']]
    assert 'w %senabled - - - - Y' % P in k612.read(TMPF)


def test_absent_restores(k612):
    run({'enabled': True, 'compressor': 'zstd', 'max_pool_percent': 30})
    res = run({'state': 'absent'})
    assert res['changed']
    assert [(x['name'], x['before'], x['after']) for x in res['params']] == [
        ('compressor', 'zstd', 'lzo'), ('max_pool_percent', '30', '20'), ('enabled', 'Y', 'N')]
    assert k612.read(P + 'enabled') == 'N\n' and k612.read(P + 'compressor') == 'lzo\n'
    assert not os.path.exists(k612.path(TMPF))
    assert originals(k612) == {}
    again = run({'state': 'absent'})
    assert again['changed'] is False
    assert again['warnings'] == ['no original zswap values recorded: the running values were left as they are']


def test_absent_check_mode(k612):
    run({'enabled': True})
    before = snapshot(k612.root)
    res = run({'state': 'absent'}, check_mode=True)
    assert res['changed'] and res['zswap']['enabled'] is False
    assert snapshot(k612.root) == before


# ---------------------------------------------------------------- bad input (issue 14): refused, nothing written

@pytest.mark.parametrize('compressor', ['lz4";reboot;"', 'lz4\nenabled=1', 'lz4 hc', '$(id)', 'x' * 10240])
@pytest.mark.parametrize('persist', ['tmpfiles', 'cmdline', 'none'])
def test_bad_compressor_name_refused(k612, compressor, persist):
    os.unlink(k612.path('/proc/crypto'))    # not even the /proc/crypto check stands between it and the files
    assert_refused(run, k612, {'enabled': True, 'compressor': compressor, 'persist': persist},
                   'compressor', 'is not a crypto algorithm name')


def test_second_param_bad_first_not_written(k612):
    assert_refused(run, k612, {'compressor': 'lz4', 'accept_threshold_percent': 150},
                   'accept_threshold_percent must be between 0 and 100, got 150')


def test_corrupt_originals_refused_before_the_first_write(k612):
    k612.file('/var/lib/medai-llmhost/originals.json', '[')
    assert_refused(run, k612, {'enabled': True}, 'originals.json is not valid JSON')
