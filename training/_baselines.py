"""Natural-gradient baselines: exact NGD (dense solve) and NGD with conjugate gradient (matrix-free).

Both replace the gradient g by the solution of (GGN + λI) x = g on the current batch and leave the step to a
torch optimizer (SGD by default in the harness):

- ``method="dense"``: form A (N×N), Cholesky solve. O(B·d_z·N² + N³) per step; small models only. This is the
  reference TNGD converges to as t → ∞.
- ``method="cg"``: ``cg_iters`` conjugate-gradient iterations with GGN-vector products. O(c·B·d_z·N) per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from thermotrain._errors import TrainingError
from thermotrain.training._ggn import GGNOperator, LossName, flat_grad, set_flat_grad
from thermotrain.training._kfac import Schedule, resolve_schedule

__all__ = ["NGDConfig", "NGDPreconditioner", "conjugate_gradient"]


def conjugate_gradient(
    matvec: Any, b: torch.Tensor, x0: torch.Tensor | None = None, max_iter: int = 10, tol: float = 1e-10
) -> tuple[torch.Tensor, int]:
    """Solve A x = b for SPD A given by ``matvec``; stops after ``max_iter`` products or ‖r‖ ≤ tol·‖b‖.

    Returns the estimate and the number of matrix-vector products used.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - matvec(x) if x0 is not None else b.clone()
    used = 1 if x0 is not None else 0
    p = r.clone()
    rr = r @ r
    b_norm = float(b.norm()) or 1.0
    for _ in range(max_iter):
        if math.sqrt(float(rr)) <= tol * b_norm:
            break
        Ap = matvec(p)
        used += 1
        pAp = p @ Ap
        if float(pAp) <= 0:
            raise TrainingError(f"CG met non-positive curvature pᵀAp = {float(pAp):.3g}; raise the damping.")
        alpha = rr / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, used


@dataclass(frozen=True)
class NGDConfig:
    """Natural-gradient baseline settings.

    Attributes:
        damping: λ added to the GGN (number or schedule, > 0).
        method: ``"cg"`` (matrix-free) or ``"dense"`` (exact solve; N ≤ ``max_dense_params``).
        cg_iters: CG iterations per step (c in the O(c·b·N) cost).
        warm_start: start CG from the previous solution.
        loss: loss whose GGN is used (``"cross_entropy"`` or ``"mse"``; mean-reduced).
        max_dense_params: size limit of the dense path.
    """

    damping: Schedule = 1e-2
    method: Literal["cg", "dense"] = "cg"
    cg_iters: int = 10
    warm_start: bool = False
    loss: LossName = "cross_entropy"
    max_dense_params: int = 8192

    def __post_init__(self) -> None:
        if not callable(self.damping) and not (math.isfinite(self.damping) and self.damping > 0):
            raise TrainingError(f"NGD damping must be > 0; got {self.damping!r}.")
        if self.method not in ("cg", "dense"):
            raise TrainingError(f"NGD method must be 'cg' or 'dense'; got {self.method!r}.")
        if self.cg_iters < 1:
            raise TrainingError(f"cg_iters must be ≥ 1; got {self.cg_iters}.")


class NGDPreconditioner:
    """Replace the gradient by (GGN + λI)⁻¹ g on the batch; call ``step(x, y)`` after ``loss.backward()``."""

    def __init__(self, model: nn.Module, config: NGDConfig | None = None) -> None:
        self.model = model
        self.config = config or NGDConfig()
        self.steps = 0
        self.prev: torch.Tensor | None = None
        self.last_step: dict[str, float] = {}

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        g = flat_grad(self.model)
        if not torch.isfinite(g).all():
            raise TrainingError(f"Non-finite gradient at step {self.steps}; lower the learning rate.")
        lam = resolve_schedule(self.config.damping, self.steps, "damping")
        if lam <= 0:
            raise TrainingError(
                f"NGD damping schedule returned {lam} at step {self.steps}; it must stay > 0."
            )
        with torch.enable_grad():
            A = GGNOperator(self.model, x, y, lam, self.config.loss)
        if self.config.method == "dense":
            sol = A.solve(g, self.config.max_dense_params)
            products = 0
        else:
            x0 = self.prev if self.config.warm_start else None
            sol, products = conjugate_gradient(A.matvec, g, x0, self.config.cg_iters)
        if not torch.isfinite(sol).all():
            raise TrainingError(
                f"NGD update non-finite at step {self.steps}; raise the damping (now {lam:.3g})."
            )
        self.prev = sol
        set_flat_grad(self.model, sol)
        self.last_step = {"ggn_products": float(products)}
        self.steps += 1

    def device_log(self) -> list[dict[str, Any]]:
        """Digital: no device calls."""
        return []

    def device_stats(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "prev": self.prev}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.prev = int(state["steps"]), state["prev"]
