"""``kfac-fidelity``: how far thermodynamic K-FAC's update is from exact K-FAC's, layer by layer, measured
against how far exact K-FAC's update is from the gradient -- on the factors of trained networks.

Training outcomes alone cannot say whether a device keeps K-FAC's curvature: a network may train as well on a
poor preconditioner. This experiment looks at the preconditioner itself. Digital K-FAC is tuned on
validation and trained over the protocol's seeds (:func:`run_protocol`, the same runs as any experiment);
each seed's final checkpoint gives every layer's factors (A, G). With one validation batch's gradient g of a
layer (its bias as the last column) and λ = the selected λ × :data:`DAMPING_SCALES`:

- U = (G + λI)⁻¹ g (A + λI)⁻¹, exact K-FAC's update;
- U_dev = the same with both inverses read from a device (:class:`AnalogSolver`'s ``inverse``: the training's
  default covariance readout, auto analog time, damping guard, the profile's chip mapping);
- turn = ∠(U, g), what the curvature does to the gradient, and error = ∠(U_dev, U), what the device does to
  K-FAC's update (degrees); error / turn ≥ 1 means the device moves the update as far as the curvature does;
  ‖U_dev‖/‖U‖, the device's step length relative to exact K-FAC's.

Devices (:func:`devices`): the ideal device (readout noise only), the profile as given (its tiles), the same
parts on one monolithic device (no tile boundary cuts a factor), 4 coupling bits, a 4-bit ADC over the swing
and over a range of :data:`ADC_RANGE` × the signal scale (a gain stage before the converter), and 12 bits
with no tolerance at a 10× lower readout error (what is left when rounding and noise are small).
Each metric is reported per seed with its mean and 95 % t-interval over seeds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from thermotrain._safeio import write_text_atomic
from thermotrain.training._protocol import Arm, Protocol, dumps, split, summarize, write_results

#: multiples of digital K-FAC's selected λ at which the updates are compared
DAMPING_SCALES = (1 / 3, 1.0, 3.0)
#: validation examples in the gradient the updates precondition
GRADIENT_EXAMPLES = 512
LOW_NOISE_ERROR = 0.01
#: the matched ADC row's range, in units of the profile's signal scale sqrt(κ0·noise_scale)
ADC_RANGE = 10.0


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """The angle between two tensors seen as vectors (degrees; 0 for parallel); None when either is zero (a
    device that read nothing gives no direction)."""
    norms = float(a.norm() * b.norm())
    if not norms > 0:
        return None
    c = float((a * b).sum()) / norms
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def devices(profile: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    """(label, backend, solver options) of the compared devices, derived from ``profile``."""
    from thermotrain.training._attribution import adc_over_range, set_fields

    stats = profile.component_stats
    own = f"{stats.get('coupling_bits') or 'ideal'} bit, tol {100 * stats.get('tolerance', 0.0):g}%"
    return [
        ("ideal device (readout noise only)", "ideal", {}),
        (f"{profile.name} as given ({own}, its tiles)", profile, {}),
        (f"{profile.name}, one monolithic device", profile, {"mapping": "monolithic"}),
        ("4 coupling bits, tol 1%", set_fields(profile, {"component_stats.coupling_bits": 4}), {}),
        (f"ADC 4 bit ({own})", set_fields(profile, {"adc_bits": 4}), {}),
        (*adc_over_range(profile, 4, ADC_RANGE), {}),
        (
            f"12 bit, tol 0%, readout error {LOW_NOISE_ERROR:g}",
            set_fields(profile, {"component_stats.coupling_bits": 12, "component_stats.tolerance": 0.0}),
            {"target_error": LOW_NOISE_ERROR},
        ),
    ]


def _solver(backend: Any, seed: int, target_error: float | None = None, **kw: Any) -> Any:
    from thermotrain.training._solvers import AnalogSolver, make_solver

    solver = make_solver(backend, generator=torch.Generator().manual_seed(seed + 7919), **kw)
    assert isinstance(solver, AnalogSolver)
    if target_error is not None:
        solver.readout = solver.readout.with_(target_error=target_error)
    return solver


def _trained(run_dir: Path, data: Any) -> tuple[Any, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The network of a finished run and its K-FAC factors, from the run's checked checkpoint."""
    from thermotrain.training._harness import read_checkpoint
    from thermotrain.training._nets import build_model

    meta, tensors = read_checkpoint(run_dir)
    model = build_model(meta["config"]["model"], data.image_shape, data.num_classes)
    model.load_state_dict(tensors["model"])
    layers = tensors["method"]["precond"]["layers"]
    return model, {name: (v["A"], v["G"]) for name, v in layers.items()}


def _gradients(model: Any, names: list[str], x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each layer's gradient of the mean cross-entropy as [out, in (+1 bias)] (a conv kernel flattened)."""
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        m = modules[name]
        g = m.weight.grad.reshape(m.weight.shape[0], -1)
        if m.bias is not None:
            g = torch.cat([g, m.bias.grad[:, None]], dim=1)
        out[name] = g.double()
    return out


def measure(
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]],
    grads: dict[str, torch.Tensor],
    lam: float,
    solver: Any,
) -> dict[str, dict[str, float]]:
    """Per layer at damping ``lam``: turn = ∠(U, g) and error = ∠(U_dev, U) (degrees), their ratio, and
    ‖U_dev‖/‖U‖ (the step length the device gives relative to exact K-FAC's: the damping guard's extra
    damping shortens it). A device update of 0 (every channel read as a constant) has no angle: None."""
    out = {}
    for name, (A, G) in factors.items():
        g = grads[name]
        Ad = A.double() + lam * torch.eye(A.shape[0], dtype=torch.float64)
        Gd = G.double() + lam * torch.eye(G.shape[0], dtype=torch.float64)
        U = torch.linalg.solve(Gd, g) @ torch.linalg.inv(Ad)
        Ud = solver.inverse(Gd, floor=lam) @ g @ solver.inverse(Ad, floor=lam)
        turn, err = angle_deg(U, g), angle_deg(Ud, U)
        out[name] = {
            "turn_deg": turn,
            "error_deg": err,
            "error_over_turn": err / turn if (err is not None and turn) else None,
            "norm_ratio": float(Ud.norm() / U.norm()),
        }
    return out


def run_fidelity(out: Path, base: Any, data: Any, protocol: Protocol, profile: Any) -> dict[str, Any]:
    """Tune and train digital K-FAC (runs under ``out/runs``), then compare the devices' updates with exact
    K-FAC's on each seed's factors; write ``results.json``, ``results.md``, ``kfac-fidelity.json`` and
    ``kfac-fidelity.png``; return the payload."""
    from thermotrain.training._protocol import run_protocol

    digital = Arm("digital", {"optimizer": "kfac"})
    result = run_protocol(
        [digital], base, data, protocol, run_out=lambda _arm, seed: str(out / "runs" / f"seed{seed}")
    )
    if result.failed:
        return {"experiment": "kfac-fidelity", "rows": [], "failed": dict(result.failed), "runs": result.runs}
    row0 = result.rows[0]
    lr, lam0 = float(row0["settings"]["lr"]), float(row0["settings"]["damping"])
    tune_data, _ = split(data)
    gx, gy = tune_data.x_test[:GRADIENT_EXAMPLES], tune_data.y_test[:GRADIENT_EXAMPLES]
    seeds = list(protocol.seed_list)
    per_seed: list[tuple[dict[str, Any], dict[str, torch.Tensor]]] = []
    for seed in seeds:
        model, factors = _trained(out / "runs" / f"seed{seed}", data)
        per_seed.append((factors, _gradients(model, list(factors), gx, gy)))
    rows = []
    for label, backend, kw in devices(profile):
        for m in DAMPING_SCALES:
            lam = lam0 * m
            layers: dict[str, dict[str, list[float | None]]] = {}
            bumps = []
            for seed, (factors, grads) in zip(seeds, per_seed, strict=True):
                solver = _solver(backend, seed, **kw)
                for name, vals in measure(factors, grads, lam, solver).items():
                    for key, v in vals.items():
                        layers.setdefault(name, {}).setdefault(key, []).append(v)
                bumps.append(solver.stats.damping_bumps)
            row = {
                "label": f"{label}, λ × {m:.3g}",
                "device": label,
                "damping": lam,
                "damping_scale": m,
                "selected_on": "validation (digital K-FAC's λ × damping_scale)",
                "seeds": seeds,
                "layers": {n: {k: summarize(v) for k, v in d.items()} for n, d in layers.items()},
                "damping_bumps": bumps,
            }
            rows.append(row)
            print(json.dumps({"row": row["label"], **_brief(row)}), flush=True)
    extra = {
        "dataset": data.name,
        "model": base.model,
        "profile": profile.name,
        "digital_selection": {
            "lr": lr,
            "damping": lam0,
            "validation_accuracy": row0.get("validation_accuracy"),
        },
        "digital_test_accuracy": {k: row0.get(k) for k in ("per_seed", "mean", "ci95")},
        "gradient": f"{GRADIENT_EXAMPLES} validation examples, mean cross-entropy, each seed's final network",
        "angles": "turn = ∠(exact K-FAC update, gradient); error = ∠(device's update, exact K-FAC update); degrees",
    }
    write_results(out, "kfac-fidelity", protocol, rows, result.failed, **extra)
    write_text_atomic(out / "results.md", markdown(rows) + "\n")
    payload = {"experiment": "kfac-fidelity", **extra, "rows": rows, "failed": {}, "runs": result.runs}
    write_text_atomic(out / "kfac-fidelity.json", dumps(payload | {"runs": None}))
    plot(
        rows,
        out / "kfac-fidelity.png",
        f"K-FAC update fidelity, {base.model} on {data.name} ({profile.name})",
    )
    return payload


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {
        n: [round(d[k]["mean"], 1) if d[k]["mean"] is not None else None for k in ("turn_deg", "error_deg")]
        for n, d in row["layers"].items()
    }


def _fmt(s: dict[str, Any], digits: int = 1) -> str:
    if s["mean"] is None:
        return "–"
    ci = s.get("ci95")
    return f"{s['mean']:.{digits}f}" + ("" if ci is None else f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]")


def markdown(rows: list[dict[str, Any]]) -> str:
    """One line per (device, λ, layer): turn, error and error/turn with their intervals over seeds."""
    lines = [
        "| device | λ | layer | turn ∠(U, g) ° | device error ∠(U_dev, U) ° | error / turn | ‖U_dev‖ / ‖U‖ "
        "| guard bumps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for name, d in r["layers"].items():
            lines.append(
                f"| {r['device']} | {r['damping']:.3g} (× {r['damping_scale']:.3g}) | {name} | "
                f"{_fmt(d['turn_deg'])} | {_fmt(d['error_deg'])} | {_fmt(d['error_over_turn'], 2)} | "
                f"{_fmt(d['norm_ratio'], 2)} | "
                f"{'/'.join(map(str, r['damping_bumps']))} |"
            )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Device error / curvature turn per layer (mean and 95 % interval over seeds) against λ, one panel per
    layer, one line per device."""
    from thermotrain._report import pyplot

    if not rows:
        return
    plt = pyplot()
    names = list(rows[0]["layers"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    devs = list(dict.fromkeys(r["device"] for r in rows))
    for ax, name in zip(axes[0], names, strict=True):
        for i, dev in enumerate(devs):
            sel = [r for r in rows if r["device"] == dev]
            xs = [r["damping"] for r in sel]
            s = [r["layers"][name]["error_over_turn"] for r in sel]
            nan = float("nan")
            ys = [nan if v["mean"] is None else v["mean"] for v in s]
            lo = [y - (v["half_width"] or 0.0) for y, v in zip(ys, s, strict=True)]
            hi = [y + (v["half_width"] or 0.0) for y, v in zip(ys, s, strict=True)]
            ax.plot(xs, ys, "o-", ms=3, color=f"C{i}", label=dev)
            ax.fill_between(xs, lo, hi, color=f"C{i}", alpha=0.15, lw=0)
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set(
            xscale="log", xlabel="damping λ", ylabel="device error / curvature turn", title=f"layer {name}"
        )
        # the measured λ as the only ticks (log-scale minor labels collide)
        lams = sorted({r["damping"] for r in rows})
        ax.set_xticks(lams, [f"{v:.3g}" for v in lams])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.grid(lw=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, frameon=False)
    fig.suptitle(
        title + " (mean and 95 % interval over seeds; 1 = as far as the curvature turns)", fontsize=9
    )
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
