"""Hardware profiles: JSON round trip and strict loading."""

import dataclasses
import json
from pathlib import Path

import pytest

from thermotrain import ProfileError
from thermotrain.models import SCHEMA_VERSION, HardwareProfile, load_profile, save_profile


def profile() -> HardwareProfile:
    return HardwareProfile.from_spec(
        "rc",
        kappa0=0.02,
        dac_bits=12,
        adc_bits=14,
        adc_rate_hz=12e6,
        tolerance=0.01,
        coupling_bits=8,
        opamp_gain=1e5,
        seeds=[3, 4],
    )


def write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "p.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_profile_round_trips_through_json(tmp_path: Path) -> None:
    p = profile()
    path = save_profile(p, tmp_path / "sub" / "p.json")
    q = load_profile(path)
    assert q == p
    assert q.schema_version == SCHEMA_VERSION and q.family == "rc" and q.seeds == [3, 4]
    assert "tolerance" in q.summary() and not q.calibrated
    rlc = HardwareProfile.from_spec("rlc", circuit={"name": "rlc8"})
    assert load_profile(save_profile(rlc, tmp_path / "rlc.json")) == rlc
    assert rlc.name == "rlc8"


def test_missing_field_names_the_field_and_the_fix(tmp_path: Path) -> None:
    data = json.loads(json.dumps(dataclasses.asdict(profile())))
    del data["kappa0"]
    with pytest.raises(ProfileError, match=r"missing field\(s\) \['kappa0'\].*thermotrain calibrate"):
        load_profile(write(tmp_path, data))
    data = dataclasses.asdict(profile())
    del data["fit"]["heldout_covariance_rel_error"]
    with pytest.raises(ProfileError, match="fit.heldout_covariance_rel_error is missing"):
        load_profile(write(tmp_path, data))
    data = dataclasses.asdict(profile())
    del data["component_stats"]["tolerance"]
    with pytest.raises(ProfileError, match="component_stats.tolerance"):
        load_profile(write(tmp_path, data))


def test_wrong_schema_version_is_refused(tmp_path: Path) -> None:
    data = dataclasses.asdict(profile())
    data["schema_version"] = 2
    with pytest.raises(ProfileError, match=r"schema_version 2; this thermotrain reads 1.*calibrate"):
        load_profile(write(tmp_path, data))


def test_non_finite_number_is_refused(tmp_path: Path) -> None:
    data = dataclasses.asdict(profile())
    text = json.dumps(data).replace('"tolerance": 0.01', '"tolerance": NaN')
    with pytest.raises(ProfileError, match=r"component_stats\.tolerance is nan"):
        load_profile(write(tmp_path, text))
    data["tau_s"] = float("inf")
    with pytest.raises(ProfileError, match="tau_s"):
        load_profile(write(tmp_path, json.dumps(data)))


def test_truncated_or_corrupt_file_is_refused(tmp_path: Path) -> None:
    text = json.dumps(dataclasses.asdict(profile()), indent=2)
    path = write(tmp_path, text[: len(text) // 2])
    with pytest.raises(ProfileError, match=r"p\.json is not valid JSON.*calibrate"):
        load_profile(path)
    with pytest.raises(ProfileError, match="JSON object"):
        load_profile(write(tmp_path, "[1, 2]"))
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "absent.json")


def test_unknown_or_invalid_values_are_refused(tmp_path: Path) -> None:
    data = dataclasses.asdict(profile())
    data["kappa"] = 1.0
    with pytest.raises(ProfileError, match=r"unknown field\(s\) \['kappa'\]"):
        load_profile(write(tmp_path, data))
    data = dataclasses.asdict(profile())
    data["component_stats"]["tolerence"] = 0.1
    with pytest.raises(ProfileError, match="component_stats.tolerence"):
        load_profile(write(tmp_path, data))
    with pytest.raises(ProfileError, match="adc_bits"):
        dataclasses.replace(profile(), adc_bits=1)
    with pytest.raises(ProfileError, match="family"):
        dataclasses.replace(profile(), family="lc")
    with pytest.raises(ProfileError, match="unknown component"):
        HardwareProfile.from_spec("rc", tolerence=0.1)
    with pytest.raises(
        ProfileError, match=r"inductor_resistance_ohm = 5.0 must be below circuit.R_ohm = 3.0"
    ):
        HardwareProfile.from_spec("rlc", inductor_resistance_ohm=5.0)
    with pytest.raises(ProfileError, match="component_stats.capacitor_esr_ohm"):
        HardwareProfile.from_spec("rlc", capacitor_esr_ohm=-1.0)


def test_the_adc_range_is_its_own_field_and_defaults_to_the_swing(tmp_path: Path) -> None:
    """``adc_full_scale_v`` (a gain stage before the ADC): the ADC quantizes over its own range, the swing still
    clips; a profile written before the field reads it as the swing (the model it was made with)."""
    old = dataclasses.asdict(profile())
    del old["component_stats"]["adc_full_scale_v"]
    p = load_profile(write(tmp_path, old))
    assert p.component_stats["adc_full_scale_v"] is None
    chain = p.readout_chain()
    assert chain.adc is not None and chain.adc.full_scale == chain.saturation == 10.0
    q = HardwareProfile.from_spec("rc", adc_bits=4, adc_full_scale_v=1.0)
    chain = q.readout_chain()
    assert chain.adc is not None and (chain.adc.full_scale, chain.adc.step, chain.saturation) == (
        1.0,
        1 / 7,
        10.0,
    )
    assert load_profile(save_profile(q, tmp_path / "q.json")) == q
    assert "adc_full_scale_v" in q.summary()
    for bad in (0.0, -1.0, "1 V"):
        with pytest.raises(ProfileError, match="component_stats.adc_full_scale_v"):
            HardwareProfile.from_spec("rc", adc_full_scale_v=bad)


def test_profile_is_immutable_and_owns_its_dicts() -> None:
    stats = {**profile().component_stats}
    p = dataclasses.replace(profile(), component_stats=stats)
    stats["tolerance"] = 0.5
    assert p.component_stats["tolerance"] == 0.01
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.kappa0 = 1.0  # type: ignore[misc]


def test_profile_command_prints_a_shipped_profile(capsys) -> None:
    from thermotrain.cli import main

    assert main(["profile", "rc8"]) == 0
    out = capsys.readouterr().out
    assert "rc8-board" in out and "fit.heldout_covariance_rel_error" in out and "[[" not in out


def test_shipped_profiles_recommend_their_readout(tmp_path: Path) -> None:
    """The optional top-level ``readout`` is parsed into a ReadoutConfig, and save_profile writes it back
    byte for byte (only the fields that differ from the defaults)."""
    from thermotrain.models import SHIPPED_PROFILES, ReadoutConfig, shipped_profile_path

    assert SHIPPED_PROFILES == ("rc8", "rlc8")
    for name in SHIPPED_PROFILES:
        path = shipped_profile_path(name)
        p = load_profile(path)
        assert p.readout == ReadoutConfig(target_error=0.1) and p.recommended_readout is p.readout
        assert "recommended readout: target_error = 0.1" in p.summary()
        again = save_profile(p, tmp_path / f"{name}.json")
        assert again.read_text() == path.read_text()
    # a profile without the key loads with readout None, and is written without it
    plain = profile()
    assert plain.readout is None
    assert "readout" not in json.loads(save_profile(plain, tmp_path / "plain.json").read_text())
    q = dataclasses.replace(plain, readout=ReadoutConfig(target_error=0.1, roundings=2))
    text = save_profile(q, tmp_path / "q.json").read_text()
    assert json.loads(text)["readout"] == {"target_error": 0.1, "roundings": 2}
    assert load_profile(tmp_path / "q.json") == q


@pytest.mark.parametrize(
    ("readout", "words"),
    [
        ({"target_eror": 0.3}, r"readout: unknown field\(s\) \['target_eror'\]"),
        ({"target_error": -1}, "ReadoutConfig.target_error=-1"),
        (
            {"target_error": 10**400},
            r"ReadoutConfig.target_error=100000000000… \(401 digits\) must be finite",
        ),
        ({"target_error": "0.3"}, "ReadoutConfig.target_error='0.3'"),
        ({"roundings": True}, "ReadoutConfig.roundings=True"),
        ({"mode": "cov"}, "ReadoutConfig.mode='cov'"),
        ([0.3], r"readout = \[0.3\] must be a JSON object"),
    ],
)
def test_a_bad_readout_entry_is_refused_in_one_line(tmp_path: Path, readout, words) -> None:
    data = dataclasses.asdict(profile())
    data["readout"] = readout
    with pytest.raises(ProfileError, match=words) as info:
        load_profile(write(tmp_path, data))
    assert "\n" not in str(info.value) and "p.json" in str(info.value)


def test_find_profile_takes_a_name_a_path_or_a_profile(tmp_path: Path) -> None:
    from thermotrain import InputError
    from thermotrain.models import find_profile, shipped_profile_path

    rc8 = find_profile("rc8")
    assert rc8 == load_profile(shipped_profile_path("rc8")) and rc8.family == "rc"
    assert find_profile("rlc8").family == "rlc"
    assert find_profile(rc8) is rc8
    path = save_profile(profile(), tmp_path / "mine.json")
    assert find_profile(path) == profile() and find_profile(str(path)) == profile()
    with pytest.raises(
        ProfileError, match=r"backend 'rc9': no such profile file; use a shipped profile \(rc8, rlc8\)"
    ):
        find_profile("rc9")
    with pytest.raises(InputError, match=r"--profile 3 is not a hardware profile.*\(rc8, rlc8\)"):
        find_profile(3, what="--profile")  # type: ignore[arg-type]
    with pytest.raises(ProfileError, match="is a directory"):
        find_profile(tmp_path)
    with pytest.raises(InputError, match=r"no shipped profile 'rc9'; choose one of rc8, rlc8"):
        shipped_profile_path("rc9")


@pytest.mark.parametrize("which", ["rc8", "spec"])
def test_the_factored_rc_device_is_the_instantiated_device(which: str) -> None:
    """instantiate_factored keeps M = -f K G_eff as factors (TNGD's wide devices): its products, input and
    diffusion diagonal are the dense instance's, with the amplifiers' lag (rc8: K a full matrix) and without
    (K diagonal); an RLC profile is refused."""
    import torch

    from thermotrain import CircuitError
    from thermotrain.models import find_profile

    p = find_profile("rc8") if which == "rc8" else profile()
    assert (p.component_stats["opamp_gbw_hz"] is not None) == (which == "rc8")
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40, 80, generator=g, dtype=torch.float64)
    A = X @ X.T / 80 + 0.2 * torch.eye(40, dtype=torch.float64)
    b = torch.randn(40, generator=g, dtype=torch.float64)
    dense = p.instantiate(A, b, kappa0=1e-3)
    fac = p.instantiate_factored(A, b, kappa0=1e-3)
    assert fac.K.ndim == (2 if which == "rc8" else 1)
    V = torch.randn(40, 3, generator=g, dtype=torch.float64)
    M = dense.sde.M
    torch.testing.assert_close(fac.matvec(V), M @ V, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fac.matvec(V[:, 0]), M @ V[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fac.rmatvec(V), M.T @ V, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fac.dense(), M, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fac.u, dense.sde.u, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fac.diffusion_diag, torch.diagonal(dense.sde.D), rtol=1e-12, atol=1e-15)
    assert fac.matrix_scale == dense.matrix_scale
    torch.testing.assert_close(fac.input_scale, dense.input_scale)
    with pytest.raises(CircuitError, match="RC profiles"):
        find_profile("rlc8").instantiate_factored(A)


@pytest.mark.parametrize("injection", ["series", "node"])
def test_the_rlc_board_parts_vanish_into_the_white_two_state_model(injection: str) -> None:
    """Each board part of the RLC surrogate is a limit-respecting extension: a generator filter far above
    the resonance, a vanishing self-capacitance, zero ESR and zero DC resistance give the white (V, I)
    model's covariance; at the rlc8 board's values each moves it (the filter, and C_L with it, by > 0.1 %)."""
    import numpy as np
    import scipy.linalg as sla
    import torch

    from thermotrain.models._profile import esr_stamp, rlc_drift_diffusion

    n = 3
    Cm = 1e-9 * torch.tensor([[2.0, -0.4, -0.3], [-0.4, 1.8, -0.5], [-0.3, -0.5, 2.2]], dtype=torch.float64)
    kw = dict(L=1e-5, R=50.1, c0=1e-9, kappa0=0.01, tau=1e-7, noise_injection=injection)
    kw["noise_gain"] = torch.tensor([1.0, 1.01, 0.98], dtype=torch.float64)

    def cov(**extra) -> np.ndarray:
        M, D = rlc_drift_diffusion(torch.linalg.inv(Cm), **kw, **extra)
        return sla.solve_continuous_lyapunov(M.numpy(), -D.numpy())[:n, :n]

    white = cov()

    def rel(c: np.ndarray) -> float:
        return float(np.linalg.norm(c - white) / np.linalg.norm(white))

    assert rel(cov(noise_bandwidth_hz=1e13)) < 1e-6
    assert rel(cov(inductor_capacitance=1e-14)) < 1e-6  # 1e-5 of the board's 3 pF (smaller: stiff)
    assert rel(cov(esr_matrix=esr_stamp(Cm, 1e-9, 1e-9))) < 1e-6
    assert rel(cov(noise_bandwidth_hz=20e6)) > 1e-3
    # white noise at its fluctuation-dissipation level keeps Boltzmann's kT/C in any passive network, so a
    # self-capacitance moves the covariance only together with the filter's colour
    assert rel(cov(inductor_capacitance=3e-12)) < 1e-4
    filtered = cov(noise_bandwidth_hz=20e6)
    both_cl = cov(noise_bandwidth_hz=20e6, inductor_capacitance=3e-12)
    if injection == "series":  # the netlist's: the filtered source sits at the foot of the inductor
        assert np.linalg.norm(both_cl - filtered) / np.linalg.norm(filtered) > 1e-3
    assert rel(cov(esr_matrix=esr_stamp(Cm, 0.5, 1.5))) > 1e-4
    both = cov(noise_bandwidth_hz=20e6, inductor_capacitance=3e-12, esr_matrix=esr_stamp(Cm, 0.5, 1.5))
    M, _ = rlc_drift_diffusion(
        torch.linalg.inv(Cm),
        **kw,
        noise_bandwidth_hz=20e6,
        inductor_capacitance=3e-12,
        esr_matrix=esr_stamp(Cm, 0.5, 1.5),
    )
    assert M.shape == (4 * n, 4 * n) and bool((torch.linalg.eigvals(M).real < 0).all())
    assert np.all(np.linalg.eigvalsh(both) > 0)
