"""Bad inputs to the circuits API give a CircuitError naming the value (never a silently changed array)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from thermotrain import CircuitError
from thermotrain.circuits import MAX_CELLS, NonIdealities, from_matrix, preset


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "8", MAX_CELLS + 1])
def test_preset_refuses_a_size_that_is_not_a_cell_count(size) -> None:
    with pytest.raises(CircuitError, match="size"):
        preset("rc8", size=size)


def test_preset_size_none_is_the_8_cell_default() -> None:
    assert preset("rc8").size == 8 and preset("rlc8", size=3).size == 3


@pytest.mark.parametrize(
    "matrix, match",
    [
        (np.eye(2) * (1 + 1e-3j), "complex"),
        (np.array([["1", "0"], ["0", "1"]]), "dtype"),
        (np.array([[1.0, 0.0], [0.0, np.nan]]), "not finite"),
        ([[1.0, 0.0], [0.0]], "rectangular"),
        (np.ones(3), "square"),
        (np.zeros((0, 0)), "square"),
        (np.eye(MAX_CELLS + 1), "cells"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), "positive definite"),
    ],
)
def test_from_matrix_refuses_what_it_cannot_realise(matrix, match: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning: the imaginary part is refused, not dropped
        with pytest.raises(CircuitError, match=match):
            from_matrix(matrix, b=None)


@pytest.mark.parametrize("kw", [{"damping": "0.1"}, {"damping": float("nan")}, {"kappa0": "1e-2"}])
def test_from_matrix_refuses_non_numeric_settings(kw) -> None:
    with pytest.raises(CircuitError):
        from_matrix(np.eye(2), b=[1.0, 0.0], **kw)


def test_complex_right_hand_side_is_refused() -> None:
    with pytest.raises(CircuitError, match="complex"):
        from_matrix(np.eye(2), b=np.array([1j, 0.0]))


@pytest.mark.parametrize(
    "tiny, corner_bits, match",
    [
        (1e-12, None, r"R1_1 \(A_dev\[1,1\] = 1e-12\) = 1e\+16 ohms is outside"),  # was dropped as "zero"
        (1e-9, None, r"R1_1 \(A_dev\[1,1\] = 1e-09\)"),
        (1e-3, 8, r"A_dev\[1,1\] = 0: cell 1's self term .* rounds to zero"),  # quantized away
    ],
)
def test_a_small_diagonal_entry_is_refused_never_dropped(tiny: float, corner_bits, match: str) -> None:
    """A cell's own leak (the diagonal) is never left out as an absent coupling: without it the integrator
    has no restoring term and the written array is unstable."""
    spec = from_matrix(
        np.diag([1.0, tiny, 1.0]), b=np.ones(3), nonideal=NonIdealities(coupling_bits=corner_bits)
    )
    with pytest.raises(CircuitError, match=match):
        spec.build()


def test_roundoff_sized_off_diagonal_couplings_are_still_dropped() -> None:
    """An off-diagonal entry at most ZERO_ENTRY of max|A| is an absent coupling (no part), as before."""
    A = np.array([[1.0, 1e-13, 0.0], [1e-13, 0.5, -0.2], [0.0, -0.2, 1.0]])
    names = {e.name for e in from_matrix(A, b=np.ones(3)).build().elements}
    assert {"R0_0", "R1_1", "R2_2", "R1_2", "R2_1"} <= names
    assert not names & {"R0_1", "R1_0", "R0_2", "R2_0"}


def test_rlc_row_sum_at_roundoff_level_is_named_as_such() -> None:
    with pytest.raises(CircuitError, match=r"row 1 of A sums to 1e-12 ~ 0"):
        from_matrix(np.diag([1.0, 1e-12, 1.0]), family="rlc")


@pytest.mark.parametrize("scale_a, scale_b", [(1e-300, 1e10), (1e200, 1e-200), (1.0, 1e-310)])
def test_b_whose_solution_leaves_float64_is_refused(scale_a: float, scale_b: float) -> None:
    """b / max|A| overflowing or underflowing would put 0 V (or nan) on the DACs without a word."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no RuntimeWarning on the way
        with pytest.raises(CircuitError, match="outside float64's range.*rescale b"):
            from_matrix(scale_a * np.eye(3), b=scale_b * np.ones(3))


def test_extreme_but_representable_scales_map_back_exactly() -> None:
    for s in (1e-300, 1e300):
        sc = from_matrix(s * np.eye(3), b=np.ones(3)).scaling
        expect = math.log10(sc.kappa0) + math.log10(s) - 2 * math.log10(sc.voltage_scale)
        assert sc.matrix_scale == s and sc.kappa0_x > 0  # v**2 alone would overflow / underflow here
        assert math.log10(sc.kappa0_x) == pytest.approx(expect, abs=1e-12)


@pytest.mark.parametrize("family", ["rc", "rlc"])
def test_a_matrix_the_coupling_resolution_rounds_to_indefinite_is_refused(family: str) -> None:
    """[[1, -.995], [-.995, 1]] is SPD (smallest eigenvalue 0.005), but at 6 coupling bits the off-diagonals
    round to -1: the programmed array would be singular, and a netlist of it would simulate a drift, not the
    target. 8 bits keep it positive definite and build."""
    A = np.array([[1.0, -0.995], [-0.995, 1.0]])
    with pytest.raises(
        CircuitError, match=r"not positive definite \(smallest eigenvalue 0; the target's is 0.005\)"
    ):
        from_matrix(A, family=family, nonideal=NonIdealities(coupling_bits=6)).build()
    spec = from_matrix(A, family=family, nonideal=NonIdealities(coupling_bits=8))
    assert np.linalg.eigvalsh(spec.device_matrix)[0] > 0
    spec.build()
