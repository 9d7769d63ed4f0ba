"""Time per inverse: the fast covariance readout (models._fast_readout) against the trajectory path of
``models.inverse``, on one thread.

For each size n, A is a random SPD matrix with eigenvalues spread geometrically over [λ_min, 1]; the burn-in,
window and sample interval are those of ``models._readout.covariance_times(λ_min, n, target_error)``, so S
(the number of samples) is what ``analog_time="auto"`` would run. Backends: ``ideal`` (the ideal device,
trajectory sampled exactly in A's eigenbasis) and ``rc`` (an uncalibrated RC profile's surrogate, a
non-normal drift; the fast path reads ``inst.sde`` through ``inst.observe``). Each timing is the best of
``--repeats`` calls.

    python benchmarks/fast_readout.py --out runs/bench --sizes 65 257 785

Writes OUT/fast_readout.json: per backend and n, S, seconds per inverse on each path and their ratio
(trajectory / fast), and the relative Frobenius error of both estimates against A⁻¹ (one draw each).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _bench import best_of, spd_geometric


def main(argv: list[str] | None = None) -> int:
    from thermotrain._args import check_float, check_int
    from thermotrain._report import table, write_json
    from thermotrain.models import HardwareProfile, inverse
    from thermotrain.models._fast_readout import sample_covariance_readout
    from thermotrain.models._readout import covariance_times

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (fast_readout.json)")
    p.add_argument("--sizes", type=int, nargs="+", default=[65, 257, 785], help="matrix sizes n")
    p.add_argument("--backends", nargs="+", default=["ideal", "rc"], choices=["ideal", "rc"])
    p.add_argument("--target-error", type=float, default=0.3, help="readout target relative error")
    p.add_argument("--lambda-min", type=float, default=0.05, help="smallest eigenvalue of A (1/tau)")
    p.add_argument("--kappa0", type=float, default=1e-2, help="noise level of the device")
    p.add_argument("--repeats", type=int, default=2, help="timings per path (best taken)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    eps = check_float("--target-error", a.target_error, minimum=0.0, strict_min=True, maximum=10.0)
    lam_min = check_float("--lambda-min", a.lambda_min, minimum=0.0, strict_min=True, maximum=1.0)
    kappa0 = check_float("--kappa0", a.kappa0, minimum=0.0, strict_min=True)
    repeats = check_int("--repeats", a.repeats, minimum=1)
    for n in a.sizes:
        check_int("--sizes", n, minimum=2, maximum=5000)
    torch.set_num_threads(1)
    rows, results = [], []
    for backend in a.backends:
        for n in a.sizes:
            A = spd_geometric(n, lam_min, a.seed + n)
            burn, window, dt, predicted = covariance_times(lam_min, n, eps)
            S = int(round(window / dt)) + 1
            t_total = burn + (S - 1) * dt
            exact = torch.linalg.inv(A)
            g = torch.Generator().manual_seed(a.seed)
            if backend == "ideal":
                dev = "ideal"

                def fast(A=A, dt=dt, S=S, burn=burn, g=g):
                    return (
                        sample_covariance_readout(
                            A, dt=dt, samples=S, burn_in=burn, kappa0=kappa0, generator=g
                        )
                        / kappa0
                    )
            else:
                dev = HardwareProfile.from_spec("rc", kappa0=kappa0)

                def fast(A=A, dt=dt, S=S, burn=burn, g=g, dev=dev):
                    inst = dev.instantiate(A, generator=g)
                    C = sample_covariance_readout(
                        inst.sde, dt=dt, samples=S, burn_in=burn, observe=inst.observe, generator=g
                    )
                    return inst.matrix_scale * C / inst.kappa0

            def traj(A=A, dt=dt, burn=burn, t_total=t_total, g=g, dev=dev):
                return inverse(
                    A, backend=dev, t=t_total, dt=dt, burn_in=burn, kappa0=kappa0, generator=g
                ).inverse

            t_fast, inv_fast = best_of(fast, repeats)
            t_traj, inv_traj = best_of(traj, repeats)

            def err(X: torch.Tensor, exact: torch.Tensor = exact) -> float:
                return float(torch.linalg.matrix_norm(X - exact) / torch.linalg.matrix_norm(exact))

            res = {
                "backend": backend,
                "n": n,
                "samples": S,
                "dt_tau": dt,
                "burn_in_tau": burn,
                "predicted_error": predicted,
                "seconds_trajectory": t_traj,
                "seconds_fast": t_fast,
                "ratio_trajectory_over_fast": t_traj / t_fast,
                "rel_frobenius_error_trajectory": err(inv_traj),
                "rel_frobenius_error_fast": err(inv_fast),
            }
            results.append(res)
            rows.append(
                [
                    backend,
                    n,
                    S,
                    f"{t_traj:.3g}",
                    f"{t_fast:.3g}",
                    f"{t_traj / t_fast:.1f}",
                    f"{res['rel_frobenius_error_trajectory']:.3f}",
                    f"{res['rel_frobenius_error_fast']:.3f}",
                ]
            )
            print(f"{backend} n={n} S={S}: trajectory {t_traj:.3g} s, fast {t_fast:.3g} s", flush=True)
    out = {
        "settings": {
            "target_error": eps,
            "lambda_min": lam_min,
            "kappa0": kappa0,
            "threads": 1,
            "repeats": repeats,
            "seed": a.seed,
        },
        "results": results,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    write_json(a.out / "fast_readout.json", out)
    print(table(rows, ["backend", "n", "S", "traj s", "fast s", "ratio", "err traj", "err fast"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
