"""Every case can fail: echo-conform against faulty-echo, one named fault at a time.

For each fault, echo-conform runs BASIC plus the cases the fault must fail plus a few it must
still pass (cases near the boundary of the bug), and the set of failed cases must be exactly the
expected one. The runs are focused, not the whole catalogue, to keep the suite within its time
budget; docs/CONFORMANCE.md has the same table with the reasons. A case that no fault fails is
not yet a case: test_every_case_is_failed_by_some_fault checks the whole catalogue.
"""
import pathlib
import re
import subprocess

import pytest

from conformlib import catalogue, echo_conform, faulty_cmd
from conftest import binary

ROOT = pathlib.Path(__file__).resolve().parent.parent

# A correct server passes these; every fault must too, unless its row says otherwise.
BASIC = {"ECHO-BYTES-256", "ECHO-SIZE-4097", "HALF-CLOSE-5", "DISC-CLOSE-1S"}

# fault: (cases it must fail, further cases it must still pass). Every failure is
# deterministic: it follows from the bug, not from timing (see docs/CONFORMANCE.md).
FAULTS = {
    "prefix": ({"ECHO-BYTES-256", "ECHO-ONEBYTE-2000", "ECHO-SIZE-1", "ECHO-SIZE-4095",
                "ECHO-SIZE-4096", "ECHO-SIZE-4097", "HALF-CLOSE-5", "DISC-CLOSE-1S",
                "UDP-SIZE-0", "UDP-SIZE-1", "UDP-SIZE-1472"},
               {"HALF-CLOSE-0"}),
    "truncate-4096": ({"ECHO-SIZE-4097", "ECHO-SIZE-65535", "ECHO-SIZE-65536", "ECHO-SIZE-65537",
                       "ECHO-PIPELINE-5000", "UDP-SIZE-65507"},
                      {"ECHO-SIZE-1", "ECHO-SIZE-4095", "ECHO-SIZE-4096", "UDP-SIZE-1472"}),
    "corrupt-deep": ({"ECHO-BULK-1M", "ECHO-BULK-16M", "BP-SLOW-READER"},
                     {"ECHO-FRAG-WRITE", "ECHO-SIZE-65537"}),
    "reorder": ({"ECHO-PIPELINE-5000", "ECHO-FRAG-WRITE"},
                {"ECHO-SIZE-1", "HALF-CLOSE-0"}),
    "crosstalk": ({"ECHO-CLIENTS-200", "BP-STALL-64M", "LIMIT-BURST-200", "LIMIT-CONNS-1100"},
                  set()),
    "short-write": ({"ECHO-FRAG-READ", "BP-SLOW-READER", "HALF-CLOSE-100000",
                     "HALF-CLOSE-DELAYED-3S", "HALF-CLOSE-SLOW-DRAIN"},
                    {"ECHO-SIZE-1"}),
    "drop-pending": ({"HALF-CLOSE-100000", "HALF-CLOSE-DELAYED-3S", "HALF-CLOSE-SLOW-DRAIN",
                      "WB-IDLE-CPU"},
                     {"HALF-CLOSE-0", "HALF-CLOSE-SAME-FLIGHT"}),
    "eof-batch": ({"HALF-CLOSE-SAME-FLIGHT", "HALF-CLOSE-SLOW-DRAIN"},
                  {"HALF-CLOSE-0", "ECHO-BULK-1M"}),
    "no-close": ({"HALF-CLOSE-0", "HALF-CLOSE-5", "HALF-CLOSE-SAME-FLIGHT", "DISC-CLOSE-1S",
                  "DISC-EMPTY-FIN", "DISC-EMPTY-SHUTWR", "WB-FD-BASELINE"},
                 {"DISC-EMPTY-RST"}),
    "rst-on-fin": ({"HALF-CLOSE-0", "HALF-CLOSE-5", "HALF-CLOSE-SAME-FLIGHT",
                    "DISC-EMPTY-SHUTWR"},
                   {"DISC-EMPTY-FIN"}),
    "leak-fd": ({"WB-FD-BASELINE", "DISC-CLOSE-1S", "DISC-EMPTY-FIN", "DISC-EMPTY-SHUTWR",
                 "LIMIT-CHURN-10K"},
                {"DISC-EMPTY-RST"}),
    "idle-timeout": ({"DISC-IDLE-5S"}, {"HALF-CLOSE-DELAYED-3S"}),
    "one-at-a-time": ({"ECHO-CLIENTS-200", "BP-STALL-64M", "LIMIT-BURST-200",
                       "LIMIT-CONNS-1100"},
                      {"HALF-CLOSE-0"}),
    "block-loop": ({"BP-STALL-64M"}, {"ECHO-CLIENTS-200", "ECHO-BULK-16M"}),
    "unbounded-queue": ({"BP-RSS-NONREADER"}, {"BP-STALL-64M"}),
    "spin-eof": ({"WB-IDLE-CPU"}, {"HALF-CLOSE-100000"}),
    "tiny-backlog": ({"LIMIT-BURST-200"}, {"ECHO-CLIENTS-200", "DISC-EMPTY-FIN",
                                           "RST-BEFORE-ACCEPT"}),
    "listener-limit": ({"LIMIT-CHURN-10K"}, set()),
    "crash-over-1024": ({"LIMIT-CONNS-1100"}, set()),
    "emfile-spin": ({"LIMIT-EMFILE"}, {"WB-IDLE-CPU"}),
    "ipv6-broken": ({"ECHO-IPV6"}, set()),
    "udp-drop-empty": ({"UDP-SIZE-0"}, {"UDP-SIZE-1", "UDP-MANY-1000"}),
    "udp-crosstalk": ({"UDP-MANY-1000"}, {"UDP-SIZE-0", "UDP-SIZE-1", "UDP-SIZE-1472",
                                          "UDP-SIZE-65507"}),
}

# Faults that kill the server: each of their cases runs on a fresh server of its own, since
# after the first one nothing else could be attributed.
FATAL = {
    "exit-on-reset": {"DISC-EMPTY-RST", "RST-MIDSTREAM", "RST-CLOSE-UNREAD",
                      "RST-BEFORE-ACCEPT"},
}

# Runs that take over ~8 s (a fault that makes cases wait for their timeout).
SLOW = {"no-close", "crosstalk", "one-at-a-time", "drop-pending"}


def run_fault(fault, cases, timeout="2s"):
    return echo_conform("--timeout", timeout, "--only", ",".join(sorted(cases)),
                        "--exec", faulty_cmd(fault), timeout=240)


# The cases a fault must still pass run on a fresh server with this --timeout: their verdict
# must not depend on how fast a (sanitizer-built, busy) faulty server gets through them, and a
# correct run ends in seconds, so only a hung server waits this long.
PASS_TIMEOUT = "30s"


def fault_param(name):
    return pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name


@pytest.mark.parametrize("fault", [fault_param(f) for f in FAULTS])
def test_fault_fails_exactly_its_cases(fault):
    """The cases a fault must fail fail, with a short --timeout (their verdicts follow from the
    bug: wrong bytes, no EOF, a SYN retransmitted); the ones it must pass pass, on a fresh
    server with a long --timeout."""
    fails, passes = FAULTS[fault]
    run = run_fault(fault, fails)
    assert run.json is not None, run.explain()
    assert run.failed == fails, run.explain()
    assert run.rc == 1
    run = run_fault(fault, (BASIC | passes) - fails, timeout=PASS_TIMEOUT)
    assert run.json is not None, run.explain()
    assert run.passed == (BASIC | passes) - fails and not run.failed, run.explain()


@pytest.mark.parametrize("fault, case", [(f, c) for f, cases in FATAL.items()
                                         for c in sorted(cases)])
def test_fatal_fault_fails_each_case_on_its_own(fault, case):
    run = run_fault(fault, BASIC | {case})
    assert run.failed == {case}, run.explain()
    assert run.passed == BASIC, run.explain()
    # The server died of it (echo-conform saw the process go).
    assert run.details(case)["details"].get("server_process", "").startswith("gone"), \
        run.explain()
    assert run.json["server_exit"] == "exited 1"


@pytest.mark.slow
def test_correct_mode_passes_the_whole_catalogue():
    run = echo_conform("--overlap", "--exec", faulty_cmd("none"), timeout=240)
    assert run.rc == 0, run.explain()
    assert run.failed == set() and run.skipped == {}, run.explain()
    # How long it took is a figure of this machine, not a property of the server: shown, not
    # asserted (pytest -rA prints it).
    print(f"elapsed_s {run.json['summary']['elapsed_s']}")


def test_every_case_is_failed_by_some_fault():
    covered = set().union(*(fails for fails, _ in FAULTS.values()), *FATAL.values())
    ids = {row[0] for row in catalogue()}
    assert ids - covered == set(), "cases no faulty server fails"
    assert covered <= ids


def test_faults_are_the_ones_faulty_echo_has():
    out = subprocess.run([binary("conformance/faulty-echo"), "--list"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    names = {line.split()[0] for line in out.splitlines()}
    assert names == set(FAULTS) | set(FATAL) | {"none"}


def test_docs_fault_table_matches():
    """docs/CONFORMANCE.md lists each fault with the cases it must fail, as tested here."""
    doc = (ROOT / "docs" / "CONFORMANCE.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| [^|]+ \| ([^|]+) \|", doc, re.M)
    documented = {name: set(re.findall(r"[A-Z][A-Z0-9-]+[A-Z0-9]", ids)) for name, ids in rows}
    expected = {f: fails for f, (fails, _) in FAULTS.items()}
    expected.update(FATAL)
    assert documented == expected


def test_docs_failed_by_column_matches():
    """The catalogue table's "Failed by" column names exactly the faults that must fail each
    case."""
    doc = (ROOT / "docs" / "CONFORMANCE.md").read_text()
    rows = re.findall(r"^\| `([A-Z0-9-]+)` \| (?:MUST|SHOULD) \| [^|]+ \| [^|]+ \| ([^|]+) \|$",
                      doc, re.M)
    documented = {cid: {f.strip() for f in faults.split(",")} for cid, faults in rows}
    expected = {}
    for fault, cases in [(f, fails) for f, (fails, _) in FAULTS.items()] + list(FATAL.items()):
        for cid in cases:
            expected.setdefault(cid, set()).add(fault)
    assert documented == expected


def test_faulty_echo_usage():
    exe = binary("conformance/faulty-echo")
    bad = subprocess.run([exe, "--fault", "nonsense"], capture_output=True, text=True,
                         timeout=10)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    bad = subprocess.run([exe, "--listen", "nowhere"], capture_output=True, text=True,
                         timeout=10)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    # An option without its value is named as such, not as an unknown option.
    bad = subprocess.run([exe, "--fault"], capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and bad.stderr == "faulty-echo: option '--fault' needs a value\n"
    # The vocabulary of docs/CONTRACTS.md: --list lists the faults; --list-faults is gone.
    old = subprocess.run([exe, "--list-faults"], capture_output=True, text=True, timeout=10)
    assert old.returncode == 2 and "unknown option" in old.stderr
