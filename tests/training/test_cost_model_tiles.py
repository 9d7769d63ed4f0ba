"""The cost model counts what the simulator does: a dry run of the tiles (models.tiled_inverse with
simulate=False) against a simulated AnalogSolver inverse of the same factor (training/_cost_model.py)."""

from __future__ import annotations

import pytest
import torch

from thermotrain import InputError
from thermotrain.models import find_profile, tiled_inverse
from thermotrain.training import AnalogSolver, HardwareConstants, device_seconds, tiled_factor_cost


def _factor(n: int, rows: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(rows, n, generator=g, dtype=torch.float64) * torch.linspace(
        0.2, 2.0, n, dtype=torch.float64
    )
    return X.T @ X / rows


def test_predicted_and_simulated_tiles_count_the_same_device_work() -> None:
    prof = find_profile("rc8")  # 64-cell tiles, 16 per chip
    F = _factor(150, 400, 0)  # 3 blocks (64, 64, 22): one round
    lam = 0.3
    pred = tiled_factor_cost(F, prof, damping=lam)
    solver = AnalogSolver(prof, generator=torch.Generator().manual_seed(1))
    solver.inverse(F + lam * torch.eye(150, dtype=F.dtype), floor=lam)
    st = solver.stats
    assert (pred["blocks"], pred["rounds"], pred["tiles_used"]) == (3, 1, 3)
    assert pred["analog_time_tau"] == pytest.approx(st.analog_time_tau, rel=1e-12)
    assert pred["wall_time_tau"] == pytest.approx(st.wall_time_tau, rel=1e-12)
    assert (pred["values_loaded"], pred["values_read"]) == (st.values_loaded, st.values_read)
    hw = HardwareConstants.from_profile(prof)
    assert device_seconds(st, hw)["total_s"] == pytest.approx(pred["total_s"], rel=1e-12)
    assert pred["analog_s"] == pytest.approx(st.wall_time_tau * prof.tau_s, rel=1e-12)


def test_more_blocks_than_tiles_run_in_rounds_and_the_wall_time_adds_up() -> None:
    prof = find_profile("rc8")
    pred = tiled_factor_cost(
        _factor(300, 600, 2), prof, damping=0.3, cells_per_tile=16
    )  # 19 blocks, 16 tiles
    assert (pred["blocks"], pred["rounds"], pred["tiles_used"]) == (19, 2, 16)
    assert pred["analog_time_tau"] > pred["wall_time_tau"] > 0


def test_a_dry_run_needs_tiles_on_a_device() -> None:
    with pytest.raises(InputError, match="dry run"):
        tiled_inverse(torch.eye(4, dtype=torch.float64), backend="exact", cells_per_tile=2, simulate=False)
