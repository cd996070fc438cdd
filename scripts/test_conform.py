"""Conformance through the driver: the TAP reader, echo-conform's verdicts (a truncated run, a
timeout), `echobench conform`'s table and exit code, and the entries it can test."""
import json

import pytest

from echobench_lib import conform
from echobench_testlib import HERE, echobench, fake_build, processes_under

EXAMPLE = HERE / "examples" / "asyncio_echo.py"


@pytest.fixture
def build(tmp_path):
    return fake_build(tmp_path / "build")


TAP = """TAP version 13
1..5
ok 1 - echo.bytes-256 all 256 byte values come back
not ok 2 - halfclose.n5 5 bytes then SHUT_WR
  ---
  expected: 5 bytes then EOF
  seen: 0 bytes then EOF
  ...
ok 3 - whitebox.fd-baseline fd count back to baseline # SKIP no server pid
ok 4 - limits.churn # TODO flaky on VMs
not ok 5 - reset.rst-mid-stream server survives
"""


def test_parse_tap_counts_and_ids():
    t = conform.parse_tap(TAP)
    assert (t["plan"], t["passed"], t["failed"], t["skipped"], t["todo"]) == (5, 1, 2, 1, 1)
    assert t["failed_ids"] == ["halfclose.n5", "reset.rst-mid-stream"]
    assert t["skipped_ids"] == ["whitebox.fd-baseline"]


def test_verdict_of_a_truncated_run_is_error(tmp_path):
    script = tmp_path / "conf"
    script.write_text("#!/bin/sh\necho 'TAP version 13'\necho '1..3'\necho 'ok 1 - a x'\n"
                      "exit 0\n")
    script.chmod(0o755)
    r = conform.run_one(script, target="127.0.0.1:1")
    assert r["verdict"] == "error" and "only 1 of 3" in r["note"]


def test_conform_timeout_kills_and_says_so(tmp_path):
    script = tmp_path / "conf"
    script.write_text("#!/bin/sh\necho 'TAP version 13'\nsleep 30\n")
    script.chmod(0o755)
    r = conform.run_one(script, target="127.0.0.1:1", timeout=0.5)
    assert r["verdict"] == "error" and "timed out" in r["note"]


def test_one_tap_reader_and_catalogue_reader():
    from echobench_lib import conform, tap
    text = ("TAP version 13\n1..4\nok 1 - A-1 first\nnot ok 2 - B-2 second\n"
            "ok 3 - C-3 third # SKIP no udp\nnot ok 4 - D-4 fourth # TODO should\n")
    r = tap.parse_tap(text)
    assert (r["plan"], r["passed"], r["failed"], r["skipped"], r["todo"]) == (4, 1, 1, 1, 1)
    assert r["failed_ids"] == ["B-2"] and r["todo_ids"] == ["D-4"]
    m = tap.TAP_LINE.match("ok 3 - C-3 third # SKIP no udp")
    assert (m.group(3), m.group(5), m.group(6)) == ("C-3", "SKIP", "no udp")
    assert tap.parse_line("ok 4 - D-4 # TODO why")[2:] == ("D-4", "", "TODO", "why")
    rows = conform.parse_catalogue("A-1  MUST  -  - all bytes\nB-2  SHOULD pid long waits 5 s\n")
    assert rows[0] == {"id": "A-1", "level": "MUST", "needs": "-", "long": False,
                       "description": "all bytes"}
    assert rows[1]["long"] is True and rows[1]["description"] == "waits 5 s"
    assert conform.parse_catalogue("ID LEVEL NEEDS LONG DESCRIPTION\n") == []


def test_conform_table_and_exit_code(build, tmp_path):
    r = echobench("conform", "--build", build, "--json", tmp_path / "v.json",
                  env={"FAKE_CONFORM_FAIL": "HALF-CLOSE-5"})
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["server", "verdict"]
    assert any("--backend epoll" in ln and "FAIL" in ln and "HALF-CLOSE-5" in ln for ln in lines)
    assert any("--backend uring" in ln and "skipped" in ln for ln in lines)
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["echo-server --backend poll"]["failed_ids"] == ["HALF-CLOSE-5"]
    ok = echobench("conform", "--build", build, "--backends", "epoll", "--must-only")
    assert ok.returncode == 0 and "pass (3 passed" in ok.stdout


def test_conform_must_only_does_not_count_should_failures(build):
    r = echobench("conform", "--build", build, "--backends", "epoll", "--must-only",
                  env={"FAKE_CONFORM_FAIL": "LIMIT-CHURN-10"})
    assert r.returncode == 0, r.stdout
    assert "pass (2 passed, 0 failed, 0 skipped; SHOULD failures not counted: LIMIT-CHURN-10)" \
        in r.stdout
    r = echobench("conform", "--build", build, "--backends", "epoll",
                  env={"FAKE_CONFORM_FAIL": "LIMIT-CHURN-10"})
    assert r.returncode == 1 and "FAIL" in r.stdout


def test_conform_external_server_command(build):
    server = build / "servers" / "echo-server"
    r = echobench("conform", "--build", build, "--backends", "none",
                  "--server", f"{server} --backend epoll --listen 127.0.0.1:0")
    assert r.returncode == 0, r.stderr
    assert "pass (3 passed" in r.stdout


def test_conform_user_server_with_port_gets_server_pid(build, tmp_path):
    r = echobench("conform", "--build", build, "--backends", "none", "--json", tmp_path / "v",
                  "--server", f"mine=/usr/bin/python3 {EXAMPLE} {{port}}")
    assert r.returncode == 0, r.stderr
    assert "mine" in r.stdout and "pass (3 passed" in r.stdout
    assert processes_under(EXAMPLE) == []
