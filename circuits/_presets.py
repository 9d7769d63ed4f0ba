"""Named arrays users run without bringing a matrix: ``rc8`` and ``rlc8`` (any size via ``size``)."""

from __future__ import annotations

import dataclasses

import numpy as np

from thermotrain._errors import CircuitError
from thermotrain.circuits._arrays import ArraySpec, RCArraySpec, RLCArraySpec, _as_tuple2
from thermotrain.circuits._nonideal import NonIdealities, resolve_corner
from thermotrain.circuits._targets import MAX_CELLS

PRESETS = ("rc8", "rlc8")


def rc_target(n: int, condition: float = 8.0, seed: int = 8) -> np.ndarray:
    """Mixed-sign SPD matrix, eigenvalues log-spaced in [1, condition], random (seeded) eigenbasis."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = Q @ np.diag(np.geomspace(1.0, condition, n)) @ Q.T
    A = 0.5 * (A + A.T)
    # entries below 1e-3 max|A| would need crossbar resistors beyond the realistic range (> 1e3 R_u): drop
    # them (no part placed). The change has norm <= n * 1e-3 max|A|, far below lambda_min = 1 for n <= 256
    # (max|A| <= condition), so A stays SPD with nearly the same spectrum.
    A[np.abs(A) < 1e-3 * np.abs(A).max()] = 0.0
    return A


def rlc_target(n: int, seed: int = 8) -> np.ndarray:
    """Diagonally dominant Z-matrix (a passive Maxwell capacitance pattern): all-to-all couplings
    w_ij in [0.2, 1] (seeded) and a margin of 1-2 on each row sum."""
    rng = np.random.default_rng(seed)
    W = rng.uniform(0.2, 1.0, (n, n))
    W = np.triu(W, 1)
    W = W + W.T
    margin = rng.uniform(1.0, 2.0, n) * max(1.0, n / 8)
    return np.diag(W.sum(axis=1) + margin) - W


def preset(
    name: str, *, size: int | None = None, corner: str = "ideal", nonideal: NonIdealities | None = None, **kw
) -> ArraySpec:
    """``rc8`` (RC integrators, kappa = 8, mixed signs, b = 1..) or ``rlc8`` (resonators, passive pattern).
    ``size`` changes N with the same recipe; ``corner`` picks a named non-ideality set
    (``ideal``, ``board``, ``integrated``) or a corner JSON file (``*.json``, :func:`load_corner`) unless
    ``nonideal`` is given."""
    if name not in PRESETS:
        raise CircuitError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    if size is None:
        n = 8
    elif isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise CircuitError(f"size = {size!r} must be a whole number of cells, not {type(size).__name__}.")
    else:
        n = int(size)
    if not (1 <= n <= MAX_CELLS):
        raise CircuitError(f"size = {n} cells must be in [1, {MAX_CELLS}].")
    if nonideal is None:
        nonideal = resolve_corner(corner)
    if name == "rc8":
        A = rc_target(n)
        b = np.cos(np.arange(n) + 0.5)
        return RCArraySpec(matrix=_as_tuple2(A), b=tuple(b), nonideal=nonideal, **kw)
    return RLCArraySpec(matrix=_as_tuple2(rlc_target(n)), nonideal=nonideal, **kw)


def with_nonideal(spec: ArraySpec, nonideal: NonIdealities) -> ArraySpec:
    return dataclasses.replace(spec, nonideal=nonideal)
