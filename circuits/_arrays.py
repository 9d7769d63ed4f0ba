"""The two array families as frozen, validated specs, and ``from_matrix``.

RC integrator array (overdamped, the TNGD paper's proposal), cell i:
    op-amp integrator: feedback capacitor C from summing node s_i to output o_i (the state V_i);
    crossbar: conductance g_u*|A_ij| from +V_j (A_ij > 0) or -V_j (A_ij < 0, a unity-gain inverter per
    variable, the classic analog-computer answer) into s_i;  damping lambda: a leak conductance o_i -> s_i;
    b: DAC voltage -v_b*b_i through R_u into s_i;  noise: white current of PSD S into s_i.
    C dV/dt = -g_u A_dev V - g_u V_dac + I_n   =>   <V> = v_b A^{-1} b,  Cov V = S/(2 C g_u) A_dev^{-1}.

RLC resonator array (underdamped, like the 8-cell board), cell i:
    node v_i: C_i to ground, coupling capacitors C_ij = -Cm_ij between cells (Cm = c_u A_dev, the Maxwell
    capacitance matrix); inductor L from v_i to m_i; series resistor R from m_i to ground with the noise
    current across R (PSD 2 k T_eff / R, the fluctuation-dissipation-matched source). Then the stationary
    law is Boltzmann: V ~ N(0, k T_eff Cm^{-1}) exactly, for any L, R. (A current injected at v_i instead
    would give (S L / 2R) Cm^{-2} + (S R / 2) Cm^{-1}: not proportional to Cm^{-1}.)
    Passive capacitors need A_dev_ij <= 0 off the diagonal and positive row sums (C_i > 0); other sign
    patterns raise CircuitError (use the RC family, which realises any sign).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from thermotrain._errors import CircuitError
from thermotrain.circuits._elements import (
    BOLTZMANN,
    GROUND,
    VCCS,
    VCVS,
    Capacitor,
    Circuit,
    CurrentSource,
    Element,
    Inductor,
    NoiseCurrent,
    Resistor,
    VoltageSource,
)
from thermotrain.circuits._nonideal import NonIdealities, OpAmp
from thermotrain.circuits._targets import (
    MAX_CELLS,
    Scaling,
    as_real_array,
    check_range,
    check_spd,
    check_vector,
    quantize_entries,
    tolerance_factors,
)

#: |A_dev| at or below this is an absent OFF-diagonal coupling (no part placed). A_dev = A / max|A|, and for
#: an SPD A the largest |entry| is a diagonal one, so this is relative to the matrix's scale (its largest
#: self term): roundoff-sized couplings are dropped, tiny but real ones reach the range check and are
#: refused. A diagonal entry (a cell's own leak) is never dropped (RC: the range check; RLC: the row sums).
ZERO_ENTRY = 1e-12


def _as_tuple2(A: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(x) for x in row) for row in np.asarray(A, float))


@dataclass(frozen=True)
class ArraySpec(abc.ABC):
    """Common part of both families. ``matrix`` is the user's SPD target A (any units); ``damping`` lambda
    is added to its diagonal; ``kappa0`` (V^2) is the ideal array's node covariance scale:
    Cov(V) = kappa0 * A_dev^{-1}. ``noise_interval`` (s): sample interval NT of every noise source; None
    picks 0.2 / (fastest drift rate). ``b`` (same units as A x) is loaded through DACs (RC family only)."""

    matrix: tuple[tuple[float, ...], ...]
    b: tuple[float, ...] = ()
    damping: float = 0.0
    kappa0: float = 1e-2
    noise_interval: float | None = None
    nonideal: NonIdealities = field(default_factory=NonIdealities)
    family: ClassVar[str] = ""

    def __post_init__(self) -> None:
        A = as_real_array(self.matrix, "matrix")
        for name in ("damping", "kappa0"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise CircuitError(f"{name} = {v!r} must be a number, not {type(v).__name__}.")
        if not (math.isfinite(self.damping) and self.damping >= 0):
            raise CircuitError(f"damping = {self.damping!r} must be finite and >= 0 (units of A).")
        check_spd(A + self.damping * np.eye(A.shape[0]) if A.ndim == 2 and A.shape[0] == A.shape[1] else A)
        b = check_vector(self.b if self.b else None, A.shape[0])
        object.__setattr__(self, "b", tuple(float(x) for x in b))
        if not (math.isfinite(self.kappa0) and 0 < self.kappa0 <= 1.0):
            raise CircuitError(
                f"kappa0 = {self.kappa0!r} V^2 must be in (0, 1] (node rms noise of at most 1 V)."
            )
        if self.noise_interval is not None and not (0 < self.noise_interval < 1):
            raise CircuitError(f"noise_interval = {self.noise_interval!r} s must be in (0, 1).")

    # ---- the target, as the hardware holds it -------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.matrix)

    @property
    def target(self) -> np.ndarray:
        """A + lambda I (user units)."""
        return np.asarray(self.matrix, float) + self.damping * np.eye(self.size)

    @property
    def b_vector(self) -> np.ndarray:
        return np.asarray(self.b, float)

    @property
    def matrix_scale(self) -> float:
        """A = matrix_scale * A_dev, chosen so the largest |entry| of A_dev is 1."""
        return float(np.abs(self.target).max())

    @property
    def device_matrix(self) -> np.ndarray:
        """A_dev as programmed: scaled, then rounded to the coupling resolution (before tolerances)."""
        A = self.target / self.matrix_scale
        n = self.nonideal
        return quantize_entries(A, bits=n.coupling_bits, bank=n.coupling_bank, full_scale=1.0)

    def _refuse_indefinite(self, A: np.ndarray) -> None:
        """Refuse a programmed ``A_dev`` that the coupling resolution rounded to a matrix that is not positive
        definite (the target is SPD, checked on construction): the array it programs would be unstable, and
        a netlist of it would simulate a divergence, not the target. A diagonal entry rounded to zero is
        named by its cell."""
        if self.nonideal.coupling_bits is None and self.nonideal.coupling_bank is None:
            return  # unrounded: A_dev = target / max|target|, SPD
        for i in np.flatnonzero(np.diag(A) <= 0)[:1]:
            raise CircuitError(
                f"A_dev[{i},{i}] = {A[i, i]:.3g}: cell {i}'s self term (A[{i},{i}] = {self.target[i, i]:.4g}) "
                "rounds to zero at the coupling resolution, which would leave that cell without its restoring "
                "term (an unstable array). Use more coupling bits or add damping."
            )
        lam = float(np.linalg.eigvalsh(0.5 * (A + A.T))[0])
        if lam <= 0:
            raise CircuitError(
                f"rounded to the coupling resolution, A_dev (max|A_dev| = 1) is not positive definite (smallest "
                f"eigenvalue {lam:.3g}; the target's is {float(np.linalg.eigvalsh(self.target)[0]) / self.matrix_scale:.3g}): "
                "the array would be unstable. Use more coupling bits or add damping."
            )

    @property
    @abc.abstractmethod
    def time_constant(self) -> float:
        """tau (s)."""

    @property
    @abc.abstractmethod
    def voltage_scale(self) -> float:
        """V per unit of x."""

    @property
    def scaling(self) -> Scaling:
        return Scaling(self.matrix_scale, self.voltage_scale, self.time_constant, self.kappa0)

    @property
    def nt(self) -> float:
        """Noise sample interval NT (s) actually used."""
        return self.noise_interval if self.noise_interval is not None else 0.2 / self._fastest_rate()

    @abc.abstractmethod
    def _fastest_rate(self) -> float: ...

    @abc.abstractmethod
    def build(self, seed: int = 0) -> Circuit:
        """The element-level circuit; ``seed`` fixes the tolerance draw (same seed, same parts)."""

    def generator_gains(self, seed: int = 0) -> np.ndarray:
        """[n] gain of each noise-generator channel (1 + its mismatch) in ``build(seed)``'s draw."""
        rng = np.random.default_rng((seed, _GEN_STREAM))
        return tolerance_factors(rng, self.size, self.nonideal.noise_gain_mismatch)

    def ideal(self) -> ArraySpec:
        """The same array with every non-ideality off (resistor temperature kept)."""
        return dataclasses.replace(self, nonideal=NonIdealities(temperature=self.nonideal.temperature))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["matrix"] = [list(r) for r in self.matrix]
        d["b"] = list(self.b)
        d["nonideal"] = self.nonideal.to_dict()
        d["family"] = self.family
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ArraySpec:
        d = dict(d)
        fam = d.pop("family")
        cls = {"rc": RCArraySpec, "rlc": RLCArraySpec}.get(fam)
        if cls is None:
            raise CircuitError(f"unknown array family {fam!r}; expected 'rc' or 'rlc'.")
        d["matrix"] = _as_tuple2(np.asarray(d["matrix"], float))
        d["b"] = tuple(d.get("b", ()))
        d["nonideal"] = NonIdealities.from_dict(d.get("nonideal", {}))
        return cls(**d)


def _apply_tolerance(elements: list[Element], sigma: float, rng: np.random.Generator) -> list[Element]:
    """Scale every R, C, L by its own draw, in element order (so a seed fixes every part)."""
    parts = [i for i, e in enumerate(elements) if isinstance(e, Resistor | Capacitor | Inductor)]
    f = tolerance_factors(rng, len(parts), sigma)
    out = list(elements)
    for k, i in enumerate(parts):
        e = out[i]
        attr = {Resistor: "ohms", Capacitor: "farads", Inductor: "henries"}[type(e)]
        out[i] = dataclasses.replace(e, **{attr: getattr(e, attr) * f[k]})
    return out


def _add_esr(
    elements: list[Element], esr: float, temperature: float, extra: dict[str, float] | None = None
) -> list[Element]:
    """A series resistor ``<C>_esr`` (ohm: esr, plus ``extra[<C>]``, e.g. a switch's on-resistance) and an
    inner node ``<C>_x`` for every capacitor with a non-zero series resistance."""
    extra = extra or {}
    if esr == 0 and not any(extra.values()):
        return elements
    out: list[Element] = []
    for e in elements:
        r = esr + extra.get(e.name, 0.0) if isinstance(e, Capacitor) else 0.0
        if r > 0:
            mid = f"{e.name}_x"
            out.append(Resistor(f"{e.name}_esr", e.n1, mid, r, temperature or None))
            out.append(dataclasses.replace(e, n1=mid))
        else:
            out.append(e)
    return out


def _add_leakage(elements: list[Element], ohms: float | None, temperature: float) -> list[Element]:
    """A leakage resistor ``<C>_leak`` across every capacitor (its terminals), after the capacitor."""
    if ohms is None:
        return elements
    out: list[Element] = []
    for e in elements:
        out.append(e)
        if isinstance(e, Capacitor):
            out.append(Resistor(f"{e.name}_leak", e.n1, e.n2, ohms, temperature or None))
    return out


#: independent seeded streams (``default_rng((seed, stream))``) for the per-channel draws that came after
#: the tolerance draw (``default_rng(seed)``), so adding them changed no earlier part's value
_DAC_STREAM, _GEN_STREAM = 0x44, 0x47
GENERATOR_RESISTANCE = 1e3  # ohm of the noise generator's filter (noiseless; C sets the bandwidth)


def noise_generator(
    name: str, n_p: str, n_n: str, psd: float, ni: NonIdealities, gain: float
) -> list[Element]:
    """The noise generator of one channel: a white current of two-sided PSD ``psd`` (A^2/Hz, the level set
    from nominal values) times the channel gain ``gain`` (1 + its mismatch), from ``n_p`` into ``n_n``.

    Without a bandwidth: one NoiseCurrent ``name`` of PSD gain^2 psd. With ``ni.noise_bandwidth_hz`` f:
    the sampled source drives a first-order filter node ``<name>_g`` (R_g = 1 kohm || C_g = 1/(2 pi f R_g),
    noiseless, no tolerance) and a transconductor ``G<name>_gm`` of gm = gain/R_g injects gm V(node): the
    injected current has PSD gain^2 psd / (1 + (f'/f)^2), a state per channel in the model (exact)."""
    if ni.noise_bandwidth_hz is None:
        return [NoiseCurrent(name, n_p, n_n, gain * gain * psd)]
    rg = GENERATOR_RESISTANCE
    node = f"{name}_g"
    return [
        NoiseCurrent(name, GROUND, node, psd),
        Resistor(f"{name}_rg", node, GROUND, rg),
        Capacitor(f"{name}_cg", node, GROUND, 1.0 / (2 * math.pi * ni.noise_bandwidth_hz * rg)),
        VCCS(f"{name}_gm", n_p, n_n, node, GROUND, gain / rg),
    ]


def opamp_elements(name: str, in_p: str, in_n: str, out: str, op: OpAmp) -> list[Element]:
    """Macro-model (internal parts noiseless in the Johnson sense and exempt from tolerance):

    [offset source ``<name>_vos`` in series with in_p] [bias currents ``<name>_ibp/_ibn`` out of each pin]
    [input current noise ``<name>_inp/_inn`` at each pin] -> gain stage A0 ``<name>_a`` (output ``<name>_x``)
    [-> dominant pole R_p C_p at gbw/A0 (``<name>_rp``, ``<name>_cp``, node ``<name>_y``; the input voltage
    noise e_n enters exactly as a current A0 e_n / R_p into ``<name>_y``; the slew limit clamps the current
    through R_p to C_p * SR) [-> unity buffer ``<name>_c`` and a second pole R_p C_p2] -> unity buffer
    ``<name>_b``] (the output swing clamps the stage that drives the output: ``<name>_b``, or ``<name>_a``
    without a pole) [-> output resistance ``<name>_ro``]. The clamped node is ``<name>_o`` with an output
    resistance, else ``out`` (:func:`amplifier_nodes`)."""
    els: list[Element] = []
    pin_p = in_p
    if op.input_offset:
        els.append(VoltageSource(f"{name}_vos", f"{name}_p", in_p, op.input_offset))
        pin_p = f"{name}_p"
    ib_p = op.input_bias_current + op.input_offset_current / 2
    ib_n = op.input_bias_current - op.input_offset_current / 2
    if ib_p and pin_p != GROUND:
        els.append(CurrentSource(f"{name}_ibp", pin_p, GROUND, ib_p))
    if ib_n and in_n != GROUND:
        els.append(CurrentSource(f"{name}_ibn", in_n, GROUND, ib_n))
    if op.current_noise:
        s_i = op.current_noise**2 / 2  # one-sided density -> two-sided PSD
        if pin_p != GROUND:
            els.append(NoiseCurrent(f"{name}_inp", GROUND, pin_p, s_i))
        if in_n != GROUND:
            els.append(NoiseCurrent(f"{name}_inn", GROUND, in_n, s_i))
    drive = f"{name}_o" if op.output_resistance > 0 else out
    swing = op.output_swing
    if op.gbw_hz is None:
        els.append(VCVS(f"{name}_a", drive, GROUND, pin_p, in_n, op.open_loop_gain, output_limit=swing))
    else:
        rp = 1e3
        cp = op.open_loop_gain / (2 * math.pi * op.gbw_hz * rp)
        slew = cp * op.slew_rate if op.slew_rate is not None else None
        els += [
            VCVS(f"{name}_a", f"{name}_x", GROUND, pin_p, in_n, op.open_loop_gain),
            Resistor(f"{name}_rp", f"{name}_x", f"{name}_y", rp, current_limit=slew),
            Capacitor(f"{name}_cp", f"{name}_y", GROUND, cp),
        ]
        if op.voltage_noise:
            s_e = op.voltage_noise**2 / 2  # V^2/Hz two-sided, input-referred
            els.append(NoiseCurrent(f"{name}_en", GROUND, f"{name}_y", op.open_loop_gain**2 * s_e / rp**2))
        last = f"{name}_y"
        if op.second_pole_hz is not None:
            els += [
                VCVS(f"{name}_c", f"{name}_x2", GROUND, last, GROUND, 1.0),
                Resistor(f"{name}_rp2", f"{name}_x2", f"{name}_y2", rp),
                Capacitor(f"{name}_cp2", f"{name}_y2", GROUND, 1.0 / (2 * math.pi * op.second_pole_hz * rp)),
            ]
            last = f"{name}_y2"
        els.append(VCVS(f"{name}_b", drive, GROUND, last, GROUND, 1.0, output_limit=swing))
    if op.output_resistance > 0:
        els.append(Resistor(f"{name}_ro", drive, out, op.output_resistance))
    return els


def amplifier_nodes(circuit: Circuit) -> dict[str, str]:
    """``{amplifier name: the node its output stage drives}`` (the node the output swing clamps), for
    every op-amp macro-model in ``circuit`` (from ``circuit.meta["amplifiers"]``, set by the array specs'
    ``build``). Empty for a circuit without amplifiers (the RLC family)."""
    return dict(circuit.meta.get("amplifiers", {}))


@dataclass(frozen=True)
class RCArraySpec(ArraySpec):
    """Overdamped RC integrator array. capacitance: C (F) of each integrator; unit_resistance: R_u (ohm)
    realising |A_dev| = 1 (tau = R_u C); inverter_resistance: the inverters' two resistors (ohm);
    dac_full_scale: largest |V_dac| (V); output_swing: largest mean |V| allowed at an output (V)."""

    capacitance: float = 1e-9
    unit_resistance: float = 1e4
    inverter_resistance: float = 1e4
    dac_full_scale: float = 1.0
    output_swing: float = 2.0
    family: ClassVar[str] = "rc"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("farads", "capacitance", self.capacitance, "Choose an integrator capacitor in range.")
        check_range("ohms", "unit_resistance", self.unit_resistance, "Choose a unit resistor in range.")
        check_range(
            "ohms", "inverter_resistance", self.inverter_resistance, "Choose an inverter resistor in range."
        )
        for name in ("dac_full_scale", "output_swing"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 < v <= 15):
                raise CircuitError(f"{name} = {v!r} V must be in (0, 15].")
        if np.any(self.b_vector):
            # A_dev and the DAC voltages are normalised, so any scale of A and b is representable -- unless
            # b / max|A| (the scale of x = A^-1 b) leaves float64: then the DACs would get 0 V or nan
            with np.errstate(all="ignore"):
                bd, vs = self.b_vector / self.matrix_scale, self.voltage_scale
            if not (np.any(bd) and np.all(np.isfinite(bd)) and math.isfinite(vs) and vs > 0):
                raise CircuitError(
                    f"b (max|b| = {np.abs(self.b_vector).max():.3g}) against A (max|A| = {self.matrix_scale:.3g}): "
                    "the scale of x = A^-1 b is outside float64's range, so the DAC voltages would be 0 V or "
                    "not finite; rescale b (x scales with it)."
                )

    @property
    def time_constant(self) -> float:
        return self.capacitance * self.unit_resistance

    @property
    def voltage_scale(self) -> float:
        bd = self.b_vector / self.matrix_scale
        if not np.any(bd):
            return self.dac_full_scale
        x = np.linalg.solve(self.target, self.b_vector)
        return float(min(self.dac_full_scale / np.abs(bd).max(), self.output_swing / np.abs(x).max()))

    @property
    def noise_psd(self) -> float:
        """Injected current PSD S (A^2/Hz, two-sided) giving Cov V = kappa0 A_dev^{-1}: S = 2 C g_u kappa0."""
        return 2 * self.capacitance / self.unit_resistance * self.kappa0

    def _fastest_rate(self) -> float:
        return float(np.abs(np.linalg.eigvalsh(self.target / self.matrix_scale)).max() / self.time_constant)

    def build(self, seed: int = 0) -> Circuit:
        n, ni = self.size, self.nonideal
        A = self.device_matrix
        self._refuse_indefinite(A)
        T = ni.temperature or None
        gu = 1.0 / self.unit_resistance
        vdac = -self.voltage_scale * self.b_vector / self.matrix_scale
        passive: list[Element] = []
        need_inv = [bool(np.any(A[:, j] < -ZERO_ENTRY)) for j in range(n)]
        row_switches = [0] * n  # crossbar switches at summing node i
        col_switches = [0] * n  # ... at amplifier output o_j
        inv_switches = [0] * n  # ... at inverter output ob_j
        for i in range(n):
            s, o = f"s{i}", f"o{i}"
            passive.append(Capacitor(f"Cf{i}", s, o, self.capacitance))
            for j in range(n):
                a = A[i, j]
                if i == j:
                    # the cell's own leak: never dropped as "zero" (without it the integrator has no
                    # restoring term and the array is unstable); the range check refuses a tiny one, and
                    # _refuse_indefinite one rounded to zero
                    hint = (
                        "A diagonal entry this small relative to max|A| cannot be placed (without it the "
                        "array is unstable): add damping or choose a smaller unit_resistance."
                    )
                elif abs(a) <= ZERO_ENTRY:
                    continue
                else:
                    hint = (
                        "Entries this small relative to max|A| need a larger unit_resistance range: rescale "
                        "A, zero the entry, or add damping."
                    )
                r = check_range(
                    "ohms",
                    f"crossbar resistor R{i}_{j} (A_dev[{i},{j}] = {a:.3g})",
                    1.0 / (gu * abs(a)),
                    hint,
                )
                src = f"o{j}" if a > 0 else f"ob{j}"
                # the crossbar switch's on-resistance in series: no node between, so one resistor R + R_on
                passive.append(Resistor(f"R{i}_{j}", src, s, r + ni.switch_resistance, T))
                row_switches[i] += 1
                (col_switches if a > 0 else inv_switches)[j] += 1
            passive.append(Resistor(f"Rin{i}", f"d{i}", s, self.unit_resistance, T))
            if need_inv[i]:
                passive.append(Resistor(f"Ria{i}", o, f"m{i}", self.inverter_resistance, T))
                passive.append(Resistor(f"Rib{i}", f"m{i}", f"ob{i}", self.inverter_resistance, T))
        rng = np.random.default_rng(seed)
        passive = _apply_tolerance(passive, ni.tolerance, rng)
        passive = _add_leakage(passive, ni.capacitor_leakage, ni.temperature)
        passive = _add_esr(passive, ni.capacitor_esr, ni.temperature)
        dac_rng = np.random.default_rng((seed, _DAC_STREAM))
        dac_gain = tolerance_factors(dac_rng, n, ni.dac_gain_error)
        dac_off = ni.dac_offset * np.clip(dac_rng.standard_normal(n), -3, 3) if ni.dac_offset else np.zeros(n)
        gen_gain = self.generator_gains(seed)
        active: list[Element] = []
        amps: dict[str, str] = {}
        for i in range(n):
            v = vdac[i]
            if ni.dac_bits:
                v = quantize_entries(np.array([v]), bits=ni.dac_bits, full_scale=self.dac_full_scale)[0]
            if ni.dac_gain_error or ni.dac_offset:
                v = v * dac_gain[i] + dac_off[i]
            active.append(VoltageSource(f"Vb{i}", f"d{i}", GROUND, float(v)))
            active += noise_generator(f"In{i}", GROUND, f"s{i}", self.noise_psd, ni, float(gen_gain[i]))
            active += opamp_elements(f"X{i}", GROUND, f"s{i}", f"o{i}", ni.opamp)
            amps[f"X{i}"] = f"X{i}_o" if ni.opamp.output_resistance > 0 else f"o{i}"
            if need_inv[i]:
                active += opamp_elements(f"XI{i}", GROUND, f"m{i}", f"ob{i}", ni.opamp)
                amps[f"XI{i}"] = f"XI{i}_o" if ni.opamp.output_resistance > 0 else f"ob{i}"
        para: list[Element] = []
        op = ni.opamp
        if (
            (ni.parasitic_capacitance or ni.switch_capacitance)
            and math.isfinite(op.open_loop_gain)
            and op.output_resistance == 0
        ):
            raise CircuitError(
                "parasitic_capacitance with a finite-gain op-amp needs opamp.output_resistance > 0: with an ideal "
                "output the summing-node capacitor closes a loop through a voltage source (a non-physical, "
                "index-2 circuit). Every real amplifier has an output resistance; set it (e.g. 50 ohm)."
            )
        if ni.parasitic_capacitance or ni.switch_capacitance:
            cp, csw = ni.parasitic_capacitance, ni.switch_capacitance

            def cap(name: str, node: str, switches: int) -> None:
                c = cp + switches * csw
                if c > 0:
                    para.append(Capacitor(name, node, GROUND, c))

            for i in range(n):
                # at an ideal amplifier's virtual ground a capacitor carries no current: placed only when
                # the gain is finite (then the summing node moves and the parasitic matters)
                if math.isfinite(op.open_loop_gain):
                    cap(f"Cps{i}", f"s{i}", row_switches[i])
                    if need_inv[i]:
                        cap(f"Cpm{i}", f"m{i}", 0)
                if op.output_resistance > 0:
                    cap(f"Cpo{i}", f"o{i}", col_switches[i])
                    if need_inv[i]:
                        cap(f"Cpb{i}", f"ob{i}", inv_switches[i])
        return Circuit(
            title=f"rc{n} thermodynamic integrator array",
            elements=tuple(passive + active + para),
            outputs=tuple(f"o{i}" for i in range(n)),
            noise_interval=self.nt,
            time_constant=self.time_constant,
            meta={"family": "rc", "seed": seed, "size": n, "amplifiers": amps},
        )


@dataclass(frozen=True)
class RLCArraySpec(ArraySpec):
    """Underdamped RLC resonator array. unit_capacitance: c_u (F), the Maxwell capacitance for
    |A_dev| = 1; inductance: L (H) per cell; quality_factor: Q of a cell with C = c_u, which sets the
    series R = sqrt(L/c_u)/Q (ohm). tau = 2L/R (s), the envelope decay time of an underdamped mode."""

    unit_capacitance: float = 1e-9
    inductance: float = 10e-6
    quality_factor: float = 2.0
    family: ClassVar[str] = "rlc"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("farads", "unit_capacitance", self.unit_capacitance, "Choose c_u in range.")
        check_range("henries", "inductance", self.inductance, "Choose L in range.")
        if not (math.isfinite(self.quality_factor) and 0.05 <= self.quality_factor <= 100):
            raise CircuitError(f"quality_factor = {self.quality_factor!r} must be in [0.05, 100].")
        if np.any(self.b_vector):
            raise CircuitError(
                "the capacitively coupled RLC array samples N(0, kT Cm^{-1}); it has no b input "
                "(its DC mean is 0, not A^{-1} b). Use the RC family for linear solves."
            )
        A = self.target / self.matrix_scale
        off = A - np.diag(np.diag(A))
        if np.any(off > ZERO_ENTRY):
            i, j = np.argwhere(off > ZERO_ENTRY)[0]
            raise CircuitError(
                f"A[{i},{j}] = {self.target[i, j]:.4g} > 0 cannot be a passive coupling capacitor (the Maxwell "
                "matrix has non-positive off-diagonals). Use the RC family (signed crossbar) for this matrix."
            )
        rows = A.sum(axis=1)
        if np.any(rows <= ZERO_ENTRY):
            i = int(np.argmin(rows))
            total = rows[i] * self.matrix_scale
            how = "<= 0" if rows[i] <= 0 else f"~ 0 (at most {ZERO_ENTRY:g} of max|A|)"
            raise CircuitError(
                f"row {i} of A sums to {total:.4g} {how}: cell {i} would need a zero or negative capacitor to "
                "ground. Add damping (lambda > |row sum|) or use the RC family."
            )

    @property
    def series_resistance(self) -> float:
        return math.sqrt(self.inductance / self.unit_capacitance) / self.quality_factor

    @property
    def time_constant(self) -> float:
        return 2 * self.inductance / (self.series_resistance + self.nonideal.inductor_resistance)

    @property
    def voltage_scale(self) -> float:
        return 1.0

    @property
    def noise_temperature(self) -> float:
        """T_eff (K) of the injected noise: k T_eff / c_u = kappa0."""
        return self.kappa0 * self.unit_capacitance / BOLTZMANN

    def _fastest_rate(self) -> float:
        lam = np.linalg.eigvalsh(self.target / self.matrix_scale)
        c_min = self.unit_capacitance * lam.min()
        R = self.series_resistance + self.nonideal.inductor_resistance
        return float(max(1.0 / math.sqrt(self.inductance * c_min), R / self.inductance))

    def build(self, seed: int = 0) -> Circuit:
        n, ni = self.size, self.nonideal
        A = self.device_matrix
        self._refuse_indefinite(A)
        Cm = self.unit_capacitance * A
        T = ni.temperature or None
        R = self.series_resistance
        passive: list[Element] = []
        for i in range(n):
            ci = float(Cm[i].sum())
            if ci <= 0:
                raise CircuitError(
                    f"after coupling quantization row {i} sums to {ci:.3g} F: cell {i} needs a negative capacitor. "
                    "Use more coupling bits or add damping."
                )
            passive.append(
                Capacitor(f"C{i}", f"v{i}", GROUND, check_range("farads", f"C{i}", ci, "Rescale A."))
            )
            for j in range(i + 1, n):
                if abs(A[i, j]) > ZERO_ENTRY:
                    cij = check_range("farads", f"C{i}_{j}", -Cm[i, j], "Zero or rescale this coupling.")
                    passive.append(Capacitor(f"C{i}_{j}", f"v{i}", f"v{j}", cij))
            passive.append(Inductor(f"L{i}", f"v{i}", f"m{i}", self.inductance))
            if ni.inductor_resistance:
                passive.append(Resistor(f"RL{i}", f"m{i}", f"q{i}", ni.inductor_resistance, T))
                passive.append(
                    Resistor(f"R{i}", f"q{i}", GROUND, check_range("ohms", f"R{i}", R, "Adjust Q."), T)
                )
            else:
                passive.append(
                    Resistor(f"R{i}", f"m{i}", GROUND, check_range("ohms", f"R{i}", R, "Adjust Q."), T)
                )
        rng = np.random.default_rng(seed)
        passive = _apply_tolerance(passive, ni.tolerance, rng)
        # the injected noise sits across each cell's series resistor; its level is set from the NOMINAL R
        # (a generator cannot know the drawn value; with tolerance 0 this is the FDT-matched level)
        res = {e.name: e for e in passive if isinstance(e, Resistor)}
        couplings = [e for e in passive if isinstance(e, Capacitor) and "_" in e.name]
        passive = _add_leakage(passive, ni.capacitor_leakage, ni.temperature)
        passive = _add_esr(
            passive, ni.capacitor_esr, ni.temperature, {c.name: ni.switch_resistance for c in couplings}
        )
        gen_gain = self.generator_gains(seed)
        psd = 2 * BOLTZMANN * self.noise_temperature / R
        noise: list[Element] = []
        for i in range(n):
            noise += noise_generator(f"In{i}", GROUND, res[f"R{i}"].n1, psd, ni, float(gen_gain[i]))
        para: list[Element] = []
        switches = [0] * n
        for c in couplings:
            for node in (c.n1, c.n2):
                switches[int(node[1:])] += 1
        for i in range(n):
            cp = ni.parasitic_capacitance + switches[i] * ni.switch_capacitance
            if cp:
                para.append(Capacitor(f"Cp{i}", f"v{i}", GROUND, cp))
        if ni.inductor_capacitance:
            for i in range(n):
                far = f"q{i}" if ni.inductor_resistance else f"m{i}"  # across the whole inductor (L + DCR)
                para.append(Capacitor(f"CL{i}", f"v{i}", far, ni.inductor_capacitance))
        return Circuit(
            title=f"rlc{n} thermodynamic resonator array",
            elements=tuple(passive + noise + para),
            outputs=tuple(f"v{i}" for i in range(n)),
            noise_interval=self.nt,
            time_constant=self.time_constant,
            meta={"family": "rlc", "seed": seed, "size": n},
        )


def from_matrix(
    A: np.ndarray, b: np.ndarray | None = None, *, family: str = "rc", **kwargs: Any
) -> RCArraySpec | RLCArraySpec:
    """Map an SPD target A (and b) onto an array spec with component values in realistic ranges.

    The returned spec's ``scaling`` says how to map results back: A = matrix_scale * A_dev,
    V = voltage_scale * x, tau = time constant (s). Extra keyword arguments are spec fields
    (damping, kappa0, nonideal, capacitance, ...).
    """
    A = as_real_array(A, "A")
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise CircuitError(f"A must be a non-empty square matrix; got shape {A.shape}.")
    if A.shape[0] > MAX_CELLS:
        raise CircuitError(
            f"A is {A.shape[0]} x {A.shape[0]}: more than the {MAX_CELLS} cells one array may have; split it "
            "into blocks (tiles) of at most that size."
        )
    damping = kwargs.get("damping", 0.0)
    if isinstance(damping, bool) or not isinstance(damping, int | float) or not math.isfinite(damping):
        raise CircuitError(f"damping = {damping!r} must be a finite number >= 0 (units of A).")
    check_spd(A + damping * np.eye(A.shape[0]))
    bt = tuple(check_vector(b, A.shape[0])) if b is not None else ()
    cls = {"rc": RCArraySpec, "rlc": RLCArraySpec}.get(family)
    if cls is None:
        raise CircuitError(f"unknown family {family!r}; expected 'rc' or 'rlc'.")
    return cls(matrix=_as_tuple2(A), b=bt, **kwargs)
