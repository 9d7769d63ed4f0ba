"""``train --config run.toml`` and ``experiment --config x.toml``: keys are the flags' destinations, values
checked by the flags' own types; a flag given on the command line overrides the file (also when it equals
the default); an unknown key is refused in one line naming it and the known keys; the effective config
written to OUT/config.toml is itself a valid --config (round trip through real runs)."""

from __future__ import annotations

import json
import tomllib

import pytest

from thermotrain import cli
from thermotrain._args import namespace_to_dataclass
from thermotrain.models import shipped_profile_path
from thermotrain.training import TrainConfig
from thermotrain.training import _cli as tcli


def _parse(*argv: str):
    return tcli._with_config(argv[0], cli.build_parser().parse_args(list(argv)))


def _toml(path, text: str):
    path.write_text(text)
    return str(path)


def test_command_line_flags_override_the_file_and_only_when_given(tmp_path):
    f = _toml(
        tmp_path / "run.toml",
        'optimizer = "kfac"\nepochs = 2\nseed = 5\nlr = 0.02\nkl_clip = "off"\nprogress = false\n'
        "analog_time = 400\nbatch_size = 32\nthreads = 1\n",
    )
    cfg = namespace_to_dataclass(TrainConfig, _parse("train", "--config", f))
    assert (cfg.optimizer, cfg.epochs, cfg.seed, cfg.lr, cfg.kl_clip, cfg.progress) == (
        "kfac",
        2,
        5,
        0.02,
        None,
        False,
    )
    assert cfg.analog_time == 400.0 and cfg.batch_size == 32
    # given flags win, wherever they stand, even when the value given is the flag's default (seed 0, progress)
    args = _parse("train", "--seed", "0", "--config", f, "--lr", "0.03", "--progress", "--kl-clip", "1e-3")
    cfg = namespace_to_dataclass(TrainConfig, args)
    assert (cfg.seed, cfg.lr, cfg.progress, cfg.kl_clip, cfg.epochs, args.threads) == (
        0,
        0.03,
        True,
        1e-3,
        2,
        1,
    )
    # without --config nothing changes
    cfg = namespace_to_dataclass(TrainConfig, _parse("train"))
    assert cfg == TrainConfig(out=tcli.DEFAULT_OUT)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("batchsize = 3\n", ["unknown key 'batchsize'", "known keys: analog_dt, analog_time", "batch_size"]),
        ("batch-size = 3\n", ["unknown key 'batch-size' (did you mean batch_size?)"]),
        ("[train]\nepochs = 1\n", ["unknown key 'train'"]),
        ("epochs = 0\n", ["epochs = 0", ">= 1"]),
        ("epochs = 1.5\n", ["epochs = 1.5", "must be a whole number >= 1, got 1.5"]),
        ('optimizer = "adam"\nkl_clip = "off"\n', ['does not read kl_clip = "off" (in --config', "kfac"]),
        ('optimizer = "lbfgs"\n', ["optimizer = 'lbfgs' is not one of sgd, adam"]),
        ("progress = 1\n", ["progress = 1 must be true or false", "--progress/--no-progress"]),
        ("lr = true\n", ["lr = True", "a value is needed"]),
        ("epochs = [1, 2]\n", ["epochs must be a single value"]),
        ("backend = 3\n", ["backend = 3 must be a string"]),
        ("epochs = \n", ["not valid TOML"]),
        ("resume = true\noverwrite = true\n", ["contradict"]),
    ],
)
def test_a_bad_config_file_is_one_line_exit_1(tmp_path, capsys, text, words):
    f = _toml(tmp_path / "bad.toml", text)
    assert cli.main(["train", "--config", f, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("thermotrain train: error: "), err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out").exists()


def test_a_missing_or_binary_config_file_is_refused(tmp_path, capsys):
    assert cli.main(["train", "--config", str(tmp_path / "none.toml")]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bin.toml").write_bytes(b"epochs = 1\x00\n")
    assert cli.main(["train", "--config", str(tmp_path / "bin.toml")]) == 1
    assert "bin.toml" in capsys.readouterr().err


def test_train_writes_its_effective_config_which_reproduces_the_run(tmp_path, capsys):
    f = _toml(
        tmp_path / "run.toml",
        'optimizer = "kfac"\ndataset = "digits"\nsubset = 200\nepochs = 1\nbatch_size = 64\nkl_clip = "off"\n',
    )
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli.main(["train", "--config", f, "--lr", "0.004", "--no-progress", "--out", str(one)]) == 0
    written = tomllib.loads((one / "config.toml").read_text())
    assert written["lr"] == 0.004 and written["kl_clip"] == "off" and written["progress"] is False
    assert (
        written["out"] == str(one) and written["subset"] == 200 and "damping" not in written
    )  # None: default
    assert set(written) | {
        "damping",
        "kappa0",
        "readout_error",
        "analog_dt",
        "eval_every",
        "cells_per_tile",
    } == {
        *(f.name for f in TrainConfig.__dataclass_fields__.values()),
        "threads",
    }
    assert cli.main(["train", "--config", str(one / "config.toml"), "--out", str(two)]) == 0
    again = tomllib.loads((two / "config.toml").read_text())
    assert {**again, "out": None} == {**written, "out": None}
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert s1["test_accuracy"] == s2["test_accuracy"] and s1["test_loss"] == s2["test_loss"]
    assert {**s1["config"], "out": None} == {**s2["config"], "out": None}


def test_a_diverged_run_still_writes_its_config(tmp_path, capsys):
    f = _toml(
        tmp_path / "run.toml", 'optimizer = "sgd"\nlr = 1e6\nsubset = 200\nepochs = 1\nprogress = false\n'
    )
    assert cli.main(["train", "--config", f, "--out", str(tmp_path / "out")]) == 4
    assert tomllib.loads((tmp_path / "out" / "config.toml").read_text())["lr"] == 1e6


def test_experiment_options_from_a_file(tmp_path, capsys):
    f = _toml(
        tmp_path / "x.toml",
        'seeds = 2\nepochs = 1\ndataset = "digits"\nanalog_time = "auto"\npd_guard = true\n',
    )
    args = _parse("experiment", "kfac-claims", "--config", f, "--epochs", "3")
    assert tcli.experiment_options(args) == {
        "dataset": "digits",
        "epochs": 3,
        "seeds": 2,
        "pd_guard": True,
        "analog_time": "auto",
    }
    # keys are the experiment options only; one the experiment does not use is refused by it
    for text, words in (
        ("optimizer = 'sgd'\n", "unknown key 'optimizer'"),
        ("damping = 0.1\n", "does not use --damping"),
    ):
        bad = _toml(tmp_path / "bad.toml", text)
        assert cli.main(["experiment", "tngd-time", "--config", bad, "--out", str(tmp_path / "o")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err


def test_experiment_writes_its_effective_config_which_reproduces_the_run(tmp_path, capsys):
    f = _toml(tmp_path / "x.toml", f'profile = "{shipped_profile_path("rc8")}"\n')
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli.main(["experiment", "cost-model", "--config", f, "--out", str(one)]) == 0
    written = tomllib.loads((one / "config.toml").read_text())
    assert written == {"profile": str(shipped_profile_path("rc8"))}
    assert (
        cli.main(["experiment", "cost-model", "--config", str(one / "config.toml"), "--out", str(two)]) == 0
    )
    assert (two / "config.toml").read_text() == (one / "config.toml").read_text()
    hardware = [json.loads((d / "cost-model.json").read_text())["hardware"] for d in (one, two)]
    assert hardware[0] == hardware[1]  # the same profile's device (the digital rates are measured: they vary)
