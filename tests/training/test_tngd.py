"""TNGD: t = 0 is SGD, large t is exact NGD, integrators agree with the exact OU law."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from thermotrain import TrainingError
from thermotrain.training import (
    GGNOperator,
    NGDConfig,
    NGDPreconditioner,
    TNGDConfig,
    TNGDPreconditioner,
    mlp,
)
from thermotrain.training._baselines import conjugate_gradient
from thermotrain.training._tngd import ou_transition

torch.set_num_threads(1)


def _problem(seed: int = 0):
    torch.manual_seed(seed)
    model = mlp(6, (5,), 3).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=g)
    return model, x, y


def _updates(model, x, y, precond, opt, steps: int = 3) -> list[torch.Tensor]:
    params = []
    for _ in range(steps):
        opt.zero_grad()
        nn.CrossEntropyLoss()(model(x), y).backward()
        if precond is not None:
            precond.step(x, y)
        opt.step()
        params.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    return params


def test_ggn_vector_product_matches_dense_ggn_from_autograd_hessian() -> None:
    model, x, y = _problem()
    A = GGNOperator(model, x, y, damping=0.3)
    dense = A.dense()
    # reference: Jᵀ H J with J from torch.autograd.functional.jacobian of the flat-parameter function
    jac = torch.autograd.functional.jacobian(A._f, A.theta).reshape(-1, A.n)
    z = A.z
    H = torch.autograd.functional.hessian(
        lambda o: nn.functional.cross_entropy(o.reshape(z.shape), y), z.reshape(-1)
    )
    ref = jac.T @ H @ jac + 0.3 * torch.eye(A.n, dtype=torch.float64)
    torch.testing.assert_close(dense, ref, atol=1e-12, rtol=1e-10)
    v = torch.randn(A.n, dtype=torch.float64)
    torch.testing.assert_close(A.matvec(v), ref @ v, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("batch", [2, 20])  # N = 53: B·d_z = 6 (Woodbury) and 60 (the direct N-space solve)
def test_exact_ngd_solve_matches_the_dense_system_in_either_space(loss: str, batch: int) -> None:
    """GGNOperator.solve (Woodbury in the B·d_z space when it is the smaller one) equals solving the dense
    damped GGN, and U from factor() reproduces it: Uᵀ U + λI = dense()."""
    model, _, _ = _problem()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(batch, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (batch,), generator=g)
    if loss == "mse":
        y = torch.randn(batch, 3, dtype=torch.float64)
    for lam in (0.3, 1e-3):
        A = GGNOperator(model, x, y, damping=lam, loss=loss)
        U = A.factor()
        torch.testing.assert_close(
            U.T @ U + lam * torch.eye(A.n, dtype=U.dtype), A.dense(), atol=1e-12, rtol=1e-10
        )
        g = torch.randn(A.n, dtype=torch.float64)
        torch.testing.assert_close(A.solve(g), torch.linalg.solve(A.dense(), g), atol=1e-9, rtol=1e-8)


def test_tngd_at_zero_time_equals_sgd_exactly() -> None:
    model, x, y = _problem()
    ref = _updates(model, x, y, None, torch.optim.SGD(model.parameters(), lr=0.1))
    model, x, y = _problem()
    precond = TNGDPreconditioner(model, TNGDConfig(analog_time=0.0, kappa0=0.0, warm_start=False))
    ours = _updates(model, x, y, precond, torch.optim.SGD(model.parameters(), lr=0.1))
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)


@pytest.mark.parametrize("integrator", ["krylov", "dense"])
def test_tngd_at_long_time_matches_exact_ngd(integrator: str) -> None:
    model, x, y = _problem()
    ngd = NGDPreconditioner(model, NGDConfig(damping=0.1, method="dense"))
    ref = _updates(model, x, y, ngd, torch.optim.SGD(model.parameters(), lr=0.1))
    model, x, y = _problem()
    cfg = TNGDConfig(damping=0.1, analog_time=2000.0, kappa0=0.0, integrator=integrator, krylov_tol=1e-12)
    ours = _updates(model, x, y, TNGDPreconditioner(model, cfg), torch.optim.SGD(model.parameters(), lr=0.1))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("integrator,tol", [("krylov", 1e-9), ("euler", 2e-2)])
def test_ou_mean_matches_closed_form(integrator: str, tol: float) -> None:
    model, x, y = _problem()
    A = GGNOperator(model, x, y, damping=0.05)
    D = A.dense()
    b = torch.randn(A.n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    evals, Q = torch.linalg.eigh(D)
    for t in (0.3, 5.0):
        xt, _ = ou_transition(A.matvec, b, b, t, 0.0, None, integrator, dt=0.02, krylov_tol=1e-12)
        sol = torch.linalg.solve(D, b)
        ref = sol + Q @ (torch.exp(-evals * t) * (Q.T @ (b - sol)))
        assert float((xt - ref).norm() / ref.norm()) < tol


def test_ou_noise_covariance_matches_kappa0_inverse_transient() -> None:
    """Cov x(t) = κ0 A⁻¹ (I − e^{−2At}) for the Krylov sampler (Monte Carlo, 4000 draws, 3-σ-ish bound)."""
    D = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    b, t, k0 = torch.zeros(3, dtype=torch.float64), 1.5, 0.1
    samples = torch.stack(
        [ou_transition(lambda v: D @ v, b, b, t, k0, g, "krylov", krylov_tol=1e-12)[0] for _ in range(4000)]
    )
    evals, Q = torch.linalg.eigh(D)
    ref = Q @ torch.diag(k0 * (1 - torch.exp(-2 * evals * t)) / evals) @ Q.T
    emp = samples.T @ samples / len(samples)
    assert float((emp - ref).abs().max()) < 4 * float(ref.diag().max()) * (2 / len(samples)) ** 0.5


def test_delay_runs_the_previous_system_and_counts_its_analog_time() -> None:
    model, x, y = _problem()
    precond = TNGDPreconditioner(model, TNGDConfig(analog_time=5.0, delay=1.0, kappa0=0.0))
    _updates(model, x, y, precond, torch.optim.SGD(model.parameters(), lr=0.1), steps=3)
    assert precond.analog_time_tau == pytest.approx(5.0 * 3 + 1.0 * 2)
    assert precond.last_step["values_read"] == sum(p.numel() for p in model.parameters())


def test_cg_solves_spd_system() -> None:
    M = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    sol, used = conjugate_gradient(lambda v: M @ v, b, max_iter=5)
    torch.testing.assert_close(sol, torch.linalg.solve(M, b))
    assert used == 2


def test_invalid_tngd_settings_raise() -> None:
    with pytest.raises(TrainingError, match="damping"):
        TNGDConfig(damping=0.0)
    with pytest.raises(TrainingError, match="analog_time"):
        TNGDConfig(analog_time=-1.0)


def test_a_delay_does_not_estimate_the_previous_systems_scale_again(monkeypatch) -> None:
    """The delayed phase runs the load the device holds: one λ̂_max estimate (its GGN products are digital
    work in the modelled time) per step, not two."""
    from thermotrain.training import _tngd

    calls = []
    real = _tngd.lambda_max_estimate
    monkeypatch.setattr(_tngd, "lambda_max_estimate", lambda *a, **k: calls.append(1) or real(*a, **k))
    model, x, y = _problem()
    precond = TNGDPreconditioner(model, TNGDConfig(analog_time=5.0, delay=1.0, kappa0=0.0))
    _updates(model, x, y, precond, torch.optim.SGD(model.parameters(), lr=0.1), steps=3)
    assert len(calls) == 3
