# -*- coding: utf-8 -*-
"""scripts/test.sh on SIGTERM/SIGINT: every lab VM of the run is stopped, nobody else's, and the exit is non-zero.

Runs the real scripts/test.sh in a fake checkout: a fake scripts/lab_molecule.sh that "boots" a VM (a `sleep`
in its own session, as QEMU -daemonize is) and then hangs WITHOUT cleaning up (the worst case), and a fake
scripts/lab.py that keeps VM records with their owner and implements `down --owner-prefix`.
"""
from __future__ import absolute_import, division, print_function

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))

FAKE_LAB_PY = r'''
import json, os, signal, sys
vms = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'vms')
with open(os.path.join(vms, '..', 'lab_calls'), 'a') as fh:
    fh.write(' '.join(sys.argv[1:]) + '\n')
args = sys.argv[1:]
if args[:1] == ['down'] and '--owner-prefix' in args:
    prefix = args[args.index('--owner-prefix') + 1]
    for name in os.listdir(vms):
        vm = json.load(open(os.path.join(vms, name)))
        if vm['owner'].startswith(prefix):
            try:
                os.kill(vm['pid'], signal.SIGKILL)
            except OSError:
                pass
            os.unlink(os.path.join(vms, name))
'''

# "$1" is the scenario; --images succeeds unless FAKE_IMAGES_RC says otherwise.
FAKE_LAB_MOLECULE = r'''
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ "$1" = --images ]; then echo "fake image build"; exit "${FAKE_IMAGES_RC:-0}"; fi
setsid sleep 300 </dev/null >/dev/null 2>&1 &
printf '{"owner": "%s", "pid": %d}' "$MEDAI_LAB_OWNER" "$!" >"$ROOT/vms/$1-instance"
exec sleep 300
'''


def _write(path, text, mode=0o644):
    with open(path, 'w') as fh:
        fh.write(text)
    os.chmod(path, mode)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with open('/proc/%d/stat' % pid) as fh:
        return fh.read().split(')')[-1].split()[0] != 'Z'


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / 'co'
    for sub in ('scripts', '.venv/bin', 'vms', 'molecule/a', 'molecule/b'):
        (root / sub).mkdir(parents=True)
    shutil.copy(os.path.join(REPO, 'scripts', 'test.sh'), str(root / 'scripts' / 'test.sh'))
    _write(str(root / 'scripts' / 'lab.py'), FAKE_LAB_PY)
    _write(str(root / 'scripts' / 'lab_molecule.sh'), FAKE_LAB_MOLECULE, 0o755)
    _write(str(root / '.venv' / 'bin' / 'activate'), '')
    os.symlink(sys.executable, str(root / '.venv' / 'bin' / 'python'))
    os.symlink(sys.executable, str(root / '.venv' / 'bin' / 'python3'))
    for scenario in ('a', 'b'):
        _write(str(root / 'molecule' / scenario / 'molecule.yml'), 'platforms: [{name: instance, flavour: bookworm}]\n')
    # Somebody else's VM on the same machine: must survive.
    foreign = subprocess.Popen(['sleep', '300'], start_new_session=True)
    _write(str(root / 'vms' / 'colleague-vm'), '{"owner": "molecule-4242", "pid": %d}' % foreign.pid)
    yield root, foreign
    foreign.kill()
    foreign.wait()


def _start(root, env_extra=None):
    env = dict(os.environ, MOLECULE_JOBS='2', MEDAI_STOP_GRACE='2')
    env.pop('MEDAI_LAB_RUN', None)
    env.update(env_extra or {})
    return subprocess.Popen(['bash', str(root / 'scripts' / 'test.sh'), '--no-setup', '--only', 'molecule',
                             '--scenarios', 'a,b'], cwd=str(root), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _own_vms(root):
    vms = {}
    for name in ('a-instance', 'b-instance'):
        try:
            with open(str(root / 'vms' / name)) as fh:
                vms[name] = fh.read()
        except (IOError, OSError):
            pass
    return vms


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_vm_of_the_run_and_only_those(checkout, sig):
    root, foreign = checkout
    proc = _start(root)
    deadline = time.time() + 30
    while len(_own_vms(root)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    vms = _own_vms(root)
    assert sorted(vms) == ['a-instance', 'b-instance']
    qemu_pids = [int(v.split('"pid": ')[1].rstrip('}')) for v in vms.values()]
    assert all(_alive(pid) for pid in qemu_pids)

    t0 = time.time()
    proc.send_signal(sig)
    out = proc.communicate(timeout=30)[0].decode()
    elapsed = time.time() - t0

    assert proc.returncode != 0
    assert elapsed < 15, out
    assert out.rstrip().splitlines()[-1] == '0 passed, 1 failed'
    assert '(interrupted)' in out
    assert not any(_alive(pid) for pid in qemu_pids), out
    assert _own_vms(root) == {}
    assert _alive(foreign.pid)
    assert (root / 'vms' / 'colleague-vm').exists()
    calls = (root / 'lab_calls').read_text()
    assert 'down --owner-prefix test.sh-%d/ --missing-ok' % proc.pid in calls


def test_a_failed_image_build_fails_the_molecule_stage_before_any_scenario(checkout):
    root, _foreign = checkout
    proc = _start(root, {'FAKE_IMAGES_RC': '3'})
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode != 0
    assert 'lab image build FAILED: exit 3' in out
    assert out.rstrip().splitlines()[-1] == '0 passed, 1 failed'
    assert _own_vms(root) == {}
