"""An allowlist for netlist text from outside: parse what a transient run of a linear/noisy circuit needs,
refuse everything else, and hand ngspice a canonical text rebuilt from the checked cards.

Why an allowlist: ngspice runs commands from far more places than ``.control`` blocks -- ``*#`` comment
lines, a first line ``*ng_script`` (the whole file becomes a command script), ``.spiceinit`` files, code
models that read files (``filesource``, ``d_source``, ``table2d`` ...), ``.include``/``.lib`` -- so looking
for the bad words cannot be complete. Instead every card must match one of the grammars below, and ngspice
only ever sees the text this module rebuilds from the accepted tokens.

Accepted (``NetlistSecurityError`` for anything else, naming the file, the line and what is allowed):

- Line 1 is the title (as in every SPICE dialect) and is replaced by the fixed :data:`SAFE_TITLE`.
- Comments are removed before ngspice sees the text: lines starting with ``*`` (``*#``, ``*ng_script``
  included), inline ``;`` comments and ``$`` comments (a ``$`` at the start or after white space). Blank
  lines are dropped; ``+`` continuation lines are joined to their card (and re-wrapped at ~100 characters).
- Element cards (first letter, any case) ``R C L K V I E F G H B S W D X A`` with the shapes of
  :data:`ELEMENT_HELP`; ``B`` only with a braced expression (``V={...}``/``I={...}``), ``A`` only
  instances of a ``filesource`` model.
- ``.model NAME TYPE (key=value ...)`` with TYPE in :data:`MODEL_TYPES`; ``filesource`` with the keys of
  :data:`FILESOURCE_KEYS`, whose ``file="name"`` must be a plain file in the netlist's own folder.
- ``.subckt NAME nodes... [params:] [key=value ...]`` / ``.ends [NAME]``, ``.param key=value ...``,
  ``.ic v(node)=value ...``, ``.options`` with the keys of :data:`OPTION_NUMBERS`, :data:`OPTION_WORDS`,
  :data:`OPTION_FLAGS`, and ``.end`` (only comments may follow it).
- Tokens: names ``[A-Za-z][A-Za-z0-9_]*`` (nodes ``[A-Za-z0-9_]+``), at most 64 characters; numbers with
  an optional SPICE scale/unit suffix (``1k``, ``2.5e-9``, ``10meg``); expressions in ``{...}`` or
  ``'...'`` made of names, numbers, ``+ - * / ^ ( ) ,`` and spaces. Quoted strings only as a filesource
  ``file``. No other character is accepted anywhere.

Files: a filesource ``file`` must name a plain relative file (no folder part, no ``..``) in the netlist's
folder that exists, is a regular file after following symlinks, stays inside that folder, and is under
the ``noise`` size cap of :mod:`thermotrain._safeio`, and holds numbers only (:func:`check_data_file`:
rows of finite numbers, the same count on every row, the time column increasing). ngspice lowercases
netlist text (quoted file names too), so the checked text names the file in lower case and the runner
copies the checked bytes under that name into its private run folder. A trusted netlist (``--trusted``)
skips the card allowlist, but a plain file name in a ``file="..."`` is still looked up beside the netlist,
checked the same way and copied (other names are left to ngspice).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from thermotrain._errors import InputError, NetlistSecurityError
from thermotrain._safeio import read_regular, read_text

if TYPE_CHECKING:  # pragma: no cover
    from thermotrain.netlists._writer import Netlist

#: the title line every checked netlist gets (ngspice gives the first line special meanings, e.g.
#: ``*ng_script`` turns the whole file into a command script).
SAFE_TITLE = "thermotrain checked netlist"
MAX_NAME = 64

NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_]{0,63}"
NODE_PATTERN = r"[A-Za-z0-9_]{1,64}"
_NAME = re.compile(rf"^{NAME_PATTERN}$")
_NODE = re.compile(rf"^{NODE_PATTERN}$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z]{0,6}$")
_EXPR_BODY = re.compile(r"^[A-Za-z0-9_.+\-*/^(), ]+$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")

ELEMENT_TYPES = "RCLKVIEFGHBSWDXA"
ELEMENT_HELP = (
    "R/C/L name n+ n- [model] value [key=value]; K name Lx Ly coupling; V/I name n+ n- [dc] value "
    "[ac ...] [sin|pulse|pwl|exp|sffm|am|trnoise|trrandom(...)]; E/G name n+ n- nc+ nc- gain or "
    "name n+ n- value={expr}; F/H name n+ n- Vname gain; B name n+ n- V={expr}|I={expr}; "
    "S name n+ n- nc+ nc- model [on|off]; W name n+ n- Vname model [on|off]; D name n+ n- model [area]; "
    "X name nodes... subckt [key=value]; A name connections... filesource-model"
)
MODEL_TYPES: tuple[str, ...] = ("r", "c", "l", "sw", "csw", "d", "filesource")
FILESOURCE_KEYS = frozenset(
    {"file", "amploffset", "amplscale", "timeoffset", "timescale", "timerelative", "amplstep"}
)
SOURCE_FUNCTIONS = frozenset({"sin", "pulse", "pwl", "exp", "sffm", "am", "trnoise", "trrandom"})
#: ``.options`` keys with a numeric value (SPICE numbers, no expressions).
OPTION_NUMBERS = frozenset(
    {
        "reltol", "abstol", "vntol", "chgtol", "trtol", "gmin", "pivtol", "pivrel", "maxord", "temp",
        "tnom", "rshunt", "gminsteps", "srcsteps", "seed",
        "itl1", "itl2", "itl3", "itl4", "itl5", "itl6",
    }
)  # fmt: skip
#: ``.options`` keys with a word value, and the words allowed.
OPTION_WORDS: dict[str, frozenset[str]] = {"method": frozenset({"trap", "trapezoidal", "gear"})}
#: ``.options`` keys without a value.
OPTION_FLAGS = frozenset({"interp", "klu", "sparse", "noopiter"})

_ALLOWED = (
    f"element cards {' '.join(ELEMENT_TYPES)}, .model ({' '.join(MODEL_TYPES)}), .subckt/.ends, .param, "
    ".ic, .options (" + " ".join(sorted(OPTION_NUMBERS | OPTION_FLAGS | set(OPTION_WORDS))) + "), .end, "
    "comments"
)
_TRUSTED_HINT = "If you wrote this file yourself, pass --trusted (Python: trusted=True)."

# lexer: strings, expressions, punctuation, words; white space between them
_TOKEN = re.compile(
    r"""(?P<ws>[ \t]+)|(?P<str>"[^"]*")|(?P<expr>\{[^{}]*\}|'[^']*')|(?P<punct>[=()\[\],])"""
    r"""|(?P<word>(?i:params):|[A-Za-z0-9_.+\-%]+)"""
)


@dataclass(frozen=True)
class Token:
    """One lexical token: ``kind`` is ``str``, ``expr``, ``punct`` or ``word``; ``text`` as written."""

    kind: str
    text: str


@dataclass(frozen=True)
class CheckedNetlist:
    """The result of :func:`parse_netlist`.

    text: the canonical netlist: :data:`SAFE_TITLE`, the accepted cards (comments removed, continuations
        re-wrapped), ``.end``. This, never the raw text, is what ngspice runs.
    nodes: top-level node names, in order of first use (subcircuit-internal nodes excluded).
    files: ``(name in text, source path)`` of every data file a filesource names and that lies in the
        netlist's folder (the runner copies each into its private run folder under that name).
    title: the original first line, printable ASCII only (for messages; never sent to ngspice).
    """

    text: str
    nodes: tuple[str, ...]
    files: tuple[tuple[str, str], ...]
    title: str


class _Refusal(Exception):
    """Internal: a card is refused (the parser adds file and line)."""


# --------------------------------------------------------------------------------------------- public API


def parse_netlist(
    text: str,
    *,
    source: str = "netlist",
    folder: str | Path | None = None,
    provided_files: Collection[str] = (),
    file_names_only: bool = False,
) -> CheckedNetlist:
    """Check ``text`` against the allowlist (module docstring) and return the canonical netlist.

    source: names the text in messages (e.g. its path). folder: the netlist's own folder; a filesource
    may name a regular file in it. provided_files: data-file names the caller writes itself (e.g. the
    writer's noise files); these are accepted without a folder. file_names_only: accept any plain file
    name without looking for the file (for a text-only check; a runner checks again with its files).
    Raises NetlistSecurityError
    ``"SOURCE, line N: CARD ... is not allowed ...; allowed: ..."``. Cost: O(len(text)).
    """
    if not isinstance(text, str):
        raise InputError(f"{source}: netlist text must be a str, not {type(text).__name__}.")
    state = _State(source, Path(folder) if folder is not None else None, provided_files, file_names_only)
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    title = re.sub(r"[^\x20-\x7e]", " ", lines[0]).strip() if lines else ""
    for number, card in _logical_lines(lines, source):
        try:
            state.card(number, card)
        except _Refusal as exc:
            raise NetlistSecurityError(f"{source}, line {number}: {exc}") from None
    state.finish()
    body = [SAFE_TITLE, *state.out, ".end"]
    return CheckedNetlist(
        text="\n".join(body) + "\n",
        nodes=tuple(state.nodes),
        files=tuple((name, str(path)) for name, path in state.files.items()),
        title=title,
    )


def check_untrusted(text: str, trusted: bool = False, *, source: str = "netlist") -> str:
    """The canonical text of ``text`` after :func:`parse_netlist`; a filesource file name is checked for
    its form only (a plain name), as a text has no folder -- the runner checks the file itself. With
    ``trusted`` the text is returned unchanged and a warning line goes to stderr. Raises
    NetlistSecurityError naming the line."""
    if trusted:
        warn_trusted(source)
        return text
    return parse_netlist(text, source=source, file_names_only=True).text


def load_netlist(path: str | Path, *, trusted: bool = False) -> Netlist:
    """Read a netlist file from outside and return it checked, ready for ``run_transient``.

    The file must be a regular UTF-8 file under the ``netlist`` size cap (``/dev/zero``, FIFOs and
    directories are refused at once, without reading). Its text goes through :func:`parse_netlist` with
    the file's folder as the place data files may come from; the returned ``Netlist`` carries the
    canonical text, the top-level nodes and the data files to copy. ``trusted=True`` skips the card
    check (the raw text runs; every run of such a netlist prints a warning line on stderr), but its
    filesource files named by a plain name are still found beside it, checked and copied
    (:func:`trusted_data_files`). Raises InputError / ResourceLimitError for the file,
    NetlistSecurityError naming the line.
    """
    from thermotrain.netlists._writer import Netlist

    path = Path(path)
    text = read_text(path, "netlist", what=f"netlist {path}")
    if trusted:  # the runner prints the warning line at every run of it
        return Netlist(
            text=text, noise_samples=None, noise_interval=0.0, probes=(), title=path.name, seed=0,
            mode="external", trusted=True, external_files=trusted_data_files(text, path),
        )  # fmt: skip
    checked = parse_netlist(text, source=str(path), folder=path.absolute().parent)
    return Netlist(
        text=checked.text,
        noise_samples=None,
        noise_interval=0.0,
        probes=(),
        title=path.name,
        seed=0,
        mode="external",
        nodes=checked.nodes,
        external_files=checked.files,
    )


#: characters a data file may hold: digits, signs, exponent marks, decimal points, white space.
_DATA_BAD_BYTE = re.compile(rb"[^0-9eE+\-. \t\r\n]")
_FILE_REF = re.compile(r'\bfile\s*=\s*"([^"]*)"', re.IGNORECASE)


@dataclass(frozen=True)
class DataFile:
    """A checked filesource data file (:func:`check_data_file`).

    data: the exact bytes that were checked (the runner copies these, never a second read).
    rows, columns: the table's shape (column 0 is time, s). t_end: the last time (s) of the record.
    """

    data: bytes = field(repr=False, compare=False)
    rows: int
    columns: int
    t_end: float


def check_data_file(path: str | Path, *, what: str | None = None) -> DataFile:
    """Read and check a filesource data file: a regular file (symlinks followed) under the ``noise`` cap
    of :mod:`thermotrain._safeio`, holding only rows of finite decimal numbers (characters
    ``0-9 e E + - .`` and white space), at least two per row (time, then one value per source), the same
    count on every row, and an increasing time column (s). Blank lines are ignored.
    Raises InputError naming ``what`` (default: the path), the line and the fix; ResourceLimitError above
    the cap. Cost: O(size)."""
    import numpy as np

    label = what or str(path)
    data = read_regular(path, "noise", what=label)
    bad = _DATA_BAD_BYTE.search(data)
    if bad is not None:
        line = data.count(b"\n", 0, bad.start()) + 1
        raise InputError(
            f"{label}, line {line}: byte {bad.group()!r} is not part of a number; a noise data file holds "
            "only rows of decimal numbers (time in s, then one value per source)."
        )
    rows = [(k, ln.split()) for k, ln in enumerate(data.split(b"\n"), start=1) if ln.strip()]
    if not rows:
        raise InputError(f"{label}: holds no rows; a noise data file holds rows 'time value ...'.")
    columns = len(rows[0][1])
    for k, fields_ in rows:
        if len(fields_) != columns or columns < 2:
            raise InputError(
                f"{label}, line {k}: {len(fields_)} numbers, expected {max(columns, 2)} on every row "
                "(time in s, then one value per source)."
            )
    try:
        values = np.array(data.split(), dtype=np.float64).reshape(len(rows), columns)
    except ValueError:
        for k, fields_ in rows:
            for f in fields_:
                try:
                    float(f)
                except ValueError:
                    raise InputError(f"{label}, line {k}: {f.decode('ascii')!r} is not a number.") from None
        raise InputError(f"{label}: not a table of numbers.") from None
    finite = np.isfinite(values)
    if not finite.all():
        k = rows[int(np.argmin(finite.all(axis=1)))][0]
        raise InputError(f"{label}, line {k}: a number is out of the float64 range (inf); use finite values.")
    t = values[:, 0]
    if t.size > 1 and not np.all(np.diff(t) > 0):
        k = rows[int(np.argmin(np.diff(t) > 0)) + 1][0]
        raise InputError(f"{label}, line {k}: the time column (s) must increase from row to row.")
    return DataFile(data=data, rows=len(rows), columns=columns, t_end=float(t[-1]))


def trusted_data_files(text: str, netlist_path: str | Path) -> tuple[tuple[str, str], ...]:
    """``(name in text, source path)`` of the data files a TRUSTED netlist names with a plain file name
    (``file="noise_1.dat"``): each must exist beside the netlist and pass :func:`check_data_file`, so the
    runner can copy it into its private run folder (ngspice runs there, where a relative name would not
    resolve). Names with a folder part are left to ngspice (a trusted netlist may read what it names).
    InputError names a missing or bad file."""
    folder = Path(netlist_path).absolute().parent
    out: dict[str, str] = {}
    for name in _FILE_REF.findall(text):
        if not _FILE_NAME.match(name) or ".." in name:
            continue
        try:
            real = (folder / name).resolve(strict=True)
        except (OSError, RuntimeError):
            raise InputError(
                f"{netlist_path}: the data file {name!r} it names does not exist in {folder}; put it beside "
                "the netlist (as `thermotrain netlist` writes it)."
            ) from None
        check_data_file(real, what=f"data file {name!r} of {netlist_path}")
        out.setdefault(name.lower(), str(real))
    return tuple(out.items())


def filesource_records(text: str) -> dict[str, tuple[float, float, bool] | None]:
    """For every ``.model NAME filesource (...)`` card of ``text`` (continuation lines joined): its file
    name in lower case -> ``(timeoffset, timescale, timerelative)``, or None when a value is not a plain
    number (the runner then cannot tell where the record ends). Defaults: 0, 1, false."""
    joined = re.sub(r"\n[ \t]*\+", " ", text)
    out: dict[str, tuple[float, float, bool] | None] = {}
    for m in re.finditer(r"(?im)^[ \t]*\.model\s+\S+\s+filesource\b(.*)$", joined):
        body = m.group(1)
        ref = _FILE_REF.search(body)
        if ref is None:
            continue
        keys = {k.lower(): v for k, v in re.findall(r"(\w+)\s*=\s*(\"[^\"]*\"|\[[^\]]*\]|[^\s()]+)", body)}
        try:
            offset = float(keys.get("timeoffset", "0"))
            scale = float(keys.get("timescale", "1"))
        except ValueError:
            out[ref.group(1).lower()] = None
            continue
        out[ref.group(1).lower()] = (offset, scale, keys.get("timerelative", "false").lower() == "true")
    return out


def warn_trusted(source: str) -> None:
    """The loud line printed each time checks are skipped for ``source``."""
    print(
        f"thermotrain: WARNING: {source} runs UNCHECKED (trusted): ngspice may run commands and read files "
        "named in it; use --trusted / trusted=True only for netlists you wrote yourself.",
        file=sys.stderr,
        flush=True,
    )


def check_name(kind: str, value: object, *, node: bool = False) -> str:
    """``value`` if it is a str matching the strict name pattern (nodes: ``[A-Za-z0-9_]{1,64}``, other
    names: ``[A-Za-z][A-Za-z0-9_]{0,63}``), else InputError naming ``kind`` (e.g. ``"probe"``)."""
    pattern = _NODE if node else _NAME
    if not isinstance(value, str) or not pattern.match(value):
        shown = NODE_PATTERN if node else NAME_PATTERN
        raise InputError(f"{kind} {value!r} is not a valid name; names must match {shown}.")
    return value


def option_line(key: object, value: object) -> str:
    """A ``.options`` line for one option from the allowlist (:data:`OPTION_NUMBERS` with a finite
    number, :data:`OPTION_WORDS` with one of its words, :data:`OPTION_FLAGS` with ``True``/``None``);
    InputError for anything else."""
    import math

    from thermotrain.netlists._writer import format_number

    allowed = sorted(OPTION_NUMBERS | OPTION_FLAGS | set(OPTION_WORDS))
    if not isinstance(key, str) or key.lower() not in (OPTION_NUMBERS | OPTION_FLAGS | set(OPTION_WORDS)):
        raise InputError(f"option {key!r} is not allowed; allowed options: {' '.join(allowed)}.")
    k = key.lower()
    if k in OPTION_FLAGS:
        if value is None or value is True:
            return f".options {k}"
        raise InputError(f"option {key}={value!r}: {k} is a flag; pass True or None (or leave it out).")
    if k in OPTION_WORDS:
        if isinstance(value, str) and value.lower() in OPTION_WORDS[k]:
            return f".options {k}={value.lower()}"
        raise InputError(f"option {key}={value!r}: choose one of {sorted(OPTION_WORDS[k])}.")
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str) and _NUMBER.match(value) and not value[-1:].isalpha():
            return f".options {k}={value}"
        raise InputError(f"option {key}={value!r}: the value must be a finite number.")
    if not math.isfinite(float(value)):
        raise InputError(f"option {key}={value!r}: the value must be a finite number.")
    return f".options {k}={format_number(float(value))}"


# ------------------------------------------------------------------------------------------ the parser


def _logical_lines(lines: list[str], source: str) -> Iterator[tuple[int, str]]:
    """(first line number, card) for every card after the title: comments stripped, ``+`` continuation
    lines joined with a space, blank lines dropped."""
    current: str | None = None
    start = 0
    for number, raw in enumerate(lines[1:], start=2):
        line = _strip_comment(raw)
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("+"):
            if current is None:
                raise NetlistSecurityError(
                    f"{source}, line {number}: continuation line {_show(raw)} has no card to continue; "
                    f"allowed: {_ALLOWED}."
                )
            current = f"{current} {stripped[1:].strip()}"
            continue
        if current is not None:
            yield start, current
        current, start = stripped, number
    if current is not None:
        yield start, current


def _strip_comment(line: str) -> str:
    """The line without its comment: a full ``*`` line, an inline ``;`` comment, or a ``$`` at the start
    or after white space (ngspice's inline comment marks)."""
    if line.lstrip(" \t").startswith("*"):
        return ""
    cut = line.find(";")
    if cut >= 0:
        line = line[:cut]
    m = re.search(r"(?:^|[ \t])\$", line)
    if m:
        line = line[: m.start()]
    return line


def _show(card: str) -> str:
    card = re.sub(r"[^\x20-\x7e]", "?", card.strip())
    return repr(card if len(card) <= 80 else card[:77] + "...")


def _tokens(card: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(card):
        m = _TOKEN.match(card, pos)
        if m is None:
            ch = card[pos]
            raise _Refusal(
                f"{_show(card)} is not allowed: the character {ch!r} (column {pos + 1}) is none of names, "
                "numbers, {expressions}, = ( ) [ ] , or a quoted filesource file name; allowed: "
                f"{_ALLOWED}. {_TRUSTED_HINT}"
            )
        kind = m.lastgroup or "ws"
        if kind != "ws":
            out.append(Token(kind, m.group()))
        pos = m.end()
    return out


def _is_value(tok: Token) -> bool:
    if tok.kind == "word":
        return bool(_NUMBER.match(tok.text))
    if tok.kind == "expr":
        body = tok.text[1:-1]
        return bool(body.strip()) and bool(_EXPR_BODY.match(body)) and "//" not in body
    return False


class _State:
    """Parser state across cards: subcircuit depth, names seen, output lines."""

    def __init__(
        self, source: str, folder: Path | None, provided: Collection[str], names_only: bool = False
    ) -> None:
        self.source = source
        self.names_only = names_only
        self.folder = folder
        self.provided = {p.lower() for p in provided}
        self.out: list[str] = []
        self.nodes: list[str] = []
        self._node_keys: set[str] = set()
        self.depth = 0
        self.ended = False
        self.files: dict[str, Path] = {}
        self.filesource_models: set[str] = set()
        self.a_models: list[tuple[int, str, str]] = []  # (line, card, model)

    # -- helpers
    def refuse(self, card: str, why: str) -> _Refusal:
        return _Refusal(f"{_show(card)} is not allowed: {why}; allowed: {_ALLOWED}. {_TRUSTED_HINT}")

    def node(self, card: str, tok: Token) -> None:
        if tok.kind != "word" or not _NODE.match(tok.text):
            raise self.refuse(card, f"node name {tok.text!r} must match {NODE_PATTERN}")
        if self.depth == 0 and tok.text.lower() not in self._node_keys:
            self._node_keys.add(tok.text.lower())
            self.nodes.append(tok.text)

    def name(self, card: str, tok: Token, what: str) -> str:
        if tok.kind != "word" or not _NAME.match(tok.text):
            raise self.refuse(card, f"{what} {tok.text!r} must match {NAME_PATTERN}")
        return tok.text

    def value(self, card: str, tok: Token, what: str = "value") -> None:
        if not _is_value(tok):
            raise self.refuse(
                card, f"{what} {tok.text!r} must be a number (e.g. 1k, 2.5e-9) or a {{expression}}"
            )

    def emit(self, card: str) -> None:
        """Append the card with blanks collapsed: the lexer consumed every character of it as a checked
        token or a blank, so this is the checked tokens in their original adjacency."""
        self.out.extend(_wrap(re.sub(r"[ \t]+", " ", card.strip())))

    # -- cards
    def card(self, number: int, card: str) -> None:
        if self.ended:
            raise self.refuse(card, "nothing but comments may follow .end")
        word = card.split()[0].lower()
        if word.startswith("."):
            handler = getattr(self, f"dot_{word[1:]}", None) if re.fullmatch(r"\.[a-z]+", word) else None
            if handler is None:
                raise self.refuse(card, f"the dot command {card.split()[0]!r} can run commands, read files or "
                                  "change the analysis, which the runner sets itself")  # fmt: skip
            handler(card, _tokens(card))
            return
        letter = word[0].upper()
        if letter not in ELEMENT_TYPES:
            raise self.refuse(card, f"element type {letter!r} is not on the list {ELEMENT_TYPES}")
        if not _NAME.match(word):
            raise self.refuse(card, f"element name {card.split()[0]!r} must match {NAME_PATTERN}")
        toks = _tokens(card)
        getattr(self, f"element_{letter}")(number, card, toks)
        self.emit(card)

    # -- elements
    def _params(self, card: str, toks: list[Token], *, words: Collection[str] = (), functions=()) -> None:
        """Trailing tokens of an element: numbers/expressions, ``key=value``, allowed bare words and
        allowed function calls ``f(v v ...)``."""
        i = 0
        while i < len(toks):
            t = toks[i]
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if t.kind == "word" and nxt is not None and nxt.text == "=":
                self.name(card, t, "parameter name")
                if i + 2 >= len(toks):
                    raise self.refuse(card, f"{t.text}= needs a value")
                self.value(card, toks[i + 2], f"{t.text}=")
                i += 3
            elif t.kind == "word" and t.text.lower() in functions and nxt is not None and nxt.text == "(":
                j = i + 2
                while j < len(toks) and toks[j].text != ")":
                    if toks[j].text != ",":
                        self.value(card, toks[j], f"argument of {t.text}()")
                    j += 1
                if j >= len(toks):
                    raise self.refuse(card, f"{t.text}( is not closed")
                i = j + 1
            elif t.kind == "word" and t.text.lower() in words:
                i += 1
            elif _is_value(t):
                i += 1
            else:
                raise self.refuse(card, f"{t.text!r} is not a value, key=value or an allowed word here")

    def _nodes(self, card: str, toks: list[Token], start: int, count: int) -> None:
        if len(toks) < start + count:
            raise self.refuse(card, f"needs {count} node names")
        for t in toks[start : start + count]:
            self.node(card, t)

    def element_R(self, number: int, card: str, toks: list[Token]) -> None:
        self._nodes(card, toks, 1, 2)
        rest = toks[3:]
        if not rest:
            raise self.refuse(card, "needs a value")
        if rest[0].kind == "word" and _NAME.match(rest[0].text) and (len(rest) < 2 or rest[1].text != "="):
            rest = rest[1:]  # a model name
        self._params(card, rest)

    element_C = element_R
    element_L = element_R

    def element_K(self, number: int, card: str, toks: list[Token]) -> None:
        if len(toks) < 4:
            raise self.refuse(card, "K needs two inductor names and a coupling factor")
        for t in toks[1:-1]:
            if self.name(card, t, "inductor name")[0].upper() != "L":
                raise self.refuse(card, f"{t.text!r} is not an inductor name")
        self.value(card, toks[-1], "coupling factor")

    def element_V(self, number: int, card: str, toks: list[Token]) -> None:
        self._nodes(card, toks, 1, 2)
        self._params(card, toks[3:], words=("dc", "ac"), functions=SOURCE_FUNCTIONS)

    element_I = element_V

    def element_E(self, number: int, card: str, toks: list[Token]) -> None:
        if len(toks) >= 5 and toks[3].text.lower() in ("value", "vol", "cur") and toks[4].text == "=":
            self._nodes(card, toks, 1, 2)
            if len(toks) != 6 or toks[5].kind != "expr" or not _is_value(toks[5]):
                raise self.refuse(card, f"{toks[3].text}= takes one {{expression}}")
            return
        self._nodes(card, toks, 1, 4)
        if len(toks) != 6:
            raise self.refuse(card, "needs four nodes and one gain")
        self.value(card, toks[5], "gain")

    element_G = element_E

    def element_F(self, number: int, card: str, toks: list[Token]) -> None:
        self._nodes(card, toks, 1, 2)
        if len(toks) != 5:
            raise self.refuse(card, "needs two nodes, a voltage source name and a gain")
        if self.name(card, toks[3], "voltage source name")[0].upper() != "V":
            raise self.refuse(card, f"{toks[3].text!r} is not a voltage source name")
        self.value(card, toks[4], "gain")

    element_H = element_F

    def element_B(self, number: int, card: str, toks: list[Token]) -> None:
        self._nodes(card, toks, 1, 2)
        ok = len(toks) == 6 and toks[3].text.lower() in ("v", "i") and toks[4].text == "="
        if not ok or toks[5].kind != "expr" or not _is_value(toks[5]):
            raise self.refuse(card, "B takes exactly V={expression} or I={expression}")

    def element_S(self, number: int, card: str, toks: list[Token]) -> None:
        self._nodes(card, toks, 1, 4)
        if len(toks) < 6:
            raise self.refuse(card, "needs four nodes and a model name")
        self.name(card, toks[5], "model name")
        self._params(card, toks[6:], words=("on", "off"))

    def element_W(self, number: int, card: str, toks: list[Token]) -> None:
        self._nodes(card, toks, 1, 2)
        if len(toks) < 5 or self.name(card, toks[3], "voltage source name")[0].upper() != "V":
            raise self.refuse(card, "needs two nodes, a voltage source name and a model name")
        self.name(card, toks[4], "model name")
        self._params(card, toks[5:], words=("on", "off"))

    def element_D(self, number: int, card: str, toks: list[Token]) -> None:
        self._nodes(card, toks, 1, 2)
        if len(toks) < 4:
            raise self.refuse(card, "needs two nodes and a model name")
        self.name(card, toks[3], "model name")
        self._params(card, toks[4:], words=("off",))

    def element_X(self, number: int, card: str, toks: list[Token]) -> None:
        end = len(toks)
        for i, t in enumerate(toks):
            if i > 0 and (t.text.lower() == "params:" or (i + 1 < len(toks) and toks[i + 1].text == "=")):
                end = i
                break
        if end < 2:
            raise self.refuse(card, "needs a subcircuit name")
        for t in toks[1 : end - 1]:
            self.node(card, t)
        self.name(card, toks[end - 1], "subcircuit name")
        rest = toks[end:]
        if rest and rest[0].text.lower() == "params:":
            rest = rest[1:]
        self._assignments(card, rest)

    def element_A(self, number: int, card: str, toks: list[Token]) -> None:
        if len(toks) < 3:
            raise self.refuse(card, "needs connections and a filesource model name")
        model = self.name(card, toks[-1], "model name")
        depth = 0
        conns = toks[1:-1]
        for t in conns:
            if t.text in ("[", "]"):
                depth += 1 if t.text == "[" else -1
                if depth not in (0, 1):
                    raise self.refuse(card, "brackets [ ] must be single and balanced")
            elif t.text in ("(", ")") or (
                t.kind == "word" and re.fullmatch(r"%(v|vd|i|id|g|gd|h|hd)", t.text.lower())
            ):
                pass
            else:
                self.node(card, t)
        if depth != 0 or [t.text for t in conns].count("(") != [t.text for t in conns].count(")"):
            raise self.refuse(card, "unbalanced ( ) or [ ] in the connections")
        self.a_models.append((number, card, model))

    # -- dot commands
    def dot_model(self, card: str, toks: list[Token]) -> None:
        if len(toks) < 3:
            raise self.refuse(card, ".model needs a name and a type")
        name = self.name(card, toks[1], "model name")
        kind = toks[2].text.lower()
        if kind not in MODEL_TYPES:
            raise self.refuse(card, f"model type {toks[2].text!r} is not on the list {' '.join(MODEL_TYPES)}")
        rest = toks[3:]
        if rest and rest[0].text == "(":
            if rest[-1].text != ")":
                raise self.refuse(card, ".model ( is not closed")
            rest = rest[1:-1]
        i = 0
        while i < len(rest):
            key = rest[i]
            if i + 1 >= len(rest) or rest[i + 1].text != "=":
                raise self.refuse(card, f"model parameter {key.text!r} must be key=value")
            k = self.name(card, key, "model parameter").lower()
            if kind == "filesource" and k not in FILESOURCE_KEYS:
                raise self.refuse(card, f"filesource parameter {k!r} is not one of {sorted(FILESOURCE_KEYS)}")
            if i + 2 >= len(rest):
                raise self.refuse(card, f"{k}= needs a value")
            val = rest[i + 2]
            if val.kind == "str":
                if not (kind == "filesource" and k == "file"):
                    raise self.refuse(card, "quoted strings are allowed only as a filesource file")
                self.file(card, val.text[1:-1])
                i += 3
            elif val.text == "[":
                j = i + 3
                while j < len(rest) and rest[j].text != "]":
                    self.value(card, rest[j], f"entry of {k}")
                    j += 1
                if j >= len(rest):
                    raise self.refuse(card, f"{k}=[ is not closed")
                i = j + 1
            elif val.kind == "word" and val.text.lower() in ("true", "false"):
                i += 3
            else:
                self.value(card, val, f"{k}=")
                i += 3
        if kind == "filesource":
            if "file" not in {t.text.lower() for t in rest}:
                raise self.refuse(card, 'a filesource needs file="name"')
            self.filesource_models.add(name.lower())
        self.emit(card)

    def file(self, card: str, name: str) -> None:
        """Check a filesource ``file`` and record it (lower case: ngspice lowercases it)."""
        if not _FILE_NAME.match(name) or ".." in name:
            raise self.refuse(
                card, f"the file {name!r} must be a plain file name in the netlist's own folder (no folder "
                "part, no '..', no absolute path)",
            )  # fmt: skip
        key = name.lower()
        if key in self.provided or self.names_only:
            return
        if self.folder is None:
            raise self.refuse(card, f"the file {name!r} is not part of this netlist (data files are read "
                              "only from the folder of a netlist file, via load_netlist)")  # fmt: skip
        folder = self.folder.resolve()
        path = self.folder / name
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise self.refuse(card, f"the file {name!r} does not exist in {self.folder}") from None
        if real.parent != folder:
            raise self.refuse(card, f"the file {name!r} is a link that leaves the netlist's folder ({real})")
        try:
            check_data_file(real, what=f"filesource file {name!r} of {self.source}")
        except InputError as exc:
            raise _Refusal(str(exc)) from None
        if key in self.files and self.files[key] != real:
            raise self.refuse(card, f"two files map to {key!r} (ngspice reads file names in lower case)")
        self.files[key] = real

    def dot_subckt(self, card: str, toks: list[Token]) -> None:
        if len(toks) < 2:
            raise self.refuse(card, ".subckt needs a name")
        self.name(card, toks[1], "subcircuit name")
        i = 2
        self.depth += 1
        while (
            i < len(toks)
            and toks[i].text.lower() != "params:"
            and not (i + 1 < len(toks) and toks[i + 1].text == "=")
        ):
            self.node(card, toks[i])
            i += 1
        rest = toks[i + 1 :] if i < len(toks) and toks[i].text.lower() == "params:" else toks[i:]
        self._assignments(card, rest)
        self.emit(card)

    def dot_ends(self, card: str, toks: list[Token]) -> None:
        if self.depth == 0:
            raise self.refuse(card, ".ends without .subckt")
        if len(toks) > 2:
            raise self.refuse(card, ".ends takes at most the subcircuit name")
        if len(toks) == 2:
            self.name(card, toks[1], "subcircuit name")
        self.depth -= 1
        self.emit(card)

    def _assignments(self, card: str, toks: list[Token]) -> None:
        if len(toks) % 3:
            raise self.refuse(card, "parameters must be key=value")
        for i in range(0, len(toks), 3):
            self.name(card, toks[i], "parameter name")
            if toks[i + 1].text != "=":
                raise self.refuse(card, "parameters must be key=value")
            self.value(card, toks[i + 2], f"{toks[i].text}=")

    def dot_param(self, card: str, toks: list[Token]) -> None:
        if len(toks) < 4:
            raise self.refuse(card, ".param needs key=value")
        self._assignments(card, toks[1:])
        self.emit(card)

    def dot_ic(self, card: str, toks: list[Token]) -> None:
        rest = toks[1:]
        if not rest or len(rest) % 6:
            raise self.refuse(card, ".ic takes v(node)=value ...")
        for i in range(0, len(rest), 6):
            v, lp, n, rp, eq, val = rest[i : i + 6]
            if v.text.lower() != "v" or lp.text != "(" or rp.text != ")" or eq.text != "=":
                raise self.refuse(card, ".ic takes v(node)=value ...")
            if n.kind != "word" or not _NODE.match(n.text):
                raise self.refuse(card, f"node name {n.text!r} must match {NODE_PATTERN}")
            self.value(card, val, f"v({n.text})=")
        self.emit(card)

    def dot_options(self, card: str, toks: list[Token]) -> None:
        rest = toks[1:]
        i = 0
        while i < len(rest):
            key = rest[i]
            has_value = i + 1 < len(rest) and rest[i + 1].text == "="
            value = rest[i + 2] if has_value and i + 2 < len(rest) else None
            if has_value and value is None:
                raise self.refuse(card, f"{key.text}= needs a value")
            try:
                option_line(key.text, True if value is None else value.text)
            except InputError as exc:
                raise self.refuse(card, str(exc).rstrip(".")) from None
            if value is not None and value.kind != "word":
                raise self.refuse(card, f"option {key.text} takes a plain number or word")
            i += 3 if has_value else 1
        self.emit(card)

    dot_option = dot_options

    def dot_end(self, card: str, toks: list[Token]) -> None:
        if len(toks) != 1:
            raise self.refuse(card, ".end takes nothing")
        self.ended = True

    def finish(self) -> None:
        if self.depth:
            raise NetlistSecurityError(f"{self.source}: a .subckt is not closed by .ends.")
        for number, card, model in self.a_models:
            if model.lower() not in self.filesource_models:
                raise NetlistSecurityError(
                    f"{self.source}, line {number}: {_show(card)} is not allowed: A (XSPICE) instances may "
                    f"only use a filesource model, and {model!r} is not one; allowed: {_ALLOWED}. "
                    f"{_TRUSTED_HINT}"
                )


def _wrap(card: str, width: int = 100) -> list[str]:
    """Split a long card at blanks outside quotes/braces into ``+`` continuation lines."""
    if len(card) <= width:
        return [card]
    pieces: list[str] = []
    current, depth, quote = "", 0, ""
    for ch in card:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == " " and not quote and depth == 0 and len(current) >= width:
            pieces.append(current)
            current = ""
            continue
        current += ch
    pieces.append(current)
    return [pieces[0], *(f"+ {p}" for p in pieces[1:])]


def clean_environment(home: str | os.PathLike[str]) -> dict[str, str]:
    """The environment for an ngspice process: ours without ``SPICE_*``/``NGSPICE_*`` (e.g.
    ``SPICE_SCRIPTS``/``SPICE_LIB_DIR`` pick the ``spinit`` script, ``NGSPICE_INPUT_DIR`` adds a search
    folder) or ``USERPROFILE``, with ``HOME`` set to ``home`` (an empty folder, so no ``~/.spiceinit``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("SPICE_") or k.startswith("NGSPICE_") or k == "USERPROFILE")
    }
    env["HOME"] = str(home)
    return env
