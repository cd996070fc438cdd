"""Test hosts made of network namespaces, for the load-from-other-hosts tests.

TestNet builds, on this machine, what `echobench run --load-hosts` needs from real machines:

    ns S (server) : br0 198.18.0.1/24, the bridge every other namespace is plugged into
    ns C (control): eth0 198.18.0.2  - where a driver that must reach everything runs
    ns L0, L1, ...: eth0 198.18.0.10, .11, ... - load hosts, each with a real OpenSSH sshd

Addresses come only from 198.18.0.0/15 (RFC 2544's benchmarking range) and exist only inside
the namespaces; the veth pairs are created with both ends already inside namespaces, so the
root namespace gets no interface, address or route. Names carry our pid and a counter (`eb<pid>x<n>s`, ...) so
that concurrent runs never meet. Everything is removed at exit, also when set-up fails half way.

sshd needs its privilege-separation directory /run/sshd, which Debian creates at boot and a
container may lack: each sshd runs in a private mount namespace with a tmpfs on /run, so the
host's /run is never touched.

From the root namespace, ssh reaches a load host through
`ProxyCommand=ip netns exec C socat STDIO TCP:%h:%p` (ssh_options()); a process run inside C
(ctl_argv()) reaches every address directly (ssh_options(proxy=False)).
"""
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SSHD = "/usr/sbin/sshd"
SUBNET = "198.18.0"          # /24 inside 198.18.0.0/15
SERVER_ADDR = f"{SUBNET}.1"
CTL_ADDR = f"{SUBNET}.2"


def _run(argv, timeout=20):
    """Runs a set-up command; a failure is a RuntimeError carrying its stderr."""
    res = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: exit {res.returncode}: "
                           f"{res.stderr.strip()[:300]}")
    return res.stdout


def unavailable():
    """Why namespaces with sshd cannot be had here (a reason string), or None."""
    if os.geteuid() != 0:
        return "needs root (ip netns add, sshd)"
    for prog in ("ip", "unshare", "ssh", "ssh-keygen", "socat"):
        if not shutil.which(prog):
            return f"{prog} is not installed"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is not installed (Debian package openssh-server)"
    probe = f"eb{os.getpid()}p"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                         timeout=10)
    if res.returncode != 0:
        return f"ip netns add fails here: {res.stderr.strip()[:200]}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


class TestNet:
    """Namespaces, bridge, keys and one sshd per load host; a context manager. Several may
    exist at once (each instance numbers its namespaces)."""
    _made = itertools.count()

    def __init__(self, loads=2):
        self.tag = f"eb{os.getpid()}x{next(TestNet._made)}"
        self.server_ns = f"{self.tag}s"
        self.ctl_ns = f"{self.tag}c"
        self.load_ns = [f"{self.tag}l{i}" for i in range(loads)]
        self.load_addrs = [f"{SUBNET}.{10 + i}" for i in range(loads)]
        self.server_addr = SERVER_ADDR
        self.ctl_addr = CTL_ADDR
        self.tmp = None
        self.key = None
        self._made_ns = []
        self._procs = []           # (Popen, log path), stopped at exit

    # -- lifetime ---------------------------------------------------------------------------
    def __enter__(self):
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        for proc, _ in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs = []
        for ns in reversed(self._made_ns):
            # Kill whatever is still inside (sessions of the sshd, a stray echo-load) so that
            # the namespace and its veth really go away with the name.
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                                  timeout=10).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self._made_ns = []
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def _setup(self):
        self.tmp = tempfile.mkdtemp(prefix=f"{self.tag}-")
        self.key = os.path.join(self.tmp, "client_key")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "echobench-test",
              "-f", self.key])
        for ns in [self.server_ns, self.ctl_ns, *self.load_ns]:
            _run(["ip", "netns", "add", ns])
            self._made_ns.append(ns)
            # No IPv6 link-local addresses either: the only non-loopback addresses are ours.
            _run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                  "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        s = self.server_ns
        _run(["ip", "-n", s, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", s, "addr", "add", f"{SERVER_ADDR}/24", "dev", "br0"])
        _run(["ip", "-n", s, "link", "set", "br0", "up"])
        for i, (ns, addr) in enumerate([(self.ctl_ns, CTL_ADDR),
                                        *zip(self.load_ns, self.load_addrs)]):
            port = f"p{i}"
            _run(["ip", "link", "add", "name", "eth0", "netns", ns, "type", "veth",
                  "peer", "name", port, "netns", s])
            _run(["ip", "-n", s, "link", "set", port, "master", "br0", "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        for ns, addr in zip(self.load_ns, self.load_addrs):
            self._start_sshd(ns, addr)
        for addr in self.load_addrs:
            self._await_ssh(addr)

    def _start_sshd(self, ns, addr):
        d = os.path.join(self.tmp, ns)
        os.mkdir(d)
        hostkey = os.path.join(d, "host_key")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostkey])
        cfg = os.path.join(d, "sshd_config")
        with open(cfg, "w") as f:
            f.write(f"ListenAddress {addr}:22\n"
                    f"HostKey {hostkey}\n"
                    f"PidFile {d}/sshd.pid\n"
                    f"AuthorizedKeysFile {self.key}.pub\n"
                    "PermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\n"
                    "StrictModes no\n"
                    "UsePAM no\n"
                    "PrintMotd no\n"
                    "PrintLastLog no\n"
                    "MaxSessions 64\n"
                    "MaxStartups 64\n"
                    "LogLevel ERROR\n")
        log = os.path.join(d, "sshd.log")
        # ip netns exec already gives a mount namespace of its own (slave to ours); unshare
        # makes it private before the tmpfs goes on /run, so nothing reaches the host's /run.
        script = ("mount -t tmpfs -o mode=755 ebrun /run && mkdir -m 755 /run/sshd && "
                  f"exec {SSHD} -D -e -f {cfg}")
        with open(log, "w") as lf:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--mount",
                                     "--propagation", "private", "sh", "-c", script],
                                    stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
        self._procs.append((proc, log))

    def _await_ssh(self, addr, timeout=15.0):
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            res = subprocess.run(self.ssh_argv(addr, "true"), capture_output=True, text=True,
                                 timeout=15, stdin=subprocess.DEVNULL)
            if res.returncode == 0:
                return
            last = res.stderr.strip()
            for proc, log in self._procs:
                if proc.poll() is not None:
                    with open(log) as f:
                        raise RuntimeError(f"sshd exited {proc.returncode}: "
                                           f"{f.read().strip()[-300:]}")
            time.sleep(0.2)
        raise RuntimeError(f"sshd on {addr} not reachable within {timeout:g}s: {last[-300:]}")

    # -- what tests use ---------------------------------------------------------------------
    def ssh_options(self, proxy=True):
        """The `-o` options (without the -o) a client needs: the test's key, no host-key
        bookkeeping, never a prompt; with proxy, the way in from the root namespace."""
        opts = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
                f"IdentityFile={self.key}", "IdentitiesOnly=yes", "BatchMode=yes",
                "LogLevel=ERROR"]
        if proxy:
            opts.append(f"ProxyCommand=ip netns exec {self.ctl_ns} socat STDIO TCP:%h:%p")
        return opts

    def dests(self):
        return [f"root@{a}" for a in self.load_addrs]

    def ssh_argv(self, addr, *cmd):
        argv = ["ssh"]
        for o in self.ssh_options():
            argv += ["-o", o]
        return argv + [f"root@{addr}", *cmd]

    def in_ns(self, ns, argv):
        return ["ip", "netns", "exec", ns, *map(str, argv)]

    def ctl_argv(self, argv):
        """argv run in the control namespace (reaches the server and every load host)."""
        return self.in_ns(self.ctl_ns, argv)

    def server_argv(self, argv):
        return self.in_ns(self.server_ns, argv)


if __name__ == "__main__":
    # Manual check: python3 scripts/netns.py -> builds the net, runs `hostname -I` over ssh.
    why = unavailable()
    if why:
        sys.exit(f"netns: cannot run here: {why}")
    with TestNet() as net:
        for a in net.load_addrs:
            print(a, subprocess.run(net.ssh_argv(a, "ip -br addr"), capture_output=True,
                                    text=True, timeout=20).stdout.strip())
