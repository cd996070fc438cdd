"""The files of a run: its directory (results/<UTC>-<host>/), run.json (gbjson), the tidy
cells.csv, and results/latest."""
import csv
import datetime
import json
import os
import pathlib
import re
import socket

from . import gbjson
from .metrics import unit


def make_run_dir(out_root):
    """results/<UTC time>-<host>/ (a -2, -3 suffix if two runs start in the same second)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
    out_root.mkdir(parents=True, exist_ok=True)
    base = out_root / f"{stamp}-{host}"
    path, n = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = pathlib.Path(f"{base}-{n}")


def point_latest(out_root, run_dir):
    """results/latest -> run_dir, replaced atomically (relative, so the tree can move)."""
    link = out_root / "latest"
    tmp = out_root / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(run_dir, out_root), tmp)
    os.replace(tmp, link)


CSV_HEAD = ["entry", "entry_kind", "connections", "size", "mode", "placement", "offered_rate",
            "repetition", "valid", "client_bound", "metric", "value", "unit"]


def write_cells_csv(path, samples):
    """Tidy: one row per cell, repetition and metric. A value that does not apply is empty."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEAD)
        for s in samples:
            c = s.cell
            for metric, value in s.metrics.items():
                w.writerow([c.entry, c.entry_kind, c.connections, c.size, c.mode, c.placement,
                            "" if c.offered_rate is None else repr(float(c.offered_rate)),
                            s.repetition, "true" if s.valid else "false",
                            "" if s.client_bound is None else str(s.client_bound).lower(),
                            metric, "" if value is None else repr(float(value)),
                            unit(metric)])


def write_run_json(path, context, samples, repetitions):
    with open(path, "w") as f:
        json.dump(gbjson.build_run_json(context, samples, repetitions), f, indent=1)
