#!/usr/bin/env bash
# The test command of medai.llmhost (CI runs it through .ci/run).
#
#   scripts/test.sh                      # all stages: unit sanity lint docs molecule
#   scripts/test.sh --only unit,sanity   # just these stages
#   scripts/test.sh --skip molecule      # all but these
#   scripts/test.sh --no-setup ...       # do not run scripts/setup.sh first (it is ~0.2 s when up to date)
#   scripts/test.sh --scenarios a,b      # molecule: these scenarios instead of molecule/SUITE (env: MEDAI_SUITE="a,b")
#   scripts/test.sh --quick              # developers' fast path: unit lint docs + scenario lab_smoke (no sanity);
#                                        #   same as --skip sanity --scenarios lab_smoke
#
# Stages (each timed; output also saved to tests/output/test-logs/<stage>.log):
#   setup     scripts/setup.sh (always first unless --no-setup; on failure nothing else runs)
#   unit      pytest tests/unit -q  (pytest exit 5 "no tests collected" is a SKIP, not a failure)
#   sanity    scripts/ansible_test.sh sanity  (ansible-test sanity --venv, every default test)
#   lint      ansible-lint --profile production  (config: .ansible-lint)
#   docs      antsibull-docs lint-collection-docs --plugin-docs . ; antsibull-changelog lint
#   molecule  `molecule test -s <name>` for each scenario listed in molecule/SUITE (one per line,
#             '#' comments allowed) or given by --scenarios; SKIP with a message when there is none.
#             Lab images: right after setup, the images + saved states of the flavours these scenarios use
#             are built in the background (scripts/lab_molecule.sh --images; log tests/output/test-logs/
#             images.log) while unit/sanity/lint/docs run; the molecule stage waits for them and fails if
#             the build failed. Cached images cost ~1 s. MEDAI_PREBUILD_IMAGES=0: build inside the stage.
#
# Ends with a table of stages (PASS/FAIL/SKIP, seconds) and a last line "N passed, N failed"
# (counting stages; SKIP counts as neither);
# exits non-zero if any stage failed. A summary is also written to tests/output/test-summary.tsv.
# On SIGINT/SIGTERM the running stage's own process group and the image builds (started by this script) get
# SIGTERM; after they end (at most MEDAI_STOP_GRACE + 15 s, default 35 s, then SIGKILL; an image build that is
# still running gets MEDAI_IMAGE_STOP_GRACE + 15 s, default 165 s, to unmount its chroot) every lab VM this run
# started is stopped: all VMs are tagged MEDAI_LAB_OWNER=$MEDAI_LAB_RUN/<scenario|images> (MEDAI_LAB_RUN
# defaults to test.sh-<pid>) and `scripts/lab.py down --owner-prefix $MEDAI_LAB_RUN/` ends the run (also
# after a normal end). Other people's VMs are never touched. Then the summary, and a non-zero exit.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

ALL_STAGES=(unit sanity lint docs molecule)
LOG_DIR=$ROOT/tests/output/test-logs

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

csv_to_list() { tr ',' ' ' <<<"$1"; }

only="" skip="" run_setup=1 scenarios_opt=${MEDAI_SUITE:-} quick=0
while [ $# -gt 0 ]; do
  case $1 in
    --only) [ $# -ge 2 ] || { usage >&2; exit 2; }; only="$only $(csv_to_list "$2")"; shift 2 ;;
    --only=*) only="$only $(csv_to_list "${1#--only=}")"; shift ;;
    --skip) [ $# -ge 2 ] || { usage >&2; exit 2; }; skip="$skip $(csv_to_list "$2")"; shift 2 ;;
    --skip=*) skip="$skip $(csv_to_list "${1#--skip=}")"; shift ;;
    --no-setup) run_setup=0; shift ;;
    --scenarios) [ $# -ge 2 ] || { usage >&2; exit 2; }; scenarios_opt=$2; shift 2 ;;
    --scenarios=*) scenarios_opt=${1#--scenarios=}; shift ;;
    --quick) quick=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "test.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ "$quick" = 1 ]; then
  skip="$skip sanity"
  [ -n "$scenarios_opt" ] || scenarios_opt=lab_smoke
fi

is_stage() { local s; for s in "${ALL_STAGES[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
for s in $only $skip; do
  is_stage "$s" || { echo "test.sh: unknown stage '$s' (stages: ${ALL_STAGES[*]})" >&2; exit 2; }
done
in_list() { local x; for x in $2; do [ "$x" = "$1" ] && return 0; done; return 1; }

STAGES=()
for s in "${ALL_STAGES[@]}"; do
  if [ -n "$only" ] && ! in_list "$s" "$only"; then continue; fi
  if in_list "$s" "$skip"; then continue; fi
  STAGES+=("$s")
done

# The molecule scenarios of this run: --scenarios / MEDAI_SUITE, else molecule/SUITE.
SCENARIOS=()
if [ -n "$scenarios_opt" ]; then
  for s in $(csv_to_list "$scenarios_opt"); do
    [ -f "molecule/$s/molecule.yml" ] || { echo "test.sh: unknown scenario '$s' (no molecule/$s/molecule.yml)" >&2; exit 2; }
    SCENARIOS+=("$s")
  done
elif [ -f molecule/SUITE ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}; line=${line//[[:space:]]/}
    [ -n "$line" ] && SCENARIOS+=("$line")
  done <molecule/SUITE
fi

# Every lab VM this run starts is tagged MEDAI_LAB_OWNER=$MEDAI_LAB_RUN/<part>: the run stops exactly its own.
export MEDAI_LAB_RUN=${MEDAI_LAB_RUN:-test.sh-$$}
STOP_GRACE=${MEDAI_STOP_GRACE:-20}
lab() { python3 "$ROOT/scripts/lab.py" "$@"; }

# ------------------------------------------------------------------ environment for the tools
activate_venv() {
  # shellcheck disable=SC1091
  source "$ROOT/.venv/bin/activate"
  export ANSIBLE_COLLECTIONS_PATH=$ROOT/.collections
  export ANSIBLE_ROLES_PATH=$ROOT/roles
  export PY_COLORS=${PY_COLORS:-0} ANSIBLE_NOCOLOR=${ANSIBLE_NOCOLOR:-1} ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
}

# A stage may write a one-line note (shown in the summary) to $STAGE_NOTE, and returns
# 0 = PASS, 77 = SKIP (nothing to test; counted neither passed nor failed), anything else = FAIL.
SKIP_RC=77

# ------------------------------------------------------------------ stages
stage_setup() { bash "$ROOT/scripts/setup.sh"; }

stage_unit() {
  if [ ! -d tests/unit ]; then echo "no tests/unit directory" | tee "$STAGE_NOTE"; return "$SKIP_RC"; fi
  local rc=0
  PYTHONPATH=$ROOT/.collections${PYTHONPATH:+:$PYTHONPATH} python -m pytest tests/unit -q || rc=$?
  if [ "$rc" = 5 ]; then
    echo "pytest: no tests collected (exit 5), not counted as a failure" | tee "$STAGE_NOTE"
    return "$SKIP_RC"
  fi
  return "$rc"
}

stage_sanity() { bash "$ROOT/scripts/ansible_test.sh" sanity; }

stage_lint() { ansible-lint --profile production; }

stage_docs() {
  local rc=0
  echo "+ antsibull-docs lint-collection-docs --plugin-docs ."
  antsibull-docs lint-collection-docs --plugin-docs . || rc=1
  echo "+ antsibull-changelog lint"
  antsibull-changelog lint || rc=1
  return "$rc"
}

# How one scenario runs: scripts/lab_molecule.sh stops exactly the VMs it started, even on failure.
run_molecule_scenario() { MEDAI_LAB_OWNER=$MEDAI_LAB_RUN/$1 bash "$ROOT/scripts/lab_molecule.sh" "$1"; }

# ------------------------------------------------------------------ lab images, built in the background
IMAGES_PGID="" IMAGES_RC=$LOG_DIR/images.rc
start_images() {
  rm -f "$IMAGES_RC"
  in_list molecule "${STAGES[*]}" && [ "${#SCENARIOS[@]}" -gt 0 ] && [ "${MEDAI_PREBUILD_IMAGES:-1}" = 1 ] || return 0
  echo "test.sh: lab images for ${SCENARIOS[*]}: building/reusing in the background (log: ${LOG_DIR#"$ROOT"/}/images.log)"
  set -m
  ( t=$EPOCHREALTIME; rc=0
    MEDAI_LAB_OWNER=$MEDAI_LAB_RUN/images bash "$ROOT/scripts/lab_molecule.sh" --images "${SCENARIOS[@]}" || rc=$?
    echo "$rc $(elapsed "$t")" >"$IMAGES_RC" ) </dev/null >"$LOG_DIR/images.log" 2>&1 &
  IMAGES_PGID=$!
  set +m
}

# In the molecule stage: wait for the background image builds; non-zero (with the log's tail) if they failed.
wait_images() {
  [ -n "$IMAGES_PGID" ] || return 0
  local t=$EPOCHREALTIME rc secs
  echo "+ waiting for the lab images (log: ${LOG_DIR#"$ROOT"/}/images.log)"
  while [ ! -s "$IMAGES_RC" ] && kill -0 -- "-$IMAGES_PGID" 2>/dev/null; do sleep 1; done
  read -r rc secs <"$IMAGES_RC" 2>/dev/null || rc="none (the build ended without a status)"
  if [ "$rc" != 0 ]; then
    tail -n 40 "$LOG_DIR/images.log"
    echo "lab image build FAILED: exit $rc (log: ${LOG_DIR#"$ROOT"/}/images.log)" | tee "$STAGE_NOTE"
    return 1
  fi
  echo "lab images ready: built/checked in ${secs} s in the background, waited $(elapsed "$t") s"
}

# Scenarios run MOLECULE_JOBS at a time (default 2: TCG guests leave the 2 host cores partly idle while
# Ansible and ssh round-trips run, so two VMs finish sooner than one after the other). Each scenario's
# output goes to tests/output/test-logs/molecule-<name>.log and is printed when it ends.
stage_molecule() {
  local scenarios=("${SCENARIOS[@]}")
  if [ "${#scenarios[@]}" = 0 ]; then
    echo "molecule/SUITE absent or empty: no scenarios to run" | tee "$STAGE_NOTE"
    return "$SKIP_RC"
  fi
  wait_images || return 1
  local jobs=${MOLECULE_JOBS:-2} s bad=() pids=() names=() i
  finish_one() {  # $1 = index into pids/names
    local rc=0
    wait "${pids[$1]}" || rc=$?
    echo "----- molecule test -s ${names[$1]} (log: tests/output/test-logs/molecule-${names[$1]}.log)"
    tail -n 60 "$LOG_DIR/molecule-${names[$1]}.log"
    if [ "$rc" = 0 ]; then
      printf 'molecule scenario %s: PASS (%.0f s)\n' "${names[$1]}" "$(cat "$LOG_DIR/molecule-${names[$1]}.seconds")"
    else
      printf 'molecule scenario %s: FAIL rc=%s (%.0f s)\n' "${names[$1]}" "$rc" "$(cat "$LOG_DIR/molecule-${names[$1]}.seconds")"
      bad+=("${names[$1]}")
    fi
  }
  for s in "${scenarios[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 5; done
    echo "+ molecule test -s $s"
    ( t=$EPOCHREALTIME; rc=0; run_molecule_scenario "$s" || rc=$?
      elapsed "$t" >"$LOG_DIR/molecule-$s.seconds"; exit "$rc" ) >"$LOG_DIR/molecule-$s.log" 2>&1 &
    pids+=("$!"); names+=("$s")
  done
  for i in "${!pids[@]}"; do finish_one "$i"; done
  if [ "${#bad[@]}" -gt 0 ]; then
    echo "failed scenarios: ${bad[*]} (of ${scenarios[*]})" | tee "$STAGE_NOTE"
    return 1
  fi
  echo "${#scenarios[@]} scenario(s): ${scenarios[*]}" >"$STAGE_NOTE"
}

# ------------------------------------------------------------------ runner
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

declare -A STATUS SECS NOTE
CURRENT_PID=""
LAST_STAGE_PGID=""   # the process group of the running (or last) stage
on_signal() {
  local sig=$1
  echo "test.sh: received SIG$sig: stopping the running stage, the image builds, then this run's lab VMs" >&2
  INTERRUPTED=1
  # Only what this script started (own process groups, see `set -m`). SIGTERM even for SIGINT: jobs a
  # non-interactive shell starts in the background (the molecule scenarios) ignore SIGINT.
  if [ -n "$CURRENT_PID" ]; then kill -s TERM -- "-$CURRENT_PID" 2>/dev/null || true; fi
  if [ -n "$IMAGES_PGID" ]; then kill -s TERM -- "-$IMAGES_PGID" 2>/dev/null || true; fi
}

# Wait up to $2 s for process group $1 to end, then SIGKILL what is left of it.
reap_group() {
  local pgid=$1 ticks=0
  while kill -0 -- "-$pgid" 2>/dev/null && [ "$ticks" -lt $(($2 * 5)) ]; do sleep 0.2; ticks=$((ticks + 1)); done
  if kill -0 -- "-$pgid" 2>/dev/null; then
    echo "test.sh: process group $pgid still running after $2 s: SIGKILL" >&2
    kill -s KILL -- "-$pgid" 2>/dev/null || true
  fi
}

# After the stages (and after a signal): nothing this run started outlives it.
stop_run() {
  if [ "$INTERRUPTED" = 1 ] && [ -n "$LAST_STAGE_PGID" ]; then reap_group "$LAST_STAGE_PGID" $((STOP_GRACE + 15)); fi
  if [ -n "$IMAGES_PGID" ] && [ ! -s "$IMAGES_RC" ]; then   # still building (no status yet)
    kill -s TERM -- "-$IMAGES_PGID" 2>/dev/null
    reap_group "$IMAGES_PGID" $((${MEDAI_IMAGE_STOP_GRACE:-150} + 15))
  fi
  lab down --owner-prefix "$MEDAI_LAB_RUN/" --missing-ok || echo "test.sh: lab.py down --owner-prefix $MEDAI_LAB_RUN/ failed" >&2
}
INTERRUPTED=0
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

mkdir -p "$LOG_DIR"

run_stage() {
  local name=$1 t0 rc=0
  if [ "$INTERRUPTED" = 1 ]; then STATUS[$name]=SKIP; SECS[$name]=0.0; NOTE[$name]="interrupted"; return; fi
  STAGE_NOTE=$(mktemp); export STAGE_NOTE
  echo
  echo "==================== stage: $name ===================="
  t0=$EPOCHREALTIME
  # Each stage in its own process group (set -m) so a signal reaches exactly what this script started.
  # The wrapper and tee outlive INT/TERM so the stage can clean up and its last output is still logged.
  set -m
  (
    trap ':' INT TERM
    ( "stage_$name" ) </dev/null 2>&1 | (trap '' INT TERM; exec tee "$LOG_DIR/$name.log")
    exit "${PIPESTATUS[0]}"
  ) &
  CURRENT_PID=$!
  LAST_STAGE_PGID=$CURRENT_PID
  set +m
  while :; do
    wait "$CURRENT_PID"; rc=$?
    # wait returns >128 when interrupted by a trapped signal; wait again for the real exit status.
    if [ "$rc" -gt 128 ] && kill -0 "$CURRENT_PID" 2>/dev/null; then continue; fi
    break
  done
  CURRENT_PID=""
  SECS[$name]=$(elapsed "$t0")
  NOTE[$name]=$(head -c 200 "$STAGE_NOTE" | tr '\n' ' ')
  rm -f "$STAGE_NOTE"
  case $rc in
    0) STATUS[$name]=PASS ;;
    "$SKIP_RC") STATUS[$name]=SKIP ;;
    *) STATUS[$name]=FAIL; NOTE[$name]="exit $rc ${NOTE[$name]}" ;;
  esac
  echo "-------------------- stage: $name: ${STATUS[$name]} in ${SECS[$name]} s (log: ${LOG_DIR#"$ROOT"/}/$name.log)"
}

setup_ok=1
if [ "$run_setup" = 1 ]; then
  run_stage setup
  [ "${STATUS[setup]}" = PASS ] || setup_ok=0
fi
if [ "$setup_ok" = 1 ] && [ -x "$ROOT/.venv/bin/python" ]; then
  activate_venv
  [ "$INTERRUPTED" = 1 ] || start_images
else
  setup_ok=0
fi

for s in "${STAGES[@]}"; do
  if [ "$setup_ok" = 1 ]; then
    run_stage "$s"
  else
    STATUS[$s]=FAIL; SECS[$s]=0.0; NOTE[$s]="not run: setup failed or .venv missing"
  fi
done
for s in "${ALL_STAGES[@]}"; do
  in_list "$s" "${STAGES[*]}" && continue
  STATUS[$s]=SKIP; SECS[$s]=0.0; NOTE[$s]="not selected"
done

stop_run

# ------------------------------------------------------------------ summary
passed=0 failed=0
summary=$ROOT/tests/output/test-summary.tsv
printf 'stage\tstatus\tseconds\tnote\n' >"$summary"
echo
echo "==================== summary ===================="
printf '%-10s %-6s %9s  %s\n' STAGE STATUS SECONDS NOTE
for s in setup "${ALL_STAGES[@]}"; do
  [ -n "${STATUS[$s]:-}" ] || continue
  printf '%-10s %-6s %9s  %s\n' "$s" "${STATUS[$s]}" "${SECS[$s]}" "${NOTE[$s]}"
  printf '%s\t%s\t%s\t%s\n' "$s" "${STATUS[$s]}" "${SECS[$s]}" "${NOTE[$s]}" >>"$summary"
  case ${STATUS[$s]} in
    PASS) passed=$((passed + 1)) ;;
    FAIL) failed=$((failed + 1)) ;;
  esac
done
if [ "$INTERRUPTED" = 1 ]; then
  echo "(interrupted)"
  failed=$((failed > 0 ? failed : 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
