"""TensorBoard event files (training/_tensorboard.py): the records of a real run's metrics.jsonl are written
and read back with TensorBoard's own EventAccumulator, value for value (float64, exact), with the hparams;
TensorBoard's data provider (what its scalar dashboard reads) lists them as scalars; without the tensorboard
package the sink warns once and writes nothing."""

from __future__ import annotations

import json
import logging
import sys
from collections import defaultdict

import pytest

from thermotrain.training import TrainConfig, train
from thermotrain.training import _tensorboard as tbmod
from thermotrain.training._tensorboard import TensorBoardSink, experiment_tensorboard

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
from tensorboard.backend.event_processing import plugin_event_accumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real thermodynamic K-FAC run on the ideal device: step, readout (device calls), eval and epoch
    records in metrics.jsonl."""
    out = tmp_path_factory.mktemp("tb") / "run"
    cfg = TrainConfig(
        optimizer="kfac",
        backend="ideal",
        dataset="digits",
        subset=200,
        epochs=2,
        batch_size=64,
        eval_every=3,
        inv_update_steps=3,
        progress=False,
        out=str(out),
    )
    summary = train(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return out, records, summary


def _read(path, accumulator=event_accumulator):
    """``{tag: [(step, value), ...]}`` of the scalars in the event files under ``path``, read by TensorBoard's
    EventAccumulator (``plugin_event_accumulator``: the one its dashboards use, which also applies purges)."""
    acc = accumulator.EventAccumulator(str(path), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    return {
        tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in acc.Tensors(tag)]
        for tag in acc.Tags()["tensors"]
        if not tag.startswith("_hparams_/")
    }


def test_event_file_holds_the_numbers_of_metrics_jsonl(run, tmp_path):
    out, records, summary = run
    kinds = {r["kind"] for r in records}
    assert kinds == {"step", "readout", "eval", "epoch"}
    sink = TensorBoardSink(tmp_path)
    for rec in records:
        sink.record(rec)
    sink.close(summary, summary["config"])
    got = _read(tmp_path / "tb")

    # the headline curves, built here from the records (not by the code under test)
    steps = [r for r in records if r["kind"] == "step"]
    assert got["step/loss"] == [(r["step"], r["loss"]) for r in steps]
    assert got["step/analog_time_tau"] == [(r["step"], r["analog_time_tau"]) for r in steps]
    assert got["step/analog_time_tau"][-1][1] > 0  # the device ran
    for kind in ("eval", "epoch"):
        for key in ("test_accuracy", "test_loss"):
            assert got[f"{kind}/{key}"] == [(r["step"], r[key]) for r in records if r["kind"] == kind]
    calls = [r for r in records if r["kind"] == "readout"]
    by_matrix = defaultdict(list)
    for r in calls:
        by_matrix[f"readout/analog_time_tau/{r['op']}_n{r['n']}"].append((r["step"], r["analog_time_tau"]))
    assert len(by_matrix) >= 2 and all(got[tag] == pts for tag, pts in by_matrix.items())

    # every number of every record, and nothing else (hparams/ are the final metrics)
    def numbers(r):
        skip = {"kind", "step", "epoch", *(("op", "n") if r["kind"] == "readout" else ())}
        return [
            v
            for k, v in r.items()
            if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)
        ]

    written = sum(len(v) for tag, v in got.items() if not tag.startswith("hparams/"))
    assert written == sum(len(numbers(r)) for r in records)
    assert got["hparams/test_accuracy"] == [(summary["steps"], summary["test_accuracy"])]
    assert got["hparams/values_read"] == [(summary["steps"], float(summary["values_read"]))]


def test_hparams_hold_the_config_and_the_dashboard_reads_scalars(run, tmp_path):
    out, records, summary = run
    with TensorBoardSink(tmp_path) as sink:
        for rec in records:
            sink.record(rec)
        sink.close(summary, summary["config"])
    acc = plugin_event_accumulator.EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    cfg = summary["config"]
    assert hp["optimizer"].string_value == "kfac" and hp["backend"].string_value == "ideal"
    assert hp["epochs"].number_value == cfg["epochs"] and hp["pd_guard"].number_value == 1
    assert "lr" not in hp  # None (the optimizer's default) is left out
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metrics = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"hparams/test_accuracy", "hparams/test_loss", "hparams/analog_time_tau"} <= metrics

    # what TensorBoard's scalar dashboard reads: the same numbers
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(tmp_path))
    scalars = provider.read_scalars(
        context.RequestContext(), experiment_id="", plugin_name="scalars", downsample=10_000
    )["tb"]
    steps = [r for r in records if r["kind"] == "step"]
    assert [(d.step, d.value) for d in scalars["step/loss"]] == [(r["step"], r["loss"]) for r in steps]


def test_resumed_segment_purges_the_steps_after_the_checkpoint(tmp_path):
    first = TensorBoardSink(tmp_path)
    for step in range(1, 7):
        first.step({"step": step, "loss": float(step)})
    first.close()
    second = TensorBoardSink(tmp_path, purge_step=4)  # resumed from a checkpoint at step 3
    for step in range(4, 6):
        second.step({"step": step, "loss": 10.0 + step})
    second.close()
    loss = _read(tmp_path / "tb", plugin_event_accumulator)["step/loss"]
    assert loss == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 14.0), (5, 15.0)]


def test_experiment_runs_get_one_folder_each(run, tmp_path):
    _, _, summary = run
    payload = {
        "runs": {"kfac (thermo ideal)": [{**summary, "seed": 0}, {**summary, "seed": 1}]},
        "table": [],
    }
    folders = experiment_tensorboard(tmp_path, payload)
    assert [p.relative_to(tmp_path).as_posix() for p in folders] == [
        "tb/kfac_thermo_ideal/seed0",
        "tb/kfac_thermo_ideal/seed1",
    ]
    epochs = [h for h in summary["history"] if h["kind"] == "epoch"]
    got = _read(folders[1])
    assert got["epoch/test_accuracy"] == [(h["step"], h["test_accuracy"]) for h in epochs]


def test_without_tensorboard_the_sink_warns_once_and_writes_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` now raises ImportError
    monkeypatch.setattr(tbmod, "_warned", False)
    with caplog.at_level(logging.WARNING, logger=tbmod.__name__):
        for name in ("a", "b"):
            sink = TensorBoardSink(tmp_path / name)
            assert not sink.enabled
            sink.step({"step": 1, "loss": 1.0})
            sink.close({"test_accuracy": 0.5}, {"lr": 0.1})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "pip install tensorboard" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
