"""Reading files from outside and writing output folders, safely.

Every file thermotrain reads from a user (netlist, matrix, profile, traces, checkpoint, config) goes
through :func:`read_regular`: only a regular file is opened (a FIFO would hang, ``/dev/zero`` never ends,
a directory is a mistake), and only up to a size cap per kind, so a hostile or careless file costs at most
that much memory. Parsers on top (:func:`load_npy`, :func:`load_json`) accept what is allowed (real finite
numbers of a bounded shape; JSON of bounded depth without NaN/Infinity) and raise :class:`InputError`
naming the file and the fix for everything else.

Output folders go through :func:`output_dir`: a folder holding an earlier run is refused (unless
``overwrite``, which replaces only a folder thermotrain wrote: one holding :data:`OUTPUT_MARKER`; a folder
of other files is never deleted), everything is written into a private temporary sibling, and the finished
folder replaces the target by a rename at the end. A run that fails leaves nothing behind and the earlier
folder untouched.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from thermotrain._errors import InputError, OutputError, ResourceLimitError

MiB = 1 << 20
GiB = 1 << 30

# Size caps per kind of input file (bytes). A cap can be raised with the environment variable
# THERMOTRAIN_MAX_<KIND>_MB (e.g. THERMOTRAIN_MAX_TRACES_MB=8192), which the refusal message names.
FILE_LIMITS: dict[str, int] = {
    "netlist": 16 * MiB,
    "noise": 512 * MiB,
    "matrix": 64 * MiB,
    "profile": 8 * MiB,
    "json": 16 * MiB,
    "traces": 2 * GiB,
    "checkpoint": 2 * GiB,
    "config": 1 * MiB,
}
MAX_JSON_DEPTH = 32


def file_limit(kind: str) -> int:
    """The size cap (bytes) of one input ``kind``: ``FILE_LIMITS[kind]`` unless
    ``THERMOTRAIN_MAX_<KIND>_MB`` sets another (a positive number of MiB)."""
    if kind not in FILE_LIMITS:
        raise KeyError(f"unknown file kind {kind!r}; known: {sorted(FILE_LIMITS)}")
    env = f"THERMOTRAIN_MAX_{kind.upper()}_MB"
    text = os.environ.get(env)
    if text is None:
        return FILE_LIMITS[kind]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{env}={text!r} must be a positive number of MiB.")
    return int(value * MiB)


def _mb(n: float) -> str:
    return f"{n / MiB:.3g} MB"


def check_regular(path: str | Path, kind: str, what: str | None = None) -> int:
    """Check that ``path`` is an existing regular file (symlinks followed) no larger than the cap of
    ``kind``; return its size in bytes. ``what`` names the input in messages (default: the path)."""
    path = Path(path)
    label = what or str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{label}: no such file ({path}).") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read {path} ({exc.strerror or exc}).") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{label}: {path} is a directory; pass a {kind} file.")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(
            f"{label}: {path} is not a regular file (a device, FIFO or socket); thermotrain reads {kind} "
            "input only from regular files."
        )
    limit = file_limit(kind)
    if st.st_size > limit:
        raise ResourceLimitError(
            f"{label}: {path} is {_mb(st.st_size)}, above the {_mb(limit)} limit for a {kind} file; if it "
            f"is genuine, raise THERMOTRAIN_MAX_{kind.upper()}_MB."
        )
    return int(st.st_size)


def read_regular(path: str | Path, kind: str, what: str | None = None) -> bytes:
    """The bytes of a regular file no larger than the cap of ``kind`` (see :func:`check_regular`); at
    most cap + 1 bytes are ever read, even if the file grows meanwhile."""
    check_regular(path, kind, what)
    limit = file_limit(kind)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise InputError(f"{what or path}: cannot read {path} ({exc.strerror or exc}).") from None
    if len(data) > limit:
        raise ResourceLimitError(
            f"{what or path}: {path} grew past the {_mb(limit)} limit for a {kind} file while being read."
        )
    return data


def read_text(path: str | Path, kind: str, what: str | None = None) -> str:
    """A regular file's text (UTF-8, a leading BOM dropped); refuses binary data (NUL bytes or invalid
    UTF-8) with the offset of the first bad byte."""
    data = read_regular(path, kind, what)
    label = what or str(path)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError(f"{label}: {path} holds binary data (a NUL byte at offset {nul}); pass a text file.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{label}: {path} is not UTF-8 text (bad byte at offset {exc.start}); pass a text file."
        ) from None
    return text.lstrip("\ufeff")


def check_real_dtype(arr: np.ndarray, name: str, error: type[Exception] = InputError) -> None:
    """Refuse complex data (numpy would drop the imaginary part with only a warning) and non-number dtypes
    (strings, objects, booleans) with ``error`` naming ``name``."""
    if arr.dtype.kind == "c":
        raise error(
            f"{name} holds complex numbers (dtype {arr.dtype}); pass real numbers (the imaginary part would "
            "otherwise be dropped silently)."
        )
    if arr.dtype.kind not in "iuf":
        raise error(
            f"{name} has dtype {arr.dtype}, not a real number type; pass real numbers (int or float)."
        )


def load_npy(
    path: str | Path,
    what: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    max_elements: int | None = None,
) -> np.ndarray:
    """A ``.npy`` array of real finite numbers as float64 (no pickle). ``ndim``: the allowed number(s) of
    dimensions; ``max_elements``: a cap on its size (refused before it is converted)."""
    data = read_regular(path, "matrix", what)
    shape, dtype = _npy_header(data, f"{what} {path}")
    # Everything below is checked on the header, before numpy allocates what the header claims.
    check_real_dtype(np.empty(0, dtype=dtype), f"{what} {path}")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and len(shape) not in allowed:
        shown = "a scalar" if not shape else f"shape {shape}"
        want = " or ".join(f"{d}-D" for d in allowed)
        raise InputError(f"{what} {path}: {shown}; a {want} array is needed.")
    size = math.prod(shape)
    if max_elements is not None and size > max_elements:
        raise ResourceLimitError(
            f"{what} {path}: shape {shape} has {size} entries, above the limit of {max_elements}."
        )
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(
            f"{what} {path}: its header says shape {shape} of {dtype}, but the data does not match ({exc}); "
            "save the array again with numpy.save."
        ) from None
    out = np.asarray(arr, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(out))
    if bad.size:
        raise InputError(
            f"{what} {path}: entry {tuple(int(i) for i in bad[0])} is {out[tuple(bad[0])]}; all entries must "
            "be finite."
        )
    return out


def _npy_header(data: bytes, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` file's header declares, read without loading its data; a file that is
    not a ``.npy`` array (no numpy magic: text, pickle, ``.npz``) or whose header is unreadable or holds
    objects is refused naming ``name``."""
    if not data.startswith(b"\x93NUMPY"):
        kind = "a zip archive (.npz?)" if data.startswith(b"PK") else "not a numpy .npy file"
        raise InputError(
            f"{name}: {kind} (a .npy file starts with the bytes \\x93NUMPY); save the array with numpy.save."
        )
    fh = io.BytesIO(data)
    try:
        major, _minor = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read(fh)  # the header only, not the data
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise InputError(
            f"{name}: unreadable .npy header ({exc}); save the array again with numpy.save."
        ) from None
    if dtype.hasobject:
        raise InputError(
            f"{name}: holds Python objects (dtype {dtype}), not numbers; pass a real number array."
        )
    return tuple(int(d) for d in shape), dtype


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def json_depth(obj: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), computed without recursion."""
    depth, stack = 0, [(obj, 0)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
            depth = max(depth, d + 1)
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
            depth = max(depth, d + 1)
    return depth


def parse_json(text: str, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text from outside: NaN/Infinity refused, nesting capped at ``max_depth``."""
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise InputError(f"{what}: JSON nested too deeply (limit {max_depth} levels).") from None
    except ValueError as exc:
        raise InputError(f"{what}: not valid JSON ({exc}).") from None
    if json_depth(obj) > max_depth:
        raise InputError(f"{what}: JSON nested {json_depth(obj)} levels deep (limit {max_depth}).")
    return obj


def load_json(path: str | Path, kind: str = "json", what: str | None = None) -> Any:
    """A JSON file from outside: a regular UTF-8 file under the cap of ``kind``, parsed by
    :func:`parse_json`."""
    label = what or str(path)
    return parse_json(read_text(path, kind, label), label)


# ------------------------------------------------------------------------------------------ outputs


def check_output_dir(path: str | Path, *, overwrite: bool = False, flag: str = "--out") -> Path:
    """Check, before any work starts, that ``path`` can become an output folder: not a file, empty or
    absent (or ``overwrite``), and its parent writable. Returns the absolute path."""
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is a file; pass a folder path.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputError(
            f"{flag} {path} already holds files from an earlier run; pass --overwrite to replace them, or "
            "choose another folder."
        )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: cannot create files under {parent} (not writable).")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path} is not writable.")
    return path


def check_output_file(
    path: str | Path,
    *,
    overwrite: bool = False,
    flag: str = "--out",
    example: str = "out.json",
    what: str = "file",
) -> Path:
    """Check, before any work starts, that ``path`` can become an output file: not a folder, not an existing
    file (unless ``overwrite``), its folder writable. ``example`` is the file name suggested when a folder is
    passed. Returns the absolute path."""
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; pass a {what} path such as {path / example}.")
    if path.exists() and not overwrite:
        raise OutputError(
            f"{flag} {path} already exists; pass --overwrite to replace it, or choose another name."
        )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: cannot create files under {parent} (not writable).")
    return path


#: Written into every folder :func:`output_dir` finishes, so that ``--overwrite`` can tell a folder a
#: thermotrain command wrote (replaced) from one holding other files (refused: never deleted).
OUTPUT_MARKER = ".thermotrain-output"


def check_replaceable(path: Path, flag: str, markers: tuple[str, ...] = (OUTPUT_MARKER,)) -> None:
    """Refuse to replace a non-empty folder that holds none of ``markers``: ``--overwrite`` replaces what a
    thermotrain command wrote, never a folder of other files (a user's notes, an unrelated project)."""
    if not path.is_dir() or any((path / m).is_file() for m in markers):
        return
    names = sorted(p.name for p in path.iterdir())
    if names:
        shown = ", ".join(names[:3]) + (f", … ({len(names)} entries)" if len(names) > 3 else "")
        raise OutputError(
            f"{flag} {path} holds files no thermotrain command wrote ({shown}); --overwrite replaces only a "
            f"folder thermotrain wrote (it holds {markers[0]}; folders written before 2026-12-07 lack it): "
            "move the files away, delete the folder yourself, or choose another folder."
        )


@contextlib.contextmanager
def output_dir(path: str | Path, *, overwrite: bool = False, flag: str = "--out") -> Iterator[Path]:
    """Write a run's outputs atomically: yields a fresh temporary folder next to ``path``; when the
    block ends without an exception it replaces ``path`` (an earlier folder is removed only then, and
    only with ``overwrite``); when it raises, the temporary folder is deleted and ``path`` is untouched.

    The check of :func:`check_output_dir` runs first, so a bad ``--out`` fails before any work.
    """
    target = check_output_dir(path, overwrite=overwrite, flag=flag)
    check_replaceable(target, flag)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
        (tmp / OUTPUT_MARKER).write_text("written by thermotrain; --overwrite may replace this folder\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old: Path | None = None
    try:
        if target.exists():
            filled = any(target.iterdir())
            if filled and (not overwrite or not (target / OUTPUT_MARKER).is_file()):  # filled while we ran
                raise OutputError(
                    f"{flag} {target} was filled by something else while this run wrote {tmp}; "
                    "the new results are kept there."
                )
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rename(target, old / "previous")
        os.rename(tmp, target)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(
            f"{flag} {target}: cannot move the finished run into place ({exc}); it is in {tmp}."
        ) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so a reader
    never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import (os.umask has no read-only form)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))
