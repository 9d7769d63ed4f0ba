"""Array specs: mapping a target onto parts, non-idealities, and bad input."""

import dataclasses

import numpy as np
import pytest

from thermotrain import CircuitError
from thermotrain.circuits import (
    NonIdealities,
    OpAmp,
    RCArraySpec,
    Theory,
    from_matrix,
    linear_sde,
    preset,
    quantize_entries,
)


def _theory(spec, seed=0):
    c = spec.build(seed)
    return Theory(linear_sde(c), c.noise_interval), c


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("n", [2, 5])
def test_ideal_rc_array_solves_and_samples_the_target(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n))
    A = X @ X.T + n * np.eye(n)
    b = rng.standard_normal(n)
    spec = from_matrix(A, b, family="rc", kappa0=4e-3)
    th, _ = _theory(spec)
    s = spec.scaling
    np.testing.assert_allclose(th.mean / s.voltage_scale, np.linalg.solve(A, b), rtol=1e-7, atol=1e-9)
    # white-noise covariance: kappa0 * A_dev^{-1} (no resistor Johnson noise by default)
    np.testing.assert_allclose(th.covariance(None), s.kappa0 * np.linalg.inv(A / s.matrix_scale), rtol=1e-6)
    assert np.isclose(
        th.relaxation_time, s.time_constant * s.matrix_scale / np.linalg.eigvalsh(A)[0], rtol=1e-6
    )


def test_ideal_rlc_array_samples_kT_times_inverse_maxwell():
    spec = preset("rlc8", size=5)
    th, c = _theory(spec)
    Adev = spec.target / spec.matrix_scale
    np.testing.assert_allclose(th.covariance(None), spec.kappa0 * np.linalg.inv(Adev), rtol=1e-6)
    np.testing.assert_allclose(th.mean, 0.0, atol=1e-15)
    assert np.isclose(th.relaxation_time, spec.time_constant, rtol=1e-6)  # every mode decays at R/2L


def test_mixed_signs_use_inverters_and_only_where_needed():
    A = np.array([[2.0, -0.5, 0.0], [-0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])
    c = from_matrix(A, family="rc").build()
    names = {e.name for e in c.elements}
    assert {"Ria0", "Ria1"} <= names and "Ria2" not in names  # column 2 has no negative entry
    assert "R0_2" not in names  # zero entry: no part


def test_same_seed_same_parts_other_seed_other_parts():
    spec = preset("rc8", corner="board")
    assert spec.build(3) == spec.build(3)
    r3 = {e.name: e for e in spec.build(3).elements}
    r4 = {e.name: e for e in spec.build(4).elements}
    assert r3["R0_1"].ohms != r4["R0_1"].ohms


def test_tolerance_draw_has_the_requested_spread():
    spec = preset("rc8", nonideal=NonIdealities(tolerance=0.05))
    nominal = {e.name: e.ohms for e in spec.ideal().build().elements if hasattr(e, "ohms")}
    ratios = [e.ohms / nominal[e.name] - 1 for e in spec.build(11).elements if hasattr(e, "ohms")]
    n = len(ratios)
    # sample std of n draws of N(0, 0.05) (clipped at 3 sigma): within 4 standard errors of the std
    assert abs(np.std(ratios) - 0.05) < 4 * 0.05 / np.sqrt(2 * n)


def test_coupling_resolution_rounds_entries_to_the_grid():
    v = np.array([0.0, 0.26, -0.51, 1.0])
    np.testing.assert_allclose(quantize_entries(v, bits=2, full_scale=1.0), [0, 1 / 3, -2 / 3, 1.0])
    np.testing.assert_allclose(quantize_entries(v, bank=(0.25, 0.5), full_scale=1.0), [0, 0.25, -0.5, 0.75])
    spec = preset("rc8", nonideal=NonIdealities(coupling_bits=3))
    grid = spec.device_matrix * 7
    np.testing.assert_allclose(grid, np.round(grid), atol=1e-12)


def test_non_idealities_move_the_model_away_from_the_ideal_array():
    ideal = preset("rc8")
    th0, _ = _theory(ideal)
    for ni in (
        NonIdealities(opamp=OpAmp(open_loop_gain=1e3)),
        NonIdealities(coupling_bits=4),
        NonIdealities(tolerance=0.02),
        NonIdealities(opamp=OpAmp(open_loop_gain=1e4, gbw_hz=1e6)),
    ):
        th, _ = _theory(dataclasses.replace(ideal, nonideal=ni), seed=2)
        gap = np.linalg.norm(th.covariance(None) - th0.covariance(None)) / np.linalg.norm(
            th0.covariance(None)
        )
        assert gap > 1e-4, ni


def test_gbw_pole_and_output_resistance_add_states():
    spec = preset(
        "rc8",
        size=3,
        nonideal=NonIdealities(
            parasitic_capacitance=1e-12, opamp=OpAmp(1e5, gbw_hz=1e7, output_resistance=20.0)
        ),
    )
    s = linear_sde(spec.build())
    assert s.M.shape[0] > 3


@pytest.mark.parametrize(
    "A, msg",
    [
        (np.array([[1.0, 2.0], [2.0, 1.0]]), "smallest eigenvalue"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), "not finite"),
        (np.array([[1.0, 0.2], [0.1, 1.0]]), "symmetric"),
        (np.ones((2, 3)), "square"),
    ],
)
def test_bad_targets_raise_clear_errors(A, msg):
    with pytest.raises(CircuitError, match=msg):
        from_matrix(A)


def test_out_of_range_component_is_named():
    A = np.array([[1.0, 1e-7], [1e-7, 1.0]])
    with pytest.raises(CircuitError, match=r"R0_1.*outside the realistic range"):
        from_matrix(A).build()
    with pytest.raises(CircuitError, match="capacitance"):
        RCArraySpec(matrix=((1.0,),), capacitance=-1e-9)


def test_rlc_refuses_patterns_a_passive_network_cannot_realise():
    with pytest.raises(CircuitError, match="passive coupling"):
        from_matrix(np.array([[2.0, 0.5], [0.5, 2.0]]), family="rlc")
    with pytest.raises(CircuitError, match="row 0"):
        from_matrix(np.array([[1.0, -0.9, -0.9], [-0.9, 3.0, 0], [-0.9, 0, 3.0]]), family="rlc")
    with pytest.raises(CircuitError, match="no b input"):
        from_matrix(np.eye(2), np.ones(2), family="rlc")


def test_bad_settings_raise():
    with pytest.raises(CircuitError, match="unknown preset"):
        preset("rc9")
    with pytest.raises(CircuitError, match="tolerance"):
        NonIdealities(tolerance=-0.1)
    with pytest.raises(CircuitError, match="gbw"):
        OpAmp(gbw_hz=1e6)
    with pytest.raises(CircuitError, match="damping"):
        preset("rc8", damping=-1.0)
    with pytest.raises(CircuitError, match="kappa0"):
        preset("rc8", kappa0=float("nan"))
    with pytest.raises(CircuitError, match="output_resistance"):
        preset("rc8", nonideal=NonIdealities(parasitic_capacitance=1e-12, opamp=OpAmp(1e4))).build()


def test_spec_round_trips_through_a_dict():
    spec = preset("rc8", corner="integrated")
    again = type(spec).from_dict(spec.to_dict())
    assert again == spec
