"""Can fewer forced time points speed up ngspice's noisy runs without changing the numbers? (issue 9)

File noise is piecewise linear between samples t_k = k·NT, so ngspice must put a time point on every t_k.
The writer forces them with a zero-amplitude TRNOISE clock, whose *permanent* breakpoints make ngspice cut
the step after each one to 0.1·min(previous step, NT): about 5 time points per NT, the floor of
`spice_scaling.py --compare-options`. This script measures the alternative: an XSPICE ``triangle`` clock
(zero amplitude, corners every NT), whose *temporary* breakpoints carry no step cut, with the local
truncation error loosened (``abstol``/``chgtol``) so the step stays at ``tmax`` = NT/2, and the runner's
``stepping="noise-grid"`` (the default of validate's file-noise runs): fixed trapezoidal steps of NT/4
(NT/8 on a circuit with stiff modes, ``noise_grid_steps``), aligned on the noise samples by ONE temporary
breakpoint at NT, so no later step is backward Euler, read on the output grid with ``.options interp``
(two or more internal steps per output step: exact there). Same netlist, same noise samples, same output
grid (NT/2); each deck runs in ``ngspice -b``. Accuracy is measured against a fine run (TRNOISE clock,
tmax NT/16, reltol 1e-5, abstol 1e-15; it agrees with tmax NT/32, reltol 1e-6 to 2e-5): the paired
covariance change ‖Ĉ_variant − Ĉ_fine‖_F / ‖Ĉ_fine‖_F (the same noise, so sampling error cancels and what
remains is integration error), the variance ratio tr Ĉ_variant / tr Ĉ_fine and the rms path error of the
fluctuations, next to the CI95 of one run's covariance; speed against ngspice's defaults.

    python benchmarks/spice_clock.py --out runs/bench [--sizes 16 64] [--duration 200] [--preset rlc8]
        [--corner board]

Writes OUT/spice_clock.json and prints a table. Not a timed test. The "triangle clock every NT" decks are a
measurement only; the "noise grid" deck is the one ``run_transient(stepping="noise-grid")`` builds (its
clock is the runner's own line, like ``.tran``, so the netlist allowlist is unchanged).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from thermotrain._report import table, write_json

#: (label, clock, .options, tmax as a fraction of NT or None = ngspice's default); "grid": the runner's
#: stepping="noise-grid" deck (its own clock, options and tmax)
FINE = "fine (tmax NT/16, reltol 1e-5)"
DEFAULTS = "ngspice defaults (TRNOISE clock)"
VARIANTS = (
    (FINE, "trnoise", "reltol=1e-5 abstol=1e-15", 1 / 16),
    (DEFAULTS, "trnoise", "", None),
    ("reltol 1e-2 (validate's default until 2026-12-06)", "trnoise", "reltol=1e-2", None),
    ("triangle clock every NT, tmax NT/2", "triangle", "reltol=1e-2 abstol=1e-3 chgtol=1e-6", 0.5),
    ("noise grid NT/4 (validate's default)", "grid4", "", None),
    ("noise grid NT/8 (validate's default with stiff modes)", "grid8", "", None),
)


def _deck(
    netlist,
    clock: str,
    options: str,
    tmax: float | None,
    nt: float,
    stop: float,
    probes,
    out: str,
    ics: Sequence[str] = (),
) -> str:
    """One deck; ``ics``: ``.ic`` lines the run starts from (with ``uic``), as validate's runs do."""
    body = netlist.text
    from thermotrain.netlists._writer import CLOCK_NODE, CLOCK_SOURCE, format_number

    lines = body.rstrip("\n").split("\n")
    if lines[-1].strip().lower() == ".end":
        lines.pop()
    if clock.startswith("grid"):
        from thermotrain.netlists._ngspice import _noise_grid, option_line

        body, opts, h = _noise_grid(netlist, "\n".join(lines), nt / 2, None, int(clock[4:]))
        lines = [*body.split("\n"), *(option_line(k, v) for k, v in opts.items())]
        tmax = h / nt  # as run_transient: read on the NT/2 output grid with '.options interp'

    if clock == "triangle":
        f = format_number(1.0 / (2.0 * nt))
        lines = [ln for ln in lines if not ln.startswith(CLOCK_SOURCE)]
        lines += [
            f"A_ttclk tt_cz {CLOCK_NODE} tt_tri",
            f".model tt_tri triangle(cntl_array=[-1 1] freq_array=[{f} {f}] out_low=0 out_high=0 duty_cycle=0.5)",
            "V_ttcz tt_cz 0 dc 0",
        ]
    step = format_number(nt / 2)
    tran = f".tran {step} {format_number(stop)}"
    if tmax is not None or ics:  # ngspice's default tmax is the output step, NT/2
        tran += f" 0 {format_number((0.5 if tmax is None else tmax) * nt)}" + (" uic" if ics else "")
    lines += [
        *ics,
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


def measure(n: int, duration_tau: float, preset_name: str = "rc8", corner: str = "ideal") -> list[dict]:
    from thermotrain.circuits import Theory, linear_sde, preset
    from thermotrain.netlists import write_netlist
    from thermotrain.netlists._ngspice import _data_files, _ic_lines, quiet_start

    c = preset(preset_name, size=n, corner=corner).build(0)
    nt, tau = c.noise_interval, c.time_constant
    stop = duration_tau * tau
    nl = write_netlist(c, noise="file", seed=5, duration=stop + tau)
    # every deck starts, as validate's runs do, at the noise-free DC point (an amplifier can start clamped
    # at the operating point that holds the t = 0 noise sample as a DC current)
    ics = _ic_lines(nl, (), quiet_start(write_netlist(c, noise="off")))
    th = Theory(linear_sde(c), nt)
    ci95 = th.error_budget(0.9 * stop, (0.0, 0.5), seed=0).covariance_rel_error_ci95
    rows, covs, paths = [], {}, {}
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for name, (data, _) in _data_files(nl).items():
            (folder / name).write_bytes(data)
        for label, clock, options, tmax in VARIANTS:
            out = folder / "out.txt"
            deck = folder / "deck.cir"
            out.unlink(missing_ok=True)
            deck.write_text(_deck(nl, clock, options, tmax, nt, stop, c.outputs, str(out), ics))
            t0 = time.perf_counter()
            res = subprocess.run(["ngspice", "-b", str(deck)], capture_output=True, text=True, cwd=folder)
            wall = time.perf_counter() - t0
            m = re.search(r"Transient timepoints = (\d+)", res.stdout)
            rej = re.search(r"Rejected timepoints = (\d+)", res.stdout)
            if m is None or not out.exists():  # ngspice -b exits 1 after a .control run (no .print)
                raise SystemExit(f"ngspice failed on the {label!r} deck at N={n}: {res.stdout[-400:]}")
            data = np.loadtxt(out)
            # rows by grid index k = t / (NT/2) (decks can differ by an extra row at either end), the
            # first 10 % of the run dropped as burn-in
            kf = data[:, 0] / (nt / 2)
            k = np.rint(kf).astype(np.int64)
            keep = (k >= int(0.1 * stop / (nt / 2))) & (np.abs(kf - k) < 1e-6)
            x = data[keep, 1::2]
            covs[label] = np.cov(x.T)
            paths[label] = dict(zip(k[keep].tolist(), x - x.mean(axis=0), strict=True))
            rows.append(
                {
                    "preset": preset_name,
                    "corner": corner,
                    "N": n,
                    "variant": label,
                    "duration_tau": duration_tau,
                    "wall_s": wall,
                    "time_points": int(m.group(1)),
                    "rejected": int(rej.group(1)) if rej else None,
                    "points_per_NT": int(m.group(1)) / (stop / nt),
                }
            )
    ref, base = covs[FINE], next(r for r in rows if r["variant"] == DEFAULTS)
    for r in rows:
        v = r["variant"]
        r["speedup_vs_defaults"] = base["wall_s"] / r["wall_s"]
        r["paired_covariance_rel_change"] = float(np.linalg.norm(covs[v] - ref) / np.linalg.norm(ref))
        r["variance_ratio"] = float(np.trace(covs[v]) / np.trace(ref))
        common = sorted(paths[v].keys() & paths[FINE].keys())
        a = np.array([paths[v][i] for i in common])
        b = np.array([paths[FINE][i] for i in common])
        r["path_rms_rel_error"] = float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))
        r["covariance_rel_error_ci95_one_run"] = ci95
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 64], help="array sizes N (cells)")
    p.add_argument("--duration", type=float, default=200.0, help="simulated time per run (tau)")
    p.add_argument("--preset", default="rc8", choices=("rc8", "rlc8"), help="array preset (default rc8)")
    p.add_argument(
        "--corner",
        default="ideal",
        help="non-ideality corner: ideal, board, integrated or a corner JSON file (default ideal)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="output directory")
    args = p.parse_args(argv)
    rows = [r for n in args.sizes for r in measure(n, args.duration, args.preset, args.corner)]
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
                    r["speedup_vs_defaults"],
                    r["paired_covariance_rel_change"],
                    r["variance_ratio"],
                    r["path_rms_rel_error"],
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
                "speed-up vs defaults",
                "paired cov. change vs fine",
                "variance ratio",
                "path rms error",
                "CI95 (one run)",
            ),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
