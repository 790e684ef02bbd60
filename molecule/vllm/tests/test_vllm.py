# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""testinfra checks of the vllm scenario (container_runtime + vllm in systemd and container mode), run
before and after a real reboot (LAB_PHASE).

One ssh round trip collects everything (a probe script that waits, bounded, for both servers to answer
/health after a boot, then prints JSON). The fake HF token is compared on the controller only: it is
never sent to the guest in a command line (that would put it into the guest's `ps` output).
"""
import hashlib
import json
import os
import re
import subprocess
import time

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIO = os.path.dirname(HERE)
with open(os.path.join(SCENARIO, 'lab_vars.yml')) as f:
    VARS = yaml.safe_load(f)
PHASE = os.environ.get('LAB_PHASE', 'verify')
TOKEN = VARS['lab_hf_token']
API_KEY = VARS['lab_api_key']
SECRETS = (TOKEN, API_KEY)
NODE_CPUS = VARS['lab_node_cpus']        # "2-3"
NODE = str(VARS['lab_node'])             # "1"
SVC, CTR = 'vllm-svc', 'vllm-ctr'

PROBE = r'''
import json, os, subprocess, time, urllib.request

def sh(*cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          check=False).stdout

def read(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return None

def status(pid):
    out = {}
    for line in (read('/proc/%s/status' % pid) or '').splitlines():
        k, _, v = line.partition(':')
        if k in ('Cpus_allowed_list', 'Mems_allowed_list'):
            out[k] = v.strip()
    return out

def get(port, path):
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=20) as r:
            return r.status, r.read().decode()
    except Exception as e:
        return None, str(e)

deadline = time.time() + 300
while time.time() < deadline:
    if get(8000, '/health')[0] == 200 and get(8001, '/health')[0] == 200:
        break
    time.sleep(3)

res = {'health': {p: get(p, '/health')[0] for p in (8000, 8001)},
       'models': {p: get(p, '/v1/models')[1] for p in (8000, 8001)}}
show = sh('systemctl', 'show', 'vllm-svc.service', '-p', 'MainPID,ActiveState,UnitFileState,NRestarts')
res['svc_show'] = dict(l.split('=', 1) for l in show.splitlines() if '=' in l)
res['svc_status'] = status(res['svc_show'].get('MainPID', '0'))
res['svc_record'] = json.loads(read('/var/lib/vllm/cache/standin-vllm-svc.json') or 'null')
res['svc_unit'] = read('/etc/systemd/system/vllm-svc.service')
res['ctr_inspect'] = json.loads(sh('docker', 'inspect', 'vllm-ctr') or '[]')
pid = res['ctr_inspect'][0]['State']['Pid'] if res['ctr_inspect'] else 0
res['ctr_status'] = status(pid)
res['ctr_record'] = json.loads(read('/var/lib/vllm/cache/standin-vllm-ctr.json') or 'null')
res['daemon_json'] = json.loads(read('/etc/docker/daemon.json') or 'null')
res['docker_info'] = json.loads(sh('docker', 'info', '--format', '{{json .}}') or 'null')
res['env_files'] = {}
for name in ('vllm-svc', 'vllm-ctr'):
    st = os.stat('/etc/vllm/%s.env' % name)
    res['env_files'][name] = {'mode': oct(st.st_mode & 0o7777), 'uid': st.st_uid}
res['env_dir_mode'] = oct(os.stat('/etc/vllm').st_mode & 0o7777)
res['ps'] = sh('ps', 'auxww')
res['journal'] = sh('journalctl', '--no-pager', '-o', 'cat', '-n', '20000')
res['docker_logs'] = sh('docker', 'logs', 'vllm-ctr')
res['boot_id'] = read('/proc/sys/kernel/random/boot_id').strip()
res['uptime'] = float(read('/proc/uptime').split()[0])
res['now'] = time.time()
print(json.dumps(res))
'''


def check_output(host, cmd, attempts=4):
    """host.check_output, retried: on a loaded host sshd may time out during the banner exchange (rc 255)."""
    for i in range(attempts):
        try:
            return host.check_output(cmd)
        except RuntimeError:
            if i == attempts - 1:
                raise
            time.sleep(10)


@pytest.fixture(scope='module')
def probe(host):
    out = check_output(host, "python3 - <<'PROBE_EOF'\n%s\nPROBE_EOF" % PROBE)
    return json.loads(out)


def sha(value):
    return hashlib.sha256(value.encode()).hexdigest()


def contains_secret(text):
    """True/False only: never let pytest print the text (it could hold the secret)."""
    return any(s in (text or '') for s in SECRETS)


# ---------------------------------------------------------------- container runtime

def test_daemon_json_merged_and_foreign_keys_kept(probe):
    d = probe['daemon_json']
    # foreign keys written before the role ran (molecule/vllm/files/daemon.json)
    assert d['labels'] == ['medai.lab.site=foreign-key-must-survive']
    assert d['runtimes'] == {'nvidia': {'args': [], 'path': 'nvidia-container-runtime'}}
    assert d['log-opts']['labels'] == 'medai.lab.site'
    # managed keys
    assert d['log-driver'] == 'json-file'
    assert d['log-opts']['max-size'] == '100m' and d['log-opts']['max-file'] == '5'
    assert 'native.cgroupdriver=systemd' in d['exec-opts']
    assert d['default-ulimits']['nofile'] == {'Name': 'nofile', 'Soft': 65536, 'Hard': 65536}
    assert d['default-ulimits']['memlock'] == {'Name': 'memlock', 'Soft': -1, 'Hard': -1}


def test_docker_daemon_uses_the_config(probe):
    info = probe['docker_info']
    assert info['CgroupDriver'] == 'systemd'
    assert info['LoggingDriver'] == 'json-file'
    assert probe['daemon_json']['live-restore'] is True and info['LiveRestoreEnabled'] is True
    assert 'nvidia' in info['Runtimes']


# ---------------------------------------------------------------- systemd mode

def test_service_enabled_running_healthy(probe):
    show = probe['svc_show']
    assert show['ActiveState'] == 'active'
    assert show['UnitFileState'] == 'enabled'
    assert probe['health']['8000'] == 200
    ids = [m['id'] for m in json.loads(probe['models']['8000'])['data']]
    assert ids == ['baichuan-m2']


def test_service_pinned_to_the_node(probe):
    assert probe['svc_status'] == {'Cpus_allowed_list': NODE_CPUS, 'Mems_allowed_list': NODE}
    rec = probe['svc_record']
    assert rec['pid'] == int(probe['svc_show']['MainPID']), 'the record is from the running process'
    assert rec['cpus_allowed'] == [2, 3]
    assert rec['mems_allowed_list'] == NODE
    assert rec['mempolicy']['mode'] == 'bind' and rec['mempolicy']['nodes'] == [1]


def test_service_unit_settings(probe):
    unit = probe['svc_unit']
    for line in ('CPUAffinity=2-3', 'NUMAPolicy=bind', 'NUMAMask=1', 'AllowedCPUs=2-3', 'AllowedMemoryNodes=1',
                 'Restart=on-failure', 'LimitNOFILE=65536', 'LimitMEMLOCK=infinity', 'User=vllm',
                 'EnvironmentFile=/etc/vllm/vllm-svc.env'):
        assert line in unit.splitlines()
    assert 'CPUSchedulingPolicy' not in unit, 'RT is opt-in'


def test_service_argv_is_exactly_the_rendered_flags(probe):
    argv = probe['svc_record']['argv']
    assert argv[0] == '/usr/local/bin/vllm'
    assert argv[1:] == VARS['lab_svc_argv']
    assert '--enable-prefill-stream' not in argv


def test_service_got_the_secrets_in_its_environment(probe):
    env = probe['svc_record']['env_sha256']
    assert env.get('HF_TOKEN') == sha(TOKEN)
    assert env.get('VLLM_API_KEY') == sha(API_KEY)
    assert env.get('HF_HOME') == sha('/var/lib/vllm/cache/huggingface')
    assert 'CUDA_VISIBLE_DEVICES' not in env, 'no GPUs given in the lab'


def test_env_files_are_root_0600(probe):
    for name, st in probe['env_files'].items():
        assert st == {'mode': '0o600', 'uid': 0}, name
    assert probe['env_dir_mode'] == '0o700'


# ---------------------------------------------------------------- container mode

def test_container_running_healthy_and_restarting_unless_stopped(probe):
    c = probe['ctr_inspect'][0]
    assert c['State']['Running'] is True
    assert c['HostConfig']['RestartPolicy']['Name'] == 'unless-stopped'
    assert c['Config']['Healthcheck']['Test'][:2] == ['CMD', 'python3']
    assert probe['health']['8001'] == 200
    ids = [m['id'] for m in json.loads(probe['models']['8001'])['data']]
    assert ids == ['baichuan-m2-ctr']


def test_container_cpuset_memory_shm(probe):
    hc = probe['ctr_inspect'][0]['HostConfig']
    assert hc['CpusetCpus'] == NODE_CPUS
    assert hc['CpusetMems'] == NODE
    assert hc['Memory'] == 512 * 2**20
    assert hc['MemoryReservation'] == 256 * 2**20
    assert hc['ShmSize'] == 64 * 2**20
    assert hc['IpcMode'] in ('private', 'shareable')
    assert {u['Name']: (u['Soft'], u['Hard']) for u in hc['Ulimits']} == {'memlock': (-1, -1),
                                                                          'nofile': (65536, 65536)}
    assert hc['PortBindings'] == {'8001/tcp': [{'HostIp': '0.0.0.0', 'HostPort': '8001'}]}
    assert not hc.get('DeviceRequests'), 'no GPUs given in the lab'


def test_container_process_pinned_to_the_node(probe):
    assert probe['ctr_status'] == {'Cpus_allowed_list': NODE_CPUS, 'Mems_allowed_list': NODE}
    rec = probe['ctr_record']
    assert rec['cpus_allowed'] == [2, 3]
    assert rec['mems_allowed_list'] == NODE


def test_container_argv_user_and_secret(probe):
    c = probe['ctr_inspect'][0]
    rec = probe['ctr_record']
    assert rec['argv'][1:] == VARS['lab_ctr_argv']
    assert c['Config']['User'] not in ('', '0', 'root'), 'runs as the vllm user'
    assert rec['env_sha256'].get('HF_TOKEN') == sha(TOKEN)


# ---------------------------------------------------------------- secrets nowhere else

def test_secret_not_in_ps_journal_unit_or_logs(probe):
    assert not contains_secret(probe['ps']), 'secret in ps output'
    assert not contains_secret(probe['journal']), 'secret in the journal'
    assert not contains_secret(probe['svc_unit']), 'secret in the unit file'
    assert not contains_secret(probe['docker_logs']), 'secret in docker logs'


def test_secret_not_in_ansible_output():
    log = os.environ.get('ANSIBLE_LOG_PATH')
    if not log or not os.path.exists(log):
        pytest.skip('ANSIBLE_LOG_PATH not set (molecule.yml sets it)')
    with open(log, errors='replace') as f:
        text = f.read()
    assert 'medai.llmhost.vllm : Write the environment file' in text, 'the log holds the converge runs'
    assert not contains_secret(text), 'secret in the Ansible output (%s)' % log


# ---------------------------------------------------------------- reboot

def test_started_in_this_boot(probe):
    # Both records were written by processes started after this boot (after the reboot: by systemd/Docker).
    boot_time = probe['now'] - probe['uptime']
    assert probe['svc_record']['started_at'] > boot_time
    assert probe['ctr_record']['started_at'] > boot_time


# ---------------------------------------------------------------- refusals and broken starts (once)

@pytest.mark.skipif(PHASE == 'after-reboot', reason='run once, before the reboot')
def test_invalid_settings_refused_and_broken_start_fails_with_log_tail(host):
    inventory = os.environ['MOLECULE_INVENTORY_FILE']
    cmd = ['ansible-playbook', '-v', '-i', inventory, os.path.join(SCENARIO, 'negative.yml')]
    env = dict(os.environ)
    env.pop('ANSIBLE_LOG_PATH', None)   # checked separately; keep this run's output to itself
    try:
        run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
                             env=env, timeout=1500)
        out = run.stdout
        leaked = contains_secret(out)
        ok_cases = [line for line in out.splitlines() if 'NEGATIVE-CASE-OK' in line]
        tail = '\n'.join(out.splitlines()[-60:]) if not leaked else '(hidden: holds a secret)'
        assert run.returncode == 2, 'the play must fail; rc=%s\n%s' % (run.returncode, tail)
        assert not leaked, 'secret in the output of the failing run'
        assert len(ok_cases) == 5, 'all refusals and the container failure checked:\n%s' % tail
        # The final (unrescued) failure: systemd instance, message + journal tail with the stand-in's error.
        assert 'vllm broken-svc (systemd) is not healthy' in out, tail
        assert 'journalctl -u broken-svc.service' in out, tail
        assert 'told to fail at start (VLLM_STANDIN_EXIT=1)' in out, tail
        # The stand-in wrote its record before exiting: numactl --physcpubind=0-1 --preferred=0 took effect.
        rec = json.loads(check_output(host, 'cat /var/lib/vllm/cache/standin-broken-svc.json'))
        assert rec['argv'][0] == '/usr/local/bin/vllm'
        assert rec['cpus_allowed'] == [0, 1]
        assert rec['mempolicy']['mode'] == 'preferred' and rec['mempolicy']['nodes'] == [0]
        assert 'ExecStart=/usr/bin/numactl --physcpubind=0-1 --preferred=0 -- /usr/local/bin/vllm serve' in \
            check_output(host, 'cat /etc/systemd/system/broken-svc.service')
    finally:
        check_output(host, 'systemctl disable --now broken-svc.service; rm -f /etc/systemd/system/broken-svc.service '
                           '/etc/vllm/broken-svc.env /etc/vllm/broken-ctr.env; systemctl daemon-reload; '
                           'systemctl reset-failed broken-svc.service; docker rm -f broken-ctr; true')


# ---------------------------------------------------------------- daemon.json changes never stop inference (once)

DAEMON_AND_CONTAINER = (
    "systemctl show docker.service -p MainPID --value; "
    "docker inspect -f '{{.State.Pid}} {{.State.StartedAt}} {{.RestartCount}}' vllm-ctr; "
    "python3 -c 'import urllib.request as u; print(u.urlopen(\"http://127.0.0.1:8001/health\", timeout=20).status)'")


@pytest.mark.skipif(PHASE == 'after-reboot', reason='run once, before the reboot')
def test_vllm_container_keeps_running_through_daemon_json_changes(host):
    before = check_output(host, DAEMON_AND_CONTAINER).split()
    cmd = ['ansible-playbook', '-i', os.environ['MOLECULE_INVENTORY_FILE'], os.path.join(SCENARIO, 'daemon_change.yml')]
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
                         timeout=900, env=env)
    tail = '\n'.join(run.stdout.splitlines()[-40:])
    assert run.returncode == 0, tail
    # both changes restarted dockerd (a reload cannot apply log rotation) ...
    # the output of each task or handler, keyed by its banner
    blocks = re.split(r'\n(?=TASK \[|RUNNING HANDLER \[|PLAY RECAP)', run.stdout)
    restarts = [b for b in blocks if b.startswith('RUNNING HANDLER [medai.llmhost.container_runtime : Container runtime | '
                                                  'Restart dockerd]') and 'changed: [' in b]
    assert len(restarts) == 2, tail
    after = check_output(host, DAEMON_AND_CONTAINER).split()
    assert after[0] != before[0], 'dockerd was not restarted: MainPID %s' % after[0]
    # ... and the container is the same process, started at the same time, never restarted, still healthy
    assert after[1:4] == before[1:4], 'vllm-ctr changed: %s -> %s' % (before[1:4], after[1:4])
    assert after[4] == '200'
