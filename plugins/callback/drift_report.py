# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: drift_report
type: aggregate
version_added: 0.1.0
short_description: Fleet drift report (desired vs effective) from a check-mode run
description:
  - Collects the result of every task that runs in check mode with diff (C(--check --diff), or a play
    with C(check_mode=true) and C(diff=true) as C(playbooks/audit.yml) has), and writes a fleet report
    at the end of the run.
  - Effective value = the task's diff C(before) (what the host has); desired = the diff C(after)
    (what the inventory asks for). A task that would change something is drift.
  - Writes C(audit-<timestamp>.json), C(.md) and C(.html) plus C(audit-latest.*) copies into the report
    directory, and prints a summary (hosts, settings checked, drift) at the end of the run.
  - Facts whose name starts with C(llmhost_audit_), or a role's dict fact named C(<role>_audit) (set with
    M(ansible.builtin.set_fact)), are added to the host's section (for example the peak/off-peak timer state).
  - Outside check mode it records nothing and prints nothing; tasks that a role runs in check mode inside a
    normal play (safety checks of C(site.yml)) are not an audit and are not recorded.
requirements:
  - enable it in C(callbacks_enabled) or with E(ANSIBLE_CALLBACKS_ENABLED=medai.llmhost.drift_report)
options:
  report_dir:
    description: Directory on the controller for the report files.
    type: path
    default: ./reports
    env:
      - name: MEDAI_LLMHOST_REPORT_DIR
    ini:
      - section: medai_llmhost
        key: report_dir
'''

import datetime
import json
import os

from ansible import context
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.callback import CallbackBase

try:
    from html import escape as html_escape
except ImportError:  # pragma: no cover
    from cgi import escape as html_escape

MAX_VALUE = 160
# actions that are not settings of the host (control flow, validation, messages)
NOT_SETTINGS = ('ansible.builtin.set_fact', 'set_fact', 'ansible.builtin.assert', 'assert',
                'ansible.builtin.debug', 'debug', 'ansible.builtin.include_role', 'include_role',
                'ansible.builtin.include_tasks', 'include_tasks', 'ansible.builtin.import_tasks',
                'ansible.builtin.validate_argument_spec', 'validate_argument_spec', 'ansible.builtin.fail', 'fail')


def _short(value):
    if value is None:
        return ''
    if not isinstance(value, str):
        value = json.dumps(value, sort_keys=True, default=str)
    value = ' '.join(value.split())
    return value if len(value) <= MAX_VALUE else value[:MAX_VALUE - 1] + '…'


def _thread_states(threads, key):
    """'2 threads rr 50 cpus 2-3' per distinct scheduling state of `threads` (chrt_priority rows)."""
    counts = {}
    for t in threads:
        st = t.get(key) or {}
        text = ' '.join(str(st[k]) if k != 'cpus' else 'cpus %s' % st[k]
                        for k in ('policy', 'priority', 'cpus') if st.get(k) not in (None, ''))
        counts[text] = counts.get(text, 0) + 1
    return '; '.join('%d thread%s %s' % (n, '' if n == 1 else 's', text) for text, n in sorted(counts.items()))


def module_rows(result):
    """(setting, effective, desired) for every setting a medai.llmhost module reports, changed or not:
    knobs (sysfs_param), zswap parameters, block-device attributes (io_scheduler), the scheduling of a
    unit's threads (chrt_priority). [] for other results."""
    rows = []
    for k in result.get('knobs') or ():
        if isinstance(k, dict) and 'before' in k:
            rows.append((k.get('resolved_path') or k.get('path'), k['before'], k.get('after')))
    for p in result.get('params') or ():
        if isinstance(p, dict) and 'before' in p:
            rows.append((p.get('path') or p.get('name'), p['before'], p.get('after')))
    for d in result.get('devices') or ():
        if isinstance(d, dict) and 'name' in d:
            for attr in ('scheduler', 'nr_requests', 'read_ahead_kb'):
                v = d.get(attr)
                if isinstance(v, dict):
                    rows.append(('/sys/block/%s/queue/%s' % (d['name'], attr), v.get('before'), v.get('after')))
    threads = [t for t in result.get('threads') or () if isinstance(t, dict) and 'tid' in t]
    if threads:
        rows.append(('scheduling of %s' % (result.get('unit') or result.get('selection') or 'threads'),
                     _thread_states(threads, 'before'), _thread_states(threads, 'after')))
    return [(to_text(key), before, after) for key, before, after in rows]


def _file_diffs(diffs):
    """Only the entries of a diff that are files (header is a path): the persistence files."""
    if isinstance(diffs, dict):
        diffs = [diffs]
    return [d for d in diffs or [] if isinstance(d, dict)
            and str(d.get('after_header') or d.get('before_header') or '').startswith('/')]


def flatten_diff(diffs):
    """Turn a task's diff (dict or list of dicts) into rows (key, effective, desired).

    Dicts of values are compared key by key (only differing keys become rows); text diffs (files)
    become one row named by their header.
    """
    if isinstance(diffs, dict):
        diffs = [diffs]
    rows = []
    for d in diffs or []:
        if not isinstance(d, dict):
            continue
        before, after = d.get('before'), d.get('after')
        header = d.get('after_header') or d.get('before_header')
        if isinstance(before, dict) or isinstance(after, dict):
            before = before if isinstance(before, dict) else {}
            after = after if isinstance(after, dict) else {}
            for key in sorted(set(before) | set(after), key=str):
                if before.get(key) != after.get(key):
                    rows.append((to_text(key), before.get(key), after.get(key)))
        elif before != after:
            kv_before, kv_after = _key_values(before), _key_values(after)
            if kv_before is not None and kv_after is not None:
                for key in sorted(set(kv_before) | set(kv_after)):
                    if kv_before.get(key) != kv_after.get(key):
                        rows.append((key, kv_before.get(key), kv_after.get(key)))
            else:
                rows.append((to_text(header or 'content'), before, after))
    return rows


def _key_values(text):
    """'key = value' lines (as the knob modules' runtime diffs are) -> dict, or None for other text."""
    if not isinstance(text, str):
        return None
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(('#', ';')):
            continue  # comments of persistence files are not settings
        key, sep, value = line.partition(' = ')
        if not sep or ' ' in key:
            return None
        out[key] = value
    return out


def _never_changes(task):
    """A task declared never to change anything (changed_when: false): a read or a role's own pre-check,
    not a setting."""
    cond = getattr(task, 'changed_when', None)
    conds = cond if isinstance(cond, list) else [cond]
    return len(conds) == 1 and str(conds[0]).strip().lower() == 'false'


def host_state(summary):
    """One host's state, the same words on the console and in the Markdown and HTML reports."""
    if summary['unreachable']:
        return 'UNREACHABLE'
    if summary['failed']:
        return 'FAILED CHECKS'
    return 'DRIFT' if summary['drift'] else 'in profile'


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'medai.llmhost.drift_report'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.hosts = {}
        self.check_mode_seen = False
        self.play_name = None
        self.play_check_mode = False

    def v2_playbook_on_play_start(self, play):
        self.play_name = play.get_name()
        # an audit is a play run in check mode (audit.yml) or a run with --check; the check-mode safety
        # checks inside site.yml's roles are not an audit and make no report
        self.play_check_mode = getattr(play, 'check_mode', None) is True

    def _host(self, name):
        return self.hosts.setdefault(name, {'settings': [], 'failed': [], 'extra': {}, 'unreachable': False})

    def _record(self, result, status):
        task = result._task
        if not (self.play_check_mode or context.CLIARGS.get('check')) or getattr(task, 'check_mode', None) is not True:
            return
        self.check_mode_seen = True
        host = self._host(result._host.get_name())
        res = result._result
        facts = res.get('ansible_facts') or {}
        for k, v in facts.items():
            if k.startswith('llmhost_audit_'):
                host['extra'][k[len('llmhost_audit_'):]] = v
            elif k.endswith('_audit') and isinstance(v, dict):  # a role's own audit fact, e.g. profile_schedule_audit
                host['extra'][k[:-len('_audit')]] = v
        if status == 'failed':
            host['failed'].append({'task': task.get_name(), 'msg': _short(res.get('msg'))})
            return
        if status == 'skipped' or task.action in NOT_SETTINGS or _never_changes(task):
            return
        results = res.get('results')
        looped = isinstance(results, list) and results and isinstance(results[0], dict) and 'changed' in results[0]
        items = results if looped else [res]
        for item in items:
            changed = bool(item.get('changed'))
            values = module_rows(item)
            # a setting the module reports drifts when its effective and desired values differ; files
            # (persistence, units) drift when the task would change them
            rows = [(key, eff, des, _short(eff) != _short(des)) for key, eff, des in values]
            rows += [(key, eff, des, changed)
                     for key, eff, des in flatten_diff(_file_diffs(item.get('diff')) if values else item.get('diff'))]
            if rows and changed and not any(r[3] for r in rows):
                # the task would change something its values do not show (e.g. a unit's slice): still drift
                rows.append((_short(item.get('msg')) or 'other change reported by the task', None, None, True))
            if rows:
                for key, eff, des, drift in rows:
                    host['settings'].append({'task': task.get_name(), 'action': task.action, 'setting': key,
                                             'effective': eff, 'desired': des, 'drift': drift})
            else:
                host['settings'].append({'task': task.get_name(), 'action': task.action,
                                         'setting': _short(item.get('item')) if 'item' in item else '',
                                         'effective': None, 'desired': None, 'drift': changed})

    def v2_runner_on_ok(self, result):
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, 'failed')

    def v2_runner_on_skipped(self, result):
        self._record(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._host(result._host.get_name())['unreachable'] = True

    def v2_playbook_on_stats(self, stats):
        if not self.check_mode_seen:
            return
        report_dir = self.get_option('report_dir')
        if not os.path.isdir(report_dir):
            os.makedirs(report_dir)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
        report = {'generated_at': stamp, 'play': self.play_name, 'hosts': self.hosts,
                  'summary': self.summary()}
        base = os.path.join(report_dir, 'audit-%s' % stamp)
        outputs = {'.json': json.dumps(report, indent=1, sort_keys=True, default=str) + '\n',
                   '.md': self.markdown(report), '.html': self.html(report)}
        for ext, text in outputs.items():
            for path in (base + ext, os.path.join(report_dir, 'audit-latest' + ext)):
                with open(path, 'w') as f:
                    f.write(text)
        self._display.banner('MEDAI.LLMHOST AUDIT')
        for line in self.summary_lines(report):
            self._display.display(line)
        self._display.display('report: %s.{json,md,html}' % base)

    def summary(self):
        out = {}
        for name, h in sorted(self.hosts.items()):
            out[name] = {'settings': len(h['settings']), 'drift': sum(1 for s in h['settings'] if s['drift']),
                         'failed': len(h['failed']), 'unreachable': h['unreachable']}
        return out

    def summary_lines(self, report):
        lines = []
        for name, s in sorted(report['summary'].items()):
            state = host_state(s)
            lines.append('%-28s %-12s settings checked: %3d  drift: %3d  failed checks: %d'
                         % (name, state, s['settings'], s['drift'], s['failed']))
            h = report['hosts'][name]
            for row in h['settings']:
                if row['drift']:
                    lines.append('    drift  %s | %s: effective %s -> desired %s'
                                 % (row['task'], row['setting'] or '-', _short(row['effective']) or '?',
                                    _short(row['desired']) or '?'))
            for row in h['failed']:
                lines.append('    failed %s: %s' % (row['task'], row['msg']))
        return lines

    def markdown(self, report):
        out = ['# medai.llmhost fleet audit (%s)' % report['generated_at'], '',
               '| host | state | settings | drift | failed |', '|---|---|---|---|---|']
        for name, s in sorted(report['summary'].items()):
            state = host_state(s)
            state = state if state == 'in profile' else '**%s**' % state
            out.append('| %s | %s | %d | %d | %d |' % (name, state, s['settings'], s['drift'], s['failed']))
        for name, h in sorted(report['hosts'].items()):
            out += ['', '## %s' % name, '', '| task | setting | effective | desired | drift |', '|---|---|---|---|---|']
            for r in h['settings']:
                out.append('| %s | %s | %s | %s | %s |' % (
                    r['task'].replace('|', '\\|'), (r['setting'] or '').replace('|', '\\|'),
                    _short(r['effective']).replace('|', '\\|'), _short(r['desired']).replace('|', '\\|'),
                    '**DRIFT**' if r['drift'] else 'ok'))
            for r in h['failed']:
                out.append('| %s | (check failed) | | %s | **FAILED** |' % (r['task'], r['msg'].replace('|', '\\|')))
            for k, v in sorted(h['extra'].items()):
                out += ['', '**%s**: `%s`' % (k, _short(v))]
        return '\n'.join(out) + '\n'

    def html(self, report):
        esc = html_escape
        parts = ['<!DOCTYPE html><html><head><meta charset="utf-8"><title>medai.llmhost audit</title>',
                 '<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;'
                 'padding:2px 6px}tr.drift{background:#fdd}</style></head><body>',
                 '<h1>medai.llmhost fleet audit (%s)</h1><table><tr><th>host</th><th>state</th><th>settings</th>'
                 '<th>drift</th><th>failed</th></tr>' % esc(report['generated_at'])]
        for name, s in sorted(report['summary'].items()):
            state = host_state(s)
            parts.append('<tr class="%s"><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%d</td></tr>' % (
                '' if state == 'in profile' else 'drift', esc(name), esc(state), s['settings'], s['drift'],
                s['failed']))
        parts.append('</table>')
        for name, h in sorted(report['hosts'].items()):
            parts.append('<h2>%s</h2><table><tr><th>task</th><th>setting</th><th>effective</th><th>desired</th>'
                         '<th>drift</th></tr>' % esc(name))
            for r in h['settings']:
                parts.append('<tr class="%s"><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
                    'drift' if r['drift'] else '', esc(r['task']), esc(r['setting'] or ''),
                    esc(_short(r['effective'])), esc(_short(r['desired'])), 'DRIFT' if r['drift'] else 'ok'))
            for r in h['failed']:
                parts.append('<tr class="drift"><td>%s</td><td>(check failed)</td><td></td><td>%s</td>'
                             '<td>FAILED</td></tr>' % (esc(r['task']), esc(r['msg'])))
            parts.append('</table>')
            for k, v in sorted(h['extra'].items()):
                parts.append('<p><b>%s</b>: <code>%s</code></p>' % (esc(k), esc(_short(v))))
        parts.append('</body></html>\n')
        return ''.join(parts)
