"""How a device is read out: one frozen :class:`ReadoutConfig`, and the analog time chosen per matrix.

Two readouts of the device dx = -(A x - b) dt + sqrt(2 κ0) dW (time in τ, A scaled so λ_max(A) ≤ 1):

- **covariance** (``inverse``; b = 0): the device starts at x = 0, runs a burn-in, then x is sampled every
  Δ = ``sample_interval`` for a window W; Σ̂ = (1/S) Σ x_k x_kᵀ / κ0 estimates A⁻¹. In the eigenbasis of A the
  modes decouple; the sample variance of mode i has relative variance (Isserlis, an AR(1) sampled series)

      ε_i² = 2 (1 + φ_i²) / ((1 - φ_i²) S),      φ_i = e^{-λ_i Δ},  S = W/Δ + 1 samples

  → 2/(λ_i W) for λ_i Δ ≪ 1. The slowest mode (λ_min) is the worst; its burn-in bias is e^{-2 λ_min b}.
- **average** (``solve``): the time average of x over [b, b + W] estimates A⁻¹b. Mode i's start-up bias is
  (x0 - x*)_i e^{-λ_i b}(1 - e^{-λ_i W})/(λ_i W) and its noise variance 2κ0/(λ_i² W); relative to
  x*_i = b_i/λ_i the noise is sqrt(2κ0/W)/|b_i| whatever λ_i, so the noise term sets W through ‖b‖ and the
  bias term through λ_min.

``analog_time="auto"`` (the default) picks, per loaded matrix, the shortest burn-in and window for which the
slowest mode's predicted relative error is at most ``target_error``, from an estimate of λ_min(A) that costs
what a device controller could afford: ``lanczos_steps`` matrix-vector products (O(k n²) digital flops,
against O(n³) for the inverse it replaces). Lanczos' smallest Ritz value approaches λ_min from above, so it
is corrected downwards by its residual (λ_min ≥ θ - ‖r‖ holds for the eigenvalue nearest θ) and never below
``lambda_floor`` (e.g. the damping, which bounds λ_min of a damped factor from below). The time used is
reported per call, so the cost stays honest; a fixed number of τ still works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import torch
from torch import Tensor

from thermotrain._args import check_float, check_int
from thermotrain._errors import InputError

__all__ = [
    "ReadoutConfig",
    "ReadoutPlan",
    "covariance_error",
    "covariance_readout_error",
    "covariance_times",
    "average_times",
    "extreme_eigenvalues",
    "plan_readout",
]

Mode = Literal["covariance", "average"]

#: The relative error that ``analog_time="auto"`` aims at when neither the config nor the profile names one.
#: Chosen on validation splits (docs/results.md, "readout error"): thermodynamic K-FAC on the rc8 profile,
#: digits 3 epochs x 8 seeds: 0.1 gave a gap to digital K-FAC of -0.35 ± 0.31 points (worst -0.7), 0.3 the
#: same mean with twice the spread (worst -1.4), 0.5 -2.0 points; Fashion-MNIST 1 epoch: 0.1 and 0.3 both
#: within 0.3 points.
DEFAULT_TARGET_ERROR = 0.1


@dataclass(frozen=True)
class ReadoutConfig:
    """Every setting of a device readout, in one immutable object (change one with ``dataclasses.replace``).

    Attributes:
        mode: ``"covariance"`` (inverse: sample covariance / κ0) or ``"average"`` (solve: time average).
        analog_time: total device time per call, burn-in included (τ), or ``"auto"``: chosen per matrix to
            reach ``target_error`` (see the module docstring).
        target_error: relative error of the slowest mode that ``"auto"`` aims at (dimensionless); ``None`` =
            the profile's recommendation, else ``DEFAULT_TARGET_ERROR``.
        sample_interval: covariance sampling interval Δ (τ); ``None`` = 1 τ, or a profile's ADC interval if
            that is longer.
        burn_in: time discarded before sampling/averaging (τ); ``"auto"`` = the time that brings the slowest
            mode's start-up bias to a quarter of ``target_error`` (with a fixed ``analog_time``: a tenth of it).
        kappa0: noise level κ0 (dimensionless, relative to full scale); ``None`` = a profile's own κ0, 1e-2 on
            the ideal device (covariance) or 0 (average).
        rounding, roundings: a profile's DAC rounding (``"nearest"``/``"stochastic"``) and the number of
            independent loads averaged per call (each a full run).
        max_analog_time: the most τ ``"auto"`` may choose per call; beyond it the call runs this long and the
            predicted error says what was reached.
        lanczos_steps: matrix-vector products spent estimating λ_min for ``"auto"``.
    """

    mode: Mode = "covariance"
    analog_time: float | Literal["auto"] = "auto"
    target_error: float | None = None
    sample_interval: float | None = None
    burn_in: float | Literal["auto"] = "auto"
    kappa0: float | None = None
    rounding: Literal["nearest", "stochastic"] = "nearest"
    roundings: int = 1
    max_analog_time: float = 1e6
    lanczos_steps: int = 32

    def __post_init__(self) -> None:
        if self.mode not in ("covariance", "average"):
            raise InputError(f"ReadoutConfig.mode={self.mode!r} must be 'covariance' or 'average'.")
        if self.analog_time != "auto":
            check_float(
                "ReadoutConfig.analog_time", self.analog_time, minimum=0.0, strict_min=True, unit="tau"
            )
        if self.target_error is not None:
            check_float(
                "ReadoutConfig.target_error", self.target_error, minimum=0.0, strict_min=True, maximum=10.0
            )
        if self.sample_interval is not None:
            check_float(
                "ReadoutConfig.sample_interval",
                self.sample_interval,
                minimum=0.0,
                strict_min=True,
                unit="tau",
            )
        if self.burn_in != "auto":
            check_float("ReadoutConfig.burn_in", self.burn_in, minimum=0.0, unit="tau")
            if self.analog_time != "auto" and self.burn_in >= self.analog_time:
                raise InputError(
                    f"ReadoutConfig.burn_in={self.burn_in!r} tau must be shorter than analog_time="
                    f"{self.analog_time!r} tau."
                )
        if self.kappa0 is not None:
            check_float("ReadoutConfig.kappa0", self.kappa0, minimum=0.0)
            if self.mode == "covariance" and self.kappa0 == 0:
                raise InputError("ReadoutConfig.kappa0=0: the covariance readout needs noise (e.g. 1e-2).")
        if self.rounding not in ("nearest", "stochastic"):
            raise InputError(f"ReadoutConfig.rounding={self.rounding!r} must be 'nearest' or 'stochastic'.")
        check_int("ReadoutConfig.roundings", self.roundings, minimum=1)
        check_float("ReadoutConfig.max_analog_time", self.max_analog_time, minimum=0.0, strict_min=True)
        check_int("ReadoutConfig.lanczos_steps", self.lanczos_steps, minimum=2, maximum=1000)

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str = "readout") -> ReadoutConfig:
        """Build from a JSON object (a profile's ``readout``); unknown keys are refused."""
        if not isinstance(data, dict):
            raise InputError(
                f"{what} must be a JSON object of ReadoutConfig fields; got {type(data).__name__}."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{what}: unknown field(s) {unknown}; known: {sorted(known)}.")
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_(self, **changes: Any) -> ReadoutConfig:
        """A copy with ``changes`` (``None`` values are ignored, so optional CLI flags pass straight in)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class ReadoutPlan:
    """What one device call will do: total analog time t and burn-in (τ), sample interval Δ (τ), κ0, the
    λ_min estimate it was planned from (``nan`` when the time was fixed), and the predicted relative error of
    the slowest mode (``nan`` when λ_min was not estimated)."""

    t: float
    burn_in: float
    dt: float
    kappa0: float
    lambda_min: float = math.nan
    predicted_error: float = math.nan
    capped: bool = False
    notes: tuple[str, ...] = field(default=(), compare=False)


# ------------------------------------------------------------------------------------------- the laws
def covariance_error(lam: float, dt: float, samples: int) -> float:
    """Relative standard deviation of the sample variance of one mode of rate ``lam`` (1/τ), sampled every
    ``dt`` (τ) in stationarity, over ``samples`` samples: sqrt(2 (1 + φ²) / ((1 - φ²) S)), φ = e^{-λΔ}."""
    phi2 = math.exp(-2.0 * lam * dt)
    return math.sqrt(2.0 * (1.0 + phi2) / (-math.expm1(-2.0 * lam * dt) * max(samples, 1)))


def covariance_times(
    lam_min: float,
    n: int,
    eps: float,
    dt: float | None = None,
    min_dt: float = 0.0,
    lam_max: float = 1.0,
) -> tuple[float, float, float, float]:
    """(burn-in, window, Δ, predicted error) in τ for the covariance readout of an n-cell device whose rates
    lie in [``lam_min``, ``lam_max``] (1/τ), aiming at relative error ``eps``. Two laws must both hold:

    - the slowest mode's variance: ``covariance_error(λ_min, Δ, S) ≤ ε``;
    - the whole matrix: the whitened error M^{1/2} Σ̂ M^{1/2}/κ0 - I of S samples has relative Frobenius
      norm sqrt((n + 1)/S) when the samples are independent (Wishart). Samples closer than the modes'
      relaxation time are not: a pair of modes (i, j) counts S (1 - φ_i φ_j)/(1 + φ_i φ_j) samples. So Δ is
      never shorter than 1/λ_max (the fastest modes decorrelate between samples; their factor is then
      ≤ (1 + e⁻²)/(1 - e⁻²) = 1.31, which the predicted error includes) and S ≥ (n + 1)/ε² · that factor.
      Modes slower than 1/Δ are covered by the slowest mode's law (per mode), not by the whole-matrix one.

    With ``dt=None`` the interval is the longest of 1/λ_max, 2/(λ_min (n + 1)) (which balances the two laws:
    the fewest samples for the window the slowest mode needs) and ``min_dt`` (the ADC). The burn-in brings
    the slowest mode's variance bias e^{-2 λ b} to ε/4 from a start at x = 0."""
    if dt is None:
        dt = max(min_dt, 2.0 / (lam_min * (n + 1)), 1.0 / max(lam_max, lam_min))
    phi2 = math.exp(-2.0 * lam_min * dt)
    s_slow = math.ceil(2.0 * (1.0 + phi2) / (-math.expm1(-2.0 * lam_min * dt) * eps * eps))
    s_all = math.ceil((n + 1) * _pair_factor(lam_max, dt) / (eps * eps))
    samples = max(s_slow, s_all, 2)
    burn = math.log(4.0 / eps) / (2.0 * lam_min)
    return burn, (samples - 1) * dt, dt, covariance_readout_error(lam_min, n, dt, samples, lam_max)


def _pair_factor(lam: float, dt: float) -> float:
    """(1 + φ²)/(1 - φ²), φ = e^{-λΔ}: how many correlated samples count as one for modes of rate λ."""
    return (1.0 + math.exp(-2.0 * lam * dt)) / -math.expm1(-2.0 * lam * dt)


def covariance_readout_error(
    lam_min: float, n: int, dt: float, samples: int, lam_max: float | None = None
) -> float:
    """The predicted relative error of a covariance readout: the larger of the slowest mode's
    (``covariance_error``) and the whole matrix's sqrt((n + 1)/S) (times the fastest modes' correlation
    factor when ``lam_max`` is given; see :func:`covariance_times`)."""
    factor = 1.0 if lam_max is None else _pair_factor(lam_max, dt)
    return max(covariance_error(lam_min, dt, samples), math.sqrt((n + 1) * factor / max(samples, 1)))


def average_times(lam_min: float, eps: float, kappa0: float, b_rms: float) -> tuple[float, float]:
    """(burn-in, window) in τ for the time-average readout: burn-in b with e^{-λ b} ≤ ε/2 (start-up bias
    of the slowest mode, from a start ‖x0 - x*‖ ~ ‖x*‖), window W ≥ 2/λ_min (the averaged transient decays)
    and W ≥ 8 κ0 / (ε² b_rms²) (noise ≤ ε/2 for an input of rms entry ``b_rms`` in full-scale units)."""
    burn = math.log(2.0 / eps) / lam_min
    noise = 8.0 * kappa0 / (eps * eps * max(b_rms, 1e-12) ** 2) if kappa0 > 0 else 0.0
    return burn, max(2.0 / lam_min, noise)


def exact_eigenvalues_up_to(steps: int) -> int:
    """The largest matrix whose extreme eigenvalues the planner computes exactly instead of by ``steps``
    Lanczos steps: 4 · steps (for n ≤ 4·steps a dense symmetric eigensolve, ≈ (4/3)n³ flops, costs at most
    about what the Lanczos costs, ≈ 2·steps·n² for the products plus 4·n·steps² to reorthogonalise, and it
    has no per-step overhead: 32-step Lanczos on the 64-cell tiles of one K-FAC factor was 5 ms, their
    eigensolve well under 1 ms)."""
    return 4 * steps


def extreme_eigenvalues(
    A: Tensor, steps: int = 32, *, generator: torch.Generator | None = None
) -> tuple[float, float, float]:
    """(λ_min lower estimate, λ_min Ritz value, λ_max Ritz value) of symmetric ``A`` from ``steps`` Lanczos
    steps with full reorthogonalisation. The lower estimate is the smallest Ritz value minus its residual norm,
    floored at a tenth of the Ritz value. Cost O(steps · n²) + O(n · steps²). Exact (a dense eigensolve, all
    three values λ_min, λ_min, λ_max) when n ≤ :func:`exact_eigenvalues_up_to` (steps): there the ~(4/3)n³ of
    the eigensolve is no more than the Lanczos' own matrix-vector products and reorthogonalisation."""
    n = A.shape[0]
    Ad = A.detach().to(torch.float64)
    if n <= exact_eigenvalues_up_to(steps):
        lam = torch.linalg.eigvalsh(0.5 * (Ad + Ad.T))
        return float(lam[0]), float(lam[0]), float(lam[-1])
    q = torch.randn(n, generator=generator, dtype=torch.float64, device="cpu").to(Ad.device)
    Q = torch.zeros((n, steps), dtype=torch.float64, device=Ad.device)
    alpha = torch.zeros(steps, dtype=torch.float64)
    beta = torch.zeros(steps, dtype=torch.float64)
    q = q / q.norm()
    k_used = steps
    for k in range(steps):
        Q[:, k] = q
        w = Ad @ q
        alpha[k] = float(q @ w)
        w = w - Q[:, : k + 1] @ (Q[:, : k + 1].T @ w)
        w = w - Q[:, : k + 1] @ (Q[:, : k + 1].T @ w)  # twice is enough (Kahan)
        beta[k] = float(w.norm())
        if beta[k] <= 1e-12 * max(abs(float(alpha[k])), 1e-300):
            k_used = k + 1
            break
        q = w / beta[k]
    T = torch.diag(alpha[:k_used]) + torch.diag(beta[: k_used - 1], 1) + torch.diag(beta[: k_used - 1], -1)
    theta, S = torch.linalg.eigh(T)
    resid = abs(float(beta[k_used - 1] * S[-1, 0]))  # ‖A y - θ y‖ for the smallest Ritz pair
    lo = max(float(theta[0]) - resid, 0.1 * float(theta[0]))
    return lo, float(theta[0]), float(theta[-1])


def plan_readout(
    A: Tensor,
    config: ReadoutConfig,
    *,
    kappa0: float,
    min_dt: float = 0.0,
    b: Tensor | None = None,
    lambda_floor: float = 0.0,
    default_target: float = DEFAULT_TARGET_ERROR,
    generator: torch.Generator | None = None,
    eigenvalues: tuple[float, float, float] | None = None,
) -> ReadoutPlan:
    """The :class:`ReadoutPlan` of one device call on ``A`` (as loaded: λ_max ≤ 1 after scaling).

    kappa0: the noise level the device runs at; min_dt: the ADC's sample interval (τ); b: [n, k] inputs
    (average mode; in full-scale units); lambda_floor: a known lower bound of λ_min (e.g. the damping after
    scaling); default_target: the target when the config names none (a profile's recommendation);
    eigenvalues: (λ_min lower estimate, λ_min Ritz value, λ_max Ritz value) already known (e.g. the worst over
    the tiles of one round, :func:`thermotrain.models.tiled_inverse`), instead of Lanczos on ``A``.
    """
    n = A.shape[0]
    dt_fixed = config.sample_interval
    dt = dt_fixed if dt_fixed is not None else max(1.0, min_dt)
    if dt < min_dt * (1 - 1e-12):
        raise InputError(
            f"sample_interval={dt:g} tau is shorter than the device's ADC interval {min_dt:g} tau; use >= that."
        )
    if config.analog_time != "auto":
        t = float(config.analog_time)
        burn = t / 10 if config.burn_in == "auto" else float(config.burn_in)
        return ReadoutPlan(t=t, burn_in=burn, dt=dt, kappa0=kappa0)
    eps = config.target_error if config.target_error is not None else default_target
    if eigenvalues is None:
        eigenvalues = extreme_eigenvalues(A, config.lanczos_steps, generator=generator)
    lo, ritz, top = eigenvalues
    lam = max(lo, lambda_floor) if lambda_floor > 0 else lo
    if not (math.isfinite(lam) and lam > 0):
        raise InputError(f"the loaded matrix's smallest eigenvalue estimate is {ritz:.3g}; it must be > 0.")
    if config.mode == "covariance":
        burn, window, dt, predicted = covariance_times(lam, n, eps, dt_fixed, min_dt, lam_max=top)
    else:
        b_rms = float(b.pow(2).mean(dim=0).sqrt().min()) if b is not None and b.numel() else 1.0
        burn, window = average_times(lam, eps, kappa0, b_rms)
    if config.burn_in != "auto":
        burn = float(config.burn_in)
    t = burn + window
    capped = t > config.max_analog_time
    notes: tuple[str, ...] = ()
    if capped:
        scale = config.max_analog_time / t
        burn, window, t = burn * scale, window * scale, config.max_analog_time
        notes = (f"auto analog time capped at max_analog_time={config.max_analog_time:g} tau",)
    if config.mode == "covariance":
        predicted = covariance_readout_error(lam, n, dt, int(round(window / dt)) + 1, top)
    else:
        predicted = eps if not capped else math.nan
    return ReadoutPlan(
        t=t,
        burn_in=burn,
        dt=dt,
        kappa0=kappa0,
        lambda_min=lam,
        predicted_error=predicted,
        capped=capped,
        notes=notes,
    )
