"""Thermodynamic K-FAC's accuracy against the readout error that ``--analog-time auto`` aims at, on a
validation split (never the test set): how ``thermotrain.models.DEFAULT_TARGET_ERROR`` was chosen.

For each target relative readout error ε and seed, trains the default network with thermodynamic K-FAC on a
hardware profile (default the shipped rc8) and with digital K-FAC, on the training set split 80/20 by a fixed
permutation (``training._data.validation_split``), and records the validation accuracy, the gap to digital
K-FAC on the same seed, and the analog time the device chose (τ per inverse and in total).

    python benchmarks/readout_error_tradeoff.py --out runs/bench --targets 0.1 0.2 0.3 --seeds 5

Writes OUT/readout_error_tradeoff.json and prints a table (mean gap in points with a t-based 95 % interval
over seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch


def _ci95(values: list[float]) -> float:
    """Half-width of the t-based 95 % interval of the mean of ``values``."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


def main(argv: list[str] | None = None) -> int:
    from thermotrain._report import table
    from thermotrain.training import TrainConfig, train
    from thermotrain.training._data import load_dataset, validation_split

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench", help="output folder (path)")
    p.add_argument("--backend", default="rc8", help="hardware profile: shipped name or path")
    p.add_argument("--dataset", default="digits", help="data set (digits or fashion-mnist)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (count)")
    p.add_argument("--subset", type=int, default=None, help="training examples used (count; default all)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per setting (count)")
    p.add_argument(
        "--targets", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5], help="readout errors ε (relative)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (count)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = validation_split(load_dataset(args.dataset, args.subset))
    common = dict(dataset=args.dataset, epochs=args.epochs, optimizer="kfac", progress=False)
    digital = {}
    for seed in range(args.seeds):
        digital[seed] = train(TrainConfig(backend="exact", seed=seed, **common), data)["test_accuracy"]
    rows, raw = [], []
    for eps in args.targets:
        gaps, accs, per_call, total, walls = [], [], [], [], []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            s = train(TrainConfig(backend=args.backend, seed=seed, readout_error=eps, **common), data)
            walls.append(time.perf_counter() - t0)
            accs.append(s["test_accuracy"])
            gaps.append(100 * (s["test_accuracy"] - digital[seed]))
            per_call.append(s["readout"]["analog_time_per_call_tau"]["mean"])
            total.append(s["analog_time_tau"])
            raw.append({"target_error": eps, "seed": seed, "val_accuracy": accs[-1], "gap_points": gaps[-1]})
        row = {
            "target_error": eps,
            "val_accuracy_mean": float(np.mean(accs)),
            "gap_points_mean": float(np.mean(gaps)),
            "gap_points_ci95": _ci95(gaps),
            "gap_points_worst": float(min(gaps)),
            "tau_per_inverse_mean": float(np.mean(per_call)),
            "tau_total_mean": float(np.mean(total)),
            "wall_s_mean": float(np.mean(walls)),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        table(
            [[r[k] for k in r] for r in rows],
            ["ε", "val acc", "gap pts", "±95%", "worst gap", "τ/inverse", "τ total", "wall s"],
        )
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": vars(args),
        "digital_val_accuracy": digital,
        "digital_val_accuracy_mean": float(np.mean(list(digital.values()))),
        "rows": rows,
        "runs": raw,
    }
    (out / "readout_error_tradeoff.json").write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
