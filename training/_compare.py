"""``train_comparison``: Adam vs digital K-FAC vs thermodynamic K-FAC on a small MLP (the ``make demo`` run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thermotrain._html import experiment_report
from thermotrain._report import pyplot, table
from thermotrain._safeio import output_dir
from thermotrain.training._data import load_dataset
from thermotrain.training._harness import TrainConfig, train

__all__ = ["format_table", "plot_curves", "train_comparison"]

_COLUMNS = (
    ("optimizer", "optimizer"),
    ("test_accuracy", "test acc"),
    ("test_loss", "test loss"),
    ("steps", "steps"),
    ("wall_s", "wall s"),
    ("analog_time_tau", "analog time τ"),
    ("analog_time_per_call_tau", "τ per device call"),
)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of the comparison rows (accuracy as a fraction, wall in s, analog time in τ;
    the per-call time as min…max over the run's device calls, "-" for digital runs)."""
    return table([[r.get(k) for k, _ in _COLUMNS] for r in rows], [h for _, h in _COLUMNS])


def plot_curves(summaries: list[dict[str, Any]], labels: list[str], path: Path, title: str = "") -> None:
    """Test accuracy and test loss per epoch against steps, one line per run; saved as PNG."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for summary, label in zip(summaries, labels, strict=True):
        hist = summary["history"]
        steps = [h["step"] for h in hist]
        axes[0].plot(steps, [h["test_accuracy"] for h in hist], marker="o", label=label)
        axes[1].plot(steps, [h["test_loss"] for h in hist], marker="o", label=label)
    axes[0].set(xlabel="step", ylabel="test accuracy")
    axes[1].set(xlabel="step", ylabel="test loss (nats)", yscale="log")
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    ``out_dir/{adam,kfac-digital,kfac-thermo}/`` run folders, ``out_dir/comparison.json`` and
    ``out_dir/comparison.png`` (test accuracy/loss against steps), all together at the end (a temporary
    folder renamed into place; nothing is left if a run fails). ``out_dir`` must be absent or empty unless
    ``overwrite`` (then it is replaced when the new runs finish).

    Returns:
        One dict per optimizer with optimizer, test_accuracy (fraction), test_loss (nats), steps, wall_s (s),
        analog_time_tau (τ, total), analog_time_per_call_tau (τ, "min…max"; None when digital).
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
    """The body of :func:`train_comparison`, writing into the fresh folder ``out``."""
    data = load_dataset(dataset, subset)
    thermo_backend = str(backend_profile) if backend_profile is not None else "ideal"
    common = dict(model="mlp", dataset=dataset, epochs=epochs, seed=seed, batch_size=64, progress=progress)
    kfac = {k: thermo.pop(k) for k in ("damping", "kfac_mode") if k in thermo}
    runs = [
        ("adam", TrainConfig(optimizer="adam", lr=3e-3, out=str(out / "adam"), **common)),  # type: ignore[arg-type]
        (
            "kfac (digital)",
            TrainConfig(optimizer="kfac", backend="exact", out=str(out / "kfac-digital"), **kfac, **common),
        ),  # type: ignore[arg-type]
        (
            f"kfac (thermo, {'ideal' if backend_profile is None else _profile_name(backend_profile)})",
            TrainConfig(
                optimizer="kfac",
                backend=thermo_backend,
                out=str(out / "kfac-thermo"),
                **thermo,
                **kfac,
                **common,  # type: ignore[arg-type]
            ),
        ),
    ]
    summaries, rows = [], []
    for label, cfg in runs:
        summary = train(cfg, data)
        summaries.append(summary)
        rows.append(
            {"optimizer": label}
            | {k: summary[k] for k, _ in _COLUMNS[1:-1]}
            | {"analog_time_per_call_tau": _per_call(summary)}
        )
    print(format_table(rows))
    (out / "comparison.json").write_text(json.dumps(rows, indent=2))
    plot_curves(summaries, [r["optimizer"] for r in rows], out / "comparison.png", f"MLP on {dataset}")
    settings = {"dataset": dataset, "epochs": epochs, "seed": seed, "subset": subset, "thermo": thermo}
    experiment_report(out, {**settings, "table": rows}, "train comparison")  # embeds comparison.png
    return rows
