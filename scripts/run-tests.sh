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

failed=()
phase() {
	local name=$1
	shift
	echo "== $name"
	"$@" || failed+=("$name")
}

phase "C unit tests (build)" meson test -C build --print-errorlogs --no-rebuild
phase "C unit tests (build-asan)" meson test -C build-asan --print-errorlogs --no-rebuild --suite unit
# Each pytest test runs once: the programs' own suites against the sanitizer build (a memory
# error fails the run instead of passing by luck), their slow tests and the driver's, bench's
# and the load hosts' suites against the normal build. (Running the quick suites on both builds
# took the test command past 15 minutes on a 2-core machine.)
phase "pytest on build-asan (servers, clients, conformance; not slow)" \
	env ECHOBENCH_BUILD=build-asan "$PYTHON" -m pytest -q -m "not slow" servers clients conformance
phase "pytest on build (their slow tests)" \
	env ECHOBENCH_BUILD=build "$PYTHON" -m pytest -q -m slow servers clients conformance
phase "pytest on build (common, bench, scripts)" \
	env ECHOBENCH_BUILD=build "$PYTHON" -m pytest -q common bench scripts

if [ ${#failed[@]} -gt 0 ]; then
	printf '== FAILED: %s\n' "${failed[@]}"
	exit 1
fi
echo "== every phase passed"
