"""Issue 9: ``thermotrain simulate`` runs the file-noise netlists ``thermotrain netlist`` writes -- checked
(trusted or not) and from any working directory -- and refuses a noise file that is missing, outside the
netlist's folder, not numbers, or shorter than the run in one line; when ngspice says why it stopped, the
error is ngspice's own message (not a guessed "did not converge")."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from thermotrain import InputError
from thermotrain._errors import SpiceConvergenceError, SpiceError
from thermotrain.circuits import preset
from thermotrain.cli import main
from thermotrain.netlists import load_netlist, run_transient, write_netlist
from thermotrain.netlists._ngspice import ngspice_reason
from thermotrain.netlists._safety import check_data_file

DURATION_TAU = 20.0


def _one_line_error(capsys, argv: list[str]) -> str:
    rc = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "WARNING" not in line]
    assert rc == 1, err
    assert len(err) == 1 and err[0].startswith("thermotrain simulate: error:"), err
    return err[0]


@pytest.fixture
def written(tmp_path: Path, capsys):
    """``thermotrain netlist`` output for a 2-cell RC array (file noise, 20 tau) in ``tmp_path/net``."""
    folder = tmp_path / "net"
    cir = folder / "rc2.cir"
    argv = [
        "netlist",
        "--preset",
        "rc8",
        "--size",
        "2",
        "--duration",
        repr(DURATION_TAU),
        "--output",
        str(cir),
    ]
    assert main(argv) == 0
    capsys.readouterr()
    circuit = preset("rc8", size=2).build(0)
    nl = write_netlist(circuit, noise="file", seed=0, duration=DURATION_TAU * circuit.time_constant)
    (dat,) = nl.noise_files
    return cir, folder / dat, circuit, nl


def _argv(cir: Path, circuit, out: Path, *extra: str, stop_tau: float = 10.0) -> list[str]:
    return ["simulate", str(cir), "--step", repr(circuit.noise_interval / 2),
            "--stop", repr(stop_tau * circuit.time_constant), "--probe", circuit.outputs[0],
            "--probe", circuit.outputs[1], "--out", str(out), *extra]  # fmt: skip


@pytest.mark.spice
@pytest.mark.parametrize("engine", ["shared", "batch"])
@pytest.mark.parametrize("trusted", [False, True])
def test_round_trip_from_another_folder(
    written, tmp_path: Path, capsys, monkeypatch, engine, trusted
) -> None:
    """netlist -> simulate, run from a folder that does NOT hold the noise file (the shared library used to
    find a trusted netlist's file only through the process's cwd, batch mode never): the numbers equal a
    direct in-process run of the same netlist, so the seeded file was the noise played."""
    cir, _, circuit, nl = written
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "out"
    extra = ["--engine", engine, *(["--trusted"] if trusted else [])]
    assert main(_argv(cir, circuit, out, *extra)) == 0, capsys.readouterr().err
    got = np.load(out / "transient.npz")["values"]
    direct = run_transient(
        nl, step=circuit.noise_interval / 2, stop=10 * circuit.time_constant, probes=circuit.outputs
    )
    np.testing.assert_array_equal(got, direct.values)
    assert np.all(np.std(got, axis=0) > 0)
    assert os.listdir(elsewhere) == []  # nothing written to the cwd


@pytest.mark.parametrize("trusted", [False, True])
def test_missing_noise_file_is_one_line(written, tmp_path: Path, capsys, trusted: bool) -> None:
    cir, dat, circuit, _ = written
    dat.unlink()
    line = _one_line_error(capsys, _argv(cir, circuit, tmp_path / "o", *(["--trusted"] if trusted else [])))
    assert dat.name in line and "does not exist" in line
    assert not (tmp_path / "o").exists()


def test_noise_file_outside_the_folder_is_refused(written, tmp_path: Path, capsys) -> None:
    cir, dat, circuit, _ = written
    outside = tmp_path / "outside.dat"
    dat.rename(outside)
    dat.symlink_to(outside)  # a link that leaves the netlist's folder
    line = _one_line_error(capsys, _argv(cir, circuit, tmp_path / "o"))
    assert "leaves the netlist's folder" in line
    dat.unlink()
    cir.write_text(cir.read_text().replace(f'file="{dat.name}"', 'file="../outside.dat"'))
    line = _one_line_error(capsys, _argv(cir, circuit, tmp_path / "o"))
    assert "plain file name in the netlist's own folder" in line and "no '..'" in line


@pytest.mark.parametrize(
    "content, expect",
    [
        ("0 1e-6\nabc 2e-6\n", r"line 2: byte b'a' is not part of a number"),
        ("0 1e-6\n1e-6 nan\n", r"line 2: byte b'n'"),
        ("0 1e-6\n1e-6 1e999\n", r"line 2: a number is out of the float64 range"),
        ("0 1e-6\n1e-6 2e-6 3e-6\n", r"line 2: 3 numbers, expected 2"),
        ("0 1e-6\n1e-6 --2\n", r"line 2: '--2' is not a number"),
        ("0 1e-6\n2e-6 1e-6\n1e-6 0\n", r"line 3: the time column \(s\) must increase"),
        ("0\n1e-6\n", r"line 1: 1 numbers, expected 2"),
        ("", r"holds no rows"),
    ],
)
def test_non_numeric_noise_file_is_one_line(
    written, tmp_path: Path, capsys, content: str, expect: str
) -> None:
    cir, dat, circuit, _ = written
    dat.write_text(content)
    for extra in ([], ["--trusted"]):
        line = _one_line_error(capsys, _argv(cir, circuit, tmp_path / "o", *extra))
        assert dat.name in line
        assert re.search(expect, line), line


def test_a_run_past_the_noise_record_is_refused(written, tmp_path: Path, capsys) -> None:
    """filesource holds its last value after the record: the noise would silently stop (measured: the
    output's std fell from 0.14 V to 0.008 V after the end), so a longer run is refused before ngspice."""
    cir, dat, circuit, _ = written
    line = _one_line_error(capsys, _argv(cir, circuit, tmp_path / "o", stop_tau=2 * DURATION_TAU))
    assert "past the end of the noise record" in line and dat.name in line


@pytest.mark.spice
def test_file_replaced_after_loading_is_checked_at_run_time(written) -> None:
    """The runner copies the bytes it checked, read once at run time: a file made non-numeric between
    load and run is refused, not played."""
    cir, dat, circuit, _ = written
    nl = load_netlist(cir)
    dat.write_text("0 1\nrm -rf 2\n")
    with pytest.raises(InputError, match="is not part of a number"):
        run_transient(nl, step=circuit.noise_interval / 2, stop=circuit.time_constant, probes=circuit.outputs)


@pytest.mark.spice
@pytest.mark.parametrize("engine", ["shared", "batch"])
def test_ngspice_own_message_is_reported(written, tmp_path: Path, capsys, engine: str) -> None:
    """A trusted netlist naming a file that does not exist (absolute path: left to ngspice): ngspice says
    "cannot open file", then fails the operating point; the error is its first message, not a guessed
    "did not converge ... DC path"."""
    cir, _, circuit, nl = written
    # a good run first: the shared library then plays zeros for a file it cannot open instead of failing
    # the operating point (seen), so only ngspice's device message tells
    run_transient(nl, step=circuit.noise_interval, stop=circuit.time_constant, engine=engine)
    missing = tmp_path / "no_such_noise.dat"
    text = cir.read_text()
    cir.write_text(text.replace(f'file="{written[1].name}"', f'file="{missing}"'))
    line = _one_line_error(capsys, _argv(cir, circuit, tmp_path / "o", "--trusted", "--engine", engine))
    assert f"ngspice ({engine}) stopped: instance att_noise: cannot open file {missing}" in line, line
    assert "converge" not in line and "DC path" not in line
    with pytest.raises(SpiceError) as info:
        run_transient(
            load_netlist(cir, trusted=True), step=1e-7, stop=1e-6, probes=circuit.outputs, engine=engine
        )
    assert not isinstance(info.value, SpiceConvergenceError)


def test_ngspice_reason_picks_the_root_cause() -> None:
    messages = [
        "Warning: Dynamic gmin stepping failed",
        "Error: Transient op failed, timestep too small",
        "Instance: att_noise   Message: cannot open file noise_1.dat",
        "doAnalyses: TRAN:  Timestep too small; initial timepoint: cause unrecorded.",
    ]
    assert ngspice_reason(messages) == "instance att_noise: cannot open file noise_1.dat"
    assert ngspice_reason(messages[:2]) == "Error: Transient op failed, timestep too small"
    assert ngspice_reason(["Note: all fine"]) is None


def test_check_data_file_accepts_what_the_writer_writes(written) -> None:
    _, dat, circuit, nl = written
    info = check_data_file(dat)
    assert (info.rows, info.columns) == (nl.noise_samples.shape[0], nl.noise_samples.shape[1] + 1)
    assert info.t_end == pytest.approx(nl.noise_end, rel=1e-12)
