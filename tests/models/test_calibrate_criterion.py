"""`calibrate`'s held-out CI95 is honest: a perfect fit passes it in 95 % of calibrations.

benchmarks/calibrate_criterion.py samples the preset's linear SDE exactly (no SPICE), makes 4 fit + 4
held-out runs per replication, takes the fit runs' pooled covariance as the perfect fit (what both device
fits reproduce) and applies `calibrate`'s own held-out error and CI95 formulas. If the CI95 derivation (the
error budget over the fit time, rescaled for the held-out runs) were too narrow or too wide, the pass rate
would leave 95 %. With 300 replications the binomial standard error is 1.26 points, so [91, 99] % is a
3.2-sigma band around 95 % (measured 94.0 / 95.0 / 96.0 % at Monte Carlo seeds 0-2, 300 tau runs).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _bench():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "calibrate_criterion.py"
    spec = importlib.util.spec_from_file_location("calibrate_criterion", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_perfect_fit_passes_the_heldout_ci95_at_its_stated_rate() -> None:
    r = _bench().null_rates(
        "rc8", reps=300, fit_runs=4, heldout_runs=4, duration_tau=300.0, per_tau=8, seed=0
    )
    assert 0.91 <= r["null_pass_rate_ci95_check"] <= 0.99, r
