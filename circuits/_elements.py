"""Element-level circuit description: the one representation both the symbolic model (modified nodal
analysis) and the SPICE netlist writer read, so SPICE always validates exactly the circuit the model
describes.

Conventions (SPICE's): node ``"0"`` is ground; a current source ``n_p -> n_n`` drives its current from
``n_p`` through the source into ``n_n``; a VCVS sets ``V(out_p) - V(out_n) = gain * (V(in_p) - V(in_n))``.
All values in SI units (ohm, farad, henry, volt, A^2/Hz, kelvin, second).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from thermotrain._errors import CircuitError

GROUND = "0"
_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def _check_name(kind: str, name: str) -> None:
    if not _NAME.match(name):
        raise CircuitError(f"{kind} name {name!r} must match [A-Za-z0-9_]+ (it becomes a SPICE identifier).")


def _check_positive(
    kind: str, name: str, what: str, value: float, lo: float = 0.0, hi: float = math.inf
) -> None:
    if not math.isfinite(value) or not (lo < value < hi):
        raise CircuitError(
            f"{kind} {name}: {what} = {value!r} is outside ({lo:g}, {hi:g}); check the spec or the scaling."
        )


@dataclass(frozen=True)
class Resistor:
    """Resistor of ``ohms``. ``temperature`` (K) gives it Johnson noise: a white current of two-sided PSD
    2kT/R across it (ngspice adds none in transient runs, so the writer emits it explicitly).
    ``None`` means noiseless (behavioural parts of amplifier macro-models).

    ``current_limit`` (A): a behavioural resistor whose current is clamped to +-current_limit (an op-amp's
    slew limit: the current into its dominant-pole capacitor). The netlist renders it as a B source
    ``I = max(min(V/R, I_max), -I_max)``; the linear model uses the resistor (its linear region)."""

    name: str
    n1: str
    n2: str
    ohms: float
    temperature: float | None = None
    current_limit: float | None = None

    def __post_init__(self) -> None:
        _check_name("resistor", self.name)
        _check_positive("resistor", self.name, "ohms", self.ohms)
        if self.temperature is not None and (not math.isfinite(self.temperature) or self.temperature < 0):
            raise CircuitError(f"resistor {self.name}: temperature {self.temperature!r} K must be >= 0.")
        if self.current_limit is not None:
            _check_positive("resistor", self.name, "current_limit (A)", self.current_limit)


@dataclass(frozen=True)
class Capacitor:
    name: str
    n1: str
    n2: str
    farads: float

    def __post_init__(self) -> None:
        _check_name("capacitor", self.name)
        _check_positive("capacitor", self.name, "farads", self.farads)


@dataclass(frozen=True)
class Inductor:
    name: str
    n1: str
    n2: str
    henries: float

    def __post_init__(self) -> None:
        _check_name("inductor", self.name)
        _check_positive("inductor", self.name, "henries", self.henries)


@dataclass(frozen=True)
class VCVS:
    """Voltage-controlled voltage source; ``gain = inf`` is the ideal op-amp (nullor: V(in_p) = V(in_n)).
    The netlist writer renders an infinite gain as ``IDEAL_OPAMP_GAIN``.

    ``output_limit`` (V): the output is clamped to +-output_limit (an amplifier's output swing): the
    netlist renders a B source ``V = max(min(gain*V(in), L), -L)``; the linear model uses the VCVS."""

    name: str
    out_p: str
    out_n: str
    in_p: str
    in_n: str
    gain: float
    output_limit: float | None = None

    def __post_init__(self) -> None:
        _check_name("vcvs", self.name)
        if math.isnan(self.gain) or self.gain == 0:
            raise CircuitError(f"vcvs {self.name}: gain {self.gain!r} must be non-zero (inf = ideal op-amp).")
        if self.output_limit is not None:
            _check_positive("vcvs", self.name, "output_limit (V)", self.output_limit)
            if math.isinf(self.gain):
                raise CircuitError(f"vcvs {self.name}: an output_limit needs a finite gain.")


@dataclass(frozen=True)
class VoltageSource:
    """DC voltage source (a DAC output, an offset). ``V(n_p) - V(n_n) = volts``."""

    name: str
    n_p: str
    n_n: str
    volts: float

    def __post_init__(self) -> None:
        _check_name("voltage source", self.name)
        if not math.isfinite(self.volts):
            raise CircuitError(f"voltage source {self.name}: {self.volts!r} V is not finite.")


@dataclass(frozen=True)
class CurrentSource:
    """DC current source (an amplifier's input bias current): ``amps`` flow from ``n_p`` through the
    source into ``n_n`` (SPICE's ``I`` convention)."""

    name: str
    n_p: str
    n_n: str
    amps: float

    def __post_init__(self) -> None:
        _check_name("current source", self.name)
        if not math.isfinite(self.amps):
            raise CircuitError(f"current source {self.name}: {self.amps!r} A is not finite.")


@dataclass(frozen=True)
class VCCS:
    """Voltage-controlled current source (a transconductor: the noise generator's output stage): the current
    ``gm * (V(c_p) - V(c_n))`` (A, gm in siemens) flows from ``n_p`` through the source into ``n_n``
    (SPICE's ``G`` convention)."""

    name: str
    n_p: str
    n_n: str
    c_p: str
    c_n: str
    gm: float

    def __post_init__(self) -> None:
        _check_name("vccs", self.name)
        if not math.isfinite(self.gm) or self.gm == 0:
            raise CircuitError(f"vccs {self.name}: gm {self.gm!r} S must be finite and non-zero.")


@dataclass(frozen=True)
class NoiseCurrent:
    """White Gaussian noise current of two-sided PSD ``psd`` (A^2/Hz) from ``n_p`` into ``n_n``.

    In a simulator it is a sequence of independent samples every ``Circuit.noise_interval`` NT,
    linearly interpolated (ngspice TRNOISE, or a seeded file), each of variance psd/NT."""

    name: str
    n_p: str
    n_n: str
    psd: float

    def __post_init__(self) -> None:
        _check_name("noise source", self.name)
        if not math.isfinite(self.psd) or self.psd < 0:
            raise CircuitError(f"noise source {self.name}: psd {self.psd!r} A^2/Hz must be finite and >= 0.")


Element = Resistor | Capacitor | Inductor | VCVS | VoltageSource | CurrentSource | VCCS | NoiseCurrent

BOLTZMANN = 1.380649e-23  # J/K
IDEAL_OPAMP_GAIN = 1e9  # how a simulator renders gain=inf (error ~1e-9 relative, below SPICE's tolerances)


@dataclass(frozen=True)
class Circuit:
    """A complete element list plus what to read out.

    outputs: node names whose voltages are the array state x (one per cell), in cell order.
    noise_interval: NT (s), sample interval of every noise source (TRNOISE NT / file time step).
    time_constant: tau (s), the array's natural time unit (RC, or 2L/R for resonators); durations given
        in tau are multiplied by it.
    """

    title: str
    elements: tuple[Element, ...]
    outputs: tuple[str, ...]
    noise_interval: float
    time_constant: float
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        names = [e.name for e in self.elements]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise CircuitError(f"element names must be unique; repeated: {sorted(dup)}")
        nodes = set(self.nodes())
        missing = [o for o in self.outputs if o not in nodes]
        if missing:
            raise CircuitError(f"outputs {missing} are not nodes of circuit {self.title!r}")
        _check_positive("circuit", self.title, "noise_interval (s)", self.noise_interval)
        _check_positive("circuit", self.title, "time_constant (s)", self.time_constant)

    def nodes(self) -> list[str]:
        """Non-ground node names in first-appearance order (deterministic)."""
        seen: dict[str, None] = {}
        for e in self.elements:
            for n in _terminals(e):
                if n != GROUND:
                    seen.setdefault(n, None)
        return list(seen)

    def of_type(self, kind: type) -> Iterator:
        return (e for e in self.elements if isinstance(e, kind))

    def noise_sources(self) -> list[NoiseCurrent]:
        """Every noise current the circuit carries: the explicit ones, then one per noisy resistor
        (``<resistor name>_th``, PSD 2kT/R), in element order. Model and netlist both use this list."""
        out: list[NoiseCurrent] = [e for e in self.elements if isinstance(e, NoiseCurrent)]
        for e in self.elements:
            if isinstance(e, Resistor) and e.temperature:
                out.append(NoiseCurrent(f"{e.name}_th", e.n1, e.n2, 2 * BOLTZMANN * e.temperature / e.ohms))
        return out


def _terminals(e: Element) -> tuple[str, ...]:
    if isinstance(e, VCVS):
        return (e.out_p, e.out_n, e.in_p, e.in_n)
    if isinstance(e, VCCS):
        return (e.n_p, e.n_n, e.c_p, e.c_n)
    if isinstance(e, VoltageSource | CurrentSource | NoiseCurrent):
        return (e.n_p, e.n_n)
    return (e.n1, e.n2)
