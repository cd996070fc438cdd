#!/usr/bin/env bash
# The CI gate's error rates, measured here with servers of known cost (the minimal
# server, and itself made 2, 5 and 10 % slower with --cost-ns):
#   - `echobench ab`: false alarms on A/A (goal <= 5 %), regressions found (goal >= 90 % at
#     5 %, >= 50 % at 2 %), and the time of one run;
#   - the cross-run `compare` recipe: exit 1 on A/A and on a 5 % slowdown, with one run a side,
#     with the history's spread, with five runs a side;
#   - the change-point detector: on synthetic 30-run histories (scripts/changepoint_check.py)
#     and on a real one with a 10 % slowdown injected.
# Figures, not a pass/fail test. Long: about RUNS x 8 minutes (RUNS=10: well over an hour).
#
#   bash scripts/gate-check.sh            # everything, RUNS=10
#   RUNS=3 bash scripts/gate-check.sh ab  # one part
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echobench_install "${ECHOBENCH_PKGS[@]}"
echobench_build build
cd "$ECHOBENCH_ROOT"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(ab compare changepoints history)
rc=0
for part in "${parts[@]}"; do
	echo "== gate-check: $part"
	case "$part" in
	changepoints) "$PYTHON" scripts/changepoint_check.py || rc=1 ;;
	ab | compare | history) "$PYTHON" scripts/gatecheck.py "$part" --runs "${RUNS:-10}" || rc=1 ;;
	*) echo "gate-check.sh: unknown part '$part' (ab, compare, changepoints, history)" >&2; exit 2 ;;
	esac
done
exit "$rc"
