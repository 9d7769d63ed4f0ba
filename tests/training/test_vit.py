"""The Vision Transformer (``--model vit``) and K-FAC's expand form for Linears shared over tokens.

The expand-form tests build A and G by hand from per-example gradients (autograd on a sum-reduced loss), not
from the preconditioner's own code; the training test compares against the untrained loss.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from thermotrain import TrainingError
from thermotrain.training import KFACConfig, KFACPreconditioner, build_model
from thermotrain.training._data import load_dataset
from thermotrain.training._nets import MODELS, ViT, vit

torch.set_num_threads(1)


def _vit_params(c: int, p: int, d: int, t: int, m: int, depth: int, k: int) -> int:
    """Parameter count of :class:`ViT`, written out term by term (independent of the module)."""
    patch_embed = (c * p * p + 1) * d
    tokens = d + (t + 1) * d  # class token + positional embedding
    block = 2 * 2 * d + (d + 1) * 3 * d + (d + 1) * d + (d + 1) * m + (m + 1) * d  # 2 LN, qkv, proj, MLP
    return patch_embed + tokens + depth * block + 2 * d + (d + 1) * k


@pytest.mark.parametrize(
    "shape,params",
    [((1, 28, 28), _vit_params(1, 7, 96, 16, 192, 3, 10)), ((1, 8, 8), _vit_params(1, 2, 32, 16, 64, 2, 10))],
)
def test_vit_output_shape_and_parameter_count(shape: tuple[int, int, int], params: int) -> None:
    torch.manual_seed(0)
    model = build_model("vit", shape)
    assert isinstance(model, ViT) and "vit" in MODELS
    assert sum(p.numel() for p in model.parameters()) == params
    assert params < 300_000  # "a few hundred thousand parameters" (232 042 on 28x28)
    assert model.tokens == 16
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 10) and bool(torch.isfinite(out).all())


def test_vit_is_deterministic_under_the_seed_and_has_no_multihead_attention_module() -> None:
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    outs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        model = build_model("vit", (1, 8, 8))
        outs.append(model(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert not torch.allclose(outs[0], outs[2])
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())


def test_vit_patches_are_row_major_and_channel_first() -> None:
    model = vit((2, 4, 4), patch=2, dim=4, depth=1, heads=2, mlp_dim=4)
    x = torch.arange(32.0).reshape(1, 2, 4, 4)
    p = model.patches(x)
    assert p.shape == (1, 4, 8)
    # patch 1 (top right): channel 0 rows 0-1 cols 2-3, then channel 1
    torch.testing.assert_close(p[0, 1], torch.tensor([2.0, 3.0, 6.0, 7.0, 18.0, 19.0, 22.0, 23.0]))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"patch": 3}, "cannot be cut into 3x3 patches"), ({"heads": 3}, "not divisible by 3 heads")],
)
def test_vit_rejects_a_patch_or_head_count_that_does_not_fit(kwargs: dict, match: str) -> None:
    args = {"patch": 2, "dim": 8, "depth": 1, "heads": 2, "mlp_dim": 8} | kwargs
    with pytest.raises(TrainingError, match=match):
        vit((1, 8, 8), **args)


def test_kfac_preconditions_every_linear_of_the_vit_and_reports_the_rest() -> None:
    torch.manual_seed(0)
    model = build_model("vit", (1, 8, 8))
    precond = KFACPreconditioner(model)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert precond.layers == linears
    assert len(linears) == 1 + 2 * 4 + 1  # patch embedding, (qkv, proj, fc1, fc2) per block, head
    # class token + positional embedding live on the root module; LayerNorms: plain gradient
    assert precond.fallback_layers == [
        "ViT",
        "blocks.0.norm1",
        "blocks.0.norm2",
        "blocks.1.norm1",
        "blocks.1.norm2",
        "norm",
    ]


class _MeanTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)


def test_expand_form_on_a_token_shared_linear_equals_the_explicit_computation(monkeypatch) -> None:
    """A = Σ_{n,t} ā āᵀ/(B·T), G = Σ_{n,t} ĝ ĝᵀ/B with ĝ_{n,t} = ∂ℓ_n/∂s_{n,t}; U = (G+λI)⁻¹∇W(A+λI)⁻¹.

    B = 2, T = 3 and widths 24 → 16: rows·(m²+n²+mn) = 6·1281 < 0.8·mn(m+n) = 13 120, so the low-rank path
    (∇W = SᵀX over the B·T rows) is the one checked."""
    from thermotrain.training import _kfac

    used: list[bool] = []
    original = _kfac._Layer.low_rank_gradient
    monkeypatch.setattr(
        _kfac._Layer,
        "low_rank_gradient",
        lambda self: used.append(original(self) is not None) or original(self),
    )
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 16), nn.Tanh(), _MeanTokens(), nn.Linear(16, 3)).double()
    gen = torch.Generator().manual_seed(1)
    B, T, lam = 2, 3, 0.1
    x = torch.randn(B, T, 24, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (B,), generator=gen)

    # by hand: per-example output gradients of the first layer from the sum-reduced loss
    W, b = model[0].weight.detach(), model[0].bias.detach()
    s = (x @ W.T + b).requires_grad_(True)
    per_example = nn.functional.cross_entropy(model[3](model[1](s).mean(1)), y, reduction="none")
    (g_hat,) = torch.autograd.grad(per_example.sum(), s)  # (B, T, 16): ∂ℓ_n/∂s_{n,t}
    a = torch.cat([x, torch.ones(B, T, 1, dtype=x.dtype)], dim=2)  # (B, T, 25)
    A = torch.einsum("nti,ntj->ij", a, a) / (B * T)
    G = torch.einsum("nti,ntj->ij", g_hat, g_hat) / B
    grad = torch.einsum("nti,ntj->ij", g_hat, a) / B  # ∇[W b] of the mean loss
    U = torch.linalg.solve(G + lam * torch.eye(16, dtype=G.dtype), grad) @ torch.linalg.inv(
        A + lam * torch.eye(25, dtype=A.dtype)
    )

    precond = KFACPreconditioner(model, KFACConfig(damping=lam, inv_update_steps=1))
    nn.CrossEntropyLoss()(model(x), y).backward()
    torch.testing.assert_close(torch.cat([model[0].weight.grad, model[0].bias.grad[:, None]], 1), grad)
    precond.step()
    A_ours, G_ours = precond.factors()["0"]
    torch.testing.assert_close(A_ours, A, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(G_ours, G, rtol=1e-12, atol=1e-14)
    assert used[0] is True  # layer "0": low-rank path over B·T rows
    ours = torch.cat([model[0].weight.grad, model[0].bias.grad[:, None]], 1)
    torch.testing.assert_close(ours, U, rtol=1e-9, atol=1e-12)


def test_one_token_equals_the_plain_batch() -> None:
    """Inputs (B, 1, d) give the same factors and update as (B, d): expand with T = 1 is plain K-FAC."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (7,), generator=gen)
    results = []
    for inp in (x, x[:, None, :]):
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3), nn.Flatten(1)).double()
        precond = KFACPreconditioner(model, KFACConfig(damping=1e-2, inv_update_steps=1))
        for _ in range(2):  # the second step exercises the running average
            model.zero_grad()
            nn.CrossEntropyLoss()(model(inp), y).backward()
            precond.step()
        results.append((precond.factors(), [p.grad.clone() for p in model.parameters()]))
    (f2, g2), (f3, g3) = results
    for name in f2:
        torch.testing.assert_close(f2[name][0], f3[name][0], rtol=1e-14, atol=1e-15)
        torch.testing.assert_close(f2[name][1], f3[name][1], rtol=1e-14, atol=1e-15)
    for a, b in zip(g2, g3):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_an_input_without_a_batch_dimension_is_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 2)).double()
    KFACPreconditioner(model)
    with pytest.raises(TrainingError, match="needs a batch dimension.*unsqueeze"):
        model(torch.randn(3, dtype=torch.float64))


@pytest.mark.parametrize("seed", [0, 1])
def test_digital_kfac_trains_the_vit_on_digits(seed: int) -> None:
    """60 K-FAC steps (batch 64, the harness defaults: lr 0.05, momentum 0.9, damping 0.1, kl_clip 1e-3) on
    512 digits lower the training loss on those 512 by more than 0.5 nats.

    Measured over seeds 0-4 (1 thread): untrained loss 2.38-2.57 nats, drop after 60 steps 1.16-1.77 nats;
    0.5 is under half the smallest drop, and a run that stalls at ln 10 ≈ 2.30 or diverges (what lr 0.05
    without kl_clip does: loss > 100 within 5 steps) fails it."""
    data = load_dataset("digits", subset=512)
    x, y = data.x_train, data.y_train
    torch.manual_seed(seed)
    model = build_model("vit", data.image_shape)
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        before = float(loss_fn(model(x), y))
    precond = KFACPreconditioner(model, KFACConfig(damping=0.1, kl_clip=1e-3, lr=0.05))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(60):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        precond.step()
        opt.step()
    with torch.no_grad():
        after = float(loss_fn(model(x), y))
    assert after < before - 0.5, (before, after)


def test_train_accepts_model_vit() -> None:
    """``TrainConfig(model="vit")`` reaches the ViT through ``_nets.MODELS`` and trains it with K-FAC."""
    from thermotrain.training import TrainConfig, train

    summary = train(
        TrainConfig(
            model="vit",
            dataset="digits",
            optimizer="kfac",
            subset=256,
            epochs=1,
            batch_size=64,
            progress=False,
        )
    )
    assert summary["status"] == "completed" and summary["steps"] == 4
    assert "ViT" in summary["fallback_layers"] and "norm" in summary["fallback_layers"]
