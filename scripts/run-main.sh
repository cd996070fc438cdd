#!/usr/bin/env bash
# The README's main command: set-up, build, then the harness's main job.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echobench_install "${ECHOBENCH_PKGS[@]}"
echobench_build build
cd "$ECHOBENCH_ROOT"
exec "$PYTHON" scripts/echobench "$@"
