"""``thermotrain train`` and ``thermotrain experiment``.

The ``train`` flags are derived from the fields of :class:`~thermotrain.training.TrainConfig` (their
metadata: help, unit, argparse type, choices; see :func:`thermotrain._args.add_dataclass_arguments`), and
the parsed flags are turned back into a ``TrainConfig`` field by field, so a field cannot lose its flag. The
``experiment`` flags are the options of ``OPTION_NAMES``: those that are ``TrainConfig`` fields take that
field's type, unit and choices; the others are fields of :class:`ExperimentOptions` here.

Both take ``--config FILE.toml``: keys are the flags' destinations (``batch_size = 64``; for ``train`` the
``TrainConfig`` field names and ``threads``, for ``experiment`` the ``OPTION_NAMES``), values checked by the
flags' own types; a flag given on the command line overrides the file; an unknown key is refused. The
effective config is written to ``OUT/config.toml`` when the run ends (also when it diverged or some runs of
an experiment failed) and is itself a valid ``--config``.

As ``experiment`` refuses an option the experiment does not use, ``train`` refuses a value set on the command
line or in ``--config`` (away from its default) that the chosen optimizer does not read (``--delay`` for
adam, ``--analog-time`` for digital K-FAC; :data:`~thermotrain.training._config.READ_BY`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thermotrain._args import (
    add_dataclass_arguments,
    apply_config,
    arg_float_or,
    arg_int,
    config_actions,
    explicit_flags,
    flag_name,
    join_words,
    load_toml_config,
    namespace_to_dataclass,
    positive_float,
    positive_int,
    toml_config_text,
    track_explicit_flags,
)
from thermotrain._errors import DivergedError, InputError
from thermotrain._safeio import write_text_atomic
from thermotrain.training._config import KFAC_DEVICE_FIELDS, TrainConfig, ignored_fields
from thermotrain.training._distributed import SettingsError, check_settings, launch_from_env
from thermotrain.training._experiments import EXPERIMENTS, OPTION_NAMES, ExperimentFailed
from thermotrain.training._harness import train
from thermotrain.training._protocol import (
    DEFAULT_DAMPING_GRID,
    DEFAULT_EVALS_PER_EPOCH,
    DEFAULT_LR_GRID,
    DEFAULT_PRECOND_LR_GRID,
    DEFAULT_SMOOTH,
    grid_text,
    parse_grid,
)

__all__ = ["ExperimentOptions", "add_parser", "experiment_options"]


MAX_THREADS = 1024
DEFAULT_SEEDS = 5  # experiment seeds per setting from the command line (the protocol's ≥ 5), every experiment
DEFAULT_OUT = "runs/train"  # `train --out` default (TrainConfig.out defaults to None: nothing written)
CONFIG_FILE = "config.toml"  # the effective config, written into OUT

#: ``{command: {config key: argparse action}}``, filled by :func:`add_parser`.
_CONFIG_KEYS: dict[str, dict[str, argparse.Action]] = {}
_CONFIG_HELP = (
    "TOML file of flag values, keys as the flags' names with underscores (e.g. batch_size = 64); a flag given "
    "on the command line overrides the file; OUT/config.toml is the run's effective config (default: no file) "
    "[path]"
)


def _grid_arg(text: str) -> str:
    """argparse type: comma-separated multipliers > 0, returned in the normal form ``0.3,1,3``."""
    try:
        return grid_text(parse_grid("grid", text))
    except InputError as exc:  # argparse names the flag; the message keeps the value
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--grid=").rstrip(".")) from None


def _nonidealities_arg(text: str) -> str:
    """argparse type: non-ideality names of ``experiment attribution``, returned as ``a,b`` in order."""
    from thermotrain.training._attribution import parse_nonidealities

    try:
        return ",".join(parse_nonidealities(text))
    except InputError as exc:  # argparse names the flag; the message keeps the value
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--nonidealities=").rstrip(".")) from None


def _grid_help(what: str, grid: tuple[float, ...], defaults: str) -> str:
    return (
        f"{what}, as multiples of each optimizer's default ({defaults}); comma-separated, > 0; one value "
        f"fixes it (nothing tuned) (default {grid_text(grid)})"
    )


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
            "help": "Adam's learning rate, fixed (> 0; default: tuned on --lr-grid)",
            "unit": "dimensionless",
            "type": positive_float,
        },
    )
    lr_grid: str | None = field(
        default=None,
        metadata={
            "help": _grid_help(
                "learning rates tuned for SGD and Adam on the validation split",
                DEFAULT_LR_GRID,
                "sgd 0.05, adam 1e-3",
            ),
            "unit": "dimensionless",
            "type": _grid_arg,
            "metavar": "M1,M2,...",
        },
    )
    precond_lr_grid: str | None = field(
        default=None,
        metadata={
            "help": _grid_help(
                "learning rates tuned for K-FAC, NGD and TNGD",
                DEFAULT_PRECOND_LR_GRID,
                "kfac 0.05, ngd/ngd-cg/tngd 0.1, tngd-adam 3e-3",
            ),
            "unit": "dimensionless",
            "type": _grid_arg,
            "metavar": "M1,M2,...",
        },
    )
    damping_grid: str | None = field(
        default=None,
        metadata={
            "help": _grid_help(
                "damping λ tuned for K-FAC, NGD and TNGD (each λ with each lr)",
                DEFAULT_DAMPING_GRID,
                "kfac 0.3, ngd/ngd-cg 0.01, tngd 0.03",
            ),
            "unit": "dimensionless",
            "type": _grid_arg,
            "metavar": "M1,M2,...",
        },
    )
    tune_epochs: int | None = field(
        default=None,
        metadata={
            "help": "epochs of each tuning run (one seed, 10000; default: --epochs)",
            "unit": "count",
            "type": positive_int,
        },
    )
    smooth: int | None = field(
        default=None,
        metadata={
            "help": "k: validation score and steps-to-target use a trailing running mean over k evaluations "
            f"(default {DEFAULT_SMOOTH})",
            "unit": "count",
            "type": positive_int,
        },
    )
    nonidealities: str | None = field(
        default=None,
        metadata={
            "help": "non-idealities switched off/on one at a time, comma-separated, or all: "
            "coupling_bits, adc_bits, tolerance, noise_level, analog_time, drift_mismatch, opamp_gain, "
            "opamp_gbw, opamp_offset, noise_gain (default: all)",
            "unit": "name list",
            "type": _nonidealities_arg,
            "metavar": "N1,N2,...",
        },
    )
    evals_per_epoch: int | None = field(
        default=None,
        metadata={
            "help": f"evaluations per epoch (validation while tuning, test after) (default {DEFAULT_EVALS_PER_EPOCH})",
            "unit": "count",
            "type": arg_int(1, 1000),
        },
    )


#: ``experiment`` help of the options shared with TrainConfig (their defaults are the experiments' own);
#: type, unit and choices come from the TrainConfig field.
_EXPERIMENT_HELP = {
    "dataset": "data set (default: digits; fashion-mnist for kfac-claims and attribution)",
    "epochs": "epochs per run (default 5, 3 for kfac-claims, 1 for attribution)",
    "subset": "use only this many examples (default: all; 10000 for attribution)",
    "model": "network: mlp, the TNGD paper's cnn or vit (default mlp)",
    "backend": "device the TNGD rows run on: ideal (matrix-free, τ = the paper's 1 µs) or an RC-family hardware "
    "profile, a shipped name (rc8) or a JSON path (one cell per parameter: networks of at most 4096 parameters) "
    "(default ideal)",
    "lr_schedule": "lr schedule of every run, tuning runs included (default cosine)",
    "damping": "K-FAC damping λ (> 0, <= 1e6; default 0.1)",
    "inv_update_steps": "K-FAC inverse interval (default 10)",
    "pd_guard": "retry a matrix the hardware refuses with more damping (reported; default on, as in train; "
    "--no-pd-guard reports the refusal as a failed run instead)",
    "analog_time": "device time per thermodynamic K-FAC inverse (> 0) or auto: picked per matrix from the "
    "profile's readout error (default auto)",
}


_FROM_FILE = "_thermotrain_config_keys"  # on the namespace: the keys --config set (the command line did not)


def _with_config(command: str, args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the values of ``--config FILE`` filled in where the command line gave no flag."""
    if getattr(args, "config", None):
        values = load_toml_config(args.config, _CONFIG_KEYS[command])
        apply_config(args, values)
        setattr(args, _FROM_FILE, sorted(set(values) - explicit_flags(args)))
    return args


def _setting(name: str, value: Any, config: str | None = None) -> str:
    """A value of field ``name`` as its flag (``--delay 5``, ``--no-pd-guard``, ``--kl-clip off``) or, with
    ``config`` (the file), as its key there (``delay = 5.0 (in --config FILE)``, ``kl_clip = "off"``)."""
    if config is not None:
        text = toml_config_text({name: value}, _CONFIG_KEYS["train"]).strip()
        return f"{text} (in --config {config})"
    if isinstance(value, bool):
        return flag_name(name) if value else "--no-" + flag_name(name)[2:]
    shown = "off" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return f"{flag_name(name)} {shown}"


def refuse_ignored_settings(cfg: TrainConfig, args: argparse.Namespace) -> None:
    """Refuse, in one line, a value the user set -- a flag on the command line or a key of ``--config``, away
    from the field's default -- that the run does not read (``ignored_fields``): ``train --optimizer adam
    --delay 5`` would otherwise train plain Adam and record delay = 5 in its config. A default value
    (``--backend exact``, the keys of an earlier run's config.toml) passes; TrainConfig itself (the Python
    API, the demo, the experiments) does not refuse."""
    ignored = ignored_fields(cfg)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    from_file = set(getattr(args, _FROM_FILE, ()))
    given = explicit_flags(args) | from_file
    bad = [k for k in ignored if k in given and getattr(cfg, k) != defaults[k]]
    if not bad:
        return
    shown = [_setting(k, getattr(cfg, k), args.config if k in from_file else None) for k in bad]
    run = f"--optimizer {cfg.optimizer}"
    if cfg.optimizer == "kfac" and any(k in KFAC_DEVICE_FIELDS for k in bad):
        run += " on --backend exact (digital K-FAC)"
    what = join_words(shown, "and")
    readers = "; ".join(f"{flag_name(k)} is for {ignored[k]}" for k in bad)
    raise InputError(f"{run} does not read {what} ({readers}); drop {'it' if len(bad) == 1 else 'them'}.")


def _write_config(command: str, out: str | Path, values: dict[str, Any], header: str) -> None:
    """``out/config.toml``: ``values`` as a ``--config`` file of ``command`` (``out`` must exist)."""
    out = Path(out)
    if out.is_dir():
        write_text_atomic(out / CONFIG_FILE, toml_config_text(values, _CONFIG_KEYS[command], header))


def train_config_values(cfg: TrainConfig, threads: int = 0) -> dict[str, Any]:
    """The ``train --config`` values that reproduce ``cfg`` (every field, and ``threads``)."""
    return {**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}, "threads": threads}


def _train(args: argparse.Namespace) -> int:
    import torch

    cfg = namespace_to_dataclass(TrainConfig, _with_config("train", args))
    launch = launch_from_env()  # under torchrun only rank 0 writes and prints (docs/distributed.md)
    try:
        if launch is not None:  # what a data-parallel run cannot train at all is named first
            check_settings(cfg.optimizer, cfg.batch_size, launch.world_size)
        refuse_ignored_settings(cfg, args)
    except InputError:
        if launch is not None and launch.rank != 0:
            raise SystemExit(1) from None  # rank 0 prints the same line
        raise
    if args.threads:
        torch.set_num_threads(args.threads)
    values = train_config_values(cfg, args.threads)
    header = "thermotrain train --config config.toml: the effective config of this run"
    if launch is not None and launch.rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
        try:
            train(cfg)
        except SettingsError:  # rank 0 prints the same line
            raise SystemExit(1) from None
        return 0
    try:
        summary = train(cfg)
    except DivergedError:
        _write_config("train", cfg.out, values, header)
        raise
    _write_config("train", cfg.out, values, header)
    if summary.get("readout"):
        from thermotrain.training._precond import describe_readout

        print(describe_readout(summary["readout"]), file=sys.stderr)
    keys = ("status", "test_accuracy", "test_loss", "steps", "wall_s", "analog_time_tau", "values_loaded")
    keys += ("values_read", "mapping", "cells_per_tile", "device_wall_time_tau")
    line = {k: summary[k] for k in keys if k in summary}
    if (summary.get("readout") or {}).get("tiles_used_max") is not None:  # the most tiles one factor used
        line["tiles_used_max"] = summary["readout"]["tiles_used_max"]
    print(json.dumps(line))
    return 0


def experiment_options(args: argparse.Namespace) -> dict:
    """The options given on the ``experiment`` command line (an absent flag is None and left out, so the
    experiment's own default applies), plus ``seeds`` (``DEFAULT_SEEDS``) where the experiment has seeds."""
    opts = {k: v for k in OPTION_NAMES if (v := getattr(args, k, None)) is not None}
    if "seeds" not in opts and "seeds" in EXPERIMENTS[args.name]:
        opts["seeds"] = DEFAULT_SEEDS
    return opts


def _experiment(args: argparse.Namespace) -> int:
    from thermotrain.training._experiments import run_experiment

    opts = experiment_options(_with_config("experiment", args))
    out = args.out if args.out is not None else Path("runs/experiments") / args.name
    header = f"thermotrain experiment {args.name} --config config.toml: the options of this run"
    try:
        run_experiment(args.name, out, opts, overwrite=args.overwrite)
    except ExperimentFailed:
        _write_config("experiment", out, opts, header)
        raise
    _write_config("experiment", out, opts, header)
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
        overrides["pd_guard"]["action"] = argparse.BooleanOptionalAction
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
        "or a loss far above the untrained model's). A run that fails before its first step leaves nothing in "
        "OUT. A flag the chosen optimizer does not read is refused. Under torchrun (torchrun --nproc-per-node N -m thermotrain "
        "train ...) it trains data-parallel and only rank 0 writes (docs/distributed.md). Units in [brackets]; "
        "τ is the device's time constant.",
    )
    add_dataclass_arguments(
        p,
        TrainConfig,
        overrides={
            "out": {"default": DEFAULT_OUT},
            "batch_size": {
                "help": "examples per step; under torchrun the global batch, split evenly over the processes "
                "(a multiple of their number; docs/distributed.md)"
            },
        },
    )
    p.add_argument(
        "--threads",
        type=arg_int(0, MAX_THREADS),
        default=0,
        help=f"torch CPU threads (0 … {MAX_THREADS}; 0 = torch's own choice) [count] (default: %(default)s)",
    )
    _CONFIG_KEYS["train"] = config_actions(p, [f.name for f in dataclasses.fields(TrainConfig)] + ["threads"])
    p.add_argument("--config", default=None, metavar="FILE.toml", help=_CONFIG_HELP)
    track_explicit_flags(p)
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "experiment",
        help="reproduce a study (optimizers, TNGD time/delay/noise, K-FAC quantization, cost model, "
        "non-ideality attribution, K-FAC update fidelity, width sweep)",
        description="Run one experiment; writes OUT/NAME.json, OUT/NAME.png and OUT/results.json (all at "
        "once, at the end). Protocol (training/_protocol.py): a validation split off the training set "
        "(digits 20 %%, Fashion-MNIST 5 000); each row's lr (and λ) tuned on the grids below by validation "
        "accuracy (one seed, --tune-epochs); the selected settings trained over --seeds seeds and reported "
        "on the test set as mean and 95 %% t-interval; plots show that interval as a band. "
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
        help="replace OUT (when the experiment finishes) if an earlier thermotrain run wrote it (a folder of other files is refused, never deleted)",
    )
    _add_experiment_options(e)
    _CONFIG_KEYS["experiment"] = config_actions(e, OPTION_NAMES)
    e.add_argument("--config", default=None, metavar="FILE.toml", help=_CONFIG_HELP)
    track_explicit_flags(e)
    e.set_defaults(func=_experiment)
