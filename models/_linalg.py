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
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor

from thermotrain._args import check_choice, check_float, check_int
from thermotrain._errors import CircuitError, InputError
from thermotrain.models import _rng
from thermotrain.models._fast_readout import readout_law_args, sample_covariance_readout
from thermotrain.models._linear_sde import (
    psd_factor,
    simulate,
    state_moments,
    stationary_covariance,
    time_average_moments,
)
from thermotrain.models._profile import HardwareProfile
from thermotrain.models._readout import DEFAULT_TARGET_ERROR, ReadoutConfig, ReadoutPlan, plan_readout

__all__ = ["InverseResult", "SolveResult", "inverse", "recommended_readout", "solve"]

Backend = Literal["exact", "ideal"] | HardwareProfile


@dataclass(frozen=True)
class SolveResult:
    """x ≈ A⁻¹ b ([n] or [n, k] like b); analog time used (units of τ; columns run in parallel on k devices);
    numbers of values loaded into and read from the device; the :class:`ReadoutPlan` the device ran (``None``
    for the exact backend)."""

    x: Tensor
    analog_time_tau: float
    values_loaded: int
    values_read: int
    plan: ReadoutPlan | None = None


@dataclass(frozen=True)
class InverseResult:
    """inverse ≈ A⁻¹ [n, n]; analog time (τ); numbers of values loaded and read; the :class:`ReadoutPlan`
    the device ran (``None`` for the exact backend)."""

    inverse: Tensor
    analog_time_tau: float
    values_loaded: int
    values_read: int
    plan: ReadoutPlan | None = None


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
    from thermotrain._spd import spd_cholesky

    return spd_cholesky(A, name, hint="check the curvature estimate")


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


class _Unset:
    def __repr__(self) -> str:
        return "<from the readout config>"


_UNSET: Any = _Unset()


def recommended_readout(backend: object) -> ReadoutConfig | None:
    """The readout a hardware profile recommends (its optional ``"readout"`` entry), else ``None``."""
    rec = getattr(backend, "recommended_readout", None) if isinstance(backend, HardwareProfile) else None
    return rec if isinstance(rec, ReadoutConfig) else None


def _resolve_config(
    backend: object,
    config: ReadoutConfig | None,
    mode: str,
    t: float | None,
    kappa0: float | None,
    dt: float | None,
    burn_in: Any,
    rounding: str | None,
    roundings: int | None,
) -> ReadoutConfig:
    """The call's :class:`ReadoutConfig`: ``config`` (else the profile's recommendation, else the defaults)
    with the explicit keyword arguments on top (an explicit number always wins)."""
    if config is None:
        config = recommended_readout(backend) or ReadoutConfig()
    elif not isinstance(config, ReadoutConfig):
        raise InputError(f"config must be a thermotrain.models.ReadoutConfig; got {type(config).__name__}.")
    changes: dict[str, Any] = {"mode": mode}
    for name, value in (
        ("analog_time", t),
        ("kappa0", kappa0),
        ("sample_interval", dt),
        ("rounding", rounding),
        ("roundings", roundings),
    ):
        if value is not None:
            changes[name] = value
    if burn_in is not _UNSET and burn_in is not None:
        changes["burn_in"] = burn_in
    if changes.get("analog_time", "auto") != "auto":
        check_float("t", changes["analog_time"], minimum=0.0, strict_min=True, unit="τ")
    if changes.get("burn_in", "auto") != "auto":
        check_float("burn_in", changes["burn_in"], minimum=0.0, unit="τ")
    return replace(config, **changes)


def plan_context(backend: object, config: ReadoutConfig) -> tuple[float, float, float]:
    """(κ0, shortest sample interval in τ, target error) a device call plans with: κ0 the config's, else the
    profile's, else 1e-2 for the ideal covariance readout and 0 for the ideal average; the ADC interval of a
    profile (0 for the ideal device); the config's target error, else the profile's recommendation, else
    ``DEFAULT_TARGET_ERROR``. Also checks that a fixed sample interval is not shorter than the ADC's."""
    if isinstance(backend, HardwareProfile):
        kappa0 = backend.kappa0 if config.kappa0 is None else config.kappa0
        min_dt = backend.sample_interval_tau
        if config.sample_interval is not None and config.sample_interval < min_dt * (1 - 1e-12):
            raise InputError(
                f"dt = {config.sample_interval:g} τ is shorter than the profile's ADC sample interval "
                f"{min_dt:g} τ (adc_rate_hz = {backend.adc_rate_hz:g}); use dt >= that."
            )
    else:
        default = 1e-2 if config.mode == "covariance" else 0.0
        kappa0, min_dt = (default if config.kappa0 is None else config.kappa0), 0.0
    if config.target_error is not None:
        target = config.target_error
    else:
        rec = recommended_readout(backend)
        target = (
            rec.target_error if rec is not None and rec.target_error is not None else DEFAULT_TARGET_ERROR
        )
    return float(kappa0), float(min_dt), float(target)


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


def _law_or_none(
    sde_or_A: Any, dt: float, samples: int, burn_in: float | None, **kwargs: Any
) -> Tensor | None:
    """The covariance readout drawn from its law, or ``None`` where the law refuses (the caller then runs the
    trajectory)."""
    try:
        return sample_covariance_readout(sde_or_A, dt=dt, samples=samples, burn_in=burn_in, **kwargs)
    except InputError:
        return None


def device_gain(backend: object, A: Tensor) -> float:
    """How much faster than A's own eigenvalues (as rates, 1/τ) the device holding A relaxes: an RC profile
    loads A_hw = α A with α = coupling_full_scale / max|A| (every load uses the DAC's full scale) and runs the
    drift -f·A_hw (f the fitted ``drift_scale``), so its modes relax at f·α·λ(A). 1 for the ideal device (rates
    are A's eigenvalues) and for RLC resonators (their relaxation is set by R, L, C, not by a rate matrix).
    Readout plans are made for f·α·A, the matrix the device actually runs."""
    if not isinstance(backend, HardwareProfile) or backend.family != "rc":
        return 1.0
    amax = float(A.abs().max())
    if not (math.isfinite(amax) and amax > 0):
        return 1.0
    alpha = float(backend.component_stats["coupling_full_scale"]) / amax
    return alpha * float(backend.fitted["drift_scale"])


# ---------------------------------------------------------------------------------------------- public API
def _plan(
    A: Tensor,
    backend: object,
    config: ReadoutConfig,
    *,
    b: Tensor | None = None,
    lambda_floor: float = 0.0,
    eigenvalues: tuple[float, float, float] | None = None,
) -> ReadoutPlan:
    """The :class:`ReadoutPlan` of one call, in the context of :func:`plan_context`; ``eigenvalues``: A's
    (λ_min lower estimate, λ_min Ritz value, λ_max Ritz value) when already known (a batched Lanczos over
    several tiles, :func:`thermotrain.models._tiles.extreme_eigenvalues_batched`, from the same start vector)."""
    kappa0, min_dt, target = plan_context(backend, config)
    floor = check_float("lambda_floor", lambda_floor, minimum=0.0, unit="1/τ")
    gain = device_gain(backend, A)  # plan for the matrix the device runs (device_gain)
    if eigenvalues is not None:
        eigenvalues = (eigenvalues[0] * gain, eigenvalues[1] * gain, eigenvalues[2] * gain)
    # the λ_min estimate starts from a fixed vector: planning never draws from the noise generator
    return plan_readout(
        A * gain if gain != 1.0 else A,
        config,
        kappa0=float(kappa0),
        min_dt=min_dt,
        b=b,
        lambda_floor=floor * gain,
        default_target=target,
        generator=torch.Generator().manual_seed(0),
        eigenvalues=eigenvalues,
    )


def solve(
    A: Tensor,
    b: Tensor,
    *,
    backend: Backend = "exact",
    config: ReadoutConfig | None = None,
    t: float | Literal["auto"] | None = None,
    kappa0: float | None = None,
    x0: Tensor | None = None,
    readout: Literal["state", "average"] = "state",
    burn_in: float | Literal["auto"] | None = None,
    generator: torch.Generator | None = None,
    rounding: Literal["nearest", "stochastic"] | None = None,
    roundings: int | None = None,
    lambda_floor: float = 0.0,
) -> SolveResult:
    """x ≈ A⁻¹ b on the device dx = -(A x - b) dt + sqrt(2κ0) dW (time in τ) run for analog time t.

    How the device is run comes from ``config`` (a :class:`ReadoutConfig`; ``None``: the hardware profile's
    recommended readout, else the defaults, i.e. ``analog_time="auto"``); the keyword arguments ``t``,
    ``kappa0``, ``burn_in``, ``rounding``, ``roundings`` override single fields of it for this call.

    Args:
        A: [n, n] symmetric positive definite (else :class:`thermotrain.CircuitError`).
        b: [n] or [n, k]; k right-hand sides run on k independent devices in parallel.
        backend: ``"exact"`` (Cholesky), ``"ideal"``, or a :class:`HardwareProfile`.
        config: the readout settings (mode is set by ``readout`` here).
        t: total analog time (τ), burn-in included, or ``"auto"``: from λ_min(A) (a few Lanczos steps) and
            the target error — state readout: t = ln(1/ε)/λ_min (start-up transient below ε); average: the
            burn-in and window of :func:`thermotrain.models.plan_readout`.
        kappa0: noise level. None = 0 for ``"ideal"`` and the profile's κ0 for a profile; an explicit number
            is always honoured (it replaces the profile's κ0 for this call; the profile itself is unchanged).
        x0: start state [n] or [n, k] in A's units (default 0; TNGD warm-starts here).
        readout: ``"state"`` reads x(t) (mean A⁻¹b + e^{-At}(x0 - A⁻¹b), covariance κ0A⁻¹(I - e^{-2At}));
            ``"average"`` reads the exact time average over [burn_in, t] (covariance → 2κ0A⁻²/(t - burn_in)).
        burn_in: start of the averaging window (τ) or ``"auto"``; ``"average"`` only.
        generator: torch generator for the noise and stochastic rounding (on A's device).
        rounding: how a profile's DACs round the loaded A and b (``"nearest"`` or ``"stochastic"``).
        roundings: over how many independent loads the answer is averaged (error mitigation:
            with stochastic rounding the first-order quantization error cancels, ε → ε²). Each load is a full
            device run of ``t``; the analog time reported is ``roundings·t``. Profiles only.
        lambda_floor: a known lower bound of λ_min(A) (1/τ; e.g. the damping), used by ``t="auto"``.
    Returns:
        :class:`SolveResult` (with the :class:`ReadoutPlan` that ran). Cost: exact O(n³); ideal one eigh
        O(n³) + O(n²k); profile O(N³) for the surrogate's N states (time average: exponentials of size 4N).
    """
    _check_backend(backend)
    Lc = check_spd(A)
    n = A.shape[0]
    B, squeeze = _as_columns(b, n, A)
    k = B.shape[1]
    if readout not in ("state", "average"):
        raise InputError(f"readout must be 'state' or 'average'; got {readout!r}.")
    if backend == "exact":
        X = torch.cholesky_solve(B, Lc)
        return SolveResult(X[:, 0] if squeeze else X, 0.0, 0, 0)
    if readout == "state" and burn_in not in (None, 0, 0.0):
        raise InputError(
            f"burn_in = {burn_in!r} applies to readout='average' only; the state readout reads x(t)."
        )
    if kappa0 is not None:
        kappa0 = check_float("kappa0", kappa0, minimum=0.0, unit="V^2")
    cfg = _resolve_config(backend, config, "average", t, kappa0, None, burn_in, rounding, roundings)
    if cfg.kappa0 is None and backend == "ideal":
        cfg = replace(cfg, kappa0=0.0)
    _check_rounding(backend, cfg.rounding, cfg.roundings)
    scale_b = B / B.abs().amax().clamp_min(torch.finfo(B.dtype).tiny)  # 1e-300 is 0 in float32
    plan = _plan(A, backend, cfg, b=scale_b, lambda_floor=lambda_floor)
    if readout == "state":
        t_run = plan.t
        if cfg.analog_time == "auto":
            eps = plan.predicted_error if math.isfinite(plan.predicted_error) else DEFAULT_TARGET_ERROR
            t_run = min(math.log(1.0 / eps) / plan.lambda_min, cfg.max_analog_time)
        plan = replace(plan, t=t_run, burn_in=0.0)
    t, start, k0 = plan.t, plan.burn_in, plan.kappa0
    _check_time(t, start)
    X0 = torch.zeros_like(B) if x0 is None else _as_columns(x0, n, A)[0].expand(n, k)
    loaded, read = n * (n + 1) // 2 + n * k, n * k
    if backend == "ideal":
        lam, U = torch.linalg.eigh(A)
        mean, var = _ideal_moments(lam, U.T @ B, U.T @ X0, t, k0, readout, start)
        if k0 > 0:
            xi = _rng.randn(mean.shape, generator=generator, dtype=A.dtype, device=A.device)
            mean = mean + var.sqrt() * xi
        X = U @ mean
    else:
        X = 0.0
        roundings = cfg.roundings
        for _ in range(roundings):
            inst = backend.instantiate(
                A, B, generator=generator, kappa0=k0, rounding=cfg.rounding, min_eigenvalue=lambda_floor
            )
            beta = inst.input_scale  # [k]
            x0_hw = (X0 * (beta / inst.matrix_scale)).T  # [k, n]
            if readout == "state":
                m, C = state_moments(inst.sde, x0_hw, t)
            else:
                m, C = time_average_moments(inst.sde, x0_hw, start, t - start)
            xi = _rng.randn(m.shape, generator=generator, dtype=m.dtype, device=m.device)
            state = m + (xi @ psd_factor(C).mT if inst.kappa0 > 0 else 0.0)
            y = inst.readout(state @ inst.observe.T)  # [k, n] volts
            X = X + (y * (inst.matrix_scale / beta)[:, None]).T / roundings
        loaded, read, t = loaded * roundings, read * roundings, t * roundings
    return SolveResult(X[:, 0] if squeeze else X, float(t), loaded, read, plan)


def inverse(
    A: Tensor,
    *,
    backend: Backend = "exact",
    config: ReadoutConfig | None = None,
    t: float | Literal["auto"] | None = None,
    kappa0: float | None = None,
    dt: float | None = None,
    burn_in: float | Literal["auto"] | None = _UNSET,
    generator: torch.Generator | None = None,
    rounding: Literal["nearest", "stochastic"] | None = None,
    roundings: int | None = None,
    lambda_floor: float = 0.0,
    simulator: Literal["trajectory", "law"] = "trajectory",
) -> InverseResult:
    """A⁻¹ ≈ Ĉov(x)/κ0 from the device dx = -A x dt + sqrt(2κ0) dW (b = 0) sampled every dt.

    How the device is run comes from ``config`` (a :class:`ReadoutConfig`; ``None``: the hardware profile's
    recommended readout, else the defaults: ``analog_time="auto"``, which picks the burn-in, the window and
    the sample interval for the target relative error from λ_min(A) — see
    :func:`thermotrain.models.plan_readout`); ``t``, ``kappa0``, ``dt``, ``burn_in``, ``rounding`` and
    ``roundings`` override single fields for this call.

    Args:
        A: [n, n] symmetric positive definite.
        backend: ``"exact"`` (Cholesky inverse), ``"ideal"``, or a :class:`HardwareProfile`.
        config: the readout settings (``mode`` is ``"covariance"`` here).
        t: total analog time (τ), burn-in included, or ``"auto"``.
        kappa0: noise level, must be > 0. None = 1e-2 for ``"ideal"`` and the profile's κ0 for a profile; an
            explicit number is honoured (for a profile it replaces the profile's κ0 for this call).
        dt: sample interval (τ); with a profile it may not be shorter than the ADC interval 1/(rate·τ).
        burn_in: the device starts at x = 0 and the samples after ``burn_in`` (τ, or ``"auto"``) are used;
            ``None`` = an idealisation: the device starts in its stationary law (samples over [0, t]).
        generator: torch generator for the noise.
        rounding: as in :func:`solve` (profiles only).
        roundings: as in :func:`solve` (profiles only): the estimate averages ``roundings``
            independent loads, each a full run of ``t``.
        lambda_floor: a known lower bound of λ_min(A) (1/τ; e.g. the damping), used by ``t="auto"``.
        simulator: how the readout is simulated (the device is the same): ``"trajectory"`` (the reference:
            every sample of the path, O(S·N²)) or ``"law"`` (a draw of the sample covariance from its law,
            O(N³) whatever S: exact mean, Isserlis second moments, Gaussian third-order approximation; ADC
            rounding as additive uniform noise — :mod:`thermotrain.models._fast_readout`). Where the law is
            refused (too few decorrelation times, an ill-conditioned drift) the trajectory runs.
    Returns:
        :class:`InverseResult` with the :class:`ReadoutPlan` that ran; the estimate is (1/N) Σ x_i x_iᵀ / κ0
        over the N samples (known zero mean), symmetric by construction; relative error of the slowest mode
        ~ sqrt(2/(λ_min T)) for a window T (``plan.predicted_error``).
        Cost: ideal one eigh O(n³) + O(n·N) steps + O(n²N); profile O(N_s³) set-up + N steps of O(N_s²).
    """
    _check_backend(backend)
    Lc = check_spd(A)
    n = A.shape[0]
    if backend == "exact":
        return InverseResult(torch.cholesky_inverse(Lc), 0.0, 0, 0)
    stationary = burn_in is None
    if kappa0 is not None:
        kappa0 = check_float("kappa0", kappa0, minimum=0.0, strict_min=True, unit="V^2")
    if dt is not None:
        dt = check_float("dt", dt, minimum=0.0, strict_min=True, unit="τ")
    cfg = _resolve_config(backend, config, "covariance", t, kappa0, dt, burn_in, rounding, roundings)
    _check_rounding(backend, cfg.rounding, cfg.roundings)
    plan = _plan(A, backend, cfg, lambda_floor=lambda_floor)
    if stationary:
        plan = replace(plan, burn_in=0.0)
    t, start, dt, kappa0 = plan.t, plan.burn_in, plan.dt, plan.kappa0
    _check_time(t, start)
    if not kappa0 > 0:
        raise InputError(f"kappa0 = {kappa0!r}: the covariance readout needs noise (kappa0 > 0, e.g. 1e-2).")
    n_steps = int(math.floor((t - start) / dt + 1e-9))
    if n_steps < 1:
        raise InputError(f"The sampling window t - burn_in = {t - start:g} τ holds no step of dt = {dt:g} τ.")
    loaded, read = n * (n + 1) // 2, n * (n_steps + 1)
    check_choice("simulator", simulator, ("trajectory", "law"))
    fast = simulator == "law"
    if backend == "ideal" and fast:
        C = _law_or_none(
            A, dt, n_steps + 1, None if stationary else start, kappa0=kappa0, generator=generator
        )
        if C is not None:
            return InverseResult(0.5 * (C + C.mT) / kappa0, float(t), loaded, read, plan)
    if backend == "ideal":
        lam, U = torch.linalg.eigh(A)
        var_inf = kappa0 / lam
        if stationary:
            z = var_inf.sqrt() * _rng.randn(n, generator=generator, dtype=A.dtype, device=A.device)
        else:
            z = (var_inf * -torch.expm1(-2 * lam * start)).sqrt() * _rng.randn(
                n, generator=generator, dtype=A.dtype, device=A.device
            )
        phi = torch.exp(-lam * dt)
        sd = (var_inf * -torch.expm1(-2 * lam * dt)).sqrt()
        xi = _rng.randn((n_steps, n), generator=generator, dtype=A.dtype, device=A.device) * sd
        Z = torch.empty((n_steps + 1, n), dtype=A.dtype, device=A.device)
        Z[0] = z
        for i in range(n_steps):
            z = phi * z + xi[i]
            Z[i + 1] = z
        cov = U @ ((Z.T @ Z) / (n_steps + 1)) @ U.T
        inv = cov / kappa0
    else:
        inv = 0.0
        roundings = cfg.roundings
        for _ in range(roundings):
            inst = backend.instantiate(
                A, generator=generator, kappa0=kappa0, rounding=cfg.rounding, min_eigenvalue=lambda_floor
            )
            sde = inst.sde
            C = (
                _law_or_none(
                    sde,
                    dt,
                    n_steps + 1,
                    None if stationary else start,
                    observe=inst.observe,
                    generator=generator,
                    **readout_law_args(inst.readout),
                )
                if fast
                else None
            )
            if C is not None:
                inv = inv + inst.matrix_scale * C / inst.kappa0 / roundings
                continue
            if stationary:
                P = stationary_covariance(sde.M, sde.D)
                x0 = sde.stationary_mean() + psd_factor(P) @ _rng.randn(
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
    return InverseResult(0.5 * (inv + inv.T), float(t), loaded, read, plan)
