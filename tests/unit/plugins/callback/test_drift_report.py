# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

from ansible_collections.medai.llmhost.plugins.callback.drift_report import CallbackModule, flatten_diff, host_state


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


def test_comment_lines_of_persistence_files_are_not_settings():
    header = '# Managed by Ansible (medai.llmhost): x = y\n'
    rows = flatten_diff([{'before_header': '/etc/sysctl.d/90-medai-llmhost.conf', 'before': header + 'vm.swappiness = 60\n',
                          'after': header + 'vm.swappiness = 10\n'}])
    assert rows == [('vm.swappiness', '60', '10')]


def _report(**summary):
    base = {'settings': 3, 'drift': 0, 'failed': 0, 'unreachable': False}
    base.update(summary)
    host = {'settings': [], 'failed': [{'task': 'Memory | zswap', 'msg': 'zswap is not built'}] if base['failed'] else [],
            'extra': {}, 'unreachable': base['unreachable']}
    return {'generated_at': 'now', 'summary': {'h1': base}, 'hosts': {'h1': host}}


def test_every_output_says_the_same_state():
    cb = CallbackModule()
    for summary, state in (({}, 'in profile'), ({'drift': 1}, 'DRIFT'), ({'failed': 1}, 'FAILED CHECKS'),
                           ({'unreachable': True}, 'UNREACHABLE')):
        report = _report(**summary)
        assert host_state(report['summary']['h1']) == state
        assert state in cb.summary_lines(report)[0]
        assert state in cb.markdown(report)
        assert '<td>%s</td>' % state in cb.html(report)


def test_html_lists_failed_checks():
    html = CallbackModule().html(_report(failed=1))
    assert 'Memory | zswap' in html and 'zswap is not built' in html and 'FAILED' in html


class _Task(object):
    def __init__(self, check_mode, name='Memory | THP', action='medai.llmhost.sysfs_param'):
        self.check_mode, self._name, self.action = check_mode, name, action

    def get_name(self):
        return self._name


class _Host(object):
    def get_name(self):
        return 'h1'


class _Result(object):
    def __init__(self, task, result):
        self._task, self._host, self._result = task, _Host(), result


class _Play(object):
    def __init__(self, check_mode):
        self.check_mode = check_mode

    def get_name(self):
        return 'play'


DRIFT = {'changed': True, 'diff': {'before': {'/sys/a': 'madvise'}, 'after': {'/sys/a': 'never'}}}


def test_check_mode_tasks_inside_a_normal_play_are_not_an_audit():
    cb = CallbackModule()
    cb.v2_playbook_on_play_start(_Play(check_mode=False))   # site.yml
    cb.v2_runner_on_ok(_Result(_Task(check_mode=True), DRIFT))  # a role's safety check in check mode
    assert cb.hosts == {} and not cb.check_mode_seen


def test_a_check_mode_play_is_recorded_but_not_its_check_mode_false_tasks():
    cb = CallbackModule()
    cb.v2_playbook_on_play_start(_Play(check_mode=True))    # audit.yml
    cb.v2_runner_on_ok(_Result(_Task(check_mode=True), DRIFT))
    cb.v2_runner_on_ok(_Result(_Task(check_mode=False, name='read the journal', action='ansible.builtin.shell'),
                               {'changed': False}))
    rows = cb.hosts['h1']['settings']
    assert [(r['setting'], r['effective'], r['desired'], r['drift']) for r in rows] == [('/sys/a', 'madvise', 'never', True)]
