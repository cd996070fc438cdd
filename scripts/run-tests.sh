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
trap '[ -n "$slow_pid" ] && kill "$slow_pid" 2>/dev/null; rm -rf "$tmp"' EXIT

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
# the command past 15 minutes. The tests are built to pass on a loaded machine (the README's
# slow-machine check), so the other lane's load changes no verdict. The second lane's output
# is shown when it ends.
slow_lane="pytest on build (slow tests of servers, clients, conformance)"
(
	exec env ECHOBENCH_BUILD=build "$PYTHON" -m pytest -q -m slow \
		--basetemp "$tmp/slow" servers clients conformance
) > "$tmp/slow.log" 2>&1 &
slow_pid=$!
phase "pytest on build-asan (servers, clients, conformance; not slow)" \
	env ECHOBENCH_BUILD=build-asan "$PYTHON" -m pytest -q -m "not slow" --basetemp "$tmp/asan" \
	servers clients conformance
phase "pytest on build (common, bench, scripts)" \
	env ECHOBENCH_BUILD=build "$PYTHON" -m pytest -q --basetemp "$tmp/other" common bench scripts
echo "== $slow_lane"
wait "$slow_pid" || failed+=("$slow_lane")
slow_pid=
cat "$tmp/slow.log"

if [ ${#failed[@]} -gt 0 ]; then
	printf '== FAILED: %s\n' "${failed[@]}"
	exit 1
fi
echo "== every phase passed"
