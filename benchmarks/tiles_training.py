"""Training on the rc8 profile's tiles: the CNN and the ViT on Fashion-MNIST with Adam, digital K-FAC and
thermodynamic K-FAC on 64-cell tiles in both mappings (issue 10's accuracy study; not a timing benchmark).

Rows, each one ``thermotrain train`` run with the defaults except the flags named here:

- ``adam``: Adam (default lr).
- ``kfac-digital``: K-FAC on the exact backend (Cholesky / inverses, no device).
- ``kfac-tiles-blockdiag``: thermodynamic K-FAC on the rc8 profile's chip (its default): inverse mode, each
  factor cut into 64-cell diagonal blocks read out by covariance on the tiles — block-diagonal, an
  approximation.
- ``kfac-tiles-cg``: solve mode on the same tiles: conjugate gradients preconditioned by the tiles, the
  off-tile products digital, run to the readout's target error (0.1) — exact in the limit.

Writes ``OUT/<model>-<row>/`` (each run's own outputs), ``OUT/tiles_training.json`` (per row: final test
accuracy, wall time, analog time, values loaded/read, curves) and ``OUT/tiles_training_<model>.png`` (test
accuracy against step). Hyperparameters are the defaults (tuned on validation splits of the MLP runs,
docs/results.md), not re-tuned for these networks; one seed unless ``--seeds``.

    python benchmarks/tiles_training.py --out runs/tiles-training [--subset 10000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROWS: dict[str, list[str]] = {
    "adam": ["--optimizer", "adam"],
    "kfac-digital": ["--optimizer", "kfac", "--backend", "exact"],
    "kfac-tiles-blockdiag": ["--optimizer", "kfac", "--backend", "rc8"],
    "kfac-tiles-cg": ["--optimizer", "kfac", "--backend", "rc8", "--kfac-mode", "solve"],
}


def _curve(run: Path) -> list[tuple[int, float]]:
    pts = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") in ("eval", "epoch") and rec.get("test_accuracy") is not None:
            pts.append((int(rec["step"]), float(rec["test_accuracy"])))
    return sorted(set(pts))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (path)")
    p.add_argument("--models", nargs="+", default=["cnn", "vit"], help="networks (names)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), help="optimizer rows (names)")
    p.add_argument("--subset", type=int, default=10000, help="training examples (count; test on as many)")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training subset (count)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (integers)")
    p.add_argument("--eval-every", type=int, default=20, help="test evaluation interval (steps)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for model in args.models:
        for row in args.rows:
            for seed in args.seeds:
                name = f"{model}-{row}" + (f"-s{seed}" if len(args.seeds) > 1 else "")
                run = args.out / name
                cmd = [sys.executable, "-m", "thermotrain", "train", "--model", model, "--dataset"]
                cmd += ["fashion-mnist", "--subset", str(args.subset), "--epochs", str(args.epochs)]
                cmd += ["--seed", str(seed), "--eval-every", str(args.eval_every), "--out", str(run)]
                cmd += ["--overwrite", *ROWS[row]]
                print(f">> {name}: {' '.join(cmd[3:])}", flush=True)
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if proc.returncode != 0:
                    print(
                        f"   failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}", flush=True
                    )
                    results[name] = {"status": "failed", "error": proc.stderr.strip()[-500:]}
                    continue
                s = json.loads((run / "summary.json").read_text())
                results[name] = {
                    "model": model,
                    "row": row,
                    "seed": seed,
                    "status": s["status"],
                    "test_accuracy": s.get("test_accuracy"),
                    "steps": s.get("steps"),
                    "process_wall_s": wall,
                    "train_wall_s": s.get("wall_s"),
                    "analog_time_tau": s.get("analog_time_tau"),
                    "device_wall_time_tau": s.get("device_wall_time_tau"),
                    "values_loaded": s.get("values_loaded"),
                    "values_read": s.get("values_read"),
                    "mapping": s.get("mapping"),
                    "cells_per_tile": s.get("cells_per_tile"),
                    "tiles_used_max": (s.get("readout") or {}).get("tiles_used_max"),
                    "digital_flops_between_calls": s.get("digital_flops_between_calls"),
                    "curve": _curve(run),
                }
                print(f"   {s['status']}: test accuracy {s.get('test_accuracy')}, {wall:.0f} s", flush=True)
                (args.out / "tiles_training.json").write_text(json.dumps(results, indent=2))
    _plot(args.out, results, args.models)
    return 0


def _plot(out: Path, results: dict[str, dict], models: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for model in models:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for r in results.values():
            if r.get("model") != model or not r.get("curve"):
                continue
            steps, acc = zip(*r["curve"], strict=True)
            ax.plot(steps, [100 * a for a in acc], marker=".", label=f"{r['row']} (seed {r['seed']})")
        ax.set_xlabel("step (batch 128)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{model} on Fashion-MNIST: Adam, digital K-FAC, K-FAC on rc8's 64-cell tiles")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"tiles_training_{model}.png", dpi=120)
        plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
