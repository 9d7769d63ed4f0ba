"""``thermotrain demo``: the whole chain on small defaults, in minutes on 2 cores.

1. the netlist of an 8-cell RC array; 2. its SPICE validation report (and the 8-cell RLC array's);
3. a surrogate calibrated against SPICE (hardware profile); 4. a small network trained with thermodynamic
K-FAC on that surrogate next to Adam and digital K-FAC.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from thermotrain._errors import OutputError
from thermotrain._safeio import OUTPUT_MARKER, check_output_dir, check_replaceable

#: Marks a folder the demo wrote, so a rerun may replace it without --overwrite.
MARKER = ".thermotrain-demo"


def prepare_out(out: Path, *, overwrite: bool = False) -> Path:
    """Make ``out`` an empty folder for the demo: absent or empty folders are used as they are; a folder an
    earlier demo wrote (it holds ``MARKER``) is emptied; any other non-empty folder is refused, with
    ``overwrite`` too unless another thermotrain command wrote it. Checked before any work starts."""
    out = Path(out)
    if out.is_dir() and (out / MARKER).is_file():
        overwrite = True
    out = check_output_dir(out, overwrite=overwrite)
    if overwrite:  # never empty a folder of files thermotrain did not write
        check_replaceable(out, "--out", (MARKER, OUTPUT_MARKER))
    if out.is_dir():
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    try:
        (out / MARKER).write_text("written by `thermotrain demo`; a rerun replaces this folder\n")
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write there ({exc.strerror or exc}).") from None
    return out


def _step(title: str) -> float:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)), flush=True)
    return time.perf_counter()


def run_demo(out: Path, *, quick: bool = False, overwrite: bool = False) -> int:
    from thermotrain.circuits import preset
    from thermotrain.netlists import write_netlist
    from thermotrain.netlists._validation import ValidationSettings, summary, validate

    out = prepare_out(out, overwrite=overwrite)
    t_all = time.perf_counter()
    t = _step("1. netlist of the 8-cell RC integrator array (rc8)")
    spec = preset("rc8")
    circuit = spec.build(0)
    nl = write_netlist(circuit, noise="file", seed=1, duration=200 * circuit.time_constant)
    paths = nl.save(out / "rc8.cir")
    print(
        f"wrote {paths[0]} ({len(circuit.elements)} elements; noise file {paths[-1].name})  [{time.perf_counter() - t:.1f} s]"
    )

    failed = []
    for part, name in (("2a", "rc8"), ("2b", "rlc8")):
        t = _step(f"{part}. SPICE validation of {name}")
        settings = ValidationSettings(runs=2 if quick else 4, duration_tau=400 if quick else 2500, seed=0)
        report = validate(preset(name), settings, out_dir=out / f"validate-{name}", name=name)
        print(summary(report))
        print(f"plots and report.json in {out / f'validate-{name}'}  [{time.perf_counter() - t:.1f} s]")
        if not report["pass"]:
            failed.append(name)

    from thermotrain.models._demo import demo_calibrate
    from thermotrain.training._demo import demo_train

    for title, step in (
        ("3. surrogate calibrated against SPICE (hardware profile)", demo_calibrate),
        ("4. training: Adam vs digital K-FAC vs thermodynamic K-FAC", demo_train),
    ):
        t = _step(title)
        step(out, quick=quick)
        print(f"[{time.perf_counter() - t:.1f} s]")
    print(f"\ndemo finished in {time.perf_counter() - t_all:.0f} s; outputs in {out}/")
    if failed:
        print(f"validation FAILED for: {', '.join(failed)} (see the reports)")
        return 3
    return 0


def _main(args: argparse.Namespace) -> int:
    return run_demo(args.out, quick=args.quick, overwrite=args.overwrite)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole chain on small defaults (netlist, SPICE validation, calibration, training)",
        description="Netlist of rc8, SPICE validation reports of rc8 and rlc8, a calibrated surrogate, and a "
        "small network trained with Adam, digital K-FAC and thermodynamic K-FAC. Minutes on 2 cores.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="shorter SPICE runs and training (for smoke tests)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty OUT that another thermotrain command wrote (a demo folder is always replaced; a folder of other files is never deleted)",
    )
    p.set_defaults(func=_main)
