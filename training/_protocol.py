"""The protocol every ``thermotrain experiment`` (and the demo's comparison) runs under: validation split,
tuning on a stated grid by validation accuracy, test results of the selected settings over seeds with 95 %
t-intervals, smoothed steps-to-target, bands on the plots, and ``results.json``.

1. **Split.** A validation set is split off the training set by a fixed permutation
   (:func:`thermotrain.training._data.validation_split`, seed 123): 20 % for digits; 5 000 examples for
   Fashion-MNIST (20 % when ``--subset`` leaves fewer than 25 000 training examples). The test set is not
   used until step 3.
2. **Tune.** Each arm (a row of the experiment) has a grid of learning rates (and λ for the preconditioned
   optimizers). Every grid point is trained once, with seed :data:`TUNE_SEED` (10 000, not one of the
   reported seeds) for ``tune_epochs`` epochs on the training part and evaluated on the validation part; its
   score is the validation accuracy smoothed over the last ``smooth`` evaluations (a trailing running mean,
   :func:`smoothed`). :func:`select` picks the best score (ties: the first point of the grid) and sees only
   validation scores. An arm may share another arm's selection (``tune_with``: e.g. TNGD at every analog
   time uses the λ and lr tuned at one reference time), or have a one-point grid (``selected_on:
   "fixed"``; nothing is tuned). A selection at the edge of a grid of ≥ 3 points is flagged
   (``at_grid_edge``): the grid should be widened before the result is trusted.
3. **Report.** The selected settings are trained with seeds 0 … S−1 on the same training part (the
   validation examples stay out) and evaluated on the test set ``evals_per_epoch`` times per epoch. Each
   metric is reported per seed with its mean and a 95 % t-interval over seeds (:func:`t_ci95`: mean ±
   t₀.₉₇₅,ₙ₋₁ · s/√n, s the sample standard deviation; none for one seed).
4. **Steps-to-target** (:func:`steps_to_target`): the first step at which the smoothed test curve (a
   trailing running mean over ``smooth`` evaluations) reaches the target -- not one evaluation.
5. **Time.** ``simulation_time_s`` is the measured wall-clock of the run on this CPU, simulating the analog
   device included. ``modelled_device_time_s`` = (simulation time − time spent simulating the device,
   the preconditioner's ``device_simulation_s``) + analog time × τ, with τ the hardware profile's (``tau_source``) or,
   for the ideal device, the TNGD paper's 1 µs (:class:`HardwareConstants`).

Grid defaults are multiples of each optimizer's default (``DEFAULT_LR``, ``DEFAULT_DAMPING`` of
:mod:`thermotrain.training._config`): ``lr × (0.1, 0.3, 1, 3, 10)`` for SGD and Adam (5 learning rates),
``lr × (0.3, 1, 3)`` and ``λ × (0.3, 1, 3)`` for K-FAC, NGD and TNGD (9 points). Every run uses the
``lr_schedule`` of the protocol (default cosine: lr·(1 + cos(π·step/total))/2 over the run).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thermotrain._args import comma_items
from thermotrain._errors import DivergedError, InputError, ThermotrainError, TrainingError
from thermotrain._safeio import write_text_atomic
from thermotrain.training._config import DEFAULT_DAMPING, DEFAULT_LR, TrainConfig
from thermotrain.training._data import Dataset, validation_split

__all__ = [
    "DEFAULT_DAMPING_GRID",
    "DEFAULT_LR_GRID",
    "DEFAULT_PRECOND_LR_GRID",
    "PAPER_TAU_S",
    "TUNE_SEED",
    "Arm",
    "Protocol",
    "ProtocolResult",
    "parse_grid",
    "run_protocol",
    "select",
    "smoothed",
    "split",
    "steps_to_target",
    "t_ci95",
    "time_to_target",
    "write_results",
]

TUNE_SEED = 10_000
#: seed of the fixed validation permutation (independent of every training seed)
SPLIT_SEED = 123
DEFAULT_LR_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)
DEFAULT_PRECOND_LR_GRID = (0.3, 1.0, 3.0)
DEFAULT_DAMPING_GRID = (0.3, 1.0, 3.0)
DEFAULT_SMOOTH = 3
DEFAULT_EVALS_PER_EPOCH = 4
FIRST_ORDER = ("sgd", "adam")
PAPER_TAU_S = 1e-6  # the TNGD paper's device time constant (s), used for the ideal device
FASHION_VALIDATION = 5000
RESULTS_FILE = "results.json"


def parse_grid(name: str, value: Any) -> tuple[float, ...]:
    """A grid of positive multipliers from ``"0.3,1,3"`` or a sequence of numbers, sorted.

    Strict: an empty item (``"1,,2"``, ``"1,"``) or a multiplier given twice (``"1,1"``, ``"1,1.0"``) is
    refused, not dropped, so the grid run is the grid written.

    Raises:
        InputError: empty, an empty item, not numbers, not finite, ≤ 0 or repeated (naming ``name`` and the
            value).
    """
    flag = "--" + name.replace("_", "-")
    items: Sequence[Any]
    if isinstance(value, str):
        items = comma_items(flag, value, "0.3,1,3")
    elif isinstance(value, Sequence) and not isinstance(value, bytes):
        items = list(value)
    else:
        raise InputError(f"{flag}={value!r} must be comma-separated numbers, e.g. 0.3,1,3.")
    out: dict[float, Any] = {}
    for item in items:
        try:
            v = float(item) if not isinstance(item, bool) else math.nan
        except (TypeError, ValueError):
            v = math.nan
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"{flag}={value!r}: {item!r} is not a number > 0; give e.g. 0.3,1,3.")
        if v in out:
            spelled = "" if str(item) == str(out[v]) else f" (as {out[v]!r} and {item!r})"
            raise InputError(
                f"{flag}={value!r}: the multiplier {v:g} is given twice{spelled}; give each once."
            )
        out[v] = item
    if not out:
        raise InputError(f"{flag}={value!r} is empty; give at least one multiplier, e.g. 1.")
    return tuple(sorted(out))


def grid_text(grid: Sequence[float]) -> str:
    """``(0.3, 1.0, 3.0)`` -> ``"0.3,1,3"`` (the form ``parse_grid`` and the flags take); exact: a value that
    6 significant digits would round is written in full, so two multipliers never print alike."""
    return ",".join(f"{v:g}" if float(f"{v:g}") == v else repr(float(v)) for v in grid)


def _sig(v: float) -> float:
    return float(f"{v:.3g}")


@dataclass(frozen=True)
class Arm:
    """One row of an experiment.

    Attributes:
        label: the row's name.
        settings: :class:`TrainConfig` overrides that define it (optimizer, backend, analog time, …).
        fixed: hyperparameters given by the user (``{"lr": 1e-3}``): not tuned.
        tune_with: the label of an arm whose selected lr/λ this one uses instead of tuning its own.
        scale: multipliers of that shared selection (``{"damping": 3.0}``: the source's λ × 3; only with
            ``tune_with``): a row at a stated offset from a tuned setting, e.g. to measure how λ and a
            non-ideality interact, without tuning on the test set.
    """

    label: str
    settings: Mapping[str, Any]
    fixed: Mapping[str, float] = field(default_factory=dict)
    tune_with: str | None = None
    scale: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Protocol:
    """The settings of the protocol (module docstring). Grids are multipliers of the optimizer's default
    lr / λ (dimensionless); epochs and seeds are counts."""

    seeds: int = 5
    epochs: int = 5
    tune_epochs: int | None = None
    lr_grid: tuple[float, ...] = DEFAULT_LR_GRID
    precond_lr_grid: tuple[float, ...] = DEFAULT_PRECOND_LR_GRID
    damping_grid: tuple[float, ...] = DEFAULT_DAMPING_GRID
    smooth: int = DEFAULT_SMOOTH
    evals_per_epoch: int = DEFAULT_EVALS_PER_EPOCH
    lr_schedule: str = "cosine"
    tune_seed: int = TUNE_SEED
    first_seed: int = 0

    @property
    def seed_list(self) -> range:
        """The reported seeds: ``first_seed`` … ``first_seed + seeds − 1``."""
        return range(self.first_seed, self.first_seed + self.seeds)

    @property
    def effective_tune_epochs(self) -> int:
        return self.tune_epochs if self.tune_epochs is not None else self.epochs

    def grid(self, arm: Arm) -> dict[str, tuple[float, ...]]:
        """The absolute grid of ``arm``: ``{"lr": (...)}`` for SGD/Adam, ``{"lr": ..., "damping": ...}``
        for the preconditioned optimizers; a fixed value is a one-point grid."""
        opt = arm.settings.get("optimizer", "adam")
        lr0 = arm.settings.get("lr") or DEFAULT_LR[opt]
        out: dict[str, tuple[float, ...]] = {}
        out["lr"] = tuple(
            _sig(lr0 * m) for m in (self.lr_grid if opt in FIRST_ORDER else self.precond_lr_grid)
        )
        if opt not in FIRST_ORDER:
            lam0 = arm.settings.get("damping") or DEFAULT_DAMPING[opt]
            out["damping"] = tuple(_sig(lam0 * m) for m in self.damping_grid)
        for key, value in arm.fixed.items():
            out[key] = (float(value),)
        return out

    def describe(self) -> dict[str, Any]:
        """The protocol as written into results.json."""
        return {
            "validation": "digits: 20 % of the training set; fashion-mnist: 5 000 examples (20 % when fewer "
            "than 25 000 training examples); fixed permutation seed 123",
            "selected_on": "validation accuracy, trailing running mean over the last "
            f"{self.smooth} evaluations",
            "tuning_seed": self.tune_seed,
            "tuning_epochs": self.effective_tune_epochs,
            "epochs": self.epochs,
            "seeds": list(self.seed_list),
            "lr_grid_x_default": list(self.lr_grid),
            "precond_lr_grid_x_default": list(self.precond_lr_grid),
            "damping_grid_x_default": list(self.damping_grid),
            "lr_schedule": self.lr_schedule,
            "evaluations_per_epoch": self.evals_per_epoch,
            "smoothing_k": self.smooth,
            "interval": "95 % t-interval over seeds: mean ± t(0.975, n-1)·s/√n (sample sd); null for 1 seed",
            "final_training_set": "the training set without the validation examples",
            "simulation_time_s": "measured wall-clock on this CPU, simulating the analog device included",
            "modelled_device_time_s": "digital time measured (simulation time − device simulation time) + "
            "analog time × τ (the profile's τ; the paper's 1 µs for the ideal device)",
        }


# ------------------------------------------------------------------------------------------ statistics


def t_ci95(values: Sequence[float]) -> tuple[float, float | None]:
    """(mean, half-width of the 95 % t-interval over the values) -- mean ± t₀.₉₇₅,ₙ₋₁ · s/√n with s the
    sample standard deviation (ddof 1); the half-width is None for fewer than two values."""
    from scipy import stats

    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        raise TrainingError("t_ci95 needs at least one value.")
    mean = float(x.mean())
    if x.size < 2:
        return mean, None
    return mean, float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def summarize(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"per_seed", "mean", "ci95": [lo, hi] | None, "half_width"}`` of one metric over seeds (a None --
    e.g. a target never reached -- leaves mean and interval None and is counted in ``"missing"``)."""
    per = list(values)
    present = [float(v) for v in per if v is not None]
    out: dict[str, Any] = {"per_seed": per, "mean": None, "ci95": None, "half_width": None}
    if len(present) != len(per):
        out["missing"] = len(per) - len(present)
    if present and len(present) == len(per):
        mean, hw = t_ci95(present)
        out["mean"], out["half_width"] = mean, hw
        out["ci95"] = None if hw is None else [mean - hw, mean + hw]
    return out


def eval_records(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The evaluation records of a run's history in step order (an epoch-end and a periodic evaluation at
    the same step count once: the epoch-end one)."""
    by_step: dict[int, Mapping[str, Any]] = {}
    for h in summary.get("history", []):
        if h.get("kind") in ("eval", "epoch"):
            by_step[int(h["step"])] = h
    return [by_step[k] for k in sorted(by_step)]


def evaluations(summary: Mapping[str, Any], key: str = "test_accuracy") -> list[tuple[int, float]]:
    """(step, value) of every evaluation of a run (:func:`eval_records`), in step order."""
    return [(int(h["step"]), float(h[key])) for h in eval_records(summary) if key in h]


def smoothed(points: Sequence[tuple[int, float]], k: int) -> list[tuple[int, float]]:
    """The trailing running mean over ``k`` evaluations: (step of the k-th, mean of it and the k−1 before);
    defined from the k-th evaluation on (fewer points: the mean of all, at the last step)."""
    if not points:
        return []
    if len(points) < k:
        return [(points[-1][0], float(np.mean([v for _, v in points])))]
    vals = np.array([v for _, v in points], dtype=float)
    csum = np.concatenate([[0.0], np.cumsum(vals)])
    return [(points[i][0], float((csum[i + 1] - csum[i + 1 - k]) / k)) for i in range(k - 1, len(points))]


def steps_to_target(points: Sequence[tuple[int, float]], target: float, k: int) -> int | None:
    """The first step at which the smoothed curve (:func:`smoothed`, window ``k``) reaches ``target``;
    None if it never does."""
    return next((step for step, v in smoothed(points, k) if v >= target), None)


def smoothed_final(points: Sequence[tuple[int, float]], k: int) -> float:
    """The last value of the smoothed curve (the mean of the last ``k`` evaluations)."""
    curve = smoothed(points, k)
    return curve[-1][1] if curve else math.nan


def select(points: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The grid point with the highest ``"validation_accuracy"`` among those that completed (ties: the
    first). Receives validation scores only.

    Raises:
        TrainingError: no point completed.
    """
    done = [p for p in points if p.get("status") == "completed"]
    if not done:
        raise TrainingError("every grid point failed on the validation set")
    best = max(range(len(done)), key=lambda i: (done[i]["validation_accuracy"], -i))
    return done[best]


# ------------------------------------------------------------------------------------------ data


def validation_fraction(name: str, n_train: int) -> float:
    """The share of the training set held out for validation (module docstring)."""
    if name == "fashion-mnist" and n_train >= 25_000:
        return FASHION_VALIDATION / n_train
    return 0.2


def split(data: Dataset) -> tuple[Dataset, Dataset]:
    """(tuning data, final data): the first's test part is the validation set (name ``…/validation``),
    the second trains on the same training part and tests on the real test set."""
    tune = validation_split(data, validation_fraction(data.name, len(data.x_train)), seed=SPLIT_SEED)
    final = Dataset(data.name, tune.x_train, tune.y_train, data.x_test, data.y_test, data.num_classes)
    return tune, final


# ------------------------------------------------------------------------------------------ device clock


def tau_for(settings: Mapping[str, Any]) -> tuple[float, str]:
    """(τ in s, where it comes from) for an arm's device: the hardware profile's τ, else the paper's 1 µs."""
    opt = settings.get("optimizer")
    backend = settings.get("backend", "exact")
    if opt not in ("kfac", "tngd", "tngd-adam") or (opt == "kfac" and backend == "exact"):
        return 0.0, "digital (no analog time)"
    if backend in ("exact", "ideal"):
        return PAPER_TAU_S, "ideal device: the TNGD paper's τ = 1 µs"
    from thermotrain.models import load_profile, shipped_profile_path

    path = shipped_profile_path(backend) if backend in ("rc8", "rlc8") else Path(backend)
    prof = load_profile(path)
    return float(prof.tau_s), f"profile {prof.name}: τ = {float(prof.tau_s):.3g} s"


# ------------------------------------------------------------------------------------------ running


Runner = Callable[[TrainConfig, Dataset], dict[str, Any]]


@dataclass
class ProtocolResult:
    """What :func:`run_protocol` returns: results.json rows, the final runs' summaries per arm (label ->
    list over seeds), the failures (label -> messages) and, per failure, whether it was a divergence."""

    rows: list[dict[str, Any]]
    runs: dict[str, list[dict[str, Any]]]
    failed: dict[str, list[str]]
    diverged: list[bool]


def _eval_every(n_train: int, batch: int, per_epoch: int) -> int:
    return max(1, math.ceil(n_train / batch) // per_epoch)


def _timed_run(runner: Runner, cfg: TrainConfig, data: Dataset) -> tuple[dict[str, Any], float]:
    """The run's summary and the wall-clock seconds it spent simulating the device (the preconditioner's
    own ``device_simulation_s``: the solvers and TNGD time their device calls; 0 for digital runs)."""
    summary = runner(cfg, data)
    return summary, float(summary.get("device_simulation_s") or 0.0)


def tune(
    arm: Arm,
    base: TrainConfig,
    tune_data: Dataset,
    protocol: Protocol,
    runner: Runner,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train every grid point of ``arm`` on ``tune_data`` (a validation split: its test part is the
    validation set) with the tuning seed; return the points with their smoothed validation accuracy.

    Raises:
        TrainingError: ``tune_data`` is not a validation split (the test set must not be used here).
    """
    if not tune_data.name.endswith("/validation"):
        raise TrainingError(f"tuning data {tune_data.name!r} is not a validation split (protocol step 2).")
    grid = protocol.grid(arm)
    keys = list(grid)
    points = []
    combos = list(itertools.product(*(grid[k] for k in keys)))
    every = _eval_every(len(tune_data.x_train), base.batch_size, protocol.evals_per_epoch)
    for i, values in enumerate(combos, 1):
        hyper = dict(zip(keys, values, strict=True))
        what = ", ".join(f"{k}={v:g}" for k, v in hyper.items())
        log(f"[tune {arm.label} {i}/{len(combos)}] {what}")
        cfg = dataclasses.replace(
            base,
            **{**arm.settings, **hyper},
            seed=protocol.tune_seed,
            epochs=protocol.effective_tune_epochs,
            eval_every=every,
            lr_schedule=protocol.lr_schedule,
        )
        try:
            summary = runner(cfg, tune_data)
        except ThermotrainError as exc:
            points.append({"settings": hyper, "status": f"failed: {exc}", "validation_accuracy": None})
            log(f"[tune {arm.label} {i}/{len(combos)}] {what} FAILED: {exc}")
            continue
        acc = smoothed_final(evaluations(summary, "test_accuracy"), protocol.smooth)
        points.append({"settings": hyper, "status": "completed", "validation_accuracy": acc})
    return points


def run_protocol(
    arms: Sequence[Arm],
    base: TrainConfig,
    data: Dataset,
    protocol: Protocol,
    *,
    runner: Runner | None = None,
    run_out: Callable[[Arm, int], str | None] | None = None,
    target: tuple[str, Callable[[dict[str, list[dict[str, Any]]]], float | None]] | None = None,
    log: Callable[[str], None] = print,
) -> ProtocolResult:
    """Split ``data``, tune each arm on validation, run the selected settings over ``protocol.seeds`` seeds
    on the test set; return the rows of results.json (module docstring) and the runs.

    Args:
        arms: the experiment's rows; an arm with ``tune_with`` comes after the arm it names.
        base: the common :class:`TrainConfig` (model, dataset, batch size, …).
        runner: ``train`` (default) or a stand-in with its signature (tests).
        run_out: the run folder of (arm, seed) for the final runs (None: nothing written per run).
        target: (description, function of the final runs giving the accuracy target) for steps-to-target.
    """
    if runner is None:
        from thermotrain.training._harness import train as runner  # noqa: N813 - the default runner
    tune_data, final_data = split(data)
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise InputError(f"experiment arms must have distinct labels; got {labels}.")
    failed: dict[str, list[str]] = {}
    diverged: list[bool] = []
    tuning: dict[str, dict[str, Any]] = {}
    for arm in sorted(arms, key=lambda a: a.tune_with is not None):  # shared selections after their source
        if arm.tune_with is not None:
            if arm.tune_with not in tuning:
                raise InputError(f"arm {arm.label!r}: tune_with={arm.tune_with!r} is not an earlier arm.")
            tuning[arm.label] = _shared_selection(arm, tuning[arm.tune_with])
            continue
        if arm.scale:
            raise InputError(
                f"arm {arm.label!r}: scale={dict(arm.scale)} needs tune_with (a shared selection)."
            )
        grid = protocol.grid(arm)
        if all(len(v) == 1 for v in grid.values()):
            tuning[arm.label] = {
                "selected": {k: v[0] for k, v in grid.items()},
                "selected_on": "fixed",
                "grid": [],
                "grid_values": grid,
            }
            continue
        points = tune(arm, base, tune_data, protocol, runner, log)
        try:
            best = select(points)
        except TrainingError:
            msgs = [p["status"] for p in points]
            failed[arm.label] = [f"every grid point failed on the validation set: {'; '.join(msgs)}"]
            diverged.append(all("diverged" in m.lower() for m in msgs))
            tuning[arm.label] = {"selected": None, "grid": points, "grid_values": grid}
            continue
        tuning[arm.label] = {
            "selected": dict(best["settings"]),
            "selected_on": "validation",
            "at_grid_edge": sorted(
                k
                for k, v in best["settings"].items()
                if len(grid[k]) >= 3 and v in (min(grid[k]), max(grid[k]))
            ),
            "validation_accuracy": best["validation_accuracy"],
            "grid": points,
            "grid_values": grid,
        }

    every = _eval_every(len(final_data.x_train), base.batch_size, protocol.evals_per_epoch)
    runs: dict[str, list[dict[str, Any]]] = {}
    rows: list[dict[str, Any]] = []
    total = sum(protocol.seeds for a in arms if tuning[a.label]["selected"] is not None)
    done = 0
    for arm in arms:
        sel = tuning[arm.label]["selected"]
        if sel is None:
            if arm.tune_with is not None:
                failed[arm.label] = [f"not run: {arm.tune_with!r}, whose selection it shares, failed tuning"]
                diverged.append(False)
            continue
        settings = {**arm.settings, **sel, "lr_schedule": protocol.lr_schedule}
        tau_s, tau_source = tau_for(arm.settings)
        summaries = []
        for seed in protocol.seed_list:
            done += 1
            log(f"[{done}/{total}] {arm.label}, seed {seed}")
            out = run_out(arm, seed) if run_out is not None else None
            cfg = dataclasses.replace(
                base, **settings, seed=seed, epochs=protocol.epochs, eval_every=every, out=out
            )
            try:
                summary, sim_s = _timed_run(runner, cfg, final_data)
            except ThermotrainError as exc:
                failed.setdefault(arm.label, []).append(f"seed {seed}: {exc}")
                diverged.append(isinstance(exc, DivergedError))
                log(f"[{done}/{total}] {arm.label}, seed {seed} FAILED: {exc}")
                continue
            summary = dict(summary)
            summary.pop("config", None)
            summary["seed"] = seed
            summary["simulation_time_s"] = float(summary["wall_s"])
            summary["device_simulation_s"] = sim_s
            summary["modelled_device_time_s"] = modelled_device_time(summary, tau_s)
            summary["history"] = [_with_modelled_time(h, tau_s) for h in summary.get("history", [])]
            summaries.append(summary)
        if summaries:
            runs[arm.label] = summaries
        t = tuning[arm.label]
        rows.append(
            {
                "label": arm.label,
                "optimizer": settings.get("optimizer"),
                "settings": _jsonable_settings(settings),
                "selected_on": t.get("selected_on", "validation"),
                "selected_with": t.get("selected_with"),
                "scaled_by": t.get("scaled_by"),
                "validation_accuracy": t.get("validation_accuracy"),
                "at_grid_edge": t.get("at_grid_edge", []),
                "grid": t["grid"],
                "grid_values": {k: list(v) for k, v in t["grid_values"].items()},
                "tau_s": tau_s,
                "tau_source": tau_source,
                "seeds": [s["seed"] for s in summaries],
                "metric": "test_accuracy",
                **_metrics(summaries, protocol.smooth),
            }
        )
    if target is not None:
        description, fn = target
        value = fn(runs)
        if value is not None:
            for row in rows:
                steps = [
                    steps_to_target(evaluations(s), value, protocol.smooth)
                    for s in runs.get(row["label"], [])
                ]
                row["metrics"]["steps_to_target"] = summarize(steps) | {
                    "target": value,
                    "target_is": description,
                }
                times = [
                    time_to_target(s, value, protocol.smooth, "modelled_device_time_s")
                    for s in runs.get(row["label"], [])
                ]
                row["metrics"]["modelled_time_to_target_s"] = summarize(times) | {
                    "target": value,
                    "target_is": description,
                }
    return ProtocolResult(rows, runs, failed, diverged)


def _shared_selection(arm: Arm, source: Mapping[str, Any]) -> dict[str, Any]:
    """The tuning record of ``arm``, which shares ``source``'s selection (``tune_with``), each selected value
    multiplied by ``arm.scale``; a key of ``scale`` the selection lacks, or a multiplier that is not finite
    and > 0, is refused."""
    out = dict(source, selected_with=arm.tune_with)
    if not arm.scale:
        return out
    for key, m in arm.scale.items():
        if not (isinstance(m, (int, float)) and math.isfinite(m) and m > 0):
            raise InputError(f"arm {arm.label!r}: scale[{key!r}] = {m!r} must be a finite number > 0.")
    sel = source.get("selected")
    if sel is not None:
        missing = sorted(set(arm.scale) - set(sel))
        if missing:
            raise InputError(
                f"arm {arm.label!r}: scale names {missing}, which {arm.tune_with!r} did not select "
                f"(it selected {sorted(sel)})."
            )
        out["selected"] = {k: _sig(v * arm.scale.get(k, 1.0)) for k, v in sel.items()}
    # the source's grid-edge flags and validation score describe its point, not this deliberate offset
    out.update(
        scaled_by={k: float(v) for k, v in arm.scale.items()}, at_grid_edge=[], validation_accuracy=None
    )
    return out


def modelled_device_time(clock: Mapping[str, Any], tau_s: float) -> float:
    """Module docstring, step 5, of a run summary or an evaluation record (its clocks so far): the digital
    time measured (``wall_s`` − ``device_simulation_s``) + the device's wall time in τ (tiled K-FAC's
    ``device_wall_time_tau``, else ``analog_time_tau``) × τ, in s."""
    sim = float(clock.get("device_simulation_s") or 0.0)
    analog = float(clock.get("device_wall_time_tau") or clock.get("analog_time_tau") or 0.0)
    return max(float(clock["wall_s"]) - sim, 0.0) + analog * tau_s


def _with_modelled_time(record: Mapping[str, Any], tau_s: float) -> Mapping[str, Any]:
    """An evaluation record with its ``modelled_device_time_s`` (:func:`modelled_device_time`); other
    records unchanged."""
    if record.get("kind") not in ("eval", "epoch"):
        return record
    return {**record, "modelled_device_time_s": modelled_device_time(record, tau_s)}


def time_to_target(summary: Mapping[str, Any], target: float, k: int, clock: str) -> float | None:
    """The ``clock`` value (e.g. ``modelled_device_time_s``) of the evaluation at which the smoothed test
    curve first reaches ``target`` (:func:`steps_to_target`); None if it never does."""
    step = steps_to_target(evaluations(summary), target, k)
    if step is None:
        return None
    for h in eval_records(summary):
        if int(h["step"]) == step and clock in h:
            return float(h[clock])
    return None


def _jsonable_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()}


def _metrics(summaries: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """The headline (test accuracy: per_seed, mean, ci95) and every metric under ``"metrics"``."""
    if not summaries:
        return {"per_seed": [], "mean": None, "ci95": None, "metrics": {}}
    metrics = {
        "test_accuracy": summarize([s["test_accuracy"] for s in summaries]),
        "test_accuracy_smoothed_final": summarize([smoothed_final(evaluations(s), k) for s in summaries]),
        "test_loss": summarize([s["test_loss"] for s in summaries]),
        "steps": summarize([s["steps"] for s in summaries]),
        "simulation_time_s": summarize([s["simulation_time_s"] for s in summaries]),
        "modelled_device_time_s": summarize([s["modelled_device_time_s"] for s in summaries]),
        "analog_time_tau": summarize([s.get("analog_time_tau", 0.0) for s in summaries]),
    }
    if any("damping_bumps" in s for s in summaries):  # an analog device: times its damping guard raised λ
        metrics["damping_bumps"] = summarize([s.get("damping_bumps", 0) for s in summaries])
    if any(s.get("blind_readouts") for s in summaries):  # inverse readouts with channels read as a constant
        metrics["blind_readouts"] = summarize([s.get("blind_readouts", 0) for s in summaries])
    acc = metrics["test_accuracy"]
    return {"per_seed": acc["per_seed"], "mean": acc["mean"], "ci95": acc["ci95"], "metrics": metrics}


def flat_table(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat dict per row for the text/HTML tables: setting, selected lr/λ, seeds, test accuracy mean
    and 95 % interval, steps-to-target, simulation and modelled device time."""
    out = []
    for r in rows:
        m = r.get("metrics", {})
        ci = r.get("ci95")
        stt = m.get("steps_to_target", {})
        out.append(
            {
                "setting": r["label"],
                "lr": r["settings"].get("lr"),
                "damping": r["settings"].get("damping"),
                "selected_on": r["selected_on"]
                + (f" (with {_shared_text(r)})" if r.get("selected_with") else ""),
                "seeds": len(r["seeds"]),
                "test_accuracy_mean": r["mean"],
                "test_accuracy_ci95": None if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]",
                "steps_to_target_mean": stt.get("mean"),
                "simulation_time_s_mean": m.get("simulation_time_s", {}).get("mean"),
                "modelled_device_time_s_mean": m.get("modelled_device_time_s", {}).get("mean"),
                "analog_time_tau_mean": m.get("analog_time_tau", {}).get("mean"),
            }
        )
    return out


def markdown_table(payload: Mapping[str, Any]) -> str:
    """A results.json payload as the markdown table of ``docs/results.md``: per row the selected lr and λ
    (``*`` at a grid edge; ``from X`` when shared), test accuracy mean and 95 % interval (%), seeds, steps
    and modelled device time to the target (mean over the seeds that reached it, and how many never did),
    simulation and modelled device time per run (s) and analog time (τ). :func:`write_results`
    writes it as ``OUT/results.md`` beside ``results.json``."""

    def num(x: Any, fmt: str) -> str:
        return "–" if x is None else format(x, fmt)

    def reached(m: Mapping[str, Any] | None, fmt: str) -> str:
        if not m:
            return "–"
        got = [v for v in m.get("per_seed", []) if v is not None]
        never = len(m.get("per_seed", [])) - len(got)
        text = num(float(np.mean(got)) if got else None, fmt)
        return text + (f" ({never} never)" if never else "")

    guard = any("damping_bumps" in r.get("metrics", {}) for r in payload["rows"])
    lines = [
        "| row | selected lr, λ (* = grid edge) | test acc % mean [95 % CI] | seeds | steps to target "
        "| modelled time to target (s) | simulation s/run | modelled device s/run | analog τ/run |"
        + (" damping-guard bumps/run |" if guard else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if guard else ""),
    ]
    for r in payload["rows"]:
        s, edge, m = r["settings"], r.get("at_grid_edge") or [], r.get("metrics", {})
        lr = num(s.get("lr"), "g") + ("*" if "lr" in edge else "")
        lam = num(s.get("damping"), "g") + ("*" if "damping" in edge else "") if s.get("damping") else "—"
        sel = f"{lr}, {lam}" + (f" (from {_shared_text(r)})" if r.get("selected_with") else "")
        ci = r.get("ci95")
        acc = "–" if r.get("mean") is None else f"{100 * r['mean']:.2f}"
        if ci is not None:
            acc += f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"
        lines.append(
            f"| {r['label']} | {sel} | {acc} | {len(r['seeds'])} | {reached(m.get('steps_to_target'), '.0f')} "
            f"| {reached(m.get('modelled_time_to_target_s'), '.3g')} "
            f"| {num(m.get('simulation_time_s', {}).get('mean'), '.2f')} "
            f"| {num(m.get('modelled_device_time_s', {}).get('mean'), '.3g')} "
            f"| {num(m.get('analog_time_tau', {}).get('mean'), '.3g')} |"
            + (f" {num(m.get('damping_bumps', {}).get('mean'), '.3g')} |" if guard else "")
        )
    for label, msgs in (payload.get("failed") or {}).items():
        lines.append(f"\nFailed, {label}: " + "; ".join(m.split(". ")[0] for m in msgs) + ".")
    return "\n".join(lines)


def _shared_text(row: Mapping[str, Any]) -> str:
    """``digital`` or ``digital, λ × 3``: whose selection a row shares and how it was scaled."""
    names = {"damping": "λ", "lr": "lr"}
    scaled = ", ".join(f"{names.get(k, k)} × {v:.3g}" for k, v in (row.get("scaled_by") or {}).items())
    return str(row["selected_with"]) + (f", {scaled}" if scaled else "")


def _strict(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    if isinstance(obj, np.generic):
        return _strict(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    """Strict JSON (non-finite floats as text), indented."""
    return json.dumps(_strict(obj), indent=2, allow_nan=False, default=str)


def machine() -> dict[str, Any]:
    """What the numbers were computed on, for results.json: runs on the same code agree to the bit only on
    the same CPU kernels (torch dispatches AVX2 or AVX-512 code by CPU, which rounds differently), so a row
    that moves by a test image between two results files is first checked against this."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def write_results(
    out: Path,
    experiment: str,
    protocol: Protocol | None,
    rows: Sequence[Mapping[str, Any]],
    failed: Mapping[str, list[str]] | None = None,
    **extra: Any,
) -> Path:
    """``out/results.json`` (atomically): the experiment, its protocol, the machine (:func:`machine`), one row
    per arm, the failures; and ``out/results.md``, the same rows as a markdown table (:func:`markdown_table`), for the protocol's
    training rows (an experiment that trains nothing, e.g. ``width``, writes results.json only)."""
    payload = {
        "experiment": experiment,
        "protocol": None if protocol is None else protocol.describe(),
        "machine": machine(),
        **extra,
        "rows": list(rows),
        "failed": dict(failed or {}),
    }
    path = write_text_atomic(Path(out) / RESULTS_FILE, dumps(payload) + "\n")
    if protocol is not None and all("settings" in r for r in rows):  # training rows (not width's)
        write_text_atomic(Path(out) / "results.md", markdown_table(_strict(payload)) + "\n")
    return path


# ------------------------------------------------------------------------------------------ plots


def plot_rows(
    rows: Sequence[Mapping[str, Any]], path: Path, title: str, *, reference: str | None = None
) -> None:
    """Each row's final test accuracy (mean over seeds, %) with its 95 % t-interval as a horizontal bar, one
    line per row in the experiment's order (a forest plot: readable where dozens of curves are not); the
    ``reference`` row's interval is shaded across the plot. Rows without results are left out."""
    from thermotrain._report import pyplot

    shown = [r for r in rows if r.get("mean") is not None]
    if not shown:
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.24 * len(shown)))
    ys = np.arange(len(shown))[::-1]
    for y, r in zip(ys, shown, strict=True):
        mean, ci = 100 * r["mean"], r.get("ci95")
        err = None if ci is None else [[mean - 100 * ci[0]], [100 * ci[1] - mean]]
        ax.errorbar(
            mean, y, xerr=err, fmt="o", ms=3.5, capsize=2, color="C3" if r["label"] == reference else "C0"
        )
        if r["label"] == reference and ci is not None:
            ax.axvspan(100 * ci[0], 100 * ci[1], color="C3", alpha=0.12, lw=0)
    ends = [100 * v for r in shown for v in (r.get("ci95") or [r["mean"], r["mean"]])]
    pad = 0.05 * (max(ends) - min(ends)) + 0.1
    ax.set_xlim(max(min(ends) - pad, 0.0), min(max(ends) + pad, 100.0))  # accuracy lives in [0, 100] %
    ax.set_yticks(ys, [r["label"] for r in shown], fontsize=7)
    seeds = sorted({len(r["seeds"]) for r in shown})
    ax.set_xlabel(f"final test accuracy (%; mean and 95 % t-interval over {'/'.join(map(str, seeds))} seeds)")
    ax.grid(axis="x", lw=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_bands(
    runs: Mapping[str, list[dict[str, Any]]],
    path: Path,
    title: str,
    *,
    wall: bool = True,
    key: str = "test_accuracy",
    marks: Sequence[tuple[str, str, float]] = (),
    clock: str = "simulation",
) -> None:
    """Test accuracy against step (and, right, simulation time or -- ``clock="modelled"`` -- the modelled
    device time of step 5 in the module docstring, log scale) per arm: the mean over seeds with a band of its
    95 % t-interval (none for one seed, said in the axis label); distinct markers and line styles so
    overlapping curves stay visible; the legend below the axes and the title inside the saved figure.
    ``marks``: ("h" | "v", label, value) reference lines."""
    from thermotrain._report import pyplot

    plt = pyplot()
    ncols = 2 if wall else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 3.8), squeeze=False)
    seeds = sorted({len(v) for v in runs.values()}) or [0]
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "v", "D", "x", "+", "*", "P", "h"]
    lows: list[float] = []
    for i, (label, summaries) in enumerate(runs.items()):
        curves = [evaluations(s, key) for s in summaries]
        steps = [st for st, _ in curves[0]]
        n = min(len(c) for c in curves)
        vals = np.array([[v for _, v in c[:n]] for c in curves])
        mean = vals.mean(axis=0)
        lows.append(float(mean.min()))
        style = dict(ls=styles[i % len(styles)], marker=markers[i % len(markers)], ms=4, label=label)
        if len(runs) > 10:  # more curves than the default colour cycle: 20 distinct colours
            style["color"] = plt.get_cmap("tab20")(i % 20)
        line = axes[0, 0].plot(steps[:n], mean, **style)[0]
        if len(summaries) >= 2:
            hw = np.array([t_ci95(vals[:, j])[1] for j in range(n)])
            axes[0, 0].fill_between(steps[:n], mean - hw, mean + hw, color=line.get_color(), alpha=0.15)
        if wall:
            key_t = "modelled_device_time_s" if clock == "modelled" else "wall_s"
            xs = np.mean([[float(h[key_t]) for h in eval_records(s)[:n]] for s in summaries], axis=0)
            axes[0, 1].plot(xs, mean, **style)
    what = (
        "one seed, no band"
        if seeds == [1]
        else f"mean of {'/'.join(map(str, seeds))} seeds; band: 95 % t-interval"
    )
    axes[0, 0].set(xlabel="step", ylabel=f"test accuracy ({what})")
    if lows and key.endswith("accuracy"):  # the band may pass 0 or 1 (few seeds): keep the means in view
        axes[0, 0].set_ylim(max(0.0, min(lows) - 0.05), 1.005)
    if wall:
        if clock == "modelled":
            axes[0, 1].set(
                xlabel="modelled device time (s: digital measured + analog × τ)", ylabel="test accuracy"
            )
            axes[0, 1].set_xscale("log")
        else:
            axes[0, 1].set(xlabel="simulation time (s, this CPU; not device time)", ylabel="test accuracy")
    for kind, label, value in marks:
        (axes[0, 0].axhline if kind == "h" else axes[0, 0].axvline)(
            value, color="k", lw=0.7, ls="--" if kind == "h" else ":", label=label
        )
    fig.suptitle(title, fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, len(labels)), fontsize=7
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
