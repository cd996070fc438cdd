"""bench/minclient/overhead.py, the echo-load overhead benchmark: it measures every load engine
that echo-load lists as usable (and names the others with the reason), at both connection
counts. Speeds are printed, never asserted: this checks what was run and what was printed."""
import pathlib
import re
import subprocess

from conftest import binary
from echobench_lib.build import list_engines

HERE = pathlib.Path(__file__).resolve().parent


def test_every_usable_engine_is_measured(tmp_path):
    load = binary("clients/echo-load")
    log = tmp_path / "argv.log"
    # echo-load behind a wrapper that records how it was called.
    wrapper = tmp_path / "echo-load"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {load} "$@"\n')
    wrapper.chmod(0o755)
    p = subprocess.run(["/usr/bin/python3", str(HERE / "overhead.py"),
                        "--minclient", str(binary("bench/minclient/echo-minclient")),
                        "--load", str(wrapper), "--server", str(binary("servers/echo-server")),
                        "--duration", "0.1", "--reps", "1"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    engines = list_engines(load)
    assert engines.get("epoll", (False,))[0], engines
    calls = [line.split() for line in log.read_text().splitlines()]
    for name, (usable, state) in engines.items():
        rows = re.findall(rf"^\s+(\d+)\s+{name}\s+\d+\s+\d+\s+\d+\.\d+$", p.stdout, re.M)
        if usable:
            assert sorted(rows) == ["1", "256"], p.stdout
            used = [c for c in calls if "--engine" in c and c[c.index("--engine") + 1] == name]
            assert sorted(c[c.index("-c") + 1] for c in used) == ["1", "256"], calls
            assert f"--engine {name}: echo-load p50" in p.stdout
        else:
            assert not rows and f"--engine {name}: skipped: {state}" in p.stdout, p.stdout
