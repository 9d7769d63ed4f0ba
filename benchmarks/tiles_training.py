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
- ``kfac-tiles-blockdiag-solve``: solve mode, one round of the tiles per solve (mean readout of each 64-cell
  diagonal block, the off-tile blocks dropped) — the block-diagonal approximation in solve mode.

Writes ``OUT/<model>-<row>-s<seed>/`` (each run's own outputs), ``OUT/tiles_training.json`` (per run: final
test accuracy, wall time, analog time, values loaded/read, curves; per model and row: the final test accuracy
over seeds, mean and 95 % t-interval, and its gap to digital K-FAC paired by seed), ``OUT/tiles_training.md``
(that table) and ``OUT/tiles_training_<model>.png`` (test accuracy against step, mean over seeds with a band
of its 95 % t-interval). Hyperparameters are the defaults (tuned on validation splits of the MLP runs,
docs/results.md), not re-tuned for these networks; ``--jobs`` runs that many trainings at once (each on one
thread); ``--device cuda`` trains (and simulates the tiles) on a GPU.

    python benchmarks/tiles_training.py --out runs/tiles-training [--seeds 0 1 2] [--jobs 2] [--epochs 3]
    python benchmarks/tiles_training.py --out runs/merged --combine runs/seed0 runs/seeds12   # merge folders
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
    "kfac-tiles-blockdiag-solve": [
        *(
            "--optimizer",
            "kfac",
            "--backend",
            "rc8",
            "--kfac-mode",
            "solve",
            "--tile-mapping",
            "block-diagonal",
        ),
    ],
}


def _curve(run: Path) -> list[tuple[int, float]]:
    pts = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") in ("eval", "epoch") and rec.get("test_accuracy") is not None:
            pts.append((int(rec["step"]), float(rec["test_accuracy"])))
    return sorted(set(pts))


def _run(out: Path, model: str, row: str, seed: int, args: argparse.Namespace) -> tuple[str, dict]:
    name = f"{model}-{row}-s{seed}"
    run = out / name
    cmd = [sys.executable, "-m", "thermotrain", "train", "--model", model, "--dataset"]
    cmd += ["fashion-mnist", "--subset", str(args.subset), "--epochs", str(args.epochs)]
    cmd += ["--seed", str(seed), "--eval-every", str(args.eval_every), "--out", str(run)]
    cmd += ["--overwrite", "--device", args.device, *ROWS[row]]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print(f">> {name}: {' '.join(cmd[3:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"   {name} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}", flush=True)
        return name, {
            "model": model,
            "row": row,
            "seed": seed,
            "status": "failed",
            "error": proc.stderr[-500:],
        }
    s = json.loads((run / "summary.json").read_text())
    print(f"   {name}: {s['status']}, test accuracy {s.get('test_accuracy')}, {wall:.0f} s", flush=True)
    return name, {
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


def _table(results: dict[str, dict], models: list[str], rows: list[str]) -> tuple[dict, str]:
    """Per model and row: final test accuracy over seeds (mean, 95 % t-interval) and the gap to digital
    K-FAC paired by seed; and the same as a markdown table."""
    from thermotrain.training._protocol import summarize

    table: dict[str, dict] = {}
    lines = [
        "| model | row | seeds | test accuracy % (mean, CI95) | − digital K-FAC, paired (points, CI95) "
        "| simulation s (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for model in models:
        digital = {
            r["seed"]: r["test_accuracy"]
            for r in results.values()
            if r.get("model") == model and r.get("row") == "kfac-digital" and r.get("status") == "completed"
        }
        for row in rows:
            done = [
                r
                for r in results.values()
                if r.get("model") == model and r.get("row") == row and r.get("status") == "completed"
            ]
            if not done:
                continue
            acc = summarize([100 * r["test_accuracy"] for r in done])
            paired = [100 * (r["test_accuracy"] - digital[r["seed"]]) for r in done if r["seed"] in digital]
            gap = summarize(paired) if paired and row != "kfac-digital" else None
            wall = sum(r["process_wall_s"] for r in done) / len(done)
            table[f"{model}/{row}"] = {
                "seeds": [r["seed"] for r in done],
                "test_accuracy_pct": acc,
                "gap_to_digital_points": gap,
                "simulation_s_mean": wall,
            }

            def fmt(x: dict | None) -> str:
                if x is None or x["mean"] is None:
                    return "–"
                hw = x["half_width"]
                return f"{x['mean']:.2f}" + ("" if hw is None else f" ± {hw:.2f}")

            lines.append(f"| {model} | {row} | {len(done)} | {fmt(acc)} | {fmt(gap)} | {wall:.0f} |")
    return table, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from concurrent.futures import ThreadPoolExecutor

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (path)")
    p.add_argument("--models", nargs="+", default=["cnn", "vit"], help="networks (names)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), help="optimizer rows (names)")
    p.add_argument("--subset", type=int, default=10000, help="training examples (count; test on as many)")
    p.add_argument("--epochs", type=int, default=3, help="passes over the training subset (count)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (integers)")
    p.add_argument("--eval-every", type=int, default=20, help="test evaluation interval (steps)")
    p.add_argument("--jobs", type=int, default=1, help="trainings run at once (count; one thread each)")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device of every training (cpu, cuda, cuda:N); on CUDA the device noise has the CPU "
        "noise's law, not its values (models/_rng.py)",
    )
    p.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        default=None,
        help="train nothing: merge the runs of these earlier output folders (paths; e.g. seeds run "
        "separately) into OUT's table and plots",
    )
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.combine:
        return _combine(args)
    results: dict[str, dict] = {}
    todo = [(m, r, s) for m in args.models for r in args.rows for s in args.seeds]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, rec in pool.map(lambda job: _run(args.out, *job, args), todo):
            results[name] = rec
            table, text = _table(results, args.models, args.rows)
            (args.out / "tiles_training.json").write_text(
                json.dumps({"runs": results, "table": table}, indent=2)
            )
            (args.out / "tiles_training.md").write_text(text)
    print(text, end="")
    _plot(args.out, results, args.models, {name: args.out for name in results})
    return 0


def _combine(args: argparse.Namespace) -> int:
    """Merge earlier output folders' runs (a run named in two folders: the later folder's) into OUT."""
    results: dict[str, dict] = {}
    where: dict[str, Path] = {}
    for folder in args.combine:
        for name, rec in json.loads((folder / "tiles_training.json").read_text())["runs"].items():
            results[name], where[name] = rec, folder
    models = [m for m in args.models if any(r.get("model") == m for r in results.values())]
    rows = [r for r in args.rows if any(rec.get("row") == r for rec in results.values())]
    table, text = _table(results, models, rows)
    sources = [str(f) for f in args.combine]
    (args.out / "tiles_training.json").write_text(
        json.dumps({"runs": results, "table": table, "combined_from": sources}, indent=2)
    )
    (args.out / "tiles_training.md").write_text(text)
    print(text, end="")
    _plot(args.out, results, models, where)
    return 0


def _plot(out: Path, results: dict[str, dict], models: list[str], where: dict[str, Path]) -> None:
    from thermotrain.training._protocol import plot_bands

    for model in models:
        arms: dict[str, list[dict]] = {}
        for name, r in results.items():
            if r.get("model") == model and r.get("status") == "completed":
                summary = where[name] / name / "summary.json"
                arms.setdefault(r["row"], []).append(json.loads(summary.read_text()))
        if arms:
            plot_bands(
                arms,
                out / f"tiles_training_{model}.png",
                f"{model} on Fashion-MNIST: Adam, digital K-FAC, K-FAC on rc8's 64-cell tiles",
            )


if __name__ == "__main__":
    raise SystemExit(main())
