"""The training part of ``make demo``: Adam vs digital K-FAC vs thermodynamic K-FAC on sklearn's digits.

``demo_train(out)`` trains the digits MLP (64-32-10) with the three optimizers and prints the three-row table
(optimizer, test accuracy, test loss, steps, simulation s, modelled device s, analog time τ); it writes
``out/train/comparison.json``, ``out/train/results.json``, ``out/train/comparison.png`` and one run folder
per optimizer.

Thermodynamic K-FAC runs on the profile the demo's calibration step just wrote (``out/calibrate-rc8``), else
on the shipped 8-bit-coupling hardware profile ``thermotrain.models/profiles/rc8.json`` when that file exists
and :func:`thermotrain.models.load_profile` accepts it, else on the ideal device; the choice (and why) is
printed. It runs with no settings of its own: exactly what ``thermotrain train --optimizer kfac --backend
PROFILE`` does with no other flag (covariance readout, analog time chosen per inverse for the profile's
recommended readout error, the profile's own κ0), so the demo shows what a user gets.

It runs through the experiments' protocol (:mod:`thermotrain.training._protocol`) with one-point grids --
nothing is tuned, so it stays within the demo's budget: TrainConfig's defaults (chosen earlier on validation
splits), one seed, the validation examples (20 %) held out of training; ``out/train/results.json`` says so
(``selected_on: "fixed"``).

Budget on 2 CPU cores: ≲ 60 s (``quick=True``: ≲ 20 s, 2 epochs on 600 examples).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from thermotrain.models import shipped_profile_path
from thermotrain.training._compare import train_comparison

__all__ = ["demo_profile", "demo_train", "shipped_profile"]

log = logging.getLogger(__name__)


def shipped_profile() -> tuple[Path | None, str]:
    """The shipped rc8 profile's path if it exists and loads, else ``None``; and a sentence saying why."""
    path = shipped_profile_path("rc8")
    if not path.exists():
        return None, f"no shipped profile at {path}; using the ideal device"
    try:
        from thermotrain.models import load_profile

        load_profile(path)
    except Exception as exc:  # noqa: BLE001 - any failure to load means: fall back, and say why
        return (
            None,
            f"the shipped profile {path} does not load ({type(exc).__name__}: {exc}); using the ideal device",
        )
    return path, f"using the shipped hardware profile {path}"


def demo_profile(out: Path) -> tuple[Path | None, str]:
    """The profile the demo's calibration step just wrote (``out/calibrate-rc8/profile.json``) when it
    loads, else the shipped one (:func:`shipped_profile`); and a sentence saying which and why."""
    fresh = out / "calibrate-rc8" / "profile.json"
    if fresh.exists():
        try:
            from thermotrain.models import load_profile

            load_profile(fresh)
            return fresh, f"using the profile calibrated against SPICE in step 3 ({fresh})"
        except Exception as exc:  # noqa: BLE001 - fall back to the shipped profile, and say why
            path, why = shipped_profile()
            return path, f"step 3's profile {fresh} does not load ({exc}); {why}"
    return shipped_profile()


def demo_train(out: Path, quick: bool = False) -> None:
    """Train Adam, digital K-FAC and thermodynamic K-FAC on digits; print the table; save comparison files.

    ``out/train/`` is the demo's own folder: an earlier demo's runs there are replaced (when the new ones
    finish), so ``make demo`` works twice in a row.

    Args:
        out: the demo's output folder; results go to ``out/train/``.
        quick: 2 epochs on 600 examples instead of 5 epochs on all 1,437 (for CI / smoke runs); 20 % of the
            training examples are held out as the validation split either way.
    """
    profile, why = demo_profile(Path(out))
    print(f"thermodynamic K-FAC backend: {why}")
    threads = torch.get_num_threads()
    # one thread: the matrices are small (<= 65 x 65), and two threads on two shared cores spend more time
    # synchronising than computing (measured: 5-13 ms per profile inverse on 1 thread, 0.2-0.8 s on 2 under load)
    torch.set_num_threads(1)
    try:
        train_comparison(
            Path(out) / "train",
            backend_profile=profile,
            epochs=2 if quick else 5,
            subset=600 if quick else None,
            overwrite=True,
        )
    finally:
        torch.set_num_threads(threads)
