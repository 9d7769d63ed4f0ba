"""Thermodynamic natural gradient descent (TNGD): a device holding A = GGN + λI and b = gradient.

Per training step k the device, holding A_k = J_kᵀ H_k J_k + λI and b_k = g_k, runs for an analog time t
(in τ), warm-started from the previous estimate (or from x0 = g_k on the first step / ``warm_start=False``);
its state at t is the update direction handed to a torch optimizer (SGD → TNGD, Adam with β1 = β2 = 0 →
TNGD-Adam). A delay t_d > 0 models the digital time between reading x and loading the new (A, b): the device
first runs t_d under the previous system, on the same backend.

**Normalisation** (as thermodynamic K-FAC's :class:`~thermotrain.training.AnalogSolver`): the device is loaded
with A' = s·A and b' = β·b, where s = 1/λ̂_max(A) (``lambda_steps`` Lanczos steps with the GGN operator; the
largest Ritz value) and β = 1/max|b|, so the device's fastest rate is ≈ 1/τ and its input spans the full
scale [-1, 1]. It runs

    dx' = -(A' x' - b') dt + sqrt(2κ0) dW        (time in τ of the scaled device)

from x0' = (β/s)·x0, and the readout is rescaled digitally: x = (s/β)·x'. So the analog time t and the noise
κ0 mean the same thing for every A and b: κ0 is relative to the device's full scale, exactly as in K-FAC
(the relative error of the readout does not change when A or b is multiplied by a constant).

**Backends**:

- ``"ideal"``: the law of x'(t) is exact OU, x'(t) = x0' − φ_t(A')(A'x0' − b') + ψ_t(A') ξ, ξ ~ N(0, I),
  φ_t(a) = (1 − e^{−a t})/a, ψ_t(a) = sqrt(κ0 (1 − e^{−2 a t})/a), evaluated by ``integrator``:
  ``"krylov"`` (default, matrix-free: Lanczos on A' with full re-orthogonalisation, m adaptive ≤
  ``max_krylov`` GGN-vector products, stops when the estimate changes by < ``krylov_tol`` relative; exact up
  to that tolerance; this is what makes big models possible), ``"dense"`` (form A', N ≤ ``max_dense_params``,
  eigendecompose, O(N³)) or ``"euler"`` (Euler–Maruyama with δt = min(dt, 1/(1.1·λ̂_max)), the paper's
  simulation; transient error ≈ a²δt·t/2 per mode, stationary covariance bias O(aδt)).
- a :class:`~thermotrain.models.HardwareProfile` (RC family): the dense A' (N ≤ ``max_dense_params``, else a
  :class:`TrainingError`) and b' are loaded into the profile's surrogate, so its DAC quantization, component
  tolerances, finite op-amp gain, offsets, output clipping and ADC all apply. ``integrator="dense"`` calls
  :func:`thermotrain.models.solve` (``readout="state"``): the surrogate's exact law, O(N³) with a large
  constant (two matrix exponentials of size 2N: ~10 s at N = 1200, ~80 s at N = 2410 on one core).
  ``integrator="krylov"`` (default) builds the same device (:meth:`HardwareProfile.instantiate`) and
  evaluates its mean exactly (Arnoldi on the surrogate's drift, O(m·N²)); its noise (κ0 > 0) is drawn from
  the OU law of the symmetric part of the drift with the mean diffusion (the surrogate's drift is non-normal
  only through the ~1 % component tolerances, so this noise law is accurate to about that tolerance; with
  κ0 = 0 the path is exact). ``euler`` runs the ideal device only. A matrix the profile refuses because
  quantization made it indefinite is retried with 1.5× the extra damping the device names when
  ``pd_guard`` (counted in ``damping_bumps``), else a TrainingError names the fix.

Per step the ideal device is loaded with B·d_z(B·d_z + 2N) + N values (J, H_L, Jᵀ as resistor arrays and b);
the dense profile device with N(N+1)/2 + N (A and b); N values are read.

At t = 0 (κ0 = 0, no warm start) TNGD is SGD exactly; as t → ∞ (κ0 = 0) it is NGD with damping λ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from thermotrain._args import join_words
from thermotrain._errors import TrainingError
from thermotrain.models import _rng
from thermotrain.training._config import MAX_DAMPING
from thermotrain.training._ggn import GGNOperator, LossName, flat_grad, set_flat_grad
from thermotrain.training._kfac import Schedule, resolve_schedule

__all__ = ["TNGDConfig", "TNGDPreconditioner", "ou_transition", "resolve_tngd_backend"]

Integrator = Literal["krylov", "dense", "euler"]


def resolve_tngd_backend(backend: Any) -> Any:
    """``"ideal"`` (also for ``"exact"``: TNGD has no digital mode) or a RC-family HardwareProfile, from a
    profile, a shipped profile name (``"rc8"``) or the path of a profile JSON."""
    from thermotrain.models import HardwareProfile, find_profile

    if isinstance(backend, str) and backend in ("exact", "ideal"):
        return "ideal"
    if isinstance(backend, str | Path):
        backend = find_profile(backend, what="TNGD backend")
    if not isinstance(backend, HardwareProfile):
        raise TrainingError(
            f"TNGD backend must be 'ideal' or a HardwareProfile; got {type(backend).__name__} {backend!r}."
        )
    if backend.family != "rc":
        raise TrainingError(
            f"TNGD solves A x = b on the device; the {backend.family!r} profile {backend.name!r} cannot (an RLC "
            "resonator array reads A⁻¹ from its covariance only). Use an RC profile, e.g. backend 'rc8'."
        )
    return backend


@dataclass(frozen=True)
class TNGDConfig:
    """TNGD settings (immutable).

    Attributes:
        damping: λ added to the GGN (number or schedule, > 0; dimensionless, in the GGN's units).
        analog_time: t, the device time per step, in τ of the normalised device (fastest rate ≈ 1/τ; 0 → SGD).
        delay: t_d, time the device keeps running on the previous (A, b) before the new ones load, in τ.
        kappa0: noise strength κ0 relative to the device's full scale (dimensionless; the normalised
            device's stationary Cov = κ0·A'⁻¹, the same meaning as in thermodynamic K-FAC). ``None``: 0 on
            the ideal device, the profile's own κ0 on a hardware profile.
        warm_start: start from the previous estimate instead of the gradient.
        integrator: ``"krylov"``, ``"dense"`` or ``"euler"`` (see the module docstring).
        backend: ``"ideal"`` or a RC :class:`~thermotrain.models.HardwareProfile` (a shipped name such as
            ``"rc8"`` or a profile path is resolved here; ``"exact"`` means ``"ideal"``).
        dt: Euler step (τ); upper bound, reduced to 1/λ̂_max for stability.
        krylov_tol: relative tolerance of the Lanczos/Arnoldi evaluation.
        max_krylov: maximum Lanczos iterations (GGN-vector products) per evaluation.
        lambda_steps: Lanczos steps of the λ_max estimate that sets the scale s (GGN-vector products).
        max_dense_params: size limit of the dense paths (``integrator="dense"`` and hardware profiles).
        pd_guard: on a profile, retry a matrix its quantization made indefinite with more damping.
        loss: loss whose GGN is used (mean-reduced ``"cross_entropy"`` or ``"mse"``).
    """

    damping: Schedule = 3e-2
    analog_time: float = 20.0
    delay: float = 0.0
    kappa0: float | None = None
    warm_start: bool = True
    integrator: Integrator = "krylov"
    backend: Any = "ideal"
    dt: float = 0.1
    krylov_tol: float = 1e-6
    max_krylov: int = 100
    lambda_steps: int = 8
    max_dense_params: int = 4096
    pd_guard: bool = True
    loss: LossName = "cross_entropy"

    def __post_init__(self) -> None:
        if not callable(self.damping) and not (math.isfinite(self.damping) and self.damping > 0):
            raise TrainingError(
                f"TNGD damping must be > 0 (it bounds the device's slowest rate); got {self.damping!r}."
            )
        for name in ("analog_time", "delay", "kappa0"):
            value = getattr(self, name)
            if name == "kappa0" and value is None:
                continue
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise TrainingError(f"TNGD {name} must be a finite number ≥ 0; got {value!r}.")
        if self.integrator not in ("krylov", "dense", "euler"):
            raise TrainingError(f"integrator must be 'krylov', 'dense' or 'euler'; got {self.integrator!r}.")
        if not (self.dt > 0 and self.krylov_tol > 0 and self.max_krylov >= 1 and self.lambda_steps >= 1):
            raise TrainingError("dt (τ), krylov_tol, max_krylov and lambda_steps must be positive.")
        object.__setattr__(self, "backend", resolve_tngd_backend(self.backend))
        if self.backend != "ideal" and self.integrator == "euler":
            raise TrainingError(
                "integrator 'euler' simulates the ideal device only; on a hardware profile use 'krylov' "
                "(default) or 'dense'."
            )

    @property
    def effective_kappa0(self) -> float:
        """κ0 used: the explicit value, else 0 (ideal) or the profile's κ0."""
        if self.kappa0 is not None:
            return float(self.kappa0)
        return 0.0 if self.backend == "ideal" else float(self.backend.kappa0)


def _phi(a: torch.Tensor, t: float) -> torch.Tensor:
    """(1 − e^{−a t})/a, equal to t at a = 0."""
    return torch.where(a.abs() * t > 1e-12, -torch.expm1(-a * t) / a.clamp_min(1e-300), torch.full_like(a, t))


def _psi(a: torch.Tensor, t: float, kappa0: float) -> torch.Tensor:
    """sqrt(κ0 (1 − e^{−2 a t})/a): the standard deviation of the OU noise after time t (a ≤ 0, a Ritz value
    of a marginal mode, is taken as 0: variance 2κ0·t)."""
    return torch.sqrt(kappa0 * _phi(a.clamp_min(0.0), 2 * t))


def _lanczos_apply(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    v: torch.Tensor,
    f: Callable[[torch.Tensor], torch.Tensor],
    tol: float,
    max_iter: int,
) -> tuple[torch.Tensor, int]:
    """f(A) v ≈ ‖v‖ V_m f(T_m) e1 by Lanczos with full re-orthogonalisation; returns (estimate, m)."""
    beta0 = v.norm()
    if float(beta0) == 0.0:
        return torch.zeros_like(v), 0
    dtype = torch.float64
    V = [(v / beta0).to(dtype)]
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    prev_coef: torch.Tensor | None = None
    coef = torch.zeros(1, dtype=dtype)
    for j in range(max_iter):
        w = matvec(V[j].to(v.dtype)).to(dtype)
        alpha = V[j] @ w
        alphas.append(alpha)
        Vm = torch.stack(V)
        w = w - Vm.T @ (Vm @ w)
        w = w - Vm.T @ (Vm @ w)  # twice is enough (Kahan–Parlett)
        beta = w.norm()
        T = torch.diag(torch.stack(alphas))
        if betas:
            off = torch.stack(betas)
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        if not torch.isfinite(T).all():  # an overflowed product: the caller reports the non-finite estimate
            return torch.full_like(v, math.nan), len(alphas)
        evals, evecs = torch.linalg.eigh(T)
        coef = evecs @ (f(evals) * evecs[0])
        converged = prev_coef is not None and float(
            (coef[:-1] - prev_coef).norm().hypot(coef[-1].abs())
        ) <= tol * float(coef.norm())
        if converged or float(beta) <= 1e-12 * float(evals.abs().max()) or j + 1 == min(max_iter, v.numel()):
            break
        prev_coef = coef
        betas.append(beta)
        V.append(w / beta)
    m = len(alphas)
    return (float(beta0) * (torch.stack(V[:m]).T @ coef)).to(v.dtype), m


def lambda_max_estimate(matvec: Callable[[torch.Tensor], torch.Tensor], n: int, steps: int) -> float:
    """Largest Ritz value of ``steps`` Lanczos steps on the SPD operator (a lower bound of λ_max, within a few
    % for a GGN after ~8 steps). Fixed start vector (seed 0), so it consumes no noise. Cost: ``steps``
    products."""
    v = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    V = [v / v.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(min(steps, n)):
        w = matvec(V[j]).double()
        alphas.append(float(V[j] @ w))
        Vm = torch.stack(V)
        w = w - Vm.T @ (Vm @ w)
        w = w - Vm.T @ (Vm @ w)
        beta = float(w.norm())
        if beta <= 1e-12 * max(abs(a) for a in alphas) or j + 1 == min(steps, n):
            break
        betas.append(beta)
        V.append(w / beta)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas[: len(alphas) - 1], dtype=torch.float64)
        T = T + torch.diag(off, 1) + torch.diag(off, -1)
    lam = float(torch.linalg.eigvalsh(T)[-1]) if torch.isfinite(T).all() else math.inf
    if not (math.isfinite(lam) and lam > 0):
        fix = "" if math.isfinite(lam) else " (a NaN/inf reached the curvature: lower --lr or --damping)"
        raise TrainingError(
            f"TNGD: the curvature's largest eigenvalue estimate is {lam!r}; it must be finite and > 0{fix}."
        )
    return lam


def ou_transition(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    b: torch.Tensor,
    t: float,
    kappa0: float,
    generator: torch.Generator | None,
    integrator: Integrator = "krylov",
    dense: torch.Tensor | None = None,
    dt: float = 0.1,
    krylov_tol: float = 1e-6,
    max_krylov: int = 100,
) -> tuple[torch.Tensor, int]:
    """Sample x(t) of the ideal device dx = -(A x - b) dt + sqrt(2κ0) dW (time in τ) from x(0) = x0, in the
    units given (TNGD calls it with the normalised A' = sA, b' = βb).

    Returns (x(t), number of A-products used). ``dense`` (the matrix A) is required for ``"dense"``.
    """
    if t == 0:
        return x0.clone(), 0
    noise = (
        _rng.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device) if kappa0 > 0 else None
    )
    if integrator == "dense":
        assert dense is not None
        evals, Q = torch.linalg.eigh(dense.double())
        r = Q.T @ (dense.double() @ x0.double() - b.double())
        x = x0.double() - Q @ (_phi(evals, t) * r)
        if noise is not None:
            x = x + Q @ (_psi(evals, t, kappa0) * (Q.T @ noise.double()))
        return x.to(x0.dtype), 0
    if integrator == "krylov":
        r = matvec(x0) - b
        step, m1 = _lanczos_apply(matvec, r, lambda a: _phi(a, t), krylov_tol, max_krylov)
        x = x0 - step
        m2 = 0
        if noise is not None:
            kick, m2 = _lanczos_apply(matvec, noise, lambda a: _psi(a, t, kappa0), krylov_tol, max_krylov)
            x = x + kick
        return x, 1 + m1 + m2
    # Euler–Maruyama with a stability-capped step
    v = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0), dtype=x0.dtype).to(x0.device)
    lam = 1.0
    for _ in range(20):
        w = matvec(v)
        lam = float(w.norm() / v.norm())
        v = w / w.norm()
    h = min(dt, 1.0 / (1.1 * lam))
    n = max(1, math.ceil(t / h))
    h = t / n
    x = x0.clone()
    for _ in range(n):
        x = x - h * (matvec(x) - b)
        if kappa0 > 0:
            x = x + math.sqrt(2 * kappa0 * h) * _rng.randn(
                x.shape, generator=generator, dtype=x.dtype, device=x.device
            )
    return x, 20 + n


def _arnoldi_flow(
    M: Callable[[torch.Tensor], torch.Tensor], r: torch.Tensor, t: float, tol: float, max_iter: int
) -> torch.Tensor:
    """t·φ1(tM) r = ∫_0^t e^{Ms} r ds for a (non-symmetric) M given by its product v ↦ M v, by Arnoldi with full
    re-orthogonalisation; the small problem is one matrix exponential of the augmented Hessenberg matrix.
    O(m) products."""
    beta0 = float(r.norm())
    if beta0 == 0.0:
        return torch.zeros_like(r)
    n = r.numel()
    V = [r / beta0]
    H = torch.zeros(max_iter + 1, max_iter, dtype=r.dtype)
    prev: torch.Tensor | None = None
    est = torch.zeros_like(r)
    for j in range(min(max_iter, n)):
        w = M(V[j])
        Vm = torch.stack(V)
        h = Vm @ w
        w = w - Vm.T @ h
        h2 = Vm @ w
        w = w - Vm.T @ h2
        H[: j + 1, j] = h + h2
        beta = float(w.norm())
        m = j + 1
        aug = torch.zeros(m + 1, m + 1, dtype=r.dtype)
        aug[:m, :m] = t * H[:m, :m]
        aug[0, m] = t
        coef = torch.linalg.matrix_exp(aug)[:m, m]
        est = beta0 * (Vm.T @ coef)
        done = prev is not None and float((est - prev).norm()) <= tol * float(est.norm())
        if done or beta <= 1e-12 * float(H[: j + 1, : j + 1].abs().max()):
            break
        H[j + 1, j] = beta
        V.append(w / beta)
        prev = est
    return est


class _Profiled:
    """A RC hardware profile's surrogate holding (A', b'), evaluated in O(m·N²) (see the module docstring:
    exact mean by Arnoldi; noise from the symmetric part of the drift). :meth:`load` builds the device once
    per (A', b'); :meth:`run` evolves it, as often as the device keeps running on that load."""

    def __init__(self, profile: Any, cfg: TNGDConfig, generator: torch.Generator) -> None:
        self.profile, self.cfg, self.generator = profile, cfg, generator

    def load(self, A: torch.Tensor, b: torch.Tensor, *, kappa0: float) -> Any:
        # the drift as its factors M = -f K G_eff: Krylov needs only products (O(n²) each), not the dense M
        return self.profile.instantiate_factored(
            A.double(), b.double(), generator=self.generator, kappa0=kappa0
        )

    def run(self, inst: Any, x0: torch.Tensor, t: float) -> torch.Tensor:
        n = x0.numel()
        beta_hw = float(inst.input_scale[0])
        u = inst.u.reshape(-1)
        x = x0.double() * (beta_hw / inst.matrix_scale)
        x = x + _arnoldi_flow(inst.matvec, inst.matvec(x) + u, t, self.cfg.krylov_tol, self.cfg.max_krylov)
        if inst.kappa0 > 0:
            # dx = M x dt + Q dW with D = QQᵀ ≈ d̄ I and M ≈ its symmetric part: the OU kick of -M_sym
            d_bar = float(inst.diffusion_diag.mean())
            xi = _rng.randn(n, generator=self.generator, dtype=torch.float64, device=x.device)
            kick, _ = _lanczos_apply(
                lambda v: -0.5 * (inst.matvec(v) + inst.rmatvec(v)),
                xi,
                lambda a: _psi(a, t, d_bar / 2),
                self.cfg.krylov_tol,
                self.cfg.max_krylov,
            )
            x = x + kick
        y = inst.readout(x[None])[0]  # observe = I: the state is the cell voltages
        return y * (inst.matrix_scale / beta_hw)


@dataclass
class _Load:
    """One (A, b) as the device holds it: the scales s = 1/λ̂_max and β = 1/max|b| it was loaded with, and
    ``run(x0', t) -> (x'(t), GGN products)`` in the device's units. A delay runs the same load on: the device
    keeps its couplings, so nothing is re-estimated, re-quantized or loaded again."""

    s: float
    beta: float
    run: Callable[[torch.Tensor, float], tuple[torch.Tensor, int]]
    values_loaded: int


class TNGDPreconditioner:
    """Replace the gradient by the TNGD device state; call ``step(x, y)`` after ``loss.backward()``.

    Args:
        model: the network.
        config: :class:`TNGDConfig`.
        generator: torch generator for the device noise.

    Attributes:
        last_step: analog time (τ), values loaded/read, GGN-vector products, scale s and damping bumps of the
            last step.
        analog_time_tau: total analog time so far (τ).
        damping_bumps: device loads retried with extra damping (hardware profile, ``pd_guard``).
    """

    def __init__(
        self, model: nn.Module, config: TNGDConfig | None = None, generator: torch.Generator | None = None
    ) -> None:
        self.model = model
        self.config = config or TNGDConfig()
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.steps = 0
        self.state: torch.Tensor | None = None
        self._prev_system: tuple[GGNOperator, torch.Tensor, torch.Tensor | None] | None = None
        self.analog_time_tau = 0.0
        self.damping_bumps = 0
        #: wall-clock seconds spent simulating the device (ou_transition / the profile's device calls)
        self.simulation_s = 0.0
        self.last_step: dict[str, float] = {}
        #: the (A, b) the device holds after the last evolution (None when nothing was loaded)
        self._held: _Load | None = None

    def _dense(self, A: GGNOperator) -> torch.Tensor | None:
        c = self.config
        if c.backend == "ideal" and c.integrator != "dense":
            return None
        if A.n > c.max_dense_params:
            where = "a hardware profile" if c.backend != "ideal" else "integrator='dense'"
            raise TrainingError(
                f"TNGD on {where} loads the dense {A.n}x{A.n} GGN, but N = {A.n} parameters exceeds "
                f"max_dense_params = {c.max_dense_params}. Use a smaller model, raise "
                "TNGDConfig.max_dense_params (O(N²) memory, O(N³) time), or run the ideal device "
                "(backend 'ideal', integrator 'krylov': matrix-free)."
            )
        return A.dense(c.max_dense_params)

    def _load(
        self, A: GGNOperator, dense: torch.Tensor | None, b: torch.Tensor, count: bool = True
    ) -> tuple[_Load, int]:
        """Normalise (s, β) and load (A', b') on the backend. Returns the load and the GGN products spent (the
        λ̂_max estimate on the matrix-free path). ``count``: book the damping guard's retries (off when a
        resumed run rebuilds the load the device already held)."""
        c = self.config
        kappa0 = c.effective_kappa0
        if dense is not None:
            lam = lambda_max_estimate(lambda v: dense.double() @ v, A.n, c.lambda_steps)
            products = 0
        else:
            lam = lambda_max_estimate(lambda v: A.matvec(v.to(b.dtype)).double(), A.n, c.lambda_steps)
            products = min(c.lambda_steps, A.n)
        s, beta = 1.0 / lam, 1.0 / float(b.abs().max())
        bs = b * beta
        if c.backend == "ideal":

            def ideal(xs0: torch.Tensor, t: float) -> tuple[torch.Tensor, int]:
                return ou_transition(
                    lambda v: s * A.matvec(v),
                    xs0,
                    bs,
                    t,
                    kappa0,
                    self.generator,
                    c.integrator,
                    None if dense is None else dense * s,
                    c.dt,
                    c.krylov_tol,
                    c.max_krylov,
                )

            return _Load(s, beta, ideal, 0), products
        from thermotrain.models import solve
        from thermotrain.training._solvers import _device_call

        assert dense is not None
        As = 0.5 * (dense + dense.T).double() * s
        n = A.n
        t0 = time.perf_counter()
        if c.integrator == "dense":
            # models.solve builds the device on each call; the guard finds the matrix that loads on the first
            held: dict[str, torch.Tensor] = {}

            def exact(xs0: torch.Tensor, t: float) -> tuple[torch.Tensor, int]:
                def call(M: torch.Tensor) -> Any:
                    return solve(
                        M,
                        bs.double(),
                        backend=c.backend,
                        readout="state",
                        generator=self.generator,
                        t=t,
                        x0=xs0.double(),
                        kappa0=kappa0,
                    )

                if "M" in held:
                    result = _device_call(call, held["M"], scale=s)
                else:
                    result, held["M"] = self._guarded(call, As, s, count)
                return result.x.reshape(b.shape), 0

            load = _Load(s, beta, exact, n * (n + 1) // 2 + n)
        else:
            device = _Profiled(c.backend, c, self.generator)
            inst = self._guarded(lambda M: device.load(M, bs, kappa0=kappa0), As, s, count)[0]

            def fast(xs0: torch.Tensor, t: float) -> tuple[torch.Tensor, int]:
                return _device_call(lambda _M: device.run(inst, xs0, t), As, scale=s), 0

            load = _Load(s, beta, fast, n * (n + 1) // 2 + n)
        self.simulation_s += time.perf_counter() - t0
        return load, products

    def _guarded(
        self, call: Callable[[torch.Tensor], Any], As: torch.Tensor, s: float, count: bool
    ) -> tuple[Any, torch.Tensor]:
        """``call(As + e·I)`` with the damping guard: the profile rescales and re-quantizes A' + e·I, so the
        deficit it names moves; grow the extra damping e geometrically (at least doubling) for up to 12 tries
        (one without ``pd_guard``), a bump counted once per load. Returns (result, the matrix that loaded)."""
        from thermotrain._errors import UnloadableMatrixError
        from thermotrain.training._solvers import _device_call

        c = self.config
        extra, M = 0.0, As
        for attempt in range(12 if c.pd_guard else 1):
            try:
                result = _device_call(call, M, scale=s)
                break
            except TrainingError as exc:
                cause = exc.__cause__
                if not isinstance(cause, UnloadableMatrixError) or attempt == (11 if c.pd_guard else 0):
                    raise
                extra = max(2.0 * extra, extra + 1.5 * cause.extra_damping)
                M = As + extra * torch.eye(As.shape[0], dtype=As.dtype, device=As.device)
        if extra > 0 and count:
            self.damping_bumps += 1
        return result, M

    def _run(self, load: _Load, x0: torch.Tensor, t: float) -> tuple[torch.Tensor, int]:
        """x(t) in the caller's units from the caller's x0 under ``load``. Returns (x, GGN products)."""
        t0 = time.perf_counter()
        xs, used = load.run(x0 * (load.beta / load.s), t)
        self.simulation_s += time.perf_counter() - t0
        return (xs.reshape(x0.shape) * (load.s / load.beta)).to(x0.dtype), used

    def _evolve(
        self, A: GGNOperator, dense: torch.Tensor | None, x0: torch.Tensor, b: torch.Tensor, t: float
    ) -> tuple[torch.Tensor, int]:
        """x(t) in the caller's units: normalise (s, β), load, run the backend from the scaled warm start,
        rescale; the load is kept for a delay (``self._held``). Returns (x, GGN products)."""
        self._held = None
        if t == 0:
            return x0.clone(), 0
        if float(b.abs().max()) == 0.0:
            return torch.zeros_like(x0), 0
        load, products = self._load(A, dense, b)
        self._held = load
        x, used = self._run(load, x0, t)
        return x, products + used

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        c = self.config
        g = flat_grad(self.model)
        if not torch.isfinite(g).all():
            raise TrainingError(f"Non-finite gradient at step {self.steps}; the TNGD update was skipped.")
        lam = resolve_schedule(c.damping, self.steps, "damping")
        if lam <= 0:
            raise TrainingError(
                f"TNGD damping schedule returned {lam} at step {self.steps}; it must stay > 0."
            )
        with torch.enable_grad():
            A = GGNOperator(self.model, x, y, lam, c.loss)
        dense = self._dense(A) if c.analog_time > 0 else None
        products = 0
        bumps0 = self.damping_bumps
        x0 = self.state if (c.warm_start and self.state is not None) else g
        analog = c.analog_time
        if c.delay > 0 and self._prev_system is not None and self.state is not None:
            # the device runs t_d more on the (A, b) it still holds: no new estimate of s, no new load
            held = self._held
            A_prev, b_prev, dense_prev = self._prev_system
            if held is None and float(b_prev.abs().max()) == 0.0:
                x0 = torch.zeros_like(self.state)
            else:
                if held is None:  # a resumed run: rebuild the load the device held (its retries uncounted)
                    held = self._load(A_prev, dense_prev, b_prev, count=False)[0]
                x0, used = self._run(held, self.state, c.delay)
                products += used
            analog += c.delay
        est, used = self._evolve(A, dense, x0, g, c.analog_time)
        products += used
        if not torch.isfinite(est).all():
            raise TrainingError(self._non_finite(lam))
        self.state = est
        self._prev_system = (A, g, dense) if c.delay > 0 else None
        set_flat_grad(self.model, est)
        bdz = A.z.numel()
        self.analog_time_tau += analog
        ideal_loaded = bdz * (bdz + 2 * A.n) + A.n
        self.last_step = {
            "analog_time_tau": analog,
            "values_loaded": float(
                ideal_loaded if c.backend == "ideal" else (self._held.values_loaded if self._held else 0)
            ),
            "values_read": float(A.n),
            "ggn_products": float(products),
            "damping_bumps": float(self.damping_bumps - bumps0),
        }
        self.steps += 1

    def _non_finite(self, lam: float) -> str:
        """The error of a non-finite device state: the settings that can cause it (noise κ0 far above the
        device's full scale, a learning rate that blew the weights up, a damping too small for the curvature,
        the Euler step), each with its flag (``thermotrain train``) and value."""
        c = self.config
        kappa0 = c.effective_kappa0
        fixes = []
        if kappa0 > 1.0:  # noise above the device's full scale comes first
            fixes.append(
                f"lower the device noise (--kappa0, now {kappa0:g}; its full scale is 1, default 0.01)"
            )
        if lam > MAX_DAMPING:  # the Python API (the command line refuses it): the scaled state overflows
            fixes.insert(0, f"lower the damping (--damping, now {lam:g}; at most {MAX_DAMPING:g})")
        fixes.append("lower the learning rate (--lr)")
        if lam < 1.0:
            fixes.append(f"raise the damping (--damping, now {lam:.3g})")
        if 0.0 < kappa0 <= 1.0:
            fixes.append(f"lower the device noise (--kappa0, now {kappa0:g})")
        if c.integrator == "euler":
            fixes.append(f"reduce the Euler step (TNGDConfig.dt, now {c.dt:g} τ)")
        return f"TNGD device state non-finite at step {self.steps + 1}; {join_words(fixes)}."

    def device_log(self) -> list[dict[str, Any]]:
        """TNGD runs the device continuously (one ``analog_time`` per step, in ``last_step``): no per-call
        readout plans to report."""
        return []

    def device_stats(self) -> dict[str, Any]:
        return {"damping_bumps": self.damping_bumps, "device_simulation_s": self.simulation_s}

    def state_dict(self) -> dict[str, Any]:
        prev = None
        if self._prev_system is not None:
            A, b, _ = self._prev_system
            prev = {"theta": A.theta, "x": A.x, "y": A.y, "damping": A.damping, "b": b}
        return {
            "steps": self.steps,
            "state": self.state,
            "analog_time_tau": self.analog_time_tau,
            "damping_bumps": self.damping_bumps,
            "generator": self.generator.get_state(),
            "prev_system": prev,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.state = int(state["steps"]), state["state"]
        self.analog_time_tau = float(state["analog_time_tau"])
        self.damping_bumps = int(state.get("damping_bumps", 0))
        self.generator.set_state(state["generator"])
        prev = state.get("prev_system")
        self._prev_system, self._held = None, None
        if prev is not None:
            with torch.enable_grad():
                A = GGNOperator(
                    self.model, prev["x"], prev["y"], prev["damping"], self.config.loss, prev["theta"]
                )
            self._prev_system = (A, prev["b"], self._dense(A))
