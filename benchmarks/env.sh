# shellcheck shell=bash
# Sourced by the benchmark commands: the repository's toolchain (.venv from scripts/setup.sh, installed on first
# use), its ansible.cfg and collections, and the repository root as the working directory.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
[ -x .venv/bin/ansible-playbook ] || bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export ANSIBLE_CONFIG=$ROOT/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$ROOT/.collections ANSIBLE_ROLES_PATH=$ROOT/roles
export ANSIBLE_HOST_KEY_CHECKING=False
