"""Curvature-solver backends: where a second-order optimizer's linear algebra runs.

Every optimizer in :mod:`thermotrain.training` needs one of two operations on a symmetric positive-definite
(SPD) matrix M of size n (a damped Kronecker factor, or a damped GGN):

- ``inverse(M)``  -> M⁻¹                       (thermodynamic: covariance readout, Cov(x) = κ0·M⁻¹)
- ``solve(M, B)`` -> M⁻¹ B for B of shape (n, k) (thermodynamic: mean readout, ⟨x⟩ = M⁻¹ b per column)

:class:`ExactSolver` does them digitally (Cholesky, O(n³) flops, no analog time). :class:`AnalogSolver` sends
them to :func:`thermotrain.models.inverse` / :func:`thermotrain.models.solve` with backend ``"ideal"`` or a
:class:`thermotrain.models.HardwareProfile`; it rescales M so that its largest eigenvalue bound is 1 (the
device's rates are then 1/τ at most; the slowest mode relaxes in κ(M)·τ), and accumulates the analog time (τ)
and the number of values loaded (DAC) and read (ADC) in :class:`SolverStats`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from thermotrain._errors import TrainingError

__all__ = ["AnalogConfig", "AnalogSolver", "CurvatureSolver", "ExactSolver", "SolverStats", "make_solver"]


@dataclass
class SolverStats:
    """Running totals of what a solver did (mutable counters, reset with :meth:`reset`).

    Attributes:
        analog_time_tau: device time spent, in units of τ (the array's time constant).
        values_loaded: matrix and vector entries written through the DAC (count).
        values_read: entries read back through the ADC (count).
        calls: number of inverse/solve calls.
        damping_bumps: device calls the damping guard retried with extra damping (``AnalogConfig.pd_guard``).
        extra_damping_max: the largest extra damping it added, in the units of the unscaled matrix.
    """

    analog_time_tau: float = 0.0
    values_loaded: int = 0
    values_read: int = 0
    calls: int = 0
    damping_bumps: int = 0
    extra_damping_max: float = 0.0

    def reset(self) -> None:
        self.analog_time_tau, self.values_loaded, self.values_read, self.calls = 0.0, 0, 0, 0
        self.damping_bumps, self.extra_damping_max = 0, 0.0

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


class CurvatureSolver(abc.ABC):
    """Inverse / multi-right-hand-side solve of an SPD matrix; concrete subclasses are final.

    ``name`` labels the backend in metrics; ``stats`` accumulates analog time and I/O.
    """

    name: str

    def __init__(self) -> None:
        self.stats = SolverStats()

    @abc.abstractmethod
    def inverse(self, M: torch.Tensor) -> torch.Tensor:
        """Return M⁻¹ for SPD ``M`` of shape (n, n)."""

    @abc.abstractmethod
    def solve(self, M: torch.Tensor, B: torch.Tensor, x0: torch.Tensor | None = None) -> torch.Tensor:
        """Return M⁻¹B for SPD ``M`` (n, n) and ``B`` (n, k); ``x0`` (n, k) is a warm start if used."""

    @property
    def is_analog(self) -> bool:
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.as_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state["stats"].items():
            setattr(self.stats, key, value)


def _check_spd_input(M: torch.Tensor, what: str = "M") -> None:
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise TrainingError(f"{what} must be a square matrix; got shape {tuple(M.shape)}.")
    if not torch.isfinite(M).all():
        raise TrainingError(
            f"{what} ({M.shape[0]}x{M.shape[0]}) holds non-finite entries; a NaN/inf reached the curvature. "
            "Lower the learning rate or raise the damping."
        )


class ExactSolver(CurvatureSolver):
    """Digital linear algebra: Cholesky factorisation, O(n³) flops per call, no analog time.

    Args:
        dtype: working precision of the factorisation; ``None`` (default) uses the matrix's own dtype and
            retries in float64 when a float32 factorisation fails.
    """

    name = "exact"

    def __init__(self, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dtype = dtype

    def _cholesky(self, M: torch.Tensor) -> torch.Tensor:
        _check_spd_input(M)
        Md = M if self.dtype is None else M.to(self.dtype)
        L, info = torch.linalg.cholesky_ex(Md)
        if int(info) != 0 and Md.dtype != torch.float64:
            Md = Md.double()
            L, info = torch.linalg.cholesky_ex(Md)
        if int(info) != 0:
            lam_min = float(torch.linalg.eigvalsh(Md)[0])
            raise TrainingError(
                f"Matrix of size {M.shape[0]} is not positive definite (smallest eigenvalue {lam_min:.3g}); "
                f"raise the damping above {max(-lam_min, 0.0):.3g}."
            )
        return L

    def inverse(self, M: torch.Tensor) -> torch.Tensor:
        self.stats.calls += 1
        return torch.cholesky_inverse(self._cholesky(M)).to(M.dtype)

    def cholesky(self, M: torch.Tensor) -> torch.Tensor:
        """Lower Cholesky factor L of SPD ``M`` (L Lᵀ = M), for repeated ``torch.cholesky_solve``: O(n³/3) once,
        then O(n²k) per k right-hand sides — a third of the cost of forming M⁻¹ explicitly."""
        self.stats.calls += 1
        return self._cholesky(M)

    def solve(self, M: torch.Tensor, B: torch.Tensor, x0: torch.Tensor | None = None) -> torch.Tensor:
        self.stats.calls += 1
        L = self._cholesky(M)
        return torch.cholesky_solve(B.to(L.dtype), L).to(B.dtype)


@dataclass(frozen=True)
class AnalogConfig:
    """How the analog device is run for one inverse/solve.

    Attributes:
        analog_time: integration time t per call, in τ (after the matrix is scaled to λ_max ≤ 1, the slowest
            mode relaxes in κ(M)·τ, so t ≫ κ is needed for a converged answer).
        kappa0: noise strength κ0 (dimensionless; stationary Cov(x) = κ0·M⁻¹). Used by ``inverse`` (must be
            > 0) and as added noise in ``solve`` (0 = noiseless mean readout).
        dt: sampling interval of the covariance readout, in τ.
        burn_in: time discarded before averaging, in τ (``None``: a tenth of ``analog_time``).
        normalize: scale M by s = 1/(Gershgorin bound of λ_max) and each right-hand side b by β = 1/max|b|
            before loading, so entries, rates and inputs fit the device's range (the noise κ0 is then relative
            to full scale); the answer is rescaled digitally (one O(n²) pass).
        rounding, roundings: a hardware profile's DAC rounding (``"nearest"`` or ``"stochastic"``) and the
            number of independent loads averaged per call (randomized-rounding error mitigation; each load is
            a full run, so the analog time and I/O grow by ``roundings``).
        pd_guard: when the hardware refuses a matrix because quantization made it indefinite, retry with
            1.5× the extra damping the device names (up to 8 times) instead of raising; every retry is
            counted in ``SolverStats.damping_bumps`` / ``extra_damping_max`` and reported by training.
    """

    analog_time: float = 50.0
    kappa0: float = 1e-2
    dt: float = 0.1
    burn_in: float | None = None
    normalize: bool = True
    rounding: str = "nearest"
    roundings: int = 1
    pd_guard: bool = False

    def __post_init__(self) -> None:
        for field, value in (("analog_time", self.analog_time), ("dt", self.dt)):
            if not (math.isfinite(value) and value > 0):
                raise TrainingError(f"AnalogConfig.{field} must be a positive number of τ; got {value!r}.")
        if not (math.isfinite(self.kappa0) and self.kappa0 >= 0):
            raise TrainingError(f"AnalogConfig.kappa0 must be ≥ 0 (dimensionless); got {self.kappa0!r}.")
        if self.rounding not in ("nearest", "stochastic"):
            raise TrainingError(
                f"AnalogConfig.rounding must be 'nearest' or 'stochastic'; got {self.rounding!r}."
            )
        if not (isinstance(self.roundings, int) and self.roundings >= 1):
            raise TrainingError(f"AnalogConfig.roundings must be a positive int; got {self.roundings!r}.")
        if self.burn_in is not None and not (0 <= self.burn_in < self.analog_time):
            raise TrainingError(
                f"AnalogConfig.burn_in must lie in [0, analog_time={self.analog_time}) τ; got {self.burn_in!r}."
            )

    @property
    def burn_in_tau(self) -> float:
        return self.analog_time / 10 if self.burn_in is None else self.burn_in


def _device_call(fn, M, *args, scale: float = 1.0, guard: SolverStats | None = None, **kwargs):
    """Call the device on matrix ``M``; a matrix the hardware cannot hold (CircuitError) becomes a
    TrainingError naming it (and the normalisation ``scale`` s the solver applied, so damping quoted for M·s
    maps back to M). With ``guard`` (the solver's stats), an indefinite-after-quantization refusal is retried
    with 1.5× the extra damping the device names, at most 8 times, and counted."""
    from thermotrain._errors import CircuitError, UnloadableMatrixError

    extra = 0.0
    for _ in range(9):
        try:
            result = fn(
                M if extra == 0 else M + extra * torch.eye(M.shape[0], dtype=M.dtype), *args, **kwargs
            )
            if extra > 0 and guard is not None:
                guard.damping_bumps += 1
                guard.extra_damping_max = max(guard.extra_damping_max, extra / scale)
            return result
        except UnloadableMatrixError as exc:
            if guard is None:
                raise _refused(exc, scale) from exc
            extra += 1.5 * exc.extra_damping
            last = exc
        except CircuitError as exc:
            raise _refused(exc, scale) from exc
    raise _refused(last, scale) from last


def _refused(exc: Exception, scale: float) -> TrainingError:
    return TrainingError(
        f"the analog device refused the curvature matrix: {exc} (The solver loaded M·s with "
        f"s = {scale:.3g}: divide a damping quoted above by s to get the damping of the factor itself; "
        "or enable the damping guard, AnalogConfig(pd_guard=True) / --pd-guard.)"
    )


def _models():
    """Import :mod:`thermotrain.models` lazily; explain what is missing when it is not there yet."""
    import thermotrain.models as models

    missing = [name for name in ("solve", "inverse") if not hasattr(models, name)]
    if missing:
        raise TrainingError(
            f"thermotrain.models does not provide {', '.join(missing)} yet, so the analog backends cannot run; "
            "use backend='exact' (digital) until the models package lands."
        )
    return models


class AnalogSolver(CurvatureSolver):
    """Thermodynamic linear algebra on the ideal device or a calibrated hardware profile.

    ``inverse(M)``: the device holds dx = -M x dt/τ + sqrt(2κ0/τ) dW for ``analog_time``; the sample
    covariance of x after burn-in, divided by κ0, estimates M⁻¹ (relative error ~ sqrt(2κ/T) for the slowest
    mode). ``solve(M, B)``: per column b, dx = -(M x - b) dt/τ (+ noise), the time average of x after burn-in
    estimates M⁻¹b (error variance 2κ0·M⁻²/T). Cost per call: n² values loaded (+ n per right-hand side),
    ``analog_time`` τ per run (columns of B are solved as separate runs), n² values (inverse) or n per column
    (solve) read out.

    Args:
        backend: ``"ideal"`` or a :class:`thermotrain.models.HardwareProfile` (or a path to its JSON).
        config: :class:`AnalogConfig`.
        generator: torch generator for the device noise (seeded runs are reproducible).
    """

    def __init__(
        self,
        backend: Any = "ideal",
        config: AnalogConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config or AnalogConfig()
        if isinstance(backend, str | Path) and str(backend) != "ideal":
            backend = _models().load_profile(backend)
        self.backend = backend
        self.name = "ideal" if backend == "ideal" else f"profile:{getattr(backend, 'name', 'hardware')}"
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    @property
    def is_analog(self) -> bool:
        return True

    def _scale(self, M: torch.Tensor) -> float:
        """1/(Gershgorin upper bound of λ_max(M)); 1 when normalisation is off."""
        if not self.config.normalize:
            return 1.0
        bound = float(M.abs().sum(dim=1).max())
        return 1.0 / bound if bound > 0 else 1.0

    def inverse_relative_error(self, M: torch.Tensor) -> float:
        """Stated noise of ``inverse(M)``: sqrt(2 / (λ_min(sM)·T)), the relative standard deviation of the
        sample variance of the slowest mode over the averaging window T = analog_time − burn_in (τ)."""
        Ms = 0.5 * (M + M.T) * self._scale(M)
        lam_min = float(torch.linalg.eigvalsh(Ms.double())[0])
        return math.sqrt(2.0 / (lam_min * (self.config.analog_time - self.config.burn_in_tau)))

    def _rounding(self) -> dict[str, Any]:
        """The DAC rounding options, passed only to a hardware profile (the ideal device quantizes nothing)."""
        if self.backend == "ideal":
            return {}
        return {"rounding": self.config.rounding, "roundings": self.config.roundings}

    def _account(self, result: Any) -> None:
        self.stats.calls += 1
        self.stats.analog_time_tau += float(result.analog_time_tau)
        self.stats.values_loaded += int(result.values_loaded)
        self.stats.values_read += int(result.values_read)

    def inverse(self, M: torch.Tensor) -> torch.Tensor:
        _check_spd_input(M)
        if self.config.kappa0 <= 0:
            raise TrainingError(
                "The covariance readout needs kappa0 > 0; set AnalogConfig(kappa0=1e-2) or so."
            )
        M = 0.5 * (M + M.T)
        s = self._scale(M)
        c = self.config
        result = _device_call(
            _models().inverse,
            M * s,
            scale=s,
            guard=self.stats if c.pd_guard else None,
            backend=self.backend,
            t=c.analog_time,
            kappa0=c.kappa0,
            dt=c.dt,
            burn_in=c.burn_in_tau,
            generator=self.generator,
            **self._rounding(),
        )
        self._account(result)
        inv = result.inverse.to(M.dtype) * s
        return 0.5 * (inv + inv.T)

    def solve(self, M: torch.Tensor, B: torch.Tensor, x0: torch.Tensor | None = None) -> torch.Tensor:
        _check_spd_input(M)
        M = 0.5 * (M + M.T)
        s = self._scale(M)
        c = self.config
        # per-column input scale β: the loaded b spans the DAC's full scale [-1, 1] (x' = β/s · M⁻¹b)
        beta = (
            1.0 / B.abs().amax(dim=0).clamp_min(1e-30)
            if c.normalize
            else torch.ones(B.shape[1], dtype=B.dtype)
        )
        result = _device_call(
            _models().solve,
            M * s,
            B * beta,
            scale=s,
            guard=self.stats if c.pd_guard else None,
            backend=self.backend,
            t=c.analog_time,
            kappa0=c.kappa0,
            x0=None if x0 is None else x0 * beta / s,
            readout="average",
            burn_in=c.burn_in_tau,
            generator=self.generator,
            **self._rounding(),
        )
        self._account(result)
        return (result.x.reshape(B.shape) * (s / beta)).to(B.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.as_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "generator" in state:
            self.generator.set_state(state["generator"])


Backend = Literal["exact", "ideal"] | str | Path | Any

SHIPPED_PROFILES = ("rc8", "rlc8")
"""Names of the calibrated profiles shipped with thermotrain (``thermotrain/models/profiles/NAME.json``)."""


def shipped_profile_path(name: str) -> Path:
    """Path of a shipped profile (``"rc8"`` or ``"rlc8"``)."""
    import importlib.resources

    if name not in SHIPPED_PROFILES:
        raise TrainingError(f"no shipped profile {name!r}; choose one of {', '.join(SHIPPED_PROFILES)}.")
    return Path(str(importlib.resources.files("thermotrain.models") / "profiles" / f"{name}.json"))


def make_solver(
    backend: Backend = "exact", config: AnalogConfig | None = None, generator: torch.Generator | None = None
) -> CurvatureSolver:
    """Build the solver for ``backend``: ``"exact"`` (digital), ``"ideal"`` or a hardware profile / its path."""
    if isinstance(backend, CurvatureSolver):
        return backend
    if backend == "exact":
        return ExactSolver()
    if isinstance(backend, str) and backend in SHIPPED_PROFILES:
        backend = shipped_profile_path(backend)
    if backend == "ideal" or isinstance(backend, str | Path):
        if isinstance(backend, str | Path) and backend != "ideal":
            if not Path(backend).exists():
                raise TrainingError(
                    f"Unknown backend {str(backend)!r}: use 'exact', 'ideal', a shipped profile (rc8, rlc8) or "
                    "the path of a hardware-profile JSON (e.g. one written by `thermotrain calibrate`)."
                )
            from thermotrain._safeio import read_text

            # a regular UTF-8 text file under the profile size cap, before the profile parser sees it
            # (a FIFO, /dev/zero, a directory or a binary file is refused with one line)
            read_text(backend, "profile", f"backend {str(backend)!r}")
        return AnalogSolver(backend, config, generator)
    return AnalogSolver(backend, config, generator)
