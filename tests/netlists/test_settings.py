"""One SpiceRunSettings behind validation's and calibration's settings; the traces archive's one writer and
reader (thermotrain.netlists), as validate --save-traces writes it and calibrate --from reads it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from thermotrain import InputError
from thermotrain.models import CalibrationSettings
from thermotrain.netlists import (
    TRACES_FILE,
    NoisyRuns,
    SpiceRunSettings,
    ValidationSettings,
    load_traces,
    save_traces,
)

SHARED = ("duration_tau", "noise", "seed", "workers", "burn_in", "engine", "timeout")


def test_validation_and_calibration_settings_share_the_spice_run_fields() -> None:
    names = [f.name for f in dataclasses.fields(SpiceRunSettings)]
    assert tuple(names) == SHARED
    for cls in (ValidationSettings, CalibrationSettings):
        assert issubclass(cls, SpiceRunSettings)
        assert [f.name for f in dataclasses.fields(cls)][: len(SHARED)] == names
    # the same shared defaults except the observed time per run
    v, c = ValidationSettings(), CalibrationSettings()
    assert (v.duration_tau, c.duration_tau) == (2500.0, 2000.0)
    assert all(getattr(v, k) == getattr(c, k) for k in SHARED if k != "duration_tau")
    assert c.runs == c.fit_runs + c.heldout_runs == 8 and v.runs == 4
    with pytest.raises(TypeError):
        ValidationSettings(4)  # type: ignore[misc]  # keyword-only: a field order cannot be relied on


@pytest.mark.parametrize("cls", [ValidationSettings, CalibrationSettings])
@pytest.mark.parametrize(
    ("field", "words"),
    [
        ({"duration_tau": 0}, "duration_tau=0"),
        ({"noise": "pink"}, "noise='pink'"),
        ({"engine": "xyce"}, "engine='xyce'"),
        ({"timeout": -1.0}, "timeout=-1.0"),
        ({"workers": 0}, "workers=0"),
    ],
)
def test_the_shared_fields_are_checked_once_for_both(cls, field, words) -> None:
    with pytest.raises(InputError, match=words):
        cls(**field)


def test_traces_round_trip_and_a_bad_archive_is_one_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    series = [rng.normal(size=(50, 3)) for _ in range(3)]
    path = save_traces(tmp_path / TRACES_FILE, NoisyRuns([], series, [], 1e-7, 2e-6, 0.0))
    runs = load_traces(path)
    assert runs.step == 1e-7 and runs.burn_in == 2e-6 and len(runs.series) == 3
    assert all(np.array_equal(a, b) for a, b in zip(runs.series, series, strict=True))
    np.savez(tmp_path / "bad.npz", runs=2, step=1e-7, burn_in=0.0, run0=series[0], run1=series[1][:, :2])
    with pytest.raises(InputError, match=r"^my traces: run1 has 2 nodes, run0 3\.$"):
        load_traces(tmp_path / "bad.npz", what="my traces")
