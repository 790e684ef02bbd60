#!/usr/bin/env bash
# One command for the noisy-neighbour benchmark (see benchmarks/README.md):
#   bash benchmarks/noisy_neighbour.sh [--reps 5] [--requests 300] [--concurrency 4,8] [--out DIR] ...
# Uses the repository's toolchain (.venv from scripts/setup.sh) for ansible-playbook and scripts/lab.py for the VM.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[ -x .venv/bin/ansible-playbook ] || bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export ANSIBLE_CONFIG=$ROOT/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$ROOT/.collections ANSIBLE_ROLES_PATH=$ROOT/roles
export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_NOCOLOR=1
exec python3 benchmarks/noisy_neighbour.py "$@"
