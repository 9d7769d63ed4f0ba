"""Calibration: fit the surrogate of an array to SPICE runs of its netlist, and write a hardware profile.

Pipeline (``calibrate(spec, settings)``):

1. The spec's circuit (its seeded tolerance draw, quantized couplings, amplifier model, parasitics) runs in
   ngspice ``fit_runs + heldout_runs`` times with independent seeded noise; the first ``fit_runs`` are fitted,
   the others are held out.
2. **Device fit** (the surrogate of this physical device, time in units of the profile's τ):

   - RC (overdamped; every state is an observed output voltage): shifted lag-covariance identification
     Φ̂ = Ĉ(s+Δ) Ĉ(s)⁻¹, M̂ = log(Φ̂)/Δ, D̂ = −(M̂ Ĉ(0) + Ĉ(0) M̂ᵀ), û = −M̂ μ̂ with s = 2·NT: exact for a
     linear process driven by noise sampled every NT and linearly interpolated (C(s+Δ) = e^{MΔ} C(s) once
     the noise after t+s is independent of x(t)); the plain s = 0 estimate is biased by O(NT/Δ). Optionally
     (``mle=True``) refined by maximising the exact white-noise transition likelihood
     Σ log N(x_{k+1}; Φ x_k + Γ u, S) (Van Loan transition; torch autograd, LBFGS) over every lag-Δ chain;
     a refinement that leaves the drift unstable or lowers the likelihood is rejected.
   - RLC (underdamped; the inductor currents are not observed, so the transition likelihood of V alone is
     not Markov): the profile's structured model 𝐂 dV = −I dt, L dI = (V − R(1+δ) I) dt + noise, with the
     inverse capacitance matrix 𝐂⁻¹ = Ĉ_V(0) / (s κ0 c0) from the Boltzmann law (so every coupling's
     tolerance draw is captured) and the noise scale s and damping correction δ fitted by least squares to
     the measured lag autocovariances C_V(ℓΔ) (method of moments; s sets the oscillation frequencies through
     𝐂⁻¹, δ their decay).
3. **Generative parameters** for any size: the profile's ``fitted`` corrections (drift_scale f, noise_scale s,
   diag_shift δ) come from the device fit against the profile's nominal model of the same loaded matrix;
   the tolerance the fit sees is reported next to the design value.
4. **Checks**: the device fit's stationary covariance against the pooled held-out runs
   (``heldout_covariance_rel_error``) next to the run-to-run spread of single held-out runs
   (``spice_spread_rel`` = sqrt(Σ_r ‖Ĉ_r − C̄‖²_F / (R−1)) / ‖C̄‖_F), and against the symbolic non-ideal model
   and the ideal array (does the fit reproduce the non-ideal statistics, not the ideal ones?). The full MNA
   model's reduction to the surrogate's order (balanced truncation) is reported with its error.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg as sla
import torch
from scipy.optimize import least_squares

from thermotrain._args import check_float, check_int
from thermotrain._errors import CalibrationError, InputError, OutputError
from thermotrain._report import (
    covariance_heatmaps,
    overlay_plot,
    pyplot,
    table,
    to_jsonable,
    trace_panels,
    write_json,
)
from thermotrain._runs import SpiceRunSettings
from thermotrain.models._linear_sde import LinearSDE, log_likelihood, stationary_covariance
from thermotrain.models._profile import (
    FITTED_DEFAULTS,
    HardwareProfile,
    rlc_board_terms,
    rlc_drift_diffusion,
    save_profile,
)
from thermotrain.models._reduce import balanced_truncation

__all__ = ["Calibration", "CalibrationSettings", "calibrate", "device_covariance"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class CalibrationSettings(SpiceRunSettings):
    """fit_runs / heldout_runs: independent SPICE runs fitted / held out (held out ≥ 2 for a spread);
    lag_tau: identification lag Δ (τ); mle: refine the RC fit by the exact white-noise transition likelihood
    (LBFGS, at most ``max_iter`` iterations) -- off by default, because ngspice's sampled, interpolated noise
    makes the lag-Δ chain non-Markov and biases that fit by O(NT/Δ), which the shifted lag-covariance
    estimate avoids. The SPICE runs' settings (duration_tau, 2000 τ by default; noise, seed, workers,
    burn_in, engine, timeout) are :class:`thermotrain.netlists.SpiceRunSettings`'s."""

    duration_tau: float = 2000.0
    fit_runs: int = 4
    heldout_runs: int = 4
    lag_tau: float = 0.5
    mle: bool = False
    max_iter: int = 60

    def __post_init__(self) -> None:
        """Every field checked where it enters (InputError naming the field, the value and the range)."""
        check_int("fit_runs", self.fit_runs, minimum=1)
        if check_int("heldout_runs", self.heldout_runs) < 2:
            raise InputError(
                f"heldout_runs={self.heldout_runs} must be an integer >= 2: the run-to-run spread of the "
                "held-out runs needs two runs."
            )
        super().__post_init__()
        check_float("lag_tau", self.lag_tau, minimum=0.0, strict_min=True, unit="tau")
        if not isinstance(self.mle, bool):
            raise InputError(f"mle={self.mle!r} must be True or False.")
        check_int("max_iter", self.max_iter, minimum=1)

    @property
    def runs(self) -> int:
        """All SPICE runs: fit_runs + heldout_runs."""
        return self.fit_runs + self.heldout_runs


def check_profile_path(path: str | Path, *, overwrite: bool = False, flag: str = "--out") -> Path:
    """Check, before any work, that a profile can be written to ``path`` (see
    :func:`thermotrain._safeio.check_output_file`). Returns the absolute path."""
    from thermotrain._safeio import check_output_file

    return check_output_file(path, overwrite=overwrite, flag=flag, example="rc8.json", what="profile file")


@dataclass(frozen=True)
class Calibration:
    """The calibrated ``profile``, the ``report`` (also report.json), and the fitted device surrogate
    (``device``: the SDE in units of τ; ``observe``: state → read voltages)."""

    profile: HardwareProfile
    report: dict[str, Any]
    device: LinearSDE
    observe: torch.Tensor


# ------------------------------------------------------------------------------------------ statistics
def _pooled_moments(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled mean μ and covariance E[(x-μ)(x-μ)ᵀ] over runs."""
    mu = np.mean(np.vstack(series), axis=0)
    return mu, _lag_autocov(series, mu, np.array([0]))[0]


def _lag_autocov(series: list[np.ndarray], mu: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """[L, P, P] pooled E[(x_{t+ℓ}-μ)(x_t-μ)ᵀ] for ℓ in ``lags`` (steps)."""
    out = []
    for lag in lags:
        acc, cnt = 0.0, 0
        for x in series:
            y = x - mu
            acc = acc + (y[lag:].T @ y[: y.shape[0] - lag] if lag else y.T @ y)
            cnt += y.shape[0] - lag
        out.append(acc / cnt)
    return np.array(out)


def _run_covariances(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled covariance (about the pooled mean) and the per-run covariances (about their own means)."""
    mu = np.mean(np.vstack(series), axis=0)
    pooled = np.mean([(x - mu).T @ (x - mu) / x.shape[0] for x in series], axis=0)
    per_run = np.array([np.cov(x.T, bias=True).reshape(mu.size, mu.size) for x in series])
    return pooled, per_run


def run_spread(pooled: np.ndarray, per_run: np.ndarray) -> float:
    """Run-to-run spread of ONE run's covariance, relative: sqrt(Σ_r ‖Ĉ_r − C̄‖²_F / (R−1)) / ‖pooled‖_F."""
    dev = sum(float(np.linalg.norm(c - per_run.mean(0)) ** 2) for c in per_run)
    return math.sqrt(dev / (len(per_run) - 1)) / float(np.linalg.norm(pooled))


def heldout_ci95(fit_ci95: float, t_fit: float, t_held: float) -> float:
    """CI95 of the surrogate-vs-held-out covariance error from the fit time's CI95. The surrogate (≈ the fit
    runs' covariance) and the held-out covariance are independent estimates, so the error variance adds,
    V/T_fit + V/T_held; every error of the budget scales as 1/sqrt(T) (the same seeded draws), so the
    held-out bound is the fit bound rescaled, not a second P² Sylvester solve."""
    return fit_ci95 * math.sqrt(t_fit * (1.0 / t_fit + 1.0 / t_held))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def device_covariance(sde: LinearSDE, observe: torch.Tensor) -> np.ndarray:
    """Stationary covariance of the read voltages, observe Σ observeᵀ (V²)."""
    S = stationary_covariance(sde.M.double(), sde.D.double())
    return (observe.double() @ S @ observe.double().T).numpy()


# ------------------------------------------------------------------------------------------ device fits
def _fit_rc(
    series: list[np.ndarray], step_tau: float, lag: int, *, shift: int = 0, mle: bool, max_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Lag-covariance identification (optionally refined by the exact likelihood). Returns M, D, u (per τ)
    and diagnostics.

    ``shift`` s (steps) uses Φ̂(Δ) = Ĉ(s+Δ) Ĉ(s)⁻¹ instead of Ĉ(Δ) Ĉ(0)⁻¹. For noise sampled every NT and
    linearly interpolated (ngspice), x(t) already depends on the next noise sample, so C(Δ) = e^{MΔ} C(0)
    fails by O(NT/Δ) (≈ 14 % on rc8 at Δ = 0.5 τ); for s ≥ 2 NT the noise after t + s is independent of
    x(t) and C(s + Δ) = e^{MΔ} C(s) holds exactly (an instrumental-variable estimate)."""
    dt = lag * step_tau
    mu, C0 = _pooled_moments(series)
    Cs = _lag_autocov(series, mu, np.array([shift, shift + lag]))
    Phi = Cs[1] @ np.linalg.inv(Cs[0])
    ev = np.linalg.eigvals(Phi)
    if np.any(ev.real <= 0):
        raise CalibrationError(
            f"lag-covariance identification failed: Ĉ(s+Δ)Ĉ(s)⁻¹ has eigenvalues {np.round(ev, 4).tolist()} "
            f"(need positive real parts at Δ = {dt:.3g} τ). Use a shorter --lag or longer runs."
        )
    M = sla.logm(Phi).real / dt
    D = -(M @ C0 + C0 @ M.T)
    D = 0.5 * (D + D.T)
    lam, U = np.linalg.eigh(D)
    D = (U * np.clip(lam, 1e-12 * lam.max(), None)) @ U.T
    u = -M @ mu
    diag: dict[str, Any] = {
        "method": "lag-covariance" + (" (shifted, sampled-noise exact)" if shift else ""),
        "lag_tau": dt,
        "shift_tau": shift * step_tau,
        "mle_iterations": 0,
    }
    if np.max(np.linalg.eigvals(M).real) >= 0:
        raise CalibrationError(
            "lag-covariance identification gave an unstable drift; the runs are too short for this lag. "
            "Use longer runs (--duration) or a shorter --lag."
        )
    if not mle:
        return M, D, u, diag
    # every lag-Δ chain of every run, equal lengths, as a batch [R·lag, T+1, n]
    T = min((x.shape[0] - lag) // lag for x in series)
    chains = np.stack([x[j : j + lag * T + 1 : lag] for x in series for j in range(lag)])
    X = torch.tensor(chains, dtype=torch.float64)
    n = M.shape[0]
    Mp = torch.tensor(M, requires_grad=True)
    Lp = torch.tensor(np.linalg.cholesky(D), requires_grad=True)
    up = torch.tensor(u, requires_grad=True)
    tril = torch.tril(torch.ones(n, n, dtype=torch.bool))
    count = X.shape[0] * T

    def nll() -> torch.Tensor:
        L = torch.where(tril, Lp, torch.zeros_like(Lp))
        return -log_likelihood(LinearSDE(Mp, L @ L.T, up), X, dt).sum() / count

    with torch.no_grad():
        start = float(nll())
    opt = torch.optim.LBFGS(
        [Mp, Lp, up], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-10
    )
    iters = 0

    def closure() -> torch.Tensor:
        nonlocal iters
        iters += 1
        opt.zero_grad()
        loss = nll()
        loss.backward()
        return loss

    try:
        opt.step(closure)
        with torch.no_grad():
            end = float(nll())
        M2 = Mp.detach().numpy().copy()
        L2 = torch.where(tril, Lp, torch.zeros_like(Lp)).detach().numpy()
        stable = np.max(np.linalg.eigvals(M2).real) < 0
    except (RuntimeError, ValueError) as exc:  # a singular step inside the line search
        log.warning("likelihood refinement failed (%s); keeping the lag-covariance fit", exc)
        end, stable = math.inf, False
    diag |= {"nll_start": start, "nll_end": end, "mle_iterations": iters}
    if stable and end <= start:
        diag["method"] = "lag-covariance + exact likelihood (LBFGS)"
        return M2, L2 @ L2.T, up.detach().numpy().copy(), diag
    diag["mle_rejected"] = True
    return M, D, u, diag


def _quick_fit(
    x: np.ndarray, family: str, step_tau: float, lag: int, diag: dict[str, Any], profile: HardwareProfile
) -> np.ndarray:
    """One run's moment estimate for the estimation floor of the tolerance the device fit shows
    (:func:`_couplings`): RC the drift (lag covariance), RLC the covariance of V."""
    if family == "rc":
        shift = int(round(diag["shift_tau"] / step_tau))
        mu = x.mean(axis=0)
        Cs = _lag_autocov([x], mu, np.array([shift, shift + lag]))
        return sla.logm(Cs[1] @ np.linalg.inv(Cs[0])).real / (lag * step_tau)
    return _pooled_moments([x])[1]


#: fixed-point steps that make the RLC model's V covariance equal the measured one (:func:`_rlc_model`)
_BOLTZMANN_STEPS = 4


def _rlc_model(
    C0: np.ndarray, s: float, delta: float, profile: HardwareProfile, k0: float, tau: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drift and diffusion (per τ) of ``profile``'s series-noise RLC model (states (V, I) and the board
    states its component statistics name: generator filter, inductor self-capacitance, ESR; as numpy
    arrays, :func:`thermotrain.models._profile.rlc_drift_diffusion`) whose V covariance is the measured
    ``C0`` (V²), and its 𝐂⁻¹. Boltzmann's 𝐂⁻¹ = C0 / (s κ0 c0) holds for white noise; the board's coloured
    noise moves the covariance by about 2 %, so 𝐂⁻¹ is corrected by fixed-point steps
    𝐂⁻¹ += (C0 - Σ_V(𝐂⁻¹)) / (s κ0 c0). The ESR stamp is built from this 𝐂 (its node parasitics, about 1 %
    of a cell's capacitance, counted as array capacitors: a 1 % error on a 1 % effect)."""
    c, cs = profile.circuit, profile.component_stats
    c0, L, R = (float(c[k]) for k in ("C_f", "L_h", "R_ohm"))
    scale = s * k0 * c0
    Cinv = C0 / scale
    n = C0.shape[0]
    for step in range(_BOLTZMANN_STEPS + 1):
        C = torch.from_numpy(np.asarray(Cinv, dtype=np.float64))
        M, D = rlc_drift_diffusion(
            C,
            L=L,
            R=R,
            c0=c0,
            kappa0=k0,
            noise_scale=s,
            diag_shift=delta,
            tau=tau,
            **rlc_board_terms(cs, torch.linalg.inv(C)),
        )
        M, D = M.numpy(), D.numpy()
        if M.shape[0] == 2 * n and not any(
            cs[k] for k in ("capacitor_esr_ohm", "switch_resistance_ohm", "inductor_resistance_ohm")
        ):
            break  # the white two-state model holds Boltzmann exactly
        if step < _BOLTZMANN_STEPS:
            S = sla.solve_continuous_lyapunov(M, -D)
            Cinv = Cinv + (C0 - S[:n, :n]) / scale
    return M, D, Cinv


def _fit_rlc(
    series: list[np.ndarray], step_tau: float, profile: HardwareProfile, k0: float, tau: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    circuit = profile.circuit
    c0, L, R = (float(circuit[k]) for k in ("C_f", "L_h", "R_ohm"))
    n = series[0].shape[1]
    mu, C0 = _pooled_moments(series)
    # lags: 48 points over two envelope decay times 2·(2L/R), at least 6 per nominal period
    decay_tau = 2 * L / R / tau
    period_tau = 2 * math.pi * math.sqrt(L * c0) / tau
    lag_step = max(1, int(min(period_tau / 6, 4 * decay_tau / 48) / step_tau))
    lags = lag_step * np.arange(1, 49)
    emp = _lag_autocov(series, mu, lags)
    scale = np.linalg.norm(C0)

    def model(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _rlc_model(C0, math.exp(p[0]), p[1], profile, k0, tau)[:2]

    def resid(p: np.ndarray) -> np.ndarray:
        M, D = model(p)
        S = sla.solve_continuous_lyapunov(M, -D)
        E = sla.expm(M * lag_step * step_tau)
        out, P = [], S
        for k in range(len(lags)):
            P = E @ P
            out.append((P[:n, :n] - emp[k]).ravel() / scale)
        return np.concatenate(out)

    res = least_squares(resid, x0=np.array([0.0, 0.0]), method="lm", xtol=1e-10)
    M, D = model(res.x)
    ev = np.linalg.eigvals(M)
    if not (res.success and np.max(ev.real) < 0):
        raise CalibrationError(
            f"the RLC lag-covariance fit did not converge ({res.message}); use longer runs (--duration)."
        )
    diag = {
        "method": "Boltzmann covariance + lag-autocovariance least squares (s, δ)",
        "lags_tau": [float(lags[0] * step_tau), float(lags[-1] * step_tau)],
        "residual_rel": float(np.linalg.norm(res.fun) / math.sqrt(len(lags))),
        "noise_scale": float(math.exp(res.x[0])),
        "diag_shift": float(res.x[1]),
    }
    return M, D, np.zeros(M.shape[0]), diag


# ------------------------------------------------------------------------------------------ the profile
def _design_profile(spec: Any, circuit: Any, name: str) -> HardwareProfile:
    """The uncalibrated profile of ``spec``'s design: component statistics from its non-idealities."""
    ni = spec.nonideal
    op = ni.opamp
    stats: dict[str, Any] = {
        "tolerance": ni.tolerance,
        "capacitor_tolerance": ni.tolerance,
        "coupling_bits": ni.coupling_bits,
        "parasitic_capacitance_f": ni.parasitic_capacitance,
        "opamp_gain": None if math.isinf(op.open_loop_gain) else float(op.open_loop_gain),
        "opamp_gbw_hz": op.gbw_hz,
        "opamp_offset_v": abs(op.input_offset),
        "noise_gain_mismatch": ni.noise_gain_mismatch,
        "switch_capacitance_f": ni.switch_capacitance,
    }
    if spec.family == "rlc":  # the board parts the RLC surrogate holds as states or first-order terms
        stats |= {
            "noise_bandwidth_hz": ni.noise_bandwidth_hz,
            "capacitor_esr_ohm": ni.capacitor_esr,
            "switch_resistance_ohm": ni.switch_resistance,
            "inductor_capacitance_f": ni.inductor_capacitance,
            "inductor_resistance_ohm": ni.inductor_resistance,
        }
    meta = {"name": name, "n": spec.size, "nonideal": to_jsonable(ni.to_dict())}  # inf -> "inf"
    if spec.family == "rc":
        stats["input_full_scale_v"] = spec.dac_full_scale
        return HardwareProfile.from_spec(
            "rc",
            circuit={"R_ohm": spec.unit_resistance, "C_f": spec.capacitance, **meta},
            tau_s=spec.time_constant,
            kappa0=spec.kappa0,
            dac_bits=ni.dac_bits,
            noise_interval_s=circuit.noise_interval,
            **stats,
        )
    return HardwareProfile.from_spec(
        "rlc",
        circuit={
            "C_f": spec.unit_capacitance,
            "L_h": spec.inductance,
            "R_ohm": spec.series_resistance + ni.inductor_resistance,
            "noise_injection": "series",
            **meta,
        },
        kappa0=spec.kappa0,
        noise_interval_s=circuit.noise_interval,
        **stats,
    )


def _nominal(profile: HardwareProfile, A: torch.Tensor, fitted: dict[str, float], deviations: Any = None):
    """The profile's model of A with every tolerance off (the design device) and the given corrections; with
    ``deviations`` (:func:`thermotrain.netlists._profile_check.drawn_deviations`) the twin of that board."""
    if deviations is not None:
        return dataclasses.replace(profile, fitted=fitted).instantiate(A, deviations=deviations)
    cs = profile.component_stats | {"tolerance": 0.0, "capacitor_tolerance": 0.0}
    return dataclasses.replace(profile, component_stats=cs, fitted=fitted).instantiate(A)


def _couplings(profile: HardwareProfile, x: np.ndarray) -> np.ndarray:
    """The coupling matrix a device fit shows: RC −M (``x`` = the drift M, per τ); RLC κ0 Σ_V⁻¹ (``x`` = the V
    covariance Σ_V), 𝐂/c0 up to one scale (the noise scale; the coloured noise bends it by about 2 %, alike for
    every estimate, so ratios of two estimates cancel it)."""
    if profile.family == "rc":
        return -x
    return profile.kappa0 * np.linalg.inv(x)


def _generative_fit(
    profile: HardwareProfile,
    A_user: np.ndarray,
    M: np.ndarray,
    cov: np.ndarray,
    diag: dict[str, Any],
    per_run: list[np.ndarray],
    deviations: Any = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The profile's corrections (f, s, δ) that best explain the device fit, and the element tolerance the
    fit shows next to its estimation floor (from the spread of per-run estimates ``per_run``).

    The corrections are fitted against the twin of the calibration board (``deviations``: the parts its
    netlist drew) when given, else against the nominal device. A correction is a property of the design;
    fitted against the nominal it also absorbs what this board's 1 % draw does to the drift and covariance
    (rlc8 board, 2026-12-05: noise_scale 0.979 against the nominal, 0.998 against the twin, whose covariance
    is 1.4 % below the nominal's)."""
    A = torch.tensor(A_user, dtype=torch.float64)
    n = A.shape[0]
    if profile.family == "rc":
        # −M ≈ f(−M_nom) + f·δ·K0  (K0 = 𝐂⁻¹ of the nominal device, its input gain): least squares in (f, f·δ)
        nom0 = _nominal(profile, A, dict(FITTED_DEFAULTS), deviations)
        Mn, K0 = nom0.sde.M.numpy(), nom0.input_gain.numpy()
        K0 = np.diag(K0) if K0.ndim == 1 else K0
        X = np.stack([(-Mn).ravel(), K0.ravel()], axis=1)
        (f, fd), *_ = np.linalg.lstsq(X, (-M).ravel(), rcond=None)
        f = float(max(f, 1e-6))
        delta = float(fd / f)
    else:
        f, delta = 1.0, float(diag["diag_shift"])
    # s from the covariance level (measured far better than the drift/diffusion split)
    fitted = {"drift_scale": f, "noise_scale": 1.0, "diag_shift": delta}
    board = _nominal(profile, A, fitted, deviations)
    Sb = device_covariance(board.sde, board.observe)
    s = float(np.sum(cov * Sb) / np.sum(Sb * Sb))
    nom = board if deviations is None else _nominal(profile, A, fitted)
    Sn = Sb if deviations is None else device_covariance(nom.sde, nom.observe)
    rc = profile.family == "rc"
    ref = _couplings(profile, nom.sde.M.numpy() if rc else Sn)
    off = off_mask(n) & (np.abs(ref) > 0.1 * np.abs(ref[off_mask(n)]).max())
    rel = _couplings(profile, M if rc else cov)[off] / ref[off] - 1.0
    per = np.array([c[off] / ref[off] - 1.0 for c in per_run])
    floor = float(np.sqrt(np.mean(per.var(axis=0, ddof=1)) / len(per_run))) if len(per_run) > 1 else None
    seen = {
        "tolerance_seen": float(np.sqrt(np.mean((rel - rel.mean()) ** 2))),
        "tolerance_seen_floor": floor,
        "coupling_entries_used": int(off.sum()),
    }
    return {"drift_scale": f, "noise_scale": s, "diag_shift": delta}, seen


def _design_corrections(
    spec: Any, circuit: Any, profile: HardwareProfile, deviations: Any
) -> dict[str, float]:
    """The corrections the design itself implies (no SPICE): drift_scale 1, diag_shift 0, and noise_scale =
    the colour trace of the calibration board's twin (its drawn parts ``deviations``) at the runs' noise
    interval NT: what a white surrogate's noise scale must be to hold the covariance the board's sampled noise
    gives."""
    from thermotrain.netlists._profile_check import sampled_over_white

    r = 1.0
    if circuit.noise_interval is not None:
        twin = profile.instantiate(torch.tensor(spec.target), kappa0=spec.kappa0, deviations=deviations)
        r = sampled_over_white(twin.sde, twin.observe, profile.tau_s, circuit.noise_interval)
    return {"drift_scale": 1.0, "noise_scale": r, "diag_shift": 0.0}


def _jackknife_se(
    refit: Any,
    fit_series: list[np.ndarray],
    spec: Any,
    profile: HardwareProfile,
    per_run: list[np.ndarray],
    deviations: Any = None,
) -> dict[str, float | None]:
    """Leave-one-run-out jackknife standard error of each fitted correction over the R fit runs:
    sqrt((R-1)/R Σ_j (θ_(j) - θ̄)²), ``refit(runs)`` being the device fit (:func:`_fit`) on a subset. None
    with fewer than 2 fit runs."""
    R = len(fit_series)
    if R < 2:
        return dict.fromkeys(FITTED_DEFAULTS)
    est = []
    for j in range(R):
        rest = fit_series[:j] + fit_series[j + 1 :]
        M, D, u, diag, _ = refit(rest)
        sde = LinearSDE(torch.tensor(M), torch.tensor(0.5 * (D + D.T)), torch.tensor(u))
        cov = device_covariance(sde, torch.eye(M.shape[0], dtype=torch.float64)[: spec.size])
        est.append(_generative_fit(profile, spec.target, M, cov, diag, per_run, deviations)[0])
    return {k: float(math.sqrt((R - 1) * np.var([e[k] for e in est]))) for k in FITTED_DEFAULTS}


def _resolved_corrections(
    raw: dict[str, float], base: dict[str, float], se: dict[str, float | None], runs: int
) -> tuple[dict[str, float], dict[str, bool]]:
    """Keep a fitted correction only where the SPICE data resolve it from the design's value: |θ - θ_design|
    > t_{0.975, R-1} · SE (jackknife over R fit runs); otherwise the design value. Once the surrogate holds
    the board's non-idealities (amplifier lag, generator gains, switch capacitance), what remains of a
    correction is mostly the runs' sampling error, and applying it makes the profile a worse predictor of
    held-out SPICE runs (rc8, 2026-12-03: 3.1 % with the raw corrections against 2.5 % with the design's).
    Without an SE (one fit run) the raw values are kept."""
    from scipy.stats import t as student_t

    out, kept = {}, {}
    for k, v in raw.items():
        e = se.get(k)
        keep = e is None or abs(v - base[k]) > float(student_t.ppf(0.975, max(runs - 1, 1))) * e
        out[k], kept[k] = (v if keep else base[k]), bool(keep)
    return out, kept


def off_mask(n: int) -> np.ndarray:
    return ~np.eye(n, dtype=bool)


# ------------------------------------------------------------------------------------------ public API
def _fit(
    spec: Any,
    circuit: Any,
    s: CalibrationSettings,
    fit_series: list[np.ndarray],
    step_tau: float,
    step: float,
    profile: HardwareProfile,
    tau_p: float,
    tau_c: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any], int]:
    """(M, D, u, diagnostics, lag in samples) of the family's fit on the fit runs (``step``: the runs'
    sample interval in s)."""
    if spec.family == "rc":
        lag = max(1, int(round(s.lag_tau * tau_c / step)))
        shift = 0 if circuit.noise_interval is None else int(math.ceil(2 * circuit.noise_interval / step))
        M, D, u, diag = _fit_rc(fit_series, step_tau, lag, shift=shift, mle=s.mle, max_iter=s.max_iter)
        return M, D, u, diag, lag
    M, D, u, diag = _fit_rlc(fit_series, step_tau, profile, spec.kappa0, tau_p)
    return M, D, u, diag, 0


def calibrate(
    spec: Any,
    settings: CalibrationSettings = CalibrationSettings(),
    *,
    out_dir: str | Path | None = None,
    profile_path: str | Path | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    name: str | None = None,
    runs: Any = None,
    overwrite: bool = False,
) -> Calibration:
    """Fit the surrogate of ``spec`` (an RC or RLC array spec) to SPICE runs and build its hardware profile.

    ``runs``: SPICE runs made already (a :class:`thermotrain.netlists._validation.NoisyRuns`, e.g. from
    :func:`load_validation_runs`) instead of new ones; the last ``settings.heldout_runs`` are held out.

    Writes ``out_dir/report.json``, ``summary.txt`` and plots (``traces.png``, ``autocorrelation.png``,
    ``covariance.png``, ``fit_errors.png``) when ``out_dir`` is given, and the profile JSON to
    ``profile_path``. Both are checked before any SPICE run (:class:`OutputError` for a profile path that
    is a folder or exists without ``overwrite``, a report folder holding an earlier run, an unwritable
    place) and written atomically: on any failure neither is left half-written (no ``*.tmp``), and an
    earlier profile/report is replaced only when the new ones are complete. Raises :class:`thermotrain.CalibrationError` when too few runs succeed or a fit fails.
    Cost: the SPICE runs (seconds per 10³ τ at N = 8), then O(N³) per likelihood evaluation.
    """
    from thermotrain._safeio import check_output_dir
    from thermotrain.circuits import Theory, linear_region, linear_sde
    from thermotrain.netlists._ngspice import ngspice_version
    from thermotrain.netlists._profile_check import drawn_deviations
    from thermotrain.netlists._validation import (
        CLIP_THRESHOLD,
        PHASES,
        clipped_fraction,
        clipping_reason,
        describe_failures,
        noisy_runs,
    )

    t_start = time.perf_counter()
    if not isinstance(settings, CalibrationSettings):
        raise InputError(f"settings must be a CalibrationSettings, not {type(settings).__name__}.")
    if profile_path is not None:
        check_profile_path(profile_path, overwrite=overwrite)
    if out_dir is not None:
        check_output_dir(out_dir, overwrite=overwrite, flag="--report")
        if profile_path is not None and Path(out_dir).absolute() == Path(profile_path).absolute():
            raise OutputError(
                f"the profile {profile_path} and the report folder are the same path; give --out a .json name."
            )
    s = settings
    name = name or f"{spec.family}{spec.size}"
    circuit = spec.build(s.seed)
    sde_full = linear_sde(circuit)
    theory = Theory(sde_full, circuit.noise_interval)
    profile = _design_profile(spec, circuit, name)
    tau_c, tau_p = circuit.time_constant, profile.tau_s
    t_slow = theory.relaxation_time
    # the linear theory's region (as validate): predicted swing/slew, and the clipping SPICE shows
    swing = spec.nonideal.opamp.output_swing
    region = linear_region(circuit, spec.nonideal.opamp)
    amp_nodes = region.nodes if swing is not None else ()
    clipped: float | None = None
    t0 = time.perf_counter()
    if runs is None:
        runs = noisy_runs(
            circuit,
            s,
            burn_in=s.burn_in * t_slow,
            duration=s.duration_tau * tau_c,
            executor=executor,
            progress=progress,
            extra_probes=amp_nodes,
        )
        if amp_nodes:
            clipped = clipped_fraction(runs.transients, amp_nodes, swing, s.burn_in * t_slow)
            if clipped > CLIP_THRESHOLD:  # the linear surrogate cannot be fitted to clipped traces
                raise CalibrationError(
                    f"calibration of {name} refused: {clipping_reason(clipped, swing)}; predicted: "
                    f"{region.describe()}."
                )
        n_fit = s.fit_runs
        ok_idx = [i for i in range(s.runs) if i not in {f["index"] for f in runs.failures}]
    else:
        n_fit = len(runs.series) - s.heldout_runs
        ok_idx = list(range(len(runs.series)))
    t_spice = time.perf_counter() - t0
    fit_ids = [i for i in ok_idx if i < n_fit]
    held_ids = [i for i in ok_idx if i >= n_fit]
    by_id = dict(zip(ok_idx, runs.series, strict=True))
    if not fit_ids or len(held_ids) < 2:
        raise CalibrationError(
            f"calibration of {name} needs >= 1 fit run and >= 2 held-out runs that succeed; got {len(fit_ids)} "
            f"and {len(held_ids)} (failed: {describe_failures(runs.failures) or 'none'})."
        )
    fit_series = [by_id[i] for i in fit_ids]
    held_series = [by_id[i] for i in held_ids]
    step_tau = runs.step / tau_p
    t0 = time.perf_counter()
    A_user = spec.target
    try:
        M, D, u, diag, lag = _fit(spec, circuit, s, fit_series, step_tau, runs.step, profile, tau_p, tau_c)
    except np.linalg.LinAlgError as exc:  # degenerate traces (e.g. a node stuck): one line, not a traceback
        raise CalibrationError(
            f"the surrogate fit of {name} failed ({exc}): the SPICE traces are degenerate (a node constant or "
            "two nodes identical); check the runs' traces.png with `validate --save-traces`."
        ) from None
    t_fit = time.perf_counter() - t0
    observe = np.hstack([np.eye(spec.size), np.zeros((spec.size, M.shape[0] - spec.size))])
    device = LinearSDE(torch.tensor(M), torch.tensor(0.5 * (D + D.T)), torch.tensor(u))
    obs = torch.tensor(observe)

    # ---- checks: held-out runs, the symbolic model, the ideal array -------------------------------------
    sur_cov = device_covariance(device, obs)
    per_run = [
        _couplings(profile, _quick_fit(x, spec.family, step_tau, lag, diag, profile)) for x in fit_series
    ]
    deviations = drawn_deviations(spec, circuit)  # the calibration board's parts, its twin's and the fit's
    raw, seen = _generative_fit(profile, A_user, M, sur_cov, diag, per_run, deviations)
    base = _design_corrections(spec, circuit, profile, deviations)
    se = _jackknife_se(
        lambda rest: _fit(spec, circuit, s, rest, step_tau, runs.step, profile, tau_p, tau_c),
        fit_series,
        spec,
        profile,
        per_run,
        deviations,
    )
    fitted, kept = _resolved_corrections(raw, base, se, len(fit_series))
    fit_cov, _ = _run_covariances(fit_series)
    held_cov, held_per_run = _run_covariances(held_series)
    spread = run_spread(held_cov, held_per_run)
    model_cov = theory.covariance(PHASES)
    ideal_c = spec.ideal().build(s.seed)
    ideal_cov = Theory(linear_sde(ideal_c), ideal_c.noise_interval).covariance(PHASES)
    T_fit = sum(x.shape[0] * runs.step for x in fit_series)
    T_held = sum(x.shape[0] * runs.step for x in held_series)
    budget = theory.error_budget(T_fit, PHASES, seed=s.seed)
    held_ci95 = heldout_ci95(budget.covariance_rel_error_ci95, T_fit, T_held)
    order = spec.size if spec.family == "rc" else 2 * spec.size
    red = balanced_truncation(
        sde_full.M, sde_full.Q, sde_full.C, B=sde_full.B_z, D=sde_full.D, u=sde_full.u, time_unit=tau_p
    )
    red_fixed = balanced_truncation(
        sde_full.M,
        sde_full.Q,
        sde_full.C,
        B=sde_full.B_z,
        D=sde_full.D,
        u=sde_full.u,
        order=min(order, red.full_order),
        time_unit=tau_p,
    )
    sur_mean = (obs @ device.stationary_mean().double()).numpy()
    held_mean = np.mean(np.vstack(held_series), axis=0)
    fit_entry: dict[str, Any] = {
        "train_covariance_rel_error": _rel(sur_cov, fit_cov),
        "heldout_covariance_rel_error": _rel(sur_cov, held_cov),
        "spice_spread_rel": spread,
        "heldout_covariance_rel_error_ci95": held_ci95,
        "heldout_mean_abs_error_v": float(np.max(np.abs(sur_mean - held_mean))),
        "model_covariance_rel_error": _rel(sur_cov, model_cov),
        "model_covariance_rel_error_ci95": budget.covariance_rel_error_ci95,
        "ideal_vs_model_covariance_rel": _rel(ideal_cov, model_cov),
        "fit_runs": len(fit_ids),
        "duration_tau_observed": float(np.mean([x.shape[0] for x in runs.series]) * runs.step / tau_c),
        "heldout_runs": len(held_ids),
        "duration_tau": s.duration_tau,
        **seen,
        "colour_trace": base["noise_scale"],
        **{f"{k}_fitted": v for k, v in raw.items()},
        **{f"{k}_se": v for k, v in se.items()},
        **{f"{k}_kept": float(v) for k, v in kept.items()},
        "device": {
            "n": spec.size,
            "M": M.tolist(),
            "D": (0.5 * (D + D.T)).tolist(),
            "u": u.tolist(),
            "observe": observe.tolist(),
        },
    }
    seeds = [s.seed] + [1000 * s.seed + r + 1 for r in range(len(ok_idx) + len(runs.failures))]
    profile = dataclasses.replace(
        profile, fitted=fitted, fit=fit_entry, seeds=seeds, ngspice_version=ngspice_version()
    )
    # the generative model at the calibration size, with its own (profile-seeded) tolerance draw
    gen = profile.instantiate(torch.tensor(A_user))
    gen_cov = device_covariance(gen.sde, gen.observe)
    # the verdict: held-out error within its CI95 (the spread is reported), inside the linear region
    checks = {
        "heldout_within_ci95": bool(fit_entry["heldout_covariance_rel_error"] <= held_ci95),
        "heldout_within_spread": bool(fit_entry["heldout_covariance_rel_error"] <= spread),
        "region": region.ok,
    }
    if clipped is not None:  # measured and within the threshold (a clipped run was refused above)
        checks["clipping"] = True
    report: dict[str, Any] = {
        "name": name,
        "family": spec.family,
        "size": spec.size,
        "ngspice_version": profile.ngspice_version,
        "nonideal": spec.nonideal.to_dict(),
        "settings": dataclasses.asdict(s),
        "tau_s": tau_p,
        "noise_interval_s": circuit.noise_interval,
        "fit": {k: v for k, v in fit_entry.items() if k != "device"},
        "fitted": fitted,
        "fit_method": diag,
        "checks": checks,
        "pass": bool(checks["heldout_within_ci95"] and checks["region"]) and not runs.failures,
        "fail_reasons": [] if region.ok else [f"outside the op-amp's linear region: {region.describe()}"],
        "clipped_fraction": clipped,
        "linear_region": region.to_dict() | {"ok": region.ok, "describe": region.describe()},
        "runs_failed": runs.failures,
        "reduction": {"auto": red.report(), "surrogate_order": red_fixed.report()},
        "generative_covariance_rel_error": _rel(gen_cov, model_cov),
        "timings_s": {"spice": t_spice, "fit": t_fit, "total": None},
        "surrogate_covariance_V2": sur_cov,
        "heldout_covariance_V2": held_cov,
        "model_covariance_V2": model_cov,
    }
    report["timings_s"]["total"] = time.perf_counter() - t_start
    if profile_path is not None:
        report["profile"] = str(profile_path)
    if out_dir is not None:
        from thermotrain._safeio import output_dir, write_text_atomic

        with output_dir(out_dir, overwrite=overwrite, flag="--report") as out:
            _plots(out, name, held_series, device, obs, sur_cov, held_cov, step_tau, report)
            write_json(out / "report.json", report)
            write_text_atomic(out / "summary.txt", summary(report) + "\n")
            _html_report(out, report)  # after the plots: it embeds every PNG in out
            if profile_path is not None:  # last, inside: a failure here leaves no report folder either
                target, report_dir = Path(profile_path).absolute(), Path(out_dir).absolute()
                inside = report_dir in target.parents  # e.g. the demo's calibrate-rc8/profile.json
                save_profile(profile, out / target.relative_to(report_dir) if inside else profile_path)
    elif profile_path is not None:
        save_profile(profile, profile_path)
    return Calibration(profile, report, device, obs)


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(quantity, value, reference) rows of the report, for :func:`summary` and the HTML report."""
    f = report["fit"]
    red = report["reduction"]["surrogate_order"]
    rows = [
        (
            "held-out covariance rel. error",
            f["heldout_covariance_rel_error"],
            f"<= {f['spice_spread_rel']:.3g} (spread), CI95 {f['heldout_covariance_rel_error_ci95']:.3g}",
        ),
        ("SPICE run-to-run spread (1 run)", f["spice_spread_rel"], "held-out runs"),
        (
            "fit-run covariance rel. error",
            f["train_covariance_rel_error"],
            "(moment fit: ~0 by construction)",
        ),
        (
            "surrogate vs symbolic model",
            f["model_covariance_rel_error"],
            f"CI95 {f['model_covariance_rel_error_ci95']:.3g}",
        ),
        ("ideal array vs symbolic model", f["ideal_vs_model_covariance_rel"], "what the non-idealities do"),
        ("generative profile vs model", report["generative_covariance_rel_error"], "own tolerance draw"),
        (
            "tolerance seen by the fit",
            f["tolerance_seen"],
            f"design {report['nonideal']['tolerance']:g}; floor {f['tolerance_seen_floor'] or float('nan'):.2g}",
        ),
        (
            f"reduction {red['full_order']} -> {red['order']} states",
            red["covariance_rel_error"],
            f"H-inf bound {red['hinf_bound']:.2g} (white noise)",
        ),
    ]
    auto = report["reduction"]["auto"]
    if auto["order"] != red["order"]:
        rows.append(
            (
                f"reduction {auto['full_order']} -> {auto['order']} states",
                auto["covariance_rel_error"],
                "smallest order within 1e-3 (white noise)",
            )
        )
    if report.get("clipped_fraction") is not None:
        from thermotrain.netlists._validation import CLIP_THRESHOLD

        rows.append(
            (
                "clipped fraction (amplifier outputs)",
                report["clipped_fraction"],
                f"<= {CLIP_THRESHOLD:g} (linear)",
            )
        )
    return rows


def _how_kept(fit: dict[str, Any], key: str) -> str:
    """ " (fitted +- SE)" or " (design; fitted x +- SE not resolved)" for a correction of the report."""
    raw, se, kept = fit.get(f"{key}_fitted"), fit.get(f"{key}_se"), fit.get(f"{key}_kept")
    if raw is None or se is None:
        return ""
    if kept:
        return f" (fitted, SE {se:.2g})"
    return f" (design; fitted {raw:.4g} +- {se:.2g} not resolved)"


def summary(report: dict[str, Any]) -> str:
    """The calibration report as a table a person reads."""
    f = report["fit"]
    rows = _summary_rows(report)
    fitted = ", ".join(f"{k} = {v:.4g}{_how_kept(f, k)}" for k, v in report["fitted"].items())
    head = (
        f"{report['name']}: {report['family'].upper()} array, N = {report['size']}, ngspice "
        f"{report['ngspice_version']}, {f['fit_runs']} fit + {f['heldout_runs']} held-out runs x "
        f"{f['duration_tau']:g} tau, {report['timings_s']['total']:.1f} s -> {'PASS' if report['pass'] else 'FAIL'}"
        + "".join(f" ({r})" for r in report.get("fail_reasons", []))
        + f"\nfit: {report['fit_method']['method']}; fitted {fitted}"
    )
    return head + "\n" + table(rows, ("quantity", "value", "reference"))


def _html_report(out: Path, report: dict[str, Any]) -> None:
    """``out/report.html``: the verdict, the fit errors with their references, the fitted values, every plot
    in ``out`` and the settings (:func:`thermotrain._html.write_html_report`)."""
    from thermotrain._html import Section, Table, kv_table, write_html_report

    f = report["fit"]
    ok = bool(report["pass"])
    verdict = (
        f"{'PASS' if ok else 'FAIL'}: held-out covariance rel. error {f['heldout_covariance_rel_error']:.3g} "
        f"(CI95 {f['heldout_covariance_rel_error_ci95']:.3g})"
        + (f"; {len(report['runs_failed'])} SPICE run(s) failed" if report.get("runs_failed") else "")
        + "".join(f"; {r}" for r in report.get("fail_reasons", []))
    )
    sections = [
        Section(
            "Fit",
            text=f"{report['family'].upper()} array, N = {report['size']}: {f['fit_runs']} fit + "
            f"{f['heldout_runs']} held-out runs x {f['duration_tau']:g} tau; {report['fit_method']['method']}",
            tables=(
                Table(("quantity", "value", "reference"), tuple(_summary_rows(report))),
                kv_table(
                    {k: "pass" if v else "FAIL" for k, v in report["checks"].items()}, ("check", "result")
                ),
                kv_table(report["fitted"], ("fitted", "value")),
            ),
        )
    ]
    if report.get("runs_failed"):
        sections.append(Section("Failed runs", pre="\n".join(map(str, report["runs_failed"]))))
    settings = {
        k: report[k] for k in ("name", "family", "size", "settings", "nonideal", "tau_s", "timings_s")
    }
    if "profile" in report:
        settings["profile"] = report["profile"]
    write_html_report(
        out,
        f"thermotrain calibrate: {report['name']}",
        verdict,
        sections,
        settings=settings,
        known_versions={"ngspice": report.get("ngspice_version")},
        passed=ok,
    )


def _plots(out, name, held, device, obs, sur_cov, held_cov, step_tau, report) -> None:
    from thermotrain.models._linear_sde import simulate

    x = held[0]
    P = x.shape[1]
    show = list(range(min(P, 3)))
    n = min(x.shape[0], int(round(60 / step_tau)))
    gen = torch.Generator().manual_seed(0)
    x0 = torch.zeros(device.n, dtype=torch.float64)
    sim = simulate(device, x0, step_tau, n + int(round(20 / step_tau)), generator=gen)[0]
    y = (sim @ obs.T).numpy()[-n:]
    t = np.arange(n) * step_tau
    trace_panels(
        out / "traces.png",
        f"{name}: SPICE and calibrated-surrogate sample paths (independent noise)",
        "time (tau)",
        t,
        [("SPICE V{i} (held out)", x[:n], {"lw": 0.7}), ("surrogate V{i}", y, {"lw": 0.7, "alpha": 0.8})],
        show,
    )

    lags = np.arange(0, int(round(6 / step_tau)), max(1, int(round(0.1 / step_tau))))
    mu = np.mean(np.vstack(held), axis=0)
    emp = _lag_autocov(held, mu, lags)
    S = stationary_covariance(device.M, device.D).numpy()
    Mn, On = device.M.numpy(), obs.numpy()
    th = np.array([On @ sla.expm(Mn * (lag * step_tau)) @ S @ On.T for lag in lags])
    overlay_plot(
        out / "autocorrelation.png",
        f"{name}: held-out SPICE (solid) vs calibrated surrogate (dashed)",
        "lag (tau)",
        "autocovariance / surrogate variance",
        [
            c
            for i in show
            for c in (
                (lags * step_tau, emp[:, i, i] / th[0, i, i], {"lw": 1, "label": f"SPICE V{i}"}),
                (lags * step_tau, th[:, i, i] / th[0, i, i], {"color": "k", "ls": "--", "lw": 0.8}),
            )
        ],
    )

    covariance_heatmaps(
        out / "covariance.png",
        f"{name}: stationary covariance",
        held_cov,
        sur_cov,
        ("held-out SPICE", "surrogate"),
    )

    plt = pyplot()
    f = report["fit"]
    bars = [
        ("held-out vs\nsurrogate", f["heldout_covariance_rel_error"]),
        ("held-out CI95\n(theory)", f["heldout_covariance_rel_error_ci95"]),
        ("SPICE spread\n(1 run)", f["spice_spread_rel"]),
        ("surrogate vs\nsymbolic model", f["model_covariance_rel_error"]),
        ("model CI95\n(fit runs)", f["model_covariance_rel_error_ci95"]),
        ("ideal vs\nsymbolic model", f["ideal_vs_model_covariance_rel"]),
    ]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.bar([b[0] for b in bars], [max(b[1], 1e-6) for b in bars], color=["C0", "C1", "C1", "C2", "C1", "C3"])
    ax.set_yscale("log")
    ax.set_ylabel("relative Frobenius error of the covariance")
    ax.set_title(f"{name}: calibration errors")
    fig.tight_layout()
    fig.savefig(out / "fit_errors.png", dpi=110)
    plt.close(fig)


def load_validation_runs(directory: str | Path) -> tuple[Any, Any, CalibrationSettings]:
    """The spec, runs and settings of a ``thermotrain validate --save-traces`` directory (``report.json`` +
    ``traces.npz``), for :func:`calibrate` without new SPICE runs. Raises CalibrationError naming what is
    missing."""
    from thermotrain._safeio import load_json
    from thermotrain.circuits import ArraySpec
    from thermotrain.netlists import TRACES_FILE, load_traces

    d = Path(directory)
    hint = "run `thermotrain validate ... --save-traces --out DIR` first"
    if not d.is_dir():
        raise CalibrationError(f"--from {d}: not a folder; {hint}.")
    try:
        report = load_json(d / "report.json", "json", what=f"--from {d}/report.json")
        runs = load_traces(d / TRACES_FILE, what=f"--from {d}/{TRACES_FILE}")
    except InputError as exc:
        raise CalibrationError(f"{str(exc).rstrip('.')}; {hint}.") from None
    series = runs.series
    try:
        if not isinstance(report, dict):
            raise TypeError("report.json is not a JSON object")
        spec = ArraySpec.from_dict(report["spec"])
        duration, noise, seed = float(report["duration_tau"]), report["noise"], int(report["seed"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CalibrationError(
            f"--from {d}/report.json is not a validation report ({type(exc).__name__}: {str(exc)[:120]}); {hint}."
        ) from None
    if len(series) < 3:
        raise CalibrationError(
            f"{d} holds {len(series)} SPICE runs; calibration needs >= 3 (>= 1 fit, >= 2 held out). "
            "Validate with --runs 4 or more."
        )
    try:
        settings = CalibrationSettings(
            fit_runs=len(series) - max(2, len(series) // 2),
            heldout_runs=max(2, len(series) // 2),
            duration_tau=duration,
            noise=noise,
            seed=seed,
        )
    except InputError as exc:
        raise CalibrationError(f"--from {d}/report.json: {exc}") from None
    return spec, runs, settings
