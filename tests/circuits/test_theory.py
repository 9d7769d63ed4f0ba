"""Theory: sampled-noise covariance and the statistical error budget, checked by simulation."""

import numpy as np
import scipy.linalg as sla

from thermotrain.circuits import Capacitor, Circuit, NoiseCurrent, Resistor, Theory, linear_sde, preset


def _rc(nt: float) -> Theory:
    c = Circuit(
        "rc",
        (Resistor("R", "a", "0", 1.0), Capacitor("C", "a", "0", 1.0), NoiseCurrent("I", "0", "a", 2.0)),
        ("a",),
        nt,
        1.0,
    )
    return Theory(linear_sde(c), nt)


def test_sampled_noise_tends_to_white_as_the_interval_shrinks():
    white = _rc(0.1).covariance(None)[0, 0]
    assert np.isclose(white, 1.0)  # S R / 2C = 1
    errs = [abs(_rc(nt).covariance((0.0,))[0, 0] - white) for nt in (0.2, 0.1, 0.05)]
    assert errs[0] > errs[1] > errs[2]
    assert np.isclose(errs[1] / errs[2], 2.0, rtol=0.1)  # first order in NT


def test_sampled_noise_covariance_matches_a_fine_simulation_of_interpolated_noise():
    """x' = -x + n(t), n linear between N(0, S/NT) knots; fine RK4 integration, variance at knots and midpoints."""
    nt, S = 0.5, 2.0
    th = _rc(nt)
    rng = np.random.default_rng(1)
    n_knots, sub, chains = 2000, 16, 200
    a = rng.standard_normal((chains, n_knots + 1)) * np.sqrt(S / nt)
    h = nt / sub
    x = np.zeros(chains)
    at_knot, at_mid = [], []

    def f(t, x, k):
        return -x + a[:, k] + (a[:, k + 1] - a[:, k]) * t / nt

    for k in range(n_knots):
        for j in range(sub):
            t = j * h
            k1 = f(t, x, k)
            k2 = f(t + h / 2, x + h / 2 * k1, k)
            k3 = f(t + h / 2, x + h / 2 * k2, k)
            k4 = f(t + h, x + h * k3, k)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            if j == sub // 2 - 1 and k > 40:
                at_mid.append(x.copy())
        if k > 40:
            at_knot.append(x.copy())
    for samples, ph in ((np.array(at_knot), 0.0), (np.array(at_mid), 0.5)):
        var = samples.var()
        pred = th.covariance((ph,))[0, 0]
        # standard error: chains independent, within-chain correlation time 1 (OU), spacing nt
        n_eff = samples.shape[1] * samples.shape[0] * nt / (2 * 1.0)
        se = pred * np.sqrt(2 / n_eff)
        assert abs(var - pred) < 4 * se, (ph, var, pred, se)
    assert abs(th.covariance((0.0,))[0, 0] - th.covariance((0.5,))[0, 0]) > 0.01  # cyclostationary


def test_error_budget_predicts_the_spread_of_sample_covariances():
    """Exact OU runs: the rms relative Frobenius error over runs matches the predicted one."""
    spec = preset("rc8", size=3)
    c = spec.build()
    th = Theory(linear_sde(c), None)
    M, Cout = th.sde.M, th.sde.C
    dt = 0.2 * c.time_constant
    Phi = sla.expm(M * dt)
    Sig = th.state_covariance_white
    L = np.linalg.cholesky(Sig - Phi @ Sig @ Phi.T)
    rng = np.random.default_rng(0)
    runs, steps = 200, 4000
    z = np.linalg.cholesky(Sig) @ rng.standard_normal((Sig.shape[0], runs))
    acc = np.zeros((runs, 3, 3))
    for _ in range(steps):
        z = Phi @ z + L @ rng.standard_normal(z.shape)
        y = Cout @ z
        acc += np.einsum("ir,jr->rij", y, y)
    cov = acc / steps
    true = th.covariance(None)
    rel = np.linalg.norm(cov - true, axis=(1, 2)) / np.linalg.norm(true)
    budget = th.error_budget(steps * dt, None)
    rms = np.sqrt(np.mean(rel**2))
    # rms of 200 runs estimates the expected error to ~ +-10% (chi-square with >= 200 dof, 3 sigma)
    assert abs(rms / budget.covariance_rel_error_expected - 1) < 0.2, (rms, budget)
    assert np.mean(rel <= budget.covariance_rel_error_ci95) > 0.9
