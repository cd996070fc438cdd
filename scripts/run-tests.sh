#!/usr/bin/env bash
# The README's test command: set-up, both builds, every test. .ci/run calls exactly this.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echobench_install "${ECHOBENCH_PKGS[@]}" "${ECHOBENCH_TEST_PKGS[@]}"
echobench_build build
# The same server tests again with AddressSanitizer and UBSan: memory errors in a backend fail
# the run instead of passing by luck.
echobench_build build-asan -Db_sanitize=address,undefined -Db_lundef=false
cd "$ECHOBENCH_ROOT"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

echo "== C unit tests (build, build-asan)"
meson test -C build --print-errorlogs --no-rebuild
meson test -C build-asan --print-errorlogs --no-rebuild --suite unit

echo "== pytest on build-asan (sanitizers; the long suites run once, below)"
ECHOBENCH_BUILD=build-asan /usr/bin/python3 -m pytest -q -m "not slow" servers clients conformance

echo "== pytest on build (everything)"
ECHOBENCH_BUILD=build exec /usr/bin/python3 -m pytest -q
