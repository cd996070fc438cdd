#!/usr/bin/env bash
# The README's test command: set-up, both builds, every test. .ci/run calls exactly this.
# Every phase runs even when an earlier one failed, so one run shows every failure; the exit
# status is non-zero when any phase failed.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echobench_install "${ECHOBENCH_PKGS[@]}" "${ECHOBENCH_TEST_PKGS[@]}"
echobench_build build
# The same server tests again with AddressSanitizer and UBSan: memory errors in a backend fail
# the run instead of passing by luck.
echobench_build build-asan -Db_sanitize=address,undefined -Db_lundef=false
cd "$ECHOBENCH_ROOT"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

# Each pytest session gets a temporary directory of its own: pytest prunes old ones under a
# shared base, which pulled files from under a session running beside it.
tmp=$(mktemp -d /tmp/echobench-tests.XXXXXX)
slow_pid=
trap '[ -n "$slow_pid" ] && { pkill -P "$slow_pid"; kill "$slow_pid"; } 2>/dev/null; rm -rf "$tmp"' EXIT

failed=()
phase() {
	local name=$1
	shift
	echo "== $name"
	"$@" || failed+=("$name")
}

phase "C unit tests (build)" meson test -C build --print-errorlogs --no-rebuild
phase "C unit tests (build-asan)" meson test -C build-asan --print-errorlogs --no-rebuild --suite unit
# Every fuzz target over its seed corpus and 2 s of fuzzing (build-fuzz/, clang, ASan+UBSan).
phase "fuzz targets over their seed corpora (build-fuzz)" bash scripts/fuzz-check.sh --regress

# Each pytest test runs once: the programs' own suites against the sanitizer build (a memory
# error fails the run instead of passing by luck), their slow tests (the variants' runs among
# them) and the driver's, bench's and the load hosts' suites against the normal build.
# Two lanes run side by side, one per CPU of a 2-core machine: one after the other they took
# the command past 15 minutes. The lanes are balanced by measured time (here, on a busy
# machine: the sanitizer suites 6.5 min, the slow ones 9, scripts/ 6.3 of which
# test_run_real.py 1.7, bench/ and common/ 0.3), so the real runs of the driver go to the
# slow lane. The tests are built to pass on a loaded machine (the README's slow- and
# busy-machine checks), so the other lane's load changes no verdict. The second lane's output
# is shown when it ends. `sweep` tests (a wider sample of what a test here checks) are run by
# hand.
slow_lane="pytest on build (slow tests of servers, clients, conformance; the driver's real runs, bench, common)"
(
	rc=0
	ECHOBENCH_BUILD=build "$PYTHON" -m pytest -q -m slow --basetemp "$tmp/slow" \
		servers clients conformance || rc=1
	ECHOBENCH_BUILD=build "$PYTHON" -m pytest -q -m "not sweep" --basetemp "$tmp/real" \
		scripts/test_run_real.py bench common || rc=1
	exit "$rc"
) > "$tmp/slow.log" 2>&1 &
slow_pid=$!
phase "pytest on build-asan (servers, clients, conformance; not slow)" \
	env ECHOBENCH_BUILD=build-asan "$PYTHON" -m pytest -q -m "not slow" --basetemp "$tmp/asan" \
	servers clients conformance
phase "pytest on build (scripts, but its real runs)" \
	env ECHOBENCH_BUILD=build "$PYTHON" -m pytest -q -m "not sweep" --basetemp "$tmp/other" \
	--ignore scripts/test_run_real.py scripts
echo "== $slow_lane"
wait "$slow_pid" || failed+=("$slow_lane")
slow_pid=
cat "$tmp/slow.log"

if [ ${#failed[@]} -gt 0 ]; then
	printf '== FAILED: %s\n' "${failed[@]}"
	exit 1
fi
echo "== every phase passed"
