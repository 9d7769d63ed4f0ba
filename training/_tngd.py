"""Thermodynamic natural gradient descent (TNGD): the ideal device on A = GGN + λI, b = gradient.

Per training step k the device, holding A_k = J_kᵀ H_k J_k + λI and b_k = g_k, runs

    dx = -(A_k x - b_k) dt/τ + sqrt(2κ0/τ) dW           for an analog time t (in τ),

started from x0 = g_k (``warm_start=False``, or on the first step) or from the previous estimate
(``warm_start=True``). Its state at t is the update direction handed to a torch optimizer (SGD → TNGD,
Adam with β1 = β2 = 0 → TNGD-Adam). A delay t_d > 0 models the digital time between reading x and loading the
new (A, b): the device first runs t_d under the previous (A_{k-1}, b_{k-1}). Per step the device is loaded with
B·d_z(B·d_z + 2N) + N values (J, H_L, Jᵀ as resistor arrays and b) and N values are read.

The law of x(t) is exact OU: x(t) = x0 − φ_t(A)(A x0 − b) + ψ_t(A) ξ, ξ ~ N(0, I), with
φ_t(a) = (1 − e^{−a t})/a and ψ_t(a) = sqrt(κ0 (1 − e^{−2 a t})/a). Three integrators evaluate it:

- ``"krylov"`` (default, matrix-free): Lanczos on A with full re-orthogonalisation gives φ_t(A)r and ψ_t(A)ξ
  from m GGN-vector products (m adaptive, ≤ ``max_krylov``; stops when the estimate changes by < ``krylov_tol``
  relative). Exact up to that tolerance; O(m·B·d_z·N) digital work per step.
- ``"dense"``: form A (N ≤ ``max_dense_params``), eigendecompose, apply φ_t, ψ_t exactly. O(N³).
- ``"euler"``: Euler–Maruyama with δt = min(dt, 1/λ̂_max) τ (λ̂_max from 20 power iterations, ×1.1), the paper's
  simulation. Its mean converges to A⁻¹b exactly; the transient of a mode with eigenvalue a is (1 − aδt)^n
  instead of e^{−a t} (relative error ≈ a²δt·t/2 at fixed t) and its stationary covariance is
  κ0 A⁻¹(I − aδt/2)⁻¹ (bias O(aδt)). O((t/δt)·B·d_z·N) per step.

At t = 0 (and κ0 = 0, no warm start) TNGD is SGD exactly; as t → ∞ (κ0 = 0) it is NGD with damping λ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from thermotrain._errors import TrainingError
from thermotrain.training._ggn import GGNOperator, LossName, flat_grad, set_flat_grad
from thermotrain.training._kfac import Schedule, resolve_schedule

__all__ = ["TNGDConfig", "TNGDPreconditioner", "ou_transition"]

Integrator = Literal["krylov", "dense", "euler"]


@dataclass(frozen=True)
class TNGDConfig:
    """TNGD settings (immutable).

    Attributes:
        damping: λ added to the GGN (number or schedule, > 0; dimensionless).
        analog_time: t, the device time per step, in τ (0 → SGD).
        delay: t_d, time the device keeps running on the previous (A, b) before the new ones load, in τ.
        kappa0: noise strength κ0 (dimensionless; stationary Cov = κ0·A⁻¹).
        warm_start: start from the previous estimate instead of the gradient.
        integrator: ``"krylov"``, ``"dense"`` or ``"euler"`` (see the module docstring).
        dt: Euler step (τ); upper bound, reduced to 1/λ̂_max for stability.
        krylov_tol: relative tolerance of the Lanczos evaluation.
        max_krylov: maximum Lanczos iterations (GGN-vector products) per evaluation.
        max_dense_params: size limit of the dense integrator.
        loss: loss whose GGN is used (mean-reduced ``"cross_entropy"`` or ``"mse"``).
    """

    damping: Schedule = 1e-2
    analog_time: float = 50.0
    delay: float = 0.0
    kappa0: float = 0.0
    warm_start: bool = True
    integrator: Integrator = "krylov"
    dt: float = 0.1
    krylov_tol: float = 1e-6
    max_krylov: int = 100
    max_dense_params: int = 4096
    loss: LossName = "cross_entropy"

    def __post_init__(self) -> None:
        if not callable(self.damping) and not (math.isfinite(self.damping) and self.damping > 0):
            raise TrainingError(
                f"TNGD damping must be > 0 (it bounds the device's slowest rate); got {self.damping!r}."
            )
        for name in ("analog_time", "delay", "kappa0"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise TrainingError(f"TNGD {name} must be a finite number ≥ 0; got {value!r}.")
        if self.integrator not in ("krylov", "dense", "euler"):
            raise TrainingError(f"integrator must be 'krylov', 'dense' or 'euler'; got {self.integrator!r}.")
        if not (self.dt > 0 and self.krylov_tol > 0 and self.max_krylov >= 1):
            raise TrainingError("dt (τ), krylov_tol and max_krylov must be positive.")


def _phi(a: torch.Tensor, t: float) -> torch.Tensor:
    """(1 − e^{−a t})/a, equal to t at a = 0."""
    return torch.where(a.abs() * t > 1e-12, -torch.expm1(-a * t) / a.clamp_min(1e-300), torch.full_like(a, t))


def _psi(a: torch.Tensor, t: float, kappa0: float) -> torch.Tensor:
    """sqrt(κ0 (1 − e^{−2 a t})/a): the standard deviation of the OU noise after time t."""
    return torch.sqrt(kappa0 * _phi(a, 2 * t))


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
    """Sample x(t) of dx = -(A x - b) dt + sqrt(2κ0) dW (time in τ) from x(0) = x0.

    Returns (x(t), number of A-products used). ``dense`` (the matrix A) is required for ``"dense"``.
    """
    if t == 0:
        return x0.clone(), 0
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype) if kappa0 > 0 else None
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
    v = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0), dtype=x0.dtype)
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
            x = x + math.sqrt(2 * kappa0 * h) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x, 20 + n


class TNGDPreconditioner:
    """Replace the gradient by the TNGD device state; call ``step(x, y)`` after ``loss.backward()``.

    Args:
        model: the network.
        config: :class:`TNGDConfig`.
        generator: torch generator for the device noise.

    Attributes:
        last_step: analog time (τ), values loaded/read and GGN-vector products of the last step.
        analog_time_tau: total analog time so far (τ).
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
        self.last_step: dict[str, float] = {}

    def _evolve(
        self, A: GGNOperator, dense: torch.Tensor | None, x0: torch.Tensor, b: torch.Tensor, t: float
    ):
        c = self.config
        return ou_transition(
            A.matvec,
            x0,
            b,
            t,
            c.kappa0,
            self.generator,
            c.integrator,
            dense,
            c.dt,
            c.krylov_tol,
            c.max_krylov,
        )

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
        dense = A.dense(c.max_dense_params) if c.integrator == "dense" else None
        products = 0
        x0 = self.state if (c.warm_start and self.state is not None) else g
        analog = c.analog_time
        if c.delay > 0 and self._prev_system is not None and self.state is not None:
            A_prev, b_prev, dense_prev = self._prev_system
            x0, used = self._evolve(A_prev, dense_prev, self.state, b_prev, c.delay)
            products += used
            analog += c.delay
        est, used = self._evolve(A, dense, x0, g, c.analog_time)
        products += used
        if not torch.isfinite(est).all():
            raise TrainingError(
                f"TNGD device state non-finite at step {self.steps}; raise the damping (now {lam:.3g}) or reduce dt."
            )
        self.state = est
        self._prev_system = (A, g, dense) if c.delay > 0 else None
        set_flat_grad(self.model, est)
        bdz = A.z.numel()
        self.analog_time_tau += analog
        self.last_step = {
            "analog_time_tau": analog,
            "values_loaded": float(bdz * (bdz + 2 * A.n) + A.n),
            "values_read": float(A.n),
            "ggn_products": float(products),
        }
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        prev = None
        if self._prev_system is not None:
            A, b, _ = self._prev_system
            prev = {"theta": A.theta, "x": A.x, "y": A.y, "damping": A.damping, "b": b}
        return {
            "steps": self.steps,
            "state": self.state,
            "analog_time_tau": self.analog_time_tau,
            "generator": self.generator.get_state(),
            "prev_system": prev,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.state = int(state["steps"]), state["state"]
        self.analog_time_tau = float(state["analog_time_tau"])
        self.generator.set_state(state["generator"])
        prev = state.get("prev_system")
        self._prev_system = None
        if prev is not None:
            with torch.enable_grad():
                A = GGNOperator(
                    self.model, prev["x"], prev["y"], prev["damping"], self.config.loss, prev["theta"]
                )
            dense = A.dense(self.config.max_dense_params) if self.config.integrator == "dense" else None
            self._prev_system = (A, prev["b"], dense)
