"""Suite-wide test set-up: every test marked ``@pytest.mark.spice`` (anywhere under tests/) is skipped, with
the reason, on a machine where ngspice is missing (``make test`` installs it); nothing else changes."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]  # tests/netlists/test_spice_skip.py runs a small inner session


def spice_skip_reason() -> str | None:
    """Why ``spice`` tests cannot run here (ngspice's binary and shared library both missing), else None.
    Asked at collection time, through the runner's own detector."""
    from thermotrain.netlists._ngspice import ngspice_missing

    return ngspice_missing()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = spice_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"spice test skipped: {reason}")
    for item in items:
        if "spice" in item.keywords:
            item.add_marker(skip)
