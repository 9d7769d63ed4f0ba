"""CLI: ``thermotrain netlist``, ``thermotrain validate`` and ``thermotrain simulate``.

Every flag is checked where it enters (argparse types from :mod:`thermotrain._args`: one line, exit 2);
files from outside go through :mod:`thermotrain._safeio` (regular files under a size cap, real finite
``.npy`` arrays of a bounded shape); resources are estimated and refused before any work starts; outputs
are refused when they would replace earlier results without ``--overwrite`` and written atomically.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import numpy as np

from thermotrain._args import arg_int, positive_float, positive_int, seed
from thermotrain._errors import InputError

CORNERS_HELP = (
    "non-idealities: ideal; board (a printed board of named part classes, typical datasheet values: "
    "10 MHz GBW precision CMOS op-amp of the OPA192 class (A_OL 1e6, 2nd pole 25 MHz, 100 ohm, 25 uV, "
    "5.5 nV/rtHz, +-4.8 V swing, 20 V/us), 1%% thin-film R, C0G/NP0 1%% C (ESR 0.5 ohm, 100 Gohm leakage), "
    "10 uH shielded inductor (DCR 0.1 ohm, 3 pF), 8-bit couplings through 1.5 ohm / 1 pF analog switches, "
    "2 pF routing, b DACs of the 16-bit class (0.05%% gain, 0.1 mV offset error), a noise generator with a "
    "20 MHz filter and 1%% channel mismatch); "
    "integrated (on-chip: 2%% mismatch, 6-bit crossbar, 0.5 pF/node, A0 1e4 / 50 MHz single-stage "
    "amplifier, +-2.3 V swing, 1 mV offset, 200 ohm / 20 fF transmission gates, 2%% noise-DAC mismatch); "
    'or a corner JSON file, e.g. my-parts.json = {"base": "board", "opamp_gbw_hz": 1e6, '
    '"opamp_swing_v": 2.3} (strict schema, units in the keys: thermotrain.circuits.CORNER_KEYS; keys '
    "left out come from 'base'; docs/validation.md)"
)


def _corner_arg(text: str) -> str:
    """``--corner``: a named corner, or a corner JSON file (read and checked now: a bad file is one line)."""
    import argparse as _ap

    from thermotrain._errors import ThermotrainError
    from thermotrain.circuits import HARDWARE_CORNERS, resolve_corner

    if text in HARDWARE_CORNERS:
        return text
    if not text.lower().endswith(".json"):
        raise _ap.ArgumentTypeError(
            f"{text!r} is not a corner; choose one of {', '.join(sorted(HARDWARE_CORNERS))} or a FILE.json"
        )
    try:
        resolve_corner(text)
    except ThermotrainError as e:
        raise _ap.ArgumentTypeError(str(e)) from None
    return text


#: default cap of ``simulate``'s estimated output (MiB), see ``--max-output-mb``.
DEFAULT_MAX_OUTPUT_MB = 1024.0


def _max_cells() -> int:
    from thermotrain.circuits._targets import MAX_CELLS

    return int(MAX_CELLS)


def add_array_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments that pick an array: shared by netlist, validate and calibrate."""
    from thermotrain.circuits import HARDWARE_CORNERS, PRESETS

    n_max = _max_cells()
    p.add_argument("--preset", choices=PRESETS, required=True, help="array family and recipe: rc8 or rlc8")
    p.add_argument(
        "--size",
        type=arg_int(1, n_max),
        default=None,
        help=f"number of cells N (count, 1..{n_max}; default 8)",
    )
    p.add_argument(
        "--matrix",
        type=Path,
        default=None,
        help=f"target SPD matrix A as a real N x N .npy file, N <= {n_max} (dimensionless)",
    )
    p.add_argument(
        "--b", type=Path, default=None, help="right-hand side b as a real length-N .npy file (RC family only)"
    )
    p.add_argument(
        "--corner",
        default="ideal",
        type=_corner_arg,
        metavar="{" + ",".join(sorted(HARDWARE_CORNERS)) + "} or FILE.json",
        help=CORNERS_HELP,
    )
    p.add_argument(
        "--kappa0",
        type=positive_float,
        default=1e-2,
        help="noise level: node covariance kappa0*A_dev^-1 (V^2)",
    )
    p.add_argument(
        "--seed", type=seed, default=0, help="seed of the tolerance draw and of the noise files (0..2^32-1)"
    )


def add_spice_run_arguments(p: argparse.ArgumentParser, settings: type) -> None:
    """The flags of the :class:`thermotrain.netlists.SpiceRunSettings` fields a user sets (--duration,
    --noise, --workers, --timeout; --seed comes with :func:`add_array_arguments`), with the defaults of
    ``settings`` (ValidationSettings or CalibrationSettings), so a flag's default cannot drift from its
    field's. Read them back with :func:`spice_run_kwargs`."""
    import dataclasses

    d = {f.name: f.default for f in dataclasses.fields(settings)}
    p.add_argument(
        "--duration", type=positive_float, default=d["duration_tau"], help="observed time per run (tau, > 0)"
    )
    p.add_argument(
        "--noise",
        choices=("file", "trnoise"),
        default=d["noise"],
        help="noise generator: seeded file (bit-reproducible) or ngspice TRNOISE",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=d["workers"],
        help="parallel ngspice processes (count; default: cores)",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=d["timeout"],
        help="wall-clock limit of each SPICE run (s, > 0)",
    )


def _optional_tolerance(text: str) -> float | None:
    """``--target-tolerance``: a positive relative error, or ``none``/``off`` (not judged)."""
    if text.strip().lower() in ("none", "off"):
        return None
    return positive_float(text)


def spice_run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The SpiceRunSettings keywords the flags of :func:`add_spice_run_arguments` (and --seed) hold."""
    return {
        "duration_tau": args.duration,
        "noise": args.noise,
        "seed": args.seed,
        "workers": args.workers,
        "timeout": args.timeout,
    }


def spec_from_args(args: argparse.Namespace):
    """The ArraySpec the arguments describe (the matrix files are read here, capped at MAX_CELLS)."""
    from thermotrain.circuits import from_matrix, preset, resolve_corner

    if args.matrix is None:
        if args.b is not None:
            raise InputError("--b needs --matrix (a preset brings its own right-hand side).")
        return preset(args.preset, size=args.size, corner=args.corner, kappa0=args.kappa0)
    if args.size is not None:
        raise InputError("--size and --matrix both set N; pass only one of them.")
    A = load_matrix(args.matrix)
    b = load_vector(args.b, A.shape[0]) if args.b is not None else None
    family = "rc" if args.preset.startswith("rc") and not args.preset.startswith("rlc") else "rlc"
    if family == "rc" and b is None:
        b = np.cos(np.arange(A.shape[0]) + 0.5)
    return from_matrix(A, b, family=family, nonideal=resolve_corner(args.corner), kappa0=args.kappa0)


def load_matrix(path: Path) -> np.ndarray:
    """``--matrix``: a real finite square 2-D ``.npy`` array of at most MAX_CELLS x MAX_CELLS entries."""
    from thermotrain._safeio import load_npy

    n_max = _max_cells()
    A = load_npy(path, "--matrix", ndim=2, max_elements=n_max * n_max)
    if A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise InputError(f"--matrix {path}: shape {A.shape} is not square N x N with N >= 1.")
    if A.shape[0] > n_max:
        raise InputError(
            f"--matrix {path}: N = {A.shape[0]} cells is above the limit of {n_max} (like --size)."
        )
    return A


def load_vector(path: Path, n: int) -> np.ndarray:
    """``--b``: a real finite 1-D ``.npy`` array of length ``n`` (the matrix's N)."""
    from thermotrain._safeio import load_npy

    b = load_npy(path, "--b", ndim=1, max_elements=_max_cells())
    if b.shape[0] != n:
        raise InputError(
            f"--b {path}: length {b.shape[0]}, but --matrix is {n} x {n}; pass a length-{n} vector."
        )
    return b


def array_name(args: argparse.Namespace) -> str:
    """The label reports use: the preset, the matrix file, the corner (e.g. ``rc8:A.npy-board``)."""
    name = args.preset if args.matrix is None else f"{args.preset}:{args.matrix.name}"
    return name if args.corner == "ideal" else f"{name}-{args.corner}"


def _netlist(args: argparse.Namespace) -> int:
    from thermotrain._safeio import check_output_file
    from thermotrain.netlists._writer import check_noise_size, noise_record_rows, write_netlist

    output = check_output_file(args.output, overwrite=args.overwrite, flag="--output", example="array.cir")
    spec = spec_from_args(args)
    circuit = spec.build(args.seed)
    duration = args.duration * circuit.time_constant if args.noise == "file" else None
    if duration is not None and circuit.noise_sources():  # refuse before drawing anything
        rows = noise_record_rows(duration, circuit.noise_interval)
        check_noise_size(rows, len(circuit.noise_sources()), what="--duration (tau)")
    nl = write_netlist(circuit, noise=args.noise, seed=args.seed, duration=duration)
    paths = nl.save(output)  # noise files first, the .cir last, each atomically
    print(f"wrote {', '.join(str(p) for p in paths)}")
    print(
        f"{circuit.title}: {len(circuit.elements)} elements, {len(circuit.noise_sources())} noise sources, "
        f"tau = {circuit.time_constant:.4g} s, NT = {circuit.noise_interval:.4g} s"
    )
    sc = spec.scaling
    print(
        f"scaling: A = {sc.matrix_scale:.4g} x A_dev (units of A; max|A_dev| = 1), "
        f"V = {sc.voltage_scale:.4g} V per unit of x, Cov x = {sc.kappa0_x:.4g} x A^-1 (kappa0 = {sc.kappa0:.4g} V^2)"
    )
    print("non-idealities:\n" + spec.nonideal.describe())
    return 0


def _validate(args: argparse.Namespace) -> int:
    from thermotrain._safeio import check_output_dir
    from thermotrain.netlists._validation import ValidationSettings, summary, validate

    check_output_dir(args.out, overwrite=args.overwrite, flag="--out")
    profile = None
    if args.profile is not None:
        from thermotrain.models import find_profile

        profile = find_profile(args.profile, what="--profile")  # read and checked before any SPICE run
    spec = spec_from_args(args)
    if profile is not None and profile.family != spec.family:
        raise InputError(
            f"--profile {args.profile} describes a {profile.family.upper()} array but --preset {args.preset} "
            f"is {spec.family.upper()}; pass a profile of the same family (rc8 with rc8, rlc8 with rlc8)."
        )
    settings = ValidationSettings(
        runs=args.runs, target_tolerance=args.target_tolerance, **spice_run_kwargs(args)
    )
    name = array_name(args)
    report = validate(
        spec,
        settings,
        out_dir=args.out,
        name=name,
        progress=not args.quiet,
        save_traces=args.save_traces,
        overwrite=args.overwrite,
        profile=profile,
        profile_label=None if args.profile is None else str(args.profile),
    )
    print(summary(report))
    print(f"report: {args.out / 'report.json'}; plots: {args.out}/*.png")
    return 0 if report["pass"] and report.get("profile_pass") is not False else 3


def _simulate(args: argparse.Namespace) -> int:
    from thermotrain._report import write_json
    from thermotrain._safeio import check_output_dir, output_dir, write_bytes_atomic
    from thermotrain.netlists._ngspice import run_transient
    from thermotrain.netlists._safety import check_name, load_netlist

    check_output_dir(args.out, overwrite=args.overwrite, flag="--out")
    for p in args.probe:
        check_name("--probe", p, node=True)
    if args.stop < args.step:
        raise InputError(f"--stop {args.stop!r} s must be >= --step {args.step!r} s.")
    nl = load_netlist(args.file, trusted=args.trusted)
    tr = run_transient(
        nl,
        step=args.step,
        stop=args.stop,
        probes=args.probe,
        engine=args.engine,
        timeout=args.timeout,
        max_output_bytes=args.max_output_mb * 2**20,
    )
    with output_dir(args.out, overwrite=args.overwrite, flag="--out") as tmp:
        buf = io.BytesIO()
        np.savez(buf, time=tr.time, values=tr.values, probes=np.array(tr.probes))
        write_bytes_atomic(tmp / "transient.npz", buf.getvalue())
        write_json(
            tmp / "transient.json",
            {"ngspice_version": tr.ngspice_version, "wall_s": tr.wall_s, "engine": tr.engine},
        )
    print(
        f"{tr.values.shape[0]} points x {len(tr.probes)} probes in {tr.wall_s:.2f} s -> {args.out}/transient.npz"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from thermotrain.netlists._validation import ValidationSettings

    p = sub.add_parser(
        "netlist",
        help="write one ngspice netlist of an array",
        description=(
            "Write the component-accurate ngspice netlist of an array (and its seeded noise file, written "
            "first; the .cir last). The noise-file size is estimated and refused above the noise-file cap "
            "(THERMOTRAIN_MAX_NOISE_MB) before anything is written."
        ),
    )
    add_array_arguments(p)
    p.add_argument(
        "--noise",
        choices=("file", "trnoise", "off"),
        default="file",
        help="noise sources: seeded file (bit-reproducible), ngspice TRNOISE, or none",
    )
    p.add_argument(
        "--duration", type=positive_float, default=1000.0, help="length of the file-noise record (tau, > 0)"
    )
    p.add_argument("--output", type=Path, required=True, help="netlist path, e.g. rc8.cir")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.set_defaults(func=_netlist)

    p = sub.add_parser(
        "validate",
        help="run an array in ngspice and compare with the symbolic model",
        description=(
            "Validate an array: ngspice transient-noise runs against the model's mean, covariance "
            "(exact for sampled noise), autocorrelation and relaxation; the DC solution (RC family). Writes "
            "DIR/report.json, DIR/summary.txt and PNG plots. With --profile P also P's prediction for this "
            "array: the instance (P with this netlist's drawn parts) against its CI95, and the population "
            "(P's tolerance draws). Exit code 3 when a check fails (with --profile: or the instance check)."
        ),
    )
    add_array_arguments(p)
    p.add_argument(
        "--runs",
        type=positive_int,
        default=ValidationSettings().runs,
        help="independent SPICE runs, each with its own noise seed (count)",
    )
    add_spice_run_arguments(p, ValidationSettings)
    p.add_argument(
        "--target-tolerance",
        type=_optional_tolerance,
        default=ValidationSettings().target_tolerance,
        help="largest relative error of the device's solution and covariance against the IDEAL target "
        "(A^-1 b, A^-1) for the second verdict line 'device meets the target: yes' (dimensionless, > 0; "
        "'none': not judged). Does not change the exit code, which is about agreement with the model",
    )
    p.add_argument(
        "--profile",
        default=None,
        metavar="{rc8,rlc8} or FILE.json",
        help="also compare the SPICE covariance with this hardware profile's prediction at this size "
        "(instance: the profile with the netlist's own drawn parts, PASS/FAIL against the CI95; population: "
        "SPICE inside the interval of 50 tolerance draws); a shipped name or a profile JSON",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--save-traces", action="store_true", help="also write DIR/traces.npz (for `calibrate --from DIR`)"
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier thermotrain run in --out (a folder of other files is refused)",
    )
    p.set_defaults(func=_validate)

    p = sub.add_parser(
        "simulate",
        help="run a netlist file you pass (checked against an allowlist of cards)",
        description=(
            "Transient run of an external netlist. The file is parsed against an allowlist (element cards, "
            ".model of linear/switch/diode/filesource types, .subckt/.ends, .param, .ic, .options from a "
            "list, .end, comments; see docs/security.md) and ngspice runs only the checked text, in an "
            "empty private folder. A filesource may read a plain file in the netlist's own folder. "
            "--trusted skips the check (only for files you wrote; warned every time)."
        ),
    )
    p.add_argument("file", type=Path, help="netlist file (.cir)")
    p.add_argument("--step", type=positive_float, required=True, help="output step (s, > 0)")
    p.add_argument("--stop", type=positive_float, required=True, help="stop time (s, >= step)")
    p.add_argument("--probe", action="append", required=True, help="node to read (repeat)")
    p.add_argument(
        "--engine", choices=("shared", "batch"), default="shared", help="ngspice shared library or ngspice -b"
    )
    p.add_argument(
        "--timeout", type=positive_float, default=600.0, help="wall-clock limit of the ngspice run (s)"
    )
    p.add_argument(
        "--max-output-mb",
        type=positive_float,
        default=DEFAULT_MAX_OUTPUT_MB,
        help="refuse a run whose estimated output (points x (probes + 1) x 8 bytes x 3 copies) is larger (MiB)",
    )
    p.add_argument(
        "--trusted", action="store_true", help="skip the netlist check (only for files you wrote yourself)"
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier thermotrain run in --out (a folder of other files is refused)",
    )
    p.set_defaults(func=_simulate)
