"""Sweeps: many ngspice runs on any ``concurrent.futures.Executor`` (a local process pool or a Dask
cluster's executor), results in job order, a failed run kept as a :class:`RunFailure`."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from thermotrain.netlists._ngspice import SpiceJob, Transient, run_transient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFailure:
    """One job of :func:`run_many` that failed: its index in ``jobs``, the exception's class name and
    message."""

    index: int
    error_type: str
    message: str


def run_job(job: SpiceJob) -> Transient:
    """Run one :class:`SpiceJob` (module-level, so process pools and Dask can pickle it)."""
    return run_transient(
        job.netlist,
        step=job.step,
        stop=job.stop,
        start=job.start,
        probes=job.probes,
        engine=job.engine,  # type: ignore[arg-type]
        timeout=job.timeout,
        options=job.options,
    )


def run_many(
    jobs: Sequence[SpiceJob],
    executor: Executor | None = None,
    *,
    progress: bool = True,
) -> list[Transient | RunFailure]:
    """Run ``jobs`` on ``executor`` (any ``concurrent.futures.Executor``: a process pool, or
    ``distributed.Client(...).get_executor()``); results in job order. A job that raises becomes a
    :class:`RunFailure` (logged as a warning); the others are kept.

    Default executor: ``ProcessPoolExecutor`` with the spawn start method and
    ``min(len(jobs), os.cpu_count())`` workers (one ngspice per process), shut down afterwards; a given
    executor is left running. Thread pools work but serialise on the per-process ngspice lock.
    """
    jobs = list(jobs)
    if not jobs:
        return []
    own = executor is None
    if executor is None:
        executor = ProcessPoolExecutor(
            max_workers=min(len(jobs), os.cpu_count() or 1), mp_context=multiprocessing.get_context("spawn")
        )
    results: list[Transient | RunFailure | None] = [None] * len(jobs)
    try:
        futures = {executor.submit(run_job, job): i for i, job in enumerate(jobs)}
        done = as_completed(futures)
        if progress:
            from tqdm.auto import tqdm

            done = tqdm(done, total=len(jobs), desc="ngspice runs", unit="run")
        for future in done:
            i = futures[future]
            try:
                results[i] = future.result()
            except Exception as exc:  # one failed run must not lose the others
                results[i] = RunFailure(i, type(exc).__name__, str(exc))
                logger.warning("ngspice job %d failed: %s: %s", i, type(exc).__name__, exc)
    finally:
        if own:
            executor.shutdown(wait=True)
    return results  # type: ignore[return-value]
