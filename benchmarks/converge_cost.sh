#!/usr/bin/env bash
# One command for the converge-cost benchmark (see benchmarks/README.md):
#   bash benchmarks/converge_cost.sh [--name cost] [--flavour bookworm] [--out DIR] [--keep]
# Uses the repository's toolchain (.venv from scripts/setup.sh) and scripts/lab.py for the VM.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[ -x .venv/bin/ansible-playbook ] || bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export ANSIBLE_CONFIG=$ROOT/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$ROOT/.collections ANSIBLE_ROLES_PATH=$ROOT/roles
export ANSIBLE_HOST_KEY_CHECKING=False
exec python3 benchmarks/converge_cost.py "$@"
