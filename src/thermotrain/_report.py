"""Small shared helpers for reports: JSON that accepts numpy, plain-text tables, a headless matplotlib."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, np.generic):
        return to_jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")
    return path


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A fixed-width text table (floats with 4 significant digits)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return f"{v:.4g}"
        if v is None:
            return "-"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, sep, *body])


def pyplot():
    """matplotlib.pyplot with the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def covariance_heatmaps(
    path: str | Path, title: str, reference: np.ndarray, other: np.ndarray, labels: tuple[str, str]
) -> None:
    """Three panels: ``reference`` and ``other`` covariances (V²) on one colour scale, and their difference
    (other − reference) / max|reference|. ``labels`` name the two (e.g. ("model", "SPICE"))."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    vmax = np.abs(reference).max()
    for ax, m, name in ((axes[0], reference, labels[0]), (axes[1], other, labels[1])):
        im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(f"{name} (V^2)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    d = (other - reference) / vmax
    im = axes[2].imshow(d, cmap="RdBu_r", vmin=-np.abs(d).max(), vmax=np.abs(d).max())
    axes[2].set_title(f"({labels[1]} - {labels[0]}) / max|{labels[0]}|")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def trace_panels(
    path: str | Path,
    title: str,
    xlabel: str,
    t: np.ndarray,
    lines: Sequence[tuple[str, np.ndarray, dict[str, Any]]],
    show: Sequence[int],
    *,
    hlines: Sequence[tuple[np.ndarray, str | None, dict[str, Any]]] = (),
    ylabel: str = "V",
) -> None:
    """One panel per output ``i`` in ``show``, stacked on a shared time axis ``t``: each of ``lines``
    (label with ``{i}``, a [len(t), P] array, matplotlib keywords) drawn as its column i, and each of
    ``hlines`` (a [P] array of levels, a label or None, keywords) as a horizontal line at its entry i."""
    plt = pyplot()
    fig, axes = plt.subplots(len(show), 1, figsize=(9, 1.8 * len(show) + 0.6), sharex=True, squeeze=False)
    for ax, i in zip(axes[:, 0], show, strict=True):
        for label, y, kw in lines:
            ax.plot(t, y[:, i], label=label.format(i=i), **kw)
        for level, label, kw in hlines:
            ax.axhline(level[i], **({"label": label} if label else {}), **kw)
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel(xlabel)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlay_plot(
    path: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
    curves: Sequence[tuple[np.ndarray, np.ndarray, dict[str, Any]]],
) -> None:
    """One axes with every curve (x, y, matplotlib keywords, e.g. a ``label``) drawn over the others."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for x, y, kw in curves:
        ax.plot(x, y, **kw)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
