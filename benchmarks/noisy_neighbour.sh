#!/usr/bin/env bash
# One command for the noisy-neighbour benchmark (see benchmarks/README.md):
#   bash benchmarks/noisy_neighbour.sh [--reps 5] [--requests 300] [--concurrency 4,8] [--out DIR] ...
set -euo pipefail
# shellcheck source=benchmarks/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export ANSIBLE_NOCOLOR=1
exec python3 benchmarks/noisy_neighbour.py "$@"
