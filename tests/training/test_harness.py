"""The harness: metrics on disk, resume to identical metrics, clear errors, the CLI, data loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from thermotrain import ProfileError, TrainingError
from thermotrain.training import TrainConfig, load_dataset, train
from thermotrain.training._cli import add_parser

torch.set_num_threads(1)


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(dataset="digits", subset=300, epochs=2, batch_size=64, progress=False, out=str(tmp_path))
    return TrainConfig(**(base | kw))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "kfac", "ngd-cg", "tngd", "tngd-adam"])
def test_every_optimizer_trains_and_writes_metrics(tmp_path: Path, optimizer: str) -> None:
    summary = train(_cfg(tmp_path, optimizer=optimizer, analog_time=5.0, kappa0=0.0))
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    for key in ("test_accuracy", "test_loss", "steps", "wall_s", "analog_time_tau"):
        assert key in on_disk
    assert summary["steps"] == 2 * 5
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-2]["loss"] < lines[0]["loss"]  # the last step's loss is below the first one's
    assert sum(r["kind"] == "step" for r in lines) == 10 and sum(r["kind"] == "epoch" for r in lines) == 2
    assert (summary["analog_time_tau"] > 0) == optimizer.startswith("tngd")


@pytest.mark.parametrize("optimizer", ["kfac", "tngd"])
def test_resume_after_a_killed_run_reaches_the_same_final_metrics(tmp_path: Path, optimizer: str) -> None:
    kw = dict(optimizer=optimizer, epochs=3, kappa0=1e-3, analog_time=3.0, delay=0.5 * (optimizer == "tngd"))
    full = train(_cfg(tmp_path / "full", **kw))
    train(_cfg(tmp_path / "part", **(kw | {"epochs": 1})))  # a run "killed" after its first epoch
    resumed = train(_cfg(tmp_path / "part", **kw, resume=True))
    for key in ("test_accuracy", "test_loss", "train_loss", "steps", "analog_time_tau"):
        assert resumed[key] == full[key], key
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((tmp_path / "full" / "metrics.jsonl").read_text().splitlines())


def test_corrupt_checkpoint_is_reported(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="corrupt"):
        train(_cfg(tmp_path, optimizer="sgd", resume=True))


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    train(_cfg(tmp_path, optimizer="sgd", epochs=1))
    with pytest.raises(TrainingError, match="different settings"):
        train(_cfg(tmp_path, optimizer="sgd", lr=0.3, resume=True))


def test_nan_loss_raises_before_any_update(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="Loss is nan|Loss is inf|Non-finite|diverged"):
        train(_cfg(tmp_path, optimizer="sgd", lr=1e12))


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"optimizer": "lbfgs"}, "Unknown optimizer"),
        ({"optimizer": "kfac", "damping": 0.0}, "damping must be > 0"),
    ],
)
def test_bad_settings_raise_training_error(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(TrainingError, match=match):
        _cfg(tmp_path, **kw)


def test_unknown_backend_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="backend 'no-such-profile.json': no such profile file"):
        train(_cfg(tmp_path, optimizer="kfac", backend="no-such-profile.json"))


def test_missing_fashion_mnist_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_cli_train_writes_summary(tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "train",
            "--optimizer",
            "sgd",
            "--epochs",
            "1",
            "--subset",
            "200",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 2


def test_a_profile_backend_keeps_its_own_noise_level_unless_the_user_sets_one(tmp_path) -> None:
    from torch import nn

    from thermotrain.models import HardwareProfile, save_profile
    from thermotrain.training._harness import Method, TrainConfig

    path = save_profile(HardwareProfile.from_spec("rc", kappa0=0.003), tmp_path / "p.json")
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    eye = torch.eye(5, dtype=torch.float64)
    own = Method(TrainConfig(optimizer="kfac", backend=str(path)), model)
    assert own.precond.solver.plan(eye).kappa0 == 0.003  # the κ0 the device runs at
    user = Method(TrainConfig(optimizer="kfac", backend=str(path), kappa0=0.02), model)
    assert user.precond.solver.plan(eye).kappa0 == 0.02


def test_kfac_claims_experiment_reports_both_claims_per_seed(tmp_path) -> None:
    from thermotrain.training import run_experiment

    payload = run_experiment(
        "kfac-claims",
        tmp_path,
        {"dataset": "digits", "subset": 300, "epochs": 1, "seeds": 2, "analog_time": 400.0, "damping": 0.3},
    )
    c = payload["claims"]
    assert set(c["kfac_steps_to_same_seed_adam_final"]) == {0, 1}
    assert set(c["thermo_minus_digital_per_seed"]) <= {0, 1}
    assert isinstance(c["kfac_half_steps_claim_holds"], bool) and isinstance(c["thermo_within_1_point"], bool)
    assert (tmp_path / "kfac-claims.png").stat().st_size > 0 and (tmp_path / "kfac-claims.json").exists()


def test_auto_analog_time_is_logged_per_inverse_summed_and_survives_resume(tmp_path: Path, capsys) -> None:
    """Thermodynamic K-FAC with no time given: every device call is a ``kind="readout"`` record, the records
    sum to the run's analog_time_tau, the summary states the per-call range, and the progress line names
    the chosen time. A resumed run keeps the tally."""
    kw = dict(optimizer="kfac", backend="rc8", epochs=2, inv_update_steps=5)
    summary = train(_cfg(tmp_path / "full", **(kw | {"progress": True})))
    err = capsys.readouterr().err
    assert "analog time per device call (auto, target readout error 0.1)" in err
    lines = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    calls = [r for r in lines if r["kind"] == "readout"]
    assert len(calls) == 4 * 2  # two refreshes (steps 1, 6) of 4 factors (5 steps per epoch, 2 epochs)
    assert sum(c["analog_time_tau"] for c in calls) == pytest.approx(summary["analog_time_tau"])
    assert all(c["predicted_error"] <= 0.1 + 1e-9 and c["analog_time_tau"] > c["burn_in_tau"] for c in calls)
    ro = summary["readout"]
    assert ro["analog_time"] == "auto" and ro["target_error"] == 0.1 and ro["calls"] == len(calls)
    per = ro["analog_time_per_call_tau"]
    assert per["min"] == min(c["analog_time_tau"] for c in calls) and per["max"] > per["min"]
    train(_cfg(tmp_path / "part", **(kw | {"epochs": 1})))
    resumed = train(_cfg(tmp_path / "part", **(kw | {"resume": True})))
    assert resumed["readout"]["calls"] == ro["calls"] and resumed["test_accuracy"] == summary["test_accuracy"]


def test_every_preconditioner_follows_the_protocol() -> None:
    from torch import nn

    from thermotrain.training import Preconditioner
    from thermotrain.training._harness import Method

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    for name in ("kfac", "ngd-cg", "ngd", "tngd", "tngd-adam"):
        method = Method(TrainConfig(optimizer=name, progress=False), model)
        assert isinstance(method.precond, Preconditioner), name
    assert Method(TrainConfig(optimizer="adam"), model).precond is None


def test_cli_train_on_a_chip_prints_tiles_analog_time_and_values(tmp_path: Path, capsys) -> None:
    """`train --optimizer kfac --backend rc8` (digits, 2 steps): the printed summary line states the mapping,
    the cells per tile, the most tiles a factor used (the 65-wide input factor: 2 blocks of rc8's 64-cell
    tiles), the analog time and the values loaded and read."""
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["train", "--optimizer", "kfac", "--backend", "rc8", "--epochs", "1", "--subset", "200"]
        + ["--out", str(tmp_path), "--no-progress"]
    )
    assert args.func(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["mapping"] == "tiles" and line["cells_per_tile"] == 64 and line["tiles_used_max"] == 2
    assert line["analog_time_tau"] > 0 and line["device_wall_time_tau"] > 0
    assert line["values_loaded"] > 0 and line["values_read"] > 0
