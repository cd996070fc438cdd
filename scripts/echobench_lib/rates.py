"""The open-loop rates of a run: every entry of a cell group (same connections, size,
placement) is offered the same rate, a fraction of the reference entry's closed-loop peak.

The peak of a group is the one that `--rates-from DIR` recorded (so that two runs offer the same
load), else the median of the reference's closed-loop samples in this run (all of its
repetitions: the closed cells of a group are measured before its open ones), else a short
closed-loop calibration run. What was offered,
and what fraction of this run's own peak that was, is recorded (context.open_loop_rates).
"""
import statistics

from . import gbjson
from .matrix import parse_name
from .measure import CellFailed
from .util import UsageError


def peaks_from_run(path):
    """{closed Cell (entry, connections, size, placement): msgs/s} from another run's context
    (closed_loop_peaks, keyed by the closed cell's benchmark name)."""
    ctx = gbjson.load(path).get("context") or {}
    peaks = {}
    for name, value in (ctx.get("closed_loop_peaks") or {}).items():
        parsed = parse_name(name)
        if parsed and isinstance(value, (int, float)) and value > 0:
            peaks[parsed[0]] = float(value)
    if not peaks:
        raise UsageError(f"--rates-from {path}: that run has no closed-loop peaks")
    return peaks


class OpenRates:
    """Peaks and the rates they give. samples(cell) -> the closed-loop values of a closed cell
    measured so far (msgs/s); calibrate(cell) -> a calibration run's msgs/s (raises
    CellFailed)."""

    def __init__(self, reference, given=None, samples=None, calibrate=None):
        self.reference = reference
        self.given = dict(given or {})
        self.samples, self.calibrate = samples, calibrate
        self.peaks = {}           # closed Cell -> (msgs/s, source)
        self.offered = {}         # spot Cell -> record

    def peak(self, closed):
        """The peak of a closed cell (entry's own): this run's median, else --rates-from, else
        calibration. CellFailed when none can be had."""
        if closed in self.peaks:
            return self.peaks[closed][0]
        vals = [v for v in (self.samples(closed) if self.samples else []) if v]
        if closed in self.given:
            self.peaks[closed] = (self.given[closed], "--rates-from")
        elif vals:
            self.peaks[closed] = (statistics.median(vals), f"median of {len(vals)} closed-loop "
                                                          f"samples")
        elif self.calibrate is not None:
            try:
                v = self.calibrate(closed)
            except CellFailed as e:
                raise CellFailed(f"no closed-loop peak to set the open-loop rate: {e}") from e
            if not v:
                raise CellFailed("closed-loop calibration measured no messages")
            self.peaks[closed] = (v, "calibration")
        else:
            raise CellFailed("no closed-loop peak to set the open-loop rate")
        return self.peaks[closed][0]

    def rate(self, cell):
        """The offered rate of an open-loop cell (the same for every entry of its group), None
        for other modes."""
        if cell.fixed_rate is not None:
            return float(cell.fixed_rate)
        if cell.open_fraction is None:
            return None
        spot = cell.spot
        if spot not in self.offered:
            closed = spot.of(self.reference).peak_cell
            peak = self.peak(closed)
            rate = peak * cell.open_fraction
            own = [v for v in (self.samples(closed) if self.samples else []) if v]
            self.offered[spot] = {
                "offered_rate": rate, "fraction_asked": cell.open_fraction,
                "peak": peak, "peak_source": self.peaks[closed][1],
                "fraction_of_this_runs_peak": rate / statistics.median(own) if own else None}
        return self.offered[spot]["offered_rate"]

    def context(self):
        """(closed_loop_peaks, open_loop_rates) for run.json: keyed by benchmark names."""
        peaks = {c.name("msgs_per_sec"): v for c, (v, _) in self.peaks.items()}
        offered = {s.of(self.reference).name("offered_rate").replace(f"/{self.reference}/",
                                                                      "/*/"): rec
                   for s, rec in self.offered.items()}
        return peaks, offered
