"""K-FAC step time as a multiple of an SGD step, ours next to ASDL's, and thermodynamic / digital K-FAC.

For the MLP 784-512-256-10 and the TNGD paper's CNN (Conv2d(1,32,5) → pool → 4608 → 128 → 10), batch 128,
factors every step, inverses every 10 steps (the setting of ENVIRONMENT.md's ASDL figures), it times

- SGD (forward + backward + SGD step),
- our digital K-FAC (``KFACPreconditioner`` + SGD, empirical Fisher),
- ASDL's ``KfacGradientMaker`` (``fisher_emp``, same intervals and damping) when ``asdfghjkl`` is installed,
- our thermodynamic K-FAC on the ideal device (``mode="inverse"`` and ``mode="solve"``) and, with
  ``--profile``, on a hardware profile. Its wall time is the *digital simulation* of the device on this CPU,
  not the device's own time; the analog time per step (τ) is reported next to it.

Each row is the mean over ``--steps`` steps (a multiple of the inverse interval) after ``--warmup`` steps, every
row timed in interleaved blocks of 10 steps (round-robin), so that load changes on a shared machine weigh on
all rows alike. Networks whose widest factor
exceeds ``--max-analog-width`` (default 1024: the CNN's 4609-wide factor) get no thermodynamic rows, and the
JSON says why. Prints a table and writes ``OUT/kfac_overhead.json``.

    python benchmarks/kfac_overhead.py --out runs/bench [--profile rc8] [--threads 1] [--steps 40]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from thermotrain.models import find_profile
from thermotrain.training import AnalogSolver, ExactSolver, KFACConfig, KFACPreconditioner
from thermotrain.training._data import load_dataset
from thermotrain.training._nets import cnn, mlp

INV_EVERY = 10
POOL = 10  # distinct batches cycled through (one per step)
DAMPING = 0.1


def _models() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]]:
    return {
        "mlp-784-512-256-10": (lambda: mlp(784, (512, 256)), (1, 28, 28)),
        "cnn-tngd-paper": (lambda: cnn((1, 28, 28), 32, 5, 128), (1, 28, 28)),
    }


def _time_interleaved(
    runners: dict[str, Callable[[int], None]], warmup: int, steps: int, block: int
) -> dict[str, float]:
    """Seconds per step of each runner, timed in interleaved blocks of ``block`` steps (round-robin over the
    runners), so that a change of machine load during the run weighs on every row alike."""
    for step in runners.values():
        for i in range(warmup):
            step(i)
    total = dict.fromkeys(runners, 0.0)
    done = dict.fromkeys(runners, 0)
    while min(done.values()) < steps:
        for key, step in runners.items():
            todo = min(block, steps - done[key])
            t0 = time.perf_counter()
            for i in range(todo):
                step(warmup + done[key] + i)
            total[key] += time.perf_counter() - t0
            done[key] += todo
    return {key: total[key] / steps for key in runners}


def _sgd_runner(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[int], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i % len(x)]), y[i % len(y)]).backward()
        opt.step()

    return step


def _kfac_runner(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, solver, mode: str
) -> Callable[[int], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    precond = KFACPreconditioner(
        model, KFACConfig(damping=DAMPING, inv_update_steps=INV_EVERY, mode=mode), solver
    )

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i % len(x)]), y[i % len(y)]).backward()
        precond.step()
        opt.step()

    step.precond = precond  # type: ignore[attr-defined]
    return step


def _asdl_runner(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[int], None]:
    class _NoRange(contextlib.ContextDecorator):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    torch.cuda.nvtx.range = lambda *a, **k: _NoRange()  # ASDL calls CUDA profiling ranges even on CPU
    import asdl

    cfg = asdl.PreconditioningConfig(
        preconditioner_upd_interval=INV_EVERY,
        curvature_upd_interval=1,
        damping=DAMPING,
        ema_decay=0.05,
        data_size=x.shape[1],
    )
    gm = asdl.KfacGradientMaker(model, cfg, fisher_type="fisher_emp")
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        dummy = gm.setup_model_call(model, x[i % len(x)])
        gm.setup_loss_call(F.cross_entropy, dummy, y[i % len(y)])
        gm.forward_and_backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench", help="output folder (path)")
    parser.add_argument(
        "--profile",
        default=None,
        help="hardware-profile JSON (path, or rc8 / rlc8 for a shipped one) for a profile row",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (count)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (examples)")
    parser.add_argument("--steps", type=int, default=4 * INV_EVERY, help="timed steps per row (count)")
    parser.add_argument("--warmup", type=int, default=INV_EVERY, help="untimed steps first (count)")
    parser.add_argument(
        "--analog-time",
        type=lambda v: v if v == "auto" else float(v),
        default="auto",
        help="device time per inverse/solve (τ), or auto (per matrix, for the default target readout error)",
    )
    parser.add_argument(
        "--analog-dt",
        type=float,
        default=None,
        help="covariance-readout sample interval (τ; default: chosen with the analog time)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("inverse", "solve"),
        default=["inverse", "solve"],
        help="thermodynamic K-FAC forms to time (names)",
    )
    parser.add_argument(
        "--cells-per-tile",
        type=int,
        default=None,
        help="map each factor onto analog tiles of this many cells (count; default: the profile's chip, "
        "else one device per factor)",
    )
    parser.add_argument("--models", nargs="*", default=list(_models()), help="which networks (names)")
    parser.add_argument("--skip-thermo", action="store_true", help="time only SGD / digital K-FAC / ASDL")
    parser.add_argument(
        "--max-analog-width",
        type=int,
        default=1024,
        help="skip the thermodynamic rows of a network whose widest K-FAC factor exceeds this (count): "
        "simulating a device of n cells exactly costs a 2n x 2n matrix exponential per inverse",
    )
    parser.add_argument(
        "--solve-mappings",
        nargs="+",
        choices=("tiles", "block-diagonal", "gauss-seidel", "block-jacobi"),
        default=["tiles"],
        help="with tiles: how solve mode maps a factor onto them (names; the first is the row "
        "thermo_<backend>_solve, the others thermo_<backend>_solve_<mapping>): tiles = conjugate gradients "
        "preconditioned by the tiles, to the readout's error (train's default); block-diagonal = one round "
        "of the tiles per solve, off-tile blocks dropped (an approximation)",
    )
    parser.add_argument(
        "--data",
        choices=("random", "fashion-mnist"),
        default="random",
        help="the batch every step trains on: Gaussian noise (well-conditioned factors; the historical rows) "
        "or a real Fashion-MNIST batch (ill-conditioned input factors: more outer iterations in solve mode)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tile = args.cells_per_tile
    if tile is None and args.profile:  # the profile's chip maps every thermodynamic row (ideal too)
        chip = find_profile(args.profile).chip
        tile = None if chip is None else chip.cells_per_tile
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    for name in args.models:
        make, shape = _models()[name]
        g = torch.Generator().manual_seed(0)
        # a pool of POOL batches cycled step by step: a new batch every step, as in training (with one fixed
        # batch, solve mode's warm start would already hold the answer from the second step on)
        if args.data == "fashion-mnist":  # real batches: factors as ill-conditioned as in training
            data = load_dataset("fashion-mnist", subset=POOL * args.batch)
            x = data.x_train[: POOL * args.batch].reshape(POOL, args.batch, *shape)
            y = data.y_train[: POOL * args.batch].reshape(POOL, args.batch)
        else:
            x = torch.randn(POOL, args.batch, *shape, generator=g)
            y = torch.randint(0, 10, (POOL, args.batch), generator=g)

        def fresh(make: Callable[[], nn.Module] = make) -> nn.Module:
            torch.manual_seed(0)
            return make()

        row: dict[str, object] = {
            "model": name,
            "batch": args.batch,
            "threads": args.threads,
            "data": args.data,
        }
        runners: dict[str, Callable[[int], None]] = {
            "sgd": _sgd_runner(fresh(), x, y),
            "kfac": _kfac_runner(fresh(), x, y, ExactSolver(), "inverse"),
        }
        try:
            runners["asdl"] = _asdl_runner(fresh(), x, y)
        except ImportError:
            row["asdl_ms"] = row["asdl_over_sgd"] = None
        width = _widest_factor(fresh())
        row["widest_factor"] = width
        row["cells_per_tile"] = tile
        thermo: dict[str, Callable[[int], None]] = {}
        if not args.skip_thermo and width > args.max_analog_width and tile is None:
            row["thermo_skipped"] = f"widest factor {width} > --max-analog-width {args.max_analog_width}"
        elif not args.skip_thermo:
            backends: list[tuple[str, object]] = [("ideal", "ideal")]
            if args.profile:
                backends.append(("profile", args.profile))  # a shipped name (rc8) or a path
            maps = args.solve_mappings if tile is not None else ["auto"]
            runs = [(label, b, m, "trajectory", maps[0]) for label, b in backends for m in args.modes]
            if "inverse" in args.modes:  # the fast readout simulator
                runs += [(label, b, "inverse", "law", "auto") for label, b in backends]
            if tile is not None:  # tiles: the law (a batched draw per round) is the point
                runs = [r for r in runs if not (r[2] == "inverse" and r[3] == "trajectory")]
                if "solve" in args.modes:
                    runs += [(label, b, "solve", "trajectory", m) for label, b in backends for m in maps[1:]]
            for label, backend, mode, sim, mapping in runs:
                # the profile's recommended readout, else the defaults
                solver = AnalogSolver(
                    backend,
                    simulator=sim,
                    cells_per_tile=tile,
                    mapping="auto" if mode == "inverse" else mapping,
                )
                solver.readout = solver.readout.with_(
                    analog_time=args.analog_time,
                    sample_interval=args.analog_dt,
                    kappa0=None if mode == "inverse" else 1e-3,
                )
                key = f"thermo_{label}_{mode}" + ("_law" if sim == "law" else "")
                if mode == "solve" and mapping != maps[0]:
                    key += "_" + mapping.replace("-", "_")
                thermo[key] = _kfac_runner(fresh(), x, y, solver, mode)
                row[f"{key}_mapping"] = solver.mapping
        times = _time_interleaved(runners | thermo, args.warmup, args.steps, INV_EVERY)
        sgd, digital = times["sgd"], times["kfac"]
        row["sgd_ms"], row["kfac_ms"], row["kfac_over_sgd"] = 1e3 * sgd, 1e3 * digital, digital / sgd
        if "asdl" in times:
            row["asdl_ms"], row["asdl_over_sgd"] = 1e3 * times["asdl"], times["asdl"] / sgd
        for key, runner in thermo.items():
            stats = runner.precond.solver.stats  # type: ignore[attr-defined]
            row[f"{key}_ms"] = 1e3 * times[key]
            row[f"{key}_over_kfac"] = times[key] / digital
            row[f"{key}_analog_tau_per_step"] = stats.analog_time_tau / (args.warmup + args.steps)
        for label in ("ideal", "profile"):  # the keys name what training runs by default
            base, law = f"thermo_{label}_inverse", f"thermo_{label}_inverse_law"
            if f"{law}_ms" in row and f"{base}_ms" not in row:  # on tiles only the law row runs
                row[f"{base}_ms"], row[f"{base}_over_kfac"] = row[f"{law}_ms"], row[f"{law}_over_kfac"]
                row[f"{base}_simulator"] = "law"
        rows.append(row)
        print(json.dumps(row), flush=True)

    print()
    heads = [
        "model",
        "SGD ms",
        "K-FAC/SGD (ours)",
        "K-FAC/SGD (ASDL)",
        "thermo inv/K-FAC (ideal, law)",
        "thermo inv/K-FAC (profile, law)",
        "thermo solve/K-FAC (ideal)",
        "thermo solve/K-FAC (profile)",
    ]
    extra = list(args.solve_mappings[1:]) if tile is not None else []
    heads += [f"thermo solve {m}/K-FAC (ideal, profile)" for m in extra]
    print(" | ".join(heads))
    for r in rows:
        asdl_ratio = r["asdl_over_sgd"]
        vals = [
            str(r["model"]),
            f"{r['sgd_ms']:.2f}",
            f"{r['kfac_over_sgd']:.2f}",
            "n/a" if asdl_ratio is None else f"{asdl_ratio:.2f}",
            f"{r.get('thermo_ideal_inverse_law_over_kfac', float('nan')):.2f}",
            f"{r.get('thermo_profile_inverse_law_over_kfac', float('nan')):.2f}",
            f"{r.get('thermo_ideal_solve_over_kfac', float('nan')):.2f}",
            f"{r.get('thermo_profile_solve_over_kfac', float('nan')):.2f}",
        ]
        for m in extra:
            key = m.replace("-", "_")
            vals.append(
                f"{r.get(f'thermo_ideal_solve_{key}_over_kfac', float('nan')):.2f}, "
                f"{r.get(f'thermo_profile_solve_{key}_over_kfac', float('nan')):.2f}"
            )
        print(" | ".join(vals))
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "inverse_interval": INV_EVERY,
        "damping": DAMPING,
        "analog_time_tau": args.analog_time,
    }
    (out / "kfac_overhead.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


def _widest_factor(model: nn.Module) -> int:
    """The largest Kronecker-factor size of the network's Linear/Conv2d layers (inputs + bias, or outputs)."""
    widths = [0]
    for m in model.modules():
        if isinstance(m, nn.Linear):
            widths += [m.in_features + (m.bias is not None), m.out_features]
        elif isinstance(m, nn.Conv2d):
            k = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            widths += [k + (m.bias is not None), m.out_channels]
    return max(widths)


if __name__ == "__main__":
    raise SystemExit(main())
