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
import logging
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

import thermotrain.models as models
from thermotrain._errors import TrainingError
from thermotrain.models import HardwareProfile, ReadoutConfig, ReadoutPlan
from thermotrain.models._linalg import plan_context, recommended_readout
from thermotrain.training._config import TILE_MAPPINGS

log = logging.getLogger(__name__)

#: how an AnalogSolver maps a matrix onto the device (see AnalogSolver)
MAPPINGS = TILE_MAPPINGS

__all__ = ["AnalogSolver", "CurvatureSolver", "ExactSolver", "SolverStats", "make_solver"]


@dataclass
class SolverStats:
    """Running totals of what a solver did (mutable counters, reset with :meth:`reset`).

    Attributes:
        analog_time_tau: device time spent, in units of τ (the array's time constant).
        values_loaded: matrix and vector entries written through the DAC (count).
        values_read: entries read back through the ADC (count).
        calls: number of inverse/solve calls.
        damping_bumps: device calls the damping guard retried with extra damping (``AnalogSolver.pd_guard``).
        extra_damping_max: the largest extra damping it added, in the units of the unscaled matrix.
        wall_time_tau: the chip's wall time (τ): per round of tiles its longest tile.
        digital_flops: digital work between device calls (tiled solves' residuals and updates).
        simulation_s: wall-clock seconds this process spent simulating the device (not a device time).
        blind_readouts: inverse readouts with a diagonal entry ≤ 0: channels the readout saw as a constant
            (an ADC step above the signal), where an SPD matrix's inverse is > 0.
    """

    analog_time_tau: float = 0.0
    values_loaded: int = 0
    values_read: int = 0
    calls: int = 0
    damping_bumps: int = 0
    extra_damping_max: float = 0.0
    wall_time_tau: float = 0.0
    digital_flops: int = 0
    simulation_s: float = 0.0
    blind_readouts: int = 0

    def reset(self) -> None:
        self.analog_time_tau, self.values_loaded, self.values_read, self.calls = 0.0, 0, 0, 0
        self.damping_bumps, self.extra_damping_max = 0, 0.0
        self.wall_time_tau, self.digital_flops, self.simulation_s = 0.0, 0, 0.0
        self.blind_readouts = 0

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
    def inverse(self, M: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
        """Return M⁻¹ for SPD ``M`` of shape (n, n); ``floor`` is a known lower bound of λ_min(M) (e.g. the
        damping), which an analog device uses to plan its readout."""

    @abc.abstractmethod
    def solve(
        self, M: torch.Tensor, B: torch.Tensor, x0: torch.Tensor | None = None, floor: float = 0.0
    ) -> torch.Tensor:
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
        L, info = torch.linalg.cholesky_ex(Md)  # one factorisation on the fast path (the digital baseline)
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

    def inverse(self, M: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
        self.stats.calls += 1
        return torch.cholesky_inverse(self._cholesky(M)).to(M.dtype)

    def cholesky(self, M: torch.Tensor) -> torch.Tensor:
        """Lower Cholesky factor L of SPD ``M`` (L Lᵀ = M), for repeated ``torch.cholesky_solve``: O(n³/3) once,
        then O(n²k) per k right-hand sides — a third of the cost of forming M⁻¹ explicitly."""
        self.stats.calls += 1
        return self._cholesky(M)

    def solve(
        self, M: torch.Tensor, B: torch.Tensor, x0: torch.Tensor | None = None, floor: float = 0.0
    ) -> torch.Tensor:
        self.stats.calls += 1
        L = self._cholesky(M)
        return torch.cholesky_solve(B.to(L.dtype), L).to(B.dtype)


def gershgorin_scale(M: torch.Tensor) -> float:
    """s = 1/(Gershgorin upper bound of λ_max(M)), the factor :class:`AnalogSolver` loads M·s with (its rates
    are then ≤ 1/τ); 1 for a zero matrix."""
    bound = float(M.abs().sum(dim=1).max())
    return 1.0 / bound if bound > 0 else 1.0


def _device_call(
    fn,
    M,
    *args,
    scale: float = 1.0,
    guard: SolverStats | None = None,
    memo: _PerTensor | None = None,
    **kwargs,
):
    """Call the device on matrix ``M``; a matrix the hardware cannot hold (CircuitError) becomes a
    TrainingError naming it (and the normalisation ``scale`` s the solver applied, so damping quoted for M·s
    maps back to M). With ``guard`` (the solver's stats), an indefinite-after-quantization refusal is retried
    with 1.5× the extra damping the device names, at most 8 times, and counted.

    ``memo`` (a dict the caller keeps): the damped matrix a refused ``M`` was finally loaded as, kept per tensor
    object and version, so the next call with the same unchanged M (a K-FAC factor solved with at every step
    between two refreshes) loads that very tensor at once -- the same answer the retries would reach (for a
    deterministic load), without the refused attempts and with the tiles' caches hitting on one object.
    Each such call still counts as a damping bump."""
    from thermotrain._errors import CircuitError, UnloadableMatrixError

    hit = None if memo is None else memo.get(M)
    extra, Mx = (0.0, M) if hit is None else hit
    for _ in range(9):
        try:
            result = fn(Mx, *args, **kwargs)
            if extra > 0 and guard is not None:
                guard.damping_bumps += 1
                guard.extra_damping_max = max(guard.extra_damping_max, extra / scale)
            if extra > 0 and memo is not None and (hit is None or extra != hit[0]):
                memo.put(M, (extra, Mx))
            return result
        except UnloadableMatrixError as exc:
            if guard is None:
                raise _refused(exc, scale) from exc
            extra += 1.5 * exc.extra_damping
            Mx = M + extra * torch.eye(M.shape[0], dtype=M.dtype, device=M.device)
            last = exc
        except CircuitError as exc:
            raise _refused(exc, scale) from exc
    raise _refused(last, scale) from last


class _PerTensor:
    """Values kept per tensor object while it is unmodified (the same object, the same version counter): a
    factor passed again between two refreshes finds what was computed for it. Least recently used entries
    beyond ``limit`` are dropped, and a freed tensor's entry when a new one is stored (its value, e.g. a
    damped copy of the matrix, is not kept alive)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[int, tuple[weakref.ref[torch.Tensor], int, Any]] = OrderedDict()

    def get(self, M: torch.Tensor) -> Any:
        """The value stored for this very tensor, unmodified since; else None."""
        entry = self._entries.get(id(M))
        if entry is None or entry[0]() is not M or entry[1] != M._version:
            return None
        self._entries.move_to_end(id(M))
        return entry[2]

    def put(self, M: torch.Tensor, value: Any) -> None:
        for key in [key for key, entry in self._entries.items() if entry[0]() is None]:
            del self._entries[key]
        self._entries[id(M)] = (weakref.ref(M), M._version, value)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)


def _refused(exc: Exception, scale: float) -> TrainingError:
    return TrainingError(
        f"the analog device refused the curvature matrix: {exc} (The solver loaded M·s with "
        f"s = {scale:.3g}: divide a damping quoted above by s to get the damping of the factor itself; "
        "or keep the damping guard on (AnalogSolver(pd_guard=True), the default), which retries with more damping.)"
    )


class AnalogSolver(CurvatureSolver):
    """Thermodynamic linear algebra on the ideal device or a calibrated hardware profile.

    ``inverse(M)``: the device holds dx = -M x dt/τ + sqrt(2κ0/τ) dW; after a burn-in the sample covariance
    of x, divided by κ0, estimates M⁻¹. ``solve(M, B)``: per column b, dx = -(M x - b) dt/τ (+ noise); the
    time average of x after burn-in estimates M⁻¹b. How long the device runs, how often it is sampled and at
    which noise level comes from one :class:`thermotrain.models.ReadoutConfig`: by default
    ``analog_time="auto"`` picks, for each loaded matrix, the burn-in, window and sample interval that reach
    the target relative error (the config's ``target_error``, else the profile's recommendation, else
    ``thermotrain.models.DEFAULT_TARGET_ERROR``) from a Lanczos estimate of λ_min, floored at the damping the
    caller passes (``floor=``). Every call's plan is appended to :attr:`calls_log` (drained by the training
    harness into ``metrics.jsonl``), and the time used is summed into ``stats.analog_time_tau``.

    The matrix is scaled by s = 1/(Gershgorin bound of λ_max) before loading (rates ≤ 1/τ, entries in range)
    and each right-hand side by β = 1/max|b|, so κ0 is relative to full scale; answers are rescaled digitally.

    Args:
        backend: ``"ideal"`` or a :class:`thermotrain.models.HardwareProfile` (or a shipped name / path).
        readout: :class:`thermotrain.models.ReadoutConfig` (its ``mode`` is set per call: covariance for
            ``inverse``, average for ``solve``); ``None``: the profile's recommended readout, else defaults.
        generator: torch generator for the device noise (seeded runs are reproducible).
        normalize: scale M and b into the device's range as above (``False``: load them as given).
        pd_guard: when the hardware refuses a matrix because quantization made it indefinite, retry with
            1.5× the extra damping the device names (up to 8 times) instead of raising; every retry is counted
            in ``SolverStats.damping_bumps`` / ``extra_damping_max`` and reported by training.
        mapping: how a matrix wider than a tile is mapped (issue 10): ``"auto"`` (default: the profile's chip
            when it declares one, or ``cells_per_tile`` when given, else one device of any size),
            ``"monolithic"``, ``"tiles"`` (inverse: block-diagonal, one diagonal block per tile; solve:
            conjugate gradients preconditioned by the tiles — each iteration one round of all tiles in
            parallel and one digital product with the whole matrix), or for solves ``"gauss-seidel"``,
            ``"block-jacobi"`` / ``"block-diagonal"`` (:func:`thermotrain.models.tiled_solve`).
        cells_per_tile: tile size (count; ``None``: the profile's chip).
        tol: the target relative residual of a tiled solve's outer iteration; None (default): the readout's
            target error (the same error budget as one device call).
        max_iters: the most sweeps of that iteration (count).
        simulator: how the covariance readout is simulated: ``"law"`` (default; one draw from its law) or
            ``"trajectory"`` (the reference; :func:`thermotrain.models.inverse`); the device, its time and its
            I/O are the same.
    """

    #: the most per-call records kept in :attr:`calls_log` between two drains
    LOG_LIMIT = 10_000

    def __init__(
        self,
        backend: Any = "ideal",
        readout: ReadoutConfig | None = None,
        generator: torch.Generator | None = None,
        *,
        normalize: bool = True,
        pd_guard: bool = True,
        simulator: str = "law",
        mapping: str = "auto",
        cells_per_tile: int | None = None,
        tol: float | None = None,
        max_iters: int = 200,
    ) -> None:
        super().__init__()
        if readout is not None and not isinstance(readout, ReadoutConfig):
            raise TrainingError(
                f"readout must be a thermotrain.models.ReadoutConfig; got {type(readout).__name__}."
            )
        if backend != "ideal" and not isinstance(backend, HardwareProfile):
            backend = models.find_profile(backend)
        self.backend = backend
        if readout is None:
            readout = recommended_readout(backend) or ReadoutConfig()
        self.readout = readout
        self.normalize = bool(normalize)
        self.pd_guard = bool(pd_guard)
        if simulator not in ("trajectory", "law"):
            raise TrainingError(f"simulator must be 'trajectory' or 'law'; got {simulator!r}.")
        self.simulator = simulator
        if mapping not in MAPPINGS:
            raise TrainingError(f"mapping must be one of {', '.join(MAPPINGS)}; got {mapping!r}.")
        chip = getattr(backend, "chip", None)
        if mapping == "auto":
            mapping = "tiles" if (cells_per_tile is not None or chip is not None) else "monolithic"
        if tol is None:
            tol = plan_context(backend, readout)[2]
        self.mapping, self.cells_per_tile, self.tol, self.max_iters = mapping, cells_per_tile, tol, max_iters
        self.name = "ideal" if backend == "ideal" else f"profile:{getattr(backend, 'name', 'hardware')}"
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.calls_log: list[dict[str, Any]] = []
        #: the tiles' readout laws kept between solves with the same factor (simulator only; see TileCache)
        self.tile_cache = models.TileCache()
        # matrices loaded before: (s, s·sym(M)); a factor solved with at every step between two refreshes is
        # checked, symmetrised and scaled once
        self._loaded = _PerTensor(64)
        # the damping guard's (extra damping, damped matrix) per loaded matrix (see _device_call's memo)
        self._guard_memo = _PerTensor(16)

    @property
    def is_analog(self) -> bool:
        return True

    @property
    def uses_warm_start(self) -> bool:
        """Whether :meth:`solve` uses ``x0`` (the block-diagonal mapping is one round of D⁻¹B: it does not)."""
        return self.mapping != "block-diagonal"

    def _load(self, M: torch.Tensor) -> tuple[float, torch.Tensor]:
        """(s, s·(M + Mᵀ)/2) after the input check; kept per tensor object while it is not modified."""
        entry = self._loaded.get(M)
        if entry is not None:
            return entry
        _check_spd_input(M)
        sym = 0.5 * (M + M.T)
        s = self._scale(sym)
        loaded = (s, sym * s)  # one tensor object: the tiles' caches and the guard's memo key on it
        self._loaded.put(M, loaded)
        return loaded

    @property
    def tile_size(self) -> int | None:
        """Cells per tile this solver maps onto (``cells_per_tile``, else the profile's chip); None when
        monolithic."""
        if self.mapping == "monolithic":
            return None
        chip = getattr(self.backend, "chip", None)
        return self.cells_per_tile or (None if chip is None else chip.cells_per_tile)

    def _scale(self, M: torch.Tensor) -> float:
        """:func:`gershgorin_scale` of M; 1 when normalisation is off."""
        return gershgorin_scale(M) if self.normalize else 1.0

    def plan(self, M: torch.Tensor, floor: float = 0.0, mode: str = "covariance") -> ReadoutPlan:
        """The :class:`ReadoutPlan` this solver would run for ``M`` (after scaling), without running it:
        analog time, burn-in, sample interval and the predicted relative error of the slowest mode."""
        M = 0.5 * (M + M.T)
        s = self._scale(M)
        from thermotrain.models._linalg import _plan

        return _plan(M * s, self.backend, self.readout.with_(mode=mode), lambda_floor=floor * s)

    def _account(self, result: Any, op: str, n: int) -> None:
        self.stats.calls += 1
        self.stats.analog_time_tau += float(result.analog_time_tau)
        self.stats.wall_time_tau += float(result.analog_time_tau)
        self.stats.values_loaded += int(result.values_loaded)
        self.stats.values_read += int(result.values_read)
        plan = result.plan
        if plan is not None and len(self.calls_log) < self.LOG_LIMIT:
            self.calls_log.append(
                {
                    "op": op,
                    "n": n,
                    "analog_time_tau": float(result.analog_time_tau),
                    "burn_in_tau": plan.burn_in,
                    "dt_tau": plan.dt,
                    "lambda_min": plan.lambda_min,
                    "predicted_error": plan.predicted_error,
                    "capped": plan.capped,
                }
            )

    def _account_tiled(self, result: Any, op: str, n: int) -> None:
        """Count a tiled call (its total device time; the chip's wall time and digital flops in the log)."""
        self.stats.calls += 1
        self.stats.analog_time_tau += float(result.analog_time_tau)
        self.stats.values_loaded += int(result.values_loaded)
        self.stats.values_read += int(result.values_read)
        self.stats.wall_time_tau += float(result.wall_time_tau)
        self.stats.digital_flops += int(result.digital_flops)
        plans = [p for p in result.plans if p is not None]
        if len(self.calls_log) < self.LOG_LIMIT:
            errors = [p.predicted_error for p in plans if p.predicted_error == p.predicted_error]
            self.calls_log.append(
                {
                    "op": op,
                    "n": n,
                    "analog_time_tau": float(result.analog_time_tau),
                    "wall_time_tau": float(result.wall_time_tau),
                    "burn_in_tau": max((p.burn_in for p in plans), default=0.0),
                    "dt_tau": min((p.dt for p in plans), default=0.0),
                    "lambda_min": min((p.lambda_min for p in plans), default=float("nan")),
                    "predicted_error": max(errors, default=float("nan")),
                    "capped": any(p.capped for p in plans),
                    "mapping": result.mapping,
                    "tiles_used": result.tiles_used,
                    "rounds": result.rounds,
                    "iterations": result.iterations,
                    "digital_flops": int(result.digital_flops),
                    "residual": result.residual,
                    "tol": self.tol if op == "solve" and result.mapping != "block-diagonal" else None,
                }
            )

    def drain_log(self) -> list[dict[str, Any]]:
        """The per-call records since the last drain (and forget them)."""
        log, self.calls_log = self.calls_log, []
        return log

    def _call(self, fn: Any, *args: Any, scale: float, **kwargs: Any) -> Any:
        """One device call through :func:`_device_call` (the damping guard when ``pd_guard``), its
        wall-clock simulation time added to ``stats.simulation_s``."""
        t0 = time.perf_counter()
        try:
            # a deterministic load refuses the same matrix the same way: remember what it was loaded as
            deterministic = self.readout.rounding != "stochastic" and self.readout.roundings == 1
            return _device_call(
                fn,
                *args,
                scale=scale,
                guard=self.stats if self.pd_guard else None,
                memo=self._guard_memo if deterministic else None,
                **kwargs,
            )
        finally:
            self.stats.simulation_s += time.perf_counter() - t0

    def inverse(self, M: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
        _check_spd_input(M)
        M = 0.5 * (M + M.T)
        s = self._scale(M)
        if self.mapping != "monolithic":
            tiled = self._call(
                models.tiled_inverse,
                M * s,
                scale=s,
                backend=self.backend,
                cells_per_tile=self.cells_per_tile,
                mapping="block-diagonal",
                config=self.readout,
                lambda_floor=floor * s,
                generator=self.generator,
                simulator=self.simulator,
            )
            self._account_tiled(tiled, "inverse", M.shape[0])
            inv = tiled.value.to(M.dtype) * s
            return self._seen(0.5 * (inv + inv.T))
        result = self._call(
            models.inverse,
            M * s,
            scale=s,
            backend=self.backend,
            config=self.readout,
            lambda_floor=floor * s,
            generator=self.generator,
            simulator=self.simulator,
        )
        self._account(result, "inverse", M.shape[0])
        inv = result.inverse.to(M.dtype) * s
        return self._seen(0.5 * (inv + inv.T))

    def _seen(self, inv: torch.Tensor) -> torch.Tensor:
        """Count (and say once) an inverse readout with channels read as a constant: a diagonal entry ≤ 0,
        impossible for an SPD matrix's inverse, means the ADC step exceeded the signal there."""
        blind = int((inv.diagonal() <= 0).sum())
        if blind:
            self.stats.blind_readouts += 1
            if self.stats.blind_readouts == 1:
                log.warning(
                    "analog inverse: %d of %d channels read as a constant (estimate <= 0 on the diagonal): the "
                    "ADC step exceeds the signal there, so K-FAC gets no curvature (nor update) from them. Use "
                    "more ADC bits, a smaller ADC range (component_stats.adc_full_scale_v; the covariance signal is ~sqrt(kappa0) "
                    "V rms per channel, so a range near 10 sqrt(kappa0) fits it), or a larger kappa0.",
                    blind,
                    inv.shape[0],
                )
        return inv

    def solve(
        self, M: torch.Tensor, B: torch.Tensor, x0: torch.Tensor | None = None, floor: float = 0.0
    ) -> torch.Tensor:
        s, Ms = self._load(M)
        # per-column input scale β: the loaded b spans the DAC's full scale [-1, 1] (x' = β/s · M⁻¹b)
        beta = (
            1.0 / B.abs().amax(dim=0).clamp_min(1e-30)
            if self.normalize
            else torch.ones(B.shape[1], dtype=B.dtype, device=B.device)
        )
        if self.mapping != "monolithic":
            tiled = self._call(
                models.tiled_solve,
                Ms,
                B * beta,
                scale=s,
                backend=self.backend,
                cells_per_tile=self.cells_per_tile,
                mapping="pcg" if self.mapping == "tiles" else self.mapping,
                tol=self.tol,
                max_iters=self.max_iters,
                config=self.readout,
                lambda_floor=floor * s,
                generator=self.generator,
                # block-diagonal is one round of D⁻¹B: no warm start (it would make it a Jacobi sweep from
                # x0) and no digital residual (a diagnostic of 2n²k flops per solve)
                x0=None if x0 is None or self.mapping == "block-diagonal" else x0 * beta / s,
                cache=self.tile_cache,
                measure_residual=self.mapping != "block-diagonal",
            )
            self._account_tiled(tiled, "solve", M.shape[0])
            return (tiled.value.reshape(B.shape) * (s / beta)).to(B.dtype)
        result = self._call(
            models.solve,
            Ms,
            B * beta,
            scale=s,
            backend=self.backend,
            config=self.readout,
            x0=None if x0 is None else x0 * beta / s,
            readout="average",
            lambda_floor=floor * s,
            generator=self.generator,
        )
        self._account(result, "solve", M.shape[0])
        return (result.x.reshape(B.shape) * (s / beta)).to(B.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.as_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "generator" in state:
            self.generator.set_state(state["generator"])


Backend = Literal["exact", "ideal"] | str | Path | Any


def make_solver(
    backend: Backend = "exact",
    readout: ReadoutConfig | None = None,
    generator: torch.Generator | None = None,
    *,
    pd_guard: bool = True,
    simulator: str = "law",
    mapping: str = "auto",
    cells_per_tile: int | None = None,
) -> CurvatureSolver:
    """Build the solver for ``backend``: ``"exact"`` (digital), ``"ideal"``, a shipped profile name (``rc8``,
    ``rlc8``), a hardware-profile path or a :class:`thermotrain.models.HardwareProfile`."""
    if isinstance(backend, CurvatureSolver):
        return backend
    if backend == "exact":
        return ExactSolver()
    return AnalogSolver(
        backend,
        readout,
        generator,
        pd_guard=pd_guard,
        simulator=simulator,
        mapping=mapping,
        cells_per_tile=cells_per_tile,
    )
