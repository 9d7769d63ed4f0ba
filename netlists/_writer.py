"""Circuit -> SPICE netlist text (ngspice dialect), deterministic to the byte.

``write_netlist(circuit, noise=..., seed=..., duration=..., start=...)`` renders a
:class:`~thermotrain.circuits.Circuit` as a netlist *body*: elements, noise sources and the title, but no
analysis commands (``.tran``/``.op``/``.options``/``.control``). The runner (``_ngspice.py``) adds those.

Noise (every entry of ``circuit.noise_sources()``: explicit ``NoiseCurrent`` elements, then the Johnson
noise of each resistor with a temperature; two-sided PSD S in A^2/Hz) is a white current whose samples,
taken every NT = ``circuit.noise_interval``, have variance S/NT and are linearly interpolated, so its
low-frequency PSD is S. Three renderings:

- ``"file"`` (default, bit-reproducible): samples drawn in Python, played by an XSPICE ``filesource``
  (one column per source, linear interpolation) into nodes ``tt_nz<k>`` (1 V there = 1 A), and one VCCS
  ``G<name> n_p n_n tt_nz<k> 0 1`` per source. One filesource instance and file carry up to
  ``FILESOURCE_MAX_COLUMNS`` = 16 sources; more sources are split over several instances/files (ngspice
  39's filesource reads each line into a 512-byte buffer, so a row of more than ~20 full-precision columns
  is silently broken into garbage rows: measured with 40 columns). A zero-amplitude TRNOISE voltage
  source (``Vtt_clk``) puts a simulator breakpoint at every sample time k*NT: XSPICE code models set
  none, and without them ngspice steps across the corners of the piecewise-linear noise (measured: the
  played values missed the samples by up to ~100%).
- ``"trnoise"``: ``I<name> n_p n_n dc 0 trnoise(NA NT 0 0)`` with NA = sqrt(S/NT). ngspice 39 cannot seed
  it, so every run differs.
- ``"off"``: no noise elements (DC and deterministic runs).

Numbers are written with the shortest digits that round-trip the float64 (Python ``repr``), in exponent
notation. ngspice's own number parser is not correctly rounded: it reads them within a few ulp
(measured on ngspice 39: about 2/3 of random values exact, the rest 1-2 ulp off; ``%.17g`` and
``%.16e`` were no better). The file-noise samples (``%.17g``) reach ngspice bit-exactly: at the
breakpoints t_k the ``tt_nz`` node voltages equal the samples (measured); on the ``interp`` output grid
they agree to interpolation round-off (~1e-8 relative).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

import numpy as np

from thermotrain._args import check_float, check_seed
from thermotrain._errors import CircuitError, InputError, ResourceLimitError
from thermotrain._safeio import MiB, file_limit, read_regular, write_bytes_atomic, write_text_atomic
from thermotrain.circuits._elements import (
    GROUND,
    IDEAL_OPAMP_GAIN,
    VCCS,
    VCVS,
    Capacitor,
    Circuit,
    CurrentSource,
    Inductor,
    NoiseCurrent,
    Resistor,
    VoltageSource,
)

NoiseMode = Literal["file", "trnoise", "off"]
NOISE_MODES: tuple[str, ...] = ("file", "trnoise", "off")

#: sources per filesource instance/file: a row (time + 16 values of <= 24 characters) stays far below
#: the 512-byte line buffer of ngspice's filesource.
FILESOURCE_MAX_COLUMNS = 16
#: model, instance and node names the writer adds for file noise (checked against the circuit's names);
#: with more than FILESOURCE_MAX_COLUMNS sources, model and instance names get a suffix 1, 2, ...
NOISE_MODEL = "tt_noise"
NOISE_INSTANCE = "Att_noise"
CLOCK_SOURCE = "Vtt_clk"
CLOCK_NODE = "tt_clk"
NOISE_NODE_PREFIX = "tt_nz"

# ngspice treats these node names as ground (case-insensitively); a circuit node with such a name would
# be silently shorted to ground.
_GROUND_ALIASES = frozenset({"0", "gnd"})
_TITLE_SAFE = re.compile(r"[^\x20-\x7e]")


def format_number(x: float) -> str:
    """Shortest round-trip decimal of ``x`` in exponent notation (``1e+3``, ``1.2345e-9``, ``0``).

    Raises CircuitError for non-finite values: SPICE has no spelling for them.
    """
    x = float(x)
    if not math.isfinite(x):
        raise CircuitError(f"cannot write {x!r} into a netlist; SPICE values must be finite.")
    if x == 0.0:
        return "0"
    return f"{Decimal(repr(x)).normalize():e}"


def spice_name(letter: str, name: str) -> str:
    """SPICE instance name for element ``name`` of type ``letter`` (``R``, ``C``, ``L``, ``E``, ``V``,
    ``I``, ``G``, ``A``): the name itself when it already starts with that letter (any case), otherwise
    the letter prepended (``("R", "in")`` -> ``"Rin"``, ``("R", "R1")`` -> ``"R1"``)."""
    return name if name[:1].upper() == letter.upper() else f"{letter}{name}"


def noise_record_rows(total_time: float, noise_interval: float) -> int:
    """Rows of a file-noise record covering ``[0, total_time]`` plus one sample: ``ceil(T/NT) + 2`` rows
    at t_k = k*NT (a relative slack of 1e-9 absorbs round-off in T/NT), so the last row lies >= NT
    beyond T."""
    if not (math.isfinite(total_time) and total_time > 0):
        raise InputError(f"noise record length start + duration = {total_time!r} s must be finite and > 0.")
    rows = total_time / noise_interval
    if not math.isfinite(rows):
        raise InputError(f"noise record of {total_time!r} s at NT = {noise_interval!r} s has too many rows.")
    return math.ceil(rows - 1e-9) + 2


#: bytes one number takes in a noise file: ``%.17g`` (at most 24 characters) and a separator.
NOISE_BYTES_PER_NUMBER = 25


def noise_file_bytes(rows: int, n_sources: int) -> int:
    """Upper estimate (bytes) of the noise file(s) of ``rows`` rows and ``n_sources`` sources: every file
    has a time column, every number takes at most :data:`NOISE_BYTES_PER_NUMBER` bytes."""
    files = -(-n_sources // FILESOURCE_MAX_COLUMNS)
    return int(rows) * (n_sources + files) * NOISE_BYTES_PER_NUMBER


def check_noise_size(rows: int, n_sources: int, *, what: str = "duration") -> None:
    """Refuse (ResourceLimitError, before anything is drawn or written) a noise record whose files would
    pass the ``noise`` file cap of :mod:`thermotrain._safeio` (``THERMOTRAIN_MAX_NOISE_MB``): such a file
    could not be read back, and drawing it needs about a third of that in memory."""
    size = noise_file_bytes(rows, n_sources)
    limit = file_limit("noise")
    if size > limit:
        raise ResourceLimitError(
            f"the file-noise record would be about {size / MiB:.4g} MB ({rows} rows x {n_sources} sources "
            f"(+ a time column per file) x {NOISE_BYTES_PER_NUMBER} bytes per number), above the "
            f"{limit / MiB:.4g} MB limit for a noise file; shorten the {what}, use fewer cells or "
            "noise='trnoise', or raise THERMOTRAIN_MAX_NOISE_MB."
        )


def draw_noise(seed: int, n_rows: int, psd: np.ndarray, noise_interval: float) -> np.ndarray:
    """Noise currents (A), shape [n_rows, n_src]: ``default_rng(seed).standard_normal((n_rows, n_src))``
    (time-major: row k holds every source at t = k*NT, columns in ``noise_sources()`` order) times
    NA = sqrt(S/NT) per column. The draw depends only on seed, n_src and n_rows, and a longer record
    starts with the rows of a shorter one. Cost: O(n_rows * n_src)."""
    psd = np.asarray(psd, dtype=np.float64)
    amplitude = np.sqrt(psd / noise_interval)
    z = np.random.default_rng(seed).standard_normal((n_rows, psd.size))
    return z * amplitude[None, :]


def noise_file_text(samples: np.ndarray, noise_interval: float) -> str:
    """The filesource data file: one line per row, ``t_k i_1 ... i_n`` with t_k = k*NT (s) and the
    currents (A, 1 V = 1 A on the ``tt_nz`` nodes), all ``%.17g`` (round-trips float64)."""
    times = np.arange(samples.shape[0], dtype=np.float64) * noise_interval
    table = np.column_stack([times, samples])
    row_format = " ".join(["%.17g"] * table.shape[1])
    return "".join(row_format % tuple(row) + "\n" for row in table.tolist())


@dataclass(frozen=True)
class Netlist:
    """A rendered netlist body plus what the runner needs to run it.

    text: the netlist (title comment, elements, noise, ``.end``), no analysis commands.
    noise_samples: file-noise currents (A), shape [K+1, n_src], row k at t = k*noise_interval, columns
        in ``Circuit.noise_sources()`` order; ``None`` unless ``mode == "file"`` with at least one source.
        Read-only.
    noise_interval: NT (s) of every noise source.
    probes: default node names to read (the circuit's outputs, in cell order).
    title: circuit title. seed: the noise seed (only ``"file"`` noise honours it). mode: noise rendering.
    noise_files: the file names the text refers to (``noise_<sha256 prefix>.dat``, or ``..._<j>.dat``
        per group of 16 sources; lower case because ngspice lowercases netlist text); the runner writes
        them next to its copy of the netlist in a private temporary directory, ``save`` beside the
        ``.cir``. Empty without file noise.
    noise_names: names of the noise sources, in column order.
    nodes: every node name of the text (circuit nodes, then helper nodes), for probe checks.
    external_files: ``(name in text, source path)`` of data files a netlist loaded from outside names
        (:func:`~thermotrain.netlists.load_netlist`); written beside the deck from their source.
    trusted: run ``text`` without the allowlist check (only :func:`load_netlist` with ``trusted=True``
        sets it; every run then prints a warning line).
    """

    text: str
    noise_samples: np.ndarray | None = field(compare=False, repr=False)
    noise_interval: float
    probes: tuple[str, ...]
    title: str
    seed: int
    mode: str
    noise_files: tuple[str, ...] = ()
    noise_names: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    external_files: tuple[tuple[str, str], ...] = ()
    trusted: bool = False

    @property
    def noise_end(self) -> float:
        """Last time (s) the file-noise record covers (``inf`` for ``trnoise``/``off``)."""
        if self.noise_samples is None:
            return math.inf
        return (self.noise_samples.shape[0] - 1) * self.noise_interval

    def noise_file_texts(self) -> dict[str, str]:
        """``{file name: contents}`` of ``noise_files`` (see :func:`noise_file_text`); file j holds
        sources 16j .. 16j+15. Empty without file noise."""
        if self.noise_samples is None:
            return {}
        groups = _column_groups(self.noise_samples.shape[1])
        return {
            name: noise_file_text(self.noise_samples[:, cols], self.noise_interval)
            for name, cols in zip(self.noise_files, groups, strict=True)
        }

    def data_files(self) -> dict[str, bytes]:
        """``{file name: contents}`` of every data file the text names: the noise files, then the
        external files (re-read now: a regular file under the ``noise`` cap)."""
        out = {name: text.encode("ascii") for name, text in self.noise_file_texts().items()}
        for name, src in self.external_files:
            out[name] = read_regular(src, "noise", what=f"data file {name!r} of {self.title!r}")
        return out

    def write_files(self, directory: str | Path, netlist_name: str) -> tuple[Path, ...]:
        """Write the data files (noise files, external files) into ``directory`` and then ``text`` as
        ``directory/netlist_name``, each atomically (a temporary file and a rename); return the paths,
        netlist first. The netlist comes last so it never names a file that was not written. Used by
        ``save`` and by the runner (in a fresh private folder per run)."""
        directory = Path(directory)
        written = []
        for name, data in self.data_files().items():
            written.append(write_bytes_atomic(directory / name, data))
        cir = write_text_atomic(directory / netlist_name, self.text)
        return (cir, *written)

    def save(self, path: str | Path) -> tuple[Path, ...]:
        """Write the netlist to ``path`` (e.g. ``FILE.cir``) and, with file noise, its noise data beside
        it under ``noise_files`` (ngspice resolves those relative names against the netlist's folder).
        Returns the paths written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return self.write_files(path.parent, path.name)


def write_netlist(
    circuit: Circuit,
    *,
    noise: NoiseMode = "file",
    seed: int = 0,
    duration: float | None = None,
    start: float = 0.0,
) -> Netlist:
    """Render ``circuit`` as an ngspice netlist body (no analysis commands). Pure and deterministic:
    the same circuit, noise mode, seed and record length give the same bytes.

    noise: ``"file"`` (seeded samples through XSPICE filesource; needs ``duration``), ``"trnoise"``
        (ngspice TRNOISE, unseedable in ngspice 39) or ``"off"``.
    seed: seed of ``numpy.random.default_rng`` for file noise (stored, ignored by the other modes).
    duration, start (s): the run will save ``[start, start + duration]``; file noise covers
        ``[0, start + duration]`` plus one sample (``ceil((start + duration)/NT) + 2`` rows).
    Cost: O(elements + rows * sources) time; the file-noise samples are held in memory (8 bytes each).
    """
    if not isinstance(noise, str) or noise not in NOISE_MODES:
        raise InputError(f"noise={noise!r} is not one of {', '.join(NOISE_MODES)}.")
    seed = check_seed("seed", seed)
    start = check_float("start", start, minimum=0.0, unit="s")
    if duration is not None:
        duration = check_float("duration", duration, minimum=0.0, strict_min=True, unit="s")
    nt = float(circuit.noise_interval)
    sources = circuit.noise_sources() if noise != "off" else []
    if noise == "file" and sources and duration is None:
        raise InputError(
            "noise='file' needs duration (s): the noise record must cover [0, start + duration]. "
            "Pass duration=stop - start of the run you plan, or use noise='trnoise'."
        )

    body: list[str] = []
    element_names: list[str] = []
    for e in circuit.elements:
        if isinstance(e, Resistor) and e.current_limit is not None:
            # slew limit: the resistor's current, clamped (linear region: exactly the resistor)
            lim, r = format_number(e.current_limit), format_number(e.ohms)
            expr = f"max(min((v({e.n1})-v({e.n2}))/{r},{lim}),-{lim})"
            body.append(_line(spice_name("B", e.name), e.n1, e.n2, f"I={{{expr}}}"))
        elif isinstance(e, Resistor):
            body.append(_line(spice_name("R", e.name), e.n1, e.n2, format_number(e.ohms)))
        elif isinstance(e, Capacitor):
            body.append(_line(spice_name("C", e.name), e.n1, e.n2, format_number(e.farads)))
        elif isinstance(e, Inductor):
            body.append(_line(spice_name("L", e.name), e.n1, e.n2, format_number(e.henries)))
        elif isinstance(e, VCVS) and e.output_limit is not None:
            # output swing: the VCVS, clamped (linear region: exactly the VCVS)
            lim, g = format_number(e.output_limit), format_number(e.gain)
            terms = [f"v({e.in_p})"] if e.in_p != GROUND else []
            terms += [f"-v({e.in_n})"] if e.in_n != GROUND else []
            ctrl = f"({''.join(terms) or '0'})"
            expr = f"max(min({g}*{ctrl},{lim}),-{lim})"
            body.append(_line(spice_name("B", e.name), e.out_p, e.out_n, f"V={{{expr}}}"))
        elif isinstance(e, VCVS):
            gain = math.copysign(IDEAL_OPAMP_GAIN, e.gain) if math.isinf(e.gain) else e.gain
            body.append(_line(spice_name("E", e.name), e.out_p, e.out_n, e.in_p, e.in_n, format_number(gain)))
        elif isinstance(e, VCCS):
            body.append(_line(spice_name("G", e.name), e.n_p, e.n_n, e.c_p, e.c_n, format_number(e.gm)))
        elif isinstance(e, CurrentSource):
            body.append(_line(spice_name("I", e.name), e.n_p, e.n_n, "dc", format_number(e.amps)))
        elif isinstance(e, VoltageSource):
            body.append(_line(spice_name("V", e.name), e.n_p, e.n_n, "dc", format_number(e.volts)))
        elif isinstance(e, NoiseCurrent):
            continue  # rendered with the other noise sources below, in noise_sources() order
        else:  # pragma: no cover - Element is a closed union
            raise CircuitError(f"element {e!r} has no SPICE rendering.")
        element_names.append(body[-1].split(" ", 1)[0])

    circuit_nodes = circuit.nodes()
    helper_nodes: list[str] = []
    noise_lines: list[str] = []
    samples: np.ndarray | None = None
    noise_files: tuple[str, ...] = ()
    if sources:
        psd = np.array([s.psd for s in sources], dtype=np.float64)
        noise_lines.append(
            f"* noise: {len(sources)} white current source(s), two-sided PSD S (A^2/Hz); samples every "
            f"NT = {format_number(nt)} s of variance S/NT, linearly interpolated (low-frequency PSD S)"
        )
        if noise == "trnoise":
            noise_lines.append(
                "* TRNOISE(NA NT 0 0), NA = sqrt(S/NT) (A); unseeded: every ngspice run differs"
            )
            for s in sources:
                name = spice_name("I", s.name)
                amp = format_number(math.sqrt(s.psd / nt))
                noise_lines.append(
                    _line(name, s.n_p, s.n_n, "dc", "0", f"trnoise({amp} {format_number(nt)} 0 0)")
                )
                element_names.append(name)
        else:
            total = start + float(duration)  # type: ignore[arg-type]
            rows = noise_record_rows(total, nt)
            check_noise_size(rows, len(sources))
            samples = draw_noise(int(seed), rows, psd, nt)
            samples.setflags(write=False)
            digest = hashlib.sha256(np.ascontiguousarray(samples, dtype="<f8").tobytes())
            digest.update(format_number(nt).encode())
            groups = _column_groups(len(sources))
            stem = f"noise_{digest.hexdigest()[:16]}"
            single = len(groups) == 1
            noise_files = tuple(
                f"{stem}.dat" if single else f"{stem}_{j + 1}.dat" for j in range(len(groups))
            )
            nz = [f"{NOISE_NODE_PREFIX}{k + 1}" for k in range(len(sources))]
            helper_nodes = [*nz, CLOCK_NODE]
            noise_lines.append(
                f"* {rows} rows t_k = k*NT (k = 0..{rows - 1}), then one column per source (A; seed "
                f"{int(seed)}, numpy default_rng standard normal * NA, time-major)"
            )
            for j, (cols, fname) in enumerate(zip(groups, noise_files, strict=True)):
                model = NOISE_MODEL if single else f"{NOISE_MODEL}{j + 1}"
                instance = NOISE_INSTANCE if single else f"{NOISE_INSTANCE}{j + 1}"
                zeros = " ".join(["0"] * len(cols))
                ones = " ".join(["1"] * len(cols))
                noise_lines += [
                    f"* file {fname}: t, then sources {cols.start + 1}..{cols.stop}",
                    f".model {model} filesource (file={_quote(fname)}",
                    *_wrap(f"amploffset=[{zeros}] amplscale=[{ones}]"),
                    "+ timeoffset=0 timescale=1 timerelative=false amplstep=false)",
                    f"{instance} [",
                    *_wrap(" ".join(f"%v({nz[k]})" for k in cols)),
                    f"+ ] {model}",
                ]
                element_names.append(instance)
            for k, s in enumerate(sources):
                name = spice_name("G", s.name)
                amp = format_number(math.sqrt(s.psd / nt))
                noise_lines.append(
                    f"* source {k + 1}: {s.name}, S = {format_number(s.psd)} A^2/Hz, NA = {amp} A"
                )
                noise_lines.append(_line(name, s.n_p, s.n_n, nz[k], GROUND, "1"))
                element_names.append(name)
            noise_lines += [
                "* breakpoint at every noise sample t_k (filesource sets none): zero-amplitude TRNOISE clock",
                _line(CLOCK_SOURCE, CLOCK_NODE, GROUND, "dc", "0", f"trnoise(0 {format_number(nt)} 0 0)"),
            ]
            element_names.append(CLOCK_SOURCE)

    _check_unique("element", element_names, "rename one of the circuit elements")
    _check_nodes(circuit_nodes, helper_nodes)

    header = [
        f"* {_TITLE_SAFE.sub(' ', circuit.title)}",
        f"* thermotrain netlist: noise={noise}, seed={int(seed)}, NT={format_number(nt)} s, "
        f"outputs: {' '.join(circuit.outputs) or '(none)'}",
        "* analysis commands (.tran/.op/.options) are added by the runner",
    ]
    text = "\n".join([*header, *body, *noise_lines, ".end"]) + "\n"
    return Netlist(
        text=text,
        noise_samples=samples,
        noise_interval=nt,
        probes=tuple(circuit.outputs),
        title=circuit.title,
        seed=int(seed),
        mode=noise,
        noise_files=noise_files,
        noise_names=tuple(s.name for s in sources),
        nodes=(*circuit_nodes, *helper_nodes),
    )


def _column_groups(n_sources: int) -> list[range]:
    """Source indices per filesource instance/file: consecutive groups of FILESOURCE_MAX_COLUMNS."""
    return [
        range(a, min(a + FILESOURCE_MAX_COLUMNS, n_sources))
        for a in range(0, n_sources, FILESOURCE_MAX_COLUMNS)
    ]


def _line(*fields: str) -> str:
    return " ".join(fields)


def _quote(s: str) -> str:
    return f'"{s}"'


def _wrap(text: str, width: int = 100) -> list[str]:
    """Split ``text`` at spaces into ``+`` continuation lines of at most ~``width`` characters."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        if current and len(current) + 1 + len(word) > width:
            lines.append(f"+ {current}")
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(f"+ {current}")
    return lines


def _check_unique(kind: str, names: list[str], fix: str) -> None:
    seen: dict[str, str] = {}
    for n in names:
        key = n.lower()
        if key in seen:
            raise CircuitError(
                f"SPICE {kind} names {seen[key]!r} and {n!r} collide (ngspice is case-insensitive, and "
                f"the writer prefixes the type letter); {fix}."
            )
        seen[key] = n


def _check_nodes(circuit_nodes: list[str], helper_nodes: list[str]) -> None:
    for n in circuit_nodes:
        if n.lower() in _GROUND_ALIASES:
            raise CircuitError(
                f"node {n!r} is ground in ngspice; use {GROUND!r} for ground or rename the node."
            )
    _check_unique("node", circuit_nodes, "rename one of the circuit nodes")
    taken = {n.lower() for n in circuit_nodes}
    clash = [n for n in helper_nodes if n.lower() in taken]
    if clash:
        raise CircuitError(
            f"circuit nodes {clash} clash with the file-noise helper nodes ({NOISE_NODE_PREFIX}<k>, "
            f"{CLOCK_NODE}); rename them (names starting 'tt_' are reserved by the netlist writer)."
        )
