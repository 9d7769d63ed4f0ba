"""validate with a crashed worker and unusable outputs (issue 7, item 12 and the validate part of item 11):
the finished runs are kept, a crash is retried, a run that fails twice is named in report.json and
summary.txt (index, seed, reason) and the statistics use the other runs only; a bad ``--out`` is refused
before any SPICE run, nothing half-written is left. Real ngspice; only the crash is injected."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

import thermotrain.netlists._validation as v
from thermotrain._errors import InputError, OutputError
from thermotrain.circuits import preset
from thermotrain.netlists._sweep import InjectCrash, run_many, token_file
from thermotrain.netlists._validation import ValidationSettings, run_seed, validate

SETTINGS = ValidationSettings(runs=3, duration_tau=300, seed=3, workers=2)


def _inject(monkeypatch, crash: InjectCrash) -> None:
    monkeypatch.setattr(v, "run_many", functools.partial(run_many, fn=crash))


@pytest.mark.spice
def test_a_crash_retried_gives_the_same_report_as_no_crash(monkeypatch, tmp_path: Path) -> None:
    spec = preset("rc8", size=2)
    clean = validate(spec, SETTINGS, progress=False)
    token = token_file(tmp_path)
    _inject(monkeypatch, InjectCrash(token, seeds=(run_seed(3, 1),)))
    report = validate(spec, SETTINGS, out_dir=tmp_path / "v", progress=False)
    assert not Path(token).exists(), "the crash happened"
    assert report["runs_failed"] == [] and report["runs_ok"] == 3
    assert report["covariance_rel_error"] == clean["covariance_rel_error"]  # nothing lost, nothing changed
    assert report["verdict"] == clean["verdict"]


@pytest.mark.spice
def test_a_run_that_fails_twice_is_named_and_left_out_of_the_statistics(monkeypatch, tmp_path: Path) -> None:
    spec = preset("rc8", size=2)
    bad_seed = run_seed(3, 1)  # run 2
    _inject(monkeypatch, InjectCrash(None, seeds=(bad_seed,)))
    out = tmp_path / "v"
    report = validate(spec, SETTINGS, out_dir=out, progress=False)
    assert not report["pass"] and report["runs_ok"] == 2
    (f,) = report["runs_failed"]
    assert (f["index"], f["seed"], f["attempts"]) == (1, bad_seed, 2)
    assert report["verdict"].startswith(
        f"FAIL: 1 of 3 runs failed (run 2, seed {bad_seed}: attempt 1: the worker"
    )
    assert abs(report["total_observed_tau"] - 2 * 300) < 2  # two runs' worth of statistics
    saved = json.loads((out / "report.json").read_text())
    assert saved["verdict"] == report["verdict"] and saved["runs_failed"][0]["seed"] == bad_seed
    text = (out / "summary.txt").read_text()
    assert "2 of 3 runs (1 failed" in text and f"failed: run 2, seed {bad_seed}: attempt 1" in text
    assert "FAIL: 1 of 3 runs failed" in text.splitlines()[0]


def _no_spice(*args, **kwargs):
    raise AssertionError("a SPICE run started before the output check")


def test_bad_out_dir_is_refused_before_any_spice_run(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(v, "run_many", _no_spice)
    monkeypatch.setattr(v, "run_transient", _no_spice)
    spec = preset("rc8", size=2)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "report.json").write_text("{}")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="already holds files.*--overwrite"):
        validate(spec, SETTINGS, out_dir=earlier, progress=False)
    with pytest.raises(OutputError, match="is a file"):
        validate(spec, SETTINGS, out_dir=a_file, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "file"]
    assert (earlier / "report.json").read_text() == "{}"


@pytest.mark.spice
def test_a_failing_validation_leaves_no_half_written_folder(monkeypatch, tmp_path: Path) -> None:
    _inject(monkeypatch, InjectCrash(None))  # every run crashes, twice
    from thermotrain._errors import SpiceError

    with pytest.raises(SpiceError, match=r"every SPICE run of array failed: run 1, seed 3001: attempt 1"):
        validate(
            preset("rc8", size=2), ValidationSettings(runs=1, duration_tau=50, seed=3), out_dir=tmp_path / "v"
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "field",
    [
        {"runs": 0},
        {"runs": 2.5},
        {"duration_tau": float("nan")},
        {"duration_tau": -5},
        {"workers": 0},
        {"seed": -1},
        {"noise": "pink"},
        {"engine": "xyce"},
        {"timeout": 0},
        {"burn_in": float("inf")},
    ],
)
def test_bad_settings_are_input_errors(field) -> None:
    with pytest.raises(InputError, match=next(iter(field))):
        ValidationSettings(**field)
