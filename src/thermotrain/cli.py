"""The ``thermotrain`` command. Each subcommand lives next to the code it drives, in a ``_cli`` module
exposing ``add_parser(subparsers)``; this file only lists them, so a sub-package adds a command without
touching the others.

The error boundary is here: any exception reaching it -- a :class:`ThermotrainError` (user error, exit
status ``exc.exit_code``: 1, or 4 for a diverged run), anything else (exit 1), Ctrl-C (exit 130) -- is printed
as one line ``thermotrain CMD: error: ...`` (with the exception's notes, e.g. what a failed run left in its
folder); ``--debug`` re-raises it for the traceback. A bad flag is refused by the parser with one line
(exit 2).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (subcommand module, in the order shown by --help). Each module defines add_parser(subparsers) which
# registers one or more subcommands and sets ``func`` (args -> int exit code) on them.
_COMMAND_MODULES = (
    "thermotrain.netlists._cli",
    "thermotrain.models._cli",
    "thermotrain.training._cli",
    "thermotrain._demo",
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block), exit status 2, and whose help shows
    every default (``%(default)s`` is appended to help texts that do not already name a default)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        hidden = action.default is None or action.default is False or action.default is argparse.SUPPRESS
        if "default" in text.lower() or hidden:  # `in (None, False)` would also hide 0 (0 == False)
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="thermotrain",
        description=(
            "Design-time toolkit for thermodynamic (analog, noise-driven) computers: generate SPICE netlists "
            "of RC/RLC cell arrays, validate them in ngspice against the symbolic model, calibrate surrogates, "
            "and train networks with thermodynamic K-FAC / TNGD on them. Times are in seconds unless a flag "
            "says tau (the array's time constant), voltages in volts, matrices dimensionless."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of an error (for bug reports)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        module = importlib.import_module(name)
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("PySpice", "matplotlib", "distributed"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from thermotrain._errors import ThermotrainError

    name = f"thermotrain {args.command}"
    try:
        return int(args.func(args) or 0)
    except ThermotrainError as exc:
        if args.debug:
            raise
        print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        notes = " ".join(getattr(exc, "__notes__", ()))
        print(f"{name}: interrupted" + (f"; {notes}" if notes else ""), file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print(
            f"{name}: error: out of memory; make the request smaller (fewer cells, steps or samples).",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:  # the boundary: never a traceback for the user
        if args.debug:
            raise
        print(
            f"{name}: error: unexpected {type(exc).__name__}: {_one_line(exc)} (this is a thermotrain bug; "
            "rerun with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return 1


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` and its notes (``add_note``: e.g. what a failed run left behind), on one line."""
    text = " ".join(" ".join((str(exc), *getattr(exc, "__notes__", ()))).split())
    return text if len(text) <= 2000 else text[:1997] + "..."
