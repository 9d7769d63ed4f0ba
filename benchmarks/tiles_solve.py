"""Solve mode on tiles: outer iterations and seconds per solve of Gauss–Seidel and tile-preconditioned CG,
against the digital solve and the digital product with a precomputed inverse (what digital K-FAC does per step).

The matrix is a real K-FAC input factor: the damped second moment of ``--examples`` Fashion-MNIST images (784
pixels + bias), A = XᵀX/m + λI, scaled as ``AnalogSolver`` scales it (Gershgorin bound of λ_max → 1); the
right-hand sides are ``--rhs`` Gaussian columns (the output width of the layer). Each mapping runs on the
shipped rc8 profile's 64-cell tiles (κ0 = 1e-3, the benchmark's solve setting in ``kfac_overhead.py``) to each
``--tols``; a :class:`thermotrain.models.TileCache` keeps the tiles' readout laws, as the solver does between
two factor refreshes: the first call builds them, the second (timed separately) reuses them.

    python benchmarks/tiles_solve.py --out runs/bench-tiles-solve

Writes OUT/tiles_solve.json: per mapping and tolerance the iterations, the relative residual and error against
the digital solution, seconds per solve (first and cached), and the ratios to the digital product and solve.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from _bench import best_of

from thermotrain import models
from thermotrain.training._data import load_dataset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (path)")
    p.add_argument("--examples", type=int, default=4000, help="Fashion-MNIST images in the factor (count)")
    p.add_argument("--damping", type=float, default=0.3, help="λ added to the factor (K-FAC's default)")
    p.add_argument("--rhs", type=int, default=512, help="right-hand sides per solve (count)")
    p.add_argument("--tols", type=float, nargs="+", default=[0.1, 0.01], help="relative residual targets")
    p.add_argument("--mappings", nargs="+", default=["pcg", "gauss-seidel"], help="outer iterations (names)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (count)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist", subset=args.examples)
    X = data.x_train.reshape(len(data.x_train), -1)
    X = torch.cat([X, torch.ones(len(X), 1)], dim=1)
    A = X.T @ X / len(X) + args.damping * torch.eye(X.shape[1])
    s = 1.0 / float(A.abs().sum(dim=1).max())
    A = A * s
    B = torch.randn(A.shape[0], args.rhs, generator=torch.Generator().manual_seed(1))
    ref = torch.linalg.solve(A.double(), B.double()).float()
    evals = torch.linalg.eigvalsh(A.double())
    Ainv = torch.linalg.inv(A)
    product_s = best_of(lambda: Ainv @ B, 3)[0]
    solve_s = best_of(lambda: torch.linalg.solve(A, B), 3)[0]
    prof = models.find_profile("rc8")
    cfg = prof.recommended_readout.with_(kappa0=1e-3)
    rows = []
    for mapping in args.mappings:
        for tol in args.tols:
            cache = models.TileCache()
            kw = dict(
                backend=prof, mapping=mapping, tol=tol, max_iters=500, patience=50, cache=cache, config=cfg
            )
            t0 = time.perf_counter()
            r = models.tiled_solve(A, B, lambda_floor=args.damping * s, **kw)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            models.tiled_solve(A, B, lambda_floor=args.damping * s, **kw)
            cached = time.perf_counter() - t0
            row = {
                "mapping": mapping,
                "tol": tol,
                "iterations": r.iterations,
                "converged": r.converged,
                "residual": r.residual,
                "error_vs_digital": float((r.value - ref).norm() / ref.norm()),
                "first_s": first,
                "cached_s": cached,
                "cached_over_product": cached / product_s,
                "cached_over_digital_solve": cached / solve_s,
                "analog_time_tau": r.analog_time_tau,
                "wall_time_tau": r.wall_time_tau,
                "digital_flops": r.digital_flops,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {
        "n": A.shape[0],
        "condition_number": float(evals[-1] / evals[0]),
        "rhs": args.rhs,
        "digital_product_s": product_s,
        "digital_solve_s": solve_s,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tiles_solve.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
