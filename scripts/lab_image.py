"""Lab image builder (used by scripts/lab.py build).

Builds a Debian guest image from Debian packages only:
  mmdebstrap (rootfs directory) -> mke2fs -d (ext4 image, no loop devices, no mounts)
  -> qemu-img convert -c (compressed qcow2); vmlinuz/initrd extracted next to it for direct kernel boot.

Cache: <cache>/images/<flavour>-<key>/ where <key> hashes the builder inputs: BUILDER_VERSION below,
the files in lab/ without their comment-only and blank lines (except flavours.toml, of which only
the flavour's own entry counts), the ssh public key and the apt sources. Editing one flavour's line
rebuilds only that flavour; comment/lint edits rebuild nothing.

>>> Bump BUILDER_VERSION when you change what build() produces (a rebuild takes 2-10 min per flavour
>>> and a new saved state for every user of the machine); pure refactors/lint fixes must not bump it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB_DIR = REPO / "lab"
BUILDER_VERSION = 3  # see the docstring
ROOT_SIZE = "8G"  # virtual size of the guest's root disk (sparse; the qcow2 is ~250-400 MiB)


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def load_flavours() -> dict[str, dict]:
    with open(LAB_DIR / "flavours.toml", "rb") as fh:
        return tomllib.load(fh)


def flavour(name: str) -> dict:
    fl = load_flavours()
    if name not in fl:
        raise SystemExit(f"lab: unknown flavour {name!r}; known: {', '.join(fl)} (lab/flavours.toml)")
    return fl[name]


def packages(fl: dict) -> list[str]:
    base = [l.strip() for l in (LAB_DIR / "packages.txt").read_text().splitlines()
            if l.strip() and not l.lstrip().startswith("#")]
    return base + [p for p in fl.get("extra", []) if p not in base]


def host_mirrors() -> tuple[str, str]:
    """Debian and Debian-security mirror URLs as the host's apt is configured (or MEDAI_LAB_MIRROR /
    MEDAI_LAB_SECURITY_MIRROR)."""
    main = os.environ.get("MEDAI_LAB_MIRROR")
    sec = os.environ.get("MEDAI_LAB_SECURITY_MIRROR")
    uris: list[str] = []
    files = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*"))
    for f in files:
        if not f.is_file() or not (f.name.endswith(".list") or f.name.endswith(".sources")):
            continue
        for line in f.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("URIs:"):
                uris += line.split()[1:]
            elif line.startswith("deb "):
                parts = [p for p in line.split() if not p.startswith("[")]
                # deb [opts] uri suite comp...
                uris += [p for p in parts[1:2] if "://" in p]
    for u in uris:
        u = u.rstrip("/")
        if not sec and u.endswith("/debian-security"):
            sec = u
        elif not main and u.endswith("/debian"):
            main = u
    main = (main or "http://deb.debian.org/debian").rstrip("/")
    sec = (sec or re.sub(r"/debian$", "/debian-security", main)).rstrip("/")
    return main, sec


def sources(suite: str) -> list[str]:
    main, sec = host_mirrors()
    return [f"deb {main} {suite} main", f"deb {main} {suite}-updates main",
            f"deb {sec} {suite}-security main"]


def _significant(text: str) -> bytes:
    """File content without comment-only and blank lines (so lint/comment edits keep the cache)."""
    keep = [l.rstrip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    return "\n".join(keep).encode()


def builder_key(name: str, pubkey: str) -> str:
    h = hashlib.sha256()
    h.update(f"builder-{BUILDER_VERSION}-{ROOT_SIZE}".encode())
    for f in sorted(LAB_DIR.iterdir()):
        if f.is_file() and f.name != "flavours.toml":
            h.update(f.name.encode() + b"\0" + _significant(f.read_text()))
    h.update(json.dumps(flavour(name), sort_keys=True).encode())
    h.update(name.encode())
    h.update(pubkey.encode())
    h.update("\n".join(sources(flavour(name)["suite"])).encode())
    return h.hexdigest()[:12]


def image_dir(cache: Path, name: str, pubkey: str) -> Path:
    return cache / "images" / f"{name}-{builder_key(name, pubkey)}"


def _run(cmd: list[str], **kw) -> None:
    """Run a build step. If we are interrupted, the child gets SIGTERM and time to clean up:
    mmdebstrap (root mode) has /proc, /sys (rbind) and /dev nodes mounted in the rootfs meanwhile."""
    log("+ " + " ".join(cmd if len(cmd) < 12 else cmd[:6] + ["..."] + cmd[-4:]))
    # Build tools talk on stderr: `lab.py up --json` (which builds a missing image first) prints its
    # JSON on stdout, and mke2fs's "Creating regular file ..." there broke molecule's create step.
    kw.setdefault("stdout", sys.stderr)
    with subprocess.Popen(cmd, **kw) as child:
        try:
            rc = child.wait()
        except BaseException:
            child.terminate()
            try:
                child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise
    if rc != 0:
        raise subprocess.CalledProcessError(rc, cmd[0])


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = [line.split()[4] for line in fh]
    return [m for m in points if m.startswith(prefix) or m == prefix[:-1]]


def _safe_rmtree(path: Path) -> None:
    """Remove a build directory, but never descend into mounts an interrupted mmdebstrap left behind
    (rootfs/sys is an rbind of the host's /sys)."""
    if not path.exists():
        return
    mounts = _mounts_under(path)
    if mounts:
        log(f"WARNING: not deleting {path}: still mounted: {' '.join(mounts)} "
            f"(umount -R them, then delete the directory)")
        return
    shutil.rmtree(path, ignore_errors=True)


def _dpkg_excludes() -> list[str]:
    opts = ["path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*",
            "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
            "path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias"]
    return [f"--dpkgopt={o}" for o in opts]


def build(cache: Path, name: str, pubkey: str, force: bool = False) -> Path:
    """Build (or reuse) the image for flavour `name`. Returns the image directory."""
    fl = flavour(name)
    out = image_dir(cache, name, pubkey)
    if (out / "meta.json").exists() and not force:
        log(f"image {out.name}: cached")
        return out
    for tool in ("mmdebstrap", "mke2fs", "qemu-img"):
        if not shutil.which(tool):
            raise SystemExit(f"lab: {tool} not found: apt-get install mmdebstrap e2fsprogs qemu-utils")
    suite = fl["suite"]
    t0 = time.monotonic()
    work = out.with_name(out.name + ".tmp")
    _safe_rmtree(work)
    if work.exists():
        raise SystemExit(f"lab: {work} is left over from an interrupted build and still has mounts")
    work.mkdir(parents=True)
    debcache = cache / "debs" / suite
    debcache.mkdir(parents=True, exist_ok=True)
    common = ["--components=main", "--aptopt=Acquire::Retries \"3\";", *_dpkg_excludes(),
              "--setup-hook=mkdir -p \"$1/var/cache/apt/archives\"",
              f"--setup-hook=sync-in {debcache} /var/cache/apt/archives/",
              f"--customize-hook=sync-out /var/cache/apt/archives/ {debcache}"]
    env = dict(os.environ, LAB_PUBKEY=pubkey, LAB_PYTHON_ROOTFS="")
    try:
        if fl.get("python_rootfs"):
            tar = work / "python-rootfs.tar"
            _run(["mmdebstrap", "--variant=essential", "--include=python3-minimal", *common,
                  suite, str(tar), *sources(suite)])
            env["LAB_PYTHON_ROOTFS"] = str(tar)
        rootfs = work / "rootfs"
        _run(["mmdebstrap", "--variant=minbase", "--include=" + ",".join(packages(fl)), *common,
              f"--essential-hook=sh {LAB_DIR / 'essential-hook.sh'} \"$1\"",
              f"--customize-hook=sh {LAB_DIR / 'customize-hook.sh'} \"$1\"",
              suite, str(rootfs), *sources(suite)], env=env)
        kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
        if len(kernels) != 1:
            raise SystemExit(f"lab: expected one kernel in the image, found {kernels}")
        kver = kernels[0].name[len("vmlinuz-"):]
        shutil.copy2(kernels[0], work / "vmlinuz")
        shutil.copy2(rootfs / "boot" / f"initrd.img-{kver}", work / "initrd.img")
        raw = work / "root.raw"
        _run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "medai-root", "-E", "root_owner=0:0",
              "-d", str(rootfs), str(raw), ROOT_SIZE])
        _safe_rmtree(rootfs)
        _run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(work / "base.qcow2")])
        raw.unlink()
        (work / "python-rootfs.tar").unlink(missing_ok=True)
        want = str(fl.get("kernel", ""))
        if want and not kver.startswith(want + "."):
            log(f"WARNING: flavour {name} expects kernel {want}.x, image has {kver}")
        meta = {
            "flavour": name, "suite": suite, "kernel": kver, "key": out.name.rsplit("-", 1)[1],
            "packages": packages(fl), "sources": sources(suite),
            "build_seconds": round(time.monotonic() - t0, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "base_qcow2_bytes": (work / "base.qcow2").stat().st_size,
            "initrd_bytes": (work / "initrd.img").stat().st_size,
            "append": "root=/dev/vda rw console=ttyS0,115200n8",
        }
        (work / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        (work / "base.qcow2").chmod(0o444)  # never modified: VMs use overlays on top of it
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        _safe_rmtree(work)
        raise
    log(f"image {out.name}: built in {meta['build_seconds']} s (kernel {kver}, "
        f"{meta['base_qcow2_bytes'] // 2**20} MiB qcow2, initrd {meta['initrd_bytes'] // 2**20} MiB)")
    return out
