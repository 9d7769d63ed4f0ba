"""What the training harness asks of a preconditioner, and the summary of a device's readouts.

:class:`Preconditioner` is the protocol every second-order method of :mod:`thermotrain.training` follows
(K-FAC, NGD-CG / dense NGD, TNGD): the harness calls ``step(x, y)`` after the backward pass and before the
outer optimizer's step, then reads ``last_step`` (analog time and I/O of that step) and drains
``device_log()`` (one record per device call: size, analog time, sample interval, λ_min estimate, predicted
readout error). No ``isinstance``/``hasattr`` probing: a method that runs no device returns ``[]`` and ``{}``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["Preconditioner", "ReadoutTally", "describe_readout"]


@runtime_checkable
class Preconditioner(Protocol):
    """A gradient preconditioner run once per training step."""

    #: analog_time_tau (τ), values_loaded, values_read (counts) of the last step; ``{}`` for digital methods
    last_step: dict[str, Any]

    def step(self, x: Tensor, y: Tensor) -> None:
        """Precondition the gradients in ``.grad`` in place, for the batch (x, y) they came from."""

    def device_log(self) -> list[dict[str, Any]]:
        """The device calls since the last call of this method (each a dict: op, n, analog_time_tau, …)."""

    def device_stats(self) -> dict[str, Any]:
        """Run totals of the device beyond time and I/O (e.g. the damping guard's ``damping_bumps``)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ReadoutTally:
    """Running summary of a run's device calls: count, analog time per call (min / mean / max, τ), the largest
    predicted readout error, the number of calls whose automatic time hit ``max_analog_time``, and the tiled
    iterative solves that stopped above their tolerance (a floor, divergence or ``max_iters``: their best
    iterate was used)."""

    def __init__(self) -> None:
        self.calls, self.total, self.capped = 0, 0.0, 0
        self.t_min, self.t_max, self.err_max = math.inf, 0.0, 0.0
        self.sizes: dict[int, list[float]] = {}
        self.tiles_max = 0
        self.unconverged, self.residual_max = 0, 0.0

    def add(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            t = float(r.get("analog_time_tau", 0.0))
            self.calls += 1
            self.total += t
            self.t_min, self.t_max = min(self.t_min, t), max(self.t_max, t)
            err = float(r.get("predicted_error", math.nan))
            if math.isfinite(err):
                self.err_max = max(self.err_max, err)
            self.capped += bool(r.get("capped", False))
            self.tiles_max = max(self.tiles_max, int(r.get("tiles_used", 1) or 1))
            res, tol = r.get("residual"), r.get("tol")
            if res is not None and tol is not None and math.isfinite(float(res)):
                self.residual_max = max(self.residual_max, float(res))
                self.unconverged += float(res) > float(tol)
            n = int(r.get("n", 0))
            lo_hi = self.sizes.setdefault(n, [math.inf, 0.0])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], t), max(lo_hi[1], t)

    def as_dict(self) -> dict[str, Any]:
        if not self.calls:
            return {"calls": 0}
        return {
            "calls": self.calls,
            "analog_time_per_call_tau": {
                "min": self.t_min,
                "mean": self.total / self.calls,
                "max": self.t_max,
            },
            "by_size": {str(n): {"min": lo, "max": hi} for n, (lo, hi) in sorted(self.sizes.items())},
            "predicted_error_max": self.err_max if self.err_max > 0 else None,
            "capped_calls": self.capped,
            "tiles_used_max": self.tiles_max,
            "unconverged_solves": self.unconverged,
            "solve_residual_max": self.residual_max if self.residual_max > 0 else None,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        if not state.get("calls"):
            return
        per = state["analog_time_per_call_tau"]
        self.calls, self.total = int(state["calls"]), float(per["mean"]) * int(state["calls"])
        self.t_min, self.t_max = float(per["min"]), float(per["max"])
        self.err_max = float(state.get("predicted_error_max") or 0.0)
        self.capped = int(state.get("capped_calls", 0))
        self.tiles_max = int(state.get("tiles_used_max", 1))
        self.unconverged = int(state.get("unconverged_solves", 0))
        self.residual_max = float(state.get("solve_residual_max") or 0.0)
        self.sizes = {int(n): [float(v["min"]), float(v["max"])] for n, v in state.get("by_size", {}).items()}

    def line(self, setting: Any, target: float | None) -> str:
        """One sentence for the terminal (see :func:`describe_readout`)."""
        return describe_readout({"analog_time": setting, "target_error": target, **self.as_dict()})


def describe_readout(readout: dict[str, Any]) -> str:
    """One sentence from a run summary's ``readout`` entry, e.g. 'analog time per device call (auto, target
    readout error 0.2): n=65: 1.2e+03…1.5e+03; n=10: 80 τ (mean 800 τ over 16 calls; predicted error ≤ 0.2)'."""
    setting, target = readout.get("analog_time"), readout.get("target_error")
    if not readout.get("calls"):
        return "no analog device calls"
    what = "auto" if setting == "auto" else f"fixed {float(setting):g} τ"
    tgt = f", target readout error {target:g}" if setting == "auto" and target is not None else ""
    sizes = "; ".join(
        f"n={n}: {v['min']:.3g}" + (f"…{v['max']:.3g}" if v["max"] > 1.005 * v["min"] else "")
        for n, v in readout.get("by_size", {}).items()
    )
    mean = readout["analog_time_per_call_tau"]["mean"]
    err = readout.get("predicted_error_max")
    err_text = f"; predicted error ≤ {err:.2g}" if err else ""
    tiles = readout.get("tiles_used_max", 1) or 1
    tile_text = f"; up to {tiles} tiles per factor, time summed over tiles" if tiles > 1 else ""
    capped = readout.get("capped_calls", 0)
    cap_text = f"; {capped} calls capped at max_analog_time" if capped else ""
    stuck = readout.get("unconverged_solves", 0)
    stuck_text = (
        f"; {stuck} tiled solves stopped above their tolerance (residual up to "
        f"{readout.get('solve_residual_max') or 0:.3g}; their best iterate was used)"
        if stuck
        else ""
    )
    return (
        f"analog time per device call ({what}{tgt}): {sizes} τ (mean {mean:.3g} τ over {readout['calls']} "
        f"calls{err_text}{tile_text}{cap_text}{stuck_text})"
    )
