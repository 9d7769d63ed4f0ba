"""The non-Gaussian stages around the linear SDE: DAC quantization of loaded values, ADC readout, offsets,
saturation, and error mitigation by randomized rounding.

Quantizer convention (symmetric, mid-tread, signed): ``bits`` b gives the 2^b - 1 levels k·Δ,
k ∈ {-L, …, L}, L = 2^{b-1} - 1, Δ = full_scale / L; zero is exact and the range is ±full_scale. Inputs
beyond the range saturate (clip) to ±full_scale. Rounding is either to the nearest level (deterministic;
error ≤ Δ/2, a fixed bias for a fixed input) or randomized (stochastic rounding: round up with probability
equal to the fractional part, so E[q(x)] = x inside the range and the error variance is p(1-p)Δ² ≤ Δ²/4).

Error mitigation (Aifer et al., arXiv 2401.16231): for an estimate f(A) computed on a quantized matrix,
deterministic rounding leaves an error f'(A)·E_det = O(ε) that no amount of sampling removes. Averaging f over
K independent randomized roundings cancels the first-order term (E[E] = 0) and leaves the second-order bias
½ f''(A)[E, E] = O(ε²) plus a variance O(ε²)/K: the ε → ε² effect (:func:`merge_over_roundings`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from thermotrain.models import _rng

__all__ = ["Quantizer", "Readout", "merge_over_roundings"]

Rounding = Literal["nearest", "stochastic"]


@dataclass(frozen=True)
class Quantizer:
    """A signed uniform b-bit quantizer over ±``full_scale`` (see the module docstring for the levels).

    Fields:
        bits: resolution b ≥ 2 (None = ideal, values pass through unchanged except for clipping).
        full_scale: the largest magnitude represented, in the quantity's unit (V, or units of the unit
            conductance for a coupling DAC); must be > 0.
    """

    bits: int | None
    full_scale: float

    def __post_init__(self) -> None:
        if self.bits is not None and not (isinstance(self.bits, int) and 2 <= self.bits <= 53):
            raise ValueError(f"Quantizer.bits = {self.bits!r} must be an int in [2, 53] or None (ideal).")
        if not (math.isfinite(self.full_scale) and self.full_scale > 0):
            raise ValueError(f"Quantizer.full_scale = {self.full_scale!r} must be a finite number > 0.")

    @property
    def levels(self) -> int | None:
        """L = 2^{b-1} - 1 positive levels (None when ideal)."""
        return None if self.bits is None else 2 ** (self.bits - 1) - 1

    @property
    def step(self) -> float:
        """Δ = full_scale / L (0 when ideal)."""
        return 0.0 if self.levels is None else self.full_scale / self.levels

    def __call__(
        self, x: Tensor, *, rounding: Rounding = "nearest", generator: torch.Generator | None = None
    ) -> Tensor:
        """Clip x to ±full_scale and round to the levels. Cost O(numel)."""
        x = x.clamp(-self.full_scale, self.full_scale)
        if self.levels is None:
            return x
        r = x / self.step
        if rounding == "nearest":
            k = torch.round(r)
        elif rounding == "stochastic":
            lo = torch.floor(r)
            up = _rng.rand(r.shape, generator=generator, dtype=r.dtype, device=r.device) < (r - lo)
            k = lo + up.to(r.dtype)
        else:
            raise ValueError(f"rounding must be 'nearest' or 'stochastic'; got {rounding!r}.")
        return k.clamp(-self.levels, self.levels) * self.step

    def quantize_symmetric(
        self, A: Tensor, *, rounding: Rounding = "nearest", generator: torch.Generator | None = None
    ) -> Tensor:
        """Quantize a symmetric matrix [..., n, n] element by element on its upper triangle and mirror it, so
        the loaded matrix stays symmetric (one physical value per coupling pair). Cost O(n²)."""
        Aq = self(A, rounding=rounding, generator=generator)
        upper = torch.triu(Aq)
        return upper + torch.triu(Aq, diagonal=1).mT

    def rounding_variance(self, x: Tensor) -> Tensor:
        """Per-element variance p(1-p)Δ² of the randomized-rounding error at x (p = fractional part of x/Δ);
        zero for ideal quantizers and for values on a level. Used for error predictions."""
        if self.levels is None:
            return torch.zeros_like(x)
        r = x.clamp(-self.full_scale, self.full_scale) / self.step
        p = r - torch.floor(r)
        return p * (1 - p) * self.step**2


@dataclass(frozen=True)
class Readout:
    """The readout chain y = ADC(clip(x + offset, ±saturation)).

    Fields:
        adc: the ADC quantizer (bits, full scale in V); None = ideal readout.
        offset: constant offset added before the ADC (V; float or per-channel tensor-compatible float).
        saturation: output swing limit (V); None = no clipping beyond the ADC's own range.
    """

    adc: Quantizer | None = None
    offset: float = 0.0
    saturation: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.offset):
            raise ValueError(f"Readout.offset = {self.offset!r} must be finite (V).")
        if self.saturation is not None and not (math.isfinite(self.saturation) and self.saturation > 0):
            raise ValueError(f"Readout.saturation = {self.saturation!r} must be > 0 (V) or None.")

    def __call__(self, x: Tensor) -> Tensor:
        y = x + self.offset
        if self.saturation is not None:
            y = y.clamp(-self.saturation, self.saturation)
        return y if self.adc is None else self.adc(y)


def merge_over_roundings(
    estimate: Callable[[Tensor], Tensor],
    A: Tensor,
    quantizer: Quantizer,
    n_roundings: int,
    *,
    generator: torch.Generator | None = None,
    symmetric: bool = True,
) -> Tensor:
    """(1/K) Σ_k estimate(q_k(A)) over K = ``n_roundings`` independent randomized roundings q_k of A.

    The first-order quantization error cancels in the mean, so the error falls from O(ε) (deterministic
    rounding, which plateaus at its bias) to O(ε²) + O(ε/√K). Cost: K quantizations and K estimates.
    """
    if not (isinstance(n_roundings, int) and n_roundings >= 1):
        raise ValueError(f"n_roundings = {n_roundings!r} must be a positive int.")
    q = quantizer.quantize_symmetric if symmetric else quantizer
    total = None
    for _ in range(n_roundings):
        e = estimate(q(A, rounding="stochastic", generator=generator))
        total = e if total is None else total + e
    return total / n_roundings
