"""``thermotrain train`` and ``thermotrain experiment``.

The ``train`` flags are derived from the fields of :class:`~thermotrain.training.TrainConfig` (their
metadata: help, unit, argparse type, choices; see :func:`thermotrain._args.add_dataclass_arguments`), and
the parsed flags are turned back into a ``TrainConfig`` field by field, so a field cannot lose its flag. The
``experiment`` flags are the options of ``OPTION_NAMES``: those that are ``TrainConfig`` fields take that
field's type, unit and choices; the others are fields of :class:`ExperimentOptions` here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field

from thermotrain._args import (
    add_dataclass_arguments,
    arg_float_or,
    arg_int,
    namespace_to_dataclass,
    positive_float,
    positive_int,
)
from thermotrain.training._config import TrainConfig
from thermotrain.training._experiments import EXPERIMENTS, OPTION_NAMES
from thermotrain.training._harness import train

__all__ = ["ExperimentOptions", "add_parser", "experiment_options"]


MAX_THREADS = 1024
DEFAULT_SEEDS = 3  # experiment seeds per setting from the command line
DEFAULT_OUT = "runs/train"  # `train --out` default (TrainConfig.out defaults to None: nothing written)


@dataclass(frozen=True)
class ExperimentOptions:
    """The ``thermotrain experiment`` options that are not :class:`TrainConfig` fields (flag metadata only;
    the values are checked by :func:`thermotrain.training._experiments.check_options`)."""

    seeds: int | None = field(
        default=None,
        metadata={
            "help": f"number of seeds per setting (default {DEFAULT_SEEDS})",
            "unit": "count",
            "type": positive_int,
        },
    )
    profile: str | None = field(
        default=None,
        metadata={"help": "hardware-profile JSON (default: shipped rc8)", "unit": "path", "metavar": "PATH"},
    )
    adam_lr: float | None = field(
        default=None,
        metadata={
            "help": "Adam's learning rate (> 0; default 1e-3)",
            "unit": "dimensionless",
            "type": positive_float,
        },
    )


#: ``experiment`` help of the options shared with TrainConfig (their defaults are the experiments' own);
#: type, unit and choices come from the TrainConfig field.
_EXPERIMENT_HELP = {
    "dataset": "data set (default: digits; fashion-mnist for kfac-claims)",
    "epochs": "epochs per run (default 5, 3 for kfac-claims)",
    "subset": "use only this many examples (default: all)",
    "damping": "K-FAC damping λ (> 0; default 0.1)",
    "inv_update_steps": "K-FAC inverse interval (default 10)",
    "pd_guard": "retry a matrix the hardware refuses with more damping (reported; default off)",
    "analog_time": "device time per thermodynamic K-FAC inverse (> 0) or auto: picked per matrix from the "
    "profile's readout error (default auto)",
}


def _train(args: argparse.Namespace) -> int:
    import torch

    cfg = namespace_to_dataclass(TrainConfig, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = train(cfg)
    if summary.get("readout"):
        from thermotrain.training._precond import describe_readout

        print(describe_readout(summary["readout"]), file=sys.stderr)
    keys = ("status", "test_accuracy", "test_loss", "steps", "wall_s", "analog_time_tau")
    print(json.dumps({k: summary[k] for k in keys}))
    return 0


def experiment_options(args: argparse.Namespace) -> dict:
    """The options given on the ``experiment`` command line (an absent flag is None and left out, so the
    experiment's own default applies), plus ``seeds`` = ``DEFAULT_SEEDS`` where the experiment has seeds."""
    opts = {k: v for k in OPTION_NAMES if (v := getattr(args, k, None)) is not None}
    if "seeds" not in opts and "seeds" in EXPERIMENTS[args.name]:
        opts["seeds"] = DEFAULT_SEEDS
    return opts


def _experiment(args: argparse.Namespace) -> int:
    from thermotrain.training._experiments import run_experiment

    run_experiment(args.name, args.out, experiment_options(args), overwrite=args.overwrite)
    return 0


def _help(option: str, train_help: str) -> str:
    """The ``experiment`` help of an option shared with TrainConfig: its own text in ``_EXPERIMENT_HELP``,
    else the field's (a new option still gets a flag, its default named as the experiment's own)."""
    return _EXPERIMENT_HELP.get(option, f"{train_help.split(' (')[0]} (default: the experiment's own)")


def _users(option: str) -> str:
    """`` [experiments: a, b]``: the experiments that use ``option`` (from ``EXPERIMENTS``)."""
    users = [name for name, keys in EXPERIMENTS.items() if option in keys]
    return f" [experiments: {', '.join(users)}]" if len(users) < len(EXPERIMENTS) else ""


def _add_experiment_options(e: argparse.ArgumentParser) -> None:
    """One flag per ``OPTION_NAMES`` entry: a TrainConfig field's type/unit/choices, or an
    :class:`ExperimentOptions` field. An option that is neither is a ``TypeError`` here (it has no flag)."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    extra_fields = {f.name for f in dataclasses.fields(ExperimentOptions)}
    stray = [k for k in OPTION_NAMES if k not in train_fields | extra_fields]
    if stray:
        raise TypeError(f"experiment option(s) {stray} have no flag: add them to ExperimentOptions.")
    shared = [k for k in OPTION_NAMES if k in train_fields and k not in extra_fields]
    meta = {f.name: f.metadata for f in dataclasses.fields(TrainConfig)}
    overrides: dict[str, dict] = {
        k: {"default": None, "help": _help(k, meta[k]["help"]) + _users(k)} for k in shared
    }
    if "pd_guard" in overrides:  # absent (None): the experiment's own default
        overrides["pd_guard"]["action"] = "store_true"
    if "analog_time" in overrides:  # the experiment's device runs are thermodynamic: a time must be > 0
        overrides["analog_time"]["type"] = arg_float_or({"auto": "auto"}, 0.0, strict_min=True, unit="tau")
    add_dataclass_arguments(e, TrainConfig, include=shared, overrides=overrides)
    extra = [k for k in OPTION_NAMES if k in extra_fields]
    meta = {f.name: f.metadata for f in dataclasses.fields(ExperimentOptions)}
    add_dataclass_arguments(
        e,
        ExperimentOptions,
        include=extra,
        overrides={k: {"help": meta[k]["help"] + _users(k)} for k in extra},
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``experiment`` on the ``thermotrain`` command."""
    p = subparsers.add_parser(
        "train",
        help="train a network with SGD/Adam/K-FAC/NGD-CG/TNGD on a digital or thermodynamic backend",
        description="Train one network; writes OUT/metrics.jsonl, OUT/checkpoint.pt + checkpoint.json after "
        'every epoch and OUT/summary.json at the end ("status": "completed" or "diverged") and prints the '
        "summary's headline as one JSON line. Exit status 4: the run diverged (non-finite loss or gradient, "
        "or a loss far above the untrained model's). Units in [brackets]; τ is the device's time constant.",
    )
    add_dataclass_arguments(p, TrainConfig, overrides={"out": {"default": DEFAULT_OUT}})
    p.add_argument(
        "--threads",
        type=arg_int(0, MAX_THREADS),
        default=0,
        help=f"torch CPU threads (0 … {MAX_THREADS}; 0 = torch's own choice) [count] (default: %(default)s)",
    )
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "experiment",
        help="reproduce a study (optimizers, TNGD time/delay/noise, K-FAC quantization, cost model)",
        description="Run one experiment; writes OUT/NAME.json and OUT/NAME.png (all at once, at the end). "
        "If any run of the study fails, the other runs' results are still written and the command exits "
        "non-zero (4 when every failure is a divergence) naming the failed runs. An option is refused by an "
        "experiment that does not use it (listed in [experiments: ...]).",
    )
    e.add_argument("name", choices=tuple(EXPERIMENTS), help="experiment name")
    e.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder (default runs/experiments/NAME; must be empty unless --overwrite) [path]",
    )
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT (when the experiment finishes) if it holds files",
    )
    _add_experiment_options(e)
    e.set_defaults(func=_experiment)
