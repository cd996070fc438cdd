#!/usr/bin/env bash
# The "busy machine" check: the README's whole test command, in a fresh clone of this tree's
# committed state, while a busy loop runs on every CPU (unpinned, at the tests' own priority).
# Unlike the slow-machine check (everything on one CPU), it reproduces what a loaded CI runner
# does to the test command's two lanes: every process competes with a spinning neighbour.
# Runs RUNS times (default 1), each in its own fresh clone; prints the time of each run.
# Exit status: 0 when every run passed, 1 otherwise.
#
#   bash scripts/busy-machine-check.sh            # one run
#   RUNS=3 bash scripts/busy-machine-check.sh     # three in a row
#   KEEP=1 bash scripts/busy-machine-check.sh     # keep the clones (their paths are printed)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${RUNS:-1}
ncpu=$(nproc)

busy=()
cleanup() {
	[ ${#busy[@]} -gt 0 ] && kill "${busy[@]}" 2>/dev/null
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failed=0
times=()
for i in $(seq 1 "$runs"); do
	clone=$(mktemp -d /tmp/echobench-busy.XXXXXX)
	git clone -q "$root" "$clone"
	for _ in $(seq 1 "$ncpu"); do
		sh -c 'while :; do :; done' &
		busy+=($!)
	done
	echo "== busy-machine run $i of $runs: bash scripts/run-tests.sh in $clone" \
		"($ncpu busy loops, commit $(git -C "$clone" rev-parse --short HEAD))"
	start=$(date +%s)
	rc=0
	(cd "$clone" && bash scripts/run-tests.sh) || rc=$?
	secs=$(( $(date +%s) - start ))
	kill "${busy[@]}" 2>/dev/null || true
	wait "${busy[@]}" 2>/dev/null || true
	busy=()
	times+=("run $i: $((secs / 60)) min $((secs % 60)) s, exit $rc")
	[ "$rc" -eq 0 ] || failed=1
	if [ -n "${KEEP:-}" ]; then
		echo "== kept $clone"
	else
		rm -rf "$clone"
	fi
done
echo "== busy-machine check: ${#times[@]} runs with $ncpu busy loops"
printf '  %s\n' "${times[@]}"
exit "$failed"
