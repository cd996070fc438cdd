#!/usr/bin/env bash
# The "slow machine" check: the suites whose cases involve time must give the same
# verdicts when the machine is slow or busy. Runs them RUNS times in a row (default 3) with
# everything on CPU 0 while a busy loop competes for that CPU, and prints the time of each run.
# Exit status: 0 when every run passed, 1 otherwise.
#
#   bash scripts/slow-machine-check.sh            # conformance/, servers/test_server_limits.py,
#                                                 # servers/test_server_hostile.py, clients/
#   RUNS=1 bash scripts/slow-machine-check.sh conformance   # other test paths, one run
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echobench_install "${ECHOBENCH_PKGS[@]}" "${ECHOBENCH_TEST_PKGS[@]}"
echobench_build build
cd "$ECHOBENCH_ROOT"
export ECHOBENCH_BUILD=build

runs=${RUNS:-3}
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(conformance servers/test_server_limits.py servers/test_server_hostile.py clients)

# The competitor: a shell busy loop pinned to CPU 0, stopped however this script ends.
taskset -c 0 sh -c 'while :; do :; done' &
busy=$!
trap 'kill "$busy" 2>/dev/null; wait "$busy" 2>/dev/null || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failed=0
times=()
for i in $(seq 1 "$runs"); do
	echo "== slow-machine run $i of $runs: taskset -c 0 pytest ${suites[*]} (busy loop on CPU 0)"
	start=$(date +%s)
	rc=0
	taskset -c 0 "$PYTHON" -m pytest -q "${suites[@]}" || rc=$?
	secs=$(( $(date +%s) - start ))
	times+=("run $i: ${secs} s, exit $rc")
	[ "$rc" -eq 0 ] || failed=1
done
echo "== slow-machine check: ${#times[@]} runs"
printf '  %s\n' "${times[@]}"
exit "$failed"
