"""The one SPD check (thermotrain._spd), used by circuits' target check and by models' loaded-matrix check:
numpy and torch give the same answer and the same one-line refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thermotrain import CircuitError
from thermotrain._spd import smallest_eigenvalue_if_indefinite, spd_cholesky
from thermotrain.circuits import check_spd

INDEFINITE = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues -1 and 3
SPD = np.array([[2.0, -0.5], [-0.5, 1.0]])


@pytest.mark.parametrize("as_", [np.asarray, torch.tensor])
def test_numpy_and_torch_give_the_same_factor_and_the_same_refusal(as_) -> None:
    L = spd_cholesky(as_(SPD))
    assert np.allclose(np.asarray(L) @ np.asarray(L).T, SPD, rtol=0, atol=1e-15)
    with pytest.raises(CircuitError) as info:
        spd_cholesky(as_(INDEFINITE), "K", hint="check the curvature")
    assert str(info.value) == (
        "K must be symmetric positive definite; its smallest eigenvalue is -1. "
        "Add damping (K + lam·I with lam > 1) or check the curvature."
    )
    assert smallest_eigenvalue_if_indefinite(as_(SPD)) is None
    assert smallest_eigenvalue_if_indefinite(as_(INDEFINITE)) == pytest.approx(-1.0, abs=1e-12)
    # a shift above λ_min = (3 - √2)/2 ≈ 0.79 makes the SPD matrix fail the shifted test; λ_min is reported
    lam = (3 - np.sqrt(2)) / 2
    assert smallest_eigenvalue_if_indefinite(as_(SPD), 0.78) is None
    assert smallest_eigenvalue_if_indefinite(as_(SPD), 0.80) == pytest.approx(lam, abs=1e-12)


def test_circuits_target_check_uses_it() -> None:
    with pytest.raises(
        CircuitError, match=r"^A must be symmetric positive definite; its smallest eigenvalue is -1\."
    ):
        check_spd(INDEFINITE)
    assert np.array_equal(check_spd(SPD), SPD)
