"""Data-parallel training on ``torch.distributed``: ``torchrun --nproc-per-node N -m thermotrain train …``.

Under ``torchrun`` (the environment holds ``RANK`` and ``WORLD_SIZE``) :func:`setup` joins the process group
(``gloo`` on CPU, ``nccl`` on CUDA, each rank on ``cuda:LOCAL_RANK``) and returns a :class:`DataParallel`;
without it :func:`setup` returns ``None`` and the harness runs exactly as before. Per step:

1. **Data.** Every rank draws the same epoch order (seeded as in a single-process run) and takes its
   contiguous share of each global batch (``--batch-size`` is the *global* batch; :meth:`DataParallel.shard`).
2. **Gradients.** Each rank runs forward/backward on its shard; then one ``all_reduce`` (sum) of the flat
   buffer [n_r·∇L_r for every parameter, n_r·L_r, n_r] gives every rank Σ_r n_r ∇L_r / Σ_r n_r = the
   gradient (and loss) of the mean loss over the global batch. This is an explicit all-reduce rather than
   ``DistributedDataParallel``: the model stays unwrapped (K-FAC's layer names, state dicts and checkpoints
   are those of a single-process run), the shards may differ in size by one example (an epoch's last batch)
   and are weighted exactly, and the loss rides in the same buffer, so the divergence checks see the
   global loss on every rank and every rank stops together. The price is no overlap of communication with
   backward (DDP's buckets), which matters little for the small models here.
3. **K-FAC factors.** After the local factor update F_r ← ρF + (1-ρ)F_batch,r (F is identical on all ranks),
   one ``all_reduce`` (sum) of w_r·F_r with w_r = n_r/N gives ρF + (1-ρ)·Σ_r w_r F_batch,r, and
   Σ_r w_r A_batch,r = Σ_r X_rᵀX_r / (N·T) and Σ_r w_r G_batch,r = Σ_r S_rᵀS_r n_r² / N = Σ ĝĝᵀ / N are the
   single-process factors of the global batch (S_r = ĝ/n_r is the gradient of the rank's own mean loss).
4. **Inverses / device calls.** Layer i (in the preconditioner's layer order) is inverted on rank
   i mod world_size only; each result (explicit inverse or Cholesky factor, whichever the single-process
   run would keep) is broadcast from its owner. With ``kfac_mode="solve"`` the per-step device solves are
   spread the same way and the update U of layer i is broadcast. Solver statistics and the per-call device
   log are summed/gathered so that rank 0 reports the totals of all ranks, in layer order.

**Analog noise.** A single-process run draws every device call from one generator in sequence, so the
noise a layer sees depends on how many numbers the layers before it used; no rank can reproduce that
without running those layers. In a data-parallel run the device call of layer i at step k therefore uses
its own generator seeded from (the run's device seed, i, k) (:func:`layer_seed`), whichever rank runs it:
the result does not depend on the number of processes (1, 2, …; ``torchrun --nproc-per-node 1`` is the
reference), but a thermodynamic run under torchrun is not bit-identical to ``python -m thermotrain train``
(it is statistically the same device). Digital K-FAC, SGD and Adam match the single-process run to
floating-point rounding.

Only rank 0 writes outputs (metrics, summary, report, TensorBoard, checkpoints, config) and prints; a resumed
run is read by every rank from rank 0's folder (a shared file system on many machines).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from thermotrain._errors import InputError

__all__ = [
    "DISTRIBUTED_OPTIMIZERS",
    "DataParallel",
    "Launch",
    "SettingsError",
    "check_settings",
    "launch_from_env",
    "setup",
]

#: optimizers that run data-parallel (the others precondition with per-batch data held by one process)
DISTRIBUTED_OPTIMIZERS = ("sgd", "adam", "kfac")

_GROUPS = 0  # process groups setup() started in this process

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class SettingsError(InputError):
    """Settings a data-parallel run refuses; raised identically on every rank before any communication, so
    the command line prints it from rank 0 only."""


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a ``torchrun`` launch (from the environment torchrun sets).

    Attributes:
        rank: global rank (0 … world_size-1).
        world_size: number of processes (count).
        local_rank: rank on this machine (selects ``cuda:LOCAL_RANK``).
    """

    rank: int
    world_size: int
    local_rank: int


def launch_from_env(env: dict[str, str] | None = None) -> Launch | None:
    """The :class:`Launch` torchrun describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, or ``None`` when
    neither ``RANK`` nor ``WORLD_SIZE`` is set (a plain single-process run)."""
    env = os.environ if env is None else env
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return None
    values = {}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        text = env.get(key, "0" if key == "LOCAL_RANK" else "")
        try:
            values[key] = int(text)
        except ValueError:
            raise InputError(
                f"environment variable {key}={text!r} is not an integer; start data-parallel training with "
                "torchrun (it sets RANK, WORLD_SIZE and LOCAL_RANK), or unset them for one process."
            ) from None
    rank, size = values["RANK"], values["WORLD_SIZE"]
    if size < 1 or not 0 <= rank < size:
        raise InputError(
            f"RANK={rank} with WORLD_SIZE={size} is not a valid launch (need 0 ≤ RANK < WORLD_SIZE); start "
            "data-parallel training with torchrun."
        )
    return Launch(rank, size, values["LOCAL_RANK"])


def check_settings(
    optimizer: str, batch_size: int, world_size: int, train_examples: int | None = None
) -> None:
    """Refuse settings a data-parallel run of ``world_size`` processes cannot train (one-line
    :class:`~thermotrain.InputError`; the same on every rank, before any communication).

    ``batch_size`` is the global batch (examples per step, all ranks together); it must split evenly, and an
    epoch's last, partial batch (``train_examples`` mod ``batch_size``) must still give every rank one example.
    """
    if world_size <= 1:
        return
    if optimizer not in DISTRIBUTED_OPTIMIZERS:
        raise SettingsError(
            f"--optimizer {optimizer} does not run data-parallel (torchrun runs {', '.join(DISTRIBUTED_OPTIMIZERS)}"
            "); run it as one process (python -m thermotrain train …)."
        )
    if batch_size % world_size:
        lo = max(batch_size // world_size, 1) * world_size
        raise SettingsError(
            f"--batch-size {batch_size} is the global batch and must split evenly over the {world_size} "
            f"processes; use a multiple of {world_size} (e.g. {lo} or {lo + world_size})."
        )
    if train_examples is not None:
        rest = train_examples % batch_size
        if 0 < rest < world_size:
            raise SettingsError(
                f"the last batch of each epoch holds {rest} of the {train_examples} training examples, fewer "
                f"than the {world_size} processes; change --batch-size or --subset so that "
                f"{train_examples} mod batch size is 0 or at least {world_size}."
            )


def setup(device: str, launch: Launch | None = None) -> DataParallel | None:
    """Join (or reuse) the process group of a torchrun launch; ``None`` for a single-process run.

    An already initialised default group is used as it is (a script that called ``init_process_group``);
    otherwise the launch from the environment starts one (``gloo`` for CPU, ``nccl`` for CUDA), which
    :meth:`DataParallel.close` ends.
    """
    if dist.is_available() and dist.is_initialized():
        return DataParallel(dist.get_rank(), dist.get_world_size(), owns_group=False)
    launch = launch if launch is not None else launch_from_env()
    if launch is None:
        return None
    if not dist.is_available():
        raise InputError("this torch build has no torch.distributed; run one process (no torchrun).")
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(launch.local_rank)
    # a fresh key prefix per group: a second run in the same process (after close()) must not meet the
    # first group's keys in torchrun's store (it would wait for peers that left)
    global _GROUPS
    _GROUPS += 1
    store, rank, size = next(dist.rendezvous("env://"))
    store = dist.PrefixStore(f"thermotrain/{_GROUPS}", store)
    dist.init_process_group("nccl" if cuda else "gloo", store=store, rank=rank, world_size=size)
    return DataParallel(dist.get_rank(), dist.get_world_size(), owns_group=True)


def layer_seed(base: int, layer: int, step: int) -> int:
    """Seed of the device generator of layer ``layer`` at preconditioner step ``step`` (data-parallel runs):
    a fixed mix of the three integers, the same on every rank (63 bits)."""
    x = (
        base * 0x9E3779B97F4A7C15 + (layer + 1) * 0xBF58476D1CE4E5B9 + (step + 1) * 0x94D049BB133111EB
    ) % 2**64
    x ^= x >> 31
    return x % 2**63


class DataParallel:
    """One rank of a data-parallel run: sharding, the gradient/factor all-reduces, the spread of inverses.

    Attributes:
        rank, world_size: this process and the number of processes.
        share: n_r/N of the last :meth:`reduce_gradients` (this rank's fraction of the global batch).
        bytes_reduced: bytes this rank sent into all-reduces and broadcasts (payload only; a counter for
            the docs' bandwidth figures).
    """

    def __init__(self, rank: int, world_size: int, *, owns_group: bool = False) -> None:
        self.rank, self.world_size = int(rank), int(world_size)
        self.share = 1.0 / self.world_size
        self.owns_group = owns_group
        self.bytes_reduced = 0

    @property
    def is_writer(self) -> bool:
        """Whether this rank writes the run's outputs (rank 0 only)."""
        return self.rank == 0

    def close(self) -> None:
        """End the process group if :func:`setup` started it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def agree(self, ok: bool) -> None:
        """Collective check that every rank could start (output folder, checkpoint): a rank whose own checks
        passed raises :class:`~thermotrain.InputError` when another's failed, instead of waiting forever for
        it in the first all-reduce (the failing rank raises its own error)."""
        flag = torch.tensor([0 if ok else 1], dtype=torch.int64)
        dist.all_reduce(flag)
        if ok and int(flag[0]):
            raise InputError(
                f"another process of this run (of {self.world_size}) refused to start; rank 0's error "
                "names the reason (output folder or checkpoint). Nothing was trained."
            )

    def owner(self, index: int) -> int:
        """The rank that computes layer ``index``'s inverses / device calls: index mod world_size."""
        return index % self.world_size

    # -- data -------------------------------------------------------------------------------------------
    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch of indices (sizes differ by at most one)."""
        return torch.tensor_split(idx, self.world_size)[self.rank]

    def broadcast_model(self, model: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank (identical seeds make them equal already;
        this makes it so whatever the platform)."""
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)

    # -- gradients ----------------------------------------------------------------------------------------
    def reduce_gradients(self, model: nn.Module, loss: torch.Tensor, n_local: int) -> torch.Tensor:
        """Average the gradients over the global batch in place and return the global mean loss.

        One all-reduce (sum) of [n_r·grad for each parameter with a gradient, n_r·L_r, n_r]; afterwards
        every parameter's ``.grad`` is Σ_r n_r ∇L_r / N and :attr:`share` is n_r/N."""
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        n = float(n_local)  # an integer count: exact in float32 up to 2**24
        tail = torch.stack([loss.detach().reshape(()) * n, loss.new_tensor(n)]).to(loss.dtype)
        flat = torch.cat([*(g.reshape(-1).to(loss.dtype) * n for g in grads), tail])
        self._all_reduce(flat)
        total = float(flat[-1])
        self.share = n / total
        offset = 0
        for g in grads:
            k = g.numel()
            g.copy_(flat[offset : offset + k].view_as(g) / total)
            offset += k
        return flat[-2] / total

    def _all_reduce(self, t: torch.Tensor, op: Any = None) -> None:
        if t.numel() == 0:
            return
        self.bytes_reduced += t.numel() * t.element_size()
        dist.all_reduce(t, op=op if op is not None else dist.ReduceOp.SUM)

    # -- K-FAC -----------------------------------------------------------------------------------------------
    def sync_factors(self, layers: Iterable[Any]) -> None:
        """All-reduce the factors A, G of the layers updated this step, weighted by :attr:`share`, so that
        every rank holds the single-process factors of the global batch (module docstring, item 3)."""
        facs = [f for layer in layers for f in (layer.A, layer.G)]
        if not facs:
            return
        flat = torch.cat([f.reshape(-1) for f in facs]) * self.share
        self._all_reduce(flat)
        offset = 0
        for f in facs:
            k = f.numel()
            f.copy_(flat[offset : offset + k].view_as(f))
            offset += k

    def step_layers(
        self, precond: Any, refresh: bool, lam: float, interval: int
    ) -> list[tuple[Any, torch.Tensor]]:
        """The layer loop of ``KFACPreconditioner.step`` on a rank: refresh the inverses that are due (spread,
        :meth:`refresh`), then the updates U per layer with a gradient (inverse mode: every rank applies the
        broadcast inverses itself; solve mode: spread, :meth:`precondition`)."""
        ready = [
            (i, layer)
            for i, layer in enumerate(precond._layers.values())
            if layer.A is not None and layer.G is not None
        ]
        due = [(i, layer) for i, layer in ready if refresh or not precond._has_inverse(layer)]
        self.refresh(precond, due, lam, interval)
        with_grad = [(i, layer) for i, layer in ready if layer.has_grad()]
        if precond.config.mode == "solve":
            return self.precondition(precond, with_grad)
        return [(layer, precond._precondition(layer)) for _, layer in with_grad]

    def refresh(self, precond: Any, due: list[tuple[int, Any]], lam: float, interval: int) -> None:
        """Refresh the inverses of ``due`` = [(layer index, layer)] (``precond._refresh``): layer i on rank
        i mod world_size with its own device generator, then broadcast from there; solver statistics and
        device logs are combined so every rank holds the totals."""
        if precond.config.mode == "solve":  # only damped copies here: no device call, no communication
            for _, layer in due:
                precond._refresh(layer, lam, interval)
            return
        solver = precond.solver
        before = solver.stats.as_dict()
        logs: dict[int, list[dict[str, Any]]] = {}
        head = torch.zeros(len(due), 4, dtype=torch.int64)
        for j, (i, layer) in enumerate(due):
            if self.owner(i) != self.rank:
                continue
            self._run_owned(precond, i, partial(precond._refresh, layer, lam, interval), logs)
            for c, name in enumerate(("A", "G")):
                chol = getattr(layer, f"{name}_chol")
                t = chol if chol is not None else getattr(layer, f"{name}_inv")
                head[j, 2 * c] = 1 if chol is not None else 0
                head[j, 2 * c + 1] = _DTYPES.index(t.dtype)
        self._all_reduce(head)
        works = []
        for j, (i, layer) in enumerate(due):
            src = self.owner(i)
            for c, (name, fac) in enumerate((("A", layer.A), ("G", layer.G))):
                is_chol, dtype = bool(head[j, 2 * c]), _DTYPES[int(head[j, 2 * c + 1])]
                if src == self.rank:  # LAPACK's factors may be column-major: send (and keep) row-major
                    attr = f"{name}_chol" if is_chol else f"{name}_inv"
                    t = getattr(layer, attr).contiguous()
                    setattr(layer, attr, t)
                else:
                    t = torch.empty(fac.shape, dtype=dtype, device=fac.device)
                    setattr(layer, f"{name}_chol", t if is_chol else None)
                    setattr(layer, f"{name}_inv", None if is_chol else t)
                self.bytes_reduced += t.numel() * t.element_size() if src == self.rank else 0
                works.append(dist.broadcast(t, src=src, async_op=True))
        for w in works:
            w.wait()
        self._combine_stats(solver, before, logs)

    def precondition(self, precond: Any, ready: list[tuple[int, Any]]) -> list[tuple[Any, torch.Tensor]]:
        """``precond._precondition`` for solve mode: layer i's device solves on rank i mod world_size, its
        update U broadcast (and kept as every rank's warm start)."""
        solver = precond.solver
        before = solver.stats.as_dict()
        logs: dict[int, list[dict[str, Any]]] = {}
        out: list[tuple[Any, torch.Tensor]] = []
        for i, layer in ready:
            if self.owner(i) == self.rank:
                u = self._run_owned(precond, i, partial(precond._precondition, layer), logs).contiguous()
            else:
                g = layer.grad_matrix()
                u = torch.empty(g.shape, dtype=g.dtype, device=g.device)
            out.append((layer, u))
        works = []
        for (i, _), (_, u) in zip(ready, out):
            self.bytes_reduced += u.numel() * u.element_size() if self.owner(i) == self.rank else 0
            works.append(dist.broadcast(u, src=self.owner(i), async_op=True))
        for w in works:
            w.wait()
        for layer, u in out:
            layer.prev_update = u.detach().clone()
        self._combine_stats(solver, before, logs)
        return out

    def _run_owned(self, precond: Any, index: int, fn: Any, logs: dict[int, list[dict[str, Any]]]) -> Any:
        """``fn()`` (layer ``index``'s device work), with the layer's own generator on an analog solver; the
        device-log records it appends move to ``logs[index]``."""
        solver = precond.solver
        if not solver.is_analog:
            return fn()
        saved, start = solver.generator, len(solver.calls_log)
        base = getattr(precond, "_dp_seed", None)
        if base is None:
            base = precond._dp_seed = int(saved.initial_seed())
        solver.generator = torch.Generator().manual_seed(layer_seed(base, index, precond.steps))
        try:
            result = fn()
        finally:
            solver.generator = saved
        logs[index] = solver.calls_log[start:]
        del solver.calls_log[start:]
        return result

    def _combine_stats(
        self, solver: Any, before: dict[str, float], logs: dict[int, list[dict[str, Any]]]
    ) -> None:
        """Sum the solver counters' increments over the ranks (max for extra_damping_max) and append every
        rank's device-log records in layer order, on every rank."""
        after = solver.stats.as_dict()
        keys = [k for k in after if k != "extra_damping_max"]
        delta = torch.tensor([float(after[k]) - float(before[k]) for k in keys], dtype=torch.float64)
        self._all_reduce(delta)
        for k, v in zip(keys, delta.tolist()):
            setattr(
                solver.stats, k, type(before[k])(before[k] + (round(v) if isinstance(before[k], int) else v))
            )
        top = torch.tensor([float(after["extra_damping_max"])], dtype=torch.float64)
        self._all_reduce(top, dist.ReduceOp.MAX)
        solver.stats.extra_damping_max = float(top[0])
        if solver.is_analog:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, logs)
            merged = {i: recs for part in gathered for i, recs in part.items()}
            for i in sorted(merged):
                solver.calls_log.extend(merged[i])
