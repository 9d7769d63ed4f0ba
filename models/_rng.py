"""Random draws for the device simulators on any torch device.

A seeded run hands the simulators one ``torch.Generator``, a CPU one (:class:`~thermotrain.training.AnalogSolver`
and the TNGD preconditioner make it with ``torch.Generator().manual_seed``), and torch refuses a CPU generator
for a draw made on CUDA. Every device-noise draw therefore goes through :func:`randn` / :func:`rand`:

- on the generator's own device (the CPU, or a CUDA generator on its GPU) it is the plain torch draw;
- on another device it takes one 62-bit seed from the generator and draws there with a fresh Philox generator
  of that seed (drawing on the host and copying would cost more than the GPU's products: 16 ms for the
  73 × 128 × 64 noise of one CG iteration of the CNN's widest factor, measured on one core).

So the run's whole random state stays the one CPU generator (its checkpoint and ``--resume`` work on either
device), a seed reproduces a CUDA run exactly, and the CUDA noise has the CPU noise's law but not its values.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

_SEED_BOUND = 2**62


def _on(generator: torch.Generator | None, device: torch.device | str | None) -> torch.Generator | None:
    """A generator that draws on ``device``: ``generator`` itself when it lives there (or is None, or no device
    is named), else a new one on ``device`` seeded from ``generator``."""
    if generator is None or device is None:
        return generator
    device = torch.device(device)
    if generator.device.type == device.type and (
        device.index is None or generator.device.index in (None, device.index)
    ):
        return generator
    seed = int(torch.randint(_SEED_BOUND, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


def _draw(
    fn: Callable[..., Tensor],
    shape: tuple[int, ...] | int,
    *,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
) -> Tensor:
    """``fn`` (torch.randn / torch.rand) numbers of ``shape`` on ``device`` (default: the generator's), drawn
    from ``generator``."""
    where = device if device is not None else (None if generator is None else generator.device)
    return fn(shape, generator=_on(generator, device), dtype=dtype, device=where)


#: standard normal numbers: randn(shape, generator=, dtype=, device=)
randn = partial(_draw, torch.randn)
#: uniform [0, 1) numbers: rand(shape, generator=, dtype=, device=)
rand = partial(_draw, torch.rand)
