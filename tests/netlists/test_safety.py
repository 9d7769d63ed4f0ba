"""The netlist allowlist (``_safety.parse_netlist``): what is accepted, what is refused (with the file,
the line, the card and what is allowed), and the canonical text ngspice gets instead of the raw one."""

from __future__ import annotations

from pathlib import Path

import pytest

from thermotrain import InputError, NetlistSecurityError, ResourceLimitError
from thermotrain.netlists import check_untrusted, load_netlist
from thermotrain.netlists._safety import SAFE_TITLE, check_name, option_line, parse_netlist

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
        ".exec",
        ".tran 1n 1u",
        ".save all",
        ".print tran v(a)",
        ".title evil",
        ".measure tran x max v(a)",
        "shell rm -rf /",
        "  SHELL echo hi",
        "alias sx shell",  # an A card whose "model" is no filesource: refused at the end of the file
        "echo hi > out.txt",  # 'e' card with the wrong shape and a '>'
        "Q1 c b e qmod",  # transistors are not on the element list
        "M1 d g s b nmos",
        "R1 a 0 1k `id`",
        "R1 a|b 0 1k",
        "R1 a 0 {1k; shell id}",
        "V1 a 0 dc 1 external",
        'V1 a 0 pwl file="x"',
        "B1 a 0 V=v(a)*2",
        ".model qq npn",
        '.model dd d (is=1e-14 file="x")',
        '.model src d_source (input_file="x")',
        '.model src table2d (file="x")',
        ".options rawfile=x",
        ".options filetype=ascii",
        ".options method=shell",
        '.param a="x"',
        ".ic v(a)=1 i(L1)=0",
        ".ends",
        "R1 a 0 1k @r1[i]",
    ],
)
def test_card_outside_the_allowlist_is_refused_with_line_and_allowed(line: str) -> None:
    text = BODY + line + "\n.end\n"
    with pytest.raises(NetlistSecurityError) as info:
        check_untrusted(text, source="evil.cir")
    message = str(info.value)
    assert message.startswith("evil.cir, line 4") or message.startswith("evil.cir:"), message
    assert "not allowed" in message or "not closed" in message
    if message.startswith("evil.cir, line 4"):
        assert "allowed: element cards" in message
        assert "--trusted" in message and "trusted=True" in message


@pytest.mark.parametrize(
    "line",
    [
        "Rshell a 0 1k",
        "R2 a 0 rmod 1k tc1=1e-3",
        "Cx a b 1e-12",
        "L1 a m 1u",
        "L2 m 0 1u",
        "K1 L1 L2 0.9",
        "V1 in 0 dc 1 ac 1",
        "V2 in2 0 sin(0 1 1k)",
        "V3 in3 0 pulse(0 1 0 1n 1n 1u 2u)",
        "I1 0 a dc 0 trnoise(1e-6 1e-7 0 0)",
        "I2 0 a dc 0 trrandom(1 1e-7 0 1 0)",
        "E1 o 0 a 0 1e5",
        "G1 o 0 a 0 1m",
        "E2 o2 0 value={2*1}",
        "F1 o 0 V1 2",
        "H1 o 0 V1 1k",
        "B1 o3 0 V={1+2}",
        "S1 o 0 a 0 swmod on",
        "W1 o 0 V1 cswmod off",
        "D1 a 0 dmod",
        "Xsub a o cell",
        "Xsub2 a o cell params: g=2",
        ".model rmod r (tc1=0)",
        ".model swmod sw vt=0.5 vh=0.1",
        ".model cswmod csw it=1m",
        ".model dmod d (is=1e-14 n=1)",
        ".subckt cell in out g=1\nR1 in out {g*1k}\n.ends cell",
        ".param k=2 r0={k*1k}",
        ".ic v(a)=0.5 v(o)=0",
        ".options reltol=1e-4 abstol=1e-12 method=gear interp",
        ".option itl4=100 temp=27",
        "R9 a 0 1k ; .include x",
        "R8 a 0 1k $ .control",
        "* .control in a comment",
        "*# shell id",
        "*ng_script",
        "",
    ],
)
def test_allowed_cards_pass(line: str) -> None:
    check_untrusted(BODY + line + "\n.end\n")


def test_canonical_text_drops_comments_and_replaces_the_title() -> None:
    text = "*ng_script\n* c\nR1 a 0 1k ; inline\n*# shell id\n\nC1  a\t0 1n $ dollar\n+ m=1\n.end\n* after\n"
    assert check_untrusted(text) == f"{SAFE_TITLE}\nR1 a 0 1k\nC1 a 0 1n m=1\n.end\n"


def test_nodes_are_top_level_nodes_in_order() -> None:
    text = "t\nR1 a b 1k\n.subckt cell x y\nR1 x inner 1\nR2 inner y 1\n.ends\nXc b 0 cell\n.end\n"
    assert parse_netlist(text).nodes == ("a", "b", "0")


@pytest.mark.parametrize(
    "text, where",
    [
        ("t\n.end\nR1 a 0 1\n", "line 3"),  # only comments may follow .end
        ("t\n+ R1 a 0 1\n", "line 2"),  # continuation of nothing
        ("t\n.subckt s a\nR1 a 0 1\n", "not closed"),
        ("t\nR1 a 0 1\n.ends\n", "line 3"),
        ("t\nA1 %v([a]) nomodel\n.end\n", "line 2"),
        ("t\nR1 " + "n" * 65 + " 0 1\n", "line 2"),
        ("t\nR1 a.b 0 1\n", "line 2"),
    ],
)
def test_structure_and_names_are_checked(text: str, where: str) -> None:
    with pytest.raises(NetlistSecurityError, match=where):
        check_untrusted(text)


def test_windows_line_endings_and_bom_are_checked() -> None:
    with pytest.raises(NetlistSecurityError, match="line 2"):
        check_untrusted("\ufeff* t\r\n.control\r\n")
    assert check_untrusted("\ufeff* t\r\nR1 a 0 1\r\n") == f"{SAFE_TITLE}\nR1 a 0 1\n.end\n"


def test_trusted_returns_the_text_and_warns(capsys) -> None:
    text = BODY + ".control\nshell ls\n.endc\n"
    assert check_untrusted(text, trusted=True) == text
    assert "UNCHECKED (trusted)" in capsys.readouterr().err


def test_load_netlist_refuses_untrusted_file(tmp_path: Path) -> None:
    path = tmp_path / "evil.cir"
    path.write_text(BODY + ".include /etc/passwd\n.end\n")
    with pytest.raises(
        NetlistSecurityError, match=r"evil\.cir, line 4: '\.include /etc/passwd' is not allowed"
    ):
        load_netlist(path)
    trusted = load_netlist(path, trusted=True)
    assert trusted.trusted and trusted.text.startswith("* title")


def test_load_netlist_returns_the_canonical_netlist(tmp_path: Path) -> None:
    path = tmp_path / "ok.cir"
    path.write_text(BODY + ".end\n")
    nl = load_netlist(path)
    assert nl.text == f"{SAFE_TITLE}\nR1 a 0 1k\nC1 a 0 1n\n.end\n"
    assert nl.nodes == ("a", "0") and not nl.trusted and nl.mode == "external"


def test_load_netlist_reads_only_regular_files_under_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InputError, match="not a regular file"):
        load_netlist("/dev/zero")
    fifo = tmp_path / "fifo.cir"
    import os

    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load_netlist(fifo)  # refused at once, without opening (a FIFO would block)
    big = tmp_path / "big.cir"
    big.write_text("* t\n" + "R1 a 0 1\n" * 200_000)
    monkeypatch.setenv("THERMOTRAIN_MAX_NETLIST_MB", "1")
    with pytest.raises(ResourceLimitError, match="THERMOTRAIN_MAX_NETLIST_MB"):
        load_netlist(big)
    (tmp_path / "bin.cir").write_bytes(b"* t\nR1 a 0 1\x00\n")
    with pytest.raises(InputError, match="binary"):
        load_netlist(tmp_path / "bin.cir")


@pytest.mark.parametrize("name", ["n1", "0", "tt_nz1", "X0_o"])
def test_strict_node_names_pass(name: str) -> None:
    assert check_name("probe", name, node=True) == name


@pytest.mark.parametrize("name", ["", "n1)", "a b", "v(n1)", "n\n1", "a.b", "x" * 65, 3, None])
def test_bad_node_names_are_refused(name) -> None:
    with pytest.raises(InputError, match="not a valid name"):
        check_name("probe", name, node=True)


def test_option_allowlist() -> None:
    assert option_line("reltol", 1e-4) == ".options reltol=1e-4"
    assert option_line("METHOD", "gear") == ".options method=gear"
    assert option_line("interp", True) == ".options interp"
    for key, value in [("rawfile", "x"), ("reltol", "1\n.control"), ("reltol", float("nan")), ("method", "x"),
                       ("interp", 3), ("reltol", True), (None, 1)]:  # fmt: skip
        with pytest.raises(InputError, match="option"):
            option_line(key, value)
