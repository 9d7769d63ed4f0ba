"""``thermotrain experiment width``: does the thermodynamic advantage grow with the layer width n? Measured
condition numbers and digital inverse times of K-FAC-like factors against the modelled analog readout time.

For each n ∈ :data:`WIDTHS`:

1. **Factor from real data.** m = :data:`EXAMPLES` Fashion-MNIST training images (standardised, the
   first m of the loader's fixed shuffle) go through a freshly initialised ``torch.nn.Linear(784, n)``
   (PyTorch's default init, seed 0) and a ReLU: a random-feature layer. The factor is the K-FAC input factor
   of the next layer, F = aᵀa/m + λI with λ = K-FAC's default damping (0.3, added to each factor as the
   trainer does). m = 2 048 is about the effective sample count of K-FAC's running factor (decay 0.95,
   batch 64–128: 1 280–2 560 examples); for n > m the undamped factor has rank m, so λ_min = λ exactly.
2. **Condition number** κ = λ_max/λ_min of F (float64 ``eigvalsh`` of F, or of the m × m Gram matrix
   a aᵀ/m when m < n: the same non-zero spectrum), and the worst κ of its 64-cell diagonal blocks.
3. **Digital inverse time**, measured on 1 thread (``torch.set_num_threads(1)``), float32 (the training
   dtype), median of :data:`REPEATS`: ``torch.linalg.inv`` (LU), Cholesky inverse
   (``cholesky`` + ``cholesky_inverse``: what a digital K-FAC step would use), and the block-diagonal
   Cholesky inverse of the 64-cell blocks (the digital cost of the approximation the tiles compute).
4. **Modelled analog time** of the covariance readout at the profile's target error (the profile's
   readout recommendation: 0.1 for rc8), planned exactly as training plans it
   (:meth:`thermotrain.training.AnalogSolver.plan`: F scaled by its Gershgorin bound, λ_min floored at the
   scaled damping): on one monolithic n-cell device, and on the profile's chip (rc8: 16 tiles of 64 cells)
   with the block-diagonal mapping: per round (16 blocks at a time) the schedule of its slowest block
   (:func:`thermotrain.models.tiled_inverse`'s planning), chip wall time = Σ over rounds. The blocks are
   cut from the factor *after* the solver's scaling by the whole factor's Gershgorin bound, as in training,
   so a block's rates are set by the whole factor's λ_max, not its own. The auto analog time is uncapped
   here (:data:`UNCAPPED`; training caps it at ``max_analog_time`` = 1e6 τ and then misses the target),
   so every time is the one that reaches the target error. Times in τ, then
   in seconds at the profile's τ (rc8: 10 µs) and the TNGD paper's τ = 1 µs. The analog time only: no
   load/readout I/O and no digital work around the device (docs/benchmarks.md measures those).

Nothing is trained, tuned or seeded beyond the fixed layer and example choice, so there are no seeds or
intervals; the timing spread (min and max of the repeats) is reported with each median. About 1 minute on
one core (n = 4 096 dominates: three LU inverses of a 4 096² matrix).
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from thermotrain.training._protocol import PAPER_TAU_S, dumps, write_results

__all__ = ["EXAMPLES", "REPEATS", "WIDTHS", "factor", "measure_width", "run_width", "time_median"]

WIDTHS = (256, 512, 1024, 2048, 4096)
EXAMPLES = 2048
REPEATS = 3
#: the auto analog time's cap lifted (τ): the training default caps it at 1e6 τ, which n ≥ 2 048 reaches
UNCAPPED = 1e15
TILE_DEFAULT = 64  # cells per tile when the profile declares no chip (the rc8 chip's)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)``; restore the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_median(fn: Callable[[], Any], repeats: int = REPEATS) -> dict[str, float]:
    """Wall-clock seconds of ``fn()`` over ``repeats`` calls: median, min, max."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def factor(x: torch.Tensor, n: int, damping: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(F, a): the activations a = ReLU(Linear(784, n)(x)) of a freshly initialised layer (seed ``seed``) on
    the flattened images ``x`` [m, ...], and F = aᵀa/m + damping·I [n, n], both float64."""
    g = torch.Generator().manual_seed(seed)
    d = x[0].numel()
    bound = 1.0 / math.sqrt(d)  # nn.Linear's default init: U(-1/√d, 1/√d) for weight and bias
    W = (torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1) * bound
    b = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * bound
    a = torch.relu(x.reshape(len(x), -1).double() @ W.T + b)
    F = a.T @ a / len(a)
    F.diagonal().add_(damping)
    return F, a


def spectrum_ends(F: torch.Tensor, a: torch.Tensor, damping: float) -> tuple[float, float]:
    """(λ_min, λ_max) of F = aᵀa/m + λI: ``eigvalsh`` of F, or of the Gram matrix a aᵀ/m when m < n (the
    same non-zero eigenvalues; the other n − m are exactly λ)."""
    m, n = a.shape
    if m < n:
        mu = torch.linalg.eigvalsh(a @ a.T / m)
        return damping, float(mu[-1]) + damping
    ev = torch.linalg.eigvalsh(F)
    return float(ev[0]), float(ev[-1])


def _tile_plan(
    F: torch.Tensor, profile: Any, cells: int, tiles: int | None, damping: float
) -> dict[str, Any]:
    """The chip wall time (τ) of a block-diagonal covariance readout of F on ``tiles`` tiles of ``cells``:
    F scaled as :class:`~thermotrain.training.AnalogSolver` scales it, each round of up to ``tiles`` blocks
    planned as :func:`thermotrain.models.tiled_inverse` plans it (its slowest block)."""
    from thermotrain.models._tiles import _round_plan, _rounds, tile_blocks

    s = 1.0 / float(F.abs().sum(dim=1).max())
    blocks = tile_blocks(F.shape[0], cells)
    D = [(F[b, b] * s).to(torch.float32) for b in blocks]
    cfg = _readout(profile).with_(mode="covariance")
    rounds = _rounds(len(blocks), tiles)
    per_round = [_round_plan([D[i] for i in r], profile, cfg, damping * s)[0] for r in rounds]
    worst = max(
        float(torch.linalg.cond(F[b, b])) for b in blocks
    )  # κ of the worst diagonal block (each ≤ 64 cells: cheap)
    return {
        "blocks": len(blocks),
        "rounds": len(rounds),
        "wall_time_tau": sum(p.t for p in per_round),
        "round_time_tau_max": max(p.t for p in per_round),
        "predicted_error_max": max(p.predicted_error for p in per_round),
        "capped": any(p.capped for p in per_round),
        "block_condition_max": worst,
    }


def measure_width(
    n: int, x: torch.Tensor, profile: Any, damping: float, repeats: int = REPEATS
) -> dict[str, Any]:
    """One row of the sweep at width ``n`` (module docstring): κ, digital times, modelled analog times."""
    from thermotrain.training._solvers import AnalogSolver

    F, a = factor(x, n, damping)
    lo, hi = spectrum_ends(F, a, damping)
    F32 = F.to(torch.float32)
    chip = profile.chip
    cells = chip.cells_per_tile if chip is not None else TILE_DEFAULT
    tiles = chip.tiles if chip is not None else None
    blocks = [slice(i, min(i + cells, n)) for i in range(0, n, cells)]
    with one_thread():
        lu = time_median(lambda: torch.linalg.inv(F32), repeats)
        chol = time_median(lambda: torch.cholesky_inverse(torch.linalg.cholesky(F32)), repeats)
        block = time_median(
            lambda: [torch.cholesky_inverse(torch.linalg.cholesky(F32[b, b])) for b in blocks], repeats
        )
    solver = AnalogSolver(profile, _readout(profile), mapping="monolithic")
    plan = solver.plan(F32, floor=damping)
    tile = _tile_plan(F, profile, cells, tiles, damping)
    tau = float(profile.tau_s)
    mono_tau = float(plan.t)
    row = {
        "n": n,
        "examples": int(a.shape[0]),
        "damping": damping,
        "lambda_min": lo,
        "lambda_max": hi,
        "condition_number": hi / lo,
        "digital_inv_lu_s": lu["median_s"],
        "digital_inv_lu_range_s": [lu["min_s"], lu["max_s"]],
        "digital_inv_cholesky_s": chol["median_s"],
        "digital_inv_cholesky_range_s": [chol["min_s"], chol["max_s"]],
        "digital_blockdiag_cholesky_s": block["median_s"],
        "analog_monolithic_tau": mono_tau,
        "analog_monolithic_predicted_error": plan.predicted_error,
        "analog_monolithic_capped": bool(plan.capped),
        "analog_monolithic_s_profile_tau": mono_tau * tau,
        "analog_monolithic_s_paper_tau": mono_tau * PAPER_TAU_S,
        "tiles_cells": cells,
        "tiles_on_chip": tiles,
        "tiles_blocks": tile["blocks"],
        "tiles_rounds": tile["rounds"],
        "analog_tiles_tau": tile["wall_time_tau"],
        "analog_tiles_predicted_error_max": tile["predicted_error_max"],
        "analog_tiles_capped": tile["capped"],
        "tile_block_condition_max": tile["block_condition_max"],
        "analog_tiles_s_profile_tau": tile["wall_time_tau"] * tau,
        "analog_tiles_s_paper_tau": tile["wall_time_tau"] * PAPER_TAU_S,
    }
    chol_s = row["digital_inv_cholesky_s"]
    for key in ("monolithic", "tiles"):
        for t in ("profile_tau", "paper_tau"):
            row[f"digital_over_analog_{key}_{t}"] = chol_s / row[f"analog_{key}_s_{t}"]
    row["digital_blockdiag_over_analog_tiles_paper_tau"] = (
        row["digital_blockdiag_cholesky_s"] / row["analog_tiles_s_paper_tau"]
    )
    return row


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log y against log x (the exponent p of y ∝ x^p)."""
    lx = [math.log(v) for v in xs]
    ly = [math.log(v) for v in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def run_width(
    out: Path, profile: Any, widths: Sequence[int] = WIDTHS, examples: int = EXAMPLES, repeats: int = REPEATS
) -> dict[str, Any]:
    """Run the sweep into ``out``: ``width.json``, ``results.json`` (one row per n), ``width.png``; return the
    payload. ``profile``: the hardware profile (τ, readout target error, chip)."""
    from thermotrain.training._config import DEFAULT_DAMPING
    from thermotrain.training._data import load_dataset

    damping = DEFAULT_DAMPING["kfac"]
    x = load_dataset("fashion-mnist", examples).x_train
    rows = []
    for n in widths:
        row = measure_width(n, x, profile, damping, repeats)
        rows.append(row)
        print(json.dumps({k: row[k] for k in _TABLE_KEYS}, default=str), flush=True)
    ns = [r["n"] for r in rows]
    slopes = (
        {
            key: loglog_slope(ns, [r[key] for r in rows])
            for key in (
                "condition_number",
                "digital_inv_lu_s",
                "digital_inv_cholesky_s",
                "analog_monolithic_tau",
                "analog_tiles_tau",
                "digital_over_analog_monolithic_paper_tau",
                "digital_over_analog_tiles_paper_tau",
            )
        }
        if len(rows) >= 2
        else {}
    )
    verdict = _verdict(rows, slopes)
    extra = {
        "profile": profile.name,
        "tau_s": float(profile.tau_s),
        "paper_tau_s": PAPER_TAU_S,
        "target_error": _target(profile),
        "data": f"Fashion-MNIST, {examples} training images through Linear(784, n) + ReLU (default init, seed 0); "
        f"factor F = aᵀa/m + λI, λ = {damping:g}",
        "timing": f"1 thread, float32, median of {repeats}",
        "analog_time": "covariance readout planned at the target error (AnalogSolver.plan / tiled_inverse's round "
        "plan); analog time only, no I/O",
        "loglog_slopes": slopes,
        "verdict": verdict,
    }
    write_results(
        out,
        "width",
        None,
        [r | {"label": f"n={r['n']}", "selected_on": None, "seeds": []} for r in rows],
        note="measured (digital times, condition numbers) and modelled (analog times): nothing is trained, "
        "tuned or seeded",
        **extra,
    )
    payload = {
        "experiment": "width",
        **extra,
        "table": [{k: r[k] for k in _TABLE_KEYS} for r in rows],
        "rows": rows,
    }
    from thermotrain._safeio import write_text_atomic

    write_text_atomic(out / "width.json", dumps(payload))
    _plot(rows, out / "width.png", profile)
    print(json.dumps({"verdict": verdict, "loglog_slopes": slopes}), flush=True)
    return payload


_TABLE_KEYS = (
    "n",
    "condition_number",
    "tile_block_condition_max",
    "digital_inv_cholesky_s",
    "digital_inv_lu_s",
    "digital_blockdiag_cholesky_s",
    "analog_monolithic_tau",
    "analog_monolithic_s_profile_tau",
    "analog_monolithic_s_paper_tau",
    "tiles_rounds",
    "analog_tiles_tau",
    "analog_tiles_s_profile_tau",
    "analog_tiles_s_paper_tau",
)


def _readout(profile: Any) -> Any:
    """The profile's recommended readout with the auto analog time uncapped (:data:`UNCAPPED` τ), so every
    time is the one that reaches the target error."""
    from thermotrain.models import ReadoutConfig
    from thermotrain.models._linalg import recommended_readout

    return (recommended_readout(profile) or ReadoutConfig()).with_(max_analog_time=UNCAPPED)


def _target(profile: Any) -> float:
    from thermotrain.models import ReadoutConfig
    from thermotrain.models._linalg import plan_context, recommended_readout

    return plan_context(profile, (recommended_readout(profile) or ReadoutConfig()))[2]


def _verdict(rows: Sequence[dict[str, Any]], slopes: dict[str, float]) -> str:
    """One sentence on "advantage grows with n": the digital/analog ratio's trend (log-log slope) and where
    analog is faster than digital, per mapping and τ."""
    parts = []
    for key, what in (("monolithic", "one monolithic device"), ("tiles", "64-cell tiles")):
        for t, tau in (("profile_tau", "profile τ"), ("paper_tau", "τ = 1 µs")):
            ratios = [r[f"digital_over_analog_{key}_{t}"] for r in rows]
            faster = [r["n"] for r, q in zip(rows, ratios, strict=True) if q > 1]
            slope = loglog_slope([r["n"] for r in rows], ratios) if len(rows) >= 2 else math.nan
            parts.append(
                f"{what} at {tau}: digital/analog {ratios[0]:.3g} (n={rows[0]['n']}) → {ratios[-1]:.3g} "
                f"(n={rows[-1]['n']}), slope {slope:+.2f}; analog faster at n ∈ {faster or 'none'}"
            )
    return "; ".join(parts)


def _plot(rows: Sequence[dict[str, Any]], path: Path, profile: Any) -> None:
    """Log-log: digital inverse times (measured) and modelled analog times (both τ, both mappings) against n;
    a second panel with the condition numbers."""
    from matplotlib import ticker

    from thermotrain._report import pyplot

    plt = pyplot()
    ns = [r["n"] for r in rows]
    tau = f"{profile.tau_s * 1e6:g} µs"
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    series = (
        ("digital_inv_cholesky_s", "digital Cholesky inverse (measured, 1 thread)", "k", "-", "o"),
        ("digital_inv_lu_s", "digital LU inverse (measured, 1 thread)", "0.4", "--", "s"),
        ("digital_blockdiag_cholesky_s", "digital 64-block inverse (measured)", "0.6", ":", "x"),
        ("analog_monolithic_s_profile_tau", f"analog monolithic, τ = {tau}", "C0", "-", "^"),
        ("analog_monolithic_s_paper_tau", "analog monolithic, τ = 1 µs", "C0", "--", "v"),
        ("analog_tiles_s_profile_tau", f"analog 64-cell tiles, τ = {tau}", "C1", "-", "D"),
        ("analog_tiles_s_paper_tau", "analog 64-cell tiles, τ = 1 µs", "C1", "--", "P"),
    )
    for key, label, color, ls, marker in series:
        ax.plot(ns, [r[key] for r in rows], color=color, ls=ls, marker=marker, ms=4, label=label)
    ax.set(xscale="log", yscale="log", xlabel="factor width n", ylabel="time per factor inverse (s)")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.grid(which="both", lw=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    ax2.plot(ns, [r["condition_number"] for r in rows], "o-", color="k", label="whole factor")
    ax2.plot(
        ns, [r["tile_block_condition_max"] for r in rows], "s--", color="C1", label="worst 64-cell block"
    )
    ax2.set(xscale="log", yscale="log", xlabel="factor width n", ylabel="condition number κ (measured)")
    ax2.set_xticks(ns, [str(n) for n in ns])
    ax2.xaxis.set_minor_locator(ticker.NullLocator())
    ax2.grid(which="both", lw=0.3)
    ax2.legend(fontsize=7)
    fig.suptitle(
        f"K-FAC factor inverse vs width ({profile.name}, target error {_target(profile):g}; "
        "analog time only, no I/O)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
