#!/usr/bin/python3
"""echo-conform against echo servers from Debian's packages (socat, busybox nc, ncat, xinetd):
how to start each one, which of its failures are its own deterministic bugs, and a survey that
counts, over many runs, how often each case fails.

Only a server's deterministic bugs are asserted (conformance/test_thirdparty.py): a case it
fails in every run, on any machine, for a reason its code or documentation states. Every other
failure (a fork that came late, an accept loop that did not keep up, a relay that deadlocks by
scheduling, the SHOULD limit cases) depends on the machine and is reported, never asserted;
docs/CONFORMANCE.md "Third-party servers" records how often each failed and over how many runs.

    /usr/bin/python3 conformance/thirdparty.py --runs 10            # the survey, every server
    /usr/bin/python3 conformance/thirdparty.py --runs 5 ncat socat  # some of them

These servers cannot bind port 0 and report the port, so (only here) a free port is picked and
handed over, retrying when the server fails to bind it, then we wait until it accepts. All four
fork a process per connection, so the listening process is not the one serving: they run without
--server-pid and the white-box cases skip.
"""
import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from echobench_lib.net import free_port, wait_accepting  # noqa: E402

# Not run: every one of these servers forks (and most exec) per connection, so 10,000 cycles
# take 5-15 s here and whether they fit the case's time limit would depend on the machine, not
# on the server's behaviour. (Measured: socat 685, busybox 1249, xinetd 2230 cycles/s, all
# leak-free; ncat ran out of time.)
NOT_RUN = ["LIMIT-CHURN-10K"]

# Cases that skip by themselves: no UDP, no IPv6 listener, no pid.
SKIPPED = {"UDP-SIZE-0", "UDP-SIZE-1", "UDP-SIZE-1472", "UDP-SIZE-65507", "UDP-MANY-1000",
           "ECHO-IPV6", "BP-RSS-NONREADER", "LIMIT-EMFILE", "WB-FD-BASELINE", "WB-IDLE-CPU"}

# A fork (and often an exec) per connection is slow on a busy machine: these servers get a
# --timeout three times the default, so a generous bound stays generous for them.
FORK_TIMEOUT = "15s"


def xinetd_argv(port, tmp):
    conf = pathlib.Path(tmp) / "xinetd.conf"
    user = "\tuser = root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        "defaults\n{\n}\n"
        "service echo\n{\n"
        "\tid = echo-stream\n\ttype = INTERNAL UNLISTED\n\tsocket_type = stream\n"
        f"\tprotocol = tcp\n\twait = no\n{user}\tport = {port}\n\tbind = 127.0.0.1\n"
        "\tflags = REUSE\n\tinstances = UNLIMITED\n\tper_source = UNLIMITED\n"
        "\tcps = 100000 1\n}\n")
    return ["xinetd", "-dontfork", "-f", str(conf), "-pidfile", str(pathlib.Path(tmp) /
                                                                      "xinetd.pid"),
            "-filelog", str(pathlib.Path(tmp) / "xinetd.log")]


# name: how to start it, which Debian package has it, echo-conform's --timeout for it, and its
# bugs: {case: why it fails in every run, on any machine}. Only these are asserted.
SERVERS = {
    "socat": {
        "package": "socat", "exe": "socat", "timeout": FORK_TIMEOUT,
        "argv": lambda port, tmp: ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                                   "EXEC:cat"],
        "bugs": {},
    },
    "busybox-nc": {
        "package": "busybox", "exe": "busybox", "timeout": FORK_TIMEOUT,
        # busybox nc has no option to bind one address: it listens on all of them.
        "argv": lambda port, tmp: ["busybox", "nc", "-ll", "-p", str(port), "-e", "cat"],
        "bugs": {},
    },
    "ncat": {
        "package": "ncat", "exe": "ncat", "timeout": "3s",
        "argv": lambda port, tmp: ["ncat", "-l", "-k", "--exec", "/bin/cat", "127.0.0.1",
                                   str(port)],
        "bugs": {
            # ncat(1): --max-conns defaults to 100; later connections are closed at once.
            "ECHO-CLIENTS-200": "at most 100 connections (--max-conns default): the other "
                                "100 are closed at once",
            "LIMIT-CONNS-1100": "at most 100 connections (--max-conns default): 100 of 1,100 "
                                "echoed, under the case's 900",
        },
    },
    "xinetd": {
        "package": "xinetd", "exe": "xinetd", "timeout": FORK_TIMEOUT,
        "argv": xinetd_argv,
        "bugs": {},
    },
}


def installed(name):
    return shutil.which(SERVERS[name]["exe"]) is not None


def stop(proc):
    """Stops the server and every process it forked. It runs in a session of its own (its pid
    is the process group id): ncat's per-connection relays can outlive their parent, deadlocked
    with their cat, and must not be left behind."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # whatever of the group is left
    except ProcessLookupError:
        pass
    proc.wait()


def start(name, tmp):
    """(process, port) of the server on a free port; retries when the port was taken in
    between. None when it never accepted in 5 attempts."""
    spec = SERVERS[name]
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(spec["argv"](port, tmp), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=tmp, start_new_session=True)
        if wait_accepting(f"127.0.0.1:{port}", proc, 10):
            return proc, port
        stop(proc)
    return None


def conform_args(name, port):
    """echo-conform's arguments for one run against the server on port (--json not included).
    --overlap: each connection has a process of its own in all four servers."""
    return ["--overlap", "--timeout", SERVERS[name]["timeout"], "--skip", ",".join(NOT_RUN),
            f"127.0.0.1:{port}"]


def judge(name, failed, skipped):
    """What a run's verdict says, as (problems, reported): problems are assertion failures (a
    bug not found, an unexpected skip set); reported are the failures that are not this
    server's deterministic bugs: they depend on the machine, so they are shown, not asserted."""
    bugs = set(SERVERS[name]["bugs"])
    problems = []
    if not bugs <= failed:
        problems.append(f"{name}: its bugs {sorted(bugs - failed)} passed")
    # busybox nc listens on every address, ::1 included, so its IPv6 case runs.
    if set(skipped) not in (SKIPPED, SKIPPED - {"ECHO-IPV6"}):
        problems.append(f"{name}: skipped {sorted(skipped)}, expected {sorted(SKIPPED)}")
    return problems, sorted(failed - bugs)


def run_once(conform_exe, name, timeout=300):
    """One echo-conform run against a fresh server: (failed ids, skipped ids, seconds) or raises
    RuntimeError with the reason."""
    with tempfile.TemporaryDirectory() as tmp:
        started = start(name, tmp)
        if started is None:
            raise RuntimeError(f"{name} did not start accepting on a free port in 5 attempts")
        proc, port = started
        out = pathlib.Path(tmp) / "results.json"
        t0 = time.monotonic()
        try:
            subprocess.run([str(conform_exe), "--json", str(out), *conform_args(name, port)],
                           capture_output=True, text=True, timeout=timeout)
        finally:
            stop(proc)
        if not out.exists() or not out.stat().st_size:
            raise RuntimeError(f"echo-conform wrote no results against {name}")
        cases = json.loads(out.read_text())["cases"]
    return ({c["id"] for c in cases if c["result"] == "fail"},
            {c["id"] for c in cases if c["result"] == "skip"}, time.monotonic() - t0)


def survey(conform_exe, names, runs, out=print):
    """Runs each server `runs` times; prints per server how often each case failed. Returns
    {name: {"runs": n, "failed": {case: count}, "problems": [...]}}."""
    result = {}
    for name in names:
        counts, problems, done = {}, [], 0
        for i in range(runs):
            try:
                failed, skipped, secs = run_once(conform_exe, name)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                problems.append(str(e))
                continue
            done += 1
            for case in failed:
                counts[case] = counts.get(case, 0) + 1
            problems += judge(name, failed, skipped)[0]
            out(f"{name} run {i + 1}/{runs}: {len(failed)} failed ({', '.join(sorted(failed))})"
                f" in {secs:.1f} s")
        result[name] = {"runs": done, "failed": counts, "problems": problems}
    out("")
    for name, r in result.items():
        bugs = SERVERS[name]["bugs"]
        out(f"{name}: {r['runs']} runs")
        for case, n in sorted(r["failed"].items(), key=lambda t: (-t[1], t[0])):
            out(f"  {case}: failed {n} of {r['runs']}" + ("  (bug, asserted)" if case in bugs
                                                         else ""))
        for p in r["problems"]:
            out(f"  PROBLEM: {p}")
    return result


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, description="Counts how often each "
                                "conformance case fails against the third-party servers.")
    p.add_argument("--runs", type=int, default=5, help="runs per server (default 5)")
    p.add_argument("--build", default=os.environ.get("ECHOBENCH_BUILD") or str(ROOT / "build"))
    p.add_argument("servers", nargs="*", help=f"default: every installed one of "
                                              f"{', '.join(SERVERS)}")
    p.error = lambda msg: (print(f"thirdparty.py: {msg}", file=sys.stderr), sys.exit(2))
    a = p.parse_args(argv)
    exe = pathlib.Path(a.build) / "conformance" / "echo-conform"
    if not exe.exists():
        p.error(f"{exe} is not built")
    unknown = [n for n in a.servers if n not in SERVERS]
    if unknown or a.runs < 1:
        p.error(f"unknown server {unknown[0]}" if unknown else "--runs must be at least 1")
    names = [n for n in (a.servers or SERVERS) if installed(n)]
    if not names:
        p.error("none of the servers is installed (bash scripts/setup.sh installs them)")
    res = survey(exe, names, a.runs)
    return 1 if any(r["problems"] for r in res.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
