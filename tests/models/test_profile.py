"""Hardware profiles: JSON round trip and strict loading."""

import dataclasses
import json
from pathlib import Path

import pytest

from thermotrain import ProfileError
from thermotrain.models import SCHEMA_VERSION, HardwareProfile, load_profile, save_profile


def profile() -> HardwareProfile:
    return HardwareProfile.from_spec(
        "rc",
        kappa0=0.02,
        dac_bits=12,
        adc_bits=14,
        adc_rate_hz=12e6,
        tolerance=0.01,
        coupling_bits=8,
        opamp_gain=1e5,
        seeds=[3, 4],
    )


def write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "p.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_profile_round_trips_through_json(tmp_path: Path) -> None:
    p = profile()
    path = save_profile(p, tmp_path / "sub" / "p.json")
    q = load_profile(path)
    assert q == p
    assert q.schema_version == SCHEMA_VERSION and q.family == "rc" and q.seeds == [3, 4]
    assert "tolerance" in q.summary() and not q.calibrated
    rlc = HardwareProfile.from_spec("rlc", circuit={"name": "rlc8"})
    assert load_profile(save_profile(rlc, tmp_path / "rlc.json")) == rlc
    assert rlc.name == "rlc8"


def test_missing_field_names_the_field_and_the_fix(tmp_path: Path) -> None:
    data = json.loads(json.dumps(dataclasses.asdict(profile())))
    del data["kappa0"]
    with pytest.raises(ProfileError, match=r"missing field\(s\) \['kappa0'\].*thermotrain calibrate"):
        load_profile(write(tmp_path, data))
    data = dataclasses.asdict(profile())
    del data["fit"]["heldout_covariance_rel_error"]
    with pytest.raises(ProfileError, match="fit.heldout_covariance_rel_error is missing"):
        load_profile(write(tmp_path, data))
    data = dataclasses.asdict(profile())
    del data["component_stats"]["tolerance"]
    with pytest.raises(ProfileError, match="component_stats.tolerance"):
        load_profile(write(tmp_path, data))


def test_wrong_schema_version_is_refused(tmp_path: Path) -> None:
    data = dataclasses.asdict(profile())
    data["schema_version"] = 2
    with pytest.raises(ProfileError, match=r"schema_version 2; this thermotrain reads 1.*calibrate"):
        load_profile(write(tmp_path, data))


def test_non_finite_number_is_refused(tmp_path: Path) -> None:
    data = dataclasses.asdict(profile())
    text = json.dumps(data).replace('"tolerance": 0.01', '"tolerance": NaN')
    with pytest.raises(ProfileError, match=r"component_stats\.tolerance is nan"):
        load_profile(write(tmp_path, text))
    data["tau_s"] = float("inf")
    with pytest.raises(ProfileError, match="tau_s"):
        load_profile(write(tmp_path, json.dumps(data)))


def test_truncated_or_corrupt_file_is_refused(tmp_path: Path) -> None:
    text = json.dumps(dataclasses.asdict(profile()), indent=2)
    path = write(tmp_path, text[: len(text) // 2])
    with pytest.raises(ProfileError, match=r"p\.json is not valid JSON.*calibrate"):
        load_profile(path)
    with pytest.raises(ProfileError, match="JSON object"):
        load_profile(write(tmp_path, "[1, 2]"))
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "absent.json")


def test_unknown_or_invalid_values_are_refused(tmp_path: Path) -> None:
    data = dataclasses.asdict(profile())
    data["kappa"] = 1.0
    with pytest.raises(ProfileError, match=r"unknown field\(s\) \['kappa'\]"):
        load_profile(write(tmp_path, data))
    data = dataclasses.asdict(profile())
    data["component_stats"]["tolerence"] = 0.1
    with pytest.raises(ProfileError, match="component_stats.tolerence"):
        load_profile(write(tmp_path, data))
    with pytest.raises(ProfileError, match="adc_bits"):
        dataclasses.replace(profile(), adc_bits=1)
    with pytest.raises(ProfileError, match="family"):
        dataclasses.replace(profile(), family="lc")
    with pytest.raises(ProfileError, match="unknown component"):
        HardwareProfile.from_spec("rc", tolerence=0.1)


def test_profile_is_immutable_and_owns_its_dicts() -> None:
    stats = {**profile().component_stats}
    p = dataclasses.replace(profile(), component_stats=stats)
    stats["tolerance"] = 0.5
    assert p.component_stats["tolerance"] == 0.01
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.kappa0 = 1.0  # type: ignore[misc]


def test_profile_command_prints_a_shipped_profile(capsys) -> None:
    from thermotrain.cli import main

    assert main(["profile", "rc8"]) == 0
    out = capsys.readouterr().out
    assert "rc8-board" in out and "fit.heldout_covariance_rel_error" in out and "[[" not in out
