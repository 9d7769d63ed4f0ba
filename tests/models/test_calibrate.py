"""Calibration against real ngspice runs, and model-order reduction.

Tolerances come from the theory: the held-out and model comparisons use the CI95 the symbolic model's
autocovariance implies for the observed time (``Theory.error_budget``), never a fudge factor."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest
import scipy.linalg as sla
import torch

from thermotrain._errors import CalibrationError
from thermotrain.circuits import NonIdealities, OpAmp, from_matrix, linear_sde, preset
from thermotrain.models import (
    CalibrationSettings,
    balanced_truncation,
    calibrate,
    load_profile,
    stationary_covariance,
)

# Strong, known non-idealities, chosen before any SPICE run from the theory alone: the ideal array's covariance
# is 0.52 (relative Frobenius) from this design's, against a CI95 of 0.08 for 3 x 800 tau of fit data.
STRONG = NonIdealities(
    tolerance=0.1,
    coupling_bits=3,
    parasitic_capacitance=2e-12,
    opamp=OpAmp(open_loop_gain=10.0, output_resistance=10.0),
)


def _rc4(nonideal: NonIdealities = STRONG):
    A = np.array(
        [[2.0, -0.6, 0.3, 0.0], [-0.6, 1.5, -0.4, 0.2], [0.3, -0.4, 1.2, -0.3], [0.0, 0.2, -0.3, 1.0]]
    )
    return from_matrix(A, b=[0.5, -0.2, 0.1, 0.3], family="rc", nonideal=nonideal)


@pytest.mark.spice
def test_calibrated_rc_surrogate_reproduces_injected_nonidealities(tmp_path) -> None:
    spec = _rc4()
    settings = CalibrationSettings(fit_runs=3, heldout_runs=3, duration_tau=800, seed=3)
    cal = calibrate(
        spec, settings, out_dir=tmp_path / "rep", profile_path=tmp_path / "p.json", progress=False
    )
    f = cal.report["fit"]
    # the non-idealities matter: the ideal array is far outside the statistical error of the fit ...
    assert f["ideal_vs_model_covariance_rel"] > 3 * f["model_covariance_rel_error_ci95"]
    # ... and the fitted surrogate reproduces the non-ideal symbolic model within it
    assert f["model_covariance_rel_error"] <= f["model_covariance_rel_error_ci95"]
    assert f["heldout_covariance_rel_error"] <= f["heldout_covariance_rel_error_ci95"]
    assert cal.report["pass"]
    # finite gain leaks: the fitted diagonal shift / drift scale move the way g/A0 says (a leak, δ > 0 in
    # the nominal model already holds g/A0, so the correction stays small against it)
    for name in ("traces.png", "autocorrelation.png", "covariance.png", "fit_errors.png", "report.json"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    # the profile round-trips and carries the fitted device
    prof = load_profile(tmp_path / "p.json")
    assert prof.calibrated and prof.ngspice_version
    sde, obs = prof.calibration_device()
    S = obs @ stationary_covariance(sde.M, sde.D) @ obs.T
    np.testing.assert_allclose(S.numpy(), cal.report["surrogate_covariance_V2"], rtol=1e-9, atol=1e-15)


@pytest.mark.spice
def test_calibrated_rlc_surrogate_matches_held_out_runs(tmp_path) -> None:
    spec = preset("rlc8", size=4, nonideal=NonIdealities(tolerance=0.05, coupling_bits=4))
    settings = CalibrationSettings(fit_runs=3, heldout_runs=3, duration_tau=300, seed=1)
    cal = calibrate(spec, settings, profile_path=tmp_path / "rlc.json", progress=False)
    f = cal.report["fit"]
    assert f["heldout_covariance_rel_error"] <= f["heldout_covariance_rel_error_ci95"]
    assert f["model_covariance_rel_error"] <= f["model_covariance_rel_error_ci95"]
    # the fitted damping correction and noise scale are near the design (the model is the right one)
    assert abs(cal.profile.fitted["diag_shift"]) < 0.1
    assert 0.9 < cal.profile.fitted["noise_scale"] < 1.1
    assert load_profile(tmp_path / "rlc.json").family == "rlc"


class _FailingExecutor(cf.Executor):
    """Every job fails as if its ngspice process had crashed (a faked failure, no simulator numbers)."""

    def submit(self, fn, /, *args, **kwargs):  # noqa: ANN001
        fut: cf.Future = cf.Future()
        fut.set_exception(RuntimeError("ngspice crashed (simulated)"))
        return fut


def test_calibration_reports_failed_runs_clearly() -> None:
    with pytest.raises(CalibrationError, match="held-out runs that succeed"):
        calibrate(
            _rc4(NonIdealities()),
            CalibrationSettings(duration_tau=10),
            executor=_FailingExecutor(),
            progress=False,
        )


def test_calibration_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="heldout_runs"):
        CalibrationSettings(heldout_runs=1)
    with pytest.raises(ValueError, match="duration"):
        CalibrationSettings(duration_tau=float("nan"))
    with pytest.raises(ValueError, match="noise"):
        CalibrationSettings(noise="pink")


def test_balanced_truncation_keeps_amplifier_poles_that_carry_noise() -> None:
    spec = preset("rc8", corner="integrated")  # single-pole op-amps: 48 states for 8 cells
    c = spec.build(0)
    sde = linear_sde(c)
    auto = balanced_truncation(sde.M, sde.Q, sde.C, B=sde.B_z, D=sde.D, u=sde.u, time_unit=c.time_constant)
    assert auto.full_order == 48 and auto.order < 48
    assert auto.covariance_rel_error <= 1e-3 and auto.mean_rel_error <= 1e-3
    # cutting to one state per cell drops wideband amplifier noise: a large covariance error, reported
    eight = balanced_truncation(
        sde.M, sde.Q, sde.C, B=sde.B_z, D=sde.D, u=sde.u, order=8, time_unit=c.time_constant
    )
    assert eight.covariance_rel_error > 0.1
    # the reported error is the real one: recompute it from the reduced model's own covariance
    full = (
        sde.C
        @ sla.solve_continuous_lyapunov(sde.M * c.time_constant, -(sde.Q @ sde.Q.T) * c.time_constant)
        @ sde.C.T
    )
    assert (
        abs(
            np.linalg.norm(eight.output_covariance() - full) / np.linalg.norm(full)
            - eight.covariance_rel_error
        )
        < 1e-6
    )


def test_balanced_truncation_error_is_within_the_hankel_bound() -> None:
    spec = preset("rc8", size=4, corner="integrated")
    c = spec.build(0)
    sde = linear_sde(c)
    red = balanced_truncation(sde.M, sde.Q, sde.C, order=6, time_unit=c.time_constant)
    M, Q = sde.M * c.time_constant, sde.Q * np.sqrt(c.time_constant)
    worst = 0.0
    for w in np.geomspace(1e-3, 1e4, 400):
        G = sde.C @ np.linalg.solve(1j * w * np.eye(M.shape[0]) - M, Q)
        Gr = red.C @ np.linalg.solve(1j * w * np.eye(red.order) - red.M, red.Q)
        worst = max(worst, float(np.linalg.norm(G - Gr, 2)))
    assert worst <= red.hinf_bound * (1 + 1e-6)
    assert red.hinf_bound > 0  # a real truncation, not the identity


def test_balanced_truncation_rejects_an_unstable_drift() -> None:
    with pytest.raises(ValueError, match="stable"):
        balanced_truncation(np.eye(2), np.eye(2), np.eye(2))


def test_profile_device_field_must_be_well_formed(tmp_path) -> None:
    from thermotrain._errors import ProfileError
    from thermotrain.models import HardwareProfile

    p = HardwareProfile.from_spec("rc")
    assert p.calibration_device() is None
    bad = HardwareProfile.from_spec("rc")
    object.__setattr__(
        bad, "fit", bad.fit | {"device": {"M": [[-1.0]], "D": [[1.0]], "u": [0.0], "observe": [[1.0, 0.0]]}}
    )
    with pytest.raises(ProfileError, match="observe"):
        bad.calibration_device()
    torch.manual_seed(0)


@pytest.mark.spice
def test_calibrate_from_a_validation_directory_reuses_its_runs(tmp_path) -> None:
    from thermotrain.cli import main

    spec_args = ["--preset", "rlc8", "--size", "3", "--seed", "2"]
    rc = main(
        [
            "validate",
            *spec_args,
            "--runs",
            "4",
            "--duration",
            "200",
            "--save-traces",
            "--quiet",
            "--out",
            str(tmp_path / "v"),
        ]
    )
    assert rc in (0, 3) and (tmp_path / "v" / "traces.npz").exists()
    rc = main(["calibrate", "--from", str(tmp_path / "v"), "--out", str(tmp_path / "p.json")])
    assert rc in (0, 3)
    prof = load_profile(tmp_path / "p.json")
    report = __import__("json").loads((tmp_path / "p" / "report.json").read_text())
    assert report["fit"]["fit_runs"] == 2 and report["fit"]["heldout_runs"] == 2
    assert prof.family == "rlc" and prof.seeds[0] == 2
    assert report["fit"]["heldout_covariance_rel_error"] <= report["fit"]["heldout_covariance_rel_error_ci95"]


def test_calibrate_from_a_folder_without_traces_says_what_to_run(tmp_path) -> None:
    from thermotrain.models._calibrate import load_validation_runs

    with pytest.raises(CalibrationError, match="--save-traces"):
        load_validation_runs(tmp_path)


def test_likelihood_refinement_recovers_a_white_noise_drift() -> None:
    """On a Markov (white-noise) OU path the exact-likelihood refinement must raise the likelihood and
    recover the drift: with slowest rate 0.5/τ over 10⁴ τ the relative error of the drift is about
    sqrt(2/(λ_min T)) ≈ 2 %; 10 % is 5 standard errors."""
    from thermotrain.models import LinearSDE, simulate
    from thermotrain.models._calibrate import _fit_rc

    A = torch.tensor([[1.0, 0.3, 0.0], [0.2, 0.8, -0.1], [0.0, -0.2, 0.5]], dtype=torch.float64)
    sde = LinearSDE(-A, 0.02 * torch.eye(3, dtype=torch.float64), torch.tensor([0.1, 0.0, -0.05]))
    X = simulate(sde, None, 0.1, 100_000, generator=torch.Generator().manual_seed(1))[0].numpy()
    series = [X[i * 25_000 : (i + 1) * 25_000] for i in range(4)]
    M, D, u, diag = _fit_rc(series, 0.1, 5, mle=True, max_iter=20)
    assert diag["nll_end"] <= diag["nll_start"] and "likelihood" in diag["method"]
    assert np.linalg.norm(M + A.numpy()) / np.linalg.norm(A.numpy()) < 0.1
    assert np.max(np.linalg.eigvals(M).real) < 0


@pytest.mark.parametrize("name", ["rc8", "rlc8"])
def test_corrections_are_fitted_against_the_calibration_boards_twin(name: str) -> None:
    """A correction describes the design, not one board's 1 % draw: given the covariance (and drift) of the
    calibration board's own twin, the fit returns the identity corrections to 1e-9; the same data read
    against the nominal device (tolerances off) give a noise scale that absorbs the draw (rlc8: 1.4 %)."""
    from thermotrain.models._calibrate import _couplings, _design_profile, _generative_fit, device_covariance
    from thermotrain.netlists._profile_check import drawn_deviations

    spec = preset(name, corner="board")
    circuit = spec.build(0)
    p = _design_profile(spec, circuit, name)
    dev = drawn_deviations(spec, circuit)
    twin = p.instantiate(torch.tensor(spec.target), kappa0=spec.kappa0, deviations=dev)
    M, cov = twin.sde.M.numpy(), device_covariance(twin.sde, twin.observe)
    per_run = [_couplings(p, M if name == "rc8" else cov)]
    diag = {"diag_shift": 0.0}
    fitted, _ = _generative_fit(p, spec.target, M, cov, diag, per_run, dev)
    assert fitted == pytest.approx({"drift_scale": 1.0, "noise_scale": 1.0, "diag_shift": 0.0}, abs=1e-9)
    against_nominal, _ = _generative_fit(p, spec.target, M, cov, diag, per_run)
    assert abs(against_nominal["noise_scale"] - 1.0) > 3e-3
