"""Untrusted netlists: control blocks, shell commands and file includes are refused unless trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from thermotrain import NetlistSecurityError
from thermotrain.netlists import check_untrusted, load_netlist

BODY = "* title\nR1 a 0 1k\nC1 a 0 1n\n"


@pytest.mark.parametrize(
    "line",
    [
        ".control",
        ".endc",
        ".CONTROL",
        "   .control",
        "\t.include /etc/passwd",
        ".inc other.cir",
        ".INCLUDE 'x'",
        ".lib models.lib tt",
        ".LIB x",
        "shell rm -rf /",
        "  SHELL echo hi",
        "+ .include evil.cir",
        "+.lib x",
        ".exec",
    ],
)
def test_directive_is_refused_with_line_number_and_fix(line: str) -> None:
    text = BODY + line + "\n.end\n"
    with pytest.raises(NetlistSecurityError) as info:
        check_untrusted(text)
    message = str(info.value)
    assert "line 4" in message
    assert "trusted=True" in message and "--trusted" in message


@pytest.mark.parametrize(
    "line",
    [
        "* .control in a comment",
        "Rshell a 0 1k",
        "R1 a 0 1k ; .include",
        ".model shellmodel r",
        ".options reltol=1e-4",
        "shelly a 0 1",  # not the word 'shell'
    ],
)
def test_harmless_lines_pass(line: str) -> None:
    check_untrusted(BODY + line + "\n.end\n")


def test_trusted_skips_the_check() -> None:
    check_untrusted(BODY + ".control\nshell ls\n.endc\n", trusted=True)


def test_windows_line_endings_and_bom_are_checked() -> None:
    with pytest.raises(NetlistSecurityError, match="line 2"):
        check_untrusted("\ufeff* t\r\n.control\r\n")


def test_load_netlist_refuses_untrusted_file(tmp_path: Path) -> None:
    path = tmp_path / "evil.cir"
    path.write_text(BODY + ".include /etc/passwd\n.end\n")
    with pytest.raises(NetlistSecurityError, match=r"evil\.cir, line 4"):
        load_netlist(path)
    assert load_netlist(path, trusted=True).startswith("* title")


def test_load_netlist_returns_clean_text(tmp_path: Path) -> None:
    path = tmp_path / "ok.cir"
    path.write_text(BODY + ".end\n")
    assert load_netlist(path) == BODY + ".end\n"
