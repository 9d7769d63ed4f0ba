"""ReadoutConfig and the analog time chosen per matrix: the error laws it plans with hold on the device."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from thermotrain import InputError
from thermotrain.models import inverse, solve
from thermotrain.models._readout import (
    ReadoutConfig,
    covariance_error,
    covariance_times,
    extreme_eigenvalues,
    plan_readout,
)


def _matrix(lam: list[float] | torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lam = torch.as_tensor(lam, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=g, dtype=torch.float64))
    return Q @ torch.diag(lam) @ Q.T, Q


def test_slowest_mode_error_matches_the_law_on_the_ideal_device() -> None:
    lam_min, eps = 0.02, 0.3
    A, Q = _matrix([lam_min, 0.05, 0.1, 0.3, 0.6, 1.0])
    burn, window, dt, predicted = covariance_times(lam_min, 6, eps, dt=2.0)
    assert predicted <= eps * 1.001
    g = torch.Generator().manual_seed(1)
    runs = 200
    errs = np.array(
        [
            float(
                Q[:, 0]
                @ inverse(A, backend="ideal", t=burn + window, dt=dt, burn_in=burn, generator=g).inverse
                @ Q[:, 0]
            )
            * lam_min
            - 1
            for _ in range(runs)
        ]
    )
    want = covariance_error(lam_min, dt, round(window / dt) + 1)
    # the sample sd of `runs` near-Gaussian draws has relative standard error 1/sqrt(2 (runs - 1))
    se = 1 / math.sqrt(2 * (runs - 1))
    assert abs(errs.std(ddof=1) / want - 1) < 3 * se
    assert abs(errs.mean()) < 3 * want / math.sqrt(runs) + math.exp(-2 * lam_min * burn)


def test_whole_matrix_error_follows_sqrt_n_over_samples() -> None:
    n, eps = 40, 0.4
    A, Q = _matrix(torch.linspace(0.5, 1.0, n))
    burn, window, dt, predicted = covariance_times(0.5, n, eps, dt=4.0)
    samples = round(window / dt) + 1
    assert samples == math.ceil((n + 1) / eps**2)
    root = Q @ torch.diag(torch.linspace(0.5, 1.0, n, dtype=torch.float64).sqrt()) @ Q.T
    g = torch.Generator().manual_seed(2)
    errs = []
    for _ in range(30):
        r = inverse(A, backend="ideal", t=burn + window, dt=dt, burn_in=burn, generator=g)
        errs.append(
            float((root @ r.inverse @ root - torch.eye(n, dtype=torch.float64)).norm() / math.sqrt(n))
        )
    # the Frobenius norm of an (n x n) error averages n^2 terms: its spread over runs is a few percent
    assert abs(np.mean(errs) / predicted - 1) < 0.06


def test_lanczos_brackets_the_extreme_eigenvalues() -> None:
    lam = torch.cat([torch.full((100,), 1e-3), torch.linspace(0.01, 1.0, 100)])
    A, _ = _matrix(lam, seed=3)
    lo, ritz, hi = extreme_eigenvalues(A, 32, generator=torch.Generator().manual_seed(0))
    assert lo <= 1e-3 * (1 + 1e-6) and ritz >= 1e-3 * (1 - 1e-9) and lo > 1e-4
    assert 1.0 - 1e-4 < hi <= 1.0 + 1e-12  # Ritz values lie inside the spectrum
    small, _ = _matrix([0.2, 0.5, 1.0])
    assert extreme_eigenvalues(small, 32)[0] == pytest.approx(0.2)  # exact when n <= steps


def test_auto_time_grows_with_the_condition_number_and_fixed_time_is_kept() -> None:
    cfg = ReadoutConfig(target_error=0.3)
    times = []
    for lam_min in (0.1, 0.01, 0.001):
        A, _ = _matrix([lam_min, 0.5, 1.0])
        plan = plan_readout(A, cfg, kappa0=1e-2)
        assert plan.predicted_error <= 0.3 * 1.001 and plan.lambda_min == pytest.approx(lam_min)
        times.append(plan.t)
    assert times[0] < times[1] < times[2] and times[2] / times[1] == pytest.approx(10, rel=0.1)
    fixed = plan_readout(
        _matrix([0.1, 1.0])[0], ReadoutConfig(analog_time=500.0, sample_interval=2.0), kappa0=1e-2
    )
    assert (fixed.t, fixed.burn_in, fixed.dt) == (500.0, 50.0, 2.0)


def test_average_mode_plan_reaches_its_target_on_the_ideal_device() -> None:
    A, _ = _matrix([0.01, 0.2, 1.0], seed=4)
    b = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    x_star = torch.linalg.solve(A, b)
    cfg = ReadoutConfig(mode="average", target_error=0.1)
    plan = plan_readout(A, cfg, kappa0=1e-2, b=b[:, None])
    g = torch.Generator().manual_seed(5)
    errs = [
        float(
            (
                solve(
                    A,
                    b,
                    backend="ideal",
                    t=plan.t,
                    burn_in=plan.burn_in,
                    kappa0=1e-2,
                    readout="average",
                    generator=g,
                ).x
                - x_star
            ).norm()
            / x_star.norm()
        )
        for _ in range(50)
    ]
    assert np.mean(errs) < 0.1


@pytest.mark.parametrize(
    "kw",
    [
        {"mode": "mean"},
        {"analog_time": 0},
        {"analog_time": float("nan")},
        {"analog_time": "3"},
        {"target_error": -0.1},
        {"sample_interval": 0.0},
        {"burn_in": 100.0, "analog_time": 50.0},
        {"kappa0": 0.0},
        {"roundings": 0},
        {"rounding": "up"},
    ],
)
def test_readout_config_refuses_bad_fields(kw) -> None:
    with pytest.raises(InputError):
        ReadoutConfig(**kw)


def test_readout_config_from_dict_is_strict() -> None:
    assert ReadoutConfig.from_dict({"target_error": 0.2}).target_error == 0.2
    with pytest.raises(InputError, match="unknown"):
        ReadoutConfig.from_dict({"target_eror": 0.2})


def test_the_auto_interval_decorrelates_a_well_conditioned_matrix() -> None:
    """A nearly isotropic matrix (rates 0.8 … 1 per τ): the automatic interval may not be shorter than the
    fastest relaxation, or the samples are correlated and the whole-matrix error is far above the plan's
    (found on Fashion-MNIST's gradient factors: a 2/(λ_min (n + 1)) interval of 0.004 τ gave a whitened error
    of 4.6 for a predicted 0.3). Measured over 20 runs, the error is the predicted one."""
    n, eps = 40, 0.3
    lam = torch.linspace(0.8, 1.0, n, dtype=torch.float64)
    A, Q = _matrix(lam, seed=3)
    plan = plan_readout(A, ReadoutConfig(target_error=eps), kappa0=1e-2)
    assert plan.dt >= 1.0 - 1e-9 and plan.predicted_error <= eps * 1.001
    root = Q @ torch.diag(lam.sqrt()) @ Q.T
    g = torch.Generator().manual_seed(4)
    errs = []
    for _ in range(20):
        r = inverse(A, backend="ideal", config=ReadoutConfig(target_error=eps), generator=g)
        assert r.plan.dt == pytest.approx(plan.dt) and r.plan.t == pytest.approx(plan.t)
        errs.append(
            float((root @ r.inverse @ root - torch.eye(n, dtype=torch.float64)).norm() / math.sqrt(n))
        )
    # Frobenius norms of 40 x 40 errors vary by a few percent between runs; the law's own approximation
    # (Gaussian fourth moments, the fast-mode factor taken at λ_max) is within 10 %
    assert 0.85 < np.mean(errs) / plan.predicted_error < 1.1, (np.mean(errs), plan.predicted_error)
