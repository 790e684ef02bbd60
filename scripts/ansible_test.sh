#!/usr/bin/env bash
# Run ansible-test on this collection from a throw-away copy laid out as ansible-test requires.
#
#   scripts/ansible_test.sh [sanity|units|all] [extra ansible-test args...]
#   e.g. scripts/ansible_test.sh sanity --test pep8
#        scripts/ansible_test.sh units tests/unit/plugins/modules/test_zswap.py
#
# ansible-test needs the collection at .../ansible_collections/medai/llmhost and ignores
# ANSIBLE_COLLECTIONS_PATH: dependency collections must sit in the same ansible_collections/ folder.
# So the work tree (minus .venv, .collections, .git, tests/output and git-ignored files) is rsynced to
# ~/.cache/medai-llmhost/ansible-test/<hash of checkout path>/ansible_collections/medai/llmhost/ with the
# collections from .collections/ linked beside it. Results are copied back to tests/output/ (git-ignored).
#
# sanity: `ansible-test sanity --venv --python <venv python>`: every default sanity test, each in an
#   ansible-test-managed venv; offline thanks to the get-pip stand-in scripts/setup.sh installs.
# units:  `ansible-test units --local --python <venv python>` (skipped when tests/unit has no test_*.py).
# Requires scripts/setup.sh to have run. Exit code: non-zero if any ansible-test run failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.venv
DEPS=$ROOT/.collections/ansible_collections

what=${1:-all}
[ $# -gt 0 ] && shift
case $what in
  sanity|units|all) ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "ansible_test.sh: unknown command '$what' (sanity|units|all)" >&2; exit 2 ;;
esac

[ -x "$VENV/bin/ansible-test" ] || { echo "ansible_test.sh: run scripts/setup.sh first" >&2; exit 1; }
PYVER=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# A persistent copy per checkout (keeps ansible-test's delegation venv in tests/output/.tmp between
# runs: saves ~10-15 s and a pip download per run). Concurrent runs for the same checkout serialise.
CACHE_DIR=${MEDAI_CACHE_DIR:-$HOME/.cache/medai-llmhost}
WORK=$CACHE_DIR/ansible-test/$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
COLL=$WORK/ansible_collections/medai/llmhost
mkdir -p "$COLL"
exec 9>"$WORK.lock"
flock 9

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if [ -d "$COLL/tests/output" ]; then
    mkdir -p "$ROOT/tests/output"
    rsync -a --exclude=/.tmp "$COLL/tests/output/" "$ROOT/tests/output/" || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The copy: everything but local/ignored state. --delete keeps it an exact mirror (excluded paths,
# i.e. tests/output with the delegation venv, are left alone). Results of this run only:
rm -rf "$COLL/tests/output/bot" "$COLL/tests/output/junit" "$COLL/tests/output/coverage" "$COLL/tests/output/data"
rsync -a --delete \
  --exclude=/.venv --exclude=/.collections --exclude=/.git --exclude=/tests/output \
  --exclude=__pycache__ --exclude=.pytest_cache --exclude='*.pyc' \
  --filter=':- .gitignore' \
  "$ROOT/" "$COLL/"

for dep in "$DEPS"/*/*; do
  rel=${dep#"$DEPS"/}
  [ "$rel" = medai/llmhost ] && continue
  mkdir -p "$WORK/ansible_collections/${rel%/*}"
  ln -sfn "$dep" "$WORK/ansible_collections/$rel"
done

export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV=$VENV
unset ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
cd "$COLL"

failed=0
if [ "$what" = sanity ] || [ "$what" = all ]; then
  echo "ansible_test.sh: ansible-test sanity --venv --python $PYVER $*"
  ansible-test sanity --venv --python "$PYVER" --color no "$@" || failed=1
fi
if [ "$what" = units ] || [ "$what" = all ]; then
  if [ -n "$(find tests/unit -name 'test_*.py' -print -quit 2>/dev/null)" ]; then
    echo "ansible_test.sh: ansible-test units --local --python $PYVER $*"
    ansible-test units --local --python "$PYVER" --color no "$@" || failed=1
  else
    echo "ansible_test.sh: units: no tests/unit/**/test_*.py, skipped"
  fi
fi
exit "$failed"
