"""TensorBoard event files of a training run: the numbers of ``metrics.jsonl``, as scalars.

:class:`TensorBoardSink` is opened on a run's output folder and writes ``OUT/tb/events.out.tfevents.*``
through ``torch.utils.tensorboard``. Every record the harness writes to ``metrics.jsonl`` can be passed to it
unchanged (:meth:`TensorBoardSink.record`); each of its numbers becomes one scalar, tagged
``KIND/KEY`` (``step/loss``, ``step/analog_time_tau``, ``step/lr``,
``readout/analog_time_tau/inverse_n65`` (per device call, by operation and matrix size), ``epoch/test_accuracy``, ``eval/test_loss``, …) at the record's ``step``, in double precision, so the value
TensorBoard stores is exactly the one in ``metrics.jsonl``. :meth:`TensorBoardSink.close` adds the run's
hyperparameters (the config's scalar fields) with its final metrics (``hparams/test_accuracy``, …) for the
HParams dashboard. :func:`experiment_tensorboard` does the same for each run of an experiment, from the run
summaries' histories.

TensorBoard is optional: without the ``tensorboard`` package the sink logs one warning (once per process)
and writes nothing.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TB_FOLDER", "TensorBoardSink", "experiment_tensorboard", "scalars_of"]

log = logging.getLogger(__name__)

TB_FOLDER = "tb"  # OUT/tb/ holds the event files
_AXES = ("step", "epoch")  # record keys that are the x axis, not values
_IDS = {"readout": ("op", "n")}  # record keys that name the device call, not values
_warned = False


def _writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or None (with one warning per process) when the
    ``tensorboard`` package is missing."""
    global _warned
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        if not _warned:
            _warned = True
            log.warning(
                "TensorBoard logs are off: the tensorboard package is not installed (%s); "
                "`pip install tensorboard` turns them on.",
                " ".join(str(exc).split()) or type(exc).__name__,
            )
        return None
    return SummaryWriter


def _number(value: Any) -> float | None:
    """``value`` as a float if it is a real number (a bool is not), else None. A non-finite number stays
    non-finite; ``metrics.jsonl`` writes those as the text ``"nan"``/``"inf"``, which is read back here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return None


def scalars_of(rec: Mapping[str, Any]) -> dict[str, float]:
    """The scalars a ``metrics.jsonl`` record becomes: ``{"KIND/KEY": value}`` for every real-number field
    except the axes ``step`` and ``epoch`` (a record without ``kind`` is ``"step"``). A ``readout`` record
    (one device call) is told apart from the other calls of its step by its operation and matrix size:
    ``readout/KEY/OP_nN`` (``readout/analog_time_tau/inverse_n65``), and ``op``/``n`` are not values."""
    kind = str(rec.get("kind", "step"))
    ids = _IDS.get(kind, ())
    suffix = "_".join(f"{'n' if k == 'n' else ''}{rec[k]}" for k in ids if k in rec)
    suffix = f"/{suffix}" if suffix else ""
    out = {}
    for key, value in rec.items():
        if key in _AXES or key == "kind" or key in ids:
            continue
        number = _number(value)
        if number is not None:
            out[f"{kind}/{key}{suffix}"] = number
    return out


def _hparams(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The config's fields that TensorBoard's HParams take (str, bool, int, finite float); None is left out."""
    out: dict[str, Any] = {}
    for key, value in (config or {}).items():
        if isinstance(value, bool | str):
            out[key] = value
        elif isinstance(value, numbers.Real) and math.isfinite(float(value)):
            out[key] = int(value) if isinstance(value, numbers.Integral) else float(value)
    return out


def _final_metrics(summary: Mapping[str, Any] | None) -> dict[str, float]:
    """``{"hparams/KEY": value}`` for each real-number top-level entry of a run summary (accuracy, losses,
    steps, wall time, analog time, values loaded/read, damping retries …)."""
    out = {}
    for key, value in (summary or {}).items():
        number = _number(value)
        if number is not None and math.isfinite(number):
            out[f"hparams/{key}"] = number
    return out


class TensorBoardSink:
    """TensorBoard scalars of one run, in ``out/tb/`` (see the module docstring).

    Args:
        out: the run's output folder (created if missing).
        purge_step: a resumed run's first new step: events of an earlier segment at this step or later are
            hidden by TensorBoard (as ``metrics.jsonl`` is truncated to the checkpoint); None: a fresh run
            (step 0: any earlier events in the folder are hidden).
        folder: the sub-folder of ``out`` for the event files.

    ``enabled`` is False (and every method does nothing) when the tensorboard package is missing.
    """

    def __init__(self, out: str | Path, *, purge_step: int | None = None, folder: str = TB_FOLDER) -> None:
        self.path = Path(out) / folder
        writer = _writer_class()
        self._writer = None
        if writer is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            # every segment starts with a session-start event (at step 0 for a fresh run): TensorBoard takes
            # a later one as a restart and hides the earlier segments' events from that step on
            start = 0 if purge_step is None else int(purge_step)
            self._writer = writer(log_dir=str(self.path), purge_step=start, flush_secs=30)

    @property
    def enabled(self) -> bool:
        return self._writer is not None

    def _scalar(self, tag: str, value: float, step: int) -> None:
        self._writer.add_scalar(tag, value, step, new_style=True, double_precision=True)

    def record(self, rec: Mapping[str, Any]) -> None:
        """Any ``metrics.jsonl`` record (``kind`` step, readout, eval, epoch, …): each number a scalar at
        ``rec["step"]``."""
        if self._writer is None:
            return
        step = int(rec.get("step", 0))
        for tag, value in scalars_of(rec).items():
            self._scalar(tag, value, step)

    def step(self, rec: Mapping[str, Any]) -> None:
        """A ``kind="step"`` record (loss, lr, analog_time_tau, values loaded/read, damping retries …)."""
        self.record({"kind": "step", **rec})

    def readout(self, rec: Mapping[str, Any]) -> None:
        """A ``kind="readout"`` record (one device call: analog_time_tau, n, …)."""
        self.record({"kind": "readout", **rec})

    def eval(self, rec: Mapping[str, Any]) -> None:
        """A ``kind="eval"`` record (test accuracy and loss every ``eval_every`` steps)."""
        self.record({"kind": "eval", **rec})

    def epoch(self, rec: Mapping[str, Any]) -> None:
        """A ``kind="epoch"`` record (train loss, test accuracy and loss after an epoch)."""
        self.record({"kind": "epoch", **rec})

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(
        self, final_summary: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None
    ) -> None:
        """Write the hyperparameters (``config``'s scalar fields) with the final metrics (the summary's
        numbers, tagged ``hparams/KEY`` at the summary's ``steps``) and close the event file. Either may be
        None (then no hparams); closing twice is harmless."""
        if self._writer is None:
            return
        try:
            if final_summary is not None or config is not None:
                from torch.utils.tensorboard.summary import hparams

                metrics = _final_metrics(final_summary)
                params = _hparams(config)
                if final_summary is not None and isinstance(final_summary.get("status"), str):
                    params.setdefault("status", final_summary["status"])
                step = int(_number((final_summary or {}).get("steps")) or 0)
                for summary in hparams(params, metrics):
                    self._writer.file_writer.add_summary(summary, step)
                for tag, value in metrics.items():
                    self._scalar(tag, value, step)
        finally:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _slug(label: str) -> str:
    """A folder name for a run label: ``kfac (thermo ideal, solve)`` -> ``kfac_thermo_ideal_solve``."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", label).strip("_") or "run"


def experiment_tensorboard(out_dir: str | Path, payload: Mapping[str, Any]) -> list[Path]:
    """TensorBoard logs of an experiment's runs: for each run summary in ``payload["runs"]`` (label -> list of
    summaries with ``history`` and ``seed``), ``out_dir/tb/LABEL/seedK/`` with its history records
    (``epoch``/``eval`` scalars, as :class:`TensorBoardSink`) and hparams (the label, seed, and the summary's
    ``config`` if kept) with the final metrics. Returns the folders written (none without tensorboard or
    without ``runs``)."""
    written = []
    for label, summaries in (payload.get("runs") or {}).items():
        for i, summary in enumerate(summaries):
            seed = summary.get("seed", i)
            sink = TensorBoardSink(Path(out_dir) / TB_FOLDER / _slug(str(label)), folder=f"seed{seed}")
            if not sink.enabled:
                return written
            for rec in summary.get("history", []):
                sink.record(rec)
            config = {"setting": str(label), "seed": seed, **(summary.get("config") or {})}
            sink.close({k: v for k, v in summary.items() if k != "history"}, config)
            written.append(sink.path)
    return written
