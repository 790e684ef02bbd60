# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import os

import pytest

from ansible.errors import AnsibleLookupError

from ansible_collections.medai.llmhost.plugins.lookup import host_library
from ansible_collections.medai.llmhost.plugins.lookup.host_library import LookupModule, library_files

PKG = '/ansible_collections/medai/llmhost/plugins/module_utils/'


def test_every_module_util_of_the_collection():
    files = LookupModule().run([], dest='/usr/local/lib/medai-llmhost')
    names = sorted(n for n in os.listdir(host_library.LIBRARY) if n.endswith('.py'))
    assert [f['path'] for f in files] == ['/usr/local/lib/medai-llmhost' + PKG + n for n in names]
    assert 'knob.py' in names and 'state.py' in names
    knob = [f for f in files if f['path'].endswith('/knob.py')][0]
    with open(os.path.join(host_library.LIBRARY, 'knob.py'), encoding='utf-8') as f:
        assert knob['content'] == f.read()
    assert {f['mode'] for f in files} == {'0644'}


def test_default_dest():
    assert LookupModule().run([])[0]['path'].startswith('/usr/local/lib/medai-llmhost' + PKG)


def test_only_python_files(tmp_path):
    (tmp_path / 'b.py').write_text('b = 1\n')
    (tmp_path / 'a.py').write_text('a = 1\n')
    (tmp_path / 'notes.txt').write_text('no\n')
    (tmp_path / '__pycache__').mkdir()
    assert library_files('/opt/x', str(tmp_path)) == [
        {'path': '/opt/x' + PKG + 'a.py', 'content': 'a = 1\n', 'mode': '0644'},
        {'path': '/opt/x' + PKG + 'b.py', 'content': 'b = 1\n', 'mode': '0644'}]


@pytest.mark.parametrize('dest', ['relative', '/opt/x/', '/opt/../etc'])
def test_bad_dest(dest):
    with pytest.raises(AnsibleLookupError, match='must be an absolute, normalized directory'):
        library_files(dest)


def test_only_dest():
    with pytest.raises(AnsibleLookupError, match='takes only the option dest'):
        LookupModule().run(['x'])
    with pytest.raises(AnsibleLookupError, match=r'given: mode'):
        LookupModule().run([], mode='0600')


def test_empty_or_missing_library(tmp_path):
    with pytest.raises(AnsibleLookupError, match='no Python files'):
        library_files('/opt/x', str(tmp_path))
    with pytest.raises(AnsibleLookupError, match='cannot list'):
        library_files('/opt/x', str(tmp_path / 'missing'))
