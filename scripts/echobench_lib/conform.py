"""Running echo-conform and reading its TAP: one verdict per server.

TAP is the source of truth (it is echo-conform's stable interface); its --json file is kept
beside it for whoever wants the details.
"""
import os
import shlex
import signal
import subprocess
import sys
import time

from .build import backend_args
from .procfs import group_pids, is_gone
from .server import start_command
from .tap import parse_tap
from .util import RunError


def parse_catalogue(text):
    """[{id, level, needs, long, description}] from `echo-conform --list`: one case per line,
    `ID LEVEL NEEDS LONG DESCRIPTION` with LONG `long` or `-` (docs/CONFORMANCE.md)."""
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 4)
        if len(parts) < 5 or parts[0] == "ID":
            continue
        rows.append({"id": parts[0], "level": parts[1], "needs": parts[2],
                     "long": parts[3] == "long", "description": parts[4]})
    return rows


def catalogue_rows(exe):
    """parse_catalogue of `exe --list`, empty if it cannot list."""
    try:
        res = subprocess.run([str(exe), "--list"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_catalogue(res.stdout) if res.returncode == 0 else []


def catalogue(exe):
    """The case IDs `echo-conform --list` prints, empty if it cannot list."""
    return {r["id"] for r in catalogue_rows(exe)}


def long_cases(exe):
    """IDs of the cases that take seconds by design: the catalogue's LONG column."""
    return tuple(r["id"] for r in catalogue_rows(exe) if r["long"])


def run_one(exe, *, exec_cmd=None, target=None, must_only=True, timeout=300.0,
            json_path=None, tap_path=None, skip=(), extra=(), server_pid=None):
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
    if server_pid:
        argv += ["--server-pid", str(server_pid)]
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
    except BaseException:
        # Interrupted (the driver got SIGTERM): neither it nor its server may outlive us.
        _kill_group(proc)
        raise
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


def run_many(exe, targets, progress=None, **common):
    """run_one per (label, how) in targets, how being run_one's keywords for that server
    (exec_cmd or target, json_path, tap_path, ...). One progress line on a terminal
    (`conformance i/n LABEL`). Returns {label: verdict dict}."""
    stream = progress or sys.stderr
    tty = stream.isatty()
    results = {}
    for i, (label, how) in enumerate(targets, 1):
        if tty:
            stream.write(f"\r\033[Kconformance {i}/{len(targets)}: {label}")
            stream.flush()
        kw = dict(common)
        kw.update(how)
        results[label] = run_one(exe, **kw)
    if tty:
        stream.write("\r\033[K")
        stream.flush()
    return results


def _kill_group(proc):
    """Ends echo-conform's process group (it and the server it started with --exec) and waits
    until every process of it is gone, SIGKILL after 3 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 3
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            continue
        while time.monotonic() < deadline and [p for p in group_pids(proc.pid)
                                               if not is_gone(p)]:
            time.sleep(0.02)
        if not [p for p in group_pids(proc.pid) if not is_gone(p)]:
            return


def backend_exec(server_exe, backend, threads=None):
    """The --exec command line that starts one of our backends on an ephemeral port, with UDP
    echo on the same port so that the UDP cases run too."""
    return exec_line([str(server_exe), *backend_args(backend, threads)])


def exec_line(server_argv):
    """--exec for an echo-server argv (without --listen): ephemeral port, UDP on it too."""
    return shlex.join([str(a) for a in server_argv] + ["--listen", "127.0.0.1:0", "--udp"])


def run_entries(exe, entries, server_argv, out_dir=None, stem=None, **common):
    """echo-conform per entry (entries.Entry): our backends through --exec (white-box cases
    too); a user's command with {port} started here and tested with --server-pid, one without
    through --exec; a --target as it runs. out_dir: where each entry's STEM.json and STEM.tap
    go (stem(i, entry), default its name). common: run_one's must_only, timeout, skip.
    Returns {name: verdict dict}."""
    results = {}
    for i, e in enumerate(entries):
        name = stem(i, e) if stem else e.name
        files = {} if out_dir is None else {"json_path": out_dir / f"{name}.json",
                                            "tap_path": out_dir / f"{name}.tap"}
        if e.kind == "backend":
            how = {"exec_cmd": exec_line(server_argv(e.name))}
        elif e.kind == "target":
            how = {"target": e.addr}
        elif "{port}" not in e.command:
            how = {"exec_cmd": e.command}
        else:
            try:
                srv = start_command(e.command)
            except RunError as err:
                results[e.name] = {"verdict": "error", "note": str(err), "passed": 0,
                                   "failed": 0, "skipped": 0, "failed_ids": []}
                continue
            try:
                results.update(run_many(exe, [(e.name, {"target": srv.addr,
                                                        "server_pid": srv.serving_pid(),
                                                        **files})], **common))
            finally:
                srv.stop()
            continue
        results.update(run_many(exe, [(e.name, {**how, **files})], **common))
    return results


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
