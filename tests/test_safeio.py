"""Reading arrays from outside by their header first, and ``--overwrite`` never deleting a user's files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from thermotrain._demo import prepare_out
from thermotrain._errors import InputError, OutputError, ResourceLimitError
from thermotrain._safeio import OUTPUT_MARKER, load_npy, output_dir


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _with_header_shape(data: bytes, old: bytes, new: bytes) -> bytes:
    """The same .npy bytes with the header's shape text replaced, padded so the header keeps its length."""
    end = data.index(b"\n") + 1
    header = data[: end - 1].replace(old, new).rstrip(b" ")
    assert len(header) < end, "the new shape text must fit in the header's padding"
    header += b" " * (end - 1 - len(header)) + b"\n"
    return header + data[end:]


def test_a_header_that_claims_a_huge_array_is_refused_before_numpy_allocates_it(tmp_path: Path) -> None:
    """16 numbers on disk, a header claiming 10^12: refused from the header (naming the file and the
    shape), where loading first tried to allocate 8 TB and reported only "out of memory"."""
    data = _with_header_shape(_npy_bytes(np.eye(4)), b"(4, 4)", b"(1000000, 1000000)")
    path = tmp_path / "lie.npy"
    path.write_bytes(data)
    with pytest.raises(
        ResourceLimitError, match=r"lie\.npy: shape \(1000000, 1000000\) has 1000000000000 entries"
    ):
        load_npy(path, "--matrix", ndim=2, max_elements=65536)


@pytest.mark.parametrize(
    "content, expect",
    [
        (b"1 2\n3 4\n", "not a numpy .npy file"),  # a text matrix: numpy would try to unpickle it
        (b"", "not a numpy .npy file"),
        (b"\x80\x04K\x01.", "not a numpy .npy file"),  # a pickle
        (None, "zip archive"),  # an .npz
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n", "unreadable .npy header"),
    ],
)
def test_a_file_that_is_not_an_npy_array_is_named_as_such(tmp_path: Path, content, expect: str) -> None:
    path = tmp_path / "A.npy"
    if content is None:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("A.npy", _npy_bytes(np.eye(2)))
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match=expect) as info:
        load_npy(path, "--matrix", ndim=2)
    assert "allow_pickle" not in str(info.value)  # never advise loading untrusted data with pickle


def test_truncated_data_and_object_arrays_are_refused(tmp_path: Path) -> None:
    good = _npy_bytes(np.eye(3))
    (tmp_path / "short.npy").write_bytes(good[:-8])
    with pytest.raises(
        InputError, match=r"header says shape \(3, 3\) of float64, but the data does not match"
    ):
        load_npy(tmp_path / "short.npy", "--matrix", ndim=2)
    buf = io.BytesIO()
    np.save(buf, np.array([1, "a"], dtype=object), allow_pickle=True)
    (tmp_path / "obj.npy").write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="Python objects"):
        load_npy(tmp_path / "obj.npy", "--b", ndim=1)
    (tmp_path / "ok.npy").write_bytes(good)
    np.testing.assert_array_equal(load_npy(tmp_path / "ok.npy", "--matrix", ndim=2), np.eye(3))


def _write(out: Path, name: str, overwrite: bool = False) -> None:
    with output_dir(out, overwrite=overwrite) as tmp:
        (tmp / name).write_text("new\n")


def test_overwrite_replaces_a_folder_thermotrain_wrote_and_never_a_users_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, "a.txt")
    assert (out / OUTPUT_MARKER).is_file() and (out / "a.txt").is_file()
    with pytest.raises(OutputError, match="already holds files"):
        _write(out, "b.txt")
    _write(out, "b.txt", overwrite=True)  # thermotrain's own folder: replaced
    assert sorted(p.name for p in out.iterdir()) == sorted([OUTPUT_MARKER, "b.txt"])

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's notes\n")
    with pytest.raises(OutputError, match=r"holds files no thermotrain command wrote \(notes\.txt\)"):
        _write(mine, "c.txt", overwrite=True)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a partial folder was left behind"


def test_the_demo_replaces_its_own_or_a_thermotrain_folder_but_refuses_a_users_folder(tmp_path: Path) -> None:
    out = prepare_out(tmp_path / "demo")
    (out / "old.txt").write_text("x")
    assert sorted(p.name for p in prepare_out(out).iterdir()) == [".thermotrain-demo"]  # its own: emptied
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    with pytest.raises(OutputError, match="already holds files"):
        prepare_out(mine)
    with pytest.raises(OutputError, match="no thermotrain command wrote"):
        prepare_out(mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "x"
    _write(tmp_path / "exp", "results.json")  # an experiment's folder: --overwrite may reuse it
    assert sorted(p.name for p in prepare_out(tmp_path / "exp", overwrite=True).iterdir()) == [
        ".thermotrain-demo"
    ]
