"""The op-amp macro-model and the board parasitics in real ngspice against the symbolic model (issue 9):
linear parts agree exactly (DC, noiseless transient); the behavioural swing clamp and slew limit act only
outside the linear region the model states."""

import dataclasses

import numpy as np
import pytest

from thermotrain.circuits import (
    HARDWARE_CORNERS,
    Capacitor,
    Circuit,
    OpAmp,
    Resistor,
    Theory,
    VoltageSource,
    linear_region,
    linear_sde,
    opamp_elements,
    preset,
)
from thermotrain.netlists._ngspice import run_operating_point, run_transient
from thermotrain.netlists._safety import parse_netlist
from thermotrain.netlists._writer import write_netlist

pytestmark = pytest.mark.spice

BOARD_OP = HARDWARE_CORNERS["board"].opamp


def _inverter(vin: float, op: OpAmp) -> Circuit:
    els = (
        VoltageSource("Vin", "d", "0", vin),
        Resistor("R1", "d", "m", 1e3),
        Resistor("R2", "m", "o", 3e3),
        Resistor("Rl", "o", "0", 1e4),
        Capacitor("Cl", "o", "0", 10e-12),  # a load: the amplifier noise needs a capacitor to end on
        *opamp_elements("X", "0", "m", "o", op),
    )
    return Circuit("inverter x3", els, ("o",), 1e-8, 1e-6, meta={"amplifiers": {"X": "X_o"}})


@pytest.mark.parametrize("name", ["rc8", "rlc8"])
def test_board_netlist_dc_and_relaxation_agree_with_the_model(name):
    spec = preset(name, size=3, corner="board")
    c = spec.build(1)
    th = Theory(linear_sde(c), c.noise_interval)
    quiet = write_netlist(c, noise="off")
    assert "B" in {line[0] for line in quiet.text.splitlines()} or name == "rlc8"
    parse_netlist(quiet.text)  # the allowlist accepts the behavioural clamps
    if name == "rc8":
        dc = run_operating_point(quiet)
        assert np.linalg.norm(dc - th.mean) / np.linalg.norm(th.mean) <= 1e-6
    if name == "rlc8":
        return  # mean 0; its relaxation is checked by validate (test_validation.py)
    # noiseless transient from every node at 0 V (a consistent start): SPICE follows the model's transient
    ic = {n: 0.0 for n in c.nodes()}
    z0 = th.initial_state(ic)
    t_slow = th.relaxation_time
    run = run_transient(
        quiet,
        step=t_slow / 50,
        stop=3 * t_slow,
        initial_conditions=ic,
        options={"reltol": 1e-6, "abstol": 1e-15, "vntol": 1e-9},
    )
    model = th.transient_mean(run.time, z0)
    err = np.linalg.norm(run.values[5:] - model[5:]) / np.linalg.norm(model[5:] - th.mean)
    assert err <= 0.02


def test_inverter_in_the_linear_region_matches_and_the_swing_clamps_outside():
    op = dataclasses.replace(BOARD_OP, output_swing=2.0)
    inside = _inverter(0.5, op)  # -1.5 V: inside +-2 V
    th = Theory(linear_sde(inside))
    dc = run_operating_point(write_netlist(inside, noise="off"))
    assert abs(dc[0] - th.mean[0]) <= 1e-6 * abs(th.mean[0])
    assert linear_region(inside, op).within_swing
    outside = _inverter(1.0, op)  # -3 V demanded
    r = linear_region(outside, op)
    assert not r.within_swing
    dc = run_operating_point(write_netlist(outside, noise="off"), probes=["o", "X_o"])
    assert dc[1] == pytest.approx(-2.0, abs=1e-6)  # the clamped output stage sits at the rail
    assert abs(dc[0]) < 2.0


def test_slew_limit_bounds_the_output_slope_of_a_large_step():
    op = dataclasses.replace(BOARD_OP, slew_rate=1e6, output_swing=None)  # 1 V/us
    c = _inverter(1.0, op)
    ic = {n: 0.0 for n in c.nodes()}
    run = run_transient(
        write_netlist(c, noise="off"),
        step=2e-8,
        stop=6e-6,
        initial_conditions=ic,
        probes=["X_y", "X_o"],
        options={"reltol": 1e-6, "trtol": 1},
    )
    v = run.values[:, 1]
    # 10 % -> 90 % of the 3 V step takes 2.4 V / SR when the slew limit acts (the small-signal rise of the
    # closed loop, bandwidth ~2.5 MHz, would take ~0.14 us: 17x faster)
    t10 = run.time[np.argmax(v <= -0.3)]
    t90 = run.time[np.argmax(v <= -2.7)]
    assert (t90 - t10) == pytest.approx(2.4 / 1e6, rel=0.03)
