#!/usr/bin/env bash
# The main job of medai.llmhost (README command 1): set up the toolchain, boot a lab VM, run
# playbooks/site.yml against it with the lab inventory (profile field_report), then audit the VM and
# print the audit summary.
#
#   bash scripts/main.sh            # stop the VM at the end
#   KEEP=1 bash scripts/main.sh     # leave it running: python3 scripts/lab.py ssh demo ; ... down demo
#   LAB_NAME=x LAB_FLAVOUR=trixie bash scripts/main.sh
#
# Reports: reports/audit-latest.{json,md,html}. Everything the play changed is journalled on the VM in
# /var/lib/medai-llmhost/journal.jsonl (playbooks/rollback.yml restores the originals).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
NAME=${LAB_NAME:-demo}
FLAVOUR=${LAB_FLAVOUR:-bookworm}
KEEP=${KEEP:-0}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "setup (venv, dependency collections, host packages)"
bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export ANSIBLE_COLLECTIONS_PATH=$ROOT/.collections ANSIBLE_ROLES_PATH=$ROOT/roles

started=0
cleanup() {
  if [ "$started" = 1 ] && [ "$KEEP" != 1 ]; then
    step "stopping lab VM $NAME"
    python scripts/lab.py down "$NAME" || true
  fi
}
trap cleanup EXIT

step "lab VM $NAME ($FLAVOUR): image (built once, cached) and boot"
python scripts/lab.py build --flavour "$FLAVOUR"
python scripts/lab.py up "$NAME" --flavour "$FLAVOUR" --reuse
started=1

INV_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/medai-llmhost/vms/$NAME
mkdir -p "$INV_DIR"
python scripts/lab.py inventory "$NAME" | python -c '
import json, sys
hosts = json.load(sys.stdin)["all"]["hosts"]
print(json.dumps({"all": {"children": {"lab": {"hosts": hosts}}}}, indent=1))' > "$INV_DIR/inventory.yml"
INV=(-i inventories/profiles -i inventories/lab -i "$INV_DIR/inventory.yml")

step "prepare the lab VM (vLLM stand-in test fixture; the VM has no GPU)"
ansible-playbook "${INV[@]}" playbooks/lab_prepare.yml

step "site.yml against the lab VM"
ansible-playbook "${INV[@]}" playbooks/site.yml

step "audit.yml (check mode: changes nothing)"
MEDAI_LLMHOST_REPORT_DIR=$ROOT/reports ansible-playbook "${INV[@]}" playbooks/audit.yml | tee "$INV_DIR/audit.log"

step "audit summary"
sed -n '/MEDAI.LLMHOST AUDIT/,$p' "$INV_DIR/audit.log" | grep -v '^PLAY RECAP' || true
echo "full report: $ROOT/reports/audit-latest.md (.json, .html)"
if [ "$KEEP" = 1 ]; then
  echo "lab VM left running: python3 scripts/lab.py ssh $NAME   |   python3 scripts/lab.py down $NAME"
fi
