"""Soak test of a long SPICE sweep (issue 7): many short ngspice runs of a small array on a recycled worker
pool, with one worker killed mid-sweep (SIGKILL, as the OOM killer would).

    python benchmarks/sweep_soak.py --out runs/bench [--runs 100] [--workers 2] [--tasks-per-worker 10]

Reports wall time, runs lost (must be 0), whether the injected crash was survived (the killed run retried
and succeeded), and peak memory: the parent's (``ru_maxrss``), every worker's (``VmHWM`` read from
``/proc/<pid>/status`` while it lives, and ``RUSAGE_CHILDREN`` ``ru_maxrss`` for the reaped ones), so a
leak across pool generations shows up as growth from the first generation's workers to the last's.
Writes OUT/sweep_soak.json and prints a summary. Not a timed test (tests/netlists/test_sweep_soak.py runs a
smaller version, marked slow).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from thermotrain._args import arg_int, nonnegative_int, positive_float, positive_int


def _kib(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _children(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (from /proc; no psutil)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 1 and int(fields[1]) == parent:
                out.append(int(d.name))
    return out


class _Monitor(threading.Thread):
    """Samples every child process's peak RSS (VmHWM, KiB) every ``interval`` s; keeps the peak per pid
    and the order pids were first seen (pool generations start in order)."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak: dict[int, int] = {}
        self.first_seen: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.is_set():
            for pid in _children(me):
                hwm = _kib(Path(f"/proc/{pid}/status"), "VmHWM")
                if hwm is None:
                    continue
                self.first_seen.setdefault(pid, time.perf_counter())
                self.peak[pid] = max(self.peak.get(pid, 0), hwm)
            self.stop.wait(self.interval)


def soak(
    runs: int = 100,
    workers: int = 2,
    tasks_per_worker: int = 10,
    size: int = 4,
    duration_tau: float = 100.0,
    crash_run: int | None = None,
) -> dict[str, Any]:
    """Run ``runs`` file-noise transients of the ``size``-cell rc8 array (``duration_tau`` τ each) with
    run_many on ``workers`` processes recycled every ``tasks_per_worker`` runs; the run ``crash_run``
    (default: the middle one; -1: none) kills its worker once. Returns the measured figures."""
    from thermotrain.circuits import preset
    from thermotrain.netlists import SpiceJob, Transient, write_netlist
    from thermotrain.netlists._sweep import InjectCrash, run_many, token_file

    circuit = preset("rc8", size=size).build(0)
    step = circuit.noise_interval / 2
    stop = duration_tau * circuit.time_constant
    jobs = [
        SpiceJob(
            write_netlist(circuit, noise="file", seed=k + 1, duration=stop + 3 * step), step=step, stop=stop
        )
        for k in range(runs)
    ]
    crash_run = runs // 2 if crash_run is None else crash_run
    monitor = _Monitor()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sweep-soak-") as tmp:
        token = token_file(tmp) if crash_run >= 0 else None
        fn = InjectCrash(token, seeds=(crash_run + 1,)) if token else InjectCrash("", seeds=())
        monitor.start()
        t0 = time.perf_counter()
        results = run_many(jobs, progress=False, workers=workers, tasks_per_worker=tasks_per_worker, fn=fn)
        wall = time.perf_counter() - t0
        monitor.stop.set()
        monitor.join()
        crashed = token is not None and not Path(token).exists()
    ok = [r for r in results if isinstance(r, Transient)]
    lost = [i for i, r in enumerate(results) if not isinstance(r, Transient)]
    pids = sorted(monitor.peak, key=monitor.first_seen.__getitem__)
    peaks = [monitor.peak[p] / 1024 for p in pids]
    k = max(1, workers)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "runs": runs,
        "workers": workers,
        "tasks_per_worker": tasks_per_worker,
        "array": f"rc8 preset, N = {size}, {duration_tau:g} tau per run, {jobs[0].stop / step:.0f} samples",
        "wall_s": wall,
        "runs_ok": len(ok),
        "runs_lost": len(lost),
        "lost_indices": lost,
        "crash_injected_at_run": crash_run if crash_run >= 0 else None,
        "crash_happened": crashed,
        "crash_survived": crashed and not lost,
        "worker_processes_seen": len(pids),
        "peak_rss_worker_mb": max(peaks) if peaks else None,
        "peak_rss_first_generation_mb": max(peaks[:k]) if peaks else None,
        "peak_rss_last_generation_mb": max(peaks[-k:]) if peaks else None,
        "peak_rss_reaped_children_mb": children,
        "peak_rss_parent_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ngspice_s_per_run_mean": sum(r.wall_s for r in ok) / max(1, len(ok)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for sweep_soak.json")
    p.add_argument("--runs", type=positive_int, default=100, help="SPICE runs in the sweep (count)")
    p.add_argument("--workers", type=positive_int, default=2, help="worker processes (count)")
    p.add_argument(
        "--tasks-per-worker",
        type=positive_int,
        default=10,
        help="runs per worker before it is recycled (count)",
    )
    p.add_argument("--size", type=arg_int(1, 64), default=4, help="cells of the rc8-preset array (count)")
    p.add_argument("--duration", type=positive_float, default=100.0, help="simulated time per run (tau)")
    p.add_argument(
        "--crash-run",
        type=nonnegative_int,
        default=None,
        help="run whose worker is killed once (index; default: middle)",
    )
    p.add_argument("--no-crash", action="store_true", help="inject no crash")
    args = p.parse_args()
    from thermotrain._report import write_json

    args.out.mkdir(parents=True, exist_ok=True)
    result = soak(
        args.runs,
        args.workers,
        args.tasks_per_worker,
        args.size,
        args.duration,
        -1 if args.no_crash else args.crash_run,
    )
    write_json(args.out / "sweep_soak.json", result)
    for key, value in result.items():
        print(f"{key:32} {value}")
    print(f"-> {args.out / 'sweep_soak.json'}")


if __name__ == "__main__":
    main()
