"""Op-amp macro-model, the noise generator block, passive parasitics and corners (issue 9): the symbolic
model's side. The SPICE side is tests/netlists/test_opamp_netlist.py."""

import dataclasses
import json
import math

import numpy as np
import pytest
import sympy as sp

from thermotrain._errors import CircuitError, InputError
from thermotrain.circuits import (
    BOLTZMANN,
    CORNER_KEYS,
    HARDWARE_CORNERS,
    Capacitor,
    Circuit,
    CurrentSource,
    NonIdealities,
    OpAmp,
    Resistor,
    Theory,
    corner_as_dict,
    corner_from_dict,
    linear_region,
    linear_sde,
    load_corner,
    opamp_elements,
    preset,
    symbolic_model,
)
from thermotrain.circuits._region import clipped_fraction, flicker_error_bound


def _theory(spec, seed=0):
    c = spec.build(seed)
    return Theory(linear_sde(c), c.noise_interval), c


def test_finite_gain_inverter_symbolic_dc_is_the_textbook_closed_loop_gain():
    """-R2/R1 / (1 + (1 + R2/R1)/A0) with the offset V_os (1 + R2/R1) on top and bias I_b R2."""
    op = OpAmp(open_loop_gain=1e3, gbw_hz=1e6, input_offset=1e-3, input_bias_current=1e-6)
    els = (
        Resistor("R1", "d", "m", 1e3),
        Resistor("R2", "m", "o", 2e3),
        *opamp_elements("X", "0", "m", "o", op),
    )
    from thermotrain.circuits import VoltageSource

    c = Circuit("inv", (VoltageSource("Vin", "d", "0", 0.5), *els), ("o",), 1e-9, 1e-6)
    th = Theory(linear_sde(c))
    A0, g = 1e3, 2.0
    beta_inv = 1 + g
    expect = (-g * 0.5 + 1e-3 * beta_inv + 1e-6 * 2e3) / (1 + beta_inv / A0)
    assert th.mean[0] == pytest.approx(expect, rel=1e-9)


def test_dominant_pole_and_second_pole_set_the_open_loop_response():
    """Open-loop follower-free check: the macro-model's transfer from a differential input to the output is
    A0 / ((1 + s/p1)(1 + s/p2)), p1 = gbw/A0 (Hz), p2 = second_pole_hz."""
    op = OpAmp(open_loop_gain=1e4, gbw_hz=1e6, second_pole_hz=5e6)
    els = (
        *opamp_elements("X", "i", "0", "o", op),
        Resistor("Rl", "o", "0", 1e3),
        Resistor("Ri", "i", "0", 1e3),
    )
    from thermotrain.circuits import NoiseCurrent

    c = Circuit("ol", (NoiseCurrent("In", "0", "i", 1.0), *els), ("o",), 1e-9, 1e-6)
    sde = linear_sde(c)
    poles = np.sort(-np.linalg.eigvals(sde.M).real) / (2 * math.pi)
    np.testing.assert_allclose(poles, [1e6 / 1e4, 5e6], rtol=1e-9)


def test_voltage_noise_enters_as_an_input_referred_density():
    """A unity-gain follower of a quiet input: the output variance equals the white e_n (two-sided e_n^2/2)
    through the closed loop, which is a single pole at ~gbw: var = (e_n^2/2) * pi * gbw_closed."""
    en = 10e-9
    op = OpAmp(open_loop_gain=1e6, gbw_hz=1e6, voltage_noise=en)
    c = Circuit("fol", tuple(opamp_elements("X", "0", "o", "o", op)), ("o",), 1e-9, 1e-6)
    th = Theory(linear_sde(c))
    A0 = 1e6
    pole = 1e6 / A0 * (1 + A0)  # closed-loop bandwidth (Hz)
    var = en**2 / 2 * math.pi * pole * (A0 / (1 + A0)) ** 2
    assert th.covariance(None)[0, 0] == pytest.approx(var, rel=1e-9)


def test_ideal_corner_elements_are_unchanged_by_the_new_fields():
    for name in ("rc8", "rlc8"):
        c = preset(name).build(0)
        kinds = {type(e).__name__ for e in c.elements}
        assert kinds <= {"Resistor", "Capacitor", "Inductor", "VCVS", "VoltageSource", "NoiseCurrent"}
        assert all(
            getattr(e, "current_limit", None) is None and getattr(e, "output_limit", None) is None
            for e in c.elements
        )


def test_board_corner_carries_macro_model_parasitics_and_generator():
    c = preset("rc8", corner="board").build(0)
    names = {e.name for e in c.elements}
    for must in (
        "X0_rp",
        "X0_cp",
        "X0_cp2",
        "X0_ro",
        "X0_en",
        "X0_inn",
        "X0_ibn",
        "In0_cg",
        "In0_gm",
        "Cf0_esr",
        "Cf0_leak",
    ):
        assert must in names, must
    rp = next(e for e in c.elements if e.name == "X0_rp")
    cp = next(e for e in c.elements if e.name == "X0_cp")
    assert rp.current_limit == pytest.approx(cp.farads * 20e6)
    b = next(e for e in c.elements if e.name == "X0_b")
    assert b.output_limit == 4.8
    r = preset("rlc8", corner="board").build(0)
    names = {e.name for e in r.elements}
    for must in ("RL0", "CL0", "C0_1_esr", "C0_leak", "In0_gm", "Cp0"):
        assert must in names, must


def test_rlc_generator_level_is_set_from_the_nominal_resistor():
    spec = preset("rlc8", size=3, nonideal=NonIdealities(tolerance=0.05))
    c = spec.build(4)
    nominal = 2 * BOLTZMANN * spec.noise_temperature / spec.series_resistance
    for i in range(3):
        src = next(e for e in c.elements if e.name == f"In{i}")
        drawn = next(e for e in c.elements if e.name == f"R{i}").ohms
        assert src.psd == nominal and drawn != spec.series_resistance


def test_generator_bandwidth_and_mismatch_enter_the_theory():
    base = preset("rc8", size=3)
    th0, _ = _theory(base)
    wide = dataclasses.replace(base, nonideal=NonIdealities(noise_bandwidth_hz=1e12))
    th1, c1 = _theory(wide)
    assert len(th1.sde.states) == len(th0.sde.states) + 3
    np.testing.assert_allclose(th1.covariance((0.0,)), th0.covariance((0.0,)), rtol=1e-6)
    narrow = dataclasses.replace(base, nonideal=NonIdealities(noise_bandwidth_hz=2e4))
    th2, _ = _theory(narrow)
    assert np.trace(th2.covariance(None)) < 0.9 * np.trace(th0.covariance(None))
    mis = dataclasses.replace(base, nonideal=NonIdealities(noise_gain_mismatch=0.05))
    c3 = mis.build(1)
    psd = [e.psd for e in c3.elements if e.name.startswith("In")]
    assert len(set(psd)) == 3 and mis.build(1) == c3


@pytest.mark.parametrize(
    "field, value, states",
    [
        ("inductor_capacitance", 3e-12, 8),
        ("capacitor_leakage", 1e4, 0),
        ("switch_resistance", 20.0, 28),  # a series R frees each coupling C: 28 states
        ("switch_capacitance", 10e-12, 0),
    ],
)
def test_rlc_parasitics_change_the_model(field, value, states):
    base = preset("rlc8")
    th0, _ = _theory(base)
    th, _ = _theory(dataclasses.replace(base, nonideal=NonIdealities(**{field: value})))
    assert len(th.sde.states) == len(th0.sde.states) + states
    # with white FDT-matched noise the cell-voltage law stays Boltzmann for reactive/lossless additions;
    # the sampled noise (what SPICE plays) and the dynamics see them
    ph = (0.0, 0.5)
    gap = np.linalg.norm(th.covariance(ph) - th0.covariance(ph)) / np.linalg.norm(th0.covariance(ph))
    assert gap > 1e-4 or abs(th.relaxation_time / th0.relaxation_time - 1) > 1e-4


def test_dac_errors_move_the_mean_by_their_draw():
    base = preset("rc8", size=3)
    th0, _ = _theory(base)
    spec = dataclasses.replace(base, nonideal=NonIdealities(dac_gain_error=0.01, dac_offset=1e-3))
    c = spec.build(2)
    vb = np.array([e.volts for e in c.elements if e.name.startswith("Vb")])
    vb0 = np.array([e.volts for e in base.build(2).elements if e.name.startswith("Vb")])
    assert np.all(vb != vb0) and np.max(np.abs(vb - vb0)) < 0.05
    th = Theory(linear_sde(c), c.noise_interval)
    # the model's mean is the ideal solve of the DAC voltages the board really applies
    scale = th0.mean / (-np.linalg.solve(base.device_matrix, vb0))
    np.testing.assert_allclose(th.mean, -scale * np.linalg.solve(base.device_matrix, vb), rtol=1e-8)


def test_linear_region_flags_an_output_beyond_the_swing():
    op = dataclasses.replace(HARDWARE_CORNERS["board"].opamp, output_swing=1.0)
    spec = preset("rc8", size=3, nonideal=dataclasses.replace(HARDWARE_CORNERS["board"], opamp=op))
    c = spec.build(0)
    r = linear_region(c, op)
    th = Theory(linear_sde(c), c.noise_interval)
    # the clamped nodes follow the outputs (through R_out): the bound is at least the outputs' mean
    assert np.max(r.bound_v) >= np.max(np.abs(th.mean))
    assert not r.within_swing and not r.ok and "OUTSIDE" in r.describe()
    ok = linear_region(preset("rc8", size=3, corner="board").build(0), HARDWARE_CORNERS["board"].opamp)
    assert ok.ok and ok.within_slew and np.all(np.isfinite(ok.slew_demand_v_per_s))
    slow = dataclasses.replace(HARDWARE_CORNERS["board"].opamp, slew_rate=1e3)
    assert not linear_region(c, slow).within_slew
    assert linear_region(preset("rlc8").build(0), OpAmp()).ok


def test_clipped_fraction_counts_time_samples_with_any_output_at_the_rail():
    v = np.array([[0.0, 1.0], [4.9, 0.0], [0.0, -4.75], [0.1, 0.2]])
    assert clipped_fraction(v, 4.8) == 0.25
    assert clipped_fraction(v, 4.8, margin=0.1) == 0.5
    assert clipped_fraction(v, None) == 0.0


def test_flicker_bound_is_small_on_the_board_and_zero_without_a_corner():
    spec = preset("rc8", size=3, corner="board")
    c = spec.build(0)
    b = flicker_error_bound(c, spec.nonideal.opamp, 4e4 * c.time_constant)
    assert 0 < b < 1e-6
    assert flicker_error_bound(c, dataclasses.replace(spec.nonideal.opamp, noise_corner_hz=0.0), 1.0) == 0


# ------------------------------------------------------------------------------------------- corners
def test_every_corner_round_trips_through_the_unit_keyed_dict():
    for name, ni in HARDWARE_CORNERS.items():
        d = corner_as_dict(ni)
        assert set(d) == set(CORNER_KEYS)
        assert corner_from_dict(json.loads(json.dumps(d))) == ni, name
    d = corner_as_dict(HARDWARE_CORNERS["board"])
    assert d["opamp_gbw_hz"] == 10e6 and d["opamp_swing_v"] == 4.8 and d["inductor_dcr_ohm"] == 0.1
    assert d["opamp_offset_v"] == 25e-6 and corner_as_dict(NonIdealities())["opamp_gain_vv"] is None


def test_corner_file_is_strict_and_names_the_bad_key(tmp_path):
    f = tmp_path / "parts.json"
    f.write_text(json.dumps({"base": "board", "opamp_gbw_hz": 3e6, "opamp_swing_v": 2.5}))
    ni = load_corner(f)
    assert ni.opamp.gbw_hz == 3e6 and ni.opamp.output_swing == 2.5 and ni.tolerance == 0.01
    assert preset("rc8", corner=str(f)).nonideal == ni
    f.write_text(json.dumps({"opamp_gbw_mhz": 3}))
    with pytest.raises(InputError, match="unknown key 'opamp_gbw_mhz'"):
        load_corner(f)
    f.write_text(json.dumps({"opamp_gbw_hz": "fast"}))
    with pytest.raises(InputError, match="opamp_gbw_hz"):
        load_corner(f)
    f.write_text(json.dumps({"opamp_gbw_hz": 1e6}))  # needs a finite gain: the model's own check
    with pytest.raises(InputError, match="open_loop_gain"):
        load_corner(f)
    with pytest.raises(CircuitError, match="unknown hardware corner"):
        preset("rc8", corner="bord")


def test_bad_macro_model_values_raise_one_clear_line():
    with pytest.raises(CircuitError, match="voltage_noise needs gbw_hz"):
        OpAmp(open_loop_gain=1e5, voltage_noise=1e-9)
    with pytest.raises(CircuitError, match="output_swing"):
        OpAmp(open_loop_gain=1e5, output_swing=-1.0)
    with pytest.raises(CircuitError, match="slew_rate"):
        OpAmp(open_loop_gain=1e5, gbw_hz=1e6, slew_rate=float("nan"))
    with pytest.raises(CircuitError, match="switch_resistance"):
        NonIdealities(switch_resistance=-1.0)


def test_symbolic_bias_current_enters_the_input_vector():
    c = Circuit(
        "ib",
        (Resistor("R1", "a", "0", 1e3), Capacitor("C1", "a", "0", 1e-9), CurrentSource("Ib", "0", "a", 1e-6)),
        ("a",),
        1e-9,
        1e-6,
    )
    m = symbolic_model(c)
    assert sp.simplify(m.B_z[0, 0] - 1 / sp.Symbol("C1", positive=True)) == 0
    assert Theory(linear_sde(c)).mean[0] == pytest.approx(1e-3)
