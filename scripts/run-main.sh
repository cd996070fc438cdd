#!/usr/bin/env bash
# The README's main command: set-up, build, a one-line echo verdict per backend, then the quick
# comparison of all backends (extra arguments go to `echobench run`). The --quick preset
# (scripts/echobench_lib/matrix.py QUICK) has 4 repetitions, the fewest with which a winner can
# be named (the winner test runs at alpha/2), and a small knee sweep; on a quiet 2-CPU machine
# with five backends it takes about 2.5 minutes after installation: 20 cells x 4 repetitions
# x ~1 s, a sweep of at most 5 x 8 steps x ~0.75 s, quick conformance ~25 s, check ~5 s.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echobench_install "${ECHOBENCH_PKGS[@]}"
echobench_build build
cd "$ECHOBENCH_ROOT"
"$PYTHON" scripts/echobench check
exec "$PYTHON" scripts/echobench run --quick "$@"
