"""Load from other hosts over ssh (`echobench run --load-hosts`), merged exactly.

    with LoadHosts(dests, ssh_options, echo_load_path, log=print) as hosts:
        load_json, rc = hosts.run(base_args, target, connections, rate, out_dir, tag,
                                  seconds=warmup + duration)

A load host needs only sshd and the same Debian release as this one. __enter__ opens one ssh
ControlMaster per host (its socket in a private temporary directory, so each cell pays no new
handshake), makes a `mktemp -d` directory there, copies echo-load into it (plus any shared
library that is not part of glibc, which Debian always has) and checks that it runs. __exit__
removes the directories and closes the masters, also after an error.

run() splits the connections (and the open-loop rate) across the hosts, starts echo-load on
all of them at once with an agreed CLOCK_REALTIME start (`--start-at`), phase-offset open-loop
schedules (`--phase K/N`), and `--json` plus `--hist-out` files; then fetches both files back
and merges the histogram files with the local `echo-load --merge` (counts added, percentiles
from the merged counts, never averaged). docs/REMOTE.md describes it all.
"""
import concurrent.futures
import io
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time

from .loadresult import LoadResult
from .remote_plan import combine, host_check_reasons, parse_dest, plan
from .util import RunError, UsageError

# Libraries every Debian system has (glibc's own): never copied.
_GLIBC = re.compile(r"^(linux-vdso|linux-gate|ld-linux|libc|libm|libpthread|libdl|librt|"
                    r"libresolv|libutil|libanl)[.-]")
CONNECT_TIMEOUT = 10          # seconds: ssh's ConnectTimeout unless the user gives one
MARGIN = 30.0                 # seconds beyond warmup + duration + start lead for a cell
EXIT_MARK = "echobench-load-exit"


def merge_hist_files(echo_load, files, hgrm_path, timeout=60):
    """Merges --hist-out files with the local `echo-load --merge FILE... --json - --hgrm FILE`.
    Returns (merged JSON dict, None) or (None, one-line reason)."""
    argv = [str(echo_load), "--merge", *map(str, files), "--json", "-", "--hgrm", str(hgrm_path)]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"echo-load --merge: {e}"
    try:
        merged = json.loads(res.stdout)
    except ValueError:
        return None, (f"echo-load --merge exit {res.returncode}: "
                      f"{_last_line(res.stderr) or 'no JSON'}")
    if res.returncode not in (0, 1) or not isinstance(merged, dict):
        return None, f"echo-load --merge exit {res.returncode}: {_last_line(res.stderr)}"
    return merged, None


class _Host:
    """One load host: destination, ssh argv through its control socket, remote directory."""

    def __init__(self, dest, ssh_options, ctl_dir, index):
        self.dest = dest
        self.target, self.port = parse_dest(dest)
        self.socket = os.path.join(ctl_dir, f"h{index}")
        self.opts = []
        # ssh keeps the first value it gets for an option: the user's come first, ours are
        # defaults they may override.
        for o in ssh_options:
            self.opts += ["-o", str(o)]
        self.opts += ["-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "BatchMode=yes",
                      "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.port:
            self.opts += ["-p", str(self.port)]
        self.master = None
        self.master_err = None
        self.dir = None
        self.env = ""              # LD_LIBRARY_PATH=... when libraries were copied
        self.clock_offset_us = None
        self.rtt_us = None

    def argv(self, command, master=False):
        extra = ["-M", "-N", "-o", "ControlPersist=no"] if master else \
            ["-o", "ControlMaster=no"]
        return ["ssh", *self.opts, "-S", self.socket, *extra, self.target,
                *([] if master else ["--", command])]

    def ssh(self, command, timeout, stdin=None, binary=False):
        """Runs command on the host through the master; (exit code, stdout, stderr)."""
        try:
            res = subprocess.run(self.argv(command), stdin=stdin or subprocess.DEVNULL,
                                 capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, b"" if binary else "", f"no answer within {timeout:g}s"
        out = res.stdout if binary else res.stdout.decode(errors="replace")
        return res.returncode, out, res.stderr.decode(errors="replace")


def clock_offset_us(h, probes=5, timeout=30):
    """How far the host's CLOCK_REALTIME is from ours, in µs (None if unknown). Each host
    measures its own latencies, so clocks matter only for the agreed start time; this is
    recorded beside the start spread. NTP-style: inside one open session, a line goes out at
    t0, the host answers with its time, the answer is in at t1; the probe with the shortest
    round trip wins and its uncertainty is half that round trip."""
    try:
        proc = subprocess.Popen(h.argv(f"for i in $(seq {probes}); do read x || exit 0; "
                                       f"date +%s%N; done"),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
    except OSError:
        return None
    timer = threading.Timer(timeout, proc.kill)      # a host that stops answering
    timer.start()
    best = None
    try:
        for _ in range(probes):
            t0 = time.time_ns()
            proc.stdin.write(b"x\n")
            proc.stdin.flush()
            line = proc.stdout.readline().strip()
            t1 = time.time_ns()
            if not line.isdigit():
                break
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, int(line) - (t0 + t1) / 2)
    except OSError:
        pass
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()
    return None if best is None else best[1] / 1000


class LoadHosts:
    """echo-load on several hosts over ssh, as one load generator. A context manager."""

    def __init__(self, dests, ssh_options, echo_load_path, log=print):
        self.dests = [str(d).strip() for d in dests if str(d).strip()]
        if not self.dests:
            raise UsageError("--load-hosts: no destination given")
        if len(set(self.dests)) != len(self.dests):
            dup = next(d for d in self.dests if self.dests.count(d) > 1)
            raise UsageError(f"--load-hosts: '{dup}' given twice")
        for d in self.dests:
            parse_dest(d)
        self.ssh_options = list(ssh_options or [])
        self.echo_load = pathlib.Path(echo_load_path)
        self.log = log or (lambda *_: None)
        self.hosts = []
        self._ctl_dir = None

    # -- lifetime ---------------------------------------------------------------------------
    def __enter__(self):
        if not shutil.which("ssh"):
            raise RunError("--load-hosts needs the ssh client (Debian package openssh-client)")
        files = self._files_to_copy()
        self._ctl_dir = tempfile.mkdtemp(prefix="echobench-ssh-")
        os.chmod(self._ctl_dir, 0o700)
        self.hosts = [_Host(d, self.ssh_options, self._ctl_dir, i)
                      for i, d in enumerate(self.dests)]
        try:
            with concurrent.futures.ThreadPoolExecutor(len(self.hosts)) as pool:
                errors = [e for e in pool.map(lambda h: self._prepare(h, files), self.hosts)
                          if e]
            if errors:
                raise RunError("; ".join(errors))
        except BaseException:
            self._cleanup()
            raise
        for h in self.hosts:
            self.log(f"load host {h.dest}: echo-load in {h.dir}, round trip "
                     f"{h.rtt_us / 1000:.0f} ms per command, clock offset "
                     f"{_fmt_ms(h.clock_offset_us)}")
        return self

    def __exit__(self, *exc):
        self._cleanup()
        return False

    def _files_to_copy(self):
        """[(local path, name in the remote dir)]: echo-load, then non-glibc libraries."""
        exe = self.echo_load
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            raise UsageError(f"{exe} is not built")
        files = [(exe, "echo-load")]
        try:
            out = subprocess.run(["ldd", str(exe)], capture_output=True, text=True,
                                 timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""          # a static binary, or no ldd: copy the binary alone
        for line in out.splitlines():
            m = re.match(r"\s*(\S+)\s+=>\s+(/\S+)", line)
            if m and not _GLIBC.match(m.group(1)):
                files.append((pathlib.Path(m.group(2)), f"lib/{m.group(1)}"))
        return files

    def _prepare(self, h, files):
        """Master connection, remote directory, copy, `--version` check, clock offset.
        Returns None or 'load host DEST: REASON'."""
        why = self._start_master(h)
        if why:
            return f"load host {h.dest}: {why}"
        rc, out, err = h.ssh('mktemp -d "${TMPDIR:-/tmp}/echobench-load.XXXXXX"', 30)
        if rc != 0 or not out.strip().startswith("/"):
            return f"load host {h.dest}: mktemp -d failed: {_last_line(err) or out.strip()}"
        h.dir = out.strip().splitlines()[0]
        q = shlex.quote(h.dir)
        for local, name in files:
            target = shlex.quote(f"{h.dir}/{name}")
            with open(local, "rb") as f:
                rc, _, err = h.ssh(f"mkdir -p \"$(dirname {target})\" && cat > {target} && "
                                   f"chmod 755 {target}", 120, stdin=f)
            if rc != 0:
                return f"load host {h.dest}: copying {local} failed: {_last_line(err)}"
        if len(files) > 1:
            h.env = f"LD_LIBRARY_PATH={shlex.quote(h.dir + '/lib')} "
        rc, out, err = h.ssh(f"{h.env}{q}/echo-load --version", 30)
        if rc != 0:
            return (f"load host {h.dest}: the copied echo-load does not run there (exit {rc}): "
                    f"{_last_line(err) or _last_line(out)} (same Debian release needed)")
        t0 = time.monotonic()
        h.ssh("true", 30)
        h.rtt_us = (time.monotonic() - t0) * 1e6          # a whole command, session and all
        h.clock_offset_us = clock_offset_us(h)
        return None

    def _start_master(self, h):
        h.master_err = tempfile.TemporaryFile()
        try:
            h.master = subprocess.Popen(h.argv(None, master=True), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=h.master_err)
        except OSError as e:
            return f"cannot start ssh: {e}"
        deadline = time.monotonic() + CONNECT_TIMEOUT + 20
        while time.monotonic() < deadline:
            if h.master.poll() is not None:
                h.master_err.seek(0)
                err = h.master_err.read().decode(errors="replace")
                return f"ssh failed (exit {h.master.returncode}): {_last_line(err) or 'no message'}"
            if os.path.exists(h.socket):
                check = subprocess.run(["ssh", "-S", h.socket, "-O", "check", h.target],
                                       capture_output=True, timeout=10)
                if check.returncode == 0:
                    return None
            time.sleep(0.05)
        return f"ssh connection not up within {CONNECT_TIMEOUT + 20}s"

    def _cleanup(self):
        def one(h):
            if h.dir and h.master and h.master.poll() is None:
                rc, _, err = h.ssh(f"rm -rf {shlex.quote(h.dir)}", 30)
                if rc != 0:
                    self.log(f"load host {h.dest}: could not remove {h.dir}: {_last_line(err)}")
            h.dir = None
            if h.master:
                if h.master.poll() is None:
                    subprocess.run(["ssh", "-S", h.socket, "-O", "exit", h.target],
                                   capture_output=True, timeout=10)
                    try:
                        h.master.wait(5)
                    except subprocess.TimeoutExpired:
                        h.master.kill()
                        h.master.wait()
                h.master = None
            if h.master_err:
                h.master_err.close()
                h.master_err = None
        if self.hosts:
            with concurrent.futures.ThreadPoolExecutor(len(self.hosts)) as pool:
                list(pool.map(one, self.hosts))
        if self._ctl_dir:
            shutil.rmtree(self._ctl_dir, ignore_errors=True)
            self._ctl_dir = None

    # -- one cell ---------------------------------------------------------------------------
    def start_lead(self):
        """Seconds between agreeing on the start time and the start: every host must have
        its command by then, so a few round trips plus process start-up."""
        rtt = max((h.rtt_us or 0) for h in self.hosts) / 1e6
        return min(10.0, 0.5 + 2 * rtt)

    def run(self, base_args, target, connections, rate, out_dir, tag, seconds, timeout=None):
        """One cell on every host. base_args: echo-load's options without TARGET, -c, -R,
        --json, --hgrm, --hist-out, --phase, --start-at; seconds: the warmup and duration they
        ask for. Returns (merged JSON, rc)."""
        out_dir = pathlib.Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        shares = plan(connections, rate, len(self.hosts))
        n = len(shares)
        lead = self.start_lead()
        budget = timeout or (seconds + lead + MARGIN + connections / 100.0)
        start_at = time.time() + lead
        cells = []
        for k, (h, (c, r)) in enumerate(zip(self.hosts, shares)):
            stem = f"{h.dir}/{tag}"
            args = [*map(str, base_args), "-c", str(c)]
            if r is not None:
                args += ["-R", str(r), "--phase", f"{k}/{n}"]
            args += ["--start-at", f"{start_at:.6f}", "--json", f"{stem}.json",
                     "--hist-out", f"{stem}.hist", str(target)]
            # echo-load runs as a child of the remote shell, which reports how it ended (a
            # signal too, which ssh alone would turn into a bare 255) and keeps its pid for a
            # bounded stop.
            cmd = (f"cd {shlex.quote(h.dir)} && rm -f {shlex.quote(tag)}.* && "
                   f"{{ {h.env}./echo-load {' '.join(map(shlex.quote, args))} & "
                   f"echo $! > {shlex.quote(tag)}.pid; wait $!; "
                   f"echo \"{EXIT_MARK} $?\" >&2; }}")
            log_path = out_dir / f"{tag}.{_safe(h.dest)}.log"
            logf = open(log_path, "wb")
            proc = subprocess.Popen(h.argv(cmd), stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT)
            cells.append({"host": h, "connections": c, "rate": r,
                          "phase": None if r is None else f"{k}/{n}",
                          "proc": proc, "logf": logf, "log": log_path})
        self._wait_all(cells, time.monotonic() + budget, budget)
        with concurrent.futures.ThreadPoolExecutor(len(cells)) as pool:
            list(pool.map(lambda c: self._gather(c, out_dir, tag), cells))
        return self._result(cells, out_dir, tag, start_at)

    def _wait_all(self, cells, deadline, budget):
        for cell in cells:
            try:
                cell["proc"].wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                cell["error"] = f"echo-load did not finish within {budget:.0f}s"
                self._stop_remote(cell)
            cell["logf"].close()

    def _stop_remote(self, cell):
        """Ends a cell's echo-load on its host (by the pid it recorded), then our ssh."""
        h, proc = cell["host"], cell["proc"]
        pid = f"{shlex.quote(h.dir)}/*.pid"
        h.ssh(f"for f in {pid}; do kill -TERM $(cat \"$f\") 2>/dev/null; done; sleep 2; "
              f"for f in {pid}; do kill -KILL $(cat \"$f\") 2>/dev/null; done; true", 20)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def _gather(self, cell, out_dir, tag):
        """Fetches the host's JSON and histogram file; sets cell json/hist/ok/error."""
        h = cell["host"]
        cell.update(json=None, hist=None)
        log = cell["log"].read_text(errors="replace")
        m = re.search(rf"^{EXIT_MARK} ([0-9]+)\s*$", log, re.M)
        status = int(m.group(1)) if m else None
        text = "\n".join(ln for ln in log.splitlines() if not ln.startswith(EXIT_MARK))
        # Both files in one round trip (a tar stream; a missing one is simply not in it),
        # and the host forgets them: its directory lives as long as the whole run.
        t = shlex.quote(tag)
        _, data, _ = h.ssh(f"cd {shlex.quote(h.dir)} && {{ tar -cf - --ignore-failed-read "
                           f"{t}.json {t}.hist 2>/dev/null; rm -f {t}.*; }}", 60, binary=True)
        try:
            with tarfile.open(fileobj=io.BytesIO(data or b"")) as tar:
                for ext in ("json", "hist"):
                    try:
                        member = tar.extractfile(f"{tag}.{ext}")
                    except KeyError:
                        continue
                    content = member.read() if member else b""
                    if content:
                        local = out_dir / f"{tag}.{_safe(h.dest)}.{ext}"
                        local.write_bytes(content)
                        cell[ext] = local
        except tarfile.TarError:
            pass
        if cell["json"]:
            try:
                cell["json"] = json.loads(cell["json"].read_text())
            except ValueError:
                cell["json"] = None
        if cell.get("error"):
            pass
        elif status is None:
            cell["error"] = (f"ssh failed (exit {cell['proc'].returncode}): "
                             f"{_last_line(text) or 'no message'}")
        elif status > 128:
            cell["error"] = f"echo-load killed by signal {status - 128}" \
                            f" ({_signame(status - 128)})"
        elif status not in (0, 3):          # 3: --strict and a self-check failed (marked below)
            why = (cell["json"] or {}).get("error") or _last_line(text) or "no message"
            cell["error"] = f"echo-load exit {status}: {why}"
        elif cell["json"] is None:
            cell["error"] = "echo-load wrote no JSON"
        elif cell["hist"] is None:
            cell["error"] = "echo-load wrote no histogram file (--hist-out)"
        elif cell["json"].get("complete") is False:
            cell["error"] = f"incomplete: {cell['json'].get('error') or 'no reason given'}"
        cell["ok"] = not cell.get("error")

    def _result(self, cells, out_dir, tag, start_at):
        hists = [c["hist"] for c in cells if c.get("hist")]
        merged, merge_error = (None, "no load host returned a histogram file")
        if hists:
            merged, merge_error = merge_hist_files(self.echo_load, hists,
                                                   out_dir / f"{tag}.hgrm")
        result = combine(merged, cells)
        lags = [c["json"].get("start_lag_us") for c in cells if isinstance(c["json"], dict)]
        lags = [x for x in lags if isinstance(x, (int, float))]
        result["start_at"] = round(start_at, 6)
        result["start_spread_us"] = (max(lags) - min(lags)) if lags else None
        result["hosts"] = [{
            "dest": c["host"].dest, "connections": c["connections"], "rate": c["rate"],
            "phase": c["phase"], "clock_offset_us": _round(c["host"].clock_offset_us),
            "json": c["json"], "ok": c["ok"], "error": c.get("error"),
            "failed_checks": LoadResult(c["json"]).failed_checks,
            "hist_file": str(c["hist"]) if c.get("hist") else None} for c in cells]
        marks = host_check_reasons(cells)
        if marks:
            result["valid"] = False
            result["invalid_reasons"] = list(result.get("invalid_reasons") or []) + marks
        errors = [f"load host {c['host'].dest}: {c['error']}" for c in cells if not c["ok"]]
        if merge_error:
            errors.append(f"merging the hosts' histograms: {merge_error}")
        if errors:
            result["complete"] = False
            result["error"] = "; ".join(errors)
            if not merged:
                result.setdefault("messages", 0)
            return result, 1
        return result, 0 if result.get("complete", True) is not False else 1


def _fmt_ms(us):
    return "unknown" if us is None else f"{us / 1000:+.2f} ms"


def _safe(dest):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", dest)


def _round(x):
    return None if x is None else round(x, 1)


def _signame(n):
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def _last_line(text):
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else ""
