"""Thermodynamic linear algebra: ``solve`` and ``inverse`` on an analog device, with the cost in analog time
and I/O.

The ideal device (time in units of τ):

    dx = -(A x - b) dt + sqrt(2 κ0) dW,       stationary law N(A⁻¹b, κ0 A⁻¹)

- state readout at t:  x(t) ~ N(A⁻¹b + e^{-At}(x0 - A⁻¹b), κ0 A⁻¹(I - e^{-2At}));
- time-average readout over [burn_in, t]: exact Gaussian law (mean → A⁻¹b, covariance → 2κ0 A⁻²/T);
- inverse: with b = 0, the sample covariance of x sampled every dt over the window, divided by κ0.

Backends: ``"exact"`` (digital Cholesky, zero analog time), ``"ideal"`` (the equation above, sampled exactly in
the eigenbasis of A: O(n³) set-up, O(n) per step), or a :class:`HardwareProfile` (its surrogate at the
matrix's size with all its non-idealities: scaling into range, DAC/ADC quantization, tolerances, finite gain).

I/O accounting (for the training cost model): ``values_loaded`` = n(n+1)/2 for the symmetric A plus n per
right-hand side; ``values_read`` = n per right-hand side for a solve (one readout of x(t) or of the analog
time average) and n per sample for an inverse. The exact backend loads and reads nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from thermotrain._args import check_choice, check_float, check_int
from thermotrain._errors import CircuitError, InputError
from thermotrain.models._linear_sde import (
    psd_factor,
    simulate,
    state_moments,
    stationary_covariance,
    time_average_moments,
)
from thermotrain.models._profile import HardwareProfile

__all__ = ["InverseResult", "SolveResult", "inverse", "solve"]

Backend = Literal["exact", "ideal"] | HardwareProfile


@dataclass(frozen=True)
class SolveResult:
    """x ≈ A⁻¹ b ([n] or [n, k] like b); analog time used (units of τ; columns run in parallel on k devices);
    numbers of values loaded into and read from the device."""

    x: Tensor
    analog_time_tau: float
    values_loaded: int
    values_read: int


@dataclass(frozen=True)
class InverseResult:
    """inverse ≈ A⁻¹ [n, n]; analog time (τ); numbers of values loaded and read."""

    inverse: Tensor
    analog_time_tau: float
    values_loaded: int
    values_read: int


def check_spd(A: Tensor, name: str = "A") -> Tensor:
    """Validate that A is a finite, symmetric positive definite [n, n] matrix; return its Cholesky factor.

    Raises :class:`thermotrain.CircuitError` (a ValueError) naming the smallest eigenvalue and the damping
    that would fix it. Cost O(n³) (O(n³/3) when A is SPD).
    """
    if not isinstance(A, Tensor) or A.ndim != 2 or A.shape[0] != A.shape[1] or not A.is_floating_point():
        shape = tuple(A.shape) if isinstance(A, Tensor) else type(A).__name__
        raise CircuitError(f"{name} must be a square floating-point [n, n] tensor; got {shape}.")
    if not bool(torch.isfinite(A).all()):
        raise CircuitError(f"{name} has non-finite entries (NaN/inf); check the curvature estimate upstream.")
    scale = float(A.abs().max())
    asym = float((A - A.T).abs().max())
    if asym > 100 * torch.finfo(A.dtype).eps * max(scale, 1e-300):
        raise CircuitError(
            f"{name} must be symmetric; max |{name} - {name}ᵀ| = {asym:.3g} (max |{name}| = {scale:.3g}). "
            f"Symmetrise it with ({name} + {name}.T) / 2."
        )
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        lam = float(torch.linalg.eigvalsh(A)[0])
        raise CircuitError(
            f"{name} must be symmetric positive definite; its smallest eigenvalue is {lam:.3g}. "
            f"Add damping ({name} + lam·I with lam > {max(-lam, 0.0):.3g}) or check the curvature estimate."
        )
    return L


def _as_columns(b: Tensor, n: int, A: Tensor) -> tuple[Tensor, bool]:
    if not isinstance(b, Tensor) or b.ndim not in (1, 2) or b.shape[0] != n:
        shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
        raise CircuitError(f"b must be [n] or [n, k] with n = {n}; got {shape}.")
    if not bool(torch.isfinite(b).all()):
        raise CircuitError("b has non-finite entries (NaN/inf).")
    b = b.to(dtype=A.dtype, device=A.device)
    return (b[:, None], True) if b.ndim == 1 else (b, False)


def _check_time(t: float, burn_in: float) -> None:
    t = check_float("t", t, minimum=0.0, strict_min=True, unit="τ")
    burn_in = check_float("burn_in", burn_in, minimum=0.0, unit="τ")
    if not burn_in < t:
        raise InputError(f"burn_in = {burn_in!r} must be in [0, t) with t = {t!r} (units of τ).")


def _check_rounding(backend: object, rounding: str, roundings: int) -> None:
    check_choice("rounding", rounding, ("nearest", "stochastic"))
    check_int("roundings", roundings, minimum=1)
    if (rounding != "nearest" or roundings != 1) and not isinstance(backend, HardwareProfile):
        raise InputError(
            f"rounding/roundings describe a hardware profile's DACs; backend {backend!r} quantizes nothing."
        )


def _check_backend(backend: object) -> None:
    if (isinstance(backend, str) and backend in ("exact", "ideal")) or isinstance(backend, HardwareProfile):
        return
    raise InputError(
        f"backend must be 'exact', 'ideal' or a HardwareProfile; got {backend!r}. "
        "Load a profile file with thermotrain.models.load_profile(path)."
    )


# ---------------------------------------------------------------------------------------------- ideal device
def _g_small(x: Tensor) -> Tensor:
    """g(x) = x + expm1(-x) - expm1(-x)²/2 = x³/3 - x⁴/4 + …, accurate for all x ≥ 0."""
    e1 = torch.expm1(-x)
    direct = x + e1 - 0.5 * e1 * e1
    series = x**3 * (1 / 3 - x * (1 / 4 - x * (7 / 60 - x * (1 / 24 - x * (31 / 2520 - x / 320)))))
    return torch.where(x < 1e-2, series, direct)


def _ideal_moments(
    lam: Tensor, bt: Tensor, x0t: Tensor, t: float, kappa0: float, readout: str, burn_in: float
) -> tuple[Tensor, Tensor]:
    """Per-mode mean [n, k] and variance [n, 1] of the ideal readout in the eigenbasis A = U diag(λ) Uᵀ
    (bt = Uᵀb, x0t = Uᵀx0). Modes are independent because the noise is isotropic."""
    lam = lam[:, None]
    m_inf = bt / lam
    if readout == "state":
        decay = torch.exp(-lam * t)
        return m_inf + decay * (x0t - m_inf), (kappa0 / lam) * -torch.expm1(-2 * lam * t)
    T = t - burn_in
    x = lam * T
    mean = m_inf + (x0t - m_inf) * torch.exp(-lam * burn_in) * (-torch.expm1(-x) / x)
    one_minus_a = -torch.expm1(-2 * lam * burn_in)
    e1 = torch.expm1(-x)
    var = 2 * kappa0 / (lam**3 * T**2) * (_g_small(x) + 0.5 * one_minus_a * e1 * e1)
    return mean, var


# ---------------------------------------------------------------------------------------------- public API
def solve(
    A: Tensor,
    b: Tensor,
    *,
    backend: Backend = "exact",
    t: float = 50.0,
    kappa0: float | None = None,
    x0: Tensor | None = None,
    readout: Literal["state", "average"] = "state",
    burn_in: float = 0.0,
    generator: torch.Generator | None = None,
    rounding: Literal["nearest", "stochastic"] = "nearest",
    roundings: int = 1,
) -> SolveResult:
    """x ≈ A⁻¹ b on the device dx = -(A x - b) dt + sqrt(2κ0) dW (time in τ) run for analog time t.

    Args:
        A: [n, n] symmetric positive definite (else :class:`thermotrain.CircuitError`).
        b: [n] or [n, k]; k right-hand sides run on k independent devices in parallel.
        backend: ``"exact"`` (Cholesky), ``"ideal"``, or a :class:`HardwareProfile`.
        t: total analog time (τ), burn-in included.
        kappa0: noise level. None = 0 for ``"ideal"`` and the profile's κ0 for a profile; an explicit number
            is always honoured (it replaces the profile's κ0 for this call; the profile itself is unchanged).
        x0: start state [n] or [n, k] in A's units (default 0; TNGD warm-starts here).
        readout: ``"state"`` reads x(t) (mean A⁻¹b + e^{-At}(x0 - A⁻¹b), covariance κ0A⁻¹(I - e^{-2At}));
            ``"average"`` reads the exact time average over [burn_in, t] (covariance → 2κ0A⁻²/(t - burn_in)).
        burn_in: start of the averaging window (τ); ``"average"`` only.
        generator: torch generator for the noise and stochastic rounding (on A's device).
        rounding, roundings: how a profile's DACs round the loaded A and b (``"nearest"`` or
            ``"stochastic"``), and over how many independent loads the answer is averaged (error mitigation:
            with stochastic rounding the first-order quantization error cancels, ε → ε²). Each load is a full
            device run of ``t``; the analog time reported is ``roundings·t``. Profiles only.
    Returns:
        :class:`SolveResult`. Cost: exact O(n³); ideal one eigh O(n³) + O(n²k); profile O(N³) for the
        surrogate's N states (time average: exponentials of size 4N).
    """
    _check_backend(backend)
    _check_rounding(backend, rounding, roundings)
    Lc = check_spd(A)
    n = A.shape[0]
    B, squeeze = _as_columns(b, n, A)
    k = B.shape[1]
    if readout not in ("state", "average"):
        raise InputError(f"readout must be 'state' or 'average'; got {readout!r}.")
    if backend == "exact":
        X = torch.cholesky_solve(B, Lc)
        return SolveResult(X[:, 0] if squeeze else X, 0.0, 0, 0)
    if readout == "state" and burn_in != 0.0:
        raise InputError(
            f"burn_in = {burn_in!r} applies to readout='average' only; the state readout reads x(t)."
        )
    _check_time(t, burn_in)
    if kappa0 is not None:
        kappa0 = check_float("kappa0", kappa0, minimum=0.0, unit="V^2")
    X0 = torch.zeros_like(B) if x0 is None else _as_columns(x0, n, A)[0].expand(n, k)
    loaded, read = n * (n + 1) // 2 + n * k, n * k
    if backend == "ideal":
        k0 = 0.0 if kappa0 is None else float(kappa0)
        lam, U = torch.linalg.eigh(A)
        mean, var = _ideal_moments(lam, U.T @ B, U.T @ X0, t, k0, readout, burn_in)
        if k0 > 0:
            xi = torch.randn(mean.shape, generator=generator, dtype=A.dtype, device=A.device)
            mean = mean + var.sqrt() * xi
        X = U @ mean
    else:
        X = 0.0
        for _ in range(roundings):
            inst = backend.instantiate(A, B, generator=generator, kappa0=kappa0, rounding=rounding)
            beta = inst.input_scale  # [k]
            x0_hw = (X0 * (beta / inst.matrix_scale)).T  # [k, n]
            if readout == "state":
                m, C = state_moments(inst.sde, x0_hw, t)
            else:
                m, C = time_average_moments(inst.sde, x0_hw, burn_in, t - burn_in)
            xi = torch.randn(m.shape, generator=generator, dtype=m.dtype, device=m.device)
            state = m + (xi @ psd_factor(C).mT if inst.kappa0 > 0 else 0.0)
            y = inst.readout(state @ inst.observe.T)  # [k, n] volts
            X = X + (y * (inst.matrix_scale / beta)[:, None]).T / roundings
        loaded, read, t = loaded * roundings, read * roundings, t * roundings
    return SolveResult(X[:, 0] if squeeze else X, float(t), loaded, read)


def inverse(
    A: Tensor,
    *,
    backend: Backend = "exact",
    t: float = 50.0,
    kappa0: float | None = None,
    dt: float = 0.1,
    burn_in: float | None = None,
    generator: torch.Generator | None = None,
    rounding: Literal["nearest", "stochastic"] = "nearest",
    roundings: int = 1,
) -> InverseResult:
    """A⁻¹ ≈ Ĉov(x)/κ0 from the device dx = -A x dt + sqrt(2κ0) dW (b = 0) sampled every dt.

    Args:
        A: [n, n] symmetric positive definite.
        backend: ``"exact"`` (Cholesky inverse), ``"ideal"``, or a :class:`HardwareProfile`.
        t: total analog time (τ), burn-in included.
        kappa0: noise level, must be > 0. None = 1e-2 for ``"ideal"`` and the profile's κ0 for a profile; an
            explicit number is honoured (for a profile it replaces the profile's κ0 for this call).
        dt: sample interval (τ); with a profile it may not be shorter than the ADC interval 1/(rate·τ).
        burn_in: None = the device starts in its stationary law (it has been running; samples over [0, t]).
            A number = it starts at x = 0 and the samples over [burn_in, t] are used.
        generator: torch generator for the noise.
        rounding, roundings: as in :func:`solve` (profiles only): the estimate averages ``roundings``
            independent loads, each a full run of ``t``.
    Returns:
        :class:`InverseResult`; the estimate is (1/N) Σ x_i x_iᵀ / κ0 over the N samples (known zero mean),
        symmetric by construction; relative error ~ sqrt(2·relaxation/T) for the slowest mode.
        Cost: ideal one eigh O(n³) + O(n·N) steps + O(n²N); profile O(N_s³) set-up + N steps of O(N_s²).
    """
    _check_backend(backend)
    _check_rounding(backend, rounding, roundings)
    Lc = check_spd(A)
    n = A.shape[0]
    if backend == "exact":
        return InverseResult(torch.cholesky_inverse(Lc), 0.0, 0, 0)
    _check_time(t, 0.0 if burn_in is None else burn_in)
    if kappa0 is None:
        kappa0 = 1e-2 if backend == "ideal" else backend.kappa0
    kappa0 = check_float("kappa0", kappa0, minimum=0.0, strict_min=True, unit="V^2")
    dt = check_float("dt", dt, minimum=0.0, strict_min=True, unit="τ")
    start = 0.0 if burn_in is None else float(burn_in)
    n_steps = int(math.floor((t - start) / dt + 1e-9))
    if n_steps < 1:
        raise InputError(f"The sampling window t - burn_in = {t - start:g} τ holds no step of dt = {dt:g} τ.")
    loaded, read = n * (n + 1) // 2, n * (n_steps + 1)
    if backend == "ideal":
        lam, U = torch.linalg.eigh(A)
        var_inf = kappa0 / lam
        if burn_in is None:
            z = var_inf.sqrt() * torch.randn(n, generator=generator, dtype=A.dtype, device=A.device)
        else:
            z = (var_inf * -torch.expm1(-2 * lam * start)).sqrt() * torch.randn(
                n, generator=generator, dtype=A.dtype, device=A.device
            )
        phi = torch.exp(-lam * dt)
        sd = (var_inf * -torch.expm1(-2 * lam * dt)).sqrt()
        xi = torch.randn((n_steps, n), generator=generator, dtype=A.dtype, device=A.device) * sd
        Z = torch.empty((n_steps + 1, n), dtype=A.dtype, device=A.device)
        Z[0] = z
        for i in range(n_steps):
            z = phi * z + xi[i]
            Z[i + 1] = z
        cov = U @ ((Z.T @ Z) / (n_steps + 1)) @ U.T
        inv = cov / kappa0
    else:
        if dt < backend.sample_interval_tau * (1 - 1e-12):
            raise InputError(
                f"dt = {dt:g} τ is shorter than the profile's ADC sample interval "
                f"{backend.sample_interval_tau:g} τ (adc_rate_hz = {backend.adc_rate_hz:g}); use dt >= that."
            )
        inv = 0.0
        for _ in range(roundings):
            inst = backend.instantiate(A, generator=generator, kappa0=kappa0, rounding=rounding)
            sde = inst.sde
            if burn_in is None:
                P = stationary_covariance(sde.M, sde.D)
                x0 = sde.stationary_mean() + psd_factor(P) @ torch.randn(
                    sde.n, generator=generator, dtype=sde.dtype, device=sde.device
                )
                X = simulate(sde, x0, dt, n_steps, generator=generator)[0]  # [N+1, state]
            else:
                n_burn = round(start / dt)
                if abs(n_burn * dt - start) <= 1e-9 * max(start, dt):
                    # burn-in on the same grid: one transition serves both (exact; n_burn more matvecs)
                    X = simulate(sde, None, dt, n_burn + n_steps, generator=generator)[0, n_burn:]
                else:
                    x0 = simulate(sde, None, start, 1, generator=generator)[0, -1] if start > 0 else None
                    X = simulate(sde, x0, dt, n_steps, generator=generator)[0]
            Y = inst.readout(X @ inst.observe.T)
            inv = inv + inst.matrix_scale * ((Y.T @ Y) / (n_steps + 1)) / inst.kappa0 / roundings
        loaded, read, t = loaded * roundings, read * roundings, t * roundings
    return InverseResult(0.5 * (inv + inv.T), float(t), loaded, read)
