"""Running netlists in ngspice: shared library (PySpice 1.5's ``NgSpiceShared``) or ``ngspice -b``.

Both engines run the same deck, written with the netlist's data files into a fresh private temporary
directory per run (so parallel runs never share a file): the netlist body -- the canonical text of the
allowlist parser (``_safety.parse_netlist``), never the raw text, unless the netlist is marked trusted --,
``.save`` of the probes,
``.options interp`` (a uniform output grid), the user's options and the analysis line. Batch mode adds a
``.control`` block (``run``, ``write`` a binary rawfile); shared mode ``source``s the deck (ngspice then
resolves the noise file against the deck's folder) and runs it with ``bg_run``.

Isolation: ngspice starts in an EMPTY working directory with ``HOME`` pointed to an empty directory and
no inherited ``SPICE_*``/``NGSPICE_*`` variables, so no ``.spiceinit`` (read from the current directory,
else HOME) and no foreign ``spinit`` is ever read: ``ngspice -b -n`` runs as a subprocess with that cwd
and environment; the shared library reads its init files once, when it is loaded, and is loaded with the
process's cwd, HOME and those variables switched to the same clean state for that moment. Probe names,
initial-condition nodes and options are checked against strict patterns / an allowlist before they enter
the deck.

One ngspice per process: the shared library is one global simulator, not thread-safe, so every shared
run holds a process-wide lock; run jobs in separate processes (``run_many``) for parallelism.
Timeouts: batch mode kills the subprocess; shared mode runs in ngspice's background thread and stops it
with ``bg_halt`` when the limit passes (the library stays usable; the limit covers the analysis, not the
parsing of the deck, which is fast). If the shared library cannot be loaded
(or ngspice shut it down after a fatal error), ``engine="shared"`` falls back to batch mode and says so
in ``Transient.messages`` and the log.

ngspice's informational output ("Note:", "Warning:", gmin-stepping progress, "Using SPARSE ...") is kept
as information in ``messages``; only an aborted analysis, a load error, or missing output is an error.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from thermotrain._args import check_float, check_int
from thermotrain._errors import (
    InputError,
    ResourceLimitError,
    SpiceConvergenceError,
    SpiceError,
    SpiceNotFoundError,
    SpiceTimeoutError,
)
from thermotrain.netlists._safety import (
    check_data_file,
    check_name,
    clean_environment,
    filesource_records,
    option_line,
    parse_netlist,
    warn_trusted,
)
from thermotrain.netlists._writer import CLOCK_NODE, CLOCK_SOURCE, Netlist, format_number

logger = logging.getLogger(__name__)

Engine = Literal["shared", "batch"]
ENGINES: tuple[str, ...] = ("shared", "batch")
OptionValue = float | int | str | bool | None

INSTALL_HINT = "run `make setup` or `apt-get install ngspice libngspice0 libngspice0-dev`"
_DECK_NAME = "run.cir"
_RAW_NAME = "out.raw"
_HALT_GRACE_S = 10.0  # how long bg_halt may take to stop the background thread

# An analysis that ended early, and what ngspice says about non-convergence.
_ABORTED = re.compile(
    r"simulation\(s\) aborted|simulation interrupted|doAnalyses:|op failed|there aren't any circuits loaded"
    r"|no such vector",
    re.IGNORECASE,
)
_CONVERGENCE = re.compile(
    r"timestep too small|singular matrix|no convergence|non-convergence|convergence problem|gmin stepping"
    r" failed|source stepping failed|iteration limit|op failed",
    re.IGNORECASE,
)
_ERROR_LINE = re.compile(r"\berror\b", re.IGNORECASE)
#: an XSPICE device's own message (e.g. a filesource that cannot open its file).
_INSTANCE_MESSAGE = re.compile(r"^\s*Instance:\s*(\S+)\s+Message:\s*(.*\S)", re.IGNORECASE)
_INFO_PREFIX = re.compile(r"^\s*(note|warning|info)\b", re.IGNORECASE)
_VERSION = re.compile(r"ngspice-(\S+)")
#: copies of the output a run holds at its peak: ngspice's own vectors, the rawfile / read-back, the result.
OUTPUT_COPIES = 3

Stepping = Literal["adaptive", "noise-grid"]
STEPPINGS: tuple[str, ...] = get_args(Stepping)
#: "noise-grid" stepping: internal time points per noise interval NT (fixed trapezoidal steps of NT/4). With
#: the default NT = 0.2 / (fastest drift rate) that is h·|λ| <= 0.05 for every cell mode. The output step must
#: hold at least GRID_MIN_STEPS_PER_OUTPUT internal steps: the output is ngspice's '.options interp' grid,
#: exact (1e-12) when every output point is an internal point between others, but 15-16 % rms off the
#: internal points when the two steps are equal (rc8, N = 8-16, 2026-12-06); ngspice's own time points
#: cannot be read instead, because '.options interp' outlives its circuit in the shared library (a deck
#: without it is still resampled after any deck with it in the same process; no command was found to unset it).
GRID_STEPS_PER_INTERVAL = 4
GRID_MIN_STEPS_PER_OUTPUT = 2
#: "noise-grid" stepping of a circuit with stiff modes (h·|λ| > 1 at NT/4: a board's amplifier poles, output
#: stages and generator filters): NT/8. The trapezoidal rule does not damp a stiff mode (its step factor
#: tends to -1), so the kinks of the piecewise-linear noise at every sample ring on; against a fine run
#: with the same noise (rc8 board, N = 16, 200 τ) the covariance moves 1.7e-3 at NT/4 and 4.1e-4 at NT/8
#: (ngspice's defaults 1.9e-4); rlc8 board N = 8: 1.5e-4 / 3.7e-5.
GRID_STEPS_STIFF = 8
#: "noise-grid" stepping: one temporary breakpoint at NT puts the fixed steps on the noise samples t_k
#: (ngspice's first steps after t = 0 are a doubling ramp off the grid); the clock's next corner is
#: GRID_CLOCK_PERIOD_INTERVALS * NT later, beyond any run here. Corners every 100 NT were tried: where the
#: accumulated time lands a rounding error short of a corner, ngspice takes a step of that size and ramps
#: back up (25 off-grid steps each; rms trace error 4.7e-3 instead of 6e-4 on an RC cell).
GRID_CLOCK_PERIOD_INTERVALS = 1e7
#: "noise-grid" stepping: chgtol 1e-6 C lifts the local-truncation-error bound above any charge error of
#: these circuits, so tmax = NT/grid_steps alone sets the step (reltol, abstol and vntol, i.e. the Newton
#: convergence of the nonlinear clamps, stay at ngspice's defaults).
GRID_OPTIONS: dict[str, float] = {"chgtol": 1e-6}
#: the writer's noise clock line (``_writer``: CLOCK_SOURCE CLOCK_NODE 0 dc 0 trnoise(0 NT 0 0)); group 1 = NT
_CLOCK_LINE = re.compile(
    rf"(?im)^[ \t]*{CLOCK_SOURCE}[ \t]+{CLOCK_NODE}[ \t]+0[ \t]+dc[ \t]+0[ \t]+"
    r"trnoise\([ \t]*0[ \t]+(\S+)[ \t]+0[ \t]+0[ \t]*\)[ \t]*$"
)


@dataclass(frozen=True)
class Transient:
    """A transient run on a uniform grid.

    time: [T] seconds, ``start + step * arange(T)`` (ngspice's interpolated grid agrees within 1e-3 step; it
        accumulates rounding, about 3e-6 step after 1e5 points).
    values: [T, P] node voltages (V) of ``probes``, in order. Both arrays are read-only.
    ngspice_version: e.g. ``"39"``. wall_s: seconds spent in ngspice (load + run + read-back).
    engine: the engine that actually ran (``"batch"`` after a fallback). messages: ngspice's output lines.
    """

    time: np.ndarray = field(compare=False, repr=False)
    values: np.ndarray = field(compare=False, repr=False)
    probes: tuple[str, ...]
    ngspice_version: str
    wall_s: float
    engine: str
    messages: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class SpiceJob:
    """A picklable transient run for :func:`run_many`; fields as in :func:`run_transient` (seconds)."""

    netlist: Netlist
    step: float
    stop: float
    start: float = 0.0
    probes: tuple[str, ...] | None = None
    engine: str = "shared"
    timeout: float = 600.0
    options: Mapping[str, OptionValue] | None = None
    #: a noise-free netlist of the same circuit (``write_netlist(circuit, noise="off")``): the run starts at
    #: its DC operating point (:func:`quiet_start`, solved in the worker, so a failure is this run's) instead
    #: of the operating point of ``netlist``, which holds the t = 0 file-noise sample as a DC current
    quiet: Netlist | None = None
    #: ``run_transient``'s ``stepping`` ("adaptive" or "noise-grid") and ``grid_steps``
    stepping: str = "adaptive"
    grid_steps: int = GRID_STEPS_PER_INTERVAL


# --------------------------------------------------------------------------------------------- public API


def ngspice_version() -> str:
    """Version of the ngspice that runs (e.g. ``"39"``): from the shared library when it loads, else from
    ``ngspice -v``. Raises SpiceNotFoundError when neither exists."""
    try:
        with _LOCK:
            return _shared().version
    except _SharedUnavailable:
        return _binary_version(_binary())


def run_transient(
    netlist: Netlist,
    *,
    step: float,
    stop: float,
    start: float = 0.0,
    probes: Sequence[str] | None = None,
    engine: Engine = "shared",
    timeout: float = 600.0,
    options: Mapping[str, OptionValue] | None = None,
    initial_conditions: Mapping[str, float] | None = None,
    max_output_bytes: float | None = None,
    stepping: Stepping = "adaptive",
    grid_steps: int = GRID_STEPS_PER_INTERVAL,
) -> Transient:
    """Transient analysis (``.options interp``): node voltages of ``probes`` (default
    ``netlist.probes``) on the grid ``start + k*step`` up to ``stop`` (s), k = 0 .. floor((stop-start)/step).
    ``start`` is 0 or >= ``step`` (ngspice is asked to save from ``start - step`` and that extra point is
    dropped; ngspice 39's interpolated output can miss the point at exactly ``tstart``).

    engine: ``"shared"`` (PySpice ``NgSpiceShared``; falls back to batch if the library cannot load) or
        ``"batch"`` (``ngspice -b``). timeout: wall-clock limit (s). options: extra ``.options``
        (e.g. ``{"reltol": 1e-4, "method": "gear"}``; ``True``/``None`` = bare flag).
    initial_conditions: node -> V; the run starts from them (``.ic`` + ``uic``: capacitor voltages follow,
        inductor currents and unlisted nodes start at 0) instead of the DC operating point.
    max_output_bytes: refuse (ResourceLimitError, before ngspice starts) a run whose estimated output,
        points x (probes + time) x 8 bytes x ``OUTPUT_COPIES``, is larger; None: no limit.
    stepping: ``"adaptive"`` (ngspice's own step control; a file-noise netlist's TRNOISE clock forces a
        time point on every noise sample, 5-7 per NT) or ``"noise-grid"`` (file noise only: fixed
        trapezoidal steps of NT/``grid_steps`` on the noise samples, see :func:`_noise_grid`; ``step``
        must be a multiple of GRID_MIN_STEPS_PER_OUTPUT such steps; a circuit with stiff modes needs
        GRID_STEPS_STIFF, see :func:`thermotrain.netlists._validation.noise_grid_steps`). Measured against a
        fine run on rc8 and rlc8 (``benchmarks/spice_clock.py``, docs/benchmarks.md).
    Probe and initial-condition names must be node names of the netlist (``[A-Za-z0-9_]{1,64}``); options
    come from the allowlist of ``_safety`` (``option_line``). The netlist text runs only as the canonical
    text of the allowlist parser (unless ``netlist.trusted``).
    Cost: ngspice time grows with the number of internal steps (file/TRNOISE noise: ~4.5 per noise
    interval NT) times the cost of a factorization (dense coupling: O(N^3) on ngspice 39's Sparse 1.3).
    Raises SpiceConvergenceError, SpiceTimeoutError, SpiceNotFoundError, SpiceError; InputError (a
    ValueError) for bad arguments (a probe that is not a node, a run longer than the file-noise record),
    NetlistSecurityError for text outside the allowlist, ResourceLimitError above ``max_output_bytes``.
    """
    step = check_float("step", step, minimum=0.0, strict_min=True, unit="s")
    start = check_float("start", start, minimum=0.0, unit="s")
    stop = check_float("stop", stop, unit="s")
    if stop - start < step:
        raise InputError(f"stop={stop!r} s must be >= start + step = {start + step!r} s.")
    if 0 < start < step:
        raise InputError(
            f"start={start!r} s must be 0 or >= step={step!r} s (see run_transient's docstring)."
        )
    _check_timeout(timeout)
    body, nodes = _checked_body(netlist)
    probes = _check_probes(netlist, nodes, probes)
    if stepping not in STEPPINGS:
        raise InputError(f"stepping={stepping!r} is not one of {', '.join(STEPPINGS)}.")
    tmax = None
    if stepping == "noise-grid":
        grid_steps = check_int("grid_steps", grid_steps, minimum=GRID_MIN_STEPS_PER_OUTPUT)
        body, options, tmax = _noise_grid(netlist, body, step, options, grid_steps)
    n_points = math.floor((stop - start) / step + 1e-9) + 1
    _check_output_size(n_points, len(probes), max_output_bytes)
    # Run past stop: ngspice 39 emits its final time point raw, and drops an interpolated grid point that
    # lies in the same (last) internal step. One step more (or, with file noise, up to the next noise
    # breakpoint, which ends an internal step) makes stop an interior grid point.
    sim_stop = stop + (step if netlist.noise_samples is None else min(step, netlist.noise_interval))
    # ... and start saving one step early: its interp grid may skip the first point when no internal time
    # point falls exactly on tstart (measured on ngspice 39); the grid stays anchored at start.
    sim_start = start - step if start > 0 else 0.0
    if sim_stop > netlist.noise_end + 1e-6 * netlist.noise_interval:
        raise InputError(
            f"stop={stop!r} s is past the file-noise record of {netlist.title!r}, which ends at "
            f"{netlist.noise_end!r} s; write the netlist with duration >= stop - start (or start + duration "
            f">= stop)."
        )
    files = _data_files(netlist)
    _check_external_record(netlist, body, files, sim_stop, stop, start)
    ics = _ic_lines(netlist, nodes, initial_conditions)
    analysis = [
        *ics,
        *_options_lines(options),
        f".tran {format_number(step)} {format_number(sim_stop)} {format_number(sim_start)}"
        + ("" if tmax is None else f" {format_number(tmax)}")
        + (" uic" if ics else ""),
    ]
    vectors, messages, version, used, wall = _run(files, body, analysis, probes, engine, timeout, "time")
    if ics and start == 0 and vectors["time"].size and vectors["time"][0] > 0.5 * step:
        # under uic ngspice 39 does not output t = 0: that row is the initial condition itself
        ic = {k.lower(): float(v) for k, v in (initial_conditions or {}).items()}
        vectors = dict(vectors)
        vectors["time"] = np.concatenate([[0.0], vectors["time"]])
        for p in probes:
            key = f"v({p})".lower()
            vectors[key] = np.concatenate([[ic.get(p.lower(), 0.0)], vectors[key]])
    first = int(np.searchsorted(vectors["time"], start - 1e-6 * step))
    t = vectors["time"][first:]
    if t.size < n_points:
        raise SpiceError(
            f"ngspice returned {t.size} time points, expected {n_points} (step {step!r} s from {start!r} to "
            f"{stop!r} s); messages: {_tail(messages)}"
        )
    grid = start + step * np.arange(n_points, dtype=np.float64)
    drift = float(np.max(np.abs(t[:n_points] - grid)))
    if drift > 1e-3 * step:
        raise SpiceError(
            f"ngspice's output grid is off the uniform grid by {drift:.3g} s (step {step!r} s): "
            "'.options interp' did not take effect. Check the ngspice build (ngspice >= 26 needed)."
        )
    values = np.column_stack([vectors[f"v({p})".lower()][first : first + n_points] for p in probes])
    grid.setflags(write=False)
    values.setflags(write=False)
    return Transient(grid, values, probes, version, wall, used, messages)


def _noise_grid(
    netlist: Netlist,
    body: str,
    step: float,
    options: Mapping[str, OptionValue] | None,
    steps_per_interval: int = GRID_STEPS_PER_INTERVAL,
) -> tuple[str, dict[str, OptionValue], float]:
    """The deck changes of ``stepping="noise-grid"``: (body, options, tmax).

    A file-noise netlist's TRNOISE clock sets a *permanent* breakpoint on every noise sample t_k = k·NT,
    and ngspice cuts the step after each to a tenth and doubles it back (~5 time points per NT, each
    backward Euler first). Here the clock is replaced by a zero-amplitude XSPICE ``triangle`` whose first
    corner (a temporary breakpoint: no step cut) falls at NT and the next GRID_CLOCK_PERIOD_INTERVALS·NT
    later, and the step is fixed at tmax = NT/``steps_per_interval`` (GRID_OPTIONS lifts the
    truncation-error bound), so every t_k is a time point of a trapezoidal step, the piecewise-linear noise
    is integrated exactly, and the only error is the trapezoidal rule's at that step. The replacement lines
    are the runner's own, like ``.tran``. ``step`` (the output grid, read with ``.options interp``) must be a
    multiple of GRID_MIN_STEPS_PER_OUTPUT internal steps: equal steps are resampled wrongly."""
    nt = netlist.noise_interval
    if netlist.noise_samples is None or nt is None:
        raise InputError(
            f"stepping='noise-grid' needs a file-noise netlist (write_netlist(noise='file')); "
            f"{netlist.title!r} has none. Use stepping='adaptive'."
        )
    h = nt / steps_per_interval
    ratio = step / h
    if abs(ratio - round(ratio)) > 1e-9 * ratio or round(ratio) < GRID_MIN_STEPS_PER_OUTPUT:
        raise InputError(
            f"step={step!r} s is not a multiple of {GRID_MIN_STEPS_PER_OUTPUT} x NT/{steps_per_interval} = "
            f"{GRID_MIN_STEPS_PER_OUTPUT * h!r} s (internal steps of stepping='noise-grid' per output step); "
            "pick such a step, more grid_steps, or stepping='adaptive'."
        )
    clocks = list(_CLOCK_LINE.finditer(body))
    if len(clocks) != 1 or not math.isclose(float(clocks[0].group(1)), nt, rel_tol=1e-12):
        raise InputError(
            f"stepping='noise-grid' needs the writer's noise clock (Vtt_clk, TRNOISE every NT = {nt!r} s) in "
            f"{netlist.title!r}; found {len(clocks)} matching line(s). Use stepping='adaptive'."
        )
    m = GRID_CLOCK_PERIOD_INTERVALS
    freq = format_number(1.0 / (m * nt))
    grid_clock = "\n".join(
        (
            f"A_ttgrid tt_gridc {CLOCK_NODE} tt_grid",
            "V_ttgridc tt_gridc 0 dc 0",
            f".model tt_grid triangle(cntl_array=[-1 1] freq_array=[{freq} {freq}] out_low=0 out_high=0 "
            f"duty_cycle={format_number(1.0 / m)})",
        )
    )
    c = clocks[0]
    body = body[: c.start()] + grid_clock + body[c.end() :]
    return body, {**GRID_OPTIONS, **(options or {})}, h


def _ic_lines(
    netlist: Netlist, nodes: tuple[str, ...] | None, initial_conditions: Mapping[str, float] | None
) -> list[str]:
    """``.ic v(node)=V`` lines (used with ``uic``: the run starts from these node voltages, capacitor
    voltages follow from them, inductor currents start at 0). Node names are checked against the strict
    pattern and the netlist's nodes before they enter the deck."""
    if not initial_conditions:
        return []
    if not isinstance(initial_conditions, Mapping):
        raise InputError(
            f"initial_conditions must be a mapping node -> V, not {type(initial_conditions).__name__}."
        )
    known = None if nodes is None else {n.lower() for n in nodes}
    lines = []
    for node, v in initial_conditions.items():
        check_name("initial condition node", node, node=True)
        if known is not None and node.lower() not in known:
            raise InputError(f"initial condition for {node!r}: not a node of {netlist.title!r}.")
        value = check_float(f"initial condition v({node})", v, unit="V")
        lines.append(f".ic v({node})={format_number(value)}")
    return lines


def _check_output_size(n_points: int, n_probes: int, limit: float | None) -> None:
    """Refuse a run whose output would pass ``limit`` bytes (see run_transient)."""
    if limit is None:
        return
    estimate = float(n_points + 2) * (n_probes + 1) * 8 * OUTPUT_COPIES
    if estimate > limit:
        raise ResourceLimitError(
            f"the run would produce {n_points} points x ({n_probes} probes + time) x 8 bytes x "
            f"{OUTPUT_COPIES} copies = about {estimate / 2**20:.4g} MB, above the limit of "
            f"{limit / 2**20:.4g} MB; use a larger step, a shorter stop, fewer probes, or raise the limit "
            "(--max-output-mb)."
        )


def run_operating_point(
    netlist: Netlist,
    probes: Sequence[str] | None = None,
    *,
    engine: Engine = "shared",
    timeout: float = 600.0,
    options: Mapping[str, OptionValue] | None = None,
) -> np.ndarray:
    """DC operating point (``.op``): node voltages (V) of ``probes`` (default ``netlist.probes``), [P].

    The netlist must carry no file noise (the filesource's value at t = 0 would enter the DC solution):
    write it with ``noise="off"`` (``"trnoise"`` is accepted: its DC value is 0). Cost: one Newton solve.
    """
    if netlist.mode == "file" and netlist.noise_samples is not None:
        raise InputError(
            f"run_operating_point needs a noise-free netlist; {netlist.title!r} has file noise. "
            "Write it with write_netlist(circuit, noise='off')."
        )
    _check_timeout(timeout)
    body, nodes = _checked_body(netlist)
    probes = _check_probes(netlist, nodes, probes)
    analysis = [*_options_lines(options), ".op"]
    vectors, messages, _, _, _ = _run(_data_files(netlist), body, analysis, probes, engine, timeout, None)
    out = np.array([vectors[f"v({p})".lower()][0] for p in probes], dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise SpiceConvergenceError(
            f"ngspice's operating point is not finite: {out}; messages: {_tail(messages)}"
        )
    return out


def quiet_start(netlist: Netlist, *, engine: Engine = "shared", timeout: float = 600.0) -> dict[str, float]:
    """``{node: V}`` for every node of ``netlist`` (a noise-free netlist: ``write_netlist(circuit,
    noise="off")``) at its DC operating point: the ``initial_conditions`` of a file-noise transient of the
    same circuit, so the run starts where the device sits before its noise is switched on.

    Without them ngspice's operating point of a file-noise netlist holds the filesource's value at t = 0 as
    a DC current: one sample of variance S/NT, i.e. an offset of about sqrt(2 tau/NT) stationary standard
    deviations per cell, amplified by the array's condition number. A linear array forgets it within the
    burn-in; an amplifier with an output swing can start clamped (rc8 board: 1 run in 8 at +4.69 V), and
    its macro-model's dominant-pole node, held at A0 times the input error, then unwinds at the slew rate
    for hundreds of tau. Cost: one Newton solve."""
    nodes = tuple(netlist.nodes)
    if not nodes:
        raise InputError(
            f"quiet_start needs a netlist written by write_netlist; {netlist.title!r} lists no nodes."
        )
    values = run_operating_point(netlist, probes=nodes, engine=engine, timeout=timeout)
    return {node: float(v) for node, v in zip(nodes, values, strict=True)}


# ------------------------------------------------------------------------------------------- the deck


def _check_timeout(timeout: float) -> None:
    check_float("timeout", timeout, minimum=0.0, strict_min=True, unit="s")


def _checked_body(netlist: Netlist) -> tuple[str, tuple[str, ...] | None]:
    """The text ngspice will run and the netlist's top-level nodes: the canonical text of the allowlist
    parser (data files allowed: the netlist's own noise and external files) and the nodes it found (empty:
    the netlist has no element), or, for a trusted netlist, its raw text after a warning line on stderr and
    the nodes it lists (None when it lists none: unknown, not checked)."""
    if not isinstance(netlist, Netlist):
        raise InputError(
            f"netlist must be a Netlist (write_netlist / load_netlist), not {type(netlist).__name__}."
        )
    if netlist.trusted:
        lines = netlist.text.lstrip("\ufeff").splitlines()[1:]  # line 1 is the title
        if not any(ln.strip() and ln.lstrip()[0] != "*" and ln.strip().lower() != ".end" for ln in lines):
            raise InputError(
                f"netlist {netlist.title!r} holds no card after its title line (only blanks, comments, .end): "
                "there is nothing to simulate; pass a netlist with elements (e.g. 'R1 a 0 1k')."
            )
        warn_trusted(f"netlist {netlist.title!r}")
        return netlist.text, (netlist.nodes or None)
    provided = [*netlist.noise_files, *(name for name, _ in netlist.external_files)]
    checked = parse_netlist(netlist.text, source=f"netlist {netlist.title!r}", provided_files=provided)
    return checked.text, checked.nodes


def _check_probes(
    netlist: Netlist, nodes: tuple[str, ...] | None, probes: Sequence[str] | None
) -> tuple[str, ...]:
    """The probes to read, each a node of the netlist (``nodes`` None: unknown, names checked only); an
    empty ``nodes`` (a netlist without elements) is refused before ngspice runs."""
    if isinstance(probes, str):
        raise InputError(f"probes={probes!r} must be a sequence of node names, not one string.")
    chosen = tuple(netlist.probes if probes is None else probes)
    if not chosen:
        raise InputError(f"no probes: netlist {netlist.title!r} has no outputs; pass probes=[node, ...].")
    for p in chosen:
        check_name("probe", p, node=True)
    if nodes is not None and not nodes:
        raise InputError(
            f"netlist {netlist.title!r} has no element cards (no nodes), so there is nothing to simulate "
            f"and no node {chosen[0]!r} to probe; pass a netlist with elements (e.g. 'R1 a 0 1k')."
        )
    if nodes is not None:
        known = {n.lower() for n in nodes}
        unknown = [p for p in chosen if p.lower() not in known]
        if unknown:
            shown = list(nodes) if len(nodes) <= 40 else [*nodes[:40], "..."]
            raise InputError(f"probes {unknown} are not nodes of netlist {netlist.title!r}; nodes: {shown}")
    return chosen


def _options_lines(options: Mapping[str, OptionValue] | None, *, interp: bool = True) -> list[str]:
    if options is not None and not isinstance(options, Mapping):
        raise InputError(f"options must be a mapping name -> value, not {type(options).__name__}.")
    extra = [option_line(key, value) for key, value in (options or {}).items()]
    return [".options interp", *extra] if interp else extra


def _deck(body: str, analysis: list[str], probes: tuple[str, ...], batch: bool) -> str:
    lines = body.rstrip("\n").split("\n")
    if lines and lines[-1].strip().lower() == ".end":
        lines.pop()
    save = " ".join(f"v({p})" for p in probes)
    lines += [f".save {save}", *analysis]
    if batch:
        lines += [".control", "set filetype=binary", "run", f"write {_RAW_NAME}", ".endc"]
    lines.append(".end")
    return "\n".join(lines) + "\n"


def _data_files(netlist: Netlist) -> dict[str, tuple[bytes, float]]:
    """``{file name: (bytes, end of record in s)}`` of every data file the netlist's text names: the
    writer's noise files (rendered now) and the external files of a loaded netlist, each read once and
    checked (:func:`~thermotrain.netlists._safety.check_data_file`: a regular file under the ``noise`` cap,
    numbers only); the runner copies exactly these bytes into its private folder."""
    out: dict[str, tuple[bytes, float]] = {
        name: (text.encode("ascii"), netlist.noise_end) for name, text in netlist.noise_file_texts().items()
    }
    for name, src in netlist.external_files:
        checked = check_data_file(src, what=f"data file {name!r} of netlist {netlist.title!r}")
        out[name] = (checked.data, checked.t_end)
    return out


def _check_external_record(
    netlist: Netlist,
    body: str,
    files: Mapping[str, tuple[bytes, float]],
    sim_stop: float,
    stop: float,
    start: float,
) -> None:
    """Refuse a run past the end of an external data file's record: filesource holds its last value
    there, so the noise would silently stop. Checked for filesource models with the default time
    mapping (timeoffset 0, timescale 1, absolute time), as ``thermotrain netlist`` writes them."""
    if not netlist.external_files:
        return
    for name, timing in filesource_records(body).items():
        if name not in files or timing is None or timing != (0.0, 1.0, False):
            continue
        end = files[name][1]
        if sim_stop > end * (1 + 1e-9):
            raise InputError(
                f"stop={stop!r} s is past the end of the noise record in {name!r} of {netlist.title!r}, which "
                f"ends at {end!r} s (the noise would stop there); use stop <= {end - (sim_stop - stop):.6g} s "
                f"(start {start!r} s) or write the netlist with a longer --duration."
            )  # fmt: skip


def _run(
    files: Mapping[str, tuple[bytes, float]],
    body: str,
    analysis: list[str],
    probes: tuple[str, ...],
    engine: str,
    timeout: float,
    scale: str | None,
) -> tuple[dict[str, np.ndarray], tuple[str, ...], str, str, float]:
    """Run the deck; return (vectors by lower-case name, messages, version, engine used, wall s).

    Private folder per run: ``deck/`` (the deck and its data files), ``cwd/`` (empty: ngspice's working
    directory in batch mode, where it writes the rawfile) and ``home/`` (empty: its HOME)."""
    if engine not in ENGINES:
        raise InputError(f"engine={engine!r} is not one of {', '.join(ENGINES)}.")
    names = [f"v({p})".lower() for p in probes] + ([scale] if scale else [])
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="thermotrain_ngspice_") as tmp:
        deck_dir, cwd, home = (Path(tmp, sub) for sub in ("deck", "cwd", "home"))
        for d in (deck_dir, cwd, home):
            d.mkdir()
        for name, (data, _) in files.items():  # the checked bytes, under the name the text uses
            Path(deck_dir, name).write_bytes(data)
        if engine == "shared":
            Path(deck_dir, _DECK_NAME).write_text(
                _deck(body, analysis, probes, batch=False), encoding="utf-8"
            )
            try:
                with _LOCK:
                    vectors, messages, version, wall = _shared().run(
                        Path(deck_dir, _DECK_NAME), names, timeout
                    )
                return vectors, messages, version, "shared", wall
            except _SharedUnavailable as exc:
                note = f"thermotrain: ngspice shared library unavailable ({exc}); ran `ngspice -b` instead"
                _warn_once(note)
                notes.append(note)
        binary = _binary()
        Path(deck_dir, _DECK_NAME).write_text(_deck(body, analysis, probes, batch=True), encoding="utf-8")
        vectors, messages, version, wall = _run_batch(
            binary, deck_dir / _DECK_NAME, cwd, home, names, timeout
        )
        return vectors, (*notes, *messages), version, "batch", wall


def _tail(messages: Sequence[str], n: int = 12) -> str:
    """The lines of ngspice's output that say what went wrong (errors, convergence), else the last n."""
    picked: list[str] = []
    for m in messages:
        s = m.strip()
        if s and (_ERROR_LINE.search(s) or _CONVERGENCE.search(s) or _ABORTED.search(s)) and s not in picked:
            picked.append(s)
    if not picked:
        picked = [m.strip() for m in messages if m.strip()][-n:]
    return " | ".join(picked[:n]) or "(no output)"


def ngspice_reason(messages: Sequence[str]) -> str | None:
    """ngspice's own words for why a run stopped, as one line, or None when it gave none: a device's
    message first (XSPICE ``Instance: NAME Message: ...``, e.g. ``cannot open file noise_1.dat``: the root
    cause, where the errors that follow are its consequences), else the first ``Error`` line, else the
    first convergence line."""
    for m in messages:
        hit = _INSTANCE_MESSAGE.match(m)
        if hit:
            return f"instance {hit.group(1)}: {' '.join(hit.group(2).split())}"
    for pattern in (_ERROR_LINE, _CONVERGENCE):
        for m in messages:
            if pattern.search(m) and not _INFO_PREFIX.match(m):
                return " ".join(m.split())
    return None


def _raise_for_messages(messages: Sequence[str], engine: str) -> None:
    """Raise if ngspice's output says the netlist did not load, a device reported a problem (XSPICE
    ``Instance: ... Message: ...``) or the analysis ended early. The message
    is ngspice's own reason (:func:`ngspice_reason`) in one line; a convergence failure without a device
    message is a SpiceConvergenceError with what usually helps."""
    load_errors = [m for m in messages if _ERROR_LINE.search(m) and not _INFO_PREFIX.match(m)]
    aborted = [m for m in messages if _ABORTED.search(m)]
    # a device's message is an error even when the run goes on: after an earlier run in the same shared
    # library, a filesource that cannot open its file plays zeros instead of failing the operating point
    device_message = any(_INSTANCE_MESSAGE.match(m) for m in messages)
    if not load_errors and not aborted and not device_message:
        return
    reason = ngspice_reason(messages) or _tail(messages, 3)
    if not device_message and aborted and any(_CONVERGENCE.search(m) for m in messages):
        raise SpiceConvergenceError(
            f"ngspice ({engine}) did not converge: {reason}. If the circuit is right (every node has a DC "
            "path to ground, no loop of voltage sources or inductors), try a smaller step or options such "
            "as {'reltol': 1e-4} / {'method': 'gear'}."
        )
    raise SpiceError(f"ngspice ({engine}) stopped: {reason}")


# ------------------------------------------------------------------------------------------ batch mode


def _find_binary() -> str | None:
    """The ``ngspice`` executable on PATH, or None."""
    return shutil.which("ngspice")


def _find_library() -> str | None:
    """The shared library: ``NGSPICE_LIBRARY_PATH`` when it names an existing file, else libngspice as the
    dynamic loader finds it, or None."""
    import ctypes.util

    path = os.environ.get("NGSPICE_LIBRARY_PATH")
    if path and os.sep in path:
        return path if Path(path).is_file() else None
    return ctypes.util.find_library("ngspice")


def ngspice_missing() -> str | None:
    """None when ngspice can run here (the ``ngspice`` binary on PATH or its shared library findable), else
    one line saying what is missing and how to install it (e.g. for skipping tests that need it)."""
    if _find_binary() is not None or _find_library() is not None:
        return None
    return f"ngspice was not found (no shared library libngspice, no `ngspice` on PATH); {INSTALL_HINT}"


def _binary() -> str:
    found = _find_binary()
    if found is None:
        raise SpiceNotFoundError(
            f"ngspice was not found (no shared library, no `ngspice` on PATH); {INSTALL_HINT}."
        )
    return found


_BINARY_VERSIONS: dict[str, str] = {}


def _binary_version(binary: str) -> str:
    if binary not in _BINARY_VERSIONS:
        try:
            out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpiceError(f"`{binary} -v` failed: {exc}") from exc
        match = _VERSION.search(out.stdout + out.stderr)
        _BINARY_VERSIONS[binary] = match.group(1) if match else "unknown"
    return _BINARY_VERSIONS[binary]


def _run_batch(
    binary: str, deck: Path, cwd: Path, home: Path, names: list[str], timeout: float
) -> tuple[dict[str, np.ndarray], tuple[str, ...], str, float]:
    """``ngspice -b -n DECK`` (``-n``: no ``.spiceinit``) in the empty folder ``cwd`` with HOME = the
    empty folder ``home`` and no ``SPICE_*``/``NGSPICE_*`` variables; the rawfile lands in ``cwd``."""
    version = _binary_version(binary)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [binary, "-b", "-n", str(deck)],
            cwd=cwd,
            env=clean_environment(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SpiceTimeoutError(
            f"ngspice -b ran past its {timeout:g} s limit and was killed; raise timeout= or shorten the run "
            "(fewer steps, fewer cells, sparser coupling)."
        ) from exc
    wall = time.perf_counter() - t0
    output = proc.stdout.decode("utf-8", "replace").replace("\r", "")
    messages = tuple(line.rstrip() for line in output.splitlines() if line.strip())
    if proc.returncode < 0:
        raise SpiceError(f"ngspice -b crashed (signal {-proc.returncode}); last output: {_tail(messages)}")
    _raise_for_messages(messages, "batch")
    raw = cwd / _RAW_NAME
    if not raw.exists():
        raise SpiceError(
            f"ngspice -b exited with status {proc.returncode} and wrote no data: {_tail(messages)}"
        )
    vectors = read_rawfile(raw)
    missing = [n for n in names if n not in vectors]
    if missing:
        raise SpiceError(f"ngspice -b output lacks vectors {missing}; it has {sorted(vectors)}")
    return vectors, messages, version, wall


def read_rawfile(path: str | Path) -> dict[str, np.ndarray]:
    """Read a binary ngspice rawfile (one real plot) into ``{lower-case vector name: values}``. The row
    count is taken from the data size (the header's can be wrong). The first occurrence of a name wins."""
    data = Path(path).read_bytes()
    marker = data.find(b"Binary:\n")
    if marker < 0:
        raise SpiceError(f"{path} is not a binary ngspice rawfile (no 'Binary:' section).")
    header = data[:marker].decode("ascii", "replace").splitlines()
    flags = next((h.split(":", 1)[1].strip() for h in header if h.startswith("Flags:")), "real")
    if "complex" in flags:
        raise SpiceError(f"{path} holds complex data; only real (transient/op) plots are supported.")
    n_vars = int(next(h.split(":", 1)[1] for h in header if h.startswith("No. Variables:")))
    first = header.index("Variables:") + 1
    names = [header[first + k].split("\t")[2].lower() for k in range(n_vars)]
    values = np.frombuffer(data[marker + len(b"Binary:\n") :], dtype="<f8")
    n_points = values.size // n_vars
    table = values[: n_points * n_vars].reshape(n_points, n_vars)
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(names):
        out.setdefault(name, table[:, k].copy())
    return out


# ----------------------------------------------------------------------------------------- shared mode

_LOCK = threading.Lock()  # one ngspice per process: every use of the shared library holds it
_SHARED: _SharedNgspice | None = None
_SHARED_BROKEN: str | None = None
_WARNED: set[str] = set()


class _SharedUnavailable(Exception):
    """The shared library cannot be used in this process (the caller falls back to batch mode)."""


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


def _library_path() -> str:
    """``NGSPICE_LIBRARY_PATH`` (PySpice's variable) if set, else the unversioned ``libngspice.so`` that
    libngspice0-dev installs."""
    return os.environ.get("NGSPICE_LIBRARY_PATH") or "libngspice.so"


def _shared() -> _SharedNgspice:
    """The process's shared ngspice, loaded on first use. Call with ``_LOCK`` held."""
    global _SHARED, _SHARED_BROKEN
    path = _library_path()
    if os.sep in path and not Path(path).is_file():
        raise _SharedUnavailable(f"NGSPICE_LIBRARY_PATH={path!r} does not exist")
    if _SHARED_BROKEN is not None:
        raise _SharedUnavailable(_SHARED_BROKEN)
    if _SHARED is None:
        try:
            with _clean_process_state():
                _SHARED = _SharedNgspice(path)
        except _SharedUnavailable as exc:
            _SHARED_BROKEN = str(exc)
            raise
    return _SHARED


@contextlib.contextmanager
def _clean_process_state() -> Iterator[None]:
    """For loading the shared library (it reads ``spinit`` and ``.spiceinit`` then): the process's cwd
    is an empty folder, HOME another empty folder, and ``SPICE_*``/``NGSPICE_*``/``USERPROFILE`` are unset;
    all restored afterwards. Call with ``_LOCK`` held (cwd and environment are process-wide)."""
    with tempfile.TemporaryDirectory(prefix="thermotrain_ngspice_init_") as tmp:
        cwd, home = Path(tmp, "cwd"), Path(tmp, "home")
        cwd.mkdir()
        home.mkdir()
        keys = [k for k in os.environ if k.startswith(("SPICE_", "NGSPICE_")) or k in ("USERPROFILE", "HOME")]
        saved = {k: os.environ[k] for k in keys}
        try:
            old_cwd: str | None = os.getcwd()
        except OSError:
            old_cwd = None
        try:
            for k in keys:
                del os.environ[k]
            os.environ["HOME"] = str(home)
            os.chdir(cwd)
            yield
        finally:
            if old_cwd is not None:
                with contextlib.suppress(OSError):
                    os.chdir(old_cwd)
            os.environ.pop("HOME", None)
            os.environ.update(saved)


class _SharedNgspice:
    """PySpice 1.5's ``NgSpiceShared`` with our own callbacks: all output kept as information (PySpice
    logs every stderr line as an error and fails commands on them), background-thread end signalled by an
    Event, and a controlled exit (fatal ngspice error) recorded instead of ignored."""

    def __init__(self, library_path: str) -> None:
        try:
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared, ffi, ffi_string_utf8
        except ImportError as exc:
            raise _SharedUnavailable(f"PySpice is not importable: {exc}") from exc
        logging.getLogger("PySpice").setLevel(logging.ERROR)
        self.lines: list[str] = []
        self.done = threading.Event()
        self.exit_status: str | None = None
        owner = self

        class _Library(NgSpiceShared):
            LIBRARY_PATH = library_path

            @staticmethod
            def _send_char(message_c: Any, ngspice_id: int, user_data: Any) -> int:
                message = ffi_string_utf8(message_c)
                prefix, _, content = message.partition(" ")
                lib = ffi.from_handle(user_data)
                (lib._stderr if prefix == "stderr" else lib._stdout).append(content)
                line = content.replace("\r", "").rstrip()
                if line:
                    owner.lines.append(line)
                return 0

            @staticmethod
            def _exit(status: int, immediate: bool, quit_exit: bool, ngspice_id: int, user_data: Any) -> int:
                owner.exit_status = (
                    f"ngspice exited (status {status}, unload={bool(immediate)}, quit={bool(quit_exit)})"
                )
                owner.done.set()
                return 0

            @staticmethod
            def _background_thread_running(not_running: bool, ngspice_id: int, user_data: Any) -> int:
                if not_running:  # ngspice passes true when the background thread has ended
                    owner.done.set()
                return 0

        self._ffi = ffi
        try:
            self._ng = _Library(ngspice_id=0, send_data=False, verbose=False)
        except OSError as exc:  # dlopen failed
            raise _SharedUnavailable(f"cannot load {library_path!r}: {exc}") from exc
        except Exception as exc:  # ngSpice_Init failed
            raise _SharedUnavailable(f"ngspice shared library failed to start: {exc}") from exc
        self._lib = self._ng._ngspice_shared
        self.lines.clear()
        self.command("version -f")
        match = next((m for m in map(_VERSION.search, self.lines) if m), None)
        self.version = match.group(1) if match else str(self._ng.ngspice_version)

    def command(self, command: str) -> None:
        rc = self._lib.ngSpice_Command(command.encode("utf-8"))
        if rc:
            raise SpiceError(f"ngspice command {command!r} returned {rc}; output: {_tail(self.lines)}")

    def vector(self, name: str) -> np.ndarray | None:
        info = self._lib.ngGet_Vec_Info(name.encode("utf-8"))
        if info == self._ffi.NULL or info.v_realdata == self._ffi.NULL:
            return None
        return np.frombuffer(self._ffi.buffer(info.v_realdata, info.v_length * 8), dtype=np.float64).copy()

    def run(
        self, deck: Path, names: list[str], timeout: float
    ) -> tuple[dict[str, np.ndarray], tuple[str, ...], str, float]:
        """Source ``deck``, run it in the background thread (halted after ``timeout`` s), read ``names``."""
        global _SHARED_BROKEN
        if any(c.isspace() for c in str(deck)):
            raise _SharedUnavailable(
                f"temporary path {str(deck)!r} holds whitespace; set TMPDIR to a plain path"
            )
        self.lines.clear()
        t0 = time.perf_counter()
        try:
            self.command(f"source {deck}")
            messages = tuple(self.lines)
            _raise_for_messages(messages, "shared")
            self.done.clear()
            self.command("bg_run")
            if not self.done.wait(timeout):
                self.command("bg_halt")
                if not self.done.wait(_HALT_GRACE_S):  # still running: never touch this library again
                    self.exit_status = _SHARED_BROKEN = "ngspice's background thread ignored bg_halt"
                raise SpiceTimeoutError(
                    f"ngspice (shared) ran past its {timeout:g} s limit and was halted; raise timeout= or "
                    "shorten the run (fewer steps, fewer cells, sparser coupling)."
                )
            wall = time.perf_counter() - t0
            messages = tuple(self.lines)
            if self.exit_status is not None:
                _SHARED_BROKEN = self.exit_status
                raise SpiceError(f"{self.exit_status} during the run: {_tail(messages)}")
            _raise_for_messages(messages, "shared")
            vectors: dict[str, np.ndarray] = {}
            for name in names:
                v = self.vector(name)
                if v is None:
                    raise SpiceError(f"ngspice (shared) produced no vector {name!r}: {_tail(messages)}")
                vectors[name] = v
            return vectors, messages, self.version, wall
        finally:
            if self.exit_status is None:
                self.command("destroy all")
                self.command("remcirc")
