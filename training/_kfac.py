"""K-FAC as a preconditioner next to any torch optimizer; digital or thermodynamic linear algebra.

For a layer s = W a (a: input with a trailing 1 when there is a bias, s: pre-activation), K-FAC approximates the
Fisher block of vec(W) by A ⊗ G with

    A = E[a aᵀ]                 (input covariance, (d_in+1)²)
    G = E[ĝ ĝᵀ],  ĝ = ∂ℓ_n/∂s   (output-gradient covariance, d_out²; per-example gradients of the loss)

and preconditions the gradient by

    U = (G + λI)⁻¹ ∇W (A + λI)⁻¹.

Conventions follow curvlinops' ``KFACLinearOperator`` with ``fisher_type="empirical"``, ``kfac_approx="expand"``,
``separate_weight_and_bias=False`` and a mean-reduced loss: weight-sharing positions (conv patches, sequence
positions) count as extra rows of A (averaged) and of G (summed); ĝ = B·∂L/∂s for a batch of B.

**Weight sharing (sequences, patches): the expand form.** A Linear applied to an input of shape
(B, T₁, …, T_k, d_in) shares its weights over the T = T₁⋯T_k positions (tokens of a transformer, patches of a
ViT, output pixels of a Conv2d after unfolding). Its gradient is ∇W = Σ_n Σ_t ĝ_{n,t} a_{n,t}ᵀ / B, and K-FAC
uses the *expand* approximation of Eschenhagen, Immer, Turner, Schneider & Hennig, "Kronecker-Factored
Approximate Curvature for Modern Neural Network Architectures", NeurIPS 2023 (arXiv:2311.00636, Sec. 3):
every position is treated as one more example,

    A = 1/(B·T) Σ_n Σ_t a_{n,t} a_{n,t}ᵀ,      G = 1/B Σ_n Σ_t ĝ_{n,t} ĝ_{n,t}ᵀ,   ĝ_{n,t} = ∂ℓ_n/∂s_{n,t},

i.e. the per-example Fisher (1/B)Σ_n (Σ_t a⊗ĝ)(Σ_t a⊗ĝ)ᵀ with the cross-position terms t ≠ t' dropped and
E[aaᵀ ⊗ ĝĝᵀ] ≈ E[aaᵀ] ⊗ E[ĝĝᵀ] over the B·T rows (so A is a mean over rows and G a sum over positions). With
T = 1 this is plain K-FAC, unchanged. The paper proves expand exact for deep *linear* networks in its "expand
setting" (a loss term per position); a classifier that pools the tokens (a ViT's class token) is its
"reduce setting", where expand is an approximation — the paper trains a ViT with both flavours and finds
little difference. Implementation: the batch is the leading dimension of the layer's input and output (an
input without one raises ``TrainingError``); all other leading dimensions are flattened into rows, so A
comes from (B·T, d_in+1) rows, G from (B·T, d_out) rows scaled by B, and the low-rank path's ∇W = SᵀX holds
over those B·T rows exactly as over B (it is chosen when rows·(m²+n²+mn) < 0.8·mn(m+n), i.e. less often as
T grows). A model must not fold its tokens into the batch dimension before a Linear (a (B·T, d) input would
make G T times too large).

**What is not preconditioned.** Only ``nn.Linear`` and ungrouped ``nn.Conv2d`` modules get Kronecker factors.
Every other trainable parameter keeps its plain (mini-batch) gradient, which the outer optimizer (SGD with
momentum) applies as for first-order training: LayerNorm/BatchNorm weights and biases, and bare
``nn.Parameter`` s such as a ViT's class token and positional embedding (their module is listed in
:attr:`KFACPreconditioner.fallback_layers`). A ViT's patch embedding is an ``nn.Linear`` on the flattened
patches (B, T, C·p²) and is preconditioned like any other token-wise Linear (the expand form above, the same
factors a stride-p Conv2d with kernel p gets from unfolding); so are the attention projections (a fused
qkv Linear, the output projection) and both MLP Linears of every block, and the classifier head (T = 1).

Where the inverses come from is a :class:`~thermotrain.training.CurvatureSolver`:

- ``ExactSolver`` — digital K-FAC: Cholesky inverses, O(d³) per factor every ``inv_update_steps``;
- ``AnalogSolver`` — **thermodynamic K-FAC**: ``mode="inverse"`` loads each damped factor and reads its inverse
  from the stationary covariance (κ0·M⁻¹); ``mode="solve"`` solves (G+λI)Y = ∇W and (A+λI)Uᵀ = Yᵀ directly
  on the device every step (mean readout), warm-started from the previous update.

Cost per step for a layer with factor sizes m = d_out, n = d_in+1 and batch B (T weight-sharing positions):
O(B·T·(m² + n²)) to accumulate factors, O(m³ + n³) per inverse update (digital) or m² + n² values loaded and
2 × analog time (thermodynamic inverse), O(m²n + mn²) to apply.

Usage (the kfac-pytorch shape)::

    precond = KFACPreconditioner(model, KFACConfig(damping=1e-3))
    loss.backward(); precond.step(); optimizer.step()
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from thermotrain._errors import TrainingError
from thermotrain.training._solvers import CurvatureSolver, ExactSolver

__all__ = ["KFACConfig", "KFACPreconditioner", "Schedule", "resolve_schedule"]

log = logging.getLogger(__name__)

_MAX_PASSES = 64  # recorded forward passes per layer between two step() calls

Schedule = float | Callable[[int], float]
"""A hyperparameter given as a constant or as a function of the step count (0-based)."""


def resolve_schedule(value: Schedule, step: int, name: str) -> float:
    """Evaluate a constant-or-callable hyperparameter at ``step``; non-finite values raise ``TrainingError``."""
    out = float(value(step)) if callable(value) else float(value)
    if not math.isfinite(out):
        raise TrainingError(f"{name} evaluated to {out} at step {step}; it must be a finite number.")
    return out


@dataclass(frozen=True)
class KFACConfig:
    """K-FAC hyperparameters (immutable; change one with ``dataclasses.replace``).

    Attributes:
        damping: λ added to both factors (dimensionless, same units as the Fisher); number or schedule.
            A value ≤ 0 raises ``TrainingError``; a positive value below ``min_damping`` is raised to it.
        min_damping: floor applied to the damping (guards schedules that decay towards 0).
        factor_decay: running-average weight ρ: F ← ρ·F + (1-ρ)·F_batch (the first batch initialises F).
        factor_update_steps: recompute the factors every this many steps (int or schedule).
        inv_update_steps: recompute the inverses (or reload the device matrices) every this many steps.
        mode: ``"inverse"`` (invert each damped factor; covariance readout on analog backends) or ``"solve"``
            (solve for the update every step; mean readout on analog backends).
        skip_layers: module names (or class names) left on the plain gradient.
        kl_clip: if set, scale all updates by ν = min(1, sqrt(kl_clip / (lr²·Σ_l ⟨U_l, ∇W_l⟩))) (the
            kfac-pytorch trust region; nats). ``None`` leaves the preconditioned gradient exact.
        lr: the outer optimizer's learning rate (number or schedule), used only by ``kl_clip``.
    """

    damping: Schedule = 1e-3
    min_damping: float = 1e-8
    factor_decay: float = 0.95
    factor_update_steps: Schedule = 1
    inv_update_steps: Schedule = 10
    mode: Literal["inverse", "solve"] = "inverse"
    skip_layers: tuple[str, ...] = ()
    kl_clip: float | None = None
    lr: Schedule = 1.0

    def __post_init__(self) -> None:
        if not callable(self.damping) and not (math.isfinite(self.damping) and self.damping > 0):
            raise TrainingError(
                f"damping must be > 0 (it keeps (G+λI) and (A+λI) invertible); got {self.damping!r}. "
                "Typical values: 1e-4 … 1e-1."
            )
        if not (math.isfinite(self.min_damping) and self.min_damping > 0):
            raise TrainingError(f"min_damping must be > 0; got {self.min_damping!r}.")
        if not 0.0 <= self.factor_decay < 1.0:
            raise TrainingError(f"factor_decay must lie in [0, 1); got {self.factor_decay!r}.")
        for name in ("factor_update_steps", "inv_update_steps"):
            value = getattr(self, name)
            if not callable(value) and not (float(value) >= 1 and float(value) == int(value)):
                raise TrainingError(f"{name} must be an integer ≥ 1 (steps) or a schedule; got {value!r}.")
        if self.kl_clip is not None and not (math.isfinite(self.kl_clip) and self.kl_clip > 0):
            raise TrainingError(f"kl_clip must be > 0 or None; got {self.kl_clip!r}.")
        if self.mode not in ("inverse", "solve"):
            raise TrainingError(f"mode must be 'inverse' or 'solve'; got {self.mode!r}.")


class _InverseFactor:
    """A damped factor's inverse as an operator: an explicit inverse (matmul) or a Cholesky factor (two
    triangular solves). ``left(B)`` = (F+λI)⁻¹ B for B of shape (d, k): O(d²k) flops either way."""

    def __init__(self, inverse: torch.Tensor | None = None, cholesky: torch.Tensor | None = None) -> None:
        self.inverse, self.cholesky = inverse, cholesky

    def left(self, B: torch.Tensor) -> torch.Tensor:
        if self.inverse is not None:
            return self.inverse @ B
        assert self.cholesky is not None
        return torch.cholesky_solve(B.to(self.cholesky.dtype), self.cholesky).to(B.dtype)


class _Layer:
    """Per-layer K-FAC state: the rows the hooks captured this step, factors, inverses, the previous update."""

    def __init__(self, name: str, module: nn.Linear | nn.Conv2d) -> None:
        self.name = name
        self.module = module
        self.has_bias = module.bias is not None
        self.A: torch.Tensor | None = None
        self.G: torch.Tensor | None = None
        self.A_inv: torch.Tensor | None = None
        self.G_inv: torch.Tensor | None = None
        self.A_chol: torch.Tensor | None = None
        self.G_chol: torch.Tensor | None = None
        self.A_damped: torch.Tensor | None = None
        self.G_damped: torch.Tensor | None = None
        self.prev_update: torch.Tensor | None = None
        self._inputs: list[torch.Tensor] = []  # layer inputs of this step's recorded forward passes
        self._grads: list[torch.Tensor] = []  # ∂L/∂s of this step's recorded backward passes
        self._rows_A: list[torch.Tensor] | None = None
        self._probe: torch.Tensor | None = None

    # -- factor statistics ---------------------------------------------------------------------------
    def input_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Rows a of A: (B·T, d_in[+1]) — the expand form (module docstring): the T weight-sharing positions
        of each example (the middle dimensions of a Linear's (B, …, d_in) input; the unfolded patches of a
        Conv2d, in weight.view(out, -1) order) become rows next to the batch."""
        m = self.module
        if isinstance(m, nn.Conv2d):
            x = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
            x = x.transpose(1, 2)
        x = x.reshape(-1, x.shape[-1])
        if self.has_bias:
            x = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
        return x

    def output_rows(self, g: torch.Tensor) -> torch.Tensor:
        """Rows of ∂L/∂s: (B·T, d_out), in the same (example, position) order as :meth:`input_rows`."""
        if isinstance(self.module, nn.Conv2d):
            g = g.flatten(2).transpose(1, 2)
        return g.reshape(-1, g.shape[-1])

    def add_input(self, x: torch.Tensor) -> None:
        if len(self._inputs) >= _MAX_PASSES:
            raise TrainingError(
                f"K-FAC recorded {_MAX_PASSES} forward passes of layer {self.name!r} without a step(); call "
                "precond.step() after each backward, and evaluate under torch.no_grad() or model.eval()."
            )
        if x.dim() < 2:
            raise TrainingError(
                f"K-FAC needs a batch dimension: layer {self.name!r} got an input of shape {tuple(x.shape)}; "
                "pass a batch of shape (B, …, d_in) (x.unsqueeze(0) for one example)."
            )
        self._inputs.append(x.detach())

    def add_grad_output(self, g: torch.Tensor) -> None:
        self._grads.append(g.detach())

    def recorded(self) -> bool:
        return bool(self._inputs) and bool(self._grads)

    def rows_A(self) -> list[torch.Tensor]:
        if self._rows_A is None:
            self._rows_A = [self.input_rows(x) for x in self._inputs]
        return self._rows_A

    def check_recorded_finite(self) -> None:
        """Raise before any factor changes if a recorded row would make A or G non-finite.

        The column sums of squares are the diagonals of XᵀX and SᵀS; by Cauchy–Schwarz they bound every
        entry, so a finite diagonal means a finite factor. Cost O(rows·d)."""
        for rows in [*self.rows_A(), *(self.output_rows(g) for g in self._grads)]:
            if not bool(torch.isfinite(rows.square().sum(0)).all()):
                raise TrainingError(
                    f"K-FAC factors of layer {self.name!r} would be non-finite (NaN/inf activations or "
                    "gradients). Lower the learning rate or raise the damping; the factors were not updated."
                )

    def update_factors(self, decay: float) -> bool:
        """F ← ρF + (1-ρ)·mean over this step's passes of the batch factor, in place (one fused GEMM per pass).

        A_batch = XᵀX / rows, G_batch = SᵀS · B (curvlinops' scaling); with rows = B·T and S = ∂L/∂s = ĝ/B
        this is the expand form A = Σ aaᵀ/(B·T), G = Σ ĝĝᵀ/B of the module docstring. The first update
        initialises F."""
        if not self.recorded():
            self.clear_sums()
            return False
        rows_a = self.rows_A()
        rows_g = [self.output_rows(g) for g in self._grads]
        batches = [g.shape[0] for g in self._grads]
        first = self.A is None or self.G is None
        if first:
            d_a, d_g = rows_a[0].shape[1], rows_g[0].shape[1]
            self.A = rows_a[0].new_zeros(d_a, d_a)
            self.G = rows_g[0].new_zeros(d_g, d_g)
        assert self.A is not None and self.G is not None
        w = 1.0 if first else 1.0 - decay
        for i, x in enumerate(rows_a):
            self.A.addmm_(
                x.T,
                x,
                beta=(0.0 if first else decay) if i == 0 else 1.0,
                alpha=w / (x.shape[0] * len(rows_a)),
            )
        for i, (s, b) in enumerate(zip(rows_g, batches)):
            self.G.addmm_(
                s.T, s, beta=(0.0 if first else decay) if i == 0 else 1.0, alpha=w * b / len(rows_g)
            )
        return True

    def clear_sums(self) -> None:
        self._inputs, self._grads, self._rows_A = [], [], None

    # -- gradient as a matrix ------------------------------------------------------------------------
    def grad_is_finite(self) -> bool:
        w, b = self.module.weight.grad, self.module.bias.grad if self.has_bias else None
        total = (w.sum() if w is not None else 0.0) + (b.sum() if b is not None else 0.0)
        return bool(torch.isfinite(torch.as_tensor(total)))

    def has_grad(self) -> bool:
        return self.module.weight.grad is not None

    def grad_matrix(self) -> torch.Tensor | None:
        w = self.module.weight
        if w.grad is None:
            return None
        g = w.grad.reshape(w.shape[0], -1)
        if self.has_bias:
            b = self.module.bias.grad
            g = torch.cat(
                [g, (b if b is not None else torch.zeros_like(self.module.bias)).unsqueeze(1)], dim=1
            )
        return g

    def low_rank_gradient(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(S, X) with ∇W = SᵀX over this step's B·T rows (one recorded pass), or None when ∇W is not that
        product.

        Checked on a fixed random probe v: ‖∇W v − Sᵀ(X v)‖ ≤ 1e-4 (‖∇W‖‖v‖ + ‖S‖‖X v‖) — O(rows·(m+n) + mn)
        — so a gradient changed after ``backward`` (clipping, accumulation, weight decay) uses the dense path."""
        if len(self._inputs) != 1 or len(self._grads) != 1 or not self.has_grad():
            return None
        X, S = self.rows_A()[0], self.output_rows(self._grads[0])
        probe = self._probe
        if (
            probe is None
            or probe.shape[0] != X.shape[1]
            or probe.dtype != X.dtype
            or probe.device != X.device
        ):
            gen = torch.Generator().manual_seed(0)
            self._probe = torch.randn(X.shape[1], generator=gen, dtype=X.dtype).to(X.device)
        v = self._probe
        w = self.module.weight.grad.reshape(S.shape[1], -1)
        gv = w @ v[: w.shape[1]]
        norm_g = w.norm() ** 2
        if self.has_bias:
            b = self.module.bias.grad
            if b is None:
                return None
            gv = gv + b * v[-1]
            norm_g = norm_g + b.norm() ** 2
        xv = X @ v
        sv = S.T @ xv
        scale = float(norm_g.sqrt() * v.norm() + S.norm() * xv.norm())
        if not float((gv - sv).norm()) <= 1e-4 * scale:
            return None
        return S, X

    def set_grad_matrix(self, u: torch.Tensor) -> None:
        w = self.module.weight
        if self.has_bias:
            b = self.module.bias
            if b.grad is not None and b.grad.shape == b.shape:
                b.grad.copy_(u[:, -1])
            else:
                b.grad = u[:, -1].contiguous().to(b.dtype)
            u = u[:, :-1]
        if w.grad is not None and w.grad.shape == w.shape:
            w.grad.copy_(u.reshape(w.shape))
        else:
            w.grad = u.reshape(w.shape).contiguous().to(w.dtype)


class KFACPreconditioner:
    """Replace the gradients of Linear and Conv2d layers by their K-FAC-preconditioned version.

    Call :meth:`step` after ``loss.backward()`` and before ``optimizer.step()``. Hooks record layer inputs
    (forward) and output gradients (backward) while ``model.training`` and the current step is a factor-update
    step. Layers K-FAC does not support (anything else with trainable parameters, grouped convolutions) keep
    their plain gradient; their names are in :attr:`fallback_layers` and logged once.

    Args:
        model: the network (its Linear/Conv2d submodules are preconditioned).
        config: :class:`KFACConfig`.
        solver: a :class:`CurvatureSolver`; ``ExactSolver()`` (digital K-FAC) by default, an ``AnalogSolver``
            for thermodynamic K-FAC.

    Attributes:
        steps: number of :meth:`step` calls so far.
        layers: names of the preconditioned layers.
        fallback_layers: names of the modules left on the plain gradient.
        last_step: analog time (τ), values loaded/read and whether inverses were refreshed in the last step.
    """

    def __init__(
        self, model: nn.Module, config: KFACConfig | None = None, solver: CurvatureSolver | None = None
    ) -> None:
        self.model = model
        self.config = config or KFACConfig()
        self.solver = solver if solver is not None else ExactSolver()
        self.steps = 0
        self._layers: dict[str, _Layer] = {}
        self.fallback_layers: list[str] = []
        self._handles: list[Any] = []
        self._damping_clamped_logged = False
        self.last_step: dict[str, float] = {}
        #: data-parallel rank (``training._distributed.DataParallel``) set by the harness under torchrun:
        #: factors all-reduced, inverses spread over the ranks; ``None``: one process
        self.dist: Any = None
        skip = set(self.config.skip_layers)
        for name, module in model.named_modules():
            own = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            supported = isinstance(module, nn.Linear) or (
                isinstance(module, nn.Conv2d) and module.groups == 1
            )
            if supported and name not in skip and type(module).__name__ not in skip:
                layer = _Layer(name, module)
                self._layers[name] = layer
                self._handles.append(module.register_forward_hook(self._forward_hook(layer)))
            else:
                self.fallback_layers.append(name or type(module).__name__)
        if self.fallback_layers:
            log.info("K-FAC: plain gradient (no preconditioning) for %s", ", ".join(self.fallback_layers))
        if not self._layers:
            raise TrainingError(
                "K-FAC found no Linear or Conv2d layer to precondition in the model; use a first-order optimizer."
            )

    @property
    def layers(self) -> list[str]:
        return list(self._layers)

    # -- hooks ---------------------------------------------------------------------------------------
    def _recording(self) -> bool:
        every = int(resolve_schedule(self.config.factor_update_steps, self.steps, "factor_update_steps"))
        return self.model.training and torch.is_grad_enabled() and self.steps % max(every, 1) == 0

    def _forward_hook(self, layer: _Layer) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if not self._recording():
                return
            layer.add_input(inputs[0])
            if output.requires_grad:
                output.register_hook(lambda g: layer.add_grad_output(g))

        return hook

    def remove_hooks(self) -> None:
        """Detach the forward/backward hooks (the preconditioner is unusable afterwards)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -- the step ------------------------------------------------------------------------------------
    def damping(self) -> float:
        """Current damping λ (after the minimum-damping guard)."""
        lam = resolve_schedule(self.config.damping, self.steps, "damping")
        if lam <= 0:
            raise TrainingError(
                f"damping schedule returned {lam} at step {self.steps}; it must stay > 0 (use a floor such as "
                f"max(schedule(step), {self.config.min_damping}))."
            )
        if lam < self.config.min_damping:
            if not self._damping_clamped_logged:
                log.info("K-FAC: damping %.3g raised to min_damping %.3g", lam, self.config.min_damping)
                self._damping_clamped_logged = True
            lam = self.config.min_damping
        return lam

    def device_log(self) -> list[dict[str, Any]]:
        """The device calls (one per factor inverse or solve) since the last call: op, n, analog_time_tau,
        burn_in_tau, dt_tau, lambda_min, predicted_error, capped; ``[]`` for the digital solver."""
        drain = getattr(self.solver, "drain_log", None)
        return drain() if drain is not None else []

    def device_stats(self) -> dict[str, Any]:
        """The damping guard's counts of an analog solver (``{}`` when digital)."""
        if not self.solver.is_analog:
            return {}
        st = self.solver.stats
        return {
            "damping_bumps": st.damping_bumps,
            "extra_damping_max": st.extra_damping_max,
            "blind_readouts": st.blind_readouts,
            "device_wall_time_tau": st.wall_time_tau,
            "digital_flops_between_calls": st.digital_flops,
            "device_simulation_s": st.simulation_s,
            "mapping": getattr(self.solver, "mapping", "monolithic"),
            "cells_per_tile": getattr(self.solver, "tile_size", None),
        }

    @torch.no_grad()
    def step(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> None:
        """Update factors (if recorded this step), refresh inverses when due, precondition the gradients.

        Digital fast paths (same result as the formula, to rounding): factors are updated in place by one
        fused GEMM per pass (F ← ρF + (1-ρ)XᵀX/rows); damping is added on the diagonal in place; a factor
        of size d is applied through its Cholesky factor instead of an explicit inverse when
        (2/3)d³/r (the inverse, amortised over the interval r) exceeds the d²k of applying it to k columns;
        and for a layer whose gradient is the product SᵀX of this step's rows (checked on a probe vector),
        ``U = [(G+λI)⁻¹Sᵀ][(A+λI)⁻¹Xᵀ]ᵀ`` costs rows·(m² + n² + mn) instead of mn(m + n).

        Raises:
            TrainingError: on non-finite gradients or factors (nothing is modified in that case).
        """
        before = self.solver.stats.as_dict()
        try:
            for layer in self._layers.values():
                if not layer.grad_is_finite():
                    raise TrainingError(
                        f"Non-finite gradient in layer {layer.name!r} at step {self.steps}; the update was "
                        "skipped. Lower the learning rate, raise the damping, or check the loss for NaN/inf."
                    )
            for layer in self._layers.values():
                if layer.recorded():
                    layer.check_recorded_finite()
            updated = [
                layer for layer in self._layers.values() if layer.update_factors(self.config.factor_decay)
            ]
            if self.dist is not None:
                self.dist.sync_factors(updated)
            inv_every = int(resolve_schedule(self.config.inv_update_steps, self.steps, "inv_update_steps"))
            lam = self.damping()
            refresh = self.steps % max(inv_every, 1) == 0
            updates: list[tuple[_Layer, torch.Tensor]] = []
            if self.dist is not None:
                updates = self.dist.step_layers(self, refresh, lam, max(inv_every, 1))
            for layer in self._layers.values() if self.dist is None else ():
                if layer.A is None or layer.G is None:
                    continue  # no statistics yet (e.g. first step was in eval mode): plain gradient
                if refresh or not self._has_inverse(layer):
                    self._refresh(layer, lam, max(inv_every, 1))
                if not layer.has_grad():
                    continue
                updates.append((layer, self._precondition(layer)))
        finally:
            for layer in self._layers.values():
                layer.clear_sums()
        scale = 1.0
        if self.config.kl_clip is not None and updates:
            lr = resolve_schedule(self.config.lr, self.steps, "lr")
            vg = 0.0
            for layer, u in updates:
                g = layer.grad_matrix()
                assert g is not None
                vg += float((u * g).sum())
            vg *= lr**2
            if vg > 0:
                scale = min(1.0, math.sqrt(self.config.kl_clip / vg))
        for layer, u in updates:
            layer.set_grad_matrix(u * scale if scale != 1.0 else u)
        after = self.solver.stats.as_dict()
        self.last_step = {k: after[k] - before[k] for k in after} | {
            "inverse_refreshed": float(refresh),
            "kl_scale": scale,
        }
        self.steps += 1

    def _has_inverse(self, layer: _Layer) -> bool:
        if self.config.mode == "solve":
            return layer.A_damped is not None
        return (layer.A_inv is not None or layer.A_chol is not None) and (
            layer.G_inv is not None or layer.G_chol is not None
        )

    @staticmethod
    def _damped(F: torch.Tensor, lam: float, out: torch.Tensor | None) -> torch.Tensor:
        """F + λI into ``out`` (reused between refreshes: no allocation of a d×d identity)."""
        out = torch.empty_like(F) if out is None or out.shape != F.shape else out
        out.copy_(F).diagonal().add_(lam)
        return out

    def _refresh(self, layer: _Layer, lam: float, interval: int) -> None:
        assert layer.A is not None and layer.G is not None
        if self.config.mode == "solve":
            layer.A_damped = self._damped(layer.A, lam, layer.A_damped)
            layer.G_damped = self._damped(layer.G, lam, layer.G_damped)
            return
        m, n = layer.G.shape[0], layer.A.shape[0]
        for name, fac, k in (("A", layer.A, m), ("G", layer.G, n)):
            use_chol = isinstance(self.solver, ExactSolver) and (2.0 / 3.0) * fac.shape[0] / interval > k
            fac.diagonal().add_(lam)  # damp in place (ASDL's trick): no d×d copy
            try:
                if use_chol:
                    assert isinstance(self.solver, ExactSolver)
                    chol, inv = self.solver.cholesky(fac), None
                else:
                    chol, inv = None, self.solver.inverse(fac, floor=lam)
            finally:
                fac.diagonal().sub_(lam)
            setattr(layer, f"{name}_chol", chol)
            setattr(layer, f"{name}_inv", inv)

    def _precondition(self, layer: _Layer) -> torch.Tensor:
        """U = (G+λI)⁻¹ g (A+λI)⁻¹ for the (d_out, d_in+1) gradient matrix g."""
        if self.config.mode == "inverse":
            G_op = _InverseFactor(layer.G_inv, layer.G_chol)
            A_op = _InverseFactor(layer.A_inv, layer.A_chol)
            m, n = layer.G.shape[0], layer.A.shape[0]  # type: ignore[union-attr]
            # a data-parallel rank's rows are its shard's, not the global batch's: no low-rank path there
            rows = layer.rows_A()[0].shape[0] if len(layer._inputs) == 1 and self.dist is None else None
            low_rank = rows is not None and rows * (m * m + n * n + m * n) < 0.8 * m * n * (m + n)
            factors = layer.low_rank_gradient() if low_rank else None
            if factors is not None:
                S, X = factors
                u = G_op.left(S.T) @ A_op.left(X.T).T
            else:
                g = layer.grad_matrix()
                assert g is not None
                u = A_op.left(G_op.left(g).T).T
        else:
            g = layer.grad_matrix()
            assert g is not None and layer.A_damped is not None and layer.G_damped is not None
            # where the batch rows are fewer than the gradient's columns the device solves with them,
            # U = [(G+λI)⁻¹Sᵀ][(A+λI)⁻¹Xᵀ]ᵀ as the inverse mode applies its factors: rows·(m + n) right-hand
            # sides instead of 2mn values (measured on the MLP's tiles: 3× faster than warm-started solves with
            # the columns). A solver that takes no warm start (block-diagonal) is not given one.
            warm = getattr(self.solver, "uses_warm_start", True)
            m, n = layer.G_damped.shape[0], layer.A_damped.shape[0]
            rows = layer.rows_A()[0].shape[0] if len(layer._inputs) == 1 and self.dist is None else None
            low_rank = rows is not None and rows * (m + n) < 0.8 * m * n
            factors = layer.low_rank_gradient() if low_rank else None
            if factors is not None:
                S, X = factors
                lam = self.damping()
                u = (
                    self.solver.solve(layer.G_damped, S.T, floor=lam)
                    @ self.solver.solve(layer.A_damped, X.T, floor=lam).T
                )
            else:
                prev = layer.prev_update if warm else None
                y0 = None if prev is None else prev @ layer.A_damped  # Y = (G+λI)⁻¹g = U (A+λI)
                y = self.solver.solve(layer.G_damped, g, x0=y0, floor=self.damping())
                u = self.solver.solve(
                    layer.A_damped, y.T, x0=None if prev is None else prev.T, floor=self.damping()
                ).T
            layer.prev_update = u.detach().clone() if warm else None
        if not bool(torch.isfinite(u.sum())):
            raise TrainingError(
                f"K-FAC update of layer {layer.name!r} is non-finite at step {self.steps}; raise the damping "
                f"(now {self.damping():.3g}) or the analog time of the backend."
            )
        return u

    # -- checkpointing -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        keys = ("A", "G", "A_inv", "G_inv", "A_chol", "G_chol", "A_damped", "G_damped", "prev_update")
        return {
            "steps": self.steps,
            "layers": {name: {k: getattr(layer, k) for k in keys} for name, layer in self._layers.items()},
            "solver": self.solver.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["layers"]) != set(self._layers):
            raise TrainingError(
                f"K-FAC state holds layers {sorted(state['layers'])} but the model has {sorted(self._layers)}; "
                "the checkpoint belongs to a different model."
            )
        self.steps = int(state["steps"])
        for name, values in state["layers"].items():
            for key, value in values.items():  # checkpoints without A_chol/G_chol load as before
                setattr(self._layers[name], key, value.clone() if isinstance(value, torch.Tensor) else value)
        self.solver.load_state_dict(state["solver"])

    def factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The current (A, G) per preconditioned layer (undamped running averages)."""
        return {n: (l.A, l.G) for n, l in self._layers.items() if l.A is not None and l.G is not None}
