# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function

from ansible_collections.medai.llmhost.plugins.filter.docker import docker_daemon_info, docker_flag_conflicts, docker_restart_needed

# what `systemctl show docker.service -p ExecStart --value` prints for Debian's docker.io unit
DEBIAN_EXECSTART = ('{ path=/usr/sbin/dockerd ; argv[]=/usr/sbin/dockerd -H fd:// '
                    '--containerd=/run/containerd/containerd.sock ; ignore_errors=no ; start_time=[n/a] ; '
                    'stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }')


def test_live_restore_alone_is_applied_by_a_reload():
    assert docker_restart_needed({'log-driver': 'json-file'}, {'log-driver': 'json-file', 'live-restore': True}) is False


def test_runtimes_and_labels_are_reloadable():
    assert docker_restart_needed({}, {'runtimes': {'nvidia': {'path': 'x'}}, 'labels': ['a=b']}) is False


def test_log_rotation_needs_a_restart():
    before = {'log-opts': {'max-file': '5'}, 'live-restore': True}
    after = {'log-opts': {'max-file': '3'}, 'live-restore': True}
    assert docker_restart_needed(before, after) is True


def test_removing_a_key_counts_as_a_change():
    assert docker_restart_needed({'data-root': '/data/docker'}, {}) is True
    assert docker_restart_needed(None, None) is False


def test_hosts_conflicts_with_dash_h_on_debian():
    assert docker_flag_conflicts({'hosts': ['unix:///run/docker.sock'], 'log-driver': 'json-file'},
                                 DEBIAN_EXECSTART) == ['hosts']


def test_the_managed_keys_do_not_conflict_with_debians_unit():
    config = {'log-driver': 'json-file', 'log-opts': {'max-size': '100m'}, 'exec-opts': ['native.cgroupdriver=systemd'],
              'default-ulimits': {}, 'live-restore': True, 'runtimes': {}}
    assert docker_flag_conflicts(config, DEBIAN_EXECSTART) == []


def test_a_drop_in_flag_with_a_value_conflicts():
    execstart = '{ path=/usr/bin/dockerd ; argv[]=/usr/bin/dockerd --live-restore=false --exec-opt native.cgroupdriver=cgroupfs ; }'
    assert docker_flag_conflicts({'live-restore': True, 'exec-opts': []}, execstart) == ['exec-opts', 'live-restore']


def test_a_plain_command_line_is_read_too():
    assert docker_flag_conflicts({'data-root': '/d'}, '/usr/bin/dockerd --data-root /var/lib/docker') == ['data-root']
    assert docker_flag_conflicts({'data-root': '/d'}, '') == []


def test_daemon_info_of_bookworms_docker_io_cannot_validate():
    info = docker_daemon_info('Docker version 20.10.24+dfsg1, build 297e128\n')
    assert info == {'version': '20.10.24+dfsg1', 'can_validate': False}


def test_daemon_info_of_docker_23_and_later_validates():
    assert docker_daemon_info('Docker version 28.2.2, build e6534b4\n')['can_validate'] is True
    assert docker_daemon_info('Docker version 23.0.0, build e92dd87\n')['can_validate'] is True


def test_daemon_info_without_dockerd_and_forced_settings():
    assert docker_daemon_info('') == {'version': '', 'can_validate': False}
    assert docker_daemon_info('', validate=True)['can_validate'] is True
    assert docker_daemon_info('Docker version 28.2.2, build e\n', validate='false')['can_validate'] is False
