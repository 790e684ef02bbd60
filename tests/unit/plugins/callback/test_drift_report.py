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


def _audit(*results):
    cb = CallbackModule()
    cb.v2_playbook_on_play_start(_Play(check_mode=True))
    for task, res in results:
        cb.v2_runner_on_ok(_Result(task, res))
    return [(r['setting'], r['effective'], r['desired'], r['drift']) for r in cb.hosts['h1']['settings']]


def test_every_knob_is_a_row_in_profile_or_not():
    sysctl = '/etc/sysctl.d/90-medai-llmhost.conf'
    res = {'changed': True, 'knobs': [
        {'path': '/proc/sys/vm/swappiness', 'resolved_path': '/proc/sys/vm/swappiness', 'before': '60', 'after': '10'},
        {'path': '/proc/sys/vm/watermark_scale_factor', 'resolved_path': '/proc/sys/vm/watermark_scale_factor',
         'before': '200', 'after': '200'}],
        'diff': [{'before_header': 'runtime knobs', 'after_header': 'runtime knobs',
                  'before': '/proc/sys/vm/swappiness = 60\n', 'after': '/proc/sys/vm/swappiness = 10\n'},
                 {'before_header': sysctl, 'after_header': sysctl, 'before': 'vm.swappiness = 60\n',
                  'after': 'vm.swappiness = 10\n'}]}
    assert _audit((_Task(True), res)) == [('/proc/sys/vm/swappiness', '60', '10', True),
                                          ('/proc/sys/vm/watermark_scale_factor', '200', '200', False),
                                          ('vm.swappiness', '60', '10', True)]


def test_zswap_devices_and_threads_rows():
    zswap = {'changed': False, 'params': [{'name': 'enabled', 'path': '/sys/module/zswap/parameters/enabled',
                                           'before': 'Y', 'after': 'Y'}]}
    io = {'changed': False, 'devices': [{'name': 'vdb', 'scheduler': {'before': 'mq-deadline', 'after': 'mq-deadline'},
                                         'nr_requests': {'before': 256, 'after': 256}, 'read_ahead_kb': None}]}
    rt = {'before': {'policy': 'rr', 'priority': 50, 'cpus': '2-3'}, 'after': {'policy': 'rr', 'priority': 50, 'cpus': '2-3'}}
    chrt = {'changed': False, 'unit': 'vllm.service',
            'threads': [dict(rt, tid=10, pid=10), dict(rt, tid=11, pid=10)]}
    assert _audit((_Task(True), zswap), (_Task(True), io), (_Task(True), chrt)) == [
        ('/sys/module/zswap/parameters/enabled', 'Y', 'Y', False),
        ('/sys/block/vdb/queue/scheduler', 'mq-deadline', 'mq-deadline', False),
        ('/sys/block/vdb/queue/nr_requests', 256, 256, False),
        ('scheduling of vllm.service', '2 threads rr 50 cpus 2-3', '2 threads rr 50 cpus 2-3', False)]


def test_pre_checks_are_not_settings_and_hidden_changes_still_drift():
    pre = _Task(True, name='Check every device entry (check mode, writes nothing)')
    pre.changed_when = [False]
    res = {'changed': True, 'msg': 'vllm.service would move to llminference.slice',
           'knobs': [{'path': '/sys/a', 'before': '1', 'after': '1'}]}
    assert _audit((pre, {'changed': True, 'knobs': [{'path': '/sys/a', 'before': '0', 'after': '1'}]}),
                  (_Task(True), res)) == [('/sys/a', '1', '1', False),
                                          ('vllm.service would move to llminference.slice', None, None, True)]
