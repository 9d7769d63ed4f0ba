"""Exact simulation of the linear SDE  dx = (M x + u) dt + Q dW  in torch.

Everything here is exact for a linear-Gaussian process: no time-discretization error at any step size, for
any stable drift M, normal or not (RLC arrays have non-normal drift, for which an eigen-decomposition of the
symmetric part of M is wrong). Units are whatever the caller's time unit is (the device time constant τ in
:mod:`thermotrain.models._linalg`). Leading batch dimensions are allowed on every tensor; the device follows
the tensors. Transition matrices are computed once in float64 and cast to the SDE's dtype, so float32
stepping loses nothing in the set-up.

Key identities (Van Loan 1978; D = QQᵀ):

- Transition over Δ: x(t+Δ) = Φ x(t) + Γ u + ε,  Φ = e^{MΔ},  Γ = ∫₀^Δ e^{Ms} ds,
  ε ~ N(0, S),  S = ∫₀^Δ e^{Ms} D e^{Mᵀs} ds.
- exp([[-M, D], [0, Mᵀ]] δ) = [[·, F], [0, e^{Mᵀδ}]]  gives  S(δ) = e^{Mδ} F;  exp([[M, I], [0, 0]] δ) gives Φ, Γ.
- Doubling (used so that no block exponential ever sees ‖Mδ‖ > 1, where e^{-Mδ} would overflow the
  precision): Φ(2δ) = Φ², Γ(2δ) = Γ + ΦΓ, S(2δ) = S + Φ S Φᵀ — a sum of PSD terms, no cancellation.
- Stationary covariance Σ: M Σ + Σ Mᵀ + D = 0 (Lyapunov); stationary mean -M⁻¹u.
- Time average x̄ = (1/T)∫_{t0}^{t0+T} x dt: augment the state with y = (1/T)∫_{t0}^{t} x, whose drift is
  [[M, 0], [I/T, 0]]; the exact transition of the augmented system over T gives the law of x̄ = y(t0+T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from thermotrain._errors import InputError
from thermotrain.models import _rng

__all__ = [
    "LinearSDE",
    "Transition",
    "log_likelihood",
    "psd_factor",
    "sample_time_average",
    "simulate",
    "state_moments",
    "stationary_covariance",
    "time_average_moments",
    "transition",
]

_WORK = torch.float64  # precision of every set-up computation (transition, Lyapunov, moments)


def _as_float_tensor(
    x: Tensor | float | list, dtype: torch.dtype | None, device: torch.device | None
) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(x, dtype=dtype or torch.float64)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t.to(dtype=dtype or t.dtype, device=device or t.device)


@dataclass(frozen=True)
class LinearSDE:
    """dx = (M x + u) dt + Q dW with D = Q Qᵀ, in the caller's time unit.

    Fields (``...`` = optional leading batch dimensions, broadcast against each other):
        M: [..., n, n] drift (any stable matrix; non-normal allowed).
        D: [..., n, n] diffusion Q Qᵀ (symmetric positive semi-definite).
        u: [..., n] constant input (zeros when omitted).

    The dtype is M's when M is a floating tensor (float32 on request), else float64; D and u are cast to it
    and moved to M's device. Build from a noise-input matrix Q with :meth:`from_noise_input`.
    """

    M: Tensor
    D: Tensor
    u: Tensor | None = None

    def __post_init__(self) -> None:
        M = _as_float_tensor(self.M, None, None)
        D = _as_float_tensor(self.D, M.dtype, M.device)
        u = torch.zeros(M.shape[:-1], dtype=M.dtype, device=M.device) if self.u is None else self.u
        u = _as_float_tensor(u, M.dtype, M.device)
        if M.ndim < 2 or M.shape[-1] != M.shape[-2]:
            raise InputError(f"LinearSDE.M must be [..., n, n]; got shape {tuple(M.shape)}.")
        n = M.shape[-1]
        if D.shape[-2:] != (n, n):
            raise InputError(f"LinearSDE.D must be [..., {n}, {n}] like M; got shape {tuple(D.shape)}.")
        if u.shape[-1:] != (n,):
            raise InputError(f"LinearSDE.u must be [..., {n}]; got shape {tuple(u.shape)}.")
        for name, t in (("M", M), ("D", D), ("u", u)):
            if not bool(torch.isfinite(t).all()):
                raise InputError(
                    f"LinearSDE.{name} has non-finite entries; check the circuit values or scaling."
                )
        object.__setattr__(self, "M", M)
        object.__setattr__(self, "D", D)
        object.__setattr__(self, "u", u)

    @classmethod
    def from_noise_input(cls, M: Tensor, Q: Tensor, u: Tensor | None = None) -> LinearSDE:
        """The SDE dx = (M x + u) dt + Q dW with Q [..., n, m] (m independent unit white noises)."""
        Q = _as_float_tensor(Q, M.dtype if isinstance(M, Tensor) else None, None)
        return cls(M, Q @ Q.mT, u)

    @property
    def n(self) -> int:
        return self.M.shape[-1]

    @property
    def batch_shape(self) -> torch.Size:
        return torch.broadcast_shapes(self.M.shape[:-2], self.D.shape[:-2], self.u.shape[:-1])

    @property
    def dtype(self) -> torch.dtype:
        return self.M.dtype

    @property
    def device(self) -> torch.device:
        return self.M.device

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> LinearSDE:
        """A copy with every tensor cast to ``dtype`` and/or moved to ``device``."""
        kw = {"dtype": dtype or self.dtype, "device": device or self.device}
        return LinearSDE(self.M.to(**kw), self.D.to(**kw), self.u.to(**kw))

    def stationary_mean(self) -> Tensor:
        """-M⁻¹ u, [..., n]. Cost O(n³)."""
        M = self.M.to(_WORK)
        return -torch.linalg.solve(M, self.u.to(_WORK).expand(*self.batch_shape, self.n)).to(self.dtype)

    def stationary_covariance(self) -> Tensor:
        """Σ solving M Σ + Σ Mᵀ + D = 0, [..., n, n]; see :func:`stationary_covariance`."""
        return stationary_covariance(self.M, self.D).to(self.dtype)


class Transition(NamedTuple):
    """Exact one-step map x(t+Δ) = Phi x(t) + Gamma u + N(0, S)."""

    Phi: Tensor  # [..., n, n]  e^{MΔ}
    S: Tensor  # [..., n, n]  ∫₀^Δ e^{Ms} D e^{Mᵀs} ds (symmetrised)
    Gamma: Tensor | None  # [..., n, n]  ∫₀^Δ e^{Ms} ds (None when not requested)


def _cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` in ``dtype`` with entries below the smallest normal number of ``dtype`` set to 0: a float64
    transition cast to float32 otherwise holds subnormals (e.g. e^{-λΔ·j} of fast modes), which make CPU
    matrix products 100x slower; their contribution is below 1e-38 relative, far under float32 rounding."""
    if t.dtype == dtype:
        return t
    return torch.where(t.abs() < torch.finfo(dtype).tiny, torch.zeros((), dtype=t.dtype), t).to(dtype)


def _block(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
    return torch.cat([torch.cat([a, b], dim=-1), torch.cat([c, d], dim=-1)], dim=-2)


def _sym(S: Tensor) -> Tensor:
    return 0.5 * (S + S.mT)


def transition(M: Tensor, D: Tensor, dt: float, *, with_input: bool = True) -> Transition:
    """Exact transition of dx = (M x + u) dt + Q dW over a step ``dt`` (D = QQᵀ).

    Van Loan's block exponentials on a sub-step δ = dt/2^k with ‖M‖₁δ ≤ 1, then k doublings
    (Φ ← Φ², Γ ← Γ + ΦΓ, S ← S + Φ S Φᵀ). Exact for any M (non-normal, defective, unstable) and numerically
    stable for large dt (no e^{-M dt} is ever formed). Computed in float64, returned in M's dtype.

    Cost: two matrix exponentials of size 2n (one with ``with_input=False``, which returns Gamma = None)
    plus k = ⌈log₂(‖M‖₁ dt)⌉ doublings, each O(n³).
    """
    if not (math.isfinite(dt) and dt >= 0):
        raise InputError(f"dt = {dt!r} must be a finite time >= 0 (in the SDE's time unit).")
    out_dtype = M.dtype
    M = M.to(_WORK)
    D = D.to(dtype=_WORK, device=M.device)
    shape = torch.broadcast_shapes(M.shape, D.shape)
    M, D = M.expand(shape), D.expand(shape)
    n = shape[-1]
    eye = torch.eye(n, dtype=_WORK, device=M.device).expand(shape)
    zero = torch.zeros(shape, dtype=_WORK, device=M.device)
    if dt == 0:
        return Transition(eye.to(out_dtype), zero.to(out_dtype), zero.to(out_dtype) if with_input else None)
    norm = float(torch.linalg.matrix_norm(M.detach(), ord=1).max()) * dt
    k = max(0, math.ceil(math.log2(norm))) if norm > 1 else 0
    delta = dt / 2**k
    E2 = torch.linalg.matrix_exp(_block(-M, D, zero, M.mT) * delta)
    Phi = E2[..., n:, n:].mT  # (e^{Mᵀδ})ᵀ
    S = _sym(Phi @ E2[..., :n, n:])
    Gamma = torch.linalg.matrix_exp(_block(M, eye, zero, zero) * delta)[..., :n, n:] if with_input else None
    for _ in range(k):
        if Gamma is not None:
            Gamma = Gamma + Phi @ Gamma
        S = _sym(S + Phi @ S @ Phi.mT)
        Phi = Phi @ Phi
    return Transition(
        _cast(Phi, out_dtype), _cast(S, out_dtype), None if Gamma is None else _cast(Gamma, out_dtype)
    )


def stationary_covariance(
    M: Tensor, D: Tensor, *, method: Literal["auto", "eigh", "kronecker", "doubling"] = "auto"
) -> Tensor:
    """Σ solving the continuous Lyapunov equation M Σ + Σ Mᵀ + D = 0 for stable M (all Re λ(M) < 0).

    Methods (all exact up to rounding, correct for non-normal M):
        ``eigh``: M symmetric only; M = UΛUᵀ, Σ = U [(UᵀDU)_ij / -(λ_i+λ_j)] Uᵀ. O(n³).
        ``kronecker``: solve (M⊗I + I⊗M) vec Σ = -vec D directly. O(n⁶); small n.
        ``doubling``: squared Smith iteration Σ = Σ_k Φ^{2^k}... via the transition doubling S ← S + Φ S Φᵀ,
            Φ ← Φ² until Φ has decayed below rounding; O(n³ log(t_relax/δ)).
        ``auto``: eigh if M is symmetric, kronecker for n ≤ 16, doubling otherwise.
    Computed in float64; returned in M's dtype. Raises ValueError for an unstable M (naming max Re λ).
    """
    out_dtype = M.dtype
    M = M.to(_WORK)
    D = D.to(dtype=_WORK, device=M.device)
    shape = torch.broadcast_shapes(M.shape, D.shape)
    M, D = M.expand(shape), D.expand(shape)
    n = shape[-1]
    lam_max = float(torch.linalg.eigvals(M.detach()).real.max())
    if not lam_max < 0:
        raise InputError(
            f"The drift M is not stable (largest real part of its eigenvalues is {lam_max:.3g} >= 0), so no "
            "stationary law exists; add damping or check the sign convention (dx = M x dt + ...)."
        )
    if method == "auto":
        symmetric = bool(torch.allclose(M, M.mT, rtol=0.0, atol=1e-14 * float(M.abs().max())))
        method = "eigh" if symmetric else ("kronecker" if n <= 16 else "doubling")
    if method == "eigh":
        lam, U = torch.linalg.eigh(_sym(M))
        Dt = U.mT @ D @ U
        Sigma = U @ (Dt / -(lam[..., :, None] + lam[..., None, :])) @ U.mT
    elif method == "kronecker":
        eye = torch.eye(n, dtype=_WORK, device=M.device)
        K = torch.einsum("...ij,kl->...ikjl", M, eye) + torch.einsum("ij,...kl->...ikjl", eye, M)
        K = K.reshape(*shape[:-2], n * n, n * n)
        Sigma = torch.linalg.solve(K, -D.reshape(*shape[:-2], n * n, 1)).reshape(shape)
    elif method == "doubling":
        delta = 1.0 / max(float(torch.linalg.matrix_norm(M.detach(), ord=1).max()), 1e-300)
        Phi, Sigma, _ = transition(M, D, delta, with_input=False)
        for _ in range(200):
            if float(torch.linalg.matrix_norm(Phi).max()) < 1e-9:  # next term below 1e-18 relative
                break
            Sigma = _sym(Sigma + Phi @ Sigma @ Phi.mT)
            Phi = Phi @ Phi
        else:  # pragma: no cover - only for a drift stable to within rounding
            raise InputError("Lyapunov doubling did not converge: M is too close to unstable.")
    else:
        raise InputError(f"method must be 'auto', 'eigh', 'kronecker' or 'doubling'; got {method!r}.")
    return _sym(Sigma).to(out_dtype)


def psd_factor(S: Tensor) -> Tensor:
    """L with L Lᵀ = S for symmetric PSD S [..., n, n]: Cholesky, or eigh with negative eigenvalues clamped
    to 0 where S is singular (e.g. noise on only part of the state) and Cholesky fails. Cost O(n³)."""
    L, info = torch.linalg.cholesky_ex(S)
    if bool((info == 0).all()):
        return L
    lam, U = torch.linalg.eigh(S)
    return U * lam.clamp_min(0).sqrt()[..., None, :]


def _lead_and_x0(sde: LinearSDE, x0: Tensor | None, batch: int) -> tuple[tuple[int, ...], Tensor]:
    lead = (batch, *sde.batch_shape)
    if x0 is None:
        x0 = torch.zeros(sde.n, dtype=sde.dtype, device=sde.device)
    x0 = _as_float_tensor(x0, sde.dtype, sde.device)
    try:
        return lead, x0.expand(*lead, sde.n)
    except RuntimeError as e:
        raise InputError(
            f"x0 of shape {tuple(x0.shape)} does not broadcast to [batch, ..., n] = {lead + (sde.n,)}"
        ) from e


def _check_batch(batch: int) -> None:
    if not (isinstance(batch, int) and batch >= 1):
        raise InputError(f"batch = {batch!r} must be a positive int (number of independent replicas).")


_LOOP_MAX_STEPS = 64  # below this many steps the plain loop is as fast as the blocked evaluation
# The blocked evaluation trades n_steps sequential products (each ~15 µs of dispatch overhead on CPU) for
# ⌈sqrt(n_steps)⌉ powers of Φ (n³ flops each): worth it while sqrt(n_steps)·n³ < _OVERHEAD_FLOPS·n_steps
# (at ~1e10 flop/s, 15 µs ≈ 1.5e5 flops). For n = 785 and 2000 steps the powers alone cost 43 GFLOP, the loop
# 0.15 s, so large states keep the loop.
_OVERHEAD_FLOPS = 1.5e5


def _mv(x: Tensor, AT: Tensor, batched: bool) -> Tensor:
    """x Aᵀ for states x [..., n] and A [..., n, n] (AT = Aᵀ): one GEMM when A is unbatched."""
    return (x[..., None, :] @ AT)[..., 0, :] if batched else x @ AT


def _step_loop(Phi: Tensor, x: Tensor, noise: Tensor, out: Tensor, start: int = 0) -> None:
    """out[..., start+k+1, :] = x ← Φ x + noise[k] for k < len(noise), one step at a time."""
    batched = Phi.ndim > 2
    PhiT = Phi.mT
    for k in range(noise.shape[0]):
        x = _mv(x, PhiT, batched) + noise[k]
        out[..., start + k + 1, :] = x


def _step_blocked(Phi64: Tensor, x: Tensor, noise: Tensor, out: Tensor) -> None:
    """The same recurrence as :func:`_step_loop`, exactly (no approximation), in < 3·sqrt(n_steps)
    sequential products instead of n_steps, by linearity. With nb blocks of B = ⌈sqrt(n_steps)⌉ steps,
    x_{bB+j} = Φ^j x_{bB} + y_{b,j}, where y_{b,j} runs the recurrence from y_{b,0} = 0 inside block b:
        (1) y_{b,j} for all blocks at once (B sequential batched products), written into ``out``;
        (2) block starts x_{(b+1)B} = Φ^B x_{bB} + y_{b,B} (nb sequential products);
        (3) Φ^j x_{bB} for every offset j in one (batched) GEMM against [Φ¹ᵀ … Φᴮᵀ], added in place;
    the remaining n_steps - nb·B < B steps by the loop. Powers of Φ are formed by repeated multiplication in
    float64, then cast. Equal to the loop's result to rounding. Memory: noise + output + one output-sized
    temporary.
    """
    n_steps, n, dtype = noise.shape[0], out.shape[-1], out.dtype
    B = math.isqrt(n_steps - 1) + 1  # ⌈sqrt(n_steps)⌉ <= n_steps
    nb = n_steps // B
    batched = Phi64.ndim > 2
    powers = [Phi64]  # Φ¹ … Φᴮ
    for _ in range(B - 1):
        powers.append(powers[-1] @ Phi64)
    PhiT = _cast(Phi64.mT, dtype)
    PhiBT = _cast(powers[-1].mT, dtype)
    powers_T = _cast(torch.cat([P.mT for P in powers], dim=-1), dtype)  # [..., n, B·n]
    W = noise[: nb * B].unflatten(0, (nb, B))  # [nb, B, *lead, n] (view)
    Y = out[..., 1 : nb * B + 1, :].unflatten(-2, (nb, B))  # [*lead, nb, B, n] (view into out)
    # (1) zero-start recurrence inside every block, all blocks at once; y: [nb, *lead, n]
    y = W[:, 0]
    Y[..., 0, :] = y.movedim(0, -2)
    for j in range(1, B):
        y = _mv(y, PhiT, batched) + W[:, j]
        Y[..., j, :] = y.movedim(0, -2)
    # (2) block-start states x_{bB}, b = 0 … nb-1 (y now holds y_{b,B} for every block b)
    starts = [x]
    for b in range(nb - 1):
        starts.append(_mv(starts[-1], PhiBT, batched) + y[b])
    X = torch.stack(starts, dim=-2)  # [*lead, nb, n]
    # (3) x_{bB+j+1} = Φ^{j+1} x_{bB} + y_{b,j+1}: one GEMM [*lead, nb, n] @ [..., n, B·n]
    Y.add_((X @ powers_T).unflatten(-1, (B, n)))
    if nb * B < n_steps:
        _step_loop(PhiT.mT, out[..., nb * B, :].clone(), noise[nb * B :], out, start=nb * B)


def simulate(
    sde: LinearSDE,
    x0: Tensor | None,
    dt: float,
    n_steps: int,
    *,
    generator: torch.Generator | None = None,
    batch: int = 1,
) -> Tensor:
    """Sample paths of the SDE on the grid 0, dt, …, n_steps·dt, exactly (no discretization error).

    x_{k+1} = Φ x_k + Γ u + L ξ_k,  L Lᵀ = S (Cholesky, or eigh with clamp for singular S), ξ_k ~ N(0, I);
    Φ, Γ, S from :func:`transition`, computed once. The noise ξ is drawn as one tensor [n_steps, batch,
    *batch_shape, n]. From 64 steps on, the recurrence is evaluated parallel-in-time in blocks of
    ≈ sqrt(n_steps) steps (exact by linearity, equal to the step-by-step loop to rounding; see
    :func:`_step_blocked`), so 20k steps take ~400 sequential tensor operations instead of 20k.

    Args:
        sde: the process (batch dims allowed).
        x0: start state [..., n] broadcast to [batch, *sde.batch_shape, n]; None = 0.
        dt: sample interval in the SDE's time unit.
        n_steps: number of steps.
        generator: torch generator on the SDE's device (seeded ⇒ reproducible).
        batch: number of independent replicas.
    Returns:
        [batch, *sde.batch_shape, n_steps + 1, n] in the SDE's dtype; index 0 is x0.
    Cost: O(n³ sqrt(n_steps)) set-up + 2·n_steps matrix-vector products per replica (as GEMMs);
    memory ≈ 3·batch·n_steps·n.
    """
    _check_batch(batch)
    if not (isinstance(n_steps, int) and n_steps >= 0):
        raise InputError(f"n_steps = {n_steps!r} must be an int >= 0.")
    lead, x = _lead_and_x0(sde, x0, batch)
    has_input = bool((sde.u != 0).any())
    Phi64, S, Gamma = transition(sde.M.to(_WORK), sde.D, dt, with_input=has_input)
    Phi, S = _cast(Phi64, sde.dtype), _cast(S, sde.dtype)
    c = (_cast(Gamma, sde.dtype) @ sde.u[..., None])[..., 0] if has_input else 0.0
    L = _cast(psd_factor(S.to(_WORK)), sde.dtype)
    xi = _rng.randn((n_steps, *lead, sde.n), generator=generator, dtype=sde.dtype, device=sde.device)
    batched = Phi.ndim > 2
    # one GEMM for all steps when the SDE is unbatched; batched matrix-vector products otherwise
    noise = ((L @ xi[..., None])[..., 0] if batched else xi @ L.T) + c  # [n_steps, *lead, n]
    out = torch.empty((*lead, n_steps + 1, sde.n), dtype=sde.dtype, device=sde.device)
    out[..., 0, :] = x
    if n_steps < _LOOP_MAX_STEPS or math.sqrt(n_steps) * sde.n**3 > _OVERHEAD_FLOPS * n_steps:
        _step_loop(Phi, x, noise, out)
    else:
        _step_blocked(Phi64, x, noise, out)
    return out


def state_moments(
    sde: LinearSDE, x0: Tensor | None, t: float, *, x0_cov: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Mean and covariance of x(t) from x(0) = x0 (or x(0) ~ N(x0, x0_cov)).

    mean = Φ x0 + Γ u,  cov = Φ P0 Φᵀ + S  with (Φ, S, Γ) = :func:`transition` over t. Cost O(n³ log t).
    Returns ([..., n], [..., n, n]) in the SDE's dtype.
    """
    Phi, S, Gamma = (a.to(_WORK) for a in transition(sde.M, sde.D, t))
    x0 = torch.zeros(sde.n, dtype=_WORK, device=sde.device) if x0 is None else x0.to(_WORK)
    mean = (Phi @ x0[..., None])[..., 0] + (Gamma @ sde.u.to(_WORK)[..., None])[..., 0]
    cov = S if x0_cov is None else _sym(S + Phi @ x0_cov.to(_WORK) @ Phi.mT)
    return mean.to(sde.dtype), cov.to(sde.dtype)


def time_average_moments(
    sde: LinearSDE, x0: Tensor | None, t0: float, T: float, *, x0_cov: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Exact mean and covariance of the time average x̄ = (1/T)∫_{t0}^{t0+T} x(t) dt given x(0) = x0
    (or x(0) ~ N(x0, x0_cov)).

    Derivation: x(t0) ~ N(m0, P0) by :func:`state_moments`. With y(t) = (1/T)∫_{t0}^{t} x ds the pair
    z = (x, y) obeys dz = ([[M, 0], [I/T, 0]] z + [u; 0]) dt + [Q; 0] dW, z(t0) = (x(t0), 0); its exact
    transition over T, (Φ_z, S_z, Γ_z), gives x̄ = y(t0+T) = Φ_yx x(t0) + (Γ_z [u; 0])_y + noise, hence
        E x̄ = Φ_yx m0 + (Γ_z [u; 0])_y,   Cov x̄ = Φ_yx P0 Φ_yxᵀ + (S_z)_yy.
    For stable M and T ≫ relaxation, Cov x̄ → -(M⁻¹Σ + ΣM⁻ᵀ)/T (Σ stationary; symmetric drift -A with
    D = 2κ0 I: 2κ0 A⁻²/T, the thermodynamic-linear-algebra error law).

    Cost: two exponentials of size 4n and O(log(‖M‖T)) doublings of size 2n. Returns ([..., n], [..., n, n]).
    """
    if not (math.isfinite(T) and T > 0):
        raise InputError(f"The averaging window T = {T!r} must be > 0.")
    if not (math.isfinite(t0) and t0 >= 0):
        raise InputError(f"The window start t0 = {t0!r} must be >= 0.")
    if _lyapunov_path(sde):
        return _time_average_moments_lyapunov(sde, x0, t0, T, x0_cov)
    n = sde.n
    m0, P0 = state_moments(sde, x0, t0, x0_cov=x0_cov)
    m0, P0 = m0.to(_WORK), P0.to(_WORK)
    M = sde.M.to(_WORK)
    D = sde.D.to(_WORK)
    shape = torch.broadcast_shapes(M.shape, D.shape)
    M, D = M.expand(shape), D.expand(shape)
    eye = torch.eye(n, dtype=_WORK, device=M.device).expand(shape)
    zero = torch.zeros(shape, dtype=_WORK, device=M.device)
    # the augmented state carries y/T (not y), so both blocks stay O(1) and short windows keep precision
    Phi, S, Gamma = transition(_block(M, zero, eye / T, zero), _block(D, zero, zero, zero), T)
    Phi_yx = Phi[..., n:, :n]
    u = sde.u.to(_WORK)
    mean = (Phi_yx @ m0[..., None])[..., 0] + (Gamma[..., n:, :n] @ u[..., None])[..., 0]
    cov = _sym(Phi_yx @ P0 @ Phi_yx.mT + S[..., n:, n:])
    return mean.to(sde.dtype), cov.to(sde.dtype)


_LYAPUNOV_MIN_N = 64  # below this the augmented Van Loan exponential is as fast


def _lyapunov_path(sde: LinearSDE) -> bool:
    """Use the size-n closed form (Bartels–Stewart Lyapunov + two n×n exponentials) instead of the size-4n
    augmented exponential: an unbatched, stable SDE on the CPU without autograd, n >= 64."""
    return (
        sde.n >= _LYAPUNOV_MIN_N
        and sde.M.ndim == 2
        and sde.D.ndim == 2
        and sde.M.device.type == "cpu"
        and not (sde.M.requires_grad or sde.D.requires_grad or sde.u.requires_grad)
    )


def _time_average_moments_lyapunov(
    sde: LinearSDE, x0: Tensor | None, t0: float, T: float, x0_cov: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The law of x̄ = (1/T)∫_{t0}^{t0+T} x dt from n×n quantities (stable M):

        Σ: M Σ + Σ Mᵀ + D = 0,  x* = −M⁻¹u,  Φ_s = e^{Ms},  W = M⁻¹(Φ_T − I),  J = M⁻¹(W − T I) Σ
        x(t0) ~ N(m0, P0):  m0 = x* + Φ_{t0}(x0 − x*),  P0 = Σ − Φ_{t0}(Σ − P_init)Φ_{t0}ᵀ
        E x̄ = x* + W (m0 − x*) / T,   Cov x̄ = (W P0 Wᵀ + J + Jᵀ − W Σ Wᵀ) / T²

    (∫∫ of the stationary autocovariance is J + Jᵀ; a start at x(t0) instead of the stationary law removes
    W Σ Wᵀ and adds W P0 Wᵀ). Exact like the augmented form; cost one Schur decomposition and two n×n
    exponentials instead of a 4n×4n exponential (≈ 10× less at n = 785). Float64 inside."""
    M = sde.M.detach().to(_WORK)
    u = sde.u.detach().to(_WORK)
    n = sde.n
    Sigma, Phi0, W, J = _lyapunov_parts(M, sde.D.detach().to(_WORK), t0, T)
    x_star = -torch.linalg.solve(M, u[..., None])[..., 0]  # u may carry batch dims ([k, n])
    x0 = torch.zeros(n, dtype=_WORK, device=M.device) if x0 is None else x0.detach().to(_WORK)
    m0 = x_star + (x0 - x_star) @ Phi0.mT
    P_init = torch.zeros_like(Sigma) if x0_cov is None else x0_cov.detach().to(_WORK)
    P0 = _sym(Sigma - Phi0 @ (Sigma - P_init) @ Phi0.mT)
    mean = x_star + (m0 - x_star) @ W.mT / T
    cov = _sym(W @ P0 @ W.mT + J + J.mT - W @ Sigma @ W.mT) / T**2
    return mean.to(sde.dtype), cov.to(sde.dtype)


def _lyapunov_parts(M: Tensor, D: Tensor, t0: float, T: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(Σ, Φ_{t0}, W, J) of :func:`_time_average_moments_lyapunov` for a stable float64 drift M [n, n].
    Computed on the host (SciPy's Lyapunov solver) and returned on M's device."""
    import scipy.linalg as sla

    where, M, D = M.device, M.cpu(), D.cpu()
    eye = torch.eye(M.shape[-1], dtype=_WORK)
    Sigma = _sym(torch.from_numpy(sla.solve_continuous_lyapunov(M.numpy(), -D.numpy())))
    Phi0 = torch.linalg.matrix_exp(M * t0)
    W = torch.linalg.solve(M, torch.linalg.matrix_exp(M * T) - eye)
    J = torch.linalg.solve(M, W - T * eye) @ Sigma
    return Sigma.to(where), Phi0.to(where), W.to(where), J.to(where)


def time_average_law(M: Tensor, D: Tensor, t0: float, T: float) -> tuple[Tensor, Tensor]:
    """The law of the time average x̄ = (1/T)∫_{t0}^{t0+T} x dt of dx = (M x + u) dt + Q dW (QQᵀ = D) started
    at x(0) = 0, as a map of the input u: x̄ ~ N(Ψ u, C) with

        Ψ = -(I - W Φ_{t0} / T) M⁻¹,   C = (W P0 Wᵀ + J + Jᵀ - W Σ Wᵀ) / T²,   P0 = Σ - Φ_{t0} Σ Φ_{t0}ᵀ

    (the quantities of :func:`time_average_moments` with x0 = 0; u enters the mean only). A device that keeps
    its drift loaded answers every right-hand side by one product with Ψ and one draw with C's factor: O(n²)
    per input instead of O(n³). M must be stable (a loaded positive-definite matrix). Float64 [n, n] each."""
    M = M.detach().to(_WORK)
    D = D.detach().to(_WORK)
    if not (math.isfinite(T) and T > 0 and math.isfinite(t0) and t0 >= 0):
        raise InputError(f"time_average_law needs t0 >= 0 and T > 0; got t0 = {t0!r}, T = {T!r}.")
    Sigma, Phi0, W, J = _lyapunov_parts(M, D, t0, T)
    eye = torch.eye(M.shape[-1], dtype=_WORK, device=M.device)
    Psi = -torch.linalg.solve(M.mT, (eye - W @ Phi0 / T).mT).mT  # -(I - WΦ/T) M⁻¹
    P0 = _sym(Sigma - Phi0 @ Sigma @ Phi0.mT)
    C = _sym(W @ P0 @ W.mT + J + J.mT - W @ Sigma @ W.mT) / T**2
    return Psi, C


def sample_time_average(
    sde: LinearSDE,
    x0: Tensor | None,
    t0: float,
    T: float,
    *,
    generator: torch.Generator | None = None,
    batch: int = 1,
    x0_cov: Tensor | None = None,
) -> Tensor:
    """Draw the time average (1/T)∫_{t0}^{t0+T} x dt in one shot from its exact Gaussian law
    (:func:`time_average_moments`), instead of simulating thousands of steps.

    Returns [batch, *batch_shape, n] in the SDE's dtype. Cost: the moments, O(n³), plus batch·n² for the draws.
    """
    _check_batch(batch)
    mean, cov = time_average_moments(sde, x0, t0, T, x0_cov=x0_cov)
    L = psd_factor(cov.to(_WORK)).to(sde.dtype)
    lead = (batch, *mean.shape[:-1])
    xi = _rng.randn((*lead, sde.n), generator=generator, dtype=sde.dtype, device=sde.device)
    return mean + (L @ xi[..., None])[..., 0]


def log_likelihood(sde: LinearSDE, X: Tensor, dt: float) -> Tensor:
    """Exact Gaussian log-likelihood of observed paths X [..., T+1, n] sampled every dt, conditioned on X[..., 0]:

        Σ_k log N(x_{k+1}; Φ x_k + Γ u, S)

    with (Φ, S, Γ) from :func:`transition` (differentiable: torch autograd flows through the matrix
    exponentials, so a calibration can maximise it with LBFGS). Returns [...] (summed over steps), float64.
    Cost O(n³) set-up + O(T n²).
    """
    Phi, S, Gamma = (a.to(_WORK) for a in transition(sde.M, sde.D, dt))
    X = X.to(_WORK)
    r = X[..., 1:, :] - X[..., :-1, :] @ Phi.mT - (Gamma @ sde.u.to(_WORK)[..., None])[..., None, :, 0]
    L = torch.linalg.cholesky(S)
    z = torch.linalg.solve_triangular(L[..., None, :, :], r[..., None], upper=False)[..., 0]
    n = sde.n
    logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    per_step = -0.5 * ((z**2).sum(-1) + logdet[..., None] + n * math.log(2 * math.pi))
    return per_step.sum(-1)
