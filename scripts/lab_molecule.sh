#!/usr/bin/env bash
# Run molecule scenarios against lab VMs, always cleaning up the VMs this run started.
#
#   scripts/lab_molecule.sh                  # every scenario in molecule/SUITE
#   scripts/lab_molecule.sh lab_smoke vllm   # these scenarios
#   scripts/lab_molecule.sh -- converge -s lab_smoke   # any molecule command (VMs kept: no cleanup)
#   scripts/lab_molecule.sh --images [SCENARIO...]     # only build/save the images these scenarios use
#
# - Builds/reuses the images and saved states the scenarios need first (visible progress, cached).
# - Tags every VM with MEDAI_LAB_OWNER (inherited, or molecule-<pid>) and on exit, failure or
#   Ctrl-C stops exactly those VMs (scripts/lab.py down --owner ...): no qemu process is left behind,
#   and other people's lab VMs on the same machine are not touched.
# - On SIGINT/SIGTERM: molecule (run in its own process group) gets SIGTERM at once, up to
#   MEDAI_STOP_GRACE seconds (default 20) to stop, then SIGKILL; then the VMs are stopped as above.
#   An image build gets MEDAI_IMAGE_STOP_GRACE (default 150): mmdebstrap must unmount /proc, /sys, /dev first.
# - Exit status: non-zero if any scenario failed. Prints one timed line per scenario.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LAB=(python3 "$ROOT/scripts/lab.py")

if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$ROOT/.venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  source "$ROOT/.venv/bin/activate"   # molecule needs the venv on PATH (ansible-config etc.)
fi
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$ROOT/.collections}
export ANSIBLE_ROLES_PATH=${ANSIBLE_ROLES_PATH:-$ROOT/roles}

if [ "${1:-}" = "--" ]; then
  shift
  exec molecule "$@"
fi

images_only=0
if [ "${1:-}" = "--images" ]; then images_only=1; shift; fi

export MEDAI_LAB_OWNER=${MEDAI_LAB_OWNER:-molecule-$$}
STOP_GRACE=${MEDAI_STOP_GRACE:-20}
[ "$images_only" = 0 ] || STOP_GRACE=${MEDAI_IMAGE_STOP_GRACE:-150}
CHILD_PGID=""   # the running molecule's process group (own group: see run_in_group)
# shellcheck disable=SC2317  # invoked by the trap below
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  "${LAB[@]}" down --owner "$MEDAI_LAB_OWNER" --missing-ok || true
  exit "$rc"
}
# shellcheck disable=SC2317  # invoked by the traps below
on_signal() {
  trap '' INT TERM
  echo "lab_molecule: SIG$1: stopping molecule, then the VMs of owner $MEDAI_LAB_OWNER" >&2
  stop_group "$CHILD_PGID"
  exit "$2"
}
# SIGTERM to a process group; SIGKILL to what is left after STOP_GRACE seconds.
# shellcheck disable=SC2317  # invoked by on_signal
stop_group() {
  local pgid=$1 waited=0
  [ -n "$pgid" ] || return 0
  kill -TERM -- "-$pgid" 2>/dev/null || return 0
  while kill -0 -- "-$pgid" 2>/dev/null && [ "$waited" -lt $((STOP_GRACE * 5)) ]; do
    sleep 0.2; waited=$((waited + 1))
  done
  kill -KILL -- "-$pgid" 2>/dev/null || true
}
# Run a command in its own process group and wait for it; a signal to this script is handled at once
# (bash runs traps only between foreground commands, but during `wait`).
run_in_group() {
  local rc=0
  set -m; "$@" & CHILD_PGID=$!; set +m
  wait "$CHILD_PGID" || rc=$?
  CHILD_PGID=""
  return "$rc"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  while IFS= read -r line; do
    line=${line%%#*}; line=${line//[[:space:]]/}
    [ -n "$line" ] && scenarios+=("$line")
  done < molecule/SUITE
fi

# Images + saved states first (a fresh machine builds here, once).
flavours=$(for s in "${scenarios[@]}"; do
  f=molecule/$s/molecule.yml
  [ -f "$f" ] || { echo "lab_molecule: no scenario $s ($f)" >&2; exit 2; }
  grep -Eo '^[[:space:]]*flavour:[[:space:]]*[A-Za-z0-9_.-]+' "$f" | awk '{print $2}' || true
done | sort -u)
[ -n "$flavours" ] || flavours=bookworm
for fl in $flavours; do
  t0=$SECONDS
  run_in_group "${LAB[@]}" save --flavour "$fl" >/dev/null
  echo "lab_molecule: image + saved state $fl ready ($((SECONDS - t0)) s)"
done
[ "$images_only" = 0 ] || exit 0

failed=0
for s in "${scenarios[@]}"; do
  t0=$SECONDS
  if run_in_group molecule test -s "$s"; then
    echo "lab_molecule: scenario $s PASS ($((SECONDS - t0)) s)"
  else
    echo "lab_molecule: scenario $s FAIL ($((SECONDS - t0)) s)"
    failed=1
  fi
  "${LAB[@]}" down --owner "$MEDAI_LAB_OWNER" --missing-ok || true
done
exit $failed
