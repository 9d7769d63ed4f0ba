"""The suite-wide skip of ``spice`` tests (tests/conftest.py) when ngspice is missing, proven by faking a
machine without it (the detector's two probes patched), not by uninstalling anything."""

from __future__ import annotations

from pathlib import Path

import pytest

import thermotrain.netlists._ngspice as ng

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

INNER_TESTS = """
import pytest

@pytest.mark.spice
def test_needs_ngspice():
    assert False, "ran although ngspice is missing"

def test_plain():
    pass
"""


def _inner_session(pytester: pytest.Pytester) -> pytest.RunResult:
    """A pytest session with the suite's own conftest (loaded from its file) on one spice and one plain
    test, in this process, so the patched detector is the one the hook asks."""
    pytester.makeini("[pytest]\nmarkers =\n    spice: runs ngspice\n")
    pytester.makeconftest(
        "import importlib.util\n"
        f"_spec = importlib.util.spec_from_file_location('suite_conftest', {str(CONFTEST)!r})\n"
        "_mod = importlib.util.module_from_spec(_spec)\n"
        "_spec.loader.exec_module(_mod)\n"
        "pytest_collection_modifyitems = _mod.pytest_collection_modifyitems\n"
    )
    pytester.makepyfile(test_inner=INNER_TESTS)
    return pytester.runpytest_inprocess("-rs", "-p", "no:cacheprovider")


def _fake_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ng, "_find_binary", lambda: None)
    monkeypatch.setattr(ng, "_find_library", lambda: None)


def test_detector_says_what_is_missing_and_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_missing(monkeypatch)
    reason = ng.ngspice_missing()
    assert reason is not None and "ngspice was not found" in reason and "apt-get install ngspice" in reason
    assert "\n" not in reason
    monkeypatch.setattr(ng, "_find_library", lambda: "/usr/lib/libngspice.so")
    assert ng.ngspice_missing() is None  # the shared library alone is enough


def test_a_library_path_that_does_not_exist_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ng, "_find_binary", lambda: None)
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", str(tmp_path / "libngspice.so"))
    assert ng.ngspice_missing() is not None
    (tmp_path / "libngspice.so").write_bytes(b"")
    assert ng.ngspice_missing() is None


def test_spice_tests_anywhere_skip_with_the_reason_when_ngspice_is_missing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_missing(monkeypatch)
    result = _inner_session(pytester)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*spice test skipped: ngspice was not found*make setup*"])


def test_spice_tests_run_when_ngspice_is_there(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same session with the detector reporting ngspice: the spice test runs (and fails on purpose), so
    the skip above is the conftest's doing, not a test that never ran."""
    monkeypatch.setattr(ng, "_find_binary", lambda: "/usr/bin/ngspice")
    result = _inner_session(pytester)
    result.assert_outcomes(passed=1, failed=1)
