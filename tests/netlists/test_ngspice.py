"""The ngspice runner against theory, against itself (shared vs batch, seeds), and its failure modes.

Noise theory used here (exact, no fudge factor). A cell C dV/dt = -V/R + u(t), where u is linearly
interpolated between samples u_k (every h = NT, iid, variance s2 = S/h). Over one interval, with
a = exp(-h/tau), tau = RC, x = h/tau:

    V_{k+1} = a V_k + b0 u_k + b1 u_{k+1}
    b1 = R[(1 - a) - (1 - a(1 + x))/x],   b0 = R(1 - a) - b1

an ARMA(1,1) sequence at the sample times, with stationary variance s2[b1^2 + (b0 + a b1)^2/(1 - a^2)]
(-> S R/(2C) as x -> 0), lag-1 correlation rho1 = (a var + b0 b1 s2)/var and rho_l = rho1 a^(l-1).
For n samples of a zero-mean Gaussian sequence, the mean square has standard deviation
var * sqrt(2(1 + 2 sum rho_l^2)/n) = var * sqrt(2(1 + 2 rho1^2/(1 - a^2))/n), and the sample mean
sqrt(var (1 + 2 rho1/(1 - a))/n). Checks use 4 of these standard deviations.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest

from thermotrain import SpiceConvergenceError, SpiceError, SpiceNotFoundError, SpiceTimeoutError
from thermotrain.circuits import VCVS, Circuit, Resistor, VoltageSource
from thermotrain.netlists import (
    Transient,
    ngspice_version,
    run_operating_point,
    run_transient,
    write_netlist,
)
from thermotrain.netlists._ngspice import GRID_STEPS_PER_INTERVAL, quiet_start

NT = 2e-7  # noise interval (s)
C = 1e-9  # F
PSD = 1e-24  # A^2/Hz
RESISTANCES = (1e3, 2e3, 4e3)  # NT/tau = 0.2, 0.1, 0.05
N_SAMPLES = 20_000
BURN_IN = 100 * NT  # 20 tau of the slowest cell


def arma_theory(r: float) -> dict[str, float]:
    """Exact sample-time statistics of an RC cell driven by linearly interpolated white noise (above)."""
    tau = r * C
    x = NT / tau
    a = math.exp(-x)
    s2 = PSD / NT
    b1 = r * ((1 - a) - (1 - a * (1 + x)) / x)
    b0 = r * (1 - a) - b1
    var = s2 * (b1**2 + (b0 + a * b1) ** 2 / (1 - a * a))
    rho1 = (a * var + b0 * b1 * s2) / var
    return {"a": a, "b0": b0, "b1": b1, "var": var, "rho1": rho1}


@pytest.fixture(scope="module")
def rc_run(make_rc) -> tuple:
    """One 20k-sample file-noise run of three independent RC cells (about 0.5 s of ngspice)."""
    circuit = make_rc(RESISTANCES, capacitance=C, psd=PSD, noise_interval=NT)
    netlist = write_netlist(circuit, noise="file", seed=3, duration=N_SAMPLES * NT, start=BURN_IN)
    run = run_transient(netlist, step=NT, stop=BURN_IN + N_SAMPLES * NT, start=BURN_IN)
    return netlist, run


@pytest.mark.spice
def test_rc_stationary_variance_matches_sampled_noise_theory(rc_run: tuple) -> None:
    _, run = rc_run
    n = run.values.shape[0]
    assert n == N_SAMPLES + 1
    for i, r in enumerate(RESISTANCES):
        th = arma_theory(r)
        x = run.values[:, i]
        sd_m2 = th["var"] * math.sqrt(2 * (1 + 2 * th["rho1"] ** 2 / (1 - th["a"] ** 2)) / n)
        assert abs(np.mean(x**2) - th["var"]) < 4 * sd_m2, (r, np.mean(x**2) / th["var"])
        sd_mean = math.sqrt(th["var"] * (1 + 2 * th["rho1"] / (1 - th["a"])) / n)
        assert abs(np.mean(x)) < 4 * sd_mean
    # the continuous-time limit S R/(2C) is 9.4% above the exact value at NT/tau = 0.2: resolved here
    assert arma_theory(1e3)["var"] / (PSD * 1e3 / (2 * C)) == pytest.approx(0.9064, abs=1e-4)


@pytest.mark.spice
def test_trace_follows_the_played_samples_exactly(rc_run: tuple) -> None:
    """The SPICE trace equals the exact solution for the very samples in the noise file, up to
    ngspice's integration error (default reltol = 1e-3 per step; measured rms 2e-3 of the signal)."""
    netlist, run = rc_run
    first = round(BURN_IN / NT)
    for i, r in enumerate(RESISTANCES):
        th = arma_theory(r)
        u = netlist.noise_samples[:, i]
        v = np.empty(first + run.values.shape[0])
        v[0] = r * u[0]  # DC operating point at t = 0
        for k in range(v.size - 1):
            v[k + 1] = th["a"] * v[k] + th["b0"] * u[k] + th["b1"] * u[k + 1]
        exact = v[first:]
        err = run.values[:, i] - exact
        assert math.sqrt(np.mean(err**2) / np.mean(exact**2)) < 1e-2


def _exact_and_trapezoidal(
    netlist, r: float, first: int, n: int, per_interval: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Cell ``r``'s exact sample-time trace for the played samples (ARMA recursion above) and the trace of
    the trapezoidal rule with the noise grid's fixed steps NT/k on the same piecewise-linear input (both from
    the DC point r·u_0 at t = 0), samples first .. first + n - 1; the rule's trace has ``per_interval``
    points per NT from sample ``first`` on (its first n)."""
    steps = GRID_STEPS_PER_INTERVAL
    th = arma_theory(r)
    u = netlist.noise_samples[:, RESISTANCES.index(r)][: first + n]
    v = np.empty(first + n)
    v[0] = r * u[0]
    for k in range(v.size - 1):
        v[k + 1] = th["a"] * v[k] + th["b0"] * u[k] + th["b1"] * u[k + 1]
    h = NT / steps
    g = h / (2 * r * C)
    us = np.interp(h * np.arange(steps * (v.size - 1) + 1), NT * np.arange(v.size), u)
    w = np.empty(us.size)
    w[0] = r * u[0]
    for j in range(us.size - 1):
        w[j + 1] = (w[j] * (1 - g) + h / (2 * C) * (us[j] + us[j + 1])) / (1 + g)
    return v[first:], w[:: steps // per_interval][first * per_interval :][:n]


@pytest.mark.spice
def test_noise_grid_stepping_is_the_fixed_step_trapezoidal_rule(rc_run: tuple) -> None:
    """stepping="noise-grid" (validate's file-noise runs): ngspice's trace is the trapezoidal rule with fixed
    steps NT/4 on the noise samples -- to 1e-5 of the signal (the doubling ramp before the one realigning
    breakpoint at NT has decayed by the burn-in; corners every 100 NT instead gave 25 off-grid steps each
    and 4.7e-3) -- so its error against the exact trace is the rule's own: 2.6e-3 / 0.9e-3 / 0.3e-3 for
    tau = 1 / 2 / 4 us (h/tau = 0.1 / 0.05 / 0.025), as the adaptive run's 2e-3 (the test above allows 1e-2)."""
    netlist, adaptive = rc_run
    run = run_transient(netlist, step=NT, stop=BURN_IN + N_SAMPLES * NT, start=BURN_IN, stepping="noise-grid")
    first = round(BURN_IN / NT)
    np.testing.assert_array_equal(run.time, adaptive.time)
    for i, r in enumerate(RESISTANCES):
        exact, trap = _exact_and_trapezoidal(netlist, r, first, run.values.shape[0])

        def rel(e: np.ndarray, ref: np.ndarray = exact) -> float:
            return math.sqrt(np.mean(e**2) / np.mean(ref**2))

        assert rel(run.values[:, i] - trap) < 1e-5, r
        rule = rel(trap - exact)
        assert rule < 4e-3
        assert rel(run.values[:, i] - exact) < 1.01 * rule + 1e-5


@pytest.mark.spice
def test_noise_grid_on_validates_output_grid_in_either_engine(rc_run: tuple) -> None:
    """Validate's output step NT/2 on the noise grid, in a process whose shared library has run a deck with
    '.options interp' (an operating point, as each validate worker does first; the option outlives its
    circuit there): shared and batch give the same trace on the rc8 array (NT = 6.6e-7 s: not a round
    number), and on three RC cells it is the trapezoidal rule at both phases of NT. Until 2026-12-06 the
    internal step equalled validate's output step and the resampled rc8 trace was 15-16 % rms off."""
    from thermotrain.circuits import preset

    c = preset("rc8", size=8).build(0)
    nt = c.noise_interval
    noisy = write_netlist(c, noise="file", seed=5, duration=60 * nt)
    ics = quiet_start(write_netlist(c, noise="off"))
    shared, batch = (
        run_transient(
            noisy, step=nt / 2, stop=50 * nt, initial_conditions=ics, stepping="noise-grid", engine=e
        )
        for e in ("shared", "batch")
    )
    assert (shared.engine, batch.engine) == ("shared", "batch")
    np.testing.assert_allclose(shared.values, batch.values, rtol=1e-9, atol=1e-12)

    netlist, _ = rc_run
    n = 400
    run = run_transient(netlist, step=NT / 2, stop=BURN_IN + n * NT / 2, start=BURN_IN, stepping="noise-grid")
    first = round(BURN_IN / NT)
    for i, r in enumerate(RESISTANCES):
        _, trap = _exact_and_trapezoidal(netlist, r, first, n + 1, per_interval=2)
        x = run.values[:, i]
        # 1e-5 over 20k samples in the test above; over these 400 the start-up ramp's residue (decaying with
        # the cell's tau) weighs more: 1.2e-5 at 4 kOhm
        assert math.sqrt(np.mean((x - trap) ** 2) / np.mean(trap**2)) < 1e-4, r


@pytest.mark.spice
def test_transient_grid_and_metadata(rc_run: tuple) -> None:
    netlist, run = rc_run
    assert isinstance(run, Transient)
    assert np.array_equal(run.time, BURN_IN + NT * np.arange(N_SAMPLES + 1))
    assert run.values.shape == (N_SAMPLES + 1, 3) and run.probes == netlist.probes
    assert run.engine == "shared" and run.wall_s > 0 and re.match(r"^\d+", run.ngspice_version)
    # ngspice's informational lines are kept, not raised
    assert any("xspice" in m.lower() or m.startswith("Note:") for m in run.messages)


def _small(make_rc, seed: int = 1, noise: str = "file", samples: int = 2000):
    circuit = make_rc([1e3, 2e3], capacitance=C, psd=PSD, noise_interval=NT)
    return write_netlist(circuit, noise=noise, seed=seed, duration=samples * NT)


@pytest.mark.spice
def test_shared_and_batch_give_the_same_traces(make_rc) -> None:
    netlist = _small(make_rc)
    shared = run_transient(netlist, step=NT / 2, stop=2000 * NT, engine="shared")
    batch = run_transient(netlist, step=NT / 2, stop=2000 * NT, engine="batch")
    assert (shared.engine, batch.engine) == ("shared", "batch")
    np.testing.assert_array_equal(shared.time, batch.time)
    # same simulator code on the same deck: identical on ngspice 39 (allow round-off for other builds)
    np.testing.assert_allclose(shared.values, batch.values, rtol=1e-12, atol=1e-18)


@pytest.mark.spice
def test_same_seed_reproduces_bit_for_bit_and_another_seed_differs(make_rc) -> None:
    a = run_transient(_small(make_rc, seed=5), step=NT, stop=2000 * NT)
    b = run_transient(_small(make_rc, seed=5), step=NT, stop=2000 * NT)
    c = run_transient(_small(make_rc, seed=6), step=NT, stop=2000 * NT)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.allclose(a.values, c.values)


@pytest.mark.spice
@pytest.mark.parametrize("engine", ["shared", "batch"])
def test_filesource_plays_every_column(make_rc, engine: str) -> None:
    netlist = _small(make_rc, samples=500)
    run = run_transient(netlist, step=NT, stop=500 * NT, probes=["tt_nz1", "tt_nz2"], engine=engine)
    np.testing.assert_allclose(run.values, netlist.noise_samples[:501], rtol=1e-6, atol=1e-6 * PSD**0.5)


@pytest.mark.spice
def test_forty_sources_play_exactly_through_several_filesources(make_rc) -> None:
    netlist = write_netlist(make_rc([1e3] * 40, noise_interval=NT), seed=0, duration=300 * NT)
    assert len(netlist.noise_files) == 3
    probes = [f"tt_nz{k + 1}" for k in range(40)]
    run = run_transient(netlist, step=NT, stop=300 * NT, probes=probes)
    np.testing.assert_allclose(run.values, netlist.noise_samples[:301], rtol=1e-6, atol=1e-6 * PSD**0.5)


@pytest.mark.spice
def test_start_offset_keeps_the_grid_of_a_run_from_zero(make_rc) -> None:
    netlist = _small(make_rc)
    full = run_transient(netlist, step=NT, stop=1000 * NT)
    late = run_transient(netlist, step=NT, stop=1000 * NT, start=300 * NT)
    assert late.time[0] == pytest.approx(300 * NT, rel=1e-12)
    np.testing.assert_allclose(late.values, full.values[300:], rtol=1e-9, atol=1e-15)


@pytest.mark.spice
def test_trnoise_is_unseeded_but_has_the_theoretical_variance(make_rc) -> None:
    circuit = make_rc([1e3], capacitance=C, psd=PSD, noise_interval=NT)
    netlist = write_netlist(circuit, noise="trnoise", seed=0)
    runs = [run_transient(netlist, step=NT, stop=BURN_IN + N_SAMPLES * NT, start=BURN_IN) for _ in range(2)]
    assert not np.allclose(runs[0].values, runs[1].values)  # ngspice 39 cannot seed TRNOISE
    th = arma_theory(1e3)
    n = runs[0].values.shape[0]
    sd_m2 = th["var"] * math.sqrt(2 * (1 + 2 * th["rho1"] ** 2 / (1 - th["a"] ** 2)) / n)
    for run in runs:
        assert abs(np.mean(run.values[:, 0] ** 2) - th["var"]) < 4 * sd_m2


def _divider() -> Circuit:
    elements = (
        VoltageSource("V1", "top", "0", 1.0),
        Resistor("R1", "top", "mid", 1e3),
        Resistor("R2", "mid", "0", 3e3),
    )
    return Circuit("divider", elements, ("mid", "top"), 1e-7, 1e-6)


@pytest.mark.spice
@pytest.mark.parametrize("engine", ["shared", "batch"])
def test_resistor_divider_dc_is_exact(engine: str) -> None:
    v = run_operating_point(write_netlist(_divider(), noise="off"), engine=engine)
    np.testing.assert_allclose(v, [0.75, 1.0], rtol=4 * np.finfo(float).eps, atol=0)


@pytest.mark.spice
def test_ideal_inverting_amplifier_dc() -> None:
    """V(out) = -(R2/R1) Vin for an ideal op-amp; gain inf is rendered as 1e9, so the relative error is
    (1 + R2/R1)/1e9."""
    elements = (
        VoltageSource("Vin", "in", "0", 0.2),
        Resistor("R1", "in", "sum", 1e3),
        Resistor("R2", "sum", "out", 5e3),
        VCVS("amp", "out", "0", "0", "sum", float("inf")),
    )
    circuit = Circuit("inverting amplifier", elements, ("out",), 1e-7, 1e-6)
    (out,) = run_operating_point(write_netlist(circuit, noise="off"))
    assert out == pytest.approx(-1.0, rel=6 / 1e9 + 1e-12)


@pytest.mark.spice
def test_numbers_reach_ngspice_within_a_few_ulp() -> None:
    """The writer prints the shortest round-trip decimals; ngspice's parser is not correctly rounded
    (it accumulates the digits, then scales by a power of ten: a few roundings of half an ulp each), so
    a source value arrives within a few ulp (measured: about 2/3 exact, at most 2 ulp off)."""
    rng = np.random.default_rng(1)
    values = 10 ** rng.uniform(-12, 3, 40) * rng.choice([-1.0, 1.0], 40)
    elements: tuple = ()
    for i, v in enumerate(values):
        elements += (VoltageSource(f"V{i}", f"n{i}", "0", float(v)), Resistor(f"R{i}", f"n{i}", "0", 1.0))
    circuit = Circuit("numbers", elements, tuple(f"n{i}" for i in range(len(values))), 1e-7, 1e-6)
    got = run_operating_point(write_netlist(circuit, noise="off"))
    assert np.all(np.abs(got - values) <= 3 * np.spacing(np.abs(values)))


def _voltage_loop() -> Circuit:
    elements = (
        VoltageSource("V1", "a", "0", 1.0),
        VoltageSource("V2", "a", "0", 2.0),
        Resistor("R1", "a", "0", 1e3),
    )
    return Circuit("two sources in parallel", elements, ("a",), 1e-7, 1e-6)


@pytest.mark.spice
@pytest.mark.parametrize("engine", ["shared", "batch"])
def test_voltage_source_loop_raises_convergence_error(engine: str) -> None:
    netlist = write_netlist(_voltage_loop(), noise="off")
    with pytest.raises(SpiceConvergenceError, match=r"(?i)singular matrix|timestep too small") as info:
        run_transient(netlist, step=1e-7, stop=1e-6, engine=engine)
    assert "DC path" in str(info.value)  # names the usual fixes


@pytest.mark.spice
@pytest.mark.parametrize("engine", ["shared", "batch"])
def test_unknown_element_raises_spice_error(engine: str) -> None:
    netlist = write_netlist(_divider(), noise="off")
    broken = dataclasses.replace(
        netlist, text=netlist.text.replace(".end\n", "Xbad mid 0 nosuchsubckt\n.end\n")
    )
    with pytest.raises(SpiceError, match="(?i)nosuchsubckt") as info:
        run_transient(broken, step=1e-7, stop=1e-6, engine=engine)
    assert not isinstance(info.value, SpiceConvergenceError)


@pytest.mark.spice
@pytest.mark.parametrize("engine", ["shared", "batch"])
def test_timeout_stops_a_long_run(make_rc, engine: str) -> None:
    circuit = make_rc([1e3], noise_interval=1e-9)
    netlist = write_netlist(circuit, noise="trnoise")  # 1e7 noise samples: minutes of ngspice
    with pytest.raises(SpiceTimeoutError, match="timeout"):
        run_transient(netlist, step=1e-9, stop=1e-2, engine=engine, timeout=0.5)
    # the simulator is usable afterwards
    assert run_operating_point(write_netlist(_divider(), noise="off"), engine=engine)[0] == pytest.approx(
        0.75
    )


@pytest.mark.spice
def test_missing_shared_library_falls_back_to_batch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", str(tmp_path / "libngspice-missing.so"))
    run = run_transient(write_netlist(_divider(), noise="off"), step=1e-7, stop=1e-6)
    assert run.engine == "batch"
    assert any("ran `ngspice -b` instead" in m for m in run.messages)
    np.testing.assert_allclose(run.values[:, 0], 0.75, rtol=1e-12)


def test_missing_ngspice_raises_not_found_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", str(tmp_path / "libngspice-missing.so"))
    monkeypatch.setenv("PATH", str(tmp_path))
    netlist = write_netlist(_divider(), noise="off")
    with pytest.raises(SpiceNotFoundError, match="make setup"):
        run_transient(netlist, step=1e-7, stop=1e-6)
    with pytest.raises(SpiceNotFoundError, match="apt-get install ngspice libngspice0 libngspice0-dev"):
        run_operating_point(netlist, engine="batch")


@pytest.mark.spice
def test_ngspice_version_is_detected() -> None:
    assert re.match(r"^\d+", ngspice_version())


def test_bad_run_arguments_are_refused_before_running(make_rc) -> None:
    netlist = _small(make_rc, samples=100)
    with pytest.raises(ValueError, match="not nodes"):
        run_transient(netlist, step=NT, stop=50 * NT, probes=["nowhere"])
    with pytest.raises(ValueError, match="past the file-noise record"):
        run_transient(netlist, step=NT, stop=200 * NT)
    with pytest.raises(ValueError, match="noise='off'"):
        run_operating_point(netlist)
    with pytest.raises(ValueError, match="engine"):
        run_transient(netlist, step=NT, stop=50 * NT, engine="xyce")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start"):
        run_transient(netlist, step=NT, stop=50 * NT, start=NT / 2)
    with pytest.raises(ValueError, match="option"):
        run_transient(netlist, step=NT, stop=50 * NT, options={"reltol": "1e-3\n.control"})
    with pytest.raises(ValueError, match="stepping"):
        run_transient(netlist, step=NT, stop=50 * NT, stepping="fixed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiple of 2 x NT/4"):
        run_transient(netlist, step=NT / 3, stop=50 * NT, stepping="noise-grid")
    with pytest.raises(ValueError, match="multiple of 2 x NT/4"):  # equal steps: resampled wrongly
        run_transient(netlist, step=NT / 4, stop=50 * NT, stepping="noise-grid")
    with pytest.raises(ValueError, match="file-noise netlist"):
        run_transient(_small(make_rc, noise="trnoise"), step=NT, stop=50 * NT, stepping="noise-grid")


def test_crashing_batch_binary_raises_spice_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A faked crash: an `ngspice` on PATH that dies of SIGSEGV (no simulator numbers are faked)."""
    fake = tmp_path / "ngspice"
    fake.write_text("#!/bin/sh\nkill -SEGV $$\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    netlist = write_netlist(_divider(), noise="off")
    with pytest.raises(SpiceError, match=r"crashed \(signal 11\)") as info:
        run_transient(netlist, step=1e-7, stop=1e-6, engine="batch")
    assert not isinstance(info.value, SpiceConvergenceError | SpiceTimeoutError)
