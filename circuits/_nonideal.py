"""Non-idealities: one immutable object holds every one (aihwkit's RPUConfig idea, frozen). All default
off, so ``NonIdealities()`` is the ideal array. Units are in the field names' docs."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields

from thermotrain._errors import CircuitError


@dataclass(frozen=True)
class OpAmp:
    """Single-pole op-amp macro-model.

    open_loop_gain: A0 (V/V); ``inf`` is ideal (virtual ground exact).
    gbw_hz: gain-bandwidth product (Hz); the pole sits at gbw/A0. Needs a finite A0. None = no pole.
    output_resistance: ohm in series with the output (0 = ideal source).
    input_offset: V at the non-inverting input (DC error source).
    """

    open_loop_gain: float = math.inf
    gbw_hz: float | None = None
    output_resistance: float = 0.0
    input_offset: float = 0.0

    def __post_init__(self) -> None:
        if math.isnan(self.open_loop_gain) or self.open_loop_gain <= 1:
            raise CircuitError(
                f"OpAmp.open_loop_gain = {self.open_loop_gain!r} V/V must be > 1 (inf = ideal)."
            )
        if self.gbw_hz is not None:
            if not (math.isfinite(self.gbw_hz) and self.gbw_hz > 0):
                raise CircuitError(f"OpAmp.gbw_hz = {self.gbw_hz!r} Hz must be positive and finite.")
            if math.isinf(self.open_loop_gain):
                raise CircuitError("OpAmp.gbw_hz needs a finite open_loop_gain (the pole is at gbw/A0).")
        if not (math.isfinite(self.output_resistance) and self.output_resistance >= 0):
            raise CircuitError(f"OpAmp.output_resistance = {self.output_resistance!r} ohm must be >= 0.")
        if not math.isfinite(self.input_offset) or abs(self.input_offset) > 0.1:
            raise CircuitError(
                f"OpAmp.input_offset = {self.input_offset!r} V must be finite and |.| <= 0.1 V."
            )

    @property
    def ideal(self) -> bool:
        return self == OpAmp()


@dataclass(frozen=True)
class NonIdealities:
    """Every non-ideality of an array, each optional (default off).

    tolerance: relative sigma of every R, C, L (Gaussian, one seeded draw per element, clipped at 3 sigma).
    coupling_bits: finite resolution of the programmable matrix entries (crossbar conductances, coupling and
        cell capacitances): entries rounded to multiples of max|entry| / (2^bits - 1). None = continuous.
    coupling_bank: alternatively, a bank of switchable parts per entry as fractions of the largest entry
        (e.g. (1/8, 1/4, 1/2, 1) like the 8-cell board's 4 capacitors); entries get the nearest subset sum.
    parasitic_capacitance: F from every high-impedance node to ground (summing nodes; amplifier outputs
        when output_resistance > 0; resonator nodes).
    capacitor_esr: ohm in series with every capacitor (with Johnson noise at ``temperature``).
    inductor_resistance: extra ohm in series with every inductor (RLC; noisy like any resistor).
    opamp: the amplifier model used for integrators and inverters (RC family).
    temperature: K of the physical resistors (Johnson noise 2kT/R, two-sided, A^2/Hz); 0 (default) = off.
        Off by default because at the default noise level (kappa0 = 1e-2 V^2, C = 1 nF) kT/C is 4e-10 of
        the injected noise, while every noisy resistor costs the netlist one more noise source (O(N^2)
        for a dense crossbar). Set 300 for a component-accurate netlist of a low-noise design.
    dac_bits: resolution of the DACs that load b (RC family), over +-dac_full_scale. None = exact.
    """

    tolerance: float = 0.0
    coupling_bits: int | None = None
    coupling_bank: tuple[float, ...] | None = None
    parasitic_capacitance: float = 0.0
    capacitor_esr: float = 0.0
    inductor_resistance: float = 0.0
    opamp: OpAmp = field(default_factory=OpAmp)
    temperature: float = 0.0
    dac_bits: int | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.tolerance < 0.3):
            raise CircuitError(f"tolerance = {self.tolerance!r} (relative sigma) must be in [0, 0.3).")
        if self.coupling_bits is not None and not (1 <= int(self.coupling_bits) <= 24):
            raise CircuitError(
                f"coupling_bits = {self.coupling_bits!r} must be an integer in [1, 24] or None."
            )
        if self.dac_bits is not None and not (1 <= int(self.dac_bits) <= 24):
            raise CircuitError(f"dac_bits = {self.dac_bits!r} must be an integer in [1, 24] or None.")
        if self.coupling_bits is not None and self.coupling_bank is not None:
            raise CircuitError("give coupling_bits or coupling_bank, not both.")
        if self.coupling_bank is not None and (
            not self.coupling_bank or any(not (0 < f <= 1) for f in self.coupling_bank)
        ):
            raise CircuitError(
                f"coupling_bank = {self.coupling_bank!r}: fractions of the max entry in (0, 1]."
            )
        for name in ("parasitic_capacitance", "capacitor_esr", "inductor_resistance", "temperature"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise CircuitError(f"{name} = {v!r} must be finite and >= 0.")
        if self.parasitic_capacitance > 1e-6:
            raise CircuitError(
                f"parasitic_capacitance = {self.parasitic_capacitance!r} F is not parasitic (> 1 uF)."
            )

    @property
    def ideal(self) -> bool:
        """True when the array behaves as the ideal one (thermal noise aside)."""
        return dataclasses.replace(self, temperature=0.0) == NonIdealities()

    def describe(self) -> str:
        """The effective settings, one per line, with units."""
        units = {
            "tolerance": "(rel. sigma)",
            "parasitic_capacitance": "F",
            "capacitor_esr": "ohm",
            "inductor_resistance": "ohm",
            "temperature": "K",
        }
        lines = []
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "opamp":
                for k, x in asdict(v).items():
                    lines.append(f"  opamp.{k:<22} {x}")
            else:
                lines.append(f"  {f.name:<28} {v} {units.get(f.name, '')}".rstrip())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NonIdealities:
        d = dict(d)
        # JSON reports write infinite gains as "inf" (thermotrain._report.to_jsonable)
        op = OpAmp(**{k: float(v) if v in ("inf", "-inf") else v for k, v in d.pop("opamp", {}).items()})
        if d.get("coupling_bank") is not None:
            d["coupling_bank"] = tuple(d["coupling_bank"])
        return cls(opamp=op, **d)


# Named hardware corners (presets of non-idealities).
HARDWARE_CORNERS: dict[str, NonIdealities] = {
    "ideal": NonIdealities(),
    # A printed board like the 8-cell resonator SPU: 1% parts, 8-bit programmable couplings, 2 pF per node;
    # for RC arrays a good discrete op-amp (A0 = 1e5, 10 ohm output) so the parasitics have somewhere to act.
    "board": NonIdealities(
        tolerance=0.01,
        coupling_bits=8,
        parasitic_capacitance=2e-12,
        opamp=OpAmp(open_loop_gain=1e5, output_resistance=10.0),
    ),
    # An integrated RC array: 2% mismatch, 6-bit crossbar, a modest amplifier.
    "integrated": NonIdealities(
        tolerance=0.02,
        coupling_bits=6,
        parasitic_capacitance=5e-13,
        opamp=OpAmp(open_loop_gain=1e4, gbw_hz=50e6, output_resistance=50.0),
    ),
}
