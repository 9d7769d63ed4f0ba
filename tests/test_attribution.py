"""``thermotrain experiment attribution`` (training/_attribution.py): the profile variants switch exactly one
non-ideality, the ideal row is the full board minus everything, a field the surrogate ignores is detected,
and a real (tiny) run writes the rows, profiles, plot and results.json of the protocol."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from thermotrain import cli
from thermotrain._errors import InputError
from thermotrain.models import load_profile, shipped_profile_path
from thermotrain.training import _attribution as attr
from thermotrain.training._experiments import check_options, run_experiment

ROW_KEYS = {"label", "settings", "selected_on", "seeds", "per_seed", "mean", "ci95", "metrics", "modelled"}
ARM_KEYS = {"optimizer", "settings", "selected_on", "grid", "seeds", "per_seed", "mean", "ci95"}


ARCHIVED_RC8 = Path(__file__).resolve().parents[1] / "models/profiles/archive/rc8-2026-12-01.json"


@pytest.fixture(scope="module", params=["shipped", "archived"])
def rc8(request):
    """The shipped rc8 (calibrated on the board with a 10 MHz op-amp) and the archived one of 2026-12-01
    (calibrated on the old board: no GBW, which the attribution then adds)."""
    return load_profile(shipped_profile_path("rc8") if request.param == "shipped" else ARCHIVED_RC8)


def _fields(profile, keys):
    return {f: attr.get_field(profile, f) for k in keys for f in attr._BY_KEY[k].fields}


def test_each_variant_switches_exactly_one_nonideality(rc8) -> None:
    keys = list(attr.DEFAULT_KEYS)
    variants, added, modelled = attr.attribution_variants(rc8, keys)
    by = {v.label: v for v in variants}
    full, ideal = by[attr.FULL].profile, by[attr.IDEAL].profile
    # rc8 has no ADC (and the profile calibrated on the old board no GBW): the board gets the stated values
    # for what the profile lacks; everything else is the profile's (the recalibrated rc8 carries 10 MHz)
    want = {"adc_bits": {"adc_bits": 12}}
    if rc8.component_stats["opamp_gbw_hz"] is None:
        want["opamp_gbw"] = {"component_stats.opamp_gbw_hz": 10e6}
    if not rc8.component_stats["opamp_offset_v"]:
        want["opamp_offset"] = {"component_stats.opamp_offset_v": 1e-3}
    if not rc8.component_stats["noise_gain_mismatch"]:
        want["noise_gain"] = {"component_stats.noise_gain_mismatch": 0.01}
    assert added == want
    assert full.component_stats["opamp_gbw_hz"] == 10e6
    assert full.component_stats["coupling_bits"] == 8 and full.adc_bits == 12
    assert full.fitted == rc8.fitted and full.kappa0 == rc8.kappa0
    assert ideal.component_stats["coupling_bits"] is None and ideal.adc_bits is None
    assert ideal.fitted == {"drift_scale": 1.0, "noise_scale": 1.0, "diag_shift": 0.0}
    assert ideal.readout.target_error == attr.IDEAL_TARGET_ERROR
    assert ideal.chip == full.chip == rc8.chip and ideal.tau_s == rc8.tau_s  # same architecture
    # the surrogate models every default non-ideality; a row is "not modelled" only where the board holds
    # the ideal value: the recalibrated rc8's drift corrections were not resolved by its SPICE runs (f = 1,
    # δ = 0 kept), so its drift-mismatch rows build the same device
    no_drift = rc8.fitted["drift_scale"] == 1.0 and rc8.fitted["diag_shift"] == 0.0
    assert modelled == {k: not (k == "drift_mismatch" and no_drift) for k in keys}
    for v in variants:
        if v.key is None:
            continue
        ref = full if v.direction == "off" else ideal
        other = [k for k in keys if k != v.key]
        assert _fields(v.profile, other) == _fields(ref, other), v.label  # the others untouched
        x = attr._BY_KEY[v.key]
        want = x.ideal if v.direction == "off" else attr._values(full, x)
        assert attr._values(v.profile, x) == tuple(want), v.label
        same = attr.same_device(v.profile, ref)
        assert same is not modelled[v.key], f"{v.label}: same device as its reference = {same}"


def test_the_ideal_row_is_the_full_board_minus_everything(rc8) -> None:
    variants, _, _ = attr.attribution_variants(rc8, list(attr._BY_KEY))
    by = {v.label: v.profile for v in variants}
    minus = by[attr.FULL]
    for key in attr._BY_KEY:  # switch each off in turn, as the one-off rows do
        minus = attr.ideal_profile(minus, [key])
    assert dataclasses.asdict(minus) == dataclasses.asdict(by[attr.IDEAL])
    assert attr.same_device(minus, by[attr.IDEAL])


def test_a_field_the_surrogate_ignores_builds_the_same_device(rc8) -> None:
    sw = attr.set_fields(rc8, {"component_stats.switch_capacitance_f": 5e-12})
    assert sw.component_stats["switch_capacitance_f"] == 5e-12
    assert attr.same_device(rc8, sw)  # an RC array's switches sit on virtual grounds (models/_profile.py)
    for path, value in (
        ("component_stats.opamp_gbw_hz", 1e6),
        ("component_stats.noise_gain_mismatch", 0.05),
        ("component_stats.coupling_bits", 6),
        ("component_stats.tolerance", 0.02),
        ("fitted.diag_shift", 0.01),
        ("readout.target_error", 0.2),
        ("adc_bits", 10),
        ("kappa0", 0.02),
    ):
        assert not attr.same_device(rc8, attr.set_fields(rc8, {path: value})), path


def test_nonideality_names_are_checked() -> None:
    assert attr.parse_nonidealities("adc_bits, coupling_bits") == ["coupling_bits", "adc_bits"]
    assert attr.parse_nonidealities("all") == list(attr._BY_KEY)
    with pytest.raises(InputError, match=r"--nonidealities='bits'.*unknown name\(s\) 'bits'.*coupling_bits"):
        attr.parse_nonidealities("bits")
    with pytest.raises(InputError, match="no name"):
        attr.parse_nonidealities("")
    for text, words in (
        (",", "item 1 of 2 is empty"),
        ("adc_bits,,adc_bits", "item 2 of 3 is empty"),
        ("adc_bits,", "item 2 of 2 is empty"),
        ("adc_bits,tolerance,adc_bits", "'adc_bits' is named twice"),
    ):
        with pytest.raises(InputError, match=f"--nonidealities={text!r}: {words}"):
            attr.parse_nonidealities(text)
    assert check_options("attribution", {"nonidealities": "tolerance"}) == {"nonidealities": "tolerance"}
    with pytest.raises(InputError, match="does not use --lr-grid"):
        check_options("attribution", {"lr_grid": "1,3"})


def test_cli_refuses_an_unknown_nonideality(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["experiment", "attribution", "--nonidealities", "coupling_bits,gain"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "unknown name(s) 'gain'" in err[-1] and "--nonidealities" in err[-1]


SWITCH_CAP = attr.NonIdeality(
    "switch_cap",
    "switch capacitance",
    ("component_stats.switch_capacitance_f",),
    (0.0,),
    "F per coupling switch terminal (an RC array's sit on virtual grounds: not in its surrogate)",
)


def test_a_tiny_attribution_run_writes_rows_profiles_and_results(tmp_path: Path, monkeypatch) -> None:
    # a non-ideality the RC surrogate does not model, so the "not trained, by construction" path runs
    monkeypatch.setattr(attr, "NONIDEALITIES", (*attr.NONIDEALITIES, SWITCH_CAP))
    monkeypatch.setitem(attr._BY_KEY, "switch_cap", SWITCH_CAP)
    out = tmp_path / "attr"
    opts = {
        "dataset": "digits",
        "subset": 300,
        "epochs": 1,
        "seeds": 1,
        "nonidealities": "coupling_bits,switch_cap",
        "precond_lr_grid": "1,3",
        "damping_grid": "1",
    }
    payload = run_experiment("attribution", out, opts)
    for name in ("results.json", "attribution.json", "attribution.png", "report.html"):
        assert (out / name).is_file(), name
    res = json.loads((out / "results.json").read_text())
    assert res["experiment"] == "attribution" and res["failed"] == {}
    assert res["protocol"]["seeds"] == [0]
    # arms: digital K-FAC tuned on validation, every device row shares its lr/λ
    arms = {a["label"]: a for a in res["arms"]}
    assert set(arms) == {
        attr.DIGITAL,
        attr.IDEAL,
        attr.FULL,
        "full - coupling bits",
        "ideal + coupling bits",
    }  # the switch capacitance is not modelled on an RC array: its rows are not trained
    assert all(ARM_KEYS <= set(a) for a in arms.values())
    digital = arms[attr.DIGITAL]
    assert digital["selected_on"] == "validation" and len(digital["grid"]) == 2
    for label, arm in arms.items():
        if label == attr.DIGITAL:
            continue
        assert arm["selected_with"] == attr.DIGITAL
        assert (arm["settings"]["lr"], arm["settings"]["damping"]) == (
            digital["settings"]["lr"],
            digital["settings"]["damping"],
        )
        assert (
            arm["settings"]["backend"].startswith("profiles/")
            and (out / arm["settings"]["backend"]).is_file()
        )
        assert arm["seeds"] == [0] and arm["mean"] is not None
    # the variants really change the backend: the saved profiles differ in the switched field only
    prof = {
        label: load_profile(out / arms[label]["settings"]["backend"])
        for label in arms
        if label != attr.DIGITAL
    }
    assert prof[attr.FULL].component_stats["coupling_bits"] == 8
    assert prof["full - coupling bits"].component_stats["coupling_bits"] is None
    assert prof["ideal + coupling bits"].component_stats["coupling_bits"] == 8
    assert prof[attr.IDEAL].component_stats["coupling_bits"] is None
    # the ideal row is the full board with every non-ideality off (not only the two attributed here)
    assert dataclasses.asdict(attr.ideal_profile(prof[attr.FULL])) == dataclasses.asdict(prof[attr.IDEAL])
    # the rc8 as shipped is the full board here (nothing was added to it): the same device
    assert res["profile_as_shipped"].startswith("the same device as row 'full board'")
    # one row per non-ideality, with the accuracy lost paired by seed
    rows = {r["nonideality"]: r for r in res["rows"]}
    assert list(rows) == ["coupling_bits", "switch_cap"]
    assert all(ROW_KEYS <= set(r) for r in rows.values())
    runs = {label: {s["seed"]: s["test_accuracy"] for s in v} for label, v in payload["runs"].items()}
    bits = rows["coupling_bits"]
    assert bits["modelled"] is True and bits["selected_on"] == "validation"
    off, on = bits["metrics"]["accuracy_lost_one_off"], bits["metrics"]["accuracy_lost_one_on"]
    assert off["per_seed"] == [pytest.approx(runs["full - coupling bits"][0] - runs[attr.FULL][0])]
    assert on["per_seed"] == [pytest.approx(runs[attr.IDEAL][0] - runs["ideal + coupling bits"][0])]
    assert bits["ci95"] is None  # one seed: no interval
    sw = rows["switch_cap"]
    assert sw["modelled"] is False and "by construction" in sw["note"]
    # the shipped rc8 carries its board's switch capacitance: the board takes the profile's value
    assert load_profile(shipped_profile_path("rc8")).component_stats["switch_capacitance_f"] > 0
    assert sw["settings"]["board_source"] == "profile"
    assert sw["metrics"]["accuracy_lost_one_off"]["by_construction"] is True
    assert [r["nonideality"] for r in payload["table"]] == ["coupling bits", "switch capacitance"]
