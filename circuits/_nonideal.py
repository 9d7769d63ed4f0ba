"""Non-idealities: one immutable object holds every one (aihwkit's RPUConfig idea, frozen). All default
off, so ``NonIdealities()`` is the ideal array. Units are in the field names' docs."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from thermotrain._errors import CircuitError


def _check_optional_positive(owner: str, name: str, value: float | None, unit: str) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise CircuitError(f"{owner}.{name} = {value!r} {unit} must be positive and finite (None = off).")


def _check_nonnegative(owner: str, name: str, value: float, unit: str, hi: float = math.inf) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and 0 <= value)
    ):
        raise CircuitError(f"{owner}.{name} = {value!r} {unit} must be finite and >= 0.")
    if value > hi:
        raise CircuitError(f"{owner}.{name} = {value!r} {unit} is above the plausible limit {hi:g} {unit}.")


@dataclass(frozen=True)
class OpAmp:
    """Op-amp macro-model (every part optional; the default is the ideal nullor).

    Linear parts (exact in the symbolic model and the netlist, see :func:`thermotrain.circuits.opamp_elements`):
    open_loop_gain: A0 (V/V); ``inf`` is ideal (virtual ground exact).
    gbw_hz: gain-bandwidth product (Hz); the dominant pole sits at gbw/A0. Needs a finite A0. None = no pole.
    second_pole_hz: a second (non-dominant) pole (Hz), buffered after the first. Needs gbw_hz.
    output_resistance: open-loop output resistance (ohm) in series with the output (0 = ideal source).
    input_offset: V at the non-inverting input (DC error source; the same on every amplifier: a worst case).
    input_bias_current: A into each input pin (DC); input_offset_current: A, I_b+ - I_b-.
    voltage_noise: input-referred white voltage noise density (V/sqrt(Hz), one-sided, as datasheets give it;
        the model's two-sided PSD is voltage_noise^2/2). Needs gbw_hz (an infinitely fast amplifier would put
        white noise straight on its output).
    current_noise: white current noise density at each input pin (A/sqrt(Hz), one-sided).
    noise_corner_hz: 1/f corner of both noise densities (Hz): below it the densities rise as 1/f. NOT in the
        linear theory (a 1/f process has no finite-state Markov model): :func:`flicker_error_bound` states the
        error it can cause; the netlist carries only the white part (module docs of circuits._region).

    Nonlinear parts (netlist only, as behavioural B sources; the model states the region where the linear
    theory holds: :func:`thermotrain.circuits.linear_region`):
    output_swing: largest |V| (V) the output stage reaches (a clamp on the output stage). None = unlimited.
    slew_rate: largest |dV/dt| (V/s): the current into the dominant-pole capacitor is clamped to
        C_p * slew_rate. Needs gbw_hz. None = unlimited.
    """

    open_loop_gain: float = math.inf
    gbw_hz: float | None = None
    output_resistance: float = 0.0
    input_offset: float = 0.0
    second_pole_hz: float | None = None
    input_bias_current: float = 0.0
    input_offset_current: float = 0.0
    voltage_noise: float = 0.0
    current_noise: float = 0.0
    noise_corner_hz: float = 0.0
    output_swing: float | None = None
    slew_rate: float | None = None

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
        for name, unit in (("second_pole_hz", "Hz"), ("output_swing", "V"), ("slew_rate", "V/s")):
            _check_optional_positive("OpAmp", name, getattr(self, name), unit)
        for name, lim in (("input_bias_current", 1e-3), ("input_offset_current", 1e-3)):
            v = getattr(self, name)
            if not math.isfinite(v) or abs(v) > lim:
                raise CircuitError(f"OpAmp.{name} = {v!r} A must be finite and |.| <= {lim:g} A.")
        _check_nonnegative("OpAmp", "voltage_noise", self.voltage_noise, "V/sqrt(Hz)", 1e-3)
        _check_nonnegative("OpAmp", "current_noise", self.current_noise, "A/sqrt(Hz)", 1e-6)
        _check_nonnegative("OpAmp", "noise_corner_hz", self.noise_corner_hz, "Hz", 1e9)
        if self.gbw_hz is None:
            for name in ("second_pole_hz", "slew_rate", "voltage_noise"):
                if getattr(self, name):
                    raise CircuitError(
                        f"OpAmp.{name} needs gbw_hz: it acts on (or through) the dominant-pole capacitor."
                    )
        if self.output_swing is not None and math.isinf(self.open_loop_gain):
            raise CircuitError(
                "OpAmp.output_swing needs a finite open_loop_gain (the clamp acts on a real stage)."
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
    dac_gain_error: relative sigma of each b-DAC channel's gain error (seeded draw per channel).
    dac_offset: sigma (V) of each b-DAC channel's offset (seeded draw per channel).
    capacitor_leakage: ohm in parallel with every array capacitor (dielectric insulation resistance; noisy
        at ``temperature``). None = no leakage.
    inductor_capacitance: F across every inductor (its self-capacitance: SRF = 1/(2 pi sqrt(L C))).
    switch_resistance: on-resistance (ohm) of the switch in series with every programmable element (RC:
        each crossbar resistor, written as one resistor R + R_on since no node lies between them; RLC: each
        coupling capacitor, a separate series resistor).
    switch_capacitance: F to ground at each terminal of each such switch, lumped per node (RC: summing
        nodes and amplifier outputs, which needs a finite-gain op-amp with output_resistance > 0; RLC: the
        cell nodes).
    noise_bandwidth_hz: the noise generator's own bandwidth: a first-order filter (Hz) between the sampled
        source and a transconductor into the cell (one extra state per cell, exact in the theory). None =
        the generator drives the cell directly (white up to the sampling of NT).
    noise_gain_mismatch: relative sigma of each generator channel's gain (seeded draw per channel). The
        generator's level is always set from NOMINAL element values (it cannot know the drawn ones).
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
    dac_gain_error: float = 0.0
    dac_offset: float = 0.0
    capacitor_leakage: float | None = None
    inductor_capacitance: float = 0.0
    switch_resistance: float = 0.0
    switch_capacitance: float = 0.0
    noise_bandwidth_hz: float | None = None
    noise_gain_mismatch: float = 0.0

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
        _check_nonnegative("NonIdealities", "dac_gain_error", self.dac_gain_error, "(rel. sigma)", 0.1)
        _check_nonnegative("NonIdealities", "dac_offset", self.dac_offset, "V", 0.1)
        _check_optional_positive("NonIdealities", "capacitor_leakage", self.capacitor_leakage, "ohm")
        _check_nonnegative("NonIdealities", "inductor_capacitance", self.inductor_capacitance, "F", 1e-6)
        _check_nonnegative("NonIdealities", "switch_resistance", self.switch_resistance, "ohm", 1e5)
        _check_nonnegative("NonIdealities", "switch_capacitance", self.switch_capacitance, "F", 1e-6)
        _check_optional_positive("NonIdealities", "noise_bandwidth_hz", self.noise_bandwidth_hz, "Hz")
        _check_nonnegative(
            "NonIdealities", "noise_gain_mismatch", self.noise_gain_mismatch, "(rel. sigma)", 0.3
        )
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
            "dac_gain_error": "(rel. sigma)",
            "dac_offset": "V (sigma)",
            "capacitor_leakage": "ohm",
            "inductor_capacitance": "F",
            "switch_resistance": "ohm",
            "switch_capacitance": "F",
            "noise_bandwidth_hz": "Hz",
            "noise_gain_mismatch": "(rel. sigma)",
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
    # A printed board (like the 8-cell resonator SPU), with the typical datasheet values of named part
    # classes, rounded (each a class, not one part number):
    # - op-amp: 10 MHz GBW precision CMOS, rail-to-rail output on +-5 V (OPA192/OPA2192 class; ADA4522 is
    #   similar at 3 MHz): A_OL 120 dB (1e6, the class's minimum; typical 130-140 dB), GBW 10 MHz, a
    #   second pole at 25 MHz (about 70 deg phase margin at unity gain), open-loop output resistance 100 ohm,
    #   input offset 25 uV (max over the class), bias current 5 pA, e_n 5.5 nV/rtHz with a 100 Hz 1/f
    #   corner, i_n 1.5 fA/rtHz, output swing +-4.8 V (0.2 V from the +-5 V rails under load), 20 V/us.
    # - resistors: 1 % thin film; capacitors: C0G/NP0 1 % (ESR 0.5 ohm: dissipation factor 0.1 % at
    #   ~300 kHz for 1 nF; insulation resistance 100 Gohm); the same 1 % tolerance for the inductors.
    # - inductor (RLC): shielded power inductor, 10 uH class (e.g. Coilcraft XAL40xx): DCR 0.1 ohm,
    #   self-resonance ~30 MHz -> 3 pF self-capacitance.
    # - couplings: 8-bit programmable (digipot / switched bank); CMOS analog switches (ADG1412-class low
    #   on-resistance parts: R_on 1.5 ohm; 1 pF per terminal, a low-capacitance part: at 5 pF the 7 switches
    #   on each rlc8 cell node move its covariance by 11 %); 2 pF routing parasitic per node.
    # - b DACs: 16-bit class precision DACs: gain error 0.05 % and offset 0.1 mV (one sigma per channel).
    # - noise generator: FPGA samples through a DAC and a 20 MHz reconstruction filter, 1 % channel gain
    #   mismatch, level set from nominal values.
    "board": NonIdealities(
        tolerance=0.01,
        coupling_bits=8,
        parasitic_capacitance=2e-12,
        capacitor_esr=0.5,
        inductor_resistance=0.1,
        opamp=OpAmp(
            open_loop_gain=1e6,
            gbw_hz=10e6,
            second_pole_hz=25e6,
            output_resistance=100.0,
            input_offset=25e-6,
            input_bias_current=5e-12,
            voltage_noise=5.5e-9,
            current_noise=1.5e-15,
            noise_corner_hz=100.0,
            output_swing=4.8,
            slew_rate=20e6,
        ),
        dac_gain_error=5e-4,
        dac_offset=1e-4,
        capacitor_leakage=1e11,
        inductor_capacitance=3e-12,
        switch_resistance=1.5,
        switch_capacitance=1e-12,
        noise_bandwidth_hz=20e6,
        noise_gain_mismatch=0.01,
    ),
    # An integrated RC array (on-chip values): 2% mismatch, 6-bit crossbar, 0.5 pF per node, a modest
    # single-stage amplifier (A0 = 80 dB, 50 MHz GBW, 50 ohm) on a +-2.5 V supply (swing +-2.3 V, 50 V/us),
    # 1 mV offset, 20 nV/rtHz with a 10 kHz 1/f corner (MOS input), transmission-gate switches (200 ohm,
    # 20 fF), on-chip noise DAC with 2 % channel mismatch driving the cells directly.
    "integrated": NonIdealities(
        tolerance=0.02,
        coupling_bits=6,
        parasitic_capacitance=5e-13,
        opamp=OpAmp(
            open_loop_gain=1e4,
            gbw_hz=50e6,
            output_resistance=50.0,
            input_offset=1e-3,
            voltage_noise=20e-9,
            noise_corner_hz=10e3,
            output_swing=2.3,
            slew_rate=50e6,
        ),
        switch_resistance=200.0,
        switch_capacitance=20e-15,
        noise_gain_mismatch=0.02,
    ),
}

#: corner-file keys (units in the names) -> (NonIdealities field, or ``opamp.<field>``). ``null`` in a
#: file, or a missing key, means "off / as the base corner"; gains of ``null`` are ideal (infinite).
CORNER_KEYS: dict[str, str] = {
    "tolerance_rel": "tolerance",
    "coupling_bits": "coupling_bits",
    "coupling_bank_fractions": "coupling_bank",
    "parasitic_capacitance_f": "parasitic_capacitance",
    "capacitor_esr_ohm": "capacitor_esr",
    "capacitor_leakage_ohm": "capacitor_leakage",
    "inductor_dcr_ohm": "inductor_resistance",
    "inductor_capacitance_f": "inductor_capacitance",
    "switch_resistance_ohm": "switch_resistance",
    "switch_capacitance_f": "switch_capacitance",
    "temperature_k": "temperature",
    "dac_bits": "dac_bits",
    "dac_gain_error_rel": "dac_gain_error",
    "dac_offset_v": "dac_offset",
    "noise_bandwidth_hz": "noise_bandwidth_hz",
    "noise_gain_mismatch_rel": "noise_gain_mismatch",
    "opamp_gain_vv": "opamp.open_loop_gain",
    "opamp_gbw_hz": "opamp.gbw_hz",
    "opamp_second_pole_hz": "opamp.second_pole_hz",
    "opamp_output_resistance_ohm": "opamp.output_resistance",
    "opamp_offset_v": "opamp.input_offset",
    "opamp_bias_current_a": "opamp.input_bias_current",
    "opamp_offset_current_a": "opamp.input_offset_current",
    "opamp_voltage_noise_v_per_rthz": "opamp.voltage_noise",
    "opamp_current_noise_a_per_rthz": "opamp.current_noise",
    "opamp_noise_corner_hz": "opamp.noise_corner_hz",
    "opamp_swing_v": "opamp.output_swing",
    "opamp_slew_v_per_s": "opamp.slew_rate",
}
#: keys of a corner file that are not values: ``base`` (a named corner whose values fill the keys the
#: file leaves out; default ``ideal``), ``name`` and ``description`` (text, kept for the reader).
CORNER_META_KEYS = ("base", "name", "description")
_INT_FIELDS = ("coupling_bits", "dac_bits")
_NULL_MEANS = {"open_loop_gain": math.inf}  # null gain = ideal (infinite)
_NULL_ZERO = frozenset(
    f.name
    for f in (*fields(OpAmp), *fields(NonIdealities))
    if f.name not in ("opamp", "open_loop_gain") and isinstance(f.default, float) and f.default == 0.0
)


def corner_as_dict(nonideal: NonIdealities) -> dict[str, Any]:
    """Every non-ideality with its unit in the key (the corner-file schema :data:`CORNER_KEYS`), for
    ``report.json``'s ``"corner"``: ``None`` = off (an infinite open-loop gain, i.e. ideal, is ``None``
    too). ``load_corner`` of this dict gives ``nonideal`` back."""
    out: dict[str, Any] = {}
    for key, path in CORNER_KEYS.items():
        obj, name = (nonideal.opamp, path[6:]) if path.startswith("opamp.") else (nonideal, path)
        v = getattr(obj, name)
        if isinstance(v, float) and math.isinf(v):
            v = None
        elif isinstance(v, tuple):
            v = list(v)
        out[key] = v
    return out


def corner_value(what: str, key: str, name: str, v: Any) -> Any:
    """A non-null value ``v`` of the NonIdealities/OpAmp field ``name`` (written as ``key`` in ``what``),
    type-checked: a list of numbers for ``coupling_bank`` (returned as a tuple), a whole number for the bit
    counts, a number (returned as float) otherwise; a CircuitError naming ``what``, ``key`` and ``v``
    else. The ranges are NonIdealities' own (checked when it is built)."""
    if name == "coupling_bank":
        if not isinstance(v, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in v
        ):
            raise CircuitError(f"{what}: {key} = {v!r} must be a list of numbers (fractions in (0, 1]).")
        return tuple(float(x) for x in v)
    if name in _INT_FIELDS:
        if isinstance(v, bool) or not isinstance(v, int):
            raise CircuitError(f"{what}: {key} = {v!r} must be a whole number (or null = off).")
        return v
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise CircuitError(f"{what}: {key} = {v!r} must be a number (or null = off).")
    return float(v)


def corner_from_dict(d: Any, what: str = "corner") -> NonIdealities:
    """A corner from a dict of the :data:`CORNER_KEYS` schema (strict: an unknown key, a wrong type or an
    out-of-range value is one CircuitError naming it). Missing keys come from ``d["base"]`` (a named
    corner, default ``ideal``)."""
    if not isinstance(d, dict):
        raise CircuitError(f"{what}: a corner is a JSON object of {{key: value}}, not {type(d).__name__}.")
    for k in d:
        if k not in CORNER_KEYS and k not in CORNER_META_KEYS:
            raise CircuitError(
                f"{what}: unknown key {k!r}; known keys: {', '.join([*CORNER_META_KEYS, *CORNER_KEYS])}."
            )
    for k in ("name", "description"):
        if k in d and not isinstance(d[k], str):
            raise CircuitError(f"{what}: {k!r} must be a string.")
    base_name = d.get("base", "ideal")
    if not isinstance(base_name, str) or base_name not in HARDWARE_CORNERS:
        raise CircuitError(f"{what}: base = {base_name!r} is not one of {sorted(HARDWARE_CORNERS)}.")
    base = HARDWARE_CORNERS[base_name]
    top = {f.name: getattr(base, f.name) for f in fields(NonIdealities) if f.name != "opamp"}
    op = {f.name: getattr(base.opamp, f.name) for f in fields(OpAmp)}
    for key, path in CORNER_KEYS.items():
        if key not in d:
            continue
        v = d[key]
        target, name = (op, path[6:]) if path.startswith("opamp.") else (top, path)
        if v is None:
            v = _NULL_MEANS.get(name, 0.0 if name in _NULL_ZERO else None)
        else:
            v = corner_value(what, key, name, v)
        target[name] = v
    try:
        return NonIdealities(opamp=OpAmp(**op), **top)
    except CircuitError as e:
        raise CircuitError(f"{what}: {e}") from None


def load_corner(path: str | Path) -> NonIdealities:
    """A user's corner from a JSON file (``--corner my-parts.json``): read with thermotrain._safeio's
    checked reading (regular file, size cap, strict JSON), parsed by :func:`corner_from_dict`."""
    from thermotrain._errors import InputError
    from thermotrain._safeio import load_json

    try:
        d = load_json(path, "config", what=f"corner file {path}")
        return corner_from_dict(d, what=f"corner file {path}")
    except CircuitError as e:
        raise InputError(str(e)) from None


def resolve_corner(corner: str | Path | NonIdealities) -> NonIdealities:
    """A named corner (``ideal``, ``board``, ``integrated``), a path to a corner JSON file (``*.json``), or
    a NonIdealities (returned as is)."""
    if isinstance(corner, NonIdealities):
        return corner
    name = str(corner)
    if name in HARDWARE_CORNERS:
        return HARDWARE_CORNERS[name]
    if name.lower().endswith(".json"):
        return load_corner(name)
    raise CircuitError(
        f"unknown hardware corner {name!r}; choose one of {sorted(HARDWARE_CORNERS)} or a corner file "
        "ending in .json."
    )
