"""Model-level size transfer of a shipped profile (issue 9): its twin against the symbolic board model.

For each size N the preset's ``board`` netlist is drawn (seed 0); the profile is instantiated with that
netlist's own drawn parts (the twin that ``validate --profile`` compares with SPICE) and its covariance, with
the sampled noise validate sees (NT/2 grid), is compared with the symbolic model of the same netlist -- the
model SPICE is validated against. No SPICE; exact up to the Lyapunov solves.

    python benchmarks/profile_transfer.py --profile rlc8 --sizes 8 16 32 64 --out runs/bench

Writes OUT/profile_transfer_<profile>.json and prints a table. Not a timed test (N = 64 rlc8: ~4 min, a
2 336-state model).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from thermotrain._report import table, write_json


def transfer(profile_name: str, n: int) -> dict:
    from thermotrain.circuits import Theory, linear_sde, preset
    from thermotrain.models import find_profile
    from thermotrain.netlists._profile_check import PHASES, _rel, twin_prediction

    t0 = time.perf_counter()
    p = find_profile(profile_name)
    spec = preset(p.family + "8", size=n, corner="board")
    circuit = spec.build(0)
    sde = linear_sde(circuit)
    model = Theory(sde, circuit.noise_interval).covariance(PHASES)
    twin, white, _ = twin_prediction(p, spec, circuit)
    return {
        "profile": profile_name,
        "N": n,
        "model_states": int(sde.M.shape[0]),
        "twin_vs_model": _rel(twin, model),
        "white_noise_error": _rel(white, twin),
        "wall_s": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="rlc8", help="shipped profile name or JSON path (rc8, rlc8)")
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32], help="array sizes N (cells)")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="output directory")
    args = p.parse_args(argv)
    rows = []
    for n in args.sizes:
        rows.append(transfer(args.profile, n))
        r = rows[-1]
        print(f"N={n}: twin vs model {r['twin_vs_model']:.2e} ({r['wall_s']:.0f} s)", flush=True)
    name = Path(args.profile).stem
    write_json(args.out / f"profile_transfer_{name}.json", {"benchmark": "profile_transfer", "runs": rows})
    print(
        table(
            [(r["N"], r["model_states"], r["twin_vs_model"], r["white_noise_error"]) for r in rows],
            ("N", "model states", "twin vs model (sampled noise)", "white-noise error"),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
