"""Sweeps: many ngspice runs on any ``concurrent.futures.Executor`` (a local process pool or a Dask
cluster's executor), results in job order, a failed run kept as a :class:`RunFailure`.

What a sweep survives (issue 7, item 12):

- **A crashed worker.** When a worker process dies (killed, out of memory, ngspice aborting the process),
  ``ProcessPoolExecutor`` breaks and fails every run it holds. :func:`run_many` keeps every run that had
  finished, rebuilds its own pool, and runs each interrupted run once more, **alone** (nothing else in
  flight), so a job that kills its worker every time cannot take another run down with it on the retry.
  A run that fails twice becomes a :class:`RunFailure` naming both attempts.
- **Memory growth over long sweeps.** Its own pool is replaced after ``workers x tasks_per_worker`` runs
  (worker recycling): a fresh generation of processes starts, the old one exits once its runs are done.
  (``ProcessPoolExecutor(max_tasks_per_child=...)`` deadlocks on CPython 3.11, gh-115634, so the
  recycling is done here by pool generations.)
- **A broken executor you passed in** (a Dask client's executor, your own pool) cannot be rebuilt here:
  the runs that finished are kept, the others become RunFailures that say the executor broke and what to
  do, and a warning is logged.

Runs are submitted in a window of at most ``workers`` at a time, so "in flight when the pool broke" means
"running": queued runs are never charged an attempt for another run's crash.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thermotrain._args import check_int
from thermotrain._errors import (
    CircuitError,
    InputError,
    NetlistSecurityError,
    SpiceConvergenceError,
    SpiceNotFoundError,
    SpiceTimeoutError,
)
from thermotrain.netlists._ngspice import SpiceJob, Transient, quiet_start, run_transient

logger = logging.getLogger(__name__)

#: Runs a worker process of run_many's own pool does before its pool generation is replaced (recycling).
DEFAULT_TASKS_PER_WORKER = 25

#: Failures that are the job's own deterministic verdict: the same job fails the same way again, so they
#: are not retried (a bad or refused netlist, non-convergence, a run past its time limit, no ngspice).
NOT_RETRIED: tuple[type[BaseException], ...] = (
    InputError,
    NetlistSecurityError,
    CircuitError,
    SpiceConvergenceError,
    SpiceTimeoutError,
    SpiceNotFoundError,
)


@dataclass(frozen=True)
class RunFailure:
    """One job of :func:`run_many` that failed: its index in ``jobs``, the last exception's class name and
    message (for a retried run, the message names both attempts), and how many attempts were made."""

    index: int
    error_type: str
    message: str
    attempts: int = 1


def run_job(job: SpiceJob) -> Transient:
    """Run one :class:`SpiceJob` (module-level, so process pools and Dask can pickle it)."""
    ic = None  # a file-noise run of a circuit starts at the circuit's noise-free DC point (SpiceJob.quiet)
    if job.quiet is not None:
        ic = quiet_start(job.quiet, engine=job.engine, timeout=job.timeout)  # type: ignore[arg-type]
    return run_transient(
        job.netlist,
        step=job.step,
        stop=job.stop,
        start=job.start,
        probes=job.probes,
        engine=job.engine,  # type: ignore[arg-type]
        timeout=job.timeout,
        options=job.options,
        initial_conditions=ic,
        stepping=job.stepping,  # type: ignore[arg-type]
        grid_steps=job.grid_steps,
    )


@dataclass(frozen=True)
class InjectCrash:
    """Fault injection for tests and ``benchmarks/sweep_soak.py``: a picklable job function for
    :func:`run_many` (``fn=``) that kills its own worker process with SIGKILL (as the kernel's OOM killer
    would) and otherwise runs ``fn``.

    Which runs crash: those whose netlist seed is in ``seeds`` (None: any run). With a ``token`` file, only
    the one run that claims it (removes it; atomic across processes) crashes, once: its retry finds the
    token gone and runs normally. Without a token, a matching run crashes every time it is tried."""

    token: str | None
    seeds: tuple[int, ...] | None = None
    fn: Callable[[Any], Any] = run_job

    def __call__(self, job: Any) -> Any:
        if self.seeds is None or getattr(getattr(job, "netlist", None), "seed", None) in self.seeds:
            if self.token is None:
                os.kill(os.getpid(), signal.SIGKILL)
            try:
                os.unlink(self.token)
            except FileNotFoundError:
                pass  # another run claimed it: run normally
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.fn(job)


def token_file(folder: str | Path, name: str = "crash-once") -> str:
    """Create the token file an :class:`InjectCrash` claims (in ``folder``); returns its path."""
    path = Path(folder) / name
    path.write_text("the first run that removes this file kills its worker\n")
    return str(path)


def _retryable(exc: BaseException) -> bool:
    return not isinstance(exc, NOT_RETRIED)


def _describe(exc: BaseException, exitcodes: Sequence[int] = ()) -> str:
    if isinstance(exc, BrokenProcessPool):
        died = [c for c in exitcodes if c not in (0, -signal.SIGTERM)]
        how = ""
        if died:
            c = died[0]
            how = (
                f" (exit status: signal {-c}, {signal.Signals(-c).name})"
                if c < 0 and -c in signal.valid_signals()
                else f" (exit status {c})"
            )
        return (
            f"the worker process running it died{how}: killed, out of memory, or ngspice aborted the process"
        )
    return f"{type(exc).__name__}: {exc}"


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def run_many(
    jobs: Sequence[Any],
    executor: Executor | None = None,
    *,
    progress: bool = True,
    workers: int | None = None,
    tasks_per_worker: int | None = DEFAULT_TASKS_PER_WORKER,
    retries: int = 1,
    fn: Callable[[Any], Any] = run_job,
) -> list[Any]:
    """Run ``jobs`` (SpiceJobs) through ``fn`` (default :func:`run_job`) on ``executor`` (any
    ``concurrent.futures.Executor``: a process pool, or ``distributed.Client(...).get_executor()``);
    results in job order. A job that fails becomes a :class:`RunFailure` (logged as a warning); the others
    are kept.

    Args:
        jobs: the runs.
        executor: None = run_many's own spawned process pool (rebuilt after a crash, recycled every
            ``tasks_per_worker`` runs per worker, shut down at the end); a given executor is used as is and
            left running, and if it breaks its unfinished runs are reported as failed, not retried.
        progress: a tqdm progress bar.
        workers: processes of the own pool (default ``min(len(jobs), os.cpu_count())``); also the number
            of runs in flight at once on a given executor (default: its ``_max_workers``, else all).
        tasks_per_worker: worker recycling of the own pool (runs per process before a fresh generation
            starts); None = never recycle.
        retries: extra attempts of a run that failed for a reason other than its own deterministic verdict
            (see :data:`NOT_RETRIED`): a crashed worker, ngspice dying, an OS error. Retries run alone.
        fn: the picklable function applied to each job (tests inject faults here, see :class:`InjectCrash`).
    Returns:
        One entry per job: ``fn``'s result, or a :class:`RunFailure`.
    """
    jobs = list(jobs)
    retries = check_int("retries", retries, minimum=0)
    if workers is not None:
        workers = check_int("workers", workers, minimum=1)
    if tasks_per_worker is not None:
        tasks_per_worker = check_int("tasks_per_worker", tasks_per_worker, minimum=1)
    if not jobs:
        return []
    own = executor is None
    if workers is None:
        workers = (
            min(len(jobs), os.cpu_count() or 1)
            if own
            else int(getattr(executor, "_max_workers", 0) or len(jobs))
        )
    workers = min(workers, len(jobs))
    generation_size = None if tasks_per_worker is None else workers * tasks_per_worker

    results: list[Any] = [None] * len(jobs)
    attempts = [0] * len(jobs)
    errors: list[list[str]] = [[] for _ in jobs]
    todo: deque[int] = deque(range(len(jobs)))
    alone: deque[int] = deque()  # retries: each runs with nothing else in flight
    in_flight: dict[Future[Any], tuple[int, Executor]] = {}
    solo = False  # a retry is in flight
    current: Executor | None = None  # the own pool generation that takes new runs
    retired: list[Executor] = []  # earlier generations, shut down, finishing their last runs
    submitted = 0  # runs submitted to the newest own generation
    broken_user: str | None = None

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="ngspice runs", unit="run")

    def finish(i: int, value: Any) -> None:
        results[i] = value
        if bar is not None:
            bar.update(1)

    def failed(i: int, error_type: str, reason: str, retryable: bool) -> None:
        errors[i].append(reason)
        if retryable and attempts[i] <= retries:
            logger.warning("ngspice job %d failed (%s); retrying it alone", i, reason)
            alone.append(i)
            return
        text = (
            reason
            if len(errors[i]) == 1
            else "; ".join(f"attempt {k + 1}: {e}" for k, e in enumerate(errors[i]))
        )
        logger.warning("ngspice job %d failed after %d attempt(s): %s", i, attempts[i], text)
        finish(i, RunFailure(i, error_type, text, attempts[i]))

    def target() -> Executor:
        nonlocal submitted, current
        if not own:
            assert executor is not None
            return executor
        if current is None or (generation_size is not None and submitted >= generation_size):
            if current is not None:  # recycle: the old generation's processes exit once their runs are done
                current.shutdown(wait=False)
                retired.append(current)
            current = _pool(workers)
            submitted = 0
        return current

    try:
        while todo or alone or in_flight:
            # ---- submit: a retry alone, other runs in a window of `workers` at a time
            while broken_user is None and not solo:
                if alone:
                    if in_flight:
                        break
                    i, solo = alone.popleft(), True
                elif todo and len(in_flight) < workers:
                    i = todo.popleft()
                else:
                    break
                ex = target()
                try:
                    future = ex.submit(fn, jobs[i])
                except Exception as exc:  # a given executor that broke or was shut down
                    if own:
                        raise
                    broken_user = _describe(exc)
                    (alone if solo else todo).appendleft(i)
                    solo = False
                    break
                submitted += 1
                attempts[i] += 1
                in_flight[future] = (i, ex)
            if not in_flight:
                if broken_user is not None:
                    break
                continue
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken: dict[int, tuple[Executor, BaseException, list[int]]] = {}
            for future in done:
                i, ex = in_flight.pop(future)
                if attempts[i] > 1:
                    solo = False
                try:
                    finish(i, future.result())
                except BrokenProcessPool as exc:
                    if own:  # the whole generation failed with its dead worker: handled below
                        broken.setdefault(id(ex), (ex, exc, []))[2].append(i)
                    else:
                        failed(i, type(exc).__name__, _describe(exc), True)
                except Exception as exc:  # one failed run must not lose the others
                    failed(i, type(exc).__name__, _describe(exc), _retryable(exc))
            for ex, exc, victims in broken.values():
                procs = dict(getattr(ex, "_processes", None) or {})
                ex.shutdown(wait=True, cancel_futures=True)  # afterwards every future of it is done
                for future, (i, other) in list(in_flight.items()):  # its other runs: finished or failed
                    if other is ex:
                        in_flight.pop(future)
                        if attempts[i] > 1:
                            solo = False
                        if future.done() and not future.cancelled() and future.exception() is None:
                            finish(i, future.result())
                        else:
                            victims.append(i)
                if ex is current:
                    current = None
                else:
                    retired.remove(ex)
                reason = _describe(exc, [p.exitcode for p in procs.values() if p.exitcode is not None])
                logger.warning(
                    "a worker of the ngspice pool died (%s); %d run(s) interrupted; a fresh pool retries "
                    "each alone",
                    reason,
                    len(victims),
                )
                for i in victims:
                    failed(i, "WorkerCrashed", reason, True)
        if broken_user is not None:
            message = (
                f"the executor passed to run_many ({type(executor).__name__}) broke ({broken_user}), so this "
                "run was not finished; run_many cannot rebuild an executor it did not create: pass a fresh "
                "one, or none (run_many's own pool is rebuilt after a crash and retries)"
            )
            logger.error(message)
            for i in [*alone, *todo]:
                prior = "; ".join(errors[i])
                finish(
                    i,
                    RunFailure(i, "BrokenExecutor", f"{prior}; {message}" if prior else message, attempts[i]),
                )
            alone.clear()
            todo.clear()
    finally:
        if bar is not None:
            bar.close()
        for ex in [*retired, *([current] if current is not None else [])]:
            with contextlib.suppress(Exception):
                ex.shutdown(wait=True, cancel_futures=True)
    return results
