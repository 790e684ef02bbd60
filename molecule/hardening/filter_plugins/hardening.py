# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the hardening scenario (molecule/hardening): host-state snapshots (files/snapshot.sh, one
`name=value` line per item) compared, bad-input cases judged, and the Markdown report of the table."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

MAX_MSG_CHARS = 300


def _items(snapshot):
    """snapshot.sh output (text or lines) -> {name: value}."""
    lines = snapshot.splitlines() if isinstance(snapshot, str) else snapshot
    items = {}
    for line in lines:
        name, sep, value = line.partition('=')
        if sep:
            items[name] = value
    return items


def _short(value, limit=100):
    return value if len(value) <= limit else value[:limit] + '...(%d chars)' % len(value)


def snapshot_diff(before, after):
    """Every item that differs between two snapshots, one line each: "name: 'before' -> 'after'"."""
    old, new = _items(before), _items(after)
    return ["%s: '%s' -> '%s'" % (name, _short(old.get(name, '<no item>')), _short(new.get(name, '<no item>')))
            for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]


def pristine_compare(pristine, after, exceptions):
    """Compare the snapshot after rollback with the pristine one.

    exceptions: [{match: regex on the item name, expect: regex the value after rollback must match (optional),
    why: text}]. An excepted item whose value does not match `expect` still counts as differing.
    Returns {compared, differing: [lines], excepted: [lines]}."""
    old, new = _items(pristine), _items(after)
    names = sorted(set(old) | set(new))
    differing, excepted = [], []
    for name in names:
        before, now = old.get(name, '<no item>'), new.get(name, '<no item>')
        if before == now:
            continue
        line = "%s: '%s' -> '%s'" % (name, _short(before), _short(now))
        rule = next((e for e in exceptions if re.search(e['match'], name)), None)
        if rule and re.search(rule.get('expect', ''), now):
            excepted.append('%s  [excepted: %s]' % (line, rule['why']))
        else:
            differing.append(line)
    return {'compared': len(names), 'differing': differing, 'excepted': excepted}


def case_verdict(case, failed, msg, timed_out=False):
    """Judge one bad-input case: it must fail, with one line of at most 300 characters matching case.expect,
    and (case.secret) without the secret. Returns the case's table row."""
    msg = msg if isinstance(msg, str) else repr(msg)
    problems = []
    if timed_out:
        problems.append('timed out')
    if not failed:
        problems.append('NOT REFUSED')
    if '\n' in msg or '\r' in msg:
        problems.append('message has %d lines' % (len(msg.splitlines())))
    if len(msg) > MAX_MSG_CHARS:
        problems.append('message is %d chars' % len(msg))
    if failed and not re.search(case['expect'], msg):
        problems.append('message does not match /%s/' % case['expect'])
    if case.get('secret') and case['secret'] in msg:
        problems.append('message shows the secret')
    return {'case': case['name'], 'target': case.get('target') or case['role'], 'msg': msg, 'ok': not problems,
            'problems': problems}


def module_verdicts(registered, module):
    """Rows for one module table task (a registered loop over cases; ignore_errors)."""
    rows = []
    for result in registered['results']:
        case = dict(result['item'], target=module)
        msg = result.get('msg', '')
        rows.append(case_verdict(case, bool(result.get('failed')), msg, 'Timed out' in str(msg)))
    return rows


def _cell(text):
    return text.replace('\\', '\\\\').replace('|', '\\|').replace('\n', '\\n').replace('\r', '\\r')


def report_markdown(rows, tables):
    """The bad-input table as Markdown. tables: [{name, diff: [lines]}] (host-state snapshot per table)."""
    changed = dict((t['name'], t['diff']) for t in tables)
    out = ['# Hardening scenario: bad-input table', '',
           'Every case must fail with one line of at most %d characters that matches its expected '
           'pattern, and leave the host unchanged (snapshot of knobs, queues, cgroups, thread policies, '
           'persistence files and the state directory before and after each table).' % MAX_MSG_CHARS, '',
           '| # | case | module/role | message | state unchanged | verdict |', '|---|---|---|---|---|---|']
    for n, row in enumerate(rows, 1):
        table = 'modules' if row['target'] in MODULES else 'roles'
        unchanged = 'yes' if not changed.get(table) else 'NO (table %s changed the host)' % table
        verdict = 'ok' if row['ok'] else 'FAIL: ' + '; '.join(row['problems'])
        out.append('| %d | %s | %s | %s | %s | %s |' % (n, _cell(row['case']), row['target'], _cell(row['msg']),
                                                        unchanged, _cell(verdict)))
    out += ['', '## Cases per module/role', '', '| module/role | cases | ok |', '|---|---|---|']
    for target, count, good in case_counts(rows):
        out.append('| %s | %d | %d |' % (target, count, good))
    out.append('| **total** | %d | %d |' % (len(rows), len([r for r in rows if r['ok']])))
    for t in tables:
        out += ['', '## Host state, %s table: %s' % (t['name'], 'unchanged' if not t['diff'] else 'CHANGED'), '']
        out += ['- `%s`' % _cell(line) for line in t['diff']]
    return '\n'.join(out) + '\n'


MODULES = ('sysfs_param', 'zswap', 'io_scheduler', 'chrt_priority', 'cpuset')


def case_counts(rows):
    """[(module/role, cases, ok)] in table order."""
    order = []
    for row in rows:
        if row['target'] not in order:
            order.append(row['target'])
    return [(t, len([r for r in rows if r['target'] == t]), len([r for r in rows if r['target'] == t and r['ok']]))
            for t in order]


def playbook_outcome(stdout_lines):
    """From an ansible-playbook run's output: the tasks that changed or failed ("changed: TASK [...]"), the recap."""
    out, task = [], ''
    for line in stdout_lines:
        if line.startswith('TASK ['):
            task = line.rstrip(' *')
        elif re.match(r'(changed|fatal|failed):', line):
            out.append('%s %s' % (line.split(':', 1)[0], task) if line.startswith('changed') else line[:400])
        elif re.search(r'\bok=\d+ .*changed=\d+', line):
            out.append(line)
    return out


class FilterModule(object):
    def filters(self):
        return {
            'hardening_snapshot_diff': snapshot_diff,
            'hardening_pristine_compare': pristine_compare,
            'hardening_case_verdict': case_verdict,
            'hardening_module_verdicts': module_verdicts,
            'hardening_report_markdown': report_markdown,
            'hardening_case_counts': case_counts,
            'hardening_playbook_outcome': playbook_outcome,
        }
