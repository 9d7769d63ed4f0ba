"""Noisy SPICE runs as data: :class:`NoisyRuns`, and the one reader/writer of their ``traces.npz`` archive
(written by ``thermotrain validate --save-traces``, read by ``thermotrain calibrate --from DIR``).

The archive holds ``runs`` (count), ``step`` and ``burn_in`` (s) and one [samples, nodes] float array
``run{i}`` per successful run (the post-burn-in output voltages, V). Reading is strict: no pickle, a
regular file under the "traces" size cap, the members' unpacked size under the same cap before anything is
decompressed, and dtype/shape/finite checks; every refusal is one :class:`InputError` line.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thermotrain._errors import InputError, ResourceLimitError

__all__ = ["TRACES_FILE", "NoisyRuns", "load_traces", "save_traces"]

#: The file name of the traces archive inside a validation folder.
TRACES_FILE = "traces.npz"

_MAX_RUNS = 100_000


@dataclass(frozen=True)
class NoisyRuns:
    """Independent noisy SPICE runs of one circuit on the grid ``step`` (s): ``series[r]`` is the r-th
    successful run's [T, P] output voltages after the burn-in (``burn_in``, s); ``failures`` the runs that
    failed (dicts of RunFailure plus the run's noise ``seed``), each retried once when its worker crashed;
    ``transients`` the raw results (empty when read from an archive); ``t_netlist`` the time spent writing
    netlists (s); ``grid_steps`` the noise grid's internal steps per NT (None: adaptive stepping, or read
    from an archive)."""

    transients: list[Any]
    series: list[np.ndarray]
    failures: list[dict[str, Any]]
    step: float
    burn_in: float
    t_netlist: float
    grid_steps: int | None = None


def save_traces(path: str | Path, runs: NoisyRuns) -> Path:
    """Write ``runs.series`` (with ``step`` and ``burn_in``) as a compressed ``.npz`` archive, atomically.
    Returns the path."""
    from thermotrain._safeio import write_bytes_atomic

    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        runs=len(runs.series),
        step=runs.step,
        burn_in=runs.burn_in,
        **{f"run{i}": x for i, x in enumerate(runs.series)},
    )
    return write_bytes_atomic(path, buf.getvalue())


def load_traces(path: str | Path, what: str | None = None) -> NoisyRuns:
    """Read and check a traces archive written by :func:`save_traces`. ``what`` labels the file in the
    one-line :class:`InputError` (default: the path); a too large archive raises ResourceLimitError."""
    from thermotrain._safeio import file_limit, read_regular

    label = what or str(path)
    data = read_regular(path, "traces", what=label)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            # refuse a zip bomb before anything is decompressed: the members' stated sizes, under the cap
            total = sum(info.file_size for info in z.zip.infolist())
            if total > file_limit("traces"):
                raise ResourceLimitError(
                    f"{label} expands to {total / 2**20:.3g} MB, above the {file_limit('traces') / 2**20:.3g} MB "
                    "limit for traces; raise THERMOTRAIN_MAX_TRACES_MB if it is genuine."
                )
            n_runs = _scalar(z, "runs", label)
            if n_runs != int(n_runs) or not 1 <= n_runs <= _MAX_RUNS:
                raise InputError(
                    f"{label}: runs = {n_runs!r} must be a whole number of runs in [1, {_MAX_RUNS}]."
                )
            step, burn = _scalar(z, "step", label), _scalar(z, "burn_in", label)
            if not step > 0 or burn < 0:
                raise InputError(f"{label}: step = {step!r} s must be > 0 and burn_in = {burn!r} s >= 0.")
            series: list[np.ndarray] = []
            for i in range(int(n_runs)):
                x = z[f"run{i}"]
                if x.dtype.kind not in "iuf" or x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
                    raise InputError(
                        f"{label}: run{i} has dtype {x.dtype} and shape {x.shape}; need a real [samples, nodes] "
                        "array."
                    )
                x = np.asarray(x, dtype=np.float64)
                if not np.isfinite(x).all():
                    raise InputError(f"{label}: run{i} holds non-finite values (NaN/inf).")
                if series and x.shape[1] != series[0].shape[1]:
                    raise InputError(f"{label}: run{i} has {x.shape[1]} nodes, run0 {series[0].shape[1]}.")
                series.append(x)
    except InputError:
        raise
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise InputError(
            f"{label} is not a readable traces archive ({type(exc).__name__}: {str(exc)[:120]})."
        ) from None
    return NoisyRuns([], series, [], step, burn, 0.0)


def _scalar(z: Any, key: str, label: str) -> float:
    """A finite real scalar member of an npz archive."""
    v = z[key]
    if v.ndim != 0 or v.dtype.kind not in "iuf" or not np.isfinite(v):
        raise InputError(f"{label}: {key} must be one finite number; got dtype {v.dtype}, shape {v.shape}.")
    return float(v)
