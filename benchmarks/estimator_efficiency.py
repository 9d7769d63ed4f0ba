"""Error of the thermodynamic time-average solve against analog time T, versus the theory.

Device (time in τ): dx = -(A x - b) dt + sqrt(2κ0) dW, started at x0 = 0, burned in for ``--burn-in-relax``
relaxation times 1/λ_min, then averaged over T. Theory (T ≫ relaxation):

    E‖x̄ - A⁻¹b‖² ≈ 2 κ0 tr(A⁻²) / T        (the thermodynamic-linear-algebra error law)

For each T the script draws ``--draws`` independent devices (columns of b) with
``thermotrain.models.solve(..., backend="ideal", readout="average")``, whose time average is sampled in one
shot from its exact law, and reports the empirical mean squared error, its ratio to the asymptotic law
(goal: within 10 % for T ≫ relaxation) and to the exact finite-T value (closed form). At the shortest T it
also averages brute-force exactly-stepped paths (trapezoid rule, ``--step-dt``) as an independent check of the
one-shot sampler.

Usage: python benchmarks/estimator_efficiency.py [--n 32] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--lam-min", type=float, default=0.1, help="smallest eigenvalue of A (1/τ)")
    ap.add_argument("--lam-max", type=float, default=1.0)
    ap.add_argument("--kappa0", type=float, default=1e-2)
    ap.add_argument(
        "--T-relax",
        type=float,
        nargs="+",
        default=[3, 10, 30, 100, 300, 1000],
        help="averaging windows in units of the relaxation time 1/λ_min",
    )
    ap.add_argument("--burn-in-relax", type=float, default=20.0)
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--step-draws", type=int, default=200)
    ap.add_argument("--step-dt", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args(argv)

    import torch

    from thermotrain.models import LinearSDE, simulate, solve, time_average_moments

    torch.set_num_threads(args.threads)
    F64 = torch.float64
    g = torch.Generator().manual_seed(args.seed)
    n = args.n
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    lam = torch.logspace(math.log10(args.lam_min), math.log10(args.lam_max), n, dtype=F64)
    A = Q @ torch.diag(lam) @ Q.T
    A = 0.5 * (A + A.T)
    b = torch.randn(n, generator=g, dtype=F64)
    xs = torch.linalg.solve(A, b)
    trA2 = float((1 / lam**2).sum())
    relax = 1 / args.lam_min
    burn = args.burn_in_relax * relax
    sde = LinearSDE(-A, 2 * args.kappa0 * torch.eye(n, dtype=F64), b)

    rows = []
    for Tr in args.T_relax:
        T = Tr * relax
        t0 = time.perf_counter()
        r = solve(
            A,
            b[:, None].expand(n, args.draws),
            backend="ideal",
            t=burn + T,
            kappa0=args.kappa0,
            readout="average",
            burn_in=burn,
            generator=g,
        )
        wall = time.perf_counter() - t0
        sq = ((r.x - xs[:, None]) ** 2).sum(0)
        mse, se = float(sq.mean()), float(sq.std() / math.sqrt(args.draws))
        theory = 2 * args.kappa0 * trA2 / T
        m, C = time_average_moments(sde, None, burn, T)
        exact = float(torch.trace(C) + ((m - xs) ** 2).sum())
        rows.append(
            {
                "T_tau": T,
                "T_relax": Tr,
                "mse": mse,
                "mse_se": se,
                "theory_2k0trA-2_over_T": theory,
                "ratio_to_theory": mse / theory,
                "exact_finite_T": exact,
                "ratio_to_exact": mse / exact,
                "analog_time_tau": r.analog_time_tau,
                "wall_s": wall,
            }
        )

    # independent check of the one-shot sampler: brute-force exactly-stepped paths, trapezoid average
    T = args.T_relax[0] * relax
    steps_burn, steps = round(burn / args.step_dt), round(T / args.step_dt)
    X = simulate(sde, None, args.step_dt, steps_burn + steps, generator=g, batch=args.step_draws)[
        :, steps_burn:
    ]
    avg = (X[:, 1:].sum(1) + X[:, :-1].sum(1)) * (0.5 * args.step_dt / T)
    sq = ((avg - xs) ** 2).sum(1)
    stepping = {
        "T_tau": T,
        "draws": args.step_draws,
        "dt": args.step_dt,
        "mse": float(sq.mean()),
        "mse_se": float(sq.std() / math.sqrt(args.step_draws)),
        "exact_finite_T": rows[0]["exact_finite_T"],
    }

    print(
        f"\nTime-average solve, n = {n}, spectrum [{args.lam_min}, {args.lam_max}] (relaxation {relax:g} τ), "
        f"κ0 = {args.kappa0}, {args.draws} devices per T, burn-in {burn:g} τ"
    )
    print(
        f"{'T/relax':>8} {'T (τ)':>9} {'MSE':>11} {'± SE':>10} {'2κ0tr(A⁻²)/T':>14} {'ratio':>7} "
        f"{'exact(T)':>11} {'ratio':>7}"
    )
    for r in rows:
        print(
            f"{r['T_relax']:>8g} {r['T_tau']:>9g} {r['mse']:>11.4e} {r['mse_se']:>10.2e} "
            f"{r['theory_2k0trA-2_over_T']:>14.4e} {r['ratio_to_theory']:>7.3f} {r['exact_finite_T']:>11.4e} "
            f"{r['ratio_to_exact']:>7.3f}"
        )
    print(
        f"brute-force stepping check at T = {T:g} τ ({args.step_draws} paths, dt = {args.step_dt} τ): "
        f"MSE {stepping['mse']:.4e} ± {stepping['mse_se']:.1e} vs exact {stepping['exact_finite_T']:.4e}"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "estimator_efficiency.json"
    path.write_text(
        json.dumps(
            {
                "benchmark": "estimator_efficiency",
                "args": vars(args),
                "rows": rows,
                "stepping_check": stepping,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
