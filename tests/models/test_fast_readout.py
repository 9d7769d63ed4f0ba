"""The fast covariance readout against the exact trajectory path and Isserlis' formula, in distribution.

For R independent readouts of Ĉ = (1/S) Σ x_k x_kᵀ, each compared statistic is checked against its exact value:
- a mean within Z·sqrt(v/R) (v the exact variance from Isserlis' formula);
- a variance within Z·SE, SE = sqrt((m4 - s⁴)/R) from the draws' own fourth central moment (for a Gaussian
  entry this is s²·sqrt(2/R); the entries here have excess kurtosis ≈ 12/n_eff, so the empirical m4 is used);
- fast vs trajectory: the difference within Z·sqrt(SE_fast² + SE_traj²).
Z = 4.5 (two-sided p ≈ 7e-6 per comparison; about 40 comparisons per test, seeded).
"""

from __future__ import annotations

import math

import pytest
import torch

from thermotrain._errors import InputError
from thermotrain.models import HardwareProfile, LinearSDE, simulate, stationary_covariance, transition
from thermotrain.models._fast_readout import _gamma, sample_covariance_readout, wishart

F64 = torch.float64
Z = 4.5


def _spd(eigs: list[float], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = len(eigs)
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return U @ torch.diag(torch.tensor(eigs, dtype=F64)) @ U.T


def _isserlis(M: torch.Tensor, D: torch.Tensor, dt: float, S: int, vecs: torch.Tensor) -> tuple:
    """Exact mean and variance of vᵀ Ĉ w for each (v, w) in ``vecs`` [K, 2, N], stationary start:
    Var = (1/S²) Σ_{k,l} [(vᵀC(k-l)v)(wᵀC(k-l)w) + (vᵀC(k-l)w)(wᵀC(k-l)v)], C(m) = Φ^m P (m ≥ 0)."""
    P = stationary_covariance(M, D)
    Phi = transition(M, D, dt, with_input=False).Phi
    v, w = vecs[:, 0], vecs[:, 1]
    mean = torch.einsum("ka,ab,kb->k", v, P, w)
    var = torch.zeros(len(vecs), dtype=F64)
    C = P.clone()
    for m in range(S):
        weight = (S - m) * (1 if m == 0 else 2)  # lags ±m (C(-m) = C(m)ᵀ gives the same products)
        vv = torch.einsum("ka,ab,kb->k", v, C, v)
        ww = torch.einsum("ka,ab,kb->k", w, C, w)
        vw = torch.einsum("ka,ab,kb->k", v, C, w)
        wv = torch.einsum("ka,ab,kb->k", w, C, v)
        var += weight * (vv * ww + vw * wv)
        C = Phi @ C
    return mean, var / S**2


def _trajectory(sde: LinearSDE, dt: float, S: int, R: int, g: torch.Generator, burn: float | None = None):
    """R exact readouts Ĉ from simulated paths [R, N, N] (the reference path of models.inverse)."""
    if burn is None:
        P = stationary_covariance(sde.M, sde.D)
        x0 = (torch.linalg.cholesky(P) @ torch.randn(R, sde.n, 1, generator=g, dtype=F64))[..., 0]
        X = simulate(sde, x0, dt, S - 1, generator=g, batch=R)
    else:
        nb = round(burn / dt)
        X = simulate(sde, None, dt, nb + S - 1, generator=g, batch=R)[:, nb:]
    return X.mT @ X / S


def _stats(C: torch.Tensor, vecs: torch.Tensor) -> tuple:
    """Per (v, w): sample mean, sample variance and the variance's standard error over the draws."""
    y = torch.einsum("ka,rab,kb->rk", vecs[:, 0], C, vecs[:, 1])
    R = y.shape[0]
    mean = y.mean(0)
    d = y - mean
    var = (d**2).sum(0) / (R - 1)
    m4 = (d**4).mean(0)
    return mean, var, ((m4 - var**2).clamp_min(0) / R).sqrt()


def _check(fast, traj, exact, R: int, label: str) -> None:
    (mf, vf, sef), (mt, vt, set_), (m0, v0) = fast, traj, exact
    se_mean = (v0 / R).sqrt()
    for name, m, v, se in (("fast", mf, vf, sef), ("trajectory", mt, vt, set_)):
        assert ((m - m0).abs() <= Z * se_mean).all(), f"{label} {name} mean {m} vs exact {m0} (SE {se_mean})"
        assert ((v - v0).abs() <= Z * se).all(), f"{label} {name} variance {v} vs Isserlis {v0} (SE {se})"
    assert ((mf - mt).abs() <= Z * math.sqrt(2) * se_mean).all(), f"{label}: fast vs trajectory means"
    assert ((vf - vt).abs() <= Z * (sef**2 + set_**2).sqrt()).all(), f"{label}: fast vs trajectory variances"


def _probe_vectors(N: int, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Entries (0,0), (N-1,N-1), (0,1), (2,N-1) as (e_a, e_b) pairs, plus the given (v, w) pairs."""
    eye = torch.eye(N, dtype=F64)
    vecs = [torch.stack([eye[a], eye[b]]) for a, b in ((0, 0), (N - 1, N - 1), (0, 1), (2, N - 1))]
    out = torch.stack(vecs)
    return out if extra is None else torch.cat([out, extra])


# -------------------------------------------------------------------------------- ideal (normal) device
def test_ideal_device_matches_trajectory_and_isserlis_and_rejects_naive_wishart():
    eigs = [0.05, 0.09, 0.17, 0.3, 0.55, 1.0]
    A = _spd(eigs, seed=1)
    kappa0, dt, S, R = 1e-2, 1.0, 300, 800  # slowest mode: S (1 - φ²) = 28.5 decorrelations
    sde = LinearSDE(-A, 2 * kappa0 * torch.eye(6, dtype=F64))
    lam, U = torch.linalg.eigh(A)
    slow, fast_mode = U[:, 0], U[:, -1]
    extra = torch.stack(
        [torch.stack([slow, slow]), torch.stack([fast_mode, fast_mode]), torch.stack([slow, U[:, 2]])]
    )
    vecs = _probe_vectors(6, extra)
    g = torch.Generator().manual_seed(10)
    C_fast = sample_covariance_readout(A, dt=dt, samples=S, kappa0=kappa0, draws=R, generator=g)
    assert C_fast.shape == (R, 6, 6) and torch.equal(C_fast, C_fast.mT)
    C_traj = _trajectory(sde, dt, S, R, g)
    exact = _isserlis(sde.M, sde.D, dt, S, vecs)
    fast, traj = _stats(C_fast, vecs), _stats(C_traj, vecs)
    _check(fast, traj, exact, R, "ideal")

    # the lag-correlation factor matters: the slowest mode's variance is (1+φ²)/(1-φ²) ≈ 20x that of S
    # independent samples; a Wishart with S samples (no lag factor) fails the same check
    phi2 = math.exp(-2 * eigs[0] * dt)
    sigma2 = kappa0 / eigs[0]
    naive_var = 2 * sigma2**2 / S
    assert abs(float(exact[1][4]) / naive_var - (1 + phi2) / (1 - phi2)) < 0.15 * (1 + phi2) / (1 - phi2)
    P = stationary_covariance(sde.M, sde.D)
    C_naive = wishart(torch.linalg.cholesky(P), S, (R,), g) / S
    _, v_naive, se_naive = _stats(C_naive, vecs)
    assert abs(float(v_naive[4] - exact[1][4])) > 10 * float(se_naive[4] + fast[2][4])


# -------------------------------------------------------------------------------- non-normal drifts
@pytest.mark.parametrize("burn", [None, 60.0])
def test_nonnormal_rc_profile_matches_trajectory(burn):
    """A calibrated-style RC surrogate with 10 % element tolerances: M = -K (G + ...) with G non-symmetric."""
    A = _spd([0.08, 0.15, 0.3, 0.5, 0.75, 1.0], seed=2)
    profile = HardwareProfile.from_spec("rc", tolerance=0.1, capacitor_tolerance=0.1, opamp_gain=1e4)
    inst = profile.instantiate(A)
    sde = inst.sde
    assert not torch.allclose(sde.M, sde.M.T)
    assert float((sde.M - sde.M.T).abs().max()) > 1e-2  # visibly non-normal
    dt, S, R = 1.0, 300, 600
    rate = float(-torch.linalg.eigvals(sde.M).real.max())
    assert S * -math.expm1(-2 * rate * dt) > 10
    vecs = _probe_vectors(6)
    g = torch.Generator().manual_seed(20 if burn is None else 21)
    C_fast = sample_covariance_readout(
        sde, dt=dt, samples=S, burn_in=burn, observe=inst.observe, draws=R, generator=g
    )
    C_traj = _trajectory(sde, dt, S, R, g, burn)
    m0, v0 = _isserlis(sde.M, sde.D, dt, S, vecs)
    if burn is not None:  # the mean carries the burn-in transient: exact value from the state covariances
        Phi = transition(sde.M, sde.D, dt, with_input=False).Phi
        P = stationary_covariance(sde.M, sde.D)
        E = transition(sde.M, sde.D, burn, with_input=False).Phi
        Ck = torch.zeros_like(P)
        for _ in range(S):
            Ck += P - E @ P @ E.T
            E = Phi @ E
        m0 = torch.einsum("ka,ab,kb->k", vecs[:, 0], Ck / S, vecs[:, 1])
        assert float((m0 - _isserlis(sde.M, sde.D, dt, S, vecs)[0]).abs().max()) > 0  # a real transient
    _check(_stats(C_fast, vecs), _stats(C_traj, vecs), (m0, v0), R, f"rc burn={burn}")


def test_nonnormal_complex_drift_matches_trajectory():
    """A strongly non-normal drift with complex eigenvalues (rotation + anisotropic, correlated noise)."""
    A = _spd([0.06, 0.12, 0.25, 0.45, 0.7, 1.0], seed=3)
    g0 = torch.Generator().manual_seed(4)
    K = torch.randn(6, 6, generator=g0, dtype=F64)
    M = -A + 0.6 * (K - K.T)  # symmetric part -A: stable; eigenvalues complex
    B = torch.randn(6, 6, generator=g0, dtype=F64)
    D = 0.01 * (B @ B.T / 6 + 0.2 * torch.eye(6, dtype=F64))
    sde = LinearSDE(M, D)
    assert float(torch.linalg.eigvals(M).imag.abs().max()) > 0.3
    dt, S, R = 1.0, 300, 600
    vecs = _probe_vectors(6)
    g = torch.Generator().manual_seed(30)
    C_fast = sample_covariance_readout(sde, dt=dt, samples=S, draws=R, generator=g)
    C_traj = _trajectory(sde, dt, S, R, g)
    _check(_stats(C_fast, vecs), _stats(C_traj, vecs), _isserlis(M, D, dt, S, vecs), R, "complex")


# -------------------------------------------------------------------------------- shapes, batching, refusals
def test_batched_tiles_dtype_and_observe():
    A = torch.stack([_spd([0.1, 0.4, 1.0], seed=s) for s in range(4)]).to(torch.float32)  # 4 tiles
    g = torch.Generator().manual_seed(5)
    C = sample_covariance_readout(A, dt=1.0, samples=200, draws=3, generator=g)
    assert C.shape == (3, 4, 3, 3) and C.dtype == torch.float32 and torch.equal(C, C.mT)
    C1 = sample_covariance_readout(A[1], dt=1.0, samples=200, generator=torch.Generator().manual_seed(5))
    assert C1.shape == (3, 3)
    O = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], dtype=F64)
    C2 = sample_covariance_readout(A[0].double(), dt=1.0, samples=200, observe=O, adc_step=0.0, generator=g)
    assert C2.shape == (2, 2)


def test_refusals_name_the_fix():
    A = _spd([0.05, 1.0], seed=0)
    with pytest.raises(InputError, match="min_decorrelations"):
        sample_covariance_readout(A, dt=0.1, samples=100)  # S (1 - φ²) = 1
    with pytest.raises(InputError, match="not stable"):
        sample_covariance_readout(
            LinearSDE(torch.tensor([[0.1]], dtype=F64), torch.eye(1, dtype=F64)), dt=1.0, samples=100
        )
    with pytest.raises(InputError, match="samples"):
        sample_covariance_readout(A, dt=1.0, samples=1)
    with pytest.raises(InputError, match="observe"):
        sample_covariance_readout(A, dt=1.0, samples=1000, observe=torch.eye(3, dtype=F64))


def test_wishart_and_gamma_moments():
    """E W = ν Σ, Var W_ab = ν (Σ_ab² + Σ_aa Σ_bb) (Bartlett path ν ≥ N and the direct path ν < N); the
    gamma sampler's mean and variance equal α."""
    Sigma = torch.tensor([[1.0, 0.5, 0.2], [0.5, 2.0, -0.3], [0.2, -0.3, 0.5]], dtype=F64)
    L = torch.linalg.cholesky(Sigma)
    g = torch.Generator().manual_seed(6)
    R = 20000
    for nu in (2, 7):
        W = wishart(L, nu, (R,), g)
        var_exact = nu * (Sigma**2 + torch.outer(Sigma.diagonal(), Sigma.diagonal()))
        assert ((W.mean(0) - nu * Sigma).abs() <= Z * (var_exact / R).sqrt()).all()
        assert (
            (W.var(0) / var_exact - 1).abs() <= Z * math.sqrt(2 / R) * 3
        ).all()  # excess kurtosis ≤ 12/ν: SE ≤ sqrt(8/R)
    alpha = torch.tensor([0.3, 1.0, 4.5, 500.0], dtype=F64).expand(R, 4)
    x = _gamma(alpha, g)
    a = alpha[0]
    assert ((x.mean(0) - a).abs() <= Z * (a / R).sqrt()).all()
    assert ((x.var(0) - a).abs() <= Z * a * ((2 + 6 / a) / R).sqrt()).all()  # excess kurtosis 6/α


@pytest.mark.parametrize("burn", [None, 30.0])
def test_a_mean_path_matches_the_trajectory(burn):
    """An RC surrogate with op-amp offsets (constant input u ≠ 0, so the samples carry a mean μ = -M⁻¹u of the
    size of the noise) read through an offset: the law's Ĉ agrees with simulated paths in mean and variance
    for every probed entry, and its mean with the exact E[Ĉ] = E[Ĉ_z] + (1/S) Σ n_k n_kᵀ."""
    A = _spd([0.08, 0.15, 0.3, 0.5, 0.75, 1.0], seed=5)
    profile = HardwareProfile.from_spec("rc", tolerance=0.1, capacitor_tolerance=0.1, opamp_gain=1e4)
    inst = profile.instantiate(A, kappa0=1e-2)
    g0 = torch.Generator().manual_seed(6)
    u = 0.03 * torch.randn(6, generator=g0, dtype=F64)
    sde = LinearSDE(inst.sde.M, inst.sde.D, u)
    mu = -torch.linalg.solve(sde.M, u)
    P = stationary_covariance(sde.M, sde.D)
    assert float(mu.abs().max()) > 0.5 * float(P.diagonal().sqrt().max())  # the mean is not negligible
    # a per-channel offset vector with the burn-in, one float for every channel with the stationary start
    offset = torch.tensor([0.02, -0.01, 0.0, 0.03, 0.0, -0.02], dtype=F64) if burn else 0.02
    dt, S, R = 1.0, 300, 600
    vecs = _probe_vectors(6)
    g = torch.Generator().manual_seed(40 if burn is None else 41)
    C_fast = sample_covariance_readout(
        sde, dt=dt, samples=S, burn_in=burn, draws=R, generator=g, offset=offset
    )
    if burn is None:
        x0 = mu + (torch.linalg.cholesky(P) @ torch.randn(R, 6, 1, generator=g, dtype=F64))[..., 0]
        X = simulate(sde, x0, dt, S - 1, generator=g, batch=R)
    else:
        nb = round(burn / dt)
        X = simulate(sde, None, dt, nb + S - 1, generator=g, batch=R)[:, nb:]
    Y = X + offset
    C_traj = Y.mT @ Y / S
    # exact mean of Ĉ: Σ_k (P_k + n_k n_kᵀ) / S with the state covariance and mean at each sample
    Phi = transition(sde.M, sde.D, dt, with_input=False).Phi
    E = torch.zeros_like(P) if burn is None else transition(sde.M, sde.D, burn, with_input=False).Phi
    total = torch.zeros_like(P)
    for _ in range(S):
        n_k = mu - E @ mu + torch.as_tensor(offset, dtype=F64)
        total += P - E @ P @ E.T + torch.outer(n_k, n_k)
        E = Phi @ E
    m0 = torch.einsum("ka,ab,kb->k", vecs[:, 0], total / S, vecs[:, 1])
    fast, traj = _stats(C_fast, vecs), _stats(C_traj, vecs)
    se_fast, se_traj = fast[2], traj[2]
    for name, (m, v, _) in (("fast", fast), ("trajectory", traj)):
        assert ((m - m0).abs() <= Z * (v / R).sqrt()).all(), f"{name} mean {m} vs exact {m0}"
    assert ((fast[1] - traj[1]).abs() <= Z * (se_fast**2 + se_traj**2).sqrt()).all(), "variances"


def test_an_adc_coarser_than_the_signal_is_refused_and_the_trajectory_reads_it_as_a_constant():
    """The additive-uniform-noise model of the ADC (+ Δq²/12 on the diagonal) needs the signal to span LSBs.
    Below one LSB rms the law refuses (the caller then runs the trajectory), and the trajectory shows why: a
    quantizer reads a fluctuation of 0.1 LSB rms as a constant, a sample covariance of 0 where the model would
    give P + Δq²/12 (8× P here)."""
    A = _spd([1.0, 2.0], seed=3)
    kappa0 = 1e-4  # stationary rms ≈ sqrt(κ0/λ) ≈ 0.007-0.01
    P = kappa0 * torch.linalg.inv(A)
    step = 0.1  # LSB; rms / step ≈ 0.1
    with pytest.raises(InputError, match="ADC steps"):
        sample_covariance_readout(A, dt=1.0, samples=2000, kappa0=kappa0, adc_step=step)
    # a step below the rms passes and adds Δq²/12 to the diagonal (in expectation)
    fine = float(P.diagonal().sqrt().min()) / 2
    C = sample_covariance_readout(
        A,
        dt=1.0,
        samples=20000,
        kappa0=kappa0,
        adc_step=fine,
        draws=50,
        generator=torch.Generator().manual_seed(0),
    ).mean(0)
    torch.testing.assert_close(
        C, P + fine**2 / 12 * torch.eye(2, dtype=F64), rtol=0.05, atol=0.02 * float(P.max())
    )
    # on a device: a 4-bit ADC over ±10 V and a small damped factor. The law falls back to the trajectory,
    # which quantizes every sample: both simulators give the same estimate, 0 (the model alone gave ~16× the
    # inverse for such factors). An 8-bit ADC leaves the law in use, with the trajectory's error size.
    from thermotrain.models import inverse, load_profile, shipped_profile_path
    from thermotrain.training._attribution import set_fields

    rc8 = load_profile(shipped_profile_path("rc8"))
    M = _spd([0.1, 0.2, 0.5, 1.0], seed=4) + 0.09 * torch.eye(4, dtype=F64)
    exact = torch.linalg.inv(M)
    for bits in (4, 8):
        prof = set_fields(rc8, {"adc_bits": bits})
        law, traj = (
            inverse(M, backend=prof, simulator=sim, generator=torch.Generator().manual_seed(5)).inverse
            for sim in ("law", "trajectory")
        )
        if bits == 4:
            assert torch.equal(law, traj) and float(law.abs().max()) == 0.0
        else:
            e_law, e_traj = (float((x - exact).norm() / exact.norm()) for x in (law, traj))
            assert not torch.equal(law, traj) and 0.5 * e_traj < e_law < 2 * e_traj < 0.6


def test_a_signal_near_the_clipping_level_is_refused_and_the_trajectory_clips_it():
    """The law does not model clipping (the op-amp swing, the ADC's range): within CLIP_MIN_HEADROOM_RMS rms of
    the clipping level it refuses, and the caller's trajectory clips every sample. A Gaussian clipped at 1.5 σ
    keeps 0.78 of its variance, so the clipped trajectory's inverse reads below the same samples unclipped."""
    from thermotrain.models import inverse, load_profile, shipped_profile_path
    from thermotrain.models._fast_readout import CLIP_MIN_HEADROOM_RMS
    from thermotrain.training._attribution import set_fields

    A = _spd([1.0, 2.0], seed=3)
    kappa0 = 1e-2
    rms = float((kappa0 * torch.linalg.inv(A)).diagonal().sqrt().max())
    args = {"dt": 1.0, "samples": 2000, "kappa0": kappa0}
    with pytest.raises(InputError, match="clipping level"):
        sample_covariance_readout(A, clip=(CLIP_MIN_HEADROOM_RMS - 0.5) * rms, **args)
    sample_covariance_readout(A, clip=(CLIP_MIN_HEADROOM_RMS + 0.5) * rms, **args)
    # an offset eats the headroom: the same clip level with the mean moved by 1 rms is refused
    with pytest.raises(InputError, match="clipping level"):
        sample_covariance_readout(A, clip=(CLIP_MIN_HEADROOM_RMS + 0.5) * rms, offset=rms, **args)
    # on a device: rc8's channels here have rms 0.12-0.17 V; a ±0.25 V swing clips them at ~1.5-2 σ
    rc8 = load_profile(shipped_profile_path("rc8"))
    M = _spd([0.1, 0.2, 0.5, 1.0], seed=4) + 0.09 * torch.eye(4, dtype=F64)
    exact = torch.linalg.inv(M)
    runs = {}
    for swing in (10.0, 0.25):
        prof = set_fields(rc8, {"component_stats.output_full_scale_v": swing})
        runs[swing] = [
            inverse(M, backend=prof, simulator=sim, generator=torch.Generator().manual_seed(5)).inverse
            for sim in ("law", "trajectory")
        ]
    law, traj = runs[0.25]
    assert torch.equal(law, traj)  # the law refused: both are the trajectory
    wide_law, wide_traj = runs[10.0]
    assert not torch.equal(wide_law, wide_traj)  # the law in use at the full swing
    # same seed, same samples before the clip: clipping at c σ keeps 1 - 2Q(c) - 2cφ(c) + 2c²Q(c) of a
    # channel's variance, 0.77 at c = 1.47 and 0.93 at c = 2.07 (this range here), and the read trace follows
    ratio = float(torch.trace(traj) / torch.trace(wide_traj))
    assert 0.75 < ratio < 0.95
    assert float((wide_traj - exact).norm() / exact.norm()) < 0.3  # unclipped, the readout's own error
