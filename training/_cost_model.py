"""Per-step cost of digital vs thermodynamic K-FAC and TNGD, from hardware constants and measured flop rates.

Per K-FAC layer with both factors of size n, batch b, inverse interval r (steps):

    digital:  t_d = [2·2bn² (factors) + 2·n³/r (Cholesky inverses) + 2·2n³ (apply)] / F_digital
    thermo (solve mode, mean readout, one device per factor, one right-hand side at a time):
              t_th = 2bn²·2/F + 2·(n²/2 + n·n)·w/L  (load factor + n right-hand sides; w bits per value, link L)
                     + 2·n·T_solve·τ  (n right-hand sides, T_solve = κ·ln(1/ε) τ each)
                     + 2·n·n·w/L  (read n values per solve)
    thermo (inverse mode, covariance readout):
              t_th = 2bn²·2/F + [2·(n²/2)·w/L + 2·T_cov·τ + 2·n·(T_cov/dt)·w/L]/r + 2·2n³/F
              with T_cov = 2κ/ε² τ (relative error ε of the slowest mode).

TNGD per step (N parameters, output d_z): digital O(b d_z N) for J, H_L, Jᵀ products (measured as ~3 forward
passes), load b·d_z(b·d_z + 2N) values, run t τ, read N values.

The condition number κ of the damped factor sets the analog time; the seeds claim an O(n²κ²) thermodynamic
per-layer cost against O(n³) digital, i.e. an advantage that grows with n at fixed κ.

**On tiles** the model does not restate the device's schedule: :func:`tiled_factor_cost` runs
:func:`thermotrain.models.tiled_inverse` as a dry run (``simulate=False``: the same blocks, rounds, per-round
readout plans and counts the simulator uses, no draws), and :func:`device_seconds` turns any such count — a
dry run's, a simulated :class:`~thermotrain.models.TiledResult`'s or a training run's
:class:`~thermotrain.training.SolverStats` — into seconds with one formula: chip wall time × τ + (values
loaded + read) × bits / link + digital flops between device calls / flop rate. A predicted speed-up and a
simulated run therefore count the same tiles, loads, reads and analog time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "HardwareConstants",
    "device_seconds",
    "kfac_layer_costs",
    "measure_flops",
    "tiled_factor_cost",
]


@dataclass(frozen=True)
class HardwareConstants:
    """Device constants of the cost model.

    Attributes:
        tau_s: device time constant τ (s); paper: 1 µs.
        value_bits: bits per loaded or read value (DAC/ADC resolution); paper: 16.
        link_bps: host↔device bandwidth (bit/s); paper: 50 Gb/s.
        sample_dt_tau: covariance-readout sample interval (τ).
    """

    tau_s: float = 1e-6
    value_bits: int = 16
    link_bps: float = 50e9
    sample_dt_tau: float = 1.0

    @classmethod
    def from_profile(cls, profile: Any) -> HardwareConstants:
        """Read τ, ADC bits and ADC rate (as the sample interval) from a ``HardwareProfile``."""
        bits = profile.adc_bits or profile.dac_bits or 16
        dt = profile.sample_interval_tau if profile.adc_rate_hz else 1.0
        return cls(tau_s=float(profile.tau_s), value_bits=int(bits), sample_dt_tau=float(dt))


def measure_flops(n: int = 512, repeats: int = 3) -> dict[str, float]:
    """Measured float32 rates on this machine (flop/s): matmul (2n³ flops) and Cholesky inverse (n³ flops)."""
    a = torch.randn(n, n)
    spd = a @ a.T / n + torch.eye(n)
    best_mm = best_inv = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ a
        best_mm = min(best_mm, time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch.cholesky_inverse(torch.linalg.cholesky(spd))
        best_inv = min(best_inv, time.perf_counter() - t0)
    return {"matmul_flops": 2 * n**3 / best_mm, "inverse_flops": n**3 / best_inv}


def kfac_layer_costs(
    n: int,
    batch: int,
    kappa: float,
    hw: HardwareConstants,
    rates: dict[str, float],
    inv_interval: int = 10,
    rel_error: float = 0.05,
) -> dict[str, float]:
    """Predicted per-step seconds of one K-FAC layer (both factors n×n): digital, thermo solve, thermo inverse."""
    mm, inv = rates["matmul_flops"], rates["inverse_flops"]
    factors = 2 * 2 * batch * n**2 / mm
    apply = 2 * 2 * n**3 / mm
    digital = factors + 2 * n**3 / inv / inv_interval + apply
    io = hw.value_bits / hw.link_bps
    t_solve = kappa * math.log(1 / rel_error)
    solve = factors + 2 * (n * n / 2 + n * n) * io + 2 * n * t_solve * hw.tau_s + 2 * n * n * io
    t_cov = 2 * kappa / rel_error**2
    samples = t_cov / hw.sample_dt_tau
    inverse = (
        factors + apply + (2 * (n * n / 2) * io + 2 * t_cov * hw.tau_s + 2 * n * samples * io) / inv_interval
    )
    return {
        "n": n,
        "kappa": kappa,
        "digital_s": digital,
        "thermo_solve_s": solve,
        "thermo_inverse_s": inverse,
        "analog_solve_s": 2 * n * t_solve * hw.tau_s,
        "analog_inverse_s": 2 * t_cov * hw.tau_s / inv_interval,
    }


def device_seconds(
    counts: Any, hw: HardwareConstants, rates: dict[str, float] | None = None
) -> dict[str, float]:
    """Modelled seconds of what a device did, from its counts (one formula for predictions and runs).

    Args:
        counts: anything with ``wall_time_tau`` (the chip's wall time: per round its longest tile), ``values_
            loaded``, ``values_read`` and ``digital_flops`` — a :class:`~thermotrain.models.TiledResult`
            (simulated or a dry run), :class:`~thermotrain.training.SolverStats`, or a dict with those keys.
        hw: τ, bits per value and link bandwidth.
        rates: measured flop rates (:func:`measure_flops`); None: the digital flops are not timed (0 s).
    Returns:
        ``analog_s`` (wall_time_tau · τ), ``io_s`` ((loaded + read) · bits / link), ``digital_s`` (flops
        between device calls / matmul rate) and ``total_s``, in seconds.
    """

    def get(name: str) -> float:
        return float(counts[name] if isinstance(counts, dict) else getattr(counts, name))

    analog = get("wall_time_tau") * hw.tau_s
    io = (get("values_loaded") + get("values_read")) * hw.value_bits / hw.link_bps
    digital = 0.0 if rates is None else get("digital_flops") / rates["matmul_flops"]
    return {"analog_s": analog, "io_s": io, "digital_s": digital, "total_s": analog + io + digital}


def tiled_factor_cost(
    factor: torch.Tensor,
    backend: Any,
    hw: HardwareConstants | None = None,
    *,
    damping: float = 0.0,
    cells_per_tile: int | None = None,
    config: Any = None,
) -> dict[str, Any]:
    """Predicted device cost of one K-FAC factor inverse on a profile's tiles, by the simulator's accounting.

    The damped factor is scaled as :class:`~thermotrain.training.AnalogSolver` scales it (by the Gershgorin
    bound of λ_max) and passed to :func:`thermotrain.models.tiled_inverse` with ``simulate=False``.

    Args:
        factor: [n, n] symmetric PSD Kronecker factor (undamped).
        backend: a :class:`~thermotrain.models.HardwareProfile` (its chip, unless ``cells_per_tile``) or
            ``"ideal"`` with ``cells_per_tile``.
        hw: device constants (default: the profile's, :meth:`HardwareConstants.from_profile`).
        damping: λ added to the diagonal (also the floor of λ_min for the readout plan).
        cells_per_tile: tile size (None: the profile's chip).
        config: a :class:`~thermotrain.models.ReadoutConfig` (None: the profile's recommendation).
    Returns:
        the :class:`~thermotrain.models.TiledResult` counts (blocks, rounds, analog and wall time in τ, values
        loaded/read) and :func:`device_seconds` of them.
    """
    from thermotrain.models import tiled_inverse
    from thermotrain.training._solvers import gershgorin_scale

    M = factor + damping * torch.eye(factor.shape[0], dtype=factor.dtype)
    s = gershgorin_scale(M)
    r = tiled_inverse(
        M * s,
        backend=backend,
        cells_per_tile=cells_per_tile,
        config=config,
        lambda_floor=damping * s,
        simulate=False,
    )
    if hw is None:
        hw = HardwareConstants.from_profile(backend) if not isinstance(backend, str) else HardwareConstants()
    out: dict[str, Any] = {
        "n": factor.shape[0],
        "blocks": r.blocks,
        "tiles_used": r.tiles_used,
        "rounds": r.rounds,
        "analog_time_tau": r.analog_time_tau,
        "wall_time_tau": r.wall_time_tau,
        "values_loaded": r.values_loaded,
        "values_read": r.values_read,
    }
    return out | device_seconds(r, hw)
