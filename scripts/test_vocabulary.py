"""The option vocabulary of docs/CONTRACTS.md ("One option vocabulary") against every program's
--help: the table is the one place where an option's name, short letter and meaning are
decided, so this test reads the table and checks the programs, never a second copy of it."""
import re
import subprocess

import pytest

from conftest import ROOT, binary

CONTRACTS = ROOT / "docs" / "CONTRACTS.md"
ECHOBENCH = ROOT / "scripts" / "echobench"
C_PROGRAMS = {"echo-server": "servers/echo-server", "echo-load": "clients/echo-load",
              "echo-conform": "conformance/echo-conform",
              "faulty-echo": "conformance/faulty-echo"}
def driver_commands():
    """The driver's commands, from its own parser (none written here)."""
    from echobench_lib import cli
    sub = next(a for a in cli.make_parser()._actions if a.dest == "command")
    return tuple(sub.choices)


DRIVER_COMMANDS = driver_commands()
OPTION = re.compile(r"^\s{1,8}(?:(-[A-Za-z]),\s*)?(--[a-z][a-z0-9-]*)", re.M)
LONG = re.compile(r"`(--[a-z][a-z0-9-]*)")


def table():
    """[(long names, short letter or None, programs cell text)] of the vocabulary table."""
    text = CONTRACTS.read_text()
    start = text.index("## One option vocabulary")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) != 4 or not cells[0].startswith("`--"):
            continue
        short = cells[1].strip("`") or None
        rows.append((LONG.findall(cells[0]), short, cells[3]))
    return rows


def helps(build):
    """{program name: its --help text} for the C programs and the driver's commands."""
    out = {}
    for name, rel in C_PROGRAMS.items():
        res = subprocess.run([binary(rel), "--help"], capture_output=True, text=True,
                             timeout=10)
        assert res.returncode == 0, f"{name} --help exited {res.returncode}"
        out[name] = res.stdout
    for cmd in DRIVER_COMMANDS:
        res = subprocess.run(["/usr/bin/python3", ECHOBENCH, cmd, "--help"],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, f"echobench {cmd} --help exited {res.returncode}"
        out[f"echobench {cmd}"] = res.stdout
    return out


def options(help_text):
    """{long: short or None} of one --help text."""
    found = {}
    for short, long in OPTION.findall(help_text):
        found[long] = short or found.get(long)
    return found


@pytest.fixture(scope="module")
def parsed():
    return {prog: options(text) for prog, text in helps(None).items()}


def test_table_is_read():
    rows = table()
    assert len(rows) >= 20, "the vocabulary table in docs/CONTRACTS.md was not found"
    assert any("--connections" in longs for longs, _, _ in rows)


def test_each_short_letter_means_one_thing(parsed):
    meaning = {}
    for prog, opts in parsed.items():
        for long, short in opts.items():
            if short is None:
                continue
            assert meaning.setdefault(short, long) == long, (
                f"{short} is {long} in {prog} but {meaning[short]} elsewhere")


def test_short_letters_follow_the_table(parsed):
    decided = {}
    for longs, short, _ in table():
        for long in longs:
            decided[long] = short
    for prog, opts in parsed.items():
        for long, short in opts.items():
            if long in decided and short is not None:
                assert short == decided[long], (
                    f"{prog}: {short}, {long}: the table gives {decided[long] or 'no letter'}")


def programs_of(cell):
    """The programs a table row names: "echo-server (alias …), echo-load, echobench run,
    conform" -> ["echo-server", "echo-load", "echobench run", "echobench conform"]."""
    cell = re.sub(r"\([^)]*\)", "", cell)
    out, driver = [], False
    for tok in (t.strip() for t in cell.split(",")):
        if tok.startswith("echobench "):
            driver = True
            out.append(tok)
        elif driver and tok in DRIVER_COMMANDS:
            out.append(f"echobench {tok}")
        elif tok in C_PROGRAMS:
            driver = False
            out.append(tok)
    return out


def test_listed_programs_have_their_options(parsed):
    checked = 0
    for longs, _, cell in table():
        for prog in programs_of(cell):
            if prog not in parsed:
                continue
            assert longs[0] in parsed[prog], f"{prog} has no {longs[0]} (docs/CONTRACTS.md)"
            checked += 1
    assert checked >= 20


def test_shared_long_names_are_in_the_table(parsed):
    """A long option that two programs share must be decided in the table."""
    decided = {long for longs, _, _ in table() for long in longs}
    seen = {}
    for prog, opts in parsed.items():
        for long in opts:
            seen.setdefault(long, set()).add(prog.split()[0])
    generic = {"--help", "--version", "--build"}
    for long, progs in seen.items():
        if len(progs) > 1 and long not in generic:
            assert long in decided, f"{long} is used by {sorted(progs)} but not in the table"
