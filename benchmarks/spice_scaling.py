"""How ngspice scales with array size: wall time and peak memory per simulated tau, shared vs batch mode,
model (sympy/MNA) and netlist set-up time separately, and the speed-up of a 2-worker sweep over 1 worker.

    python benchmarks/spice_scaling.py --out runs/bench [--sizes 4 8 16 32 64] [--duration 50]

Each measurement runs in a fresh spawned process so peak memory (ru_maxrss) is its own. Writes
OUT/spice_scaling.json and OUT/spice_scaling.png and prints a table. Not a timed test.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from thermotrain._report import pyplot, table, write_json


def _setup(n: int, duration_tau: float):
    from thermotrain.circuits import Theory, linear_sde, preset
    from thermotrain.netlists import write_netlist

    t0 = time.perf_counter()
    spec = preset("rc8", size=n)
    circuit = spec.build(0)
    Theory(linear_sde(circuit), circuit.noise_interval)
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    nl = write_netlist(circuit, noise="file", seed=1, duration=duration_tau * circuit.time_constant)
    t_net = time.perf_counter() - t0
    return circuit, nl, t_model, t_net


def _measure(n: int, duration_tau: float, engine: str) -> dict:
    from thermotrain.netlists import run_transient

    circuit, nl, t_model, t_net = _setup(n, duration_tau)
    t0 = time.perf_counter()
    tr = run_transient(
        nl, step=circuit.noise_interval / 2, stop=duration_tau * circuit.time_constant, engine=engine
    )
    wall = time.perf_counter() - t0
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "N": n,
        "engine": tr.engine,
        "duration_tau": duration_tau,
        "noise_samples": int(round(duration_tau * circuit.time_constant / circuit.noise_interval)),
        "elements": len(circuit.elements),
        "model_setup_s": t_model,
        "netlist_s": t_net,
        "wall_s": wall,
        "wall_per_tau_ms": 1e3 * wall / duration_tau,
        "peak_rss_mb": (child_kb if engine == "batch" else self_kb) / 1024,
        "ngspice_version": tr.ngspice_version,
    }


def _compare_options(n: int, duration_tau: float, corner: str = "ideal") -> dict:
    """ngspice's defaults vs validate's file-noise runs (``noisy_run_mode("file")``: the noise grid since
    2026-12-06, ``noise_grid_steps`` per NT), side by side on the SAME netlist and noise, both from the
    noise-free DC point as validate's runs: wall times, their ratio, and the paired covariance difference
    against the CI95 of the estimate. The reference runs first, so the noise grid runs in a library that has
    seen '.options interp' (as in validate's workers)."""
    import numpy as np

    from thermotrain.circuits import Theory, linear_sde, preset
    from thermotrain.netlists import run_transient, write_netlist
    from thermotrain.netlists._ngspice import quiet_start
    from thermotrain.netlists._validation import noise_grid_steps, noisy_run_mode

    c = preset("rc8", size=n, corner=corner).build(0)
    stop = duration_tau * c.time_constant
    nl = write_netlist(c, noise="file", seed=5, duration=stop + c.time_constant)
    ics = quiet_start(write_netlist(c, noise="off"))
    stepping, options = noisy_run_mode("file")
    grid_steps = noise_grid_steps(c)
    out: dict = {
        "N": n,
        "corner": corner,
        "duration_tau": duration_tau,
        "stepping": stepping,
        "grid_steps_per_noise_interval": grid_steps,
        "options": options,
    }
    covs = {}
    for label, step_mode, opts in (("reference", "adaptive", {}), ("fast", stepping, options)):
        t0 = time.perf_counter()
        tr = run_transient(
            nl,
            step=c.noise_interval / 2,
            stop=stop,
            options=opts,
            stepping=step_mode,  # type: ignore[arg-type]
            grid_steps=grid_steps,
            initial_conditions=ics,
        )
        out[f"wall_{label}_s"] = time.perf_counter() - t0
        x = tr.values[tr.values.shape[0] // 20 :]
        covs[label] = np.cov(x.T, bias=True)
        out["ngspice_version"] = tr.ngspice_version
    out["paired_variance_ratio"] = float(np.trace(covs["fast"]) / np.trace(covs["reference"]))
    # the CI95 (for scale only) from the ideal corner's one-state-per-cell theory: the error budget's P^2
    # Sylvester solves on a board's amplifier states take minutes at N = 32 and hours at N = 64
    ideal = preset("rc8", size=n).build(0)
    th = Theory(linear_sde(ideal), ideal.noise_interval)
    fro = float(np.linalg.norm(Theory(linear_sde(c), c.noise_interval).covariance((0.0, 0.5))))
    out["speedup"] = out["wall_reference_s"] / out["wall_fast_s"]
    out["paired_covariance_rel_diff"] = float(np.linalg.norm(covs["fast"] - covs["reference"]) / fro)
    out["covariance_rel_error_ci95"] = th.error_budget(
        0.95 * stop, (0.0, 0.5), seed=0
    ).covariance_rel_error_ci95
    return out


def _in_fresh_process(fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(fn, *args).result()


def _sweep(n: int, duration_tau: float, jobs: int, workers: int) -> float:
    from thermotrain.circuits import preset
    from thermotrain.netlists import SpiceJob, run_many, write_netlist

    circuit = preset("rc8", size=n).build(0)
    stop = duration_tau * circuit.time_constant
    js = [
        SpiceJob(
            write_netlist(circuit, noise="file", seed=s, duration=stop),
            step=circuit.noise_interval / 2,
            stop=stop,
        )
        for s in range(jobs)
    ]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        res = run_many(js, executor=ex, progress=False)
    assert all(hasattr(r, "values") for r in res), res
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64], help="array sizes N (cells)")
    p.add_argument("--duration", type=float, default=50.0, help="simulated time per run (tau)")
    p.add_argument("--sweep-size", type=int, default=16, help="N for the 1- vs 2-worker sweep")
    p.add_argument("--sweep-jobs", type=int, default=4, help="runs in the sweep")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="output directory")
    p.add_argument("--plot", type=Path, default=None, help="also save the plot here (e.g. docs/img/...)")
    p.add_argument(
        "--compare-options",
        type=int,
        nargs="*",
        default=None,
        help="only compare ngspice's defaults vs validate's file-noise stepping at these N (same netlist and noise); JSON with the ratio",
    )
    p.add_argument(
        "--corner",
        default="ideal",
        help="non-ideality corner of --compare-options: ideal, board, integrated or a corner JSON (default ideal)",
    )
    args = p.parse_args(argv)
    if args.compare_options is not None:
        rows = [
            _in_fresh_process(_compare_options, n, args.duration, args.corner)
            for n in args.compare_options or [32, 64]
        ]
        for r in rows:
            print(
                f"N={r['N']:3d} reference {r['wall_reference_s']:7.2f} s  fast {r['wall_fast_s']:7.2f} s  "
                f"speed-up {r['speedup']:.2f}x  paired covariance diff {r['paired_covariance_rel_diff']:.2e} "
                f"variance ratio {r['paired_variance_ratio']:.5f} "
                f"(CI95 {r['covariance_rel_error_ci95']:.3g})",
                flush=True,
            )
        write_json(args.out / "spice_options.json", {"benchmark": "spice_options", "runs": rows})
        return 0

    rows = []
    for n in args.sizes:
        for engine in ("shared", "batch"):
            r = _in_fresh_process(_measure, n, args.duration, engine)
            rows.append(r)
            print(
                f"N={n:3d} {engine:6s} wall {r['wall_s']:7.2f} s  ({r['wall_per_tau_ms']:.1f} ms/tau)  "
                f"peak {r['peak_rss_mb']:.0f} MB  model {r['model_setup_s']:.2f} s  netlist {r['netlist_s']:.2f} s",
                flush=True,
            )
    t1 = _in_fresh_process(_sweep, args.sweep_size, args.duration, args.sweep_jobs, 1)
    t2 = _in_fresh_process(_sweep, args.sweep_size, args.duration, args.sweep_jobs, 2)
    result = {
        "benchmark": "spice_scaling",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "duration_tau": args.duration,
        "runs": rows,
        "sweep": {
            "N": args.sweep_size,
            "jobs": args.sweep_jobs,
            "wall_1_worker_s": t1,
            "wall_2_workers_s": t2,
            "speedup_2_over_1": t1 / t2,
        },
    }
    out = write_json(args.out / "spice_scaling.json", result)
    print()
    print(
        table(
            [
                (
                    r["N"],
                    r["engine"],
                    r["wall_per_tau_ms"],
                    r["peak_rss_mb"],
                    r["model_setup_s"],
                    r["netlist_s"],
                )
                for r in rows
            ],
            ("N", "engine", "wall per tau (ms)", "peak RSS (MB)", "model set-up (s)", "netlist (s)"),
        )
    )
    print(
        f"\n2-worker sweep of {args.sweep_jobs} runs at N={args.sweep_size}: {t1:.1f} s -> {t2:.1f} s "
        f"(speed-up {t1 / t2:.2f}x)\nJSON: {out}"
    )
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for engine, mk in (("shared", "o-"), ("batch", "s--")):
        rs = [r for r in rows if r["engine"] == engine]
        ax[0].loglog([r["N"] for r in rs], [r["wall_per_tau_ms"] for r in rs], mk, label=engine)
        ax[1].semilogx([r["N"] for r in rs], [r["peak_rss_mb"] for r in rs], mk, label=engine)
    rs = [r for r in rows if r["engine"] == "shared"]
    ax[0].loglog(
        [r["N"] for r in rs],
        [1e3 * r["model_setup_s"] / args.duration for r in rs],
        "k:",
        label="model set-up / tau",
    )
    ax[0].set_xlabel("cells N")
    ax[0].set_ylabel("wall time per simulated tau (ms)")
    ax[1].set_xlabel("cells N")
    ax[1].set_ylabel("peak RSS (MB)")
    for a in ax:
        a.legend()
        a.grid(alpha=0.3)
    fig.suptitle("ngspice transient noise, dense RC array (rc preset)")
    fig.tight_layout()
    fig.savefig(args.out / "spice_scaling.png", dpi=110)
    if args.plot:
        fig.savefig(args.plot, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
