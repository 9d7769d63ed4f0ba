"""A smaller soak of benchmarks/sweep_soak.py (slow): 30 real ngspice runs on 2 recycled workers with one
worker killed mid-sweep -- no run lost, the crash survived, worker memory bounded and not growing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spice, pytest.mark.slow]

#: Stated bound on a worker's peak RSS (MB); measured 142 MB for N = 4 on 2026-12-03 (docs/benchmarks.md).
WORKER_RSS_BOUND_MB = 400.0


def _soak_module():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "sweep_soak.py"
    spec = importlib.util.spec_from_file_location("sweep_soak", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_soak_30_runs_one_crash_no_run_lost() -> None:
    r = _soak_module().soak(runs=30, workers=2, tasks_per_worker=5, size=4, duration_tau=50, crash_run=12)
    assert r["runs_lost"] == 0 and r["runs_ok"] == 30
    assert r["crash_happened"] and r["crash_survived"]
    assert r["worker_processes_seen"] >= 6  # 3 generations of 2 workers at least: recycling happened
    assert r["peak_rss_worker_mb"] < WORKER_RSS_BOUND_MB
    assert r["peak_rss_last_generation_mb"] < 1.25 * r["peak_rss_first_generation_mb"]  # no growth
