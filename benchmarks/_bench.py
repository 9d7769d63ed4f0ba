"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``: this folder is on sys.path)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(the shortest of ``repeats`` wall-clock timings of ``fn()`` in s, the last result)."""
    best, out = math.inf, None
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def spd_geometric(n: int, lam_min: float, seed: int) -> torch.Tensor:
    """A dense SPD float64 matrix with eigenvalues spread geometrically over [lam_min, 1] (a random
    orthogonal basis: every entry coupled), symmetric to the last bit."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.logspace(math.log10(lam_min), 0.0, n, dtype=torch.float64)
    A = (U * lam) @ U.T
    return 0.5 * (A + A.T)
