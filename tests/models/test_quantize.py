"""DAC/ADC stages and error mitigation by randomized rounding."""

import pytest
import torch

from thermotrain.models import Quantizer, Readout, merge_over_roundings

F64 = torch.float64
Z = 5.0


def test_levels_step_nearest_rounding_and_saturation() -> None:
    q = Quantizer(bits=4, full_scale=1.4)
    assert q.levels == 7 and q.step == pytest.approx(0.2)
    x = torch.linspace(-2.0, 2.0, 101, dtype=F64)
    y = q(x)
    assert float(y.abs().max()) == pytest.approx(1.4)  # clipped to ±full scale
    inside = x.abs() <= 1.4
    assert float((y - x)[inside].abs().max()) <= 0.1 + 1e-12  # ≤ Δ/2
    torch.testing.assert_close(y / 0.2, torch.round(y / 0.2))
    assert torch.equal(Quantizer(None, 1.0)(x), x.clamp(-1, 1))
    with pytest.raises(ValueError, match="bits"):
        Quantizer(bits=1, full_scale=1.0)
    with pytest.raises(ValueError, match="full_scale"):
        Quantizer(bits=8, full_scale=0.0)


def test_randomized_rounding_is_unbiased_with_the_predicted_variance() -> None:
    q = Quantizer(bits=5, full_scale=1.0)
    x = torch.tensor([0.013, -0.377, 0.5, 0.9999, -0.2], dtype=F64)
    K = 20_000
    g = torch.Generator().manual_seed(0)
    draws = q(x.expand(K, 5), rounding="stochastic", generator=g)
    v = q.rounding_variance(x)
    se = (v / K).sqrt()
    assert ((draws.mean(0) - x).abs() <= Z * se + 1e-15).all()
    # variance of a Bernoulli(p)·Δ: p(1-p)Δ²; SE of the sample variance ≤ Δ²·sqrt(1/K) (bounded variable)
    assert ((draws.var(0) - v).abs() <= Z * q.step**2 / K**0.5).all()
    assert ((draws - x).abs() <= q.step).all()  # never more than one level away


def test_symmetric_quantization_keeps_the_matrix_symmetric() -> None:
    A = torch.randn(6, 6, dtype=F64, generator=torch.Generator().manual_seed(1))
    A = A + A.T
    q = Quantizer(bits=6, full_scale=float(A.abs().max()))
    for rounding in ("nearest", "stochastic"):
        Aq = q.quantize_symmetric(A, rounding=rounding, generator=torch.Generator().manual_seed(2))
        assert torch.equal(Aq, Aq.T)


def test_merging_randomized_roundings_turns_epsilon_into_epsilon_squared() -> None:
    A = torch.tensor([[2.0, -0.61, 0.23], [-0.61, 1.5, 0.37], [0.23, 0.37, 1.13]], dtype=F64)
    B = torch.linalg.inv(A)
    q = Quantizer(bits=8, full_scale=2.0)  # Δ/max|A| ≈ 0.8 %
    err_det = float((torch.linalg.inv(q.quantize_symmetric(A)) - B).norm())
    K = 10_000
    merged = merge_over_roundings(torch.linalg.inv, A, q, K, generator=torch.Generator().manual_seed(3))
    err_merged = float((merged - B).norm())
    # Exact second-order prediction: the rounding errors e_ij (i ≤ j) are independent, zero-mean, variance
    # v_ij; (A+E)⁻¹ = B - BEB + BEBEB - …, so E[merged] - B = Σ v_ij B S_ij B S_ij B (+O(ε³)) and the
    # fluctuation has E‖·‖² = Σ v_ij ‖B S_ij B‖²/K (+O(ε³)), S_ij the symmetric unit matrix of (i, j).
    v = q.rounding_variance(A)
    bias, var = torch.zeros_like(A), 0.0
    for i in range(3):
        for j in range(i, 3):
            S = torch.zeros_like(A)
            S[i, j] = S[j, i] = 1.0
            bias += v[i, j] * B @ S @ B @ S @ B
            var += float(v[i, j] * (B @ S @ B).norm() ** 2)
    # merged - B = bias + fluctuation, so the merged error plateaus at the second-order bias
    assert abs(err_merged - float(bias.norm())) <= Z * (var / K) ** 0.5
    assert err_merged < err_det / 10  # deterministic rounding plateaus at its O(ε) bias instead


def test_readout_chain_applies_offset_saturation_and_adc() -> None:
    r = Readout(adc=Quantizer(bits=8, full_scale=1.0), offset=0.1, saturation=1.0)
    y = r(torch.tensor([0.0, 0.5, 3.0, -3.0], dtype=F64))
    step = 1.0 / 127
    torch.testing.assert_close(y, torch.round(torch.tensor([0.1, 0.6, 1.0, -1.0], dtype=F64) / step) * step)
    assert torch.equal(Readout()(torch.ones(2)), torch.ones(2))
