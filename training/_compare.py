"""``train_comparison``: Adam vs digital K-FAC vs thermodynamic K-FAC on a small MLP (the ``make demo`` run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thermotrain._safeio import output_dir
from thermotrain.training._data import load_dataset
from thermotrain.training._harness import TrainConfig, train

__all__ = ["format_table", "plot_curves", "train_comparison"]

_COLUMNS = (
    ("optimizer", "{}"),
    ("test_accuracy", "{:.4f}"),
    ("test_loss", "{:.4f}"),
    ("steps", "{}"),
    ("wall_s", "{:.2f}"),
    ("analog_time_tau", "{:.4g}"),
)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of the comparison rows (accuracy as a fraction, wall in s, analog time in τ)."""
    heads = ["optimizer", "test acc", "test loss", "steps", "wall s", "analog time τ"]
    cells = [[fmt.format(r[k]) for k, fmt in _COLUMNS] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(heads), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def plot_curves(summaries: list[dict[str, Any]], labels: list[str], path: Path, title: str = "") -> None:
    """Test accuracy and test loss per epoch against steps, one line per run; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for summary, label in zip(summaries, labels):
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


def train_comparison(
    out_dir: str | Path,
    backend_profile: str | Path | None = None,
    dataset: str = "digits",
    epochs: int = 5,
    seed: int = 0,
    analog_time: float = 1000.0,
    kappa0: float = 1e-3,
    damping: float = 0.1,
    mode: str = "solve",
    analog_dt: float = 0.1,
    subset: int | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Train a small MLP with Adam, digital K-FAC and thermodynamic K-FAC; print and return a 3-row table.

    Thermodynamic K-FAC runs its linear algebra on ``backend_profile`` (a hardware-profile JSON) or the ideal
    device when ``None``: ``mode="solve"`` (default; mean readout of (G+λI)⁻¹∇W(A+λI)⁻¹, warm-started) or
    ``"inverse"`` (covariance readout, much noisier at equal analog time), ``analog_time`` (τ) per solve,
    noise ``kappa0``, covariance-readout sample interval ``analog_dt`` (τ); both K-FAC runs use ``damping`` λ. Writes ``out_dir/{adam,kfac-digital,kfac-thermo}/`` run folders,
    ``out_dir/comparison.json`` and ``out_dir/comparison.png`` (test accuracy/loss against steps), all
    together at the end (a temporary folder renamed into place; nothing is left if a run fails).
    ``out_dir`` must be absent or empty unless ``overwrite`` (then it is replaced when the new runs finish).

    Returns:
        One dict per optimizer with optimizer, test_accuracy (fraction), test_loss (nats), steps, wall_s (s),
        analog_time_tau (τ).
    """
    with output_dir(out_dir, overwrite=overwrite, flag="out_dir") as tmp:
        return _compare(
            tmp,
            backend_profile,
            dataset,
            epochs,
            seed,
            analog_time,
            kappa0,
            damping,
            mode,
            analog_dt,
            subset,
            progress,
        )


def _compare(
    out: Path,
    backend_profile: str | Path | None,
    dataset: str,
    epochs: int,
    seed: int,
    analog_time: float,
    kappa0: float,
    damping: float,
    mode: str,
    analog_dt: float,
    subset: int | None,
    progress: bool,
) -> list[dict[str, Any]]:
    """The body of :func:`train_comparison`, writing into the fresh folder ``out``."""
    data = load_dataset(dataset, subset)
    thermo_backend = str(backend_profile) if backend_profile is not None else "ideal"
    common = dict(model="mlp", dataset=dataset, epochs=epochs, seed=seed, batch_size=64, progress=progress)
    kfac = dict(damping=damping, kfac_mode=mode)
    thermo = dict(analog_time=analog_time, kappa0=kappa0, analog_dt=analog_dt)
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
        rows.append({"optimizer": label} | {k: summary[k] for k, _ in _COLUMNS[1:]})
    table = format_table(rows)
    print(table)
    (out / "comparison.json").write_text(json.dumps(rows, indent=2))
    plot_curves(summaries, [r["optimizer"] for r in rows], out / "comparison.png", f"MLP on {dataset}")
    return rows
