"""``validate --profile P``: does hardware profile P predict the SPICE device at this size?

Two questions, both on the stationary covariance (V^2) of the array's outputs:

- **instance** (a digital twin of this board): P instantiated with the element values the netlist itself
  drew (:func:`drawn_deviations`: numpy, ``default_rng(seed)`` over every R, C, L in element order, the
  draw of :meth:`thermotrain.circuits.ArraySpec.build`), handed to
  :meth:`HardwareProfile.instantiate` as :class:`~thermotrain.models._profile.ElementDeviations` instead
  of the profile's own torch draw (``instance_seed``). ``profile_covariance_rel_error`` =
  ||Sigma_spice - Sigma_P||_F / ||Sigma_P||_F, against its CI95 derived exactly as validate derives its own
  (:meth:`Theory.error_budget` of the total observed time, here on P's prediction: the null hypothesis is
  "P is right"). PASS when the error is within the CI95.
- **population** (P's prediction interval over tolerance draws): ``PROFILE_DRAWS`` instances with
  ``instance_seed`` 0..PROFILE_DRAWS-1 (P's own convention), e_k = ||Sigma_k - Sigma_nom|| / ||Sigma_nom||
  against P's nominal device (tolerances off); the SPICE device's e_spice = ||Sigma_spice - Sigma_nom|| /
  ||Sigma_nom|| is "inside" when it lies in [q2.5 - ci, q97.5 + ci] (ci: the SPICE covariance's CI95 --
  by the triangle inequality |e_spice - e_device| <= ||Sigma_spice - Sigma_device|| / ||Sigma_nom||, which
  is <= ci with 95 % probability). Reported beside the instance verdict; it does not decide the exit code.

Noise colour: P's surrogate is driven by white noise; SPICE's generator holds samples every NT and
interpolates linearly. The prediction here gives P the colour: P's instance is run through the same
sampled-noise theory as the circuit (:class:`Theory` with the circuit's NT, averaged over validate's output
phases), divided by ``colour_trace`` r_cal: the share of the colour P's ``noise_scale`` already absorbed
at calibration (calibration fits noise_scale against a white model, so it absorbs the colour's trace on
the calibration device; r_cal = <Sigma_sampled, Sigma_white> / <Sigma_white, Sigma_white> of P's fitted
calibration device ``fit.device`` at P's ``noise_interval_s``; 1 for a profile without one). The error P
makes when used white (as training uses it) is reported as ``white_noise_rel_error`` (||Sigma_white -
Sigma_P|| / ||Sigma_P||), next to the SPICE error of the white prediction.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
import torch

from thermotrain._errors import InputError
from thermotrain.circuits import ArraySpec, Capacitor, Circuit, Resistor, Theory
from thermotrain.circuits._mna import CircuitSDE

#: tolerance draws of P's population (prediction interval 2.5-97.5 %: 50 draws put about one draw
#: beyond each end; the quantiles carry a sampling error of about one draw's spacing there).
PROFILE_DRAWS = 50
PHASES = (0.0, 0.5)  # validate's output grid: NT/2 (netlists._validation.PHASES)


def drawn_deviations(spec: ArraySpec, circuit: Circuit) -> Any:
    """The element values ``circuit`` (= ``spec.build(seed)``) drew, as the relative deviations a profile
    takes (:class:`thermotrain.models._profile.ElementDeviations`), so the profile's instance holds this
    board's parts:

    RC: coupling_ij = (R_u / R_ij) g_inv,j / |A_dev,ij| - 1, R_ij the drawn crossbar resistor (its switch's
    on-resistance included), g_inv,j = R_ib,j / R_ia,j the drawn gain of column j's inverter for a negative
    entry (1 for a positive one); capacitor_i = C_f,i / C - 1; offset_v_i = the op-amp's input offset (V).
    RLC: coupling = Cm_drawn / (c_u A_dev) - 1 on the non-zero entries, Cm_drawn the Maxwell matrix of the
    drawn cell and coupling capacitors (diagonal C_i + sum_j C_ij, off-diagonal -C_ij);
    series_resistance_i = (R_i + R_L,i) / (R + R_L) - 1 and inductance_i = L_i / L - 1 (RLC).
    noise_gain_i: the generator channel's drawn gain (:meth:`ArraySpec.generator_gains`) - 1; RLC times
    R_i / R (its current flows through the drawn series resistor R_i). Not carried (the profile's n-state
    model has no place for them): RC input resistors R_in (they set the mean, not the covariance), the
    capacitors' ESR and leakage draws; parasitics and switch capacitance enter through the profile's own
    ``parasitic_capacitance_f`` and ``switch_capacitance_f``."""
    from thermotrain.models._profile import ElementDeviations

    n = spec.size
    A = spec.device_matrix
    els = {e.name: e for e in circuit.elements}
    dev = np.zeros((n, n))
    cap = np.zeros(n)
    offset = series = induct = None
    gain = spec.generator_gains(circuit.meta["seed"])
    if spec.family == "rc":
        ru = spec.unit_resistance
        inv = np.ones(n)
        for j in range(n):
            if f"Ria{j}" in els:
                inv[j] = els[f"Rib{j}"].ohms / els[f"Ria{j}"].ohms
        for name, e in els.items():
            m = re.fullmatch(r"R(\d+)_(\d+)", name)
            if m and isinstance(e, Resistor):
                i, j = int(m[1]), int(m[2])
                real = ru / e.ohms * (inv[j] if A[i, j] < 0 else 1.0)
                dev[i, j] = real / abs(A[i, j]) - 1.0
            m = re.fullmatch(r"Cf(\d+)", name)
            if m and isinstance(e, Capacitor):
                cap[int(m[1])] = e.farads / spec.capacitance - 1.0
        offset = torch.full((n,), float(spec.nonideal.opamp.input_offset), dtype=torch.float64)
    else:
        Cm = np.zeros((n, n))
        for name, e in els.items():
            m = re.fullmatch(r"C(\d+)(?:_(\d+))?", name)
            if not (m and isinstance(e, Capacitor)):
                continue
            i = int(m[1])
            if m[2] is None:
                Cm[i, i] += e.farads
            else:
                j = int(m[2])
                Cm[i, i] += e.farads
                Cm[j, j] += e.farads
                Cm[i, j] = Cm[j, i] = -e.farads
        nz = np.abs(A) > 0
        dev[nz] = Cm[nz] / (spec.unit_capacitance * A[nz]) - 1.0
        dev = 0.5 * (dev + dev.T)
        r_nom, dcr = spec.series_resistance, spec.nonideal.inductor_resistance
        r = np.array([els[f"R{i}"].ohms for i in range(n)])
        r_l = np.array([els[f"RL{i}"].ohms if f"RL{i}" in els else 0.0 for i in range(n)])
        series = torch.tensor((r + r_l) / (r_nom + dcr) - 1.0, dtype=torch.float64)
        induct = torch.tensor(
            [els[f"L{i}"].henries / spec.inductance - 1.0 for i in range(n)], dtype=torch.float64
        )
        gain = gain * r / r_nom
    return ElementDeviations(
        coupling=torch.tensor(dev, dtype=torch.float64),
        capacitor=torch.tensor(cap, dtype=torch.float64),
        offset_v=offset,
        noise_gain=torch.tensor(gain - 1.0, dtype=torch.float64),
        series_resistance=series,
        inductance=induct,
    )


def profile_theory(sde: Any, observe: torch.Tensor, tau_s: float, noise_interval: float | None) -> Theory:
    """:class:`Theory` (SI units: s, V) of a profile's surrogate ``sde`` (a LinearSDE in units of ``tau_s``,
    read through ``observe``), driven by noise sampled every ``noise_interval`` s (None: white). The
    diffusion is factored into independent sources (eigenvectors of D), which sampling leaves independent."""
    M = sde.M.double().numpy() / tau_s
    D = 0.5 * (sde.D.double().numpy() + sde.D.double().numpy().T) / tau_s
    lam, U = np.linalg.eigh(D)
    keep = lam > 1e-14 * max(lam.max(), 1e-300)
    k = M.shape[0]
    C = observe.double().numpy()
    csde = CircuitSDE(
        M=M,
        B_z=np.eye(k) / tau_s,
        u=sde.u.double().numpy(),
        K_z=U[:, keep],
        psd=lam[keep],
        C=C,
        D=np.zeros((C.shape[0], k)),
        states=tuple(f"z{i}" for i in range(k)),
        outputs=tuple(f"y{i}" for i in range(C.shape[0])),
        inputs=tuple(f"u{i}" for i in range(k)),
        noises=tuple(f"w{i}" for i in range(int(keep.sum()))),
        state_nodes=tuple((f"z{i}", "") for i in range(k)),
    )
    return Theory(csde, noise_interval)


def sampled_over_white(sde: Any, observe: torch.Tensor, tau_s: float, noise_interval: float) -> float:
    """<Σ_sampled, Σ_white> / <Σ_white, Σ_white>: the scalar that best maps the covariance ``sde`` gives with
    white noise onto the one it gives driven by noise sampled every ``noise_interval`` s (validate's
    phases): the trace of the noise colour a white model's noise scale absorbs."""
    th = profile_theory(sde, observe, tau_s, noise_interval)
    white, sampled = th.covariance(None), th.covariance(PHASES)
    return float(np.sum(sampled * white) / np.sum(white * white))


def colour_trace(profile: Any) -> float:
    """r_cal (module docs): how much of the sampled-noise colour the profile's ``noise_scale`` absorbed at
    calibration: ``fit.colour_trace`` (calibrate's design value, written since the corrections are kept
    only where the SPICE data resolve them), else from its fitted calibration device at its
    ``noise_interval_s``; 1 without either."""
    r = profile.fit.get("colour_trace")  # a number or null: the profile's schema checked it
    if r is not None and r > 0:
        return float(r)
    cal = profile.calibration_device()
    if cal is None or profile.noise_interval_s is None:
        return 1.0
    return sampled_over_white(*cal, profile.tau_s, float(profile.noise_interval_s))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def profile_prediction(
    profile: Any, spec: ArraySpec, noise_interval: float, **instantiate: Any
) -> tuple[np.ndarray, np.ndarray, Theory]:
    """The profile's n-cell device for ``spec``'s matrix (``instantiate`` keywords: ``deviations`` or
    ``instance_seed``): (covariance with the sampled noise validate sees on its NT/2 grid, divided by the
    profile's colour trace; white-noise covariance; the device's Theory), V^2."""
    A = torch.tensor(spec.target, dtype=torch.float64)
    inst = profile.instantiate(A, kappa0=spec.kappa0, **instantiate)
    th = profile_theory(inst.sde, inst.observe, profile.tau_s, noise_interval)
    return th.covariance(PHASES) / colour_trace(profile), th.covariance(None), th


def twin_prediction(profile: Any, spec: ArraySpec, circuit: Circuit) -> tuple[np.ndarray, np.ndarray, Theory]:
    """:func:`profile_prediction` of the twin: the profile with the netlist's own drawn parts."""
    return profile_prediction(
        profile, spec, circuit.noise_interval, deviations=drawn_deviations(spec, circuit)
    )


def compare_profile(
    profile: Any,
    spec: ArraySpec,
    circuit: Circuit,
    spice_cov: np.ndarray,
    total_time: float,
    *,
    seed: int = 0,
    draws: int = PROFILE_DRAWS,
    label: str = "profile",
) -> dict[str, Any]:
    """The instance and population comparison of ``profile`` with the SPICE covariance ``spice_cov`` (V^2)
    of ``circuit`` = ``spec.build(seed)`` observed for ``total_time`` s (module docs). Returns the dict
    ``report.json`` holds under ``"profile"``. Cost: PROFILE_DRAWS + 2 small Lyapunov solves and one
    error budget of the profile's n-state model (n^2 Sylvester solves)."""
    if profile.family != spec.family:
        raise InputError(
            f"--profile {label} describes a {profile.family.upper()} array but the validated array is "
            f"{spec.family.upper()}; pass a profile of the same family (rc8 for --preset rc8, rlc8 for rlc8)."
        )
    nt = circuit.noise_interval
    cov_p, cov_white, th = twin_prediction(profile, spec, circuit)
    budget = th.error_budget(total_time, PHASES, seed=seed)
    err = _rel(spice_cov, cov_p)
    ci = budget.covariance_rel_error_ci95
    instance_pass = bool(err <= ci)

    nominal = dataclasses.replace(
        profile, component_stats=profile.component_stats | {"tolerance": 0.0, "capacitor_tolerance": 0.0}
    )
    cov_nom = profile_prediction(nominal, spec, nt)[0]
    e_draws = np.array(
        [_rel(profile_prediction(profile, spec, nt, instance_seed=k)[0], cov_nom) for k in range(draws)]
    )
    lo, hi = (float(x) for x in np.quantile(e_draws, [0.025, 0.975]))
    e_spice = _rel(spice_cov, cov_nom)
    e_twin = _rel(cov_p, cov_nom)
    inside = bool(max(lo - ci, 0.0) <= e_spice <= hi + ci)
    return {
        "name": label,
        "calibrated_size": profile.circuit.get("n"),
        "calibrated_corner": profile.circuit.get("nonideal"),
        "fitted": dict(profile.fitted),
        "noise_interval_s": nt,
        "colour_trace": colour_trace(profile),
        "instance": {
            "covariance_rel_error": err,
            "covariance_rel_error_ci95": ci,
            "covariance_rel_error_expected": budget.covariance_rel_error_expected,
            "pass": instance_pass,
            "white_noise_rel_error": _rel(cov_white, cov_p),
            "white_covariance_rel_error": _rel(spice_cov, cov_white),
            "deviations": "the netlist's own drawn element values (numpy, default_rng(seed), every R, C, L)",
        },
        "population": {
            "draws": draws,
            "instance_seeds": [0, draws - 1],
            "error_vs_nominal_interval95": [lo, hi],
            "error_vs_nominal_median": float(np.median(e_draws)),
            "spice_error_vs_nominal": e_spice,
            "twin_error_vs_nominal": e_twin,
            "spice_ci95": ci,
            "inside": inside,
        },
        "profile_covariance_V2": cov_p,
    }


def profile_lines(report: dict[str, Any]) -> list[str]:
    """The instance verdict line (PASS/FAIL) and the population line, or [] without ``--profile``."""
    p = report.get("profile")
    if not p:
        return []
    i, q = p["instance"], p["population"]
    lo, hi = q["error_vs_nominal_interval95"]
    return [
        f"profile {p['name']} (instance: this board's parts): {'PASS' if i['pass'] else 'FAIL'} "
        f"(covariance rel. error {i['covariance_rel_error']:.3g} {'<=' if i['pass'] else '>'} CI95 "
        f"{i['covariance_rel_error_ci95']:.3g}; used with white noise the profile moves it by "
        f"{i['white_noise_rel_error']:.2g})",
        f"profile {p['name']} (population: {q['draws']} tolerance draws): SPICE "
        f"{'inside' if q['inside'] else 'OUTSIDE'} the prediction interval (error vs nominal "
        f"{q['spice_error_vs_nominal']:.3g}, interval95 [{lo:.3g}, {hi:.3g}] +- CI95 {q['spice_ci95']:.3g})",
    ]
