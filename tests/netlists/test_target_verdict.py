"""Issue 9: fidelity to the target (a second verdict, separate from agreement with the model), the clipped
fraction of amplifier outputs, and the corner in report.json.

The target case: a kappa = 100 matrix whose exact solution has a small entry (x = [1, -0.6, 0.03, 0.8]);
8-bit couplings move that entry to -0.1 (the model predicts it, SPICE reproduces it, so the model
agreement can PASS) while the device no longer meets the target."""

from __future__ import annotations

import numpy as np
import pytest

from thermotrain.circuits import NonIdealities, OpAmp, from_matrix
from thermotrain.netlists import Transient
from thermotrain.netlists._validation import (
    ValidationSettings,
    clipped_fraction,
    summary,
    target_line,
    validate,
)


def _kappa100() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(14)
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    A = Q @ np.diag(np.geomspace(1.0, 100.0, 4)) @ Q.T
    A = (A + A.T) / 2
    return A, A @ np.array([1.0, -0.6, 0.03, 0.8])


#: 2 x 1500 tau: only ~30 slowest relaxation times at kappa = 100, so the covariance CI95 is ~0.42 (the
#: solution, from the DC operating point, is exact); seed 1 is a seeded, bit-reproducible run that passes
#: the model check (seed 3 is one of the 5 % that do not).
SETTINGS = ValidationSettings(runs=2, duration_tau=1500.0, seed=1, workers=1)


@pytest.mark.spice
def test_8bit_board_flips_a_sign_and_does_not_meet_the_target(tmp_path) -> None:
    A, b = _kappa100()
    assert np.linalg.cond(A) == pytest.approx(100.0)
    spec = from_matrix(A, b, family="rc", nonideal=NonIdealities(coupling_bits=8))
    report = validate(spec, SETTINGS, out_dir=tmp_path / "v", progress=False, name="k100-8bit")
    t = report["target"]
    assert report["meets_target"] is False and t["meets"] is False
    assert t["solution_sign_flips"] == [2]
    assert t["solution_rel_error"] > 0.05 and t[f"{t['worst']}_rel_error"] > 0.05
    text = summary(report)
    assert f"device meets the target: no (worst relative error vs the ideal target: {t['worst']}" in text
    assert "1 solution sign(s) flipped: x[2]" in text
    # ... while SPICE agrees with the (quantized) model: the first verdict can still PASS
    assert report["pass"] is True, report["verdict"]
    assert report["verdict"] == "PASS"
    saved = (tmp_path / "v" / "report.json").read_text()
    assert '"meets_target": false' in saved and '"corner"' in saved


@pytest.mark.spice
def test_the_same_matrix_without_quantization_meets_the_target() -> None:
    """The control: an ideal board's solution is exact (to the op-amp gain), no sign flips; with a
    tolerance above this short run's covariance CI95 (~0.42) it meets the target."""
    import dataclasses

    A, b = _kappa100()
    settings = dataclasses.replace(SETTINGS, target_tolerance=0.6)
    report = validate(from_matrix(A, b, family="rc"), settings, progress=False)
    t = report["target"]
    assert t["solution_sign_flips"] == [] and t["solution_rel_error"] < 1e-4
    assert t["covariance_rel_error_ci95"] < t["tolerance"] == 0.6
    assert t["meets"] is True, t["why"]
    assert target_line(report).startswith("device meets the target: yes")


def test_target_tolerance_is_checked() -> None:
    from thermotrain import InputError

    with pytest.raises(InputError, match="target_tolerance"):
        ValidationSettings(target_tolerance=0.0)
    assert ValidationSettings(target_tolerance=None).target_tolerance is None


def _tr(values: np.ndarray, probes: tuple[str, ...]) -> Transient:
    t = np.arange(values.shape[0], dtype=np.float64)
    return Transient(t, values, probes, "39", 0.0, "shared")


def test_clipped_fraction_counts_samples_with_any_amplifier_at_its_swing() -> None:
    v = np.zeros((10, 3))
    v[2, 1] = 5.0  # at the swing
    v[3, 2] = -4.9999  # within the 1e-3 margin
    v[4, 1] = 6.0  # beyond it (a linear stage that would clip)
    v[4, 2] = 5.0  # same sample: counted once
    v[5, 0] = 9.0  # not an amplifier node
    v[6, 1] = 4.99  # below the margin
    tr = _tr(v, ("o0", "a1", "a2"))
    assert clipped_fraction([tr], ("a1", "a2"), 5.0, burn_in=0.0) == pytest.approx(3 / 10)
    assert clipped_fraction([tr], ("a1", "a2"), 5.0, burn_in=4.0) == pytest.approx(1 / 6)


@pytest.mark.spice
def test_clipping_amplifiers_fail_validation_with_that_reason() -> None:
    """An op-amp whose output swing (0.35 V) is inside the outputs' +-3 sigma band: the run clips on a large
    fraction of samples and validate FAILs naming the clipped fraction."""
    A = np.array([[2.0, -0.5], [-0.5, 1.0]])
    op = OpAmp(open_loop_gain=1e5, output_swing=0.35)
    spec = from_matrix(A, [0.2, 0.1], family="rc", nonideal=NonIdealities(opamp=op))
    report = validate(spec, ValidationSettings(runs=1, duration_tau=200.0, workers=1), progress=False)
    assert report["output_swing_V"] == 0.35
    assert report["clipped_fraction"] > 1e-3
    assert report["pass"] is False and report["checks"]["clipping"] is False
    assert "clipped_fraction" in report["verdict"] and "0.35 V swing" in report["verdict"]
