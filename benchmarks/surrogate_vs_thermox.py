"""Our exact OU sampler (torch) against thermox 0.0.6 (JAX, CPU) on the same non-normal process.

Process: an array of N/2 underdamped RLC cells coupled through an SPD capacitance matrix C (eigenvalues in
[0.5, 2]), states (V, I): dV = -C⁻¹ I dt + σ_V dW, dI = (V - R I) dt + σ_I dW (L = 1, R = 0.5, σ_V² = 0.01,
σ_I² = 1; thermox needs a nonsingular diffusion). Its drift is non-normal. thermox writes it as
dx = -A(x - b) dt + sqrt(D) dW with A = -M.

Measured per N:
- speed: wall time of one call producing a trajectory of ``--steps`` samples at interval ``--dt`` (set-up
  included, JIT compilation excluded by a warm-up call; median of ``--repeats``), and the ratio
  thermox / ours (> 1: ours is faster); thermox is timed with and without its associative scan (the latter
  only up to ``--assoc-max-n``: on CPU it is the slower mode, 25x slower at N = 256) and its faster mode is
  used.
- accuracy, without sampling noise: both samplers use the exact mean map e^{MΔ}; their noise steps differ.
  The stationary covariance *implied* by each discrete chain, Σ_d = Φ Σ_d Φᵀ + S_step, is compared with the
  continuous Lyapunov solution: rel. error ‖Σ_d - Σ‖_F / ‖Σ‖_F. thermox's S_step is rebuilt from its own
  preprocessing (symmetric-part eigenpairs of A_y = L⁻¹ A L, D = L Lᵀ), which is what its sampler applies.
- at the smallest N, an empirical check: the sample covariance of a long trajectory of each sampler, and
  of ours as the sampling-noise floor.

Usage: python benchmarks/surrogate_vs_thermox.py [--sizes 64 256 1024] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

THREADS_FLAG = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def rlc_array(N: int, seed: int):
    import torch

    m = N // 2
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    C = Q @ torch.diag(torch.linspace(0.5, 2.0, m, dtype=torch.float64)) @ Q.T
    C = 0.5 * (C + C.T)
    eye = torch.eye(m, dtype=torch.float64)
    R, L = 0.5, 1.0
    M = torch.cat(
        [torch.cat([torch.zeros_like(eye), -torch.linalg.inv(C)], 1), torch.cat([eye / L, -R / L * eye], 1)],
        0,
    )
    D = torch.diag(torch.cat([torch.full((m,), 0.01), torch.ones(m)]).double())
    return M, D


def implied_stationary(Phi, S):
    """Σ_d = Σ_k Φ^k S Φ^kᵀ by doubling (the discrete chain's stationary covariance)."""
    import torch

    Sig = S.clone()
    for _ in range(200):
        if float(torch.linalg.matrix_norm(Phi)) < 1e-9:
            break
        Sig = Sig + Phi @ Sig @ Phi.T
        Phi = Phi @ Phi
    return 0.5 * (Sig + Sig.T)


def thermox_step_cov(A_np, D_np, dt):
    import numpy as np
    from thermox.utils import preprocess

    PA, PD = preprocess(A_np, D_np)
    lam = np.asarray(PA.sym_eigvals, dtype=np.float64)
    V = np.asarray(PA.sym_eigvecs, dtype=np.float64)
    Lc = np.asarray(PD.sqrt, dtype=np.float64)
    W = V * ((1 - np.exp(-2 * lam * dt)) / (2 * lam))[None, :]
    return Lc @ (W @ V.T) @ Lc.T


def time_call(fn, repeats: int) -> float:
    fn()  # warm-up (JIT)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_size(N: int, args: argparse.Namespace, empirical: bool) -> dict:
    """Timing and accuracy at one size N (see the module docstring)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import thermox
    import torch

    from thermotrain.models import LinearSDE, simulate, stationary_covariance, transition

    M, D = rlc_array(N, args.seed)
    sde = LinearSDE(M, D)
    A_np, D_np = (-M).numpy(), D.numpy()
    x0 = torch.zeros(N, dtype=torch.float64)
    g = torch.Generator().manual_seed(args.seed)
    ours = time_call(lambda: simulate(sde, x0, args.dt, args.steps, generator=g), args.repeats)
    ts = jnp.arange(args.steps + 1) * args.dt
    A_j, D_j, b_j, x0_j = jnp.asarray(A_np), jnp.asarray(D_np), jnp.zeros(N), jnp.zeros(N)
    key = jax.random.PRNGKey(args.seed)
    modes = (False, True) if N <= args.assoc_max_n else (False,)
    tx_modes = {
        f"associative_scan={a}": time_call(
            lambda a=a: thermox.sample(key, ts, x0_j, A_j, b_j, D_j, associative_scan=a).block_until_ready(),
            args.repeats,
        )
        for a in modes
    }
    tx = min(tx_modes.values())  # thermox's faster mode on this machine
    Sigma = stationary_covariance(M, D)

    def rel(Sd: torch.Tensor) -> float:
        return float(torch.linalg.norm(Sd - Sigma) / torch.linalg.norm(Sigma))

    acc = {}
    for dt in args.accuracy_dts:
        Phi, S, _ = transition(M, D, dt)
        S_tx = torch.from_numpy(thermox_step_cov(A_np, D_np, dt))
        acc[str(dt)] = {
            "ours": rel(implied_stationary(Phi, S)),
            "thermox": rel(implied_stationary(Phi, S_tx)),
        }
    row = {
        "N": N,
        "steps": args.steps,
        "dt": args.dt,
        "ours_s": ours,
        "thermox_s": tx,
        "speed_ratio_thermox_over_ours": tx / ours,
        "thermox_modes_s": tx_modes,
        "implied_stationary_rel_error": acc,
    }
    if empirical:
        K = args.empirical_steps
        X = simulate(sde, x0, 1.0, K, generator=g)[0, K // 10 :]
        Xt = torch.from_numpy(np.array(thermox.sample(key, jnp.arange(K + 1) * 1.0, x0_j, A_j, b_j, D_j)))
        row["empirical_dt1"] = {
            "steps": K,
            "ours": rel(torch.cov(X.T)),
            "thermox": rel(torch.cov(Xt[K // 10 :].T)),
        }
    print(f"N={N} done", file=sys.stderr)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--dt", type=float, default=0.1, help="sample interval for the timing")
    ap.add_argument("--accuracy-dts", type=float, nargs="+", default=[0.1, 1.0])
    ap.add_argument("--empirical-steps", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--assoc-max-n",
        type=int,
        default=256,
        help="also time thermox's associative scan up to this N (on CPU it is the slower mode)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args(argv)

    if args.threads == 1:
        os.environ.setdefault("XLA_FLAGS", THREADS_FLAG)
    try:
        import jax
        import thermox
    except ImportError:
        print(
            "thermox (and JAX) are not installed, so there is nothing to compare with; install them with\n"
            "  .venv/bin/pip install -c constraints.txt thermox==0.0.6   (or: pip install -e '.[bench]')"
        )
        return 0
    jax.config.update("jax_enable_x64", True)
    import torch

    torch.set_num_threads(args.threads)
    rows = [bench_size(N, args, N == min(args.sizes)) for N in args.sizes]

    print(
        f"\nExact OU sampling, {args.steps} steps of dt = {args.dt}, non-normal RLC drift "
        f"(torch threads = {args.threads}; thermox {thermox.__version__ if hasattr(thermox, '__version__') else '0.0.6'}, "
        f"JAX {jax.__version__} CPU)"
    )
    hdr = f"{'N':>6} {'ours (s)':>10} {'thermox (s)':>12} {'ratio':>7}"
    for dt in args.accuracy_dts:
        hdr += f" {'relerr ours dt=' + str(dt):>20} {'thermox dt=' + str(dt):>16}"
    print(hdr)
    for r in rows:
        line = f"{r['N']:>6} {r['ours_s']:>10.4f} {r['thermox_s']:>12.4f} {r['speed_ratio_thermox_over_ours']:>7.2f}"
        for dt in args.accuracy_dts:
            a = r["implied_stationary_rel_error"][str(dt)]
            line += f" {a['ours']:>20.2e} {a['thermox']:>16.2e}"
        print(line)
    for r in rows:
        if "empirical_dt1" in r:
            e = r["empirical_dt1"]
            print(
                f"empirical (N={r['N']}, {e['steps']} steps of dt=1): sample-cov rel. error ours "
                f"{e['ours']:.3f} (sampling-noise floor), thermox {e['thermox']:.3f}"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "surrogate_vs_thermox.json"
    path.write_text(
        json.dumps({"benchmark": "surrogate_vs_thermox", "args": vars(args), "rows": rows}, indent=2)
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
