#!/usr/bin/env bash
# The power check of the runner: the minimal server against itself made 2, 5 and 10 % slower
# (--cost-ns, a calibrated busy loop per message), RUNS runs each; prints how often the faster
# one is named, per cell.
# Figures, not a pass/fail test: the error rates are this machine's too (docs/RESULTS.md).
#
#   bash scripts/power-check.sh            # RUNS=10 (default)
#   RUNS=3 bash scripts/power-check.sh     # quicker, wider intervals
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echobench_install "${ECHOBENCH_PKGS[@]}"
echobench_build build
cd "$ECHOBENCH_ROOT"
exec "$PYTHON" scripts/gatecheck.py power --runs "${RUNS:-10}" "$@"
