"""bench/churn.py and bench/zerocopy.py run what they say and print a summary row per entry,
paired with their yardstick. Speeds are printed, never asserted: this checks what was run."""
import pathlib
import re
import subprocess

from conftest import binary

HERE = pathlib.Path(__file__).resolve().parent


def run(script, *args):
    return subprocess.run(["/usr/bin/python3", str(HERE / script), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_churn_pairs_each_entry_with_the_minimal_server():
    p = run("churn.py", "--server", binary("servers/echo-server"),
            "--minserver", binary("bench/minserver/echo-minserver"),
            "--minclient", binary("bench/minclient/echo-minclient"),
            "--rounds", 2, "--duration", 0.2, "--backends", "epoll,blocking:pool",
            "--models", "epoll+t2")
    assert p.returncode == 0, p.stdout + p.stderr
    for name in ("epoll", "blocking:pool", "epoll+t2"):
        rounds = re.findall(rf"^  {re.escape(name)} +([12]) +\d+ +\d+ +\d+\.\d+ ", p.stdout, re.M)
        assert rounds == ["1", "2"], p.stdout
        assert re.search(rf"^  {re.escape(name)} +\d+ +\d+\.\d+ \[", p.stdout, re.M), p.stdout
    assert ">=0.95" in p.stdout and ">=0.80" in p.stdout


def test_zerocopy_pairs_each_backend_with_epoll():
    p = run("zerocopy.py", "--server", binary("servers/echo-server"),
            "--minclient", binary("bench/minclient/echo-minclient"),
            "--rounds", 1, "--duration", 0.2, "--backends", "splice,nosuch")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "nosuch: skipped, unusable here: not in echo-server --list" in p.stdout
    assert len(re.findall(r"^  splice +1 +\d+ +\d+ ", p.stdout, re.M)) == 2, p.stdout
    assert len(re.findall(r"^  splice +.*: goodput x ", p.stdout, re.M)) == 2, p.stdout


def test_bad_usage_is_one_line_and_exit_2():
    for script, args in (("churn.py", ["--rounds", 0]), ("zerocopy.py", ["--bogus"]),
                         ("churn.py", ["--duration", "x"])):
        p = run(script, *args)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
