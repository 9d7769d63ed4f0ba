"""Settings of a set of noisy SPICE runs of one array, shared by validation (``thermotrain.netlists``) and
calibration (``thermotrain.models``). Public as :class:`thermotrain.netlists.SpiceRunSettings`; it lives here,
with no heavy imports, so ``thermotrain.models`` can subclass it without importing sympy or ngspice."""

from __future__ import annotations

from dataclasses import dataclass

from thermotrain._args import check_choice, check_float, check_int, check_seed

__all__ = ["SpiceRunSettings"]


@dataclass(frozen=True, kw_only=True)
class SpiceRunSettings:
    """How a set of noisy SPICE runs of one array is made (shared by :class:`ValidationSettings` and
    :class:`thermotrain.models.CalibrationSettings`; keyword-only).

    Attributes:
        duration_tau: observed time per run (τ of the array, > 0), after the burn-in.
        noise: ``"file"`` (seeded, bit-reproducible) or ``"trnoise"`` (ngspice's own, unseeded).
        seed: tolerance draw and noise seeds (run r uses noise seed 1000·seed + r + 1).
        workers: parallel ngspice processes (None = cores).
        burn_in: time discarded before observing (slowest relaxation times, >= 0).
        engine: ``"shared"`` (libngspice in a worker) or ``"batch"`` (``ngspice -b``).
        timeout: wall-clock limit of each SPICE run (s, > 0).
    """

    duration_tau: float = 2500.0
    noise: str = "file"
    seed: int = 0
    workers: int | None = None
    burn_in: float = 8.0
    engine: str = "shared"
    timeout: float = 1800.0

    def __post_init__(self) -> None:
        """Every field checked where it enters (InputError naming the field, the value and the range)."""
        check_float("duration_tau", self.duration_tau, minimum=0.0, strict_min=True, unit="tau")
        check_choice("noise", self.noise, ("file", "trnoise"))
        check_seed("seed", self.seed)
        if self.workers is not None:
            check_int("workers", self.workers, minimum=1)
        check_float("burn_in", self.burn_in, minimum=0.0, unit="slowest relaxation times")
        check_choice("engine", self.engine, ("shared", "batch"))
        check_float("timeout", self.timeout, minimum=0.0, strict_min=True, unit="s")
