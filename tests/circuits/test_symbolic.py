"""Symbolic model against hand-derived 1- and 2-cell results."""

import numpy as np
import scipy.linalg as sla
import sympy as sp

from thermotrain.circuits import (
    BOLTZMANN,
    VCVS,
    Capacitor,
    Circuit,
    Inductor,
    NoiseCurrent,
    Resistor,
    linear_sde,
    symbolic_model,
)


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, positive=True)


def test_kT_over_C_falls_out_of_the_symbolic_lyapunov_equation():
    c = Circuit(
        "rc", (Resistor("R1", "n1", "0", 1e3, 300.0), Capacitor("C1", "n1", "0", 1e-9)), ("n1",), 1e-8, 1e-6
    )
    m = symbolic_model(c)
    var = m.stationary_covariance()[0, 0]
    S = sp.Symbol("S_R1_th", nonnegative=True)
    # Johnson noise PSD 2kT/R substituted by hand: kT/C, independent of R
    k, T = sp.symbols("k T", positive=True)
    assert sp.simplify(var.subs(S, 2 * k * T / _sym("R1")) - k * T / _sym("C1")) == 0
    assert m.M == sp.Matrix([[-1 / (_sym("C1") * _sym("R1"))]])


def test_ideal_integrator_symbolic_drift_and_noise():
    els = (
        Capacitor("Cf", "s", "o", 1e-9),
        Resistor("Rf", "o", "s", 1e4),
        VCVS("E1", "o", "0", "0", "s", float("inf")),
        NoiseCurrent("In", "0", "s", 1e-20),
    )
    m = symbolic_model(Circuit("int", els, ("o",), 1e-7, 1e-5))
    Cf, Rf, S = _sym("Cf"), _sym("Rf"), sp.Symbol("S_In", nonnegative=True)
    assert sp.simplify(m.M[0, 0] + 1 / (Cf * Rf)) == 0
    # Cov V = S/(2C) * G^{-1} = S R / (2 C)
    assert sp.simplify(m.stationary_covariance()[0, 0] - S * Rf / (2 * Cf)) == 0


def test_single_resonator_with_noise_across_R_is_boltzmann():
    """V ~ N(0, kT/C), I ~ N(0, kT/L) for any R, L when the noise current sits across the series R."""
    els = (
        Capacitor("C1", "v", "0", 1e-9),
        Inductor("L1", "v", "m", 1e-5),
        Resistor("R1", "m", "0", 50.0),
        NoiseCurrent("In", "0", "m", 1.0),
    )
    m = symbolic_model(Circuit("rlc1", els, ("v",), 1e-9, 1e-6))
    k, T = sp.symbols("k T", positive=True)
    var = m.stationary_covariance()[0, 0].subs(sp.Symbol("S_In", nonnegative=True), 2 * k * T / _sym("R1"))
    assert sp.simplify(var - k * T / _sym("C1")) == 0


def test_coupled_pair_covariance_is_kT_times_inverse_maxwell_matrix():
    Q = sp.Rational
    C1, C2, C12, L, R, kT = Q(1, 10**9), Q(15, 10**10), Q(4, 10**10), Q(1, 10**5), Q(40), Q(1, 10**12)
    els = [
        Capacitor("C1", "v1", "0", C1),
        Capacitor("C2", "v2", "0", C2),
        Capacitor("C12", "v1", "v2", C12),
    ]
    for i in (1, 2):
        els += [
            Inductor(f"L{i}", f"v{i}", f"m{i}", L),
            Resistor(f"R{i}", f"m{i}", "0", R),
            NoiseCurrent(f"In{i}", "0", f"m{i}", 2 * kT / R),
        ]
    c = Circuit("pair", tuple(els), ("v1", "v2"), 1e-9, 1e-6)  # element values are floats (exact binary)
    # symbolic: the Maxwell matrix appears exactly
    m = symbolic_model(c)
    subs = {_sym("C1"): C1, _sym("C2"): C2, _sym("C12"): C12, _sym("L1"): L, _sym("L2"): L}
    subs |= {_sym("R1"): R, _sym("R2"): R}
    subs |= {sp.Symbol(f"S_In{i}", nonnegative=True): 2 * kT / R for i in (1, 2)}
    maxwell = sp.Matrix([[C1 + C12, -C12], [-C12, C2 + C12]])
    assert sp.simplify(m.stationary_covariance(subs) - kT * maxwell.inv()) == sp.zeros(
        2, 2
    )  # exact rationals
    maxwell = np.array(maxwell, dtype=float)
    kT = float(kT)
    # numeric path agrees
    s = linear_sde(c)
    num = s.C @ sla.solve_continuous_lyapunov(s.M, -s.D_noise) @ s.C.T
    np.testing.assert_allclose(num, kT * np.linalg.inv(maxwell), rtol=1e-9)


def test_noise_injected_at_the_capacitor_node_is_not_boltzmann():
    """The documented reason the injected noise sits across R: at the node it gives (S L/2R) C^-2 + (S R/2) C^-1."""
    C, L, R, S = 1e-9, 1e-5, 40.0, 1e-20
    els = (
        Capacitor("C1", "v", "0", C),
        Inductor("L1", "v", "m", L),
        Resistor("R1", "m", "0", R),
        NoiseCurrent("In", "0", "v", S),
    )
    s = linear_sde(Circuit("node", els, ("v",), 1e-9, 1e-6))
    var = (s.C @ sla.solve_continuous_lyapunov(s.M, -s.D_noise) @ s.C.T)[0, 0]
    assert np.isclose(var, S * L / (2 * R * C**2) + S * R / (2 * C), rtol=1e-10)


def test_thermal_noise_of_resistors_is_listed_once_per_noisy_resistor():
    c = Circuit(
        "two",
        (Resistor("Ra", "a", "0", 1e3, 300.0), Resistor("Rb", "a", "0", 2e3), Capacitor("C", "a", "0", 1e-9)),
        ("a",),
        1e-8,
        1e-6,
    )
    srcs = c.noise_sources()
    assert [s.name for s in srcs] == ["Ra_th"]
    assert np.isclose(srcs[0].psd, 2 * BOLTZMANN * 300.0 / 1e3)
