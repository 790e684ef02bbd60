#!/usr/bin/env bash
# One command for the converge-cost benchmark (see benchmarks/README.md):
#   bash benchmarks/converge_cost.sh [--name cost] [--flavour bookworm] [--out DIR] [--keep]
set -euo pipefail
# shellcheck source=benchmarks/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec python3 benchmarks/converge_cost.py "$@"
