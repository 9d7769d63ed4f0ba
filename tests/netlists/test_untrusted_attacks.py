"""Issue 7 items 1-5: netlists, probes, initial conditions, data files and init files from outside must not
make ngspice run commands or read other files. Each test plants an attack that creates (or reads) a
sentinel file on the old code (verified: see docs/security.md) and asserts the sentinel is NOT created,
through the real command line (``thermotrain.cli.main``) and the Python API, in both engines.

ngspice lowercases netlist text, so sentinel paths are kept lower case (else the attack would fail for
that reason alone and the test would prove nothing).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from thermotrain import InputError, NetlistSecurityError
from thermotrain.cli import main
from thermotrain.netlists import Netlist, load_netlist, run_transient

pytestmark = pytest.mark.spice

BODY = "R1 n1 0 1k\nC1 n1 0 1n\nI1 0 n1 dc 1m\n"
ENGINES = ["shared", "batch"]


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A lower-case folder for the attack files and the sentinel."""
    assert str(tmp_path) == str(tmp_path).lower(), "sentinel paths must be lower case (ngspice lowercases)"
    return tmp_path


def _external(text: str) -> Netlist:
    """Raw text wrapped as a Netlist the way a Python user could (old and new API alike)."""
    return Netlist(
        text=text, noise_samples=None, noise_interval=1e-7, probes=("n1",), title="t", seed=0, mode="external"
    )


def _simulate(capsys, path: Path, out: Path, *extra: str, probe: str = "n1") -> tuple[int, str]:
    rc = main(
        [
            "simulate",
            str(path),
            "--step",
            "1e-7",
            "--stop",
            "1e-6",
            "--probe",
            probe,
            "--out",
            str(out),
            *extra,
        ]
    )
    return rc, capsys.readouterr().err


def _assert_one_line(err: str, command: str = "simulate") -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"thermotrain {command}: error:"), err
    assert "Traceback" not in err


# ------------------------------------------------------------------------- 1. *# lines are commands


@pytest.mark.parametrize("engine", ENGINES)
def test_star_hash_shell_line_does_not_run(box: Path, capsys, engine: str) -> None:
    sentinel = box / "sentinel_hash"
    cir = box / "hash.cir"
    cir.write_text(f"* title\n{BODY}*# shell touch {sentinel}\n.end\n")
    rc, err = _simulate(capsys, cir, box / "out", "--engine", engine)
    assert rc == 0, err  # a comment: stripped, the circuit runs
    assert not sentinel.exists()
    run_transient(_external(cir.read_text()), step=1e-7, stop=1e-6, engine=engine)
    assert not sentinel.exists()
    assert "shell" not in load_netlist(cir).text


# -------------------------------------------------------------------- 2. *ng_script as the first line


@pytest.mark.parametrize("engine", ENGINES)
def test_ng_script_first_line_does_not_run(box: Path, capsys, engine: str) -> None:
    sentinel = box / "sentinel_ngscript"
    script = box / "x.sh"
    cir = box / "script.cir"
    cir.write_text(
        f"*ng_script\necho touch {sentinel} > {script}\nalias sx shell\nsx touch {sentinel}\n"
        f"sx sh {script}\n{BODY}.end\n"
    )
    rc, err = _simulate(capsys, cir, box / "out", "--engine", engine)
    assert rc == 1
    _assert_one_line(err)
    assert "line 2" in err and "not allowed" in err
    with pytest.raises(NetlistSecurityError):
        run_transient(_external(cir.read_text()), step=1e-7, stop=1e-6, engine=engine)
    assert not sentinel.exists() and not script.exists()
    assert not (box / "out").exists()


@pytest.mark.parametrize("engine", ENGINES)
def test_ng_script_title_alone_is_replaced(box: Path, capsys, engine: str) -> None:
    """A first line ``*ng_script`` followed only by netlist cards: the title is replaced, so the file is
    a netlist again (nothing is interpreted as a command) and runs."""
    cir = box / "title.cir"
    cir.write_text(f"*ng_script\n{BODY}.end\n")
    assert load_netlist(cir).text.splitlines()[0] == "thermotrain checked netlist"
    rc, err = _simulate(capsys, cir, box / "out", "--engine", engine)
    assert rc == 0, err


# ----------------------------------------------------------- 3. probes and initial conditions injected

INJECTION = "n1)\n.control\nshell touch {sentinel}\n.endc\n* ("


@pytest.mark.parametrize("engine", ENGINES)
def test_probe_injection_does_not_run(box: Path, capsys, engine: str) -> None:
    sentinel = box / "sentinel_probe"
    probe = INJECTION.format(sentinel=sentinel)
    cir = box / "ok.cir"
    cir.write_text(f"* t\n{BODY}.end\n")
    rc, err = _simulate(capsys, cir, box / "out", "--engine", engine, probe=probe)
    assert rc == 1
    _assert_one_line(err)
    assert "--probe" in err and "not a valid name" in err
    with pytest.raises(InputError, match="not a valid name"):
        run_transient(_external(cir.read_text()), step=1e-7, stop=1e-6, probes=[probe], engine=engine)
    assert not sentinel.exists()


@pytest.mark.parametrize("engine", ENGINES)
def test_initial_condition_key_injection_does_not_run(box: Path, engine: str) -> None:
    sentinel = box / "sentinel_ic"
    key = INJECTION.format(sentinel=sentinel)
    with pytest.raises(InputError, match="not a valid name"):
        run_transient(
            _external(f"* t\n{BODY}.end\n"),
            step=1e-7,
            stop=1e-6,
            initial_conditions={key: 0.0},
            engine=engine,
        )
    assert not sentinel.exists()


def test_options_injection_is_refused(box: Path) -> None:
    sentinel = box / "sentinel_option"
    for options in (
        {"reltol": f"1e-3\n.control\nshell touch {sentinel}\n.endc"},
        {f"reltol=1\n.control\nshell touch {sentinel}\n.endc\n*": 1},
        {"rawfile": "x"},
    ):
        with pytest.raises(InputError, match="option"):
            run_transient(_external(f"* t\n{BODY}.end\n"), step=1e-7, stop=1e-6, options=options)
    assert not sentinel.exists()


# ----------------------------------------------------------------------- 4. filesource reading files

FILESOURCE = (
    '.model src filesource (file="{name}" amploffset=[0] amplscale=[1] timeoffset=0 timescale=1 '
    "timerelative=false amplstep=false)\nA1 %v([n1]) src\nR1 n1 0 1k\n"
)


def _secret(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / "secret.txt"
    secret.write_text("0 7\n1 7\n")
    return secret


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "subfolder"])
def test_filesource_outside_the_folder_is_refused(box: Path, capsys, how: str) -> None:
    secret = _secret(box / "elsewhere")
    nets = box / "nets"
    nets.mkdir()
    if how == "absolute":
        name = str(secret)
    elif how == "dotdot":
        name = "../elsewhere/secret.txt"
    elif how == "symlink":
        (nets / "link.txt").symlink_to(secret)
        name = "link.txt"
    else:
        name = "sub/secret.txt"
        _secret(nets / "sub")
    cir = nets / "read.cir"
    cir.write_text("* t\n" + FILESOURCE.format(name=name) + ".end\n")
    rc, err = _simulate(capsys, cir, box / "out")
    assert rc == 1
    _assert_one_line(err)
    assert "line 2" in err and ("plain file name" in err or "leaves the netlist's folder" in err)
    assert not (box / "out").exists()  # the secret's numbers were not written anywhere
    with pytest.raises(NetlistSecurityError):
        load_netlist(cir)


@pytest.mark.parametrize("engine", ENGINES)
def test_filesource_in_the_netlist_folder_is_copied_and_read(box: Path, capsys, engine: str) -> None:
    """A data file beside the netlist runs (copied into the private run folder); a mixed-case name works
    although ngspice lowercases it, and a symlink that stays inside the folder is followed."""
    (box / "Data.TXT").write_text("0 3\n1 3\n")
    (box / "alias.txt").symlink_to(box / "Data.TXT")
    for name in ("Data.TXT", "alias.txt"):
        cir = box / f"{name}.cir"
        cir.write_text("* t\n" + FILESOURCE.format(name=name) + ".end\n")
        out = box / f"out_{name}"
        rc, err = _simulate(capsys, cir, out, "--engine", engine)
        assert rc == 0, err
        np.testing.assert_allclose(np.load(out / "transient.npz")["values"][:, 0], 3.0)


def test_filesource_missing_or_not_regular_is_refused(box: Path) -> None:
    cir = box / "missing.cir"
    cir.write_text("* t\n" + FILESOURCE.format(name="nothere.txt") + ".end\n")
    with pytest.raises(NetlistSecurityError, match="does not exist"):
        load_netlist(cir)
    os.mkfifo(box / "fifo.txt")
    cir.write_text("* t\n" + FILESOURCE.format(name="fifo.txt") + ".end\n")
    with pytest.raises(NetlistSecurityError, match="not a regular file"):
        load_netlist(cir)


def test_data_file_of_a_python_netlist_must_be_provided(box: Path) -> None:
    """Raw text built in Python cannot name a data file: only files the Netlist carries are written."""
    _secret(box)
    text = "* t\n" + FILESOURCE.format(name="secret.txt") + ".end\n"
    with pytest.raises(NetlistSecurityError, match="not part of this netlist"):
        run_transient(_external(text), step=1e-7, stop=1e-6)


# ------------------------------------------------------------------ 5. .spiceinit in cwd and in HOME

_RUNNER = textwrap.dedent(
    """
    import sys
    from thermotrain.cli import main
    sys.exit(main(["simulate", sys.argv[1], "--step", "1e-7", "--stop", "1e-6", "--probe", "n1",
                   "--out", sys.argv[2], "--engine", sys.argv[3]]))
    """
)


@pytest.mark.parametrize("engine", ENGINES)
def test_spiceinit_in_cwd_and_home_is_not_read(box: Path, engine: str) -> None:
    """A fresh process (the shared library reads its init files when it is first loaded) started in a
    folder with a ``.spiceinit`` and a HOME with another: neither runs, and the circuit still runs."""
    work, home = box / "work", box / "home"
    work.mkdir()
    home.mkdir()
    s_cwd, s_home = box / "sentinel_cwd", box / "sentinel_home"
    (work / ".spiceinit").write_text(f"shell touch {s_cwd}\n")
    (home / ".spiceinit").write_text(f"shell touch {s_home}\n")
    scripts = box / "scripts"  # SPICE_SCRIPTS names the folder of the spinit script run at start
    scripts.mkdir()
    s_spinit = box / "sentinel_spinit"
    (scripts / "spinit").write_text(f"shell touch {s_spinit}\n")
    cir = work / "ok.cir"
    cir.write_text(f"* t\n{BODY}.end\n")
    env = {**os.environ, "HOME": str(home), "SPICE_SCRIPTS": str(scripts)}
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, "ok.cir", "out", engine],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (work / "out" / "transient.npz").is_file()
    assert not s_cwd.exists()
    assert not s_home.exists()
    assert not s_spinit.exists()


def test_spice_script_variables_are_not_inherited(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``SPICE_SCRIPTS`` names the folder of the ``spinit`` script ngspice runs at start: a planted one
    must not run (batch: the variable is dropped from the subprocess's environment)."""
    scripts = box / "scripts"
    scripts.mkdir()
    sentinel = box / "sentinel_spinit"
    (scripts / "spinit").write_text(f"shell touch {sentinel}\n")
    monkeypatch.setenv("SPICE_SCRIPTS", str(scripts))
    monkeypatch.setenv("SPICE_LIB_DIR", str(box))
    run = run_transient(_external(f"* t\n{BODY}.end\n"), step=1e-7, stop=1e-6, engine="batch")
    assert run.values.shape == (11, 1)
    assert not sentinel.exists()


# ----------------------------------------------------------------------------- 5. the escape hatch


def test_trusted_is_loud_every_time(box: Path, capsys) -> None:
    cir = box / "mine.cir"
    cir.write_text(f"* t\n{BODY}.end\n")
    for k in range(2):
        rc, err = _simulate(capsys, cir, box / f"out{k}", "--trusted")
        assert rc == 0
        assert err.count("WARNING") == 1 and "UNCHECKED (trusted)" in err
    rc, err = _simulate(capsys, cir, box / "out2")
    assert rc == 0 and "WARNING" not in err
