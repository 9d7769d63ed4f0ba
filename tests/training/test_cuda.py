"""Thermodynamic K-FAC on CUDA: the tiles, the fast readout laws and the solver run there and agree with the CPU.

The device noise of a CUDA computation is drawn on the GPU from seeds taken off the run's CPU generator
(``thermotrain.models._rng``): the same law as on the CPU, not the same numbers. So with the noise off
(κ0 = 0) a CUDA result must equal the CPU result up to rounding, and with it on it must meet the same error
bounds and be reproducible from its seed. Skipped where torch sees no CUDA device (CI and the development
machines); run on a lent GPU machine with ``pytest tests/training/test_cuda.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from thermotrain.models import (
    ChipSpec,
    HardwareProfile,
    TileCache,
    find_profile,
    tile_blocks,
    tiled_inverse,
    tiled_solve,
)
from thermotrain.training import AnalogSolver, TrainConfig, train

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (CI and the dev machines have none)"
)

F64 = torch.float64


def _spd(n: int, seed: int) -> torch.Tensor:
    """A K-FAC-like factor: a sample second moment of correlated features plus damping."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(3 * n, n, generator=g, dtype=F64) @ (torch.eye(n, dtype=F64) + 0.3 * torch.ones(n, n) / n)
    return X.T @ X / (3 * n) + 0.1 * torch.eye(n, dtype=F64)


def _chip_profile() -> HardwareProfile:
    return dataclasses.replace(
        HardwareProfile.from_spec("rc", tolerance=0.01, coupling_bits=8),
        chip=ChipSpec(cells_per_tile=8, tiles=3),
    )


def test_block_diagonal_inverse_on_cuda_meets_the_readout_error_and_repeats_from_its_seed() -> None:
    A = _spd(20, 1)
    cpu = tiled_inverse(
        A, backend=_chip_profile(), cells_per_tile=8, generator=torch.Generator().manual_seed(5)
    )
    runs = [
        tiled_inverse(
            A.cuda(), backend=_chip_profile(), cells_per_tile=8, generator=torch.Generator().manual_seed(5)
        )
        for _ in range(2)
    ]
    assert runs[0].value.device.type == "cuda"
    torch.testing.assert_close(runs[0].value, runs[1].value, rtol=0, atol=0)  # the seed fixes the CUDA noise
    # the plan and the accounting do not depend on the noise: the CPU's
    for key in ("analog_time_tau", "values_loaded", "values_read", "tiles_used", "rounds"):
        assert getattr(runs[0], key) == getattr(cpu, key), key
    exact = torch.linalg.inv(A)
    for s in tile_blocks(20, 8):  # each block within a few predicted readout errors (+ 8-bit quantization)
        ref = torch.linalg.matrix_norm(exact[s, s])
        for r in (cpu.value, runs[0].value.cpu()):
            assert (
                float(torch.linalg.matrix_norm(r[s, s] - exact[s, s]) / ref)
                < 4 * cpu.plans[0].predicted_error + 0.05
            )


@pytest.mark.parametrize("mapping", ["pcg", "block-diagonal", "gauss-seidel"])
def test_noise_free_tiled_solve_on_cuda_equals_the_cpu_result(mapping: str) -> None:
    prof = dataclasses.replace(_chip_profile(), kappa0=0.0)
    A = _spd(20, 2)
    B = torch.randn(20, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    kw = dict(backend=prof, cells_per_tile=8, mapping=mapping, tol=1e-3, max_iters=60)
    cpu = tiled_solve(A, B, generator=torch.Generator().manual_seed(7), cache=TileCache(), **kw)
    gpu = tiled_solve(A.cuda(), B.cuda(), generator=torch.Generator().manual_seed(7), cache=TileCache(), **kw)
    assert gpu.value.device.type == "cuda"
    assert gpu.iterations == cpu.iterations
    torch.testing.assert_close(gpu.value.cpu(), cpu.value, rtol=1e-6, atol=1e-9)


def test_noisy_pcg_on_cuda_converges_to_the_solution() -> None:
    A = _spd(20, 2)
    B = torch.randn(20, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    r = tiled_solve(
        A.cuda(),
        B.cuda(),
        backend=_chip_profile(),
        cells_per_tile=8,
        mapping="pcg",
        tol=1e-6,
        max_iters=200,
        generator=torch.Generator().manual_seed(7),
    )
    assert r.converged and r.residual <= 1e-6
    torch.testing.assert_close(r.value.cpu(), torch.linalg.solve(A, B), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["inverse", "solve"])
def test_the_solver_on_the_shipped_profile_answers_on_cuda(mode: str) -> None:
    A = _spd(150, 4).float()  # three 64-cell tiles of the rc8 chip
    B = torch.randn(150, 5, generator=torch.Generator().manual_seed(2))
    quiet = dataclasses.replace(find_profile("rc8"), kappa0=0.0)
    out = {}
    for dev in ("cpu", "cuda"):
        if mode == "inverse":  # the covariance readout needs the noise: compare errors
            solver = AnalogSolver(find_profile("rc8"), generator=torch.Generator().manual_seed(11))
            out[dev] = solver.inverse(A.to(dev), floor=0.1)
        else:  # the noise-free mean readout is deterministic: compare values
            solver = AnalogSolver(quiet, generator=torch.Generator().manual_seed(11))
            out[dev] = solver.solve(A.to(dev), B.to(dev), floor=0.1)
        assert out[dev].device.type == dev and out[dev].dtype == torch.float32
    if mode == "solve":
        torch.testing.assert_close(out["cuda"].cpu(), out["cpu"], rtol=1e-4, atol=1e-5)
    else:
        exact = torch.linalg.inv(A.double())
        err = {d: float((out[d].cpu().double() - exact).norm() / exact.norm()) for d in out}
        assert err["cuda"] < 2 * err["cpu"] + 0.02, err


@pytest.mark.parametrize(
    "flags",
    [
        dict(kfac_mode="inverse"),
        dict(kfac_mode="solve"),
        dict(kfac_mode="solve", tile_mapping="block-diagonal"),
    ],
)
def test_thermodynamic_kfac_trains_the_cnn_on_cuda_along_the_cpu_run(tmp_path: Path, flags: dict) -> None:
    """The same seeded run on both devices: the same initial weights and batches, so the first loss (before any
    update) agrees up to the rounding of float32 convolutions (cuDNN may use TF32); the device noise differs
    (its law does not), so later losses are only required finite and the run complete."""
    losses = {}
    for dev in ("cpu", "cuda"):
        cfg = TrainConfig(
            model="cnn",
            dataset="fashion-mnist",
            subset=384,
            epochs=1,
            optimizer="kfac",
            backend="rc8",
            device=dev,
            progress=False,
            out=str(tmp_path / dev),
            **flags,
        )
        assert train(cfg)["status"] == "completed"
        summary = json.loads((tmp_path / dev / "summary.json").read_text())
        assert summary["analog_time_tau"] > 0
        rows = [json.loads(line) for line in (tmp_path / dev / "metrics.jsonl").read_text().splitlines()]
        losses[dev] = torch.tensor([r["loss"] for r in rows if r["kind"] == "step"])
    assert len(losses["cuda"]) == len(losses["cpu"]) == 3 and bool(torch.isfinite(losses["cuda"]).all())
    torch.testing.assert_close(losses["cuda"][:1], losses["cpu"][:1], rtol=1e-3, atol=0.0)
