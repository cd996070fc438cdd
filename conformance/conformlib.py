"""Running echo-conform from the conformance tests: one call, the TAP text, the JSON results."""
import json
import pathlib
import re
import socket
import subprocess
import tempfile
import time

from conftest import binary

TAP_LINE = re.compile(r"^(ok|not ok) (\d+) - (\S+) (.*?)(?: # (SKIP|TODO) (.*))?$")


class Run:
    """One echo-conform run: exit code, stdout (TAP), stderr, parsed JSON (or None)."""

    def __init__(self, rc, stdout, stderr, results):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.json = results

    def ids(self, result):
        return {c["id"] for c in self.json["cases"] if c["result"] == result}

    @property
    def failed(self):
        return self.ids("fail")

    @property
    def passed(self):
        return self.ids("pass")

    @property
    def skipped(self):
        return {c["id"]: c.get("reason", "") for c in self.json["cases"] if c["result"] == "skip"}

    def details(self, case_id):
        return next(c for c in self.json["cases"] if c["id"] == case_id)

    def explain(self):
        """What to print when an assertion about this run fails."""
        return f"exit {self.rc}\n--- TAP ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def echo_conform(*args, timeout=300):
    """Runs build/conformance/echo-conform with args (and --json to a temporary file)."""
    exe = binary("conformance/echo-conform")
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "results.json"
        proc = subprocess.run([exe, "--json", out, *map(str, args)], capture_output=True,
                              text=True, timeout=timeout)
        results = json.loads(out.read_text()) if out.exists() and out.stat().st_size else None
    return Run(proc.returncode, proc.stdout, proc.stderr, results)


def catalogue():
    """[(id, level, needs, description)] from echo-conform --list."""
    exe = binary("conformance/echo-conform")
    out = subprocess.run([exe, "--list"], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    rows = []
    for line in out.splitlines():
        cid, level, needs, desc = line.split(None, 3)
        rows.append((cid, level, needs, desc))
    return rows


def faulty_cmd(fault, *extra):
    """The --exec command line of faulty-echo with one fault, dual stack, UDP on."""
    exe = binary("conformance/faulty-echo")
    return " ".join([str(exe), "--fault", fault, "--listen", "[::]:0", "--udp", *extra])


def free_port():
    """A port nothing listens on right now. Only for third-party servers that cannot bind port 0
    and report it: the caller must retry if the server then fails to bind it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(port, proc, timeout=10.0):
    """Waits until 127.0.0.1:port takes a connection; False if proc exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False

