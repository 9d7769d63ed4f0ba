"""MkDocs hook: let mkdocstrings read the package's sources statically, as installed.

``thermotrain`` is one package whose sub-packages live outside ``src/thermotrain`` (``circuits/``,
``netlists/``, ``models/``, ``training/``; see ``[tool.setuptools.package-dir]`` in ``pyproject.toml``).
griffe, which reads the sources for mkdocstrings, finds sub-packages only inside their parent's folder, so
for each build this hook lays out the installed shape as a tree of symbolic links in a temporary folder
and points the Python handler there. Nothing is imported (no torch, no side effects of ``__main__``).
"""

from __future__ import annotations

import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

_trees: list[Path] = []


def _link_tree(root: Path, dest: Path) -> None:
    """Link every package of ``pyproject.toml``'s ``package-dir`` mapping under ``dest`` by dotted name."""
    with open(root / "pyproject.toml", "rb") as fh:
        package_dir: dict[str, str] = tomllib.load(fh)["tool"]["setuptools"]["package-dir"]
    # parents first, so that a sub-package's link lands inside its parent's (real) folder
    for name, folder in sorted(package_dir.items(), key=lambda item: item[0].count(".")):
        source = (root / folder).resolve()
        target = dest.joinpath(*name.split("."))
        if "." in name:
            target.symlink_to(source, target_is_directory=True)
            continue
        target.mkdir(parents=True)
        for entry in source.iterdir():
            if entry.name != "__pycache__" and not (target / entry.name).exists():
                (target / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())


@event_priority(100)  # before mkdocstrings reads its handler settings
def on_config(config: Any) -> Any:
    """Build the source tree and make it the Python handler's only search path (ahead of ``sys.path``)."""
    _cleanup()
    root = Path(config.config_file_path).resolve().parent
    dest = Path(tempfile.mkdtemp(prefix="thermotrain-api-src-"))
    _trees.append(dest)
    _link_tree(root, dest)
    handlers = config.plugins["mkdocstrings"].config.handlers
    handlers.setdefault("python", {})["paths"] = [str(dest)]
    return config


def _cleanup(*_args: Any, **_kwargs: Any) -> None:
    while _trees:
        shutil.rmtree(_trees.pop(), ignore_errors=True)


on_post_build = _cleanup
on_build_error = _cleanup
on_shutdown = _cleanup
