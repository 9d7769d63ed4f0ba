"""Bad inputs to the circuits API give a CircuitError naming the value (never a silently changed array)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from thermotrain import CircuitError
from thermotrain.circuits import MAX_CELLS, from_matrix, preset


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
