# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

from ansible_collections.medai.llmhost.plugins.callback.drift_report import flatten_diff


def test_flatten_dict_diff_only_differing_keys():
    rows = flatten_diff({'before': {'/sys/a': 'madvise', '/sys/b': '1'}, 'after': {'/sys/a': 'never', '/sys/b': '1'}})
    assert rows == [('/sys/a', 'madvise', 'never')]


def test_flatten_file_diff_and_list():
    rows = flatten_diff([{'before_header': '/etc/x', 'after_header': '/etc/x', 'before': 'a\n', 'after': 'b\n'},
                         {'before': 'same', 'after': 'same'}])
    assert rows == [('/etc/x', 'a\n', 'b\n')]


def test_flatten_nothing():
    assert flatten_diff(None) == []


def test_flatten_key_value_text_diff():
    rows = flatten_diff([{'before_header': 'runtime knobs', 'after_header': 'runtime knobs',
                          'before': '/sys/a = madvise\n/sys/b = 1\n', 'after': '/sys/a = never\n/sys/b = 1\n'}])
    assert rows == [('/sys/a', 'madvise', 'never')]
