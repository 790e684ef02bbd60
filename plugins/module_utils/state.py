# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Originals store and change journal on the managed host.

``<state_dir>/originals.json``: for every setting the collection ever changed, the value it had
*before the first change* (so a rollback restores the host's own value, not an intermediate one)::

    {"version": 1, "settings": {"<kind>:<key>": {"kind": ..., "key": ..., "original": ...,
                                                  "recorded_at": ..., "module": ..., "extra": {...}}}}

``<state_dir>/journal.jsonl``: one JSON object per applied change (time, setting, before, after,
module, context, user). Both are written atomically (temp file + rename; the journal is appended
with O_APPEND in one write). Nothing is written in check mode: callers must not call these then.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import tempfile
import time

from ansible_collections.medai.llmhost.plugins.module_utils import knob

DEFAULT_STATE_DIR = '/var/lib/medai-llmhost'
ORIGINALS = 'originals.json'
JOURNAL = 'journal.jsonl'

STATE_ARGS = dict(
    state_dir=dict(type='path', default=DEFAULT_STATE_DIR),
    change_context=dict(type='str'),
)


def _now():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def _dir(state_dir):
    return knob.host_path(state_dir or DEFAULT_STATE_DIR)


def atomic_write(path, text, mode=0o644):
    """Write `text` to host file `path` (already mapped) atomically: temp file in the same dir + rename."""
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        os.makedirs(d, 0o755)
    fd, tmp = tempfile.mkstemp(prefix='.medai-', dir=d)
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_state_dir(state_dir=None):
    """Refuse a state dir that is relative, holds '..' or a control character, or is a file."""
    sd = state_dir or DEFAULT_STATE_DIR
    if not sd.startswith('/') or '..' in sd.split('/') or knob.has_control_char(sd):
        raise knob.KnobError('state_dir %s must be an absolute path without ".."' % knob.show(sd), kind='invalid')
    hp = knob.host_path(sd)
    if os.path.lexists(hp) and not os.path.isdir(hp):
        raise knob.KnobError('state_dir %s exists and is not a directory' % knob.show(sd), kind='invalid')
    return sd


def setting_id(kind, key):
    return '%s:%s' % (kind, key)


def load_originals(state_dir=None):
    path = os.path.join(_dir(state_dir), ORIGINALS)
    if not os.path.exists(path):
        return {'version': 1, 'settings': {}}
    with open(path) as f:
        try:
            data = json.load(f)
        except ValueError:
            raise knob.KnobError('%s is not valid JSON: fix or move it aside (it holds the values a rollback restores)'
                                 % os.path.join(state_dir or DEFAULT_STATE_DIR, ORIGINALS), kind='state')
    data.setdefault('settings', {})
    return data


def get_original(kind, key, state_dir=None):
    return load_originals(state_dir)['settings'].get(setting_id(kind, key))


def record_original(kind, key, original, module_name, state_dir=None, extra=None):
    """Record the value a setting had before the collection first changed it. Keeps the first record."""
    data = load_originals(state_dir)
    sid = setting_id(kind, key)
    if sid in data['settings']:
        return False
    data['settings'][sid] = {'kind': kind, 'key': key, 'original': original, 'recorded_at': _now(),
                             'module': module_name, 'extra': extra or {}}
    atomic_write(os.path.join(_dir(state_dir), ORIGINALS), json.dumps(data, indent=1, sort_keys=True) + '\n', 0o600)
    return True


def forget_original(kind, key, state_dir=None):
    """Drop a setting's record (after it was restored)."""
    data = load_originals(state_dir)
    if data['settings'].pop(setting_id(kind, key), None) is None:
        return False
    atomic_write(os.path.join(_dir(state_dir), ORIGINALS), json.dumps(data, indent=1, sort_keys=True) + '\n', 0o600)
    return True


def journal(entries, module_name, state_dir=None, context=None):
    """Append change records: entries is a list of dicts with at least setting/before/after."""
    if not entries:
        return
    user = os.environ.get('SUDO_USER') or os.environ.get('USER') or os.environ.get('LOGNAME') or str(os.getuid())
    lines = []
    for e in entries:
        rec = {'time': _now(), 'module': module_name, 'user': user, 'context': context}
        rec.update(e)
        lines.append(json.dumps(rec, sort_keys=True))
    d = _dir(state_dir)
    if not os.path.isdir(d):
        os.makedirs(d, 0o755)
    fd = os.open(os.path.join(d, JOURNAL), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, ('\n'.join(lines) + '\n').encode('utf-8'))
    finally:
        os.close(fd)


def read_journal(state_dir=None):
    path = os.path.join(_dir(state_dir), JOURNAL)
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


class ChangeLog(object):
    """The journal and originals of one knob-module run (sysfs_param, zswap, io_scheduler): settings
    of `kind` (keyed by knob path) changed by `module_name`. Writes nothing in check mode."""

    def __init__(self, kind, module_name, state_dir=None, context=None, check_mode=False):
        self.kind = kind
        self.module_name = module_name
        self.state_dir = state_dir
        self.context = context
        self.check_mode = check_mode

    def journal(self, entries):
        """Append change records (dicts with at least setting/before/after); none in check mode."""
        if entries and not self.check_mode:
            journal(entries, self.module_name, self.state_dir, self.context)

    def journal_results(self, results, action):
        """Journal the knob.apply_knob() results that changed something, as `action` ('set', 'restore')."""
        self.journal([{'setting': setting_id(self.kind, r['path']), 'path': r['path'], 'action': action,
                       'before': r['before'], 'after': r['after']} for r in results if r['changed']])

    def record_changed(self, changes, paths):
        """Record the originals of `changes` ([(path, value before, extra), ...]) whose path is in `paths`."""
        if self.check_mode:
            return
        for path, before, extra in changes:
            if path in paths:
                record_original(self.kind, path, before, self.module_name, self.state_dir, extra=extra)

    def check(self):
        """Validation before a module's first write: the state dir can hold the records and its
        originals.json is readable (a rollback depends on it). Raises KnobError."""
        check_state_dir(self.state_dir)
        load_originals(self.state_dir)

    def apply(self, items, action, changes, record_all=False, explain=None, names=None):
        """knob.apply_knobs(items) for real (callers skip it in check mode), with what it leaves in the state dir.

        Originals of `changes` (see record_changed; empty when restoring) are recorded once a change
        has happened, so a refused or rolled-back change leaves no record: after success, those that
        changed (all of `changes` with record_all), or after a failure, what a failed set-back left
        changed. The knobs written are journaled as `action`, then the set-backs of a failure as
        'rollback'. A failure's KnobError is raised again as it is, or with explain(err) (a better
        reason than err.reason, the failed write's message) in place of that reason. `names` goes to apply_knobs(). Returns apply_knobs()'s results.
        """
        try:
            applied = knob.apply_knobs(items, names=names)
        except knob.KnobError as err:
            self.record_changed(changes, getattr(err, 'unrestored', []))
            self.journal_results(getattr(err, 'applied', []), action)
            if getattr(err, 'rolled_back', None):
                self.journal([{'setting': setting_id(self.kind, x.split('=', 1)[0]), 'action': 'rollback',
                               'after': x.split('=', 1)[1]} for x in err.rolled_back])
            if explain is None:
                raise
            raise knob.KnobError(knob.rollback_message(explain(err), err.rolled_back, err.unrestored, err.names),
                                 path=err.path, kind=err.kind, details=err.details)
        if record_all:
            self.record_changed(changes, [path for path, _before, _extra in changes])
        else:
            self.record_changed(changes, [r['path'] for r in applied if r['changed']])
        self.journal_results(applied, action)
        return applied
