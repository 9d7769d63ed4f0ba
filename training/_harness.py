"""The training harness: one loop for every optimizer, metrics on disk, checkpoints, resume.

``train(TrainConfig(...))`` trains a network and, when ``out`` is set, writes

- ``out/metrics.jsonl``: one line per step (``kind="step"``: loss, wall_s, analog_time_tau, …) and one per
  epoch (``kind="epoch"``: train/test loss and accuracy);
- ``out/summary.json`` (written once, atomically, at the end): ``"status": "completed"`` with the final
  test_accuracy, test_loss, steps, wall_s, analog_time_tau, … and the config; or ``"status": "diverged"``
  with the step, loss and reason (see *Divergence* below). A run that fails otherwise leaves no summary.
- ``out/checkpoint.pt`` + ``out/checkpoint.json`` after every epoch, from which ``resume=True`` continues a
  killed run to the same final metrics (same seed, CPU).

Output folders: a folder that already holds files is refused unless ``resume`` (continue the run in it) or
``overwrite`` (the old run's files -- metrics, summary, checkpoint -- are removed before the new run writes
anything; a folder holding other files is refused even then, so ``--overwrite`` never deletes a user's files).

Checkpoints hold no pickled objects. ``checkpoint.pt`` is a ``torch.save`` of tensors, numbers, strings and
lists/dicts of them only (model, optimizer and preconditioner state dicts, RNG states as tensors), and is
read with ``torch.load(..., weights_only=True)``; ``checkpoint.json`` beside it holds the settings (marker
``"thermotrain-checkpoint"``, format version, config, epoch, step, history) and the SHA-256 of the tensor
file. A checkpoint is checked -- regular file under the size cap, marker, version, config, epochs, digest,
then tensors-only unpickling -- before anything is trained or written; anything else raises
:class:`~thermotrain.CheckpointError`.

Divergence (:class:`~thermotrain.DivergedError`, exit status 4 on the command line): a step whose loss or
gradient is not finite (no update is applied), a step loss above ``DIVERGENCE_HARD_FACTOR`` (10³) × L₀, or
a step loss above ``DIVERGENCE_FACTOR`` (4) × L₀ for ``DIVERGENCE_PATIENCE`` (3) consecutive steps, where
L₀ = max(first step's loss, ln(classes)) is the loss of an uninformed model (ln 10 = 2.30 nats for 10
classes). Why these numbers: a mean cross-entropy of 4·ln(C) (9.2 nats for 10 classes) means the network
puts on average e⁻⁹·² ≈ 10⁻⁴ probability on the right class, a thousand times below guessing -- confidently
wrong, which healthy training does not pass through (measured on digits, 5 epochs, one thread: the largest
step loss of sgd, adam, kfac digital and on the ideal device, ngd-cg and tngd-adam, batch 64 and 128, was
at most 1.02 × L₀; the default tngd before it blew up, 1.0 × L₀). The default ``tngd`` on digits for
12 epochs (the issue's case) went 0.6 → 11.5, 11.7, 16.8, 343, 120, 22.5, 12.5, 18.4 nats (one thread) or
10.9, 34.6, 219, 285 nats (two threads) and ended at chance accuracy: caught after three steps, where a
10 × L₀ threshold would have missed the one-thread run (it dipped to 22.5 < 23). Three steps in a row
tolerate an outlier batch; a loss 10³ × L₀ (``--lr 1e6``: 5e10 nats at step 2) stops the run at once.

Optimizers (``OPTIMIZERS``): ``sgd`` (momentum 0.9), ``adam``, ``kfac`` (K-FAC preconditioner + SGD momentum
0.9; digital with backend ``exact``, thermodynamic with ``ideal`` or a profile), ``ngd-cg`` (NGD by conjugate
gradient + SGD), ``ngd`` (exact NGD, dense solve + SGD; small models), ``tngd`` (TNGD device + SGD),
``tngd-adam`` (TNGD + Adam with β1 = β2 = 0).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from thermotrain._args import check_choice, check_float, check_int, check_seed
from thermotrain._errors import CheckpointError, DivergedError, InputError, OutputError, TrainingError
from thermotrain._safeio import check_output_dir, check_regular, load_json, read_regular, write_text_atomic
from thermotrain.training._baselines import NGDConfig, NGDPreconditioner
from thermotrain.training._data import DATASETS, Dataset, load_dataset
from thermotrain.training._kfac import KFACConfig, KFACPreconditioner
from thermotrain.training._nets import MODELS, build_model
from thermotrain.training._solvers import AnalogConfig, make_solver
from thermotrain.training._tngd import TNGDConfig, TNGDPreconditioner

__all__ = [
    "CHECKPOINT_MARKER",
    "CHECKPOINT_VERSION",
    "OPTIMIZERS",
    "ConfigError",
    "DivergenceMonitor",
    "Method",
    "TrainConfig",
    "build_method",
    "check_device",
    "evaluate",
    "train",
]

log = logging.getLogger(__name__)

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

DEFAULT_DAMPING = {"kfac": 1e-1, "ngd-cg": 1e-2, "ngd": 1e-2, "tngd": 3e-2, "tngd-adam": 3e-2}

#: Divergence thresholds (see the module docstring): multiples of L0 = max(first loss, ln(classes)).
DIVERGENCE_FACTOR = 4.0
DIVERGENCE_PATIENCE = 3
DIVERGENCE_HARD_FACTOR = 1e3

CHECKPOINT_MARKER = "thermotrain-checkpoint"
CHECKPOINT_VERSION = 2
CHECKPOINT_FILES = ("checkpoint.pt", "checkpoint.json")
#: The files a run writes into its folder; ``overwrite`` removes these (and their temporary siblings) only.
RUN_FILES = ("metrics.jsonl", "summary.json", *CHECKPOINT_FILES)
_RUN_TEMP = re.compile(
    r"^(\.(metrics\.jsonl|summary\.json|checkpoint\.pt|checkpoint\.json)\.[A-Za-z0-9_]+\.tmp|checkpoint\.pt\.tmp)$"
)
_DEVICE = re.compile(r"^(cpu|cuda|cuda:(0|[1-9][0-9]{0,3}))$")

_RESUME_KEYS = (
    "model",
    "dataset",
    "optimizer",
    "backend",
    "seed",
    "batch_size",
    "lr",
    "damping",
    "analog_time",
    "delay",
    "kappa0",
    "analog_dt",
    "rounding",
    "roundings",
    "pd_guard",
    "kfac_mode",
    "inv_update_steps",
    "cg_iters",
    "kl_clip",
    "lr_schedule",
    "subset",
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
    for name in ("subset", "eval_every"):
        if getattr(cfg, name) is not None:
            put(name, _field(name, check_int, getattr(cfg, name), minimum=1))
    if cfg.lr is not None:
        put("lr", _field("lr", check_float, cfg.lr, minimum=0.0, strict_min=True))
    if cfg.damping is not None:
        try:
            put("damping", check_float("damping", cfg.damping, minimum=0.0, strict_min=True))
        except InputError:
            raise ConfigError(f"damping must be > 0 (e.g. 1e-3 … 1e-1); got {cfg.damping!r}.") from None
    if cfg.kl_clip is not None:
        put("kl_clip", _field("kl_clip", check_float, cfg.kl_clip, minimum=0.0, strict_min=True, unit="nats"))
    if cfg.kappa0 is not None:
        put("kappa0", _field("kappa0", check_float, cfg.kappa0, minimum=0.0))
    if cfg.analog_time is not None:
        put("analog_time", _field("analog_time", check_float, cfg.analog_time, minimum=0.0, unit="tau"))
    put("delay", _field("delay", check_float, cfg.delay, minimum=0.0, unit="tau"))
    put(
        "analog_dt", _field("analog_dt", check_float, cfg.analog_dt, minimum=0.0, strict_min=True, unit="tau")
    )
    if (
        cfg.optimizer == "kfac"
        and cfg.backend != "exact"
        and cfg.analog_time is not None
        and cfg.analog_time <= 0
    ):
        raise ConfigError(
            f"TrainConfig.analog_time={cfg.analog_time!r} tau: thermodynamic K-FAC (backend {cfg.backend!r}) "
            "needs a device time > 0 per inverse/solve (e.g. 50 … 4000 tau)."
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
        backend: ``"exact"``, ``"ideal"`` or a hardware-profile path (used by ``kfac``; TNGD always runs the
            ideal device equation).
        epochs: passes over the training set.
        seed: seeds model initialisation, data order and device noise.
        batch_size: examples per step.
        lr: learning rate of the outer optimizer (``None``: per-optimizer default, ``DEFAULT_LR``).
        damping: λ of the second-order methods (``None``: ``DEFAULT_DAMPING``).
        analog_time: device time per inverse/solve (thermodynamic K-FAC) or per step (TNGD), in τ; ``None``: the
            optimizer's own default (``AnalogConfig.analog_time`` = 50, ``TNGDConfig.analog_time`` = 20).
        delay: TNGD delay t_d, in τ.
        kappa0: device noise κ0 (dimensionless; ``None``: a hardware profile's own κ0, else 1e-2).
        analog_dt: sample interval of thermodynamic K-FAC's covariance readout (τ; ≥ a profile's ADC interval).
        rounding, roundings: a hardware profile's DAC rounding ("nearest"/"stochastic") and the number of
            independent loads averaged per device call (randomized-rounding mitigation; costs × roundings).
        pd_guard: a matrix the profile's quantization made indefinite is retried with more damping instead
            of stopping the run; the retries are reported (``damping_bumps``, ``extra_damping_max``).
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

    model: str = "mlp"
    dataset: str = "digits"
    optimizer: str = "adam"
    backend: str = "exact"
    epochs: int = 3
    seed: int = 0
    batch_size: int = 128
    lr: float | None = None
    damping: float | None = None
    analog_time: float | None = None
    delay: float = 0.0
    kappa0: float | None = None
    analog_dt: float = 0.1
    rounding: str = "nearest"
    roundings: int = 1
    pd_guard: bool = False
    kfac_mode: str = "inverse"
    inv_update_steps: int = 10
    cg_iters: int = 10
    kl_clip: float | None = 1e-3
    lr_schedule: str = "constant"
    tngd_warm_start: bool = True
    subset: int | None = None
    eval_every: int | None = None
    device: str = "cpu"
    out: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def effective_damping(self) -> float:
        return self.damping if self.damping is not None else DEFAULT_DAMPING.get(self.optimizer, 0.0)


class Method:
    """An optimizer of the harness: torch optimizer + optional preconditioner, one ``step(x, y)`` each.

    ``step`` runs forward, checks the loss, backward, preconditions, steps; it returns the loss (float).
    ``analog_time_tau``, ``values_loaded``, ``values_read`` accumulate the device use of the preconditioner.
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, total_steps: int | None = None) -> None:
        self.cfg = cfg
        self.model = model
        self.loss_fn = nn.CrossEntropyLoss()
        self.steps = 0
        self.precond: Any = None
        lr, lam = cfg.effective_lr, cfg.effective_damping
        noise = torch.Generator().manual_seed(cfg.seed + 7919)
        name = cfg.optimizer
        if name == "adam":
            self.opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        elif name == "tngd-adam":
            self.opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.0, 0.0))
        elif name in ("sgd", "kfac"):
            self.opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        else:
            self.opt = torch.optim.SGD(model.parameters(), lr=lr)
        if name == "kfac":
            solver = make_solver(
                cfg.backend,
                AnalogConfig(
                    analog_time=AnalogConfig.analog_time if cfg.analog_time is None else cfg.analog_time,
                    kappa0=DEFAULT_KAPPA0 if cfg.kappa0 is None else cfg.kappa0,
                    dt=cfg.analog_dt,
                    rounding=cfg.rounding,
                    roundings=cfg.roundings,
                    pd_guard=cfg.pd_guard,
                ),
                generator=noise,
            )
            backend = getattr(solver, "backend", None)
            if cfg.kappa0 is None and backend is not None and backend != "ideal":
                # no κ0 given: the profile's own noise level, never a default that overrides it
                solver.config = dataclasses.replace(solver.config, kappa0=float(backend.kappa0))
            kcfg = KFACConfig(
                damping=lam,
                mode=cfg.kfac_mode,  # type: ignore[arg-type]
                inv_update_steps=cfg.inv_update_steps,
                kl_clip=cfg.kl_clip,
                lr=lambda step: float(self.opt.param_groups[0]["lr"]),
            )
            self.precond = KFACPreconditioner(model, kcfg, solver)
        elif name in ("ngd-cg", "ngd"):
            self.precond = NGDPreconditioner(
                model,
                NGDConfig(damping=lam, method="cg" if name == "ngd-cg" else "dense", cg_iters=cfg.cg_iters),
            )
        elif name in ("tngd", "tngd-adam"):
            # TNGD has no digital mode: backend "exact" means the ideal device; a profile name/path is
            # resolved by TNGDConfig (RC family). κ0 None: 0 on the ideal device, the profile's own κ0.
            tcfg = TNGDConfig(
                damping=lam,
                analog_time=TNGDConfig.analog_time if cfg.analog_time is None else cfg.analog_time,
                delay=cfg.delay,
                kappa0=cfg.kappa0,
                warm_start=cfg.tngd_warm_start,
                backend=cfg.backend,
            )
            self.precond = TNGDPreconditioner(model, tcfg, generator=noise)
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        if cfg.lr_schedule == "cosine":
            total = max(int(total_steps or 1), 1)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.opt, lambda k: 0.5 * (1.0 + math.cos(math.pi * min(k, total) / total))
            )
        self.analog_time_tau = 0.0
        self.values_loaded = 0
        self.values_read = 0

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step on the batch (x, y); returns its loss (nats, before the update).

        Raises:
            DivergedError: the loss or a gradient is not finite; no update is applied.
        """
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        if not torch.isfinite(loss):
            value = float(loss.detach())
            raise _diverged(
                f"Loss is {value} at step {self.steps + 1} ({self.cfg.optimizer}, lr={self.cfg.effective_lr}); "
                "no update was applied",
                step=self.steps + 1,
                loss=value,
                reason="non-finite loss",
            )
        loss.backward()
        for name, p in self.model.named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise _diverged(
                    f"Non-finite gradient in {name!r} at step {self.steps + 1} ({self.cfg.optimizer}, "
                    f"lr={self.cfg.effective_lr}); no update was applied",
                    step=self.steps + 1,
                    loss=float(loss.detach()),
                    reason=f"non-finite gradient in {name}",
                )
        if isinstance(self.precond, KFACPreconditioner):
            self.precond.step()
        elif self.precond is not None:
            self.precond.step(x, y)
        if self.precond is not None:
            last = self.precond.last_step
            self.analog_time_tau += float(last.get("analog_time_tau", 0.0))
            self.values_loaded += int(last.get("values_loaded", 0))
            self.values_read += int(last.get("values_read", 0))
        self.opt.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps += 1
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "opt": self.opt.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "precond": None if self.precond is None else self.precond.state_dict(),
            "analog": [self.analog_time_tau, self.values_loaded, self.values_read],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.opt.load_state_dict(state["opt"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.precond is not None:
            self.precond.load_state_dict(state["precond"])
        self.analog_time_tau, self.values_loaded, self.values_read = state["analog"]


def build_method(cfg: TrainConfig, model: nn.Module, total_steps: int | None = None) -> Method:
    """The :class:`Method` for ``cfg.optimizer`` on ``model`` (``total_steps`` for the cosine schedule)."""
    return Method(cfg, model, total_steps)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy (fraction) of ``model`` on (x, y)."""
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    for i in range(0, len(x), batch):
        out = model(x[i : i + batch])
        total += float(nn.functional.cross_entropy(out, y[i : i + batch], reduction="sum"))
        correct += int((out.argmax(-1) == y[i : i + batch]).sum())
    model.train(was_training)
    return total / len(x), correct / len(x)


def _diverged(message: str, *, step: int, loss: float, reason: str) -> DivergedError:
    """A :class:`DivergedError` carrying ``step`` (1-based), ``loss`` (nats) and ``reason`` for the summary."""
    exc = DivergedError(
        f"Training diverged: {message}. Lower --lr or raise --damping and rerun (with --overwrite, or in "
        "another --out)."
    )
    exc.step, exc.loss, exc.reason = step, loss, reason  # type: ignore[attr-defined]
    return exc


class DivergenceMonitor:
    """The explosion rule of the module docstring, fed one step loss at a time.

    ``reference`` is L0 = max(first loss, ln(classes)) (nats); ``streak`` counts consecutive steps above
    ``DIVERGENCE_FACTOR`` × L0. Both go into the checkpoint so a resumed run judges as the full one would.
    """

    def __init__(self, num_classes: int, reference: float | None = None, streak: int = 0) -> None:
        self.floor = math.log(max(int(num_classes), 2))
        self.reference = reference
        self.streak = streak

    def state(self) -> dict[str, Any]:
        return {"reference": self.reference, "streak": self.streak}

    def check(self, step: int, loss: float) -> DivergedError | None:
        """The error to raise when ``loss`` at ``step`` (applied) completes a divergence, else ``None``."""
        if not math.isfinite(loss):
            return _diverged(f"loss {loss} at step {step}", step=step, loss=loss, reason="non-finite loss")
        if self.reference is None:
            self.reference = max(loss, self.floor)
        ref = self.reference
        if loss > DIVERGENCE_HARD_FACTOR * ref:
            return _diverged(
                f"loss {loss:.4g} nats at step {step} exceeds {DIVERGENCE_HARD_FACTOR:g} x L0 = "
                f"{DIVERGENCE_HARD_FACTOR * ref:.4g} (L0 = max(first loss, ln classes) = {ref:.4g})",
                step=step,
                loss=loss,
                reason=f"loss above {DIVERGENCE_HARD_FACTOR:g} x L0",
            )
        self.streak = self.streak + 1 if loss > DIVERGENCE_FACTOR * ref else 0
        if self.streak >= DIVERGENCE_PATIENCE:
            return _diverged(
                f"loss {loss:.4g} nats at step {step}, above {DIVERGENCE_FACTOR:g} x L0 = "
                f"{DIVERGENCE_FACTOR * ref:.4g} for {self.streak} consecutive steps (L0 = max(first loss, "
                f"ln classes) = {ref:.4g})",
                step=step,
                loss=loss,
                reason=f"loss above {DIVERGENCE_FACTOR:g} x L0 for {DIVERGENCE_PATIENCE} consecutive steps",
            )
        return None


# ------------------------------------------------------------------------------------------ checkpoints


def _rng_state() -> dict[str, Any]:
    """The global RNG states as tensors, ints and floats only (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - user code may rely on it
    version, py_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": gauss,
        },
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def _finite_or_text(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by their text ("nan", "inf"), so the JSON stays strict."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite_or_text(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_text(v) for v in obj]
    return obj


def _dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(_finite_or_text(obj), indent=indent, allow_nan=False)


def _save_checkpoint(out: Path, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write ``out/checkpoint.pt`` (tensors only) and then ``out/checkpoint.json`` (settings + the tensor
    file's SHA-256), each through a temporary file and a rename."""
    from thermotrain._safeio import write_bytes_atomic

    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_MARKER, "version": CHECKPOINT_VERSION, **tensors}, buf)
    data = buf.getvalue()
    write_bytes_atomic(out / "checkpoint.pt", data)
    meta = {
        "format": CHECKPOINT_MARKER,
        "version": CHECKPOINT_VERSION,
        **meta,
        "tensors": {"file": "checkpoint.pt", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
    }
    write_text_atomic(out / "checkpoint.json", _dumps(meta, indent=1))


def _refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"--resume: {path} {why}; it is not loaded. Start afresh with --overwrite (or another --out)."
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_meta(path: Path, meta: Any) -> dict[str, Any]:
    """The settings of a checkpoint, checked field by field against what this version writes."""
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_MARKER:
        raise _refuse(path, f'is not a thermotrain checkpoint (no "format": "{CHECKPOINT_MARKER}")')
    if meta.get("version") != CHECKPOINT_VERSION:
        raise _refuse(
            path,
            f"has checkpoint version {meta.get('version')!r}; this thermotrain reads {CHECKPOINT_VERSION}",
        )
    t = meta.get("tensors")
    ok = (
        _is_int(meta.get("epoch"))
        and meta["epoch"] >= 0
        and _is_int(meta.get("step"))
        and meta["step"] >= 0
        and isinstance(meta.get("wall_s"), int | float)
        and isinstance(meta.get("config"), dict)
        and isinstance(meta.get("history"), list)
        and all(isinstance(h, dict) for h in meta["history"])
        and isinstance(meta.get("divergence"), dict)
        and isinstance(t, dict)
        and t.get("file") == "checkpoint.pt"
        and isinstance(t.get("sha256"), str)
        and re.fullmatch(r"[0-9a-f]{64}", t["sha256"]) is not None
    )
    if not ok:
        raise _refuse(path, "is corrupt (a field is missing or of the wrong type)")
    d = meta["divergence"]
    ref, streak = d.get("reference"), d.get("streak")
    if not ((ref is None or isinstance(ref, int | float)) and _is_int(streak) and streak >= 0):
        raise _refuse(path, "is corrupt (divergence state)")
    return meta


def _load_checkpoint(out: Path, cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read and check ``out/checkpoint.json`` then ``out/checkpoint.pt`` (no pickled objects); return
    (settings, tensors). Nothing is trained or written before this returns."""
    meta_path, pt_path = out / "checkpoint.json", out / "checkpoint.pt"
    if not meta_path.exists() and not pt_path.exists():
        raise CheckpointError(
            f"--resume: no checkpoint in {out} (checkpoint.json + checkpoint.pt); run without --resume to "
            "start afresh."
        )
    if not meta_path.exists():
        raise _refuse(
            pt_path,
            "has no checkpoint.json beside it: it was not written by this thermotrain version (checkpoints "
            "are read without pickle, from tensors + JSON settings)",
        )
    try:
        meta = _check_meta(meta_path, load_json(meta_path, "json", "checkpoint.json"))
    except InputError as exc:
        raise CheckpointError(f"--resume: {exc} Start afresh with --overwrite (or another --out).") from None
    saved = meta["config"]
    diff = {k: (saved.get(k), getattr(cfg, k)) for k in _RESUME_KEYS if saved.get(k) != getattr(cfg, k)}
    if diff:
        raise CheckpointError(
            f"Checkpoint {meta_path} was written with different settings {diff} (saved, now); rerun with the "
            "saved settings or use a new --out."
        )
    done = meta["epoch"] + 1
    if done >= cfg.epochs:
        raise CheckpointError(
            f"--resume: the checkpoint in {out} already holds {done} epoch(s), as many as or more than "
            f"epochs={cfg.epochs}; to train further pass --epochs {done + 1} (or more) with --resume."
        )
    try:
        data = read_regular(pt_path, "checkpoint", "checkpoint.pt")
    except InputError as exc:
        raise CheckpointError(f"--resume: {exc}") from None
    if hashlib.sha256(data).hexdigest() != meta["tensors"]["sha256"]:
        raise _refuse(
            pt_path,
            "does not match the SHA-256 in checkpoint.json (replaced, truncated, or the run was killed while "
            "saving)",
        )
    try:
        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure of the tensors-only unpickler means: not ours
        raise _refuse(pt_path, f"is corrupt or holds more than tensors ({type(exc).__name__})") from None
    if (
        not isinstance(tensors, dict)
        or tensors.get("format") != CHECKPOINT_MARKER
        or not all(isinstance(tensors.get(k), dict) for k in ("model", "method", "rng"))
    ):
        raise _refuse(pt_path, f'is not a thermotrain checkpoint (no "format": "{CHECKPOINT_MARKER}")')
    return meta, tensors


def _apply_checkpoint(tensors: dict[str, Any], model: nn.Module, method: Method, path: Path) -> None:
    """Load the checked tensors into the model, the optimizer and the RNGs; a mismatch (other model, other
    optimizer state) is a :class:`CheckpointError`."""
    try:
        model.load_state_dict(tensors["model"])
        method.load_state_dict(tensors["method"])
        _set_rng_state(tensors["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        raise _refuse(path, f"does not fit this model/optimizer ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------------------ the run folder


def _prepare_out(cfg: TrainConfig) -> Path | None:
    """Check ``cfg.out`` before any work: absent or empty, or ``resume``, or ``overwrite`` of a folder that
    holds only an earlier run's files (anything else is named and refused)."""
    if cfg.out is None:
        return None
    out = check_output_dir(cfg.out, overwrite=cfg.resume or cfg.overwrite)
    if cfg.overwrite and out.is_dir():
        foreign = sorted(
            p.name for p in out.iterdir() if p.name not in RUN_FILES and not _RUN_TEMP.match(p.name)
        )
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise OutputError(
                f"--out {out} holds files that are not a thermotrain training run ({shown}); --overwrite "
                "removes only a run's metrics.jsonl, summary.json and checkpoint; choose another folder."
            )
    return out


def _clear_run(out: Path, keep_checkpoint: bool) -> None:
    """Remove an earlier run's files from ``out`` (with ``keep_checkpoint``: only its summary and
    temporary files, for a resumed run)."""
    if not out.is_dir():
        return
    for p in out.iterdir():
        if keep_checkpoint and p.name in (*CHECKPOINT_FILES, "metrics.jsonl"):
            continue
        if (p.name in RUN_FILES or _RUN_TEMP.match(p.name)) and (p.is_file() or p.is_symlink()):
            p.unlink()


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the records of ``path`` up to ``step`` (a killed run may have logged steps past its last
    checkpoint); streamed through a temporary file, so any size is fine."""
    if not path.exists():
        return
    check_regular(path, "checkpoint", "metrics.jsonl")
    tmp = path.with_name(f".{path.name}.resume.tmp")
    with path.open("r", errors="replace") as src, tmp.open("w") as dst:
        for line in src:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and _is_int(rec.get("step", 0)) and rec.get("step", 0) <= step:
                dst.write(line if line.endswith("\n") else line + "\n")
    os.replace(tmp, path)


def _guard_stats(method: Method) -> dict[str, Any]:
    """The damping guard's counts when the run used an analog solver (else nothing)."""
    stats = getattr(getattr(method.precond, "solver", None), "stats", None)
    if stats is None or not hasattr(stats, "damping_bumps"):
        return {}
    return {"damping_bumps": stats.damping_bumps, "extra_damping_max": stats.extra_damping_max}


def train(cfg: TrainConfig, dataset: Dataset | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.dataset`` with ``cfg.optimizer``; return the summary dict.

    The summary holds ``status`` (``"completed"``), ``test_accuracy`` (fraction), ``test_loss`` (nats),
    ``train_loss``, ``steps``, ``epochs``, ``wall_s`` (s, training only, summed over resumed segments),
    ``analog_time_tau`` (τ), ``values_loaded``/``values_read`` (counts), ``fallback_layers`` and ``config``.

    Raises:
        DivergedError: the run diverged (module docstring); ``out/summary.json`` then says
            ``"status": "diverged"`` with the step, loss and reason, and metrics.jsonl keeps every step
            applied.
        CheckpointError: ``resume`` from a missing, foreign, corrupt or mismatched checkpoint (before any
            work).
        OutputError: ``out`` holds files and neither ``resume`` nor ``overwrite`` is set (before any work).
        TrainingError: other failures of the optimizers (non-finite curvature, refused matrices).
    """
    from tqdm.auto import tqdm

    out = _prepare_out(cfg)
    # a checkpoint is checked (settings, digest, tensors-only unpickling) before any data or model is made
    resumed = _load_checkpoint(out, cfg) if (out is not None and cfg.resume) else None
    device = torch.device(cfg.device)
    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.subset)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)  # noqa: NPY002 - seed the global RNG for user code in hooks
    random.seed(cfg.seed)
    model = build_model(cfg.model, data.image_shape, data.num_classes).to(device)
    n = len(data.x_train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    method = build_method(cfg, model, steps_per_epoch * cfg.epochs)
    monitor = DivergenceMonitor(data.num_classes)
    xtr, ytr = data.x_train.to(device), data.y_train.to(device)
    xte, yte = data.x_test.to(device), data.y_test.to(device)

    metrics_path = None
    start_epoch, wall_before = 0, 0.0
    history: list[dict[str, Any]] = []
    if out is not None:
        metrics_path = out / "metrics.jsonl"
        if resumed is not None:
            meta, tensors = resumed
            _apply_checkpoint(tensors, model, method, out / "checkpoint.pt")
            start_epoch, wall_before = meta["epoch"] + 1, float(meta["wall_s"])
            history = list(meta["history"])
            monitor = DivergenceMonitor(data.num_classes, **meta["divergence"])
            _clear_run(out, keep_checkpoint=True)
            _truncate_metrics(metrics_path, method.steps)
            log.info("resuming %s from epoch %d (step %d)", out, start_epoch, method.steps)
        else:
            _clear_run(out, keep_checkpoint=False)
        out.mkdir(parents=True, exist_ok=True)

    fh = metrics_path.open("a") if metrics_path is not None else None
    bar = tqdm(
        total=steps_per_epoch * cfg.epochs,
        initial=method.steps,
        disable=not cfg.progress,
        desc=f"{cfg.optimizer}/{cfg.backend}",
        unit="step",
        leave=False,
    )
    t0 = time.perf_counter()
    train_loss = float("nan")
    epoch = start_epoch

    def record(rec: dict[str, Any]) -> None:
        if fh is not None:
            fh.write(_dumps(rec) + "\n")

    def base_summary() -> dict[str, Any]:
        return {
            "optimizer": cfg.optimizer,
            "backend": cfg.backend
            if cfg.optimizer == "kfac"
            else (
                ("ideal" if cfg.backend == "exact" else str(cfg.backend))
                if "tngd" in cfg.optimizer
                else "digital"
            ),
            "steps": method.steps,
            "epochs": cfg.epochs,
            "wall_s": wall_before + time.perf_counter() - t0,
            "analog_time_tau": method.analog_time_tau,
            "values_loaded": method.values_loaded,
            "values_read": method.values_read,
            "fallback_layers": getattr(method.precond, "fallback_layers", []),
            **_guard_stats(method),
        }

    try:
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
            order = order.to(device)
            losses = []
            for i in range(steps_per_epoch):
                idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                loss = method.step(xtr[idx], ytr[idx])
                losses.append(loss)
                if cfg.eval_every and method.steps % cfg.eval_every == 0:
                    e_loss, e_acc = evaluate(model, xte, yte)
                    model.train()
                    rec = {
                        "kind": "eval",
                        "step": method.steps,
                        "epoch": epoch,
                        "test_loss": e_loss,
                        "test_accuracy": e_acc,
                        "wall_s": wall_before + time.perf_counter() - t0,
                        "analog_time_tau": method.analog_time_tau,
                    }
                    history.append(rec)
                    record(rec)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                record(
                    {
                        "kind": "step",
                        "step": method.steps,
                        "epoch": epoch,
                        "loss": loss,
                        "wall_s": wall_before + time.perf_counter() - t0,
                        "analog_time_tau": method.analog_time_tau,
                    }
                )
                diverged = monitor.check(method.steps, loss)
                if diverged is not None:
                    raise diverged
            train_loss = float(np.mean(losses))
            test_loss, test_acc = evaluate(model, xte, yte)
            rec = {
                "kind": "epoch",
                "step": method.steps,
                "epoch": epoch,
                "train_loss": train_loss,
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "wall_s": wall_before + time.perf_counter() - t0,
                "analog_time_tau": method.analog_time_tau,
            }
            history.append(rec)
            if fh is not None and out is not None:
                record(rec)
                fh.flush()
                _save_checkpoint(
                    out,
                    {"model": model.state_dict(), "method": method.state_dict(), "rng": _rng_state()},
                    {
                        "epoch": epoch,
                        "step": method.steps,
                        "wall_s": rec["wall_s"],
                        "config": dataclasses.asdict(cfg),
                        "history": history,
                        "divergence": monitor.state(),
                    },
                )
    except DivergedError as exc:
        if fh is not None:
            fh.flush()
        last = next((h for h in reversed(history) if h["kind"] == "epoch"), {})
        summary = {
            "status": "diverged",
            "divergence": {
                "step": getattr(exc, "step", method.steps),
                "epoch": epoch,
                "loss": getattr(exc, "loss", float("nan")),
                "reason": getattr(exc, "reason", str(exc)),
                "message": str(exc),
            },
            **base_summary(),
            "last_epoch_test_accuracy": last.get("test_accuracy"),
            "last_epoch_test_loss": last.get("test_loss"),
            "history": history,
            "config": dataclasses.asdict(cfg),
        }
        exc.summary = summary  # type: ignore[attr-defined]
        if out is not None:
            write_text_atomic(out / "summary.json", _dumps(summary, indent=2))
        raise
    finally:
        bar.close()
        if fh is not None:
            fh.close()

    test_loss, test_acc = evaluate(model, xte, yte)
    epochs_done = [h for h in history if h["kind"] == "epoch"]
    last = epochs_done[-1] if epochs_done else {}
    summary = {
        "status": "completed",
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "train_loss": last.get("train_loss", train_loss),
        **base_summary(),
        "history": history,
        "config": dataclasses.asdict(cfg),
    }
    if out is not None:
        write_text_atomic(out / "summary.json", _dumps(summary, indent=2))
    return summary
