"""echo-server's command line: --list (and its alias --list-backends), --help, --version, and bad
input (exit 2 for usage errors, 1 for run-time failures, always exactly one line on stderr naming
the problem). The backend names come from `echo-server --list`, never from a list written here:
the C table is their one home."""
import os
import re
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import ROOT, usable_backends
from test_server_support import run_cli, server_exe

# How long a program that must refuse to start may take to exit: generous, since only one that
# starts serving instead (a failure) waits it out.
EXIT_WAIT = 30

OPTIONS = ["--backend", "--list", "--list-backends", "--listen", "--udp", "--threads",
           "--processes", "--max-conns", "--bufsize", "--drain-timeout", "--help", "--version"]


def project_version():
    m = re.search(r"version\s*:\s*'([^']+)'", (ROOT / "meson.build").read_text())
    assert m, "no version in meson.build"
    return m[1]


def one_line(text):
    lines = text.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {text!r}"
    assert lines[0].strip(), "the one stderr line is empty"
    return lines[0]


def a_backend():
    b = usable_backends()
    if not b:
        pytest.skip("no usable backend")
    return "epoll" if "epoll" in b else b[0]


LIST_LINE = re.compile(r"(?P<name>[a-z]+(?::[a-z0-9]+)?) (?P<status>usable|unusable: \S.*)")


def listed():
    """[(name, status line)] as `echo-server --list` prints them."""
    r = run_cli("--list")
    assert r.returncode == 0, r.stderr
    out = []
    for line in r.stdout.splitlines():
        m = LIST_LINE.fullmatch(line)
        assert m, f"bad --list line {line!r}"
        out.append((m["name"], line))
    assert out, "--list printed no backend"
    return out


def test_list():
    rows = listed()
    names = [n for n, _ in rows]
    assert len(set(names)) == len(names), f"a backend listed twice: {names}"
    # These need nothing beyond POSIX and Linux 2.6: always compiled in, always usable.
    for b in ("blocking", "select", "poll", "epoll"):
        assert f"{b} usable" in [line for _, line in rows], rows
    # A variant (NAME:VARIANT) follows the backend it varies.
    for i, n in enumerate(names):
        if ":" in n:
            assert n.split(":")[0] in names[:i], f"variant {n} before its backend: {names}"


def test_list_backends_is_an_alias_of_list():
    a, b = run_cli("--list"), run_cli("--list-backends")
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout


def test_help_and_version_name_every_listed_backend():
    names = [n for n, _ in listed()]
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    missing = [o for o in OPTIONS if not re.search(re.escape(o) + r"\b", r.stdout)]
    assert not missing, f"--help does not mention {missing}"
    for b in names:
        assert re.search(r"^\s+" + re.escape(b) + r"\s", r.stdout, re.M), \
            f"--help does not describe backend {b}"
    v = run_cli("--version")
    assert v.returncode == 0, v.stderr
    assert v.stdout.split("(backends: ")[1].rstrip(")\n").split() == names, v.stdout


def test_unknown_backend_names_every_listed_one():
    r = run_cli("--backend", "nosuch", "--listen", "127.0.0.1:0", timeout=EXIT_WAIT)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    for b, _ in listed():
        assert re.search(r"\b" + re.escape(b) + r"\b", line), f"{line!r} does not name {b}"


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert "echo-server" in r.stdout and project_version() in r.stdout, r.stdout


# (arguments after --backend B, words of which at least one must appear in the message)
BAD_USAGE = [
    (["--backend", "nosuch"], ["nosuch"]),
    (["--listen", "300.1.1.1:5"], ["300.1.1.1:5"]),
    (["--listen", "127.0.0.1:99999"], ["127.0.0.1:99999"]),
    (["--listen", "127.0.0.1"], ["127.0.0.1"]),
    (["--listen", "::1:80"], ["::1:80"]),
    (["--listen", "unix:"], ["unix:"]),
    (["--listen", "unix:/" + "x" * 120], ["unix:"]),
    (["--frobnicate"], ["--frobnicate"]),
    (["-Q"], ["-Q"]),
    (["--listen"], ["--listen"]),
    (["--threads", "abc"], ["--threads", "abc"]),
    (["--threads", "0"], ["--threads"]),
    (["--max-conns", "-3"], ["--max-conns", "-3"]),
    (["--bufsize", "12x"], ["--bufsize", "12x"]),
    (["--drain-timeout", "soon"], ["--drain-timeout", "soon"]),
    (["stray-argument"], ["stray-argument"]),
]


@pytest.mark.parametrize("args,words", BAD_USAGE,
                         ids=[" ".join(a) if len(" ".join(a)) < 40 else "unix-path-too-long"
                              for a, _ in BAD_USAGE])
def test_bad_usage_exits_2_with_one_line(args, words):
    argv = args if args[0] == "--backend" else ["--backend", a_backend(), *args]
    if "--listen" not in argv:
        argv = [*argv, "--listen", "127.0.0.1:0"]   # a server that starts anyway must not
    elif argv[-1] == "--listen":                   # take a fixed port; run_cli times it out
        argv = ["--listen", "127.0.0.1:0", *argv]
    r, line = refused(argv, 2)
    assert any(w in line for w in words), f"{line!r} does not name {words}"
    assert "listening" not in r.stdout


def refused(args, status):
    """echo-server with args must exit with status and one line on stderr instead of serving.
    Returns (the CompletedProcess, that line)."""
    try:
        r = run_cli(*args, timeout=EXIT_WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"echo-server {' '.join(args)} started serving instead of refusing")
    assert r.returncode == status, f"exit {r.returncode}, stderr {r.stderr!r}"
    return r, one_line(r.stderr)


def refused_in_use(*args):
    """echo-server with args, whose --listen address is taken: it must exit 1 with one line
    saying "in use" instead of serving. Returns that line."""
    line = refused(args, 1)[1]
    assert "in use" in line.lower(), line
    return line


def test_port_in_use_exits_1(backend):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused_in_use("--backend", backend, "--listen", f"127.0.0.1:{port}")
    assert str(port) in line, f"{line!r} does not name the address"


def test_port_in_use_by_another_server_with_threads(backend, start_server):
    """--threads N uses SO_REUSEPORT listeners; a second server with --threads on the same port
    must still fail with "in use" instead of silently sharing the port with the first."""
    from test_server_support import is_event_loop
    if not is_event_loop(backend):
        pytest.skip("--threads is for the event-loop backends")
    first = start_server(backend, "--threads", "2")
    port = first.host_port()[1]
    refused_in_use("--backend", backend, "--threads", "2", "--listen", f"127.0.0.1:{port}")


def test_unix_socket_in_use_exits_1(backend, start_server):
    d = tempfile.mkdtemp(prefix="echo-inuse-", dir="/tmp")
    path = os.path.join(d, "x.sock")
    try:
        first = start_server(backend, "--listen", f"unix:{path}")
        line = refused_in_use("--backend", backend, "--listen", f"unix:{path}")
        assert path in line, line
        # The first server still owns it.
        from test_server_support import connect, roundtrip
        with connect(first) as s:
            assert roundtrip(s, b"mine") == b"mine"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_stale_unix_socket_is_taken_over(backend, start_server):
    """A socket file left by a server that died (nobody answers on it) is not "in use"."""
    d = tempfile.mkdtemp(prefix="echo-stale-", dir="/tmp")
    path = os.path.join(d, "x.sock")
    try:
        with socket.socket(socket.AF_UNIX) as dead:
            dead.bind(path)          # bound, never listening, then closed: a stale file
        assert os.path.exists(path)
        sp = start_server(backend, "--listen", f"unix:{path}")
        assert sp.listening == [f"unix:{path}"]
        from test_server_support import connect, roundtrip
        with connect(sp) as s:
            assert roundtrip(s, b"taken over") == b"taken over"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


@pytest.fixture
def readonly_dir():
    d = tempfile.mkdtemp(prefix="echo-ro-", dir="/tmp")
    os.chmod(d, 0o555)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_unprivileged(*args):
    """Runs echo-server as nobody when we are root (root bypasses the permission checks).
    As nobody it runs a copy in a directory of its own: the tree may sit under a directory
    only its owner may enter (a clone in a `mktemp -d`), which nobody could not exec from."""
    if os.geteuid() != 0:
        return run_cli(*args, timeout=EXIT_WAIT)
    d = tempfile.mkdtemp(prefix="echo-exe-", dir="/tmp")
    try:
        os.chmod(d, 0o755)
        exe = shutil.copy2(server_exe(), os.path.join(d, "echo-server"))
        return subprocess.run([exe, *map(str, args)], capture_output=True, text=True,
                              timeout=EXIT_WAIT, stdin=subprocess.DEVNULL, preexec_fn=as_nobody)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_permission_denied_unix_socket_exits_1(readonly_dir):
    path = os.path.join(readonly_dir, "x.sock")
    try:
        r = run_unprivileged("--backend", a_backend(), "--listen", f"unix:{path}")
    except subprocess.TimeoutExpired:
        pytest.fail("the server started in a directory it cannot write")
    assert r.returncode == 1, f"exit {r.returncode}, stderr {r.stderr!r}"
    line = one_line(r.stderr)
    assert "permission denied" in line.lower(), line
    assert path in line, f"{line!r} does not name the address"


def test_permission_denied_privileged_port_exits_1():
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        start = int(f.read())
    if start <= 80:
        pytest.skip("ports below 1024 are not privileged here")
    try:
        r = run_unprivileged("--backend", a_backend(), "--listen", "127.0.0.1:80")
    except subprocess.TimeoutExpired:
        pytest.fail("the server started on a privileged port")
    assert r.returncode == 1, f"exit {r.returncode}, stderr {r.stderr!r}"
    line = one_line(r.stderr)
    assert "permission denied" in line.lower(), line
