"""``thermotrain train`` and ``thermotrain experiment``."""

from __future__ import annotations

import argparse
import dataclasses
import json

from thermotrain.training._data import DATASETS
from thermotrain.training._harness import OPTIMIZERS, TrainConfig, train
from thermotrain.training._nets import MODELS

__all__ = ["add_parser"]

EXPERIMENTS = (
    "optimizers",
    "tngd-time",
    "tngd-delay",
    "tngd-noise",
    "kfac-quantization",
    "cost-model",
    "kfac-claims",
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def _train(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        model=args.model,
        dataset=args.dataset,
        optimizer=args.optimizer,
        backend=args.backend,
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        damping=args.damping,
        analog_time=args.analog_time,
        delay=args.delay,
        kappa0=args.kappa0,
        kfac_mode=args.kfac_mode,
        analog_dt=args.analog_dt,
        rounding=args.rounding,
        roundings=args.roundings,
        pd_guard=args.pd_guard,
        inv_update_steps=args.inv_update_steps,
        subset=args.subset,
        eval_every=args.eval_every,
        lr_schedule=args.lr_schedule,
        device=args.device,
        out=args.out,
        resume=args.resume,
        progress=not args.no_progress,
    )
    summary = train(cfg)
    keys = ("test_accuracy", "test_loss", "steps", "wall_s", "analog_time_tau")
    print(json.dumps({k: summary[k] for k in keys}))
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from thermotrain.training._experiments import run_experiment

    run_experiment(
        args.name, args.out, dataclasses.asdict(args) if dataclasses.is_dataclass(args) else vars(args)
    )
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``experiment`` on the ``thermotrain`` command."""
    p = subparsers.add_parser(
        "train",
        help="train a network with SGD/Adam/K-FAC/NGD-CG/TNGD on a digital or thermodynamic backend",
        description="Train one network; writes OUT/metrics.jsonl, OUT/summary.json and OUT/checkpoint.pt.",
    )
    p.add_argument("--model", choices=MODELS, default="mlp", help="network: mlp or the TNGD paper's cnn")
    p.add_argument("--dataset", choices=DATASETS, default="digits", help="data set (both work offline)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer")
    p.add_argument(
        "--backend",
        default="exact",
        help="where K-FAC's inverses/solves run: exact (digital), ideal (ideal device), rc8/rlc8 (shipped "
        "calibrated profiles) or PROFILE.json "
        "(a hardware profile); first-order optimizers ignore it, TNGD always runs the ideal device",
    )
    p.add_argument("--epochs", type=_positive_int, default=3, help="passes over the training set (count)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and device noise")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="examples per step (count)")
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate (dimensionless; default per optimizer)"
    )
    p.add_argument(
        "--damping", type=float, default=None, help="damping λ of K-FAC/NGD/TNGD (dimensionless, > 0)"
    )
    p.add_argument(
        "--analog-time", type=float, default=50.0, help="device time per solve/inverse or TNGD step (τ)"
    )
    p.add_argument("--delay", type=float, default=0.0, help="TNGD delay t_d between readout and reload (τ)")
    p.add_argument(
        "--kappa0",
        type=float,
        default=None,
        help="device noise strength κ0 (dimensionless; default: a hardware profile's own κ0, else 1e-2)",
    )
    p.add_argument(
        "--kfac-mode", choices=("inverse", "solve"), default="inverse", help="thermodynamic K-FAC form"
    )
    p.add_argument(
        "--inv-update-steps", type=_positive_int, default=10, help="K-FAC inverse interval (steps)"
    )
    p.add_argument("--subset", type=_positive_int, default=None, help="use only this many examples (count)")
    p.add_argument(
        "--eval-every", type=_positive_int, default=None, help="extra test evaluation interval (steps)"
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    p.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="lr schedule over the run's steps",
    )
    p.add_argument(
        "--analog-dt",
        type=float,
        default=0.1,
        help="covariance-readout sample interval (tau; K-FAC inverse mode)",
    )
    p.add_argument(
        "--rounding",
        choices=("nearest", "stochastic"),
        default="nearest",
        help="a hardware profile's DAC rounding of the loaded matrix",
    )
    p.add_argument(
        "--roundings",
        type=_positive_int,
        default=1,
        help="independent loads averaged per device call (randomized-rounding mitigation; count)",
    )
    p.add_argument(
        "--pd-guard",
        action="store_true",
        help="retry a matrix the profile's quantization made indefinite with more damping (reported) "
        "instead of stopping",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (count; 0 = torch's default)")
    p.add_argument("--out", default="runs/train", help="output folder (path)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "experiment",
        help="reproduce a study (optimizers, TNGD time/delay/noise, K-FAC quantization, cost model)",
        description="Run one experiment; writes OUT/NAME.json and OUT/NAME.png.",
    )
    e.add_argument("name", choices=EXPERIMENTS, help="experiment name")
    e.add_argument("--out", default="runs/experiments", help="output folder (path)")
    e.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="data set (default: digits; fashion-mnist for kfac-claims)",
    )
    e.add_argument(
        "--epochs", type=_positive_int, default=None, help="epochs per run (count; default per study)"
    )
    e.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds per setting (count)")
    e.add_argument("--subset", type=_positive_int, default=None, help="use only this many examples (count)")
    e.add_argument(
        "--profile",
        default=None,
        help="hardware-profile JSON (path) for kfac-quantization/cost-model/kfac-claims (default: shipped rc8)",
    )
    e.add_argument(
        "--damping", type=float, default=None, help="K-FAC damping λ for kfac-claims (default 0.1)"
    )
    e.add_argument(
        "--inv-update-steps",
        type=_positive_int,
        default=None,
        help="K-FAC inverse interval for kfac-claims (steps)",
    )
    e.add_argument(
        "--pd-guard",
        action="store_true",
        help="kfac-claims: retry refused matrices with more damping (reported)",
    )
    e.add_argument(
        "--analog-time",
        type=float,
        default=None,
        help="device time per inverse for kfac-claims (tau; default 4000)",
    )
    e.add_argument(
        "--adam-lr", type=float, default=None, help="Adam's learning rate for kfac-claims (default 1e-3)"
    )
    e.set_defaults(func=_experiment)
