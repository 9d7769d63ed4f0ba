"""Target matrices: validation, scaling into a hardware range, finite resolution, tolerance draws."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from thermotrain._errors import CircuitError
from thermotrain._safeio import check_real_dtype
from thermotrain._spd import spd_cholesky

# The most cells one array (a netlist, a SPICE validation, a calibration) may have. ngspice 39 refactors the
# dense coupling matrix at every time point (N = 64 already takes ~100 s for 20k steps), and the noise files
# grow as N x samples: beyond this size a request is a mistake or an attack, not a simulation.
MAX_CELLS = 256


def as_real_array(x: object, name: str) -> np.ndarray:
    """``x`` as a float64 array; complex, string, object and boolean data are refused (numpy would drop an
    imaginary part with only a warning, or fail with a bare ValueError)."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested sequences
        raise CircuitError(f"{name} is not a rectangular array of numbers ({exc}).") from None
    check_real_dtype(arr, name, CircuitError)
    return arr.astype(np.float64, copy=False)


def check_spd(A: np.ndarray, name: str = "A", *, rtol: float = 1e-9) -> np.ndarray:
    """Return A as a float64 array after checking it is real, square, finite, symmetric and positive
    definite."""
    A = as_real_array(A, name)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise CircuitError(f"{name} must be a non-empty square matrix; got shape {A.shape}.")
    if not np.all(np.isfinite(A)):
        bad = np.argwhere(~np.isfinite(A))[0]
        raise CircuitError(
            f"{name}[{bad[0]},{bad[1]}] = {A[tuple(bad)]!r} is not finite; the matrix must be finite."
        )
    asym = np.abs(A - A.T).max()
    if asym > rtol * max(np.abs(A).max(), 1e-300):
        raise CircuitError(
            f"{name} must be symmetric (max |A - A^T| = {asym:.3g}); pass (A + A.T)/2 if the asymmetry is roundoff."
        )
    A = 0.5 * (A + A.T)
    spd_cholesky(A, name)  # one Cholesky; the smallest eigenvalue and the damping that fixes it otherwise
    return A


def check_vector(b: np.ndarray | None, n: int, name: str = "b") -> np.ndarray:
    if b is None:
        return np.zeros(n)
    b = as_real_array(b, name).reshape(-1)
    if b.shape != (n,):
        raise CircuitError(f"{name} must have length {n} to match A; got shape {b.shape}.")
    if not np.all(np.isfinite(b)):
        raise CircuitError(f"{name} holds non-finite values at {np.nonzero(~np.isfinite(b))[0].tolist()}.")
    return b


def quantize_entries(
    values: np.ndarray, *, bits: int | None = None, bank: tuple[float, ...] | None = None, full_scale: float
) -> np.ndarray:
    """Round |values| to what a finite-resolution coupling can hold; signs kept.

    bits: multiples of full_scale / (2^bits - 1).  bank: nearest subset sum of ``bank`` * full_scale.
    """
    if bits is None and bank is None:
        return np.asarray(values, dtype=float).copy()
    mag, sign = np.abs(values), np.sign(values)
    if bits is not None:
        step = full_scale / (2**bits - 1)
        return sign * np.round(mag / step) * step
    sums = (
        np.array(
            sorted({0.0} | {sum(c) for r in range(1, len(bank) + 1) for c in itertools.combinations(bank, r)})
        )
        * full_scale
    )
    idx = np.abs(mag[..., None] - sums).argmin(axis=-1)
    return sign * sums[idx]


def tolerance_factors(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Multiplicative factors 1 + sigma * z, z ~ N(0,1) clipped at +-3 (so parts stay positive)."""
    if sigma == 0:
        return np.ones(n)
    return 1.0 + sigma * np.clip(rng.standard_normal(n), -3.0, 3.0)


@dataclass(frozen=True)
class Scaling:
    """How results map back to the user's units.

    A = matrix_scale * A_dev (A_dev: the dimensionless matrix the hardware holds, max entry 1);
    node voltage V = voltage_scale * x for the solve A x = b (RC family);
    covariance of x = kappa0_x * A^{-1} with kappa0_x = kappa0 * matrix_scale / voltage_scale**2;
    time_constant tau (s): the drift is -A_dev / tau.
    """

    matrix_scale: float
    voltage_scale: float
    time_constant: float
    kappa0: float  # V^2: stationary node covariance = kappa0 * A_dev^{-1} (ideal array)

    @property
    def kappa0_x(self) -> float:
        v = self.voltage_scale  # divided twice, not squared: v**2 leaves float64 for |log10 v| > 154
        return (self.kappa0 / v) * (self.matrix_scale / v)


# Realistic component ranges (stated in docs/physics.md); values outside raise CircuitError.
RANGES = {
    "ohms": (1.0, 1e8),
    "farads": (1e-13, 1e-3),
    "henries": (1e-9, 10.0),
}


def check_range(kind: str, name: str, value: float, hint: str) -> float:
    lo, hi = RANGES[kind]
    if not (np.isfinite(value) and lo <= value <= hi):
        raise CircuitError(
            f"{name} = {value:.4g} {kind} is outside the realistic range [{lo:g}, {hi:g}]. {hint}"
        )
    return float(value)
