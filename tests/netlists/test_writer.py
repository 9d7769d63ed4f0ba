"""Netlist writer: golden text, determinism, noise record layout, names and numbers. No simulator."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from thermotrain import CircuitError
from thermotrain.circuits import (
    IDEAL_OPAMP_GAIN,
    VCVS,
    Capacitor,
    Circuit,
    NoiseCurrent,
    Resistor,
)
from thermotrain.netlists import (
    check_untrusted,
    format_number,
    noise_record_rows,
    write_netlist,
)

GOLDEN = Path(__file__).parent / "golden"
# Set THERMOTRAIN_UPDATE_GOLDEN=1 to rewrite the golden files after an intended format change (then
# review the diff like any code change).
UPDATE = os.environ.get("THERMOTRAIN_UPDATE_GOLDEN") == "1"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="ascii")
    assert path.exists(), f"golden file {path} missing; run with THERMOTRAIN_UPDATE_GOLDEN=1 once"
    assert text == path.read_text(encoding="ascii")


@pytest.mark.parametrize("noise", ["file", "trnoise", "off"])
def test_rc_netlist_matches_golden(make_rc, noise: str) -> None:
    netlist = write_netlist(make_rc([1e3, 2e3]), noise=noise, seed=7, duration=1e-6)
    _golden(f"rc_{noise}.cir", netlist.text)


def test_integrator_netlist_matches_golden(integrator: Circuit) -> None:
    netlist = write_netlist(integrator, noise="file", seed=0, duration=5e-7, start=2e-7)
    _golden("integrator_file.cir", netlist.text)


def test_same_circuit_and_seed_give_identical_bytes_and_samples(integrator: Circuit) -> None:
    a = write_netlist(integrator, seed=3, duration=1e-5)
    b = write_netlist(integrator, seed=3, duration=1e-5)
    assert a.text == b.text and a == b
    assert np.array_equal(a.noise_samples, b.noise_samples)
    c = write_netlist(integrator, seed=4, duration=1e-5)
    assert c.text != a.text and c.noise_files != a.noise_files
    assert not np.array_equal(c.noise_samples, a.noise_samples)


def test_noise_record_covers_start_plus_duration_plus_one_sample(make_rc) -> None:
    circuit = make_rc([1e3], noise_interval=1e-7)
    netlist = write_netlist(circuit, seed=0, duration=1e-5, start=3e-6)
    rows = netlist.noise_samples.shape[0]
    assert rows == noise_record_rows(1.3e-5, 1e-7) == 132  # ceil(130) + 2
    assert netlist.noise_end >= 1.3e-5 + 1e-7 * (1 - 1e-9)
    # round-off in T/NT never adds a row: 0.3/0.1 = 2.9999999999999996 and 0.7/0.1 = 6.999999999999999
    assert noise_record_rows(0.3, 0.1) == 5 and noise_record_rows(0.7, 0.1) == 9


def test_noise_rows_depend_only_on_seed_count_and_length(make_rc) -> None:
    circuit = make_rc([1e3, 2e3, 3e3])
    a = write_netlist(circuit, seed=11, duration=4e-6, start=1e-6)
    b = write_netlist(circuit, seed=11, duration=5e-6, start=0.0)  # same start + duration
    assert np.array_equal(a.noise_samples, b.noise_samples)
    longer = write_netlist(circuit, seed=11, duration=2e-5)
    assert np.array_equal(longer.noise_samples[: a.noise_samples.shape[0]], a.noise_samples)


def test_noise_draw_is_time_major_standard_normal_times_amplitude(make_rc) -> None:
    nt, psd = 2e-7, 1e-24
    circuit = make_rc([1e3, 2e3], psd=psd, noise_interval=nt)
    netlist = write_netlist(circuit, seed=5, duration=1e-4)
    rows = netlist.noise_samples.shape[0]
    z = np.random.default_rng(5).standard_normal((rows, 2))
    assert np.array_equal(netlist.noise_samples, z * math.sqrt(psd / nt))
    assert not netlist.noise_samples.flags.writeable


def test_noise_columns_follow_noise_sources_order(integrator: Circuit) -> None:
    netlist = write_netlist(integrator, seed=0, duration=1e-6)
    names = [s.name for s in integrator.noise_sources()]
    assert netlist.noise_names == tuple(names) == ("inj", "Rleak_th")
    g_lines = [line for line in netlist.text.splitlines() if line.startswith("G")]
    assert g_lines == ["Ginj 0 sum tt_nz1 0 1", "GRleak_th sum out tt_nz2 0 1"]


def test_noise_file_round_trips_the_samples(tmp_path: Path, integrator: Circuit) -> None:
    netlist = write_netlist(integrator, seed=2, duration=3e-6)
    written = netlist.save(tmp_path / "sub" / "deck.cir")
    (noise_file,) = netlist.noise_files
    assert [p.name for p in written] == ["deck.cir", noise_file]
    assert (tmp_path / "sub" / "deck.cir").read_text() == netlist.text
    table = np.loadtxt(written[1], ndmin=2)
    assert np.array_equal(table[:, 1:], netlist.noise_samples)
    assert np.array_equal(table[:, 0], np.arange(table.shape[0]) * integrator.noise_interval)
    assert f'file="{noise_file}"' in netlist.text
    assert noise_file == noise_file.lower()  # ngspice lowercases the netlist


def test_trnoise_amplitude_is_sqrt_psd_over_nt(make_rc) -> None:
    netlist = write_netlist(make_rc([1e3], psd=4e-24, noise_interval=1e-7), noise="trnoise")
    lines = [line for line in netlist.text.splitlines() if "trnoise(" in line]
    # "in0" already starts with the current-source letter, so it keeps its name
    assert lines == [f"in0 0 n0 dc 0 trnoise({format_number(math.sqrt(4e-24 / 1e-7))} 1e-7 0 0)"]
    assert netlist.noise_samples is None and netlist.noise_files == ()


def test_off_mode_has_no_noise_elements(integrator: Circuit) -> None:
    netlist = write_netlist(integrator, noise="off")
    body = [line for line in netlist.text.splitlines() if not line.startswith("*")]
    assert not any(line[0] in "GIA" or "trnoise" in line or "filesource" in line for line in body)
    assert netlist.noise_samples is None and netlist.noise_names == ()


def test_infinite_gain_renders_as_ideal_opamp_gain() -> None:
    elements = (
        Resistor("R1", "a", "0", 1e3),
        VCVS("pos", "b", "0", "a", "0", float("inf")),
        VCVS("neg", "c", "0", "a", "0", float("-inf")),
        Resistor("R2", "b", "c", 1e3),
    )
    text = write_netlist(Circuit("vcvs", elements, ("b",), 1e-7, 1e-6), noise="off").text
    assert f"Epos b 0 a 0 {format_number(IDEAL_OPAMP_GAIN)}" in text
    assert f"Eneg c 0 a 0 {format_number(-IDEAL_OPAMP_GAIN)}" in text


def test_no_analysis_commands_and_passes_untrusted_check(integrator: Circuit) -> None:
    for noise in ("file", "trnoise", "off"):
        text = write_netlist(integrator, noise=noise, duration=1e-6).text
        directives = [line.split()[0].lower() for line in text.splitlines() if line.startswith(".")]
        assert set(directives) <= {".model", ".end"}
        assert text.endswith(".end\n")
        check_untrusted(text)  # our own output never needs trusted=True


def test_title_cannot_inject_lines() -> None:
    circuit = Circuit("evil\n.control\nshell rm -rf /", (Resistor("R1", "a", "0", 1.0),), ("a",), 1e-7, 1e-6)
    text = write_netlist(circuit, noise="off").text
    assert text.splitlines()[0] == "* evil .control shell rm -rf /"
    check_untrusted(text)


@pytest.mark.parametrize("x", [1e3, 1e-9, 0.1, 1 / 3, -5.6e-5, 2.5e-23, 123456789.0, 1e22, 4e-21, 0.0])
def test_numbers_round_trip_in_exponent_notation(x: float) -> None:
    s = format_number(x)
    assert float(s) == x
    assert s == "0" or "e" in s


def test_random_numbers_round_trip() -> None:
    rng = np.random.default_rng(0)
    values = 10 ** rng.uniform(-25, 12, 2000) * rng.choice([-1.0, 1.0], 2000)
    assert all(float(format_number(v)) == v for v in values)


def test_non_finite_number_is_refused() -> None:
    with pytest.raises(CircuitError, match="finite"):
        format_number(float("nan"))


def test_file_noise_without_duration_names_the_fix(make_rc) -> None:
    with pytest.raises(ValueError, match="duration"):
        write_netlist(make_rc([1e3]), noise="file")


@pytest.mark.parametrize(
    "bad", [{"noise": "pwl"}, {"seed": -1}, {"seed": 1.5}, {"duration": -1.0}, {"start": -1e-6}]
)
def test_bad_arguments_are_refused(make_rc, bad: dict) -> None:
    kwargs = {"noise": "file", "seed": 0, "duration": 1e-6, **bad}
    with pytest.raises(ValueError):
        write_netlist(make_rc([1e3]), **kwargs)


def test_element_names_get_type_letter_and_collisions_are_caught() -> None:
    ok = (Resistor("in", "a", "0", 1.0), Capacitor("R5", "a", "0", 1e-9), Resistor("R2", "a", "0", 2.0))
    lines = write_netlist(Circuit("names", ok, ("a",), 1e-7, 1e-6), noise="off").text.splitlines()
    assert "Rin a 0 1e+0" in lines and "CR5 a 0 1e-9" in lines and "R2 a 0 2e+0" in lines
    clash = (Resistor("1", "a", "0", 1.0), Resistor("R1", "a", "0", 2.0))
    with pytest.raises(CircuitError, match="collide"):
        write_netlist(Circuit("clash", clash, ("a",), 1e-7, 1e-6), noise="off")
    case = (Resistor("ra", "a", "0", 1.0), Resistor("RA", "a", "0", 2.0))
    with pytest.raises(CircuitError, match="case-insensitive"):
        write_netlist(Circuit("case", case, ("a",), 1e-7, 1e-6), noise="off")


def test_derived_noise_name_clash_is_caught() -> None:
    elements = (Resistor("R1", "a", "0", 1.0, temperature=300.0), NoiseCurrent("R1_th", "0", "a", 1e-24))
    with pytest.raises(CircuitError, match="collide"):
        write_netlist(Circuit("th", elements, ("a",), 1e-7, 1e-6), duration=1e-6)


@pytest.mark.parametrize(
    ("nodes", "match"), [(("gnd",), "ground"), (("a", "A"), "collide"), (("tt_nz1",), "reserved")]
)
def test_bad_node_names_are_caught(nodes: tuple[str, ...], match: str) -> None:
    elements = tuple(Resistor(f"R{i}", n, "0", 1.0) for i, n in enumerate(nodes))
    elements += (NoiseCurrent("i1", "0", nodes[0], 1e-24),)
    with pytest.raises(CircuitError, match=match):
        write_netlist(Circuit("nodes", elements, (nodes[0],), 1e-7, 1e-6), duration=1e-6)


def test_many_sources_are_split_over_files_of_16_columns(tmp_path: Path, make_rc) -> None:
    """ngspice's filesource reads a line into 512 bytes: 40 full-precision columns would not fit."""
    netlist = write_netlist(make_rc([1e3] * 40), seed=0, duration=1e-6)
    assert len(netlist.noise_files) == 3 and all(
        f.endswith(("_1.dat", "_2.dat", "_3.dat")) for f in netlist.noise_files
    )
    assert max(len(line) for line in netlist.text.splitlines() if not line.startswith("*")) <= 110
    ports = [netlist.text.split(f"Att_noise{j} [\n", 1)[1].split("] tt_noise", 1)[0] for j in (1, 2, 3)]
    assert [p.count("%v(") for p in ports] == [16, 16, 8]
    assert "%v(tt_nz17)" in ports[1] and "%v(tt_nz40)" in ports[2]
    written = netlist.save(tmp_path / "wide.cir")
    columns = [np.loadtxt(path, ndmin=2) for path in written[1:]]
    assert np.array_equal(np.hstack([c[:, 1:] for c in columns]), netlist.noise_samples)
    assert (
        max(len(line) for path in written[1:] for line in path.read_bytes().splitlines(keepends=True)) < 512
    )
