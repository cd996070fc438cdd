#!/usr/bin/env bash
# Fuzzes every libFuzzer target (the fuzz_*.c files, ASan+UBSan) for a bounded time each.
#
#   bash scripts/fuzz-check.sh [SECONDS]    each target for SECONDS (default 60), one after
#                                           the other; one line per target: executions,
#                                           executions/s, coverage (cov, ft), any finding
#                                           with its reproducer
#   bash scripts/fuzz-check.sh --regress    the regression test: meson's suite `fuzz`, each
#                                           target over its seed corpus and 2 s of fuzzing
#
# Installs clang if missing, and configures and builds build-fuzz/ (CC=clang -Dfuzz=enabled,
# only the fuzz targets). New corpus entries go to a temporary directory; reproducers to
# build-fuzz/fuzz-findings/TARGET/ (replay one: build-fuzz/…/TARGET REPRODUCER).
# Bounds per input: FUZZ_RSS_MB (1024) of memory, FUZZ_TIMEOUT_S (10) seconds.
# Exit status: 0 no finding, 1 a finding (or a target that could not run), 2 bad usage.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ECHOBENCH_ROOT"

mode=fuzz secs=60
case "${1:-}" in
--regress) mode=regress ;;
'') ;;
*[!0-9]* | 0)
	echo "fuzz-check.sh: bad argument '$1': expected SECONDS (a whole number > 0) or --regress" >&2
	exit 2
	;;
*) secs=$1 ;;
esac
[ $# -le 1 ] || { echo "fuzz-check.sh: one argument at most (SECONDS or --regress)" >&2; exit 2; }

echobench_install "${ECHOBENCH_PKGS[@]}" "${ECHOBENCH_FUZZ_PKGS[@]}"
if ! command -v clang > /dev/null; then
	echo "fuzz-check: skipped: clang is not installed and could not be (${ECHOBENCH_FUZZ_PKGS[*]})"
	exit 0
fi
dir=build-fuzz
if [ ! -f "$dir/build.ninja" ]; then
	CC=clang meson setup "$dir" -Dfuzz=enabled > /dev/null
else
	meson configure "$dir" -Dfuzz=enabled > /dev/null
fi
# Quiet when it builds; the compiler's errors shown when it does not (they go to stdout).
if ! log=$(meson compile -C "$dir" fuzz 2>&1); then
	grep -E 'error|FAILED' <<< "$log" | head -20 >&2
	echo "fuzz-check: the fuzz targets did not build (meson compile -C $dir fuzz)" >&2
	exit 1
fi

if [ "$mode" = regress ]; then
	exec meson test -C "$dir" --suite fuzz --print-errorlogs --no-rebuild
fi

echo "== fuzz-check: each target for ${secs} s; $(uptime)"
# The targets and their corpora, as meson's suite `fuzz` lists them (meson.build is the one
# list).
targets=$(meson introspect --tests "$dir" | "$PYTHON" -c '
import json, sys
for t in json.load(sys.stdin):
    if "echobench:fuzz" in t["suite"] and len(t["cmd"]) == 4:
        print(t["cmd"][1], t["cmd"][2])')
found=0
while read -r exe corpus; do
	bash scripts/fuzz-run.sh "$dir/$exe" "$corpus" "$secs" < /dev/null || found=1
done <<< "$targets"
echo "== fuzz-check: $([ $found -eq 0 ] && echo "no finding" || echo "FINDINGS above"); $(uptime)"
exit "$found"
