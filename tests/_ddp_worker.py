"""One torchrun worker of tests/test_distributed.py (started by torchrun, not collected by pytest).

Usage: ``torchrun --standalone --nproc-per-node 2 tests/_ddp_worker.py RESULTS SETTINGS ARGS…`` (SETTINGS: the
TrainConfig fields of ARGS as JSON). Runs, in this process
and the same launch (imports paid once):

1. ``thermotrain train ARGS --backend exact --out dist`` through the command line's own entry point
   (:func:`thermotrain.cli.main`; rank 0 writes ``dist/``, prints the summary line);
2. SETTINGS with ``--backend ideal`` through :func:`thermotrain.training.train` without an output
   folder, and writes its summary to ``RESULTS/ideal-rank<R>.json`` (RESULTS lies outside the audited folder).

Exits with the command line's status if it failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from thermotrain.cli import main
from thermotrain.training import TrainConfig
from thermotrain.training._harness import train

if __name__ == "__main__":
    results, settings, args = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3:]
    code = main(["train", *args, "--backend", "exact", "--out", "dist"])
    if code:
        raise SystemExit(code)
    summary = train(TrainConfig(**settings, backend="ideal", progress=False))
    keep = (
        "test_loss",
        "test_accuracy",
        "train_loss",
        "steps",
        "analog_time_tau",
        "values_loaded",
        "world_size",
    )
    (results / f"ideal-rank{os.environ['RANK']}.json").write_text(json.dumps({k: summary[k] for k in keep}))
