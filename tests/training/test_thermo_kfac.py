"""Thermodynamic K-FAC (ideal device) against digital K-FAC, within the device's stated noise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from thermotrain.models import ReadoutConfig
from thermotrain.models._readout import covariance_readout_error
from thermotrain.training import AnalogSolver, ExactSolver, KFACConfig, KFACPreconditioner

torch.set_num_threads(1)
LAM = 0.1


def _step(solver, mode: str) -> tuple[torch.Tensor, KFACPreconditioner]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (32,), generator=g)
    precond = KFACPreconditioner(model, KFACConfig(damping=LAM, mode=mode), solver)
    nn.CrossEntropyLoss()(model(x), y).backward()
    precond.step()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]), precond


def _stated_error(F: torch.Tensor, t: float, burn: float, dt: float) -> float:
    """The covariance readout's predicted relative error for the damped factor F (scaled like the solver)."""
    M = F + LAM * torch.eye(F.shape[0], dtype=F.dtype)
    Ms = M / M.abs().sum(dim=1).max()
    lam = float(torch.linalg.eigvalsh(Ms)[0])
    return covariance_readout_error(lam, M.shape[0], dt, int((t - burn) / dt) + 1)


def test_inverse_mode_matches_digital_kfac_within_stated_noise() -> None:
    ref, digital = _step(ExactSolver(), "inverse")
    solver = AnalogSolver("ideal", ReadoutConfig(analog_time=10_000.0, kappa0=1e-2, sample_interval=0.5))
    ours, precond = _step(solver, "inverse")
    # the update multiplies two estimated inverses: their relative errors add (1st order)
    stated = sum(
        _stated_error(F, 10_000.0, 1_000.0, 0.5) for A, G in digital.factors().values() for F in (A, G)
    )
    err = float((ours - ref).norm() / ref.norm())
    assert err < 2 * stated, (err, stated)
    assert precond.solver.stats.analog_time_tau == pytest.approx(4 * 10_000.0)
    assert precond.solver.stats.values_loaded > 0 and precond.solver.stats.values_read > 0


def test_solve_mode_matches_digital_kfac_at_long_analog_time() -> None:
    ref, _ = _step(ExactSolver(), "inverse")
    solver = AnalogSolver("ideal", ReadoutConfig(analog_time=3000.0, kappa0=1e-6))
    ours, precond = _step(solver, "solve")
    # mean readout: transient ~ e^{-λ_min·burn_in} (λ_min ≥ 0.05 here, burn-in 300 τ) + noise sqrt(2κ0/T)/λ_min
    assert float((ours - ref).norm() / ref.norm()) < 1e-3
    assert precond.last_step["analog_time_tau"] == pytest.approx(4 * 3000.0)


def test_auto_analog_time_meets_its_predicted_error_and_logs_every_inverse() -> None:
    """The default readout (analog_time="auto") plans each inverse from λ_min ≥ the damping: the update's
    error stays within twice the sum of the plans' predicted errors, and every call is logged with its time."""
    ref, digital = _step(ExactSolver(), "inverse")
    solver = AnalogSolver("ideal", ReadoutConfig(target_error=0.3))
    assert solver.readout.analog_time == "auto" and AnalogSolver("ideal").readout.analog_time == "auto"
    ours, precond = _step(solver, "inverse")
    calls = precond.device_log()
    assert [c["n"] for c in calls] == [7, 5, 6, 3]  # A and G of both layers (bias column included)
    assert precond.device_log() == []  # drained
    stated = sum(c["predicted_error"] for c in calls)
    assert all(0 < c["predicted_error"] <= 0.3 + 1e-9 for c in calls)
    err = float((ours - ref).norm() / ref.norm())
    assert err < 2 * stated, (err, stated)
    assert precond.solver.stats.analog_time_tau == pytest.approx(sum(c["analog_time_tau"] for c in calls))
    # a tighter target costs more time, by the law's 1/ε² (within the rounding of sample counts)
    tight = AnalogSolver("ideal", ReadoutConfig(target_error=0.1))
    _step(tight, "inverse")
    ratio = tight.stats.analog_time_tau / solver.stats.analog_time_tau
    assert 7.0 < ratio < 11.0, ratio


def test_a_profile_with_a_chip_runs_each_factor_on_its_tiles() -> None:
    """A profile that declares a chip of 4-cell tiles: the solver maps the 7-wide factor onto 2 tiles
    (block-diagonal inverse), logs tiles and the chip's wall time, and counts the same device time as the
    per-tile plans; a profile without a chip keeps one device of any size."""
    import dataclasses

    from thermotrain.models import ChipSpec, HardwareProfile

    plain = HardwareProfile.from_spec("rc", kappa0=0.01)
    chip = dataclasses.replace(plain, chip=ChipSpec(cells_per_tile=4, tiles=8))
    assert AnalogSolver(plain).mapping == "monolithic" and AnalogSolver(chip).mapping == "tiles"
    assert AnalogSolver(plain, cells_per_tile=4).mapping == "tiles"
    solver = AnalogSolver(chip, ReadoutConfig(target_error=0.3))
    F = torch.eye(7, dtype=torch.float64) + 0.1 * torch.ones(7, 7, dtype=torch.float64)
    inv = solver.inverse(F, floor=0.1)
    (call,) = solver.drain_log()
    assert call["tiles_used"] == 2 and call["mapping"] == "block-diagonal"
    assert 0 < call["wall_time_tau"] <= call["analog_time_tau"] == solver.stats.analog_time_tau
    assert inv[:4, 4:].abs().max() == 0  # nothing couples the two tiles
    exact = torch.linalg.inv(F[:4, :4])
    assert float((inv[:4, :4] - exact).norm() / exact.norm()) < 3 * 0.3


def test_block_diagonal_solve_mode_solves_with_the_batch_rows_where_they_are_fewer() -> None:
    """Solve mode on block-diagonal tiles (no warm start): a layer whose gradient is SᵀX over fewer rows than
    its factors' widths is preconditioned as [(G+λI)⁻¹Sᵀ][(A+λI)⁻¹Xᵀ]ᵀ — the same update as the two solves
    with the gradient's columns (noiseless tiles: to rounding), with fewer right-hand-side values loaded."""
    cfg = ReadoutConfig(mode="average", kappa0=0.0, analog_time=200.0, burn_in=20.0)

    def solver() -> AnalogSolver:
        return AnalogSolver("ideal", cfg, mapping="block-diagonal", cells_per_tile=8)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 20), nn.Tanh(), nn.Linear(20, 3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 30, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g)
    ours = solver()
    precond = KFACPreconditioner(model, KFACConfig(damping=LAM, mode="solve"), ours)
    nn.CrossEntropyLoss()(model(x), y).backward()
    first = precond._layers["0"]
    raw = first.grad_matrix().clone()
    assert first.low_rank_gradient() is not None
    precond.step()
    ref = solver()
    Y = ref.solve(first.G_damped, raw, floor=LAM)
    U = ref.solve(first.A_damped, Y.T, floor=LAM).T
    got = torch.cat([model[0].weight.grad, model[0].bias.grad[:, None]], dim=1)
    assert torch.allclose(got, U, rtol=1e-9, atol=1e-12)
    # values read: 8 rows × (20 + 31) on the first layer instead of 2 × 20 × 31; the second layer (3 × 21,
    # more rows than columns) keeps the two solves with the gradient's columns
    assert ours.stats.values_read == 8 * (20 + 31) + 2 * 3 * 21
    assert ref.stats.values_read == 2 * 20 * 31


def test_the_run_summary_counts_tiled_solves_that_stopped_above_their_tolerance() -> None:
    """A CG solve stopped by its floor or max_iters hands K-FAC its best iterate; the run summary and the
    terminal line say how many did and how far off they were, and a resumed run keeps the count."""
    from thermotrain.training._precond import ReadoutTally, describe_readout

    A = torch.eye(8, dtype=torch.float64) + 0.9 * torch.ones(8, 8, dtype=torch.float64)  # strongly coupled
    B = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    solver = AnalogSolver("ideal", cells_per_tile=2, max_iters=1, tol=1e-6)
    solver.solve(A, B)
    solver.solve(A, B)
    records = solver.drain_log()
    assert [r["tol"] for r in records] == [1e-6, 1e-6] and all(r["residual"] > 1e-6 for r in records)
    tally = ReadoutTally()
    tally.add(records)
    d = tally.as_dict()
    assert d["unconverged_solves"] == 2 and d["solve_residual_max"] == max(r["residual"] for r in records)
    assert "2 tiled solves stopped above their tolerance" in describe_readout({"analog_time": "auto", **d})
    again = ReadoutTally()
    again.load(d)
    assert again.as_dict() == d
    ok = AnalogSolver("ideal", cells_per_tile=2, tol=0.5)
    ok.solve(A, B)
    fine = ReadoutTally()
    fine.add(ok.drain_log())
    assert fine.as_dict()["unconverged_solves"] == 0
    assert "stopped above" not in describe_readout({"analog_time": "auto", **fine.as_dict()})
