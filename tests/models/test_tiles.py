"""Fixed-size tiles: the profile's chip entry, block-diagonal inverse, block Jacobi / Gauss–Seidel solve, and
their cost accounting (models/_tiles.py)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from thermotrain import CircuitError, InputError, ProfileError
from thermotrain.models import (
    ChipSpec,
    HardwareProfile,
    ReadoutConfig,
    extreme_eigenvalues,
    inverse,
    load_profile,
    save_profile,
    tile_blocks,
    tiled_inverse,
    tiled_solve,
)
from thermotrain.models._linalg import _plan
from thermotrain.models._readout import covariance_readout_error
from thermotrain.models._tiles import extreme_eigenvalues_batched

F64 = torch.float64


def spd(n: int, lam_min: float, seed: int) -> torch.Tensor:
    """A dense SPD matrix with eigenvalues spread geometrically over [lam_min, 1] (strong coupling)."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    lam = torch.logspace(math.log10(lam_min), 0.0, n, dtype=F64)
    A = (U * lam) @ U.T
    return 0.5 * (A + A.T)


def block_diag_spd(sizes: list[int], lam_min: float, seed: int) -> torch.Tensor:
    return torch.block_diag(*[spd(c, lam_min, seed + i) for i, c in enumerate(sizes)])


# ------------------------------------------------------------------------------------------- the chip
def test_chip_entry_round_trips_and_summary_says_what_it_means(tmp_path: Path) -> None:
    plain = HardwareProfile.from_spec("rc", tolerance=0.01, coupling_bits=8)
    assert plain.chip is None
    assert "chip: not declared -- one device of any size" in plain.summary()
    assert "chip" not in json.loads(save_profile(plain, tmp_path / "plain.json").read_text())
    chipped = dataclasses.replace(plain, chip={"cells_per_tile": 64, "tiles": 16})  # a JSON object is parsed
    assert chipped.chip == ChipSpec(cells_per_tile=64, tiles=16) and chipped.chip.cells == 1024
    assert "chip: 16 tile(s) of 64 cells (1024 cells)" in chipped.summary()
    path = save_profile(chipped, tmp_path / "chip.json")
    assert json.loads(path.read_text())["chip"] == {"cells_per_tile": 64, "tiles": 16}
    assert load_profile(path) == chipped
    with pytest.raises(dataclasses.FrozenInstanceError):
        chipped.chip.tiles = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("chip", "words"),
    [
        ([64, 16], r"chip = \[64, 16\] must be a JSON object"),
        ({"cells_per_tile": 64}, r"chip: missing field\(s\) \['tiles'\]"),
        ({"cells_per_tile": 64, "tiles": 2, "cols": 3}, r"chip: unknown field\(s\) \['cols'\]"),
        ({"cells_per_tile": 0, "tiles": 2}, r"ChipSpec.cells_per_tile=0 must be an integer >= 1"),
        ({"cells_per_tile": 64.0, "tiles": 2}, r"ChipSpec.cells_per_tile=64.0 must be an integer"),
        ({"cells_per_tile": 64, "tiles": True}, r"ChipSpec.tiles=True must be an integer"),
        ({"cells_per_tile": 64, "tiles": 10**7}, r"ChipSpec.tiles=10000000 must be an integer <= 1000000"),
    ],
)
def test_a_bad_chip_entry_is_refused_in_one_line(tmp_path: Path, chip, words) -> None:
    data = dataclasses.asdict(HardwareProfile.from_spec("rc"))
    data["chip"] = chip
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=words) as info:
        load_profile(path)
    assert "\n" not in str(info.value) and "p.json" in str(info.value) and "chip entry" in str(info.value)


def test_tile_blocks_cover_the_matrix_in_contiguous_blocks() -> None:
    assert tile_blocks(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert tile_blocks(8, 4) == [slice(0, 4), slice(4, 8)]
    assert tile_blocks(3, 64) == [slice(0, 3)]
    assert sum(s.stop - s.start for s in tile_blocks(4609, 64)) == 4609 and len(tile_blocks(4609, 64)) == 73
    with pytest.raises(InputError, match="cells_per_tile=0 must be an integer >= 1"):
        tile_blocks(10, 0)
    with pytest.raises(InputError, match="n=0"):
        tile_blocks(0, 4)


# ------------------------------------------------------------------------------------------- planning
def test_batched_lanczos_and_the_round_plan_match_the_single_device_planner() -> None:
    """The batched λ estimates equal extreme_eigenvalues' per block (same start vector), including a block on
    which Lanczos breaks down early; a round of one block is planned exactly as models.inverse plans it."""
    blocks = [spd(40, 0.05, 1), spd(40, 0.2, 2), torch.diag(torch.tensor([0.3] * 20 + [0.9] * 20, dtype=F64))]
    for steps in (8, 32):  # 40 > 4 * 8: Lanczos (and its early breakdown); 40 <= 4 * 32: exact eigenvalues
        lo, ritz, top = extreme_eigenvalues_batched(torch.stack(blocks), steps)
        for i, D in enumerate(blocks):
            want = extreme_eigenvalues(D, steps, generator=torch.Generator().manual_seed(0))
            got = (float(lo[i]), float(ritz[i]), float(top[i]))
            assert got == pytest.approx(want, rel=1e-9)
            if steps == 32:
                lam = torch.linalg.eigvalsh(D)
                assert got == pytest.approx((float(lam[0]), float(lam[0]), float(lam[-1])), rel=1e-12)
            else:  # a lower estimate below the smallest Ritz value, which is above λ_min
                lam_min = float(torch.linalg.eigvalsh(D)[0])
                assert got[0] <= lam_min * (1 + 1e-9) and got[1] >= lam_min * (1 - 1e-9)
    A = blocks[0]
    r = tiled_inverse(A, backend="ideal", cells_per_tile=40, generator=torch.Generator().manual_seed(0))
    want = _plan(A, "ideal", ReadoutConfig(mode="covariance"))
    got = r.plans[0]
    for name in ("t", "burn_in", "dt", "kappa0", "lambda_min", "predicted_error"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-9), name
    assert r.analog_time_tau == pytest.approx(want.t, rel=1e-9)


# ------------------------------------------------------------------------------------------- inverse
def _isserlis_frobenius(D: torch.Tensor, kappa0: float, dt: float, samples: int) -> float:
    """E‖Ĉ/κ0 - D⁻¹‖²_F for the stationary ideal device (Isserlis): Ĉ = (1/S) Σ x_k x_kᵀ, C(τ) = U diag(κ0
    φ^τ/λ) Uᵀ; Σ_ab Var Ĉ_ab = (1/S²) Σ_τ (S - |τ|) [(tr C(τ))² + tr C(τ)²]."""
    lam = torch.linalg.eigvalsh(D)
    tau = torch.arange(-(samples - 1), samples, dtype=F64)
    ev = torch.exp(-lam[None, :] * tau.abs()[:, None] * dt) / lam[None, :]  # C(τ)/κ0 eigenvalues
    terms = ev.sum(1) ** 2 + (ev**2).sum(1)
    return float(((samples - tau.abs()) * terms).sum() / samples**2)


def test_block_diagonal_inverse_of_a_block_diagonal_matrix_matches_the_monolithic_device_in_distribution() -> (
    None
):
    """On a block-diagonal A nothing is dropped: the tiled readout (batched law) and the monolithic device's
    trajectory both estimate A⁻¹ without bias, each with the squared error Isserlis predicts per block.
    Tolerances: the mean over R draws of a per-draw sum of squares (≈ χ² with ≥ 4 degrees of freedom, relative
    sd ≤ 0.71 per draw) has relative sd ≤ 0.71/√R; 4.5 of those. Entry means: z-score against the exact
    inverse with the same theory's per-entry sd, |z| < 4.5 (Bonferroni over 20 entries)."""
    sizes, R = [4, 4], 240
    A = block_diag_spd(sizes, 0.2, 3)
    exact = torch.linalg.inv(A)
    T, burn, dt, k0 = 300.0, 60.0, 1.0, 1e-2  # burn-in bias e^{-2·0.2·60} = 4e-11
    cfg = ReadoutConfig(analog_time=T, burn_in=burn, sample_interval=dt, kappa0=k0)
    S = int(math.floor((T - burn) / dt + 1e-9)) + 1
    g = torch.Generator().manual_seed(11)
    tiled = torch.stack(
        [tiled_inverse(A, backend="ideal", cells_per_tile=4, config=cfg, generator=g).value for _ in range(R)]
    )
    mono = torch.stack(
        [
            inverse(A, backend="ideal", config=cfg, generator=g, simulator="trajectory").inverse
            for _ in range(R)
        ]
    )
    assert bool((tiled[:, :4, 4:] == 0).all())  # the block-diagonal mapping holds no cross-tile entries
    bound = 4.5 * math.sqrt(0.5) / math.sqrt(R)
    for s in tile_blocks(8, 4):
        want = _isserlis_frobenius(A[s, s], k0, dt, S)
        for name, est in (("tiled", tiled), ("monolithic", mono)):
            sq = ((est[:, s, s] - exact[s, s]) ** 2).sum(dim=(1, 2))
            assert float(sq.mean()) / want == pytest.approx(1.0, abs=bound), name
            z = (est[:, s, s].mean(0) - exact[s, s]) / (est[:, s, s].std(0) / math.sqrt(R))
            assert float(z.abs().max()) < 4.5, name


def test_block_diagonal_inverse_notes_the_approximation_and_counts_every_tile() -> None:
    A = spd(10, 0.1, 4)
    cfg = ReadoutConfig(target_error=0.3)
    r = tiled_inverse(A, backend="ideal", cells_per_tile=4, config=cfg, tiles=2, generator=torch.Generator())
    assert (r.blocks, r.tiles_used, r.rounds, r.cells_per_tile, r.mapping) == (3, 2, 2, 4, "block-diagonal")
    assert any("couplings between tiles" in note for note in r.notes)
    assert any("3 blocks on 2 tiles: 2 rounds" in note for note in r.notes)
    # accounting: the tiles of a round share its plan; total = Σ tiles, wall = Σ rounds (each its longest)
    p1, p2 = r.plans[0], r.plans[2]
    assert r.plans[1] is p1 and p1 != p2
    assert r.analog_time_per_tile_tau == (p1.t, p1.t, p2.t)
    assert r.analog_time_tau == pytest.approx(2 * p1.t + p2.t)
    assert r.wall_time_tau == pytest.approx(p1.t + p2.t)
    samples = [int(math.floor((p.t - p.burn_in) / p.dt + 1e-9)) + 1 for p in (p1, p1, p2)]
    assert r.values_loaded == 10 + 10 + 3
    assert r.values_read == 4 * samples[0] + 4 * samples[1] + 2 * samples[2]
    # the round's predicted error bounds every tile's own under the shared schedule (its own λ_min, λ_max
    # and size), and is still the target
    for sl, p in zip(tile_blocks(10, 4), r.plans, strict=True):
        lo, _, top = extreme_eigenvalues(A[sl, sl], 32, generator=torch.Generator().manual_seed(0))
        S = int(math.floor((p.t - p.burn_in) / p.dt + 1e-9)) + 1
        own = covariance_readout_error(lo, sl.stop - sl.start, p.dt, S, top)
        assert own <= p.predicted_error * (1 + 1e-9) and p.predicted_error <= 0.3 * 1.01
        assert p.burn_in >= math.log(4 / 0.3) / (2 * lo) * (1 - 1e-9)
    # the exact backend gives the block-diagonal approximation itself, with no device time
    ex = tiled_inverse(A, backend="exact", cells_per_tile=4)
    want = torch.block_diag(*[torch.linalg.inv(A[s, s]) for s in tile_blocks(10, 4)])
    assert torch.allclose(ex.value, want, atol=1e-12) and ex.analog_time_tau == 0 and ex.values_read == 0


def test_monolithic_is_the_reference_and_is_chosen_without_a_tile_size() -> None:
    A = spd(6, 0.2, 5)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    r = tiled_inverse(A, backend="ideal", generator=g1)
    ref = inverse(A, backend="ideal", generator=g2, simulator="law")
    assert r.mapping == "monolithic" and torch.equal(r.value, ref.inverse)
    assert (r.analog_time_tau, r.values_loaded, r.values_read) == (
        ref.analog_time_tau,
        ref.values_loaded,
        ref.values_read,
    )
    assert any("ran monolithic" in note for note in r.notes)
    s = tiled_solve(A, torch.ones(6, dtype=F64), backend="ideal")
    assert s.mapping == "monolithic" and s.value.shape == (6,)


# ------------------------------------------------------------------------------------------- solve
def _gauss_seidel_matrix(A: torch.Tensor, blocks: list[slice]) -> torch.Tensor:
    """I - (D + L)⁻¹ A with D + L the block lower triangle of A (diagonal blocks included)."""
    n = A.shape[0]
    DL = torch.zeros_like(A)
    for i, si in enumerate(blocks):
        for sj in blocks[: i + 1]:
            DL[si, sj] = A[si, sj]
    return torch.eye(n, dtype=F64) - torch.linalg.solve(DL, A)


def test_gauss_seidel_converges_at_the_rate_of_its_iteration_matrix_on_the_ideal_device() -> None:
    """κ0 = 0 and a long window: each tile solve is exact to ~1e-13, so the residual after sweep k is the
    exact ‖A G^k A⁻¹ B‖/‖B‖ (G = I - (D + L)⁻¹A), it falls at ρ(G) per sweep, and the iteration stops at the
    first sweep below tol."""
    n, c, tol = 12, 4, 1e-6
    A = spd(n, 0.1, 6)
    B = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    blocks = tile_blocks(n, c)
    G = _gauss_seidel_matrix(A, blocks)
    rho = float(torch.linalg.eigvals(G).abs().max())
    assert 0.5 < rho < 1  # strong coupling between the tiles, yet convergent (A is SPD)
    cfg = ReadoutConfig(analog_time=6000.0)
    r = tiled_solve(
        A, B, backend="ideal", cells_per_tile=c, mapping="gauss-seidel", tol=tol, max_iters=200, config=cfg
    )
    X_star = torch.linalg.solve(A, B)
    predicted, E = [], -X_star
    while True:
        predicted.append(float(torch.linalg.matrix_norm(A @ E) / torch.linalg.matrix_norm(B)))
        if predicted[-1] <= tol:
            break
        E = G @ E
    assert r.converged and r.iterations == len(predicted) - 1
    assert list(r.residual_history) == pytest.approx(predicted, rel=1e-6)
    late = [b / a for a, b in zip(r.residual_history[-6:-1], r.residual_history[-5:], strict=True)]
    assert sum(late) / len(late) == pytest.approx(rho, rel=0.05)
    assert torch.allclose(r.value, X_star, atol=10 * tol * float(X_star.abs().max()) * 10)
    # accounting: one tile at a time (wall = total), every call's plan counted, blocks stay resident
    assert r.wall_time_tau == pytest.approx(r.analog_time_tau)
    assert r.analog_time_tau == pytest.approx(sum(p.t for p in r.plans))
    calls = len(r.plans)
    assert calls == r.iterations * len(blocks) and r.rounds == calls
    assert r.values_loaded == len(blocks) * c * (c + 1) // 2 + calls * c * 2
    assert r.values_read == calls * c * 2
    # initial residual 2n²k + nk; per block: residual update 2nck, X update ck, scaling in and out 2ck
    per_sweep = sum(2 * n * c * 2 + c * 2 + 2 * c * 2 for _ in blocks)
    assert r.digital_flops == r.iterations * per_sweep  # from X = 0 the first residual is B: no product


def test_gauss_seidel_with_auto_plans_is_the_plain_sweep_of_tile_solves() -> None:
    """The default ("auto", κ0 = 0 on the ideal device) against a hand-written Gauss–Seidel sweep of
    models.solve calls: the same iterate (the kept per-block plans change nothing but the planning cost)."""
    from thermotrain.models import solve

    n, c, sweeps = 12, 4, 3
    A = spd(n, 0.1, 6)
    B = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    r = tiled_solve(A, B, backend="ideal", cells_per_tile=c, tol=1e-30, max_iters=sweeps, patience=99)
    X, R = torch.zeros_like(B), B.clone()
    plans = []
    for _ in range(sweeps):
        for s in tile_blocks(n, c):
            beta = 1.0 / R[s].abs().amax(dim=0)
            out = solve(A[s, s], R[s] * beta, backend="ideal", readout="average")
            X[s] += out.x / beta
            R = B - A @ X
            plans.append(out.plan)
    assert torch.allclose(r.value, X, rtol=1e-10, atol=1e-12)
    assert r.plans == tuple(plans) and r.analog_time_tau == pytest.approx(sum(p.t for p in plans))
    assert any("max_iters=3" in note for note in r.notes)


def test_block_jacobi_divergence_is_detected_and_gauss_seidel_takes_over() -> None:
    """A = 0.3 I + 0.7·11ᵀ (scaled) is SPD, but 2D - A is not positive definite: ρ(I - D⁻¹A) > 1."""
    n, c = 6, 2
    A = (0.3 * torch.eye(n, dtype=F64) + 0.7 * torch.ones(n, n, dtype=F64)) / 4.5
    blocks = tile_blocks(n, c)
    Dinv = torch.block_diag(*[torch.linalg.inv(A[s, s]) for s in blocks])
    rho_j = float(torch.linalg.eigvals(torch.eye(n, dtype=F64) - Dinv @ A).abs().max())
    assert rho_j > 1.2
    B = 1.0 + torch.linspace(-1, 1, n, dtype=F64)  # has a component along 1, the growing direction
    cfg = ReadoutConfig(analog_time=4000.0)
    stop = tiled_solve(
        A, B, backend="ideal", cells_per_tile=c, mapping="block-jacobi", config=cfg, on_divergence="stop"
    )
    assert stop.mapping == "block-jacobi" and not stop.converged
    assert any("block-jacobi diverged" in note and "stopped" in note for note in stop.notes)
    h = stop.residual_history
    assert h[-1] > 2 * min(h) and h[-1] > h[-2] > h[-3] > h[-4]  # growth at ρ_J per sweep, caught early
    assert stop.iterations <= 6 and stop.residual == min(h)
    assert float(torch.linalg.norm(B - A @ stop.value) / torch.linalg.norm(B)) == pytest.approx(min(h))
    # Jacobi sweeps run every tile of a round at once: wall = Σ sweeps of the longest call
    assert stop.rounds == stop.iterations and stop.wall_time_tau < stop.analog_time_tau
    switched = tiled_solve(
        A, B, backend="ideal", cells_per_tile=c, mapping="block-jacobi", config=cfg, tol=1e-7, max_iters=200
    )
    assert switched.mapping == "gauss-seidel" and switched.converged
    assert any("switched to gauss-seidel" in note for note in switched.notes)
    assert torch.allclose(switched.value, torch.linalg.solve(A, B), atol=1e-6)


def test_convergent_block_jacobi_follows_its_iteration_matrix() -> None:
    n, c = 8, 4
    A = torch.block_diag(spd(4, 0.3, 1), spd(4, 0.3, 2)) + 0.05 * spd(8, 0.5, 3)
    blocks = tile_blocks(n, c)
    Dinv = torch.block_diag(*[torch.linalg.inv(A[s, s]) for s in blocks])
    J = torch.eye(n, dtype=F64) - Dinv @ A
    assert float(torch.linalg.eigvals(J).abs().max()) < 0.5
    B = torch.ones(n, 1, dtype=F64)
    r = tiled_solve(
        A,
        B,
        backend="ideal",
        cells_per_tile=c,
        mapping="block-jacobi",
        tol=1e-9,
        config=ReadoutConfig(analog_time=3000.0),
    )
    X_star, E, predicted = torch.linalg.solve(A, B), None, []
    E = -X_star
    for _ in range(len(r.residual_history)):
        predicted.append(float(torch.linalg.matrix_norm(A @ E) / torch.linalg.matrix_norm(B)))
        E = J @ E
    assert r.mapping == "block-jacobi" and r.converged and not r.notes
    assert list(r.residual_history) == pytest.approx(predicted, rel=1e-6)
    walls = [max(p.t for p in r.plans[2 * i : 2 * i + 2]) for i in range(r.iterations)]
    assert r.wall_time_tau == pytest.approx(sum(walls)) and r.rounds == r.iterations


def test_noisy_tiles_still_reach_a_tight_tolerance_and_a_floor_is_reported() -> None:
    """The device computes corrections only (relative error ε per call), the residual is digital: Gauss–Seidel
    contracts by ≈ ρ + ε and reaches 1e-8 with κ0 = 1e-2 noise. With noise far above the signal (κ0 = 100 over
    a 4 τ window: relative error ≫ 1) it cannot contract: it stops, says why, and returns its best iterate."""
    n, c = 12, 4
    A = spd(n, 0.1, 6)
    B = torch.randn(n, generator=torch.Generator().manual_seed(2), dtype=F64)
    g = torch.Generator().manual_seed(5)
    noisy = ReadoutConfig(kappa0=1e-2)
    r = tiled_solve(
        A, B, backend="ideal", cells_per_tile=c, tol=1e-8, max_iters=200, config=noisy, generator=g
    )
    assert r.converged and r.residual <= 1e-8
    assert torch.allclose(r.value, torch.linalg.solve(A, B), rtol=0, atol=1e-6)
    single = inverse(A, backend="ideal", config=ReadoutConfig(), generator=g).plan
    assert single.predicted_error > 1e-3  # one readout alone is far from 1e-8
    loud = ReadoutConfig(kappa0=100.0, analog_time=4.0, burn_in=0.0)
    bad = tiled_solve(
        A, B, backend="ideal", cells_per_tile=c, tol=1e-8, max_iters=60, config=loud, generator=g
    )
    assert not bad.converged and bad.iterations < 60
    assert bad.residual == min(bad.residual_history)
    assert any("stopped decreasing" in note or "diverged" in note for note in bad.notes)
    assert float(torch.linalg.norm(B - A @ bad.value) / torch.linalg.norm(B)) == pytest.approx(bad.residual)


def test_max_iters_is_reported_not_silent() -> None:
    A = spd(12, 0.02, 7)
    r = tiled_solve(
        A, torch.ones(12, dtype=F64), backend="exact", cells_per_tile=4, tol=1e-12, max_iters=2, patience=50
    )
    assert r.iterations == 2 and not r.converged
    assert any("max_iters=2 sweeps reached before tol=1e-12" in note for note in r.notes)
    assert r.analog_time_tau == 0 and r.values_loaded == 0


# ------------------------------------------------------------------------------------------- profiles
def test_a_profile_with_a_four_cell_chip_runs_a_ten_cell_matrix_as_three_tiles() -> None:
    prof = dataclasses.replace(
        HardwareProfile.from_spec("rc", tolerance=0.01, coupling_bits=8),
        chip=ChipSpec(cells_per_tile=4, tiles=3),
    )
    A = block_diag_spd([4, 4, 2], 0.3, 8)
    g = torch.Generator().manual_seed(3)
    r = tiled_inverse(A, backend=prof, generator=g)
    assert (r.cells_per_tile, r.blocks, r.tiles_used, r.rounds) == (4, 3, 3, 1)
    assert r.values_loaded == 10 + 10 + 3
    # the 8-bit, 1 %-tolerance device: each block within a few predicted readout errors (+ quantization)
    exact = torch.linalg.inv(A)
    for s in tile_blocks(10, 4):
        err = float(
            torch.linalg.matrix_norm(r.value[s, s] - exact[s, s]) / torch.linalg.matrix_norm(exact[s, s])
        )
        assert err < 4 * r.plans[0].predicted_error + 0.05
    # an outer Gauss–Seidel iteration makes the same quantized, noisy tiles exact in the limit
    B = torch.randn(10, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    s = tiled_solve(A + 0.05 * spd(10, 0.5, 9), B, backend=prof, tol=1e-7, max_iters=100, generator=g)
    assert s.converged and s.blocks == 3 and s.residual <= 1e-7
    with pytest.raises(InputError, match="cells_per_tile=8 exceeds the profile's chip"):
        tiled_inverse(A, backend=prof, cells_per_tile=8)


def test_trajectory_tiles_and_the_laws_refusal_keep_the_same_plan_and_accounting() -> None:
    """simulator="trajectory" runs each tile's path (models.inverse) on the round's schedule: same time, loads
    and reads as the batched law; a schedule the law refuses (S(1 - ρ²) < 10) falls back to it, with a note."""
    prof = HardwareProfile.from_spec("rc", tolerance=0.01, coupling_bits=8)
    A = block_diag_spd([3, 3], 0.3, 10)
    g = torch.Generator().manual_seed(4)
    law = tiled_inverse(A, backend=prof, cells_per_tile=3, generator=g)
    traj = tiled_inverse(A, backend=prof, cells_per_tile=3, generator=g, simulator="trajectory")
    assert law.plans == traj.plans
    assert law.notes == traj.notes and any("couplings between tiles (0 % of" in note for note in law.notes)
    for name in ("analog_time_tau", "wall_time_tau", "values_loaded", "values_read"):
        assert getattr(law, name) == getattr(traj, name), name
    exact = torch.linalg.inv(A)
    for r in (law, traj):
        assert _rel(r.value, exact) < 4 * law.plans[0].predicted_error + 0.05
    short = ReadoutConfig(analog_time=6.0, burn_in=1.0, sample_interval=1.0)
    r = tiled_inverse(A, backend="ideal", cells_per_tile=3, config=short, generator=g)
    assert any("2 tile(s) ran the trajectory" in note for note in r.notes)
    assert r.values_read == 2 * 3 * 6 and r.analog_time_tau == 12.0 and r.wall_time_tau == 6.0


def _rel(X: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(X - ref) / torch.linalg.matrix_norm(ref))


def test_bad_inputs_are_refused_in_one_line() -> None:
    A = spd(6, 0.2, 1)
    with pytest.raises(InputError, match="mapping='rows' is not one of"):
        tiled_inverse(A, backend="ideal", cells_per_tile=2, mapping="rows")
    with pytest.raises(InputError, match="mapping='block-jacobi' is not one of"):
        tiled_inverse(A, backend="ideal", cells_per_tile=2, mapping="block-jacobi")
    with pytest.raises(InputError, match="tol=0.0 must be > 0.0"):
        tiled_solve(A, torch.ones(6, dtype=F64), backend="ideal", cells_per_tile=2, tol=0.0)
    with pytest.raises(InputError, match="backend must be 'exact', 'ideal' or a HardwareProfile"):
        tiled_inverse(A, backend="rc8", cells_per_tile=2)
    indefinite = A.clone()
    indefinite[4:, 4:] = -torch.eye(2, dtype=F64)
    with pytest.raises(CircuitError, match=r"A\[4:6, 4:6\]"):
        tiled_inverse(indefinite, backend="ideal", cells_per_tile=2)
    with pytest.raises(CircuitError, match="must be symmetric"):
        tiled_solve(A + torch.triu(A, 1), torch.ones(6, dtype=F64), backend="ideal", cells_per_tile=2)
    with pytest.raises(CircuitError, match="B must be"):
        tiled_solve(A, torch.ones(5, dtype=F64), backend="ideal", cells_per_tile=2)


# --------------------------------------------------------------------------- resident tiles, CG on tiles
def test_time_average_law_is_the_time_average_moments_as_a_map_of_the_input() -> None:
    """N(Ψu, C) from time_average_law equals time_average_moments' mean and covariance for any input u
    (x0 = 0), on a non-normal stable drift: the resident tile draws the same law as models.solve."""
    from thermotrain.models._linear_sde import LinearSDE, time_average_law, time_average_moments

    g = torch.Generator().manual_seed(4)
    n = 6
    M = -(spd(n, 0.2, 3) + 0.1 * torch.randn(n, n, generator=g, dtype=F64) + 0.3 * torch.eye(n, dtype=F64))
    assert float(torch.linalg.eigvals(M).real.max()) < 0
    D = spd(n, 0.5, 5)
    Psi, C = time_average_law(M, D, 3.0, 40.0)
    U = torch.randn(4, n, generator=g, dtype=F64)
    for u in U:
        mean, cov = time_average_moments(LinearSDE(M, D, u), None, 3.0, 40.0)
        assert torch.allclose(Psi @ u, mean, rtol=1e-9, atol=1e-12)
        assert torch.allclose(C, cov, rtol=1e-8, atol=1e-14)


def test_a_resident_profile_tile_answers_exactly_as_models_solve_for_its_plan() -> None:
    """Noiseless (κ0 = 0) 8-bit profile with an op-amp offset: the cached law's answer equals models.solve on
    the same block with the same schedule to rounding error, for right-hand sides it was not planned for."""
    from thermotrain.models import TileCache, solve

    prof = HardwareProfile.from_spec("rc", tolerance=0.01, coupling_bits=8)
    prof = dataclasses.replace(prof, component_stats={**prof.component_stats, "opamp_offset_v": 1e-3})
    A = spd(8, 0.2, 11)
    g = torch.Generator().manual_seed(2)
    cfg = ReadoutConfig(mode="average", kappa0=0.0)
    cache = TileCache()
    first = torch.randn(8, 2, generator=g, dtype=F64)
    tile = cache.tile(A, first / first.abs().amax(0), prof, cfg, 0.1, None)
    assert tile is not None and cache.misses == 1
    R = torch.randn(8, 3, generator=g, dtype=F64)
    R = R / R.abs().amax(0)
    fixed = cfg.with_(analog_time=tile.plan.t, burn_in=tile.plan.burn_in)
    ref = solve(A, R, backend=prof, config=fixed, readout="average", lambda_floor=0.1)
    assert torch.allclose(tile(R, None), ref.x, rtol=1e-9, atol=1e-12)
    assert cache.tile(A.clone(), R, prof, cfg, 0.1, None) is tile and cache.hits == 1  # same bytes: reused
    A2 = A.clone()
    A2[0, 1] = A2[1, 0] = A2[0, 1] + 1e-3
    assert cache.tile(A2, R, prof, cfg, 0.1, None) is not tile  # a changed block never reuses a stale law
    stochastic = cfg.with_(rounding="stochastic")
    assert cache.tile(A, R, prof, stochastic, 0.1, None) is None  # every load draws anew: no residency


def _noisy_pcg(A: torch.Tensor, B: torch.Tensor, c: int, *, seed: int, iters: int):  # type: ignore[no-untyped-def]
    """CG on noisy ideal tiles (κ0 = 1e-3) of c cells to tol 1e-4, the default coarse space."""
    return tiled_solve(
        A,
        B,
        backend="ideal",
        cells_per_tile=c,
        mapping="pcg",
        tol=1e-4,
        max_iters=iters,
        patience=iters,
        config=ReadoutConfig(kappa0=1e-3),
        generator=torch.Generator().manual_seed(seed),
    )


def test_cg_on_tiles_converges_in_fewer_rounds_than_gauss_seidel_and_reaches_tol_with_noise() -> None:
    """Ill-conditioned dense SPD (κ = 1e3): exact block solves — CG preconditioned by the tiles reaches
    1e-8 in a few n iterations (finite termination in exact arithmetic, delayed by the loss of conjugacy in
    floating point) and in several times fewer rounds than Gauss–Seidel's sweeps; noisy ideal tiles (κ0 > 0)
    still reach tol = 1e-4 (the residual is digital), with every round counted."""
    n, c = 48, 8
    A = spd(n, 1e-3, 21)
    B = torch.randn(n, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    ref = torch.linalg.solve(A, B)
    cg = tiled_solve(
        A, B, backend="exact", cells_per_tile=c, mapping="pcg", tol=1e-8, max_iters=4 * n, patience=4 * n
    )
    gs = tiled_solve(A, B, backend="exact", cells_per_tile=c, tol=1e-8, max_iters=5000, patience=50)
    assert cg.converged and cg.iterations <= 2 * n
    assert gs.iterations > 3 * cg.iterations
    assert _rel(cg.value, ref) < 1e-5
    noisy = _noisy_pcg(A, B, c, seed=6, iters=400)
    assert noisy.converged and noisy.residual <= 1e-4
    assert noisy.rounds == noisy.iterations  # one round of all six tiles in parallel per iteration
    assert noisy.digital_flops >= noisy.iterations * 2 * n * n * 3
    # every tile keeps its block between iterations: loaded once, then right-hand sides only
    assert noisy.values_loaded == (n // c) * (c * (c + 1) // 2) + noisy.iterations * n * 3


def test_zero_columns_and_zero_blocks_in_float32_give_finite_corrections() -> None:
    """A dead unit's gradient is an all-zero right-hand side column or block: in float32 the full-scale
    scaling must not divide 0 by 0 (1e-300 underflows to 0 there); the correction of a zero column is 0."""
    g = torch.Generator().manual_seed(7)
    X = torch.randn(200, 40, generator=g)
    A = X.T @ X / 200 + 0.3 * torch.eye(40)
    B = torch.randn(40, 4, generator=g)
    B[8:, 1] = 0.0  # zero on every tile but the first
    B[:, 3] = 0.0
    for mapping in ("pcg", "gauss-seidel", "block-diagonal"):
        r = tiled_solve(
            A,
            B,
            backend="ideal",
            cells_per_tile=8,
            mapping=mapping,
            config=ReadoutConfig(kappa0=1e-3),
            generator=g,
        )
        assert bool(torch.isfinite(r.value).all()), mapping
        assert float(r.value[:, 3].abs().max()) == 0.0


def test_a_warm_start_worse_than_zero_is_dropped_per_column() -> None:
    """K-FAC's solve mode warm-starts from the previous update scaled by 1/max|b_j|: for a column whose new
    right-hand side is tiny that start is ~1e26 in float32 and its residual norm overflows. Such columns start
    from 0 instead; the others keep their (good) warm start."""
    g = torch.Generator().manual_seed(8)
    X = torch.randn(100, 10, generator=g)
    A = X.T @ X / 100 + 0.3 * torch.eye(10)
    B = torch.randn(10, 3, generator=g)
    good = torch.linalg.solve(A, B)
    x0 = good.clone()
    x0[:, 1] = 1e26
    r = tiled_solve(A, B, backend="ideal", cells_per_tile=4, mapping="pcg", tol=1e-3, x0=x0, generator=g)
    assert r.converged and bool(torch.isfinite(r.value).all())
    # columns 0 and 2 started at the answer, column 1 at 0: the first residual is column 1's right-hand side
    first = float(torch.linalg.vector_norm(B[:, 1]) / torch.linalg.matrix_norm(B))
    assert r.residual_history[0] == pytest.approx(first, rel=1e-4)


def test_a_drawn_device_that_would_be_unstable_is_refused_with_the_damping_that_fixes_it() -> None:
    """A 64-cell block of dead features (K-FAC's CNN: entries ~1e-3, eigenvalues at the damping floor) is
    loaded at full scale; 10 % element tolerances then move the bottom of the drawn conductance matrix below
    zero. Checking only the quantized matrix let such a device through and its time-average law overflowed
    (exp of an unstable drift): the drawn device is checked too, and refused with the extra damping."""
    from thermotrain import UnloadableMatrixError

    prof = HardwareProfile.from_spec("rc", tolerance=0.1, coupling_bits=None)
    n = 8
    A = torch.ones(n, n, dtype=F64) + 0.01 * torch.eye(n, dtype=F64)  # λ_min 0.01, entries ~1
    with pytest.raises(UnloadableMatrixError, match="drawn") as info:
        prof.instantiate(A)
    assert info.value.extra_damping > 0
    # the extra damping it names makes the same drawn device loadable and stable
    fixed = prof.instantiate(A + 1.5 * info.value.extra_damping * torch.eye(n, dtype=F64))
    assert float(torch.linalg.eigvals(fixed.sde.M).real.max()) < 0


def test_an_rc_profile_plans_for_the_matrix_it_runs_at_full_scale() -> None:
    """instantiate loads α·A (α = full scale / max|A|) and runs the drift -f·α·A: the readout is planned for
    that matrix, so its λ_min is f·α times A's and the analog time about 1/(f·α) of the ideal device's (which
    runs A itself). Planning on A (as before) over-stated the analog time of small-entry blocks by α."""
    from thermotrain.models._linalg import device_gain

    prof = HardwareProfile.from_spec("rc")
    A = 0.05 * spd(8, 0.1, 12)
    cfg = ReadoutConfig(kappa0=prof.kappa0)
    gain = device_gain(prof, A)
    alpha = float(prof.component_stats["coupling_full_scale"]) / float(A.abs().max())
    assert gain == pytest.approx(alpha * float(prof.fitted["drift_scale"]))
    p_dev, p_ideal = _plan(A, prof, cfg), _plan(A, "ideal", cfg)
    assert p_dev.lambda_min == pytest.approx(gain * p_ideal.lambda_min, rel=1e-6)
    assert p_dev.t < 2.0 * p_ideal.t / gain
    # the tiles plan the same way (a one-block round is exactly the single-device plan)
    r = tiled_inverse(A, backend=prof, cells_per_tile=8, config=cfg, simulate=False)
    assert r.analog_time_tau == pytest.approx(p_dev.t, rel=1e-9)
    assert device_gain("ideal", A) == 1.0


def test_block_diagonal_solve_without_the_residual_diagnostic() -> None:
    """``measure_residual=False`` (what thermodynamic K-FAC's block-diagonal solve passes): the same answer
    from the same draws, no digital product at all from X = 0 (the first residual is B), and the residual
    reported as unknown (None), not as a number it did not compute."""
    A, B = (
        spd(10, 0.3, 7),
        torch.randn(10, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64),
    )
    kw = {"backend": "ideal", "cells_per_tile": 4, "mapping": "block-diagonal"}
    full = tiled_solve(A, B, generator=torch.Generator().manual_seed(3), **kw)
    quick = tiled_solve(A, B, generator=torch.Generator().manual_seed(3), measure_residual=False, **kw)
    assert torch.equal(full.value, quick.value)
    assert full.residual is not None and full.residual > 0 and full.converged is not None
    assert quick.residual is None and quick.converged is None
    assert full.digital_flops - quick.digital_flops == 2 * 10 * 10 * 3 + 10 * 3  # one residual product
    assert any("residual not measured" in note for note in quick.notes)


def _per_tile_round(A: torch.Tensor, R: torch.Tensor, c: int, backend: object, cfg: ReadoutConfig):
    """One round of tile corrections the way the tiles run one by one (no batched device), and its ledger."""
    from thermotrain.models._tiles import TileCache, _jacobi_round, _Ledger

    blocks = tile_blocks(A.shape[0], c)
    led = _Ledger(len(blocks), True)
    D = [A[s, s] for s in blocks]
    out = _jacobi_round(D, blocks, R, backend, cfg, 0.05, None, led, None, R.shape[1], TileCache())
    return out, led


def test_the_batched_round_answers_exactly_as_the_tiles_one_by_one_without_noise() -> None:
    """Noiseless (κ0 = 0) 8-bit profile with an op-amp offset, 20 cells on tiles of 8 (two block sizes, so two
    batched groups), right-hand sides with an all-zero column and a column that is zero on one tile only: the
    batched block-diagonal round (one product per block size) gives the per-tile answers to rounding, and the
    same accounting (analog time, wall time, values loaded and read, flops)."""
    prof = HardwareProfile.from_spec("rc", tolerance=0.01, coupling_bits=8)
    prof = dataclasses.replace(prof, component_stats={**prof.component_stats, "opamp_offset_v": 1e-3})
    A = spd(20, 0.2, 31)
    R = torch.randn(20, 4, generator=torch.Generator().manual_seed(8), dtype=F64)
    R[:, 1] = 0.0
    R[8:16, 2] = 0.0
    cfg = ReadoutConfig(mode="average", kappa0=0.0)
    ref, led = _per_tile_round(A, R, 8, prof, cfg)
    got = tiled_solve(
        A,
        R,
        backend=prof,
        cells_per_tile=8,
        mapping="block-diagonal",
        config=cfg,
        lambda_floor=0.05,
        measure_residual=False,
    )
    assert torch.allclose(got.value, ref, rtol=1e-9, atol=1e-12)
    assert bool((got.value[:, 1] == 0).all()) and bool((got.value[8:16, 2] == 0).all())
    assert got.analog_time_tau == pytest.approx(led.total, rel=1e-12)
    assert got.wall_time_tau == pytest.approx(led.wall, rel=1e-12)
    assert (got.values_loaded, got.values_read) == (led.loaded, led.read)
    assert got.digital_flops == led.flops + 20 * 4  # the batched path adds X += δ like the per-tile one


def test_the_batched_round_draws_each_tiles_law() -> None:
    """Noisy ideal tiles (κ0 > 0): 4 000 copies of one right-hand side in one batched call; per cell the sample
    mean is within 4 standard errors of the tile law's mean Ψu and the sample variance within 4 standard errors
    (√(2/(N-1)) relative, Gaussian) of its variance C_ii, for every cell of both block sizes."""
    from thermotrain.models._tiles import TileCache

    A = spd(12, 0.3, 33)
    b = torch.randn(12, 1, generator=torch.Generator().manual_seed(9), dtype=F64)
    N = 4000
    cfg = ReadoutConfig(mode="average", kappa0=0.05, analog_time=30.0, burn_in=5.0)
    cache = TileCache()
    got = tiled_solve(
        A,
        b.expand(12, N).contiguous(),
        backend="ideal",
        cells_per_tile=8,
        mapping="block-diagonal",
        config=cfg,
        generator=torch.Generator().manual_seed(10),
        cache=cache,
        measure_residual=False,
    ).value
    for s in tile_blocks(12, 8):
        bi = b[s]
        amax = float(bi.abs().max())
        tile = cache.tile(A[s, s], bi / amax, "ideal", cfg, 0.0, None)
        assert tile is not None
        mean = (tile.Psi @ (bi[:, 0] / amax)) * amax
        var = torch.diagonal(tile.L @ tile.L.mT) * amax**2
        se = (var / N).sqrt()
        assert bool(((got[s].mean(1) - mean).abs() <= 4 * se).all())
        rel = got[s].var(1) / var - 1
        assert bool((rel.abs() <= 4 * math.sqrt(2 / (N - 1))).all())


def test_a_matrix_changed_in_place_is_checked_and_loaded_again() -> None:
    """The cache skips the checks and the hash for the very tensor it saw, unchanged; an in-place change
    (a new version) is checked again (here: refused as not symmetric) and never answered from the stale law."""
    from thermotrain.models import TileCache

    A = spd(12, 0.3, 35)
    B = torch.randn(12, 2, generator=torch.Generator().manual_seed(11), dtype=F64)
    cache = TileCache()
    kw = {
        "backend": "ideal",
        "cells_per_tile": 4,
        "mapping": "block-diagonal",
        "cache": cache,
        "config": ReadoutConfig(mode="average", kappa0=0.0),
    }
    first = tiled_solve(A, B, **kw).value
    assert cache.known(A) and not cache.known(A.clone())
    A.mul_(2.0)
    assert not cache.known(A)
    again = tiled_solve(A, B, **kw).value
    fresh = tiled_solve(A.clone(), B, **{**kw, "cache": TileCache()}).value
    assert torch.allclose(again, fresh, rtol=1e-12) and not torch.allclose(again, first)
    A[0, 1] += 1.0
    with pytest.raises(CircuitError, match="symmetric"):
        tiled_solve(A, B, **kw)


def test_every_tile_of_a_chip_is_its_own_device_and_a_block_returning_to_a_tile_meets_it_again() -> None:
    """A 16-cell matrix of four equal 4-cell blocks on a chip of 2 tiles × 4 cells (two rounds), 5 %
    tolerances, noiseless mean readout, the same right-hand side on every block: blocks 0 and 2 (tile 0) give
    the same answer, which is models.solve's on the profile itself; blocks 1 and 3 (tile 1) give tile 1's
    answer, models.solve on on_tile(profile, 1, 4), and that differs from tile 0's by far more than rounding."""
    from thermotrain.models import solve
    from thermotrain.models._tiles import on_tile

    prof = HardwareProfile.from_spec("rc", tolerance=0.05, coupling_bits=8)
    D = spd(4, 0.3, 41)
    A = torch.block_diag(D, D, D, D)
    b = torch.randn(4, 1, generator=torch.Generator().manual_seed(12), dtype=F64)
    b = b / b.abs().max()
    cfg = ReadoutConfig(mode="average", kappa0=0.0, analog_time=60.0, burn_in=20.0)
    got = tiled_solve(
        A,
        b.repeat(4, 1),
        backend=prof,
        cells_per_tile=4,
        tiles=2,
        mapping="block-diagonal",
        config=cfg,
        lambda_floor=0.1,
        measure_residual=False,
    ).value
    assert on_tile(prof, 1, 4) is on_tile(prof, 1, 4) and on_tile("ideal", 3, 4) == "ideal"
    assert on_tile(prof, 1, 4).seeds[0] == prof.seeds[0] + 1 and on_tile(prof, 0, 4).seeds == prof.seeds
    tile0 = solve(
        D, b, backend=prof, config=cfg, readout="average", lambda_floor=0.1
    ).x  # c = cells: the same
    tile1 = solve(D, b, backend=on_tile(prof, 1, 4), config=cfg, readout="average", lambda_floor=0.1).x
    for blk, want in ((0, tile0), (1, tile1), (2, tile0), (3, tile1)):
        assert torch.allclose(got[4 * blk : 4 * blk + 4], want.reshape(4, 1), rtol=1e-9, atol=1e-12)
    assert float((tile0 - tile1).abs().max()) > 1e-3 * float(tile0.abs().max())


def test_the_tiled_inverse_builds_each_block_on_its_own_tiles_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """tiled_inverse on a profile (law simulator): block i is instantiated with instance seed seeds[0] + i mod
    tiles (5 blocks on a chip of 2 tiles: seeds s, s+1, s, s+1, s)."""
    prof = HardwareProfile.from_spec("rc", tolerance=0.01, coupling_bits=8)
    seen: list[int] = []
    real = HardwareProfile.instantiate

    def spy(self: HardwareProfile, *args: object, **kw: object):  # type: ignore[no-untyped-def]
        seen.append(self.seeds[0])
        return real(self, *args, **kw)

    monkeypatch.setattr(HardwareProfile, "instantiate", spy)
    A = block_diag_spd([4] * 5, 0.3, 50)
    tiled_inverse(A, backend=prof, cells_per_tile=4, tiles=2, lambda_floor=0.1)
    s = prof.seeds[0]
    assert seen == [s, s + 1, s, s + 1, s]


def test_a_block_smaller_than_its_tile_uses_the_first_cells_of_that_tiles_parts() -> None:
    """on_tile draws a tile's parts for all its cells: a 2-cell block on a 4-cell tile gets the drift and
    diffusion of the first two cells of a 4-cell load that holds the same 2 × 2 block uncoupled from the rest
    (5 % tolerances, offsets and generator mismatch on), so a smaller last block meets the tile's own parts."""
    from thermotrain.models._tiles import on_tile

    prof = HardwareProfile.from_spec("rc", tolerance=0.05, coupling_bits=None)
    cs = {**prof.component_stats, "opamp_offset_v": 1e-3, "noise_gain_mismatch": 0.02, "opamp_gbw_hz": None}
    prof = dataclasses.replace(prof, component_stats=cs)
    D2 = torch.tensor([[1.0, -0.3], [-0.3, 0.8]], dtype=F64)
    A4 = torch.block_diag(D2, torch.diag(torch.tensor([0.5, 0.6], dtype=F64)))
    for t in (0, 3):
        dev = on_tile(prof, t, 4)
        small, big = dev.instantiate(D2), dev.instantiate(A4)
        assert torch.allclose(small.sde.M, big.sde.M[:2, :2], rtol=1e-12, atol=1e-15)
        assert torch.allclose(small.sde.D, big.sde.D[:2, :2], rtol=1e-12, atol=1e-15)
        assert torch.allclose(small.sde.u, big.sde.u[:2], rtol=1e-12, atol=1e-15)
    own = prof.instantiate(D2).sde.M  # the profile's own 2-cell device draws for 2 cells: other parts
    assert not torch.allclose(own, on_tile(prof, 0, 4).instantiate(D2).sde.M, rtol=1e-6)


def test_a_matrix_checked_at_one_tile_size_is_checked_again_at_another() -> None:
    """The cache remembers the block check per tile size: [[1, 2], [2, 1]] ⊕ I passes on 1-cell tiles (every
    diagonal entry > 0) and is refused on 2-cell tiles (its first block is indefinite), with the same cache."""
    from thermotrain.models import TileCache

    A = torch.block_diag(torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64), torch.eye(2, dtype=F64))
    cache = TileCache()
    kw = {"backend": "exact", "mapping": "block-diagonal", "cache": cache, "measure_residual": False}
    tiled_solve(A, torch.ones(4, dtype=F64), cells_per_tile=1, **kw)
    with pytest.raises(CircuitError, match=r"A\[0:2, 0:2\] must be symmetric positive definite"):
        tiled_solve(A, torch.ones(4, dtype=F64), cells_per_tile=2, **kw)


def _features_factor(n: int, seed: int) -> torch.Tensor:
    """A K-FAC input factor of ReLU features driven by a few strong latent factors (n / 32 of them): its big
    modes couple every block, as the CNN's fc factor's do. Scaled to Gershgorin radius 1, damping 0.01."""
    g = torch.Generator().manual_seed(seed)
    k = n // 32
    latent = torch.randn(4 * n, k, generator=g, dtype=F64) @ torch.randn(k, n, generator=g, dtype=F64)
    X = (3 * latent / k**0.5 + torch.randn(4 * n, n, generator=g, dtype=F64)).relu()
    A = X.T @ X / (4 * n) + 0.01 * torch.eye(n, dtype=F64)
    return A / float(A.abs().sum(dim=1).max())


def test_the_coarse_space_deflates_cg_on_tiles_to_a_few_rounds_and_keeps_its_invariants() -> None:
    """CG on tiles with the digital coarse space (per block the top eigenvectors of its diagonal block): on a
    factor whose large modes couple every block it reaches the tolerance in several times fewer tile rounds
    than block-Jacobi-preconditioned CG, to the same answer; the residual stays orthogonal to the coarse
    space and every deflated direction A-orthogonal to it; the space is built once per matrix (its flops
    counted in the call that builds it)."""
    from thermotrain.models import TileCache
    from thermotrain.models._tiles import _CoarseSpace

    n, c = 256, 32  # 8 tiles
    A = _features_factor(n, 3)
    B = torch.randn(n, 5, generator=torch.Generator().manual_seed(4), dtype=F64)
    ref = torch.linalg.solve(A, B)
    kw = dict(backend="exact", cells_per_tile=c, mapping="pcg", tol=1e-3, max_iters=400, patience=400)
    plain = tiled_solve(A, B, coarse=0, **kw)
    cache = TileCache()
    deflated = tiled_solve(A, B, coarse=4, cache=cache, **kw)
    again = tiled_solve(A, B, coarse=4, cache=cache, **kw)
    assert plain.converged and deflated.converged
    assert 2 * deflated.rounds <= plain.rounds, (deflated.rounds, plain.rounds)  # measured: 33 against 86
    cond = float(torch.linalg.cond(A))
    assert _rel(deflated.value, ref) < 1e-3 * cond and _rel(plain.value, ref) < 1e-3 * cond
    space = _CoarseSpace(A, [A[s, s] for s in tile_blocks(n, c)], tile_blocks(n, c), 4)
    m, Q = n // c, space.Q
    assert Q == 4 * m and space.nq == n * 4
    # Z is block-sparse: AZ costs 2 n nnz(Z), not a dense 2 n² Q (and equals the dense product)
    assert space.build_flops == 9 * m * c**3 + 2 * n * space.nq + 2 * space.nq * Q + Q**3 // 3
    torch.testing.assert_close(space.AZ, A @ space.Z(torch.eye(Q, dtype=F64)), rtol=1e-12, atol=1e-12)
    assert deflated.digital_flops - again.digital_flops == space.build_flops  # built once, then reused
    X, R, _ = space.start(torch.zeros_like(B), B.clone())
    torch.testing.assert_close(R, B - A @ X)
    assert float(space.ZT(R).abs().max()) < 1e-10 * float(B.abs().max())
    Zr, _ = space.deflate(torch.randn(n, 5, generator=torch.Generator().manual_seed(5), dtype=F64))
    assert float((space.AZ.mT @ Zr).abs().max()) < 1e-10
    # at most a quarter of each block: a 6-cell tile gets one vector, a 3-cell one none
    small = tile_blocks(15, 6)
    assert _CoarseSpace(A[:15, :15], [A[s, s] for s in small], small, 8).Q == 2
    assert tiled_solve(A[:9, :9], B[:9], coarse=4, **(kw | {"cells_per_tile": 3})).converged


def test_noisy_tiles_with_the_coarse_space_reach_the_tolerance_of_the_exact_solve() -> None:
    n, c = 128, 16
    A = _features_factor(n, 6)
    B = torch.randn(n, 3, generator=torch.Generator().manual_seed(7), dtype=F64)
    ref = torch.linalg.solve(A, B)
    r = _noisy_pcg(A, B, c, seed=8, iters=200)
    assert r.converged and r.residual <= 1e-4
    assert _rel(r.value, ref) < 1e-4 * float(torch.linalg.cond(A))
    assert r.rounds == r.iterations  # the coarse start and the deflation are digital: no tile round
