"""The ``thermotrain`` command. Each subcommand lives next to the code it drives, in a ``_cli`` module
exposing ``add_parser(subparsers)``; this file only lists them, so a sub-package adds a command without
touching the others."""

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thermotrain",
        description=(
            "Design-time toolkit for thermodynamic (analog, noise-driven) computers: generate SPICE netlists "
            "of RC/RLC cell arrays, validate them in ngspice against the symbolic model, calibrate surrogates, "
            "and train networks with thermodynamic K-FAC / TNGD on them. Times are in seconds unless a flag "
            "says tau (the array's time constant), voltages in volts, matrices dimensionless."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a sub-package without commands yet
            if exc.name == name:
                continue
            raise
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

    try:
        return int(args.func(args) or 0)
    except ThermotrainError as exc:
        print(f"thermotrain {args.command}: error: {exc}", file=sys.stderr)
        return 1
