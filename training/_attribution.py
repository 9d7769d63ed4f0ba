"""``thermotrain experiment attribution``: which non-ideality of a calibrated board costs thermodynamic K-FAC
the most accuracy.

Starting from a calibrated hardware profile (default: the shipped, SPICE-calibrated ``rc8`` board profile),
every non-ideality of :data:`NONIDEALITIES` is switched **off one at a time** from the full board ("full − X")
and **on one at a time** from the ideal device ("ideal + X"); the ideal device is the full board with every
one of them off (so it keeps the board's architecture: τ, chip tiles, the ±output_full_scale_v clip).

============== ================================================ ======================================
non-ideality    profile fields                                   ideal value
============== ================================================ ======================================
coupling bits   ``component_stats.coupling_bits``                None (continuous couplings)
ADC bits        ``adc_bits``                                      None (no ADC quantization)
tolerance       ``component_stats.tolerance``, ``capacitor_tolerance``  0, 0
noise level     ``kappa0``, ``fitted.noise_scale``                1e-2 V² (the ideal device's), 1
analog time     ``readout.target_error``, ``readout.max_analog_time``  1e-3, 1e12 τ (≈ the exact covariance)
drift mismatch  ``fitted.drift_scale``, ``fitted.diag_shift``      1, 0
op-amp gain     ``component_stats.opamp_gain``                   None (infinite DC gain)
op-amp GBW      ``component_stats.opamp_gbw_hz``                 None (infinite bandwidth)
op-amp offsets  ``component_stats.opamp_offset_v``               0 V
generator gain  ``component_stats.noise_gain_mismatch``          0 (every noise channel at its level)
============== ================================================ ======================================

The board value of each is the starting profile's. Where the profile leaves one at its ideal value (the
rc8 calibrated on the old board had no ADC, no GBW and no offsets; the one recalibrated on the new board
carries a 10 MHz GBW and a 25 µV offset, but still no ADC), the board gets a **stated** value instead
(:data:`STATED_BOARD_VALUES`: a 12-bit ADC over ±output_full_scale_v, a 10 MHz GBW, 1 mV σ input offsets --
issue 9's board op-amp class -- and 1 % σ generator-channel gain mismatch), so "full board" = the profile plus those; a row "profile as shipped" shows the
profile alone, and ``results.json`` lists what was added (``added_to_profile``).

A variant that builds the **same device** as its reference (the surrogate does not model the field: e.g.
``switch_capacitance_f`` of an RC profile, whose summing nodes are virtual grounds) is detected by
:func:`same_device` (instantiate on a fixed test matrix, the readout plan's context, the chip) and not
trained: its row says ``"modelled": false`` and its effect is 0 by construction, not measured.

Protocol (:mod:`thermotrain.training._protocol`): the validation split; digital K-FAC's lr and λ are tuned
on the validation split (the protocol's K-FAC grid) and **shared by every device row** (``selected_with``);
each row is trained over ``seeds`` seeds and reported on the test set (final test accuracy; 95 %
t-interval). **Accuracy lost** to X (positive: X costs accuracy), paired by seed (same initialisation, data
order and device-noise seed), with the 95 % t-interval of the per-seed differences:

- one-off: accuracy(full − X) − accuracy(full): what removing X from the board gains back;
- one-on: accuracy(ideal) − accuracy(ideal + X): what X alone costs the ideal device.

Default cost (Fashion-MNIST, ``--subset 10000`` (8 000 train, 2 000 validation, 10 000 test), 1 epoch, 3
seeds, MLP 784-512-256-10, batch 64, thermodynamic K-FAC with TrainConfig's defaults, i.e. auto analog time
at the profile's readout error, factors on the profile's 64-cell tiles): 9 tuning runs of digital K-FAC plus
(2 + 2 × modelled non-idealities) × 3 device runs and 3 digital runs -- on rc8 (9 modelled), 9 + 63 runs of
~10 s each on an idle core; measured 15 min on the shared 2-core machine (docs/results.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from thermotrain._args import comma_items
from thermotrain._errors import InputError
from thermotrain.training._protocol import (
    Arm,
    Protocol,
    dumps,
    flat_table,
    run_protocol,
    summarize,
    write_results,
)

__all__ = [
    "DEFAULTS",
    "DEFAULT_KEYS",
    "NONIDEALITIES",
    "STATED_BOARD_VALUES",
    "NonIdeality",
    "attribution_arms",
    "board_profile",
    "ideal_profile",
    "paired_loss",
    "parse_nonidealities",
    "run_attribution",
    "same_device",
    "set_fields",
]

#: The experiment's defaults (a ``--flag`` overrides each): Fashion-MNIST subset, epochs, seeds.
DEFAULTS = {"dataset": "fashion-mnist", "subset": 10_000, "epochs": 1, "seeds": 5}

#: The analog-time non-ideality's ideal: a readout target error of 1e-3 (100× below the board's usual 0.1,
#: ~10⁴× the analog time) with the cap on the auto analog time lifted (τ).
IDEAL_TARGET_ERROR = 1e-3
IDEAL_MAX_ANALOG_TIME = 1e12
#: The ideal device's covariance-readout noise level (V²): what the ideal backend uses
#: (:func:`thermotrain.models.plan_context`).
IDEAL_KAPPA0 = 1e-2


@dataclass(frozen=True)
class NonIdeality:
    """One non-ideality: the profile fields it consists of (dotted paths: ``"adc_bits"``,
    ``"component_stats.tolerance"``, ``"fitted.drift_scale"``, ``"readout.target_error"``) and their ideal
    values; ``key`` names it in results.json and file names, ``label`` in tables and plots."""

    key: str
    label: str
    fields: tuple[str, ...]
    ideal: tuple[Any, ...]
    description: str


NONIDEALITIES: tuple[NonIdeality, ...] = (
    NonIdeality(
        "coupling_bits",
        "coupling bits",
        ("component_stats.coupling_bits",),
        (None,),
        "magnitude bits of each coupling DAC (None: continuous)",
    ),
    NonIdeality("adc_bits", "ADC bits", ("adc_bits",), (None,), "readout ADC bits over ±output_full_scale_v"),
    NonIdeality(
        "tolerance",
        "tolerance",
        ("component_stats.tolerance", "component_stats.capacitor_tolerance"),
        (0.0, 0.0),
        "relative σ of the coupling resistors and the integration capacitors (drawn per device)",
    ),
    NonIdeality(
        "noise_level",
        "noise level κ0",
        ("kappa0", "fitted.noise_scale"),
        (IDEAL_KAPPA0, 1.0),
        "device noise κ0 (V²) and the calibrated noise scale s (the device's noise is κ0·s; the readout "
        "divides by κ0)",
    ),
    NonIdeality(
        "analog_time",
        "analog time",
        ("readout.target_error", "readout.max_analog_time"),
        (IDEAL_TARGET_ERROR, IDEAL_MAX_ANALOG_TIME),
        "the readout's target error, which sets the auto analog time per device call, and its cap (τ)",
    ),
    NonIdeality(
        "drift_mismatch",
        "drift mismatch",
        ("fitted.drift_scale", "fitted.diag_shift"),
        (1.0, 0.0),
        "calibrated drift scale f and diagonal shift δ of the surrogate",
    ),
    NonIdeality(
        "opamp_gain",
        "op-amp gain",
        ("component_stats.opamp_gain",),
        (None,),
        "open-loop DC gain A0 of the integrators' op-amps (None: infinite)",
    ),
    NonIdeality(
        "opamp_gbw",
        "op-amp GBW",
        ("component_stats.opamp_gbw_hz",),
        (None,),
        "op-amp gain-bandwidth product (Hz; None: infinite)",
    ),
    NonIdeality(
        "opamp_offset",
        "op-amp offsets",
        ("component_stats.opamp_offset_v",),
        (0.0,),
        "σ of each op-amp's input offset voltage (V), drawn per device",
    ),
    NonIdeality(
        "noise_gain",
        "generator gain",
        ("component_stats.noise_gain_mismatch",),
        (0.0,),
        "relative σ of each noise-generator channel's gain, drawn per device",
    ),
)
_BY_KEY = {x.key: x for x in NONIDEALITIES}
#: The non-idealities attributed by default: all of them (the covariance readout's law draws the mean path
#: of the offsets' constant drive, so a device with offsets costs no more to simulate than one without).
DEFAULT_KEYS: tuple[str, ...] = tuple(_BY_KEY)


def parse_nonidealities(value: Any) -> list[str]:
    """The non-idealities named by ``value`` (``"coupling_bits,adc_bits"``, ``"all"`` or a sequence of
    keys), in :data:`NONIDEALITIES` order, no repeats.

    Raises:
        InputError: empty or an unknown name (naming it and the known ones).
    """
    flag = "--nonidealities"
    if isinstance(value, str):
        items = comma_items(flag, value, "coupling_bits,adc_bits")
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        items = list(value)
    else:
        raise InputError(f"{flag}={value!r} must be comma-separated names, e.g. coupling_bits,adc_bits.")
    if items == ["all"]:
        items = list(_BY_KEY)
    unknown = [k for k in items if k not in _BY_KEY]
    if unknown or not items:
        what = f"unknown name(s) {', '.join(map(repr, unknown))}" if unknown else "no name"
        raise InputError(f"{flag}={value!r}: {what}; choose from {', '.join(_BY_KEY)} (or all).")
    twice = next((k for i, k in enumerate(items) if k in items[:i]), None)
    if twice is not None:
        raise InputError(f"{flag}={value!r}: {twice!r} is named twice; name each non-ideality once.")
    return [k for k in _BY_KEY if k in items]


#: Board values used where the starting profile leaves a non-ideality at its ideal value (stated, not
#: calibrated): a 12-bit ADC, the 10 MHz GBW precision op-amp class, 1 mV σ offsets and 1 % generator
#: channel mismatch of issue 9's board.
STATED_BOARD_VALUES: dict[str, tuple[Any, ...]] = {
    "adc_bits": (12,),
    "opamp_gbw": (10e6,),
    "opamp_offset": (1e-3,),
    "noise_gain": (0.01,),
}

DIGITAL = "kfac (digital)"
IDEAL = "ideal device"
FULL = "full board"
SHIPPED = "profile as shipped"


# ------------------------------------------------------------------------------------------ profiles


def get_field(profile: Any, path: str) -> Any:
    """The value of a dotted profile field (``"fitted.drift_scale"``; ``readout.*`` of the profile's readout,
    or of the defaults when it has none)."""
    from thermotrain.models import ReadoutConfig

    head, _, tail = path.partition(".")
    if not tail:
        return getattr(profile, head)
    if head == "readout":
        return getattr(profile.readout or ReadoutConfig(), tail)
    return getattr(profile, head)[tail]


def adc_over_range(profile: Any, bits: int, multiple: float) -> tuple[str, Any]:
    """(label, profile): ``profile`` with a ``bits``-bit ADC whose range (a gain stage before it,
    ``component_stats.adc_full_scale_v``) is ``multiple`` × its signal scale sqrt(κ0·noise_scale), rounded to
    3 significant digits."""
    fs = float(f"{multiple * profile.signal_scale_v:.3g}")
    label = f"ADC {bits} bit over ±{fs:g} V ({multiple:g} σ0)"
    return label, set_fields(profile, {"adc_bits": bits, "component_stats.adc_full_scale_v": fs})


def set_fields(profile: Any, values: Mapping[str, Any]) -> Any:
    """A copy of ``profile`` (a :class:`~thermotrain.models.HardwareProfile`) with the dotted fields of
    ``values`` replaced (``dataclasses.replace``; the profile's own checks run on the copy)."""
    from thermotrain.models import ReadoutConfig

    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        head, _, tail = path.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            top[head] = value
    for head, changes in nested.items():
        if head == "readout":
            top["readout"] = dataclasses.replace(profile.readout or ReadoutConfig(), **changes)
        else:
            top[head] = {**getattr(profile, head), **changes}
    return dataclasses.replace(profile, **top)


def _values(profile: Any, x: NonIdeality) -> tuple[Any, ...]:
    return tuple(get_field(profile, f) for f in x.fields)


def _is_ideal(profile: Any, x: NonIdeality) -> bool:
    return _values(profile, x) == tuple(x.ideal)


def board_profile(start: Any, keys: Sequence[str] | None = None) -> tuple[Any, dict[str, dict[str, Any]]]:
    """(the full board, what was added): ``start`` with the :data:`STATED_BOARD_VALUES` of every
    non-ideality of ``keys`` (default: all) it leaves at the ideal value; the second item maps each added
    field to its value."""
    added: dict[str, dict[str, Any]] = {}
    changes: dict[str, Any] = {}
    for x in NONIDEALITIES:
        if keys is not None and x.key not in keys:
            continue
        if x.key in STATED_BOARD_VALUES and _is_ideal(start, x):
            values = dict(zip(x.fields, STATED_BOARD_VALUES[x.key], strict=True))
            changes.update(values)
            added[x.key] = values
    return set_fields(start, changes), added


def ideal_profile(full: Any, keys: Sequence[str] | None = None) -> Any:
    """``full`` with the non-idealities ``keys`` (default: all of them) at their ideal values."""
    chosen = [_BY_KEY[k] for k in (keys if keys is not None else _BY_KEY)]
    return set_fields(full, {f: v for x in chosen for f, v in zip(x.fields, x.ideal, strict=True)})


def with_board(profile: Any, full: Any, key: str) -> Any:
    """``profile`` with non-ideality ``key`` at the full board's values."""
    x = _BY_KEY[key]
    return set_fields(profile, {f: get_field(full, f) for f in x.fields})


def _test_matrix(n: int = 12) -> torch.Tensor:
    """A fixed SPD test matrix (eigenvalues 1e-2 … 1, seeded) for :func:`same_device`."""
    g = torch.Generator().manual_seed(2024)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.logspace(-2, 0, n, dtype=torch.float64)) @ q.T


def device_fingerprint(profile: Any) -> tuple[Any, ...]:
    """Everything of ``profile`` that reaches a K-FAC device call: the device it builds for a fixed test
    matrix (drift, diffusion, input, loaded matrix, readout chain, κ0), the readout configuration and plan
    context (κ0, ADC interval, target error), and the chip."""
    from thermotrain.models import ReadoutConfig
    from thermotrain.models._linalg import plan_context

    inst = profile.instantiate(_test_matrix())
    adc = getattr(inst.readout, "adc", None)
    readout = profile.readout or ReadoutConfig()
    return (
        inst.sde.M,
        inst.sde.D,
        inst.sde.u,
        inst.A_loaded,
        inst.kappa0,
        None if adc is None else float(adc.step),
        float(getattr(inst.readout, "saturation", math.nan)),
        float(getattr(inst.readout, "offset", 0.0)),
        readout,
        plan_context(profile, readout),
        profile.chip,
    )


def same_device(a: Any, b: Any) -> bool:
    """True when profiles ``a`` and ``b`` build the same K-FAC device (:func:`device_fingerprint`)."""
    fa, fb = device_fingerprint(a), device_fingerprint(b)
    for x, y in zip(fa, fb, strict=True):
        if isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and x.shape == y.shape and torch.equal(x, y)):
                return False
        elif x != y and not (isinstance(x, float) and math.isnan(x) and math.isnan(y)):
            return False
    return True


# ------------------------------------------------------------------------------------------ arms


@dataclass(frozen=True)
class Variant:
    """One device row: its label, the profile, its file name under ``OUT/profiles/`` and, for a one-off /
    one-on row, the non-ideality and direction."""

    label: str
    profile: Any
    file: str
    key: str | None = None
    direction: str | None = None  # "off" (full − X) or "on" (ideal + X)


def attribution_variants(
    start: Any, keys: Sequence[str] | None = None
) -> tuple[list[Variant], dict[str, dict[str, Any]], dict[str, bool]]:
    """(the device rows, what was added to ``start``, per non-ideality whether the surrogate models it).

    Rows: the ideal device, the full board, ``start`` as shipped (only when something was added), then per
    modelled non-ideality "full − X" and "ideal + X". ``keys`` limits the non-idealities (default all)."""
    keys = parse_nonidealities(keys if keys is not None else DEFAULT_KEYS)
    full, added = board_profile(start, keys)
    ideal = ideal_profile(full)
    rows = [Variant(IDEAL, ideal, "ideal.json"), Variant(FULL, full, "full.json")]
    modelled: dict[str, bool] = {}
    for key in keys:
        label = _BY_KEY[key].label
        off, on = ideal_profile(full, [key]), with_board(ideal, full, key)
        live = not (same_device(off, full) and same_device(on, ideal))
        modelled[key] = live
        if live:
            rows.append(Variant(f"full - {label}", off, f"off-{key}.json", key, "off"))
            rows.append(Variant(f"ideal + {label}", on, f"on-{key}.json", key, "on"))
    if added and not any(same_device(start, v.profile) for v in rows):
        rows.insert(2, Variant(SHIPPED, start, "shipped.json"))
    return rows, added, modelled


def attribution_arms(variants: Sequence[Variant], folder: Path) -> list[Arm]:
    """The protocol's arms: digital K-FAC (tuned) and one thermodynamic K-FAC arm per variant (TrainConfig's
    defaults; the variant's profile written to ``folder/FILE`` with ``save_profile``), each sharing the
    digital arm's selection."""
    from thermotrain.models import save_profile

    folder.mkdir(parents=True, exist_ok=True)
    arms = [Arm(DIGITAL, {"optimizer": "kfac"})]
    for v in variants:
        path = save_profile(v.profile, folder / v.file)
        arms.append(Arm(v.label, {"optimizer": "kfac", "backend": str(path)}, tune_with=DIGITAL))
    return arms


# ------------------------------------------------------------------------------------------ statistics


def paired_loss(runs: Mapping[str, list[dict[str, Any]]], without: str, with_: str) -> dict[str, Any]:
    """Accuracy lost: test accuracy of row ``without`` − of row ``with_`` per seed both completed, with
    :func:`~thermotrain.training._protocol.summarize` (mean, 95 % t-interval over the paired seeds)."""
    a = {s["seed"]: float(s["test_accuracy"]) for s in runs.get(without, [])}
    b = {s["seed"]: float(s["test_accuracy"]) for s in runs.get(with_, [])}
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return {"per_seed": [], "mean": None, "ci95": None, "half_width": None, "seeds": []}
    return summarize([a[s] - b[s] for s in seeds]) | {"seeds": seeds}


def _zero(seeds: Sequence[int]) -> dict[str, Any]:
    """The effect of a non-ideality the surrogate does not model: 0 by construction (no interval: nothing
    was measured)."""
    return {"per_seed": [0.0] * len(seeds), "mean": 0.0, "ci95": None, "half_width": None,
            "seeds": list(seeds), "by_construction": True}  # fmt: skip


def attribution_rows(
    keys: Sequence[str],
    full: Any,
    start: Any,
    added: Mapping[str, Any],
    modelled: Mapping[str, bool],
    runs: Mapping[str, list[dict[str, Any]]],
    seeds: Sequence[int],
    selection: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """One results.json row per non-ideality: its fields, ideal and board values (and where the board value
    comes from), whether the surrogate models it, and the accuracy lost one-off and one-on (headline:
    one-off)."""
    rows = []
    for key in keys:
        x = _BY_KEY[key]
        if modelled[key]:
            off = paired_loss(runs, f"full - {x.label}", FULL)
            on = paired_loss(runs, IDEAL, f"ideal + {x.label}")
        else:
            off = on = _zero(seeds)
        rows.append(
            {
                "label": x.label,
                "nonideality": key,
                "description": x.description,
                "settings": {
                    "fields": list(x.fields),
                    "ideal": list(x.ideal),
                    "board": list(_values(full, x)),
                    "profile": list(_values(start, x)),
                    "board_source": "stated (the profile has the ideal value)" if key in added else "profile",
                    **(
                        {}
                        if selection is None
                        else {"lr": selection.get("lr"), "damping": selection.get("damping")}
                    ),
                },
                "modelled": modelled[key],
                "note": None
                if modelled[key]
                else "the surrogate builds the same device with and without it: not trained, effect 0 by "
                "construction",
                "selected_on": (selection or {}).get("selected_on", "validation"),
                "selected_with": DIGITAL,
                "seeds": off.get("seeds", []),
                "metric": "accuracy lost one-off: accuracy(full − X) − accuracy(full), paired by seed",
                "per_seed": off["per_seed"],
                "mean": off["mean"],
                "ci95": off["ci95"],
                "metrics": {"accuracy_lost_one_off": off, "accuracy_lost_one_on": on},
            }
        )
    return rows


def table_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The report's table: per non-ideality the values and the accuracy lost (points) one-off and one-on."""

    def pts(m: Mapping[str, Any]) -> tuple[Any, Any]:
        if m["mean"] is None:
            return None, None
        ci = m["ci95"]
        return round(100 * m["mean"], 3), None if ci is None else f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"

    out = []
    for r in rows:
        s = r["settings"]
        off, on = pts(r["metrics"]["accuracy_lost_one_off"]), pts(r["metrics"]["accuracy_lost_one_on"])
        out.append(
            {
                "nonideality": r["label"],
                "ideal": _fmt(s["ideal"]),
                "board": _fmt(s["board"]) + (" (stated)" if s["board_source"].startswith("stated") else ""),
                "modelled": r["modelled"],
                "seeds": len(r["seeds"]),
                "lost_one_off_pts": off[0],
                "one_off_ci95_pts": off[1],
                "lost_one_on_pts": on[0],
                "one_on_ci95_pts": on[1],
            }
        )
    return out


def _fmt(values: Sequence[Any]) -> str:
    return ", ".join("None" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in values)


# ------------------------------------------------------------------------------------------ plot


def plot_tornado(
    rows: Sequence[Mapping[str, Any]], arms: Sequence[Mapping[str, Any]], path: Path, title: str
) -> None:
    """Left: accuracy lost per non-ideality (points; one-off and one-on bars with their 95 % t-interval as
    error bars; largest effect on top; an unmodelled one is marked). Right: test accuracy of every row."""
    from thermotrain._report import pyplot

    plt = pyplot()
    order = sorted(
        rows,
        key=lambda r: max(
            abs(r["metrics"][m]["mean"] or 0.0) for m in ("accuracy_lost_one_off", "accuracy_lost_one_on")
        ),
    )
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(11, 0.5 * max(len(order), len(arms) / 2) + 2.2), gridspec_kw={"width_ratios": [3, 2]}
    )
    y = np.arange(len(order))
    h = 0.38
    for k, (metric, name, color) in enumerate(
        (
            ("accuracy_lost_one_off", "one-off: acc(full − X) − acc(full)", "C0"),
            ("accuracy_lost_one_on", "one-on: acc(ideal) − acc(ideal + X)", "C1"),
        )
    ):
        means = [100 * (r["metrics"][metric]["mean"] or 0.0) for r in order]
        errs = [
            0.0 if r["metrics"][metric]["half_width"] is None else 100 * r["metrics"][metric]["half_width"]
            for r in order
        ]
        ax.barh(y + (h / 2 if k == 0 else -h / 2), means, h, xerr=errs, color=color, label=name, capsize=3)
    ax.set_yticks(y, [r["label"] + ("" if r["modelled"] else "\n(not in the surrogate)") for r in order])
    ax.axvline(0.0, color="k", lw=0.7)
    seeds = sorted({len(r["seeds"]) for r in order}) or [0]
    ax.set_xlabel(
        "test accuracy lost to X (points; > 0: X costs accuracy)\n"
        f"paired over {'/'.join(map(str, seeds))} seeds; bars: 95 % t-interval"
    )
    ax.legend(fontsize=7, loc="best")
    labels = [a["label"] for a in arms if a.get("mean") is not None]
    means = [100 * a["mean"] for a in arms if a.get("mean") is not None]
    errs = [
        0.0 if a["ci95"] is None else 100 * (a["ci95"][1] - a["mean"])
        for a in arms
        if a.get("mean") is not None
    ]
    yy = np.arange(len(labels))
    ax2.errorbar(means, yy, xerr=errs, fmt="o", ms=4, capsize=3, color="k")
    ax2.set_yticks(yy, labels, fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlabel("test accuracy (%; mean, 95 % t-interval)")
    ax2.grid(axis="x", lw=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# ------------------------------------------------------------------------------------------ experiment


def run_attribution(
    out: Path,
    opts: Mapping[str, Any],
    protocol: Protocol,
) -> dict[str, Any]:
    """Run the attribution into ``out`` (a fresh folder): ``out/profiles/*.json`` (every variant),
    ``out/attribution.json``, ``out/results.json``, ``out/attribution.png``; return the payload.

    ``opts``: checked experiment options (``dataset``, ``model``, ``subset``, ``profile``, ``nonidealities``; absent:
    :data:`DEFAULTS`, the shipped rc8 profile, :data:`DEFAULT_KEYS`); ``protocol``: seeds, epochs, grids."""
    from thermotrain.models import load_profile, shipped_profile_path
    from thermotrain.training._data import load_dataset
    from thermotrain.training._harness import TrainConfig

    profile_path = opts.get("profile") or str(shipped_profile_path("rc8"))
    start = load_profile(profile_path)
    keys = parse_nonidealities(opts.get("nonidealities", DEFAULT_KEYS))
    variants, added, modelled = attribution_variants(start, keys)
    full = next(v.profile for v in variants if v.label == FULL)
    twin = next((v.label for v in variants if same_device(start, v.profile)), None)
    folder = out / "profiles"
    arms = attribution_arms(variants, folder)
    dataset = opts.get("dataset", DEFAULTS["dataset"])
    subset = opts.get("subset", DEFAULTS["subset"])
    base = TrainConfig(
        dataset=dataset,
        model=opts.get("model", "mlp"),
        batch_size=64,
        progress=sys.stderr.isatty(),
        subset=subset,
    )
    data = load_dataset(dataset, subset)
    result = run_protocol(arms, base, data, protocol)
    for row in result.rows:  # the profile paths relative to OUT (the folder is renamed into place at the end)
        backend = row["settings"].get("backend")
        if backend and Path(backend).parent == folder:
            row["settings"]["backend"] = f"profiles/{Path(backend).name}"
    digital = next((r for r in result.rows if r["label"] == DIGITAL), None)
    selection = (
        None
        if digital is None
        else {
            "lr": digital["settings"].get("lr"),
            "damping": digital["settings"].get("damping"),
            "selected_on": digital["selected_on"],
        }  # fmt: skip
    )
    rows = attribution_rows(
        keys, full, start, added, modelled, result.runs, list(protocol.seed_list), selection
    )
    extra = {
        "dataset": dataset,
        "subset": subset,
        "profile": str(profile_path),
        "profile_name": start.name,
        "added_to_profile": added,
        "profile_as_shipped": f"the same device as row {twin!r} (not trained again)"
        if twin is not None and twin != SHIPPED
        else "its own row"
        if twin == SHIPPED
        else "not among the rows",
        "ideal_device": "the full board with every non-ideality below at its ideal value (same τ, chip tiles "
        "and output clip)",
        "nonidealities": {
            x.key: {
                "label": x.label,
                "fields": list(x.fields),
                "ideal": list(x.ideal),
                "description": x.description,
            }
            for x in NONIDEALITIES
            if x.key in keys
        },
        "tuning": f"lr and λ of digital K-FAC tuned on the validation split; every device row uses them "
        f"(selected_with {DIGITAL!r})",
        "accuracy_lost": "paired by seed; one-off: acc(full − X) − acc(full); one-on: acc(ideal) − acc(ideal + X); "
        "> 0: X costs accuracy; 95 % t-interval of the per-seed differences",
        "arms": result.rows,
    }
    write_results(out, "attribution", protocol, rows, result.failed, **extra)
    payload = {
        "experiment": "attribution",
        **{k: v for k, v in extra.items() if k != "arms"},
        "protocol": protocol.describe(),
        "table": table_rows(rows),
        "arms_table": flat_table(result.rows),
        "rows": rows,
        "arms": result.rows,
        "failed": dict(result.failed),
        "runs": result.runs,
    }
    from thermotrain._safeio import write_text_atomic

    write_text_atomic(out / "attribution.json", dumps(payload))
    for row in payload["table"]:
        print(json.dumps(row, default=str))
    for label, messages in result.failed.items():
        print(json.dumps({"setting": label, "failed": messages}))
    if result.runs:
        accs = {r["label"]: r["mean"] for r in result.rows}
        title = (
            f"non-ideality attribution, thermodynamic K-FAC on {start.name} ({dataset}"
            f"{'' if subset is None else f', subset {subset}'}, {protocol.epochs} epoch(s)); "
            f"full {_pct(accs.get(FULL))}, ideal {_pct(accs.get(IDEAL))}, digital {_pct(accs.get(DIGITAL))}"
        )
        plot_tornado(rows, result.rows, out / "attribution.png", title)
    payload["_diverged"] = result.diverged
    return payload


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"
