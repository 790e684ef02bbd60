# -*- coding: utf-8 -*-
"""Run a medai.llmhost module's main() in-process (ansible-core >= 2.19) and capture its result.

Not a test file (no test_ prefix): imported by test_sysfs_param.py, test_io_scheduler.py, test_zswap.py.
"""
from __future__ import absolute_import, division, print_function

import json
import os

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from unittest import mock


class ModuleExit(Exception):
    def __init__(self, result):
        super(ModuleExit, self).__init__(result)
        self.result = result


def run_module(mod, args, check_mode=False, diff=True, bins=None, run_command=None):
    """Run `mod.main()` with `args`; return the result dict (with 'failed': True on fail_json).

    `bins`: {name: path} for AnsibleModule.get_bin_path (everything else is "not found").
    `run_command`: callable(cmd) -> (rc, out, err); records nothing by itself.
    Warnings given with module.warn() are returned in result['warnings'].
    """
    args = dict(args)
    args['_ansible_check_mode'] = check_mode
    args['_ansible_diff'] = diff
    warnings = []
    bins = bins or {}

    def exit_json(self, **kwargs):
        kwargs.setdefault('changed', False)
        kwargs['warnings'] = warnings
        raise ModuleExit(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs['failed'] = True
        kwargs['msg'] = msg
        kwargs['warnings'] = warnings
        raise ModuleExit(kwargs)

    def warn(self, w):
        warnings.append(w)

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return bins.get(name)

    def _run_command(self, cmd, *a, **kw):
        if run_command is None:
            raise AssertionError('unexpected run_command(%r)' % (cmd,))
        return run_command(cmd)

    with patch_module_args(args), \
            mock.patch.object(basic.AnsibleModule, 'exit_json', exit_json), \
            mock.patch.object(basic.AnsibleModule, 'fail_json', fail_json), \
            mock.patch.object(basic.AnsibleModule, 'warn', warn), \
            mock.patch.object(basic.AnsibleModule, 'get_bin_path', get_bin_path), \
            mock.patch.object(basic.AnsibleModule, 'run_command', _run_command):
        try:
            mod.main()
        except ModuleExit as e:
            return e.result
    raise AssertionError('module did not call exit_json/fail_json')


def snapshot(root):
    """{relative path: content} of every file under root (to prove check mode wrote nothing)."""
    out = {}
    for d, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if os.path.islink(p):
                continue
            with open(p) as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def journal(fake, state_dir='/var/lib/medai-llmhost'):
    p = fake.path(state_dir + '/journal.jsonl')
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return [json.loads(x) for x in f if x.strip()]


def originals(fake, state_dir='/var/lib/medai-llmhost'):
    p = fake.path(state_dir + '/originals.json')
    if not os.path.exists(p):
        return {}
    with open(p) as f:
        return json.load(f)['settings']


def assert_refused(run, fake, args, *needles, **kw):
    """Run `args` in check mode, then for real: both must fail with the same one-line message of at
    most 300 characters holding every needle, and leave the fake root exactly as it was (no knob, no
    originals.json, no journal, no persistence file, no state dir). Returns the real run's result."""
    def tree():
        return snapshot(fake.root), sorted(d for d, _dirs, _files in os.walk(fake.root))
    before = tree()
    results = [run(args, check_mode=check, **kw) for check in (True, False)]
    for res in results:
        msg = res.get('msg', '')
        assert res.get('failed'), res
        assert '\n' not in msg and len(msg) <= 300, msg
        for needle in needles:
            assert needle in msg, msg
    assert results[0]['msg'] == results[1]['msg']
    assert tree() == before and fake.writes == []
    return results[1]
