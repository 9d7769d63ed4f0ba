"""``thermotrain experiment NAME``: the studies of issues 4 and 11, each writing OUT/NAME.json, OUT/NAME.png
and OUT/results.json.

Every training experiment runs under one protocol (:mod:`thermotrain.training._protocol`): a validation set
split off the training set (digits 20 %, Fashion-MNIST 5 000), each row's lr (and λ) tuned on a stated grid
by smoothed validation accuracy, then the selected settings trained over ``--seeds`` seeds and reported on
the test set with 95 % t-intervals; steps-to-target on smoothed curves; plots with bands.

- ``optimizers``: every optimizer of the harness, each tuned on its own grid; steps to Adam's (smoothed,
  mean over seeds) final test accuracy; simulation time and modelled device time.
- ``tngd-time``: TNGD with t ∈ {0, 5, 10, 20, 50} τ (no warm start, κ0 = 0) against exact NGD and SGD with
  momentum; on the ideal device exact NGD (TNGD's t → ∞ limit) is tuned and its lr/λ are shared by every t,
  so the rows measure how far each t is from its limit at the limit's best settings (tuning at a finite t
  instead selects a λ the finite time regularises implicitly, at which exact NGD can diverge); on a hardware
  profile the t = 20 τ row is tuned on the profile and shared by every t (the quantized GGN needs its own,
  larger λ), and exact NGD is tuned on its own; SGD is tuned on its own grid. t = 0 is SGD without momentum
  at the shared lr.
- ``tngd-delay``: TNGD with t_d ∈ {0, 0.2, 1} τ at t = 5 τ (warm start, κ0 = 0), tuned at t_d = 0 and
  shared; SGD with momentum as the baseline (own grid).
- ``tngd-noise``: TNGD vs κ0 ∈ {0, 1e-4, 1e-3, 1e-2, 1e-1} at t = 20 τ, tuned at κ0 = 0 and shared; a
  profile's calibrated κ0 (``--profile``) is marked.
- ``tngd-adam``: Adam, TNGD and TNGD-Adam (default analog time), each tuned on its own grid; steps and
  modelled device time (digital measured + analog × τ) to Adam's smoothed final accuracy; the plot's time
  axis is the modelled device time.
- The four TNGD experiments run TNGD on ``--backend`` (default ``ideal``, matrix-free, τ = the paper's
  1 µs) or on an RC-family hardware profile, which holds the whole GGN (one cell per parameter, at most
  ``max_dense_params``; a larger network is refused before any run). ``tngd-time``'s t → ∞ reference is
  exact NGD where the GGN can be formed (``MAX_DENSE_PARAMS``), else NGD by 50 CG iterations.
- ``kfac-quantization``: thermodynamic K-FAC on profiles derived from a calibrated one (``--profile``;
  default the shipped rc8 one): coupling bits {4, 6, 8, 12} × tolerance {0, 1 %}, each with nearest
  rounding and with randomized rounding merged over 4 loads; the same at a 10× lower readout error (where
  rounding, not readout noise, dominates); ADC bits {4, 6, 8, 12}; and λ × {1/3, 3} (digital, 4 and 8
  bits), each with digital K-FAC's tuned lr/λ (a stated multiple of λ in that block); and the profile as
  given, 4 coupling bits and a 4-bit ADC each tuned on its own device (the device in the loop); a second plot
  (``kfac-quantization-summary.png``) shows every row's final accuracy with its interval.
- ``cost-model``: predicted per-step time of digital vs thermodynamic K-FAC vs layer width n ∈ {64 … 4096}
  (an analytical model: nothing is trained or tuned).
- ``kfac-claims``: the issue's bar on one data set (default Fashion-MNIST): Adam (lr tuned, or
  ``--adam-lr``), digital K-FAC (lr and λ tuned, or ``--damping``) and thermodynamic K-FAC on a hardware
  profile (``--profile``) with digital K-FAC's selection, test accuracy every quarter epoch; the first step
  at which digital K-FAC's smoothed curve reaches Adam's smoothed final accuracy (claim: ≤ half of Adam's
  steps) and the final thermodynamic − digital gap (claim: within 1 point).
- ``attribution`` (:mod:`thermotrain.training._attribution`): thermodynamic K-FAC on a calibrated profile
  with each non-ideality switched off one at a time and on one at a time; accuracy lost per non-ideality
  (tornado plot); digital K-FAC's tuned lr/λ shared by every row. Default Fashion-MNIST, subset 10 000,
  1 epoch, 5 seeds.
- ``kfac-fidelity`` (:mod:`thermotrain.training._fidelity`): on the factors of digital K-FAC's tuned and
  trained networks (each seed's checkpoint), the angle between a device's K-FAC update and the exact one
  against the angle the curvature turns the gradient by, per layer, at λ × {1/3, 1, 3}: the ideal device,
  the profile as given (tiles) and monolithic, 4 coupling bits, a 4-bit ADC, 12 bits at low readout noise.
- ``width`` (:mod:`thermotrain.training._width`): measured condition number and digital inverse time of
  K-FAC-like factors of width n ∈ {256 … 4096} against the modelled analog readout time (nothing trained).

Defaults are sized for a 2-core CPU (digits, small MLP); ``--dataset fashion-mnist --subset N`` scales up
and ``--model cnn`` (the TNGD paper's CNN) or ``vit`` changes the network of every training experiment.

Every option is checked where it enters (:func:`run_experiment`): its type and range, and that the
experiment uses it (``--damping`` for ``tngd-time`` is refused, not ignored). The outputs are written
together at the end (a temporary folder renamed into place; a folder holding files is refused unless
``overwrite``). A run that fails (diverges, or a matrix the hardware refuses) is recorded under
``"failed"`` while the others go on (a failed grid point is a tuning result, not a failure); then
:class:`ExperimentFailed` names the failed runs, so the command exits non-zero (4 when every failure is a
divergence) with the other runs' results on disk.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from thermotrain._args import check_choice, check_float, check_int
from thermotrain._errors import InputError, ThermotrainError, TrainingError
from thermotrain._html import experiment_report
from thermotrain._safeio import output_dir, read_text, write_text_atomic
from thermotrain.training._config import MAX_DAMPING
from thermotrain.training._data import DATASETS, load_dataset
from thermotrain.training._harness import TrainConfig
from thermotrain.training._nets import MODELS
from thermotrain.training._protocol import (
    Arm,
    Protocol,
    dumps,
    evaluations,
    flat_table,
    parse_grid,
    plot_bands,
    plot_rows,
    run_protocol,
    smoothed_final,
    steps_to_target,
    summarize,
    write_results,
)
from thermotrain.training._tensorboard import experiment_tensorboard

__all__ = ["EXPERIMENTS", "OPTION_NAMES", "PROTOCOL_OPTIONS", "ExperimentFailed", "run_experiment"]

#: The protocol's options (grids, tuning epochs, smoothing, evaluations, schedule): every training experiment.
PROTOCOL_OPTIONS = (
    "lr_grid",
    "precond_lr_grid",
    "damping_grid",
    "tune_epochs",
    "smooth",
    "evals_per_epoch",
    "lr_schedule",
)
_COMMON = ("dataset", "model", "epochs", "seeds", "subset", *PROTOCOL_OPTIONS)
#: the TNGD experiments also take the device TNGD runs on (``--backend ideal|PROFILE``)
_TNGD = (*_COMMON, "backend")
#: The options each experiment uses (anything else passed to it is refused).
EXPERIMENTS: dict[str, tuple[str, ...]] = {
    "optimizers": (*_COMMON, "profile"),
    "tngd-time": _TNGD,
    "tngd-delay": _TNGD,
    "tngd-noise": (*_TNGD, "profile"),
    "tngd-adam": _TNGD,
    "kfac-quantization": (*_COMMON, "profile"),
    "cost-model": ("profile",),
    "kfac-claims": (
        *_COMMON,
        "profile",
        "damping",
        "inv_update_steps",
        "pd_guard",
        "analog_time",
        "adam_lr",
    ),
    # training/_attribution.py: lr_grid is SGD/Adam's, which it does not train
    "attribution": (*(k for k in _COMMON if k != "lr_grid"), "profile", "nonidealities"),
    "width": ("profile",),  # training/_width.py: measured, nothing trained
    # training/_fidelity.py: trains digital K-FAC only (no SGD/Adam grid)
    "kfac-fidelity": (*(k for k in _COMMON if k != "lr_grid"), "profile"),
}
OPTION_NAMES = ("dataset", "model", "epochs", "seeds", "subset", "profile", "backend", "damping")
OPTION_NAMES = (*OPTION_NAMES, "inv_update_steps", "pd_guard")
OPTION_NAMES = (*OPTION_NAMES, "analog_time", "adam_lr", *PROTOCOL_OPTIONS, "nonidealities")


class ExperimentFailed(TrainingError):
    """Some runs of an experiment failed; the others' results were written. ``payload`` is what was
    written; ``exit_code`` is 4 when every failure was a divergence, else 1."""

    def __init__(self, message: str, payload: dict[str, Any], all_diverged: bool) -> None:
        super().__init__(message)
        self.payload = payload
        self.exit_code = 4 if all_diverged else 1


def _flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The options of experiment ``name``, checked: known, used by that experiment, of the right type and
    range (``InputError`` naming the option otherwise). Absent options stay absent (defaults apply)."""
    check_choice("experiment", name, tuple(EXPERIMENTS))
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(OPTION_NAMES))
    if unknown:
        raise InputError(f"unknown experiment option(s) {unknown}; known: {', '.join(OPTION_NAMES)}.")
    unused = [k for k in OPTION_NAMES if k in opts and k not in EXPERIMENTS[name]]
    if unused:
        users = {k: [e for e, keys in EXPERIMENTS.items() if k in keys] for k in unused}
        raise InputError(
            f"experiment {name} does not use {', '.join(_flag_name(k) for k in unused)} ("
            + "; ".join(f"{_flag_name(k)} is for {', '.join(v)}" for k, v in users.items())
            + "); drop it."
        )
    checked: dict[str, Any] = {}
    for key, value in opts.items():
        flag = _flag_name(key)
        if key == "dataset":
            checked[key] = check_choice(flag, value, DATASETS)
        elif key == "model":
            checked[key] = check_choice(flag, value, MODELS)
        elif key == "backend":
            checked[key] = _tngd_backend_option(value)
        elif key in ("epochs", "seeds", "subset", "inv_update_steps", "tune_epochs", "smooth"):
            checked[key] = check_int(flag, value, minimum=1)
        elif key == "evals_per_epoch":
            checked[key] = check_int(flag, value, minimum=1, maximum=1000)
        elif key in ("lr_grid", "precond_lr_grid", "damping_grid"):
            checked[key] = parse_grid(key, value)
        elif key == "lr_schedule":
            checked[key] = check_choice(flag, value, ("constant", "cosine"))
        elif key == "analog_time" and value == "auto":
            checked[key] = value
        elif key in ("damping", "analog_time", "adam_lr"):
            top = MAX_DAMPING if key == "damping" else None
            checked[key] = check_float(flag, value, minimum=0.0, strict_min=True, maximum=top)
        elif key == "pd_guard":
            if not isinstance(value, bool):
                raise InputError(f"{flag}={value!r} must be True or False.")
            checked[key] = value
        elif key == "nonidealities":
            from thermotrain.training._attribution import parse_nonidealities

            checked[key] = ",".join(parse_nonidealities(value))
        elif key == "profile":
            if not isinstance(value, str | Path) or not str(value):
                raise InputError(f"--profile={value!r} must be the path of a hardware-profile JSON.")
            read_text(value, "profile", f"--profile {value}")  # a regular text file under the cap
            checked[key] = str(value)
    return checked


def _tngd_backend_option(value: Any) -> str:
    """``--backend`` of the TNGD experiments: ``ideal`` or an RC-family hardware profile (a shipped name
    such as ``rc8`` or the path of a profile JSON, parsed and checked here, before any work)."""
    from thermotrain.training._tngd import resolve_tngd_backend

    if not isinstance(value, str | Path) or not str(value):
        raise InputError(
            f"--backend={value!r} must be 'ideal', a shipped profile name (rc8) or a profile path."
        )
    if str(value) == "ideal":
        return "ideal"
    try:
        resolve_tngd_backend(str(value))
    except ThermotrainError as exc:  # no such file, not a profile, a refused file, not the RC family
        raise InputError(f"--backend {value}: {exc}") from None
    return str(value)


def _check_tngd_size(backend: str, model: str, data: Any) -> None:
    """TNGD on a hardware profile holds the whole GGN: one cell per parameter, at most the dense device's
    ``max_dense_params``. Refuse a larger network before any run (the ideal device is matrix-free)."""
    if backend == "ideal":
        return
    from thermotrain.training._tngd import TNGDConfig

    n = _param_count(model, data)
    limit = TNGDConfig().max_dense_params
    if n > limit:
        raise InputError(
            f"--backend {backend}: TNGD on a hardware profile holds the {model}'s whole GGN, one cell per "
            f"parameter: {n:,} parameters on {data.name} is over the {limit:,}-cell dense device; use "
            "--backend ideal (matrix-free) or a network of at most that many parameters (e.g. --dataset digits)."
        )


def _param_count(model: str, data: Any) -> int:
    """Parameters of ``model`` on ``data``'s images (built on the meta device: no memory, no RNG draw)."""
    import torch

    from thermotrain.training._nets import build_model

    with torch.device("meta"):
        net = build_model(model, data.image_shape, data.num_classes)
    return sum(p.numel() for p in net.parameters())


def _exact_ngd(model: str, data: Any) -> tuple[str, dict[str, Any]]:
    """TNGD's t → ∞ limit: exact NGD (dense solve) where the GGN can be formed, else NGD by 50 CG
    iterations (matrix-free and not exact: the residual after 50 iterations is not checked; the label says
    so)."""
    from thermotrain.training._ggn import MAX_DENSE_PARAMS

    if _param_count(model, data) <= MAX_DENSE_PARAMS:
        return "exact NGD", {"optimizer": "ngd"}
    return "NGD (CG, 50 iterations)", {"optimizer": "ngd-cg", "cg_iters": 50}


def tngd_time_arms(tngd: dict[str, Any], backend: Any, model: str, data: Any) -> tuple[list[Arm], str]:
    """The rows of ``tngd-time`` and the label of the row whose tuned lr/λ every t shares. On the ideal device
    that is TNGD's t → ∞ limit (exact NGD, tuned on its own grid). A hardware profile cannot share it: its
    quantized GGN needs a larger λ than the digital limit selects (at exact NGD's λ the 8-bit rc8 GGN is
    indefinite at every step), so the profile's own t = 20 τ row is tuned and shared."""
    ref, ngd = _exact_ngd(model, data)
    shared = ref if backend == "ideal" else "tngd t=20τ"
    arms = []
    for t in (0, 5, 10, 20, 50):
        label = "tngd t=0τ (= SGD without momentum)" if t == 0 else f"tngd t={t:g}τ"
        arms.append(
            Arm(label, tngd | {"analog_time": float(t)}, tune_with=None if label == shared else shared)
        )
    return [*arms, Arm(ref, ngd), _sgd_baseline()], shared


def protocol_from(opts: dict[str, Any], epochs: int, seeds: int) -> Protocol:
    """The :class:`Protocol` of checked experiment options (absent ones: the protocol's defaults)."""
    keys = ("lr_grid", "precond_lr_grid", "damping_grid", "tune_epochs", "smooth", "evals_per_epoch")
    given = {k: opts[k] for k in keys if opts.get(k) is not None}
    if opts.get("lr_schedule") is not None:
        given["lr_schedule"] = opts["lr_schedule"]
    return Protocol(seeds=seeds, epochs=epochs, **given)


def _write(out: Path, name: str, payload: dict[str, Any]) -> None:
    """``out/NAME.json`` (atomically) and the table rows and failures as JSON lines on stdout."""
    write_text_atomic(out / f"{name}.json", dumps(payload))
    for row in payload.get("table", []):
        print(json.dumps(row, default=str))
    for label, messages in payload.get("failed", {}).items():
        print(json.dumps({"setting": label, "failed": messages}))


def _profile_thermo(path: str | None) -> dict[str, Any]:
    """Thermodynamic K-FAC on a calibrated profile (default the shipped rc8) with TrainConfig's defaults (what
    ``train --optimizer kfac --backend PROFILE`` does with no other flag: auto analog time)."""
    from thermotrain.models import shipped_profile_path

    _calibrated(path)  # loads, or one line naming the file
    backend = shipped_profile_path("rc8") if path is None else path
    return {"optimizer": "kfac", "backend": str(backend)}


def _calibrated(path: str | None) -> Any:
    """The profile at ``path``, or the shipped SPICE-calibrated rc8 profile."""
    from thermotrain.models import shipped_profile_path

    return _profile(str(shipped_profile_path("rc8")) if path is None else path)


def _profile(path: str | None) -> Any:
    if path is None:
        return None
    from thermotrain.models import load_profile

    read_text(path, "profile", f"hardware profile {path}")  # a regular text file under the cap
    return load_profile(path)


def run_experiment(
    name: str, out_dir: str | Path | None, options: dict[str, Any] | None = None, *, overwrite: bool = False
) -> dict[str, Any]:
    """Run experiment ``name``; write ``out_dir/NAME.json``, ``out_dir/NAME.png`` and
    ``out_dir/results.json`` (the protocol's rows); return the payload.

    ``out_dir`` (default ``runs/experiments/NAME``) must be absent or empty unless ``overwrite``; the files
    appear together when the experiment ends (nothing is left when it raises). ``options`` are checked by
    :func:`check_options` before any work.

    Raises:
        InputError: a bad option. OutputError: ``out_dir`` holds files (without ``overwrite``) or is a file.
        ExperimentFailed: some runs failed; the JSON (with ``"failed"``) and the plot were written first.
    """
    opts = check_options(name, options)
    out_path = Path(out_dir) if out_dir is not None else Path("runs/experiments") / name
    with output_dir(out_path, overwrite=overwrite, flag="--out") as tmp:
        payload = _run(name, tmp, opts)
        diverged = payload.pop("_diverged", [])
        experiment_tensorboard(tmp, payload)  # tmp/tb/SETTING/seedK/: each run's curves and hparams
        experiment_report(tmp, payload, name)  # tmp/report.html, embedding tmp/NAME.png
    failed = payload.get("failed") or {}
    if failed:
        count = sum(len(v) for v in failed.values())
        total = count + sum(len(v) for v in payload.get("runs", {}).values())
        what = "; ".join(
            f"{label!r} {' | '.join(m.rstrip('.') for m in msgs)}" for label, msgs in failed.items()
        )
        raise ExperimentFailed(
            f"{count} of {total} runs of experiment {name} failed: {what}. The other runs' results are in "
            f'{out_path / (name + ".json")} ("failed" lists these).',
            payload,
            all_diverged=bool(diverged) and all(diverged),
        )
    return payload


def _sgd_baseline() -> Arm:
    return Arm("sgd (momentum 0.9)", {"optimizer": "sgd"})


def _run(name: str, out: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """The body of :func:`run_experiment`, writing into ``out`` (a fresh folder)."""
    if name == "cost-model":
        return _cost_model(out, _profile(opts.get("profile")))
    if name == "width":
        from thermotrain.training._width import run_width

        return run_width(out, _calibrated(opts.get("profile")))
    if name == "attribution":
        from thermotrain.training._attribution import DEFAULTS, run_attribution

        epochs, seeds = opts.get("epochs", DEFAULTS["epochs"]), opts.get("seeds", DEFAULTS["seeds"])
        return run_attribution(out, opts, protocol_from(opts, epochs, seeds))
    dataset = opts.get("dataset", "fashion-mnist" if name == "kfac-claims" else "digits")
    seeds = opts.get("seeds", 1 if name == "kfac-claims" else 3)
    epochs = opts.get("epochs", 3 if name == "kfac-claims" else 5)
    subset = opts.get("subset")
    progress = sys.stderr.isatty()  # progress bars for a person at a terminal, not in logs
    model = opts.get("model", "mlp")
    base = TrainConfig(dataset=dataset, model=model, batch_size=64, progress=progress, subset=subset)
    protocol = protocol_from(opts, epochs, seeds)
    data = load_dataset(dataset, subset)
    if name == "kfac-fidelity":
        from thermotrain.training._fidelity import run_fidelity

        return run_fidelity(out, base, data, protocol, _calibrated(opts.get("profile")))
    backend = opts.get("backend", "ideal")  # the TNGD experiments' device
    _check_tngd_size(backend, model, data)
    on = {} if backend == "ideal" else {"backend": backend}
    where = "ideal device" if backend == "ideal" else f"profile {backend}"
    clock = "simulation"
    marks: list[tuple[str, str, float]] = []
    target = None
    extra: dict[str, Any] = {}
    if name == "optimizers":
        thermo = _profile_thermo(opts.get("profile"))
        arms = [
            _sgd_baseline(),
            Arm("adam", {"optimizer": "adam"}),
            Arm("kfac (digital)", {"optimizer": "kfac"}),
            Arm(
                "kfac (thermo ideal, solve)",
                {"optimizer": "kfac", "backend": "ideal", "kfac_mode": "solve", "kappa0": 1e-3},
            ),
            Arm(f"kfac (thermo {_calibrated(opts.get('profile')).name} profile, inverse)", thermo),
            Arm("ngd-cg", {"optimizer": "ngd-cg"}),
            Arm("tngd", {"optimizer": "tngd"}),
            Arm("tngd-adam", {"optimizer": "tngd-adam"}),
        ]
        target = ("Adam's smoothed final test accuracy, mean over seeds", _smoothed_mean_of("adam", protocol))
        title = f"optimizers, MLP on {dataset} (each tuned on validation)"
    elif name == "tngd-time":
        tngd = {"optimizer": "tngd", "kappa0": 0.0, "tngd_warm_start": False, **on}
        arms, shared = tngd_time_arms(tngd, backend, model, data)
        title = f"TNGD analog time ({where}, no warm start; lr, λ tuned on {shared}), {model} on {dataset}"
    elif name == "tngd-delay":
        ref = "t_d=0τ"
        arms = [
            Arm(
                f"t_d={d:g}τ",
                {"optimizer": "tngd", "analog_time": 5.0, "delay": float(d), "kappa0": 0.0, **on},
                tune_with=None if d == 0 else ref,
            )
            for d in (0.0, 0.2, 1.0)
        ]
        arms.append(_sgd_baseline())
        title = (
            f"TNGD delay ({where}, t = 5 τ, warm start; lr, λ tuned at t_d = 0) vs SGD, {model} on {dataset}"
        )
    elif name == "tngd-noise":
        ref = "κ0=0"
        arms = [
            Arm(
                f"κ0={k:g}",
                {"optimizer": "tngd", "analog_time": 20.0, "kappa0": float(k), **on},
                tune_with=None if k == 0 else ref,
            )
            for k in (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
        ]
        profile = _calibrated(opts.get("profile"))
        level = profile.kappa0 * profile.fitted["noise_scale"]
        extra["calibrated_kappa0"] = {"profile": profile.name, "kappa0_times_noise_scale": level}
        title = (
            f"TNGD noise κ0 ({where}; lr, λ tuned at κ0 = 0; calibrated {profile.name}: κ0·s = {level:.3g}), "
            f"{model} on {dataset}"
        )
    elif name == "tngd-adam":
        arms = [
            Arm("adam", {"optimizer": "adam"}),
            Arm(f"tngd ({where})", {"optimizer": "tngd", **on}),
            Arm(f"tngd-adam ({where})", {"optimizer": "tngd-adam", **on}),
        ]
        target = ("Adam's smoothed final test accuracy, mean over seeds", _smoothed_mean_of("adam", protocol))
        title = f"TNGD and TNGD-Adam vs Adam ({where}; each tuned on validation), {model} on {dataset}"
        clock = "modelled"
    elif name == "kfac-quantization":
        arms, title = _kfac_quantization(out, _profile(opts.get("profile")))
    elif name == "kfac-claims":
        return _kfac_claims(out, opts, base, data, protocol)
    else:
        raise TrainingError(f"Unknown experiment {name!r}.")
    extra["model"] = model
    if name.startswith("tngd"):
        extra["tngd_device"] = where
    result = run_protocol(arms, base, data, protocol, target=target)
    payload = _finish(out, name, dataset, protocol, result, title, marks, extra, clock=clock)
    if name == "kfac-quantization":
        plot_rows(result.rows, out / f"{name}-summary.png", f"{title}, on {dataset}", reference="digital")
    return payload


def _finish(
    out: Path,
    name: str,
    dataset: str,
    protocol: Protocol,
    result: Any,
    title: str,
    marks: list[tuple[str, str, float]],
    extra: dict[str, Any],
    clock: str = "simulation",
) -> dict[str, Any]:
    """Write NAME.json, results.json and NAME.png of a protocol run (``clock``: the plot's time axis,
    ``simulation`` or ``modelled`` device time); return the payload."""
    write_results(out, name, protocol, result.rows, result.failed, dataset=dataset, **extra)
    payload = {
        "experiment": name,
        "dataset": dataset,
        **extra,
        "protocol": protocol.describe(),
        "table": flat_table(result.rows),
        "rows": result.rows,
        "failed": dict(result.failed),
        "runs": result.runs,
    }
    _write(out, name, payload)
    if result.runs:
        plot_bands(result.runs, out / f"{name}.png", title, marks=marks, clock=clock)
    payload["_diverged"] = result.diverged
    return payload


def _smoothed_mean_of(label: str, protocol: Protocol):
    """The target function: ``label``'s smoothed final test accuracy, mean over its seeds (None if absent)."""

    def target(runs: dict[str, list[dict[str, Any]]]) -> float | None:
        if label not in runs:
            return None
        return float(np.mean([smoothed_final(evaluations(s), protocol.smooth) for s in runs[label]]))

    return target


#: ``kfac-quantization``'s blocks: coupling bits × tolerance at the default readout; coupling bits where the
#: readout noise is 10× lower (so rounding, not noise, sets the error); ADC bits on the profile's own couplings;
#: and λ × {1/3, 3} around digital K-FAC's selection (digital, 4 and 8 bits).
QUANT_BITS = (4, 6, 8, 12)
QUANT_TOLERANCES = (0.0, 0.01)
QUANT_LOW_NOISE_BITS = (4, 8, 12)
QUANT_LOW_NOISE_ERROR = 0.01
QUANT_ADC_BITS = (4, 6, 8, 12)
QUANT_DAMPING_SCALES = (1 / 3, 3.0)
QUANT_DAMPING_BITS = (4, 8)
QUANT_TUNED_BITS = (4,)
QUANT_TUNED_ADC_BITS = (4,)
#: ADC ranges (component_stats.adc_full_scale_v) as multiples of the covariance readout's signal scale
#: sqrt(κ0·noise_scale) (a channel's rms at a normalized factor's unit eigenvalue: 0.1 V on rc8, the K-FAC
#: factors' channels read 0.1-0.3 V), for :data:`QUANT_ADC_RANGE_BITS`
QUANT_ADC_RANGES = (4.0, 10.0, 25.0)
QUANT_ADC_RANGE_BITS = (4, 6)


def _kfac_quantization(out: Path, profile: Any) -> tuple[list[Arm], str]:
    """Thermodynamic K-FAC (default settings: covariance readout, auto analog time) on profiles derived from
    a calibrated one (default: the shipped rc8 profile, made by ``thermotrain calibrate``): its fitted
    corrections and noise kept, coupling bits, tolerance or ADC bits replaced. Every row uses digital
    K-FAC's tuned lr and λ (the λ-interplay rows a stated multiple of that λ). Rows, in blocks:

    - coupling bits :data:`QUANT_BITS` × tolerance :data:`QUANT_TOLERANCES`, nearest rounding and
      randomized rounding merged over 4 loads, at the profile's readout error;
    - coupling bits :data:`QUANT_LOW_NOISE_BITS` at tolerance 0 with the readout error lowered to
      :data:`QUANT_LOW_NOISE_ERROR` (100× the analog time), nearest and randomized: where the coupling
      rounding, not the readout noise, should set the error;
    - ADC bits :data:`QUANT_ADC_BITS` over the profile's ±full scale, on its own couplings and tolerance;
    - ADC bits :data:`QUANT_ADC_RANGE_BITS` over ranges :data:`QUANT_ADC_RANGES` × the signal scale
      sqrt(κ0·noise_scale) (a gain stage before the ADC): what a range matched to the signal recovers;
    - λ × :data:`QUANT_DAMPING_SCALES` for digital K-FAC and for :data:`QUANT_DAMPING_BITS` coupling bits
      at 1 % tolerance: how the damping and the rounding interact (the damping guard's bumps are reported);
    - the device in the loop: the profile as given, :data:`QUANT_TUNED_BITS` coupling bits (1 % tolerance)
      and :data:`QUANT_TUNED_ADC_BITS` ADC bits, each with lr and λ tuned on its own device (digital K-FAC's
      grid, validation): whether tuning with the device recovers what the shared selection loses.
    """
    from thermotrain.models import load_profile, save_profile, shipped_profile_path
    from thermotrain.training._attribution import adc_over_range, set_fields

    if profile is None:
        profile = load_profile(shipped_profile_path("rc8"))
    digital = "digital"
    arms = [Arm(digital, {"optimizer": "kfac"})]
    thermo = {"optimizer": "kfac"}
    randomized = {"rounding": "stochastic", "roundings": 4}

    def device(changes: dict[str, Any], name: str) -> dict[str, Any]:
        """The settings of a row on ``profile`` with the dotted fields ``changes`` replaced."""
        path = save_profile(set_fields(profile, changes), out / f"profile_{name}.json")
        return thermo | {"backend": str(path)}

    paths: dict[tuple[int, float], dict[str, Any]] = {}
    for bits in QUANT_BITS:
        for tol in QUANT_TOLERANCES:
            paths[bits, tol] = on = device(
                {"component_stats.coupling_bits": bits, "component_stats.tolerance": tol},
                f"b{bits}_tol{tol:g}",
            )
            label = f"{bits} bit, tol {100 * tol:g}%"
            arms.append(Arm(label, on, tune_with=digital))
            arms.append(Arm(label + ", rand. rounding x4", on | randomized, tune_with=digital))
    for bits in QUANT_LOW_NOISE_BITS:
        on = paths[bits, 0.0] | {"readout_error": QUANT_LOW_NOISE_ERROR}
        label = f"{bits} bit, tol 0%, readout error {QUANT_LOW_NOISE_ERROR:g}"
        arms.append(Arm(label, on, tune_with=digital))
        arms.append(Arm(label + ", rand. rounding x4", on | randomized, tune_with=digital))
    stats = profile.component_stats
    own = f"couplings {stats.get('coupling_bits') or 'ideal'} bit, tol {100 * stats.get('tolerance', 0.0):g}%"
    adcs = {adc: device({"adc_bits": adc}, f"adc{adc}") for adc in QUANT_ADC_BITS}
    for adc, on in adcs.items():
        arms.append(Arm(f"ADC {adc} bit ({own})", on, tune_with=digital))
    for adc in QUANT_ADC_RANGE_BITS:
        for m in QUANT_ADC_RANGES:
            label, ranged = adc_over_range(profile, adc, m)
            fs = ranged.component_stats["adc_full_scale_v"]
            path = save_profile(ranged, out / f"profile_adc{adc}_fs{fs:g}.json")
            arms.append(Arm(label, thermo | {"backend": str(path)}, tune_with=digital))
    for m in QUANT_DAMPING_SCALES:
        tag = f"λ × {m:.3g}"
        arms.append(Arm(f"digital, {tag}", {"optimizer": "kfac"}, tune_with=digital, scale={"damping": m}))
        for bits in QUANT_DAMPING_BITS:
            label = f"{bits} bit, tol 1%, {tag}"
            arms.append(Arm(label, paths[bits, 0.01], tune_with=digital, scale={"damping": m}))
    # the device in the loop: lr and λ tuned on the device itself, on digital K-FAC's grid
    tuned = ", tuned on device"
    arms.append(Arm(f"profile as given ({own}){tuned}", device({}, "own")))
    for bits in QUANT_TUNED_BITS:
        arms.append(Arm(f"{bits} bit, tol 1%{tuned}", paths[bits, 0.01]))
    for adc in QUANT_TUNED_ADC_BITS:
        arms.append(Arm(f"ADC {adc} bit ({own}){tuned}", adcs[adc]))
    return arms, (
        f"thermodynamic K-FAC vs coupling and ADC bits ({profile.name}; nearest vs randomized rounding, "
        "readout error, λ)"
    )


def _cost_model(out: Path, profile: Any) -> dict[str, Any]:
    from thermotrain._report import pyplot
    from thermotrain.training._cost_model import HardwareConstants, kfac_layer_costs, measure_flops

    hw = HardwareConstants.from_profile(profile) if profile is not None else HardwareConstants()
    rates = measure_flops()
    rows = [
        kfac_layer_costs(n, 128, kappa, hw, rates)
        for kappa in (10.0, 100.0, 1000.0)
        for n in (64, 128, 256, 512, 1024, 2048, 4096)
    ]
    payload = {"experiment": "cost-model", "hardware": dataclasses.asdict(hw), "rates": rates, "table": rows}
    _write(out, "cost-model", payload)
    write_results(
        out,
        "cost-model",
        None,
        [r | {"selected_on": None} for r in rows],
        note="analytical model (training/_cost_model.py): nothing is trained, tuned or seeded; "
        f"τ = {hw.tau_s:g} s ({'the profile' if profile is not None else 'the paper'}), flop rates measured",
        hardware=dataclasses.asdict(hw),
        rates=rates,
    )
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for kappa, style in ((10.0, ":"), (100.0, "--"), (1000.0, "-")):
        sel = [r for r in rows if r["kappa"] == kappa]
        ns = [r["n"] for r in sel]
        ax.plot(
            ns,
            [r["digital_s"] / r["thermo_solve_s"] for r in sel],
            style,
            color="C0",
            label=f"solve, κ={kappa:g}",
        )
        ax.plot(
            ns,
            [r["digital_s"] / r["thermo_inverse_s"] for r in sel],
            style,
            color="C1",
            label=f"inverse, κ={kappa:g}",
        )
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set(xscale="log", yscale="log", xlabel="layer width n", ylabel="digital / thermodynamic time per step")
    ax.set_title(f"K-FAC layer cost model, τ = {hw.tau_s:g} s", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    fig.tight_layout()
    fig.savefig(out / "cost-model.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return payload


def _kfac_claims(
    out: Path, opts: dict[str, Any], base: TrainConfig, data: Any, protocol: Protocol
) -> dict[str, Any]:
    """Adam vs digital K-FAC vs thermodynamic K-FAC (profile) with quarter-epoch evaluations; the claims,
    on smoothed curves (running mean over ``protocol.smooth`` evaluations)."""
    from thermotrain.training._demo import shipped_profile

    path = opts["profile"] if opts.get("profile") is not None else shipped_profile()[0]
    if path is None:
        raise TrainingError("kfac-claims needs a hardware profile: pass --profile PROFILE.json.")
    prof = _profile(str(path))
    kfac: dict[str, Any] = {"optimizer": "kfac", "inv_update_steps": opts.get("inv_update_steps", 10)}
    thermo = kfac | {"backend": str(path), "pd_guard": opts.get("pd_guard", True)}
    if opts.get("analog_time") is not None:
        thermo["analog_time"] = opts["analog_time"]
    thermo_label = f"kfac (thermo, {prof.name})"
    arms = [
        Arm("adam", {"optimizer": "adam"}, fixed={"lr": opts["adam_lr"]} if "adam_lr" in opts else {}),
        Arm("kfac (digital)", kfac, fixed={"damping": opts["damping"]} if "damping" in opts else {}),
        Arm(thermo_label, thermo, tune_with="kfac (digital)"),
    ]
    result = run_protocol(arms, base, data, protocol)
    runs = result.runs
    k = protocol.smooth
    claims: dict[str, Any] = {"smoothing_k": k}
    by_seed = {label: {r["seed"]: r for r in rs} for label, rs in runs.items()}
    if "adam" in runs and "kfac (digital)" in runs:
        finals = {s["seed"]: smoothed_final(evaluations(s), k) for s in runs["adam"]}
        adam_final = float(np.mean(list(finals.values())))
        adam_steps = int(runs["adam"][0]["steps"])
        vs_mean = [steps_to_target(evaluations(s), adam_final, k) for s in runs["kfac (digital)"]]
        paired = {
            seed: steps_to_target(evaluations(s), finals[seed], k)
            for seed, s in by_seed["kfac (digital)"].items()
            if seed in finals
        }
        claims["adam_final_accuracy"] = adam_final  # smoothed, mean over seeds
        claims["adam_steps"] = adam_steps
        claims["kfac_steps_to_adam_final"] = vs_mean
        claims["kfac_steps_to_adam_final_summary"] = summarize(vs_mean)
        claims["kfac_half_steps_claim_holds"] = all(h is not None and h <= adam_steps / 2 for h in vs_mean)
        claims["kfac_steps_to_same_seed_adam_final"] = paired
        claims["kfac_half_steps_claim_holds_per_seed"] = all(
            h is not None and h <= adam_steps / 2 for h in paired.values()
        )
    if thermo_label in runs and "kfac (digital)" in runs:
        gaps = {
            seed: t["test_accuracy"] - by_seed["kfac (digital)"][seed]["test_accuracy"]
            for seed, t in by_seed[thermo_label].items()
            if seed in by_seed["kfac (digital)"]
        }
        gap = summarize(list(gaps.values()))
        claims["thermo_minus_digital_accuracy"] = gap["mean"]  # mean over the seeds both finished
        claims["thermo_minus_digital_ci95"] = gap["ci95"]
        claims["thermo_minus_digital_per_seed"] = gaps
        claims["thermo_within_1_point"] = gap["mean"] is not None and abs(gap["mean"]) <= 0.01
        claims["thermo_seeds_failed"] = len(result.failed.get(thermo_label, []))
    marks: list[tuple[str, str, float]] = []
    if "adam_final_accuracy" in claims:
        marks = [
            ("h", "Adam final (smoothed, mean)", claims["adam_final_accuracy"]),
            ("v", "half of Adam's steps", claims["adam_steps"] / 2),
        ]
    extra = {"subset": base.subset, "profile": str(path), "claims": claims}
    payload = _finish(
        out,
        "kfac-claims",
        base.dataset,
        protocol,
        result,
        f"K-FAC claims on {base.dataset} (lr, λ tuned on validation)",
        marks,
        extra,
    )
    print(json.dumps({"claims": claims}, default=str))
    return payload
