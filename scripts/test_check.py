"""`echobench check` and what it rests on: starting a server and reading its address, the
streamed echo check (bounded memory, the exact byte that differs), the address forms, the
backend list that `echo-server --list` prints."""
import socket

import pytest

from echobench_testlib import echobench, fake_build


@pytest.fixture
def build(tmp_path):
    return fake_build(tmp_path / "build")


def test_check_prints_one_verdict_per_backend(build):
    r = echobench("check", "--build", build)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["epoll: ok (echo verified, 3 sizes)",
                                     "poll: ok (echo verified, 3 sizes)",
                                     "uring: skipped (io_uring disabled by fake)"]


def test_check_fails_on_a_corrupting_backend(build):
    r = echobench("--build", build, "check", env={"FAKE_CORRUPT": "poll"})
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0] == "epoll: ok (echo verified, 3 sizes)"
    assert lines[1].startswith("poll: FAILED (") and "differs at byte 0" in lines[1]


def test_check_fails_on_a_server_that_never_listens(build):
    r = echobench("check", "--build", build,
                  env={"FAKE_NOLISTEN": "epoll", "FAKE_BACKENDS": "epoll usable",
                       "ECHOBENCH_START_TIMEOUT": "1"}, timeout=60)
    assert r.returncode == 1
    assert r.stdout.startswith("epoll: FAILED (server did not start (no 'listening' line "
                                "within 1s))")


def test_build_dir_from_environment(build):
    r = echobench("check", env={"ECHOBENCH_BUILD": str(build)})
    assert r.returncode == 0 and "epoll: ok" in r.stdout


# --- shared helpers and the streaming echo check -----------------------------------------------

class _EchoServer:
    """A threaded echo server in the test process; corrupt_at flips the byte at that offset."""

    def __init__(self, corrupt_at=None):
        import socket
        import threading
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.addr = f"127.0.0.1:{self.ls.getsockname()[1]}"
        self.corrupt_at = corrupt_at
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            with c:
                seen = 0
                while True:
                    try:
                        data = c.recv(1 << 16)
                    except OSError:      # the checker closes as soon as it saw the mismatch
                        break
                    if not data:
                        break
                    if self.corrupt_at is not None and seen <= self.corrupt_at < seen + len(data):
                        i = self.corrupt_at - seen
                        data = data[:i] + bytes([data[i] ^ 1]) + data[i + 1:]
                    seen += len(data)
                    try:
                        c.sendall(data)
                    except OSError:
                        break

    def close(self):
        self.ls.close()


def test_echo_check_streams_16M_in_bounded_memory():
    import tracemalloc
    from echobench_lib.server import verify_echo
    srv = _EchoServer()
    try:
        tracemalloc.start()
        assert verify_echo(srv.addr, [1, 16 << 20], timeout=30) is None
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 2 << 20, f"{peak} B held for a 16 MiB echo"
    finally:
        srv.close()


def test_echo_check_finds_a_corrupt_byte_far_in():
    from echobench_lib.server import verify_echo
    srv = _EchoServer(corrupt_at=5_000_001)
    try:
        why = verify_echo(srv.addr, [8 << 20], timeout=30)
        assert why and "differs at byte 5000001 of 8388608" in why
    finally:
        srv.close()


def test_pattern_blocks_differ():
    from echobench_lib.server import Pattern
    p = Pattern(0)
    assert p.chunk(0) != p.chunk(1) and len(p.at(65530, 20)) == 20
    assert p.at(65530, 20) == (p.chunk(0) + p.chunk(1))[65530:65550]


def test_backend_list_parser_and_variants():
    from echobench_lib import build as b
    listed = b.parse_backend_list("epoll usable\nepoll:et usable\nuring unusable: no ring\n")
    assert listed == [("epoll", True, ""), ("epoll:et", True, ""), ("uring", False, "no ring")]
    assert b.is_variant("epoll:et") and not b.is_variant("epoll")


def test_split_addr_forms():
    from echobench_lib.net import split_addr
    assert split_addr("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_addr("[::1]:7") == ("::1", 7)
    assert split_addr("udp:127.0.0.1:9") == ("127.0.0.1", 9)
    assert split_addr("unix:/tmp/x") == ("unix", "/tmp/x")
    with pytest.raises(ValueError):
        split_addr("localhost")


def test_connect_forms():
    from echobench_lib.net import connect, sockaddr
    srv = _EchoServer()
    try:
        with connect(srv.addr, 5, rcvbuf=8192) as s:
            s.sendall(b"abc")
            assert s.recv(3) == b"abc"
        assert sockaddr("[::1]:7")[0] == socket.AF_INET6
        assert sockaddr("udp:127.0.0.1:9") == (socket.AF_INET, ("127.0.0.1", 9))
    finally:
        srv.close()
