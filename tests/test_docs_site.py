"""The docs site (`make docs`): mkdocs.yml builds with --strict (every warning an error: broken links, pages
left out of the nav, docstrings that do not match their signatures), the API pages render every name the
public packages re-export, and no page loads a font or script from the network."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    "thermotrain",
    "thermotrain.circuits",
    "thermotrain.netlists",
    "thermotrain.models",
    "thermotrain.training",
]

_TOOLCHAIN = (
    "mkdocs",
    "material",
    "mkdocstrings",
    "mkdocstrings_handlers",
    "griffe_public_redundant_aliases",
)
_missing = [name for name in _TOOLCHAIN if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=f"docs toolchain not installed ({', '.join(_missing)}); `make test` installs it (dev extra)",
)

# an element that makes the browser fetch something from another host: a font, a stylesheet, a script, ...
_REMOTE_RESOURCE = re.compile(
    r"<(?:script|link|img|iframe|source|embed|object)\b[^>]*\b(?:src|href|data)\s*=\s*[\"']?(?:https?:)?//"
    r"|@import\s+(?:url\()?[\"']?(?:https?:)?//|url\(\s*[\"']?(?:https?:)?//|fonts\.(?:googleapis|gstatic)\.com",
    re.IGNORECASE,
)


def remote_resources(site: Path) -> list[str]:
    """``file: match`` for every reference to a network resource in the site's HTML and CSS."""
    hits = []
    for path in sorted(site.rglob("*")):
        if path.suffix in (".html", ".css") and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            hits += [f"{path.relative_to(site)}: {m.group(0)[:120]}" for m in _REMOTE_RESOURCE.finditer(text)]
    return hits


def reexported_names(package: str) -> list[str]:
    """The names ``package/__init__.py`` re-exports with ``from ._x import Y as Y`` (its public API)."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        folder = tomllib.load(fh)["tool"]["setuptools"]["package-dir"][package]
    tree = ast.parse((ROOT / folder / "__init__.py").read_text(encoding="utf-8"))
    return [
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name
    ]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_every_docs_page_is_built(site: Path) -> None:
    pages = sorted(p.relative_to(ROOT / "docs").with_suffix(".html") for p in (ROOT / "docs").rglob("*.md"))
    assert pages, "no Markdown pages under docs/"
    missing = [str(p) for p in pages if not (site / p).is_file()]
    assert not missing, f"pages not built: {missing}"
    # the home page is the README, included at build time
    assert "What <code>make demo</code> shows" in (site / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("package", PACKAGES)
def test_api_page_renders_every_public_name(site: Path, package: str) -> None:
    page = site / "api" / f"{package.rsplit('.', 1)[-1]}.html"
    html = page.read_text(encoding="utf-8")
    names = reexported_names(package)
    assert len(names) >= 10, f"{package} re-exports only {names}"
    absent = [n for n in names if f'id="{package}.{n}"' not in html]
    assert not absent, f"{page.name} has no entry for {absent}"


def test_models_page_shows_readout_config_with_its_docstring(site: Path) -> None:
    html = (site / "api" / "models.html").read_text(encoding="utf-8")
    start = html.index('id="thermotrain.models.ReadoutConfig"')
    entry = re.sub(r"<[^>]+>", "", html[start : start + 20_000])
    assert "ReadoutConfig" in entry and "analog_time" in entry, entry[:500]


def test_site_loads_nothing_from_the_network(site: Path) -> None:
    assert remote_resources(site) == []


def test_remote_resource_detector_flags_fonts_and_scripts(tmp_path: Path) -> None:
    """The offline check above can fail: it sees what a theme with web fonts or a CDN script would emit."""
    (tmp_path / "a.html").write_text(
        '<link href="https://fonts.gstatic.com" rel="preconnect"><script src="//cdn.example/x.js"></script>'
        '<a href="https://example.org/">a link is fine</a><img src="img/local.png">',
        encoding="utf-8",
    )
    (tmp_path / "b.css").write_text('@import url("https://example.org/f.css");', encoding="utf-8")
    assert len(remote_resources(tmp_path)) == 4  # the link element, its fonts host, the script, the import
