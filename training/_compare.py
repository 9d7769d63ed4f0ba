"""``train_comparison``: Adam vs digital K-FAC vs thermodynamic K-FAC on a small MLP (the ``make demo`` run).

It runs through the experiments' protocol (:mod:`thermotrain.training._protocol`) with one-point grids:
nothing is tuned (TrainConfig's defaults, which were chosen on validation splits; Adam at lr 3e-3), one
seed, the validation examples held out of training, test accuracy four times per epoch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thermotrain._errors import TrainingError
from thermotrain._html import experiment_report
from thermotrain._report import table
from thermotrain._safeio import output_dir, write_text_atomic
from thermotrain.training._config import DEFAULT_DAMPING, DEFAULT_LR
from thermotrain.training._data import load_dataset
from thermotrain.training._harness import TrainConfig
from thermotrain.training._protocol import Arm, Protocol, plot_bands, run_protocol, write_results

__all__ = ["format_table", "train_comparison"]

_COLUMNS = (
    ("optimizer", "optimizer"),
    ("test_accuracy", "test acc"),
    ("test_loss", "test loss"),
    ("steps", "steps"),
    ("wall_s", "simulation s"),
    ("modelled_device_time_s", "device s (modelled)"),
    ("analog_time_tau", "analog time τ"),
    ("analog_time_per_call_tau", "τ per device call"),
)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of the comparison rows (accuracy as a fraction, wall in s, analog time in τ;
    the per-call time as min…max over the run's device calls, "-" for digital runs)."""
    return table([[r.get(k) for k, _ in _COLUMNS] for r in rows], [h for _, h in _COLUMNS])


def _profile_name(path: str | Path) -> str:
    """A profile's own name (``circuit["name"]``), or its file name when it does not load."""
    try:
        from thermotrain.models import load_profile

        return load_profile(path).name
    except Exception:  # noqa: BLE001 - a label only; training reports a bad profile itself
        return Path(path).stem


def _per_call(summary: dict[str, Any]) -> str | None:
    """'min…max' analog time per device call (τ) of a run, or None for a digital one."""
    per = summary.get("readout", {}).get("analog_time_per_call_tau")
    if not per:
        return None
    lo, hi = per["min"], per["max"]
    return f"{lo:.3g}" if hi <= lo * (1 + 1e-9) else f"{lo:.3g}…{hi:.3g}"


def train_comparison(
    out_dir: str | Path,
    backend_profile: str | Path | None = None,
    dataset: str = "digits",
    epochs: int = 5,
    seed: int = 0,
    subset: int | None = None,
    progress: bool = False,
    overwrite: bool = False,
    **thermo: Any,
) -> list[dict[str, Any]]:
    """Train a small MLP with Adam, digital K-FAC and thermodynamic K-FAC; print and return a 3-row table.

    Thermodynamic K-FAC runs on ``backend_profile`` (a hardware-profile JSON or a shipped name) or the ideal
    device when ``None``, with :class:`TrainConfig`'s defaults — the same run as ``thermotrain train
    --optimizer kfac --backend PROFILE`` with no other flag: covariance readout, ``analog_time="auto"`` (the
    device picks each inverse's time for the target readout error), the profile's own κ0. ``thermo`` passes
    TrainConfig fields to both K-FAC runs where they apply (``damping``, ``kfac_mode``) and to the
    thermodynamic one (``analog_time``, ``readout_error``, ``kappa0``, ``analog_dt`` …). Writes
    ``out_dir/{adam,kfac-digital,kfac-thermo}/`` run folders, ``out_dir/comparison.json``,
    ``out_dir/results.json`` and ``out_dir/comparison.png`` (test accuracy against steps and time), all together at the end (a temporary
    folder renamed into place; nothing is left if a run fails). ``out_dir`` must be absent or empty unless
    ``overwrite`` (then it is replaced when the new runs finish).

    Returns:
        One dict per optimizer with optimizer, test_accuracy (fraction), test_loss (nats), steps, wall_s (s,
        simulation time on this CPU), modelled_device_time_s (s: digital time measured + analog time at the
        profile's τ, or 1 µs for the ideal device), analog_time_tau (τ, total), analog_time_per_call_tau (τ,
        "min…max"; None when digital). ``out_dir/results.json`` holds the protocol's rows.
    """
    with output_dir(out_dir, overwrite=overwrite, flag="out_dir") as tmp:
        return _compare(tmp, backend_profile, dataset, epochs, seed, subset, progress, thermo)


def _compare(
    out: Path,
    backend_profile: str | Path | None,
    dataset: str,
    epochs: int,
    seed: int,
    subset: int | None,
    progress: bool,
    thermo: dict[str, Any],
) -> list[dict[str, Any]]:
    """The body of :func:`train_comparison`, writing into the fresh folder ``out``: the three runs under the
    experiments' protocol with one-point grids (nothing tuned: TrainConfig's defaults, chosen on
    validation splits, and Adam at lr 3e-3), one seed, constant lr."""
    data = load_dataset(dataset, subset)
    kfac = {k: thermo.pop(k) for k in ("damping", "kfac_mode") if k in thermo}
    thermo_label = f"kfac (thermo, {'ideal' if backend_profile is None else _profile_name(backend_profile)})"
    thermo_backend = str(backend_profile) if backend_profile is not None else "ideal"

    def fixed(optimizer: str) -> dict[str, float]:
        lam = kfac.get("damping", DEFAULT_DAMPING[optimizer])
        return {"lr": DEFAULT_LR[optimizer], "damping": lam}

    arms = [
        Arm("adam", {"optimizer": "adam"}, fixed={"lr": 3e-3}),
        Arm("kfac (digital)", {"optimizer": "kfac", "backend": "exact", **kfac}, fixed=fixed("kfac")),
        Arm(
            thermo_label,
            {"optimizer": "kfac", "backend": thermo_backend, **thermo, **kfac},
            fixed=fixed("kfac"),
        ),
    ]
    folders = {"adam": "adam", "kfac (digital)": "kfac-digital", thermo_label: "kfac-thermo"}
    protocol = Protocol(seeds=1, epochs=epochs, first_seed=seed, lr_schedule="constant")
    base = TrainConfig(model="mlp", dataset=dataset, batch_size=64, progress=progress)
    result = run_protocol(
        arms, base, data, protocol, run_out=lambda arm, _seed: str(out / folders[arm.label])
    )
    if result.failed:  # one seed, fixed settings: a failed run is the comparison's failure
        label, messages = next(iter(result.failed.items()))
        raise TrainingError(f"train comparison: {label}: {messages[0]}")
    rows = []
    for arm in arms:
        summary = result.runs[arm.label][0]
        rows.append(
            {"optimizer": arm.label}
            | {k: summary[k] for k, _ in _COLUMNS[1:-1]}
            | {"analog_time_per_call_tau": _per_call(summary)}
        )
    print(format_table(rows))
    write_text_atomic(out / "comparison.json", json.dumps(rows, indent=2))
    write_results(out, "train comparison", protocol, result.rows, result.failed, dataset=dataset)
    plot_bands(result.runs, out / "comparison.png", f"MLP on {dataset} (one seed, TrainConfig defaults)")
    settings = {"dataset": dataset, "epochs": epochs, "seed": seed, "subset": subset, "thermo": thermo}
    experiment_report(out, {**settings, "table": rows}, "train comparison")  # embeds comparison.png
    return rows
