# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import os
import stat

import pytest

from ansible_collections.medai.llmhost.plugins.modules import file_set
from ansible_collections.medai.llmhost.tests.unit.plugins.modules.knob_module_helpers import (
    assert_refused, run_module, snapshot)

PROG = '/usr/local/sbin/medai-example'
UNIT = '/etc/systemd/system/medai-example.service'
LIB = '/usr/local/lib/medai-example/pkg/deep/mod.py'


def run(args, **kw):
    return run_module(file_set, args, **kw)


def mode_of(fake, path):
    return stat.S_IMODE(os.stat(fake.path(path)).st_mode)


def two_files(prog='#!/bin/sh\necho hi\n', unit='[Service]\nExecStart=/usr/local/sbin/medai-example\n'):
    return {'files': [{'path': PROG, 'content': prog, 'mode': '0755'}, {'path': UNIT, 'content': unit}]}


def test_writes_creates_parents_and_is_idempotent(fake):
    args = two_files()
    args['files'].append({'path': LIB, 'content': 'x = 1\n'})
    res = run(args)
    assert res['changed'] is True and res['changed_paths'] == [PROG, UNIT, LIB], res
    assert fake.read(PROG) == '#!/bin/sh\necho hi\n' and mode_of(fake, PROG) == 0o755
    assert mode_of(fake, UNIT) == 0o644 and fake.read(LIB) == 'x = 1\n'
    assert stat.S_IMODE(os.stat(fake.path(os.path.dirname(LIB))).st_mode) == 0o755
    assert [d['after_header'] for d in res['diff']] == [PROG, UNIT, LIB]
    again = run(args)
    assert again['changed'] is False and again['changed_paths'] == [], again


def test_check_mode_reports_and_writes_nothing(fake):
    before = snapshot(fake.root)
    res = run(two_files(), check_mode=True)
    assert res['changed'] is True and res['changed_paths'] == [PROG, UNIT]
    assert res['diff'][0]['before'] == '' and res['diff'][0]['after'].startswith('#!/bin/sh')
    assert snapshot(fake.root) == before and not os.path.exists(fake.path('/usr/local/sbin'))


def test_only_changed_file_is_written(fake):
    run(two_files())
    res = run(two_files(unit='[Service]\nExecStart=/bin/true\n'))
    assert res['changed_paths'] == [UNIT]
    assert res['diff'] == [{'before_header': UNIT, 'after_header': UNIT,
                            'before': '[Service]\nExecStart=/usr/local/sbin/medai-example\n',
                            'after': '[Service]\nExecStart=/bin/true\n'}]


def test_mode_alone_is_fixed(fake):
    run(two_files())
    os.chmod(fake.path(PROG), 0o700)
    res = run(two_files(), check_mode=True)
    assert res['changed_paths'] == [PROG] and mode_of(fake, PROG) == 0o700
    assert res['diff'][0]['after_header'] == PROG + ' (mode 0755)'
    res = run(two_files())
    assert res['changed_paths'] == [PROG] and mode_of(fake, PROG) == 0o755
    assert run(two_files())['changed'] is False


def test_absent_removes_and_missing_is_no_change(fake):
    run(two_files())
    args = {'files': [{'path': PROG, 'state': 'absent'}, {'path': UNIT, 'state': 'absent'},
                      {'path': '/etc/never-there.conf', 'state': 'absent'}]}
    res = run(args, check_mode=True)
    assert res['changed_paths'] == [PROG, UNIT] and os.path.exists(fake.path(PROG))
    res = run(args)
    assert res['changed_paths'] == [PROG, UNIT]
    assert not os.path.exists(fake.path(PROG)) and not os.path.exists(fake.path(UNIT))
    assert run(args)['changed'] is False


@pytest.mark.parametrize('entry, needles', [
    ({'path': 'relative/file', 'content': ''}, ["files[1].path 'relative/file'", 'absolute']),
    ({'path': '/etc/../etc/passwd', 'content': ''}, ['files[1].path', 'normalized']),
    ({'path': '/etc/x/', 'content': ''}, ['files[1].path', 'normalized']),
    ({'path': '/', 'content': ''}, ['files[1].path', 'normalized']),
    ({'path': '/etc/a\nb', 'content': ''}, ['files[1].path', 'control character']),
    ({'path': PROG, 'content': ''}, ['files[1].path', 'given twice']),
    ({'path': '/etc', 'content': ''}, ["files[1].path '/etc' is a directory"]),
    ({'path': '/etc/x.conf'}, ['files[1].content', 'required with state=present']),
    ({'path': '/etc/x.conf', 'content': '', 'mode': '644x'}, ["files[1].mode '644x'", 'octal']),
    ({'path': '/etc/x.conf', 'content': '', 'mode': '0' * 5000}, ['files[1].mode', 'octal']),
])
def test_bad_entry_changes_nothing(fake, entry, needles):
    fake.file('/etc/passwd', 'root:x:0:0\n')
    args = {'files': [{'path': PROG, 'content': 'first\n'}, entry]}
    assert_refused(run, fake, args, *needles)


def test_bounds(fake):
    fake.file('/etc/passwd', 'root:x:0:0\n')
    many = {'files': [{'path': '/etc/f%d' % i, 'content': ''} for i in range(file_set.MAX_FILES + 1)]}
    assert_refused(run, fake, many, 'at most %d per call' % file_set.MAX_FILES)
    big = {'files': [{'path': '/etc/big', 'content': 'x' * (file_set.MAX_TOTAL_BYTES + 1)}]}
    assert_refused(run, fake, big, 'bytes of content')
    assert_refused(run, fake, {'files': [], 'directory_mode': 'rwx'}, "directory_mode 'rwx'")
