"""Exact linear-SDE surrogate: transition, Lyapunov, stepping, time averages.

Statistical tests compare sample statistics with their exact values using standard errors computed from the
sample count (Gaussian: SE(mean_i) = sqrt(Σ_ii/N), SE(Σ̂_ij) = sqrt((Σ_ii Σ_jj + Σ_ij²)/N)) and a 5-sigma bound
per entry (two-sided p ≈ 6e-7, so the seeded tests are not flaky for any seed in practice).
"""

import math

import numpy as np
import pytest
import scipy.linalg as sl
import torch
from scipy.integrate import quad_vec

from thermotrain.models import (
    LinearSDE,
    log_likelihood,
    psd_factor,
    sample_time_average,
    simulate,
    state_moments,
    stationary_covariance,
    time_average_moments,
    transition,
)

F64 = torch.float64
Z = 5.0  # sigmas


def rlc_drift(C: float = 1.0, L: float = 1.0, R: float = 0.5) -> torch.Tensor:
    """One series-RLC cell, states (V, I_L): C dV = -I dt, L dI = (V - R I) dt (non-normal)."""
    return torch.tensor([[0.0, -1.0 / C], [1.0 / L, -R / L]], dtype=F64)


def assert_moments(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> None:
    """samples [N, n] against the exact mean [n] and covariance [n, n], within Z standard errors."""
    N = samples.shape[0]
    s = samples.to(F64)
    mean, cov = mean.to(F64), cov.to(F64)
    se_mean = (torch.diagonal(cov) / N).sqrt()
    assert ((s.mean(0) - mean).abs() <= Z * se_mean).all(), (s.mean(0), mean, se_mean)
    d = s - mean
    emp = d.T @ d / N
    var = torch.diagonal(cov)
    se_cov = ((var[:, None] * var[None, :] + cov**2) / N).sqrt()
    assert ((emp - cov).abs() <= Z * se_cov).all(), (emp, cov, se_cov)


def test_transition_matches_quadrature_for_non_normal_drift() -> None:
    g = torch.Generator().manual_seed(0)
    M = torch.randn(5, 5, generator=g, dtype=F64) - 2 * torch.eye(5, dtype=F64)
    Q = torch.randn(5, 2, generator=g, dtype=F64)
    D = Q @ Q.T
    dt = 0.7
    Phi, S, Gamma = transition(M, D, dt)
    Mn, Dn = M.numpy(), D.numpy()
    S_ref = quad_vec(lambda s: sl.expm(Mn * s) @ Dn @ sl.expm(Mn * s).T, 0, dt, epsabs=1e-13)[0]
    G_ref = quad_vec(lambda s: sl.expm(Mn * s), 0, dt, epsabs=1e-13)[0]
    np.testing.assert_allclose(Phi.numpy(), sl.expm(Mn * dt), atol=1e-13)
    np.testing.assert_allclose(S.numpy(), S_ref, atol=1e-12)
    np.testing.assert_allclose(Gamma.numpy(), G_ref, atol=1e-12)


def test_transition_is_stable_for_long_steps_and_wide_spectra() -> None:
    # e^{+M dt} would be e^{500}: Van Loan on the full step would lose every digit; the doubling does not.
    lam = torch.tensor([1e-3, 1.0, 10.0], dtype=F64)
    Phi, S, Gamma = transition(-torch.diag(lam), 2 * torch.eye(3, dtype=F64), 50.0)
    torch.testing.assert_close(torch.diagonal(S), -torch.expm1(-2 * lam * 50) / lam, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.diagonal(Gamma), -torch.expm1(-lam * 50) / lam, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.diagonal(Phi), torch.exp(-lam * 50), rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", ["auto", "kronecker", "doubling"])
def test_stationary_covariance_matches_scipy_lyapunov(method: str) -> None:
    g = torch.Generator().manual_seed(1)
    M = torch.randn(3, 6, 6, generator=g, dtype=F64) - 3 * torch.eye(6, dtype=F64)  # batched, non-normal
    Q = torch.randn(3, 6, 4, generator=g, dtype=F64)
    D = Q @ Q.mT
    Sigma = stationary_covariance(M, D, method=method)
    for i in range(3):
        ref = sl.solve_continuous_lyapunov(M[i].numpy(), -D[i].numpy())
        np.testing.assert_allclose(Sigma[i].numpy(), ref, rtol=1e-10, atol=1e-12)


def test_stationary_covariance_rlc_is_boltzmann_and_symmetric_drift_uses_eigh() -> None:
    # Series noise of PSD 2kTR in the inductor branch: Cov = kT diag(1/C, 1/L) (equipartition).
    C, L, R, kT = 2.0, 0.5, 0.3, 0.7
    M = rlc_drift(C, L, R)
    D = torch.diag(torch.tensor([0.0, 2 * kT * R / L**2], dtype=F64))
    for method in ("kronecker", "doubling"):
        torch.testing.assert_close(
            stationary_covariance(M, D, method=method), torch.diag(torch.tensor([kT / C, kT / L], dtype=F64))
        )
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    torch.testing.assert_close(
        stationary_covariance(-A, 2 * 0.1 * torch.eye(2, dtype=F64), method="eigh"), 0.1 * torch.linalg.inv(A)
    )


def test_unstable_drift_raises_with_the_eigenvalue() -> None:
    with pytest.raises(ValueError, match="not stable"):
        stationary_covariance(torch.tensor([[0.1, 0.0], [0.0, -1.0]], dtype=F64), torch.eye(2, dtype=F64))


def test_exact_stepping_matches_fine_euler_maruyama_on_rlc_drift() -> None:
    M, N, h, t = rlc_drift(), 4000, 1e-3, 1.0
    D = torch.diag(torch.tensor([0.3, 1.0], dtype=F64))
    u = torch.tensor([0.5, -0.2], dtype=F64)
    x0 = torch.tensor([1.0, -1.0], dtype=F64)
    sde = LinearSDE(M, D, u)
    # Euler–Maruyama's own weak error, from its exact moment recursion, must stay below a quarter of a
    # standard error (it then shifts the 5-sigma bound by < 0.25 sigma), so a failure below is the exact
    # sampler's.
    m, P = x0.clone(), torch.zeros(2, 2, dtype=F64)
    F = torch.eye(2, dtype=F64) + h * M
    for _ in range(int(t / h)):
        m, P = F @ m + h * u, F @ P @ F.T + h * D
    m_ex, P_ex = state_moments(sde, x0, t)
    assert (m - m_ex).abs().max() < 0.25 * (torch.diagonal(P_ex) / N).sqrt().min()
    assert (P - P_ex).abs().max() < 0.25 * (torch.diagonal(P_ex).prod() / N).sqrt()

    g = torch.Generator().manual_seed(2)
    exact = simulate(sde, x0, 0.5, 2, generator=g, batch=N)[:, -1]
    L = torch.linalg.cholesky(D * h)
    x = x0.expand(N, 2).clone()
    for _ in range(int(t / h)):
        x = x + h * (x @ M.T + u) + torch.randn(N, 2, generator=g, dtype=F64) @ L.T
    # two-sample comparison: both are N draws from the same law (up to EM's negligible bias), so the
    # differences of sample means and covariances have twice the one-sample variance
    var = torch.diagonal(P_ex)
    assert ((exact.mean(0) - x.mean(0)).abs() <= Z * (2 * var / N).sqrt()).all()
    se_cov = (2 * (var[:, None] * var[None, :] + P_ex**2) / N).sqrt()
    assert ((exact.T.cov() - x.T.cov()).abs() <= Z * se_cov).all()
    assert_moments(exact, m_ex, P_ex)


def test_simulated_stationary_statistics_match_lyapunov_with_singular_noise() -> None:
    # noise only on the inductor current (D singular), underdamped: relaxation 2L/R = 4; run 10 relaxations
    M = rlc_drift()
    D = torch.diag(torch.tensor([0.0, 1.0], dtype=F64))
    sde = LinearSDE(M, D)
    g = torch.Generator().manual_seed(3)
    X = simulate(sde, None, 1.0, 40, generator=g, batch=4000)
    assert X.shape == (4000, 41, 2)
    Sigma = stationary_covariance(M, D)
    assert_moments(X[:, -1], torch.zeros(2, dtype=F64), Sigma)


def test_float32_path_keeps_dtype_and_statistics() -> None:
    M = rlc_drift().float()
    D = torch.eye(2)
    sde = LinearSDE(M, D, torch.tensor([0.1, 0.2]))
    assert sde.dtype == torch.float32
    g = torch.Generator().manual_seed(4)
    X = simulate(sde, torch.tensor([1.0, 0.0]), 0.5, 60, generator=g, batch=4000)
    assert X.dtype == torch.float32
    assert_moments(X[:, -1], sde.stationary_mean().double(), stationary_covariance(M.double(), D.double()))
    Phi, S, _ = transition(M, D, 0.5)
    assert Phi.dtype == S.dtype == torch.float32


def test_batched_sde_equals_per_element_transitions() -> None:
    g = torch.Generator().manual_seed(5)
    M = torch.randn(4, 3, 3, generator=g, dtype=F64) - 2 * torch.eye(3, dtype=F64)
    D = torch.eye(3, dtype=F64)
    Phi, S, _ = transition(M, D, 0.3)
    for i in range(4):
        P1, S1, _ = transition(M[i], D, 0.3)
        torch.testing.assert_close(Phi[i], P1)
        torch.testing.assert_close(S[i], S1)
    X = simulate(LinearSDE(M, D), None, 0.1, 5, generator=g, batch=2)
    assert X.shape == (2, 4, 6, 3)


def _brute_force_averages(sde, x0, t0, T, dt, N, g):
    """Trapezoid averages of exactly-sampled fine paths; the trapezoid error (≈ dt·‖M‖ relative to the std)
    is far below the 5-sigma tolerance for dt = T/400."""
    n0 = round(t0 / dt)
    X = simulate(sde, x0, dt, n0 + round(T / dt), generator=g, batch=N)[:, n0:]
    return (X[:, 1:].sum(1) + X[:, :-1].sum(1)) * (0.5 * dt / T)


def test_time_average_closed_form_matches_simulated_averages_non_normal() -> None:
    M = rlc_drift(R=0.8)
    D = torch.diag(torch.tensor([0.5, 1.0], dtype=F64))
    sde = LinearSDE(M, D, torch.tensor([0.3, 0.0], dtype=F64))
    x0 = torch.tensor([2.0, -1.0], dtype=F64)
    t0, T = 0.5, 4.0
    mean, cov = time_average_moments(sde, x0, t0, T)
    avg = _brute_force_averages(sde, x0, t0, T, T / 400, 4000, torch.Generator().manual_seed(6))
    assert_moments(avg, mean, cov)
    draws = sample_time_average(sde, x0, t0, T, generator=torch.Generator().manual_seed(7), batch=4000)
    assert draws.shape == (4000, 2)
    assert_moments(draws, mean, cov)


def test_time_average_covariance_tends_to_the_error_law() -> None:
    # T·Cov(x̄) → -(M⁻¹Σ + ΣM⁻ᵀ) with a relative correction O(t_relax/T)
    M = rlc_drift(R=1.0)
    D = torch.diag(torch.tensor([0.2, 1.0], dtype=F64))
    sde = LinearSDE(M, D)
    Sigma = stationary_covariance(M, D)
    Minv = torch.linalg.inv(M)
    law = -(Minv @ Sigma + Sigma @ Minv.T)
    for T in (1e3, 1e5):
        _, cov = time_average_moments(sde, None, 0.0, T, x0_cov=Sigma)
        assert (cov * T - law).abs().max() / law.abs().max() < 20.0 / T


def test_time_average_mean_short_window_is_the_state() -> None:
    M = rlc_drift()
    sde = LinearSDE(M, torch.eye(2, dtype=F64), torch.tensor([1.0, 0.0], dtype=F64))
    x0 = torch.tensor([0.3, 0.1], dtype=F64)
    m_avg, c_avg = time_average_moments(sde, x0, 1.0, 1e-7)
    m_state, c_state = state_moments(sde, x0, 1.0)
    torch.testing.assert_close(m_avg, m_state, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(c_avg, c_state, rtol=1e-6, atol=1e-6)
    assert math.isfinite(float(c_avg.sum()))


def test_log_likelihood_matches_scipy_and_is_differentiable() -> None:
    from scipy.stats import multivariate_normal

    R = torch.tensor(0.5, dtype=F64, requires_grad=True)
    M = torch.stack(
        [
            torch.stack([torch.tensor(0.0, dtype=F64), torch.tensor(-1.0, dtype=F64)]),
            torch.stack([torch.tensor(1.0, dtype=F64), -R]),
        ]
    )
    sde = LinearSDE(M, torch.eye(2, dtype=F64), torch.tensor([0.1, 0.0], dtype=F64))
    X = simulate(
        LinearSDE(M.detach(), sde.D, sde.u), None, 0.3, 50, generator=torch.Generator().manual_seed(8)
    )[0]
    ll = log_likelihood(sde, X, 0.3)
    Phi, S, Gamma = transition(M.detach(), sde.D, 0.3)
    mean = X[:-1] @ Phi.T + Gamma @ sde.u
    ref = sum(multivariate_normal(mean[k].numpy(), S.numpy()).logpdf(X[k + 1].numpy()) for k in range(50))
    assert float(ll.detach()) == pytest.approx(ref, rel=1e-10)
    (grad,) = torch.autograd.grad(ll, R)
    assert math.isfinite(float(grad))


def _loop_reference(sde, x0, dt, n_steps, generator, batch):
    """The step-by-step recursion x_{k+1} = Φ x_k + Γ u + L ξ_k with simulate's set-up and noise draws."""
    Phi, S, Gamma = transition(sde.M, sde.D, dt)
    L = psd_factor(S.to(F64)).to(sde.dtype)
    lead = (batch, *sde.batch_shape)
    xi = torch.randn((n_steps, *lead, sde.n), generator=generator, dtype=sde.dtype)
    c = (Gamma @ sde.u[..., None])[..., 0]
    x = torch.zeros(sde.n, dtype=sde.dtype) if x0 is None else x0.to(sde.dtype)
    x = x.expand(*lead, sde.n)
    out = [x]
    for k in range(n_steps):
        x = (Phi @ x[..., None])[..., 0] + c + (L @ xi[k][..., None])[..., 0]
        out.append(x)
    return torch.stack(out, dim=-2)


def _non_normal_drift(n: int, g: torch.Generator, *batch: int) -> torch.Tensor:
    """A stable drift with a non-normal (upper-triangular-heavy) part: ‖e^{Mt}‖ grows before it decays."""
    A = 0.5 * torch.randn(*batch, n, n, generator=g, dtype=F64) / n**0.5
    M = A + 1.5 * torch.triu(torch.ones(n, n, dtype=F64), 1) - 2.0 * torch.eye(n, dtype=F64)
    assert float(torch.linalg.eigvals(M).real.max()) < -0.5
    assert float(torch.linalg.matrix_norm(M @ M.mT - M.mT @ M).max()) > 1.0  # non-normal
    return M


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(F64) - b.to(F64)).abs().max() / b.to(F64).abs().max())


@pytest.mark.parametrize("n_steps", [63, 64, 65, 1000, 1024])
def test_blocked_simulation_equals_the_loop_unbatched_non_normal(n_steps: int) -> None:
    g = torch.Generator().manual_seed(10)
    M = _non_normal_drift(5, g)
    Q = torch.randn(5, 3, generator=g, dtype=F64)
    sde = LinearSDE.from_noise_input(M, Q, torch.randn(5, generator=g, dtype=F64))
    x0 = torch.randn(5, generator=g, dtype=F64)
    X = simulate(sde, x0, 0.2, n_steps, generator=torch.Generator().manual_seed(11), batch=3)
    ref = _loop_reference(sde, x0, 0.2, n_steps, torch.Generator().manual_seed(11), 3)
    assert X.shape == ref.shape == (3, n_steps + 1, 5)
    assert _rel_err(X, ref) < 1e-12


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_blocked_simulation_equals_the_loop_batched(dtype: torch.dtype, tol: float) -> None:
    # M batched [3, n, n], u batched [2, 1, n]: batch_shape (2, 3) is wider than the transition's (3,)
    g = torch.Generator().manual_seed(12)
    M = _non_normal_drift(4, g, 3)
    D = torch.diag(torch.tensor([0.0, 1.0, 0.5, 2.0], dtype=F64))  # singular noise
    u = torch.randn(2, 1, 4, generator=g, dtype=F64)
    sde = LinearSDE(M.to(dtype), D.to(dtype), u.to(dtype))
    assert sde.batch_shape == (2, 3)
    x0 = torch.randn(4, generator=g, dtype=F64).to(dtype)
    X = simulate(sde, x0, 0.3, 777, generator=torch.Generator().manual_seed(13), batch=2)
    ref = _loop_reference(sde, x0, 0.3, 777, torch.Generator().manual_seed(13), 2)
    assert X.shape == ref.shape == (2, 2, 3, 778, 4)
    assert X.dtype == dtype
    assert _rel_err(X, ref) < tol


def test_blocked_simulation_float32_unbatched_and_zero_input() -> None:
    g = torch.Generator().manual_seed(14)
    sde = LinearSDE(_non_normal_drift(6, g).float(), torch.eye(6))
    X = simulate(sde, None, 0.5, 5000, generator=torch.Generator().manual_seed(15), batch=2)
    ref = _loop_reference(sde, None, 0.5, 5000, torch.Generator().manual_seed(15), 2)
    assert X.dtype == torch.float32 and X.shape == (2, 5001, 6)
    assert _rel_err(X, ref) < 2e-5


def test_blocked_simulation_takes_about_sqrt_n_sequential_products() -> None:
    """Timing-free: count the matrix products simulate issues for 20k steps (the loop needs 20k): B ≈ 141
    for the powers Φ¹…Φᴮ in the set-up, B for the in-block recurrence, 20k/B for the block starts, 1 GEMM."""
    from torch.overrides import TorchFunctionMode

    class CountMatmul(TorchFunctionMode):
        n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if "matmul" in getattr(func, "__name__", ""):
                CountMatmul.n += 1
            return func(*args, **(kwargs or {}))

    g = torch.Generator().manual_seed(16)
    sde = LinearSDE(_non_normal_drift(3, g), torch.eye(3, dtype=F64))
    n_steps = 20_000
    with CountMatmul():
        X = simulate(sde, None, 0.1, n_steps, generator=torch.Generator().manual_seed(17))
    assert X.shape == (1, n_steps + 1, 3)
    assert 0 < CountMatmul.n <= 4 * math.isqrt(n_steps) + 50, CountMatmul.n
    # and the long run is still exactly the loop's
    ref = _loop_reference(sde, None, 0.1, n_steps, torch.Generator().manual_seed(17), 1)
    assert _rel_err(X, ref) < 1e-12


def test_size_n_lyapunov_time_average_equals_the_augmented_exponential(monkeypatch) -> None:
    import thermotrain.models._linear_sde as lsde

    g = torch.Generator().manual_seed(4)
    m = 40  # an underdamped, non-normal resonator array: 80 states (above the fast-path threshold)
    C = torch.randn(m, m, generator=g, dtype=torch.float64)
    C = C @ C.T / m + 0.5 * torch.eye(m, dtype=torch.float64)
    Z, I = torch.zeros(m, m, dtype=torch.float64), torch.eye(m, dtype=torch.float64)
    M = torch.cat([torch.cat([Z, -torch.linalg.inv(C)], 1), torch.cat([I, -0.3 * I], 1)], 0)
    D = torch.block_diag(0.01 * I, 0.1 * I)
    u = torch.randn(2 * m, generator=g, dtype=torch.float64)
    sde = lsde.LinearSDE(M, D, u)
    x0 = torch.randn(3, 2 * m, generator=g, dtype=torch.float64)
    P = torch.randn(2 * m, 2 * m, generator=g, dtype=torch.float64)
    P = 0.01 * P @ P.T
    assert lsde._lyapunov_path(sde)
    fast = lsde.time_average_moments(sde, x0, 2.5, 30.0, x0_cov=P)
    monkeypatch.setattr(lsde, "_LYAPUNOV_MIN_N", 10**9)
    ref = lsde.time_average_moments(sde, x0, 2.5, 30.0, x0_cov=P)
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-9, atol=1e-14)
    # batched inputs (k right-hand sides, as a profile's solve loads them)
    ub = torch.randn(3, 2 * m, generator=g, dtype=torch.float64)
    sde_b = lsde.LinearSDE(M, D, ub)
    ref_b = lsde.time_average_moments(sde_b, x0, 2.5, 30.0)
    monkeypatch.setattr(lsde, "_LYAPUNOV_MIN_N", 64)
    fast_b = lsde.time_average_moments(sde_b, x0, 2.5, 30.0)
    torch.testing.assert_close(fast_b[0], ref_b[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast_b[1], ref_b[1], rtol=1e-9, atol=1e-14)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (CI and the dev machines have none)"
)
def test_surrogate_runs_on_cuda_and_matches_cpu() -> None:
    from thermotrain.models import HardwareProfile, inverse

    g = torch.Generator().manual_seed(2)
    A = torch.randn(6, 6, generator=g, dtype=F64)
    A = A @ A.T / 6 + 0.5 * torch.eye(6, dtype=F64)
    inst = HardwareProfile.from_spec("rc", coupling_bits=8, tolerance=0.01).instantiate(A)
    cpu = transition(inst.sde.M, inst.sde.D, 0.3)
    gpu = transition(inst.sde.M.cuda(), inst.sde.D.cuda(), 0.3)
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-10, atol=1e-12)
    X = simulate(inst.sde.to(device="cuda"), None, 0.5, 200, generator=torch.Generator("cuda").manual_seed(0))
    assert X.device.type == "cuda" and bool(torch.isfinite(X).all())
    r = inverse(A.cuda(), backend="ideal", t=100.0, dt=0.5, generator=torch.Generator("cuda").manual_seed(0))
    assert r.inverse.device.type == "cuda"
