"""``thermotrain experiment NAME``: the studies of issue 4, each writing OUT/NAME.json and OUT/NAME.png.

- ``optimizers``: every optimizer of the harness, ≥ 3 seeds, test accuracy per step and per wall-clock second.
- ``tngd-time``: TNGD with t ∈ {0, 5, 10, 20, 50} τ against exact NGD (dense solve) and SGD.
- ``tngd-delay``: TNGD with t_d ∈ {0, 0.2, 1} τ.
- ``tngd-noise``: TNGD vs κ0 ∈ {0, 1e-4, 1e-3, 1e-2, 1e-1}; a profile's κ0 (``--profile``) is marked.
- ``kfac-quantization``: thermodynamic K-FAC (solve mode) on profiles with coupling bits {4, 6, 8, 12} and
  tolerance {0, 1 %}, derived from a calibrated profile (``--profile``; default the shipped rc8 one), each
  with nearest rounding and with randomized rounding merged over 4 loads (error mitigation).
- ``cost-model``: predicted per-step time of digital vs thermodynamic K-FAC vs layer width n ∈ {64 … 4096}.
- ``kfac-claims``: the issue's bar on one data set (default Fashion-MNIST): Adam for ``--epochs`` (3), digital
  K-FAC and thermodynamic K-FAC on a hardware profile (``--profile``, default the shipped rc8 profile),
  test accuracy every quarter epoch; reports the first step at which digital K-FAC reaches Adam's final
  accuracy (claim: ≤ half of Adam's steps) and the final thermodynamic − digital gap (claim: within 1 point).

Defaults are sized for a 2-core CPU (digits, small MLP); ``--dataset fashion-mnist --subset N`` scales up.

Every option is checked where it enters (:func:`run_experiment`): its type and range, and that the
experiment uses it (``--damping`` for ``tngd-time`` is refused, not ignored). The outputs are written
together at the end (a temporary folder renamed into place; a folder holding files is refused unless
``overwrite``). A run of the study that fails (diverges, or a matrix the hardware refuses) is recorded in the
JSON under ``"failed"`` while the others go on; then :class:`ExperimentFailed` names the failed runs, so the
command exits non-zero (4 when every failure is a divergence) with the other runs' results on disk.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from thermotrain._args import check_choice, check_float, check_int
from thermotrain._errors import DivergedError, InputError, ThermotrainError, TrainingError
from thermotrain._html import experiment_report
from thermotrain._safeio import output_dir, read_text
from thermotrain.training._data import DATASETS, load_dataset
from thermotrain.training._harness import TrainConfig, train
from thermotrain.training._tensorboard import experiment_tensorboard

__all__ = ["EXPERIMENTS", "OPTION_NAMES", "ExperimentFailed", "run_experiment"]

_COMMON = ("dataset", "epochs", "seeds", "subset")
#: The options each experiment uses (anything else passed to it is refused).
EXPERIMENTS: dict[str, tuple[str, ...]] = {
    "optimizers": (*_COMMON, "profile"),
    "tngd-time": _COMMON,
    "tngd-delay": _COMMON,
    "tngd-noise": (*_COMMON, "profile"),
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
}
OPTION_NAMES = ("dataset", "epochs", "seeds", "subset", "profile", "damping", "inv_update_steps", "pd_guard")
OPTION_NAMES = (*OPTION_NAMES, "analog_time", "adam_lr")


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
        elif key in ("epochs", "seeds", "subset", "inv_update_steps"):
            checked[key] = check_int(flag, value, minimum=1)
        elif key == "analog_time" and value == "auto":
            checked[key] = value
        elif key in ("damping", "analog_time", "adam_lr"):
            checked[key] = check_float(flag, value, minimum=0.0, strict_min=True)
        elif key == "pd_guard":
            if not isinstance(value, bool):
                raise InputError(f"{flag}={value!r} must be True or False.")
            checked[key] = value
        elif key == "profile":
            if not isinstance(value, str | Path) or not str(value):
                raise InputError(f"--profile={value!r} must be the path of a hardware-profile JSON.")
            read_text(value, "profile", f"--profile {value}")  # a regular text file under the cap
            checked[key] = str(value)
    return checked


def _plt():
    from thermotrain._report import pyplot

    return pyplot()


def _curve(
    summary: dict[str, Any], key: str = "test_accuracy"
) -> tuple[list[float], list[float], list[float]]:
    hist = [h for h in summary["history"] if h["kind"] == "epoch"]
    return [h["step"] for h in hist], [h["wall_s"] for h in hist], [h[key] for h in hist]


failures: dict[str, list[str]] = {}
"""Settings whose runs raised a ``ThermotrainError`` in the last sweep (label → messages); written to the
JSON."""
_diverged_only: list[bool] = []
"""One entry per failure of the last sweep: whether it was a divergence."""


def _sweep(
    base: TrainConfig, settings: dict[str, dict[str, Any]], seeds: int, data: Any
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    failures.clear()
    _diverged_only.clear()
    total, done = len(settings) * seeds, 0
    for label, overrides in settings.items():
        runs[label] = []
        for seed in range(seeds):
            done += 1
            print(f"[{done}/{total}] {label}, seed {seed}", flush=True)
            cfg = dataclasses.replace(base, seed=seed, **overrides)
            try:
                summary = train(cfg, data)
            except ThermotrainError as exc:  # a failed run is a result: record it, keep sweeping, report it
                failures.setdefault(label, []).append(f"seed {seed}: {exc}")
                _diverged_only.append(isinstance(exc, DivergedError))
                print(f"[{done}/{total}] {label}, seed {seed} FAILED: {exc}", flush=True)
                continue
            summary.pop("config")
            summary["seed"] = seed
            runs[label].append(summary)
        if not runs[label]:
            del runs[label]
    return runs


def _table(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for label, summaries in runs.items():
        acc = np.array([s["test_accuracy"] for s in summaries])
        loss = np.array([s["test_loss"] for s in summaries])
        rows.append(
            {
                "setting": label,
                "test_accuracy_mean": float(acc.mean()),
                "test_accuracy_std": float(acc.std()),
                "test_loss_mean": float(loss.mean()),
                "wall_s_mean": float(np.mean([s["wall_s"] for s in summaries])),
                "analog_time_tau_mean": float(np.mean([s["analog_time_tau"] for s in summaries])),
                "seeds": len(summaries),
            }
        )
    return rows


def _plot_runs(runs: dict[str, list[dict[str, Any]]], path: Path, title: str, wall: bool = True) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if wall else 1, figsize=(10 if wall else 5.5, 3.6), squeeze=False)
    for label, summaries in runs.items():
        steps, walls, accs = zip(*[_curve(s) for s in summaries])
        mean = np.mean(np.array(accs), axis=0)
        axes[0, 0].plot(steps[0], mean, marker="o", label=label)
        if wall:
            axes[0, 1].plot(np.mean(np.array(walls), axis=0), mean, marker="o", label=label)
    axes[0, 0].set(xlabel="step", ylabel="test accuracy (mean over seeds)", title=title)
    if wall:
        axes[0, 1].set(xlabel="wall-clock (s, this CPU)", ylabel="test accuracy")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write(out: Path, name: str, payload: dict[str, Any]) -> None:
    from thermotrain.training._harness import _finite_or_text

    text = json.dumps(_finite_or_text(payload), indent=2, default=str, allow_nan=False)
    (out / f"{name}.json").write_text(text)
    for row in payload.get("table", []):
        print(json.dumps(row))
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
    """Run experiment ``name``; write ``out_dir/name.json`` and ``out_dir/name.png``; return the payload.

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
            all_diverged=bool(_diverged_only) and all(_diverged_only),
        )
    return payload


def _run(name: str, out: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """The body of :func:`run_experiment`, writing into ``out`` (a fresh folder)."""
    dataset = opts.get("dataset", "digits")
    seeds = opts.get("seeds", 3)
    subset = opts.get("subset")
    progress = sys.stderr.isatty()  # progress bars for a person at a terminal, not in logs
    base = TrainConfig(
        dataset=dataset, model="mlp", batch_size=64, progress=progress, subset=subset, epochs=5
    )
    if opts.get("epochs") is not None:
        base = dataclasses.replace(base, epochs=opts["epochs"])

    if name == "cost-model":
        return _cost_model(out, _profile(opts.get("profile")))
    if name == "kfac-claims":
        return _kfac_claims(
            out,
            opts,
            base if opts.get("dataset") is not None else dataclasses.replace(base, dataset="fashion-mnist"),
        )
    data = load_dataset(dataset, subset)
    if name == "optimizers":
        settings = {
            "sgd": {"optimizer": "sgd"},
            "adam": {"optimizer": "adam", "lr": 3e-3},
            "kfac (digital)": {"optimizer": "kfac"},
            "kfac (thermo ideal, solve)": {
                "optimizer": "kfac",
                "backend": "ideal",
                "kfac_mode": "solve",
                "kappa0": 1e-3,
            },
            "kfac (thermo rc8 profile, inverse)": _profile_thermo(opts.get("profile")),
            "ngd-cg": {"optimizer": "ngd-cg"},
            "tngd": {"optimizer": "tngd"},
            "tngd-adam": {"optimizer": "tngd-adam"},
        }
        runs = _sweep(base, settings, seeds, data)
        title = f"optimizers, MLP on {dataset}"
    elif name == "tngd-time":
        tngd = {"optimizer": "tngd", "kappa0": 0.0, "tngd_warm_start": False}
        settings = {f"tngd t={t:g}τ": tngd | {"analog_time": float(t)} for t in (0, 5, 10, 20, 50)}
        settings["exact NGD"] = {"optimizer": "ngd"}
        settings["sgd (no momentum = tngd t=0)"] = {
            "optimizer": "tngd",
            "analog_time": 0.0,
            "kappa0": 0.0,
            "tngd_warm_start": False,
        }
        runs = _sweep(base, settings, seeds, data)
        title = "TNGD analog time (no warm start)"
    elif name == "tngd-delay":
        settings = {
            f"t_d={d:g}τ": {"optimizer": "tngd", "analog_time": 5.0, "delay": float(d), "kappa0": 0.0}
            for d in (0.0, 0.2, 1.0)
        }
        runs = _sweep(base, settings, seeds, data)
        title = "TNGD delay (t = 5τ, warm start)"
    elif name == "tngd-noise":
        settings = {
            f"κ0={k:g}": {"optimizer": "tngd", "analog_time": 20.0, "kappa0": float(k)}
            for k in (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
        }
        runs = _sweep(base, settings, seeds, data)
        profile = _calibrated(opts.get("profile"))
        level = profile.kappa0 * profile.fitted["noise_scale"]
        title = f"TNGD noise κ0 (SPICE-calibrated {profile.name}: κ0·s = {level:.3g})"
    elif name == "kfac-quantization":
        runs, title = _kfac_quantization(base, seeds, data, out, _profile(opts.get("profile")))
    else:
        raise TrainingError(f"Unknown experiment {name!r}.")
    payload = {
        "experiment": name,
        "dataset": dataset,
        "table": _table(runs),
        "failed": dict(failures),
        "runs": runs,
    }
    _write(out, name, payload)
    _plot_runs(runs, out / f"{name}.png", title)
    return payload


def _kfac_quantization(base: TrainConfig, seeds: int, data: Any, out: Path, profile: Any):
    """Thermodynamic K-FAC (default settings: covariance readout, auto analog time) on profiles derived from
    a calibrated one (default: the shipped rc8 profile, made by ``thermotrain calibrate``): its fitted
    corrections and noise kept, coupling bits and tolerance replaced; each with nearest rounding and with
    randomized rounding merged over 4 loads."""
    from thermotrain.models import load_profile, save_profile, shipped_profile_path

    if profile is None:
        profile = load_profile(shipped_profile_path("rc8"))
    settings: dict[str, dict[str, Any]] = {"digital": {"optimizer": "kfac"}}
    thermo = {"optimizer": "kfac"}
    for bits in (4, 6, 8, 12):
        for tol in (0.0, 0.01):
            stats = profile.component_stats | {"coupling_bits": bits, "tolerance": tol}
            prof = dataclasses.replace(profile, component_stats=stats)
            path = save_profile(prof, out / f"profile_b{bits}_tol{tol:g}.json")
            label = f"{bits} bit, tol {100 * tol:g}%"
            settings[label] = thermo | {"backend": str(path)}
            settings[label + ", rand. rounding x4"] = thermo | {
                "backend": str(path),
                "rounding": "stochastic",
                "roundings": 4,
            }
    runs = _sweep(base, settings, seeds, data)
    return (
        runs,
        f"thermodynamic K-FAC vs coupling bits ({profile.name} profile; nearest vs randomized rounding)",
    )


def _cost_model(out: Path, profile: Any) -> dict[str, Any]:
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
    plt = _plt()
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
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "cost-model.png", dpi=120)
    plt.close(fig)
    return payload


def _kfac_claims(out: Path, opts: dict[str, Any], base: TrainConfig) -> dict[str, Any]:
    """Adam vs digital K-FAC vs thermodynamic K-FAC (profile) with quarter-epoch evaluations; the claims."""
    from thermotrain.training._demo import shipped_profile

    path = opts["profile"] if opts.get("profile") is not None else shipped_profile()[0]
    if path is None:
        raise TrainingError("kfac-claims needs a hardware profile: pass --profile PROFILE.json.")
    prof = _profile(str(path))
    epochs = opts["epochs"] if opts.get("epochs") is not None else 3
    data = load_dataset(base.dataset, base.subset)
    steps_per_epoch = -(-len(data.y_train) // base.batch_size)
    base = dataclasses.replace(base, epochs=epochs, eval_every=max(1, steps_per_epoch // 4))

    def opt(key: str, default: Any) -> Any:
        return opts[key] if opts.get(key) is not None else default

    thermo = {
        "optimizer": "kfac",
        "backend": str(path),
        "inv_update_steps": opt("inv_update_steps", 10),
        "damping": opt("damping", 0.1),
        "pd_guard": opt("pd_guard", False),
    }
    if opts.get("analog_time") is not None:
        thermo["analog_time"] = opts["analog_time"]
    settings = {
        "adam": {"optimizer": "adam", "lr": opt("adam_lr", 1e-3)},
        "kfac (digital)": {
            "optimizer": "kfac",
            "inv_update_steps": thermo["inv_update_steps"],
            "damping": thermo["damping"],
        },
        f"kfac (thermo, {prof.name})": thermo,
    }
    runs = _sweep(base, settings, opt("seeds", 1), data)

    def evals(summary: dict[str, Any]) -> list[tuple[int, float]]:
        return [(h["step"], h["test_accuracy"]) for h in summary["history"] if h["kind"] in ("eval", "epoch")]

    claims: dict[str, Any] = {}
    by_seed = {label: {r["seed"]: r for r in rs} for label, rs in runs.items()}
    if "adam" in runs and "kfac (digital)" in runs:
        adam_final = float(np.mean([s["test_accuracy"] for s in runs["adam"]]))
        adam_steps = int(runs["adam"][0]["steps"])

        def first_hit(summary: dict[str, Any], target: float) -> int | None:
            return next((st for st, acc in sorted(evals(summary)) if acc >= target), None)

        vs_mean = [first_hit(s_, adam_final) for s_ in runs["kfac (digital)"]]
        paired = {
            seed: first_hit(k, by_seed["adam"][seed]["test_accuracy"])
            for seed, k in by_seed["kfac (digital)"].items()
            if seed in by_seed["adam"]
        }
        claims["adam_final_accuracy"] = adam_final
        claims["adam_steps"] = adam_steps
        claims["kfac_steps_to_adam_final"] = vs_mean  # against the mean of Adam's seeds
        claims["kfac_half_steps_claim_holds"] = all(h is not None and h <= adam_steps / 2 for h in vs_mean)
        claims["kfac_steps_to_same_seed_adam_final"] = paired
        claims["kfac_half_steps_claim_holds_per_seed"] = all(
            h is not None and h <= adam_steps / 2 for h in paired.values()
        )
    thermo_label = f"kfac (thermo, {prof.name})"
    if thermo_label in runs and "kfac (digital)" in runs:
        gaps = {
            seed: t["test_accuracy"] - by_seed["kfac (digital)"][seed]["test_accuracy"]
            for seed, t in by_seed[thermo_label].items()
            if seed in by_seed["kfac (digital)"]
        }
        gap = float(np.mean(list(gaps.values())))
        claims["thermo_minus_digital_accuracy"] = gap  # mean over the seeds both finished
        claims["thermo_minus_digital_per_seed"] = gaps
        claims["thermo_within_1_point"] = abs(gap) <= 0.01
        claims["thermo_seeds_failed"] = len(failures.get(thermo_label, []))
    payload = {
        "experiment": "kfac-claims",
        "dataset": base.dataset,
        "subset": base.subset,
        "profile": str(path),
        "claims": claims,
        "table": _table(runs),
        "failed": dict(failures),
        "runs": runs,
    }
    _write(out, "kfac-claims", payload)
    print(json.dumps({"claims": claims}))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, summaries in runs.items():
        pts = sorted(evals(summaries[0]))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=label)
    if "adam_final_accuracy" in claims:
        ax.axhline(claims["adam_final_accuracy"], color="k", lw=0.6, ls="--", label="Adam final")
        ax.axvline(claims["adam_steps"] / 2, color="k", lw=0.6, ls=":", label="half of Adam's steps")
    ax.set(xlabel="step", ylabel="test accuracy", title=f"K-FAC claims on {base.dataset}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "kfac-claims.png", dpi=120)
    plt.close(fig)
    return payload
