"""Running echo-conform and reading its TAP: one verdict per server.

TAP is the source of truth (it is echo-conform's stable interface); its --json file is kept
beside it for whoever wants the details.
"""
import os
import re
import shlex
import signal
import subprocess
import time

_TAP_LINE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
_DIRECTIVE = re.compile(r"\s+#\s*(SKIP|TODO)\b\s*(.*)$", re.IGNORECASE)


def parse_tap(text):
    """Counts and failed case IDs from TAP 13 output. A case's ID is the first word of its
    description (`ok 3 - halfclose.n5 5 bytes then SHUT_WR`)."""
    res = {"plan": None, "passed": 0, "failed": 0, "skipped": 0, "todo": 0,
           "failed_ids": [], "skipped_ids": [], "todo_ids": [], "bail_out": None}
    for line in text.splitlines():
        if line.startswith("1.."):
            m = re.match(r"1\.\.(\d+)", line)
            if m:
                res["plan"] = int(m.group(1))
            continue
        if line.startswith("Bail out!"):
            res["bail_out"] = line[len("Bail out!"):].strip() or "bail out"
            continue
        m = _TAP_LINE.match(line)
        if not m:
            continue
        ok, desc = m.group(1) == "ok", m.group(3)
        directive = _DIRECTIVE.search(desc)
        if directive:
            desc = desc[:directive.start()]
        case_id = desc.split()[0] if desc.split() else f"#{m.group(2)}"
        if directive and directive.group(1).upper() == "SKIP":
            res["skipped"] += 1
            res["skipped_ids"].append(case_id)
        elif directive and directive.group(1).upper() == "TODO":
            # echo-conform --must-only marks a failed SHOULD case as TODO: shown, not counted.
            res["todo"] += 1
            if not ok:
                res["todo_ids"].append(case_id)
        elif ok:
            res["passed"] += 1
        else:
            res["failed"] += 1
            res["failed_ids"].append(case_id)
    return res


# The cases that take seconds by design (idle and slow-reader timers, 10k connection churn,
# CPU sampling): the --quick run leaves them out so that five backends fit in about 25 s.
# `echobench conform` and `run --conform must|all` run them.
QUICK_SKIP = ("DISC-IDLE-5S", "HALF-CLOSE-SLOW-DRAIN", "HALF-CLOSE-DELAYED-3S", "WB-IDLE-CPU",
              "BP-STALL-64M", "LIMIT-CHURN-10K")


def catalogue(exe):
    """The case IDs `echo-conform --list` prints (first column), empty if it cannot list."""
    try:
        res = subprocess.run([str(exe), "--list"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.split()[0] for line in res.stdout.splitlines() if line.strip()}


def run_one(exe, *, exec_cmd=None, target=None, must_only=True, timeout=300.0,
            json_path=None, tap_path=None, skip=(), extra=()):
    """echo-conform against `exec_cmd` (started and stopped by echo-conform, which makes the
    white-box cases possible) or an already running `target`. Returns a verdict dict:
    verdict pass | fail | error, counts, failed_ids, seconds, note."""
    argv = [str(exe)]
    if must_only:
        argv.append("--must-only")
    if json_path:
        argv += ["--json", str(json_path)]
    if skip:
        argv += ["--skip", ",".join(skip)]
    argv += list(extra)
    if exec_cmd:
        argv += ["--exec", exec_cmd]
    if target:
        argv.append(target)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
        note = ""
    except subprocess.TimeoutExpired:
        # Its own session: the server it started with --exec goes down with it.
        _kill_group(proc)
        out, err = proc.communicate()
        rc = None
        note = f"timed out after {timeout:g}s"
    seconds = time.monotonic() - t0
    if tap_path:
        with open(tap_path, "w") as f:
            f.write(out)
            if err:
                f.write("".join(f"# stderr: {line}\n" for line in err.splitlines()))
    tap = parse_tap(out)
    seen = tap["passed"] + tap["failed"] + tap["skipped"] + tap["todo"]
    if rc == 0 and tap["failed"] == 0 and seen:
        verdict = "pass"
    elif rc == 1 and tap["failed"]:
        verdict = "fail"
    else:
        verdict = "error"
        if not note:
            last = err.strip().splitlines()[-1] if err.strip() else ""
            note = f"exit {rc}" + (f": {last}" if last else "")
            if not seen:
                note += " (no TAP results)"
    if tap["plan"] is not None and seen < tap["plan"] and verdict != "error":
        verdict = "error"
        note = f"only {seen} of {tap['plan']} planned cases reported"
    if tap["bail_out"]:
        verdict, note = "error", f"bail out: {tap['bail_out']}"
    suite = "must-only" if must_only else "all"
    if skip:
        suite += f", without {len(skip)} long cases"
    return {"verdict": verdict, "passed": tap["passed"], "failed": tap["failed"],
            "skipped": tap["skipped"], "failed_ids": tap["failed_ids"],
            "not_counted": tap["todo"], "not_counted_ids": tap["todo_ids"], "exit": rc,
            "seconds": round(seconds, 1), "note": note, "suite": suite,
            "left_out": list(skip)}


def _kill_group(proc):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(3)
            return
        except subprocess.TimeoutExpired:
            continue


def backend_exec(server_exe, backend, threads=None):
    """The --exec command line that starts one of our backends on an ephemeral port, with UDP
    echo on the same port so that the UDP cases run too."""
    cmd = [str(server_exe), "--backend", backend, "--listen", "127.0.0.1:0", "--udp"]
    if threads:
        cmd += ["--threads", str(threads)]
    return shlex.join(cmd)


def verdict_text(r):
    """'pass (38 passed, 2 skipped)', 'FAIL: halfclose.n5, ...', 'error: timed out ...'."""
    if r is None:
        return "not run"
    if r.get("verdict") == "not run":
        return f"not run ({r.get('note', '')})"
    counts = f"{r['passed']} passed, {r['failed']} failed, {r['skipped']} skipped"
    if r.get("not_counted_ids"):
        counts += f"; SHOULD failures not counted: {', '.join(r['not_counted_ids'])}"
    if r["verdict"] == "pass":
        return f"pass ({counts})"
    if r["verdict"] == "fail":
        ids = ", ".join(r["failed_ids"][:8]) + (" ..." if len(r["failed_ids"]) > 8 else "")
        return f"FAIL ({counts}): {ids}"
    return f"error: {r.get('note') or 'unknown'} ({counts})"
