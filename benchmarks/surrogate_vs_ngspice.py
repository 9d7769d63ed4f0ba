"""The exact linear-SDE surrogate against ngspice for the same simulated duration (goal: >= 1e4x faster at
N = 32-64).

    python benchmarks/surrogate_vs_ngspice.py [--sizes 8 16 32 64] [--duration 20] [--out runs/bench]

Per N, on the dense ``rc8`` preset (RC integrator array, all-to-all coupling), ``spec.build(0)``:

- ngspice: ``write_netlist(noise="file", seed=1)`` then ``run_transient(step=NT/2, stop=duration·tau)``;
  wall clock of the run (the netlist writing is reported separately).
- surrogate: ``linear_sde(circuit)`` (reported separately as the model set-up) converted to a
  ``thermotrain.models.LinearSDE`` in units of tau (M·tau, D·tau, B_z u·tau), started at the DC state, and
  ``simulate`` for the same duration on (a) the SPICE output grid (step NT/2) and (b) a 0.5 tau grid (the
  sampler is exact at any step). Timed: the conversion plus ``simulate`` (transition, Cholesky, draws,
  stepping), min of ``--repeats`` after a warm-up call; one torch thread.
- sanity (not timed): the surrogate's exact stationary covariance (torch Lyapunov) against the circuit
  theory's white-noise Lyapunov solution, and the variance scale tr(Σ̂)/tr(Σ) of the node outputs after a
  burn-in, for the SPICE trace (against the sampled-noise theory, NT linear interpolation, observed at
  phases 0 and 1/2) and for the surrogate (against the white-noise theory, in which it is exact); the
  spread of that ratio over ``--replicas`` surrogate runs of the same length gives its expected scatter.

Writes OUT/surrogate_vs_ngspice.json and OUT/surrogate_vs_ngspice.png and prints a table. Not a timed test.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from thermotrain._report import pyplot, table, write_json


def build_circuit(n: int):
    """``preset("rc8", size=n).build(0)`` (the preset drops entries below 1e-3 max|A|, which no realistic
    crossbar resistor could hold)."""
    from thermotrain.circuits import preset

    spec = preset("rc8", size=n)
    return spec, spec.build(0)


def to_model_sde(sde, tau: float):
    """The circuit's SDE (a ``thermotrain.circuits.CircuitSDE``: dz = (M z + B_z u) dt + Q dW, SI units) in
    units of tau, as a torch ``thermotrain.models.LinearSDE``."""
    from thermotrain.models import LinearSDE

    t = lambda a: torch.as_tensor(np.asarray(a, float) * tau, dtype=torch.float64)  # noqa: E731
    return LinearSDE(t(sde.M), t(sde.D_noise), t(sde.drift_offset))


def variance_scale(Y: np.ndarray, cov: np.ndarray) -> float:
    """tr(sample covariance of Y [T, P]) / tr(cov)."""
    return float(np.trace(np.cov(Y.T)) / np.trace(cov))


def time_min(fn, repeats: int) -> tuple[float, object]:
    out, best = None, float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(n: int, duration_tau: float, repeats: int, replicas: int, burn_tau: float) -> dict:
    from thermotrain.circuits import Theory, linear_sde
    from thermotrain.models import simulate, stationary_covariance
    from thermotrain.netlists import run_transient, write_netlist

    spec, circuit = build_circuit(n)
    tau, nt = circuit.time_constant, circuit.noise_interval
    stop = duration_tau * tau
    t0 = time.perf_counter()
    sde = linear_sde(circuit)
    model_s = time.perf_counter() - t0
    theory = Theory(sde, nt)

    t0 = time.perf_counter()
    nl = write_netlist(circuit, noise="file", seed=1, duration=stop)
    netlist_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr = run_transient(nl, step=nt / 2, stop=stop)
    spice_s = time.perf_counter() - t0

    z0 = torch.as_tensor(theory.state_mean, dtype=torch.float64)
    steps_a = len(tr.time) - 1
    dt_a = (nt / 2) / tau
    dt_b = 0.5
    steps_b = round(duration_tau / dt_b)

    def surrogate(dt: float, steps: int, seed: int = 0, batch: int = 1):
        g = torch.Generator().manual_seed(seed)
        return simulate(to_model_sde(sde, tau), z0, dt, steps, generator=g, batch=batch)

    surrogate(dt_a, steps_a)  # warm-up (first torch calls)
    sur_a_s, Xa = time_min(lambda: surrogate(dt_a, steps_a), repeats)
    sur_b_s, Xb = time_min(lambda: surrogate(dt_b, steps_b), repeats)
    assert Xa.shape == (1, steps_a + 1, len(sde.states)) and Xb.shape == (1, steps_b + 1, len(sde.states))

    # sanity: exact model-level agreement, then the variance scale of each trace after the burn-in
    Sig_model = stationary_covariance(to_model_sde(sde, tau).M, to_model_sde(sde, tau).D).numpy()
    Sig_white = theory.state_covariance_white
    lyap_rel = float(np.linalg.norm(Sig_model - Sig_white) / np.linalg.norm(Sig_white))
    P = [sde.outputs.index(p) for p in tr.probes]
    C, Du = sde.C[P], (sde.D @ sde.u)[P]
    cov_white = theory.covariance(phases=None)[np.ix_(P, P)]
    cov_sampled = theory.covariance(phases=(0.0, 0.5))[np.ix_(P, P)]
    k0 = int(round(burn_tau / dt_a))
    spice_scale = variance_scale(np.asarray(tr.values)[k0:], cov_sampled)
    Xr = surrogate(dt_a, steps_a, seed=1, batch=replicas).numpy()[:, k0:]  # [R, T, states]
    scales = [variance_scale(X @ C.T + Du, cov_white) for X in Xr]
    spice_mean_err = float(np.abs(np.asarray(tr.values).mean(0) - theory.mean[P]).max())
    return {
        "N": n,
        "states": len(sde.states),
        "tau_s": tau,
        "noise_interval_s": nt,
        "duration_tau": duration_tau,
        "spice_points": steps_a + 1,
        "ngspice_version": tr.ngspice_version,
        "engine": tr.engine,
        "model_setup_s": model_s,
        "netlist_s": netlist_s,
        "ngspice_s": spice_s,
        "surrogate_spice_grid": {"dt_tau": dt_a, "steps": steps_a, "wall_s": sur_a_s},
        "surrogate_half_tau_grid": {"dt_tau": dt_b, "steps": steps_b, "wall_s": sur_b_s},
        "speedup_spice_grid": spice_s / sur_a_s,
        "speedup_half_tau_grid": spice_s / sur_b_s,
        "speedup_spice_grid_with_setups": (spice_s + netlist_s) / (sur_a_s + model_s),
        "sanity": {
            "lyapunov_rel_error_torch_vs_theory": lyap_rel,
            "burn_in_tau": burn_tau,
            "spice_variance_scale": spice_scale,
            "surrogate_variance_scale": scales[0],
            "surrogate_variance_scale_replicas_mean": float(np.mean(scales)),
            "surrogate_variance_scale_replicas_std": float(np.std(scales, ddof=1)),
            "replicas": replicas,
            "sampled_over_white_theory_trace": float(np.trace(cov_sampled) / np.trace(cov_white)),
            "spice_mean_max_abs_error_V": spice_mean_err,
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64], help="array sizes N (cells)")
    p.add_argument("--duration", type=float, default=20.0, help="simulated time per run (tau)")
    p.add_argument("--burn-in", type=float, default=5.0, help="discarded start of each trace (tau)")
    p.add_argument("--repeats", type=int, default=5, help="surrogate timing repeats (min taken)")
    p.add_argument("--replicas", type=int, default=32, help="surrogate runs for the variance-scale spread")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="output directory")
    args = p.parse_args(argv)
    if not 0 <= args.burn_in < args.duration:
        p.error("--burn-in must be in [0, --duration).")
    torch.set_num_threads(1)

    rows = []
    for n in args.sizes:
        r = measure(n, args.duration, args.repeats, args.replicas, args.burn_in)
        rows.append(r)
        s = r["sanity"]
        print(
            f"N={n:3d} ngspice {r['ngspice_s']:7.2f} s  surrogate {r['surrogate_spice_grid']['wall_s'] * 1e3:7.2f} ms"
            f" (NT/2 grid) {r['surrogate_half_tau_grid']['wall_s'] * 1e3:6.2f} ms (0.5 tau)  "
            f"speed-up {r['speedup_spice_grid']:.3g}x / {r['speedup_half_tau_grid']:.3g}x  "
            f"var scale spice {s['spice_variance_scale']:.3f} surrogate {s['surrogate_variance_scale']:.3f}",
            flush=True,
        )
    result = {
        "benchmark": "surrogate_vs_ngspice",
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "preset": "rc8",
        "duration_tau": args.duration,
        "goal": "ngspice / surrogate >= 1e4 at N = 32-64",
        "runs": rows,
    }
    out = write_json(args.out / "surrogate_vs_ngspice.json", result)
    print()
    print(
        table(
            [
                (
                    r["N"],
                    r["ngspice_s"],
                    r["surrogate_spice_grid"]["wall_s"],
                    r["surrogate_half_tau_grid"]["wall_s"],
                    r["speedup_spice_grid"],
                    r["speedup_half_tau_grid"],
                    r["sanity"]["lyapunov_rel_error_torch_vs_theory"],
                    r["sanity"]["spice_variance_scale"],
                    f"{r['sanity']['surrogate_variance_scale_replicas_mean']:.3f}"
                    f"±{r['sanity']['surrogate_variance_scale_replicas_std']:.3f}",
                )
                for r in rows
            ],
            (
                "N",
                "ngspice (s)",
                "sur. NT/2 (s)",
                "sur. 0.5tau (s)",
                "x NT/2",
                "x 0.5tau",
                "Lyap rel err",
                "var scale spice",
                "var scale sur.",
            ),
        )
    )
    print(f"\nload average {os.getloadavg()}, torch threads {torch.get_num_threads()}\nJSON: {out}")
    plt = pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    Ns = [r["N"] for r in rows]
    ax[0].loglog(Ns, [r["ngspice_s"] for r in rows], "o-", label="ngspice")
    ax[0].loglog(Ns, [r["surrogate_spice_grid"]["wall_s"] for r in rows], "s--", label="surrogate, NT/2 grid")
    ax[0].loglog(
        Ns, [r["surrogate_half_tau_grid"]["wall_s"] for r in rows], "^:", label="surrogate, 0.5 tau grid"
    )
    ax[0].set_ylabel(f"wall time for {args.duration:g} tau (s)")
    ax[1].loglog(Ns, [r["speedup_spice_grid"] for r in rows], "s--", label="NT/2 grid")
    ax[1].loglog(Ns, [r["speedup_half_tau_grid"] for r in rows], "^:", label="0.5 tau grid")
    ax[1].axhline(1e4, color="k", lw=0.8, label="goal 1e4")
    ax[1].set_ylabel("ngspice / surrogate")
    for a in ax:
        a.set_xlabel("cells N")
        a.legend()
        a.grid(alpha=0.3, which="both")
    fig.suptitle("exact linear-SDE surrogate vs ngspice, dense rc8 array, 1 torch thread")
    fig.tight_layout()
    fig.savefig(args.out / "surrogate_vs_ngspice.png", dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
