"""The training harness: one loop for every optimizer, metrics on disk, checkpoints, resume.

``train(TrainConfig(...))`` trains a network and, when ``out`` is set, writes

- ``out/metrics.jsonl``: one line per step (``kind="step"``: loss, wall_s, analog_time_tau, …) and one per
  epoch (``kind="epoch"``: train/test loss and accuracy);
- ``out/summary.json``: the final test_accuracy, test_loss, steps, wall_s, analog_time_tau, … and the config;
- ``out/checkpoint.pt`` after every epoch (model, optimizer, preconditioner, RNG states), from which
  ``resume=True`` continues a killed run to the same final metrics (same seed, CPU).

Optimizers (``OPTIMIZERS``): ``sgd`` (momentum 0.9), ``adam``, ``kfac`` (K-FAC preconditioner + SGD momentum
0.9; digital with backend ``exact``, thermodynamic with ``ideal`` or a profile), ``ngd-cg`` (NGD by conjugate
gradient + SGD), ``ngd`` (exact NGD, dense solve + SGD; small models), ``tngd`` (TNGD device + SGD),
``tngd-adam`` (TNGD + Adam with β1 = β2 = 0).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from thermotrain._errors import TrainingError
from thermotrain.training._baselines import NGDConfig, NGDPreconditioner
from thermotrain.training._data import Dataset, load_dataset
from thermotrain.training._kfac import KFACConfig, KFACPreconditioner
from thermotrain.training._nets import build_model
from thermotrain.training._solvers import AnalogConfig, make_solver
from thermotrain.training._tngd import TNGDConfig, TNGDPreconditioner

__all__ = ["OPTIMIZERS", "Method", "TrainConfig", "build_method", "evaluate", "train"]

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "kfac", "ngd-cg", "ngd", "tngd", "tngd-adam")
DEFAULT_LR = {
    "sgd": 0.05,
    "adam": 1e-3,
    "kfac": 0.05,
    "ngd-cg": 0.1,
    "ngd": 0.1,
    "tngd": 0.1,
    "tngd-adam": 1e-3,
}
DEFAULT_KAPPA0 = 1e-2  # device noise when neither the user nor a hardware profile sets one

DEFAULT_DAMPING = {"kfac": 1e-1, "ngd-cg": 1e-2, "ngd": 1e-2, "tngd": 1e-2, "tngd-adam": 1e-2}
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
        analog_time: device time per inverse/solve (thermodynamic K-FAC) or per step (TNGD), in τ.
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
        device: torch device (``"cpu"``, ``"cuda"``).
        out: output folder (``None``: nothing written).
        resume: continue from ``out/checkpoint.pt``.
        progress: show a tqdm progress bar.
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
    analog_time: float = 50.0
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
    progress: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise TrainingError(
                f"Unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}."
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError(f"epochs and batch_size must be ≥ 1; got {self.epochs}, {self.batch_size}.")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise TrainingError(f"lr must be a positive number; got {self.lr!r}.")
        if self.damping is not None and not (math.isfinite(self.damping) and self.damping > 0):
            raise TrainingError(f"damping must be > 0 (e.g. 1e-3 … 1e-1); got {self.damping!r}.")
        if self.lr_schedule not in ("constant", "cosine"):
            raise TrainingError(f"lr_schedule must be 'constant' or 'cosine'; got {self.lr_schedule!r}.")
        if self.kfac_mode not in ("inverse", "solve"):
            raise TrainingError(f"kfac_mode must be 'inverse' or 'solve'; got {self.kfac_mode!r}.")
        if self.resume and self.out is None:
            raise TrainingError("resume=True needs out=DIR holding checkpoint.pt.")

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
                    analog_time=cfg.analog_time,
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
            tcfg = TNGDConfig(
                damping=lam,
                analog_time=cfg.analog_time,
                delay=cfg.delay,
                kappa0=DEFAULT_KAPPA0 if cfg.kappa0 is None else cfg.kappa0,
                warm_start=cfg.tngd_warm_start,
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
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"Loss is {float(loss.detach())} at step {self.steps} ({self.cfg.optimizer}, lr={self.cfg.effective_lr}); "
                "no update was applied. Lower --lr or raise --damping, then rerun (or --resume from the last "
                "checkpoint)."
            )
        loss.backward()
        if self.precond is None:
            for name, p in self.model.named_parameters():
                if p.grad is not None and not torch.isfinite(p.grad).all():
                    raise TrainingError(f"Non-finite gradient in {name!r} at step {self.steps}; lower --lr.")
        elif isinstance(self.precond, KFACPreconditioner):
            self.precond.step()
        else:
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


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the global state user code may rely on
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    if not path.exists():
        raise TrainingError(f"--resume: no checkpoint at {path}; run without --resume to start afresh.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        _ = ckpt["config"], ckpt["model"], ckpt["method"], ckpt["epoch"], ckpt["rng"]
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise TrainingError(
            f"Checkpoint {path} is corrupt or not a thermotrain checkpoint ({type(exc).__name__}: {exc}); "
            "delete it and rerun without --resume."
        ) from exc
    saved = ckpt["config"]
    diff = {k: (saved.get(k), getattr(cfg, k)) for k in _RESUME_KEYS if saved.get(k) != getattr(cfg, k)}
    if diff:
        raise TrainingError(
            f"Checkpoint {path} was written with different settings {diff} (saved, now); rerun with the saved "
            "settings or use a new --out."
        )
    return ckpt


def _truncate_metrics(path: Path, step: int) -> None:
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("step", 0) <= step:
            keep.append(line)
    path.write_text("".join(f"{line}\n" for line in keep))


def _guard_stats(method: Method) -> dict[str, Any]:
    """The damping guard's counts when the run used an analog solver (else nothing)."""
    stats = getattr(getattr(method.precond, "solver", None), "stats", None)
    if stats is None or not hasattr(stats, "damping_bumps"):
        return {}
    return {"damping_bumps": stats.damping_bumps, "extra_damping_max": stats.extra_damping_max}


def train(cfg: TrainConfig, dataset: Dataset | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.dataset`` with ``cfg.optimizer``; return the summary dict.

    The summary holds ``test_accuracy`` (fraction), ``test_loss`` (nats), ``train_loss``, ``steps``,
    ``epochs``, ``wall_s`` (s, training only, summed over resumed segments), ``analog_time_tau`` (τ),
    ``values_loaded``/``values_read`` (counts), ``fallback_layers`` and ``config``.

    Raises:
        TrainingError: non-finite loss or gradients, invalid settings, corrupt or mismatched checkpoint.
    """
    from tqdm.auto import tqdm

    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda requested but torch sees no CUDA device; use --device cpu.")
    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.subset)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)  # noqa: NPY002 - seed the global RNG for user code in hooks
    random.seed(cfg.seed)
    model = build_model(cfg.model, data.image_shape, data.num_classes).to(device)
    n = len(data.x_train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    method = build_method(cfg, model, steps_per_epoch * cfg.epochs)
    xtr, ytr = data.x_train.to(device), data.y_train.to(device)
    xte, yte = data.x_test.to(device), data.y_test.to(device)

    out = Path(cfg.out) if cfg.out is not None else None
    metrics_path = ckpt_path = None
    start_epoch, wall_before = 0, 0.0
    history: list[dict[str, Any]] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        metrics_path, ckpt_path = out / "metrics.jsonl", out / "checkpoint.pt"
        if cfg.resume:
            ckpt = _load_checkpoint(ckpt_path, cfg)
            model.load_state_dict(ckpt["model"])
            method.load_state_dict(ckpt["method"])
            _set_rng_state(ckpt["rng"])
            start_epoch, wall_before = int(ckpt["epoch"]) + 1, float(ckpt["wall_s"])
            history = list(ckpt.get("history", []))
            _truncate_metrics(metrics_path, method.steps)
            log.info("resuming %s from epoch %d (step %d)", ckpt_path, start_epoch, method.steps)
        elif metrics_path.exists():
            metrics_path.unlink()

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
                    if fh is not None:
                        fh.write(json.dumps(rec) + "\n")
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if fh is not None:
                    rec = {
                        "kind": "step",
                        "step": method.steps,
                        "epoch": epoch,
                        "loss": loss,
                        "wall_s": wall_before + time.perf_counter() - t0,
                        "analog_time_tau": method.analog_time_tau,
                    }
                    fh.write(json.dumps(rec) + "\n")
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
            if fh is not None and ckpt_path is not None:
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                _save_checkpoint(
                    ckpt_path,
                    {
                        "config": dataclasses.asdict(cfg),
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "method": method.state_dict(),
                        "rng": _rng_state(),
                        "wall_s": rec["wall_s"],
                        "history": history,
                    },
                )
    finally:
        bar.close()
        if fh is not None:
            fh.close()

    test_loss, test_acc = evaluate(model, xte, yte)
    epochs_done = [h for h in history if h["kind"] == "epoch"]
    last = epochs_done[-1] if epochs_done else {}
    summary = {
        "optimizer": cfg.optimizer,
        "backend": cfg.backend
        if cfg.optimizer == "kfac"
        else ("ideal" if "tngd" in cfg.optimizer else "digital"),
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "train_loss": last.get("train_loss", train_loss),
        "steps": method.steps,
        "epochs": cfg.epochs,
        "wall_s": wall_before + time.perf_counter() - t0,
        "analog_time_tau": method.analog_time_tau,
        "values_loaded": method.values_loaded,
        "values_read": method.values_read,
        "fallback_layers": getattr(method.precond, "fallback_layers", []),
        **_guard_stats(method),
        "history": history,
        "config": dataclasses.asdict(cfg),
    }
    if out is not None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
