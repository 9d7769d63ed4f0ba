"""Thermodynamic linear algebra: exact / ideal / hardware-profile backends of solve and inverse.

Statistical checks use standard errors derived from the sample count (5 sigma per entry), see
tests/models/test_linear_sde.py for the convention.
"""

import math

import pytest
import torch

from thermotrain import CircuitError
from thermotrain.models import (
    HardwareProfile,
    LinearSDE,
    inverse,
    solve,
    state_moments,
    stationary_covariance,
    time_average_moments,
)
from thermotrain.models._linalg import _ideal_moments

F64 = torch.float64
Z = 5.0


def spd(n: int, seed: int, lam_min: float = 0.2, lam_max: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    lam = torch.linspace(lam_min, lam_max, n, dtype=F64)
    A = Q @ torch.diag(lam) @ Q.T
    return 0.5 * (A + A.T)


def ar1_cov_se(lam: torch.Tensor, kappa0: float, dt: float, n_samples: int) -> torch.Tensor:
    """SE of the zero-mean sample covariance (1/N)Σ z zᵀ of independent stationary AR(1) modes
    z_i (variance v_i = κ0/λ_i, lag-1 correlation φ_i = e^{-λ_i dt}), exact for N samples:
    Var Ĉ_ij = (1 + δ_ij) v_i v_j (1/N²) Σ_{k,l} (φ_i φ_j)^{|k-l|}."""
    v = kappa0 / lam
    r = torch.exp(-lam * dt)[:, None] * torch.exp(-lam * dt)[None, :]
    d = torch.arange(1, n_samples, dtype=F64)
    s = n_samples + 2 * ((n_samples - d) * r[..., None] ** d).sum(-1)
    var = (1 + torch.eye(len(lam), dtype=F64)) * v[:, None] * v[None, :] * s / n_samples**2
    return var.sqrt()


# ------------------------------------------------------------------------------------------ validation
def test_exact_backend_matches_torch_and_costs_nothing() -> None:
    A, b = spd(5, 0), torch.randn(5, 3, dtype=F64)
    r = solve(A, b)
    torch.testing.assert_close(r.x, torch.linalg.solve(A, b))
    assert (r.analog_time_tau, r.values_loaded, r.values_read) == (0.0, 0, 0)
    torch.testing.assert_close(inverse(A).inverse, torch.linalg.inv(A))
    assert solve(A, b[:, 0]).x.shape == (5,)


def test_non_spd_matrix_raises_naming_eigenvalue_and_damping() -> None:
    A = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)  # eigenvalues 3, -1
    with pytest.raises(CircuitError, match=r"smallest eigenvalue is -1.*damping"):
        solve(A, torch.ones(2, dtype=F64), backend="ideal")
    with pytest.raises(ValueError, match="non-finite"):
        inverse(torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]), backend="ideal")
    with pytest.raises(CircuitError, match="symmetric"):
        solve(torch.tensor([[1.0, 0.5], [0.0, 1.0]]), torch.ones(2))
    with pytest.raises(ValueError, match="kappa0"):
        inverse(spd(2, 0), backend="ideal", kappa0=0.0)
    with pytest.raises(ValueError, match="backend"):
        solve(spd(2, 0), torch.ones(2, dtype=F64), backend="profile.json")
    with pytest.raises(ValueError, match="burn_in"):
        solve(spd(2, 0), torch.ones(2, dtype=F64), backend="ideal", readout="average", t=5.0, burn_in=5.0)


# ------------------------------------------------------------------------------------------ ideal device
def test_ideal_state_readout_is_the_transient_mean_when_noiseless() -> None:
    A, b, x0 = spd(4, 1), torch.randn(4, 2, dtype=F64), torch.randn(4, 2, dtype=F64)
    t = 1.7
    r = solve(A, b, backend="ideal", t=t, x0=x0)
    xs = torch.linalg.solve(A, b)
    torch.testing.assert_close(r.x, xs + torch.linalg.matrix_exp(-A * t) @ (x0 - xs))
    assert (r.analog_time_tau, r.values_loaded, r.values_read) == (t, 4 * 5 // 2 + 8, 8)


def test_ideal_eigen_closed_forms_match_the_generic_surrogate() -> None:
    A, b, x0, k0 = spd(5, 2, lam_min=1e-3), torch.randn(5, dtype=F64), torch.randn(5, dtype=F64), 0.3
    lam, U = torch.linalg.eigh(A)
    sde = LinearSDE(-A, 2 * k0 * torch.eye(5, dtype=F64), b)
    for readout, t, burn in (("state", 2.0, 0.0), ("average", 5.3, 1.3), ("average", 1e-3, 0.0)):
        if readout == "state":
            m, C = state_moments(sde, x0, t)
        else:
            m, C = time_average_moments(sde, x0, burn, t - burn)
        mm, vv = _ideal_moments(lam, (U.T @ b)[:, None], (U.T @ x0)[:, None], t, k0, readout, burn)
        torch.testing.assert_close(U @ mm[:, 0], m, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(U @ torch.diag(vv[:, 0]) @ U.T, C, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("readout", ["state", "average"])
def test_ideal_solve_noise_matches_its_law(readout: str) -> None:
    n, k, k0, t, burn = 3, 4000, 0.05, 6.0, 1.0
    A = spd(n, 3)
    b = torch.randn(n, dtype=F64)
    B = b[:, None].expand(n, k)
    r = solve(
        A,
        B,
        backend="ideal",
        t=t,
        kappa0=k0,
        readout=readout,
        burn_in=burn if readout == "average" else 0.0,
        generator=torch.Generator().manual_seed(0),
    )
    sde = LinearSDE(-A, 2 * k0 * torch.eye(n, dtype=F64), b)
    m, C = (
        state_moments(sde, None, t) if readout == "state" else time_average_moments(sde, None, burn, t - burn)
    )
    X = r.x.T
    assert ((X.mean(0) - m).abs() <= Z * (torch.diagonal(C) / k).sqrt()).all()
    v = torch.diagonal(C)
    se = ((v[:, None] * v[None, :] + C**2) / k).sqrt()
    assert ((X.T.cov(correction=0) - C).abs() <= Z * se + 1e-15).all()


def test_ideal_inverse_error_is_within_its_standard_error() -> None:
    n, k0, dt, t = 3, 0.02, 0.5, 3000.0
    A = spd(n, 4)
    r = inverse(
        A, backend="ideal", t=t, kappa0=k0, dt=dt, burn_in=None, generator=torch.Generator().manual_seed(1)
    )
    lam, U = torch.linalg.eigh(A)
    N = round(t / dt) + 1
    est = U.T @ r.inverse @ U * k0  # sample covariance of the modes
    assert ((est - torch.diag(k0 / lam)).abs() <= Z * ar1_cov_se(lam, k0, dt, N)).all()
    assert (r.analog_time_tau, r.values_loaded, r.values_read) == (t, 6, n * N)


def test_ideal_inverse_with_burn_in_from_zero() -> None:
    A = spd(3, 5, lam_min=0.5)
    r = inverse(
        A, backend="ideal", t=2020.0, burn_in=20.0, dt=0.5, generator=torch.Generator().manual_seed(2)
    )
    lam, U = torch.linalg.eigh(A)
    est = U.T @ r.inverse @ U * 1e-2
    # e^{-2 λmin 20} ≈ 2e-9: the start is forgotten
    assert ((est - torch.diag(1e-2 / lam)).abs() <= Z * ar1_cov_se(lam, 1e-2, 0.5, 4001)).all()


# ------------------------------------------------------------------------------------------ profile backend
def test_ideal_profile_builds_the_scaled_ideal_device() -> None:
    A = spd(4, 6)
    p = HardwareProfile.from_spec("rc", kappa0=0.03)
    inst = p.instantiate(A)
    alpha = 1.0 / float(A.abs().max())
    assert inst.matrix_scale == pytest.approx(alpha)
    torch.testing.assert_close(inst.sde.M, -alpha * A)
    torch.testing.assert_close(inst.sde.D, 0.06 * torch.eye(4, dtype=F64))
    # an explicit kappa0 is honoured, never silently replaced by the profile's
    assert p.instantiate(A, kappa0=0.5).kappa0 == 0.5
    torch.testing.assert_close(p.instantiate(A, kappa0=0.5).sde.D, torch.eye(4, dtype=F64))


def test_profile_solve_maps_scaling_back() -> None:
    A, b = spd(4, 7), torch.randn(4, 2, dtype=F64) * 30
    p = HardwareProfile.from_spec("rc")
    r = solve(A, b, backend=p, t=400.0, kappa0=0.0)
    torch.testing.assert_close(r.x, torch.linalg.solve(A, b), rtol=1e-9, atol=1e-9)
    ra = solve(A, b, backend=p, t=400.0, kappa0=0.0, readout="average", burn_in=200.0)
    torch.testing.assert_close(ra.x, torch.linalg.solve(A, b), rtol=1e-9, atol=1e-9)


def test_profile_finite_gain_follows_the_documented_formula() -> None:
    A, b = spd(3, 8), torch.randn(3, dtype=F64)
    a0 = 100.0
    p = HardwareProfile.from_spec("rc", opamp_gain=a0)
    inst = p.instantiate(A, b)
    A_hw = inst.A_loaded
    g = A_hw.abs().sum(1) + 1.0
    torch.testing.assert_close(inst.sde.M, -(A_hw + torch.diag(g / a0)) / (1 + 1 / a0))
    x = solve(A, b, backend=p, t=2000.0, kappa0=0.0).x
    exact = torch.linalg.solve(A, b)
    rel = float((x - exact).norm() / exact.norm())
    assert 0.1 / a0 < rel < 30 / a0  # an O(1/A0) error, as documented


def test_profile_tolerance_is_fixed_per_device_and_breaks_symmetry() -> None:
    A = spd(6, 9)
    p = HardwareProfile.from_spec("rc", tolerance=0.05, seeds=[11])
    M1, M2 = p.instantiate(A).sde.M, p.instantiate(A).sde.M
    torch.testing.assert_close(M1, M2)  # same device
    assert not torch.equal(M1, p.instantiate(A, instance_seed=12).sde.M)
    assert float((M1 - M1.T).abs().max()) > 0
    rel = (M1 / -p.instantiate(A).A_loaded - 1).flatten()
    assert 0.02 < float(rel.std()) < 0.08  # σ = 0.05 over 36 draws


def test_profile_coupling_bits_quantize_the_loaded_matrix() -> None:
    A = spd(4, 10)
    p = HardwareProfile.from_spec("rc", coupling_bits=6, coupling_full_scale=1.0)
    A_hw = p.instantiate(A).A_loaded
    step = 1.0 / 63  # 6 magnitude bits: 2^6 - 1 levels, sign by routing (as the netlist's crossbar)
    torch.testing.assert_close(A_hw / step, torch.round(A_hw / step))
    torch.testing.assert_close(A_hw, A_hw.T)
    assert float((A_hw - A / float(A.abs().max())).abs().max()) <= step / 2 + 1e-12


def test_profile_inverse_rejects_dt_below_the_adc_interval_and_matches_its_law() -> None:
    A, k0, dt, t = spd(3, 11), 0.02, 0.5, 3000.0
    p = HardwareProfile.from_spec("rc", kappa0=k0, adc_rate_hz=1e6)  # τ = 1 µs: one sample per τ
    with pytest.raises(ValueError, match="ADC sample interval"):
        inverse(A, backend=p, dt=0.5)
    p = HardwareProfile.from_spec("rc", kappa0=k0)
    r = inverse(A, backend=p, t=t, dt=dt, generator=torch.Generator().manual_seed(3))
    alpha = 1.0 / float(A.abs().max())
    lam, U = torch.linalg.eigh(A)
    est = U.T @ r.inverse @ U * k0 / alpha  # hardware-unit covariance of the modes
    se = ar1_cov_se(alpha * lam, k0, dt, round(t / dt) + 1)
    assert ((est - torch.diag(k0 / (alpha * lam))).abs() <= Z * se).all()


def _z_matrix(n: int, seed: int) -> torch.Tensor:
    """A passive (Maxwell-capacitance) pattern: off-diagonals <= 0, positive row sums."""
    g = torch.Generator().manual_seed(seed)
    W = torch.rand(n, n, generator=g, dtype=F64)
    W = torch.triu(W, 1) + torch.triu(W, 1).T
    return torch.diag(W.sum(1) + 0.5) - W


def test_rlc_profile_refuses_a_sign_pattern_passive_capacitors_cannot_hold() -> None:
    p = HardwareProfile.from_spec("rlc")
    with pytest.raises(CircuitError, match="passive capacitors.*'rc' profile"):
        p.instantiate(spd(3, 12, lam_min=0.5))


def test_rlc_profile_reads_the_inverse_from_the_voltage_covariance() -> None:
    A = _z_matrix(3, 12)
    k0 = 0.1
    p = HardwareProfile.from_spec("rlc", kappa0=k0)
    inst = p.instantiate(A)
    A_hw = inst.A_loaded
    Sigma = stationary_covariance(inst.sde.M, inst.sde.D)
    torch.testing.assert_close(Sigma[:3, :3], k0 * torch.linalg.inv(A_hw), rtol=1e-9, atol=1e-12)
    node = HardwareProfile.from_spec("rlc", kappa0=k0, circuit={"noise_injection": "node"})
    inst = node.instantiate(A)
    Sigma = stationary_covariance(inst.sde.M, inst.sde.D)
    c = p.circuit
    Ainv = torch.linalg.inv(A_hw)
    expected = k0 * Ainv + k0 * c["L_h"] / (c["R_ohm"] ** 2 * c["C_f"]) * Ainv @ Ainv
    torch.testing.assert_close(Sigma[:3, :3], expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(CircuitError, match="cannot solve"):
        solve(A, torch.ones(3, dtype=F64), backend=p)


def test_float32_ideal_solve_keeps_dtype() -> None:
    A = spd(4, 13).float()
    r = solve(A, torch.ones(4), backend="ideal", t=100.0, kappa0=1e-4, readout="average", burn_in=50.0)
    assert r.x.dtype == torch.float32
    assert math.isfinite(float(r.x.sum()))


def test_profile_solve_with_noise_and_adc_reads_quantized_voltages() -> None:
    A, b = spd(4, 14), torch.randn(4, 3, dtype=F64)
    p = HardwareProfile.from_spec(
        "rc", kappa0=1e-4, adc_bits=10, dac_bits=12, coupling_bits=10, tolerance=0.01
    )
    r = solve(
        A, b, backend=p, t=300.0, readout="average", burn_in=100.0, generator=torch.Generator().manual_seed(4)
    )
    assert r.x.shape == (4, 3) and (r.analog_time_tau, r.values_loaded, r.values_read) == (300.0, 22, 12)
    inst = p.instantiate(A, b)
    volts = r.x * (inst.input_scale / inst.matrix_scale)  # back to the read voltages
    step = 10.0 / 511
    torch.testing.assert_close(volts / step, torch.round(volts / step))
    exact = torch.linalg.solve(A, b)
    assert float((r.x - exact).norm() / exact.norm()) < 0.05  # 1 % parts, 10-bit DAC/ADC
    with pytest.raises(ValueError, match="readout='average' only"):
        solve(A, b, backend=p, burn_in=1.0)


def test_profile_refuses_a_loaded_matrix_that_quantization_made_indefinite() -> None:
    # eigenvalues 1e-3 .. 1 in a random basis: 4-bit couplings (step 1/15 of max|A|) destroy the small ones
    g = torch.Generator().manual_seed(5)
    Q, _ = torch.linalg.qr(torch.randn(24, 24, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.logspace(-3, 0, 24, dtype=torch.float64)) @ Q.T
    p = HardwareProfile.from_spec("rc", coupling_bits=4)
    with pytest.raises(CircuitError, match="not positive definite.*Raise the damping"):
        inverse(A, backend=p, t=10.0, dt=1.0)
    A_damped = A + 0.5 * torch.eye(24, dtype=torch.float64)  # the fix the message names
    assert torch.isfinite(inverse(A_damped, backend=p, t=10.0, dt=1.0).inverse).all()


def test_analog_solver_reports_a_refused_matrix_as_a_training_error() -> None:
    from thermotrain._errors import TrainingError
    from thermotrain.models import ReadoutConfig
    from thermotrain.training import AnalogSolver

    g = torch.Generator().manual_seed(5)
    Q, _ = torch.linalg.qr(torch.randn(24, 24, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.logspace(-3, 0, 24, dtype=torch.float64)) @ Q.T
    solver = AnalogSolver(
        HardwareProfile.from_spec("rc", coupling_bits=4),
        ReadoutConfig(analog_time=10.0, sample_interval=1.0),
        pd_guard=False,  # the guard (on by default) would retry it
    )
    with pytest.raises(TrainingError, match="refused the curvature matrix"):
        solver.inverse(A)


def test_randomized_rounding_loads_are_averaged_and_accounted() -> None:
    A = spd(4, 10, lam_min=0.5)
    b = torch.ones(4, dtype=torch.float64)
    p = HardwareProfile.from_spec("rc", coupling_bits=6, kappa0=0.0)
    g = torch.Generator().manual_seed(0)
    one = solve(A, b, backend=p, t=60.0, readout="average", burn_in=30.0, kappa0=0.0)
    many = solve(
        A,
        b,
        backend=p,
        t=60.0,
        readout="average",
        burn_in=30.0,
        kappa0=0.0,
        rounding="stochastic",
        roundings=64,
        generator=g,
    )
    assert many.analog_time_tau == 64 * 60.0 and many.values_loaded == 64 * one.values_loaded
    exact = torch.linalg.solve(A, b)
    # nearest rounding leaves a fixed O(ε) bias; the mean over randomized roundings removes its first order
    # (the ε -> ε² law itself is tested on merge_over_roundings in test_quantize.py)
    assert (many.x - exact).norm() < (one.x - exact).norm()
    with pytest.raises(ValueError, match="quantizes nothing"):
        solve(A, b, backend="ideal", rounding="stochastic")


def test_the_damping_guard_retries_a_refused_matrix_and_counts_it() -> None:
    from thermotrain import UnloadableMatrixError
    from thermotrain.models import ReadoutConfig
    from thermotrain.training import AnalogSolver

    g = torch.Generator().manual_seed(5)
    Q, _ = torch.linalg.qr(torch.randn(24, 24, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.logspace(-3, 0, 24, dtype=torch.float64)) @ Q.T
    p = HardwareProfile.from_spec("rc", coupling_bits=4)
    with pytest.raises(UnloadableMatrixError) as info:
        p.instantiate(A)
    assert info.value.extra_damping > 0
    solver = AnalogSolver(p, ReadoutConfig(analog_time=10.0, sample_interval=1.0), pd_guard=True)
    inv = solver.inverse(A)
    assert torch.isfinite(inv).all()
    assert solver.stats.damping_bumps == 1 and solver.stats.extra_damping_max >= info.value.extra_damping


def test_the_damping_guard_remembers_what_an_unchanged_matrix_was_loaded_as() -> None:
    """Solving again with the same refused matrix (a K-FAC factor between refreshes) loads the damped matrix
    the retries reached at once: no refused attempt, the same answer as a fresh solver's, the bump still
    counted; a changed matrix (new version) is tried undamped again."""
    from thermotrain.models import ReadoutConfig
    from thermotrain.training import AnalogSolver

    g = torch.Generator().manual_seed(5)
    Q, _ = torch.linalg.qr(torch.randn(24, 24, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.logspace(-3, 0, 24, dtype=torch.float64)) @ Q.T
    B = torch.randn(24, 3, generator=g, dtype=torch.float64)
    p = HardwareProfile.from_spec("rc", coupling_bits=4)
    cfg = ReadoutConfig(mode="average", analog_time=40.0, sample_interval=1.0, kappa0=0.0)

    def fresh() -> AnalogSolver:
        return AnalogSolver(p, cfg, pd_guard=True, mapping="monolithic")

    attempts: list[float] = []
    real = p.instantiate

    def counting(A_: torch.Tensor, *args, **kwargs):  # type: ignore[no-untyped-def]
        attempts.append(float(A_.diagonal().min()))
        return real(A_, *args, **kwargs)

    solver = fresh()
    object.__setattr__(p, "instantiate", counting)
    try:
        first = solver.solve(A, B)
        tries_first = len(attempts)
        second = solver.solve(A, B)
        tries_second = len(attempts) - tries_first
        A.mul_(1.0)  # same values, new version: the guard starts again from the matrix itself
        solver.solve(A, B)
        tries_third = len(attempts) - tries_first - tries_second
    finally:
        object.__delattr__(p, "instantiate")
    assert tries_first >= 2 and tries_second == 1 and tries_third == tries_first
    assert solver.stats.damping_bumps == 3
    assert torch.equal(first, second)
    assert torch.equal(second, fresh().solve(A, B))


# --------------------------------------------------------------------------- one readout configuration (#8)
def test_default_inverse_plans_its_time_from_lambda_min_and_meets_the_predicted_error() -> None:
    """No time given: the device plans burn-in, window and interval from λ_min for the default target, the
    plan is returned with the result, and the measured whitened error matches the predicted one (over
    repetitions: mean within its CI, not a single draw)."""
    from thermotrain.models import DEFAULT_TARGET_ERROR, ReadoutConfig

    n = 6
    A = spd(n, 11, lam_min=0.05, lam_max=1.0)
    r = inverse(A, backend="ideal", generator=torch.Generator().manual_seed(0))
    plan = r.plan
    assert plan is not None and r.analog_time_tau == pytest.approx(plan.t)
    assert plan.lambda_min == pytest.approx(float(torch.linalg.eigvalsh(A)[0]), rel=1e-9)  # n ≤ Lanczos steps
    assert 0 < plan.predicted_error <= DEFAULT_TARGET_ERROR + 1e-12
    assert plan.burn_in > 0 and plan.t > plan.burn_in
    # the slowest mode's relative variance error over R repetitions, against the law
    lam, U = torch.linalg.eigh(A)
    u = U[:, 0]
    R, errs = 60, []
    for seed in range(R):
        est = inverse(A, backend="ideal", generator=torch.Generator().manual_seed(100 + seed)).inverse
        errs.append(float(u @ est @ u) * float(lam[0]) - 1.0)
    errs_t = torch.tensor(errs, dtype=F64)
    from thermotrain.models._readout import covariance_error

    S = int(round((plan.t - plan.burn_in) / plan.dt)) + 1
    law = covariance_error(float(lam[0]), plan.dt, S)
    # mean: |bias| (burn-in e^{-2λb} ≤ ε/4 by construction) within Z standard errors of the mean
    assert abs(float(errs_t.mean())) < Z * law / R**0.5 + DEFAULT_TARGET_ERROR / 4
    # spread: the sample sd of R draws lies within ±Z·sd/sqrt(2(R-1)) of the law
    sd = float(errs_t.std())
    assert abs(sd - law) < Z * law / (2 * (R - 1)) ** 0.5, (sd, law)
    # a fixed time is still honoured, and a config carries every setting
    fixed = inverse(A, backend="ideal", t=400.0, dt=0.5, generator=torch.Generator().manual_seed(1))
    assert fixed.analog_time_tau == 400.0 and fixed.plan.burn_in == 40.0 and fixed.plan.dt == 0.5
    cfg = ReadoutConfig(analog_time=300.0, sample_interval=1.0, burn_in=50.0, kappa0=0.02)
    r2 = inverse(A, backend="ideal", config=cfg)
    assert (r2.plan.t, r2.plan.burn_in, r2.plan.dt, r2.plan.kappa0) == (300.0, 50.0, 1.0, 0.02)


def test_a_tighter_target_costs_time_by_the_inverse_square_law() -> None:
    from thermotrain.models import ReadoutConfig

    A = spd(5, 3, lam_min=0.02, lam_max=1.0)
    t = {
        eps: inverse(A, backend="ideal", config=ReadoutConfig(target_error=eps)).plan
        for eps in (0.4, 0.2, 0.1)
    }
    w = {eps: p.t - p.burn_in for eps, p in t.items()}
    assert w[0.2] / w[0.4] == pytest.approx(4.0, rel=0.05) and w[0.1] / w[0.2] == pytest.approx(4.0, rel=0.05)


def test_the_lambda_floor_bounds_the_plan_and_the_loaded_spectrum() -> None:
    """A known lower bound of λ_min (the damping) caps the planned time, and a profile whose quantization
    ate more than half of it refuses the matrix, naming the extra damping that restores it."""
    from thermotrain import UnloadableMatrixError
    from thermotrain.models import ReadoutConfig

    g = torch.Generator().manual_seed(5)
    Q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=F64))
    A = Q @ torch.diag(torch.logspace(-4, 0, 40, dtype=F64)) @ Q.T + 0.05 * torch.eye(40, dtype=F64)
    p = HardwareProfile.from_spec("rc", coupling_bits=4)  # keeps λ_min ≈ 0.003 of the 0.05 (measured)
    cfg = ReadoutConfig(lanczos_steps=4)  # a poor λ_min estimate: the floor keeps the time finite
    loose = inverse(A, backend="ideal", config=cfg)
    floored = inverse(A, backend="ideal", config=cfg, lambda_floor=0.05)
    assert floored.plan.lambda_min >= 0.05 and floored.plan.t <= loose.plan.t
    with pytest.raises(UnloadableMatrixError, match="quantization moved the bottom") as info:
        inverse(A, backend=p, t=10.0, dt=1.0, lambda_floor=0.05)
    assert info.value.extra_damping > 0
    fixed = A + 1.5 * info.value.extra_damping * torch.eye(40, dtype=F64)
    assert torch.isfinite(inverse(fixed, backend=p, t=10.0, dt=1.0, lambda_floor=0.05).inverse).all()
    # without a floor the same matrix loads (it stays positive definite): the floor is what refuses it
    assert torch.isfinite(inverse(A, backend=p, t=10.0, dt=1.0).inverse).all()


def test_the_law_simulator_reads_the_same_device_as_the_trajectory() -> None:
    """``simulator="law"`` draws the covariance readout from its law: over repetitions its mean and spread on
    the slowest mode agree with the trajectory's (same plan, same cost accounting), on the ideal device and on
    an RC profile with an ADC; a run the law refuses falls back to the trajectory."""
    A = spd(5, 21, lam_min=0.1, lam_max=1.0)
    lam, U = torch.linalg.eigh(A)
    u = U[:, 0]
    p = HardwareProfile.from_spec("rc", adc_bits=12, kappa0=0.01)
    for backend in ("ideal", p):
        vals = {}
        for sim in ("trajectory", "law"):
            rs = [
                inverse(A, backend=backend, simulator=sim, generator=torch.Generator().manual_seed(k))
                for k in range(80)
            ]
            assert len({(r.analog_time_tau, r.values_read) for r in rs}) == 1
            vals[sim] = torch.tensor([float(u @ r.inverse @ u) for r in rs], dtype=F64)
        a, b = vals["trajectory"], vals["law"]
        se = (a.var() / len(a) + b.var() / len(b)).sqrt()
        assert abs(float(a.mean() - b.mean())) < Z * float(se), backend
        ratio = float(b.std() / a.std())  # sample sds of 80 draws: relative se ~ 1/sqrt(2·79) each
        assert abs(ratio - 1) < Z * (2 / (2 * 79)) ** 0.5, (backend, ratio)
    # too short a window for the law (fewer than 10 decorrelation times of the slowest mode): trajectory
    r = inverse(
        A, backend="ideal", t=20.0, dt=1.0, simulator="law", generator=torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(r.inverse).all()
