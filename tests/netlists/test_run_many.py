"""run_many: parallel ngspice runs on any concurrent.futures.Executor (process pool, threads, Dask)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from thermotrain.circuits import Circuit, Resistor, VoltageSource
from thermotrain.netlists import RunFailure, SpiceJob, Transient, run_job, run_many, write_netlist

NT = 2e-7
SAMPLES = 1000


def _jobs(make_rc, with_failure: bool) -> list[SpiceJob]:
    circuit = make_rc([1e3, 2e3], noise_interval=NT)
    jobs = [
        SpiceJob(write_netlist(circuit, seed=seed, duration=SAMPLES * NT), step=NT, stop=SAMPLES * NT)
        for seed in (1, 2)
    ]
    if with_failure:  # two ideal voltage sources in parallel: singular matrix
        loop = Circuit(
            "loop",
            (
                VoltageSource("V1", "a", "0", 1.0),
                VoltageSource("V2", "a", "0", 2.0),
                Resistor("R1", "a", "0", 1.0),
            ),
            ("a",),
            NT,
            1e-6,
        )
        jobs.insert(1, SpiceJob(write_netlist(loop, noise="off"), step=NT, stop=10 * NT))
    return jobs


def _check_against_serial(jobs: list[SpiceJob], results: list) -> None:
    assert len(results) == len(jobs)
    for job, result in zip(jobs, results):
        if isinstance(result, RunFailure):
            continue
        assert isinstance(result, Transient)
        # file noise is bit-reproducible, so a run in another process equals one here
        np.testing.assert_array_equal(result.values, run_job(job).values)


@pytest.mark.spice
def test_process_pool_keeps_good_runs_and_reports_the_failed_one(make_rc) -> None:
    jobs = _jobs(make_rc, with_failure=True)
    results = run_many(jobs, progress=False)
    failure = results[1]
    assert isinstance(failure, RunFailure)
    assert failure.index == 1 and failure.error_type == "SpiceConvergenceError"
    assert "singular matrix" in failure.message.lower() or "timestep too small" in failure.message.lower()
    assert isinstance(results[0], Transient) and isinstance(results[2], Transient)
    _check_against_serial(jobs, results)


@pytest.mark.spice
def test_thread_pool_serialises_on_the_per_process_lock(make_rc) -> None:
    jobs = _jobs(make_rc, with_failure=False) * 2
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = run_many(jobs, pool, progress=True)
    assert all(isinstance(r, Transient) for r in results)
    _check_against_serial(jobs, results)


@pytest.mark.spice
def test_dask_executor_runs_jobs_unchanged(make_rc) -> None:
    distributed = pytest.importorskip("distributed", reason="dask[distributed] is a dev dependency")
    jobs = _jobs(make_rc, with_failure=True)
    with (
        distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        results = run_many(jobs, client.get_executor(), progress=False)
    assert isinstance(results[1], RunFailure) and results[1].error_type == "SpiceConvergenceError"
    _check_against_serial(jobs, results)


def test_no_jobs_gives_no_results() -> None:
    assert run_many([], progress=False) == []
