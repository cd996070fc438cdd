"""What a run was measured on: the context block of run.json (Google Benchmark's keys first,
then echobench's own: kernel, compiler, git commit, placement)."""
import datetime
import json
import os
import platform
import socket
import subprocess

from .build import ROOT


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def cpu_model():
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def mhz():
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("cpu MHz"):
            try:
                return int(float(line.split(":", 1)[1]))
            except ValueError:
                break
    return 0


def caches():
    """Google Benchmark's `caches` list from sysfs (CPU 0)."""
    out = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    for idx in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        d = os.path.join(base, idx)
        size = _read(os.path.join(d, "size"))
        if not size:
            continue
        mult = {"K": 1024, "M": 1 << 20}.get(size[-1], 1)
        shared = _read(os.path.join(d, "shared_cpu_list"))
        out.append({"type": _read(os.path.join(d, "type")),
                    "level": int(_read(os.path.join(d, "level"), "0") or 0),
                    "size": int(size.rstrip("KM") or 0) * mult,
                    "num_sharing": _count_cpus(shared)})
    return out


def _count_cpus(text):
    n = 0
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            n += int(hi) - int(lo) + 1
        elif part.strip():
            n += 1
    return n


def virtualization():
    """'kvm', 'none', ... as systemd-detect-virt says, else a guess from the CPU flags."""
    try:
        res = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True, timeout=5)
        if res.stdout.strip():
            return res.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "hypervisor" if " hypervisor" in _read("/proc/cpuinfo") else "unknown"


def compiler(build):
    """'gcc 14.2.0' from meson's introspection of the build directory."""
    try:
        with open(build / "meson-info" / "intro-compilers.json") as f:
            c = json.load(f).get("host", {}).get("c", {})
        return f"{c.get('id', '?')} {c.get('full_version') or c.get('version', '?')}"
    except (OSError, ValueError):
        return "unknown"


def build_options(build):
    """{'buildtype': ..., 'b_sanitize': ...} from meson's introspection."""
    try:
        with open(build / "meson-info" / "intro-buildoptions.json") as f:
            opts = json.load(f)
    except (OSError, ValueError):
        return {}
    return {o["name"]: o["value"] for o in opts if o.get("name") in ("buildtype", "b_sanitize")}


def git_commit():
    """(commit, dirty) of the checkout, read-only git commands; (None, None) outside git."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None, None
        st = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                             "--untracked-files=no"], capture_output=True, text=True, timeout=10)
        return head.stdout.strip(), bool(st.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def context(build):
    """The machine part of the context; the runner adds the run's own settings."""
    opts = build_options(build)
    commit, dirty = git_commit()
    gov = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host_name": socket.gethostname(),
        "executable": "scripts/echobench",
        "num_cpus": os.cpu_count(),
        "mhz_per_cpu": mhz(),
        "cpu_scaling_enabled": bool(gov) and gov != "performance",
        "caches": caches(),
        "load_avg": list(os.getloadavg()),
        "library_build_type": "debug" if opts.get("buildtype") == "debug" else "release",
        "cpu_model": cpu_model(),
        "kernel": f"{platform.system()} {platform.release()} {platform.version()}",
        "virtualization": virtualization(),
        "compiler": compiler(build),
        "buildtype": opts.get("buildtype", "unknown"),
        "sanitize": opts.get("b_sanitize", "unknown"),
        "build_dir": str(build),
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
    }
