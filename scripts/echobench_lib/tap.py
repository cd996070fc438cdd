"""The one TAP 13 reader (echo-conform's stable output), for the driver and the tests.

A result line is `ok N - ID DESCRIPTION` or `not ok N - ID DESCRIPTION`, optionally ending in
`# SKIP reason` or `# TODO reason`."""
import re

# Groups: 1 ok | not ok, 2 number, 3 case ID, 4 description, 5 SKIP | TODO, 6 its reason.
TAP_LINE = re.compile(r"^(ok|not ok) (\d+) - (\S+) ?(.*?)(?: # (SKIP|TODO)\b ?(.*))?$")
_LOOSE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
_DIRECTIVE = re.compile(r"\s+#\s*(SKIP|TODO)\b\s*(.*)$", re.IGNORECASE)


def parse_line(line):
    """(ok, number, case_id, description, directive, reason) of a result line, None for other
    lines. Accepts the loose forms TAP allows (no number, no dash)."""
    m = TAP_LINE.match(line)
    if m:
        return (m.group(1) == "ok", int(m.group(2)), m.group(3), m.group(4),
                (m.group(5) or "").upper() or None, m.group(6))
    m = _LOOSE.match(line)
    if not m:
        return None
    desc = m.group(3)
    d = _DIRECTIVE.search(desc)
    if d:
        desc = desc[:d.start()]
    words = desc.split(None, 1)
    case_id = words[0] if words else f"#{m.group(2)}"
    return (m.group(1) == "ok", int(m.group(2)) if m.group(2) else None, case_id,
            words[1] if len(words) > 1 else "", d.group(1).upper() if d else None,
            d.group(2) if d else None)


def parse_tap(text):
    """Counts and case IDs of a TAP 13 text: plan, passed, failed, skipped, todo, failed_ids,
    skipped_ids, todo_ids (TODO cases that failed), bail_out, results (parse_line tuples).
    A TODO case (echo-conform --must-only marks a failed SHOULD case so) is shown, not counted."""
    res = {"plan": None, "passed": 0, "failed": 0, "skipped": 0, "todo": 0,
           "failed_ids": [], "skipped_ids": [], "todo_ids": [], "bail_out": None,
           "results": []}
    for line in text.splitlines():
        if line.startswith("1.."):
            m = re.match(r"1\.\.(\d+)", line)
            if m:
                res["plan"] = int(m.group(1))
            continue
        if line.startswith("Bail out!"):
            res["bail_out"] = line[len("Bail out!"):].strip() or "bail out"
            continue
        r = parse_line(line)
        if r is None:
            continue
        res["results"].append(r)
        ok, _, case_id, _, directive, _ = r
        if directive == "SKIP":
            res["skipped"] += 1
            res["skipped_ids"].append(case_id)
        elif directive == "TODO":
            res["todo"] += 1
            if not ok:
                res["todo_ids"].append(case_id)
        elif ok:
            res["passed"] += 1
        else:
            res["failed"] += 1
            res["failed_ids"].append(case_id)
    return res
