"""What the model predicts, before any simulation: stationary mean and covariance, autocovariance,
relaxation, DC solution, the exact effect of sampled-and-interpolated noise, and the statistical error
expected of every reported statistic.

Sampled noise (what ngspice TRNOISE and our seeded files do): each source holds independent samples
a_j ~ N(0, S/NT) every NT, linearly interpolated. Over one interval, with phase theta in [0, NT],

    z(theta) = e^{M theta} z_k + G0(theta) a_k + G1(theta) a_{k+1}
    G1 = P2/NT,  G0 = P1 - P2/NT,  P1 = int_0^theta e^{M(theta-s)} K ds,  P2 = int_0^theta e^{M(theta-s)} K s ds

(P1, P2 from one block exponential). With y_k = z_k - G1 a_k (independent of a_k),
y_{k+1} = Phi y_k + (Phi G1 + G0) a_k, a discrete Lyapunov equation gives the covariance at the knots, and
the formula above at any phase. As NT -> 0 it tends to the white-noise Lyapunov solution; at NT = tau/10 it
differs by a few percent, which is why validation uses it.

Statistical error (docs/physics.md, "Confidence intervals from the theory"): for a stationary Gaussian process observed for T,
Var(mean_i) = (1/T) int C_ii(s) ds and Cov(Sigma_ab, Sigma_cd) = (1/T) int [C_ac C_bd + C_ad C_bc](s) ds,
with C(s) = C_out e^{Ms} Sigma C_out^T (s >= 0), C(-s) = C(s)^T. The integrals are Sylvester solves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg as sla
from scipy.stats import norm

from thermotrain._errors import CircuitError
from thermotrain.circuits._mna import CircuitSDE


@dataclass(frozen=True)
class ErrorBudget:
    """Expected statistical error of a run of total observed time T (s)."""

    mean_std: np.ndarray  # standard error of each output's time average (V)
    covariance_rel_error_expected: float  # E-style (rms) relative Frobenius error of the sample covariance
    covariance_rel_error_ci95: float  # 95% quantile of the relative Frobenius error


class Theory:
    """Predictions of a reduced model (``CircuitSDE``) for outputs = node voltages. Times in seconds."""

    def __init__(self, sde: CircuitSDE, noise_interval: float | None = None) -> None:
        self.sde = sde
        self.nt = noise_interval
        ev = np.linalg.eigvals(sde.M)
        if np.max(ev.real) >= 0:
            raise CircuitError(
                f"the array is unstable: its drift has an eigenvalue with real part {np.max(ev.real):.3g} 1/s >= 0. "
                "Check the sign pattern (A must be SPD) and the amplifier model (gain-bandwidth, output resistance)."
            )
        self.eigenvalues = ev

    # ---- deterministic ----------------------------------------------------------------------------
    @cached_property
    def state_mean(self) -> np.ndarray:
        return -np.linalg.solve(self.sde.M, self.sde.drift_offset)

    @cached_property
    def mean(self) -> np.ndarray:
        """Stationary (= DC) output mean (V)."""
        return self.sde.C @ self.state_mean + self.sde.D @ self.sde.u

    @property
    def relaxation_time(self) -> float:
        """Slowest relaxation time 1/min(-Re lambda) (s)."""
        return float(1.0 / np.min(-self.eigenvalues.real))

    @property
    def fastest_rate(self) -> float:
        return float(np.max(np.abs(self.eigenvalues)))

    def transient_mean(self, t: np.ndarray, z0: np.ndarray) -> np.ndarray:
        """Output mean at times t (s) from state z0: C (z* + e^{Mt}(z0 - z*)) + D u. Shape [T, P]."""
        t = np.asarray(t, float)
        w, V = np.linalg.eig(self.sde.M)
        Vi = np.linalg.inv(V)
        c = Vi @ (np.asarray(z0, float) - self.state_mean)
        z = (V @ (np.exp(np.outer(w, t)) * c[:, None])).real.T + self.state_mean
        return z @ self.sde.C.T + self.sde.D @ self.sde.u

    def initial_state(self, node_voltages: dict[str, float]) -> np.ndarray:
        """State vector for given initial node voltages (capacitor voltages follow; inductor currents 0)."""
        z = np.zeros(len(self.sde.states))
        for k, (n1, n2) in enumerate(self.sde.state_nodes):
            if n2 == "" and n1 not in node_voltages:  # inductor current
                continue
            z[k] = node_voltages.get(n1, 0.0) - node_voltages.get(n2, 0.0)
        return z

    # ---- stationary covariance ---------------------------------------------------------------------
    @cached_property
    def state_covariance_white(self) -> np.ndarray:
        """Lyapunov solution M S + S M^T + Q Q^T = 0 (white noise)."""
        S = sla.solve_continuous_lyapunov(self.sde.M, -self.sde.D_noise)
        return 0.5 * (S + S.T)

    def _interval_maps(self, theta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """e^{M theta}, G0(theta), G1(theta) for linearly interpolated noise of interval NT."""
        M, K = self.sde.M, self.sde.K_z
        k, q = K.shape
        blk = np.zeros((k + 2 * q, k + 2 * q))
        blk[:k, :k] = M
        blk[:k, k : k + q] = K
        blk[k : k + q, k + q :] = np.eye(q)
        E = sla.expm(blk * theta)
        Phi, P1, P2 = E[:k, :k], E[:k, k : k + q], E[:k, k + q :]
        return Phi, P1 - P2 / self.nt, P2 / self.nt

    def state_covariance_sampled(self, phases: tuple[float, ...] = (0.0,)) -> np.ndarray:
        """State covariance for noise sampled every NT and linearly interpolated, averaged over the given
        phases (fractions of NT at which the process is observed)."""
        if self.nt is None:
            return self.state_covariance_white
        lam = self.sde.psd / self.nt
        Phi, G0, G1 = self._interval_maps(self.nt)
        W = Phi @ G1 + G0
        Sy = sla.solve_discrete_lyapunov(Phi, (W * lam) @ W.T)
        Sz = Sy + (G1 * lam) @ G1.T
        out = np.zeros_like(Sz)
        for ph in phases:
            if ph == 0:
                out += Sz
                continue
            Et, g0, g1 = self._interval_maps(ph * self.nt)
            cross = Et @ (G1 * lam) @ g0.T
            out += Et @ Sz @ Et.T + cross + cross.T + (g0 * lam) @ g0.T + (g1 * lam) @ g1.T
        out /= len(phases)
        return 0.5 * (out + out.T)

    def covariance(self, phases: tuple[float, ...] | None = (0.0,)) -> np.ndarray:
        """Output covariance (V^2): sampled-noise exact if the model has an NT, else white."""
        S = self.state_covariance_white if phases is None else self.state_covariance_sampled(phases)
        return self.sde.C @ S @ self.sde.C.T

    def autocovariance(self, lags: np.ndarray, phases: tuple[float, ...] | None = (0.0,)) -> np.ndarray:
        """E[(x(t+s)-mu)(x(t)-mu)^T] for lags s >= 0 (s), shape [L, P, P]."""
        S = self.state_covariance_white if phases is None else self.state_covariance_sampled(phases)
        SC = S @ self.sde.C.T
        w, V = np.linalg.eig(self.sde.M)
        Vi = np.linalg.inv(V)
        left = self.sde.C @ V
        right = Vi @ SC
        return np.einsum("pk,lk,kq->lpq", left, np.exp(np.outer(np.asarray(lags, float), w)), right).real

    # ---- statistical error of a run ----------------------------------------------------------------
    def error_budget(
        self, total_time: float, phases: tuple[float, ...] | None = (0.0,), seed: int = 0
    ) -> ErrorBudget:
        """Expected errors of the time-average and sample covariance over observed time ``total_time`` (s)."""
        M, C = self.sde.M, self.sde.C
        S = self.state_covariance_white if phases is None else self.state_covariance_sampled(phases)
        Sig = C @ S @ C.T
        P = C.shape[0]
        SC = S @ C.T  # k x P
        # int_0^inf C(s) ds = C (-M)^{-1} S C^T ; two-sided integral adds the transpose
        I1 = C @ np.linalg.solve(-M, SC)
        var_mean = np.diag(I1 + I1.T) / total_time
        # J[a, c, b, d] = int_0^inf C_ab(s) C_cd(s) ds = c_a^T Y_bd c_c,  M Y + Y M^T = -sigma_b sigma_d^T
        T_, Z = sla.schur(M, output="complex")
        Zi = Z.conj().T
        J = np.zeros((P, P, P, P))
        for b in range(P):
            for d in range(P):
                rhs = -np.outer(SC[:, b], SC[:, d])
                Y = Z @ sla.solve_sylvester(T_, T_.conj().T, Zi @ rhs @ Zi.conj().T) @ Zi
                J[:, :, b, d] = C @ Y.real @ C.T  # [a, c]
        # two-sided int C_ac C_bd = J[a,b,c,d]... reorder: J2[a,b,c,d] = int_{-inf}^{inf} C_ac(s) C_bd(s) ds
        Jt = J.transpose(0, 2, 1, 3)  # Jt[a, b, c, d] = int_0^inf C_ab C_cd  -> index as (a,b),(c,d)
        two = lambda a, b, c, d: Jt[a, b, c, d] + Jt[b, a, d, c]  # noqa: E731  C(-s)_xy = C(s)_yx
        idx = [(a, b) for a in range(P) for b in range(P)]
        V = np.empty((P * P, P * P))
        for i, (a, b) in enumerate(idx):
            for j, (c, d) in enumerate(idx):
                V[i, j] = two(a, c, b, d) + two(a, d, b, c)
        V = 0.5 * (V + V.T) / total_time
        mu = np.clip(np.linalg.eigvalsh(V), 0, None)
        fro = np.linalg.norm(Sig)
        rng = np.random.default_rng(seed)
        draws = (rng.standard_normal((20000, mu.size)) ** 2) @ mu
        return ErrorBudget(
            mean_std=np.sqrt(var_mean),
            covariance_rel_error_expected=float(np.sqrt(mu.sum()) / fro),
            covariance_rel_error_ci95=float(np.sqrt(np.quantile(draws, 0.95)) / fro),
        )


def bonferroni_z(n: int, level: float = 0.95) -> float:
    """Two-sided z such that n independent |N(0,1)| all stay below it with probability ``level``."""
    return float(norm.ppf(1 - (1 - level) / (2 * n)))
