#!/usr/bin/env bash
# Run molecule scenarios against lab VMs, always cleaning up the VMs this run started.
#
#   scripts/lab_molecule.sh                  # every scenario in molecule/SUITE
#   scripts/lab_molecule.sh lab_smoke vllm   # these scenarios
#   scripts/lab_molecule.sh -- converge -s lab_smoke   # any molecule command (VMs kept: no cleanup)
#
# - Builds/reuses the images and saved states the scenarios need first (visible progress, cached).
# - Tags every VM with MEDAI_LAB_OWNER (inherited, or molecule-<pid>) and on exit, failure or
#   Ctrl-C stops exactly those VMs (scripts/lab.py down --owner ...): no qemu process is left behind,
#   and other people's lab VMs on the same machine are not touched.
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

export MEDAI_LAB_OWNER=${MEDAI_LAB_OWNER:-molecule-$$}
# shellcheck disable=SC2317  # invoked by the trap below
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  "${LAB[@]}" down --owner "$MEDAI_LAB_OWNER" --missing-ok || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
  "${LAB[@]}" save --flavour "$fl" >/dev/null
  echo "lab_molecule: image + saved state $fl ready ($((SECONDS - t0)) s)"
done

failed=0
for s in "${scenarios[@]}"; do
  t0=$SECONDS
  if molecule test -s "$s"; then
    echo "lab_molecule: scenario $s PASS ($((SECONDS - t0)) s)"
  else
    echo "lab_molecule: scenario $s FAIL ($((SECONDS - t0)) s)"
    failed=1
  fi
  "${LAB[@]}" down --owner "$MEDAI_LAB_OWNER" --missing-ok || true
done
exit $failed
