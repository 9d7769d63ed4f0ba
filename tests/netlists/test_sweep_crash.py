"""run_many survives a killed worker (issue 7, item 12): the finished runs are kept, the interrupted ones
are retried once (alone, on a rebuilt pool), a run that crashes twice becomes a RunFailure naming why; the
own pool recycles its workers; a broken executor passed in is reported, not retried. Real ngspice runs;
only the crash is injected (SIGKILL of the worker process)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from thermotrain.netlists import RunFailure, SpiceJob, Transient, run_job, run_many, write_netlist
from thermotrain.netlists._sweep import InjectCrash, token_file

pytestmark = pytest.mark.spice

NT = 2e-7
SAMPLES = 400


def _jobs(make_rc, seeds=(1, 2, 3, 4)) -> list[SpiceJob]:
    circuit = make_rc([1e3, 2e3], noise_interval=NT)
    return [
        SpiceJob(write_netlist(circuit, seed=s, duration=SAMPLES * NT), step=NT, stop=SAMPLES * NT)
        for s in seeds
    ]


def _same_as_serial(job: SpiceJob, result: Transient) -> None:
    assert isinstance(result, Transient)
    np.testing.assert_array_equal(result.values, run_job(job).values)  # file noise: bit-reproducible


def test_a_killed_worker_loses_no_run(make_rc, tmp_path: Path) -> None:
    jobs = _jobs(make_rc)
    token = token_file(tmp_path)
    results = run_many(jobs, progress=False, workers=2, fn=InjectCrash(token, seeds=(2,)))
    assert not Path(token).exists(), "the crash was injected (the token was claimed)"
    assert all(isinstance(r, Transient) for r in results), results
    for job, r in zip(jobs, results, strict=True):
        _same_as_serial(job, r)


def test_a_run_that_crashes_twice_is_named_and_the_others_kept(make_rc) -> None:
    jobs = _jobs(make_rc, seeds=(1, 2, 3))
    results = run_many(jobs, progress=False, workers=2, fn=InjectCrash(None, seeds=(2,)))
    failure = results[1]
    assert isinstance(failure, RunFailure)
    assert failure.index == 1 and failure.attempts == 2 and failure.error_type == "WorkerCrashed"
    assert "attempt 1: the worker process running it died" in failure.message
    assert "attempt 2:" in failure.message and "SIGKILL" in failure.message
    # the run that shared the pool with the crash was retried alone and is kept, like the others
    for i in (0, 2):
        _same_as_serial(jobs[i], results[i])


def test_worker_recycling_keeps_every_result(make_rc, monkeypatch) -> None:
    import thermotrain.netlists._sweep as sweep

    made = []
    real = sweep._pool
    monkeypatch.setattr(sweep, "_pool", lambda workers: made.append(workers) or real(workers))
    jobs = _jobs(make_rc)
    results = run_many(jobs, progress=False, workers=2, tasks_per_worker=1)  # a fresh pool every 2 runs
    assert made == [2, 2]
    for job, r in zip(jobs, results, strict=True):
        _same_as_serial(job, r)


def test_a_broken_executor_passed_in_is_reported_not_hidden(make_rc, tmp_path: Path) -> None:
    jobs = _jobs(make_rc, seeds=(1, 2, 3, 4))
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = run_many(jobs, pool, progress=False, fn=InjectCrash(token_file(tmp_path), seeds=(3,)))
    failures = [r for r in results if isinstance(r, RunFailure)]
    assert failures and failures[0].error_type == "BrokenExecutor"
    assert all("the executor passed to run_many (ProcessPoolExecutor) broke" in f.message for f in failures)
    assert all("pass a fresh one, or none" in f.message for f in failures)
    for job, r in zip(jobs, results, strict=True):
        if isinstance(r, Transient):
            _same_as_serial(job, r)
    assert len(results) == 4


def test_deterministic_failures_are_not_retried(make_rc) -> None:
    jobs = _jobs(make_rc, seeds=(1,))
    bad = SpiceJob(jobs[0].netlist, step=NT, stop=SAMPLES * NT, probes=("no_such_node",))
    results = run_many([bad, *jobs], progress=False, workers=2)
    assert isinstance(results[0], RunFailure) and results[0].attempts == 1
    _same_as_serial(jobs[0], results[1])


def test_bad_arguments_are_input_errors() -> None:
    from thermotrain._errors import InputError

    for kw in ({"workers": 0}, {"retries": -1}, {"tasks_per_worker": 0}, {"workers": 2.5}):
        with pytest.raises(InputError):
            run_many([object()], progress=False, **kw)
