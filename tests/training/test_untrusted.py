"""Issue 7 for training: checkpoints without pickle, divergence, checked flags, no stale outputs.

Everything goes through the real command line (``thermotrain.cli.main``) on tiny runs (digits, 200
examples, 1-2 epochs). Security tests assert the absence of the side effect (a sentinel file not created).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from thermotrain import CheckpointError, DivergedError, InputError, OutputError, TrainingError
from thermotrain.cli import main
from thermotrain.training import TrainConfig, train
from thermotrain.training import _harness as harness

torch.set_num_threads(1)

TINY = ["--dataset", "digits", "--subset", "200", "--epochs", "1", "--no-progress"]


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``thermotrain ARGV``; return (exit status, stdout, stderr)."""
    try:
        code = main([*argv])
    except SystemExit as exc:  # argparse refusals
        code = exc.code
    captured = capsys.readouterr()
    return int(code or 0), captured.out, captured.err


def _one_error_line(err: str, command: str = "train") -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"thermotrain {command}: error:"), err
    assert "Traceback" not in err and "unexpected" not in err, err
    return lines[0]


def _cfg(out: Path | None, **kw) -> TrainConfig:
    base = dict(dataset="digits", subset=200, epochs=1, batch_size=128, progress=False)
    return TrainConfig(**(base | {"out": None if out is None else str(out)} | kw))


class _Payload:
    """Unpickling this runs ``touch SENTINEL`` (what an attacker's checkpoint would do)."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def _forge_json(run: Path, tensor_bytes: bytes, config: dict) -> None:
    """A checkpoint.json that would pass every check but the tensors' own (marker, version, digest)."""
    meta = {
        "format": harness.CHECKPOINT_MARKER,
        "version": harness.CHECKPOINT_VERSION,
        "epoch": 0,
        "step": 2,
        "wall_s": 0.1,
        "config": config,
        "history": [],
        "divergence": {"reference": None, "streak": 0},
        "tensors": {
            "file": "checkpoint.pt",
            "bytes": len(tensor_bytes),
            "sha256": hashlib.sha256(tensor_bytes).hexdigest(),
        },
    }
    (run / "checkpoint.json").write_text(json.dumps(meta))


# ------------------------------------------------------------------------------ item 6: checkpoints


@pytest.mark.parametrize("forged_json", [False, True], ids=["pickle-alone", "pickle-with-forged-json"])
def test_a_planted_pickle_checkpoint_never_runs(tmp_path: Path, capsys, forged_json: bool) -> None:
    run, sentinel = tmp_path / "run", tmp_path / "SENTINEL"
    run.mkdir()
    if forged_json:  # a torch zip whose data.pkl holds the payload, with a settings file that matches it
        buf = io.BytesIO()
        torch.save({"format": harness.CHECKPOINT_MARKER, "model": _Payload(sentinel)}, buf)
        data = buf.getvalue()
        cfg = _cfg(run, optimizer="sgd", epochs=2, resume=True)
        import dataclasses

        _forge_json(run, data, dataclasses.asdict(cfg))
    else:  # a raw pickle file, the format the old (unsafe) loader unpickled
        data = pickle.dumps(_Payload(sentinel))
    (run / "checkpoint.pt").write_bytes(data)
    code, _, err = _cli(
        capsys, "train", *TINY, "--epochs", "2", "--optimizer", "sgd", "--out", str(run), "--resume"
    )
    line = _one_error_line(err)
    assert code == 1 and "checkpoint" in line
    assert not sentinel.exists(), "the checkpoint's pickle payload ran"
    assert not (run / "summary.json").exists() and not (run / "metrics.jsonl").exists()


def _real_run(run: Path, **kw) -> TrainConfig:
    cfg = _cfg(run, optimizer="sgd", **kw)
    train(cfg)
    return cfg


@pytest.mark.parametrize(
    "damage,match",
    [
        ("random-bytes", "SHA-256"),
        ("truncated", "SHA-256"),
        ("truncated-forged-digest", "corrupt or holds more than tensors"),
        ("torch-file-without-marker", "not a thermotrain checkpoint"),
        ("json-not-json", "not valid JSON"),
        ("json-nan", "not valid JSON"),
        ("json-without-marker", "not a thermotrain checkpoint"),
        ("json-other-version", "checkpoint version"),
        ("json-missing-field", "corrupt"),
        ("json-other-config", "different settings"),
        ("json-missing", "no checkpoint.json"),
        ("pt-is-a-fifo", "not a regular file"),
    ],
)
def test_a_foreign_or_corrupt_checkpoint_is_refused_before_anything_runs(
    tmp_path: Path, damage: str, match: str
) -> None:
    import dataclasses

    run = tmp_path / "run"
    _real_run(run)
    pt, js = run / "checkpoint.pt", run / "checkpoint.json"
    good, meta = pt.read_bytes(), json.loads(js.read_text())
    if damage == "random-bytes":
        pt.write_bytes(os.urandom(len(good)))
    elif damage == "truncated":
        pt.write_bytes(good[: len(good) // 2])
    elif damage == "truncated-forged-digest":
        pt.write_bytes(good[: len(good) // 2])
        _forge_json(run, good[: len(good) // 2], meta["config"])
    elif damage == "torch-file-without-marker":
        buf = io.BytesIO()
        torch.save({"model": {}, "method": {}, "rng": {}}, buf)
        pt.write_bytes(buf.getvalue())
        _forge_json(run, buf.getvalue(), meta["config"])
    elif damage == "json-not-json":
        js.write_text("{truncated")
    elif damage == "json-nan":
        js.write_text(js.read_text().replace('"wall_s": ', '"wall_s": NaN, "x": ', 1))
    elif damage == "json-without-marker":
        js.write_text(json.dumps(meta | {"format": "something-else"}))
    elif damage == "json-other-version":
        js.write_text(json.dumps(meta | {"version": 1}))
    elif damage == "json-missing-field":
        js.write_text(json.dumps({k: v for k, v in meta.items() if k != "epoch"}))
    elif damage == "json-other-config":
        js.write_text(json.dumps(meta | {"config": meta["config"] | {"lr": 0.3}}))
    elif damage == "json-missing":
        js.unlink()
    elif damage == "pt-is-a-fifo":
        pt.unlink()
        os.mkfifo(pt)
    before = (run / "metrics.jsonl").read_bytes()
    cfg = dataclasses.replace(_cfg(run, optimizer="sgd"), epochs=2, resume=True)
    with pytest.raises(CheckpointError, match=match):
        train(cfg)
    assert (run / "metrics.jsonl").read_bytes() == before  # nothing was trained or rewritten
    assert (run / "summary.json").exists()  # the earlier run's summary is left as it was


def test_the_checkpoint_is_tensors_only_and_its_settings_are_json(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _real_run(run)
    meta = json.loads((run / "checkpoint.json").read_text())
    assert meta["format"] == "thermotrain-checkpoint" and meta["version"] == harness.CHECKPOINT_VERSION
    assert meta["epoch"] == 0 and meta["step"] == 2 and meta["config"]["optimizer"] == "sgd"
    tensors = torch.load(run / "checkpoint.pt", weights_only=True)
    assert tensors["format"] == "thermotrain-checkpoint" and set(tensors) >= {"model", "method", "rng"}
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "optimizer,kw",
    [
        ("adam", {}),
        ("kfac", {}),
        ("kfac", {"backend": "ideal", "kfac_mode": "solve", "analog_time": 20.0, "kappa0": 1e-3}),
        ("kfac", {"backend": "rc8", "analog_time": 200.0, "analog_dt": 2.0}),
        ("ngd-cg", {}),
        ("tngd", {"analog_time": 3.0, "delay": 0.5, "kappa0": 1e-3}),
        ("tngd-adam", {"analog_time": 3.0}),
    ],
)
def test_every_preconditioner_state_loads_without_pickle_and_resumes(
    tmp_path: Path, optimizer: str, kw: dict
) -> None:
    """K-FAC (digital, ideal device, a hardware profile), NGD-CG and TNGD (with a delay, whose state holds
    the previous system) checkpoint into tensors-only files, and a resumed run matches the full one."""
    kw = {"optimizer": optimizer, "subset": 128, "batch_size": 64} | kw
    full = train(_cfg(tmp_path / "full", epochs=2, **kw))
    train(_cfg(tmp_path / "part", epochs=1, **kw))
    torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)  # raises if anything needs pickle
    resumed = train(_cfg(tmp_path / "part", epochs=2, resume=True, **kw))
    for key in ("test_accuracy", "test_loss", "steps", "analog_time_tau"):
        assert resumed[key] == full[key], key


def test_a_cosine_schedules_state_loads_without_pickle(tmp_path: Path) -> None:
    train(_cfg(tmp_path, optimizer="sgd", lr_schedule="cosine"))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["method"]["scheduler"]["last_epoch"] == 2


# ------------------------------------------------------------------------------ item 9: divergence


def test_a_diverging_run_exits_4_and_says_so_in_its_summary(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code, out, err = _cli(capsys, "train", *TINY, "--optimizer", "sgd", "--lr", "1e6", "--out", str(run))
    line = _one_error_line(err)
    assert code == 4 and "diverged" in line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged"
    d = summary["divergence"]
    assert d["step"] >= 1 and d["reason"] and (isinstance(d["loss"], str) or d["loss"] > 1e3)
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps and all(r["step"] <= d["step"] for r in steps)  # the steps up to that point are kept


def test_a_completed_run_says_completed(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code, out, err = _cli(capsys, "train", *TINY, "--optimizer", "sgd", "--out", str(run))
    assert code == 0 and err == ""
    assert json.loads(out)["status"] == "completed"
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_a_nan_loss_is_a_divergence_with_no_update_applied(tmp_path: Path) -> None:
    with pytest.raises(DivergedError) as info:
        train(_cfg(tmp_path / "run", optimizer="sgd", lr=1e30))
    assert info.value.exit_code == 4
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged"  # the summary stays strict JSON even for a NaN/inf loss


def test_the_divergence_rule_needs_three_steps_above_four_times_the_initial_loss() -> None:
    m = harness.DivergenceMonitor(num_classes=10)
    assert m.check(1, 2.0) is None and m.reference == pytest.approx(2.302585, rel=1e-6)  # ln 10 floor
    assert m.check(2, 30.0) is None and m.check(3, 1.0) is None  # one spike, then healthy: reset
    assert m.check(4, 30.0) is None and m.check(5, 40.0) is None
    exc = m.check(6, 50.0)
    assert isinstance(exc, DivergedError) and exc.step == 6 and "3 consecutive" in str(exc)
    hard = harness.DivergenceMonitor(num_classes=10)
    assert hard.check(1, 2.3) is None and isinstance(hard.check(2, 1e4), DivergedError)
    assert isinstance(harness.DivergenceMonitor(10).check(1, float("inf")), DivergedError)


def test_the_divergence_message_names_the_settings_of_the_run(tmp_path: Path, capsys) -> None:
    """sgd has no damping: the advice is --lr alone; TNGD's names its damping and an explicit --kappa0."""
    code, _, err = _cli(
        capsys, "train", *TINY, "--optimizer", "sgd", "--lr", "1e6", "--out", str(tmp_path / "a")
    )
    line = _one_error_line(err)
    assert code == 4 and "Lower --lr (now 1e+06) and rerun" in line and "--damping" not in line
    cfg = _cfg(None, optimizer="tngd", kappa0=1e3, lr=0.5)
    assert harness._divergence_fix(cfg) == (
        "Lower --kappa0 (now 1000; the device's full scale is 1), lower --lr (now 0.5) or raise --damping "
        "(now 0.03)"
    )
    assert harness._divergence_fix(_cfg(None, optimizer="kfac", kappa0=1e3)) == (
        "Lower --lr (now 0.05) or raise --damping (now 0.3)"  # digital K-FAC has no device noise
    )


# ------------------------------------------------------------------------------ failed runs leave no folder


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_run_failing_before_its_first_step_leaves_nothing_and_can_be_rerun(tmp_path: Path, capsys) -> None:
    """TNGD with κ0 = 1e300: the device state overflows at step 1. The folders and files the run made go
    again (the parents it created too); the error names --kappa0; the same command then runs."""
    run = tmp_path / "new" / "deeper" / "run"
    argv = ["train", *TINY, "--optimizer", "tngd", "--out", str(run)]
    code, _, err = _cli(capsys, *argv, "--kappa0", "1e300")
    line = _one_error_line(err)
    assert code == 1 and "non-finite at step 1" in line and "--kappa0, now 1e+300" in line
    assert "reduce dt" not in line and "keeps" not in line
    assert _tree(tmp_path) == []  # not even the parents it made
    code, _, err = _cli(capsys, *argv, "--kappa0", "0")  # the rerun is not refused
    assert code == 0, err


def test_a_failed_run_in_a_given_folder_removes_only_what_it_made(tmp_path: Path, capsys) -> None:
    """An empty folder the user made stays (empty); with --overwrite the old run's files go (as asked), the
    failed new run's too; a run failing before its first step never leaves metrics that block a rerun."""
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = ["--optimizer", "tngd", "--kappa0", "1e300"]
    code, _, err = _cli(capsys, "train", *TINY, *bad, "--out", str(empty))
    assert code == 1 and empty.is_dir() and _tree(empty) == []
    run = tmp_path / "run"
    _real_run(run)
    code, _, err = _cli(capsys, "train", *TINY, *bad, "--out", str(run), "--overwrite")
    assert code == 1 and "non-finite" in _one_error_line(err)
    assert run.is_dir() and _tree(run) == []
    code, _, err = _cli(capsys, "train", *TINY, "--optimizer", "sgd", "--out", str(run))
    assert code == 0, err


def test_a_run_failing_after_a_checkpoint_keeps_it_and_says_resume(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    run = tmp_path / "run"
    real_step = harness.Method.step

    def step(self, x, y):
        if self.steps == 3:  # epoch 2 (2 steps per epoch)
            raise TrainingError("device failed (injected)")
        return real_step(self, x, y)

    monkeypatch.setattr(harness.Method, "step", step)
    argv = ["train", *TINY, "--epochs", "2", "--optimizer", "sgd", "--out", str(run)]
    code, _, err = _cli(capsys, *argv)
    line = _one_error_line(err)
    assert code == 1 and "injected" in line and "keeps the metrics of the 3 step(s)" in line
    assert "--resume" in line and "--overwrite" in line
    assert (run / "checkpoint.json").exists() and (run / "metrics.jsonl").exists()
    monkeypatch.setattr(harness.Method, "step", real_step)
    code, _, err = _cli(capsys, *argv, "--resume")
    assert code == 0, err


def test_a_huge_tngd_damping_is_a_training_error_not_a_lapack_one() -> None:
    """Python API (the CLI refuses --damping above MAX_DAMPING): λ = 1e30 overflows the float32 device
    state; the Lanczos evaluation reports it as a non-finite state naming the settings, not LinAlgError."""
    from thermotrain.training import TNGDConfig, TNGDPreconditioner

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    precond = TNGDPreconditioner(model, TNGDConfig(damping=1e30))
    with pytest.raises(
        TrainingError, match=r"non-finite at step 1; lower the damping \(--damping, now 1e\+30"
    ):
        precond.step(x, y)


@pytest.mark.slow
def test_default_tngd_on_digits_for_12_epochs_trains_and_completes(tmp_path: Path, capsys) -> None:
    """The issue's case: ``train --optimizer tngd --epochs 12`` (defaults) went to chance accuracy at epoch 6
    and exited 0. With the normalised device and the defaults tuned on a validation split it trains
    (>= 95 %, issue 8) and says "completed"; a run that does diverge exits 4 (tested above)."""
    run = tmp_path / "run"
    code, _, err = _cli(
        capsys, "train", "--optimizer", "tngd", "--epochs", "12", "--no-progress", "--out", str(run)
    )
    summary = json.loads((run / "summary.json").read_text())
    assert code == 0 and summary["status"] == "completed", err
    assert summary["test_accuracy"] >= 0.95


# ------------------------------------------------------------------------------ item 11: stale outputs


def test_a_new_run_in_an_old_runs_folder_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    _real_run(run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, _, err = _cli(capsys, "train", *TINY, "--optimizer", "adam", "--out", str(run))
    line = _one_error_line(err)
    assert code == 1 and "--overwrite" in line and "--resume" not in line or "--overwrite" in line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_overwrite_removes_the_old_run_first_so_a_failing_new_run_leaves_no_summary(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    run = tmp_path / "run"
    _real_run(run)
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"

    def broken_evaluate(*args, **kwargs):
        raise TrainingError("evaluation failed (injected)")

    monkeypatch.setattr(harness, "evaluate", broken_evaluate)
    code, _, err = _cli(capsys, "train", *TINY, "--optimizer", "adam", "--out", str(run), "--overwrite")
    line = _one_error_line(err)
    assert code == 1 and "injected" in line
    assert "keeps the metrics of the 2 step(s)" in line and "--overwrite" in line  # says what it kept
    assert not (run / "summary.json").exists()  # no stale summary of the old run
    assert not (run / "checkpoint.pt").exists() and not (run / "checkpoint.json").exists()
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps] == [1, 2]  # the new run's steps only


def test_overwrite_never_removes_files_that_are_not_a_run(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    _real_run(run)
    (run / "notes.txt").write_text("mine")
    code, _, err = _cli(capsys, "train", *TINY, "--out", str(run), "--overwrite")
    assert code == 1 and "notes.txt" in _one_error_line(err)
    assert (run / "notes.txt").read_text() == "mine" and (run / "summary.json").exists()


def test_overwrite_replaces_an_old_run(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    _real_run(run, epochs=2)
    code, _, err = _cli(capsys, "train", *TINY, "--optimizer", "adam", "--out", str(run), "--overwrite")
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["optimizer"] == "adam" and summary["steps"] == 2


def test_resume_to_fewer_epochs_than_the_checkpoint_holds_is_refused(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    _real_run(run, epochs=2)
    before = (run / "summary.json").read_bytes()
    argv = ["train", *TINY, "--optimizer", "sgd", "--batch-size", "128", "--out", str(run), "--resume"]
    for epochs in ("1", "2"):
        code, _, err = _cli(capsys, *argv, "--epochs", epochs)
        line = _one_error_line(err)
        assert code == 1 and "already holds 2 epoch" in line and "--epochs 3" in line
    assert (run / "summary.json").read_bytes() == before
    code, _, err = _cli(capsys, *argv, "--epochs", "3")
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and [h["epoch"] for h in summary["history"]] == [0, 1, 2]


def test_resume_and_overwrite_together_are_refused(tmp_path: Path, capsys) -> None:
    code, _, err = _cli(capsys, "train", *TINY, "--out", str(tmp_path / "r"), "--resume", "--overwrite")
    assert code == 2 and "not allowed with" in _one_error_line(err)


def test_out_that_is_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = _cli(capsys, "train", *TINY, "--out", str(f))
    assert code == 1 and "is a file" in _one_error_line(err)


def test_the_comparison_refuses_an_old_folder_unless_overwrite(tmp_path: Path) -> None:
    """``make demo`` twice in a row: the demo's training step passes overwrite for its own folder."""
    from thermotrain.training import train_comparison

    kw = dict(epochs=1, subset=128, analog_time=20.0)
    train_comparison(tmp_path / "train", **kw)
    with pytest.raises(OutputError, match="already holds files"):
        train_comparison(tmp_path / "train", **kw)
    rows = train_comparison(tmp_path / "train", overwrite=True, **kw)
    assert len(rows) == 3 and (tmp_path / "train" / "comparison.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]  # no temporary folders left


# ------------------------------------------------------------------------------ item 7: one-line errors


@pytest.mark.parametrize(
    "flags,code,words",
    [
        (["--device", "tpu"], 2, "tpu"),
        (["--threads", "-1"], 2, "--threads"),
        (["--seed", "-5"], 2, "--seed"),
        (["--seed", str(2**32)], 2, "--seed"),
        (["--lr", "0"], 2, "--lr"),
        (["--lr", "-1"], 2, "--lr"),
        (["--lr", "nan"], 2, "--lr"),
        (["--damping", "0"], 2, "--damping"),
        (["--analog-time", "-5"], 2, "--analog-time"),
        (["--optimizer", "kfac", "--backend", "ideal", "--analog-time", "0"], 1, "--analog-time 0"),
        (["--optimizer", "tngd", "--damping", "1e30"], 2, "--damping: must be <= 1000000.0"),
        (["--optimizer", "kfac", "--damping", "1e308"], 2, "--damping"),
        (["--optimizer", "adam", "--delay", "5"], 1, "--optimizer adam does not read --delay 5"),
        (["--analog-dt", "0"], 2, "--analog-dt"),
        (["--kappa0", "-1"], 2, "--kappa0"),
        (["--epochs", "0"], 2, "--epochs"),
        (["--optimizer", "kfac", "--backend", "MISSING.json"], 1, "no such profile file"),
        (["--optimizer", "kfac", "--backend", "CORRUPT.json"], 1, "CORRUPT.json"),
        (["--optimizer", "kfac", "--backend", "BINARY.json"], 1, "UTF-8"),
        (["--optimizer", "kfac", "--backend", "/dev/zero"], 1, "not a regular file"),
    ],
)
def test_bad_train_flags_are_one_line_and_nothing_is_written(
    tmp_path: Path, capsys, flags: list[str], code: int, words: str
) -> None:
    (tmp_path / "CORRUPT.json").write_text('{"schema_version": ')
    (tmp_path / "BINARY.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    flags = [str(tmp_path / f) if f.endswith(".json") else f for f in flags]
    run = tmp_path / "run"
    got, _, err = _cli(capsys, "train", *TINY, "--out", str(run), *flags)
    assert got == code and words in _one_error_line(err)
    assert not run.exists()  # refused before the output folder was touched


def test_cuda_without_cuda_is_named(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = _cli(capsys, "train", *TINY, "--device", "cuda", "--out", str(tmp_path / "r"))
    assert code == 2 and "torch.cuda.is_available() is False" in _one_error_line(err)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"epochs": "3"}, "epochs"),
        ({"epochs": 2.0}, "epochs"),
        ({"epochs": 0}, "epochs"),
        ({"seed": -5}, "seed"),
        ({"seed": True}, "seed"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": "0.1"}, "lr"),
        ({"damping": 0.0}, "damping"),
        ({"analog_time": -1.0}, "analog_time"),
        ({"optimizer": "kfac", "backend": "ideal", "analog_time": 0.0}, "--analog-time"),
        ({"damping": 1e7}, "damping"),
        ({"delay": float("inf")}, "delay"),
        ({"kappa0": -1e-3}, "kappa0"),
        ({"analog_dt": 0.0}, "analog_dt"),
        ({"roundings": 0}, "roundings"),
        ({"inv_update_steps": 0}, "inv_update_steps"),
        ({"cg_iters": 0}, "cg_iters"),
        ({"kl_clip": 0.0}, "kl_clip"),
        ({"subset": 0}, "subset"),
        ({"eval_every": -1}, "eval_every"),
        ({"model": "resnet"}, "model"),
        ({"dataset": "cifar"}, "dataset"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"rounding": "up"}, "rounding"),
        ({"kfac_mode": "dense"}, "kfac_mode"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"device": "tpu"}, "device"),
        ({"device": "cuda:x"}, "device"),
        ({"progress": "yes"}, "progress"),
        ({"pd_guard": 1}, "pd_guard"),
        ({"out": 5}, "out"),
        ({"backend": ""}, "backend"),
        ({"resume": True}, "resume"),
        ({"out": "x", "resume": True, "overwrite": True}, "overwrite"),
    ],
)
def test_train_config_checks_every_field(kw: dict, field: str) -> None:
    with pytest.raises(InputError, match=field) as info:
        TrainConfig(**kw)
    assert isinstance(info.value, TrainingError)  # code that caught TrainingError still does
    assert info.value.exit_code == 1


def test_train_config_normalises_numbers_and_paths(tmp_path: Path) -> None:
    cfg = TrainConfig(lr=1, analog_time=5, out=tmp_path)
    assert isinstance(cfg.lr, float) and isinstance(cfg.analog_time, float) and cfg.out == str(tmp_path)


# ------------------------------------------------------------------------------ item 10: experiments


EXP_TINY = ["--dataset", "digits", "--subset", "100", "--epochs", "1", "--seeds", "1"]


@pytest.mark.parametrize(
    "flags",
    [
        ["--analog-time", "0"],
        ["--damping", "0"],
        ["--analog-time", "-5"],
        ["--adam-lr", "nan"],
        ["--seeds", "0"],
    ],
)
def test_experiment_flags_are_checked_not_replaced_by_defaults(tmp_path: Path, capsys, flags) -> None:
    out = tmp_path / "exp"
    code, _, err = _cli(capsys, "experiment", "kfac-claims", *EXP_TINY, *flags, "--out", str(out))
    assert code == 2 and flags[0] in _one_error_line(err, "experiment")
    assert not out.exists()


def test_run_experiment_checks_its_options_in_python(tmp_path: Path) -> None:
    from thermotrain.training import run_experiment

    cases = [
        ("kfac-claims", {"analog_time": 0}, "analog-time"),
        ("kfac-claims", {"damping": 0.0}, "damping"),
        ("kfac-claims", {"seeds": "2"}, "seeds"),
        ("kfac-claims", {"bogus": 1}, "bogus"),
        ("tngd-delay", {"damping": 0.1}, "does not use --damping"),
        ("no-such-study", {}, "experiment"),
    ]
    for name, opts, words in cases:
        with pytest.raises(InputError, match=words):
            run_experiment(name, tmp_path / "e", opts)
    assert not (tmp_path / "e").exists()


def test_an_option_the_experiment_does_not_use_is_refused(tmp_path: Path, capsys) -> None:
    code, _, err = _cli(capsys, "experiment", "tngd-delay", "--damping", "0.1", "--out", str(tmp_path / "e"))
    line = _one_error_line(err, "experiment")
    assert code == 1 and "--damping" in line and "kfac-claims" in line


def test_a_failed_run_makes_the_experiment_exit_non_zero_naming_it(tmp_path: Path, capsys) -> None:
    out = tmp_path / "exp"
    code, _, err = _cli(
        capsys,
        "experiment",
        "kfac-claims",
        *EXP_TINY,
        "--adam-lr",
        "1e6",
        "--analog-time",
        "200",
        "--out",
        str(out),
    )
    line = _one_error_line(err, "experiment")
    assert code == 4 and "'adam'" in line and "diverged" in line
    payload = json.loads((out / "kfac-claims.json").read_text())
    assert set(payload["failed"]) == {"adam"}
    assert {"kfac (digital)"} <= set(payload["runs"])  # the other runs' results are written


def test_experiment_out_is_refused_when_it_holds_files_unless_overwrite(tmp_path: Path, capsys) -> None:
    """--overwrite replaces an earlier experiment's folder, and never a folder of the user's own files."""
    out = tmp_path / "exp"
    out.mkdir()
    (out / "old.json").write_text("{}")
    argv = ["experiment", "tngd-delay", *EXP_TINY, "--out", str(out)]
    code, _, err = _cli(capsys, *argv)
    assert code == 1 and "--overwrite" in _one_error_line(err, "experiment")
    code, _, err = _cli(capsys, *argv, "--overwrite")
    assert code == 1 and "no thermotrain command wrote (old.json)" in _one_error_line(err, "experiment")
    assert sorted(p.name for p in out.iterdir()) == ["old.json"]
    (out / "old.json").unlink()
    assert _cli(capsys, *argv)[0] == 0
    (out / "results.md").write_text("stale")
    code, _, err = _cli(capsys, *argv, "--overwrite")  # an earlier experiment's folder: replaced
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        ".thermotrain-output",
        "config.toml",
        "report.html",
        "results.json",
        "results.md",
        "tb",
        "tngd-delay.json",
        "tngd-delay.png",
    ]


def test_the_demo_replaces_its_own_training_folder(tmp_path: Path, monkeypatch) -> None:
    """``make demo`` twice in a row: demo_train asks train_comparison to replace ``out/train``."""
    from thermotrain.training import _demo

    monkeypatch.setattr(_demo, "shipped_profile", lambda: (None, "no profile (test)"))
    seen: list[dict] = []
    monkeypatch.setattr(_demo, "train_comparison", lambda out, **kw: seen.append({"out": out} | kw))
    _demo.demo_train(tmp_path, quick=True)
    assert seen[0]["out"] == tmp_path / "train" and seen[0]["overwrite"] is True
