"""The entries of a run: our backends and the user's servers (`--server NAME=CMD`, started
fresh per cell) and targets (`--target NAME=ADDR`, already running). Each appears in the matrix
under its NAME, beside the backends."""
import re
from dataclasses import dataclass

from .util import UsageError

NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$")


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str                 # backend | server | target
    command: str = None       # server: the shell command ({port} substituted)
    addr: str = None          # target: its address
    backend: str = None       # backend: what echo-server runs (default: the name), e.g. epoll+t2
    server_exe: str = None    # backend: the echo-server binary (default: the run's build)

    @property
    def spec(self):
        """The backend entry's echo-server backend and worker model (build.backend_args)."""
        return self.backend or self.name


def parse_spec(text, option):
    """'NAME=VALUE' -> (NAME, VALUE); UsageError in one line otherwise."""
    name, sep, value = str(text).partition("=")
    name = name.strip()
    if not sep or not value.strip():
        raise UsageError(f"bad {option} '{text}': expected NAME=" +
                         ("'COMMAND'" if option == "--server" else "ADDR"))
    if not NAME_OK.match(name):
        raise UsageError(f"bad {option} name '{name}': letters, digits and _ . : + - only")
    return name, value.strip()


def make_entries(backends, servers, targets, known_backends=()):
    """[Entry] in order: backends, then --server, then --target. A NAME used twice, or one that
    is also a backend's name, is a usage error."""
    out = [Entry(b, "backend") for b in backends]
    seen = set(backends)
    reserved = set(known_backends)
    for option, kind, specs in (("--server", "server", servers), ("--target", "target",
                                                                    targets)):
        for spec in specs:
            name, value = parse_spec(spec, option)
            if name in reserved:
                raise UsageError(f"{option} {name}: '{name}' is the name of a backend")
            if name in seen:
                raise UsageError(f"{option} {name}: the name '{name}' is used twice")
            seen.add(name)
            if kind == "target":
                from .net import split_addr
                try:
                    split_addr(value)
                except ValueError as e:
                    raise UsageError(f"bad --target {name}={value}: {e}") from None
            out.append(Entry(name, kind, command=value if kind == "server" else None,
                             addr=value if kind == "target" else None))
    return out


def reference(entries):
    """The entry whose closed-loop peak sets the open-loop rates: epoll, else the first."""
    names = [e.name for e in entries]
    return "epoll" if "epoll" in names else (names[0] if names else None)
