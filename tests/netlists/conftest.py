"""Shared helpers for the netlist tests: small circuits built straight from the element list. (The skip of
``spice`` tests on machines without ngspice is suite-wide: tests/conftest.py.)"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from thermotrain.circuits import (
    VCVS,
    Capacitor,
    Circuit,
    Inductor,
    NoiseCurrent,
    Resistor,
    VoltageSource,
)


def rc_cells(
    resistances: Sequence[float],
    *,
    capacitance: float = 1e-9,
    psd: float = 1e-24,
    noise_interval: float = 2e-7,
    title: str = "independent RC cells",
) -> Circuit:
    """Independent RC low-pass cells n0, n1, ... to ground, each driven by a white noise current of
    two-sided PSD ``psd`` (A^2/Hz) into its node. Stationary variance -> S*R/(2C) as NT/RC -> 0."""
    elements: list = []
    for i, r in enumerate(resistances):
        elements += [
            Resistor(f"R{i}", f"n{i}", "0", r),
            Capacitor(f"C{i}", f"n{i}", "0", capacitance),
            NoiseCurrent(f"in{i}", "0", f"n{i}", psd),
        ]
    outputs = tuple(f"n{i}" for i in range(len(resistances)))
    return Circuit(title, tuple(elements), outputs, noise_interval, min(resistances) * capacitance)


def integrator_circuit() -> Circuit:
    """An ideal op-amp integrator (gain inf) with input resistor and DC source, a resistor with Johnson
    noise, an inductor branch, and an explicit noise current: every element kind once."""
    elements = (
        VoltageSource("Vin", "in", "0", 0.5),
        Resistor("Rin", "in", "sum", 1e3),
        Capacitor("Cf", "sum", "out", 1e-9),
        VCVS("amp", "out", "0", "0", "sum", float("inf")),
        Resistor("Rleak", "sum", "out", 1e6, temperature=300.0),
        Inductor("L1", "out", "tap", 1e-3),
        Resistor("Rl", "tap", "0", 50.0),
        NoiseCurrent("inj", "0", "sum", 4e-24),
    )
    return Circuit("integrator: every element once", elements, ("out", "sum"), 1e-7, 1e-6)


@pytest.fixture(scope="session")
def make_rc() -> Callable[..., Circuit]:
    return rc_cells


@pytest.fixture
def integrator() -> Circuit:
    return integrator_circuit()
