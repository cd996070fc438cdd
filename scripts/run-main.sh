#!/usr/bin/env bash
# The README's main command: set-up, build, a one-line echo verdict per backend, then the quick
# comparison of all backends (extra arguments go to `echobench run`). The --quick preset
# (scripts/echobench_lib/matrix.py QUICK: its comment has the time budget) measures every usable
# backend in 8 paired rounds per cell, a churn and a 64 KiB streaming cell, a small knee sweep
# and the quick conformance pass: about 3 minutes on a 2-CPU machine after installation.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echobench_install "${ECHOBENCH_PKGS[@]}"
echobench_build build
cd "$ECHOBENCH_ROOT"
"$PYTHON" scripts/echobench check
exec "$PYTHON" scripts/echobench run --quick "$@"
