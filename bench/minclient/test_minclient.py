"""echo-minclient's --churn and --stream modes (the clients of bench/churn.py and
bench/zerocopy.py): they count what the server really echoed, fail when it did not, and stop by
themselves. Counts are checked against the server's own summary, never against speed."""
import re
import signal
import socket
import subprocess

import pytest

from conftest import ServerProcess, binary

SUMMARY = re.compile(r"accepted=(\d+) .*bytes_in=(\d+) bytes_out=(\d+)")


def minclient(*args, timeout=60):
    p = subprocess.run([binary("bench/minclient/echo-minclient"), *map(str, args)],
                       capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return p.returncode, dict(w.split("=", 1) for w in p.stdout.split() if "=" in w), p.stderr


@pytest.fixture
def server():
    sp = ServerProcess([binary("servers/echo-server"), "--backend", "epoll",
                        "--listen", "127.0.0.1:0"])
    yield sp
    sp.stop(signal.SIGKILL)


def test_churn_counts_transactions_the_server_served(server):
    rc, out, err = minclient("--churn", "-c", 4, "-s", 100, "-d", "0.5s",
                             "--source", "127.0.0.2-127.0.0.5", server.addr)
    assert rc == 0, err
    done = int(out["transactions"])
    assert done > 0 and out["failed"] == "0", out
    code, summary = server.stop(signal.SIGTERM)
    accepted, bytes_in, bytes_out = map(int, SUMMARY.search(summary).groups())
    # Every completed transaction was its own connection with 100 bytes each way; the
    # connections still open when the time was up add at most one each.
    assert done <= accepted <= done + 4, (done, summary)
    assert done * 100 <= bytes_out <= bytes_in <= (done + 4) * 100, (done, summary)


def test_churn_against_a_server_that_closes_at_once_fails():
    """A server that accepts and closes without echoing: every transaction fails, the run
    still ends on time, and the exit status says so."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    port = lsock.getsockname()[1]
    proc = subprocess.Popen([binary("bench/minclient/echo-minclient"), "--churn", "-c", "1",
                             "-d", "0.5s", f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            text=True)
    lsock.settimeout(0.2)
    try:
        while proc.poll() is None:
            try:
                lsock.accept()[0].close()
            except socket.timeout:
                pass
        out = dict(w.split("=", 1) for w in proc.stdout.read().split() if "=" in w)
    finally:
        lsock.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.returncode == 1
    assert int(out["failed"]) > 0 and out["transactions"] == "0", out


def test_stream_reads_back_what_the_server_echoed(server):
    rc, out, err = minclient("--stream", "-c", 2, "-s", "64k", "-d", "0.3s", server.addr)
    assert rc == 0, err
    got = int(out["bytes"])
    code, summary = server.stop(signal.SIGTERM)
    _, bytes_in, bytes_out = map(int, SUMMARY.search(summary).groups())
    assert 0 < got <= bytes_out <= bytes_in, (got, summary)


@pytest.mark.parametrize("args", [["--churn", "--stream"], ["--source", "127.0.0.2"],
                                  ["--churn", "--source", "nonsense"],
                                  ["--churn", "--source", "127.0.0.9-127.0.0.2"],
                                  ["--churn", "-c", "0"], ["--bogus"]])
def test_bad_usage_is_one_line_and_exit_2(args):
    rc, _, err = minclient(*args, "127.0.0.1:9")
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
