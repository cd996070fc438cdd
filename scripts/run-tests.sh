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
lanes=()
trap 'for p in "${lanes[@]}"; do pkill -P "$p"; kill "$p"; done 2>/dev/null; rm -rf "$tmp"' EXIT

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
# Three lanes run side by side. One after the other they took the command past 15 minutes; in
# two lanes it took 14 min 15 s here, with the two CPUs busy only half of that time (the tests
# wait on servers, timers and sockets): the sanitizer suites 7.0 min, the slow ones 9.8,
# scripts/ 5.7 and the driver's real runs with bench/ and common/ 1.9. The tests are built to
# pass on a loaded machine (the README's slow- and busy-machine checks), so the other lanes'
# load changes no verdict. Each lane's output is shown when it ends, in this order. `sweep`
# tests (a wider sample of what a test here checks) are run by hand.
lane() {
	local name=$1
	shift
	"$@" > "$tmp/lane${#lanes[@]}.log" 2>&1 &
	lanes+=("$!")
	names+=("$name")
}
names=()
lane "pytest on build-asan (servers, clients, conformance; not slow)" \
	env ECHOBENCH_BUILD=build-asan "$PYTHON" -m pytest -q -m "not slow" --basetemp "$tmp/asan" \
	servers clients conformance
lane "pytest on build (slow tests of servers, clients, conformance)" \
	env ECHOBENCH_BUILD=build "$PYTHON" -m pytest -q -m slow --basetemp "$tmp/slow" \
	servers clients conformance
lane "pytest on build (scripts, bench, common)" \
	env ECHOBENCH_BUILD=build "$PYTHON" -m pytest -q -m "not sweep" --basetemp "$tmp/other" \
	scripts bench common
for i in "${!lanes[@]}"; do
	echo "== ${names[$i]}"
	wait "${lanes[$i]}" || failed+=("${names[$i]}")
	cat "$tmp/lane$i.log"
done
lanes=()

if [ ${#failed[@]} -gt 0 ]; then
	printf '== FAILED: %s\n' "${failed[@]}"
	exit 1
fi
echo "== every phase passed"
