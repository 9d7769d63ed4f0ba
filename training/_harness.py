"""The training harness: one loop for every optimizer, metrics on disk, checkpoints, resume.

``train(TrainConfig(...))`` trains a network and, when ``out`` is set, writes

- ``out/metrics.jsonl``: one line per step (``kind="step"``: loss, wall_s, analog_time_tau, …) and one per
  epoch (``kind="epoch"``: train/test loss and accuracy);
- ``out/summary.json`` (written once, atomically, at the end): ``"status": "completed"`` with the final
  test_accuracy, test_loss, steps, wall_s, analog_time_tau, … and the config; or ``"status": "diverged"``
  with the step, loss and reason (see *Divergence* below). A run that fails otherwise leaves no summary:
  if it failed before recording any step (a refused setting, a non-finite device state at step 1) it removes
  what it created (metrics.jsonl, tb/, the folder itself when it made it), so the same command can be rerun;
  if it had recorded steps it keeps them for diagnosis (and its checkpoint for ``resume``), and its error
  says so and names ``--overwrite``.
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
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from thermotrain._args import join_words
from thermotrain._errors import CheckpointError, DivergedError, InputError, OutputError
from thermotrain._html import train_report
from thermotrain._safeio import check_output_dir, check_regular, load_json, read_regular, write_text_atomic
from thermotrain.models import ReadoutConfig
from thermotrain.models._linalg import plan_context
from thermotrain.training._baselines import NGDConfig, NGDPreconditioner
from thermotrain.training._config import (
    DEFAULT_DAMPING,
    MAX_DAMPING,
    OPTIMIZERS,
    ConfigError,
    TrainConfig,
    check_device,
)
from thermotrain.training._data import Dataset, load_dataset
from thermotrain.training._distributed import check_settings, launch_from_env
from thermotrain.training._distributed import setup as setup_distributed
from thermotrain.training._kfac import KFACConfig, KFACPreconditioner
from thermotrain.training._nets import build_model
from thermotrain.training._precond import ReadoutTally
from thermotrain.training._solvers import AnalogSolver, make_solver
from thermotrain.training._tensorboard import TB_FOLDER, TensorBoardSink
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

#: Divergence thresholds (see the module docstring): multiples of L0 = max(first loss, ln(classes)).
DIVERGENCE_FACTOR = 4.0
DIVERGENCE_PATIENCE = 3
DIVERGENCE_HARD_FACTOR = 1e3

CHECKPOINT_MARKER = "thermotrain-checkpoint"
CHECKPOINT_VERSION = 2
CHECKPOINT_FILES = ("checkpoint.pt", "checkpoint.json")
#: The files a run writes into its folder; ``overwrite`` removes these (and their temporary siblings) only.
RUN_FILES = ("metrics.jsonl", "summary.json", "config.toml", "report.html", TB_FOLDER, *CHECKPOINT_FILES)
_RUN_TEMP = re.compile(
    r"^(\.(metrics\.jsonl|summary\.json|checkpoint\.pt|checkpoint\.json)\.[A-Za-z0-9_]+\.tmp|checkpoint\.pt\.tmp)$"
)

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
    "readout_error",
    "readout_simulator",
    "tile_mapping",
    "cells_per_tile",
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


class Method:
    """An optimizer of the harness: torch optimizer + optional preconditioner, one ``step(x, y)`` each.

    ``step`` runs forward, checks the loss, backward, preconditions, steps; it returns the loss (float).
    ``analog_time_tau``, ``values_loaded``, ``values_read`` accumulate the device use of the preconditioner.
    """

    #: the data-parallel rank under torchrun (``training._distributed.DataParallel``): ``step`` gets this
    #: rank's shard and averages the gradients and the loss over the global batch; ``None``: one process
    dist: Any = None

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
            # backend exact: the digital solver; else one ReadoutConfig: the profile's recommendation (or the
            # defaults) with this run's explicit settings on top (None leaves a field as it is)
            solver = make_solver(
                cfg.backend,
                generator=noise,
                pd_guard=cfg.pd_guard,
                simulator=cfg.readout_simulator,
                mapping=cfg.tile_mapping,
                cells_per_tile=cfg.cells_per_tile,
            )
            if isinstance(solver, AnalogSolver):
                solver.readout = solver.readout.with_(
                    analog_time=cfg.analog_time,
                    target_error=cfg.readout_error,
                    sample_interval=cfg.analog_dt,
                    kappa0=cfg.kappa0,
                    rounding=cfg.rounding,
                    roundings=cfg.roundings,
                )
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
                analog_time=TNGDConfig.analog_time if cfg.analog_time == "auto" else cfg.analog_time,
                delay=cfg.delay,
                kappa0=cfg.kappa0,
                warm_start=cfg.tngd_warm_start,
                backend=cfg.backend,
                pd_guard=cfg.pd_guard,
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
        self.readout = ReadoutTally()
        #: device calls of the steps since the harness last wrote them to metrics.jsonl
        self.pending_calls: list[dict[str, Any]] = []

    def readout_setting(self) -> tuple[Any, float | None]:
        """(analog time setting: "auto" or τ, target readout error) of the analog solver, or (None, None)."""
        readout = getattr(getattr(self.precond, "solver", None), "readout", None)
        if isinstance(readout, ReadoutConfig):
            return readout.analog_time, plan_context(self.precond.solver.backend, readout)[2]
        if self.cfg.optimizer in ("tngd", "tngd-adam"):
            return getattr(self.precond.config, "analog_time", None), None
        return None, None

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step on the batch (x, y); returns its loss (nats, before the update).

        Raises:
            DivergedError: the loss or a gradient is not finite; no update is applied.
        """
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        if self.dist is not None:  # every rank sees the global batch's loss and gradients (and stops alike)
            loss.backward()
            loss = self.dist.reduce_gradients(self.model, loss, len(x))
        if not torch.isfinite(loss):
            value = float(loss.detach())
            raise _diverged(
                f"Loss is {value} at step {self.steps + 1} ({self.cfg.optimizer}, lr={self.cfg.effective_lr}); "
                "no update was applied",
                step=self.steps + 1,
                loss=value,
                reason="non-finite loss",
                fix=_divergence_fix(self.cfg),
            )
        if self.dist is None:
            loss.backward()
        for name, p in self.model.named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise _diverged(
                    f"Non-finite gradient in {name!r} at step {self.steps + 1} ({self.cfg.optimizer}, "
                    f"lr={self.cfg.effective_lr}); no update was applied",
                    step=self.steps + 1,
                    loss=float(loss.detach()),
                    reason=f"non-finite gradient in {name}",
                    fix=_divergence_fix(self.cfg),
                )
        if self.precond is not None:
            self.precond.step(x, y)
            last = self.precond.last_step
            self.analog_time_tau += float(last.get("analog_time_tau", 0.0))
            self.values_loaded += int(last.get("values_loaded", 0))
            self.values_read += int(last.get("values_read", 0))
            calls = self.precond.device_log()
            if calls:
                self.readout.add(calls)
                self.pending_calls.extend(calls)
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
            "readout": self.readout.as_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.opt.load_state_dict(state["opt"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.precond is not None:
            self.precond.load_state_dict(state["precond"])
        self.analog_time_tau, self.values_loaded, self.values_read = state["analog"]
        self.readout.load(state.get("readout", {}))


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


_GENERIC_FIX = "Lower --lr or raise --damping"


def _divergence_fix(cfg: TrainConfig) -> str:
    """What to change when ``cfg``'s run diverges, as flags with their values: ``--lr``; ``--damping`` for the
    second-order optimizers while below ``MAX_DAMPING``; ``--kappa0`` where the device noise was set (first
    when above the device's full scale, 1)."""
    fixes = [f"lower --lr (now {cfg.effective_lr:g})"]
    if cfg.optimizer in DEFAULT_DAMPING and cfg.effective_damping < MAX_DAMPING:
        fixes.append(f"raise --damping (now {cfg.effective_damping:g})")
    noisy = cfg.optimizer in ("tngd", "tngd-adam") or (cfg.optimizer == "kfac" and cfg.backend != "exact")
    if noisy and cfg.kappa0 is not None and cfg.kappa0 > 0:
        kappa = f"lower --kappa0 (now {cfg.kappa0:g}; the device's full scale is 1)"
        fixes.insert(0 if cfg.kappa0 > 1 else len(fixes), kappa)
    text = join_words(fixes)
    return text[0].upper() + text[1:]


def _diverged(message: str, *, step: int, loss: float, reason: str, fix: str = _GENERIC_FIX) -> DivergedError:
    """A :class:`DivergedError` carrying ``step`` (1-based), ``loss`` (nats) and ``reason`` for the summary;
    ``fix`` names the settings to change (:func:`_divergence_fix`)."""
    exc = DivergedError(
        f"Training diverged: {message}. {fix} and rerun (with --overwrite, or in another --out)."
    )
    exc.step, exc.loss, exc.reason = step, loss, reason  # type: ignore[attr-defined]
    return exc


class DivergenceMonitor:
    """The explosion rule of the module docstring, fed one step loss at a time.

    ``reference`` is L0 = max(first loss, ln(classes)) (nats); ``streak`` counts consecutive steps above
    ``DIVERGENCE_FACTOR`` × L0. Both go into the checkpoint so a resumed run judges as the full one would.
    """

    def __init__(
        self, num_classes: int, reference: float | None = None, streak: int = 0, *, fix: str = _GENERIC_FIX
    ) -> None:
        self.floor = math.log(max(int(num_classes), 2))
        self.reference = reference
        self.streak = streak
        self.fix = fix  # the settings to change, in the message (:func:`_divergence_fix`)

    def state(self) -> dict[str, Any]:
        return {"reference": self.reference, "streak": self.streak}

    def check(self, step: int, loss: float) -> DivergedError | None:
        """The error to raise when ``loss`` at ``step`` (applied) completes a divergence, else ``None``."""
        if not math.isfinite(loss):
            return _diverged(
                f"loss {loss} at step {step}", step=step, loss=loss, reason="non-finite loss", fix=self.fix
            )
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
                fix=self.fix,
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
                fix=self.fix,
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
    """Read and check ``out/checkpoint.json`` then ``out/checkpoint.pt`` (no pickled objects) for resuming
    ``cfg``; return (settings, tensors). Nothing is trained or written before this returns."""
    meta, meta_path, pt_path = _checkpoint_meta(out)
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
    return meta, _checkpoint_tensors(pt_path, meta)


def read_checkpoint(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checked settings and tensors of the checkpoint in ``out`` (the run's last finished epoch), to read
    a finished run's state (e.g. its K-FAC factors); :class:`CheckpointError` as for ``--resume``."""
    meta, _, pt_path = _checkpoint_meta(out)
    return meta, _checkpoint_tensors(pt_path, meta)


def _checkpoint_meta(out: Path) -> tuple[dict[str, Any], Path, Path]:
    """(checkpoint.json's checked settings, its path, checkpoint.pt's path)."""
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
    return meta, meta_path, pt_path


def _checkpoint_tensors(pt_path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """checkpoint.pt, checked against the SHA-256 in ``meta`` and unpickled tensors-only."""
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
    return tensors


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
        if keep_checkpoint and p.name == TB_FOLDER:
            continue  # a resumed run appends a segment; TensorBoard hides the old one past the checkpoint
        if (p.name in RUN_FILES or _RUN_TEMP.match(p.name)) and (p.is_file() or p.is_symlink()):
            p.unlink()
        elif p.name == TB_FOLDER and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)


class _Made:
    """What a run creates in its output folder (the folders ``mkdir`` makes, the files and tb/ it opens):
    a run that fails before recording any step removes exactly these again, so the folder is as it was
    (absent, or empty after ``--overwrite``) and a rerun is not refused; nothing it did not create is touched."""

    def __init__(self) -> None:
        self.made_dirs: list[Path] = []  # deepest first
        self.made_entries: list[Path] = []
        self.recorded = False  # a record (step, eval, readout) reached metrics.jsonl / tb

    def folders(self, out: Path) -> None:
        """Note the folders that ``out.mkdir(parents=True)`` is about to create."""
        p = out
        while not p.exists() and not p.is_symlink() and p != p.parent:
            self.made_dirs.append(p)
            p = p.parent

    def entries(self, *paths: Path) -> None:
        """Note those of ``paths`` that do not exist yet (the run is about to create them)."""
        self.made_entries += [p for p in paths if not p.exists() and not p.is_symlink()]

    def remove(self) -> None:
        for p in self.made_entries:
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.exists() or p.is_symlink():
                    p.unlink()
            except OSError as exc:  # the original error matters more; say what is left
                log.warning("could not remove %s (%s)", p, exc)
        for d in self.made_dirs:
            try:
                d.rmdir()  # only if empty: another process's files stay
            except OSError:
                break


def _kept_note(out: Path, steps: int, checkpoint: bool) -> str:
    """What a failed run (not a divergence) that recorded steps leaves in ``out``, and what to do next."""
    kept = f"{out} keeps the metrics of the {steps} step(s) run before the failure"
    if checkpoint:
        return (
            f"{kept} and the checkpoint of the last finished epoch: continue it with --resume, or start "
            "afresh with --overwrite (or another --out)."
        )
    return f"{kept} for diagnosis; rerun with --overwrite (or another --out)."


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


def _device_clock(method: Method) -> dict[str, Any]:
    """The device's clocks so far, for an evaluation record: the wall-clock seconds spent simulating it
    (``device_simulation_s``) and, for tiled K-FAC, its wall time in τ (tiles in parallel); ``{}`` when
    digital. With the record's ``wall_s`` and ``analog_time_tau`` they give the modelled device time at
    that evaluation (:mod:`thermotrain.training._protocol`)."""
    if method.precond is None:
        return {}
    stats = method.precond.device_stats()
    return {
        k: float(stats[k])
        for k in ("device_simulation_s", "device_wall_time_tau")
        if stats.get(k) is not None
    }


def _guard_stats(method: Method) -> dict[str, Any]:
    """The device's counts beyond time and I/O (the damping guard's), and its readout summary."""
    if method.precond is None:
        return {}
    out = dict(method.precond.device_stats())
    if method.readout.calls:
        setting, target = method.readout_setting()
        out["readout"] = {"analog_time": setting, "target_error": target, **method.readout.as_dict()}
    return out


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

    launch = launch_from_env()  # torchrun: data-parallel (training/_distributed.py); None: one process
    if launch is not None:
        check_settings(cfg.optimizer, cfg.batch_size, launch.world_size)
    dp = setup_distributed(cfg.device, launch)
    writer = dp is None or dp.is_writer  # only rank 0 writes outputs
    try:
        out = _prepare_out(cfg) if writer else None
        # a checkpoint is checked (settings, digest, tensors-only unpickling) before any data or model is made;
        # every rank reads it (from rank 0's folder)
        ckpt_dir = out if writer else (Path(cfg.out).expanduser().absolute() if cfg.out is not None else None)
        resumed = _load_checkpoint(ckpt_dir, cfg) if (ckpt_dir is not None and cfg.resume) else None
    except BaseException:
        if dp is not None:
            dp.agree(False)
            dp.close()
        raise
    if dp is not None:
        dp.agree(True)
    try:
        return _train(cfg, dataset, tqdm, dp, out, ckpt_dir, resumed)
    finally:
        if dp is not None:
            dp.close()


def _train(
    cfg: TrainConfig,
    dataset: Dataset | None,
    tqdm: Any,
    dp: Any,
    out: Path | None,
    ckpt_dir: Path | None,
    resumed: tuple[dict[str, Any], dict[str, Any]] | None,
) -> dict[str, Any]:
    """The body of :func:`train` once the output folder and the checkpoint are checked (and, under torchrun,
    the process group joined: ``dp``; ``out`` is ``None`` on ranks other than 0)."""
    writer = dp is None or dp.is_writer
    device = torch.device(cfg.device)
    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.subset)
    if dp is not None:
        check_settings(cfg.optimizer, cfg.batch_size, dp.world_size, len(data.x_train))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)  # noqa: NPY002 - seed the global RNG for user code in hooks
    random.seed(cfg.seed)
    model = build_model(cfg.model, data.image_shape, data.num_classes).to(device)
    n = len(data.x_train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    method = build_method(cfg, model, steps_per_epoch * cfg.epochs)
    if dp is not None:
        method.dist = dp
        if method.precond is not None:
            method.precond.dist = dp
    fix = _divergence_fix(cfg)
    monitor = DivergenceMonitor(data.num_classes, fix=fix)
    xtr, ytr = data.x_train.to(device), data.y_train.to(device)
    xte, yte = data.x_test.to(device), data.y_test.to(device)

    start_epoch, wall_before = 0, 0.0
    history: list[dict[str, Any]] = []
    if resumed is not None and ckpt_dir is not None:
        meta, tensors = resumed
        _apply_checkpoint(tensors, model, method, ckpt_dir / "checkpoint.pt")
        start_epoch, wall_before = meta["epoch"] + 1, float(meta["wall_s"])
        history = list(meta["history"])
        monitor = DivergenceMonitor(data.num_classes, **meta["divergence"], fix=fix)
    if dp is not None:
        dp.broadcast_model(model)
    made = _Made()  # what this run creates in out: removed again if it fails before recording anything
    fh: Any = None
    tb: TensorBoardSink | None = None
    try:
        if out is not None:
            metrics_path = out / "metrics.jsonl"
            if resumed is not None:
                _clear_run(out, keep_checkpoint=True)
                _truncate_metrics(metrics_path, method.steps)
                log.info("resuming %s from epoch %d (step %d)", out, start_epoch, method.steps)
            else:
                _clear_run(out, keep_checkpoint=False)
            made.folders(out)
            out.mkdir(parents=True, exist_ok=True)
            made.entries(metrics_path, out / TB_FOLDER)
            fh = metrics_path.open("a")
            # TensorBoard scalars in out/tb/ (the numbers of metrics.jsonl); a resumed run hides the old
            # segment's events after the checkpoint's step, as metrics.jsonl was truncated there
            tb = TensorBoardSink(out, purge_step=method.steps + 1 if resumed else None)
    except BaseException:
        if tb is not None:
            tb.close()
        if fh is not None:
            fh.close()
        made.remove()
        raise
    bar = tqdm(
        total=steps_per_epoch * cfg.epochs,
        initial=method.steps,
        disable=not cfg.progress or not writer,
        desc=f"{cfg.optimizer}/{cfg.backend}",
        unit="step",
        leave=False,
    )
    t0 = time.perf_counter()
    train_loss = float("nan")
    epoch = start_epoch
    announced = False

    def record(rec: dict[str, Any]) -> None:
        made.recorded = True
        if fh is not None:
            fh.write(_dumps(rec) + "\n")
        if tb is not None:
            tb.record(rec)

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
            **({"world_size": dp.world_size} if dp is not None else {}),
        }

    try:
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
            order = order.to(device)
            losses = []
            for i in range(steps_per_epoch):
                idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                if dp is not None:
                    idx = dp.shard(idx)  # this rank's part of the global batch
                lr = float(method.opt.param_groups[0]["lr"])
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
                        **_device_clock(method),
                    }
                    history.append(rec)
                    record(rec)
                if method.pending_calls:
                    if not announced and cfg.progress and writer:
                        announced = True
                        tqdm.write(method.readout.line(*method.readout_setting()), file=sys.stderr)
                    for call in method.pending_calls:
                        record({"kind": "readout", "step": method.steps, **call})
                    method.pending_calls = []
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                record(
                    {
                        "kind": "step",
                        "step": method.steps,
                        "epoch": epoch,
                        "loss": loss,
                        "lr": lr,
                        "wall_s": wall_before + time.perf_counter() - t0,
                        "analog_time_tau": method.analog_time_tau,
                        "values_loaded": method.values_loaded,
                        "values_read": method.values_read,
                        **(
                            {"damping_bumps": method.precond.device_stats().get("damping_bumps", 0)}
                            if method.precond is not None
                            else {}
                        ),
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
                **_device_clock(method),
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
            tb.close(summary, summary["config"])
            train_report(out, summary)
        raise
    except BaseException as exc:
        if tb is not None:
            tb.close()  # what was logged stays readable
        if fh is not None:
            fh.close()
        if out is not None:
            if made.recorded:  # kept for diagnosis (or --resume): say so, and how to start afresh
                exc.add_note(_kept_note(out, method.steps, (out / "checkpoint.json").exists()))
            else:
                made.remove()
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
        tb.close(summary, summary["config"])  # hparams with the final metrics
        train_report(out, summary)
    return summary
