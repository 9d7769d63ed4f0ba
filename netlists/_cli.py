"""CLI: ``thermotrain netlist``, ``thermotrain validate`` and ``thermotrain simulate``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from thermotrain._errors import CircuitError

CORNERS_HELP = "non-idealities: ideal (default), board (1%% parts, 8-bit couplings, 2 pF, A0=1e5), integrated"


def add_array_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments that pick an array: shared by netlist, validate and calibrate."""
    from thermotrain.circuits import PRESETS

    p.add_argument("--preset", choices=PRESETS, required=True, help="array family and recipe: rc8 or rlc8")
    p.add_argument("--size", type=int, default=None, help="number of cells N (default 8)")
    p.add_argument(
        "--matrix", type=Path, default=None, help="target SPD matrix A as a .npy file (dimensionless)"
    )
    p.add_argument("--b", type=Path, default=None, help="right-hand side b as a .npy file (RC family only)")
    p.add_argument("--corner", default="ideal", help=CORNERS_HELP)
    p.add_argument(
        "--kappa0", type=float, default=1e-2, help="noise level: node covariance kappa0*A_dev^-1 (V^2)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the tolerance draw and of the noise files")


def spec_from_args(args: argparse.Namespace):
    """The ArraySpec the arguments describe."""
    from thermotrain.circuits import HARDWARE_CORNERS, from_matrix, preset

    if args.corner not in HARDWARE_CORNERS:
        raise CircuitError(f"unknown corner {args.corner!r}; choose one of {sorted(HARDWARE_CORNERS)}.")
    if args.matrix is None:
        return preset(args.preset, size=args.size, corner=args.corner, kappa0=args.kappa0)
    A = _load_npy(args.matrix, "--matrix")
    b = _load_npy(args.b, "--b") if args.b is not None else None
    family = "rc" if args.preset.startswith("rc") and not args.preset.startswith("rlc") else "rlc"
    if family == "rc" and b is None:
        b = np.cos(np.arange(A.shape[0]) + 0.5)
    return from_matrix(A, b, family=family, nonideal=HARDWARE_CORNERS[args.corner], kappa0=args.kappa0)


def array_name(args: argparse.Namespace) -> str:
    """The label reports use: the preset, the matrix file, the corner (e.g. ``rc8:A.npy-board``)."""
    name = args.preset if args.matrix is None else f"{args.preset}:{args.matrix.name}"
    return name if args.corner == "ideal" else f"{name}-{args.corner}"


def _load_npy(path: Path, flag: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CircuitError(f"{flag} {path}: cannot read a numpy .npy array ({exc}).") from exc


def _netlist(args: argparse.Namespace) -> int:
    from thermotrain.netlists._writer import write_netlist

    spec = spec_from_args(args)
    circuit = spec.build(args.seed)
    duration = args.duration * circuit.time_constant if args.noise == "file" else None
    nl = write_netlist(circuit, noise=args.noise, seed=args.seed, duration=duration)
    paths = nl.save(args.output)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    print(
        f"{circuit.title}: {len(circuit.elements)} elements, {len(circuit.noise_sources())} noise sources, "
        f"tau = {circuit.time_constant:.4g} s, NT = {circuit.noise_interval:.4g} s"
    )
    print("non-idealities:\n" + spec.nonideal.describe())
    return 0


def _validate(args: argparse.Namespace) -> int:
    from thermotrain.netlists._validation import ValidationSettings, summary, validate

    spec = spec_from_args(args)
    settings = ValidationSettings(
        runs=args.runs, duration_tau=args.duration, noise=args.noise, seed=args.seed, workers=args.workers
    )
    name = array_name(args)
    report = validate(
        spec, settings, out_dir=args.out, name=name, progress=not args.quiet, save_traces=args.save_traces
    )
    print(summary(report))
    print(f"report: {args.out / 'report.json'}; plots: {args.out}/*.png")
    return 0 if report["pass"] else 3


def _simulate(args: argparse.Namespace) -> int:
    from thermotrain._report import write_json
    from thermotrain.netlists._ngspice import run_transient
    from thermotrain.netlists._safety import load_netlist
    from thermotrain.netlists._writer import Netlist

    text = load_netlist(args.file, trusted=args.trusted)
    nl = Netlist(
        text=text,
        noise_samples=None,
        noise_interval=args.step,
        probes=tuple(args.probe),
        title=args.file.name,
        seed=0,
        mode="external",
    )
    tr = run_transient(nl, step=args.step, stop=args.stop, probes=args.probe)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "transient.npz", time=tr.time, values=tr.values, probes=np.array(tr.probes))
    write_json(args.out / "transient.json", {"ngspice_version": tr.ngspice_version, "wall_s": tr.wall_s})
    print(
        f"{tr.values.shape[0]} points x {len(tr.probes)} probes in {tr.wall_s:.2f} s -> {args.out}/transient.npz"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "netlist",
        help="write one ngspice netlist of an array",
        description="Write the component-accurate ngspice netlist of an array (and its seeded noise file).",
    )
    add_array_arguments(p)
    p.add_argument(
        "--noise",
        choices=("file", "trnoise", "off"),
        default="file",
        help="noise sources: seeded file (bit-reproducible), ngspice TRNOISE, or none",
    )
    p.add_argument("--duration", type=float, default=1000.0, help="length of the file-noise record (tau)")
    p.add_argument("--output", type=Path, required=True, help="netlist path, e.g. rc8.cir")
    p.set_defaults(func=_netlist)

    p = sub.add_parser(
        "validate",
        help="run an array in ngspice and compare with the symbolic model",
        description=(
            "Validate an array: ngspice transient-noise runs against the model's mean, covariance "
            "(exact for sampled noise), autocorrelation and relaxation; the DC solution (RC family). Writes "
            "DIR/report.json, DIR/summary.txt and PNG plots. Exit code 3 when a check fails."
        ),
    )
    add_array_arguments(p)
    p.add_argument("--runs", type=int, default=4, help="independent SPICE runs (own noise seeds)")
    p.add_argument("--duration", type=float, default=2500.0, help="observed time per run (tau)")
    p.add_argument("--noise", choices=("file", "trnoise"), default="file", help="noise generator")
    p.add_argument("--workers", type=int, default=None, help="parallel ngspice processes (default: cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--save-traces", action="store_true", help="also write DIR/traces.npz (for `calibrate --from DIR`)"
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(func=_validate)

    p = sub.add_parser(
        "simulate",
        help="run a netlist file you pass (refused if it holds .control/shell/.include/.lib)",
        description=(
            "Transient run of an external netlist. Text from outside is refused if it holds .control, shell, "
            ".include or .lib unless --trusted is given (only for files you wrote)."
        ),
    )
    p.add_argument("file", type=Path, help="netlist file (.cir)")
    p.add_argument("--step", type=float, required=True, help="output step (s)")
    p.add_argument("--stop", type=float, required=True, help="stop time (s)")
    p.add_argument("--probe", action="append", required=True, help="node to read (repeat)")
    p.add_argument("--trusted", action="store_true", help="allow control/include directives (your own file)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(func=_simulate)
