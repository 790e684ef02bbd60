# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import json
import os

import pytest

from ansible_collections.medai.llmhost.plugins.module_utils import knob, state

SD = '/var/lib/medai-llmhost'


def test_first_original_kept(fake):
    assert state.record_original('knob', '/proc/sys/vm/swappiness', '60', 'm', SD) is True
    assert state.record_original('knob', '/proc/sys/vm/swappiness', '10', 'm', SD) is False
    rec = state.get_original('knob', '/proc/sys/vm/swappiness', SD)
    assert rec['original'] == '60' and rec['module'] == 'm' and rec['kind'] == 'knob'
    with open(fake.path(SD + '/originals.json')) as f:
        data = json.load(f)
    assert list(data['settings']) == ['knob:/proc/sys/vm/swappiness']
    assert oct(os.stat(fake.path(SD + '/originals.json')).st_mode & 0o777) == '0o600'


def test_forget(fake):
    state.record_original('knob', '/a', '1', 'm', SD)
    assert state.forget_original('knob', '/a', SD) is True
    assert state.forget_original('knob', '/a', SD) is False
    assert state.get_original('knob', '/a', SD) is None
    assert state.record_original('knob', '/a', '2', 'm', SD) is True


def test_state_paths_under_fake_root(fake):
    state.record_original('knob', '/a', '1', 'm')
    assert os.path.exists(fake.path(state.DEFAULT_STATE_DIR + '/originals.json'))


def test_journal_appends(fake):
    state.journal([{'setting': 'knob:/a', 'before': '1', 'after': '2'}], 'm1', SD, context='OPS-1')
    state.journal([{'setting': 'knob:/b', 'before': 'x', 'after': 'y'},
                   {'setting': 'knob:/c', 'before': None, 'after': 'z'}], 'm2', SD)
    state.journal([], 'm3', SD)
    j = state.read_journal(SD)
    assert [(e['setting'], e['before'], e['after'], e['module'], e['context']) for e in j] == [
        ('knob:/a', '1', '2', 'm1', 'OPS-1'), ('knob:/b', 'x', 'y', 'm2', None), ('knob:/c', None, 'z', 'm2', None)]
    assert all(e['time'].endswith('Z') and e['user'] for e in j)
    with open(fake.path(SD + '/journal.jsonl')) as f:
        assert len(f.read().splitlines()) == 3


def test_atomic_write_replaces_and_leaves_no_temp(fake, monkeypatch):
    p = fake.path('/etc/x/y.conf')
    state.atomic_write(p, 'one\n')
    state.atomic_write(p, 'two\n', 0o600)
    with open(p) as f:
        assert f.read() == 'two\n'
    assert os.listdir(os.path.dirname(p)) == ['y.conf']
    assert oct(os.stat(p).st_mode & 0o777) == '0o600'

    # a failure before the rename keeps the old content and removes the temp file
    def boom(src, dst):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(os, 'rename', boom)
    with pytest.raises(OSError):
        state.atomic_write(p, 'three\n')
    with open(p) as f:
        assert f.read() == 'two\n'
    assert os.listdir(os.path.dirname(p)) == ['y.conf']


def test_corrupt_originals_is_clear(fake):
    fake.file(SD + '/originals.json', '{not json')
    with pytest.raises(knob.KnobError) as e:
        state.load_originals(SD)
    assert 'is not valid JSON' in e.value.msg and 'originals.json' in e.value.msg


@pytest.mark.parametrize('sd', ['var/lib/x', '/var/lib/../tmp', '/var/lib/x\n'])
def test_check_state_dir_refuses(fake, sd):
    with pytest.raises(knob.KnobError) as e:
        state.check_state_dir(sd)
    assert 'must be an absolute path' in e.value.msg and '\n' not in e.value.msg


def test_check_state_dir_file_refused(fake):
    fake.file('/var/lib/medai-llmhost', 'x')
    with pytest.raises(knob.KnobError) as e:
        state.ChangeLog('knob', 'm').check()
    assert 'is not a directory' in e.value.msg


def test_changelog_check_corrupt_originals(fake):
    fake.file(SD + '/originals.json', '{')
    with pytest.raises(knob.KnobError) as e:
        state.ChangeLog('knob', 'm', SD).check()
    assert 'not valid JSON' in e.value.msg
    state.ChangeLog('knob', 'm', '/var/lib/other').check()   # absent: fine, nothing created
    assert not os.path.exists(fake.path('/var/lib/other'))
