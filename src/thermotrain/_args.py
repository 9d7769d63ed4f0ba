"""Argument checking shared by the command line and the Python API.

The ``check_*`` functions validate one value where it enters (a function argument or a dataclass field)
and raise :class:`InputError` naming the argument, the value and the range. The ``arg_*`` factories wrap
them as ``argparse`` types, so a bad flag is refused by the parser with the same words
(``thermotrain validate: error: argument --runs: must be an integer >= 1, got 0``).
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable
from typing import Any

from thermotrain._errors import InputError

SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit here


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int (a bool, float or string is refused) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name}={value!r} must be an integer, not {type(value).__name__}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InputError(f"{name}={value} must be an integer >= {minimum}.")
    if maximum is not None and value > maximum:
        raise InputError(f"{name}={value} must be an integer <= {maximum}.")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_min: bool = False,
    unit: str = "",
) -> float:
    """``value`` as a finite float (a bool or string is refused) in the given range; ``strict_min``
    makes the lower bound exclusive. ``unit`` is appended to messages (e.g. ``"s"`` or ``"tau"``)."""
    u = f" {unit}" if unit else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name}={value!r} must be a number{u}, not {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name}={value!r}{u} must be finite.")
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        raise InputError(f"{name}={value!r}{u} must be {'>' if strict_min else '>='} {minimum!r}{u}.")
    if maximum is not None and value > maximum:
        raise InputError(f"{name}={value!r}{u} must be <= {maximum!r}{u}.")
    return value


def check_seed(name: str, value: Any) -> int:
    """A seed: an integer in [0, 2**32 - 1]."""
    return check_int(name, value, minimum=0, maximum=SEED_MAX)


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name}={value!r} is not one of {', '.join(map(str, choices))}.")
    return value


def _argparse_type(parse: Callable[[str], Any], check: Callable[[Any], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number") from None
        try:
            return check(value)
        except InputError as exc:
            # drop the "name=value" prefix: argparse names the flag itself
            message = str(exc)
            _, _, rest = message.partition(" must ")
            raise argparse.ArgumentTypeError(
                f"must {rest.rstrip('.')}, got {text}" if rest else message
            ) from None

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


def _parse_int(text: str) -> int:
    return int(text.strip())


def _parse_float(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def arg_int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [minimum, maximum]."""
    return _argparse_type(_parse_int, lambda v: check_int("value", v, minimum=minimum, maximum=maximum))


def arg_float(
    minimum: float | None = None, maximum: float | None = None, *, strict_min: bool = False
) -> Callable[[str], float]:
    """argparse type: a finite float in the range (``strict_min``: exclusive lower bound)."""
    return _argparse_type(
        _parse_float,
        lambda v: check_float("value", v, minimum=minimum, maximum=maximum, strict_min=strict_min),
    )


def arg_seed() -> Callable[[str], int]:
    """argparse type: a seed in [0, 2**32 - 1]."""
    return arg_int(0, SEED_MAX)


positive_int = arg_int(1)
nonnegative_int = arg_int(0)
positive_float = arg_float(0.0, strict_min=True)
nonnegative_float = arg_float(0.0)
seed = arg_seed()
