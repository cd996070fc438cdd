"""`echobench report DIR` and the end of `echobench run`: summary.md (report_md) and
report.html (report_html, with plots) from a results directory read by rundata.RunData."""
from .report_html import empty_report, html_report
from .report_md import summary_markdown
from .rundata import RunData


def write(run_dir, history=None):
    """Writes summary.md and report.html into run_dir; returns the summary text. history: a
    results history (path or URL) whose trends of this run's cells the report shows."""
    d = RunData(run_dir)
    found = []
    if history:
        from .report_trends import trends
        found = trends(d, history)
    summary = summary_markdown(d, found)
    (d.dir / "summary.md").write_text(summary + "\n")
    (d.dir / "report.html").write_text(html_report(d, found))
    return summary


def write_empty(run_dir, why):
    """summary.md and report.html of a run that measured nothing: say so, and why."""
    text = f"# echobench run\n\nNo cell was measured ({why}).\n"
    (run_dir / "summary.md").write_text(text)
    (run_dir / "report.html").write_text(empty_report(why))
    return text.strip()
