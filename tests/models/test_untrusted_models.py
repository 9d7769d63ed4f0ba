"""Untrusted profiles, traces, arguments and outputs of calibrate/profile (issue 7, items 7-8 and 12):
every bad input gives one clean line (ProfileError / CalibrationError / InputError / OutputError, or an
argparse error), no traceback, no hang, no half-written output, and output paths are refused before any
SPICE run."""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from thermotrain import ProfileError
from thermotrain._errors import CalibrationError, InputError, OutputError
from thermotrain.cli import main
from thermotrain.models import (
    CalibrationSettings,
    calibrate,
    inverse,
    load_profile,
    shipped_profile_path,
    solve,
)
from thermotrain.models._calibrate import load_validation_runs

GOOD = json.loads(Path(shipped_profile_path("rc8")).read_text())


def _write(tmp_path: Path, data, name: str = "p.json") -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _mutated(change) -> dict:
    d = json.loads(json.dumps(GOOD))
    change(d)
    return d


def _cases(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)

    def set_(path, value):
        def change(d):
            *head, last = path
            for k in head:
                d = d[k]
            d[last] = value

        return change

    text = json.dumps(GOOD)
    return {
        "binary": _write(tmp_path, bytes(range(256)) * 4, "bin.json"),
        "dev-zero": Path("/dev/zero"),
        "fifo": fifo,
        "deep": _write(tmp_path, "[" * 100_000, "deep.json"),
        "nan": _write(tmp_path, text.replace('"kappa0": 0.01', '"kappa0": NaN'), "nan.json"),
        "truncated": _write(tmp_path, text[: len(text) // 2], "trunc.json"),
        "version": _write(tmp_path, _mutated(set_(["schema_version"], 2)), "ver.json"),
        "missing": _write(tmp_path, _mutated(lambda d: d.pop("tau_s")), "missing.json"),
        "string": _write(tmp_path, _mutated(set_(["kappa0"], "0.01")), "str.json"),
        "negative-tau": _write(tmp_path, _mutated(set_(["tau_s"], -1e-6)), "neg.json"),
        "matrix-string": _write(tmp_path, _mutated(set_(["fit", "device", "M", 0, 0], "x")), "ms.json"),
        "matrix-ragged": _write(tmp_path, _mutated(set_(["fit", "device", "D", 1], [0.0])), "ragged.json"),
        "matrix-inf": _write(tmp_path, text.replace('"M": [[', '"M": [[1e999, ', 1), "inf.json"),
    }


EXPECT = {
    "binary": "binary data",
    "dev-zero": "not a regular file",
    "fifo": "not a regular file",
    "deep": "nested too deeply",
    "nan": "profile.kappa0 is nan (must be a finite number)",
    "truncated": "is not valid JSON (truncated or corrupt",
    "version": "schema_version 2",
    "missing": "missing field(s) ['tau_s']",
    "string": "kappa0 = '0.01' must be a number",
    "negative-tau": "tau_s = -1e-06 must be a number > 0",
    "matrix-string": "fit.device.M[0][0] = 'x' must be a finite number",
    "matrix-ragged": "fit.device.D[1] must be a row of 8 numbers",
    "matrix-inf": "fit.device.M[0][0] is inf (must be a finite number)",
}


def _load_with_deadline(path: Path) -> BaseException | None:
    """load_profile in a thread; a hang (a FIFO opened for reading) fails the test instead of blocking."""
    box: list[BaseException | None] = []

    def run() -> None:
        try:
            load_profile(path)
            box.append(None)
        except BaseException as exc:  # noqa: BLE001
            box.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    assert box, f"load_profile({path}) hung"
    return box[0]


def test_hostile_profiles_give_one_clean_line(tmp_path: Path, capsys) -> None:
    for name, path in _cases(tmp_path).items():
        exc = _load_with_deadline(path)
        assert isinstance(exc, ProfileError), (name, exc)
        message = str(exc)
        assert "\n" not in message and EXPECT[name] in message, (name, message)
        assert "regenerate it with `thermotrain calibrate" in message
        if name in ("dev-zero", "fifo"):
            continue  # the CLI reads them through the same loader (checked above without a hang)
        rc = main(["profile", str(path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and err[0].startswith("thermotrain profile: error: "), (name, err)
        assert "Traceback" not in err[0] and EXPECT[name] in err[0]


def test_seeded_profile_mutations_load_or_are_refused_cleanly(tmp_path: Path) -> None:
    """A small fuzz: 300 seeded mutations of the shipped profile (a field replaced by a value of another
    type, a huge or negative number, deleted, or the text cut) load or raise ProfileError -- nothing else."""
    rng = random.Random(7)
    values = [None, True, -1, 0, 1e308, -1e-300, "x", [], {}, [[1.0]], [1, "a"], {"M": 1}, 2**70]

    def paths(d, prefix=()):
        items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
        for k, v in items:
            yield (*prefix, k)
            if len(prefix) < 3:
                yield from paths(v, (*prefix, k))

    all_paths = list(paths(GOOD))
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(300):
        d = json.loads(json.dumps(GOOD))
        path = rng.choice(all_paths)
        node = d
        for k in path[:-1]:
            node = node[k]
        if rng.random() < 0.2 and isinstance(node, dict):
            del node[path[-1]]
        else:
            node[path[-1]] = rng.choice(values)
        text = json.dumps(d)
        if trial % 10 == 0:
            text = text[: rng.randrange(len(text))]
        f = _write(tmp_path, text, f"m{trial}.json")
        try:
            load_profile(f)
            outcomes["loaded"] += 1
        except ProfileError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 200


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--fit-runs", "0"], "argument --fit-runs: must be an integer >= 1, got 0"),
        (["--heldout-runs", "1"], "--heldout-runs: must be an integer >= 2 (the run-to-run spread"),
        (["--lag", "0"], "argument --lag: must be > 0.0, got 0"),
        (["--duration", "0"], "argument --duration: must be > 0.0, got 0"),
        (["--duration", "-5"], "argument --duration: must be > 0.0, got -5"),
        (["--duration", "nan"], "argument --duration: 'nan' is not a finite number"),
        (["--workers", "0"], "argument --workers: must be an integer >= 1, got 0"),
        (["--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
        (["--timeout", "0"], "argument --timeout: must be > 0.0, got 0"),
    ],
)
def test_calibrate_flags_are_checked_by_the_parser(flags, words, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", "--preset", "rc8", "--size", "2", *flags, "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and words in err[0], err
    assert list(tmp_path.iterdir()) == []


def _no_spice(*args, **kwargs):
    raise AssertionError("SPICE ran before the output check")


def test_calibrate_refuses_its_outputs_before_any_spice_run(tmp_path: Path, monkeypatch, capsys) -> None:
    import thermotrain.netlists._validation as v

    monkeypatch.setattr(v, "noisy_runs", _no_spice)
    folder = tmp_path / "folder"
    folder.mkdir()
    old = _write(tmp_path, "{}", "old.json")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "report.json").write_text("{}")
    cases = {
        str(folder): "is a folder; pass a profile file path",
        str(old): "already exists; pass --overwrite",
        str(tmp_path / "busy.json"): "already holds files from an earlier run",
        str(tmp_path / "noext"): "needs a file name ending in .json",
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    for out, words in cases.items():
        rc = main(["calibrate", "--preset", "rc8", "--size", "2", "--quiet", "--out", out])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and words in err[0], (out, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created, no *.tmp
    assert old.read_text() == "{}"
    with pytest.raises(OutputError, match="already exists"):
        calibrate(None, profile_path=old)  # the Python API checks first too (spec is never touched)


def _npz(path: Path, **arrays) -> None:
    np.savez(path, **arrays)


def test_hostile_traces_give_one_line(tmp_path: Path) -> None:
    d = tmp_path / "v"
    d.mkdir()
    (d / "report.json").write_text(json.dumps({"spec": {}, "duration_tau": 100, "noise": "file", "seed": 0}))
    run = np.zeros((10, 2))
    cases = {
        "pickled": (
            lambda p: _npz(p, runs=3, step=1e-7, burn_in=0.0, run0=np.array([{}], dtype=object)),
            "Object arrays cannot be loaded when allow_pickle=False",
        ),
        "truncated": (
            lambda p: (
                _npz(p, runs=3, step=1e-7, burn_in=0.0, run0=run, run1=run, run2=run),
                p.write_bytes(p.read_bytes()[:300]),
            ),
            "not a readable traces archive",
        ),
        "nan": (
            lambda p: _npz(p, runs=3, step=1e-7, burn_in=0.0, run0=run + np.nan, run1=run, run2=run),
            "run0 holds non-finite values",
        ),
        "runs": (lambda p: _npz(p, runs=-1, step=1e-7, burn_in=0.0), "runs = -1.0 must be a whole number"),
        "string": (lambda p: _npz(p, runs=3, step="x", burn_in=0.0), "step must be one finite number"),
        "fifo": (lambda p: os.mkfifo(p), "not a regular file"),
    }
    for name, (make, words) in cases.items():
        p = d / "traces.npz"
        if p.exists() or p.is_fifo():
            p.unlink()
        make(p)
        with pytest.raises(CalibrationError) as exc:
            load_validation_runs(d)
        assert words in str(exc.value) and "\n" not in str(exc.value), (name, str(exc.value))


@pytest.mark.parametrize(
    "field",
    [
        {"fit_runs": 0},
        {"heldout_runs": 1},
        {"duration_tau": float("nan")},
        {"duration_tau": 0},
        {"lag_tau": -1},
        {"workers": 0},
        {"seed": -1},
        {"noise": "pink"},
        {"timeout": float("inf")},
        {"max_iter": 0},
        {"fit_runs": "4"},
    ],
)
def test_calibration_settings_raise_input_errors(field) -> None:
    with pytest.raises(InputError, match=next(iter(field))):
        CalibrationSettings(**field)


def test_linear_algebra_arguments_raise_input_errors() -> None:
    A = torch.tensor([[2.0, -0.5], [-0.5, 1.0]], dtype=torch.float64)
    b = torch.ones(2, dtype=torch.float64)
    bad_inverse = [
        {"t": 0},
        {"t": float("nan")},
        {"t": "5"},
        {"dt": 0},
        {"kappa0": float("nan")},
        {"burn_in": -1},
        {"roundings": 0},
        {"backend": "foo"},
    ]
    for kw in bad_inverse:
        with pytest.raises(InputError):
            inverse(A, **({"backend": "ideal"} | kw))
    for kw in [{"t": 0}, {"readout": "x"}, {"kappa0": -1}, {"rounding": "up"}, {"t": float("inf")}]:
        with pytest.raises(InputError):
            solve(A, b, **({"backend": "ideal"} | kw))


@pytest.mark.spice
def test_calibrate_outputs_are_atomic(tmp_path: Path, monkeypatch) -> None:
    import thermotrain.models._calibrate as c
    from thermotrain.circuits import preset
    from thermotrain.netlists._validation import ValidationSettings, validate

    v = tmp_path / "v"
    validate(
        preset("rc8", size=2),
        ValidationSettings(runs=4, duration_tau=200, seed=1),
        out_dir=v,
        progress=False,
        save_traces=True,
    )
    spec, runs, settings = load_validation_runs(v)
    out = tmp_path / "out"
    out.mkdir()
    profile, report = out / "p.json", out / "p"

    def broken_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(c, "save_profile", broken_save)
    with pytest.raises(OSError, match="No space left"):
        calibrate(spec, settings, runs=runs, profile_path=profile, out_dir=report, progress=False)
    assert list(out.iterdir()) == []  # no report folder, no profile, no *.tmp, no partial folder
    monkeypatch.undo()
    calibrate(spec, settings, runs=runs, profile_path=profile, out_dir=report, progress=False)
    assert load_profile(profile).calibrated and (report / "summary.txt").exists()
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        calibrate(spec, settings, runs=runs, profile_path=profile, out_dir=report, progress=False)
    calibrate(spec, settings, runs=runs, profile_path=profile, out_dir=report, progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["p", "p.json"]
    # the demo's layout: the profile inside the report folder (written there before the folder is renamed)
    inner = tmp_path / "demo" / "calibrate-rc8"
    calibrate(spec, settings, runs=runs, profile_path=inner / "profile.json", out_dir=inner, progress=False)
    assert load_profile(inner / "profile.json").calibrated and (inner / "summary.txt").exists()
    assert sorted(p.name for p in inner.parent.iterdir()) == ["calibrate-rc8"]  # no partial folder left


@pytest.mark.parametrize(
    "path, value, words",
    [
        (("opamp",), [[1.0]], "circuit.nonideal.opamp"),
        (("opamp", "gbw_hz"), "x", "opamp.gbw_hz"),
        (("opamp", "slew_rate"), True, "opamp.slew_rate"),
        (("opamp", "rogue"), 1.0, "unknown key"),
        (("capacitor_leakage",), {}, "capacitor_leakage"),
        (("coupling_bank",), [1, "a"], "coupling_bank"),
        (("coupling_bits",), 7.5, "coupling_bits"),
        (("tolerance",), 0.5, "tolerance"),  # out of NonIdealities' range [0, 0.3)
        (("opamp", "input_offset"), 1.0, "input_offset"),  # |offset| <= 0.1 V
        (("shell",), "rm -rf /", "unknown key"),
    ],
)
def test_the_calibrated_corner_of_a_profile_is_parsed_against_its_schema(
    tmp_path, path, value, words
) -> None:
    """circuit.nonideal (the corner the profile was calibrated on) is an allowlist: known keys, numbers
    (or null, "inf" gains), whole bit counts, NonIdealities' ranges -- anything else is one ProfileError."""

    def change(d):
        node = d["circuit"]["nonideal"]
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    f = _write(tmp_path, _mutated(change))
    with pytest.raises(ProfileError, match="circuit.nonideal") as exc:
        load_profile(f)
    assert words in str(exc.value) and "\n" not in str(exc.value)
    # the shipped corner itself (and a null = off op-amp field) loads
    ok = _mutated(lambda d: d["circuit"]["nonideal"]["opamp"].update(second_pole_hz=None))
    assert (
        load_profile(_write(tmp_path, ok, "ok.json")).circuit["nonideal"]["opamp"]["second_pole_hz"] is None
    )
