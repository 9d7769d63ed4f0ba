"""The shipped hardware profiles and the one way to turn a name, a path or a profile into a profile.

Every place that accepts a profile (``thermotrain profile``, ``train --backend``, TNGD, the experiments and
benchmarks) goes through :func:`find_profile`, so a name, a path and a bad value mean the same everywhere.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from thermotrain._errors import InputError, ProfileError
from thermotrain.models._profile import HardwareProfile, load_profile

__all__ = ["SHIPPED_PROFILES", "find_profile", "shipped_profile_path"]

#: Names of the calibrated profiles shipped with thermotrain (``thermotrain/models/profiles/NAME.json``).
SHIPPED_PROFILES: tuple[str, ...] = ("rc8", "rlc8")

_CHOICES = (
    f"a shipped profile ({', '.join(SHIPPED_PROFILES)}) or the path of a hardware-profile JSON (e.g. one "
    "written by `thermotrain calibrate`)"
)


def shipped_profile_path(name: str) -> Path:
    """Path of the shipped profile ``name`` (one of :data:`SHIPPED_PROFILES`); InputError naming the choices
    for any other name. The file is not read here (see :func:`find_profile`)."""
    if not isinstance(name, str) or name not in SHIPPED_PROFILES:
        raise InputError(f"no shipped profile {name!r}; choose one of {', '.join(SHIPPED_PROFILES)}.")
    return Path(str(importlib.resources.files("thermotrain.models") / "profiles" / f"{name}.json"))


def find_profile(spec: str | os.PathLike[str] | HardwareProfile, what: str = "backend") -> HardwareProfile:
    """The :class:`HardwareProfile` that ``spec`` names: a profile (returned as is), a shipped name
    (:data:`SHIPPED_PROFILES`) or the path of a profile JSON, read with :func:`load_profile`'s checks (a
    regular UTF-8 file under the "profile" size cap, then the strict schema).

    ``what`` labels ``spec`` in the one-line error (e.g. ``"backend"``, ``"--profile"``): InputError for a
    value that is neither a name, a path nor a profile, ProfileError for a path that does not exist or a
    file that is not a valid profile."""
    if isinstance(spec, HardwareProfile):
        return spec
    if isinstance(spec, str) and spec in SHIPPED_PROFILES:
        return load_profile(shipped_profile_path(spec))
    if not isinstance(spec, str | os.PathLike) or str(spec) == "":
        raise InputError(f"{what} {spec!r} is not a hardware profile; use {_CHOICES}.")
    path = Path(spec)
    if not path.exists() and not path.is_symlink():
        raise ProfileError(f"{what} {str(spec)!r}: no such profile file; use {_CHOICES}.")
    return load_profile(path)
