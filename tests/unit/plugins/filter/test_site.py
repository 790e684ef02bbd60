# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.medai.llmhost.plugins.filter.site import area_selection_error


def test_a_host_with_one_area_is_usable():
    assert area_selection_error({'memory': True, 'vllm': False}) == ''
    assert area_selection_error({'memory': 'yes'}) == ''


@pytest.mark.parametrize('apply', [None, {}, {'memory': False, 'vllm': 'false'}])
def test_nothing_selected_names_the_variable_and_the_opt_out(apply):
    msg = area_selection_error(apply)
    assert msg.startswith('nothing selected to apply') and 'llmhost_apply' in msg and 'llmhost_apply_nothing' in msg
    assert '\n' not in msg and len(msg) <= 300


def test_leaving_a_host_out_on_purpose_is_not_an_error():
    assert area_selection_error({}, True) == ''
    assert area_selection_error(None, 'yes') == ''


def test_an_unknown_area_is_an_error_even_when_others_are_selected():
    msg = area_selection_error({'memory': True, 'schedulng': True})
    assert "'schedulng'" in msg and 'scheduling' in msg and len(msg) <= 300


def test_a_huge_unknown_area_name_is_cut():
    msg = area_selection_error({'x' * 10000: True})
    assert len(msg) <= 300


def test_a_value_that_is_not_a_bool_is_named():
    msg = area_selection_error({'memory': 'maybe'})
    assert msg.startswith('llmhost_apply:') and 'maybe' in msg


def test_not_a_dict():
    with pytest.raises(AnsibleFilterError):
        area_selection_error(['memory'])
