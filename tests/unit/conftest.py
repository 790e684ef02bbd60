# -*- coding: utf-8 -*-
"""Test setup: make `ansible_collections.medai.llmhost` importable from a plain checkout, and give
every test a fake host root (never the real /sys or /proc of the machine running the tests)."""
from __future__ import absolute_import, division, print_function

import os
import sys
import tempfile

import pytest

_REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def _ensure_collection_importable():
    try:
        import ansible_collections.medai.llmhost.plugins.module_utils.knob  # noqa: F401
        return
    except ImportError:
        pass
    base = tempfile.mkdtemp(prefix='medai-coll-')
    ns = os.path.join(base, 'ansible_collections', 'medai')
    os.makedirs(ns)
    os.symlink(_REPO, os.path.join(ns, 'llmhost'))
    sys.path.insert(0, base)
    for name in list(sys.modules):
        if name == 'ansible_collections' or name.startswith('ansible_collections.'):
            del sys.modules[name]


_ensure_collection_importable()

from ansible_collections.medai.llmhost.tests.unit.fake_trees import FakeKernel  # noqa: E402


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A FakeKernel rooted in tmp_path; knob.ROOT points at it for the test's duration."""
    return FakeKernel(str(tmp_path), monkeypatch)
