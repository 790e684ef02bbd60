#!/usr/bin/env python3
"""medai.llmhost lab: disposable Debian QEMU VMs for molecule, testinfra and the demo.

  scripts/lab.py build  --flavour bookworm [--force]     build/reuse the cached image
  scripts/lab.py save   --flavour bookworm [--force]     boot once, save the booted state (fast start)
  scripts/lab.py up NAME [--flavour F] [--forward 18000:8000] [--cold] [--append ARGS] [--json] [--reuse]
  scripts/lab.py wait NAME | ssh NAME [cmd...] | list | inventory [NAME...] | down NAME... | down --all
  scripts/lab.py down --owner TAG | --owner-prefix RUN/ | --prefix NAMEPREFIX
  scripts/lab.py probe-kvm                               try KVM once, cache the verdict
  scripts/lab.py gc                                      remove images/saved states of old builder keys

See docs/lab.md. Python stdlib only (3.11+); needs qemu-system-x86, qemu-utils, mmdebstrap, ssh.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab_image  # noqa: E402

CACHE = Path(os.environ.get("MEDAI_CACHE_DIR", Path.home() / ".cache" / "medai-llmhost"))
VMS = CACHE / "vms"
LOGS = CACHE / "logs"
SSH_DIR = CACHE / "ssh"
KEY = SSH_DIR / "id_ed25519"
KVM_VERDICT = CACHE / "kvm-probe.json"

# VM shape. Saved states are only valid for an identical shape (it is part of their key).
CPUS = 4
MEM_MB = 2048
NUMA_NODES = 2
DATA_DISK = "4G"
DATA_SERIAL = "medai-data"   # -> /dev/disk/by-id/virtio-medai-data (guest /dev/vdb)
ROOT_SERIAL = "medai-root"   # -> guest /dev/vda
DEFAULT_NAME = "lab"             # `lab.py up|ssh|wait|down` without a name (make lab-up etc.)
BOOT_TIMEOUT = int(os.environ.get("MEDAI_LAB_BOOT_TIMEOUT", "600"))
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=8"]


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


class LabError(Exception):
    """A failure with a message for the user (printed by main, exit status 1)."""


def die(msg: str) -> None:
    raise LabError(msg)


@contextlib.contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- ssh key / images
def ssh_key() -> str:
    with locked(CACHE / "ssh.lock"):
        if not KEY.exists():
            SSH_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "medai-lab",
                            "-f", str(KEY)], check=True)
    return KEY.with_suffix(".pub").read_text().strip()


def ensure_image(flavour: str, force: bool = False) -> Path:
    pub = ssh_key()
    with locked(CACHE / "images" / f"{flavour}.lock"):
        return lab_image.build(CACHE, flavour, pub, force=force)


def image_meta(img: Path) -> dict:
    return json.loads((img / "meta.json").read_text())


# ----------------------------------------------------------------------------- accelerator
def qemu_version() -> str:
    out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0]


def accel() -> tuple[str, str]:
    """(accel, cpu). KVM only when /dev/kvm exists AND (MEDAI_LAB_KVM=1 or a cached successful probe).
    MEDAI_LAB_KVM=0 forces TCG. Never probes implicitly (a hanging probe must not cost CI minutes)."""
    want = os.environ.get("MEDAI_LAB_KVM", "auto")
    if want == "0" or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "qemu64"
    if want == "1":
        return "kvm", "host"
    try:
        v = json.loads(KVM_VERDICT.read_text())
        if v.get("ok") and v.get("qemu") == qemu_version() and v.get("uname") == os.uname().release:
            return "kvm", "host"
    except (OSError, ValueError):
        pass
    return "tcg", "qemu64"


# ----------------------------------------------------------------------------- qemu plumbing
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_args(img: Path, acc: str, cpu: str, append: str, root: Path, data: Path, vmdir: Path,
              fwds: list[tuple[int, int]]) -> list[str]:
    per_node = MEM_MB // NUMA_NODES
    cpn = CPUS // NUMA_NODES
    args = ["qemu-system-x86_64", "-machine", f"q35,accel={acc}", "-cpu", cpu,
            "-smp", f"{CPUS},sockets={NUMA_NODES},cores={cpn},threads=1", "-m", f"{MEM_MB}M"]
    for n in range(NUMA_NODES):
        args += ["-object", f"memory-backend-ram,id=mem{n},size={per_node}M",
                 "-numa", f"node,nodeid={n},cpus={n * cpn}-{(n + 1) * cpn - 1},memdev=mem{n}"]
    hostfwd = ",".join(f"hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in fwds)
    args += ["-kernel", str(img / "vmlinuz"), "-initrd", str(img / "initrd.img"), "-append", append,
             "-nodefaults", "-display", "none", "-vga", "none",
             "-drive", f"if=none,id=root,file={root},format=qcow2,cache=unsafe,discard=unmap",
             "-device", f"virtio-blk-pci,drive=root,serial={ROOT_SERIAL}",
             "-drive", f"if=none,id=data,file={data},format=qcow2,cache=unsafe,discard=unmap",
             "-device", f"virtio-blk-pci,drive=data,serial={DATA_SERIAL}",
             "-netdev", f"user,id=net0,{hostfwd}", "-device", "virtio-net-pci,netdev=net0",
             "-device", "virtio-rng-pci",
             "-serial", f"file:{vmdir / 'console.log'}",
             "-qmp", f"unix:{vmdir / 'qmp.sock'},server=on,wait=off",
             "-pidfile", str(vmdir / "qemu.pid"), "-daemonize"]
    return args


def shape_key(img: Path, acc: str, cpu: str, append: str) -> str:
    """What a saved state depends on: image, accelerator, CPU model, VM shape, QEMU version."""
    dummy = Path("/X")
    shape = qemu_args(img, acc, cpu, append, dummy, dummy, dummy, [(0, 22)])
    h = hashlib.sha256(json.dumps([shape, qemu_version()]).encode())
    return f"{acc}-{h.hexdigest()[:10]}"


class QMP:
    def __init__(self, path: Path, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.settimeout(timeout)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.f = self.sock.makefile("rwb")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self) -> dict:
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("QMP closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name: str, **args) -> dict:
        self.f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.f.flush()
        r = self._read()
        if "error" in r:
            raise RuntimeError(f"QMP {name}: {r['error']}")
        return r.get("return", {})

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def pid_alive(pid: int, vmdir: Path) -> bool:
    """True if pid is a QEMU process started for vmdir (guards against pid reuse)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmd) and b"qemu-system" in cmd[0] and any(str(vmdir).encode() in c for c in cmd)


def read_pid(vmdir: Path) -> int | None:
    try:
        return int((vmdir / "qemu.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def ssh_base(port: int) -> list[str]:
    return ["ssh", *SSH_OPTS, "-i", str(KEY), "-p", str(port), "root@127.0.0.1"]


def ssh_run(port: int, cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(ssh_base(port) + ["-o", "ConnectTimeout=10", cmd], capture_output=True,
                          text=True, timeout=timeout, check=check)


def console_tail(vmdir: Path, n: int = 25) -> str:
    try:
        return "\n".join((vmdir / "console.log").read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no console log)"


def wait_ssh(vmdir: Path, port: int, timeout: float = BOOT_TIMEOUT) -> float:
    t0 = time.monotonic()
    pid = read_pid(vmdir)
    while True:
        try:
            r = subprocess.run(ssh_base(port) + ["-o", "ConnectTimeout=5", "true"], capture_output=True,
                               timeout=30, check=False)
            if r.returncode == 0:
                return time.monotonic() - t0
        except subprocess.TimeoutExpired:
            pass
        if pid is None or not pid_alive(pid, vmdir):
            die(f"QEMU for {vmdir.name} exited while waiting for ssh; console:\n{console_tail(vmdir)}")
        if time.monotonic() - t0 > timeout:
            die(f"no ssh on port {port} after {timeout:.0f} s; console ({vmdir / 'console.log'}):\n"
                f"{console_tail(vmdir)}")
        time.sleep(1)


def start_qemu(args_for_port, vmdir: Path) -> tuple[int, list[tuple[int, int]]]:
    """Start QEMU daemonized; args_for_port(fwds) builds the argv. Retries on a port clash."""
    for attempt in range(5):
        with locked(VMS / ".ports.lock"):
            fwds = args_for_port.resolve_ports()
            argv = args_for_port(fwds)
            (vmdir / "qemu.argv").write_text(shlex.join(argv) + "\n")
            r = subprocess.run(argv, capture_output=True, text=True, check=False)
        if r.returncode == 0:
            pid = read_pid(vmdir)
            if pid is None:
                die("QEMU started but wrote no pidfile")
            return pid, fwds
        if "hostfwd" in r.stderr or "Could not set up host forwarding" in r.stderr:
            log(f"port clash ({r.stderr.strip()}), retrying")
            continue
        die(f"QEMU failed to start: {r.stderr.strip()}\n  argv: {vmdir / 'qemu.argv'}")
    die("could not find free ports")


class Argv:
    """Builds the argv for a VM; resolves host ports (0 = pick a free one) under the ports lock."""

    def __init__(self, img, acc, cpu, append, root, data, vmdir, forwards, incoming=None):
        self.img, self.acc, self.cpu, self.append = img, acc, cpu, append
        self.root, self.data, self.vmdir, self.forwards, self.incoming = root, data, vmdir, forwards, incoming

    def resolve_ports(self) -> list[tuple[int, int]]:
        used: set[int] = set()
        out = []
        for h, g in [(0, 22)] + self.forwards:
            if h == 0:
                h = free_port()
                while h in used:
                    h = free_port()
            used.add(h)
            out.append((h, g))
        return out

    def __call__(self, fwds) -> list[str]:
        a = qemu_args(self.img, self.acc, self.cpu, self.append, self.root, self.data, self.vmdir, fwds)
        if self.incoming:
            a += ["-incoming", f"exec:cat {shlex.quote(str(self.incoming))}"]
        return a


def stop_vm(vmdir: Path, timeout: float = 10) -> None:
    pid = read_pid(vmdir)
    if pid is None or not pid_alive(pid, vmdir):
        return
    with contextlib.suppress(Exception):
        q = QMP(vmdir / "qmp.sock", timeout=3)
        with contextlib.suppress(Exception):
            q.cmd("quit")
        q.close()
    deadline = time.monotonic() + timeout
    while pid_alive(pid, vmdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not pid_alive(pid, vmdir):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while pid_alive(pid, vmdir) and time.monotonic() < deadline:
            time.sleep(0.1)
    if pid_alive(pid, vmdir):
        die(f"could not stop QEMU pid {pid}")


# ----------------------------------------------------------------------------- VM records
def vm_dir(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        die(f"bad VM name {name!r}")
    return VMS / name


def vm_info(name: str) -> dict | None:
    try:
        return json.loads((vm_dir(name) / "vm.json").read_text())
    except (OSError, ValueError):
        return None


def vm_running(name: str) -> bool:
    vd = vm_dir(name)
    pid = read_pid(vd)
    return pid is not None and pid_alive(pid, vd)


def public_info(info: dict) -> dict:
    keys = ("name", "owner", "flavour", "address", "port", "user", "identity_file", "forwards", "pid", "mode",
            "kernel", "accel", "boot_seconds", "console_log", "state_dir")
    return {k: info.get(k) for k in keys}


def archive_console(vd: Path) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    src = vd / "console.log"
    if src.exists():
        shutil.copy2(src, LOGS / f"{vd.name}-{time.strftime('%Y%m%d-%H%M%S')}.console.log")
    old = sorted(LOGS.glob("*.console.log"), key=lambda p: p.stat().st_mtime)
    for p in old[:-30]:
        p.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- saved state
def saved_dir(img: Path, key: str) -> Path:
    return img / "saved" / key


def ensure_saved(img: Path, acc: str, cpu: str, append: str, force: bool = False) -> Path:
    key = shape_key(img, acc, cpu, append)
    sd = saved_dir(img, key)
    with locked(img / "saved.lock"):
        if (sd / "meta.json").exists() and not force:
            return sd
        t0 = time.monotonic()
        tmp = sd.with_name(sd.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        name = f"_save-{img.name}"
        vd = vm_dir(name)
        if vd.exists():
            stop_vm(vd)
            shutil.rmtree(vd)
        vd.mkdir(parents=True)
        try:
            root, data = tmp / "root.qcow2", tmp / "data.qcow2"
            mk_overlay(img / "base.qcow2", root)
            mk_blank(data)
            argv = Argv(img, acc, cpu, append, root, data, vd, [])
            log(f"saving a booted state of {img.name} ({acc}, cpu {cpu}): cold boot first")
            pid, fwds = start_qemu(argv, vd)
            (vd / "vm.json").write_text(json.dumps({"name": name, "pid": pid, "port": fwds[0][0], "mode": "save",
                                                    "owner": os.environ.get("MEDAI_LAB_OWNER", "")}))
            boot = wait_ssh(vd, fwds[0][0])
            log(f"cold boot to ssh: {boot:.1f} s; settling")
            # Let boot finish, then make the state small and the disk consistent.
            ssh_run(fwds[0][0], "systemctl is-system-running --wait >/dev/null 2>&1; "
                    "rm -f /etc/ssh/ssh_host_*.lock; sync; echo 3 > /proc/sys/vm/drop_caches; sync",
                    timeout=600, check=False)
            q = QMP(vd / "qmp.sock")
            q.cmd("stop")
            q.cmd("migrate-set-parameters", **{"max-bandwidth": 8 * 2**30})
            state = tmp / "state.mig"
            q.cmd("migrate", uri=f"exec:cat > {shlex.quote(str(state))}")
            while True:
                st = q.cmd("query-migrate").get("status")
                if st == "completed":
                    break
                if st in ("failed", "cancelled"):
                    die(f"saving the VM state failed: {q.cmd('query-migrate')}")
                time.sleep(0.2)
            with contextlib.suppress(Exception):
                q.cmd("quit")
            q.close()
            deadline = time.monotonic() + 30
            while pid_alive(pid, vd) and time.monotonic() < deadline:
                time.sleep(0.1)
            stop_vm(vd)
            data.unlink()  # every VM gets its own blank data disk (same content: zeros)
            meta = {"key": key, "accel": acc, "cpu": cpu, "append": append, "qemu": qemu_version(),
                    "cold_boot_to_ssh_seconds": round(boot, 1),
                    "save_seconds": round(time.monotonic() - t0, 1),
                    "state_bytes": state.stat().st_size, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
            (tmp / "root.qcow2").chmod(0o444)
            if sd.exists():
                shutil.rmtree(sd)
            tmp.rename(sd)
            log(f"saved state {key}: {meta['state_bytes'] // 2**20} MiB in {meta['save_seconds']} s")
        except BaseException:
            stop_vm(vd)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            archive_console(vd)
            shutil.rmtree(vd, ignore_errors=True)
        return sd


def mk_overlay(backing: Path, path: Path) -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(backing),
                    str(path)], check=True)


def mk_blank(path: Path) -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), DATA_DISK], check=True)


# ----------------------------------------------------------------------------- commands
def parse_forward(s: str) -> tuple[int, int]:
    try:
        if ":" in s:
            h, g = s.split(":", 1)
            return int(h), int(g)
        return 0, int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--forward wants HOST:GUEST or GUEST (host port 0 = any), got {s!r}")


def cmd_build(a) -> None:
    img = ensure_image(a.flavour, force=a.force)
    m = image_meta(img)
    print(json.dumps({"image": str(img), **{k: m[k] for k in ("kernel", "build_seconds", "base_qcow2_bytes")}}))


def cmd_save(a) -> None:
    img = ensure_image(a.flavour)
    acc, cpu = accel()
    sd = ensure_saved(img, acc, cpu, image_meta(img)["append"], force=a.force)
    print(json.dumps({"saved": str(sd), **json.loads((sd / "meta.json").read_text())}))


def cmd_up(a) -> None:
    name = a.name
    vd = vm_dir(name)
    if vd.exists():
        if vm_running(name):
            if a.reuse:
                info = vm_info(name)
                if info:
                    wait_ssh(vd, info["port"])
                    print(json.dumps(public_info(info)) if a.json else info["port"])
                    return
            die(f"VM {name} is already running (scripts/lab.py down {name})")
        archive_console(vd)
        shutil.rmtree(vd)
    t_start = time.monotonic()
    img = ensure_image(a.flavour)
    meta = image_meta(img)
    acc, cpu = accel()
    append = meta["append"] + (" " + a.append if a.append else "")
    cold = a.cold or bool(a.append) or os.environ.get("MEDAI_LAB_COLD") == "1"
    sd = None if cold else ensure_saved(img, acc, cpu, append)
    try:
        info = start_vm(a, vd, img, meta, acc, cpu, append, sd)
    except Exception as e:  # noqa: BLE001 - a broken saved state must not block the tests (LabError too)
        if sd is None:
            raise
        log(f"{name}: resuming the saved state failed ({e}); cold boot instead. "
            f"If this repeats: scripts/lab.py save --flavour {a.flavour} --force")
        info = start_vm(a, vd, img, meta, acc, cpu, append, None)
    log(f"{name}: up ({info['mode']}, {acc}) ssh 127.0.0.1:{info['port']} in {info['boot_seconds']} s "
        f"(total {time.monotonic() - t_start:.1f} s)")
    print(json.dumps(public_info(info)) if a.json else info["port"])


def start_vm(a, vd: Path, img: Path, meta: dict, acc: str, cpu: str, append: str, sd: Path | None) -> dict:
    """Start one VM (resume from saved state sd, or cold boot), wait for ssh, set clock/hostname."""
    name = a.name
    vd.mkdir(parents=True)
    try:
        root, data = vd / "root.qcow2", vd / "data.qcow2"
        mk_overlay((sd / "root.qcow2") if sd else (img / "base.qcow2"), root)
        mk_blank(data)
        argv = Argv(img, acc, cpu, append, root, data, vd, a.forward or [],
                    incoming=(sd / "state.mig") if sd else None)
        t0 = time.monotonic()
        pid, fwds = start_qemu(argv, vd)
        port = fwds[0][0]
        info = {"name": name, "flavour": a.flavour, "image": str(img), "kernel": meta["kernel"],
                "address": "127.0.0.1", "port": port, "user": "root", "identity_file": str(KEY),
                "forwards": [{"host": h, "guest": g} for h, g in fwds[1:]], "pid": pid,
                "mode": "resume" if sd else "cold", "accel": acc, "cpu": cpu, "append": append,
                "saved_state": str(sd) if sd else None, "state_dir": str(vd),
                "console_log": str(vd / "console.log"), "started_at": time.time(),
                "owner": os.environ.get("MEDAI_LAB_OWNER", "")}
        (vd / "vm.json").write_text(json.dumps(info, indent=2) + "\n")
        if sd:
            q = QMP(vd / "qmp.sock")
            deadline = time.monotonic() + 300
            while True:
                st = q.cmd("query-status")["status"]
                if st != "inmigrate":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("loading the saved state took > 300 s")
                time.sleep(0.05)
            if st not in ("running", "paused", "postmigrate", "prelaunch"):
                raise RuntimeError(f"VM state after loading the saved state: {st}")
            if st != "running":
                q.cmd("cont")
            q.close()
        wait_ssh(vd, port, timeout=min(BOOT_TIMEOUT, 300) if sd else BOOT_TIMEOUT)
        # The resumed guest's clock stands at the save instant: set it from the host. Name the host.
        hn = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "lab"
        now = f"{time.time():.3f}"
        r = ssh_run(port, f"date -u -s @{now} >/dev/null && hostname {hn} && echo {hn} > /etc/hostname && "
                    f"sed -i 's/^127.0.1.1.*/127.0.1.1\\t{hn}/' /etc/hosts", timeout=120, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"post-start setup (clock, hostname) failed: {r.stderr.strip()}")
        info["hostname"] = hn
        info["boot_seconds"] = round(time.monotonic() - t0, 1)
        (vd / "vm.json").write_text(json.dumps(info, indent=2) + "\n")
        return info
    except BaseException:
        log(f"{name}: start failed, cleaning up")
        stop_vm(vd)
        archive_console(vd)
        shutil.rmtree(vd, ignore_errors=True)
        raise


def all_vm_names() -> list[str]:
    if not VMS.exists():
        return []
    return sorted(p.name for p in VMS.iterdir() if p.is_dir() and not p.name.startswith("."))


def cmd_down(a) -> None:
    if a.all:
        names = all_vm_names()
    elif a.prefix:
        names = [n for n in all_vm_names() if n.startswith(a.prefix)]
    elif a.owner:
        names = [n for n in all_vm_names() if (vm_info(n) or {}).get("owner") == a.owner]
    elif a.owner_prefix:
        names = [n for n in all_vm_names() if ((vm_info(n) or {}).get("owner") or "").startswith(a.owner_prefix)]
    else:
        names = a.names
    for name in names:
        vd = vm_dir(name)
        if not vd.exists():
            if not a.missing_ok:
                log(f"{name}: no such VM")
            continue
        stop_vm(vd)
        archive_console(vd)
        shutil.rmtree(vd, ignore_errors=True)
        log(f"{name}: down")


def cmd_list(a) -> None:
    rows = []
    for name in all_vm_names():
        info = vm_info(name) or {"name": name}
        rows.append({**public_info(info), "running": vm_running(name)})
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'NAME':24} {'RUN':4} {'PORT':6} {'FLAVOUR':9} {'MODE':7} {'PID':8} FORWARDS")
    for r in rows:
        fw = " ".join(f"{f['host']}->{f['guest']}" for f in r.get("forwards") or [])
        print(f"{r['name']:24} {'yes' if r['running'] else 'no':4} {str(r.get('port')):6} "
              f"{str(r.get('flavour')):9} {str(r.get('mode')):7} {str(r.get('pid')):8} {fw}")


def cmd_wait(a) -> None:
    info = vm_info(a.name) or die(f"no VM {a.name}")
    t = wait_ssh(vm_dir(a.name), info["port"], timeout=a.timeout)
    log(f"{a.name}: ssh ready after {t:.1f} s")


def cmd_reset(a) -> None:
    """Hard reset (QMP system_reset: the reset button), for a guest whose boot hung; then wait for ssh."""
    info = vm_info(a.name) or die(f"no VM {a.name}")
    if not vm_running(a.name):
        die(f"{a.name}: not running")
    vd = vm_dir(a.name)
    log(f"{a.name}: console before the reset (last lines):\n{console_tail(vd, 12)}")
    q = QMP(vd / "qmp.sock")
    try:
        q.cmd("system_reset")
    finally:
        q.close()
    log(f"{a.name}: hard reset (QMP system_reset)")
    if a.timeout > 0:
        t = wait_ssh(vd, info["port"], timeout=a.timeout)
        log(f"{a.name}: ssh ready {t:.1f} s after the reset")


def cmd_ssh(a) -> None:
    info = vm_info(a.name) or die(f"no VM {a.name}")
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    argv = ssh_base(info["port"]) + ([] if cmd else ["-t"]) + cmd
    os.execvp(argv[0], argv)


def cmd_inventory(a) -> None:
    names = a.names or [n for n in all_vm_names() if not n.startswith("_") and vm_running(n)]
    hosts = {}
    for n in names:
        info = vm_info(n) or die(f"no VM {n}")
        hosts[n] = {"ansible_host": "127.0.0.1", "ansible_port": info["port"], "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(KEY),
                    "ansible_ssh_common_args": " ".join(SSH_OPTS[:6]),
                    "lab_flavour": info.get("flavour"), "lab_forwards": info.get("forwards", [])}
    print(json.dumps({"all": {"hosts": hosts}}, indent=2))  # JSON is valid YAML for ansible


def cmd_probe_kvm(a) -> None:
    """Boot the image once with KVM (bounded time); cache the verdict for accel()."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        die("/dev/kvm not available")
    img = ensure_image(a.flavour)
    name = "_kvm-probe"
    vd = vm_dir(name)
    shutil.rmtree(vd, ignore_errors=True)
    vd.mkdir(parents=True)
    ok = False
    t0 = time.monotonic()
    try:
        root, data = vd / "root.qcow2", vd / "data.qcow2"
        mk_overlay(img / "base.qcow2", root)
        mk_blank(data)
        try:
            pid, fwds = start_qemu(Argv(img, "kvm", "host", image_meta(img)["append"], root, data, vd, []), vd)
            wait_ssh(vd, fwds[0][0], timeout=a.timeout)
            ok = True
        except LabError as e:
            log(f"KVM probe: {str(e).splitlines()[-2:] if 'QEMU failed' in str(e) else 'no ssh in time'}")
    finally:
        stop_vm(vd)
        archive_console(vd)
        shutil.rmtree(vd, ignore_errors=True)
    KVM_VERDICT.write_text(json.dumps({"ok": ok, "qemu": qemu_version(), "uname": os.uname().release,
                                       "seconds": round(time.monotonic() - t0, 1)}) + "\n")
    log(f"KVM probe: {'works, used from now on' if ok else 'failed, using TCG'} ({KVM_VERDICT})")


def cmd_gc(a) -> None:
    pub = ssh_key()
    keep = set()
    for fl in lab_image.load_flavours():
        keep.add(lab_image.image_dir(CACHE, fl, pub).name)
    for n in all_vm_names():  # images that running VMs use stay
        if vm_running(n):
            keep.add(Path((vm_info(n) or {}).get("image") or "/").name)
    for p in sorted((CACHE / "images").glob("*")):
        if p.is_dir() and p.name not in keep and not p.name.endswith(".tmp"):
            log(f"removing {p}")
            shutil.rmtree(p)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="lab.py", description=__doc__.split("\n", maxsplit=1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    fl = lab_image.load_flavours()
    s = sub.add_parser("build", help="build or reuse the cached image")
    s.add_argument("--flavour", default="bookworm", choices=fl)
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_build)
    s = sub.add_parser("save", help="create the saved booted state used for fast starts")
    s.add_argument("--flavour", default="bookworm", choices=fl)
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_save)
    s = sub.add_parser("up", help="start a VM and wait for ssh; prints the ssh port (or JSON)")
    s.add_argument("name", nargs="?", default=DEFAULT_NAME)
    s.add_argument("--flavour", default="bookworm", choices=fl)
    s.add_argument("--forward", action="append", type=parse_forward, metavar="HOST:GUEST",
                   help="extra TCP forward 127.0.0.1:HOST -> guest GUEST (HOST 0 = any free port)")
    s.add_argument("--cold", action="store_true", help="cold boot instead of resuming the saved state")
    s.add_argument("--append", default="", help="extra kernel command line (implies --cold)")
    s.add_argument("--json", action="store_true", help="print the VM's connection info as JSON")
    s.add_argument("--reuse", action="store_true", help="if NAME is running, reuse it")
    s.set_defaults(fn=cmd_up)
    s = sub.add_parser("down", help="stop VMs (by recorded pid) and delete their state")
    s.add_argument("names", nargs="*", help=f"VM names (default: {DEFAULT_NAME})")
    s.add_argument("--all", action="store_true", help="every VM this tool started")
    s.add_argument("--prefix", help="every VM whose name starts with PREFIX")
    s.add_argument("--owner", help="every VM started with MEDAI_LAB_OWNER=OWNER (e.g. one test run)")
    s.add_argument("--owner-prefix", help="every VM whose MEDAI_LAB_OWNER starts with PREFIX (e.g. one scripts/test.sh run)")
    s.add_argument("--missing-ok", action="store_true", help="no message for VMs that do not exist")
    s.set_defaults(fn=cmd_down)
    s = sub.add_parser("list", help="list VMs")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_list)
    s = sub.add_parser("wait", help="wait until a VM answers ssh")
    s.add_argument("name", nargs="?", default=DEFAULT_NAME)
    s.add_argument("--timeout", type=float, default=BOOT_TIMEOUT)
    s.set_defaults(fn=cmd_wait)
    s = sub.add_parser("reset", help="hard-reset a VM whose boot hung (QMP system_reset), then wait for ssh")
    s.add_argument("name", nargs="?", default=DEFAULT_NAME)
    s.add_argument("--timeout", type=float, default=BOOT_TIMEOUT, help="wait for ssh (0: do not wait)")
    s.set_defaults(fn=cmd_reset)
    s = sub.add_parser("ssh", help="ssh into a VM (optionally run a command)")
    s.add_argument("name", nargs="?", default=DEFAULT_NAME)
    s.add_argument("command", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_ssh)
    s = sub.add_parser("inventory", help="print an Ansible inventory (JSON/YAML) of running VMs")
    s.add_argument("names", nargs="*")
    s.set_defaults(fn=cmd_inventory)
    s = sub.add_parser("probe-kvm", help="test-boot with KVM once and cache the verdict")
    s.add_argument("--flavour", default="bookworm", choices=fl)
    s.add_argument("--timeout", type=float, default=120)
    s.set_defaults(fn=cmd_probe_kvm)
    s = sub.add_parser("gc", help="delete cached images whose builder key is no longer current")
    s.set_defaults(fn=cmd_gc)
    a = p.parse_args(argv)
    # SIGTERM/SIGHUP (e.g. a CI timeout killing the test command) run the same cleanup as Ctrl-C:
    # a VM that `up`/`save` started is stopped again.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    if a.cmd == "down" and a.owner_prefix == "":
        p.error("--owner-prefix wants a non-empty PREFIX (an empty one would match every owner)")
    if a.cmd == "down" and not (a.all or a.names or a.prefix or a.owner or a.owner_prefix):
        a.names = [DEFAULT_NAME]
    try:
        a.fn(a)
    except LabError as e:
        log(f"ERROR: {e}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
