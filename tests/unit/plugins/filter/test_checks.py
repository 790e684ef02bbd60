# -*- coding: utf-8 -*-
"""The roles' input checks (plugins/filter/checks.py): good inputs pass, bad ones give one bounded line naming
the variable and the value, secrets are never shown, and the role's failure is one line of at most 300 chars."""
from __future__ import absolute_import, division, print_function

import pytest

from ansible_collections.medai.llmhost.plugins.filter import checks as ck

LONG = 'x' * 10000


def one_bounded_line(msg):
    assert '\n' not in msg and '\r' not in msg and len(msg) <= 300, msg
    return msg


@pytest.mark.parametrize('name', ['vllm', 'vllm-b', 'llm_2', 'vllm.gpu0', 'a' * 200])
def test_unit_name_good(name):
    assert ck.unit_name_problems(name, 'vllm_instance') == []


@pytest.mark.parametrize('name', ['../etc/x', 'a/b', '..', 'a..b', '', None, '-x', '.hidden', 'vllm\nExecStartPre=/x',
                                  'a b', 'a' * 201, 'x"y', LONG])
def test_unit_name_bad(name):
    out = ck.unit_name_problems(name, 'vllm_instance')
    assert len(out) == 1 and out[0].startswith('vllm_instance ')
    one_bounded_line(out[0])


def test_value_is_escaped_and_cut():
    out = ck.unit_name_problems('a\nb' + LONG, 'vllm_instance')[0]
    assert "'a\\nb" in out and '(10003 chars)' in out
    one_bounded_line(out)


@pytest.mark.parametrize('path', ['/var/lib/vllm/cache', '/data/models', '/data/models/cache', '/srv/models',
                                  '/var/lib/vllm', '/opt/vllm/cache', '/home/vllm/cache'])
def test_dir_good(path):
    assert ck.dir_problems(path, 'vllm_cache_dir') == []


@pytest.mark.parametrize('path,why', [
    ('/', 'system directory'), ('/etc', 'system directory'), ('/usr', 'system directory'),
    ('/boot', 'system directory'), ('/bin', 'system directory'), ('/sbin', 'system directory'),
    ('/lib', 'system directory'), ('/lib64', 'system directory'), ('/libx32', 'system directory'),
    ('/dev', 'system directory'), ('/proc', 'system directory'), ('/sys', 'system directory'),
    ('/run', 'system directory'), ('/var', 'system directory'), ('/root', 'system directory'),
    ('/home', 'system directory'), ('/tmp', 'system directory'), ('/var/lib', 'system directory'),
    ('/usr/local', 'system directory'), ('/etc/vllm', 'system directory'), ('/sys/kernel/x', 'system directory'),
    ('/tmp/cache', 'system directory'), ('/run/vllm', 'system directory'),
    ('/srv', 'shared top-level'), ('/opt', 'shared top-level'),
    ('relative/dir', 'absolute'), ('/data/../etc', 'normalized'), ('/data/models/', 'normalized'),
    ('//data', 'normalized'), ('/data/./m', 'normalized'), ('/data/a b', 'absolute'), ('/data/a:b', 'absolute'),
    ('/data/\nx', 'absolute'), ('', 'absolute'), (None, 'absolute'),
])
def test_dir_bad(path, why):
    out = ck.dir_problems(path, 'vllm_cache_dir')
    assert len(out) == 1 and why in out[0] and out[0].startswith('vllm_cache_dir '), out
    one_bounded_line(out[0])


def test_dir_options():
    assert ck.dir_problems('', 'storage_model_cache_dir', optional=True) == []
    assert ck.dir_problems('/srv', 'mountpoint', owned=False) == []
    assert ck.dir_problems('/etc/vllm', 'vllm_env_dir', config=True) == []
    assert ck.dir_problems('/etc', 'vllm_env_dir', config=True)


@pytest.mark.parametrize('args,flag,hint', [
    (['--api-key', 'sk-SECRET'], '--api-key', 'vllm_api_key'),
    (['--api-key=sk-SECRET'], '--api-key', 'vllm_api_key'),
    (['--hf-token=hf_SECRET'], '--hf-token', 'vllm_hf_token'),
    (['--some-secret=SECRET'], '--some-secret', 'environment file'),
    (['--db-password', 'SECRET'], '--db-password', 'environment file'),
])
def test_secret_flags_refused_without_showing_the_secret(args, flag, hint):
    out = ck.secret_flag_problems(args, 'vllm_extra_args')
    assert len(out) == 1 and flag in out[0] and hint in out[0] and 'SECRET' not in out[0], out
    one_bounded_line(out[0])


def test_non_secret_flags_pass():
    args = ['--max-num-batched-tokens', '8192', '--long-prefill-token-threshold=512', '--tokenizer-mode', 'auto',
            '--return-tokens-as-token-ids', '--enable-chunked-prefill', 'api-key']
    assert ck.secret_flag_problems(args, 'vllm_extra_args') == []


def test_problems_line():
    assert ck.problems_line([]) == ''
    assert ck.problems_line(['a: x'], 'vllm') == 'vllm: a: x'
    assert ck.problems_line(['a', 'b'], 'r') == 'r: a; b'
    many = ['problem %d %s' % (i, 'y' * 60) for i in range(20)]
    line = one_bounded_line(ck.problems_line(many, 'storage'))
    assert line.startswith('storage: problem 0 ') and line.endswith('more)')
    assert line.count('problem ') + int(line.rsplit('(+', 1)[1].split()[0]) == 20
    one_bounded_line(ck.problems_line([LONG + '\nx'], 'r'))


VLLM_OK = {'vllm_instance': 'vllm', 'vllm_slice': '', 'vllm_cache_dir': '/var/lib/vllm/cache', 'vllm_home': '/var/lib/vllm',
           'vllm_env_dir': '/etc/vllm', 'vllm_user': 'vllm', 'vllm_extra_args': ['--max-num-batched-tokens', '8192'],
           'vllm_model': 'baichuan-inc/Baichuan-M2-32B-GPTQ-Int4', 'vllm_served_model_name': '',
           'vllm_systemd_extra_settings': {'ProtectHome': 'yes'}}


def test_vllm_defaults_pass():
    assert ck.vllm_problems(VLLM_OK) == []
    assert ck.vllm_problems(dict(VLLM_OK, vllm_slice='llminference.slice')) == []


@pytest.mark.parametrize('key,value,expect', [
    ('vllm_instance', '../x', 'vllm_instance'), ('vllm_cache_dir', '/etc', 'vllm_cache_dir'),
    ('vllm_cache_dir', '/var/lib/../../etc', 'vllm_cache_dir'), ('vllm_slice', 'x.service', 'vllm_slice'),
    ('vllm_slice', '../a.slice', 'vllm_slice'), ('vllm_user', 'root;x', 'vllm_user'),
    ('vllm_extra_args', ['--api-key', 'k'], 'vllm_api_key'), ('vllm_extra_args', ['--x\nExecStartPre=/bin/sh'], 'vllm_extra_args[0]'),
    ('vllm_model', 'm\nExecStartPre=/x', 'vllm[vllm_model]'),
    ('vllm_systemd_extra_settings', {'X\nY': '1'}, 'vllm_systemd_extra_settings'),
    ('vllm_systemd_extra_settings', {'ProtectHome': 'yes\nExecStartPre=/x'}, 'vllm_systemd_extra_settings[ProtectHome]'),
])
def test_vllm_bad(key, value, expect):
    out = ck.vllm_problems(dict(VLLM_OK, **{key: value}))
    assert out and expect in out[0], out
    for p in out:
        one_bounded_line(p)


MEMORY_OK = {'memory_thp_enabled': 'madvise', 'memory_thp_defrag': 'madvise', 'memory_zswap_zpool': None,
             'memory_zswap_compressor': 'lzo-rle', 'memory_zswap_max_pool_percent': 20,
             'memory_zswap_accept_threshold_percent': None, 'memory_watermark_scale_factor': 200,
             'memory_watermark_boost_factor': None, 'memory_min_free_kbytes': None, 'memory_swappiness': 10,
             'memory_swapfile_size_mb': 0, 'memory_swapfile_path': '/swapfile', 'memory_swapfile_priority': None,
             'memory_sysctl_extra': {'vm.dirty_ratio': 10}, 'swapfile_found': 'absent'}


def test_memory_defaults_pass():
    assert ck.memory_problems(MEMORY_OK) == []
    assert ck.memory_problems(dict(MEMORY_OK, swapfile_found='file swap', memory_swapfile_path='/var/swapfile')) == []


@pytest.mark.parametrize('key,value,expect', [
    ('memory_thp_enabled', 'sometimes', 'memory_thp_enabled'), ('memory_thp_defrag', LONG, '(10000 chars)'),
    ('memory_zswap_compressor', 'lz4\nx', 'memory_zswap_compressor'), ('memory_zswap_compressor', '../x', 'compression'),
    ('memory_zswap_max_pool_percent', 0, '1-100'), ('memory_zswap_max_pool_percent', 'abc', '1-100'),
    ('memory_zswap_max_pool_percent', True, '1-100'), ('memory_watermark_scale_factor', 3001, '1-3000'),
    ('memory_min_free_kbytes', 1, '>= 128'), ('memory_swappiness', 201, '0-200'),
    ('memory_swapfile_size_mb', -1, 'memory_swapfile_size_mb'), ('memory_swapfile_priority', 40000, '-1-32767'),
    ('memory_swapfile_path', '/etc/swap', 'system directory'), ('memory_swapfile_path', 'swap', 'absolute'),
    ('memory_swapfile_path', '/a/../swap', 'normalized'), ('swapfile_found', 'symlink', 'not a regular file'),
    ('swapfile_found', 'file xfs', 'found: xfs'), ('swapfile_found', 'file ', 'found: none'),
    ('memory_sysctl_extra', {'VM DIRTY': 1}, 'bad sysctl name'), ('memory_sysctl_extra', {'vm.x': '1\n2'}, 'one line'),
])
def test_memory_bad(key, value, expect):
    out = ck.memory_problems(dict(MEMORY_OK, **{key: value}))
    assert len(out) == 1 and expect in out[0], out
    one_bounded_line(out[0])


STORAGE_OK = {'storage_devices': [{'device': 'nvme0n1', 'scheduler': 'none', 'nr_requests': 1023},
                                  {'device': ['/dev/disk/by-id/nvme-X', 'vdb']},
                                  {'pattern': 'nvme*n1', 'rotational': False, 'read_ahead_kb': 4096}],
              'storage_xfs_volumes': [{'device': '/dev/disk/by-id/nvme-X', 'mountpoint': '/srv/models', 'mode': '0755'}],
              'storage_model_cache_dir': '/srv/models/cache', 'storage_model_cache_subdirs': ['huggingface', 'vllm'],
              'storage_model_cache_owner': 'vllm', 'storage_model_cache_group': 'vllm', 'storage_model_cache_mode': '0755'}


def test_storage_defaults_pass():
    assert ck.storage_problems(STORAGE_OK) == []
    assert ck.storage_problems({'storage_devices': [], 'storage_xfs_volumes': [], 'storage_model_cache_dir': '',
                                'storage_model_cache_subdirs': [], 'storage_model_cache_mode': '0755'}) == []


@pytest.mark.parametrize('change,expect', [
    ({'storage_devices': [{'scheduler': 'none'}]}, 'device or pattern'),
    ({'storage_devices': [{'device': 'a', 'pattern': 'b'}]}, 'device or pattern'),
    ({'storage_devices': [{'device': 'a', 'colour': 'b'}]}, 'unknown key'),
    ({'storage_devices': [{'pattern': 'nvme*", RUN+="/bin/sh'}]}, 'storage_devices[0].pattern'),
    ({'storage_devices': [{'device': '../../x'}]}, 'storage_devices[0].device'),
    ({'storage_devices': [{'device': 'vdb', 'scheduler': 'none"x'}]}, 'storage_devices[0].scheduler'),
    ({'storage_devices': [{'device': 'vdb', 'nr_requests': 4294967296}]}, 'storage_devices[0].nr_requests'),
    ({'storage_devices': ['vdb']}, 'must be a dict'),
    ({'storage_xfs_volumes': [{'device': '/dev/vdb'}]}, 'needs a mountpoint'),
    ({'storage_xfs_volumes': [{'device': 'vdb', 'mountpoint': '/srv/a'}]}, '/dev/... path'),
    ({'storage_xfs_volumes': [{'device': '/dev/vdb', 'mountpoint': '/var'}]}, 'system directory'),
    ({'storage_xfs_volumes': [{'device': '/dev/vdb', 'mountpoint': '/srv/a', 'mount_opts': 'noatime\n/dev/x'}]},
     'mount_opts'),
    ({'storage_xfs_volumes': [{'device': '/dev/vdb', 'mountpoint': '/srv/a', 'mode': 755}]}, 'octal'),
    ({'storage_xfs_volumes': [{'device': '/dev/vdb', 'mountpoint': '/srv/a'}, {'device': '/dev/vdc', 'mountpoint': '/srv/a'}]},
     'given twice'),
    ({'storage_model_cache_dir': '/etc'}, 'storage_model_cache_dir'),
    ({'storage_model_cache_dir': '/srv'}, 'shared top-level'),
    ({'storage_model_cache_subdirs': ['../x']}, 'storage_model_cache_subdirs'),
    ({'storage_model_cache_mode': '999'}, 'storage_model_cache_mode'),
    ({'storage_model_cache_owner': 'a b'}, 'storage_model_cache_owner'),
])
def test_storage_bad(change, expect):
    out = ck.storage_problems(dict(STORAGE_OK, **change))
    assert out and any(expect in p for p in out), out
    for p in out:
        one_bounded_line(p)


PROFILES_OK = {'profile_schedule_default': 'offpeak',
               'profile_schedule_windows': [{'profile': 'peak', 'start': '07:00', 'end': '19:00'},
                                            {'profile': 'offpeak', 'start': '22:00', 'end': '06:00'}],
               'profile_schedule_profiles': {
                   'peak': {'knobs': {'/proc/sys/vm/dirty_ratio': '10'}, 'sched': {'min_slice_ns': 3000000},
                            'block': {'nvme*n1': {'scheduler': 'mq-deadline', 'nr_requests': 512}}},
                   'offpeak': {'knobs': {'/proc/sys/vm/dirty_ratio': 20}}}}


def test_profile_schedule_defaults_pass():
    assert ck.profile_schedule_problems(PROFILES_OK) == []


def _profiles(**profile):
    return dict(PROFILES_OK, profile_schedule_profiles=dict(PROFILES_OK['profile_schedule_profiles'], peak=profile))


@pytest.mark.parametrize('v,expect', [
    (dict(PROFILES_OK, profile_schedule_default='lunch'), 'profile_schedule_default'),
    (dict(PROFILES_OK, profile_schedule_windows=[{'profile': 'peak', 'start': '7:00', 'end': '19:00'}]), 'HH:MM'),
    (dict(PROFILES_OK, profile_schedule_windows=[{'profile': 'peak', 'start': '24:00', 'end': '19:00'}]), 'HH:MM'),
    (dict(PROFILES_OK, profile_schedule_windows=[{'profile': 'x', 'start': '07:00', 'end': '19:00'}]), 'not one of'),
    (dict(PROFILES_OK, profile_schedule_windows=[{'profile': 'peak', 'start': '07:00', 'end': '07:00'}]), 'empty window'),
    (dict(PROFILES_OK, profile_schedule_windows=['peak']), 'must be a dict'),
    (_profiles(knobs={'/etc/passwd': '1'}), '/sys/... or /proc/sys/'),
    (_profiles(knobs={'/sys/../etc/x': '1'}), '/sys/... or /proc/sys/'),
    (_profiles(knobs={'/proc/sys/vm/x': '1\n2'}), 'one line'),
    (_profiles(knobs={'/proc/sys/vm/x': LONG}), '4096'),
    (_profiles(sched={'bogus_ns': 1}), 'unknown'),
    (_profiles(sched={'min_slice_ns': -1}), 'nanoseconds'),
    (_profiles(block={'nvme*", RUN+="x': {'scheduler': 'none'}}), 'glob'),
    (_profiles(block={'nvme*': {'nr_requests': 0}}), 'positive'),
    (_profiles(block={'nvme*': {'rq_affinity': 2}}), 'unknown key'),
    (_profiles(cpus={'x': 1}), 'unknown key'),
    (dict(PROFILES_OK, profile_schedule_profiles=['peak']), 'dict of named profiles'),
])
def test_profile_schedule_bad(v, expect):
    out = ck.profile_schedule_problems(v)
    assert out and any(expect in p for p in out), out
    for p in out:
        one_bounded_line(p)


def test_failed_results():
    registered = {
        'knob': {'results': [{'failed': True, 'msg': 'gone\nreally', '_ansible_item_label': '/proc/sys/vm/x'},
                             {'changed': True, 'item': '/proc/sys/vm/y'}]},
        'cpuset': {'failed': True, 'msg': LONG},
        'stop unit': {'skipped': True},
        'grub': None,
        'update-grub': {'failed': True, 'rc': 2, 'stderr': 'no grub'},
    }
    out = ck.failed_results(registered)
    assert out[0].startswith('cpuset: xxx') and len(out[0]) <= 200
    assert out[1] == 'knob /proc/sys/vm/x: gone\\nreally'
    assert out[2] == 'update-grub: no grub'
    assert len(out) == 3


def test_filters_registered():
    assert set(ck.FilterModule().filters()) >= {'problems_line', 'failed_results', 'storage_problems', 'memory_problems',
                                                'vllm_problems', 'profile_schedule_problems'}


def test_a_trailing_newline_does_not_slip_through_the_name_patterns():
    from ansible_collections.medai.llmhost.plugins.filter import checks
    for pattern, good in ((checks._UNIT_NAME_RE, 'vllm'), (checks._HHMM_RE, '07:00'), (checks._PROFILE_NAME_RE, 'peak'),
                          (checks._DEVICE_GLOB_RE, 'nvme*n1'), (checks._SCHEDULER_RE, 'mq-deadline')):
        assert pattern.match(good) and not pattern.match(good + '\n')


def test_vllm_port_out_of_range_is_refused_before_anything():
    from ansible_collections.medai.llmhost.plugins.filter.checks import vllm_problems
    base = {'vllm_instance': 'vllm', 'vllm_cache_dir': '/data/models/cache', 'vllm_home': '/var/lib/vllm',
            'vllm_env_dir': '/etc/vllm', 'vllm_user': 'vllm', 'vllm_extra_args': []}
    assert not [p for p in vllm_problems(dict(base, vllm_port=8000)) if 'vllm_port' in p]
    for port in (70000, 0, 'http'):
        assert [p for p in vllm_problems(dict(base, vllm_port=port)) if p.startswith('vllm_port') and '1-65535' in p]


def test_an_action_file_in_a_profile_is_refused():
    from ansible_collections.medai.llmhost.plugins.filter.checks import _profile_problems
    out = _profile_problems('peak', {'knobs': {'/sys/power/state': 'mem', '/proc/sys/vm/dirty_ratio': '10'}})
    assert len(out) == 1 and '/sys/power/state' in out[0] and 'action file' in out[0]


def test_regex_problems():
    from ansible_collections.medai.llmhost.plugins.filter.checks import regex_problems
    assert regex_problems(['^EngineCore', 'x.*'], 'v') == []
    out = regex_problems(['(['], 'scheduling_units[].thread_regex')
    assert len(out) == 1 and out[0].startswith("scheduling_units[].thread_regex '(['") and len(out[0]) <= 300


def test_a_trailing_newline_does_not_slip_through_the_inline_patterns():
    from ansible_collections.medai.llmhost.plugins.filter.checks import vllm_problems
    base = {'vllm_instance': 'vllm', 'vllm_cache_dir': '/data/models/cache', 'vllm_home': '/var/lib/vllm',
            'vllm_env_dir': '/etc/vllm', 'vllm_extra_args': [], 'vllm_port': 8000}
    assert not [p for p in vllm_problems(dict(base, vllm_user='vllm')) if p.startswith('vllm_user')]
    assert [p for p in vllm_problems(dict(base, vllm_user='vllm\n')) if p.startswith('vllm_user')]
