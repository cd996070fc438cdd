#!/usr/bin/env bash
# The README's main command: set-up, build, a one-line echo verdict per backend, then the quick
# comparison of all backends (extra arguments go to `echobench run`).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echobench_install "${ECHOBENCH_PKGS[@]}"
echobench_build build
cd "$ECHOBENCH_ROOT"
"$PYTHON" scripts/echobench check
exec "$PYTHON" scripts/echobench run --quick "$@"
