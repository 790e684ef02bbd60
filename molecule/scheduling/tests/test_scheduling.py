# -*- coding: utf-8 -*-
# Copyright (c) medai.llmhost contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""testinfra checks of the scheduling scenario (run before and after the reboot).

One ssh round trip: a probe script runs on the guest, waits (bounded) until the services are up and the thread
watcher has applied the per-thread policy after a (re)start, and prints everything as JSON: every thread of every
process of each unit (policy and rt_priority from /proc/<pid>/task/<tid>/stat fields 41/40, Cpus_allowed_list and
Mems_allowed_list from .../status), the slice's cpuset files, the scheduler tunables and RT throttling.
"""
import json
import os

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, '..', 'vars.yml')) as f:
    VARS = yaml.safe_load(f)

SCHED_OTHER, SCHED_FIFO, SCHED_RR = 0, 1, 2
PART_CPUS = '2-3'          # node 1 (CPUs 2-3) minus housekeeping 0-1
PART_MEMS = '1'
HOUSEKEEPING = {0, 1}
SLICE = VARS['scn_partition']['slice']
ENGINE = 'standin-inference.service'
GATEWAY = 'standin-gateway.service'
BACKUP = 'backup.service'

PROBE = r'''
import json, os, subprocess, time, urllib.request

UNITS = ['standin-inference.service', 'standin-gateway.service', 'backup.service']


def read(p):
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError:
        return None


def show(u, prop):
    return subprocess.run(['systemctl', 'show', '-p', prop, '--value', u], stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()


def status_field(path, key):
    for line in (read(path) or '').splitlines():
        if line.startswith(key + ':'):
            return line.split(':', 1)[1].strip()
    return None


def unit(u):
    cg = show(u, 'ControlGroup')
    pids = set()
    if cg:
        for d, _, files in os.walk('/sys/fs/cgroup' + cg):
            pids.update(int(x) for x in (read(os.path.join(d, 'cgroup.procs')) or '').split())
    threads = []
    for pid in sorted(pids):
        try:
            tids = sorted(int(t) for t in os.listdir('/proc/%d/task' % pid))
        except OSError:
            continue
        for tid in tids:
            base = '/proc/%d/task/%d' % (pid, tid)
            st = read(base + '/stat')
            if not st:
                continue
            rpar = st.rfind(')')
            rest = st[rpar + 2:].split()
            threads.append({'pid': pid, 'tid': tid, 'comm': st[st.find('(') + 1:rpar],
                            'rt_priority': int(rest[37]), 'policy': int(rest[38]),
                            'cpus': status_field(base + '/status', 'Cpus_allowed_list'),
                            'mems': status_field(base + '/status', 'Mems_allowed_list')})
    return {'cgroup': cg, 'active': show(u, 'ActiveState'), 'threads': threads}


def http(port, path, body=None):
    try:
        req = urllib.request.Request('http://127.0.0.1:%d%s' % (port, path),
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status
    except Exception as e:
        return str(e)


def tunables():
    d = '/sys/kernel/debug/sched/'
    return dict((n, read(d + n)) for n in sorted(os.listdir(d)) if n.endswith('_ns')) if os.path.isdir(d) else None


def write(p, v):
    with open(p, 'w') as f:
        f.write(v)


def rebuild_probe():
    """Make the kernel rebuild its scheduling domains (a one-CPU root partition on housekeeping CPU 1, created
    then dissolved) and read the tunables again: a rebuild recomputes them from the kernel's stored base."""
    cg = '/sys/fs/cgroup/medai-rebuild-probe'
    os.mkdir(cg)
    try:
        write(cg + '/cpuset.cpus', '1')
        write(cg + '/cpuset.cpus.partition', 'root')
        part = read(cg + '/cpuset.cpus.partition')
        during = tunables()
        write(cg + '/cpuset.cpus.partition', 'member')
    finally:
        os.rmdir(cg)
    return {'partition': part, 'during': during, 'after': tunables()}


def snapshot():
    out = {'units': dict((u, unit(u)) for u in UNITS)}
    cg = '/sys/fs/cgroup/llminference.slice/'
    out['slice'] = dict((k, read(cg + k)) for k in ('cpuset.cpus', 'cpuset.mems', 'cpuset.cpus.effective',
                                                     'cpuset.mems.effective', 'cpuset.cpus.partition'))
    out['root_effective'] = read('/sys/fs/cgroup/cpuset.cpus.effective')
    out['system_slice_effective'] = read('/sys/fs/cgroup/system.slice/cpuset.cpus.effective')
    out['tunables'] = tunables()
    out['tunable_scaling'] = read('/sys/kernel/debug/sched/tunable_scaling')
    out['tunables_unit'] = show('medai-llmhost-sched-tunables.service', 'ActiveState')
    out['rt_runtime_us'] = read('/proc/sys/kernel/sched_rt_runtime_us')
    out['watcher'] = show('medai-llmhost-sched-threads.service', 'ActiveState')
    out['release'] = os.uname().release
    out['boot_id'] = read('/proc/sys/kernel/random/boot_id')
    out['health'] = {'engine': http(8000, '/health'), 'gateway': http(8001, '/health')}
    return out


def ready(s):
    eng = [t for t in s['units']['standin-inference.service']['threads'] if t['comm'].startswith('EngineCore')]
    return (all(u['active'] == 'active' for u in s['units'].values()) and len(eng) >= 2
            and all(t['policy'] == 1 for t in eng) and s['health'] == {'engine': 200, 'gateway': 200})


deadline = time.time() + 120
s = snapshot()
while not ready(s) and time.time() < deadline:
    time.sleep(2)
    s = snapshot()
# a completion runs CPU work on an engine thread: the service works inside the partition with FIFO threads
s['completion'] = http(8000, '/v1/completions', {'prompt': 'x', 'standin_work_ms': 50})
s['ready'] = ready(s)
s['rebuild'] = rebuild_probe()
s = dict(s, units=dict((u, unit(u)) for u in UNITS))  # after the completion: api-server threads exist now
print(json.dumps(s))
'''


@pytest.fixture(scope='module')
def snap(host):
    r = host.run("python3 - <<'MEDAI_PROBE_EOF'\n%s\nMEDAI_PROBE_EOF" % PROBE)
    assert r.rc == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def cpuset(text):
    out = set()
    for part in (text or '').split(','):
        if part:
            a, _sep, b = part.partition('-')
            out.update(range(int(a), int(b or a) + 1))
    return out


def test_services_ready(snap):
    assert snap['ready'], json.dumps({k: snap[k] for k in ('health', 'watcher')})
    assert snap['completion'] == 200


def test_partition_is_root_on_node1(snap):
    sl = snap['slice']
    assert sl['cpuset.cpus.partition'] == 'root', sl
    assert cpuset(sl['cpuset.cpus.effective']) == cpuset(PART_CPUS), sl
    assert sl['cpuset.mems.effective'] == PART_MEMS, sl
    # the rest of the system (system.slice: sshd, journald, backup) is left with the housekeeping CPUs
    assert cpuset(snap['system_slice_effective']) == HOUSEKEEPING, snap['system_slice_effective']


@pytest.mark.parametrize('unit', [ENGINE, GATEWAY])
def test_chain_runs_in_partition(snap, unit):
    u = snap['units'][unit]
    assert u['cgroup'] == '/%s/%s' % (SLICE, unit), u['cgroup']
    assert u['threads']
    for t in u['threads']:
        assert cpuset(t['cpus']) == cpuset(PART_CPUS), t
        assert t['mems'] == PART_MEMS, t


def test_engine_only_named_threads_fifo(snap):
    """thread_regex ^EngineCore: exactly the engine threads get FIFO 50, all others stay SCHED_OTHER."""
    threads = snap['units'][ENGINE]['threads']
    engine = [t for t in threads if t['comm'].startswith('EngineCore')]
    others = [t for t in threads if not t['comm'].startswith('EngineCore')]
    assert len(engine) == 2, threads
    assert others, threads  # main thread (+ api-server threads)
    for t in engine:
        assert (t['policy'], t['rt_priority']) == (SCHED_FIFO, 50), t
    for t in others:
        assert (t['policy'], t['rt_priority']) == (SCHED_OTHER, 0), t


def test_gateway_all_threads_rr(snap):
    """No thread_regex: every thread (main, EngineCore_0, api-server) runs SCHED_RR 20."""
    threads = snap['units'][GATEWAY]['threads']
    assert len(threads) >= 2, threads
    for t in threads:
        assert (t['policy'], t['rt_priority']) == (SCHED_RR, 20), t


def test_backup_other_on_housekeeping(snap):
    u = snap['units'][BACKUP]
    assert u['active'] == 'active'
    assert u['cgroup'].startswith('/system.slice/'), u['cgroup']
    assert len(u['threads']) >= 2, u  # sh + stress-ng (+ worker, dd)
    for t in u['threads']:
        assert (t['policy'], t['rt_priority']) == (SCHED_OTHER, 0), t
        assert cpuset(t['cpus']) <= HOUSEKEEPING, t


def test_rt_throttling_kept(snap):
    assert snap['rt_runtime_us'] == '950000'


def test_watcher_running(snap):
    assert snap['watcher'] == 'active'


def test_tunables_resolved_per_kernel(snap):
    tun = snap['tunables']
    assert tun is not None, 'debugfs /sys/kernel/debug/sched not available'
    want = VARS['scheduling_tunables']
    major, minor = (int(x) for x in snap['release'].split('.')[:2])
    if (major, minor) >= (6, 6):
        assert 'latency_ns' not in tun and 'min_granularity_ns' not in tun
        assert tun['base_slice_ns'] == str(want['base_slice_ns']), tun
    else:
        assert 'base_slice_ns' not in tun
        for k in ('latency_ns', 'min_granularity_ns', 'wakeup_granularity_ns'):
            assert tun[k] == str(want[k]), (k, tun)


def test_tunables_kept_as_base_values(snap):
    """tunable_scaling rewritten (none = 0) after the tunables, by the boot unit too."""
    assert snap['tunable_scaling'] == '0', snap['tunable_scaling']
    assert snap['tunables_unit'] == 'active', snap['tunables_unit']


def test_tunables_survive_a_domain_rebuild(snap):
    """A scheduling-domain rebuild (as at boot when the partition is created) recomputes the tunables from the
    kernel's base; before the fix base_slice_ns fell back from 3000000 to 2100000 here."""
    rb = snap['rebuild']
    assert rb['partition'] == 'root', rb  # the probe partition was valid, so the domains were rebuilt
    assert rb['during'] == snap['tunables'], rb
    assert rb['after'] == snap['tunables'], rb
