#!/usr/bin/env bash
# The A/A check of the runner: the minimal server (bench/minserver) as two entries of the main
# job's cells, RUNS times; prints the share of cells that name a winner (goal: at most 5 %),
# with its interval.
# Figures, not a pass/fail test: the error rates are this machine's too (docs/RESULTS.md).
#
#   bash scripts/aa-check.sh            # RUNS=10 (default)
#   RUNS=3 bash scripts/aa-check.sh     # quicker, wider intervals
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echobench_install "${ECHOBENCH_PKGS[@]}"
echobench_build build
cd "$ECHOBENCH_ROOT"
exec "$PYTHON" scripts/gatecheck.py aa --runs "${RUNS:-10}" "$@"
