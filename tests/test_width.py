"""``thermotrain experiment width`` (training/_width.py): the factor and its spectrum, the modelled analog
times against the models' own planning and tiled readout, and a small sweep's results.json and plot."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from thermotrain._errors import InputError
from thermotrain.models import ReadoutConfig, load_profile, shipped_profile_path, tiled_inverse
from thermotrain.training import _width as width
from thermotrain.training._experiments import check_options


@pytest.fixture(scope="module")
def rc8():
    return load_profile(shipped_profile_path("rc8"))


def _images(m: int) -> torch.Tensor:
    from thermotrain.training._data import load_dataset

    return load_dataset("digits", m).x_train


def test_the_factor_is_the_damped_covariance_of_relu_features() -> None:
    x = _images(200)
    F, a = width.factor(x, 48, damping=0.3)
    assert F.shape == (48, 48) and a.shape == (200, 48)
    assert bool((a >= 0).all()) and torch.allclose(F, F.T)
    assert torch.allclose(F - 0.3 * torch.eye(48, dtype=F.dtype), a.T @ a / 200)
    F2, _ = width.factor(x, 48, damping=0.3)
    assert torch.equal(F, F2)  # the layer is seeded


@pytest.mark.parametrize("m, n", [(30, 80), (120, 40)])
def test_spectrum_ends_match_eigvalsh_also_through_the_gram_matrix(m: int, n: int) -> None:
    x = _images(m)
    F, a = width.factor(x, n, damping=0.3)
    lo, hi = width.spectrum_ends(F, a, 0.3)
    ev = torch.linalg.eigvalsh(F)
    assert lo == pytest.approx(float(ev[0]), rel=1e-9) and hi == pytest.approx(float(ev[-1]), rel=1e-9)
    if m < n:
        assert lo == 0.3  # rank-m factor: the bottom is the damping exactly


def test_time_median_is_the_median_of_the_calls() -> None:
    calls = iter([0.0, 0.02, 0.01])
    import time

    t = width.time_median(lambda: time.sleep(next(calls)), repeats=3)
    assert t["min_s"] <= t["median_s"] <= t["max_s"]
    assert 0.009 <= t["median_s"] < 0.02 <= t["max_s"]


def test_the_tiled_time_is_what_tiled_inverse_runs(rc8) -> None:
    """The sweep's chip wall time (planned, not run) equals models.tiled_inverse's accounted wall time on the
    same scaled factor (run with the law simulator): 4 blocks of 16 on a 2-tile chip = 2 rounds."""
    prof = dataclasses.replace(rc8, chip={"cells_per_tile": 16, "tiles": 2})
    F, _ = width.factor(_images(150), 64, damping=0.3)
    plan = width._tile_plan(F, prof, 16, 2, 0.3)
    assert (plan["blocks"], plan["rounds"]) == (4, 2)
    s = 1.0 / float(F.abs().sum(dim=1).max())
    cfg = width._readout(prof)
    run = tiled_inverse(
        (F * s).float(),
        backend=prof,
        config=cfg,
        lambda_floor=0.3 * s,
        generator=torch.Generator().manual_seed(0),
    )
    assert run.rounds == 2
    assert plan["wall_time_tau"] == pytest.approx(run.wall_time_tau, rel=1e-6)
    assert plan["predicted_error_max"] <= width._target(prof) * (1 + 1e-9)


def test_a_small_sweep_writes_rows_plot_and_results(tmp_path: Path, rc8) -> None:
    payload = width.run_width(tmp_path, rc8, widths=(64, 128, 256), examples=300, repeats=1)
    res = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "width.png").is_file() and (tmp_path / "width.json").is_file()
    assert res["experiment"] == "width" and res["protocol"] is None and res["tau_s"] == rc8.tau_s
    rows = res["rows"]
    assert [r["n"] for r in rows] == [64, 128, 256]
    target = width._target(rc8)
    for r in rows:
        assert r["condition_number"] == pytest.approx(r["lambda_max"] / r["lambda_min"])
        assert r["lambda_min"] >= 0.3 * (1 - 1e-9)
        assert r["digital_inv_cholesky_s"] > 0 and r["digital_inv_lu_s"] > 0
        assert r["analog_monolithic_predicted_error"] <= target * (1 + 1e-9)  # uncapped: at the target
        assert not r["analog_monolithic_capped"] and not r["analog_tiles_capped"]
        assert r["analog_monolithic_s_profile_tau"] == pytest.approx(r["analog_monolithic_tau"] * rc8.tau_s)
        assert r["analog_monolithic_s_paper_tau"] == pytest.approx(r["analog_monolithic_tau"] * 1e-6)
        assert r["tiles_blocks"] == math.ceil(r["n"] / 64) and r["tiles_rounds"] == 1  # ≤ 16 blocks
        assert r["digital_over_analog_tiles_paper_tau"] == pytest.approx(
            r["digital_inv_cholesky_s"] / r["analog_tiles_s_paper_tau"]
        )
    assert set(res["loglog_slopes"]) >= {
        "condition_number",
        "digital_inv_cholesky_s",
        "analog_monolithic_tau",
    }
    assert "digital/analog" in res["verdict"]
    assert payload["table"][0]["n"] == 64


def test_loglog_slope_recovers_a_power_law() -> None:
    xs = [256, 512, 1024, 2048]
    assert width.loglog_slope(xs, [3e-9 * n**2.7 for n in xs]) == pytest.approx(2.7)


def test_width_takes_only_a_profile() -> None:
    assert check_options("width", {}) == {}
    with pytest.raises(InputError, match="does not use --seeds"):
        check_options("width", {"seeds": 3})


def test_the_readout_is_the_profiles_with_the_cap_lifted(rc8) -> None:
    cfg = width._readout(rc8)
    assert isinstance(cfg, ReadoutConfig) and cfg.max_analog_time == width.UNCAPPED
    assert cfg.target_error == rc8.readout.target_error == 0.1
