"""Mapping a wide matrix onto fixed-size analog tiles: block-diagonal inverse, block Jacobi / Gauss–Seidel
solve, and today's monolithic device as the reference, each with its cost counted.

A chip (:class:`~thermotrain.models.ChipSpec`, a profile's optional ``"chip"`` entry) holds ``tiles`` tiles
of ``cells_per_tile`` fully coupled cells. An n × n matrix A is cut into contiguous diagonal blocks
(:func:`tile_blocks`): block i holds rows/columns I_i, D_i = A[I_i, I_i]; the couplings between blocks
(A[I_i, I_j], i ≠ j) are on no tile.

**Inverse** (:func:`tiled_inverse`, mapping ``"block-diagonal"``): every D_i is loaded on one tile and read
out by the covariance readout; the answer is blockdiag(D_1⁻¹, …, D_m⁻¹). That is an *approximation* of A⁻¹:
it drops the couplings between tiles. It is exact when A is block diagonal; otherwise, with A = D + O
(O the off-diagonal blocks), A⁻¹ = D⁻¹ - D⁻¹ O D⁻¹ + O(‖D⁻¹O‖²): the dropped first-order term is the
cross-tile blocks of A⁻¹, and the diagonal blocks are also off: (A⁻¹)_ii is the inverse of the Schur
complement D_i - A_i,r A_r,r⁻¹ A_r,i (r: every other block), not D_i⁻¹; it is ⪰ D_i⁻¹, so the
block-diagonal inverse under-states the diagonal blocks, by D_i⁻¹ A_i,r A_r,r⁻¹ A_r,i D_i⁻¹ to leading
(second) order in the couplings. For a K-FAC factor this is a finer block-diagonal K-FAC: correlations between
input features on different tiles are treated as zero. ``"monolithic"`` is
:func:`thermotrain.models.inverse` on the whole matrix (one device of any size; the reference).

The tiles of one **round** run in parallel on the chip; with more blocks than tiles, consecutive groups of
``tiles`` blocks run in successive rounds, block i on tile i mod ``tiles``. Each tile of a hardware profile's
chip is its own physical circuit: tile t has its own tolerance, offset and mismatch draws (instance seed
``seeds[0] + t``, drawn for all ``cells_per_tile`` cells of the tile, :func:`on_tile`), and a block that
returns to tile t (a later round, another factor, a smaller last block) meets the same parts. The tiles of a
round share one schedule (burn-in, sample interval, number of samples): the one planned for the round's
slowest block (smallest λ_min lower bound, and the smallest λ_max for the fast modes' correlation factor,
with the widest block's size; see
:func:`thermotrain.models.plan_readout`), so every tile's predicted error is at most the round's. That also
lets one round run as **one batched draw** of the covariance readout's law
(:func:`thermotrain.models._fast_readout.sample_covariance_readout`, a leading tile dimension) per block size;
a hardware profile builds each tile's device with ``instantiate`` in a loop (its quantization and PD check
are per matrix), then draws all of them at once. Where the law refuses (too few decorrelation times, a near-defective
drift), each tile runs :func:`thermotrain.models.inverse`'s trajectory.

**Solve** (:func:`tiled_solve`): X ≈ A⁻¹B by an outer block iteration whose inner solves are tile mean
readouts (:func:`thermotrain.models.solve`, ``readout="average"``) and whose off-tile products are digital.
The iteration is written in correction form: R = B - A X (digital), δ_i = D_i⁻¹ R_i on tile i (each right-hand
side scaled to the DAC's full scale, max |R_i[:, j]| = 1, and scaled back), X_i += δ_i. The device therefore
only ever computes a correction with a *relative* error, and the digital residual is exact: like mixed-precision
iterative refinement, the iteration converges to A⁻¹B although every tile call is noisy or quantized, as long
as its relative error is small against 1 - ρ (ρ the iteration's spectral radius below).

- ``"block-jacobi"``: all tiles at once from one residual; error e ← (I - D⁻¹A) e. Converges iff
  ρ(I - D⁻¹A) < 1; for SPD A that holds iff 2D - A is also positive definite (not always: strong coupling
  between blocks breaks it). Growth of the residual on ``3`` consecutive sweeps to above twice its best is
  taken as divergence: the iteration stops (``on_divergence="stop"``) or continues as Gauss–Seidel from the
  best iterate (the default), with a note.
- ``"gauss-seidel"``: tiles one after another, each with the residual updated by the previous corrections
  (R -= A[:, I_i] δ_i); error e ← (I - (D + L)⁻¹A) e, L the strictly lower blocks. Converges for every SPD A
  (Ostrowski–Reich), at rate ρ(I - (D + L)⁻¹A) < 1 per sweep; the tiles cannot overlap in time.
- ``"pcg"``: conjugate gradients preconditioned by the tiles (one round of all tiles per iteration; the
  flexible Polak–Ribière form, which stays a descent method when the noisy tiles answer differently each
  time), deflated by a digital **coarse space** (``coarse`` vectors per block, default 4: the top
  eigenvectors of each diagonal block, :class:`_CoarseSpace`): CG starts from the coarse solution and searches
  A-orthogonally to it. Block Jacobi alone cannot see a K-FAC factor's large modes that couple every block;
  on the CNN's 4 609-wide factor (real, damped, 64-cell tiles, 128 right-hand sides, to 0.1) the coarse space
  cut the iterations from 47 (exact block inverses, probe) to 5, at 2 n² Q digital flops once per matrix
  (Q = 4 × 73 vectors) and 2 n Q k per iteration. Exact in the limit, as the others.
- ``"block-diagonal"``: one round of tile solves (X = X0 + D⁻¹(B - A X0)), no iteration: an approximation.
- ``"monolithic"``: one :func:`thermotrain.models.solve` call on the whole matrix (the reference).

The iteration stops when ‖B - AX‖_F / ‖B‖_F ≤ ``tol`` (converged), after ``max_iters`` sweeps, on divergence,
or when the residual has not reached a new minimum for ``patience`` sweeps (a floor: the tiles' relative
error is not small against 1 - ρ, e.g. a large κ0 over a short window); it returns the best iterate and
says why in ``notes``.

**Accounting** (:class:`TiledResult`), consistent with :func:`thermotrain.models.inverse` /
:func:`thermotrain.models.solve`: each tile call's analog time, values loaded and values read as those count
them; ``analog_time_tau`` is their sum over tiles and iterations, ``wall_time_tau`` the chip's wall time (per
round the longest tile, summed over rounds). An iterative solve keeps a block on its tile between sweeps when
the chip has a tile for every block (its matrix entries are loaded once, only right-hand sides after that);
otherwise every call loads its block again. ``digital_flops`` counts the mapping's own digital work (2 flops
per multiply-add): residuals B - A X (2n²k + nk), Gauss–Seidel's residual updates (2 n c_i k) and X updates,
the right-hand-side scaling (2 c_i k per call); not the readout planning that every device call does (the
same as the monolithic path's).
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from thermotrain._args import check_choice, check_float, check_int
from thermotrain._errors import CircuitError, InputError
from thermotrain.models import _rng
from thermotrain.models._linalg import (
    _UNSET,
    SolveResult,
    _check_backend,
    _check_rounding,
    _plan,
    _resolve_config,
    check_spd,
    device_gain,
    inverse,
    plan_context,
    recommended_readout,
    solve,
)
from thermotrain.models._linear_sde import LinearSDE, psd_factor, time_average_law
from thermotrain.models._profile import HardwareProfile, apply_input_gain
from thermotrain.models._readout import (
    ReadoutConfig,
    ReadoutPlan,
    exact_eigenvalues_up_to,
    plan_readout,
)

__all__ = ["TileCache", "TiledResult", "tile_blocks", "tiled_inverse", "tiled_solve"]

InverseMapping = Literal["block-diagonal", "monolithic"]
SolveMapping = Literal["pcg", "gauss-seidel", "block-jacobi", "block-diagonal", "monolithic"]
_INVERSE_MAPPINGS = ("block-diagonal", "monolithic")
_SOLVE_MAPPINGS = ("pcg", "gauss-seidel", "block-jacobi", "block-diagonal", "monolithic")
_SEEN_LIMIT = 256  # tensors a TileCache remembers by identity
_DEVICES_LIMIT = 64  # batched block-diagonal devices a TileCache keeps
_GROWTH_SWEEPS = 3  # consecutive growing sweeps (to above twice the best residual) that mean divergence


@dataclass(frozen=True)
class TiledResult:
    """What a tiled inverse or solve returned and what it cost.

    Attributes:
        value: the inverse [n, n] (:func:`tiled_inverse`; None for its dry run) or X [n] / [n, k] like B
            (:func:`tiled_solve`).
        mapping: the mapping that produced ``value`` (``"gauss-seidel"`` after a diverging block Jacobi
            switched to it).
        cells_per_tile: block size used (None: monolithic).
        blocks: diagonal blocks the matrix was cut into (tile jobs per sweep; 1 when monolithic).
        tiles_used: physical tiles occupied (min(blocks, the chip's tiles)).
        rounds: device rounds run (tiles of one round run in parallel).
        iterations: outer sweeps (1 for an inverse, a block-diagonal or a monolithic solve).
        analog_time_tau: device time summed over every tile call (τ).
        wall_time_tau: the chip's wall time: per round the longest tile call, summed over rounds (τ).
        analog_time_per_tile_tau: device time of each block's tile, summed over sweeps (τ), block order.
        values_loaded, values_read: DAC writes and ADC reads (counts, as models.inverse/solve count them;
            a resident block is loaded once, see the module docstring).
        digital_flops: the mapping's digital work between device calls (module docstring).
        residual: final ‖B - A X‖_F / ‖B‖_F (solves; None for an inverse, whose residual would cost O(n³)).
        residual_history: the relative residual before the first sweep and after each sweep (solves).
        converged: residual ≤ tol (solves; None for an inverse).
        plans: the :class:`ReadoutPlan` of every device call, in call order (None entries: exact backend).
        notes: what a caller should know (approximation, fall-backs, why an iteration stopped).
    """

    value: Tensor | None
    mapping: str
    cells_per_tile: int | None
    blocks: int
    tiles_used: int
    rounds: int
    iterations: int
    analog_time_tau: float
    wall_time_tau: float
    analog_time_per_tile_tau: tuple[float, ...]
    values_loaded: int
    values_read: int
    digital_flops: int
    residual: float | None = None
    residual_history: tuple[float, ...] = ()
    converged: bool | None = None
    plans: tuple[ReadoutPlan | None, ...] = ()
    notes: tuple[str, ...] = ()


def tile_blocks(n: int, cells_per_tile: int) -> list[slice]:
    """Contiguous blocks [0, c), [c, 2c), … covering range(n), c = ``cells_per_tile``; the last block holds
    the remaining n - c·⌊(n-1)/c⌋ cells (it may be smaller). InputError for n < 1 or c < 1."""
    n = check_int("n", n, minimum=1)
    c = check_int("cells_per_tile", cells_per_tile, minimum=1)
    return [slice(i, min(i + c, n)) for i in range(0, n, c)]


# ------------------------------------------------------------------------------------------- helpers
def _check_square(A: Tensor) -> int:
    """Shape and finiteness of A (one O(n²) sum; the entries are scanned only when it is not finite)."""
    if not isinstance(A, Tensor) or A.ndim != 2 or A.shape[0] != A.shape[1] or not A.is_floating_point():
        shape = tuple(A.shape) if isinstance(A, Tensor) else type(A).__name__
        raise CircuitError(f"A must be a square floating-point [n, n] tensor; got {shape}.")
    if A.shape[0] == 0:
        raise CircuitError("A is empty (0 x 0); nothing to load.")
    if not math.isfinite(float(A.sum())) and not bool(torch.isfinite(A).all()):
        raise CircuitError("A has non-finite entries (NaN/inf); check the curvature estimate upstream.")
    return A.shape[0]


def _check_symmetric(A: Tensor, pairs: list[tuple[slice, slice]]) -> None:
    """max |A[I, J] - A[J, I]ᵀ| over the block pairs given, against 100 ε max |A| there (blocked, so the
    transposed reads stay in cache: a whole 4 609 × 4 609 check costs ~0.1 s instead of ~1 s)."""
    asym = scale = 0.0
    for si, sj in pairs:
        a, b = A[si, sj], A[sj, si]
        scale = max(scale, float(a.abs().max()))
        asym = max(asym, float((a - b.T).abs().max()))
    if asym > 100 * torch.finfo(A.dtype).eps * max(scale, 1e-300):
        raise CircuitError(
            f"A must be symmetric; max |A - Aᵀ| = {asym:.3g} (max |A| = {scale:.3g}). "
            "Symmetrise it with (A + A.T) / 2."
        )


def _upper_pairs(n: int, size: int = 512) -> list[tuple[slice, slice]]:
    """Every block pair (I, J), I ≤ J, of a 512-cell partition: the whole matrix's symmetry."""
    parts = tile_blocks(n, size)
    return [(parts[i], parts[j]) for i in range(len(parts)) for j in range(i, len(parts))]


def _tiling(backend: object, cells_per_tile: int | None, tiles: int | None) -> tuple[int | None, int | None]:
    """(cells per tile, tiles on the chip) for this call: the arguments, else the profile's chip; (None, …)
    when neither names a tile size (monolithic)."""
    chip = backend.chip if isinstance(backend, HardwareProfile) else None
    if cells_per_tile is None:
        c = None if chip is None else chip.cells_per_tile
    else:
        c = check_int("cells_per_tile", cells_per_tile, minimum=1)
        if chip is not None and c > chip.cells_per_tile:
            raise InputError(
                f"cells_per_tile={c} exceeds the profile's chip ({chip.cells_per_tile} cells per tile); "
                f"use at most {chip.cells_per_tile} or leave it None."
            )
    if tiles is None:
        t = None if chip is None else chip.tiles
    else:
        t = check_int("tiles", tiles, minimum=1)
    return c, t


def _rounds(m: int, tiles: int | None) -> list[list[int]]:
    """Block indices of each round: consecutive groups of ``tiles`` (all at once when unlimited)."""
    step = m if tiles is None else tiles
    return [list(range(i, min(i + step, m))) for i in range(0, m, step)]


def _equal_runs(blocks: list[slice]) -> list[tuple[int, int]]:
    """(first, end) of each run of consecutive equal-size blocks (tile_blocks gives at most two runs)."""
    runs, i = [], 0
    while i < len(blocks):
        j, c = i, blocks[i].stop - blocks[i].start
        while j < len(blocks) and blocks[j].stop - blocks[j].start == c:
            j += 1
        runs.append((i, j))
        i = j
    return runs


# per-tile devices of a profile, by profile object: (weak reference, {(tile, cells): profile})
_TILE_VIEWS: dict[int, tuple[weakref.ref[HardwareProfile], dict[tuple[int, int], HardwareProfile]]] = {}


def _backend_key(backend: object) -> object:
    """A backend in a cache key: the ideal/exact name, or a profile's identity (the entry keeps the profile,
    so a hit also checks it is the same object)."""
    return backend if isinstance(backend, str) else id(backend)


def _tile_of(i: int, tiles: int | None) -> int:
    """The tile that block i runs on: its place in its round (consecutive groups of ``tiles``)."""
    return i if tiles is None else i % tiles


def _block_device(backend: object, i: int, chip_tiles: int | None, cells: int) -> object:
    """The device block i runs on: its tile's (:func:`_tile_of`, :func:`on_tile`)."""
    return on_tile(backend, _tile_of(i, chip_tiles), cells)


def on_tile(backend: object, tile: int, cells: int) -> object:
    """The device of tile ``tile`` (of ``cells`` cells) of the chip. For a hardware profile: the profile with
    its instance seed ``seeds[0]`` advanced by ``tile`` (mod 2⁶³), whose parts are drawn for all ``cells``
    cells of the tile, a block of c ≤ cells cells using the first c cells' parts. So every tile of a chip has
    its own tolerance, offset and mismatch draws, as the separate circuits of a real chip do, and a block
    that returns to a tile (a later round, another factor, a smaller last block) meets that tile's parts.
    With c = cells, tile 0 is the device the profile itself builds. The ideal and exact backends have no
    per-device draws and are returned as they are. Kept per profile object, so a tile's device is one object
    (caches keyed by it hit)."""
    if not isinstance(backend, HardwareProfile):
        return backend
    entry = _TILE_VIEWS.get(id(backend))
    if entry is None or entry[0]() is not backend:
        for key in [k for k, (ref, _) in _TILE_VIEWS.items() if ref() is None]:
            del _TILE_VIEWS[key]
        entry = _TILE_VIEWS[id(backend)] = (weakref.ref(backend), {})
    views = entry[1]
    view = views.get((tile, cells))
    if view is None:
        seeds = [(backend.seeds[0] + tile) % 2**63, *backend.seeds[1:]]
        view = views[(tile, cells)] = replace(backend, seeds=seeds)
        object.__setattr__(view, "_tile_cells", int(cells))  # read by instantiate (not a profile field)
    return view


def _offblock_fraction(A: Tensor, blocks: list[slice]) -> float:
    """‖A - blockdiag(A)‖_F / ‖A‖_F: the share of A the block-diagonal mapping drops (the off-diagonal
    blocks' norms summed directly, no cancellation). O(n²)."""
    off = on = 0.0
    for s in blocks:
        on += float(torch.linalg.matrix_norm(A[s, s])) ** 2
        for part in (A[s, : s.start], A[s, s.stop :]):
            if part.numel():
                off += float(torch.linalg.matrix_norm(part)) ** 2
    return math.sqrt(off / (off + on)) if off + on > 0 else 0.0


def _plan_context(backend: object, cfg: ReadoutConfig) -> tuple[float, float, float]:
    """(κ0, shortest sample interval, default target error) of a covariance call, as models.inverse plans."""
    return plan_context(backend, replace(cfg, mode="covariance"))


def extreme_eigenvalues_batched(D: Tensor, steps: int = 32) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`thermotrain.models.extreme_eigenvalues` of every block of ``D`` [m, c, c] at once: (λ_min lower
    estimate, λ_min Ritz value, λ_max Ritz value), each [m] float64. The same Lanczos (full
    reorthogonalisation, the same start vector as the readout planner: ``randn(c)`` from seed 0, a Ritz value
    lowered by its residual, floored at a tenth of it), batched over blocks; exact (one batched eigvalsh) when
    c ≤ :func:`~thermotrain.models._readout.exact_eigenvalues_up_to` (steps), as the planner. Cost
    O(steps · m c²)."""
    m, c = D.shape[0], D.shape[-1]
    Dd = 0.5 * (D + D.mT).detach().to(torch.float64)
    if c <= exact_eigenvalues_up_to(steps):
        lam = torch.linalg.eigvalsh(Dd)
        return lam[:, 0], lam[:, 0], lam[:, -1]
    q0 = torch.randn(c, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(Dd.device)
    q = (q0 / q0.norm()).expand(m, c).clone()
    Q = torch.zeros((m, c, steps), dtype=torch.float64, device=Dd.device)
    alpha = torch.zeros((m, steps), dtype=torch.float64, device=Dd.device)
    beta = torch.zeros((m, steps), dtype=torch.float64, device=Dd.device)
    k_used = torch.full((m,), steps, dtype=torch.long)
    active = torch.ones(m, dtype=torch.bool, device=Dd.device)
    for k in range(steps):
        Q[:, :, k] = torch.where(active[:, None], q, Q[:, :, k])
        w = (Dd @ q[..., None])[..., 0]
        a = (q * w).sum(-1)
        Qk = Q[:, :, : k + 1]
        for _ in range(2):  # twice is enough (Kahan)
            w = w - (Qk @ (Qk.mT @ w[..., None]))[..., 0]
        bk = w.norm(dim=-1)
        alpha[:, k] = torch.where(active, a, alpha[:, k])
        beta[:, k] = torch.where(active, bk, beta[:, k])
        stop = active & (bk <= 1e-12 * a.abs().clamp_min(1e-300))
        k_used[stop.cpu()] = k + 1
        active = active & ~stop
        if not bool(active.any()):
            break
        q = torch.where(active[:, None], w / bk.clamp_min(1e-300)[:, None], q)
    lo, ritz, top = (torch.empty(m, dtype=torch.float64) for _ in range(3))
    alpha, beta = alpha.cpu(), beta.cpu()  # the tridiagonal problems are tiny: solve them on the host
    for k in sorted(set(k_used.tolist())):  # one batched eigh per Krylov size (usually one: all blocks)
        idx = (k_used == k).nonzero()[:, 0]
        a, b = alpha[idx, :k], beta[idx, : k - 1]
        T = torch.diag_embed(a) + torch.diag_embed(b, 1) + torch.diag_embed(b, -1)
        theta, S = torch.linalg.eigh(T)
        resid = (beta[idx, k - 1] * S[:, -1, 0]).abs()
        lo[idx] = torch.maximum(theta[:, 0] - resid, 0.1 * theta[:, 0])
        ritz[idx], top[idx] = theta[:, 0], theta[:, -1]
    return lo, ritz, top


def _round_plan(
    blocks: list[Tensor], backend: object, cfg: ReadoutConfig, lambda_floor: float
) -> tuple[ReadoutPlan, list[float]]:
    """The covariance schedule shared by the tiles of one round, and each tile's λ_min estimate.

    A fixed ``analog_time`` is the config's (as :func:`plan_readout`). ``"auto"``: :func:`plan_readout`'s
    covariance law for the widest block, with λ_min the smallest of the tiles' lower estimates (floored at
    ``lambda_floor``) and λ_max the smallest of their Ritz maxima (the fast modes' correlation factor is
    largest there) -- for a single block this is exactly :func:`plan_readout`; for several, every tile's
    predicted error is at most the plan's."""
    kappa0, min_dt, target = _plan_context(backend, cfg)
    if cfg.analog_time != "auto":
        plan = plan_readout(blocks[0], cfg, kappa0=kappa0, min_dt=min_dt, default_target=target)
        return plan, [math.nan] * len(blocks)
    floor = check_float("lambda_floor", lambda_floor, minimum=0.0, unit="1/τ")
    by_size: dict[int, list[int]] = {}
    for i, b in enumerate(blocks):
        by_size.setdefault(int(b.shape[0]), []).append(i)
    lows = [math.nan] * len(blocks)
    tops = [math.nan] * len(blocks)
    ritzes = [math.nan] * len(blocks)
    for idx in by_size.values():
        lo, ritz, top = extreme_eigenvalues_batched(torch.stack([blocks[i] for i in idx]), cfg.lanczos_steps)
        for j, i in enumerate(idx):
            lows[i], ritzes[i], tops[i] = float(lo[j]), float(ritz[j]), float(top[j])
    # every tile runs its own block at full scale: its modes relax at gain_i · λ (device_gain)
    gains = [device_gain(backend, b) for b in blocks]
    lams = [g * (max(lo, floor) if floor > 0 else lo) for g, lo in zip(gains, lows, strict=True)]
    widest = max(blocks, key=lambda blk: int(blk.shape[0]))  # n of the law: the widest tile's
    plan = plan_readout(
        widest,
        cfg,
        kappa0=kappa0,
        min_dt=min_dt,
        default_target=target,
        eigenvalues=(
            min(lams),
            min(g * r for g, r in zip(gains, ritzes, strict=True)),
            min(g * t for g, t in zip(gains, tops, strict=True)),
        ),
    )
    return plan, lams


def _fixed(cfg: ReadoutConfig, plan: ReadoutPlan) -> ReadoutConfig:
    """``cfg`` pinned to ``plan``'s schedule (what a per-tile fall-back call must run)."""
    return replace(cfg, analog_time=plan.t, burn_in=plan.burn_in, sample_interval=plan.dt, kappa0=plan.kappa0)


def _law_round(
    group: list[Tensor],
    devices: list[object],
    cfg: ReadoutConfig,
    plan: ReadoutPlan,
    samples: int,
    lambda_floor: float,
    generator: torch.Generator | None,
) -> list[Tensor] | None:
    """Inverses of a group of equal-size blocks, each on its tile's device (``devices``, :func:`on_tile`),
    from one batched draw of the covariance readout's law, or None where the law refuses (the caller then
    runs each tile's trajectory)."""
    from thermotrain.models._fast_readout import readout_law_args, sample_covariance_readout

    stack = torch.stack(group)
    try:
        if devices[0] == "ideal":
            C = sample_covariance_readout(
                stack,
                dt=plan.dt,
                samples=samples,
                burn_in=plan.burn_in,
                kappa0=plan.kappa0,
                generator=generator,
            )
            inv = C / plan.kappa0
            return list(0.5 * (inv + inv.mT))
        assert all(isinstance(dev, HardwareProfile) for dev in devices)
        total: Tensor | float = 0.0
        for _ in range(cfg.roundings):
            insts = [
                dev.instantiate(  # type: ignore[attr-defined]
                    D,
                    generator=generator,
                    kappa0=plan.kappa0,
                    rounding=cfg.rounding,
                    min_eigenvalue=lambda_floor,
                )
                for D, dev in zip(group, devices, strict=True)
            ]
            sde = LinearSDE(
                torch.stack([i.sde.M for i in insts]),
                torch.stack([i.sde.D for i in insts]),
                torch.stack([i.sde.u for i in insts]),  # op-amp offsets: the law adds the mean path
            )
            C = sample_covariance_readout(
                sde,
                dt=plan.dt,
                samples=samples,
                burn_in=plan.burn_in,
                observe=insts[0].observe,
                generator=generator,
                **readout_law_args(insts[0].readout),
            )
            alpha = torch.tensor([i.matrix_scale for i in insts], dtype=C.dtype, device=C.device)
            total = total + alpha[:, None, None] * C / insts[0].kappa0 / cfg.roundings
        assert isinstance(total, Tensor)
        return list(0.5 * (total + total.mT))
    except InputError:
        return None


# ------------------------------------------------------------------------------------------- inverse
def tiled_inverse(
    A: Tensor,
    *,
    backend: Literal["exact", "ideal"] | HardwareProfile,
    cells_per_tile: int | None = None,
    mapping: InverseMapping = "block-diagonal",
    config: ReadoutConfig | None = None,
    lambda_floor: float = 0.0,
    generator: torch.Generator | None = None,
    simulator: Literal["trajectory", "law"] = "law",
    tiles: int | None = None,
    simulate: bool = True,
) -> TiledResult:
    """A⁻¹ on a chip of fixed-size tiles (mappings, approximation and accounting: module docstring).

    Args:
        A: [n, n] symmetric; every diagonal block must be positive definite (a CircuitError names the first
            that is not). ``"monolithic"`` needs A itself SPD.
        backend: ``"exact"`` (digital block Cholesky inverses: the block-diagonal approximation without
            device noise), ``"ideal"`` or a :class:`HardwareProfile`.
        cells_per_tile: block size; None = the profile's ``chip.cells_per_tile``, else monolithic (a note
            says so). More than the chip's tile holds is refused.
        mapping: ``"block-diagonal"`` (one tile per diagonal block) or ``"monolithic"`` (the reference:
            :func:`thermotrain.models.inverse` on the whole of A).
        config: the readout (:class:`ReadoutConfig`; None: the profile's recommendation, else defaults);
            ``"auto"`` analog time is planned per round (module docstring).
        lambda_floor: a known lower bound of λ_min(A) (1/τ), which bounds every block's λ_min too.
        generator: torch generator for the device noise and stochastic rounding.
        simulator: ``"law"`` (one batched draw per round and block size) or ``"trajectory"`` (each tile's
            trajectory via :func:`thermotrain.models.inverse`, the reference).
        tiles: tiles on the chip (None = the profile's ``chip.tiles``, else unlimited: one round).
        simulate: False = a dry run for cost models: the same blocks, rounds, schedules (planned by the same
            code) and counts of analog time, loads and reads, without drawing any readout (``value`` is
            None). Block-diagonal mapping only.
    Returns:
        :class:`TiledResult` (``value`` = the [n, n] inverse, symmetric). Cost: ideal O(m c³) for m blocks
        of c cells (+ O(steps · m c²) planning), against O(n³) for the monolithic device or Cholesky.
    """
    _check_backend(backend)
    n = _check_square(A)
    check_choice("mapping", mapping, _INVERSE_MAPPINGS)
    check_choice("simulator", simulator, ("trajectory", "law"))
    c, chip_tiles = _tiling(backend, cells_per_tile, tiles)
    notes: list[str] = []
    if not simulate and (mapping == "monolithic" or c is None or backend == "exact"):
        raise InputError("simulate=False (a dry run) needs the block-diagonal mapping on a device backend.")
    if mapping == "monolithic" or c is None:
        if c is None and mapping != "monolithic":
            notes.append(
                "no cells_per_tile and no chip in the backend: ran monolithic (one device of any size)"
            )
        if c is not None and n > c:
            notes.append(f"monolithic reference: n = {n} exceeds a tile of {c} cells; no chip holds it")
        r = inverse(
            A,
            backend=backend,
            config=config,
            lambda_floor=lambda_floor,
            generator=generator,
            simulator=simulator,
        )
        return TiledResult(
            value=r.inverse,
            mapping="monolithic",
            cells_per_tile=None,
            blocks=1,
            tiles_used=1,
            rounds=1,
            iterations=1,
            analog_time_tau=r.analog_time_tau,
            wall_time_tau=r.analog_time_tau,
            analog_time_per_tile_tau=(r.analog_time_tau,),
            values_loaded=r.values_loaded,
            values_read=r.values_read,
            digital_flops=0,
            plans=(r.plan,),
            notes=tuple(notes),
        )
    blocks = tile_blocks(n, c)
    m = len(blocks)
    _check_symmetric(A, [(s, s) for s in blocks])  # only the diagonal blocks are loaded
    D = [A[s, s] for s in blocks]
    _check_blocks_pd(D, blocks)
    if m > 1:
        frac = _offblock_fraction(A, blocks)
        notes.append(
            f"block-diagonal approximation: {m} tiles of <= {c} cells; the couplings between tiles "
            f"({100 * frac:.3g} % of ‖A‖_F) are dropped: the result is blockdiag(A_ii⁻¹)"
        )
    out = torch.zeros_like(A) if simulate else None
    per_tile = [0.0] * m
    if backend == "exact":
        for s, Di in zip(blocks, D, strict=True):
            out[s, s] = inverse(Di, backend="exact").inverse
        flops = sum((s.stop - s.start) ** 3 for s in blocks)
        return TiledResult(
            value=out,
            mapping="block-diagonal",
            cells_per_tile=c,
            blocks=m,
            tiles_used=m if chip_tiles is None else min(m, chip_tiles),
            rounds=0,
            iterations=1,
            analog_time_tau=0.0,
            wall_time_tau=0.0,
            analog_time_per_tile_tau=tuple(per_tile),
            values_loaded=0,
            values_read=0,
            digital_flops=int(flops),
            plans=(None,) * m,
            notes=tuple(notes),
        )
    cfg = _resolve_config(backend, config, "covariance", None, None, None, _UNSET, None, None)
    _check_rounding(backend, cfg.rounding, cfg.roundings)
    plan_context(backend, cfg)  # a fixed sample interval below the ADC's is refused before any work
    plans: list[ReadoutPlan | None] = [None] * m
    loaded = read = 0
    total = wall = 0.0
    rounds = _rounds(m, chip_tiles)
    fallbacks = 0
    for members in rounds:
        plan, _ = _round_plan([D[i] for i in members], backend, cfg, lambda_floor)
        if not plan.kappa0 > 0:
            raise InputError(
                f"kappa0 = {plan.kappa0!r}: the covariance readout needs noise (kappa0 > 0, e.g. 1e-2)."
            )
        n_steps = int(math.floor((plan.t - plan.burn_in) / plan.dt + 1e-9))
        if n_steps < 1:
            raise InputError(
                f"the sampling window t - burn_in = {plan.t - plan.burn_in:g} τ holds no step of "
                f"dt = {plan.dt:g} τ."
            )
        by_size: dict[int, list[int]] = {}
        for i in members:
            by_size.setdefault(blocks[i].stop - blocks[i].start, []).append(i)
        for idx in by_size.values() if simulate else ():
            invs = None
            if simulator == "law":
                group = [D[i] for i in idx]
                devices = [_block_device(backend, i, chip_tiles, c) for i in idx]
                invs = _law_round(group, devices, cfg, plan, n_steps + 1, lambda_floor, generator)
            if invs is None:
                if simulator == "law":
                    fallbacks += len(idx)
                invs = [
                    inverse(
                        D[i],
                        backend=_block_device(backend, i, chip_tiles, c),  # type: ignore[arg-type]
                        config=_fixed(cfg, plan),
                        lambda_floor=lambda_floor,
                        generator=generator,
                        simulator="trajectory",
                    ).inverse
                    for i in idx
                ]
            for i, inv_i in zip(idx, invs, strict=True):
                s = blocks[i]
                out[s, s] = inv_i.to(A.dtype)
        round_time = plan.t * cfg.roundings
        for i in members:
            ci = blocks[i].stop - blocks[i].start
            plans[i] = plan
            per_tile[i] = round_time
            loaded += ci * (ci + 1) // 2 * cfg.roundings
            read += ci * (n_steps + 1) * cfg.roundings
            total += round_time
        wall += round_time
    if fallbacks:
        notes.append(f"{fallbacks} tile(s) ran the trajectory: the readout's law refused their schedule")
    if len(rounds) > 1:
        notes.append(f"{m} blocks on {chip_tiles} tiles: {len(rounds)} rounds")
    return TiledResult(
        value=out if simulate else None,
        mapping="block-diagonal",
        cells_per_tile=c,
        blocks=m,
        tiles_used=m if chip_tiles is None else min(m, chip_tiles),
        rounds=len(rounds),
        iterations=1,
        analog_time_tau=float(total),
        wall_time_tau=float(wall),
        analog_time_per_tile_tau=tuple(per_tile),
        values_loaded=int(loaded),
        values_read=int(read),
        digital_flops=0,
        plans=tuple(plans),
        notes=tuple(notes),
    )


def _check_blocks_pd(D: list[Tensor], blocks: list[slice]) -> None:
    """Every diagonal block positive definite (one batched Cholesky per block size); CircuitError naming
    the first block that is not (a principal submatrix of an SPD matrix is SPD, so A is not SPD either)."""
    by_size: dict[int, list[int]] = {}
    for i, Di in enumerate(D):
        by_size.setdefault(Di.shape[0], []).append(i)
    for idx in by_size.values():
        _, info = torch.linalg.cholesky_ex(torch.stack([D[i] for i in idx]))
        bad = [idx[j] for j in range(len(idx)) if int(info[j]) != 0]
        if bad:
            s = blocks[bad[0]]
            check_spd(D[bad[0]], name=f"A[{s.start}:{s.stop}, {s.start}:{s.stop}]")
            raise CircuitError(  # pragma: no cover - check_spd raises for a block Cholesky refused
                f"diagonal block A[{s.start}:{s.stop}, {s.start}:{s.stop}] is not positive definite."
            )


# ------------------------------------------------------------------------------------------- solve
class _Ledger:
    """Running totals of a tiled solve (device calls, rounds, flops)."""

    def __init__(self, m: int, resident: bool) -> None:
        self.total = 0.0
        self.wall = 0.0
        self.per_tile = [0.0] * m
        self.loaded = 0
        self.read = 0
        self.flops = 0
        self.rounds = 0
        self.plans: list[ReadoutPlan | None] = []
        self.resident = resident
        self.loaded_once: set[int] = set()
        self.pinned: dict[int, ReadoutPlan] = {}  # noiseless auto plans kept per block (_tile_correction)

    def call(self, i: int, ci: int, k: int, r: SolveResult) -> float:
        return self.tile(i, ci, k, float(r.analog_time_tau), int(r.values_loaded), int(r.values_read), r.plan)

    def tile(
        self, i: int, ci: int, k: int, t: float, loads: int, read: int, plan: ReadoutPlan | None
    ) -> float:
        """Count one tile call (analog time t, values loaded and read as the call counts them)."""
        self.total += t
        self.per_tile[i] += t
        self.read += read
        if self.resident and i in self.loaded_once and loads > 0:
            loads -= ci * (ci + 1) // 2  # the block stayed on its tile: only the right-hand sides
        self.loaded_once.add(i)
        self.loaded += loads
        self.flops += 2 * ci * k
        self.plans.append(plan)
        return t

    def round(self, times: list[float]) -> None:
        self.rounds += 1
        self.wall += max(times, default=0.0)


class _ResidentTile:
    """A diagonal block held on its tile under one fixed schedule (``plan``), with the law of its
    time-average readout computed once: x̄ ~ N(Ψ u(b), C) (:func:`time_average_law`, x(0) = 0), so each
    right-hand side costs O(c²k) instead of O(c³). It is the law :func:`thermotrain.models.solve` draws
    (``readout="average"``) for the same device and plan: the same instantiated drift and diffusion, the same
    DAC (:meth:`HardwareProfile.load_rhs`), offset drive and readout chain."""

    def __init__(
        self,
        Di: Tensor,
        backend: object,
        cfg: ReadoutConfig,
        plan: ReadoutPlan,
        lambda_floor: float,
        generator: torch.Generator | None,
    ) -> None:
        self.plan, self.backend, self.rounding, self.c = plan, backend, cfg.rounding, Di.shape[0]
        k0 = float(plan.kappa0)
        if isinstance(backend, HardwareProfile):
            inst = backend.instantiate(
                Di, None, generator=generator, kappa0=k0, rounding=cfg.rounding, min_eigenvalue=lambda_floor
            )
            if inst.input_gain is None:
                backend.load_rhs(Di[:, :1], self.c)  # raises the profile's own message (RLC cannot solve)
            self.inst = inst
            M, D = inst.sde.M, inst.sde.D
        else:  # the ideal device: dx = -(D_i x - b) dt + sqrt(2κ0) dW
            self.inst = None
            M = -Di.to(torch.float64)
            D = 2.0 * k0 * torch.eye(self.c, dtype=torch.float64, device=Di.device)
        self.Psi, C = time_average_law(M, D, plan.burn_in, plan.t - plan.burn_in)
        self.L = psd_factor(C) if k0 > 0 else None

    def composed(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """The tile's readout before the readout chain as one affine map of the loaded right-hand sides:
        y_pre = b_hw W + v0 + ξ LO for b_hw [k, c] (the DAC's output; ideal: the full-scale columns), ξ [k, s]
        standard normal (s the state size). W = Gᵀ Ψᵀ Oᵀ [c, c] (G the input gain, O the observation),
        v0 = u0 Ψᵀ Oᵀ [c] (the offset drive u0), LO = Lᵀ Oᵀ [s, c] (None without noise); float64."""
        PsiT = self.Psi.to(torch.float64).mT
        LT = None if self.L is None else self.L.to(torch.float64).mT
        if self.inst is None:
            return PsiT, torch.zeros(self.c, dtype=torch.float64, device=PsiT.device), LT
        inst = self.inst
        OT = inst.observe.to(torch.float64).mT
        gain = inst.input_gain.to(torch.float64)
        GT = torch.diag(gain) if gain.ndim == 1 else gain.mT
        v0 = inst.sde.u.to(torch.float64) @ PsiT @ OT
        return GT @ PsiT @ OT, v0, None if LT is None else LT @ OT

    def __call__(self, R: Tensor, generator: torch.Generator | None) -> Tensor:
        """The tile's answer ≈ D_i⁻¹ R for R [c, k] (columns at full scale), in R's units and dtype."""
        inst = self.inst
        if self.Psi.dtype != R.dtype:  # the law is computed in float64; it is applied in the caller's dtype
            self.Psi = self.Psi.to(R.dtype)
            self.L = None if self.L is None else self.L.to(R.dtype)
        if inst is None:
            u = R.T
        else:
            b_hw, beta = self.backend.load_rhs(R, self.c, rounding=self.rounding, generator=generator)
            u = (inst.sde.u + apply_input_gain(inst.input_gain, b_hw)).to(R.dtype)  # [k, c]
        state = u @ self.Psi.mT
        if self.L is not None:
            xi = _rng.randn(state.shape, generator=generator, dtype=R.dtype, device=state.device)
            state = state + xi @ self.L.mT
        if inst is None:
            return state.T.to(R.dtype)
        y = inst.readout(state.to(inst.observe.dtype) @ inst.observe.T)  # [k, c] volts
        return (y * (inst.matrix_scale / beta)[:, None]).T.to(R.dtype)


class _BlockDiagonalDevice:
    """Every diagonal block of one matrix resident on its tile (:class:`_ResidentTile`, one law per block),
    answered together: each run of equal-size consecutive blocks is one batched product, one batched noise
    draw and one readout-chain call for all its tiles and right-hand sides, instead of a Python call per tile.
    The law drawn is each tile's own (the same W, v0, LO as :meth:`_ResidentTile.composed`), so it answers as
    the tiles one by one do, in distribution (exactly, without noise)."""

    def __init__(self, tiles: list[_ResidentTile], blocks: list[slice], backend: object) -> None:
        self.backend = backend
        self.profile = isinstance(backend, HardwareProfile)
        self.rounding = tiles[0].rounding
        self.plans = [t.plan for t in tiles]
        self.times = [float(t.plan.t) for t in tiles]
        self.sizes = [s.stop - s.start for s in blocks]
        self.readout = tiles[0].inst.readout if self.profile and tiles[0].inst is not None else None
        # runs of equal-size consecutive blocks: (first block, count, size, first row, W, v0, LO, α)
        self.groups: list[tuple[int, int, int, int, Tensor, Tensor, Tensor | None, Tensor]] = []
        self._cast: dict[torch.dtype, list[tuple[Tensor, Tensor, Tensor | None, Tensor]]] = {}
        for i, j in _equal_runs(blocks):
            parts = [t.composed() for t in tiles[i:j]]
            noise = all(p[2] is not None for p in parts)
            alpha = torch.tensor(
                [1.0 if t.inst is None else float(t.inst.matrix_scale) for t in tiles[i:j]],
                dtype=torch.float64,
                device=parts[0][0].device,
            )
            self.groups.append(
                (
                    i,
                    j - i,
                    self.sizes[i],
                    blocks[i].start,
                    torch.stack([p[0] for p in parts]),
                    torch.stack([p[1] for p in parts]),
                    torch.stack([p[2] for p in parts]) if noise else None,  # type: ignore[misc]
                    alpha,
                )
            )

    def _in(self, dtype: torch.dtype) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor]]:
        """The groups' maps in the caller's dtype (cast once per dtype)."""
        got = self._cast.get(dtype)
        if got is None:
            got = [
                (W.to(dtype), v0.to(dtype), None if LO is None else LO.to(dtype), a.to(dtype))
                for *_, W, v0, LO, a in self.groups
            ]
            self._cast[dtype] = got
        return got

    def __call__(self, R: Tensor, generator: torch.Generator | None) -> tuple[Tensor, list[int]]:
        """≈ blockdiag(D_i⁻¹) R for R [n, k] (any scale: each tile's columns are scaled to full scale on the
        way in and back on the way out; a column that is zero on a tile is answered 0 there, with no device
        call). Returns (X [n, k] in R's dtype, the live right-hand sides per tile)."""
        X = torch.zeros_like(R)
        k = R.shape[1]
        live_per_tile: list[int] = []
        for (_, g, c, r0, *_), (W, v0, LO, alpha) in zip(self.groups, self._in(R.dtype), strict=True):
            Rg = R[r0 : r0 + g * c].reshape(g, c, k)
            amax = Rg.abs().amax(dim=1)  # [g, k]
            live = amax > 0
            if self.profile:
                assert isinstance(self.backend, HardwareProfile)
                b_hw, beta = self.backend.load_rhs(Rg, c, rounding=self.rounding, generator=generator)
                pre = torch.baddbmm(v0[:, None, :], b_hw.to(R.dtype), W)  # [g, k, c]
                scale = alpha[:, None] / beta.to(R.dtype)  # y_hw = α A · x: x = y · α / β
            else:
                scale = torch.where(live, amax, torch.ones_like(amax))
                pre = (Rg / scale[:, None, :]).mT @ W
            if LO is not None:
                xi = _rng.randn((g, k, LO.shape[1]), generator=generator, dtype=R.dtype, device=R.device)
                pre = torch.baddbmm(pre, xi, LO)
            y = pre if self.readout is None else self.readout(pre)
            ans = y * (scale * live)[:, :, None]
            X[r0 : r0 + g * c] = ans.mT.reshape(g * c, k)
            live_per_tile.extend(live.sum(dim=1).tolist())  # one device-to-host copy, not one per tile
        return X, live_per_tile

    def account(self, led: _Ledger, k: int, live: list[int], chip_tiles: int | None) -> None:
        """Count one round of every tile in ``led`` as the per-tile calls count it (a tile with no live
        right-hand side makes no device call)."""
        times = []
        for i, (ci, kl) in enumerate(zip(self.sizes, live, strict=True)):
            if kl == 0:
                times.append(led.tile(i, ci, k, 0.0, 0, 0, None))
            else:
                times.append(
                    led.tile(i, ci, k, self.times[i], ci * (ci + 1) // 2 + ci * kl, ci * kl, self.plans[i])
                )
        for members in _rounds(len(self.sizes), chip_tiles):
            led.round([times[i] for i in members])


class _CoarseSpace:
    """A digital coarse space for CG on tiles (deflation): per block i the ``q_i`` eigenvectors of its diagonal
    block D_i with the largest eigenvalues, Z = blockdiag(V_i) [n, Q], with AZ = A Z and the Cholesky factor
    of E = Zᵀ A Z. The tiles' block-Jacobi preconditioner cannot see directions that couple many blocks
    strongly (a K-FAC factor's large, dense modes: the CNN's 4 609-wide factor has 98 % of its Frobenius norm
    off the 64-blocks); CG deflated by Z solves them exactly and digitally, and the tiles' iterations see only
    the rest (Nicolaides 1987; Frank & Vuik 2001's deflated PCG). Z is block-sparse: Zᵀ R and Z Y cost
    2 n q k, AZ products 2 n Q k. Built once per matrix (cached by :class:`TileCache`): the block
    eigendecompositions (≈ 9 c³ each), AZ (2 n c Q: Z's columns have c nonzeros), E (2 n q Q) and its
    Cholesky (Q³/3)."""

    def __init__(self, A: Tensor, D: list[Tensor], blocks: list[slice], per_block: int) -> None:
        self.groups: list[tuple[int, int, int, Tensor]] = []  # (first row, blocks, size, V [g, c, q])
        flops = 0
        for i, j in _equal_runs(blocks):
            c = blocks[i].stop - blocks[i].start
            q = min(per_block, c // 4)  # at most a quarter of a tile: the tiles keep most of the work
            if q > 0:
                Dg = torch.stack(D[i:j]).to(torch.float64)
                _, V = torch.linalg.eigh(0.5 * (Dg + Dg.mT))
                self.groups.append((blocks[i].start, j - i, c, V[..., -q:].to(A.dtype).contiguous()))
                flops += 9 * (j - i) * c**3
        self.n = A.shape[0]
        self.Q = sum(g * V.shape[-1] for _, g, _, V in self.groups)
        self.nq = sum(g * c * V.shape[-1] for _, g, c, V in self.groups)  # nonzeros of Z
        # AZ column block by column block: Z is block-sparse, so A Z costs 2 n c Q, not the dense 2 n² Q
        self.AZ = (
            torch.cat(
                [
                    torch.einsum("ngc,gcq->ngq", A[:, r0 : r0 + g * c].reshape(self.n, g, c), V).reshape(
                        self.n, -1
                    )
                    for r0, g, c, V in self.groups
                ],
                dim=1,
            )
            if self.groups
            else A[:, :0]
        )  # [n, Q]
        E = self.ZT(self.AZ)
        self.L = torch.linalg.cholesky(0.5 * (E + E.mT).to(torch.float64)).to(A.dtype)
        flops += 2 * self.n * self.nq + 2 * self.nq * self.Q + self.Q**3 // 3
        self.build_flops = flops

    def ZT(self, R: Tensor) -> Tensor:
        """Zᵀ R [Q, k] for R [n, k]."""
        parts = [
            (V.mT @ R[r0 : r0 + g * c].reshape(g, c, -1)).reshape(g * V.shape[-1], -1)
            for r0, g, c, V in self.groups
        ]
        return torch.cat(parts) if parts else R[:0]

    def Z(self, Y: Tensor) -> Tensor:
        """Z Y [n, k] for Y [Q, k]."""
        out = torch.zeros((self.n, Y.shape[1]), dtype=Y.dtype, device=Y.device)
        at = 0
        for r0, g, c, V in self.groups:
            q = V.shape[-1]
            out[r0 : r0 + g * c] = (V @ Y[at : at + g * q].reshape(g, q, -1)).reshape(g * c, -1)
            at += g * q
        return out

    def solve_E(self, Y: Tensor) -> Tensor:
        """E⁻¹ Y."""
        return torch.cholesky_solve(Y, self.L)

    def start(self, X: Tensor, R: Tensor) -> tuple[Tensor, Tensor, int]:
        """The coarse start X += Z E⁻¹ Zᵀ R, R -= AZ E⁻¹ Zᵀ R (after it Zᵀ R = 0), with its flops."""
        Y = self.solve_E(self.ZT(R))
        k = R.shape[1]
        return X + self.Z(Y), R - self.AZ @ Y, (4 * self.nq + 2 * self.Q**2 + 2 * self.n * self.Q) * k

    def deflate(self, Zr: Tensor) -> tuple[Tensor, int]:
        """Zr - Z E⁻¹ (AZ)ᵀ Zr: the preconditioned residual made A-orthogonal to the coarse space, with its
        flops."""
        k = Zr.shape[1]
        return Zr - self.Z(self.solve_E(self.AZ.mT @ Zr)), (
            2 * self.n * self.Q + 2 * self.Q**2 + 2 * self.nq
        ) * k


class TileCache:
    """The tiles' readout laws kept between :func:`tiled_solve` calls (a simulator cache; the accounting is
    unchanged: every call still loads its blocks as :class:`TiledResult` counts).

    A K-FAC factor stays the same between two refreshes while every training step solves with it; the law of
    each of its blocks (an O(c³) computation) is then built once and every later right-hand side costs O(c²k).
    Entries are keyed by the block's bytes, the backend, the readout settings and the damping floor, so a
    changed block never reuses a stale law; the schedule of a block is the one planned for the first
    right-hand side it saw (columns are scaled to full scale, so later ones differ little; the outer
    iteration corrects what a tile gets wrong). Least recently used entries beyond ``max_tiles`` are dropped.
    """

    def __init__(self, max_tiles: int = 4096) -> None:
        self.max_tiles = check_int("max_tiles", max_tiles, minimum=1)
        self._tiles: OrderedDict[tuple[object, ...], _ResidentTile] = OrderedDict()
        self._resolved: tuple[object, object, ReadoutConfig, str] | None = (
            None  # (config, backend, cfg, repr)
        )
        self.hits = self.misses = 0
        # matrices seen, by object: (weak reference, version counter, digest, tile sizes whose diagonal blocks
        # were checked positive definite), so an unchanged tensor passed again (a K-FAC factor between
        # refreshes) is neither checked nor hashed again
        self._seen: OrderedDict[int, tuple[weakref.ref[Tensor], int, bytes, set[int]]] = OrderedDict()
        self._devices: OrderedDict[tuple[object, ...], _BlockDiagonalDevice] = OrderedDict()
        self._fractions: dict[tuple[object, ...], float] = {}
        self._coarse: OrderedDict[tuple[object, ...], _CoarseSpace] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tiles)

    def known(self, A: Tensor) -> bool:
        """Whether this very tensor, unmodified since (same object, same version counter), was checked and
        hashed by :meth:`digest` before."""
        entry = self._seen.get(id(A))
        return entry is not None and entry[0]() is A and entry[1] == A._version

    def digest(self, A: Tensor) -> bytes:
        """A hash of A's bytes (kept per tensor object and version: an unchanged tensor is hashed once)."""
        if self.known(A):
            self._seen.move_to_end(id(A))
            return self._seen[id(A)][2]
        d = hashlib.blake2b(A.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).digest()
        self._seen[id(A)] = (weakref.ref(A), A._version, d, set())
        while len(self._seen) > _SEEN_LIMIT:
            self._seen.popitem(last=False)
        return d

    def blocks_checked(self, A: Tensor, cells: int) -> bool:
        """Whether this very tensor, unchanged, had its diagonal blocks of ``cells`` checked positive
        definite (:meth:`mark_blocks_checked`); a different tile size is checked again."""
        return self.known(A) and cells in self._seen[id(A)][3]

    def mark_blocks_checked(self, A: Tensor, cells: int) -> None:
        """Remember that A (hashed here if new) passed the symmetry check and the block check at ``cells``."""
        self.digest(A)
        self._seen[id(A)][3].add(cells)

    def offblock_fraction(self, A: Tensor, blocks: list[slice]) -> float:
        """:func:`_offblock_fraction` of A, kept per tensor object and version like :meth:`digest`."""
        key = (self.digest(A), tuple((s.start, s.stop) for s in blocks))
        frac = self._fractions.get(key)
        if frac is None:
            frac = self._fractions[key] = _offblock_fraction(A, blocks)
            while len(self._fractions) > _SEEN_LIMIT:
                self._fractions.pop(next(iter(self._fractions)))
        return frac

    def coarse_space(
        self, A: Tensor, D: list[Tensor], blocks: list[slice], per_block: int
    ) -> tuple[_CoarseSpace, bool]:
        """(the :class:`_CoarseSpace` of A cut at ``blocks`` (its diagonal blocks ``D``) with ``per_block``
        vectors per block, whether it was
        built by this call); kept per matrix like the tiles' laws, so a factor solved with at every step
        between two refreshes builds it once."""
        key = (
            self.digest(A),
            tuple(A.shape),
            str(A.dtype),
            tuple((s.start, s.stop) for s in blocks),
            per_block,
        )
        got = self._coarse.get(key)
        if got is not None:
            self._coarse.move_to_end(key)
            return got, False
        got = self._coarse[key] = _CoarseSpace(A, D, blocks, per_block)
        while len(self._coarse) > _DEVICES_LIMIT:
            self._coarse.popitem(last=False)
        return got, True

    def block_diagonal(
        self,
        A: Tensor,
        D: list[Tensor],
        blocks: list[slice],
        R: Tensor,
        backend: object,
        config: ReadoutConfig | None,
        lambda_floor: float,
        generator: torch.Generator | None,
        chip_tiles: int | None,
        cells: int,
    ) -> _BlockDiagonalDevice | None:
        """All diagonal blocks of A (``D``, cut at ``blocks``) resident on their tiles, answered in one batched
        call (built on first use, each tile planned for its rows of ``R`` at full scale, as :meth:`tile`; block
        i on tile ``i mod chip_tiles``, that tile's own device of ``cells`` cells,
        :func:`on_tile`); None where a tile cannot be resident (see :meth:`tile`)."""
        resident = self._resident(config, backend)
        if resident is None:
            return None
        cfg, cfg_key = resident
        blocks_key = tuple((s.start, s.stop) for s in blocks)
        key = (self.digest(A), tuple(A.shape), str(A.dtype), blocks_key, _backend_key(backend), cfg_key)
        key += (lambda_floor, chip_tiles, cells)
        dev = self._hit(self._devices, key, backend)
        if dev is not None:
            return dev
        eig: list[tuple[float, float, float] | None] = [None] * len(D)
        if cfg.analog_time == "auto":  # one batched Lanczos per block size instead of one per tile
            by_size: dict[int, list[int]] = {}
            for i, Di in enumerate(D):
                by_size.setdefault(int(Di.shape[0]), []).append(i)
            for idx in by_size.values():
                lo, ritz, top = extreme_eigenvalues_batched(
                    torch.stack([D[i] for i in idx]), cfg.lanczos_steps
                )
                for j, i in enumerate(idx):
                    eig[i] = (float(lo[j]), float(ritz[j]), float(top[j]))
        tiles = []
        for i, (Di, s, ev) in enumerate(zip(D, blocks, eig, strict=True)):
            Ri = R[s]
            amax = Ri.abs().amax(dim=0)
            Ri = Ri[:, amax > 0] / amax[amax > 0] if bool((amax > 0).any()) else torch.zeros_like(Ri[:, :1])
            on = _block_device(backend, i, chip_tiles, cells)
            tile = self.tile(Di, Ri, on, config, lambda_floor, generator, eigenvalues=ev)
            assert tile is not None
            tiles.append(tile)
        dev = _BlockDiagonalDevice(tiles, blocks, backend)
        self._devices[key] = dev
        while len(self._devices) > _DEVICES_LIMIT:
            self._devices.popitem(last=False)
        return dev

    def _resident(self, config: ReadoutConfig | None, backend: object) -> tuple[ReadoutConfig, str] | None:
        """The mean readout's settings and their key, or None where nothing can stay resident: the exact
        backend (digital block solves) and loads that are not deterministic (stochastic rounding, several
        roundings; those run :func:`solve` every call)."""
        if isinstance(backend, str) and backend == "exact":
            return None
        cfg, cfg_key = self._config(config, backend)
        if isinstance(backend, HardwareProfile) and (cfg.rounding == "stochastic" or cfg.roundings != 1):
            return None
        return cfg, cfg_key

    def _hit(self, store: OrderedDict, key: tuple[object, ...], backend: object):  # type: ignore[no-untyped-def]
        """The entry of ``store`` under ``key`` built for this very backend (a profile by identity), counted
        as a hit; else None."""
        got = store.get(key)
        if got is None or not (isinstance(backend, str) or got.backend is backend):
            return None
        self.hits += 1
        store.move_to_end(key)
        return got

    def _config(self, config: ReadoutConfig | None, backend: object) -> tuple[ReadoutConfig, str]:
        """The mean readout's settings for (config, backend), resolved once per pair (every sweep of every
        solve asks for each tile)."""
        last = self._resolved
        if last is not None and last[0] is config and last[1] is backend:
            return last[2], last[3]
        cfg = _resolve_config(backend, config, "average", None, None, None, None, None, None)
        if cfg.kappa0 is None and backend == "ideal":
            cfg = replace(cfg, kappa0=0.0)
        self._resolved = (config, backend, cfg, repr(cfg))
        return cfg, self._resolved[3]

    def tile(
        self,
        Di: Tensor,
        R: Tensor,
        backend: object,
        config: ReadoutConfig | None,
        lambda_floor: float,
        generator: torch.Generator | None,
        eigenvalues: tuple[float, float, float] | None = None,
    ) -> _ResidentTile | None:
        """The resident tile of block ``Di`` (built on first use, planned for ``R``; ``eigenvalues`` as
        :func:`thermotrain.models._linalg._plan`'s), or None where a load is not deterministic (stochastic
        rounding, several roundings): those run :func:`solve` every call."""
        resident = self._resident(config, backend)
        if resident is None:
            return None
        cfg, cfg_key = resident
        digest = hashlib.blake2b(Di.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).digest()
        key = (digest, tuple(Di.shape), str(Di.dtype), _backend_key(backend), cfg_key, lambda_floor)
        tile = self._hit(self._tiles, key, backend)
        if tile is not None:
            return tile
        self.misses += 1
        plan = _plan(
            Di,
            backend,
            cfg,
            b=R if bool(R.abs().amax() > 0) else None,
            lambda_floor=lambda_floor,
            eigenvalues=eigenvalues,
        )
        tile = _ResidentTile(Di, backend, cfg, plan, lambda_floor, generator)
        self._tiles[key] = tile
        while len(self._tiles) > self.max_tiles:
            self._tiles.popitem(last=False)
        return tile


def _tile_correction(
    Di: Tensor,
    Ri: Tensor,
    backend: object,
    cfg: ReadoutConfig | None,
    lambda_floor: float,
    generator: torch.Generator | None,
    led: _Ledger | None = None,
    key: int = 0,
    cache: TileCache | None = None,
) -> tuple[Tensor, SolveResult]:
    """δ ≈ D_i⁻¹ R_i by one tile mean readout, each column scaled to full scale (max |R_i[:, j]| = 1) on the
    way in and back on the way out (all-zero columns are answered 0 digitally, with no device call).
    Returns (δ, SolveResult).

    With a ``cache`` the block's readout law is built once (:class:`TileCache`) and the readout is one draw
    from it. Without one, a noiseless (κ0 = 0) ``"auto"`` plan depends on the block only, not on the
    right-hand side, so the first sweep's plan of block ``key`` is kept in ``led`` and later sweeps run it as
    a fixed schedule (the same device run, without planning it again)."""
    amax = Ri.abs().amax(dim=0)
    live = amax > 0
    if not bool(live.all()):  # a zero column's answer is 0, known digitally: it is not sent to the tile
        out = torch.zeros_like(Ri)
        if not bool(live.any()):
            return out, SolveResult(out, 0.0, 0, 0, None)
        d, r = _tile_correction(Di, Ri[:, live], backend, cfg, lambda_floor, generator, led, key, cache)
        out[:, live] = d
        return out, r
    beta = 1.0 / amax
    tile = None if cache is None else cache.tile(Di, Ri * beta, backend, cfg, lambda_floor, generator)
    if tile is not None:
        c, k = Ri.shape
        x = tile(Ri * beta, generator)
        return x / beta, SolveResult(x, float(tile.plan.t), c * (c + 1) // 2 + c * k, c * k, tile.plan)
    kept = None if led is None else led.pinned.get(key)
    call_cfg = cfg
    if kept is not None:
        base = cfg or recommended_readout(backend) or ReadoutConfig()
        call_cfg = replace(base, analog_time=kept.t, burn_in=kept.burn_in)
    r = solve(
        Di,
        Ri * beta,
        backend=backend,
        config=call_cfg,
        readout="average",
        lambda_floor=lambda_floor,
        generator=generator,
    )
    if kept is not None:
        r = replace(r, plan=kept)
    elif led is not None and r.plan is not None and r.plan.kappa0 == 0 and math.isfinite(r.plan.lambda_min):
        led.pinned[key] = r.plan
    return r.x.reshape(Ri.shape) / beta, r


def tiled_solve(
    A: Tensor,
    B: Tensor,
    *,
    backend: Literal["exact", "ideal"] | HardwareProfile,
    cells_per_tile: int | None = None,
    mapping: SolveMapping = "gauss-seidel",
    tol: float = 1e-3,
    max_iters: int = 50,
    config: ReadoutConfig | None = None,
    lambda_floor: float = 0.0,
    generator: torch.Generator | None = None,
    x0: Tensor | None = None,
    tiles: int | None = None,
    on_divergence: Literal["gauss-seidel", "stop"] = "gauss-seidel",
    patience: int = 5,
    cache: TileCache | None = None,
    measure_residual: bool = True,
    coarse: int = 16,
) -> TiledResult:
    """X ≈ A⁻¹B by an outer block iteration on fixed-size tiles (module docstring: the iterations, their
    convergence conditions and the accounting).

    Convergence: block Gauss–Seidel converges for every SPD A, at ρ(I - (D + L)⁻¹A) per sweep; block Jacobi
    iff ρ(I - D⁻¹A) < 1 (for SPD A: iff 2D - A is positive definite). With noisy or quantized tiles the
    sweep contracts by about ρ + ε (ε the tiles' relative error), so the iteration still reaches any ``tol``
    while ρ + ε < 1: the residual is digital and exact, the device only computes corrections.

    Args:
        A: [n, n] symmetric positive definite.
        B: [n] or [n, k] right-hand sides (k columns run on k devices in parallel per tile call, as
            :func:`thermotrain.models.solve` counts them).
        backend: ``"exact"`` (digital block solves: the iteration alone), ``"ideal"`` or a profile.
        cells_per_tile: as in :func:`tiled_inverse`.
        tiles: as in :func:`tiled_inverse`.
        mapping: ``"gauss-seidel"`` (default), ``"block-jacobi"``, ``"block-diagonal"`` (one round, no
            iteration: an approximation) or ``"monolithic"`` (one device call on A: the reference).
        tol: target relative residual ‖B - AX‖_F/‖B‖_F (> 0).
        max_iters: most sweeps (≥ 1).
        config: the tiles' readout (:class:`ReadoutConfig`, mode set to ``"average"``).
        lambda_floor: a known lower bound of λ_min(A) (1/τ), passed to every tile.
        generator: torch generator for the device noise.
        x0: start [n] / [n, k] (default 0).
        on_divergence: what a diverging block Jacobi does: continue as Gauss–Seidel from the best iterate,
            or stop there.
        patience: sweeps without a new smallest residual after which the iteration stops (a floor).
        cache: a :class:`TileCache` that keeps each block's readout law between calls (a solver that solves
            with the same matrix many times passes one); None: a cache for this call's sweeps only.
        measure_residual: ``"block-diagonal"`` only: False skips the final digital residual (2n²k flops, a
            diagnostic the approximation does not need); ``residual`` and ``converged`` are then None.
        coarse: ``"pcg"`` only: eigenvectors per block in CG's digital coarse space (:class:`_CoarseSpace`;
            at most a quarter of a block; 0: plain block-Jacobi-preconditioned CG). The default 16 (a quarter of
            a 64-cell tile): on Fashion-MNIST factors (rc8 tiles, tol 0.1) the widest factors took 1 outer
            iteration against 2-3 with 4 vectors, and fewer digital flops per solve (the deflation's 2nQk per
            iteration is a quarter of the 2n²k product it saves).
    Returns:
        :class:`TiledResult` with ``value`` = X (shape of B), ``residual``, ``residual_history``,
        ``converged`` and ``notes`` (why it stopped). Cost per sweep: m tile solves + 2n²k digital flops.
    """
    _check_backend(backend)
    n = _check_square(A)
    check_choice("mapping", mapping, _SOLVE_MAPPINGS)
    check_choice("on_divergence", on_divergence, ("gauss-seidel", "stop"))
    tol = check_float("tol", tol, minimum=0.0, strict_min=True)
    max_iters = check_int("max_iters", max_iters, minimum=1, maximum=100_000)
    patience = check_int("patience", patience, minimum=1)
    coarse = check_int("coarse", coarse, minimum=0, maximum=4096)
    if config is not None and not isinstance(config, ReadoutConfig):
        raise InputError(f"config must be a thermotrain.models.ReadoutConfig; got {type(config).__name__}.")
    if not isinstance(B, Tensor) or B.ndim not in (1, 2) or B.shape[0] != n:
        shape = tuple(B.shape) if isinstance(B, Tensor) else type(B).__name__
        raise CircuitError(f"B must be [n] or [n, k] with n = {n}; got {shape}.")
    if not bool(torch.isfinite(B).all()):
        raise CircuitError("B has non-finite entries (NaN/inf).")
    if cache is None:
        cache = TileCache()
    checked = cache.known(A)  # this tensor, unchanged, passed the checks below before
    if not checked:
        _check_symmetric(A, _upper_pairs(n))
    squeeze = B.ndim == 1
    Bm = (B[:, None] if squeeze else B).to(dtype=A.dtype, device=A.device)
    k = Bm.shape[1]
    X = torch.zeros_like(Bm)
    if x0 is not None:
        if not isinstance(x0, Tensor) or tuple(x0.reshape(n, -1).shape) != (n, k):
            raise CircuitError(f"x0 must have B's shape {tuple(B.shape)}.")
        X = x0.reshape(n, k).to(dtype=A.dtype, device=A.device).clone()
    effective = config or recommended_readout(backend) or ReadoutConfig()
    roundings = effective.roundings if isinstance(backend, HardwareProfile) else 1
    c, chip_tiles = _tiling(backend, cells_per_tile, tiles)
    bnorm = float(torch.linalg.matrix_norm(Bm))
    notes: list[str] = []

    def shape_out(Y: Tensor) -> Tensor:
        return Y[:, 0] if squeeze else Y

    def relative(R: Tensor) -> float:
        return float(torch.linalg.matrix_norm(R)) / bnorm if bnorm > 0 else 0.0

    def residual(Y: Tensor, led: _Ledger) -> tuple[Tensor, float]:
        R = Bm - A @ Y
        led.flops += 2 * n * n * k + n * k
        return R, relative(R)

    def first_residual(led: _Ledger) -> tuple[Tensor, float]:
        """The residual of the start X (B itself for X = 0: no product). A warm start further from the answer
        than 0 (e.g. the previous step's update against a column whose new right-hand side is tiny) is dropped
        per column (X and R there set to 0 and B): it would only add sweeps, or overflow the norms."""
        if x0 is None:
            return Bm, (1.0 if bnorm > 0 else 0.0)
        R, _ = residual(X, led)
        worse = R.abs().amax(dim=0) > Bm.abs().amax(dim=0)
        if bool(worse.any()):
            X[:, worse] = 0.0
            R[:, worse] = Bm[:, worse]
        return R, relative(R)

    if mapping == "monolithic" or c is None:
        if c is None and mapping != "monolithic":
            notes.append(
                "no cells_per_tile and no chip in the backend: ran monolithic (one device of any size)"
            )
        check_spd(A)
        led = _Ledger(1, True)
        R0, res0 = first_residual(led)
        hist = [res0]
        if res0 > 0:
            d, r = _tile_correction(A, R0, backend, config, lambda_floor, generator)
            led.round([led.call(0, n, k, r)])
            X = X + d
        _, res = residual(X, led)
        hist.append(res)
        return _result(X, shape_out, "monolithic", None, 1, 1, led, hist, tol, notes, iterations=1)

    blocks = tile_blocks(n, c)
    m = len(blocks)
    D = [A[s, s] for s in blocks]
    if not cache.blocks_checked(A, c):
        _check_blocks_pd(D, blocks)
        cache.mark_blocks_checked(A, c)  # remembered as checked at this tile size
    resident = (chip_tiles is None or m <= chip_tiles) and roundings == 1
    if effective.rounding == "stochastic":
        resident = False  # every load draws a new rounding: the block is loaded again
    led = _Ledger(m, resident)
    tiles_used = m if chip_tiles is None else min(m, chip_tiles)
    R, res = first_residual(led)
    hist = [res]
    # the rounds of all tiles at once (block-diagonal, CG, block Jacobi) run as one batched call
    device = (
        cache.block_diagonal(A, D, blocks, R, backend, config, lambda_floor, generator, chip_tiles, c)
        if mapping != "gauss-seidel" and res > 0
        else None
    )
    if mapping == "block-diagonal":
        if m > 1:
            notes.append(
                f"block-diagonal approximation: the couplings between the {m} tiles "
                f"({100 * cache.offblock_fraction(A, blocks):.3g} % of ‖A‖_F) are dropped"
            )
        if res > 0:
            deltas = _jacobi_round(
                D, blocks, R, backend, config, lambda_floor, generator, led, chip_tiles, k, cache, device, c
            )
            X = X + deltas
            led.flops += n * k
        if not measure_residual:
            notes.append("residual not measured (measure_residual=False)")
            out = _result(X, shape_out, mapping, c, m, tiles_used, led, hist, tol, notes, iterations=1)
            return replace(out, residual=None, converged=None)
        _, res = residual(X, led)
        hist.append(res)
        return _result(X, shape_out, mapping, c, m, tiles_used, led, hist, tol, notes, iterations=1)

    space = None
    if mapping == "pcg" and coarse > 0 and res > 0:
        space, built = cache.coarse_space(A, D, blocks, coarse)
        if space.Q == 0:
            space = None
        else:
            led.flops += space.build_flops if built else 0
            X, R, f = space.start(X, R)
            led.flops += f
            res = relative(R)
            hist.append(res)  # after the coarse start (digital: no tile round)
    current = mapping
    best_X, best = X.clone(), res
    since_best = 0
    iterations = 0
    stop_reason = None
    P = R_prev = rz_prev = None  # flexible CG's search directions and last residual (per column)
    while iterations < max_iters and hist[-1] > tol:
        iterations += 1
        if current == "pcg":
            Z = _jacobi_round(
                D, blocks, R, backend, config, lambda_floor, generator, led, chip_tiles, k, cache, device, c
            )
            if space is not None:  # search only A-orthogonally to the coarse space (deflated CG)
                Z, f = space.deflate(Z)
                led.flops += f
            rz = (R * Z).sum(0)
            if P is None:
                P = Z
            else:  # Polak–Ribière β: stays a descent method when the tiles' answers vary (Notay 2000)
                beta = (Z * (R - R_prev)).sum(0) / rz_prev.where(rz_prev != 0, torch.ones_like(rz_prev))
                P = Z + P * beta.where(rz_prev != 0, torch.zeros_like(beta))
            Q = A @ P
            pq = (P * Q).sum(0)
            alpha = (rz / pq.where(pq > 0, torch.ones_like(pq))).where(pq > 0, torch.zeros_like(pq))
            X = X + P * alpha
            R_prev, rz_prev = R, rz
            R = R - Q * alpha
            led.flops += 2 * n * n * k + 10 * n * k
            res = relative(R)
        elif current == "block-jacobi":
            X = X + _jacobi_round(
                D, blocks, R, backend, config, lambda_floor, generator, led, chip_tiles, k, cache, device, c
            )
            led.flops += n * k
            R, res = residual(X, led)
        else:
            for i, s in enumerate(blocks):
                on = _block_device(backend, i, chip_tiles, c)
                d, r = _tile_correction(D[i], R[s], on, config, lambda_floor, generator, led, i, cache)
                led.round([led.call(i, s.stop - s.start, k, r)])
                X[s] = X[s] + d
                R = R - A[:, s] @ d
                led.flops += 2 * n * (s.stop - s.start) * k + (s.stop - s.start) * k
            res = relative(R)
        hist.append(res)
        if res < best:
            best, best_X, since_best = res, X.clone(), 0
        else:
            since_best += 1
        growing = len(hist) > _GROWTH_SWEEPS and all(
            hist[-j] > hist[-j - 1] for j in range(1, _GROWTH_SWEEPS + 1)
        )
        if growing and res > 2 * best:
            what = (
                f"{current} diverged: the residual grew on {_GROWTH_SWEEPS} sweeps to {res:.3g} (best "
                f"{best:.3g})"
            )
            if current == "block-jacobi":
                what += " -- ρ(I - D⁻¹A) > 1 (2D - A is not positive definite)"
            if current == "block-jacobi" and on_divergence == "gauss-seidel":
                notes.append(what + "; switched to gauss-seidel from the best iterate")
                current = "gauss-seidel"
                X = best_X.clone()
                R, res = residual(X, led)
                hist.append(res)
                since_best = 0
                continue
            stop_reason = what + "; stopped, returning the best iterate"
            break
        if since_best >= patience:
            stop_reason = (
                f"the residual stopped decreasing (no new minimum in {patience} sweeps; best {best:.3g}): "
                "the tiles' relative error is not small against 1 - ρ (a noise or quantization floor); "
                "returning the best iterate"
            )
            break
    if best < hist[-1]:
        X = best_X  # the best iterate, not the last (residual_history still shows every sweep)
    if stop_reason is not None:
        notes.append(stop_reason)
    elif best > tol:
        notes.append(f"max_iters={max_iters} sweeps reached before tol={tol:g} (residual {best:.3g})")
    return _result(
        X, shape_out, current, c, m, tiles_used, led, hist, tol, notes, iterations=iterations, residual=best
    )


def _jacobi_round(
    D: list[Tensor],
    blocks: list[slice],
    R: Tensor,
    backend: object,
    config: ReadoutConfig | None,
    lambda_floor: float,
    generator: torch.Generator | None,
    led: _Ledger,
    chip_tiles: int | None,
    k: int,
    cache: TileCache | None = None,
    device: _BlockDiagonalDevice | None = None,
    cells: int | None = None,
) -> Tensor:
    """All tiles' corrections from one residual (the tiles of a round in parallel); returns the stacked δ.
    With ``device`` (the blocks resident, :meth:`TileCache.block_diagonal`) one batched call answers them.
    ``cells``: the tiles' size (default: the widest block), for each tile's own device (:func:`on_tile`)."""
    if device is not None:
        out, live = device(R, generator)
        device.account(led, k, live, chip_tiles)
        return out
    out = torch.zeros_like(R)
    cells = max(s.stop - s.start for s in blocks) if cells is None else cells
    for members in _rounds(len(blocks), chip_tiles):
        times = []
        for i in members:
            s = blocks[i]
            on = _block_device(backend, i, chip_tiles, cells)
            d, r = _tile_correction(D[i], R[s], on, config, lambda_floor, generator, led, i, cache)
            out[s] = d
            times.append(led.call(i, s.stop - s.start, k, r))
        led.round(times)
    return out


def _result(
    X: Tensor,
    shape_out: Callable[[Tensor], Tensor],
    mapping: str,
    c: int | None,
    m: int,
    tiles_used: int,
    led: _Ledger,
    hist: list[float],
    tol: float,
    notes: list[str],
    *,
    iterations: int,
    residual: float | None = None,
) -> TiledResult:
    res = hist[-1] if residual is None else residual
    return TiledResult(
        value=shape_out(X),
        mapping=mapping,
        cells_per_tile=c,
        blocks=m,
        tiles_used=tiles_used,
        rounds=led.rounds,
        iterations=iterations,
        analog_time_tau=float(led.total),
        wall_time_tau=float(led.wall),
        analog_time_per_tile_tau=tuple(led.per_tile),
        values_loaded=int(led.loaded),
        values_read=int(led.read),
        digital_flops=int(led.flops),
        residual=res,
        residual_history=tuple(hist),
        converged=res <= tol,
        plans=tuple(led.plans),
        notes=tuple(notes),
    )
