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
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["HardwareConstants", "kfac_layer_costs", "measure_flops"]


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
