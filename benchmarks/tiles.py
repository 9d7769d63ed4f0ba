"""Time per inverse on one thread: the block-diagonal tiled inverse (one batched draw of the covariance
readout's law per round) against the monolithic device's trajectory and the digital Cholesky inverse.

For each size n, A is a random SPD matrix with eigenvalues spread geometrically over [λ_min, 1] (dense: every
tile is coupled to every other, the worst case for the block-diagonal approximation). The device runs
``analog_time="auto"`` at ``--target-error`` (the planner's burn-in, window and interval per round). Rows:

- ``tiled``: :func:`thermotrain.models.tiled_inverse` (mapping block-diagonal, simulator law), per
  ``--cells-per-tile``;
- ``monolithic``: :func:`thermotrain.models.inverse` on the whole of A, trajectory simulator (the reference;
  only for n <= ``--monolithic-max-n``: a 4 609-cell trajectory is what made the CNN's rows unaffordable);
- ``digital``: ``torch.cholesky_inverse(torch.linalg.cholesky(A))``.

Backends: ``ideal`` and ``rc8`` (the shipped profile; its tiles as ``--cells-per-tile`` says). Each timing is
the best of ``--repeats``.

    python benchmarks/tiles.py --out runs/bench-tiles --sizes 785 4609 --cells-per-tile 64 256

Writes OUT/tiles.json: per backend, n and tile size, the seconds of each path, the ratios tiled/digital and
monolithic/digital, the analog time (total and the chip's wall time, τ), values loaded/read, and the
relative Frobenius error of the tiled inverse against A⁻¹ and against the exact block-diagonal inverse
(what the readout adds to what the mapping drops).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _bench import best_of, spd_geometric


def _rel(X: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(X - ref) / torch.linalg.matrix_norm(ref))


def main(argv: list[str] | None = None) -> int:
    from thermotrain._args import arg_float, arg_int, arg_seed
    from thermotrain._report import table, write_json
    from thermotrain.models import ReadoutConfig, find_profile, inverse, tile_blocks, tiled_inverse

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (tiles.json)")
    p.add_argument("--sizes", type=arg_int(2, 10_000), nargs="+", default=[785, 4609], help="matrix sizes n")
    p.add_argument(
        "--cells-per-tile", type=arg_int(1, 10_000), nargs="+", default=[64, 256], help="tile sizes (cells)"
    )
    p.add_argument("--backends", nargs="+", default=["ideal", "rc8"], choices=["ideal", "rc8"])
    p.add_argument(
        "--target-error", type=arg_float(0.0, 10.0, strict_min=True), default=0.1, help="readout target error"
    )
    p.add_argument(
        "--lambda-min",
        type=arg_float(0.0, 1.0, strict_min=True),
        default=0.05,
        help="smallest eigenvalue (1/tau)",
    )
    p.add_argument(
        "--monolithic-max-n",
        type=arg_int(0, 10_000),
        default=1000,
        help="largest n run on the monolithic device",
    )
    p.add_argument("--repeats", type=arg_int(1, 100), default=2, help="timings per path (best taken)")
    p.add_argument("--seed", type=arg_seed(), default=0, help="matrix and noise seed")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = ReadoutConfig(target_error=a.target_error)
    results, rows = [], []
    for n in a.sizes:
        A = spd_geometric(n, a.lambda_min, a.seed + n)
        t_dig, exact = best_of(lambda A=A: torch.cholesky_inverse(torch.linalg.cholesky(A)), a.repeats)
        for name in a.backends:
            backend = "ideal" if name == "ideal" else find_profile(name)
            mono = None
            if n <= a.monolithic_max_n:
                g = torch.Generator().manual_seed(a.seed)
                t_mono, r_mono = best_of(
                    lambda A=A, b=backend, g=g: inverse(
                        A, backend=b, config=cfg, generator=g, simulator="trajectory"
                    ),
                    1,
                )
                mono = {
                    "seconds": t_mono,
                    "over_digital": t_mono / t_dig,
                    "analog_time_tau": r_mono.analog_time_tau,
                    "values_loaded": r_mono.values_loaded,
                    "values_read": r_mono.values_read,
                    "rel_error_vs_inverse": _rel(r_mono.inverse, exact),
                }
                print(
                    f"{name} n={n} monolithic trajectory {t_mono:.3g} s ({t_mono / t_dig:.1f}x digital)",
                    flush=True,
                )
            for c in a.cells_per_tile:
                if c >= n:
                    continue
                g = torch.Generator().manual_seed(a.seed)
                t_tile, r = best_of(
                    lambda A=A, b=backend, c=c, g=g: tiled_inverse(
                        A, backend=b, cells_per_tile=c, config=cfg, generator=g, simulator="law"
                    ),
                    a.repeats,
                )
                blocks = tile_blocks(n, c)
                block_exact = torch.block_diag(*[torch.linalg.inv(A[s, s]) for s in blocks])
                res = {
                    "backend": name,
                    "n": n,
                    "cells_per_tile": c,
                    "blocks": r.blocks,
                    "seconds_digital": t_dig,
                    "seconds_tiled": t_tile,
                    "tiled_over_digital": t_tile / t_dig,
                    "monolithic": mono,
                    "monolithic_over_tiled": None if mono is None else mono["seconds"] / t_tile,
                    "analog_time_tau": r.analog_time_tau,
                    "wall_time_tau": r.wall_time_tau,
                    "values_loaded": r.values_loaded,
                    "values_read": r.values_read,
                    "predicted_error": max(pl.predicted_error for pl in r.plans if pl is not None),
                    "rel_error_vs_inverse": _rel(r.value, exact),
                    "rel_error_vs_block_inverse": _rel(r.value, block_exact),
                    "rel_error_block_inverse_vs_inverse": _rel(block_exact, exact),
                    "notes": list(r.notes),
                }
                results.append(res)
                rows.append(
                    [
                        name,
                        n,
                        c,
                        f"{t_dig:.3g}",
                        f"{t_tile:.3g}",
                        f"{t_tile / t_dig:.2f}",
                        "-" if mono is None else f"{mono['seconds']:.3g}",
                        "-" if mono is None else f"{mono['over_digital']:.1f}",
                        f"{res['rel_error_vs_block_inverse']:.3f}",
                        f"{res['rel_error_block_inverse_vs_inverse']:.3f}",
                    ]
                )
                print(f"{name} n={n} c={c}: tiled {t_tile:.3g} s, digital {t_dig:.3g} s", flush=True)
    out = {
        "settings": {
            "target_error": a.target_error,
            "lambda_min": a.lambda_min,
            "threads": 1,
            "repeats": a.repeats,
            "seed": a.seed,
        },
        "results": results,
    }
    write_json(a.out / "tiles.json", out)
    print(
        table(
            rows,
            [
                "backend",
                "n",
                "c",
                "digital s",
                "tiled s",
                "tiled/dig",
                "mono s",
                "mono/dig",
                "err vs blk",
                "blk vs inv",
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
