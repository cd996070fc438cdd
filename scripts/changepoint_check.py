#!/usr/bin/python3
"""How well `echobench history changes` finds a slowdown: the change-point detector
(echobench_lib/changepoint.py) on synthetic 30-run histories, with figures printed (not
pass/fail).

Each history is one figure per run, as the history keeps it: the median of 4 repetitions
(3 % noise within a run) times a shift of the whole run (the run-to-run spread: log-normal
with sd 3, 5 or 10 %, the run-to-run spreads measured on this VM's kind of machine, and a
heavy-tailed one: Student t with 3 degrees of freedom scaled to 5 %). A slowdown of 2, 5 or 10
% is injected at a point drawn uniformly from runs 5..25 (at least 5 runs on each side).

Printed per noise level and size: the share of injected changes found (a change point within
2 runs of the true one), the location error of those found (mean and largest), and the false
changes per 100 points (any other change point); on histories without a change, the false
changes per 100 points and the share of histories with any. A second table gives the share
found when the slowdown is only k runs old (k = 3, 5, 10), which is what a CI gate sees; a
third, a slowdown fixed 6 runs later (both changes found, or the slowdown only).

    /usr/bin/python3 scripts/changepoint_check.py            # about 2 minutes
    /usr/bin/python3 scripts/changepoint_check.py --trials 50 --alpha 0.05
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from echobench_lib import changepoint as cp  # noqa: E402

RUNS = 30
REPS, WITHIN = 4, 0.03
NOISES = (("3 %", "normal", 0.03), ("5 %", "normal", 0.05), ("10 %", "normal", 0.10),
          ("5 % t3", "t3", 0.05))
SIZES = (0.02, 0.05, 0.10)
TOLERANCE = 2
FIXED = 6


def history(rng, kind, sd, n, at=None, size=0.0):
    """n per-run figures (throughput-like: a slowdown divides them by 1 + size... here
    multiplies by 1 - size) with the change at index `at`."""
    if kind == "t3":
        shift = rng.standard_t(3, n) * sd / np.sqrt(3.0)     # t3 has variance 3
    else:
        shift = rng.normal(0.0, sd, n)
    within = np.median(rng.normal(0.0, WITHIN, (n, REPS)), axis=1)
    v = 100000.0 * np.exp(shift + within)
    if at is not None:
        v[at:] *= 1.0 - size
    return v


def score(changes, at):
    """(found, location error or None, false changes) of one history."""
    if at is None:
        return False, None, len(changes)
    near = [abs(c.index - at) for c in changes if abs(c.index - at) <= TOLERANCE]
    if not near:
        return False, None, len(changes)
    return True, min(near), len(changes) - 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--trials", type=int, default=200, help="histories per row (default 200)")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic histories")
    p.add_argument("--alpha", type=float, default=cp.DEFAULT_ALPHA)
    p.add_argument("--min-effect", type=float, default=cp.DEFAULT_MIN_EFFECT,
                   help="a fraction (0.02 = 2 %%)")
    p.add_argument("--min-size", type=int, default=cp.DEFAULT_MIN_SIZE)
    p.add_argument("--permutations", type=int, default=cp.DEFAULT_PERMUTATIONS)
    a = p.parse_args(argv)
    if a.trials < 1:
        p.error("--trials must be at least 1")
    opts = dict(alpha=a.alpha, min_effect=a.min_effect, min_size=a.min_size,
                permutations=a.permutations)
    rng = np.random.default_rng(a.seed)
    t0 = time.monotonic()
    print(f"E-divisive on {a.trials} synthetic {RUNS}-run histories per row; alpha "
          f"{a.alpha:g}, {a.permutations} permutations, minimum effect {a.min_effect:.0%}, "
          f"at least {a.min_size} runs per segment; found = within {TOLERANCE} runs")
    print(f"run-to-run noise: log-normal sd (or t3 scaled to it) x median of {REPS} "
          f"repetitions with {WITHIN:.0%} within-run noise\n")
    print(f"{'noise':<8} {'slowdown':>8} {'found':>7} {'loc err mean/max':>17} "
          f"{'false /100 pts':>15} {'any false':>10}")
    for label, kind, sd in NOISES:
        for size in (None,) + SIZES:
            found, errs, false, any_false = 0, [], 0, 0
            for seed in range(a.trials):
                at = None if size is None else int(rng.integers(5, RUNS - 5 + 1))
                v = history(rng, kind, sd, RUNS, at, size or 0.0)
                ok, err, nf = score(cp.detect(v, seed=seed, **opts), at)
                found += ok
                false += nf
                any_false += nf > 0
                if err is not None:
                    errs.append(err)
            loc = f"{np.mean(errs):.2f} / {max(errs)}" if errs else "-"
            print(f"{label:<8} {'none' if size is None else f'{size:.0%}':>8} "
                  f"{'-' if size is None else f'{found / a.trials:.0%}':>7} {loc:>17} "
                  f"{100.0 * false / (a.trials * RUNS):>15.2f} "
                  f"{any_false / a.trials:>10.1%}")
    print("\nshare found when the slowdown is only k runs old (the newest k runs are after it)")
    print(f"{'noise':<8} {'slowdown':>8} " + " ".join(f"{f'k={k}':>6}" for k in (3, 5, 10)))
    for label, kind, sd in NOISES[:3]:
        for size in (0.05, 0.10):
            shares = []
            for k in (3, 5, 10):
                hit = sum(score(cp.detect(history(rng, kind, sd, RUNS, RUNS - k, size),
                                          seed=seed, **opts), RUNS - k)[0]
                          for seed in range(a.trials))
                shares.append(f"{hit / a.trials:>6.0%}")
            print(f"{label:<8} {size:>8.0%} " + " ".join(shares))
    print(f"\na slowdown fixed {FIXED} runs later (at runs 12 and {12 + FIXED}): share of "
          f"histories with both changes found, with the slowdown only")
    print(f"{'noise':<8} {'slowdown':>8} {'both':>6} {'first':>6}")
    for label, kind, sd in NOISES[:3]:
        for size in (0.05, 0.10):
            both = first = 0
            for seed in range(a.trials):
                v = history(rng, kind, sd, RUNS, 12, size)
                v[12 + FIXED:] /= 1.0 - size
                ch = cp.detect(v, seed=seed, **opts)
                hit = [score(ch, at)[0] for at in (12, 12 + FIXED)]
                both += all(hit)
                first += hit[0] and not hit[1]
            print(f"{label:<8} {size:>8.0%} {both / a.trials:>6.0%} {first / a.trials:>6.0%}")
    print(f"\n{time.monotonic() - t0:.0f} s; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
