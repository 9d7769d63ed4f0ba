"""Issue 7 items 6-8 for ``netlist``, ``validate`` and ``simulate``: bad flags and files are one-line
refusals (no traceback, nothing written), resources are estimated and refused before work starts, and
the netlists ``write_netlist``/``thermotrain netlist`` produce pass the allowlist and run (item 2: end to
end, with the noise file beside the .cir)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from thermotrain import InputError, NetlistSecurityError, ResourceLimitError
from thermotrain.circuits import preset
from thermotrain.cli import main
from thermotrain.netlists import load_netlist, run_transient, write_netlist
from thermotrain.netlists._safety import parse_netlist


def _one_line_error(capsys, argv: list[str], command: str, code: int | None = None) -> str:
    """Run the CLI; assert it fails with exactly one stderr line ``thermotrain CMD: error: ...``."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse refusals
        rc = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0 and (code is None or rc == code), (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"thermotrain {command}: error:"), err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------------- item 7: flags


@pytest.mark.parametrize(
    "flags, expect",
    [
        (["--seed", "-1"], "--seed"),
        (["--seed", "1.5"], "--seed"),
        (["--duration", "0"], "--duration"),
        (["--duration", "-5"], "--duration"),
        (["--duration", "nan"], "--duration"),
        (["--duration", "inf"], "--duration"),
        (["--size", "0"], "--size"),
        (["--size", "2.5"], "--size"),
        (["--size", "257"], "--size"),
        (["--kappa0", "0"], "--kappa0"),
        (["--kappa0", "-1e-2"], "--kappa0"),
        (["--corner", "moon"], "--corner"),
    ],
)
def test_netlist_flags_are_refused_in_one_line(tmp_path: Path, capsys, flags: list[str], expect: str) -> None:
    line = _one_line_error(
        capsys, ["netlist", "--preset", "rc8", *flags, "--output", str(tmp_path / "x.cir")], "netlist", 2
    )
    assert expect in line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "flags, expect",
    [
        (["--runs", "0"], "--runs"),
        (["--workers", "0"], "--workers"),
        (["--duration", "0"], "--duration"),
        (["--seed", "-1"], "--seed"),
        (["--timeout", "0"], "--timeout"),
        (["--size", "0"], "--size"),
    ],
)
def test_validate_flags_are_refused_in_one_line(
    tmp_path: Path, capsys, flags: list[str], expect: str
) -> None:
    line = _one_line_error(
        capsys, ["validate", "--preset", "rc8", *flags, "--out", str(tmp_path / "v")], "validate", 2
    )
    assert expect in line


def test_validate_refuses_an_out_that_is_a_file_or_holds_results(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    line = _one_line_error(
        capsys, ["validate", "--preset", "rc8", "--out", str(tmp_path / "file")], "validate"
    )
    assert "is a file" in line
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "report.json").write_text("{}")
    line = _one_line_error(
        capsys, ["validate", "--preset", "rc8", "--out", str(tmp_path / "full")], "validate"
    )
    assert "--overwrite" in line


@pytest.mark.spice
def test_validate_timeout_reaches_every_spice_run(tmp_path: Path, capsys) -> None:
    """``--timeout`` (s) is passed on as ValidationSettings(timeout=...): a tiny limit stops the runs."""
    argv = ["validate", "--preset", "rc8", "--size", "2", "--runs", "1", "--duration", "50", "--workers", "1",
            "--timeout", "1e-3", "--quiet", "--out", str(tmp_path / "v")]  # fmt: skip
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr()
    assert rc != 0, err
    assert "Traceback" not in err.err
    assert "limit" in err.err + err.out or "timeout" in (err.err + err.out).lower()


# --------------------------------------------------------------------------- item 6: files, sizes


def _cir(tmp_path: Path) -> Path:
    path = tmp_path / "ok.cir"
    path.write_text("* t\nR1 n1 0 1k\nC1 n1 0 1n\nI1 0 n1 dc 1m\n.end\n")
    return path


def _sim(path, out, *extra: str) -> list[str]:
    return [
        "simulate",
        str(path),
        "--step",
        "1e-7",
        "--stop",
        "1e-6",
        "--probe",
        "n1",
        "--out",
        str(out),
        *extra,
    ]


def test_simulate_refuses_dev_zero_and_a_fifo_at_once(tmp_path: Path, capsys) -> None:
    line = _one_line_error(capsys, _sim("/dev/zero", tmp_path / "o"), "simulate")
    assert "not a regular file" in line
    fifo = tmp_path / "pipe.cir"
    os.mkfifo(fifo)
    line = _one_line_error(capsys, _sim(fifo, tmp_path / "o"), "simulate")  # would hang if opened
    assert "not a regular file" in line
    line = _one_line_error(capsys, _sim(tmp_path / "missing.cir", tmp_path / "o"), "simulate")
    assert "no such file" in line
    assert not (tmp_path / "o").exists()


def test_simulate_refuses_a_huge_output_before_running(tmp_path: Path, capsys) -> None:
    argv = ["simulate", str(_cir(tmp_path)), "--step", "1e-12", "--stop", "1e-3", "--probe", "n1",
            "--out", str(tmp_path / "o")]  # fmt: skip
    line = _one_line_error(capsys, argv, "simulate")
    assert "1000000001 points" in line and "1024 MB" in line and "--max-output-mb" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "flags, expect",
    [
        (["--step", "0"], "--step"),
        (["--step", "nan"], "--step"),
        (["--timeout", "-1"], "--timeout"),
        (["--max-output-mb", "0"], "--max-output-mb"),
        (["--engine", "xyce"], "--engine"),
    ],
)
def test_simulate_flags_are_refused_in_one_line(
    tmp_path: Path, capsys, flags: list[str], expect: str
) -> None:
    line = _one_line_error(capsys, [*_sim(_cir(tmp_path), tmp_path / "o"), *flags], "simulate", 2)
    assert expect in line


@pytest.mark.spice
def test_simulate_out_rules_and_atomic_results(tmp_path: Path, capsys) -> None:
    cir = _cir(tmp_path)
    (tmp_path / "afile").write_text("x")
    line = _one_line_error(capsys, _sim(cir, tmp_path / "afile"), "simulate")
    assert "is a file" in line
    assert main(_sim(cir, tmp_path / "o")) == 0
    first = (tmp_path / "o" / "transient.npz").read_bytes()
    line = _one_line_error(capsys, _sim(cir, tmp_path / "o"), "simulate")
    assert "--overwrite" in line
    assert main(_sim(cir, tmp_path / "o", "--overwrite", "--engine", "batch")) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        ".thermotrain-output",
        "transient.json",
        "transient.npz",
    ]
    assert len(first) > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]  # no temporary folders left


@pytest.mark.spice
def test_simulate_timeout_flag_reaches_ngspice(tmp_path: Path, capsys) -> None:
    path = tmp_path / "slow.cir"
    path.write_text("* t\nR1 n1 0 1k\nC1 n1 0 1n\nI1 0 n1 dc 0 trnoise(1e-6 1e-9 0 0)\n.end\n")
    argv = ["simulate", str(path), "--step", "1e-9", "--stop", "1e-2", "--probe", "n1", "--timeout", "0.5",
            "--max-output-mb", "1e6", "--out", str(tmp_path / "o")]  # fmt: skip
    line = _one_line_error(capsys, argv, "simulate")
    assert "0.5 s limit" in line
    assert not (tmp_path / "o").exists()


def test_netlist_duration_refused_from_the_noise_file_size_before_writing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "big.cir"
    line = _one_line_error(
        capsys, ["netlist", "--preset", "rc8", "--duration", "1e7", "--output", str(out)], "netlist"
    )
    assert "MB" in line and "512 MB" in line and "--duration" in line and "THERMOTRAIN_MAX_NOISE_MB" in line
    assert list(tmp_path.iterdir()) == []  # no .cir naming a never-written noise file
    circuit = preset("rc8").build(0)
    with pytest.raises(ResourceLimitError, match="noise file"):
        write_netlist(circuit, duration=1e7 * circuit.time_constant)


def test_netlist_output_rules(tmp_path: Path, capsys) -> None:
    (tmp_path / "dir.cir").mkdir()
    line = _one_line_error(
        capsys, ["netlist", "--preset", "rc8", "--output", str(tmp_path / "dir.cir")], "netlist"
    )
    assert "is a folder" in line
    out = tmp_path / "a.cir"
    argv = ["netlist", "--preset", "rc8", "--size", "2", "--duration", "10", "--output", str(out)]
    assert main(argv) == 0
    line = _one_line_error(capsys, argv, "netlist")
    assert "--overwrite" in line
    assert main([*argv, "--overwrite"]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _npy(tmp_path: Path, name: str, arr) -> Path:
    path = tmp_path / name
    np.save(path, arr, allow_pickle=False)
    return path


@pytest.mark.parametrize(
    "matrix, expect",
    [
        (np.eye(257), "above the limit"),
        (np.eye(3)[:2], "not square"),
        (np.eye(3) + 0j, "complex"),
        (np.array(2.0), "scalar"),
        (np.array(["a", "b"]), "dtype"),
        (np.ones(3), "2-D"),
        (np.full((2, 2), np.nan), "finite"),
    ],
)
def test_matrix_file_is_checked(tmp_path: Path, capsys, matrix, expect: str) -> None:
    path = _npy(tmp_path, "A.npy", matrix)
    line = _one_line_error(
        capsys,
        ["netlist", "--preset", "rc8", "--matrix", str(path), "--output", str(tmp_path / "x.cir")],
        "netlist",
    )
    assert "--matrix" in line and expect in line
    assert not (tmp_path / "x.cir").exists()


@pytest.mark.parametrize(
    "b, expect", [(np.ones(3), "length 3"), (np.ones((2, 1)), "1-D"), (np.ones(2) + 1j, "complex")]
)
def test_b_file_is_checked(tmp_path: Path, capsys, b, expect: str) -> None:
    A = _npy(tmp_path, "A.npy", np.array([[2.0, -0.5], [-0.5, 1.0]]))
    path = _npy(tmp_path, "b.npy", b)
    argv = [
        "netlist",
        "--preset",
        "rc8",
        "--matrix",
        str(A),
        "--b",
        str(path),
        "--output",
        str(tmp_path / "x.cir"),
    ]
    line = _one_line_error(capsys, argv, "netlist")
    assert "--b" in line and expect in line


# ------------------------------------------------------------------------ item 8: API argument errors


def test_write_netlist_argument_errors_are_input_errors() -> None:
    circuit = preset("rc8", size=2).build(0)
    for kwargs in ({"noise": "bogus"}, {"seed": -1}, {"seed": 1.5}, {"duration": 0.0}, {"duration": float("nan")},
                   {"start": -1.0}, {"noise": "file"}):  # fmt: skip
        with pytest.raises(InputError):
            write_netlist(circuit, **kwargs)


def test_run_transient_argument_errors_are_input_errors() -> None:
    nl = write_netlist(preset("rc8", size=2).build(0), noise="off")
    for kwargs in ({"step": 0.0}, {"step": float("nan")}, {"stop": float("inf")}, {"timeout": 0},
                   {"probes": "o0"}, {"probes": ["nowhere"]}, {"engine": "xyce"}, {"options": {"x": 1}},
                   {"initial_conditions": {"o0": float("nan")}}, {"max_output_bytes": 1}):  # fmt: skip
        args = {"step": 1e-7, "stop": 1e-6, **kwargs}
        with pytest.raises(InputError):
            run_transient(nl, **args)


# ------------------------------------------------------------- legitimate netlists pass and run (item 2)


@pytest.mark.parametrize("name", ["rc8", "rlc8"])
@pytest.mark.parametrize("noise", ["file", "trnoise", "off"])
def test_written_netlists_pass_the_allowlist(name: str, noise: str) -> None:
    for corner in ("ideal", "board", "integrated"):
        circuit = preset(name, size=3, corner=corner).build(0)
        nl = write_netlist(circuit, noise=noise, duration=10 * circuit.time_constant)
        checked = parse_netlist(nl.text, provided_files=nl.noise_files)
        assert {n.lower() for n in checked.nodes} == {n.lower() for n in nl.nodes} | {"0"}


@pytest.mark.spice
@pytest.mark.parametrize("engine", ["shared", "batch"])
@pytest.mark.parametrize("name", ["rc8", "rlc8"])
def test_netlist_then_simulate_end_to_end(tmp_path: Path, capsys, name: str, engine: str) -> None:
    """``thermotrain netlist`` writes the .cir and its noise .dat; ``thermotrain simulate`` runs them (on the
    old code: "cannot open file noise_...dat"), and the numbers equal a direct run of the same netlist."""
    cir = tmp_path / f"{name}.cir"
    assert main(["netlist", "--preset", name, "--size", "2", "--duration", "20", "--output", str(cir)]) == 0
    circuit = preset(name, size=2).build(0)
    nl = write_netlist(circuit, noise="file", seed=0, duration=20 * circuit.time_constant)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([cir.name, *nl.noise_files])
    step, stop = circuit.noise_interval / 2, 10 * circuit.time_constant
    out = tmp_path / "out"
    argv = ["simulate", str(cir), "--step", repr(step), "--stop", repr(stop), "--probe", circuit.outputs[0],
            "--engine", engine, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    got = np.load(out / "transient.npz")["values"][:, 0]
    direct = run_transient(nl, step=step, stop=stop, probes=[circuit.outputs[0]], engine=engine)
    np.testing.assert_array_equal(got, direct.values[:, 0])
    assert np.std(got) > 0  # the noise file was played


@pytest.mark.spice
@pytest.mark.parametrize("noise", ["trnoise", "off"])
def test_loaded_netlists_of_other_noise_modes_run(tmp_path: Path, noise: str) -> None:
    circuit = preset("rlc8", size=2).build(0)
    write_netlist(circuit, noise=noise).save(tmp_path / "n.cir")
    nl = load_netlist(tmp_path / "n.cir")
    run = run_transient(
        nl, step=circuit.noise_interval, stop=20 * circuit.noise_interval, probes=circuit.outputs
    )
    assert run.values.shape == (21, 2) and np.all(np.isfinite(run.values))


def test_simulate_refusal_of_a_written_netlist_with_a_foreign_card(tmp_path: Path, capsys) -> None:
    circuit = preset("rc8", size=2).build(0)
    text = write_netlist(circuit, noise="off").text.replace(".end\n", ".control\nshell id\n.endc\n.end\n")
    (tmp_path / "x.cir").write_text(text)
    line = _one_line_error(capsys, _sim(tmp_path / "x.cir", tmp_path / "o"), "simulate")
    assert "'.control' is not allowed" in line and "allowed: element cards" in line
    with pytest.raises(NetlistSecurityError):
        load_netlist(tmp_path / "x.cir")


# ------------------------------------------------------------------------ netlist: a cell is never dropped


@pytest.mark.parametrize(
    "tiny, corner, expect",
    [(1e-12, "ideal", "R1_1 (A_dev[1,1] = 1e-12)"), (1e-3, "board", "A_dev[1,1] = 0: cell 1's self term")],
)
def test_netlist_refuses_a_diagonal_it_cannot_place(
    tmp_path: Path, capsys, tiny: float, corner: str, expect: str
) -> None:
    """On the old code diag(1, 1e-12, 1) (and 1e-3 at 8 coupling bits) wrote a .cir without R1_1, an
    unstable array, and exited 0."""
    path = _npy(tmp_path, "A.npy", np.diag([1.0, tiny, 1.0]))
    out = tmp_path / "x.cir"
    argv = ["netlist", "--preset", "rc8", "--matrix", str(path), "--corner", corner, "--noise", "off",
            "--output", str(out)]  # fmt: skip
    line = _one_line_error(capsys, argv, "netlist")
    assert expect in line
    assert not out.exists()


def test_netlist_prints_the_scale_factors(tmp_path: Path, capsys) -> None:
    """1e-300 I and 1e300 I give the same hardware; the summary says how results map back."""
    for scale, shown in ((1e-300, "A = 1e-300 x A_dev"), (1e300, "A = 1e+300 x A_dev")):
        path = _npy(tmp_path, "A.npy", scale * np.eye(3))
        argv = ["netlist", "--preset", "rc8", "--matrix", str(path), "--noise", "off",
                "--output", str(tmp_path / "x.cir"), "--overwrite"]  # fmt: skip
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert shown in out and "V per unit of x" in out and "Cov x = " in out


# ------------------------------------------------------------------- simulate: no element, no node to probe


@pytest.mark.parametrize(
    "text, trusted",
    [("", False), ("* title\n.param x=1\n.end\n", False), ("* t\n.subckt s a b\nR1 a b 1k\n.ends\n", False),
     ("", True), ("* title\n\n* only a comment\n.end\n", True)],
)  # fmt: skip
def test_simulate_refuses_an_element_less_netlist_before_ngspice(
    tmp_path: Path, capsys, monkeypatch, text: str, trusted: bool
) -> None:
    """On the old code the empty file reached ngspice, and its raw log came back as the error."""
    import thermotrain.netlists._ngspice as ng

    def no_ngspice(*args, **kwargs):
        raise AssertionError("ngspice must not run")

    monkeypatch.setattr(ng, "_run", no_ngspice)
    path = tmp_path / "e.cir"
    path.write_text(text)
    line = _one_line_error(
        capsys, _sim(path, tmp_path / "o", *(["--trusted"] if trusted else [])), "simulate"
    )
    assert "nothing to simulate" in line and "ngspice" not in line
    assert not (tmp_path / "o").exists()


def test_simulate_refuses_a_probe_that_is_not_a_node(tmp_path: Path, capsys) -> None:
    line = _one_line_error(capsys, _sim(_cir(tmp_path), tmp_path / "o", "--probe", "elsewhere"), "simulate")
    assert "['elsewhere'] are not nodes" in line
