#!/usr/bin/env bash
# Shared set-up for the README's two commands (run-main.sh, run-tests.sh); sourced, not run.
# Installs the Debian packages that are missing, then configures and builds build/ (and, for the
# tests, build-asan/). Idempotent: a second run installs nothing and rebuilds only what changed.
set -euo pipefail

ECHOBENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ECHOBENCH_ROOT
# Python tooling runs on Debian's interpreter: the python3 first on PATH may be another build
# (pyenv) without matplotlib/scipy/pytest, and PyPI is not reachable to add them.
PYTHON=/usr/bin/python3
export PYTHON
export PYTHONDONTWRITEBYTECODE=1

# Packages for building and running the main job (python3-psycopg2: `echobench history --db
# postgresql://...`; the default SQLite history needs nothing).
ECHOBENCH_PKGS=(build-essential meson ninja-build pkg-config liburing-dev libbenchmark-dev
	libbenchmark-tools python3 python3-matplotlib python3-scipy python3-psycopg2 procps
	iproute2)
# clang and its libFuzzer runtime, for the fuzz targets (scripts/fuzz-check.sh, build-fuzz/).
ECHOBENCH_FUZZ_PKGS=(clang libclang-rt-14-dev)
# Extra packages for the tests: pytest, chromium for the report screenshot test, the
# third-party echo servers that echo-conform is run against, sshd for the load-host tests
# (two sshd hosts in network namespaces; without it they would skip on every fresh machine),
# PostgreSQL for the history's store test (a server of its own in a temporary directory), and
# the fuzz targets' clang.
ECHOBENCH_TEST_PKGS=(python3-pytest chromium socat busybox ncat xinetd openssh-server postgresql
	"${ECHOBENCH_FUZZ_PKGS[@]}")

echobench_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "echobench: installing Debian packages: ${missing[*]}" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
}

# echobench_build DIR [meson setup options...]
echobench_build() {
	local dir="$ECHOBENCH_ROOT/$1"
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$ECHOBENCH_ROOT" "$@" >/dev/null
	fi
	meson compile -C "$dir" >/dev/null
}
