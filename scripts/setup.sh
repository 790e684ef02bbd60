#!/usr/bin/env bash
# Idempotent toolchain setup for medai.llmhost. Safe to run again: a rerun with nothing changed takes ~1 s.
#
#   scripts/setup.sh            # install/refresh what is missing
#   scripts/setup.sh --force    # redo the venv packages, collections and get-pip stand-ins
#
# What it does:
#   1. apt: host packages for the lab and tests (skipped when all are installed; `apt-get update`
#      only when an install fails or no package lists exist). MEDAI_SKIP_APT=1 skips this step.
#   2. .venv (Python >= 3.11; prefers pyenv's 3.11, override with MEDAI_PYTHON=/path/to/python)
#      + pip install -r requirements-dev.txt
#   3. Dependency collections: downloads the `ansible` wheel (collection bundle matching ansible-core
#      2.19) into ~/.cache/medai-llmhost/wheels and extracts only the collections we need into
#      .collections/ansible_collections/; links this repo as .collections/ansible_collections/medai/llmhost.
#      (Galaxy is not reachable from here; PyPI is.)
#   4. Offline get-pip stand-in for ansible-test (scripts/offline_get_pip.py) copied to
#      ~/.ansible/test/cache/get_pip_<ver>.py for every pip version ansible-test requests, so
#      `ansible-test ... --venv` works without ci-files.testing.ansible.com (also on air-gapped hosts).
#
# A stamp (.venv/.medai-setup.stamp) holds a hash of requirements-dev.txt, this script and the
# get-pip stand-in; steps 2-4 are skipped when the stamp matches and their outputs exist.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CACHE_DIR=${MEDAI_CACHE_DIR:-$HOME/.cache/medai-llmhost}
WHEEL_DIR=$CACHE_DIR/wheels
VENV=$ROOT/.venv
COLL_ROOT=$ROOT/.collections/ansible_collections
STAMP=$VENV/.medai-setup.stamp
GET_PIP_CACHE=$HOME/.ansible/test/cache

# `ansible` 12.x is the collection bundle built for ansible-core 2.19 (the newest core for Python 3.11).
ANSIBLE_BUNDLE_VERSION=12.3.0
# namespace/name; community.library_inventory_filtering_v1 is a declared dependency of community.docker.
COLLECTIONS=(ansible/posix community/docker community/general community/library_inventory_filtering_v1)
# The shellcheck package is needed by `ansible-test sanity` (its shellcheck test is skipped without it).
APT_PACKAGES=(python3-venv qemu-system-x86 qemu-utils mmdebstrap e2fsprogs openssh-client rsync git make shellcheck)

FORCE=0
for arg in "$@"; do
  case $arg in
    --force) FORCE=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE_DIR"
# Serialise concurrent runs (test.sh of several engineers, CI).
exec 9>"$CACHE_DIR/setup.lock"
flock 9

# ---------------------------------------------------------------- 1. apt
apt_missing() {
  local pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      echo "$pkg"
    fi
  done
}

setup_apt() {
  if [ "${MEDAI_SKIP_APT:-0}" = 1 ]; then log "apt: skipped (MEDAI_SKIP_APT=1)"; return; fi
  if ! command -v dpkg-query >/dev/null; then log "apt: not a Debian-like host, skipping host packages"; return; fi
  local missing=() sudo=()
  mapfile -t missing < <(apt_missing)
  if [ "${#missing[@]}" = 0 ]; then log "apt: all host packages present"; return; fi
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing host packages and not root: apt-get install ${missing[*]}"
    sudo=(sudo)
  fi
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Update package lists first only if there are none; otherwise only when the install fails.
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    "${sudo[@]}" apt-get update -q
  fi
  if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    log "apt: install failed, running apt-get update and retrying"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

# ---------------------------------------------------------------- 2. venv
pick_python() {
  if [ -n "${MEDAI_PYTHON:-}" ]; then echo "$MEDAI_PYTHON"; return; fi
  local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv} cand
  # Newest pyenv 3.11.x first (ansible-core 2.19 pins in requirements-dev.txt were resolved on 3.11).
  cand=$(printf '%s\n' "$pyenv_root"/versions/3.11.*/bin/python3 | sort -V -r | head -n1)
  if [ -x "$cand" ]; then echo "$cand"; return; fi
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null; then command -v "$cand"; return; fi
  done
  die "no python3 found"
}

PYTHON=$(pick_python)
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "$PYTHON is older than 3.11 (set MEDAI_PYTHON to a Python >= 3.11)"
PYTHON_ID=$("$PYTHON" -c 'import sys; print(sys.version.split()[0], sys.base_prefix)')

want_stamp() {
  {
    echo "python: $PYTHON_ID"
    echo "bundle: $ANSIBLE_BUNDLE_VERSION ${COLLECTIONS[*]}"
    sha256sum requirements-dev.txt scripts/setup.sh scripts/offline_get_pip.py
  } | sha256sum | cut -d' ' -f1
}

# get_pip versions requested by the installed ansible-test (see ansible_test/_internal/python_requirements.py:
# get_venv_packages; ansible_test/_util/target/setup/requirements.py names the cache file get_pip_<ver>.py).
get_pip_versions() {
  "$VENV/bin/python" - <<'EOF'
import os, re
import ansible_test
src = os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')
with open(src) as f:
    text = f.read()
versions = sorted(set(re.findall(r"""\bpip['"]?\s*[=:]\s*['"](\d+(?:\.\d+)+)['"]""", text)))
if not versions:
    raise SystemExit('could not find the pip version(s) ansible-test bootstraps in %s' % src)
print(' '.join(versions))
EOF
}

outputs_present() {
  [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/ansible-playbook" ] && [ -x "$VENV/bin/ansible-test" ] || return 1
  "$VENV/bin/python" -c 'import sys' 2>/dev/null || return 1
  local c v versions
  for c in "${COLLECTIONS[@]}"; do [ -f "$COLL_ROOT/$c/MANIFEST.json" ] || return 1; done
  [ -L "$COLL_ROOT/medai/llmhost" ] && [ -f "$COLL_ROOT/medai/llmhost/galaxy.yml" ] || return 1
  [ -s "$STAMP.getpip" ] || return 1
  read -r -a versions < "$STAMP.getpip"
  for v in "${versions[@]}"; do
    cmp -s scripts/offline_get_pip.py "$GET_PIP_CACHE/get_pip_${v//./_}.py" || return 1
  done
}

# pip with its output filtered: hides only a harmless, machine-specific warning about local index
# folders that do not exist. Returns pip's exit code.
run_pip() {
  local out rc=0
  out=$(mktemp)
  "$VENV/bin/python" -m pip "$@" >"$out" 2>&1 || rc=$?
  grep -v 'is ignored: it is neither a file nor a directory' "$out" || true
  rm -f "$out"
  return "$rc"
}

setup_venv() {
  if [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0], sys.base_prefix)' 2>/dev/null)" = "$PYTHON_ID" ]; then
    log "venv: reusing $VENV ($PYTHON_ID)"
  else
    log "venv: creating $VENV with $PYTHON ($PYTHON_ID)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  log "venv: pip install -r requirements-dev.txt"
  run_pip install -q --progress-bar off --disable-pip-version-check -r requirements-dev.txt \
    || die "pip install -r requirements-dev.txt failed"
  "$VENV/bin/python" -m pip check >/dev/null || { "$VENV/bin/python" -m pip check; die "pip check failed"; }
}

setup_collections() {
  local wheel="$WHEEL_DIR/ansible-$ANSIBLE_BUNDLE_VERSION-py3-none-any.whl"
  if [ ! -f "$wheel" ]; then
    log "collections: downloading ansible==$ANSIBLE_BUNDLE_VERSION wheel (~55 MB) to $WHEEL_DIR"
    mkdir -p "$WHEEL_DIR"
    run_pip download -q --progress-bar off --disable-pip-version-check --no-deps \
      --only-binary=:all: -d "$WHEEL_DIR" "ansible==$ANSIBLE_BUNDLE_VERSION" \
      || die "pip download ansible==$ANSIBLE_BUNDLE_VERSION failed"
    [ -f "$wheel" ] || die "pip download did not produce $wheel"
  fi
  log "collections: extracting ${COLLECTIONS[*]} from $(basename "$wheel")"
  "$VENV/bin/python" - "$wheel" "$COLL_ROOT" "${COLLECTIONS[@]}" <<'EOF'
import json, os, shutil, sys, zipfile
wheel, dest_root, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as zf:
    names = zf.namelist()
    for coll in wanted:
        prefix = 'ansible_collections/%s/' % coll
        members = [n for n in names if n.startswith(prefix) and not n.endswith('/')]
        if not members:
            raise SystemExit('collection %s not found in %s' % (coll, wheel))
        dest = os.path.join(dest_root, coll)
        tmp = dest + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        for name in members:
            target = os.path.join(tmp, name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with zf.open(name) as src, open(target, 'wb') as out:
                shutil.copyfileobj(src, out)
            mode = (zf.getinfo(name).external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
    # Check declared dependencies are among what we extracted.
    have = {c.replace('/', '.') for c in wanted}
    for coll in wanted:
        with open(os.path.join(dest_root, coll, 'MANIFEST.json')) as f:
            info = json.load(f)['collection_info']
        print('  %s.%s %s' % (info['namespace'], info['name'], info['version']))
        missing = set(info.get('dependencies') or {}) - have
        if missing:
            raise SystemExit('%s depends on %s, which setup.sh does not extract' % (coll, ', '.join(sorted(missing))))
EOF
  mkdir -p "$COLL_ROOT/medai"
  ln -sfn ../../.. "$COLL_ROOT/medai/llmhost"   # .collections/ansible_collections/medai/llmhost -> repo root
  [ -f "$COLL_ROOT/medai/llmhost/galaxy.yml" ] || die "symlink $COLL_ROOT/medai/llmhost does not reach the repo root"
}

setup_get_pip() {
  local versions v
  versions=$(get_pip_versions)
  mkdir -p "$GET_PIP_CACHE"
  for v in $versions; do
    install -m 0644 scripts/offline_get_pip.py "$GET_PIP_CACHE/get_pip_${v//./_}.py"
    log "get-pip: offline stand-in installed as $GET_PIP_CACHE/get_pip_${v//./_}.py"
  done
  echo "$versions" > "$STAMP.getpip"
}

# ---------------------------------------------------------------- main
setup_apt

WANT=$(want_stamp)
if [ "$FORCE" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && outputs_present; then
  log "venv, collections and get-pip stand-in up to date ($VENV)"
  exit 0
fi

rm -f "$STAMP"
setup_venv
setup_collections
setup_get_pip
echo "$WANT" > "$STAMP"
log "done. Use: source .venv/bin/activate  (ansible.cfg points collections_path at ./.collections)"
