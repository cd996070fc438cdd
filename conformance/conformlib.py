"""Running echo-conform from the conformance tests: one call, the TAP text, the JSON results."""
import json
import pathlib
import subprocess
import tempfile

from conftest import binary
from echobench_lib import conform


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
    rows = conform.catalogue_rows(binary("conformance/echo-conform"))
    assert rows, "echo-conform --list printed no case"
    return [(r["id"], r["level"], r["needs"], r["description"]) for r in rows]


def faulty_cmd(fault, *extra):
    """The --exec command line of faulty-echo with one fault, dual stack, UDP on."""
    exe = binary("conformance/faulty-echo")
    return " ".join([str(exe), "--fault", fault, "--listen", "[::]:0", "--udp", *extra])
