"""K-FAC factors and preconditioned gradients against curvlinops' KFACLinearOperator (reference)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from thermotrain import TrainingError
from thermotrain.training import ExactSolver, KFACConfig, KFACPreconditioner

curvlinops = pytest.importorskip(
    "curvlinops", reason="curvlinops-for-pytorch is a dev extra (pip install -e .[dev])"
)

torch.set_num_threads(1)


def _tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 3)
    ).double()


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 2, 2, stride=2), nn.Flatten(), nn.Linear(8, 3)
    ).double()


def _batch(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randint(0, 3, (shape[0],), generator=g)


def _reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    from curvlinops import KFACLinearOperator

    params = [p for p in model.parameters()]
    return KFACLinearOperator(
        model,
        nn.CrossEntropyLoss(),
        params,
        [(x, y)],
        fisher_type="empirical",
        kfac_approx="expand",
        separate_weight_and_bias=False,
        check_deterministic=False,
    )


@pytest.mark.parametrize("make_model,shape", [(_tiny_mlp, (7, 5)), (_tiny_cnn, (6, 2, 4, 4))])
def test_factors_and_preconditioned_gradient_match_curvlinops(make_model, shape) -> None:
    from curvlinops import KFACInverseLinearOperator

    model = make_model()
    x, y = _batch(shape)
    lam = 1e-2
    precond = KFACPreconditioner(model, KFACConfig(damping=lam, inv_update_steps=1))
    loss = nn.CrossEntropyLoss()(model(x), y)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    precond.step()
    ours = [p.grad.clone() for p in model.parameters()]

    ref = _reference(model, x, y)
    ref.compute_kronecker_factors()
    factors = precond.factors()
    assert set(factors) == set(ref._input_covariances)
    for name, (A, G) in factors.items():
        torch.testing.assert_close(A, ref._input_covariances[name], atol=1e-6, rtol=0)
        torch.testing.assert_close(G, ref._gradient_covariances[name], atol=1e-6, rtol=0)
    inv = KFACInverseLinearOperator(ref, damping=lam)
    expected = inv @ grads
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_vit_factors_and_preconditioned_gradient_match_curvlinops_expand() -> None:
    """Every Linear of a tiny ViT (patch embedding, fused qkv, output projection, MLP, head) on (B, T, d)
    inputs: A, G and the update equal curvlinops' ``kfac_approx="expand"`` (Eschenhagen et al. 2023)."""
    from curvlinops import KFACInverseLinearOperator

    from thermotrain.training._nets import vit

    torch.manual_seed(0)
    model = vit((1, 4, 4), patch=2, dim=8, depth=1, heads=2, mlp_dim=8, num_classes=3).double()
    x, y = _batch((5, 1, 4, 4))
    lam = 1e-2
    precond = KFACPreconditioner(model, KFACConfig(damping=lam, inv_update_steps=1))
    nn.CrossEntropyLoss()(model(x), y).backward()
    linear = [p for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()]
    grads = [p.grad.clone() for p in linear]
    precond.step()

    from curvlinops import KFACLinearOperator

    ref = KFACLinearOperator(
        model,
        nn.CrossEntropyLoss(),
        linear,
        [(x, y)],
        fisher_type="empirical",
        kfac_approx="expand",
        separate_weight_and_bias=False,
        check_deterministic=False,
    )
    ref.compute_kronecker_factors()
    factors = precond.factors()
    assert set(factors) == set(ref._input_covariances) and len(factors) == 6
    for name, (A, G) in factors.items():
        torch.testing.assert_close(A, ref._input_covariances[name], atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(G, ref._gradient_covariances[name], atol=1e-12, rtol=1e-10)
    expected = KFACInverseLinearOperator(ref, damping=lam) @ grads
    for p, b in zip(linear, expected):
        torch.testing.assert_close(p.grad, b, atol=1e-10, rtol=1e-8)


def test_unsupported_layers_fall_back_to_plain_gradient_and_are_reported(caplog) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)).double()
    with caplog.at_level("INFO"):
        precond = KFACPreconditioner(model)
    assert precond.fallback_layers == ["1"]
    assert "plain gradient" in caplog.text
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1])
    nn.CrossEntropyLoss()(model(x), y).backward()
    ln_grad = model[1].weight.grad.clone()
    precond.step()
    torch.testing.assert_close(model[1].weight.grad, ln_grad, rtol=0, atol=0)


@pytest.mark.parametrize("damping", [0.0, -1e-3, math.nan])
def test_nonpositive_damping_is_rejected(damping: float) -> None:
    with pytest.raises(TrainingError, match="damping"):
        KFACConfig(damping=damping)


def test_damping_schedule_is_floored_by_min_damping_and_zero_schedule_raises() -> None:
    model = _tiny_mlp()
    precond = KFACPreconditioner(model, KFACConfig(damping=lambda step: 1e-12, min_damping=1e-6))
    assert precond.damping() == 1e-6
    precond = KFACPreconditioner(model, KFACConfig(damping=lambda step: 0.0))
    with pytest.raises(TrainingError, match="damping schedule"):
        precond.damping()


def test_non_finite_gradient_raises_and_leaves_grads_untouched() -> None:
    model = _tiny_mlp()
    precond = KFACPreconditioner(model)
    x, y = _batch((4, 5))
    nn.CrossEntropyLoss()(model(x), y).backward()
    model[0].weight.grad[0, 0] = float("nan")
    with pytest.raises(TrainingError, match="Non-finite gradient"):
        precond.step()
    assert precond.steps == 0


def test_solve_mode_equals_inverse_mode_with_exact_solver() -> None:
    x, y = _batch((9, 5))
    outs = []
    for mode in ("inverse", "solve"):
        model = _tiny_mlp()
        precond = KFACPreconditioner(model, KFACConfig(damping=1e-2, mode=mode), ExactSolver())
        nn.CrossEntropyLoss()(model(x), y).backward()
        precond.step()
        outs.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_state_dict_round_trip_restores_factors() -> None:
    x, y = _batch((9, 5))
    model = _tiny_mlp()
    precond = KFACPreconditioner(model)
    nn.CrossEntropyLoss()(model(x), y).backward()
    precond.step()
    other = KFACPreconditioner(_tiny_mlp())
    other.load_state_dict(precond.state_dict())
    assert other.steps == 1
    for name, (A, G) in precond.factors().items():
        torch.testing.assert_close(other.factors()[name][0], A)
        torch.testing.assert_close(other.factors()[name][1], G)


def _formula(precond: KFACPreconditioner, grads: list[torch.Tensor], lam: float) -> list[torch.Tensor]:
    """U = (G+λI)⁻¹ [∇W ∇b] (A+λI)⁻¹ per layer, from the preconditioner's own factors (dense reference)."""
    out = []
    for _, (A, G) in precond.factors().items():
        w, b = grads.pop(0), grads.pop(0)
        g = torch.cat([w, b[:, None]], dim=1)
        eye_g, eye_a = torch.eye(G.shape[0], dtype=G.dtype), torch.eye(A.shape[0], dtype=A.dtype)
        u = torch.linalg.solve(G + lam * eye_g, g) @ torch.linalg.inv(A + lam * eye_a)
        out += [u[:, :-1], u[:, -1]]
    return out


@pytest.mark.parametrize("clip", [False, True])
def test_low_rank_and_cholesky_fast_paths_equal_the_dense_formula(clip: bool, monkeypatch) -> None:
    from thermotrain.training import _kfac

    used: list[bool] = []
    original = _kfac._Layer.low_rank_gradient
    monkeypatch.setattr(
        _kfac._Layer,
        "low_rank_gradient",
        lambda self: used.append(original(self) is not None) or original(self),
    )
    # batch 4 < widths: the low-rank path applies; inv_update_steps=1 with a 65-wide input: Cholesky path
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 8)).double()
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(4, 64, generator=g, dtype=torch.float64), torch.randint(0, 8, (4,), generator=g)
    lam = 1e-2
    precond = KFACPreconditioner(model, KFACConfig(damping=lam, inv_update_steps=1))
    nn.CrossEntropyLoss()(model(x), y).backward()
    if clip:  # a gradient changed after backward is no longer SᵀX: the probe must send it to the dense path
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
    grads = [p.grad.clone() for p in model.parameters()]
    precond.step()
    assert precond._layers["0"].A_chol is not None  # (2/3)·65/1 > 32 columns: Cholesky factor kept
    assert used == [not clip, not clip]
    for ours, ref in zip([p.grad for p in model.parameters()], _formula(precond, grads, lam)):
        torch.testing.assert_close(ours, ref, atol=1e-9, rtol=1e-7)


def test_forward_passes_without_step_are_capped() -> None:
    model = nn.Sequential(nn.Linear(3, 2)).double()
    precond = KFACPreconditioner(model)
    with pytest.raises(TrainingError, match="without a step"):
        for _ in range(100):
            model(torch.randn(2, 3, dtype=torch.float64))
    assert precond.steps == 0
