#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time over its seed corpus, and prints one line:
#   NAME: EXECS execs (RATE/s), cov: N ft: N, corpus N inputs; finding: none | WHAT (reproducer PATH)
# Exit 0 without a finding, 1 with one (or when the target could not run).
#
#   fuzz-run.sh TARGET SEED_DIR SECONDS    (scripts/fuzz-check.sh and meson's suite `fuzz`)
#   fuzz-run.sh --skip REASON              (meson's suite `fuzz` where no target is built: 77)
#
# New corpus entries go to a temporary directory removed at the end, never into the tree;
# the seed directory is only read. A reproducer is kept under FUZZ_FINDINGS (default: a
# fuzz-findings/ directory beside the build's targets), where libFuzzer writes it.
# Bounds per input: FUZZ_RSS_MB (default 1024) of memory, FUZZ_TIMEOUT_S (default 10 s; a
# generous bound for one input on a busy machine, not a speed target).
set -uo pipefail

if [ "${1:-}" = "--skip" ]; then
	echo "SKIP: fuzz targets not built: ${2:-no reason given}"
	exit 77
fi
if [ $# -ne 3 ]; then
	echo "usage: fuzz-run.sh TARGET SEED_DIR SECONDS | --skip REASON" >&2
	exit 2
fi
target=$1 seeds=$2 secs=$3
name=$(basename "$target")
case $secs in
'' | *[!0-9]*)
	echo "fuzz-run.sh: bad SECONDS '$secs': expected a whole number" >&2
	exit 2
	;;
esac
[ -x "$target" ] || { echo "$name: no executable $target" >&2; exit 1; }
[ -d "$seeds" ] || { echo "$name: no seed corpus $seeds" >&2; exit 1; }

# Default: fuzz-findings/ in the build directory (the nearest ancestor with build.ninja).
dir=$(cd "$(dirname "$target")" && pwd)
while [ "$dir" != / ] && [ ! -f "$dir/build.ninja" ]; do dir=$(dirname "$dir"); done
findings=${FUZZ_FINDINGS:-$dir/fuzz-findings}
mkdir -p "$findings/$name"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/echobench-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/corpus"

# A dictionary of the format's words, when the corpus has one beside it (SEED_DIR.dict).
dict=()
[ -f "${seeds%/}.dict" ] && dict=(-dict="${seeds%/}.dict")

# libFuzzer's own exit codes (77 for a crash) would read as "skipped" to meson: 1 for all.
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
"$target" "${dict[@]}" -max_total_time="$secs" -rss_limit_mb="${FUZZ_RSS_MB:-1024}" \
	-timeout="${FUZZ_TIMEOUT_S:-10}" -error_exitcode=1 -timeout_exitcode=1 \
	-print_final_stats=1 -artifact_prefix="$findings/$name/" \
	"$tmp/corpus" "$seeds" > "$tmp/log" 2>&1
rc=$?

stat() { sed -n "s/^stat::$1: *//p" "$tmp/log" | tail -1; }
execs=$(stat number_of_executed_units)
rate=$(stat average_exec_per_sec)
# The last status line ("#N DONE cov: C ft: F corp: N/...") carries the coverage.
last=$(grep -E '^#[0-9]+.* cov: ' "$tmp/log" | tail -1)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$tmp/log" | tail -1)
summary="$name: ${execs:-?} execs (${rate:-?}/s), cov: ${cov:-?} ft: ${ft:-?}, corpus ${corp:-?} inputs"

if [ "$rc" -eq 0 ] && [ -z "$repro" ]; then
	echo "$summary; finding: none"
	exit 0
fi
what=$(grep -m1 -E '^==[0-9]+==ERROR: |runtime error: |property failed|^SUMMARY: ' "$tmp/log" |
	sed 's/^==[0-9]*==//')
echo "$summary; finding: ${what:-exit $rc} (reproducer ${repro:-none written})"
# The sanitizer's report, for the log; the reproducer replays with: TARGET REPRODUCER
grep -v -E '^#[0-9]+|^INFO: |^stat::' "$tmp/log" | tail -40 | sed 's/^/    /'
exit 1
