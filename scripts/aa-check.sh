#!/usr/bin/env bash
# The A/A check of issue 9 on real runs: one backend measured as two entries of one run (the
# backend itself and the same echo-server started as a --server entry), then the fraction of
# cells the report calls `tie (within noise)`. A sound winner rule names a winner in at most
# about 5 % of such cells. Prints the tally; exit 0 when at least 95 % of the judged cells tie,
# 1 otherwise, 2 for bad arguments.
#
#   scripts/aa-check.sh [BACKEND] [extra `echobench run` options]
#
# Defaults: epoll; connections 1,4,16,64, sizes 64,512, modes closed,stream,open50,
# 4 repetitions of 0.3 s (24 cells: about 2.5 minutes). The run goes to a temporary directory,
# removed at the end (--keep DIR keeps it there instead).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-/usr/bin/python3}"
build="${ECHOBENCH_BUILD:-$root/build}"
backend=epoll
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then backend="$1"; shift; fi
keep=
if [ $# -gt 1 ] && [ "$1" = "--keep" ]; then keep="$2"; shift 2; fi
out="${keep:-$(mktemp -d /tmp/echobench-aa.XXXXXX)}"
[ -n "$keep" ] || trap 'rm -rf "$out"' EXIT
mkdir -p "$out"
server="$build/servers/echo-server"
[ -x "$server" ] || { echo "aa-check: $server is not built" >&2; exit 2; }

set +e
ECHOBENCH_BUILD="$build" "$python" "$here/echobench" run --backends "$backend" \
	--server "${backend}B=$server --backend $backend --listen 127.0.0.1:{port}" \
	--connections 1,4,16,64 --sizes 64,512 --modes closed,stream,open50 \
	--repetitions 4 --duration 0.3s --warmup 0.1s --conform none --out "$out" "$@" \
	>"$out/run.log" 2>&1
rc=$?
set -e
if [ ! -e "$out/latest/run.json" ]; then
	run=$(ls -d "$out"/*/ 2>/dev/null | head -1)
else
	run="$out/latest"
fi
if [ -z "$run" ] || [ ! -e "$run/run.json" ]; then
	echo "aa-check: echobench run failed (exit $rc):" >&2
	tail -5 "$out/run.log" >&2
	exit 1
fi

AA_ROOT="$root" "$python" - "$run" "$backend" "${backend}B" <<'EOF'
"""Tally: cells where both entries are valid are judged by the report's own rule
(RunData.decide); the same rule over every repetition, validity ignored, is printed beside it
(on a busy machine echo-load's self-checks fail often, which leaves few judged cells)."""
import os
import sys

sys.path.insert(0, os.path.join(os.environ["AA_ROOT"], "scripts"))
from echobench_lib import stats  # noqa: E402
from echobench_lib.metrics import higher_is_better  # noqa: E402
from echobench_lib.report import RunData, primary_metric  # noqa: E402

run, a, b = sys.argv[1:4]
d = RunData(run)
judged = ties = every = every_ties = 0
for s, c, m, p in d.cells():
    dec = d.decide(s, c, m, p)
    if dec["leader"] is not None and dec["runner_up"] is not None:
        judged += 1
        ties += dec["winner"] is None
        if dec["winner"]:
            print(f"  winner named: {d.label(s, c, m, p)}: {dec['winner']} "
                  f"{dec['margin']:.2f}x, p = {dec['p_value']:.3f}")
    metric = primary_metric(m)
    groups = {e: d.reps((e, c, s, m, p), metric) for e in (a, b)}
    if all(groups.values()):
        every += 1
        every_ties += stats.decide_winner(groups, higher_is_better(metric))["winner"] is None
print(f"A/A {a} vs {b}: {ties} of {judged} judged cells tie (within noise)"
      + (f" = {ties / judged:.1%}" if judged else "")
      + f"; validity ignored: {every_ties} of {every} = "
      + (f"{every_ties / every:.1%}" if every else "-") + f" ({len(d.cells())} cells, {run})")
sys.exit(0 if judged and ties >= 0.95 * judged else 1)
EOF
