"""Can fewer forced time points speed up ngspice's noisy runs without changing the numbers? (issue 9)

File noise is piecewise linear between samples t_k = k·NT, so ngspice must put a time point on every t_k.
The writer forces them with a zero-amplitude TRNOISE clock, whose *permanent* breakpoints make ngspice cut
the step after each one to 0.1·min(previous step, NT): about 5 time points per NT, the floor of
`spice_scaling.py --compare-options`. This script measures the alternative: an XSPICE ``triangle`` clock
(zero amplitude, corners every NT), whose *temporary* breakpoints carry no step cut, with the local
truncation error loosened (``abstol``/``chgtol``) so the step stays at ``tmax`` -- 2 (``tmax`` = NT/2) or 4
(NT/4) points per NT. Same netlist, same noise samples, same output grid (NT/2); each deck runs in
``ngspice -b`` and is compared with the reference (TRNOISE clock, ngspice's default tolerances) by the
paired covariance change ‖Ĉ_variant − Ĉ_ref‖_F / ‖Ĉ_ref‖_F (the same noise, so sampling error cancels and
what remains is integration error) next to the CI95 of one run's covariance.

    python benchmarks/spice_clock.py --out runs/bench [--sizes 16 64] [--duration 200]

Writes OUT/spice_clock.json and prints a table. Not a timed test; the decks use an XSPICE model the
netlist allowlist does not admit (``triangle``), so this is a measurement, not a run mode.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from thermotrain._report import table, write_json

#: (label, clock, .options, tmax as a fraction of NT or None = ngspice's default)
VARIANTS = (
    ("reference", "trnoise", "", None),
    ("reltol 1e-2 (today's default)", "trnoise", "reltol=1e-2", None),
    ("triangle clock, tmax NT/2", "triangle", "reltol=1e-2 abstol=1e-3 chgtol=1e-6", 0.5),
    ("triangle clock, tmax NT/4", "triangle", "reltol=1e-2 abstol=1e-3 chgtol=1e-6", 0.25),
)


def _deck(
    body: str, clock: str, options: str, tmax: float | None, nt: float, stop: float, probes, out: str
) -> str:
    from thermotrain.netlists._writer import CLOCK_NODE, CLOCK_SOURCE, format_number

    lines = body.rstrip("\n").split("\n")
    if lines[-1].strip().lower() == ".end":
        lines.pop()
    if clock == "triangle":
        f = format_number(1.0 / (2.0 * nt))
        lines = [ln for ln in lines if not ln.startswith(CLOCK_SOURCE)]
        lines += [
            f"A_ttclk tt_cz {CLOCK_NODE} tt_tri",
            f".model tt_tri triangle(cntl_array=[-1 1] freq_array=[{f} {f}] out_low=0 out_high=0 duty_cycle=0.5)",
            "V_ttcz tt_cz 0 dc 0",
        ]
    step = format_number(nt / 2)
    tran = f".tran {step} {format_number(stop)}" + ("" if tmax is None else f" 0 {format_number(tmax * nt)}")
    lines += [
        f".options interp {options}".rstrip(),
        tran,
        ".control",
        "run",
        "rusage all",
        f"wrdata {out} " + " ".join(f"v({p})" for p in probes),
        ".endc",
        ".end",
    ]
    return "\n".join(lines) + "\n"


def measure(n: int, duration_tau: float) -> list[dict]:
    from thermotrain.circuits import Theory, linear_sde, preset
    from thermotrain.netlists import write_netlist
    from thermotrain.netlists._ngspice import _data_files

    c = preset("rc8", size=n).build(0)
    nt, tau = c.noise_interval, c.time_constant
    stop = duration_tau * tau
    nl = write_netlist(c, noise="file", seed=5, duration=stop + tau)
    th = Theory(linear_sde(c), nt)
    ci95 = th.error_budget(0.9 * stop, (0.0, 0.5), seed=0).covariance_rel_error_ci95
    rows, covs = [], {}
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for name, (data, _) in _data_files(nl).items():
            (folder / name).write_bytes(data)
        for label, clock, options, tmax in VARIANTS:
            out = folder / "out.txt"
            deck = folder / "deck.cir"
            out.unlink(missing_ok=True)
            deck.write_text(_deck(nl.text, clock, options, tmax, nt, stop, c.outputs, str(out)))
            t0 = time.perf_counter()
            res = subprocess.run(["ngspice", "-b", str(deck)], capture_output=True, text=True, cwd=folder)
            wall = time.perf_counter() - t0
            m = re.search(r"Transient timepoints = (\d+)", res.stdout)
            rej = re.search(r"Rejected timepoints = (\d+)", res.stdout)
            if m is None or not out.exists():  # ngspice -b exits 1 after a .control run (no .print)
                raise SystemExit(f"ngspice failed on the {label!r} deck at N={n}: {res.stdout[-400:]}")
            x = np.loadtxt(out)[:, 1::2]
            x = x[x.shape[0] // 10 :]
            covs[label] = np.cov(x.T)
            rows.append(
                {
                    "N": n,
                    "variant": label,
                    "duration_tau": duration_tau,
                    "wall_s": wall,
                    "time_points": int(m.group(1)),
                    "rejected": int(rej.group(1)) if rej else None,
                    "points_per_NT": int(m.group(1)) / (stop / nt),
                }
            )
    ref = covs["reference"]
    for r in rows:
        r["speedup_vs_reference"] = rows[0]["wall_s"] / r["wall_s"]
        r["paired_covariance_rel_change"] = float(
            np.linalg.norm(covs[r["variant"]] - ref) / np.linalg.norm(ref)
        )
        r["covariance_rel_error_ci95_one_run"] = ci95
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 64], help="array sizes N (cells)")
    p.add_argument("--duration", type=float, default=200.0, help="simulated time per run (tau)")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="output directory")
    args = p.parse_args(argv)
    rows = [r for n in args.sizes for r in measure(n, args.duration)]
    write_json(args.out / "spice_clock.json", {"benchmark": "spice_clock", "runs": rows})
    print(
        table(
            [
                (
                    r["N"],
                    r["variant"],
                    r["points_per_NT"],
                    r["rejected"],
                    r["wall_s"],
                    r["speedup_vs_reference"],
                    r["paired_covariance_rel_change"],
                    r["covariance_rel_error_ci95_one_run"],
                )
                for r in rows
            ],
            (
                "N",
                "variant",
                "time points per NT",
                "rejected",
                "wall (s)",
                "speed-up",
                "paired cov. change",
                "CI95 (one run)",
            ),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
