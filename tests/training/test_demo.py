"""``demo_train``: the three-row comparison the lead's ``make demo`` prints, and its backend choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thermotrain.training import _demo


def test_demo_falls_back_to_the_ideal_device_and_says_so(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(
        _demo, "shipped_profile", lambda: (None, "no shipped profile (test); using the ideal device")
    )
    _demo.demo_train(tmp_path, quick=True)
    text = capsys.readouterr().out
    assert "using the ideal device" in text
    rows = json.loads((tmp_path / "train" / "comparison.json").read_text())
    assert [r["optimizer"] for r in rows] == ["adam", "kfac (digital)", "kfac (thermo, ideal)"]
    assert {"test_accuracy", "test_loss", "steps", "wall_s", "analog_time_tau"} <= set(rows[0])
    assert rows[2]["analog_time_tau"] > 0 and (tmp_path / "train" / "comparison.png").exists()


def test_a_corrupt_shipped_profile_is_reported_not_used(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "models" / "profiles" / "rc8.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    monkeypatch.setattr(_demo, "shipped_profile_path", lambda name: bad)
    path, why = _demo.shipped_profile()
    assert path is None and "does not load" in why


def test_demo_runs_thermo_kfac_with_the_defaults_a_user_gets(tmp_path: Path, monkeypatch) -> None:
    """No settings of the demo's own: the profile's κ0 and readout come from TrainConfig's defaults (the
    issue: the demo used 4000 τ while `train` used 50 τ and nobody was told)."""
    models = pytest.importorskip("thermotrain.models")
    prof = models.HardwareProfile.from_spec("rc", coupling_bits=8, kappa0=0.02, circuit={"name": "rc8"})
    models.save_profile(prof, tmp_path / "models" / "profiles" / "rc8.json")
    monkeypatch.setattr(
        _demo, "shipped_profile_path", lambda name: tmp_path / "models" / "profiles" / f"{name}.json"
    )
    seen = {}
    monkeypatch.setattr(_demo, "train_comparison", lambda out, **kw: seen.update(kw))
    _demo.demo_train(tmp_path, quick=True)
    assert seen["backend_profile"] == tmp_path / "models" / "profiles" / "rc8.json"
    assert set(seen) <= {"backend_profile", "epochs", "subset", "overwrite"}, seen


def test_the_shipped_profiles_load_and_are_calibrated() -> None:
    from thermotrain.models import load_profile, shipped_profile_path

    for name in ("rc8", "rlc8"):
        prof = load_profile(shipped_profile_path(name))
        assert prof.calibrated and prof.ngspice_version and prof.component_stats["coupling_bits"] == 8
        f = prof.fit
        # the bar, as measured when the profile was made (regenerate: docs/calibration.md)
        assert f["heldout_covariance_rel_error"] <= f["spice_spread_rel"]
        assert f["heldout_covariance_rel_error"] <= f["heldout_covariance_rel_error_ci95"]
        assert prof.calibration_device() is not None


def test_demo_prefers_the_profile_its_calibration_step_wrote(tmp_path: Path) -> None:
    from thermotrain.models import HardwareProfile, save_profile

    fresh = tmp_path / "calibrate-rc8" / "profile.json"
    save_profile(HardwareProfile.from_spec("rc", coupling_bits=8), fresh)
    path, why = _demo.demo_profile(tmp_path)
    assert path == fresh and "step 3" in why
    fresh.write_text("{truncated")
    path, why = _demo.demo_profile(tmp_path)
    assert path != fresh and "does not load" in why
