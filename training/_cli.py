"""``thermotrain train`` and ``thermotrain experiment``."""

from __future__ import annotations

import argparse
import json

from thermotrain._args import arg_int, nonnegative_float, positive_float, positive_int, seed
from thermotrain._errors import InputError
from thermotrain.training._data import DATASETS
from thermotrain.training._experiments import EXPERIMENTS
from thermotrain.training._harness import OPTIMIZERS, TrainConfig, check_device, train
from thermotrain.training._nets import MODELS

__all__ = ["add_parser"]


MAX_THREADS = 1024
DEFAULT_SEEDS = 3  # experiment seeds per setting from the command line


def _device(text: str) -> str:
    """argparse type: cpu, cuda or cuda:N (CUDA must be available)."""
    try:
        return check_device(text.strip(), "device")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("device=")) from None


def _train(args: argparse.Namespace) -> int:
    import torch

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
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = train(cfg)
    keys = ("status", "test_accuracy", "test_loss", "steps", "wall_s", "analog_time_tau")
    print(json.dumps({k: summary[k] for k in keys}))
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from thermotrain.training._experiments import OPTION_NAMES, run_experiment

    opts = {k: v for k in OPTION_NAMES if (v := getattr(args, k, None)) is not None and v is not False}
    if "seeds" not in opts and "seeds" in EXPERIMENTS[args.name]:
        opts["seeds"] = DEFAULT_SEEDS
    run_experiment(args.name, args.out, opts, overwrite=args.overwrite)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``experiment`` on the ``thermotrain`` command."""
    p = subparsers.add_parser(
        "train",
        help="train a network with SGD/Adam/K-FAC/NGD-CG/TNGD on a digital or thermodynamic backend",
        description="Train one network; writes OUT/metrics.jsonl, OUT/checkpoint.pt + checkpoint.json after "
        'every epoch and OUT/summary.json at the end ("status": "completed" or "diverged"). Exit status 4: '
        "the run diverged (non-finite loss or gradient, or a loss far above the untrained model's).",
    )
    p.add_argument("--model", choices=MODELS, default="mlp", help="network: mlp or the TNGD paper's cnn")
    p.add_argument("--dataset", choices=DATASETS, default="digits", help="data set (both work offline)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer")
    p.add_argument(
        "--backend",
        default="exact",
        help="where K-FAC's inverses/solves run: exact (digital), ideal (ideal device), rc8/rlc8 (shipped "
        "calibrated profiles) or PROFILE.json "
        "(a hardware profile); first-order optimizers ignore it, TNGD runs the ideal device for exact, else the RC profile given",
    )
    p.add_argument("--epochs", type=positive_int, default=3, help="passes over the training set (count)")
    p.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of initialisation, data order and device noise (0 … 2**32-1)",
    )
    p.add_argument("--batch-size", type=positive_int, default=128, help="examples per step (count)")
    p.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="learning rate (dimensionless, > 0; default per optimizer)",
    )
    p.add_argument(
        "--damping",
        type=positive_float,
        default=None,
        help="damping λ of K-FAC/NGD/TNGD (dimensionless, > 0; default per optimizer)",
    )
    p.add_argument(
        "--analog-time",
        type=nonnegative_float,
        default=None,
        help="device time per solve/inverse or TNGD step (τ, ≥ 0; > 0 for thermodynamic K-FAC; default: "
        "50 for K-FAC, 20 for TNGD - the tuned TNGDConfig default)",
    )
    p.add_argument(
        "--delay",
        type=nonnegative_float,
        default=0.0,
        help="TNGD delay t_d between readout and reload (τ, ≥ 0)",
    )
    p.add_argument(
        "--kappa0",
        type=nonnegative_float,
        default=None,
        help="device noise strength κ0 (dimensionless; default: a hardware profile's own κ0, else 1e-2)",
    )
    p.add_argument(
        "--kfac-mode", choices=("inverse", "solve"), default="inverse", help="thermodynamic K-FAC form"
    )
    p.add_argument("--inv-update-steps", type=positive_int, default=10, help="K-FAC inverse interval (steps)")
    p.add_argument("--subset", type=positive_int, default=None, help="use only this many examples (count)")
    p.add_argument(
        "--eval-every", type=positive_int, default=None, help="extra test evaluation interval (steps)"
    )
    p.add_argument("--device", type=_device, default="cpu", help="torch device: cpu, cuda or cuda:N")
    p.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="lr schedule over the run's steps",
    )
    p.add_argument(
        "--analog-dt",
        type=positive_float,
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
        type=positive_int,
        default=1,
        help="independent loads averaged per device call (randomized-rounding mitigation; count)",
    )
    p.add_argument(
        "--pd-guard",
        action="store_true",
        help="retry a matrix the profile's quantization made indefinite with more damping (reported) "
        "instead of stopping",
    )
    p.add_argument(
        "--threads",
        type=arg_int(0, MAX_THREADS),
        default=0,
        help=f"torch CPU threads (count, 0 … {MAX_THREADS}; 0 = torch's default)",
    )
    p.add_argument(
        "--out", default="runs/train", help="output folder (path; must be empty unless --resume/--overwrite)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT from OUT/checkpoint.pt + checkpoint.json (--epochs must exceed its epochs)",
    )
    mode.add_argument(
        "--overwrite",
        action="store_true",
        help="remove the earlier run's files in OUT (metrics, summary, checkpoint) before training",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "experiment",
        help="reproduce a study (optimizers, TNGD time/delay/noise, K-FAC quantization, cost model)",
        description="Run one experiment; writes OUT/NAME.json and OUT/NAME.png (all at once, at the end). "
        "If any run of the study fails, the other runs' results are still written and the command exits "
        "non-zero (4 when every failure is a divergence) naming the failed runs.",
    )
    e.add_argument("name", choices=tuple(EXPERIMENTS), help="experiment name")
    e.add_argument(
        "--out",
        default=None,
        help="output folder (path; default runs/experiments/NAME; must be empty unless --overwrite)",
    )
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT (when the experiment finishes) if it holds files",
    )
    e.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="data set (default: digits; fashion-mnist for kfac-claims)",
    )
    e.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epochs per run (count; default 5, 3 for kfac-claims)",
    )
    e.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        help=f"number of seeds per setting (count; default {DEFAULT_SEEDS})",
    )
    e.add_argument("--subset", type=positive_int, default=None, help="use only this many examples (count)")
    e.add_argument(
        "--profile",
        default=None,
        help="hardware-profile JSON (path) for optimizers/tngd-noise/kfac-quantization/cost-model/kfac-claims "
        "(default: shipped rc8)",
    )
    e.add_argument(
        "--damping",
        type=positive_float,
        default=None,
        help="K-FAC damping λ for kfac-claims (dimensionless, > 0; default 0.1)",
    )
    e.add_argument(
        "--inv-update-steps",
        type=positive_int,
        default=None,
        help="K-FAC inverse interval for kfac-claims (steps; default 10)",
    )
    e.add_argument(
        "--pd-guard",
        action="store_true",
        help="kfac-claims: retry refused matrices with more damping (reported)",
    )
    e.add_argument(
        "--analog-time",
        type=positive_float,
        default=None,
        help="device time per inverse for kfac-claims (tau, > 0; default 4000)",
    )
    e.add_argument(
        "--adam-lr",
        type=positive_float,
        default=None,
        help="Adam's learning rate for kfac-claims (dimensionless, > 0; default 1e-3)",
    )
    e.set_defaults(func=_experiment)
