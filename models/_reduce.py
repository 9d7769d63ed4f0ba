"""Model-order reduction of a circuit's full linear SDE to the states that matter (balanced truncation).

The full MNA model of an array (``thermotrain.circuits.linear_sde``) carries every dynamic state: integrator
and inverter capacitors, amplifier poles, parasitic capacitors, ESR nodes, inductor currents. Training needs
the few that set the output statistics. For the stable system

    dz = (M z + B u) dt + Q dW,    y = C z + D u

balanced truncation keeps the r states with the largest Hankel singular values σ_i = sqrt(λ_i(P O)), where
the controllability Gramian P (M P + P Mᵀ + Q Qᵀ = 0, the stationary state covariance) and the observability
Gramian O (Mᵀ O + O M + Cᵀ C = 0) are computed in the square-root form (Laub et al. 1987). The reduced model
is stable and its transfer function from noise to output obeys ‖G − G_r‖_∞ ≤ 2 Σ_{i>r} σ_i (Enns/Glover).
We report that bound and the errors users care about: the output covariance and DC mean of the reduced model
against the full one. Time is rescaled to units of ``time_unit`` (e.g. τ) first, and the states are scaled
to unit variance, so the Gramians of volt- and ampere-valued states are balanced in floating point too.

Cost: two Lyapunov solves and one SVD of the state dimension k, O(k³).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

__all__ = ["ReducedModel", "balanced_truncation"]


@dataclass(frozen=True)
class ReducedModel:
    """A reduced model y = C_r x + D u, dx = (M_r x + B_r u) dt + Q_r dW, time in units of ``time_unit`` s.

    Fields: M [r, r], B [r, m], Q [r, q], C [p, r], D [p, m], u [m] (the input the full model was given);
    ``hankel`` all k Hankel singular values (descending); ``order`` r; ``full_order`` k;
    ``hinf_bound`` 2 Σ_{i>r} σ_i (noise-to-output transfer, output units per unit noise);
    ``covariance_rel_error`` ‖Σ_y,r − Σ_y‖_F / ‖Σ_y‖_F and ``mean_rel_error`` of the DC output mean (white
    noise, stationary).
    """

    M: np.ndarray
    B: np.ndarray
    Q: np.ndarray
    C: np.ndarray
    D: np.ndarray
    u: np.ndarray
    time_unit: float
    hankel: np.ndarray
    order: int
    full_order: int
    hinf_bound: float
    covariance_rel_error: float
    mean_rel_error: float

    def output_covariance(self) -> np.ndarray:
        S = sla.solve_continuous_lyapunov(self.M, -self.Q @ self.Q.T)
        return self.C @ (0.5 * (S + S.T)) @ self.C.T

    def output_mean(self) -> np.ndarray:
        return self.C @ np.linalg.solve(-self.M, self.B @ self.u) + self.D @ self.u

    def report(self) -> dict[str, float | int | list[float]]:
        return {
            "full_order": self.full_order,
            "order": self.order,
            "hinf_bound": self.hinf_bound,
            "covariance_rel_error": self.covariance_rel_error,
            "mean_rel_error": self.mean_rel_error,
            "hankel_singular_values": [float(x) for x in self.hankel],
        }


def _psd_sqrt(S: np.ndarray) -> np.ndarray:
    """L with L Lᵀ = S for a symmetric PSD S (eigenvalues below rounding clamped to 0)."""
    lam, U = np.linalg.eigh(0.5 * (S + S.T))
    lam = np.clip(lam, 0.0, None)
    return U * np.sqrt(lam)[None, :]


def _stationary(M: np.ndarray, QQ: np.ndarray) -> np.ndarray:
    S = sla.solve_continuous_lyapunov(M, -QQ)
    return 0.5 * (S + S.T)


def balanced_truncation(
    M: np.ndarray,
    Q: np.ndarray,
    C: np.ndarray,
    *,
    B: np.ndarray | None = None,
    D: np.ndarray | None = None,
    u: np.ndarray | None = None,
    order: int | None = None,
    time_unit: float = 1.0,
    cov_rtol: float = 1e-3,
) -> ReducedModel:
    """Reduce dz = (M z + B u) dt + Q dW, y = C z + D u to ``order`` states by balanced truncation.

    Args:
        M: [k, k] stable drift (1/s); Q: [k, q] noise input; C: [p, k] output map.
        B: DC input matrices B, D and the input value u (optional; the DC mean error is reported with them).
        order: states kept; None = the smallest order (at least p, the outputs) whose output covariance is
            within ``cov_rtol`` (relative Frobenius) of the full model's, and its DC mean too.
        time_unit: seconds per model time unit (the reduced model's drift is M_r·time_unit).
    Returns:
        :class:`ReducedModel`. Raises ValueError for an unstable M or an order outside [1, k].
    """
    M = np.asarray(M, float) * time_unit
    Q = np.asarray(Q, float) * np.sqrt(time_unit)
    C = np.asarray(C, float)
    k, p = M.shape[0], C.shape[0]
    B = np.zeros((k, 0)) if B is None else np.asarray(B, float) * time_unit
    D = np.zeros((p, B.shape[1])) if D is None else np.asarray(D, float)
    u = np.zeros(B.shape[1]) if u is None else np.asarray(u, float)
    ev = np.linalg.eigvals(M)
    if np.max(ev.real) >= 0:
        raise ValueError(
            f"balanced truncation needs a stable drift; max Re λ(M) = {np.max(ev.real):.3g} >= 0 (per time unit)."
        )
    # scale states to unit stationary variance (volts and amperes alike), keeping the transform diagonal
    P0 = _stationary(M, Q @ Q.T)
    scale = np.sqrt(np.clip(np.diag(P0), 1e-300, None))
    Si, Sc = np.diag(1 / scale), np.diag(scale)
    Ms, Qs, Bs, Cs = Si @ M @ Sc, Si @ Q, Si @ B, C @ Sc
    # controllability w.r.t. noise and the DC input together (so the mean is kept too)
    inputs = np.hstack([Qs, Bs * (np.linalg.norm(Qs) / max(np.linalg.norm(Bs), 1e-300))]) if B.size else Qs
    P = _stationary(Ms, inputs @ inputs.T)
    O = sla.solve_continuous_lyapunov(Ms.T, -Cs.T @ Cs)
    O = 0.5 * (O + O.T)
    Lp, Lo = _psd_sqrt(P), _psd_sqrt(O)
    U, sig, Vt = np.linalg.svd(Lo.T @ Lp)
    full_cov = C @ P0 @ C.T
    full_mean = C @ np.linalg.solve(-M, B @ u) + D @ u if B.size else np.zeros(p)

    def truncate(r: int):
        sr = np.sqrt(sig[:r])
        T = Lp @ Vt[:r].T / sr[None, :]
        Ti = (U[:, :r].T @ Lo.T) / sr[:, None]
        Mr, Qr, Br, Cr = Ti @ Ms @ T, Ti @ Qs, Ti @ Bs, Cs @ T
        red_cov = Cr @ _stationary(Mr, Qr @ Qr.T) @ Cr.T
        err = float(np.linalg.norm(red_cov - full_cov) / np.linalg.norm(full_cov))
        return Mr, Qr, Br, Cr, err

    if order is None:  # the smallest order whose output covariance is within cov_rtol of the full model's
        for r in range(min(p, k), k + 1):
            Mr, Qr, Br, Cr, cov_err = truncate(r)
            mean = Cr @ np.linalg.solve(-Mr, Br @ u) + D @ u if B.size else np.zeros(p)
            mean_err = np.linalg.norm(mean - full_mean) / max(np.linalg.norm(full_mean), 1e-300)
            if (cov_err <= cov_rtol and mean_err <= cov_rtol) or sig[r - 1] <= 1e-14 * sig[0]:
                break
        order = r
    if not (1 <= order <= k):
        raise ValueError(f"order = {order} must be in [1, {k}] (the full model's state count).")
    r = order
    Mr, Qr, Br, Cr, cov_err = truncate(r)
    red_mean = Cr @ np.linalg.solve(-Mr, Br @ u) + D @ u if B.size else np.zeros(p)
    mean_norm = np.linalg.norm(full_mean)
    return ReducedModel(
        M=Mr,
        B=Br,
        Q=Qr,
        C=Cr,
        D=D,
        u=u,
        time_unit=time_unit,
        hankel=sig,
        order=r,
        full_order=k,
        hinf_bound=float(2 * sig[r:].sum()),
        covariance_rel_error=cov_err,
        mean_rel_error=float(np.linalg.norm(red_mean - full_mean) / mean_norm) if mean_norm > 0 else 0.0,
    )
