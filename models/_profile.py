"""Hardware profiles: a versioned, generative description of an analog array, and the surrogate it builds.

A profile is not one fitted matrix: it holds component statistics (tolerance, coupling resolution, amplifier
limits, noise level, τ, DAC/ADC) plus the corrections calibration against SPICE found (``fitted``). From it,
:meth:`HardwareProfile.instantiate` builds the exact linear-SDE surrogate (:class:`LinearSDE`, time in units
of τ) of a device of any size n holding any loaded matrix.

RC family (overdamped op-amp integrator array, docs/physics.md), in units g0 = 1/R (conductance), c0 = C,
τ = R C. A is scaled into the hardware range, A_hw = α A with α = coupling_full_scale / max|A_ij|, then
DAC-quantized (coupling_bits magnitude bits, 2^b − 1 levels over ±coupling_full_scale, sign by routing) and realised with per-resistor tolerance
G_ij = A_hw,ij (1 + σ_G ε_ij) (the crossbar has one resistor per (i, j): the realised G is not symmetric).
Node i: integration capacitor c_i = 1 + σ_C ε_i, op-amp with open-loop gain A0 and input offset v_i.
Kirchhoff at the summing node e_i = v_i - V_i/A0 of an inverting integrator gives

    c_i (1 + 1/A0) dV_i/dt = -(G V)_i - (g_i/A0) V_i + b_hw,i + g_i v_i + ξ_i,   g_i = Σ_j |G_ij| + 1

(g_i: total conductance into the summing node, the input resistor included), so the surrogate is

    M = -f K (G + diag(g/A0) + δ I),   u = f K (b_hw + g ⊙ v),   D = 2 κ0 s f K²,   K = diag(1/(c_i (1+1/A0)))

with the fitted corrections f = ``drift_scale`` (a time-scale correction), s = ``noise_scale`` and
δ = ``diag_shift`` (a leak). Finite gain thus shrinks the matrix by 1/(1+1/A0) and adds a diagonal leak g/A0:
an O(1/A0) relative perturbation. Ideal values give M = -A_hw, D = 2κ0 I: Cov = κ0 A_hw⁻¹.

RLC family (underdamped resonator array): states (V, I_L); the Maxwell capacitance matrix is loaded,
𝐂 = c0 (A_hw ⊙ (1 + σ ε) + (C_par/c0) I) with a symmetric ε (one capacitor per pair), L and R per cell:
𝐂 dV/dt = -I_L + ξ_node, L dI_L/dt = V - R (1 + δ) I_L + ξ_series (SI, then times τ; δ = ``diag_shift`` is
a relative damping correction here). ``noise_injection="series"``
(voltage noise of two-sided PSD 2 κ0 c0 R in each inductor branch) gives the Boltzmann law Cov V = κ0 A_real⁻¹
exactly; ``"node"`` (current noise 2 κ0 c0 / R at each node) gives (κ0) A⁻¹ + κ0 (L/(R² c0)) A⁻² instead. The
RLC array only reads covariances: it cannot solve A x = b (its DC point is V = R b).

Not in the n-state model (left for model-order reduction / calibration): op-amp GBW poles, parasitic
capacitance at RC summing nodes, 1/f noise, the colour of sampled noise (``noise_interval_s``), saturation
inside the dynamics (saturation is applied at readout only).
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from thermotrain._args import check_int
from thermotrain._errors import CircuitError, InputError, OutputError, ProfileError, UnloadableMatrixError
from thermotrain._spd import smallest_eigenvalue_if_indefinite
from thermotrain.models._linear_sde import LinearSDE
from thermotrain.models._quantize import Quantizer, Readout
from thermotrain.models._readout import ReadoutConfig

__all__ = [
    "COMPONENT_STATS_DEFAULTS",
    "FITTED_DEFAULTS",
    "SCHEMA_VERSION",
    "DeviceInstance",
    "FactoredRCDevice",
    "ChipSpec",
    "ElementDeviations",
    "HardwareProfile",
    "load_profile",
    "save_profile",
]

SCHEMA_VERSION = 1
_REGENERATE = "regenerate it with `thermotrain calibrate --preset {rc8,rlc8} --out PROFILE.json`"

#: Every component statistic a profile carries (units in the names), with the ideal value.
COMPONENT_STATS_DEFAULTS: dict[str, Any] = {
    "tolerance": 0.0,  # relative σ of each coupling element (RC: resistor; RLC: capacitor)
    "capacitor_tolerance": 0.0,  # relative σ of each node capacitor (RC: integration C)
    "coupling_bits": None,  # magnitude bits of each coupling (2^b - 1 nonzero levels; sign by routing); None = continuous
    "coupling_full_scale": 1.0,  # largest |A_hw,ij| in units of g0 = 1/R (RC) or c0 (RLC)
    "input_full_scale_v": 1.0,  # range of the b DAC (V)
    "output_full_scale_v": 10.0,  # op-amp output swing (V): every read sample clips here
    "adc_full_scale_v": None,  # ADC range referred to the cell output (V; a gain stage); None = the swing
    "parasitic_capacitance_f": 0.0,  # per node to ground (F); RLC only in the n-state model
    "opamp_gain": None,  # open-loop DC gain A0; None = ideal (RC only)
    "opamp_gbw_hz": None,  # gain-bandwidth product (Hz); RC: the amplifiers' first-order lag (instantiate)
    "opamp_offset_v": 0.0,  # σ of each op-amp's input offset voltage (V), drawn per device
    "noise_gain_mismatch": 0.0,  # relative σ of each noise-generator channel's gain, drawn per device
    "switch_capacitance_f": 0.0,  # F per coupling switch terminal, lumped per node (RLC; RC: virtual ground)
    "noise_bandwidth_hz": None,  # the noise generator's first-order filter (Hz); RLC: one state per cell
    "capacitor_esr_ohm": 0.0,  # series resistance of every array capacitor (Ω); RLC (first order in ω r C)
    "switch_resistance_ohm": 0.0,  # on-resistance of each coupling's switch (Ω), in series with it; RLC
    "inductor_capacitance_f": 0.0,  # self-capacitance across each inductor (F); RLC: one state per cell
    "inductor_resistance_ohm": 0.0,  # the inductor's DC resistance (Ω), part of circuit.R_ohm, noiseless; RLC
}

#: Component statistics added to schema 1 after its first release: a profile written before them reads
#: them as their ideal value (the model it was fitted with did not have them).
_ADDED_STATS = (
    "noise_gain_mismatch",
    "switch_capacitance_f",
    "noise_bandwidth_hz",
    "capacitor_esr_ohm",
    "switch_resistance_ohm",
    "inductor_capacitance_f",
    "inductor_resistance_ohm",
    "adc_full_scale_v",
)

#: Fitted corrections that :meth:`HardwareProfile.instantiate` applies (identity values).
FITTED_DEFAULTS: dict[str, float] = {"drift_scale": 1.0, "noise_scale": 1.0, "diag_shift": 0.0}

_FIT_KEYS = ("train_covariance_rel_error", "heldout_covariance_rel_error", "spice_spread_rel")
_CIRCUIT_KEYS = {"rc": ("R_ohm", "C_f"), "rlc": ("C_f", "L_h", "R_ohm", "noise_injection")}


def _fail(what: str, fix: str = _REGENERATE) -> ProfileError:
    return ProfileError(f"{what}; {fix}.")


def _check_finite(obj: Any, path: str) -> None:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, int | float):
        try:
            finite = math.isfinite(float(obj))
        except OverflowError:  # a JSON integer beyond float range, e.g. 10**400
            finite = False
        if not finite:
            shown = obj if isinstance(obj, float) else f"an integer of {len(str(abs(obj)))} digits"
            raise _fail(f"profile field {path} is {shown} (must be a finite number)")
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_finite(v, f"{path}.{k}")
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _check_finite(v, f"{path}[{i}]")
    else:
        raise _fail(f"profile field {path} has type {type(obj).__name__}; only JSON values are allowed")


def _check_nonideal(d: Any) -> None:
    """``circuit.nonideal`` (the corner the profile was calibrated on, as ``NonIdealities.to_dict`` writes
    it) parsed against its schema: known keys only, ``opamp`` an object of OpAmp's keys, every value null,
    ``"inf"`` (a gain) or of its field's type (:func:`thermotrain.circuits._nonideal.corner_value`, the
    corner-file check), and the ranges :class:`~thermotrain.circuits.NonIdealities` accepts."""
    from thermotrain.circuits import NonIdealities, OpAmp
    from thermotrain.circuits._nonideal import corner_value

    path = "profile field circuit.nonideal"
    if not isinstance(d, dict):
        raise _fail(f"{path} must be a JSON object")
    if not isinstance(d.get("opamp", {}), dict):
        raise _fail(f"{path}.opamp = {_short(d['opamp'])} must be a JSON object")
    top = {f.name for f in fields(NonIdealities)}
    op_keys = {f.name for f in fields(OpAmp)}
    unknown = sorted(set(d) - top) + sorted(f"opamp.{k}" for k in set(d.get("opamp") or {}) - op_keys)
    if unknown:
        raise _fail(f"{path} has unknown key(s) {unknown}")
    values = [(k, k, v) for k, v in d.items() if k != "opamp"]
    values += [(f"opamp.{k}", k, v) for k, v in (d.get("opamp") or {}).items()]
    try:
        for key, name, v in values:
            if v is not None and not (v == "inf" and name == "open_loop_gain"):
                corner_value(path, key, name, v)
        NonIdealities.from_dict(d)  # the ranges
    except (CircuitError, TypeError, ValueError, OverflowError) as exc:
        msg = str(exc).splitlines()[0]
        raise _fail(msg if msg.startswith(path) else f"{path}: {msg}") from None


def _number(
    d: Mapping[str, Any],
    key: str,
    path: str,
    *,
    lo: float = -math.inf,
    hi: float = 1e30,
    allow_none: bool = False,
) -> None:
    """``d[key]`` must be a number in [lo, hi] (lo = 1e-300 reads "> 0"). The default ``hi`` = 1e30 is a
    sanity bound above every physical value a profile holds (ohms, hertz, ...): larger numbers only overflow
    the surrogate into inf."""
    v = d[key]
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise _fail(
            f"profile field {path}.{key} = {_short(v)} must be a number "
            + ("> 0" if lo == 1e-300 else f">= {lo:g}")
            + f" and <= {hi:g}"
            + (" or null" if allow_none else "")
        )


def _bits(v: Any, path: str, lo: int = 2) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= 53):
        raise _fail(f"profile field {path} = {v!r} must be an int in [{lo}, 53] or null (ideal)")


@dataclass(frozen=True)
class ChipSpec:
    """The chip a profile describes: ``tiles`` fixed-size analog tiles of ``cells_per_tile`` fully coupled
    cells each (a profile's optional top-level ``"chip"`` entry, e.g. ``{"cells_per_tile": 64, "tiles": 16}``).
    A matrix wider than one tile is mapped onto several (:func:`thermotrain.models.tiled_inverse`,
    :func:`thermotrain.models.tiled_solve`); the tiles of one round run in parallel, more blocks than tiles
    run in several rounds.

    Fields:
        cells_per_tile: cells (matrix rows) one tile holds, an int in [1, 1_000_000].
        tiles: tiles on the chip, an int in [1, 1_000_000].
    """

    cells_per_tile: int
    tiles: int

    def __post_init__(self) -> None:
        check_int("ChipSpec.cells_per_tile", self.cells_per_tile, minimum=1, maximum=_MAX_CHIP)
        check_int("ChipSpec.tiles", self.tiles, minimum=1, maximum=_MAX_CHIP)

    @property
    def cells(self) -> int:
        """Cells on the whole chip (cells_per_tile x tiles)."""
        return self.cells_per_tile * self.tiles


@dataclass(frozen=True)
class DeviceInstance:
    """One device built from a profile for one loaded matrix (time in units of τ).

    Fields:
        sde: the surrogate dx = (M x + u) dt + Q dW (hardware units: V, τ).
        observe: [n, state_dim] matrix mapping the state to the n read voltages.
        matrix_scale: α in A_hw = α A (A in the caller's units).
        input_scale: β per right-hand side [k] in b_hw = β b (None without b).
        A_loaded: the quantized A_hw the DAC loaded, [n, n].
        b_loaded: the quantized b_hw, [k, n] (None without b).
        readout: offset, saturation and ADC applied to the read voltages.
        kappa0: the noise level the SDE was built with (V²).
        input_gain: how a loaded right-hand side enters the drift (RC; None for RLC, which cannot solve):
            [n] g with u = g ⊙ (b_hw + offset drive), or [n, n] with u = g (b_hw + offset drive) when the
            amplifiers' lag couples the cells (:func:`apply_input_gain` applies either).
    """

    sde: LinearSDE
    observe: Tensor
    matrix_scale: float
    input_scale: Tensor | None
    A_loaded: Tensor
    b_loaded: Tensor | None
    readout: Readout
    kappa0: float
    input_gain: Tensor | None = None


@dataclass(frozen=True)
class FactoredRCDevice:
    """An RC device as :meth:`HardwareProfile.instantiate_factored` builds it: the drift M = -f K G_eff kept as
    its factors (K the inverse capacitance matrix, [n] when diagonal or [n, n] with the amplifiers' lag;
    G_eff the realised conductances with the finite-gain and fitted diagonal terms), the input u, and the
    diagonal of the diffusion D; the state is the n cell voltages (observe = I). The same device as
    :meth:`HardwareProfile.instantiate`'s ``DeviceInstance`` (``sde.M``, ``sde.u``, ``diag(sde.D)``)."""

    K: Tensor
    G_eff: Tensor
    f: float
    u: Tensor
    diffusion_diag: Tensor
    matrix_scale: float
    input_scale: Tensor | None
    readout: Readout
    kappa0: float

    def _k(self, V: Tensor, transpose: bool = False) -> Tensor:
        if self.K.ndim == 1:
            return self.K[:, None] * V if V.ndim == 2 else self.K * V
        return (self.K.mT if transpose else self.K) @ V

    def matvec(self, V: Tensor) -> Tensor:
        """M V for V [n] or [n, k]: two O(n²) products per column."""
        return -self.f * self._k(self.G_eff @ V)

    def rmatvec(self, V: Tensor) -> Tensor:
        """Mᵀ V for V [n] or [n, k]."""
        return -self.f * (self.G_eff.mT @ self._k(V, transpose=True))

    def dense(self) -> Tensor:
        """M as one [n, n] matrix (O(n³) with the lag; for checks)."""
        return self.matvec(torch.eye(self.G_eff.shape[0], dtype=self.G_eff.dtype, device=self.G_eff.device))


@dataclass(frozen=True)
class ElementDeviations:
    """The drawn values of one physical device, given explicitly instead of the profile's own tolerance draw
    (``instantiate(..., deviations=...)``: a digital twin of a board whose parts are known, e.g. the parts a
    netlist drew with numpy, :func:`thermotrain.netlists.drawn_deviations`).

    Fields (dimensionless relative deviations from the nominal element, so ``0`` is the nominal part):
        coupling: [n, n] deviation of each realised coupling from its loaded value: RC G_ij = A_hw,ij (1 +
            coupling_ij) (one crossbar resistor per (i, j): need not be symmetric; an inverter's gain error
            on a negative entry belongs here too); RLC the Maxwell capacitance matrix 𝐂 = c0 A_hw ⊙ (1 +
            coupling) (must be symmetric). Entries where A_hw is 0 are ignored.
        capacitor: [n] deviation of each integration capacitor (RC: c_i = 1 + capacitor_i); unused for RLC.
        offset_v: [n] input offset of each integrator's op-amp (V; RC), or None for none.
        noise_gain: [n] deviation of each cell's injected noise amplitude from the nominal level (the
            generator channel's gain error; RLC: times R_i / R_nominal, the drawn series resistor the
            generator's current flows through), or None for none.
        series_resistance: [n] deviation of each RLC cell's loop resistance (series resistor + inductor DCR)
            from the profile's ``R_ohm`` (its damping), or None; unused for RC.
        inductance: [n] deviation of each RLC cell's inductor from ``L_h``, or None; unused for RC.
    """

    coupling: Tensor
    capacitor: Tensor
    offset_v: Tensor | None = None
    noise_gain: Tensor | None = None
    series_resistance: Tensor | None = None
    inductance: Tensor | None = None

    def check(self, n: int, family: str) -> None:
        """CircuitError naming the field when a shape does not fit an n-cell device, a value is not finite,
        a deviation is <= -1 (a part of non-positive value) or an RLC coupling deviation is not symmetric."""
        want = {
            "coupling": (n, n),
            "capacitor": (n,),
            "offset_v": (n,),
            "noise_gain": (n,),
            "series_resistance": (n,),
            "inductance": (n,),
        }
        for name, shape in want.items():
            v = getattr(self, name)
            if v is None:
                continue
            if not isinstance(v, Tensor) or tuple(v.shape) != shape:
                got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
                raise CircuitError(f"ElementDeviations.{name} must be a tensor of shape {shape}; got {got}.")
            if not bool(torch.isfinite(v).all()):
                raise CircuitError(f"ElementDeviations.{name} holds a non-finite value.")
            if name != "offset_v" and bool((v <= -1).any()):
                raise CircuitError(
                    f"ElementDeviations.{name} holds a deviation <= -1 (a part of value <= 0)."
                )
        if family == "rlc" and not torch.allclose(self.coupling, self.coupling.mT, rtol=0, atol=1e-12):
            raise CircuitError(
                "ElementDeviations.coupling must be symmetric for an RLC array (one capacitor per pair)."
            )


@dataclass(frozen=True)
class HardwareProfile:
    """A versioned, generative hardware description (JSON schema version 1). Treat the dicts as read-only;
    change a profile with ``dataclasses.replace``.

    Fields:
        schema_version: must equal :data:`SCHEMA_VERSION` (1).
        thermotrain_version: the version that wrote the profile.
        ngspice_version: the ngspice used for calibration (None when not calibrated against SPICE).
        family: ``"rc"`` (overdamped integrator array) or ``"rlc"`` (resonator array).
        circuit: the spec used: RC ``{"R_ohm", "C_f"}``; RLC ``{"C_f", "L_h", "R_ohm", "noise_injection"}``
            (``noise_injection`` ∈ {"series", "node"}); other keys (e.g. ``"name"``, ``"n"``) are kept.
        component_stats: exactly the keys of :data:`COMPONENT_STATS_DEFAULTS` (units in the key names); a key
            added after schema 1's first release (``noise_gain_mismatch``, ``switch_capacitance_f``) may be
            absent and then reads as its ideal value.
        tau_s: the time unit τ (s); RC: τ = R C.
        kappa0: noise level κ0 (V²): the ideal stationary covariance is κ0 A_hw⁻¹.
        dac_bits: resolution of the b DAC (None = ideal).
        adc_bits: ADC resolution at readout over ±adc_full_scale_v (the swing when not set; None = ideal).
        adc_rate_hz: ADC sampling rate (None = unlimited); sets the shortest sample interval 1/(rate τ) τ.
        noise_interval_s: sample interval of the noise source (SPICE TRNOISE NT; None = white).
        fitted: calibration corrections, exactly the keys of :data:`FITTED_DEFAULTS`.
        fit: ``train_covariance_rel_error``, ``heldout_covariance_rel_error``, ``spice_spread_rel`` (numbers,
            or null for a profile that was not calibrated) and any further numeric diagnostics.
        seeds: seeds of the calibration runs; ``seeds[0]`` also seeds the per-device tolerance draws.
        created: ISO-8601 timestamp.
        readout: the readout this device recommends (optional JSON key ``"readout"``: an object of
            :class:`~thermotrain.models.ReadoutConfig` fields, e.g. ``{"target_error": 0.3}``; unknown keys and
            bad values are refused), or None (the library's defaults). A JSON object is parsed here.
        chip: the chip this profile describes (optional JSON key ``"chip"``: ``{"cells_per_tile": int,
            "tiles": int}``, both >= 1, no other keys), or None: "one device of any size" (``instantiate``
            builds a device of any n; nothing checks that extrapolation). A JSON object is parsed here.
    """

    schema_version: int
    thermotrain_version: str
    ngspice_version: str | None
    family: Literal["rc", "rlc"]
    circuit: dict[str, Any]
    component_stats: dict[str, Any]
    tau_s: float
    kappa0: float
    dac_bits: int | None
    adc_bits: int | None
    adc_rate_hz: float | None
    noise_interval_s: float | None
    fitted: dict[str, float]
    fit: dict[str, Any]
    seeds: list[int]
    created: str = field(default="")
    readout: ReadoutConfig | None = None
    chip: ChipSpec | None = None

    def __post_init__(self) -> None:
        for name in ("circuit", "component_stats", "fitted", "fit", "seeds"):
            object.__setattr__(self, name, copy.deepcopy(getattr(self, name)))
        object.__setattr__(self, "readout", _parse_readout(self.readout))
        object.__setattr__(self, "chip", _parse_chip(self.chip))
        if self.schema_version != SCHEMA_VERSION:
            raise _fail(
                f"profile schema_version is {self.schema_version!r}; this thermotrain reads {SCHEMA_VERSION}"
            )
        for name in ("thermotrain_version", "created"):
            if not isinstance(getattr(self, name), str):
                raise _fail(f"profile field {name} must be a string")
        if self.ngspice_version is not None and not isinstance(self.ngspice_version, str):
            raise _fail("profile field ngspice_version must be a string or null")
        if not isinstance(self.family, str) or self.family not in _CIRCUIT_KEYS:
            raise _fail(f"profile field family = {self.family!r} must be 'rc' or 'rlc'")
        for name in ("circuit", "component_stats", "fitted", "fit"):
            if not isinstance(getattr(self, name), dict):
                raise _fail(f"profile field {name} must be a JSON object")
        d = asdict(self)
        _check_finite(d, "profile")
        for key in _CIRCUIT_KEYS[self.family]:
            if key not in self.circuit:
                raise _fail(f"profile field circuit.{key} is missing (needed by family {self.family!r})")
        for key in ("R_ohm", "C_f", "L_h"):
            if key in self.circuit:
                _number(self.circuit, key, "circuit", lo=1e-300)
        if self.family == "rlc" and self.circuit["noise_injection"] not in ("series", "node"):
            raise _fail("profile field circuit.noise_injection must be 'series' or 'node'")
        if "nonideal" in self.circuit:
            _check_nonideal(self.circuit["nonideal"])
        for key in _ADDED_STATS:
            self.component_stats.setdefault(key, COMPONENT_STATS_DEFAULTS[key])
        _exact_keys(self.component_stats, COMPONENT_STATS_DEFAULTS, "component_stats")
        cs = self.component_stats
        for key in ("tolerance", "capacitor_tolerance"):
            _number(cs, key, "component_stats", lo=0.0)
            if cs[key] >= 1:
                raise _fail(f"profile field component_stats.{key} = {cs[key]!r} must be in [0, 1)")
        for key in ("coupling_full_scale", "input_full_scale_v", "output_full_scale_v"):
            _number(cs, key, "component_stats", lo=1e-300)
        for key in (
            "parasitic_capacitance_f",
            "opamp_offset_v",
            "switch_capacitance_f",
            "capacitor_esr_ohm",
            "switch_resistance_ohm",
            "inductor_capacitance_f",
            "inductor_resistance_ohm",
        ):
            _number(cs, key, "component_stats", lo=0.0)
        _number(cs, "noise_gain_mismatch", "component_stats", lo=0.0, hi=0.3)
        if "R_ohm" in self.circuit and cs["inductor_resistance_ohm"] >= self.circuit["R_ohm"]:
            raise _fail(
                f"profile field component_stats.inductor_resistance_ohm = {cs['inductor_resistance_ohm']!r} must "
                f"be below circuit.R_ohm = {self.circuit['R_ohm']!r} (the loop's resistance includes it)"
            )
        _number(cs, "opamp_gain", "component_stats", lo=1.0, allow_none=True)
        _number(cs, "opamp_gbw_hz", "component_stats", lo=1e-300, allow_none=True)
        _number(cs, "adc_full_scale_v", "component_stats", lo=1e-300, allow_none=True)
        _number(cs, "noise_bandwidth_hz", "component_stats", lo=1e-300, allow_none=True)
        _bits(cs["coupling_bits"], "component_stats.coupling_bits", lo=1)
        if cs["coupling_bits"] is not None and cs["coupling_bits"] > 52:
            raise _fail(
                f"profile field component_stats.coupling_bits = {cs['coupling_bits']!r} must be <= 52"
            )
        _bits(cs["coupling_bits"], "component_stats.coupling_bits", lo=1)
        _exact_keys(self.fitted, FITTED_DEFAULTS, "fitted")
        for key in self.fitted:
            # corrections found by calibration are O(1): a drift/noise scale of 100 or a leak of 10 (units of
            # the loaded matrix) would mean the fit failed
            if key == "diag_shift":
                _number(self.fitted, key, "fitted", lo=-10.0, hi=10.0)
            else:
                _number(self.fitted, key, "fitted", lo=0.0, hi=100.0)
        for key in _FIT_KEYS:
            if key not in self.fit:
                raise _fail(f"profile field fit.{key} is missing")
            _number(self.fit, key, "fit", lo=0.0, allow_none=True)
        top = {"tau_s": self.tau_s, "kappa0": self.kappa0}
        _number(top, "tau_s", "profile", lo=1e-300)
        _number(top, "kappa0", "profile", lo=0.0, hi=1.0)  # node rms noise of at most full scale
        _bits(self.dac_bits, "dac_bits")
        _bits(self.adc_bits, "adc_bits")
        opt = {"adc_rate_hz": self.adc_rate_hz, "noise_interval_s": self.noise_interval_s}
        _number(opt, "adc_rate_hz", "profile", lo=1e-300, allow_none=True)
        _number(opt, "noise_interval_s", "profile", lo=1e-300, allow_none=True)
        if not (isinstance(self.seeds, list) and self.seeds and all(_is_int(s) for s in self.seeds)):
            raise _fail("profile field seeds must be a non-empty list of ints")
        if not all(0 <= s < 2**63 for s in self.seeds):
            raise _fail("profile field seeds must hold integers in [0, 2**63)")
        if len(self.seeds) > _MAX_SEEDS:
            raise _fail(f"profile field seeds holds {len(self.seeds)} entries (at most {_MAX_SEEDS})")
        for key, v in self.fit.items():
            if key == "device":
                continue
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise _fail(f"profile field fit.{key} = {_short(v)} must be a number or null")
        if self.fit.get("device") is not None:
            _check_device(self.fit["device"], self.family)
        for key in ("name",):
            if key in self.circuit and not isinstance(self.circuit[key], str):
                raise _fail(f"profile field circuit.{key} = {_short(self.circuit[key])} must be a string")
        if "n" in self.circuit and not (_is_int(self.circuit["n"]) and 1 <= self.circuit["n"] <= _MAX_N):
            raise _fail(
                f"profile field circuit.n = {_short(self.circuit['n'])} must be an int in [1, {_MAX_N}]"
            )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_spec(
        cls,
        family: Literal["rc", "rlc"] = "rc",
        *,
        circuit: dict[str, Any] | None = None,
        tau_s: float | None = None,
        kappa0: float = 1e-2,
        dac_bits: int | None = None,
        adc_bits: int | None = None,
        adc_rate_hz: float | None = None,
        noise_interval_s: float | None = None,
        seeds: list[int] | None = None,
        **component_stats: Any,
    ) -> HardwareProfile:
        """An uncalibrated profile from design values (``fit`` entries null, ``fitted`` identity).

        Defaults: RC R = 1 kΩ, C = 1 nF (τ = 1 µs); RLC C = 1 nF, L = 1 µH, R = 3 Ω, series noise
        (τ = √(L C) ≈ 31.6 ns). ``component_stats`` keywords override :data:`COMPONENT_STATS_DEFAULTS`.
        """
        from thermotrain import __version__

        if family == "rc":
            spec = {"R_ohm": 1e3, "C_f": 1e-9}
        else:
            spec = {"C_f": 1e-9, "L_h": 1e-6, "R_ohm": 3.0, "noise_injection": "series"}
        spec.update(circuit or {})
        unknown = set(component_stats) - set(COMPONENT_STATS_DEFAULTS)
        if unknown:
            raise ProfileError(
                f"unknown component statistic(s) {sorted(unknown)}; known: {sorted(COMPONENT_STATS_DEFAULTS)}."
            )
        if tau_s is None:
            tau_s = spec["R_ohm"] * spec["C_f"] if family == "rc" else math.sqrt(spec["L_h"] * spec["C_f"])
        return cls(
            schema_version=SCHEMA_VERSION,
            thermotrain_version=__version__,
            ngspice_version=None,
            family=family,
            circuit=spec,
            component_stats={**COMPONENT_STATS_DEFAULTS, **component_stats},
            tau_s=tau_s,
            kappa0=kappa0,
            dac_bits=dac_bits,
            adc_bits=adc_bits,
            adc_rate_hz=adc_rate_hz,
            noise_interval_s=noise_interval_s,
            fitted=dict(FITTED_DEFAULTS),
            fit=dict.fromkeys(_FIT_KEYS),
            seeds=list(seeds) if seeds is not None else [0],
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        )

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        """``circuit["name"]`` when the spec has one, else the family."""
        return str(self.circuit.get("name", self.family))

    @property
    def calibrated(self) -> bool:
        return self.fit.get("heldout_covariance_rel_error") is not None

    @property
    def sample_interval_tau(self) -> float:
        """Shortest ADC sample interval in units of τ: 1/(adc_rate_hz · τ) (0 when the rate is unlimited)."""
        return 0.0 if self.adc_rate_hz is None else 1.0 / (self.adc_rate_hz * self.tau_s)

    @property
    def recommended_readout(self) -> ReadoutConfig | None:
        """The readout this device recommends (:attr:`readout`), None for the library's defaults."""
        return self.readout

    @property
    def signal_scale_v(self) -> float:
        """sqrt(κ0·noise_scale) (V): the stationary rms of a channel whose mode relaxes at rate 1/τ — the scale
        of the covariance readout's signal, whose matrices are loaded at full scale (0.1 V on rc8; a K-FAC
        factor's channels read 0.1-0.3 V). An ADC range a few to tens of times this fits the signal."""
        return math.sqrt(self.kappa0 * float(self.fitted["noise_scale"]))

    def readout_chain(self) -> Readout:
        """Readout chain: clip at ±output_full_scale_v (the swing), then the ADC (adc_bits) over
        ±adc_full_scale_v referred to the cell output (a gain stage of swing / range before the converter; it
        clips at its own range too), the swing when not set."""
        cs = self.component_stats
        swing = float(cs["output_full_scale_v"])
        fs = swing if cs.get("adc_full_scale_v") is None else float(cs["adc_full_scale_v"])
        return Readout(adc=None if self.adc_bits is None else Quantizer(self.adc_bits, fs), saturation=swing)

    def summary(self) -> str:
        """A printout of the effective settings (ideal values marked)."""
        lines = [
            f"HardwareProfile {self.name!r} (family {self.family}, schema {self.schema_version}, "
            f"thermotrain {self.thermotrain_version}, ngspice {self.ngspice_version or '-'})",
            f"  tau = {self.tau_s:.4g} s   kappa0 = {self.kappa0:.4g} V^2   circuit = "
            + ", ".join(f"{k} = {v}" for k, v in self.circuit.items() if not isinstance(v, dict)),
            f"  DAC(b) bits = {self.dac_bits or 'ideal'}   ADC bits = {self.adc_bits or 'ideal'}   "
            f"ADC rate = {self.adc_rate_hz or 'unlimited'} Hz   noise interval = {'white' if self.noise_interval_s is None else f'{self.noise_interval_s:.4g} s'}",
        ]
        for k, v in self.component_stats.items():
            ideal = "" if v != COMPONENT_STATS_DEFAULTS[k] else "  (ideal/default)"
            lines.append(f"  {k:<26} {v}{ideal}")
        lines.append("  fitted: " + ", ".join(f"{k} = {v:.4g}" for k, v in self.fitted.items()))
        if not self.calibrated:
            lines.append("  fit:    (not calibrated)")
        for k, v in self.fit.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                lines.append(f"  fit.{k:<36} {v:.4g}")
        if self.fit.get("device"):
            lines.append(f"  fit.device: the fitted {self.fit['device'].get('n')}-cell calibration device")
        if self.readout is not None:
            rec = ", ".join(f"{k} = {v}" for k, v in _readout_json(self.readout).items()) or "the defaults"
            lines.append(f"  recommended readout: {rec}")
        if self.chip is None:
            lines.append(
                "  chip: not declared -- one device of any size (no tiles; a device wider than the "
                "calibrated one is an extrapolation)"
            )
        else:
            c = self.chip
            lines.append(
                f"  chip: {c.tiles} tile(s) of {c.cells_per_tile} cells ({c.cells} cells); wider matrices are "
                "mapped onto tiles"
            )
        return "\n".join(lines)

    def calibration_device(self) -> tuple[LinearSDE, Tensor] | None:
        """The surrogate fitted to the calibration device itself (``fit["device"]``, written by
        :func:`thermotrain.models.calibrate`): its SDE in units of τ and the [n, state] observation matrix;
        None for an uncalibrated profile. Its stationary covariance is what the held-out check compared."""
        dev = self.fit.get("device")
        if not dev:
            return None
        try:
            sde = LinearSDE(
                torch.tensor(dev["M"], dtype=torch.float64),
                torch.tensor(dev["D"], dtype=torch.float64),
                torch.tensor(dev["u"], dtype=torch.float64),
            )
            observe = torch.tensor(dev["observe"], dtype=torch.float64)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise _fail(f"profile field fit.device is malformed ({e})") from e
        if observe.ndim != 2 or observe.shape[1] != sde.n:
            raise _fail(
                f"profile field fit.device.observe has shape {tuple(observe.shape)}; needs [n, {sde.n}]"
            )
        return sde, observe

    # ------------------------------------------------------------------ the surrogate
    def instantiate(
        self,
        A: Tensor,
        b: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        rounding: Literal["nearest", "stochastic"] = "nearest",
        kappa0: float | None = None,
        instance_seed: int | None = None,
        min_eigenvalue: float = 0.0,
        deviations: ElementDeviations | None = None,
    ) -> DeviceInstance:
        """Build the surrogate of a device of size n = A.shape[0] holding A (and right-hand sides b).

        Args:
            A: [n, n] symmetric matrix in the caller's units (scaled into range here: A_hw = α A).
            b: [n] or [n, k] right-hand sides (RC only); each column is scaled into the DAC range separately,
                b_hw = β_j b_j, β_j = input_full_scale_v / max|b_j|, then quantized with ``dac_bits``.
            generator: randomness of stochastic rounding (the tolerance draws do not use it).
            rounding: how the coupling and b DACs round: ``"nearest"`` or ``"stochastic"`` (randomized).
            kappa0: noise level (V²) for this device; None = the profile's.
            instance_seed: seed of the per-device tolerance and offset draws (default ``seeds[0]``): the same
                seed and n give the same physical device. A profile that stands for one tile of a chip
                (:func:`thermotrain.models._tiles.on_tile`) draws its parts for the tile's full size and a
                matrix of n cells uses the first n cells' parts, so every block loaded on that tile meets the
                same parts whatever its size.
            min_eigenvalue: a lower bound of λ_min(A) the caller relies on (caller's units, e.g. the damping):
                the loaded matrix must keep at least half of it after quantization, else
                :class:`~thermotrain.UnloadableMatrixError` names the extra damping that restores it (its
                inverse would otherwise exceed the caller's bound 1/λ_min along the lost directions).
            deviations: the device's drawn element values (:class:`ElementDeviations`) instead of the
                profile's own draw (``instance_seed`` and the tolerance statistics are then unused): the
                instance of a known board.
        Returns:
            :class:`DeviceInstance` in A's dtype and device. Cost O(n²) (plus O(n³) for RLC's 𝐂⁻¹, and for RC
            with the amplifiers' lag: the inverse capacitance matrix and two dense products).
        """
        return self._instantiate(
            A,
            b,
            generator=generator,
            rounding=rounding,
            kappa0=kappa0,
            instance_seed=instance_seed,
            min_eigenvalue=min_eigenvalue,
            deviations=deviations,
            factored=False,
        )

    def instantiate_factored(
        self,
        A: Tensor,
        b: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        kappa0: float | None = None,
    ) -> FactoredRCDevice:
        """The same device as :meth:`instantiate` (same quantization, draws, checks and right-hand-side load, its
        defaults otherwise), RC family only, with its drift kept as factors, M = -f K G_eff, instead of one dense
        matrix, and only the diagonal of its diffusion: :class:`FactoredRCDevice`. For a wide device used
        through matrix-vector products (TNGD on a profile holding the whole GGN: Krylov on M), this skips the
        two dense n³ products :meth:`instantiate` pays (K G_eff and K diag(g²) Kᵀ; ≈ 4n³ flops of its ≈ 5n³
        with the amplifiers' lag). Raises CircuitError for an RLC profile."""
        if self.family != "rc":
            raise CircuitError(
                "instantiate_factored is for RC profiles (an RLC array's drift has no K·G form); use instantiate."
            )
        out = self._instantiate(
            A,
            b,
            generator=generator,
            rounding="nearest",
            kappa0=kappa0,
            instance_seed=None,
            min_eigenvalue=0.0,
            deviations=None,
            factored=True,
        )
        assert isinstance(out, FactoredRCDevice)
        return out

    def _instantiate(
        self,
        A: Tensor,
        b: Tensor | None,
        *,
        generator: torch.Generator | None,
        rounding: Literal["nearest", "stochastic"],
        kappa0: float | None,
        instance_seed: int | None,
        min_eigenvalue: float,
        deviations: ElementDeviations | None,
        factored: bool,
    ) -> DeviceInstance | FactoredRCDevice:
        """:meth:`instantiate` (``factored=False``) or :meth:`instantiate_factored`."""
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise CircuitError(f"A must be a square [n, n] matrix; got shape {tuple(A.shape)}.")
        n, dtype, dev = A.shape[0], A.dtype, A.device
        cs, fit = self.component_stats, self.fitted
        k0 = self.kappa0 if kappa0 is None else float(kappa0)
        amax = float(A.abs().max())
        if not amax > 0:
            raise CircuitError("A is all zeros; nothing to load.")
        alpha = float(cs["coupling_full_scale"]) / amax
        bits = cs["coupling_bits"]  # magnitude bits; the sign is set by routing, so one more quantizer bit
        A_hw = Quantizer(
            None if bits is None else bits + 1, float(cs["coupling_full_scale"])
        ).quantize_symmetric(alpha * A, rounding=rounding, generator=generator)
        _check_loaded_pd(A_hw, alpha, bits, min_eigenvalue)
        seed = self.seeds[0] if instance_seed is None else int(instance_seed)
        g = torch.Generator().manual_seed(seed)
        m = max(n, getattr(self, "_tile_cells", 0))  # a tile's parts are drawn for the whole tile

        def _draw(*shape: int) -> Tensor:
            x = torch.randn(tuple(m for _ in shape), generator=g, dtype=torch.float64)
            return x[tuple(slice(0, k) for k in shape)].to(dtype=dtype, device=dev)

        eps_el, eps_c, eps_off = _draw(n, n), _draw(n), _draw(n)
        # drawn after the earlier ones, so a seed keeps the draws it made before these statistics existed
        eps_g, eps_r, eps_l = _draw(n), _draw(n), _draw(n)
        tol_el, tol_c = float(cs["tolerance"]), float(cs["capacitor_tolerance"])
        off_v, tol_g = float(cs["opamp_offset_v"]), float(cs["noise_gain_mismatch"])
        # the netlist draws every R, C, L with one tolerance: the RLC loop resistor and inductor too
        tol_r = tol_el
        if deviations is not None:  # the device's own parts: eps * sigma := the given deviation
            deviations.check(n, self.family)

            def _t(x: Tensor | None, shape: tuple[int, ...]) -> Tensor:
                return (
                    torch.zeros(shape, dtype=dtype, device=dev)
                    if x is None
                    else x.to(dtype=dtype, device=dev)
                )

            eps_el, eps_c = _t(deviations.coupling, (n, n)), _t(deviations.capacitor, (n,))
            eps_off = _t(deviations.offset_v, (n,))
            eps_g, eps_r = _t(deviations.noise_gain, (n,)), _t(deviations.series_resistance, (n,))
            eps_l = _t(deviations.inductance, (n,))
            tol_el = tol_c = off_v = tol_g = tol_r = 1.0
        noise_gain = 1 + tol_g * eps_g  # each channel's noise amplitude relative to the nominal level
        f, s, delta = float(fit["drift_scale"]), float(fit["noise_scale"]), float(fit["diag_shift"])
        eye = torch.eye(n, dtype=dtype, device=dev)

        b_hw = beta = None
        if b is not None:
            b_hw, beta = self.load_rhs(b, n, rounding=rounding, generator=generator)

        if self.family == "rc":
            G = A_hw * (1 + tol_el * eps_el)
            a0 = cs["opamp_gain"]
            inv_a0 = 0.0 if a0 is None else 1.0 / float(a0)
            c = (1 + tol_c * eps_c) * (1 + inv_a0)
            gsum = G.abs().sum(dim=1) + 1.0
            G_eff = G + torch.diag(gsum * inv_a0 + delta)
            # the device as drawn (tolerances, finite gain, the fitted diagonal shift) must be stable too: with
            # sym(G_eff) ≻ 0 every eigenvalue of K·G_eff has a positive real part (K⁻¹ is a Lyapunov matrix)
            _check_loaded_pd(G_eff, alpha, bits, min_eigenvalue, what="drawn")
            gbw = cs["opamp_gbw_hz"]
            if gbw is None:
                K = 1.0 / c  # diagonal, as a vector
            else:
                K = torch.linalg.inv(amplifier_lag_capacitance(c, G, float(gbw) * self.tau_s))
            offset_current = gsum * off_v * eps_off
            drive = offset_current if b_hw is None else b_hw + offset_current
            input_gain = f * K
            u = apply_input_gain(input_gain, drive)
            KS = K * noise_gain  # scales column j (the cell whose noise it carries) by its channel gain
            if factored:
                return FactoredRCDevice(
                    K=K,
                    G_eff=G_eff,
                    f=f,
                    u=u,
                    diffusion_diag=2.0 * k0 * s * f * (KS**2 if K.ndim == 1 else (KS**2).sum(dim=1)),
                    matrix_scale=alpha,
                    input_scale=beta,
                    readout=self.readout_chain(),
                    kappa0=k0,
                )
            M = -f * K[:, None] * G_eff if K.ndim == 1 else -f * K @ G_eff
            D = 2.0 * k0 * s * f * (torch.diag(KS**2) if K.ndim == 1 else KS @ KS.mT)
            observe = eye
        else:
            off = A_hw - torch.diag(torch.diagonal(A_hw))
            if bool((off > 0).any()):
                i, j = (int(v) for v in torch.nonzero(off > 0)[0])
                raise CircuitError(
                    f"A[{i},{j}] = {float(A[i, j]):.4g} > 0 cannot be loaded into an RLC resonator array: its "
                    "couplings are passive capacitors, so the Maxwell capacitance matrix has off-diagonals <= 0. "
                    "Use an 'rc' profile (signed crossbar) for this matrix, e.g. --backend rc8."
                )
            c0, L, R = (float(self.circuit[k]) for k in ("C_f", "L_h", "R_ohm"))
            sym = eps_el if deviations is not None else torch.triu(eps_el) + torch.triu(eps_el, diagonal=1).mT
            # each coupling capacitor's switch puts switch_capacitance_f on both of its nodes
            switches = ((A_hw != 0) & (eye == 0)).sum(dim=1).to(dtype)
            node_c = float(cs["parasitic_capacitance_f"]) + float(cs["switch_capacitance_f"]) * switches
            # the Maxwell matrix of the cell and coupling capacitors
            Cparts = c0 * (A_hw * (1 + tol_el * sym))
            Creal = Cparts + torch.diag(node_c)
            r_scale = 1 + tol_r * eps_r
            if deviations is None:  # the generator's current flows through the drawn series resistor
                noise_gain = noise_gain * r_scale
            M, D = rlc_drift_diffusion(
                torch.linalg.inv(Creal),
                L=L,
                R=R,
                c0=c0,
                kappa0=k0,
                noise_scale=s,
                diag_shift=delta,
                tau=self.tau_s * f,
                noise_injection=self.circuit["noise_injection"],
                resistance_scale=r_scale,
                inductance_scale=1 + tol_r * eps_l,
                noise_gain=noise_gain,
                **rlc_board_terms(cs, Cparts),
            )
            u = torch.zeros(M.shape[0], dtype=dtype, device=dev)
            observe = torch.cat([eye, torch.zeros(n, M.shape[0] - n, dtype=dtype, device=dev)], dim=1)
            input_gain = None
        return DeviceInstance(
            sde=LinearSDE(M, 0.5 * (D + D.T), u),
            observe=observe,
            matrix_scale=alpha,
            input_scale=beta,
            A_loaded=A_hw,
            b_loaded=b_hw,
            readout=self.readout_chain(),
            kappa0=k0,
            input_gain=input_gain,
        )

    def load_rhs(
        self,
        b: Tensor,
        n: int,
        *,
        rounding: Literal["nearest", "stochastic"] = "nearest",
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The right-hand sides as the b DACs load them (RC only): each column of ``b`` [n] / [n, k] scaled
        to the DAC's full scale, b_hw = β_j b_j with β_j = input_full_scale_v / max|b_j|, then quantized with
        ``dac_bits``. Returns (b_hw [k, n] in V, β [k]); a batch [..., n, k] (several tiles' right-hand sides)
        gives ([..., k, n], [..., k]). :meth:`instantiate` loads b through this."""
        if self.family == "rlc":
            raise CircuitError(
                "An RLC resonator array reads A⁻¹ from the voltage covariance only; it cannot solve A x = b "
                "(its DC point is V = R b). Use inverse(...) or an 'rc' profile for solves."
            )
        bb = b[:, None] if b.ndim == 1 else b
        if bb.shape[-2] != n:
            raise CircuitError(f"b has {bb.shape[-2]} rows; A is {n}x{n}.")
        bmax = bb.abs().amax(dim=-2)
        fs_b = float(self.component_stats["input_full_scale_v"])
        beta = torch.where(bmax > 0, fs_b / bmax.clamp_min(1e-300), torch.ones_like(bmax))
        dac = Quantizer(self.dac_bits, fs_b)
        return dac((bb * beta[..., None, :]).mT, rounding=rounding, generator=generator), beta  # [k, n], [k]


def rlc_drift_diffusion(
    Cinv: Tensor,
    *,
    L: float,
    R: float,
    c0: float,
    kappa0: float,
    noise_scale: float = 1.0,
    diag_shift: float = 0.0,
    tau: float = 1.0,
    noise_injection: str = "series",
    resistance_scale: Tensor | None = None,
    inductance_scale: Tensor | None = None,
    noise_gain: Tensor | None = None,
    noise_bandwidth_hz: float | None = None,
    inductor_capacitance: float = 0.0,
    inductor_resistance: float = 0.0,
    esr_matrix: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Drift M and diffusion D (per unit of ``tau``, s) of the RLC resonator array: the one statement of its
    physics (profiles build devices with it; calibration fits it). States (V, I_L), then U (with
    ``inductor_capacitance``), then z (with ``noise_bandwidth_hz``), n each:

        𝐂 dV/dt = -I_L + [node] g η,   L dI_L/dt = V - R (1 + δ) I_L + [series] R g η

    with ``Cinv`` = 𝐂⁻¹ [n, n] (1/F), L (H), R (Ω: the loop's resistance, the inductor's DC resistance
    ``inductor_resistance`` r_L included), δ = ``diag_shift``. η is the generator's current, of two-sided
    PSD q = 2 κ0 s c0 / R_s (A²/Hz; R_s = R - r_L the series resistor it is set for; κ0 in V², s =
    ``noise_scale``, c0 the unit capacitance, F), injected with ``noise_injection`` "series" across each
    series resistor (a voltage R_s g η in the inductor branch: Boltzmann, Cov V = κ0 c0 𝐂⁻¹ · s R_s / R, the
    noiseless r_L damping without adding noise) or "node" as a current into each node. Per cell (a drawn
    device): ``resistance_scale`` r_i and ``inductance_scale`` l_i multiply R and L (damping R r_i / (L l_i)),
    ``noise_gain`` g_i the generator's amplitude; None = 1.

    Board parts, each exact for the netlist's block or first order where said:

    - ``noise_bandwidth_hz`` f_g: the generator's first-order filter, dz/dt = ω_g (ξ - z), ω_g = 2π f_g; η = z
      (one state per cell, A) and ξ is white with PSD q. As f_g → ∞ this is the white model.
    - ``inductor_capacitance`` C_L (F): the inductor's self-capacitance across it (from the node to the top of
      the series resistor): the voltage U across the inductor (and r_L) is a state, C_L dU/dt = i_CL with
      i_CL = (V - U - [series] R_s g η) / (R_s r (1 + δ)) - I_L, L dI_L/dt = U - r_L r (1 + δ) I_L,
      𝐂 dV/dt = -I_L - i_CL [+ node g η]. As C_L → 0 this is the model above.
    - ``esr_matrix`` W [n, n] (F·s = F²·Ω): every capacitor k's series resistance r_k (ESR, plus a coupling
      switch's on-resistance) as the stamp Σ_k r_k C_k² of its terminals. A capacitor of admittance
      s C / (1 + s r C) ≈ s C - s² r C² turns 𝐂 dV/dt = F(x) into 𝐂 dV/dt = F + W 𝐂⁻¹ dF/dt: to first order
      in ω r C (about 0.005 on the rlc8 board), the V rows gain 𝐂⁻¹ W times the time derivative of their own
      right-hand side, drift and noise.

    Returns ([k n, k n], [k n, k n]) (k = 2, 3 or 4) in Cinv's dtype and device."""
    n = Cinv.shape[0]
    eye = torch.eye(n, dtype=Cinv.dtype, device=Cinv.device)
    ones = torch.ones(n, dtype=Cinv.dtype, device=Cinv.device)
    r = ones if resistance_scale is None else resistance_scale.to(ones)
    inv_l = 1.0 / (L * (ones if inductance_scale is None else inductance_scale.to(ones)))
    g = ones if noise_gain is None else noise_gain.to(ones)
    r_s = R - float(inductor_resistance)  # the series resistor the generator's level is set for
    q = 2 * kappa0 * noise_scale * c0 / r_s
    series = noise_injection == "series"
    r_d = R * r * (1 + diag_shift)  # the loop's damping resistance
    has_u, has_z = inductor_capacitance > 0, noise_bandwidth_hz is not None
    iv, ii = slice(0, n), slice(n, 2 * n)
    iu = slice(2 * n, 3 * n) if has_u else None
    iz = slice((3 if has_u else 2) * n, (4 if has_u else 3) * n) if has_z else None
    size = (2 + has_u + has_z) * n
    M = torch.zeros(size, size, dtype=Cinv.dtype, device=Cinv.device)  # SI (1/s)
    inj = torch.zeros(size, n, dtype=Cinv.dtype, device=Cinv.device)  # how η enters each state's rate
    if has_u:
        # C_L dU/dt = (V - U - R_s g η)/r_sd - I;  L dI/dt = U - r_L I;  𝐂 dV/dt = -(V - U - R_s g η)/r_sd
        cl = float(inductor_capacitance)
        r_sd = r_d * (r_s / R)  # the series resistor's share of the damping
        M[iv, iv], M[iv, iu] = -Cinv / r_sd[None, :], Cinv / r_sd[None, :]
        M[iu, iv], M[iu, iu], M[iu, ii] = torch.diag(1 / (cl * r_sd)), -torch.diag(1 / (cl * r_sd)), -eye / cl
        M[ii, iu], M[ii, ii] = torch.diag(inv_l), -torch.diag((r_d - r_sd) * inv_l)
        if series:
            inj[iv] = Cinv * (r_s * g / r_sd)[None, :]
            inj[iu] = -torch.diag(r_s * g / (cl * r_sd))
    else:
        M[iv, ii] = -Cinv
        M[ii, iv], M[ii, ii] = torch.diag(inv_l), -torch.diag(r_d * inv_l)
        if series:
            inj[ii] = torch.diag(r_s * g * inv_l)
    if not series:
        inj[iv] = inj[iv] + Cinv * g[None, :]
    if has_z:
        w = 2 * math.pi * float(noise_bandwidth_hz)
        M[:, iz] = M[:, iz] + inj
        M[iz, iz] = -w * eye
        B = torch.zeros(size, n, dtype=Cinv.dtype, device=Cinv.device)
        B[iz] = w * eye
    else:
        B = inj
    if esr_matrix is not None:  # 𝐂 dV = F dt  ->  dV += 𝐂⁻¹ W 𝐂⁻¹ dF = 𝐂⁻¹ W d(dV/dt's own rows)
        K = Cinv @ esr_matrix.to(Cinv)
        MV, BV = M[iv].clone(), B[iv].clone()
        M[iv] = MV + K @ (MV @ M)
        B[iv] = BV + K @ (MV @ B)
    return tau * M, tau * q * (B @ B.mT)


def rlc_board_terms(cs: Mapping[str, Any], Cm: Tensor) -> dict[str, Any]:
    """The keywords of :func:`rlc_drift_diffusion` for the board parts a profile's component statistics
    ``cs`` name (generator filter, inductor self-capacitance and DC resistance, ESR and switch resistance of
    the capacitors of the Maxwell matrix ``Cm``, F)."""
    return {
        "noise_bandwidth_hz": cs["noise_bandwidth_hz"],
        "inductor_capacitance": float(cs["inductor_capacitance_f"]),
        "inductor_resistance": float(cs["inductor_resistance_ohm"]),
        "esr_matrix": esr_stamp(Cm, float(cs["capacitor_esr_ohm"]), float(cs["switch_resistance_ohm"])),
    }


def esr_stamp(Cm: Tensor, esr: float, switch: float) -> Tensor | None:
    """W = Σ_k r_k C_k² stamped on its terminals (F·s), :func:`rlc_drift_diffusion`'s ``esr_matrix``, for the
    capacitors of the Maxwell matrix ``Cm`` (F): cell i's capacitor to ground C_i = Σ_j Cm_ij with series
    resistance ``esr``, coupling C_ij = -Cm_ij with ``esr`` + ``switch`` (Ω). None when both are 0."""
    if esr == 0 and switch == 0:
        return None
    off = -(Cm - torch.diag(torch.diagonal(Cm)))
    cell = Cm.sum(dim=1)
    w_off = (esr + switch) * off**2
    return torch.diag(esr * cell**2 + w_off.sum(dim=1)) - w_off


def amplifier_lag_capacitance(c: Tensor, G: Tensor, gbw_tau: float) -> Tensor:
    """The RC array's capacitance matrix (units of C) with its amplifiers' first-order lag: an op-amp of
    gain-bandwidth ω = 2π·GBW holds its summing node at v₋ = −(1/A₀ + (1/ω) d/dt) V_out, so the integrator of
    row i gains the capacitance g_i/ω (g_i = Σ_j |G_ij| + 1, its noise-gain conductance), and an inverter
    (gain −1, noise gain 2) feeding a negative entry G_ij delivers −V_j + (2/ω) dV_j/dt, a coupling
    capacitance 2|G_ij|/ω. In units of C (time in τ = R C): 𝐂 = diag(c_i + g_i/(ωτ)) + (2/(ωτ))|G|⊙[G < 0].
    The second-order terms (C/ω d²V/dt², the second pole) are dropped: against the full MNA model of rc8 at
    1 MHz GBW this leaves 1e-4 of the covariance (N = 8–32), where leaving the lag out misses 4.5–7 %.
    ``gbw_tau`` = GBW (Hz) × τ (s)."""
    lag = 1.0 / (2.0 * math.pi * gbw_tau)
    gsum = G.abs().sum(dim=1) + 1.0
    return torch.diag(c + gsum * lag) + (2.0 * lag) * G.abs() * (G < 0)


def apply_input_gain(gain: Tensor, drive: Tensor) -> Tensor:
    """u = g ⊙ drive (``gain`` [n], a diagonal) or g @ drive (``gain`` [n, n]) for ``drive`` [n] or [k, n]."""
    if gain.ndim == 1:
        return gain * drive
    return drive @ gain.mT


def _check_loaded_pd(
    A_hw: Tensor, alpha: float, bits: int | None, min_eigenvalue: float = 0.0, what: str | None = None
) -> None:
    """Refuse a loaded matrix that is not positive definite: the array's drift −A_hw would be unstable and
    every readout would diverge. Quantization does this when its error (≈ √n·Δ/√3 in spectral norm, Δ the
    coupling step) exceeds the smallest eigenvalue. With ``min_eigenvalue`` μ > 0 (caller's units), also
    refuse a matrix that kept less than μ/2 of it: the extra damping named then restores μ. Cost O(n³/3)
    (one Cholesky)."""
    sym = 0.5 * (A_hw + A_hw.mT).double()
    keep = 0.5 * alpha * max(float(min_eigenvalue), 0.0)
    lam = smallest_eigenvalue_if_indefinite(sym, keep)
    if lam is None:
        return
    cause = "quantization" if what is None else "the drawn parts (tolerances, finite gain, fitted shift)"
    if what is None:
        what = f"{bits}-bit loaded" if bits is not None else "loaded"
    if lam > 0:
        raise UnloadableMatrixError(
            f"the {what} matrix kept a smallest eigenvalue of {lam / alpha:.3g} (the caller's units) of the "
            f"{min_eigenvalue:.3g} it relies on (n = {A_hw.shape[0]}): {cause} moved the bottom of its "
            f"spectrum. Raise the damping by {min_eigenvalue - lam / alpha:.3g}, use more coupling bits, or a "
            "smaller matrix.",
            extra_damping=min_eigenvalue - lam / alpha,
        )
    raise UnloadableMatrixError(
        f"the {what} matrix is not positive definite (smallest eigenvalue {lam:.3g} in units of the coupling "
        f"full scale, n = {A_hw.shape[0]}): the array would be unstable. Raise the damping by more than "
        f"{-lam / alpha + min_eigenvalue:.3g} (the caller's units), use more coupling bits, or a smaller matrix.",
        extra_damping=-lam / alpha + max(float(min_eigenvalue), 0.0),
    )


def _parse_readout(value: Any) -> ReadoutConfig | None:
    """A profile's ``readout`` entry: None, a :class:`ReadoutConfig`, or a JSON object of its fields
    (parsed strictly by :meth:`ReadoutConfig.from_dict`; ProfileError naming the field otherwise)."""
    if value is None or isinstance(value, ReadoutConfig):
        return value
    if not isinstance(value, dict):
        raise _fail(
            f"profile field readout = {_short(value)} must be a JSON object of readout settings "
            '(e.g. {"target_error": 0.3}) or null',
            "fix or remove the readout entry",
        )
    try:
        return ReadoutConfig.from_dict(value, what="profile field readout")
    except (InputError, TypeError) as e:
        text = str(e).rstrip(".").removeprefix("profile field readout: ")
        raise _fail(f"profile field readout: {text}", "fix or remove the readout entry") from None


def _parse_chip(value: Any) -> ChipSpec | None:
    """A profile's ``chip`` entry: None, a :class:`ChipSpec`, or a JSON object with exactly the keys
    ``cells_per_tile`` and ``tiles`` (ints >= 1); ProfileError naming the field otherwise."""
    if value is None or isinstance(value, ChipSpec):
        return value
    fix = "fix or remove the chip entry"
    example = '(e.g. {"cells_per_tile": 64, "tiles": 16})'
    if not isinstance(value, dict):
        raise _fail(f"profile field chip = {_short(value)} must be a JSON object {example} or null", fix)
    known = [f.name for f in fields(ChipSpec)]
    missing = [k for k in known if k not in value]
    unknown = sorted(set(value) - set(known))
    if missing or unknown:
        what = "; ".join(
            p
            for p in (missing and f"missing field(s) {missing}", unknown and f"unknown field(s) {unknown}")
            if p
        )
        raise _fail(f"profile field chip: {what}; known: {known} {example}", fix)
    try:
        return ChipSpec(**value)
    except InputError as e:
        raise _fail(f"profile field chip: {str(e).rstrip('.')}", fix) from None


def _readout_json(config: ReadoutConfig) -> dict[str, Any]:
    """The settings of ``config`` that differ from :class:`ReadoutConfig`'s defaults (what a profile
    writes: the rest follow the library's defaults)."""
    default = ReadoutConfig()
    return {k: v for k, v in config.as_dict().items() if v != getattr(default, k)}


_MAX_N = 256  # cells of a calibration device (the circuits' MAX_CELLS)
_MAX_SEEDS = 100_000
_MAX_CHIP = 1_000_000  # sanity bound on cells per tile and tiles per chip
_OPTIONAL_KEYS = ("readout", "chip")  # top-level keys a profile file may leave out


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _matrix(v: Any, path: str, rows: int, cols: int | None) -> None:
    """A JSON list of ``rows`` lists of ``cols`` finite numbers (``cols`` None: a vector of ``rows``)."""
    want = f"[{rows}]" if cols is None else f"[{rows}, {cols}]"
    if not isinstance(v, list) or len(v) != rows:
        got = f"length {len(v)}" if isinstance(v, list) else type(v).__name__
        raise _fail(f"profile field {path} must be a {want} array of numbers; got {got}")
    for i, row in enumerate(v):
        items = [row] if cols is None else row
        if cols is not None and (not isinstance(row, list) or len(row) != cols):
            got = f"length {len(row)}" if isinstance(row, list) else type(row).__name__
            raise _fail(
                f"profile field {path}[{i}] must be a row of {cols} numbers (shape {want}); got {got}"
            )
        for j, x in enumerate(items):
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                where = f"{path}[{i}]" if cols is None else f"{path}[{i}][{j}]"
                raise _fail(f"profile field {where} = {_short(x)} must be a finite number")


def _check_device(dev: Any, family: str) -> None:
    """``fit.device``: the fitted calibration device, {n, M, D, u, observe} with consistent shapes (state
    dimension n for RC; 2n, 3n or 4n for RLC, by the board states its component statistics name)."""
    if not isinstance(dev, dict):
        raise _fail(f"profile field fit.device must be a JSON object or null; got {type(dev).__name__}")
    _exact_keys(dev, dict.fromkeys(("n", "M", "D", "u", "observe")), "fit.device")
    n = dev["n"]
    if not (_is_int(n) and 1 <= n <= _MAX_N):
        raise _fail(f"profile field fit.device.n = {_short(n)} must be an int in [1, {_MAX_N}]")
    state = n
    if family == "rlc":
        rows = len(dev["M"]) if isinstance(dev["M"], list) else 0
        state = rows if rows in (2 * n, 3 * n, 4 * n) else 2 * n  # the board states, as many as it names
    _matrix(dev["M"], "fit.device.M", state, state)
    _matrix(dev["D"], "fit.device.D", state, state)
    _matrix(dev["u"], "fit.device.u", state, None)
    _matrix(dev["observe"], "fit.device.observe", n, state)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _exact_keys(d: Mapping[str, Any], known: Mapping[str, Any], path: str) -> None:
    missing = sorted(set(known) - set(d))
    if missing:
        raise _fail(f"profile field(s) {', '.join(f'{path}.{k}' for k in missing)} missing")
    extra = sorted(set(d) - set(known))
    if extra:
        raise _fail(
            f"profile field(s) {', '.join(f'{path}.{k}' for k in extra)} unknown to schema {SCHEMA_VERSION}"
        )


def _name_non_finite(text: str, label: str) -> None:
    """Raise ProfileError naming the field that holds NaN/Infinity (the strict parser only says that one
    does). The text is already size-capped; a second, lenient parse is used only to find the field."""
    from thermotrain._safeio import MAX_JSON_DEPTH, json_depth

    message = f"{label} holds NaN or Infinity (not allowed in a profile); {_REGENERATE}."
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ProfileError(message) from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise ProfileError(message)
    try:
        _check_finite(data, "profile")
    except ProfileError as e:
        raise ProfileError(f"{label}: {e}") from None
    raise ProfileError(message)


def save_profile(profile: HardwareProfile, path: str | os.PathLike[str]) -> Path:
    """Write ``profile`` as indented JSON (atomically: a private temporary file in the same folder, then a
    rename; nothing is left behind on failure). Returns the path."""
    from thermotrain._safeio import write_text_atomic

    path = Path(path)
    if path.is_dir():
        raise OutputError(
            f"profile path {path} is a folder; pass a file path such as {path / 'profile.json'}."
        )
    data = asdict(profile)
    data.pop("readout")
    if profile.readout is not None:
        data["readout"] = _readout_json(profile.readout)
    data.pop("chip")
    if profile.chip is not None:
        data["chip"] = {"cells_per_tile": profile.chip.cells_per_tile, "tiles": profile.chip.tiles}
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def load_profile(path: str | os.PathLike[str]) -> HardwareProfile:
    """Read and strictly validate a profile. Any missing or unknown field, wrong ``schema_version``,
    non-finite number, wrong type, or truncated/corrupt JSON raises :class:`thermotrain.ProfileError` naming
    the file, the field and the fix. Loading returns the file's values only; it never changes other settings.
    """
    from thermotrain._safeio import parse_json, read_text

    path = Path(path)
    label = f"hardware profile {path}"
    try:  # a regular file under the "profile" size cap, UTF-8 text (no FIFO, device or binary data)
        text = read_text(path, "profile", what=label)
    except InputError as e:
        if "no such file" in str(e):
            raise ProfileError(f"cannot read hardware profile {path}: no such file; {_REGENERATE}.") from None
        raise ProfileError(f"{str(e).rstrip('.')}; {_REGENERATE}.") from None
    try:  # JSON without NaN/Infinity, nesting depth capped
        data = parse_json(text, label)
    except InputError as e:
        detail = str(e).removeprefix(f"{label}: ").rstrip(".")
        if "not a finite number" in detail:
            _name_non_finite(text, label)  # raises, naming the field
        if detail.startswith("not valid JSON ("):
            detail = detail.removeprefix("not valid JSON (").removesuffix(")")
            raise ProfileError(
                f"{label} is not valid JSON (truncated or corrupt: {detail}); {_REGENERATE}."
            ) from None
        raise ProfileError(f"{label}: {detail}; {_REGENERATE}.") from None
    if not isinstance(data, dict):
        raise ProfileError(f"hardware profile {path} must hold a JSON object; {_REGENERATE}.")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ProfileError(
            f"hardware profile {path} has schema_version {data.get('schema_version')!r}; this thermotrain reads "
            f"{SCHEMA_VERSION}; {_REGENERATE}."
        )
    names = [f.name for f in fields(HardwareProfile)]
    missing = [k for k in names if k not in data and k not in _OPTIONAL_KEYS]
    extra = sorted(set(data) - set(names))
    if missing or extra:
        what = "; ".join(
            p for p in (missing and f"missing field(s) {missing}", extra and f"unknown field(s) {extra}") if p
        )
        raise ProfileError(f"hardware profile {path}: {what}; {_REGENERATE}.")
    try:
        return HardwareProfile(**data)
    except ProfileError as e:
        raise ProfileError(f"hardware profile {path}: {e}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # a shape the checks above did not name
        raise ProfileError(
            f"hardware profile {path} is malformed ({type(e).__name__}: {_short(str(e))}); {_REGENERATE}."
        ) from None
