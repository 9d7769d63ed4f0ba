"""``kfac-fidelity`` (training/_fidelity.py): the angle between a device's K-FAC update and the exact one, on
the factors of real digital K-FAC runs read back from their checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch

from thermotrain import InputError
from thermotrain.training import _fidelity as fid
from thermotrain.training._experiments import check_options, run_experiment
from thermotrain.training._solvers import ExactSolver

torch.set_num_threads(1)


def _spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(4 * n, n, generator=g, dtype=torch.float64)
    return X.T @ X / (4 * n)


def test_an_exact_solver_reproduces_kfac_and_the_turn_is_the_curvatures() -> None:
    """With exact inverses the device error is 0; the turn is ∠((G+λI)⁻¹ g (A+λI)⁻¹, g), which vanishes as λ
    outgrows the factors (the update becomes g/λ²)."""
    factors = {"l": (_spd(5, 0), _spd(3, 1))}
    g = {"l": torch.randn(3, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)}
    small = fid.measure(factors, g, 0.01, ExactSolver())["l"]
    assert small["error_deg"] == pytest.approx(0.0, abs=1e-5) and small["norm_ratio"] == pytest.approx(1.0)
    A, G = factors["l"]
    U = torch.linalg.inv(G + 0.01 * torch.eye(3, dtype=torch.float64)) @ g["l"]
    U = U @ torch.linalg.inv(A + 0.01 * torch.eye(5, dtype=torch.float64))
    assert small["turn_deg"] == pytest.approx(fid.angle_deg(U, g["l"]), abs=1e-9) and small["turn_deg"] > 10
    assert fid.measure(factors, g, 1e4, ExactSolver())["l"]["turn_deg"] < 0.1
    assert fid.angle_deg(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == pytest.approx(90.0)
    assert fid.angle_deg(torch.zeros(2), torch.tensor([0.0, 2.0])) is None


def test_kfac_fidelity_end_to_end_on_digits(tmp_path) -> None:
    """Tuned and trained digital K-FAC (2 seeds, 1 epoch), its checkpoints read back, every device × λ row;
    the curvature turn is the same for every device (same factors and gradients), and the device with 12 bits,
    no tolerance and a 10× lower readout error is closer to exact K-FAC than the profile as given."""
    out = tmp_path / "fid"
    opts = {"epochs": 1, "seeds": 2, "subset": 600, "precond_lr_grid": (1.0,), "damping_grid": (1.0,)}
    payload = run_experiment("kfac-fidelity", out, opts)
    res = json.loads((out / "results.json").read_text())
    rows = res["rows"]
    assert len(rows) == len(fid.devices(_rc8())) * len(fid.DAMPING_SCALES) == len(payload["rows"])
    assert res["protocol"]["seeds"] == [0, 1] and res["digital_selection"]["damping"] > 0
    assert (out / "kfac-fidelity.png").stat().st_size > 0 and "| device |" in (out / "results.md").read_text()
    layers = set(rows[0]["layers"])
    assert len(layers) == 2  # the digits MLP's two Linear layers
    by_scale: dict[float, list[dict]] = {}
    for r in rows:
        assert set(r["layers"]) == layers and r["seeds"] == [0, 1]
        by_scale.setdefault(r["damping_scale"], []).append(r)
    for same in by_scale.values():
        for name in layers:
            turns = {tuple(r["layers"][name]["turn_deg"]["per_seed"]) for r in same}
            assert len(turns) == 1
    for r in rows:
        for d in r["layers"].values():
            for err, norm in zip(d["error_deg"]["per_seed"], d["norm_ratio"]["per_seed"], strict=True):
                # a device that read every channel as a constant gives a zero update: no angle, length 0
                assert (err is None and norm == 0.0) or (math.isfinite(err) and err > 0 and norm > 0)
    as_given = [r for r in rows if "as given" in r["device"] and r["damping_scale"] == 1.0][0]
    quiet = [r for r in rows if "readout error 0.01" in r["device"] and r["damping_scale"] == 1.0][0]
    for name in layers:
        assert quiet["layers"][name]["error_deg"]["mean"] < as_given["layers"][name]["error_deg"]["mean"]
    # a 4-bit ADC over a range matched to the signal (a gain stage) reads every layer on every seed, about as
    # close to exact K-FAC as the profile's own ideal-ADC readout
    matched = [r for r in rows if " V (" in r["device"] and r["damping_scale"] == 1.0][0]
    for name in layers:
        d = matched["layers"][name]
        assert all(n > 0 for n in d["norm_ratio"]["per_seed"])
        assert d["error_deg"]["mean"] < 2 * as_given["layers"][name]["error_deg"]["mean"]


def test_kfac_fidelity_refuses_options_it_does_not_use() -> None:
    with pytest.raises(InputError, match="does not use --lr-grid"):
        check_options("kfac-fidelity", {"lr_grid": (1.0,)})


def _rc8():
    from thermotrain.models import load_profile, shipped_profile_path

    return load_profile(shipped_profile_path("rc8"))


def test_an_inverse_read_as_a_constant_is_counted_and_said_once(caplog) -> None:
    """A 4-bit ADC over ±10 V cannot resolve a small damped factor's fluctuations: the inverse readout is 0 on
    the diagonal (impossible for an SPD matrix's inverse); the solver counts it and warns once, naming the fix.
    An 8-bit ADC resolves it: nothing counted."""
    from thermotrain.training._attribution import set_fields
    from thermotrain.training._solvers import AnalogSolver

    M = _spd(4, 3) + 0.09 * torch.eye(4, dtype=torch.float64)
    for bits, blind in ((4, 2), (8, 0)):
        solver = AnalogSolver(
            set_fields(_rc8(), {"adc_bits": bits}), generator=torch.Generator().manual_seed(0)
        )
        with caplog.at_level("WARNING", logger="thermotrain.training._solvers"):
            caplog.clear()
            for _ in range(2):
                solver.inverse(M, floor=0.09)
        assert solver.stats.blind_readouts == blind
        warned = [r for r in caplog.records if "read as a constant" in r.getMessage()]
        assert len(warned) == (1 if blind else 0)
        if blind:
            assert "more ADC bits" in warned[0].getMessage()
