"""Refusing netlist text from outside that could make ngspice run commands or read other files.

ngspice executes ``.control``/``.endc`` (and ``.exec``) blocks, runs ``shell`` commands from them, and
pulls in other files with ``.include``/``.inc``/``.lib``. A netlist we did not write is checked line by
line (after leading whitespace, continuation lines ``+`` included, case-insensitively) before it reaches
the simulator. Our own writer never emits these directives; the runner adds its own ``.control`` block
in batch mode after this check.
"""

from __future__ import annotations

import re
from pathlib import Path

from thermotrain._errors import NetlistSecurityError

# A directive at line start (after whitespace and an optional "+" continuation mark). Dot-directives
# match by prefix (".inc" also catches ".include"/".incl", ".lib" catches ".library", ".control" and
# ".endc" any suffix): refusing too much is the safe side. "shell" must be a whole word.
_FORBIDDEN = re.compile(
    r"^\s*(?:\+\s*)?(?P<directive>\.control|\.endc|\.exec|\.include|\.inc|\.lib|shell(?![A-Za-z0-9_]))",
    re.IGNORECASE,
)


def check_untrusted(text: str, trusted: bool = False, *, source: str = "netlist") -> None:
    """Raise NetlistSecurityError if ``text`` holds ``.control``, ``.endc``, ``.exec``, ``shell``,
    ``.include``, ``.inc`` or ``.lib`` at the start of a line (continuation lines too), unless
    ``trusted``. ``source`` names the text in the message (e.g. its path). Cost: O(len(text))."""
    if trusted:
        return
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        match = _FORBIDDEN.match(line)
        if match:
            directive = match.group("directive").lower()
            raise NetlistSecurityError(
                f"{source}, line {number}: {directive!r} ({line.strip()[:80]!r}) can run commands or read "
                "other files in ngspice, so netlists from outside may not hold it. If you wrote this file "
                "yourself, pass trusted=True (command line: --trusted)."
            )


def load_netlist(path: str | Path, *, trusted: bool = False) -> str:
    """Read a netlist file (UTF-8) and return its text after :func:`check_untrusted` (skipped when
    ``trusted``). Raises NetlistSecurityError naming the line, FileNotFoundError if ``path`` is missing."""
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    check_untrusted(text, trusted=trusted, source=str(path))
    return text
