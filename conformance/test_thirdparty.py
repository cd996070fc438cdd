"""echo-conform against echo servers from Debian's packages (conformance/thirdparty.py has how
to start them and their bugs).

Only each server's deterministic bugs are asserted: the cases it fails in every run, on any
machine, for a reason its code or documentation states. Whether it passes the rest depends on
how fast it forks and how its processes are scheduled, so those verdicts are reported (a line
in the test session's summary, and docs/CONFORMANCE.md's table with how often each failed),
never asserted. A server that is not installed is skipped with the package to install.
"""
import re
import signal

import pytest

import thirdparty
from conformlib import catalogue, echo_conform
from conftest import ROOT


@pytest.mark.slow
@pytest.mark.parametrize("name", list(thirdparty.SERVERS))
def test_third_party_verdict(name, tmp_path, report_line):
    spec = thirdparty.SERVERS[name]
    if not thirdparty.installed(name):
        pytest.skip(f"{spec['exe']} is not installed (Debian package {spec['package']})")
    started = thirdparty.start(name, tmp_path)
    if started is None:
        pytest.fail(f"{name} did not start accepting on a free port in 5 attempts")
    proc, port = started
    try:
        run = echo_conform(*thirdparty.conform_args(name, port), timeout=300)
    finally:
        thirdparty.stop(proc)
    assert run.json is not None, run.explain()
    problems, reported = thirdparty.judge(name, run.failed, run.skipped)
    assert not problems, "\n".join(problems) + "\n" + run.explain()
    # Every case ran or skipped: none is missing from the results.
    ran = {c["id"] for c in run.json["cases"]}
    assert ran | set(thirdparty.NOT_RUN) == {row[0] for row in catalogue()}, run.explain()
    report_line(f"third-party {name}: bugs found {sorted(spec['bugs']) or 'none'}; other "
                f"failures (not asserted: they depend on the machine): "
                f"{', '.join(reported) or 'none'}")


def test_judge_asserts_only_bugs():
    """judge() fails a run that misses a bug or skips the wrong cases, and reports (does not
    fail) every other failure."""
    ok_skips = set(thirdparty.SKIPPED)
    bugs = set(thirdparty.SERVERS["ncat"]["bugs"])
    assert thirdparty.judge("ncat", bugs | {"ECHO-BULK-1M"}, ok_skips) == ([], ["ECHO-BULK-1M"])
    problems, _ = thirdparty.judge("ncat", bugs - {"ECHO-CLIENTS-200"}, ok_skips)
    assert problems and "ECHO-CLIENTS-200" in problems[0]
    assert thirdparty.judge("socat", {"LIMIT-CONNS-1100"}, ok_skips) == \
        ([], ["LIMIT-CONNS-1100"])
    assert thirdparty.judge("socat", set(), ok_skips - {"ECHO-IPV6"})[0] == []
    assert thirdparty.judge("socat", set(), ok_skips - {"WB-IDLE-CPU"})[0]


def test_docs_verdict_table_matches():
    """docs/CONFORMANCE.md's table names the same bugs as thirdparty.SERVERS, and for every
    server the runs its record rests on and how often each reported case failed."""
    doc = (ROOT / "docs" / "CONFORMANCE.md").read_text()
    section = doc.split("## Third-party servers", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([a-z-]+) \| `[^`]+` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|",
                      section, re.M)
    assert {name for name, *_ in rows} == set(thirdparty.SERVERS)
    for name, bugs, reported, runs in rows:
        assert set(re.findall(r"[A-Z][A-Z0-9-]+[A-Z0-9]", bugs)) == \
            set(thirdparty.SERVERS[name]["bugs"]), name
        n = int(re.search(r"(\d+) runs", runs).group(1))
        for case, k in re.findall(r"([A-Z][A-Z0-9-]+[A-Z0-9]) (\d+)/(?:\d+)", reported):
            assert 0 < int(k) <= n, (name, case)
        assert re.search(r"\d+ machines?", runs), (name, runs)


def test_stop_takes_the_whole_group(tmp_path):
    """stop() ends the server's forked children too (ncat's relays can outlive their parent)."""
    import subprocess
    import time
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 300 & sleep 300 & wait"],
                            start_new_session=True)
    time.sleep(0.2)
    thirdparty.stop(proc)
    # Killed children are reaped by init a moment later: wait for that, not for a fixed time.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
        if not left.stdout.strip():
            break
        time.sleep(0.05)
    assert left.stdout.strip() == "", left.stdout
    assert proc.returncode in (-signal.SIGTERM, -signal.SIGKILL, 143)
