"""The experiments' protocol (training/_protocol.py): validation split, tuning by validation accuracy only,
95 % t-intervals, smoothed steps-to-target, results.json -- on real training runs of tiny digits subsets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from thermotrain import cli
from thermotrain._errors import InputError, TrainingError
from thermotrain.training import _protocol as proto
from thermotrain.training._data import load_dataset
from thermotrain.training._harness import TrainConfig, train
from thermotrain.training._protocol import (
    Arm,
    Protocol,
    parse_grid,
    run_protocol,
    select,
    smoothed,
    split,
    steps_to_target,
    t_ci95,
    write_results,
)

ROW_KEYS = {"optimizer", "settings", "selected_on", "grid", "seeds", "per_seed", "mean", "ci95"}


# ------------------------------------------------------------------------------------------ statistics


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
def test_t_ci95_is_scipys_t_interval(n: int) -> None:
    x = np.random.default_rng(n).normal(0.9, 0.02, n)
    mean, hw = t_ci95(x)
    lo, hi = stats.t.interval(0.95, n - 1, loc=x.mean(), scale=stats.sem(x))
    assert mean == pytest.approx(x.mean(), rel=1e-12)
    assert (mean - hw, mean + hw) == pytest.approx((lo, hi), rel=1e-12)


def test_t_ci95_uses_the_t_quantile_not_the_normal_one() -> None:
    # two values 0 and 1: s = 1/√2, s/√2 = 1/2; t(0.975, 1) = 12.706 (tables), z would give 0.98
    assert t_ci95([0.0, 1.0])[1] == pytest.approx(12.7062 / 2, rel=1e-4)
    # five values: t(0.975, 4) = 2.7764
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert t_ci95(x)[1] == pytest.approx(2.7764 * np.std(x, ddof=1) / math.sqrt(5), rel=1e-4)
    assert t_ci95([0.97]) == (0.97, None)  # one seed: no interval


def test_t_ci95_covers_the_true_mean_95_percent_of_the_time() -> None:
    """Coverage over M = 4000 normal samples of n = 5: the count of covers is binomial(M, 0.95), sd
    √(0.95·0.05/M) = 0.0034; the bound is 4 sd (the normal quantile 1.96 instead of t: 88 %, fails)."""
    rng = np.random.default_rng(0)
    m, n = 4000, 5
    covered = 0
    for _ in range(m):
        mean, hw = t_ci95(rng.normal(0.0, 1.0, n))
        covered += abs(mean) <= hw
    assert abs(covered / m - 0.95) <= 4 * math.sqrt(0.95 * 0.05 / m)


def test_steps_to_target_uses_the_smoothed_curve_not_one_evaluation() -> None:
    points = [(10, 0.80), (20, 0.90), (30, 0.82), (40, 0.88), (50, 0.90), (60, 0.91)]
    curve = smoothed(points, 3)
    assert [st for st, _ in curve] == [30, 40, 50, 60]
    assert [v for _, v in curve] == pytest.approx([0.84, 0.8667, 0.8667, 0.8967], abs=1e-4)
    assert steps_to_target(points, 0.89, 1) == 20  # one evaluation: the noisy spike at step 20
    assert steps_to_target(points, 0.89, 3) == 60  # the running mean over 3 reaches it only at the end
    assert steps_to_target(points, 0.866, 3) == 40
    assert steps_to_target(points, 0.9, 3) is None


def test_select_picks_the_best_validation_row_skipping_failures() -> None:
    points = [
        {"settings": {"lr": 0.1}, "status": "completed", "validation_accuracy": 0.91},
        {"settings": {"lr": 0.3}, "status": "failed: diverged", "validation_accuracy": None},
        {"settings": {"lr": 1.0}, "status": "completed", "validation_accuracy": 0.95},
        {
            "settings": {"lr": 3.0},
            "status": "completed",
            "validation_accuracy": 0.95,
        },  # a tie: the first wins
    ]
    assert select(points)["settings"] == {"lr": 1.0}
    with pytest.raises(TrainingError, match="every grid point failed"):
        select(points[1:2])


def test_grids_are_checked_and_normalised() -> None:
    assert parse_grid("lr_grid", "3, 0.3,1") == (0.3, 1.0, 3.0)
    assert parse_grid("lr_grid", [1, 2]) == (1.0, 2.0)
    for bad in ("", "0,1", "a", "1,-2", "nan", [True]):
        with pytest.raises(InputError, match="--lr-grid"):
            parse_grid("lr_grid", bad)


@pytest.mark.parametrize(
    "text, words",
    [
        ("1,,2", "item 2 of 3 is empty"),
        ("1,", "item 2 of 2 is empty"),
        (",1", "item 1 of 2 is empty"),
        ("1, ,2", "item 2 of 3 is empty"),
        ("3, 0.3,1,1", "the multiplier 1 is given twice"),
        ("1,1.0", "the multiplier 1 is given twice (as '1' and '1.0')"),
    ],
)
def test_a_grid_with_an_empty_item_or_a_repeat_is_refused_not_trimmed(capsys, text: str, words: str) -> None:
    """``--lr-grid 1,,2`` once ran [1, 2] and ``1,`` one value: the grid run must be the grid written."""
    with pytest.raises(InputError, match="--lr-grid=") as info:
        parse_grid("lr_grid", text)
    assert words in str(info.value) and repr(text) in str(info.value)
    with pytest.raises(InputError, match="given twice"):
        parse_grid("damping_grid", [0.3, 0.3])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", "optimizers", "--lr-grid", text])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert f"argument --lr-grid: {text!r}: {words}" in err, err


def test_grid_text_is_exact_so_close_multipliers_stay_apart() -> None:
    assert proto.grid_text((0.3, 1.0, 3.0)) == "0.3,1,3"
    close = parse_grid("lr_grid", "1.0000001,1.0000002")
    assert parse_grid("lr_grid", proto.grid_text(close)) == close
    grid = Protocol().grid(Arm("k", {"optimizer": "kfac"}))
    assert grid == {"lr": (0.015, 0.05, 0.15), "damping": (0.09, 0.3, 0.9)}  # × DEFAULT_LR/DEFAULT_DAMPING
    assert len(Protocol().grid(Arm("s", {"optimizer": "sgd"}))["lr"]) >= 5
    assert Protocol().grid(Arm("a", {"optimizer": "adam"}, fixed={"lr": 0.002})) == {"lr": (0.002,)}


# ------------------------------------------------------------------------------------------ the protocol


def _rows_of(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x.reshape(len(x), -1)}


def test_the_split_takes_validation_from_the_training_set_only() -> None:
    data = load_dataset("digits")
    tune, final = split(data)
    assert tune.name.endswith("/validation") and len(tune.x_test) == round(0.2 * len(data.x_train))
    train_rows = _rows_of(data.x_train)
    assert _rows_of(tune.x_test) <= train_rows  # validation examples come from the training set
    assert not _rows_of(tune.x_test) & _rows_of(tune.x_train)  # and are held out of the training part
    assert torch.equal(final.x_test, data.x_test) and torch.equal(final.x_train, tune.x_train)


def test_tuning_refuses_data_that_is_not_a_validation_split() -> None:
    data = load_dataset("digits", subset=100)
    with pytest.raises(TrainingError, match="not a validation split"):
        proto.tune(Arm("sgd", {"optimizer": "sgd"}), TrainConfig(progress=False), data, Protocol(), train)


def test_tiny_grid_selects_on_validation_never_sees_test_and_writes_results(
    tmp_path: Path, monkeypatch
) -> None:
    """Real training (digits, 200 examples, 1 epoch): every tuning run gets the validation split, selection
    happens before any run touches the test set and only receives validation scores, the selected point is
    the best validation row, and results.json has the schema."""
    data = load_dataset("digits", subset=200)
    test_rows = _rows_of(data.x_test)
    events: list[tuple[str, object]] = []

    def runner(cfg: TrainConfig, d) -> dict:
        on_test = bool(_rows_of(d.x_test) & test_rows) and torch.equal(d.x_test, data.x_test)
        events.append(("run-test" if on_test else "run-validation", d.name))
        if not on_test:
            assert d.name.endswith("/validation") and not (_rows_of(d.x_test) - _rows_of(data.x_train))
        return train(cfg, d)

    real_select = proto.select

    def spy_select(points):
        events.append(("select", [p["validation_accuracy"] for p in points]))
        return real_select(points)

    monkeypatch.setattr(proto, "select", spy_select)
    protocol = Protocol(
        seeds=2, epochs=1, lr_grid=(0.1, 1.0, 10.0), precond_lr_grid=(1.0,), damping_grid=(0.3, 3.0)
    )
    arms = [
        Arm("sgd", {"optimizer": "sgd"}),
        Arm("tngd", {"optimizer": "tngd", "analog_time": 5.0}),
        Arm("tngd t=0", {"optimizer": "tngd", "analog_time": 0.0}, tune_with="tngd"),
    ]
    base = TrainConfig(batch_size=32, progress=False)
    result = run_protocol(arms, base, data, protocol, runner=runner, log=lambda _: None)

    first_test = next(i for i, e in enumerate(events) if e[0] == "run-test")
    selects = [i for i, e in enumerate(events) if e[0] == "select"]
    assert len(selects) == 2 and max(selects) < first_test  # sgd and tngd tuned; t=0 shares tngd's
    assert all(e[0] == "run-validation" for e in events[:first_test] if e[0] != "select")
    assert all(e[0] == "run-test" for e in events[first_test:])
    assert sum(e[0] == "run-validation" for e in events) == 3 + 2  # the grids: 3 lr; 1 lr × 2 λ

    rows = {r["label"]: r for r in result.rows}
    for label in ("sgd", "tngd"):
        grid = rows[label]["grid"]
        best = max(grid, key=lambda p: p["validation_accuracy"])
        assert {k: rows[label]["settings"][k] for k in best["settings"]} == best["settings"]
        assert rows[label]["validation_accuracy"] == best["validation_accuracy"]
    assert rows["tngd t=0"]["selected_with"] == "tngd"
    assert rows["tngd t=0"]["settings"]["damping"] == rows["tngd"]["settings"]["damping"]
    # per-seed test accuracies are the final runs' own; the interval is the t-interval of them
    for row in result.rows:
        assert row["per_seed"] == [s["test_accuracy"] for s in result.runs[row["label"]]]
        mean, hw = t_ci95(row["per_seed"])
        assert row["mean"] == pytest.approx(mean) and row["ci95"] == pytest.approx([mean - hw, mean + hw])
    # the device clock: TNGD's simulated device time is measured and replaced by analog time × τ (1 µs)
    tngd_run = result.runs["tngd"][0]
    assert tngd_run["device_simulation_s"] > 0 and result.runs["sgd"][0]["device_simulation_s"] == 0
    assert tngd_run["modelled_device_time_s"] == pytest.approx(
        tngd_run["wall_s"] - tngd_run["device_simulation_s"] + tngd_run["analog_time_tau"] * 1e-6
    )

    path = write_results(tmp_path, "tiny", protocol, result.rows, result.failed)
    written = json.loads(path.read_text())
    assert written["protocol"]["tuning_seed"] == proto.TUNE_SEED not in written["protocol"]["seeds"]
    for row in written["rows"]:
        assert ROW_KEYS <= set(row)
        assert row["selected_on"] == "validation" and row["seeds"] == [0, 1]
        assert len(row["ci95"]) == 2 and row["ci95"][0] <= row["mean"] <= row["ci95"][1]
        assert (
            all({"settings", "validation_accuracy", "status"} <= set(p) for p in row["grid"])
            or row["selected_with"]
        )


def test_optimizers_experiment_writes_results_json_under_the_protocol(tmp_path: Path, capsys) -> None:
    """The issue's done-when in miniature (real runs: digits, 120 examples, 1 epoch, 2 seeds, 2-point grids)."""
    out = tmp_path / "opt"
    argv = ["experiment", "optimizers", "--dataset", "digits", "--subset", "120", "--epochs", "1"]
    argv += ["--seeds", "2", "--lr-grid", "0.3,3", "--precond-lr-grid", "1", "--damping-grid", "0.3,3"]
    assert cli.main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert len(results["rows"]) == 8
    assert (
        results["machine"]["torch_cpu_capability"] and results["machine"]["threads"] >= 1
    )  # for bit-level comparisons
    for row in results["rows"]:
        assert ROW_KEYS <= set(row) and row["selected_on"] == "validation", row["label"]
        assert row["ci95"] is not None and len(row["grid"]) == 2
        assert "simulation_time_s" in row["metrics"] and "modelled_device_time_s" in row["metrics"]
        assert row["metrics"]["steps_to_target"]["target_is"].startswith("Adam's smoothed final")
    assert (out / "optimizers.png").stat().st_size > 0


def test_a_bad_grid_flag_is_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x"
    try:
        code = cli.main(["experiment", "tngd-delay", "--lr-grid", "0,1", "--out", str(out)])
    except SystemExit as exc:  # argparse refusals
        code = exc.code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "--lr-grid" in lines[0] and "> 0" in lines[0], lines
    assert not out.exists()


# ------------------------------------------------------------------------------------------ issue 11: TNGD claims


def test_time_to_target_reads_the_clock_at_the_smoothed_crossing() -> None:
    """The modelled time to target is the clock of the evaluation where the smoothed curve first reaches
    the target (the same step as steps_to_target), None when it never does."""
    accs = [0.5, 0.9, 0.6, 0.9, 0.95]
    history = [
        {"kind": "eval", "step": 10 * (i + 1), "test_accuracy": a, "modelled_device_time_s": 0.5 * (i + 1)}
        for i, a in enumerate(accs)
    ]
    summary = {"history": history}
    # k = 2 running means: 0.7, 0.75, 0.75, 0.925 -> target 0.8 first at step 50
    assert proto.steps_to_target([(h["step"], h["test_accuracy"]) for h in history], 0.8, 2) == 50
    assert proto.time_to_target(summary, 0.8, 2, "modelled_device_time_s") == pytest.approx(2.5)
    assert proto.time_to_target(summary, 0.99, 2, "modelled_device_time_s") is None


def test_modelled_time_per_evaluation_replaces_device_simulation_by_analog_time() -> None:
    rec = {"kind": "eval", "step": 5, "wall_s": 3.0, "device_simulation_s": 2.0, "analog_time_tau": 100.0}
    assert proto._with_modelled_time(rec, 1e-3)["modelled_device_time_s"] == pytest.approx(1.0 + 0.1)
    tiled = rec | {"device_wall_time_tau": 10.0}  # tiles in parallel: the device's own wall time counts
    assert proto._with_modelled_time(tiled, 1e-3)["modelled_device_time_s"] == pytest.approx(1.0 + 0.01)
    step = {"kind": "step", "step": 5, "wall_s": 3.0}
    assert proto._with_modelled_time(step, 1e-3) is step


def test_tngd_adam_experiment_reports_modelled_time_to_adams_accuracy(tmp_path: Path, capsys) -> None:
    """Real runs (digits, 150 examples, 2 epochs, 2 seeds, one-point TNGD grids): every row carries steps
    and modelled device time to Adam's smoothed final accuracy; each evaluation has its modelled time, which
    never decreases and, for the ideal device, counts analog time at the paper's τ = 1 µs."""
    out = tmp_path / "ta"
    argv = ["experiment", "tngd-adam", "--subset", "150", "--epochs", "2", "--seeds", "2"]
    argv += ["--lr-grid", "1,3", "--precond-lr-grid", "1", "--damping-grid", "1", "--out", str(out)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    payload = json.loads((out / "tngd-adam.json").read_text())
    assert payload["model"] == "mlp" and payload["tngd_device"] == "ideal device"
    rows = {r["label"]: r for r in payload["rows"]}
    assert set(rows) == {"adam", "tngd (ideal device)", "tngd-adam (ideal device)"}
    for label, row in rows.items():
        stt = row["metrics"]["modelled_time_to_target_s"]
        assert stt["target_is"].startswith("Adam's smoothed final") and len(stt["per_seed"]) == 2
        for run in payload["runs"][label]:
            clock = [h["modelled_device_time_s"] for h in proto.eval_records(run)]
            assert clock == sorted(clock) and clock[-1] <= run["modelled_device_time_s"]  # the run ends later
            assert clock[-1] >= run["analog_time_tau"] * proto.tau_for(row["settings"])[0]
    assert rows["tngd (ideal device)"]["tau_s"] == proto.PAPER_TAU_S
    assert (out / "tngd-adam.png").stat().st_size > 0
    # results.md: the same rows as a markdown table (what docs/results.md quotes)
    table = (out / "results.md").read_text().splitlines()
    assert table[0].startswith("| row | selected lr") and len(table) == 2 + len(rows)
    for label, row in rows.items():
        line = next(t for t in table if t.startswith(f"| {label} |"))
        assert f"{100 * row['mean']:.2f} [{100 * row['ci95'][0]:.2f}, {100 * row['ci95'][1]:.2f}]" in line


def test_tngd_experiments_check_model_and_backend_before_any_run(tmp_path: Path) -> None:
    from thermotrain.training._experiments import _check_tngd_size, _exact_ngd, check_options

    assert check_options("tngd-time", {"model": "cnn", "backend": "rc8"}) == {
        "model": "cnn",
        "backend": "rc8",
    }
    with pytest.raises(InputError, match="--model"):
        check_options("tngd-time", {"model": "resnet"})
    bad = tmp_path / "nope.json"
    with pytest.raises(InputError, match="--backend"):
        check_options("tngd-delay", {"backend": str(bad)})
    with pytest.raises(InputError, match="--backend"):
        check_options("tngd-noise", {"backend": "rlc8"})  # TNGD needs the RC family
    with pytest.raises(InputError, match="--backend is for"):
        check_options("optimizers", {"backend": "rc8"})

    class Fashion:  # only the shape matters: the paper's CNN on 28×28 has 592 074 parameters
        name, image_shape, num_classes = "fashion-mnist", (1, 28, 28), 10

    with pytest.raises(InputError, match="592,074 parameters"):
        _check_tngd_size("rc8", "cnn", Fashion())
    _check_tngd_size("ideal", "cnn", Fashion())  # the ideal device is matrix-free
    _check_tngd_size("rc8", "cnn", load_dataset("digits", subset=50))  # 2 746 parameters fit
    assert _exact_ngd("cnn", Fashion())[1] == {"optimizer": "ngd-cg", "cg_iters": 50}
    assert _exact_ngd("mlp", load_dataset("digits", subset=50))[1] == {"optimizer": "ngd"}


def test_tngd_time_shares_the_limits_selection_on_the_ideal_device_and_its_own_on_a_profile() -> None:
    from thermotrain.training._experiments import tngd_time_arms

    data = load_dataset("digits", subset=50)
    ideal, shared = tngd_time_arms({"optimizer": "tngd"}, "ideal", "mlp", data)
    assert shared == "exact NGD"
    assert {a.label: a.tune_with for a in ideal if a.label.startswith("tngd")} == dict.fromkeys(
        ["tngd t=0τ (= SGD without momentum)", "tngd t=5τ", "tngd t=10τ", "tngd t=20τ", "tngd t=50τ"],
        "exact NGD",
    )
    prof, shared = tngd_time_arms({"optimizer": "tngd", "backend": "rc8"}, "rc8", "mlp", data)
    tuned = {a.label: a.tune_with for a in prof}
    assert shared == "tngd t=20τ" and tuned["tngd t=20τ"] is None  # tuned on the profile itself
    assert tuned["tngd t=5τ"] == tuned["tngd t=50τ"] == "tngd t=20τ"
    assert tuned["exact NGD"] is None and tuned["sgd (momentum 0.9)"] is None
    assert all(a.settings.get("backend") == "rc8" for a in prof if a.label.startswith("tngd"))


# ------------------------------------------------------------------------------------ scaled selections


def test_a_scaled_arm_runs_at_a_stated_multiple_of_the_shared_selection(tmp_path: Path) -> None:
    """An arm with ``scale`` shares its source's tuned selection times the multipliers (nothing tuned on
    test), says so in its row and in the tables; a scale without a source, of a key the source did not
    select, or not > 0 is refused before any run."""
    data = load_dataset("digits", subset=150)
    protocol = Protocol(seeds=2, epochs=1, precond_lr_grid=(1.0,), damping_grid=(0.3, 3.0))
    seen: list[float] = []

    def runner(cfg: TrainConfig, d) -> dict:
        seen.append(cfg.damping)
        return train(cfg, d)

    arms = [
        Arm("kfac", {"optimizer": "kfac"}),
        Arm("kfac, λ × 3", {"optimizer": "kfac"}, tune_with="kfac", scale={"damping": 3.0}),
        Arm("kfac, λ × 1/3", {"optimizer": "kfac"}, tune_with="kfac", scale={"damping": 1 / 3}),
    ]
    base = TrainConfig(batch_size=32, progress=False)
    result = run_protocol(arms, base, data, protocol, runner=runner, log=lambda _: None)
    rows = {r["label"]: r for r in result.rows}
    lam = rows["kfac"]["settings"]["damping"]
    assert lam in (0.09, 0.9)  # DEFAULT_DAMPING["kfac"] 0.3 × the grid
    assert rows["kfac, λ × 3"]["settings"]["damping"] == pytest.approx(3 * lam)
    assert rows["kfac, λ × 1/3"]["settings"]["damping"] == pytest.approx(lam / 3, rel=1e-3)
    assert rows["kfac, λ × 3"]["settings"]["lr"] == rows["kfac"]["settings"]["lr"]
    assert rows["kfac, λ × 3"]["scaled_by"] == {"damping": 3.0} and rows["kfac"]["scaled_by"] is None
    assert rows["kfac, λ × 3"]["at_grid_edge"] == [] and rows["kfac, λ × 3"]["validation_accuracy"] is None
    assert seen[-4:] == pytest.approx([3 * lam] * 2 + [lam / 3] * 2, rel=1e-3)  # what the runs used
    table = proto.markdown_table({"rows": result.rows})
    assert "(from kfac, λ × 3)" in table and "(from kfac, λ × 0.333)" in table
    proto.plot_rows(result.rows, tmp_path / "rows.png", "rows", reference="kfac")
    assert (tmp_path / "rows.png").stat().st_size > 0

    tested: list[str] = []

    def tuning_only(cfg: TrainConfig, d) -> dict:
        tested.append(d.name)
        return train(cfg, d)

    for bad, match in (
        ([Arm("a", {"optimizer": "kfac"}, scale={"damping": 3.0})], "needs tune_with"),
        ([arms[0], Arm("b", {"optimizer": "kfac"}, tune_with="kfac", scale={"momentum": 2.0})], "momentum"),
        ([arms[0], Arm("c", {"optimizer": "kfac"}, tune_with="kfac", scale={"damping": 0.0})], "> 0"),
    ):
        with pytest.raises(InputError, match=match):
            run_protocol(bad, base, data, protocol, runner=tuning_only, log=lambda _: None)
    assert all(name.endswith("/validation") for name in tested)  # refused before any test-set run


def test_kfac_quantization_builds_every_block_from_the_calibrated_profile(tmp_path: Path) -> None:
    """The experiment's rows (no training): coupling bits × tolerance × rounding, the low-readout-noise
    block, ADC bits on the profile's own couplings and λ × {1/3, 3}; each device row's profile differs from
    the shipped one only in what its label says, and every row shares digital K-FAC's selection."""
    from thermotrain.models import load_profile, shipped_profile_path
    from thermotrain.training import _experiments as ex

    base = load_profile(shipped_profile_path("rc8"))
    arms, _ = ex._kfac_quantization(tmp_path, None)
    by = {a.label: a for a in arms}
    assert arms[0].label == "digital" and arms[0].tune_with is None
    n = len(ex.QUANT_BITS) * len(ex.QUANT_TOLERANCES) * 2 + len(ex.QUANT_LOW_NOISE_BITS) * 2
    n += len(ex.QUANT_ADC_BITS) + len(ex.QUANT_DAMPING_SCALES) * (1 + len(ex.QUANT_DAMPING_BITS))
    n += len(ex.QUANT_ADC_RANGE_BITS) * len(ex.QUANT_ADC_RANGES)
    tuned = 1 + len(ex.QUANT_TUNED_BITS) + len(ex.QUANT_TUNED_ADC_BITS)
    assert len(arms) == 1 + n + tuned and len(by) == len(arms)
    # every row shares digital K-FAC's selection except the last block, tuned on its own device
    assert all(a.tune_with == "digital" for a in arms[1 : 1 + n])
    assert all(a.tune_with is None and a.label.endswith("tuned on device") for a in arms[1 + n :])

    def device(label: str):
        return load_profile(Path(by[label].settings["backend"]))

    four = device("4 bit, tol 1%")
    assert four.component_stats["coupling_bits"] == 4 and four.component_stats["tolerance"] == 0.01
    assert four.adc_bits == base.adc_bits and four.kappa0 == base.kappa0 and four.fitted == base.fitted
    assert by["4 bit, tol 1%, rand. rounding x4"].settings["roundings"] == 4
    low = by["4 bit, tol 0%, readout error 0.01"].settings
    assert (
        low["readout_error"] == ex.QUANT_LOW_NOISE_ERROR
        and low["backend"] == by["4 bit, tol 0%"].settings["backend"]
    )
    own = f"couplings {base.component_stats['coupling_bits']} bit, tol {100 * base.component_stats['tolerance']:g}%"
    adc = device(f"ADC 6 bit ({own})")
    assert adc.adc_bits == 6 and adc.component_stats == base.component_stats
    # the ADC-range rows: a gain stage, the range a stated multiple of the signal scale sqrt(κ0·s)
    sigma = (base.kappa0 * base.fitted["noise_scale"]) ** 0.5
    ranged = [a for a in arms if " V (" in a.label]
    assert len(ranged) == len(ex.QUANT_ADC_RANGE_BITS) * len(ex.QUANT_ADC_RANGES)
    for a in ranged:
        p = load_profile(Path(a.settings["backend"]))
        fs = p.component_stats["adc_full_scale_v"]
        m = float(a.label.split("(")[1].split(" σ0")[0])
        assert fs == pytest.approx(m * sigma, rel=5e-3) and f"±{fs:g} V" in a.label
        assert p.adc_bits in ex.QUANT_ADC_RANGE_BITS and f"ADC {p.adc_bits} bit" in a.label
        rest = {k: v for k, v in p.component_stats.items() if k != "adc_full_scale_v"}
        assert rest == {k: v for k, v in base.component_stats.items() if k != "adc_full_scale_v"}
    lam = by["8 bit, tol 1%, λ × 3"]
    assert (
        lam.scale == {"damping": 3.0} and lam.settings["backend"] == by["8 bit, tol 1%"].settings["backend"]
    )
    assert by["digital, λ × 0.333"].scale == {"damping": pytest.approx(1 / 3)}
    assert "backend" not in by["digital, λ × 3"].settings
    as_given = device(f"profile as given ({own}), tuned on device")
    assert as_given.component_stats == base.component_stats and as_given.adc_bits == base.adc_bits
    assert by["4 bit, tol 1%, tuned on device"].settings == by["4 bit, tol 1%"].settings
    assert by[f"ADC 4 bit ({own}), tuned on device"].settings == by[f"ADC 4 bit ({own})"].settings
