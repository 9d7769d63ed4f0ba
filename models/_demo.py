"""The calibration part of ``make demo``: calibrate the 8-cell RC array (board corner: 1 % parts, 8-bit
couplings, 2 pF parasitics, A0 = 1e5) against SPICE runs (4 fit + 4 held out, 2000 tau each) and print the
fit summary. The demo's training step runs thermodynamic K-FAC on this profile; the shipped
``thermotrain/models/profiles/rc8.json`` is the same pipeline on 4x longer runs
(``thermotrain calibrate --preset rc8 --corner board --duration 8000``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["demo_calibrate"]


def demo_calibrate(out: Path, quick: bool = False) -> None:
    from thermotrain.circuits import preset
    from thermotrain.models._calibrate import CalibrationSettings, calibrate, summary

    settings = CalibrationSettings(fit_runs=4, heldout_runs=4, duration_tau=250 if quick else 2000)
    cal = calibrate(
        preset("rc8", corner="board"),
        settings,
        out_dir=Path(out) / "calibrate-rc8",
        profile_path=Path(out) / "calibrate-rc8" / "profile.json",
        name="rc8-board",
    )
    print(summary(cal.report))
    print(f"profile and plots in {Path(out) / 'calibrate-rc8'}/")
