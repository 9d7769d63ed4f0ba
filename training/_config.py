"""The configuration of one training run: :class:`TrainConfig`, every field checked on construction.

Defaults per optimizer (``DEFAULT_LR``, ``DEFAULT_DAMPING``) were chosen on validation splits
(docs/results.md). The ``thermotrain train`` flags are derived from the fields of :class:`TrainConfig`.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from thermotrain._args import (
    arg_float,
    arg_float_or,
    arg_seed,
    check_choice,
    check_float,
    check_int,
    check_seed,
    nonnegative_float,
    positive_float,
    positive_int,
)
from thermotrain._errors import InputError, TrainingError
from thermotrain.models import DEFAULT_TARGET_ERROR
from thermotrain.training._data import DATASETS
from thermotrain.training._nets import MODELS

__all__ = [
    "DEFAULT_DAMPING",
    "DEFAULT_KAPPA0",
    "DEFAULT_LR",
    "MAX_DAMPING",
    "OPTIMIZERS",
    "ConfigError",
    "TrainConfig",
    "check_device",
    "ignored_fields",
]

OPTIMIZERS = ("sgd", "adam", "kfac", "ngd-cg", "ngd", "tngd", "tngd-adam")
DEFAULT_LR = {
    "sgd": 0.05,
    "adam": 1e-3,
    "kfac": 0.05,
    "ngd-cg": 0.1,
    "ngd": 0.1,
    "tngd": 0.1,
    "tngd-adam": 3e-3,  # tuned on a digits validation split with the normalised device (docs/results.md)
}
DEFAULT_KAPPA0 = 1e-2  # device noise when neither the user nor a hardware profile sets one

#: K-FAC's λ = 0.3 was chosen on validation splits (docs/results.md, "K-FAC damping"): Fashion-MNIST 1 epoch
#: 87.3 % (0.1: 86.1 %, 1.0: 87.0 %), digits 3 epochs 95.7 % (0.1: 95.6 %), 3 seeds each.
DEFAULT_DAMPING = {"kfac": 3e-1, "ngd-cg": 1e-2, "ngd": 1e-2, "tngd": 3e-2, "tngd-adam": 3e-2}
#: The largest damping λ accepted. Far above the curvature every preconditioned update is ≈ gradient/λ: at
#: λ = 1e6 kfac, ngd, ngd-cg and tngd (digits, 200 examples, 1 epoch) end exactly where the untrained model
#: starts. Larger values only overflow: TNGD's float32 device state from λ ≈ 1e19 (its warm start is scaled
#: by λ̂_max ≈ λ and multiplied by A ≈ λI), K-FAC's factors beyond float32's 3e38.
MAX_DAMPING = 1e6
#: how a factor wider than a tile is mapped (training._solvers.MAPPINGS; see AnalogSolver)
TILE_MAPPINGS = ("auto", "monolithic", "tiles", "gauss-seidel", "block-jacobi", "block-diagonal")

_DEVICE = re.compile(r"^(cpu|cuda|cuda:(0|[1-9][0-9]{0,3}))$")

_TNGD = ("tngd", "tngd-adam")
#: The optimizers that read a :class:`TrainConfig` field (a field not listed is read by every optimizer).
#: ``thermotrain train`` refuses a value set for an optimizer that ignores it (:func:`ignored_fields`).
READ_BY: dict[str, tuple[str, ...]] = {
    "backend": ("kfac", *_TNGD),
    "damping": ("kfac", "ngd-cg", "ngd", *_TNGD),
    "analog_time": ("kfac", *_TNGD),
    "delay": _TNGD,
    "kappa0": ("kfac", *_TNGD),
    "pd_guard": ("kfac", *_TNGD),
    "tngd_warm_start": _TNGD,
    "cg_iters": ("ngd-cg",),
    **dict.fromkeys(
        (
            *("readout_error", "analog_dt", "rounding", "readout_simulator", "roundings", "tile_mapping"),
            *("cells_per_tile", "kfac_mode", "inv_update_steps", "kl_clip"),
        ),
        ("kfac",),
    ),
}
#: The K-FAC fields only a device reads: digital K-FAC (backend ``exact``) ignores them.
KFAC_DEVICE_FIELDS = (
    "analog_time",
    "readout_error",
    "kappa0",
    "analog_dt",
    "rounding",
    "readout_simulator",
    "roundings",
    "pd_guard",
    "tile_mapping",
    "cells_per_tile",
)


class ConfigError(InputError, TrainingError):
    """A :class:`TrainConfig` field has the wrong type or is out of range. Both an
    :class:`~thermotrain.InputError` (a value from outside) and, for code written against earlier versions,
    a :class:`~thermotrain.TrainingError`."""


def check_device(value: Any, name: str = "device") -> str:
    """A torch device string from the allowlist ``cpu``, ``cuda``, ``cuda:N``; CUDA must be available (and
    N below the device count) when asked for."""
    if not isinstance(value, str) or not _DEVICE.match(value):
        raise ConfigError(f"{name}={value!r} is not a device this trainer runs on; use cpu, cuda or cuda:N.")
    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{name}={value!r}: cuda requested but torch.cuda.is_available() is False; use cpu."
            )
        index = int(value.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{name}={value!r}: torch sees {torch.cuda.device_count()} CUDA device(s); use cuda:0 … "
                f"cuda:{torch.cuda.device_count() - 1}."
            )
    return value


def ignored_fields(cfg: TrainConfig) -> dict[str, str]:
    """The fields of ``cfg`` that its run does not read (``READ_BY``; for ``kfac`` on backend ``exact`` also
    ``KFAC_DEVICE_FIELDS``), each with the settings that do read it (e.g. ``"tngd, tngd-adam"``)."""
    out = {}
    for name, users in READ_BY.items():
        device = name in KFAC_DEVICE_FIELDS
        digital_kfac = cfg.optimizer == "kfac" and cfg.backend == "exact" and device
        if cfg.optimizer not in users or digital_kfac:
            out[name] = ", ".join(
                "kfac on a device backend (ideal, rc8 or a profile)" if u == "kfac" and device else u
                for u in users
            )
    return out


def _opt(default: Any, help: str, unit: str | None = None, **flag: Any) -> Any:
    """A :class:`TrainConfig` field with its ``thermotrain train`` flag: ``help``, ``unit`` (τ, count, steps,
    dimensionless, nats, path; none for choices and on/off flags) and the argparse ``type``/``choices``
    (see :func:`thermotrain._args.add_dataclass_arguments`). The type must refuse what :func:`_validate`
    refuses (tests/training/test_cli_flags.py checks this)."""
    return field(default=default, metadata={"help": help, "unit": unit, **flag})


def _device_arg(text: str) -> str:
    """argparse type: cpu, cuda or cuda:N (CUDA must be available)."""
    try:
        return check_device(text.strip(), "device")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("device=")) from None


def _field(name: str, check: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one ``thermotrain._args`` check, re-raised as :class:`ConfigError` naming the field."""
    try:
        return check(name, *args, **kwargs)
    except InputError as exc:
        raise ConfigError(f"TrainConfig.{exc}") from None


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"TrainConfig.{name}={value!r} must be True or False, not {type(value).__name__}.")
    return value


def _validate(cfg: TrainConfig) -> None:
    """Check and normalise every field of ``cfg`` (ints stay ints, numbers become floats, paths strings)."""
    put = lambda name, value: object.__setattr__(cfg, name, value)  # noqa: E731 - frozen dataclass
    if not isinstance(cfg.optimizer, str) or cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"Unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
    for name, choices in (
        ("model", MODELS),
        ("dataset", DATASETS),
        ("rounding", ("nearest", "stochastic")),
        ("readout_simulator", ("trajectory", "law")),
        ("tile_mapping", TILE_MAPPINGS),
        ("kfac_mode", ("inverse", "solve")),
        ("lr_schedule", ("constant", "cosine")),
    ):
        _field(name, check_choice, getattr(cfg, name), choices)
    for name in ("backend", "out"):
        value = getattr(cfg, name)
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
            put(name, value)
        if value is None and name == "out":
            continue
        if not isinstance(value, str) or not value or "\x00" in value:
            raise ConfigError(f"TrainConfig.{name}={value!r} must be a non-empty string (a name or a path).")
    put("epochs", _field("epochs", check_int, cfg.epochs, minimum=1))
    put("seed", _field("seed", check_seed, cfg.seed))
    for name in ("batch_size", "roundings", "inv_update_steps", "cg_iters"):
        put(name, _field(name, check_int, getattr(cfg, name), minimum=1))
    for name in ("subset", "eval_every", "cells_per_tile"):
        if getattr(cfg, name) is not None:
            put(name, _field(name, check_int, getattr(cfg, name), minimum=1))
    if cfg.lr is not None:
        put("lr", _field("lr", check_float, cfg.lr, minimum=0.0, strict_min=True))
    if cfg.damping is not None:
        try:
            put(
                "damping",
                check_float("damping", cfg.damping, minimum=0.0, strict_min=True, maximum=MAX_DAMPING),
            )
        except InputError:
            raise ConfigError(
                f"damping must be > 0 and <= {MAX_DAMPING:g} (e.g. 1e-3 … 1; a larger λ only shrinks every "
                f"update to about gradient/λ); got {cfg.damping!r}."
            ) from None
    if cfg.kl_clip is not None:
        put("kl_clip", _field("kl_clip", check_float, cfg.kl_clip, minimum=0.0, strict_min=True, unit="nats"))
    if cfg.kappa0 is not None:
        put("kappa0", _field("kappa0", check_float, cfg.kappa0, minimum=0.0))
    if cfg.analog_time is None:  # earlier versions' "optimizer default"
        put("analog_time", "auto")
    if cfg.analog_time != "auto":
        if isinstance(cfg.analog_time, str):
            try:
                put("analog_time", float(cfg.analog_time))
            except ValueError:
                raise ConfigError(
                    f"TrainConfig.analog_time={cfg.analog_time!r} must be 'auto' or a number of tau."
                ) from None
        put("analog_time", _field("analog_time", check_float, cfg.analog_time, minimum=0.0, unit="tau"))
    if cfg.readout_error is not None:
        put(
            "readout_error",
            _field(
                "readout_error", check_float, cfg.readout_error, minimum=0.0, strict_min=True, maximum=10.0
            ),
        )
    put("delay", _field("delay", check_float, cfg.delay, minimum=0.0, unit="tau"))
    if cfg.analog_dt is not None:
        put(
            "analog_dt",
            _field("analog_dt", check_float, cfg.analog_dt, minimum=0.0, strict_min=True, unit="tau"),
        )
    if (
        cfg.optimizer == "kfac"
        and cfg.backend != "exact"
        and cfg.analog_time != "auto"
        and cfg.analog_time <= 0
    ):
        raise ConfigError(
            f"--analog-time {cfg.analog_time:g}: thermodynamic K-FAC (--backend {cfg.backend}) needs a device "
            "time > 0 τ per inverse/solve (e.g. 50 … 4000, or auto); for digital K-FAC use --backend exact."
        )
    for name in ("pd_guard", "tngd_warm_start", "resume", "overwrite", "progress"):
        _flag(name, getattr(cfg, name))
    check_device(cfg.device, "TrainConfig.device")
    if cfg.resume and cfg.out is None:
        raise ConfigError("resume=True needs out=DIR holding checkpoint.pt and checkpoint.json.")
    if cfg.resume and cfg.overwrite:
        raise ConfigError(
            "resume=True and overwrite=True contradict each other: resume continues the run in out, "
            "overwrite starts afresh there; choose one."
        )


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        model: ``"mlp"`` or ``"cnn"``.
        dataset: ``"digits"`` or ``"fashion-mnist"``.
        optimizer: one of ``OPTIMIZERS``.
        backend: ``"exact"``, ``"ideal"``, a shipped profile name (``"rc8"``) or a hardware-profile path
            (used by ``kfac`` and TNGD; TNGD runs the ideal device for ``"exact"``).
        epochs: passes over the training set.
        seed: seeds model initialisation, data order and device noise.
        batch_size: examples per step.
        lr: learning rate of the outer optimizer (``None``: per-optimizer default, ``DEFAULT_LR``).
        damping: λ of the second-order methods, in (0, ``MAX_DAMPING``] (``None``: ``DEFAULT_DAMPING``).
        analog_time: device time per inverse/solve (thermodynamic K-FAC) or per step (TNGD), in τ, or
            ``"auto"`` (default): K-FAC picks per loaded matrix the time that reaches ``readout_error``
            (:class:`thermotrain.models.ReadoutConfig`); TNGD runs its tuned ``TNGDConfig.analog_time`` (20 τ).
        readout_error: relative readout error that ``analog_time="auto"`` aims at (dimensionless; ``None``: the
            hardware profile's recommendation, else ``thermotrain.models.DEFAULT_TARGET_ERROR``).
        delay: TNGD delay t_d, in τ.
        kappa0: device noise κ0 (dimensionless; ``None``: a hardware profile's own κ0, else 1e-2).
        analog_dt: sample interval of thermodynamic K-FAC's covariance readout (τ; ≥ a profile's ADC interval;
            ``None``: chosen with the analog time, see :func:`thermotrain.models.plan_readout`).
        tile_mapping, cells_per_tile: how a factor is mapped onto the chip's tiles (issue 10): ``"auto"``
            uses the profile's ``chip`` (or ``cells_per_tile``) when there is one, else one device of any
            size; see :class:`~thermotrain.training.AnalogSolver`.
        readout_simulator: ``"law"`` (default: draw the covariance readout from its law, O(N³) whatever the
            analog time; :func:`thermotrain.models.inverse`'s ``simulator``) or ``"trajectory"`` (simulate
            every sample; the reference, O(S·N²)). The device, its time and I/O are the same.
        rounding, roundings: a hardware profile's DAC rounding ("nearest"/"stochastic") and the number of
            independent loads averaged per device call (randomized-rounding mitigation; costs × roundings).
        pd_guard: a matrix the profile's quantization made indefinite is retried with more damping instead
            of stopping the run (default on: an 8-bit array cannot hold a 785-wide factor at K-FAC's default
            damping otherwise); the retries are reported (``damping_bumps``, ``extra_damping_max``).
        kfac_mode: ``"inverse"`` or ``"solve"``.
        inv_update_steps: K-FAC inverse (device reload) interval, in steps.
        cg_iters: CG iterations per step for ``ngd-cg``.
        kl_clip: K-FAC trust region (nats; ``None`` = off), see :class:`KFACConfig`.
        lr_schedule: ``"constant"`` or ``"cosine"`` (lr·(1 + cos(π·step/total))/2 over the whole run).
        tngd_warm_start: TNGD starts from its previous estimate.
        subset: train on this many examples (and test on at most as many); ``None``: all.
        eval_every: also evaluate on the test set every this many steps (``kind="eval"`` records).
        device: torch device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (CUDA must be available).
        out: output folder (``None``: nothing written). It must be absent or empty unless ``resume`` or
            ``overwrite``.
        resume: continue from ``out/checkpoint.pt`` + ``out/checkpoint.json`` (``epochs`` must exceed the
            checkpoint's epochs).
        overwrite: remove the earlier run's files in ``out`` (metrics, summary, checkpoint) before writing.
        progress: show a tqdm progress bar.

    Every field is checked here (type and range); a bad value raises :class:`ConfigError` (an
    :class:`~thermotrain.InputError` and a :class:`~thermotrain.TrainingError`) naming the field.
    """

    model: str = _opt(
        "mlp", "network: mlp, the TNGD paper's cnn or vit (a vision transformer)", choices=MODELS
    )
    dataset: str = _opt("digits", "data set (both work offline)", choices=DATASETS)
    optimizer: str = _opt("adam", "optimizer", choices=OPTIMIZERS)
    backend: str = _opt(
        "exact",
        "where K-FAC's inverses/solves and TNGD's device run: exact (digital), ideal (ideal device), rc8/rlc8 "
        "(shipped calibrated profiles) or PROFILE.json (a hardware profile); first-order optimizers ignore it, "
        "TNGD runs the ideal device for exact",
        "name or path",
        metavar="BACKEND",
    )
    epochs: int = _opt(3, "passes over the training set", "count", type=positive_int)
    seed: int = _opt(0, "seed of initialisation, data order and device noise (0 … 2**32-1)", type=arg_seed())
    batch_size: int = _opt(128, "examples per step", "count", type=positive_int)
    lr: float | None = _opt(
        None, "learning rate (> 0; default per optimizer)", "dimensionless", type=positive_float
    )
    damping: float | None = _opt(
        None,
        f"damping λ of K-FAC/NGD/TNGD (> 0, <= {MAX_DAMPING:g}; default per optimizer)",
        "dimensionless",
        type=arg_float(0.0, MAX_DAMPING, strict_min=True),
    )
    analog_time: float | str = _opt(
        "auto",
        "device time per K-FAC inverse/solve or TNGD step (≥ 0, > 0 for thermodynamic K-FAC), or auto: K-FAC "
        "picks per loaded matrix the time that reaches --readout-error, TNGD runs its tuned 20 τ",
        "τ",
        type=arg_float_or({"auto": "auto"}, 0.0, unit="tau"),
        metavar="auto|T",
    )
    readout_error: float | None = _opt(
        None,
        "relative readout error that --analog-time auto aims at (> 0, ≤ 10; default: the hardware "
        f"profile's recommendation, else {DEFAULT_TARGET_ERROR:g})",
        "dimensionless",
        type=arg_float(0.0, 10.0, strict_min=True),
    )
    delay: float = _opt(0.0, "TNGD delay t_d between readout and reload (≥ 0)", "τ", type=nonnegative_float)
    kappa0: float | None = _opt(
        None,
        f"device noise strength κ0 (≥ 0; default: a hardware profile's own κ0, else {DEFAULT_KAPPA0:g})",
        "dimensionless",
        type=nonnegative_float,
    )
    analog_dt: float | None = _opt(
        None,
        "sample interval of K-FAC's covariance readout (> 0, ≥ a profile's ADC interval; default: chosen "
        "with the analog time)",
        "τ",
        type=positive_float,
    )
    rounding: str = _opt(
        "nearest", "a hardware profile's DAC rounding of the loaded matrix", choices=("nearest", "stochastic")
    )
    readout_simulator: str = _opt(
        "law",
        "how the covariance readout is simulated (the device is the same): trajectory (every sample, the "
        "reference) or law (one draw of the sample covariance from its law: O(N^3) whatever the analog time)",
        choices=("trajectory", "law"),
    )
    roundings: int = _opt(
        1,
        "independent loads averaged per device call (randomized-rounding mitigation; costs × roundings)",
        "count",
        type=positive_int,
    )
    pd_guard: bool = _opt(
        True,
        "retry a matrix the profile's quantization made indefinite with more damping (reported) instead of "
        "stopping",
    )
    kfac_mode: str = _opt("inverse", "thermodynamic K-FAC form", choices=("inverse", "solve"))
    inv_update_steps: int = _opt(10, "K-FAC inverse (device reload) interval", "steps", type=positive_int)
    cg_iters: int = _opt(10, "CG iterations per step of ngd-cg", "count", type=positive_int)
    kl_clip: float | None = _opt(
        1e-3,
        "K-FAC trust region (> 0, or off)",
        "nats",
        type=arg_float_or({"off": None}, 0.0, strict_min=True, unit="nats"),
    )
    lr_schedule: str = _opt("constant", "lr schedule over the run's steps", choices=("constant", "cosine"))
    tngd_warm_start: bool = _opt(True, "TNGD starts each step from its previous estimate")
    tile_mapping: str = _opt(
        "auto",
        "how a factor wider than a tile is mapped onto the chip: auto (the profile's chip if it declares one, "
        "or --cells-per-tile, else one device of any size), monolithic, tiles (inverse: block-diagonal; "
        "solve: conjugate gradients preconditioned by the tiles, to the readout's target error), or for "
        "solve mode gauss-seidel, block-jacobi or block-diagonal",
        choices=TILE_MAPPINGS,
    )
    cells_per_tile: int | None = _opt(
        None,
        "cells per analog tile (default: the hardware profile's chip, if any)",
        "count",
        type=positive_int,
    )
    subset: int | None = _opt(
        None,
        "train on this many examples, test on at most as many (default: all)",
        "count",
        type=positive_int,
    )
    eval_every: int | None = _opt(
        None,
        "also evaluate on the test set every this many steps (default: only after each epoch)",
        "steps",
        type=positive_int,
    )
    device: str = _opt("cpu", "torch device: cpu, cuda or cuda:N", type=_device_arg, metavar="DEVICE")
    out: str | None = _opt(
        None, "output folder (must be absent or empty unless --resume/--overwrite)", "path", metavar="DIR"
    )
    resume: bool = _opt(
        False,
        "continue the run in OUT from OUT/checkpoint.pt + checkpoint.json (--epochs must exceed its epochs)",
        group="out-mode",
    )
    overwrite: bool = _opt(
        False,
        "remove the earlier run's files in OUT (metrics, summary, checkpoint) before training",
        group="out-mode",
    )
    progress: bool = _opt(True, "show a tqdm progress bar")

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def effective_damping(self) -> float:
        return self.damping if self.damping is not None else DEFAULT_DAMPING.get(self.optimizer, 0.0)
