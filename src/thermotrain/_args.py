"""Argument checking shared by the command line and the Python API.

The ``check_*`` functions validate one value where it enters (a function argument or a dataclass field)
and raise :class:`InputError` naming the argument, the value and the range. The ``arg_*`` factories wrap
them as ``argparse`` types, so a bad flag is refused by the parser with the same words
(``thermotrain validate: error: argument --runs: must be an integer >= 1, got 0``).

:func:`add_dataclass_arguments` derives a parser's flags from a config dataclass's field metadata (help,
unit, argparse type, choices) and :func:`namespace_to_dataclass` builds the dataclass back from the parsed
flags, so a field and its flag cannot drift apart (``thermotrain train`` <-> ``TrainConfig``).

:func:`track_explicit_flags`, :func:`load_toml_config`, :func:`apply_config` and :func:`toml_config_text`
give a command a ``--config FILE.toml`` whose keys are the destinations of its flags (``batch_size``), each
value checked by the flag's own type and choices; a flag given on the command line overrides the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import numbers
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from thermotrain._errors import InputError

_T = TypeVar("_T")

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
    try:
        value = float(value)
    except OverflowError:  # an integer beyond the float range (a JSON file may hold one)
        digits = str(value)
        raise InputError(f"{name}={digits[:12]}… ({len(digits)} digits){u} must be finite.") from None
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


def join_words(items: Sequence[str], last: str = "or") -> str:
    """``["a"]`` -> ``"a"``, ``["a", "b", "c"]`` -> ``"a, b or c"`` (``last``: the word before the last item)."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {last} {items[-1]}"


def comma_items(flag: str, text: str, example: str) -> list[str]:
    """The stripped items of a comma-separated ``text`` (``[]`` for a blank one); an empty item (``"1,,2"``,
    ``"1,"``) is refused naming ``flag`` and the value, so a list runs as written, never minus a stray item."""
    if not text.strip():
        return []
    items = [p.strip() for p in text.split(",")]
    empty = next((i for i, item in enumerate(items, 1) if not item), None)
    if empty is not None:
        raise InputError(
            f"{flag}={text!r}: item {empty} of {len(items)} is empty (a stray comma); give the items separated "
            f"by single commas, e.g. {example}."
        )
    return items


def _argparse_type(
    parse: Callable[[str], Any], check: Callable[[Any], Any], unparsable: Callable[[str], str] | None = None
) -> Callable[[str], Any]:
    """An argparse type: ``parse`` the text (a ``ValueError`` is refused with ``unparsable(text)``, default
    "is not a finite number"), then ``check`` the value (its ``InputError`` refused in the same words)."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            why = unparsable(text) if unparsable is not None else f"{text!r} is not a finite number"
            raise argparse.ArgumentTypeError(why) from None
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


def _not_whole(minimum: int | None, maximum: int | None) -> Callable[[str], str]:
    """The refusal of a text that is no integer (``2.5``, ``1e3``, ``abc``): ask for a whole number in the
    range, and for an integral number written otherwise (``1e3``, ``4.0``) show the digits wanted."""
    bounds = [f">= {minimum}" if minimum is not None else "", f"<= {maximum}" if maximum is not None else ""]
    want = "a whole number" + (" " + " and ".join(b for b in bounds if b) if any(bounds) else "")

    def message(text: str) -> str:
        try:
            value = float(text.strip())
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value == int(value):
            return f"must be {want} written in digits (e.g. {int(value)}), got {text.strip()}"
        shown = text.strip() if math.isfinite(value) else repr(text)
        return f"must be {want}, got {shown}"

    return message


def arg_int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [minimum, maximum]; a fraction, an exponent (``1e3``) or a word is refused
    asking for a whole number."""
    return _argparse_type(
        _parse_int,
        lambda v: check_int("value", v, minimum=minimum, maximum=maximum),
        _not_whole(minimum, maximum),
    )


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


def arg_float_or(
    words: dict[str, Any],
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    strict_min: bool = False,
    unit: str = "",
) -> Callable[[str], Any]:
    """argparse type: one of the keywords in ``words`` (mapped to its value, e.g. ``{"auto": "auto"}`` or
    ``{"off": None}``) or a finite float in the range, e.g. ``--analog-time auto`` / ``--analog-time 400``.
    A bad value is refused in one line naming the keywords, the range and ``unit``."""
    u = f" {unit}" if unit else ""
    keywords = " or ".join(repr(w) for w in words)
    bound = f" {'>' if strict_min else '>='} {minimum!r}{u}" if minimum is not None else ""
    bound += f" and <= {maximum!r}{u}" if maximum is not None else ""
    want = f"{keywords} or a number{bound or u}"

    def convert(text: str) -> Any:
        word = text.strip()
        if word.lower() in words:
            return words[word.lower()]
        try:
            value = _parse_float(word)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {text!r}") from None
        try:
            return check_float("value", value, minimum=minimum, maximum=maximum, strict_min=strict_min)
        except InputError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}") from None

    convert.__name__ = "|".join(words) + "|number"
    convert.keywords = dict(words)  # type: ignore[attr-defined] - read by toml_config_text (None -> "off")
    return convert


# --- argparse flags derived from dataclass fields -------------------------------------------------------
#
# A dataclass field describes its flag in ``field(metadata=...)``:
#   help     what the value is (required unless ``cli`` is False)
#   unit     its unit or kind ("tau", "count", "steps", "dimensionless", "nats", "path", ...), shown as
#            "[unit]" after the help; omit for choices and on/off flags
#   type     the argparse type (a checked converter from this module); ``choices`` for a fixed set
#   flag     the flag's name when it is not ``--field-name``
#   group    fields with the same group name are mutually exclusive on the command line
#   metavar  the metavar shown in --help
#   cli      False: no flag (the field keeps its default when built by :func:`namespace_to_dataclass`)
#   default, action  (in ``overrides``) replace the field's default / the derived argparse action
# The flag's default is the field's default, written into the help ("(default: X)") unless None or False
# (a None default's meaning belongs in ``help``). A bool field is an on/off flag: ``--x`` (store_true) when
# it defaults to False, ``--x/--no-x`` when it defaults to True. A "%" in ``help`` must be written "%%".

_FLAG_KEYS = {"help", "unit", "type", "choices", "flag", "group", "metavar", "cli", "default", "action"}


def flag_name(field_name: str) -> str:
    """``batch_size`` -> ``--batch-size``."""
    return "--" + field_name.replace("_", "-")


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The init fields of dataclass ``cls`` that have a command-line flag (``metadata["cli"]`` not False)."""
    return [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("cli", True)]


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    include: tuple[str, ...] | list[str] | None = None,
    exclude: tuple[str, ...] | list[str] = (),
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, argparse.Action]:
    """Add one flag per field of dataclass ``cls`` to ``parser`` from the fields' metadata (see above).

    Args:
        include: only these fields (in this order); default: every field with a flag, in field order.
        exclude: skip these fields.
        overrides: per field, metadata keys to replace for this parser (e.g. another ``default`` or
            ``help``); ``default`` and ``action`` here are passed to argparse as given.

    Returns:
        ``{field name: argparse action}``; the destination of each flag is the field name.

    Raises:
        TypeError: a field named in ``include``/``exclude``/``overrides`` does not exist or has no flag, a
            field has no ``help``, or an unknown metadata key (these are programming errors, not user input).
    """
    overrides = dict(overrides or {})
    fields = {f.name: f for f in cli_fields(cls)}
    for name in (*(include or ()), *exclude, *overrides):
        if name not in fields:
            raise TypeError(f"{cls.__name__} has no command-line field {name!r}.")
    names = [n for n in (include if include is not None else fields) if n not in exclude]
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    actions: dict[str, argparse.Action] = {}
    for name in names:
        f = fields[name]
        meta = {**f.metadata, **overrides.get(name, {})}
        unknown = set(meta) - _FLAG_KEYS
        if unknown:
            raise TypeError(f"{cls.__name__}.{name}: unknown flag metadata {sorted(unknown)}.")
        if not meta.get("help"):
            raise TypeError(f"{cls.__name__}.{name} has no metadata['help'] (or mark it cli=False).")
        help_text = str(meta["help"]) + (f" [{meta['unit']}]" if meta.get("unit") else "")
        kwargs: dict[str, Any] = {"dest": name}
        if "default" in meta:
            kwargs["default"] = meta["default"]
        elif f.default is not dataclasses.MISSING:
            kwargs["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kwargs["default"] = f.default_factory()
        else:
            kwargs["required"] = True
        default = kwargs.get("default")
        if default is not None and default is not False and "%(default)" not in help_text:
            # written here, not left to the formatter: a default of 0 must show too (0 == False)
            help_text += " (default: %(default)s)"
        kwargs["help"] = help_text
        if "action" in meta:
            kwargs["action"] = meta["action"]
        elif isinstance(kwargs.get("default"), bool) or meta.get("type") is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if kwargs.get("default") else "store_true"
        else:
            for key in ("type", "choices", "metavar"):
                if meta.get(key) is not None:
                    kwargs[key] = meta[key]
        target = parser
        if meta.get("group"):
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_mutually_exclusive_group()
            target = groups[meta["group"]]
        actions[name] = target.add_argument(meta.get("flag") or flag_name(name), **kwargs)
    return actions


def namespace_to_dataclass(cls: type[_T], args: argparse.Namespace, **extra: Any) -> _T:
    """Build ``cls`` from the parsed flags: every init field from ``extra`` if given there, else from the
    namespace attribute of the same name; a field without a flag (``cli`` False) may be absent and then
    keeps its default. Anything else missing, or an ``extra`` key that is no field, is a ``TypeError``
    (a flag forgotten in the parser), never a silently defaulted field."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    stray = set(extra) - set(fields)
    if stray:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(stray)}.")
    values: dict[str, Any] = {}
    missing = []
    for name, f in fields.items():
        if name in extra:
            values[name] = extra[name]
        elif hasattr(args, name):
            values[name] = getattr(args, name)
        elif f.metadata.get("cli", True):
            missing.append(name)
    if missing:
        raise TypeError(f"the parsed flags lack {cls.__name__} field(s) {missing}; add their flags.")
    return cls(**values)


# --- TOML config files for a command's flags ---------------------------------------------------------------
#
# A config file sets the same values as the flags, under the flags' destinations (``batch_size = 64``,
# ``analog_time = "auto"``, ``kl_clip = "off"``, ``pd_guard = false``), each checked by the flag's own
# argparse type and choices. A flag given on the command line overrides the file: the parser's actions are
# made to note which destinations the command line set (:func:`track_explicit_flags`), and
# :func:`apply_config` fills in only the others. A relative path in a file is relative to the current
# directory, as on the command line.

_EXPLICIT = "_thermotrain_explicit_flags"


@functools.cache
def _tracking_class(cls: type[argparse.Action]) -> type[argparse.Action]:
    """A subclass of the argparse action ``cls`` that records its destination as given on the command line."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: N807 - argparse's protocol
        setattr(namespace, _EXPLICIT, {*getattr(namespace, _EXPLICIT, ()), self.dest})
        return cls.__call__(self, parser, namespace, values, option_string)

    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": __name__})


def track_explicit_flags(parser: argparse.ArgumentParser, dests: Iterable[str] | None = None) -> None:
    """Make the actions of ``parser`` (those with a destination in ``dests``; default: every flag and
    positional except help) record on the parsed namespace that the command line gave them, for
    :func:`explicit_flags`. Call after the arguments are added."""
    wanted = set(dests) if dests is not None else None
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):
            continue
        if action.dest == argparse.SUPPRESS or (wanted is not None and action.dest not in wanted):
            continue
        action.__class__ = _tracking_class(type(action))


def explicit_flags(args: argparse.Namespace) -> frozenset[str]:
    """The destinations the command line gave (see :func:`track_explicit_flags`)."""
    return frozenset(getattr(args, _EXPLICIT, ()))


def config_actions(
    parser: argparse.ArgumentParser, dests: Iterable[str] | None = None
) -> dict[str, argparse.Action]:
    """``{destination: action}`` of the flags of ``parser`` a config file may set: every optional flag
    (help excluded) or only those in ``dests``."""
    found = {
        a.dest: a
        for a in parser._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction | argparse._VersionAction)
    }
    if dests is None:
        return found
    missing = [d for d in dests if d not in found]
    if missing:
        raise TypeError(f"the parser has no flag for config key(s) {missing}.")
    return {d: found[d] for d in dests}


def _is_switch(action: argparse.Action) -> bool:
    return isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction) or isinstance(
        action, argparse.BooleanOptionalAction
    )


def _config_value(where: str, key: str, value: Any, action: argparse.Action) -> Any:
    """One config-file value, checked and converted like the flag ``action`` would do with its text."""
    flag = "/".join(action.option_strings) if action.option_strings else key
    if isinstance(value, dict | list):
        raise InputError(
            f"{where}: {key} must be a single value (as {flag} takes), not a TOML {type(value).__name__}."
        )
    if _is_switch(action):
        if not isinstance(value, bool):
            raise InputError(f"{where}: {key} = {value!r} must be true or false (the switch {flag}).")
        return value
    if isinstance(value, bool):
        raise InputError(
            f"{where}: {key} = {value!r}: a value is needed, as {flag} VALUE takes, not true/false."
        )
    if action.type is not None:
        if not isinstance(value, str | int | float):
            raise InputError(f"{where}: {key} = {value!r} is not a value {flag} takes.")
        text = repr(value) if isinstance(value, float) else str(value)
        try:
            value = action.type(text)
        except argparse.ArgumentTypeError as exc:
            raise InputError(f"{where}: {key} = {value!r}: {exc}.") from None
        except (TypeError, ValueError):
            raise InputError(f"{where}: {key} = {value!r} is not a value {flag} takes.") from None
    elif not isinstance(value, str):
        raise InputError(
            f'{where}: {key} = {value!r} must be a string (as {flag} takes), e.g. {key} = "...".'
        )
    if action.choices is not None and value not in action.choices:
        raise InputError(f"{where}: {key} = {value!r} is not one of {', '.join(map(str, action.choices))}.")
    return value


def load_toml_config(
    path: str | Path, actions: Mapping[str, argparse.Action], *, what: str = "--config"
) -> dict[str, Any]:
    """The values of a TOML config file for the flags ``actions`` (``{destination: action}``): every key
    must be one of them (an unknown key is refused, naming it and the known keys) and every value is
    checked and converted by the flag's own type and choices. Tables and arrays are refused.

    Raises:
        InputError: an unreadable, oversized or invalid TOML file, an unknown key, a bad value.
    """
    from thermotrain._safeio import read_text

    where = f"{what} {path}"
    text = read_text(path, "config", where)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: not valid TOML ({exc}).") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in actions:
            hint = ""
            if key.replace("-", "_") in actions:
                hint = f" (did you mean {key.replace('-', '_')}?)"
            raise InputError(f"{where}: unknown key {key!r}{hint}; known keys: {', '.join(sorted(actions))}.")
        values[key] = _config_value(where, key, value, actions[key])
    return values


def apply_config(args: argparse.Namespace, values: Mapping[str, Any]) -> argparse.Namespace:
    """``args`` with each config value set unless the command line gave that flag (the flag wins)."""
    given = explicit_flags(args)
    for key, value in values.items():
        if key not in given:
            setattr(args, key, value)
    return args


def _toml_scalar(key: str, value: Any, action: argparse.Action) -> str | None:
    """``value`` as TOML text, or None to leave the key out (None where the flag's default is None)."""
    if value is None:
        keywords = getattr(action.type, "keywords", {})
        word = next((w for w, v in keywords.items() if v is None), None)
        if word is not None:
            return json.dumps(word)
        if action.default is None:
            return None
        raise TypeError(
            f"config key {key}: None has no TOML form and its flag's default is {action.default!r}."
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise TypeError(f"config key {key}={value!r} is not finite.")
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are valid in a TOML basic string
    raise TypeError(f"config key {key}={value!r} ({type(value).__name__}) has no TOML form.")


def toml_config_text(
    values: Mapping[str, Any], actions: Mapping[str, argparse.Action], header: str = ""
) -> str:
    """A TOML config file setting ``values`` (``{destination: value}``, each a key of ``actions``), readable by
    :func:`load_toml_config` with the same ``actions``: a None is written as the keyword its flag maps to
    None (``kl_clip = "off"``) or left out where the flag's default is None. ``header`` becomes comment lines."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for key, value in values.items():
        if key not in actions:
            raise TypeError(f"config key {key!r} is not a flag of this command.")
        text = _toml_scalar(key, value, actions[key])
        if text is not None:
            lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
