"""``thermotrain demo``: the whole chain on small defaults, in minutes on 2 cores.

1. the netlist of an 8-cell RC array; 2. its SPICE validation report (and the 8-cell RLC array's);
3. a surrogate calibrated against SPICE (hardware profile); 4. a small network trained with thermodynamic
K-FAC on that surrogate next to Adam and digital K-FAC.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path


def _step(title: str) -> float:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)), flush=True)
    return time.perf_counter()


def run_demo(out: Path, *, quick: bool = False) -> int:
    from thermotrain.circuits import preset
    from thermotrain.netlists import write_netlist
    from thermotrain.netlists._validation import ValidationSettings, summary, validate

    out.mkdir(parents=True, exist_ok=True)
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

    for title, module, fn in (
        (
            "3. surrogate calibrated against SPICE (hardware profile)",
            "thermotrain.models._demo",
            "demo_calibrate",
        ),
        (
            "4. training: Adam vs digital K-FAC vs thermodynamic K-FAC",
            "thermotrain.training._demo",
            "demo_train",
        ),
    ):
        try:
            step = getattr(importlib.import_module(module), fn)
        except (ModuleNotFoundError, AttributeError):
            continue
        t = _step(title)
        step(out, quick=quick)
        print(f"[{time.perf_counter() - t:.1f} s]")
    print(f"\ndemo finished in {time.perf_counter() - t_all:.0f} s; outputs in {out}/")
    if failed:
        print(f"validation FAILED for: {', '.join(failed)} (see the reports)")
        return 3
    return 0


def _main(args: argparse.Namespace) -> int:
    return run_demo(args.out, quick=args.quick)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole chain on small defaults (netlist, SPICE validation, calibration, training)",
        description="Netlist of rc8, SPICE validation reports of rc8 and rlc8, a calibrated surrogate, and a "
        "small network trained with Adam, digital K-FAC and thermodynamic K-FAC. Minutes on 2 cores.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="shorter SPICE runs and training (for smoke tests)")
    p.set_defaults(func=_main)
