"""CLI: ``thermotrain calibrate`` (fit a surrogate to SPICE runs and write a hardware profile)."""

from __future__ import annotations

import argparse
from pathlib import Path

from thermotrain._args import arg_int, positive_float, positive_int


def _heldout_runs(text: str) -> int:
    """argparse type of --heldout-runs: an integer >= 2 (the held-out run-to-run spread needs two)."""
    try:
        return arg_int(2)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be an integer >= 2 (the run-to-run spread of the held-out runs needs two runs), got {text}"
        ) from None


def _report_dir(args: argparse.Namespace) -> Path:
    return args.report or args.out.with_suffix("")


def _calibrate(args: argparse.Namespace) -> int:
    from thermotrain._errors import CalibrationError
    from thermotrain._safeio import check_output_dir
    from thermotrain.models._calibrate import (
        CalibrationSettings,
        calibrate,
        check_profile_path,
        load_validation_runs,
        summary,
    )
    from thermotrain.netlists._cli import array_name, spec_from_args, spice_run_kwargs

    report_dir = _report_dir(args)
    # every output is checked before anything is read or run
    check_profile_path(args.out, overwrite=args.overwrite, flag="--out")
    check_output_dir(report_dir, overwrite=args.overwrite, flag="--report")
    if report_dir.absolute() == args.out.absolute():
        raise CalibrationError(
            f"--out {args.out} needs a file name ending in .json (the report goes beside it)."
        )
    if args.from_dir is not None:
        spec, runs, settings = load_validation_runs(args.from_dir)
        cal = calibrate(
            spec,
            settings,
            out_dir=report_dir,
            profile_path=args.out,
            name=args.from_dir.name,
            runs=runs,
            overwrite=args.overwrite,
        )
        print(summary(cal.report))
        print(f"profile: {args.out}; report and plots: {report_dir}/")
        return 0 if cal.report["pass"] else 3
    if args.preset is None:
        raise CalibrationError(
            "give --preset (new SPICE runs) or --from DIR (a `validate --save-traces` folder)."
        )
    spec = spec_from_args(args)
    settings = CalibrationSettings(
        fit_runs=args.fit_runs,
        heldout_runs=args.heldout_runs,
        lag_tau=args.lag,
        mle=args.mle,
        **spice_run_kwargs(args),
    )
    name = array_name(args)
    cal = calibrate(
        spec,
        settings,
        out_dir=report_dir,
        profile_path=args.out,
        name=name,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    print(summary(cal.report))
    print(f"profile: {args.out}; report and plots: {report_dir}/")
    return 0 if cal.report["pass"] else 3


def _profile(args: argparse.Namespace) -> int:
    from thermotrain.models._registry import SHIPPED_PROFILES, find_profile, shipped_profile_path

    path = shipped_profile_path(args.path) if args.path in SHIPPED_PROFILES else Path(args.path)
    prof = find_profile(args.path, what="profile")
    print(f"{path}\n{prof.summary()}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from thermotrain.models._calibrate import CalibrationSettings
    from thermotrain.netlists._cli import add_array_arguments, add_spice_run_arguments

    p = sub.add_parser(
        "calibrate",
        help="fit the surrogate to SPICE runs and write a hardware profile (JSON)",
        description=(
            "Calibrate: run the array's netlist in ngspice (fit runs + held-out runs, seeded noise), fit the "
            "reduced-order surrogate (RC: shifted lag-covariance identification, optionally refined by the "
            "exact transition likelihood; RLC: Boltzmann covariance + lag-autocovariance fit), and write the versioned hardware "
            "profile. The report (report.json, summary.txt, traces/autocorrelation/covariance/fit_errors PNG) "
            "goes next to it. Exit code 3 when the held-out covariance error exceeds its CI95, or the run leaves the op-amps' linear region (predicted swing/slew, or more than 0.1 % of samples clipped). Times in tau "
            "(the array's time constant)."
        ),
    )
    add_array_arguments(p)
    for action in p._actions:  # --preset is not needed with --from
        if action.dest == "preset":
            action.required = False
    p.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        default=None,
        help="calibrate on the runs of a `validate --save-traces` folder instead of new SPICE runs",
    )
    p.add_argument("--fit-runs", type=positive_int, default=4, help="SPICE runs the fit uses (count, >= 1)")
    p.add_argument(
        "--heldout-runs",
        type=_heldout_runs,
        default=4,
        help="SPICE runs held out for the check (count, >= 2: their run-to-run spread needs two)",
    )
    p.add_argument("--lag", type=positive_float, default=0.5, help="identification lag (tau, > 0; RC family)")
    add_spice_run_arguments(p, CalibrationSettings)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing profile (--out) and the report folder an earlier run wrote (a folder of other files is refused)",
    )
    p.add_argument(
        "--mle",
        action="store_true",
        help="refine the RC fit by the exact white-noise likelihood (biased by O(NT/lag) for sampled noise)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, required=True, help="profile path (a .json file), e.g. runs/rc8.json")
    p.add_argument(
        "--report", type=Path, default=None, help="report directory (default: the profile path without .json)"
    )
    p.set_defaults(func=_calibrate)

    p = sub.add_parser(
        "profile",
        help="print a hardware profile's settings and calibration errors",
        description="Load a hardware profile (strict schema check) and print its effective settings, fitted "
        "corrections and fit errors. PATH is a profile JSON or a shipped name (rc8, rlc8).",
    )
    p.add_argument("path", help="profile JSON (path) or rc8 / rlc8")
    p.set_defaults(func=_profile)
