"""The command line's error boundary: one line per error, an exit status, a traceback only with --debug."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from thermotrain import DivergedError, InputError, OutputError
from thermotrain import cli as cli_module
from thermotrain._demo import MARKER, prepare_out


def _with_command(monkeypatch, func) -> None:
    """Replace the `profile` command's function by ``func`` (a command that fails the way a test needs)."""
    real = cli_module.build_parser

    def build() -> argparse.ArgumentParser:
        parser = real()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["profile"].set_defaults(func=func)
        return parser

    monkeypatch.setattr(cli_module, "build_parser", build)


def _fail(exc: BaseException):
    def func(args: argparse.Namespace) -> int:
        raise exc

    return func


@pytest.mark.parametrize(
    "exc, code",
    [
        (InputError("value=3 must be <= 2."), 1),
        (DivergedError("loss 3e22 at step 5"), 4),
        (RuntimeError("something\nunexpected"), 1),
        (MemoryError(), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_every_error_is_one_line_with_its_exit_status(monkeypatch, capsys, exc, code) -> None:
    _with_command(monkeypatch, _fail(exc))
    assert cli_module.main(["profile", "rc8"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("thermotrain profile: ")
    assert "Traceback" not in err
    if type(exc) is RuntimeError:
        assert "unexpected RuntimeError: something unexpected" in err and "--debug" in err


def test_debug_shows_the_traceback(monkeypatch) -> None:
    _with_command(monkeypatch, _fail(InputError("bad value")))
    with pytest.raises(InputError, match="bad value"):
        cli_module.main(["--debug", "profile", "rc8"])


@pytest.mark.parametrize(
    "argv",
    [
        ["netlist", "--preset", "rc9", "--output", "x.cir"],
        ["train", "--epochs", "0"],
        ["train", "--batch-size", "many"],
        ["train", "--analog-time", "fast"],
        ["train", "--resume", "--overwrite"],
        ["experiment", "kfac-claims", "--analog-time", "0"],
        ["no-such-command"],
    ],
)
def test_a_bad_flag_is_refused_in_one_line(capsys, argv) -> None:
    with pytest.raises(SystemExit) as info:
        cli_module.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and "usage" not in err


def test_help_shows_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        cli_module.main(["train", "--help"])
    out = capsys.readouterr().out
    assert "(default: 128)" in out  # --batch-size
    assert "(default: auto)" in out  # --analog-time
    assert "(default: 0)" in out  # --seed: a default of 0 is shown too


def test_demo_folder_is_replaced_but_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    out = prepare_out(tmp_path / "demo")
    (out / "stale.txt").write_text("old")
    out = prepare_out(out)  # an earlier demo's folder: emptied
    assert sorted(p.name for p in out.iterdir()) == [MARKER]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="--overwrite"):
        prepare_out(foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        prepare_out(tmp_path / "file")
