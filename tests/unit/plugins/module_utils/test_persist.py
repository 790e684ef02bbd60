# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import os

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import knob, persist

HDR = persist.HEADER
GRUB = persist.GRUB_DROPIN


class FakeModule(object):
    def __init__(self, bins=None, rc=0, err=''):
        self.bins = bins or {}
        self.calls = []
        self.warnings = []
        self.rc = rc
        self.err = err

    def get_bin_path(self, name, required=False):
        return self.bins.get(name)

    def run_command(self, cmd):
        self.calls.append(cmd)
        return self.rc, '', self.err

    def warn(self, msg):
        self.warnings.append(msg)


def test_managed_lines_keep_foreign_and_replace_own(fake):
    fake.file(persist.SYSCTL_FILE, '# site tuning\nnet.core.somaxconn = 4096\nvm.swappiness=30\nvm.swappiness = 40\n')
    f = persist.sysctl_file()
    assert f.keys() == ['net.core.somaxconn', 'vm.swappiness', 'vm.swappiness']
    f.set('vm.swappiness', persist.sysctl_line('vm.swappiness', 10))
    f.set('vm.watermark_scale_factor', persist.sysctl_line('vm.watermark_scale_factor', 200))
    changed, diff = f.commit()
    assert changed and diff['before'].startswith('# site tuning')
    assert fake.read(persist.SYSCTL_FILE) == (HDR + '# site tuning\nnet.core.somaxconn = 4096\nvm.swappiness = 10\n'
                                              'vm.watermark_scale_factor = 200\n')
    # idempotent
    assert persist.sysctl_file().commit() == (False, None)


def test_managed_lines_remove_own(fake):
    fake.file(persist.TMPFILES_FILE, 'd /run/foo 0755 root root -\nw /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise\n')
    f = persist.tmpfiles_file()
    assert f.keys() == ['/sys/kernel/mm/transparent_hugepage/enabled']
    f.remove('/sys/kernel/mm/transparent_hugepage/enabled')
    changed, diff = f.commit()
    assert changed and diff['after'] == 'd /run/foo 0755 root root -\n'
    assert fake.read(persist.TMPFILES_FILE) == 'd /run/foo 0755 root root -\n'


def test_managed_lines_file_removed_when_empty(fake):
    f = persist.tmpfiles_file()
    f.set('/sys/x', persist.tmpfiles_line('/sys/x', 1))
    f.commit()
    assert fake.read(persist.TMPFILES_FILE) == HDR + 'w /sys/x - - - - 1\n'
    g = persist.tmpfiles_file()
    g.remove('/sys/x')
    assert g.commit()[0] is True
    assert not os.path.exists(fake.path(persist.TMPFILES_FILE))


def test_managed_lines_check_mode(fake):
    f = persist.sysctl_file()
    f.set('vm.swappiness', 'vm.swappiness = 10')
    changed, diff = f.commit(check_mode=True)
    assert changed and diff == {'before_header': persist.SYSCTL_FILE, 'after_header': persist.SYSCTL_FILE,
                                'before': '', 'after': HDR + 'vm.swappiness = 10\n'}
    assert not os.path.exists(fake.path(persist.SYSCTL_FILE))


@pytest.mark.parametrize('line,key', [
    ('vm.swappiness = 10', 'vm.swappiness'),
    ('-net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.all.rp_filter'),
    ('vm/swappiness = 10', 'vm.swappiness'),
    ('# vm.swappiness = 10', None),
    ('; comment', None),
    ('', None),
])
def test_sysctl_key(line, key):
    assert persist._sysctl_key(line) == key


@pytest.mark.parametrize('line,key', [
    ('w /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise', '/sys/kernel/mm/transparent_hugepage/enabled'),
    ('w+ /sys/x - - - - 1', '/sys/x'),
    ('d /run/foo 0755 root root -', None),
    ('# w /sys/x - - - - 1', None),
])
def test_tmpfiles_key(line, key):
    assert persist._tmpfiles_key(line) == key


def test_tmpfiles_line():
    assert persist.tmpfiles_line('/sys/kernel/mm/transparent_hugepage/enabled', 'madvise') == \
        'w /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise'
    with pytest.raises(knob.KnobError):
        persist.tmpfiles_line('/sys/a b', '1')


def test_udev_key():
    line = ('ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="nvme*n1", ATTR{queue/rotational}=="0", '
            'ATTR{queue/scheduler}="none"')
    assert persist._udev_key(line) == \
        'ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="nvme*n1", ATTR{queue/rotational}=="0"'
    assert persist._udev_key('# comment KERNEL=="sda"') is None
    f = persist.udev_file('/etc/udev/rules.d/60-x.rules')
    f.set('ACTION=="add|change", KERNEL=="sda"', 'ACTION=="add|change", KERNEL=="sda", ATTR{queue/scheduler}="bfq"')
    f.set('ACTION=="add|change", KERNEL=="sda"', 'ACTION=="add|change", KERNEL=="sda", ATTR{queue/scheduler}="none"')
    assert f.lines == ['ACTION=="add|change", KERNEL=="sda", ATTR{queue/scheduler}="none"']


def test_cmdline_param_for():
    assert persist.cmdline_param_for('/sys/module/zswap/parameters/enabled') == 'zswap.enabled'
    assert persist.cmdline_param_for('/sys/kernel/mm/transparent_hugepage/enabled') == 'transparent_hugepage'
    assert persist.cmdline_param_for('/sys/kernel/mm/transparent_hugepage/defrag') is None
    assert persist.cmdline_param_for('/proc/sys/vm/swappiness') is None


def test_parse_format_cmdline():
    p = persist.parse_cmdline('BOOT_IMAGE=/vmlinuz root=UUID=1 ro quiet zswap.enabled=1')
    assert p == {'BOOT_IMAGE': '/vmlinuz', 'root': 'UUID=1', 'ro': None, 'quiet': None, 'zswap.enabled': '1'}
    assert persist.format_cmdline({'a': '1', 'quiet': None}) == 'a=1 quiet'


def test_set_cmdline_update_grub(fake):
    fake.file('/proc/cmdline', 'BOOT_IMAGE=/vmlinuz root=UUID=1 ro quiet', mode=0o444)
    m = FakeModule(bins={'update-grub': '/usr/sbin/update-grub'})
    res = persist.set_cmdline(m, {'zswap.enabled': '1', 'zswap.compressor': 'lz4'})
    assert res['changed'] and res['reboot_required'] and res['tool'] == 'update-grub'
    assert m.calls == [['/usr/sbin/update-grub']]
    assert fake.read(GRUB) == HDR + 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT zswap.enabled=1 zswap.compressor=lz4"\n'
    assert persist.read_grub_dropin() == {'zswap.enabled': '1', 'zswap.compressor': 'lz4'}
    # idempotent: no regeneration, reboot still pending (running cmdline differs)
    m2 = FakeModule(bins={'update-grub': '/usr/sbin/update-grub'})
    res = persist.set_cmdline(m2, {'zswap.enabled': '1'})
    assert res['changed'] is False and res['reboot_required'] is True and m2.calls == []
    # remove one key, then the last one (file removed)
    persist.set_cmdline(m2, remove_keys=['zswap.compressor'])
    assert 'compressor' not in fake.read(GRUB)
    persist.set_cmdline(m2, remove_keys=['zswap.enabled'])
    assert not os.path.exists(fake.path(GRUB))
    assert len(m2.calls) == 2


def test_set_cmdline_reboot_not_required_when_running(fake):
    fake.file('/proc/cmdline', 'ro quiet transparent_hugepage=madvise', mode=0o444)
    m = FakeModule(bins={'update-grub': '/usr/sbin/update-grub'})
    res = persist.set_cmdline(m, {'transparent_hugepage': 'madvise'})
    assert res['changed'] is True and res['reboot_required'] is False
    res = persist.set_cmdline(m, remove_keys=['transparent_hugepage'])
    assert res['reboot_required'] is True


def test_set_cmdline_grubby(fake):
    fake.file('/proc/cmdline', 'ro', mode=0o444)
    m = FakeModule(bins={'grubby': '/usr/sbin/grubby'})
    persist.set_cmdline(m, {'zswap.enabled': '1'})
    assert m.calls == [['/usr/sbin/grubby', '--update-kernel=ALL', '--args=zswap.enabled=1']]


def test_set_cmdline_check_mode_and_no_tool(fake):
    fake.file('/proc/cmdline', 'ro', mode=0o444)
    m = FakeModule(bins={'update-grub': '/usr/sbin/update-grub'})
    res = persist.set_cmdline(m, {'zswap.enabled': '1'}, check_mode=True)
    assert res['changed'] and res['diff']['after'].endswith('zswap.enabled=1"\n') and m.calls == []
    assert not os.path.exists(fake.path(GRUB))
    m = FakeModule()
    persist.set_cmdline(m, {'zswap.enabled': '1'})
    assert m.calls == [] and 'was not regenerated' in m.warnings[0]


def test_set_cmdline_tool_failure(fake):
    fake.file('/proc/cmdline', 'ro', mode=0o444)
    m = FakeModule(bins={'update-grub': '/usr/sbin/update-grub'}, rc=1, err='grub-mkconfig: error: boom\n')
    with pytest.raises(knob.KnobError) as e:
        persist.set_cmdline(m, {'zswap.enabled': '1'})
    assert 'update-grub failed (rc=1)' in e.value.msg and 'boom' in e.value.msg


def test_dropins(fake):
    changed, diff = persist.set_dropin('vllm.service', '50-medai', '[Service]\nCPUSchedulingPolicy=fifo\n')
    path = '/etc/systemd/system/vllm.service.d/50-medai.conf'
    assert changed and fake.read(path) == HDR + '[Service]\nCPUSchedulingPolicy=fifo\n'
    assert persist.set_dropin('vllm.service', '50-medai', '[Service]\nCPUSchedulingPolicy=fifo\n') == (False, None)
    assert persist.set_dropin('vllm.service', '50-medai', None)[0] is True
    assert not os.path.exists(fake.path(path))
    with pytest.raises(knob.KnobError):
        persist.dropin_path('../etc', 'x')


# ---------------------------------------------------------------- syntax checks of the line builders (issue 14)

def refusal(fn, *args):
    with pytest.raises(knob.KnobError) as e:
        fn(*args)
    assert e.value.kind == 'invalid' and '\n' not in e.value.msg and len(e.value.msg) <= 300
    return e.value.msg


def test_sysctl_line_ok():
    assert persist.sysctl_line('vm.swappiness', 10) == 'vm.swappiness = 10'
    assert persist.sysctl_line('net.ipv4.tcp_rmem', ' 4096  87380 6291456 ') == 'net.ipv4.tcp_rmem = 4096 87380 6291456'
    assert persist.sysctl_line('net.ipv4.conf.eth0/100.rp_filter', '1') == 'net.ipv4.conf.eth0/100.rp_filter = 1'
    # white space around the value (a YAML block scalar's final newline) is not part of it
    assert persist.sysctl_line('vm.swappiness', '10\n') == 'vm.swappiness = 10'


@pytest.mark.parametrize('value,why', [
    ('10\nkernel.sysrq = 1', 'newline'), ('1\r0', 'newline'), ('1\x1b[2J', 'control character'), ('1\t2', 'control'),
    ('', 'empty'), ('  ', 'empty'), ('x' * 10240 + '\n1', '(10242 chars)'),
])
def test_sysctl_value_refused(value, why):
    assert why in refusal(persist.sysctl_line, 'vm.swappiness', value)


@pytest.mark.parametrize('name', ['net.ipv4.conf.*.rp_filter', '-vm.swappiness', 'vm.x = 1\nvm', 'vm swappiness',
                                  'vm.a=b', '#vm.x', ''])
def test_sysctl_name_refused(name):
    assert 'not a sysctl name' in refusal(persist.sysctl_line, name, '1')


def test_tmpfiles_line_refusals():
    thp = '/sys/kernel/mm/transparent_hugepage/enabled'
    assert 'newline' in refusal(persist.tmpfiles_line, thp, 'madvise\nw /etc/shadow - - - - x')
    assert 'would expand %' in refusal(persist.tmpfiles_line, thp, '%H')
    assert 'would expand %' in refusal(persist.tmpfiles_line, thp, 'a\\nb')
    assert 'empty' in refusal(persist.tmpfiles_line, thp, '')
    for path in ('/sys/kernel/mm/a b', '/sys/block/*/queue/scheduler', '/sys/x"y', 'sys/x', '/sys/%m', '/sys/x\n'):
        assert 'must be absolute, without white space' in refusal(persist.tmpfiles_line, path, '1')


def test_udev_rule_ok():
    assigns = [('queue/scheduler', 'none'), ('queue/read_ahead_kb', 4096)]
    match, line = persist.udev_rule('nvme*n1', [('queue/rotational', 0)], assigns)
    assert match == 'ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="nvme*n1", ATTR{queue/rotational}=="0"'
    assert line == match + ', ATTR{queue/scheduler}="none", ATTR{queue/read_ahead_kb}="4096"'
    assert persist._udev_key(line) == match


@pytest.mark.parametrize('kernel', ['sd*", RUN+="/bin/sh', 'sd*,RUN+=x', 'sd a', 'sda\n', 'sda|sdb', '../sda',
                                    'sd"', '', 'x' * 129, 'sd{a}', 'sda$'])
def test_udev_kernel_refused(kernel):
    assert 'udev KERNEL match may only hold' in refusal(persist.udev_rule, kernel, (), ())


@pytest.mark.parametrize('attr,value', [('queue/scheduler', 'none", RUN+="x'), ('queue/scheduler', 'a b'),
                                        ('queue/scheduler', 'b\nfq'), ('queue/x"', '1'), ('queue/../x', '1')])
def test_udev_assignment_refused(attr, value):
    refusal(persist.udev_rule, 'sda', (), [(attr, value)])


@pytest.mark.parametrize('params,why', [
    ({'zswap.compressor': 'lz4"; reboot; "'}, 'no white space, quote'),
    ({'zswap.compressor': '$(reboot)'}, 'no white space, quote'),
    ({'zswap.compressor': 'a b'}, 'no white space, quote'),
    ({'zswap.compressor': 'a\nb'}, 'no white space, quote'),
    ({'x"': '1'}, 'not a kernel parameter name'),
    ({'a b': None}, 'not a kernel parameter name'),
])
def test_cmdline_params_refused_before_anything(fake, params, why):
    fake.file('/proc/cmdline', 'quiet')
    assert why in refusal(persist.set_cmdline, FakeModule(bins={'update-grub': '/usr/sbin/update-grub'}), params)
    assert not os.path.exists(fake.path(GRUB))


@pytest.mark.parametrize('unit,name', [('../x', 'a'), ('a b.service', 'x'), ('x.service', '..'), ('x\n', 'a'),
                                       ('x.service', 'a/b')])
def test_dropin_names_refused(unit, name):
    assert 'systemd names hold only' in refusal(persist.dropin_path, unit, name)


def test_dropin_escaped_unit_name_ok():
    assert persist.dropin_path('medai-cpuset-partition@llm\\x2dinference.slice.service', '50-x') == \
        '/etc/systemd/system/medai-cpuset-partition@llm\\x2dinference.slice.service.d/50-x.conf'


def test_removing_the_last_drop_in_removes_its_empty_directory(tmp_path, monkeypatch):
    from ansible_collections.medai.llmhost.plugins.module_utils import knob, persist
    monkeypatch.setattr(knob, 'ROOT', str(tmp_path))
    persist.set_dropin('vllm.service', '50-medai-slice', '[Service]\nSlice=llminference.slice\n')
    persist.set_dropin('vllm.service', '60-site', '[Service]\nNice=0\n')
    d = tmp_path / 'etc/systemd/system/vllm.service.d'
    persist.set_dropin('vllm.service', '50-medai-slice', None)
    assert d.is_dir() and [p.name for p in d.iterdir()] == ['60-site.conf']   # another drop-in: kept
    persist.set_dropin('vllm.service', '60-site', None)
    assert not d.exists()
    changed, _diff = persist.set_dropin('vllm.service', '60-site', None, check_mode=True)
    assert changed is False
