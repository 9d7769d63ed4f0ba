"""Fast covariance readout: a draw of the sample second moment Ĉ = (1/S) Σ_{k<S} x_k x_kᵀ of a linear SDE
sampled every Δ, in O(N³) flops whatever the number of samples S (the trajectory costs O(S·N²)).

The process (time in the SDE's unit, τ on the device): dx = (M x + u) dt + Q dW, D = Q Qᵀ, M stable (normal
or not), u constant (zero-mean below; "A mean" adds u); sampled x_k = x(B + kΔ), either stationary (``burn_in=None``) or from x(0) = 0 with burn-in B. Exact
one-step law x_{k+1} = Φ x_k + ε_k, Φ = e^{MΔ}, ε_k ~ N(0, Q_Δ), Q_Δ = P - Φ P Φᵀ, P the stationary
covariance (M P + P Mᵀ + D = 0), P_k = Cov(x_k).

**The identity it samples** (exact, any Φ): with X_k = x_k x_kᵀ and the Stein operator 𝒮(X) = X - Φ X Φᵀ,

    S · 𝒮(Ĉ) = X_0 - Φ X_{S-1} Φᵀ + W + A,   W = Σ_{k<S-1} ε_k ε_kᵀ,   A = Σ_{k<S-1} (Φ x_k ε_kᵀ + ε_k x_kᵀ Φᵀ)

(telescoping X_{k+1} - Φ X_k Φᵀ = Φ x_k ε_kᵀ + ε_k x_kᵀ Φᵀ + ε_k ε_kᵀ). 𝒮 is inverted in the eigenbasis of M
(M = V diag(λ) V⁻¹, complex for a non-normal drift; Φ's eigenvalues φ_i = e^{λ_i Δ}): 𝒮⁻¹ divides the
pair (i, j) by 1 - μ_ij, μ_ij = φ_i φ_j. The draw:

- X_0 = x_0 x_0ᵀ, x_0 ~ N(0, P_0): exact.
- W ~ Wishart(S - 1, Q_Δ): exact (Bartlett decomposition, O(N³) for any S; the ε_k are i.i.d.).
- A: Gaussian with A's exact covariance, A = F + Fᵀ, F = L_Π Z L_Qᵀ (Z i.i.d. N(0, 1), L_Π L_Πᵀ =
  Φ (Σ_{k<S-1} P_k) Φᵀ, L_Q L_Qᵀ = Q_Δ). A is a martingale sum, uncorrelated with X_0 and W.
- X_{S-1}: its best linear predictor from U = W + A - (S-1) Q_Δ (the pair-space lag structure gives
  Cov(X_{S-1}, U) = c·Cov(U)/(S-1), c_ij = (1 - μ_ij^{S-1})/(1 - μ_ij)) plus an independent x' x'ᵀ,
  x' ~ N(0, P_{S-1}).

**Fidelity** (what is exact, what is not):

- E[Ĉ] is exact: 𝒮⁻¹(P_0 - Φ P_{S-1} Φᵀ + (S-1) Q_Δ)/S, i.e. P, plus the burn-in transient when starting at 0.
- Cov(Ĉ_ab, Ĉ_cd) matches Isserlis' (1/S²) Σ_{k,l}[C_ac C_bd + C_ad C_bc](k - l), C(m) = Φ^m P, up to two
  stationary end terms: the lag-(S-1) coupling of X_0 with X_{S-1} (relative size |μ|^{S-1} ≤
  e^{-S(1-ρ²)}, ρ = max_i |φ_i|) and the remainder of X_{S-1} drawn with covariance Cov(X) instead of
  Cov(X) - c Cov(Ξ) cᵀ/(S-1), an excess of relative size ≈ (ρ² / (S(1 - ρ²)))² in the variance (5e-4 at the
  readout plan's S(1 - ρ²) ≈ 4/ε² = 44 for ε = 0.3). With a burn-in the regression coefficient is the
  stationary one: a further error of (burn-in transient) × 1/(S(1 - ρ²)).
- Higher cumulants: X_0, W and x' x'ᵀ are exact products (W carries the Wishart skewness of the fast,
  decorrelated pairs), but A is drawn Gaussian: the third cumulant of slow pairs (where A dominates) is
  under-stated. A sample variance of n_eff ≈ S(1 - φ²)/(1 + φ²) effective samples has skewness ≈
  sqrt(8/n_eff); the draw keeps only W's share of it. So the law is accurate while n_eff of the slowest mode is
  large: the call refuses ``S (1 - ρ²) < min_decorrelations`` (default 10, skewness ≤ 0.9 at the
  boundary; the readout plan runs at ≈ 44, skewness ≈ 0.6 under-stated there, 1σ tails right to ~5 %).
- Symmetric always; **not guaranteed PSD** (the Gaussian A can push a slow mode's eigenvalue below 0 with
  probability ≈ Φ_N(-1/ε_i) for a mode of relative error ε_i: 4e-4 at ε = 0.3). The trajectory path is PSD.
- Not modelled sample by sample: ADC quantization and output saturation act on each sample. ``adc_step`` adds
  the additive-uniform-noise model of a quantizer of step Δq, + Δq²/12 on the diagonal of E[Ĉ] (the extra
  variance, ≈ 2 P_ii Δq²/(12 S), is not added). The model holds when the signal spans LSBs (for a Gaussian
  signal of rms σ the quantization noise's moments depart from the uniform ones by ~exp(-2π²σ²/Δq²): 3e-9 at
  σ = Δq); below :data:`ADC_MIN_RMS_LSB` LSBs on any observed channel the call is refused, so the caller runs
  the trajectory (a 4-bit ADC over ±10 V reads the small factors of a K-FAC network as a constant: a zero
  covariance, where the model would add Δq²/12 and inflate the inverse 10-20×). Clipping (the op-amp swing,
  the ADC's range) is not modelled: ``clip`` names the level, and the call is refused when any observed
  channel's headroom (clip − |stationary mean|) is below :data:`CLIP_MIN_HEADROOM_RMS` rms (a Gaussian clipped
  at 4σ keeps all but 1.2e-4 of its variance; at 2σ it loses 8 %, at 1.5σ 22 %), so the caller runs the trajectory, which
  clips every sample.
- **A mean** (a constant input u, e.g. op-amp offsets, and a readout ``offset`` o): x_k = m_k + z_k with the
  deterministic mean m_k = (I - Φ_B Φ^k) μ, μ = -M⁻¹u (from x(0) = 0; m_k = μ when stationary), and
  y_k = O x_k + o. Then Ĉ = O Ĉ_z Oᵀ + (1/S) Σ n_k n_kᵀ + (O Σ_k z_k n_kᵀ + transpose)/S, n_k = O m_k + o.
  The deterministic term is exact (geometric sums in the eigenbasis); the cross term is drawn as
  O z̄ n̄ᵀ + n̄ z̄ᵀ Oᵀ with z̄ = (1/S) Σ z_k from its exact Gaussian law (Cov z̄ = (1/S²) Σ_{k,l} Cov(z_k, z_l),
  closed form with the burn-in), independent of the rest: a linear and a quadratic function of a zero-mean
  Gaussian path are uncorrelated, so E[Ĉ] stays exact and its covariance is exact up to replacing n_k by its
  window average n̄ in the cross term — the mean's transient left after the burn-in, relative size
  ≤ max_i |β_i| g_i / S (β_i = e^{λ_i B}, g_i = Σ_k |φ_i|^k ≤ 1/(1 - |φ_i|)), below 1 % at the readout plan's
  burn-in. The trajectory path is the reference (``test_a_mean_path_matches_the_trajectory``).
- Conditioning: a non-normal M is diagonalized; eigenvector matrices with ‖V‖_F ‖V⁻¹‖_F > ``max_condition``
  (near-defective drift) are refused, so the caller falls back to the trajectory path.

Cost: one eigendecomposition (eigh when M is symmetric, else eig + inverse), a dozen N×N (complex) products
and four Cholesky factors: O(N³), independent of S. Batched over leading dimensions of M and D (tiles) and
over ``draws`` independent readouts; runs on the tensors' device (CPU or CUDA), float64 inside.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from thermotrain._args import check_float, check_int
from thermotrain._errors import InputError
from thermotrain.models import _rng
from thermotrain.models._linear_sde import LinearSDE, psd_factor

__all__ = ["sample_covariance_readout", "wishart"]

_WORK = torch.float64


#: the least signal rms, in ADC steps, on every observed channel for the ADC's additive-uniform-noise model
ADC_MIN_RMS_LSB = 1.0
#: the least headroom to the clipping level, in units of the channel's rms, for the law to ignore clipping
CLIP_MIN_HEADROOM_RMS = 4.0


def readout_law_args(readout: object) -> dict[str, float | None]:
    """The law's view of a readout chain (:class:`~thermotrain.models._quantize.Readout` or None): its ADC step,
    offset and clipping level (the smaller of the swing and the ADC's full scale; None = never clips)."""
    adc = getattr(readout, "adc", None)
    levels = [v for v in (getattr(readout, "saturation", None), getattr(adc, "full_scale", None)) if v]
    return {
        "adc_step": 0.0 if adc is None else float(adc.step),
        "offset": float(getattr(readout, "offset", 0.0)),
        "clip": min(levels) if levels else None,
    }


def _gamma(shape_param: Tensor, generator: torch.Generator | None) -> Tensor:
    """Gamma(α, 1) draws for every entry of α > 0 (Marsaglia–Tsang 2000, with the α < 1 boost), from
    ``generator`` (torch's own Gamma sampler cannot take one). Acceptance ≥ 95 % per round."""
    alpha = shape_param.to(_WORK)
    boost = alpha < 1
    a = torch.where(boost, alpha + 1, alpha)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(a)
    todo = torch.ones_like(a, dtype=torch.bool)
    for _ in range(100):
        x = _rng.randn(a.shape, generator=generator, dtype=_WORK, device=a.device)
        u = _rng.rand(a.shape, generator=generator, dtype=_WORK, device=a.device)
        v = (1 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        new = todo & ok
        out = torch.where(new, d * v, out)
        todo = todo & ~ok
        if not bool(todo.any()):
            break
    if boost.any():
        u = _rng.rand(a.shape, generator=generator, dtype=_WORK, device=a.device)
        out = torch.where(boost, out * u ** (1.0 / alpha), out)
    return out


def wishart(L: Tensor, dof: int, lead: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """Draws of W = Σ_{r<dof} e_r e_rᵀ, e_r ~ N(0, L Lᵀ) i.i.d., shape [*lead, N, N] (L: [..., N, N]
    broadcasting to it). Bartlett: W = L T Tᵀ Lᵀ, T lower triangular, T_ii² ~ χ²_{dof-i}, T_ij ~ N(0, 1)
    (i > j): O(N³) for any ``dof`` ≥ N; fewer degrees of freedom form the dof outer products directly."""
    n = L.shape[-1]
    dev = L.device
    if dof < n:
        E = L @ _rng.randn((*lead, n, dof), generator=generator, dtype=_WORK, device=dev)
        return E @ E.mT
    T = _rng.randn((*lead, n, n), generator=generator, dtype=_WORK, device=dev).tril(-1)
    chi2 = 2.0 * _gamma((0.5 * (dof - torch.arange(n, dtype=_WORK, device=dev))).expand(*lead, n), generator)
    T = T + torch.diag_embed(chi2.sqrt())
    B = L @ T
    return B @ B.mT


def _sym(X: Tensor) -> Tensor:
    return 0.5 * (X + X.mT)


def sample_covariance_readout(
    sde_or_A: LinearSDE | Tensor,
    *,
    dt: float,
    samples: int,
    burn_in: float | None = None,
    kappa0: float = 1e-2,
    observe: Tensor | None = None,
    draws: int | None = None,
    generator: torch.Generator | None = None,
    adc_step: float = 0.0,
    min_decorrelations: float = 10.0,
    max_condition: float = 1e8,
    offset: Tensor | float = 0.0,
    clip: float | None = None,
) -> Tensor:
    """Draw Ĉ = (1/S) Σ_{k<S} y_k y_kᵀ, y_k = O x(B + kΔ), without simulating the S samples (law and fidelity:
    module docstring).

    Args:
        sde_or_A: a :class:`LinearSDE` dx = (M x + u) dt + Q dW (leading batch dims = tiles; a constant
            input u, e.g. op-amp offsets, adds the mean path's terms, see "A mean" in the module docstring),
            or a symmetric positive definite A [..., n, n]: the ideal device dx = -A x dt + sqrt(2 κ0) dW.
        dt: sample interval Δ (the SDE's time unit, τ), > 0.
        samples: S ≥ 2, the number of samples (the trajectory path's ``n_steps + 1``).
        burn_in: None = the first sample is drawn from the stationary law; a time B ≥ 0 = the device starts at
            x(0) = 0 and the first sample is x(B).
        kappa0: noise level of the ideal device (only with a matrix A).
        observe: [n_obs, N] read-out map O (default identity): the result is O Ĉ_x Oᵀ.
        draws: number of independent readouts, prepended as a leading dimension (None = no extra dimension).
        generator: torch generator on the tensors' device.
        adc_step: ADC step Δq (same unit as y); adds Δq²/12 to the diagonal of the mean (uniform-noise model).
        min_decorrelations: refuse when S (1 - ρ²) is smaller (ρ = the slowest mode's |e^{λΔ}|): the Gaussian
            part of the law would misstate the slow modes' skewness (see the module docstring).
        max_condition: refuse a non-normal drift whose eigenvector matrix has ‖V‖_F ‖V⁻¹‖_F above this.
        offset: a constant added to every read sample, y_k = O x_k + offset (a readout offset; V), a float or
            [n_obs].
        clip: the level at which read samples clip (same unit as y; None = never): refused when a channel
            comes within :data:`CLIP_MIN_HEADROOM_RMS` rms of it (the law does not model clipping).
    Returns:
        [*(draws,), *batch, n_obs, n_obs] in the SDE's (or A's) dtype and device, symmetric (not always PSD).
    Raises:
        InputError naming the value and the fix (unstable or near-defective drift, too few decorrelation
        times, an ADC coarser than the signal, a signal near the clipping level, bad shapes).
    Cost: O(N³) independent of S (see the module docstring).
    """
    dt = check_float("dt", dt, minimum=0.0, strict_min=True, unit="tau")
    samples = check_int("samples", samples, minimum=2)
    if burn_in is not None:
        burn_in = check_float("burn_in", burn_in, minimum=0.0, unit="tau")
    check_float("adc_step", adc_step, minimum=0.0)
    if clip is not None:
        clip = check_float("clip", clip, minimum=0.0, strict_min=True)
    if draws is not None:
        draws = check_int("draws", draws, minimum=1)
    if isinstance(sde_or_A, LinearSDE):
        sde = sde_or_A
        u_in = sde.u.to(_WORK) if bool((sde.u != 0).any()) else None
        out_dtype, dev = sde.dtype, sde.device
        M, D = sde.M.to(_WORK), sde.D.to(_WORK)
        shape = torch.broadcast_shapes(M.shape, D.shape)
        M, D = M.expand(shape), D.expand(shape)
    elif isinstance(sde_or_A, Tensor):
        A = sde_or_A
        if A.ndim < 2 or A.shape[-1] != A.shape[-2] or not A.is_floating_point():
            raise InputError(f"A must be a floating [..., n, n] tensor; got shape {tuple(A.shape)}.")
        kappa0 = check_float("kappa0", kappa0, minimum=0.0, strict_min=True)
        out_dtype, dev = A.dtype, A.device
        u_in = None
        M = -_sym(A.to(_WORK))
        D = (2.0 * kappa0) * torch.eye(A.shape[-1], dtype=_WORK, device=dev).expand(M.shape)
    else:
        raise InputError(
            f"sde_or_A must be a LinearSDE or an SPD matrix tensor; got {type(sde_or_A).__name__}."
        )
    N = M.shape[-1]
    batch = tuple(M.shape[:-2])
    lead = ((draws,) if draws is not None else ()) + batch
    O = None
    if observe is not None:
        if observe.ndim != 2 or observe.shape[1] != N:
            raise InputError(f"observe must be [n_obs, {N}]; got shape {tuple(observe.shape)}.")
        O = observe.to(dtype=_WORK, device=dev)

    # ---- eigenbasis of M (real orthogonal when M is symmetric)
    symmetric = bool(torch.allclose(M, M.mT, rtol=0.0, atol=1e-14 * max(float(M.abs().max()), 1e-300)))
    if symmetric:
        lam, V = torch.linalg.eigh(_sym(M))
        Vinv = V.mT
    else:
        lam, V = torch.linalg.eig(M)
        Vinv = torch.linalg.inv(V)
        cond = float((torch.linalg.matrix_norm(V) * torch.linalg.matrix_norm(Vinv)).max())
        if not cond <= max_condition:
            raise InputError(
                f"sample_covariance_readout: the drift's eigenvector matrix has condition ~{cond:.3g} > "
                f"max_condition={max_condition:g} (near-defective drift); use the trajectory path."
            )
    rate = float(lam.real.max())
    if not rate < 0:
        raise InputError(
            f"sample_covariance_readout: the drift is not stable (max Re λ = {rate:.3g} >= 0); no stationary "
            "law exists. Add damping or check the sign convention (dx = M x dt + ...)."
        )
    rho2 = math.exp(2.0 * rate * dt)
    decor = samples * -math.expm1(2.0 * rate * dt)
    if decor < min_decorrelations:
        raise InputError(
            f"sample_covariance_readout: S (1 - rho^2) = {decor:.3g} < min_decorrelations="
            f"{min_decorrelations:g} (S = {samples}, slowest rate {-rate:.3g}/tau, dt = {dt:g} tau): too few "
            "independent samples for the fast law; use a longer window or the trajectory path."
        )
    del rho2
    cdt = lam.dtype

    def to_eig(X: Tensor) -> Tensor:  # V⁻¹ X V⁻ᵀ
        X = X.to(cdt)
        return Vinv @ X @ Vinv.mT

    def to_real(Xe: Tensor, left: Tensor = V) -> Tensor:  # Re(W Xe Wᵀ), W = V (or O V)
        Y = left @ Xe @ left.mT
        return _sym(Y.real if Y.is_complex() else Y)

    s = lam[..., :, None] + lam[..., None, :]  # λ_i + λ_j
    one_minus_mu = -torch.expm1(s * dt)  # 1 - μ_ij
    mu = 1.0 - one_minus_mu
    Sm1 = samples - 1
    mu_n = torch.exp(s * (Sm1 * dt))  # μ^{S-1}
    c_n = (1.0 - mu_n) / one_minus_mu  # Σ_{m<S-1} μ^m
    De = to_eig(D)
    Pe = -De / s  # stationary covariance, eigen coordinates
    Qe = Pe * one_minus_mu  # Q_Δ = P - Φ P Φᵀ
    if burn_in is None:
        P0e = Pe
        Pend = Pe
        sumPe = Sm1 * Pe
    else:
        e_b = torch.exp(s * burn_in)  # β_i β_j, β = e^{λB}
        P0e = Pe * (1.0 - e_b)
        Pend = Pe * (1.0 - e_b * mu_n)
        sumPe = Sm1 * Pe - Pe * e_b * c_n
    mean_e = (P0e - mu * Pend + Sm1 * Qe) / (samples * one_minus_mu)
    left = V if O is None else O.to(cdt) @ V  # eigen coordinates -> observed channels
    off = torch.as_tensor(offset, dtype=_WORK, device=dev)
    # the stationary mean μ = -M⁻¹u [..., N]: the clipping headroom and the mean path's terms
    mu_st = None if u_in is None else -torch.linalg.solve(M, u_in.expand(*M.shape[:-1])[..., None])[..., 0]
    if adc_step > 0 or clip is not None:
        rms = torch.diagonal(to_real(Pe, left), dim1=-2, dim2=-1).clamp_min(0.0).sqrt()
    if clip is not None:
        level = off.expand(rms.shape)
        if mu_st is not None:
            level = level + (mu_st if O is None else mu_st @ O.mT)
        headroom = float(((clip - level.abs()) / rms.clamp_min(1e-300)).min())
        if headroom < CLIP_MIN_HEADROOM_RMS:
            raise InputError(
                f"sample_covariance_readout: a channel comes within {headroom:.2g} rms of the clipping level "
                f"{clip:.3g} (< {CLIP_MIN_HEADROOM_RMS:g}): the law does not model clipping; use the trajectory "
                "path (it clips every sample)."
            )
    if adc_step > 0:
        # the additive-uniform-noise model of the ADC needs the signal to span LSBs on every channel: a
        # quantizer reads a fluctuation well below one LSB as a constant (covariance ~0, not + Δq²/12)
        worst = float((rms / adc_step).min())
        if worst < ADC_MIN_RMS_LSB:
            raise InputError(
                f"sample_covariance_readout: a channel's signal rms is {worst:.2g} ADC steps (step "
                f"{adc_step:.3g}) < {ADC_MIN_RMS_LSB:g}: the ADC's additive-uniform-noise model does not hold "
                "there; use the trajectory path (it quantizes every sample)."
            )

    # ---- real-basis factors of the Gaussian pieces
    L_Q = psd_factor(to_real(Qe))
    L_P0 = psd_factor(to_real(P0e))
    L_Pend = L_P0 if burn_in is None else psd_factor(to_real(Pend))
    L_Pi = psd_factor(to_real(mu * sumPe))  # Φ (Σ P_k) Φᵀ

    def gauss_vec(L: Tensor) -> Tensor:
        xi = _rng.randn((*lead, N, 1), generator=generator, dtype=_WORK, device=dev)
        return (L @ xi)[..., 0]

    x0 = gauss_vec(L_P0)
    xe = gauss_vec(L_Pend)
    W = wishart(L_Q, Sm1, lead, generator)
    Z = _rng.randn((*lead, N, N), generator=generator, dtype=_WORK, device=dev)
    F = L_Pi @ Z @ L_Q.mT
    Q_real = L_Q @ L_Q.mT
    U = W - Sm1 * Q_real + F + F.mT
    Ue = to_eig(U)
    w0 = (Vinv @ x0.to(cdt)[..., None])[..., 0]
    we = (Vinv @ xe.to(cdt)[..., None])[..., 0]
    X0e = w0[..., :, None] * w0[..., None, :] - P0e
    Xee = we[..., :, None] * we[..., None, :] - Pend
    fluct = (X0e - mu * Xee + Ue * (1.0 - mu * c_n / Sm1)) / (samples * one_minus_mu)
    C_e = mean_e + fluct
    C = to_real(C_e, left)
    if mu_st is not None or bool((off != 0).any()):
        C = C + _mean_terms(mu_st, off, lam, V, Vinv, Pe, O, dt, samples, burn_in, lead, generator, to_real)
    if adc_step > 0:
        C = C + (adc_step**2 / 12.0) * torch.eye(C.shape[-1], dtype=_WORK, device=dev)
    return C.to(out_dtype)


def _mean_terms(
    mu_st: Tensor | None,
    offset: Tensor,
    lam: Tensor,
    V: Tensor,
    Vinv: Tensor,
    Pe: Tensor,
    O: Tensor | None,
    dt: float,
    S: int,
    burn_in: float | None,
    lead: tuple[int, ...],
    generator: torch.Generator | None,
    to_real: Callable[[Tensor], Tensor],
) -> Tensor:
    """What a mean path adds to Ĉ (module docstring, "A mean"): with y_k = O(m_k + z_k) + o, m_k the
    deterministic mean and z_k the zero-mean process the caller drew,

        Ĉ_y - O Ĉ_z Oᵀ = (1/S) Σ n_k n_kᵀ + O z̄ n̄ᵀ + n̄ z̄ᵀ Oᵀ,   n_k = O m_k + o,

    the first term exact, the cross term with z̄ = (1/S) Σ z_k drawn from its exact Gaussian law
    (independently: it is uncorrelated with every quadratic part) and n_k replaced by its average n̄.
    ``mu_st``: the stationary mean -M⁻¹u [..., N] (None for u = 0)."""
    cdt = lam.dtype
    N = lam.shape[-1]
    dev = lam.device
    Sf = float(S)
    phi = torch.exp(lam * dt)
    one_m_phi = -torch.expm1(lam * dt)
    g = -torch.expm1(lam * (S * dt)) / one_m_phi  # Σ_{k<S} φ^k
    a = phi / one_m_phi
    s = lam[..., :, None] + lam[..., None, :]
    g_mu = -torch.expm1(s * (S * dt)) / -torch.expm1(s * dt)  # Σ_{k<S} (φ_i φ_j)^k
    beta = torch.zeros_like(lam) if burn_in is None else torch.exp(lam * burn_in)
    if mu_st is None:
        mt = torch.zeros(lam.shape, dtype=cdt, device=dev)
    else:
        mt = (Vinv @ mu_st.to(cdt)[..., None])[..., 0]
    bg = beta * g / Sf
    mbar_e = mt * (1.0 - bg)
    G_e = (mt[..., :, None] * mt[..., None, :]) * (
        1.0 - bg[..., :, None] - bg[..., None, :] + beta[..., :, None] * beta[..., None, :] * g_mu / Sf
    )
    # Cov(z̄) in eigen coordinates: (1/S²) Σ_{k,l} Cov(z_k, z_l), Cov(z_k, z_l) = Φ^{k-l} P_l for k ≥ l
    ai, aj = a[..., :, None], a[..., None, :]
    gi, gj = g[..., :, None], g[..., None, :]
    e_b = beta[..., :, None] * beta[..., None, :]
    last = torch.exp(lam * ((S - 1) * dt))  # φ^{S-1}
    lagged = Sf * (1 + ai + aj) - ai * gi - aj * gj
    transient = (1 + ai + aj) * g_mu - ai * last[..., :, None] * gj - aj * last[..., None, :] * gi
    Cz = to_real(Pe * (lagged - e_b * transient) / Sf**2)
    xi = _rng.randn((*lead, N, 1), generator=generator, dtype=_WORK, device=dev)
    zbar = (psd_factor(Cz) @ xi)[..., 0]
    mbar = (V @ mbar_e[..., None])[..., 0]
    mbar = mbar.real if mbar.is_complex() else mbar
    G = to_real(G_e)
    if O is not None:
        zbar = zbar @ O.mT
        mbar = mbar @ O.mT
        G = O @ G @ O.mT
    offset = offset.expand(mbar.shape[-1])  # a float: every channel
    nbar = mbar + offset
    outer = mbar[..., :, None] * offset[..., None, :]
    cross = zbar[..., :, None] * nbar[..., None, :]
    return G + outer + outer.mT + offset[..., :, None] * offset[..., None, :] + cross + cross.mT
