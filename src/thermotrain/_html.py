"""One self-contained HTML report per run (``report.html``), rendered by Jinja2 from
``thermotrain/templates/report.html.j2``.

The page opens from a file with no network: the style sheet is inline, there is no script, every PNG of the
run folder is embedded as a ``data:`` URI, and a Content-Security-Policy forbids any other load. The verdict
comes first, then the sections (text and tables), the plots, the settings and the versions (thermotrain,
Python, torch, numpy, and ngspice where the caller knows it). Every value is escaped (autoescape), so text
from a run (a path, an error message) is shown, never interpreted.

:func:`write_html_report` is the writer; :func:`train_report` and :func:`experiment_report` build the
report of a ``train`` run (from its summary) and of an ``experiment`` (from its payload).
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import logging
import math
import numbers
import platform
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "REPORT_FILE",
    "Section",
    "Table",
    "experiment_report",
    "kv_table",
    "train_report",
    "versions",
    "write_html_report",
]

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Table:
    """A table: ``header`` (column names) and ``rows`` (one sequence of values per row; floats are shown
    with 4 significant digits, None as "-"), with an optional ``caption``."""

    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "header", tuple(str(h) for h in self.header))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        for i, row in enumerate(self.rows):
            if len(row) != len(self.header):
                raise TypeError(f"Table row {i} has {len(row)} cells for {len(self.header)} columns.")


@dataclass(frozen=True)
class Section:
    """A titled part of the report: a paragraph ``text``, ``tables``, and preformatted text ``pre``."""

    title: str
    tables: tuple[Table, ...] = ()
    text: str = ""
    pre: str = ""


@dataclass(frozen=True)
class _Cell:
    text: str
    num: bool


def _cell(value: Any) -> _Cell:
    if value is None:
        return _Cell("-", False)
    if isinstance(value, bool):
        return _Cell(str(value).lower(), False)
    if isinstance(value, numbers.Integral):
        return _Cell(str(int(value)), True)
    if isinstance(value, numbers.Real):
        v = float(value)
        return _Cell(f"{v:.4g}" if math.isfinite(v) else str(v), True)
    return _Cell(str(value), False)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(_flatten(value, name + "."))
        elif isinstance(value, list | tuple) and len(value) > 16:
            rows.append((name, f"[{len(value)} entries]"))
        else:
            rows.append((name, value))
    return rows


def kv_table(
    mapping: Mapping[str, Any], header: tuple[str, str] = ("quantity", "value"), caption: str = ""
) -> Table:
    """A two-column table of ``mapping`` (nested mappings flattened to ``a.b`` keys; long lists shown as
    their length)."""
    return Table(header, tuple(_flatten(mapping)), caption)


def versions(**known: str | None) -> dict[str, str]:
    """The versions shown in a report: thermotrain, Python, torch, numpy, scipy (those installed; read from
    the package metadata, nothing is imported), then ``known`` (e.g. ``ngspice="39"``; None is left out)."""
    out = {"thermotrain": _dist_version("thermotrain"), "python": platform.python_version()}
    for dist in ("torch", "numpy", "scipy", "jinja2"):
        v = _dist_version(dist)
        if v != "not installed":
            out[dist] = v
    out.update({k: str(v) for k, v in known.items() if v is not None})
    return out


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of PNG bytes from the IHDR chunk, or None when it is not a PNG."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _image(name: str, data: bytes) -> dict[str, Any] | None:
    size = _png_size(data)
    if size is None:
        log.warning("report: %s is not a PNG file; left out of the HTML report", name)
        return None
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return {"name": name, "uri": uri, "width": size[0], "height": size[1]}


def _verdict_class(verdict: str, passed: bool | None) -> str:
    if passed is None:
        head = verdict.strip().upper()
        passed = (
            True
            if head.startswith(("PASS", "COMPLETED"))
            else False
            if head.startswith(("FAIL", "DIVERGED"))
            else None
        )
    return "info" if passed is None else ("pass" if passed else "fail")


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("thermotrain", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html_report(
    title: str,
    verdict: str,
    sections: Sequence[Section],
    *,
    images: Sequence[tuple[str, bytes]] = (),
    settings: Mapping[str, Any] | None = None,
    versions_: Mapping[str, str] | None = None,
    passed: bool | None = None,
) -> str:
    """The report page as text (see :func:`write_html_report`); ``images`` are (name, PNG bytes)."""
    embedded = [img for name, data in images if (img := _image(name, data)) is not None]
    page = (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            verdict=verdict,
            verdict_class=_verdict_class(verdict, passed),
            sections=[
                {
                    "title": s.title,
                    "text": s.text,
                    "pre": s.pre,
                    "tables": [
                        {
                            "header": t.header,
                            "caption": t.caption,
                            "cells": [[_cell(v) for v in r] for r in t.rows],
                        }
                        for t in s.tables
                    ],
                }
                for s in sections
            ],
            images=embedded,
            settings=[(_cell(k), _cell(v)) for k, v in _flatten(settings or {})],
            versions=dict(versions_ if versions_ is not None else versions()),
            created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        )
    )
    return page


def write_html_report(
    folder: str | Path,
    title: str,
    verdict: str,
    sections: Sequence[Section],
    *,
    settings: Mapping[str, Any] | None = None,
    extra_images: Sequence[tuple[str, bytes]] = (),
    known_versions: Mapping[str, str | None] | None = None,
    passed: bool | None = None,
) -> Path:
    """Write ``folder/report.html``: ``title``, the ``verdict`` first (green when ``passed``, red when not;
    by default judged from its first word: PASS/completed or FAIL/diverged), the ``sections``, every
    ``*.png`` in ``folder`` (sorted by name) and ``extra_images`` ((name, PNG bytes), e.g. a plot drawn only
    for the report) embedded as data URIs, the ``settings`` (nested mappings flattened) and the versions
    (:func:`versions` with ``known_versions``, e.g. ``{"ngspice": "39"}``). Written atomically; returns
    its path."""
    from thermotrain._safeio import write_text_atomic

    folder = Path(folder)
    images = [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.png")) if p.is_file()]
    page = render_html_report(
        title,
        verdict,
        sections,
        images=[*images, *extra_images],
        settings=settings,
        versions_=versions(**dict(known_versions or {})),
        passed=passed,
    )
    return write_text_atomic(folder / REPORT_FILE, page)


# ------------------------------------------------------------------------------------- train / experiment


def _pct(x: Any) -> str:
    return f"{100 * x:.2f} %" if isinstance(x, numbers.Real) and math.isfinite(float(x)) else "n/a"


def _curves_png(history: Sequence[Mapping[str, Any]], title: str) -> bytes | None:
    """Test accuracy and loss against step from a run's ``epoch``/``eval`` records, as PNG bytes."""
    points = [h for h in history if h.get("kind") in ("epoch", "eval") and "test_accuracy" in h]
    if not points:
        return None
    from thermotrain._report import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for kind, marker in (("eval", "."), ("epoch", "o")):
        pts = [h for h in points if h["kind"] == kind]
        if pts:
            steps = [h["step"] for h in pts]
            axes[0].plot(steps, [h["test_accuracy"] for h in pts], marker=marker, label=kind)
            axes[1].plot(steps, [h["test_loss"] for h in pts], marker=marker, label=kind)
    axes[0].set(xlabel="step", ylabel="test accuracy", title=title)
    axes[1].set(xlabel="step", ylabel="test loss (nats)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def train_report(out_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """``out_dir/report.html`` of one ``train`` run from its summary (as ``train()`` returns it and
    ``summary.json`` holds): the status and test accuracy first, the headline numbers, the device readout,
    the epoch history, a plot of test accuracy/loss against step, and the config as settings."""
    status = str(summary.get("status", "?"))
    if status == "diverged":
        div = summary.get("divergence") or {}
        verdict = f"diverged at step {div.get('step', '?')}: {div.get('reason', '?')}"
    else:
        verdict = f"{status}: test accuracy {_pct(summary.get('test_accuracy'))}, test loss {_cell(summary.get('test_loss')).text} nats"
    headline_keys = (
        "optimizer",
        "backend",
        "test_accuracy",
        "test_loss",
        "train_loss",
        "last_epoch_test_accuracy",
        "steps",
        "epochs",
        "wall_s",
        "analog_time_tau",
        "values_loaded",
        "values_read",
        "damping_bumps",
        "extra_damping_max",
        "fallback_layers",
    )
    head = {k: summary[k] for k in headline_keys if k in summary}
    if isinstance(head.get("fallback_layers"), list):
        head["fallback_layers"] = ", ".join(map(str, head["fallback_layers"])) or "none"
    sections = [Section("Result", tables=(kv_table(head),))]
    if summary.get("readout"):
        from thermotrain.training._precond import describe_readout

        sections.append(
            Section(
                "Device readout",
                text=describe_readout(summary["readout"]),
                tables=(kv_table(summary["readout"]),),
            )
        )
    history = list(summary.get("history") or [])
    epochs = [h for h in history if h.get("kind") == "epoch"]
    if epochs:
        cols = ("epoch", "step", "train_loss", "test_loss", "test_accuracy", "wall_s", "analog_time_tau")
        sections.append(
            Section("Epochs", tables=(Table(cols, tuple(tuple(h.get(c) for c in cols) for h in epochs)),))
        )
    cfg = summary.get("config") or {}
    png = _curves_png(history, f"{cfg.get('optimizer', '')} / {cfg.get('dataset', '')}".strip(" /"))
    return write_html_report(
        out_dir,
        f"thermotrain train: {cfg.get('model', '?')} on {cfg.get('dataset', '?')}, {summary.get('optimizer', '?')} ({summary.get('backend', '?')})",
        verdict,
        sections,
        settings=cfg,
        extra_images=[("test curves", png)] if png else [],
        passed=None if status not in ("completed", "diverged") else status == "completed",
    )


def experiment_report(out_dir: str | Path, payload: Mapping[str, Any], name: str | None = None) -> Path:
    """``out_dir/report.html`` of an ``experiment`` (or a comparison of runs) from its payload: the verdict
    (every run done, or which failed), ``payload["table"]`` (a list of row dicts) as a table, per-run
    results of ``payload["runs"]``, the other entries as settings, and every PNG in ``out_dir``."""
    name = name or str(payload.get("experiment", "experiment"))
    failed = payload.get("failed") or {}
    runs = payload.get("runs") or {}
    done = sum(len(v) for v in runs.values())
    if failed:
        count = sum(len(v) for v in failed.values())
        verdict = f"FAIL: {count} run(s) failed ({', '.join(map(str, failed))}); {done} completed"
    else:
        verdict = f"completed: {done} runs" if runs else "completed"
    sections = []
    rows = payload.get("table") or []
    if rows:
        cols = list(dict.fromkeys(k for r in rows for k in r))
        sections.append(
            Section(
                "Results", tables=(Table(tuple(cols), tuple(tuple(r.get(c) for c in cols) for r in rows)),)
            )
        )
    if runs:
        cols = (
            "setting",
            "seed",
            "status",
            "test_accuracy",
            "test_loss",
            "steps",
            "wall_s",
            "analog_time_tau",
        )
        per = tuple(
            (label, s.get("seed"), *(s.get(c) for c in cols[2:]))
            for label, summaries in runs.items()
            for s in summaries
        )
        sections.append(Section("Runs", tables=(Table(cols, per),)))
    if failed:
        sections.append(
            Section("Failed runs", pre="\n".join(f"{k}: {m}" for k, v in failed.items() for m in v))
        )
    settings = {
        k: v for k, v in payload.items() if k not in ("table", "runs", "failed") and not isinstance(v, list)
    }
    return write_html_report(
        out_dir, f"thermotrain experiment: {name}", verdict, sections, settings=settings, passed=not failed
    )
