"""The training part of ``make demo``: Adam vs digital K-FAC vs thermodynamic K-FAC on sklearn's digits.

``demo_train(out)`` trains the digits MLP (64-32-10) with the three optimizers and prints the three-row table
(optimizer, test accuracy, test loss, steps, wall s, analog time τ); it writes ``out/train/comparison.json``,
``out/train/comparison.png`` and one run folder per optimizer.

Thermodynamic K-FAC runs on the profile the demo's calibration step just wrote (``out/calibrate-rc8``), else
on the shipped 8-bit-coupling hardware profile ``thermotrain.models/profiles/rc8.json`` when that file exists
and :func:`thermotrain.models.load_profile` accepts it, else on the ideal device; the choice (and why) is
printed. On a profile the factors are inverted by
the covariance readout (``mode="inverse"``, 4000 τ sampled every 2 τ, one device run per factor every 10
steps), because a
mean-readout solve on the surrogate costs an exact time-average of a 4N-state system per call (too slow for a
demo on 2 cores); on the ideal device the mean readout (``mode="solve"``, warm-started) is used.

Budget on 2 CPU cores: ≲ 60 s (``quick=True``: ≲ 20 s, 2 epochs on 600 examples).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from thermotrain.training._compare import train_comparison
from thermotrain.training._solvers import shipped_profile_path

__all__ = ["demo_profile", "demo_train", "shipped_profile", "thermo_on_profile"]

log = logging.getLogger(__name__)

#: Thermodynamic K-FAC settings per backend kind: analog time (τ) per call, noise κ0, readout mode.
IDEAL = {"mode": "solve", "analog_time": 1000.0, "kappa0": 1e-3}
PROFILE = {"mode": "inverse", "analog_time": 4000.0, "analog_dt": 2.0}


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


def thermo_on_profile(prof: Any) -> dict[str, Any]:
    """TrainConfig settings of thermodynamic K-FAC on hardware profile ``prof`` (the demo's, and the
    experiments'): covariance readout (``PROFILE``), the profile's own κ0, and a sample interval no shorter
    than its ADC interval."""
    return {
        "optimizer": "kfac",
        "kfac_mode": PROFILE["mode"],
        "analog_time": float(PROFILE["analog_time"]),
        "analog_dt": max(float(PROFILE["analog_dt"]), prof.sample_interval_tau),
        "kappa0": float(prof.kappa0),
    }


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
        quick: 2 epochs on 600 training examples instead of 5 epochs on all 1,437 (for CI / smoke runs).
    """
    profile, why = demo_profile(Path(out))
    print(f"thermodynamic K-FAC backend: {why}")
    settings: dict[str, Any] = dict(IDEAL)
    if profile is not None:
        from thermotrain.models import load_profile

        t = thermo_on_profile(load_profile(profile))
        settings = {k: t[k] for k in ("analog_time", "analog_dt", "kappa0")} | {"mode": t["kfac_mode"]}
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
            damping=0.1,
            overwrite=True,
            **settings,
        )
    finally:
        torch.set_num_threads(threads)
