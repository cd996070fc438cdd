"""The options of `echobench run` (and `ab`): their arguments (add_run_arguments), and one
RunOptions as the stages see them, filled from the command line and the presets of
matrix.py (run_options)."""
import pathlib
from dataclasses import dataclass, field

from . import matrix
from .knee import Slo
from .placement import DEFAULT_PLACEMENT
from .util import UsageError, parse_count, parse_cpus, parse_duration, percent_arg


@dataclass
class RunOptions:
    backends: list = None          # None: every usable backend; []: none (--backends none)
    connections: list = field(default_factory=list)
    sizes: list = field(default_factory=list)
    modes: list = field(default_factory=list)
    cells: list = field(default_factory=list)     # [(mode, connections, size)] beside them
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
    history: str = None            # a results history (path or URL) the run is added to
    load_hosts: list = None        # ssh destinations (remote.LoadHosts)
    ssh_options: list = field(default_factory=list)


def duration_arg(what):
    def parse(text):
        return parse_duration(text, what)
    return parse




def add_run_arguments(p):
    """The matrix, timing, placement and load options of `run` (and `ab`)."""
    p.add_argument("--quick", action="store_true",
                   help="the main job's preset (about 3 minutes with six backends on 2 CPUs)")
    p.add_argument("--backends", help="comma list of backends or variants, each optionally "
                                      "with a worker model: +tN (N threads), +pN (N prefork "
                                      "processes), e.g. epoll+t2,epoll+p2 (default: every "
                                      "usable backend; 'none': only --server/--target entries)")
    p.add_argument("--server", action="append", default=[], metavar="NAME=CMD",
                   help="your server: CMD starts it and prints 'listening ADDR', or contains "
                        "{port} (a free port is substituted, ready once it accepts); a fresh "
                        "one per cell; repeatable")
    p.add_argument("--target", action="append", default=[], metavar="NAME=ADDR",
                   help="an already running server, measured as it runs (no server CPU "
                        "figure); repeatable")
    p.add_argument("--connections", help="comma list of connection counts")
    p.add_argument("--sizes", help="comma list of message sizes (64, 4k; at most 64M)")
    p.add_argument("--modes", help="comma list: closed, open (= open25,open50,open75), openNN "
                                   "(NN %% of the reference entry's closed-loop peak: epoll, or "
                                   "the first entry), stream, sweep (the knee)")
    p.add_argument("--cells", metavar="LIST",
                   help="cells beside the matrix: MODE:c=N:s=SIZE, comma separated (e.g. "
                        "churn:c=16:s=64,stream:c=4:s=64k); 'none' for none (the quick preset "
                        "has these two)")
    p.add_argument("--rates", help="comma list of absolute open-loop rates in msgs/s (5k, "
                                   "20000): cells rateN beside --modes")
    p.add_argument("--placement", default=None, metavar="LIST",
                   help="split (server and client on different CPUs, the default), shared "
                        "(the same CPU), free (unpinned); a comma list is a matrix axis")
    p.add_argument("--duration", type=duration_arg("--duration"), help="measured time per cell")
    p.add_argument("--warmup", type=duration_arg("--warmup"), help="warmup per cell (excluded)")
    p.add_argument("--repetitions", type=lambda t: parse_count(t, "--repetitions"),
                   help="rounds per cell (paired: each round measures every entry once, "
                        "in a balanced order), or fresh-server repetitions with --unpaired")
    p.add_argument("--unpaired", action="store_true",
                   help="a fresh server per cell and repetition, entries measured one after "
                        "the other (for first-connection effects); default: paired rounds "
                        "against servers that stay up")
    p.add_argument("--seed", type=lambda t: parse_count(t, "--seed"), default=1,
                   help="seed of the random order of the matrix's cell groups (default 1)")
    p.add_argument("--until-ci", type=percent_arg("--until-ci", fraction=False), metavar="PCT",
                   help="repeat each cell until the 95%% CI half-width of its headline figure "
                        "is within PCT %% of the median, or --max-repetitions")
    p.add_argument("--max-repetitions", type=lambda t: parse_count(t, "--max-repetitions"),
                   help="the bound of --until-ci (default 10)")
    p.add_argument("--slo", type=Slo.parse, default=Slo("p99", 1000.0),
                   help="latency target of the sweep (default p99:1ms)")
    p.add_argument("--sweep-connections", type=lambda t: parse_count(t, "--sweep-connections"),
                   help="connection count of the sweep (default: the largest of --connections)")
    p.add_argument("--server-cpus", type=lambda t: parse_cpus(t, "--server-cpus"),
                   help="CPUs for the server (default: the first CPU)")
    p.add_argument("--client-cpus", type=lambda t: parse_cpus(t, "--client-cpus"),
                   help="CPUs for echo-load (default: the second CPU)")
    p.add_argument("--server-threads", type=lambda t: parse_count(t, "--server-threads"),
                   help="server threads (echo-server --threads; default: its own default)")
    p.add_argument("--client-threads", type=lambda t: parse_count(t, "--client-threads"),
                   help="echo-load threads (default: one per client CPU)")
    p.add_argument("--client-engine", metavar="NAME",
                   help="echo-load's engine (echo-load --engine): one that `echo-load "
                        "--version` lists as usable, e.g. epoll or uring (default: echo-load's "
                        "own default, recorded in run.json)")
    p.add_argument("--pipeline", type=lambda t: parse_count(t, "--pipeline"), default=1,
                   help="messages in flight per connection (echo-load --pipeline)")
    p.add_argument("--rates-from", metavar="DIR",
                   help="take the open-loop rates from this run's closed-loop peaks instead of "
                        "measuring them (for compare: the same offered load in both runs)")
    p.add_argument("--out", metavar="DIR", help="results root (default: <repo>/results)")
    p.add_argument("--history", metavar="DB|URL",
                   help="add the run to this results history (an SQLite file, e.g. "
                        "results/history.sqlite, or postgresql://...) and show its cells' "
                        "trends in the report")
    p.add_argument("--conform", choices=("must", "quick", "all", "none"),
                   help="echo-conform per entry after the matrix: must (--must-only, the "
                        "default), quick (must without the long cases; the default of "
                        "--quick), all, none")
    p.add_argument("--conform-timeout", type=duration_arg("--conform-timeout"), default=120.0,
                   help="time limit per entry for echo-conform (default 120s)")
    p.add_argument("--load-hosts", metavar="DEST[,DEST...]",
                   help="run echo-load on these ssh destinations ([user@]host[:port]) instead "
                        "of here; connections and rate are split across them")
    p.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                   help="passed to ssh as -o OPT; repeatable")




def backend_list(text):
    """--backends: None (every usable one), [] ('none'), or the names."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    names = [b.strip() for b in text.split(",") if b.strip()]
    if not names:
        raise UsageError("empty matrix: --backends lists no backend")
    return names


def run_options(a, preset=None):
    """RunOptions from the parsed arguments; preset: the defaults to fill in (matrix.QUICK
    with --quick, matrix.AB for `ab`, else matrix.DEFAULT)."""
    name = "quick" if a.quick else (preset or "default")
    preset = {"quick": matrix.QUICK, "ab": matrix.AB}.get(name, matrix.DEFAULT)
    modes = matrix.parse_modes(a.modes) if a.modes is not None else list(preset["modes"])
    if a.rates is not None:
        modes += [m for m in matrix.parse_rates(a.rates) if m not in modes]
    if a.max_repetitions is not None and a.until_ci is None:
        raise UsageError("--max-repetitions needs --until-ci PCT")
    reps = a.repetitions or preset["repetitions"]
    max_reps = a.max_repetitions or max(10, reps)
    if a.until_ci is not None and max_reps < reps:
        raise UsageError(f"--max-repetitions {max_reps} is below --repetitions {reps}")
    opts = RunOptions(
        backends=backend_list(a.backends),
        connections=matrix.parse_connections(a.connections) if a.connections is not None
        else list(preset["connections"]),
        sizes=matrix.parse_sizes(a.sizes) if a.sizes is not None else list(preset["sizes"]),
        modes=modes,
        cells=[] if a.cells is not None and a.cells.strip().lower() == "none" else
        matrix.parse_cells(a.cells) if a.cells is not None else
        matrix.parse_cells(preset["cells"]) if preset.get("cells") else [],
        duration=a.duration or preset["duration"],
        warmup=a.warmup if a.warmup is not None else preset["warmup"],
        repetitions=reps, design="unpaired" if a.unpaired else "paired", seed=a.seed,
        server_cpus=a.server_cpus, client_cpus=a.client_cpus,
        server_threads=a.server_threads, client_threads=a.client_threads, pipeline=a.pipeline,
        client_engine=a.client_engine,
        preset=name,
        out_root=pathlib.Path(a.out).resolve() if a.out else None,
        conform=a.conform or ("quick" if a.quick else "must"),
        conform_timeout=a.conform_timeout, rates_from=a.rates_from,
        servers=list(a.server), targets=list(a.target),
        placements=matrix.parse_placements(a.placement) if a.placement is not None
        else [matrix.DEFAULT_PLACEMENT],
        until_ci=a.until_ci, max_repetitions=max_reps if a.until_ci is not None else None,
        slo=a.slo, sweep_connections=a.sweep_connections,
        sweep_duration=min(preset["sweep_duration"], a.duration or preset["sweep_duration"]),
        sweep_warmup=min(preset["sweep_warmup"],
                         a.warmup if a.warmup is not None else preset["sweep_warmup"]),
        history=a.history,
        load_hosts=[d.strip() for d in a.load_hosts.split(",") if d.strip()]
        if a.load_hosts else None,
        ssh_options=list(a.ssh_option))
    if a.load_hosts is not None and not opts.load_hosts:
        raise UsageError("--load-hosts lists no destination")
    if a.ssh_option and not opts.load_hosts:
        raise UsageError("--ssh-option needs --load-hosts")
    return opts
