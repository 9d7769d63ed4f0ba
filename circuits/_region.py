"""Where the linear theory holds: amplifier output swing and slew rate against what the model predicts.

Swing and slew are nonlinear (the netlist clamps the output stage and the current into the dominant-pole
capacitor, :func:`thermotrain.circuits.opamp_elements`); the model is the linear region. For every
amplifier the stationary law of its output-stage node v (Gaussian, mean mu, sd sigma from the theory,
sampled-noise exact) gives the bound |mu| + k sigma; the linear theory holds when that bound stays inside
the swing. The slew demand is the same bound for dv/dt = (V(x) - V(y)) / (R_p C_p), the current into the
dominant-pole capacitor over its capacitance (the drift of the pole state), against the slew rate.
With k = 4 a Gaussian output passes the bound in 6e-5 of the samples.

1/f noise: the theory carries the white part of each amplifier noise density only. The 1/f part
(density S_w f_c/|f| below the corner f_c) adds, through a low-pass of time constant tau, a variance of
about 4 f_c tau ln(T / (2 pi tau)) times the white part's (observed time T >> tau): :func:`flicker_error_bound`
scales the amplifier-noise share of the covariance by that factor. The netlist carries the white part.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from thermotrain._errors import CircuitError
from thermotrain.circuits._arrays import amplifier_nodes
from thermotrain.circuits._elements import Circuit, NoiseCurrent
from thermotrain.circuits._mna import linear_sde
from thermotrain.circuits._nonideal import OpAmp
from thermotrain.circuits._theory import Theory

PHASES = (0.0, 0.5)  # the output grid of validation (NT/2)


@dataclass(frozen=True)
class LinearRegion:
    """The predicted amplifier excursions (see module docs). Arrays are per amplifier, in ``amplifiers``
    order; ``nodes`` are the clamped nodes (the ones to probe for ``clipped_fraction``)."""

    k: float
    amplifiers: tuple[str, ...]
    nodes: tuple[str, ...]
    swing_v: float | None
    bound_v: np.ndarray  # |mean| + k sd of each output-stage node (V)
    slew_rate_v_per_s: float | None
    slew_demand_v_per_s: np.ndarray  # |mean| + k sd of each dominant-pole slope (V/s); nan without a pole

    @property
    def within_swing(self) -> bool:
        return self.swing_v is None or bool(np.all(self.bound_v <= self.swing_v))

    @property
    def within_slew(self) -> bool:
        d = self.slew_demand_v_per_s
        return self.slew_rate_v_per_s is None or bool(np.all(d[np.isfinite(d)] <= self.slew_rate_v_per_s))

    @property
    def ok(self) -> bool:
        return self.within_swing and self.within_slew

    def describe(self) -> str:
        if not self.amplifiers:
            return "no amplifiers: the linear theory holds everywhere (passive array)"
        worst = int(np.argmax(self.bound_v))
        sw = "unlimited" if self.swing_v is None else f"{self.swing_v:g} V"
        line = (
            f"amplifier outputs: |mean| + {self.k:g} sd up to {self.bound_v[worst]:.3g} V "
            f"({self.amplifiers[worst]}) against a swing of {sw}: "
            f"{'inside' if self.within_swing else 'OUTSIDE'} the linear region"
        )
        d = self.slew_demand_v_per_s
        if np.any(np.isfinite(d)):
            sr = "unlimited" if self.slew_rate_v_per_s is None else f"{self.slew_rate_v_per_s:.3g} V/s"
            line += (
                f"; slew demand up to {np.nanmax(d):.3g} V/s against {sr}: "
                f"{'inside' if self.within_slew else 'OUTSIDE'}"
            )
        return line

    def to_dict(self) -> dict:
        return {
            "k_sigma": self.k,
            "amplifiers": list(self.amplifiers),
            "nodes": list(self.nodes),
            "opamp_swing_v": self.swing_v,
            "bound_v": [float(x) for x in self.bound_v],
            "within_swing": self.within_swing,
            "opamp_slew_v_per_s": self.slew_rate_v_per_s,
            "slew_demand_v_per_s": [
                None if not math.isfinite(x) else float(x) for x in self.slew_demand_v_per_s
            ],
            "within_slew": self.within_slew,
        }


def _element(circuit: Circuit, name: str):
    return next((e for e in circuit.elements if e.name == name), None)


def linear_region(circuit: Circuit, opamp: OpAmp, k: float = 4.0) -> LinearRegion:
    """Predicted |v| bound (|mean| + k sd, theory covariance with sampled noise at the validation phases)
    of every amplifier's output-stage node, and the slew demand of every dominant pole, against
    ``opamp.output_swing`` and ``opamp.slew_rate`` (the amplifier model ``circuit`` was built with:
    ``spec.nonideal.opamp``). Cost: one Lyapunov solve of the circuit."""
    if not (math.isfinite(k) and k > 0):
        raise CircuitError(f"k = {k!r} (standard deviations) must be positive.")
    amps = amplifier_nodes(circuit)
    names = tuple(amps)
    if not names:
        return LinearRegion(k, (), (), opamp.output_swing, np.zeros(0), opamp.slew_rate, np.zeros(0))
    nodes = tuple(amps[a] for a in names)
    poles = [a for a in names if _element(circuit, f"{a}_cp") is not None]
    extra = [n for a in poles for n in (f"{a}_x", f"{a}_y")]
    p = len(nodes)
    try:
        probe = dataclasses.replace(circuit, outputs=(*nodes, *extra))
        th = Theory(linear_sde(probe), probe.noise_interval)
    except CircuitError:  # white noise reaches a gain-stage output (no capacitor there): slope unbounded
        poles = []
        probe = dataclasses.replace(circuit, outputs=nodes)
        th = Theory(linear_sde(probe), probe.noise_interval)
    mu, cov = th.mean, th.covariance(PHASES)
    bound = np.abs(mu[:p]) + k * np.sqrt(np.clip(np.diag(cov)[:p], 0, None))
    demand = np.full(p, np.nan)  # nan: no pole, or white noise at the gain stage (slew demand not bounded)
    for j, a in enumerate(poles):
        ix, iy = p + 2 * j, p + 2 * j + 1
        var = cov[ix, ix] + cov[iy, iy] - 2 * cov[ix, iy]
        rc = _element(circuit, f"{a}_rp").ohms * _element(circuit, f"{a}_cp").farads
        demand[names.index(a)] = (abs(mu[ix] - mu[iy]) + k * math.sqrt(max(var, 0.0))) / rc
    return LinearRegion(k, names, nodes, opamp.output_swing, bound, opamp.slew_rate, demand)


def clipped_fraction(values: np.ndarray, swing: float | None, margin: float = 0.0) -> float:
    """Fraction of the time samples (rows of ``values`` [T, P], the clamped amplifier nodes of
    :attr:`LinearRegion.nodes` or ``amplifier_nodes(circuit)``) at which any amplifier output is at or
    beyond ``swing - margin`` (V). 0 when the swing is unlimited (None)."""
    v = np.asarray(values, float)
    if swing is None or v.size == 0:
        return 0.0
    if v.ndim == 1:
        v = v[:, None]
    return float(np.mean(np.any(np.abs(v) >= swing - margin, axis=1)))


def flicker_error_bound(circuit: Circuit, opamp: OpAmp, total_time: float) -> float:
    """Upper estimate of the relative covariance error (Frobenius) the theory makes by leaving out the
    amplifiers' 1/f noise: (amplifier-noise share of the output covariance) x 4 f_c tau ln(T/(2 pi tau)),
    tau the slowest relaxation time, T = ``total_time`` (s) the observed time (module docs). 0 without a
    corner or without amplifier noise."""
    if not opamp.noise_corner_hz:
        return 0.0
    amp_src = {
        s.name
        for s in circuit.noise_sources()
        if isinstance(s, NoiseCurrent) and s.name.split("_")[-1] in ("en", "inp", "inn")
    }
    if not amp_src:
        return 0.0
    full = Theory(linear_sde(circuit), circuit.noise_interval)
    quiet = dataclasses.replace(
        circuit,
        elements=tuple(
            dataclasses.replace(e, psd=0.0) if isinstance(e, NoiseCurrent) and e.name not in amp_src else e
            for e in circuit.elements
        ),
    )
    amp_only = Theory(linear_sde(quiet), circuit.noise_interval)
    share = float(np.linalg.norm(amp_only.covariance(PHASES)) / np.linalg.norm(full.covariance(PHASES)))
    tau = full.relaxation_time
    ratio = 4 * opamp.noise_corner_hz * tau * max(math.log(total_time / (2 * math.pi * tau)), 1.0)
    return share * ratio
