"""The options of `echobench run` (and `ab`) as the stages see them: one RunOptions, filled by
cli.run_options from the command line and by the presets of matrix.py."""
import pathlib
from dataclasses import dataclass, field

from .knee import Slo
from .placement import DEFAULT_PLACEMENT


@dataclass
class RunOptions:
    backends: list = None          # None: every usable backend; []: none (--backends none)
    connections: list = field(default_factory=list)
    sizes: list = field(default_factory=list)
    modes: list = field(default_factory=list)
    duration: float = 3.0
    warmup: float = 1.0
    repetitions: int = 3           # paired: rounds (pairs); unpaired: fresh-server repetitions
    design: str = "paired"         # paired | unpaired (--unpaired)
    seed: int = 1                  # the order of the matrix's groups
    server_cpus: list = None
    client_cpus: list = None
    server_threads: int = None
    client_threads: int = None
    client_engine: str = None      # echo-load --engine; None: echo-load's default
    pipeline: int = 1
    preset: str = "default"
    out_root: pathlib.Path = None
    conform: str = "must"          # must | quick | all | none
    conform_timeout: float = 120.0
    rates_from: str = None         # a results dir whose closed-loop peaks set the open rates
    servers: list = field(default_factory=list)   # ["NAME=CMD"]
    targets: list = field(default_factory=list)   # ["NAME=ADDR"]
    builds: dict = field(default_factory=dict)    # entry suffix -> build dir (ab)
    placements: list = field(default_factory=lambda: [DEFAULT_PLACEMENT])
    until_ci: float = None         # percent: repeat until the CI half-width is within it
    max_repetitions: int = None
    slo: Slo = Slo("p99", 1000.0)
    sweep_connections: int = None  # default: the largest connection count
    sweep_duration: float = 1.0
    sweep_warmup: float = 0.25
    load_hosts: list = None        # ssh destinations (remote.LoadHosts)
    ssh_options: list = field(default_factory=list)
