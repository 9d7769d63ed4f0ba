"""``thermotrain validate``: run an array's netlist in ngspice and compare mean, covariance, relaxation and
DC solution with what the symbolic model predicts, within the statistical error the theory states.

What each number means (all written to ``report.json``):
- covariance_rel_error: ||Sigma_spice - Sigma_model||_F / ||Sigma_model||_F, Sigma_spice pooled over runs,
  Sigma_model the exact covariance for noise sampled every NT and linearly interpolated, averaged over the
  sampling phases of the output grid (step NT/2: phases 0 and 1/2).
- covariance_rel_error_ci95: the 95% quantile of that error expected from the total observed time and the
  model's autocovariance (docs/physics.md) -- computed before looking at the data, never widened.
- mean_error_sigma: largest |mean_spice - mean_model| in standard errors (Bonferroni bound in ``thresholds``).
- dc_rel_error: operating point (noise off) against the model's DC solution, which for the ideal RC array is
  v_b A^{-1} b. None for the RLC family: its DC mean is 0 for any matrix (it samples N(0, kT C^{-1}); the
  matrix is read from the covariance, not from a DC solve).
- relaxation_rel_error: relative error of the slowest relaxation time fitted (same fit) to the noise-free
  SPICE transient and to the model's exact transient from the same initial state.
- ideal_gap (non-ideal arrays): the same quantities between the non-ideal model and the ideal array, next to
  the SPICE-vs-model errors -- how far the hardware is from the maths, against how well SPICE agrees.
- target (fidelity to the target, a second verdict separate from agreement with the model): the device's
  solution (RC: the SPICE DC operating point / voltage scale) and covariance (SPICE estimate / (kappa0 *
  matrix scale)) against the IDEAL target's A^-1 b and A^-1; ``meets_target`` when the worse of the two
  relative errors is <= ``target_tolerance`` (default 0.05; None: not judged). Sign flips of solution entries
  are counted and named. The covariance error holds a statistical part up to about its CI95.
- clipped_fraction: the fraction of output samples at which some amplifier's output-stage node sat at
  (or beyond) the op-amp's output swing (|v| >= (1 - 1e-3) swing); None without a swing. Above
  CLIP_THRESHOLD (1e-3) the run is outside the linear theory's region and the verdict FAILs with that
  reason: a clamp acting on 0.1 % of a Gaussian output's samples (at 3.29 sigma) lowers its variance by
  0.19 %, below the CI95 of any run here; more clipping biases the covariance the model predicts.
- corner: every non-ideality with its unit in the key (``circuits.corner_as_dict``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thermotrain import circuits
from thermotrain._args import check_float, check_int
from thermotrain._errors import InputError, SpiceError
from thermotrain._report import covariance_heatmaps, overlay_plot, table, trace_panels, write_json
from thermotrain._runs import SpiceRunSettings
from thermotrain.circuits import (
    ArraySpec,
    Capacitor,
    Circuit,
    Theory,
    bonferroni_z,
    linear_region,
    linear_sde,
)
from thermotrain.netlists._ngspice import (
    GRID_STEPS_PER_INTERVAL,
    GRID_STEPS_STIFF,
    SpiceJob,
    Transient,
    ngspice_version,
    run_operating_point,
    run_transient,
)
from thermotrain.netlists._profile_check import profile_lines
from thermotrain.netlists._sweep import RunFailure, run_many
from thermotrain.netlists._traces import TRACES_FILE, NoisyRuns
from thermotrain.netlists._traces import save_traces as _save_traces
from thermotrain.netlists._writer import write_netlist

log = logging.getLogger(__name__)

STEPS_PER_INTERVAL = 2  # output samples per noise interval NT (phases 0 and 1/2)
PHASES = tuple(k / STEPS_PER_INTERVAL for k in range(STEPS_PER_INTERVAL))
#: largest fraction of samples with an amplifier at its output swing before validate FAILs (module doc).
CLIP_THRESHOLD = 1e-3
#: |v| >= (1 - CLIP_MARGIN) * swing counts as at the swing limit (a clamped B source sits just below it).
CLIP_MARGIN = 1e-3
#: how the noisy runs step. File noise (the default): run_transient's "noise-grid" -- fixed trapezoidal
#: steps of NT/4 on the noise samples (NT/8 on a circuit with stiff modes: noise_grid_steps), the
#: truncation-error control lifted (the step is set by the physics: h·|λ| <= 0.05 for every cell mode at the
#: default NT). Measured on ngspice 39 against a fine run on the same netlist and noise
#: (benchmarks/spice_clock.py, 2026-12-06; numbers in docs/benchmarks.md, "SPICE clock"): covariance about as
#: close to it as ngspice's defaults get, and faster.
NOISY_RUN_STEPPING = "noise-grid"
#: ngspice options of the adaptive noisy runs (TRNOISE noise, which sets its own breakpoints): reltol 1e-2
#: (default 1e-3) removes most rejected time steps (the circuit is linear, so reltol only loosens the
#: truncation-error control; the breakpoint at every noise sample still bounds each step): 1.5x at N = 32,
#: 1.5-1.65x at N = 64 over the defaults (benchmarks/spice_scaling.py --compare-options). ``klu`` is not set:
#: ngspice 46's KLU was not faster than Sparse 1.3 on this dense crossbar here (39 ignores the flag).
NOISY_RUN_OPTIONS: dict[str, float] = {"reltol": 1e-2}


#: a drift mode with h·|λ| above this at h = NT/GRID_STEPS_PER_INTERVAL makes the circuit stiff for the noise grid
GRID_STIFF_STEP = 1.0


def noise_grid_steps(circuit: Circuit) -> int:
    """Internal steps per noise interval NT of ``circuit``'s noise-grid runs: GRID_STEPS_PER_INTERVAL (NT/4)
    when every mode of its linear SDE has h·|λ| <= GRID_STIFF_STEP there (one state per cell: the ideal
    corner, h·|λ| <= 0.05), else GRID_STEPS_STIFF (NT/8: amplifier poles, output stages, generator filters,
    which the trapezoidal rule does not damp; the measured errors are at GRID_STEPS_STIFF in _ngspice)."""
    nt = circuit.noise_interval
    rate = float(np.max(np.abs(np.linalg.eigvals(linear_sde(circuit).M))))
    return (
        GRID_STEPS_PER_INTERVAL
        if rate * nt / GRID_STEPS_PER_INTERVAL <= GRID_STIFF_STEP
        else GRID_STEPS_STIFF
    )


def noisy_run_mode(noise: str) -> tuple[str, dict[str, float]]:
    """(stepping, options) of the noisy runs for noise mode ``noise``: the noise grid for file noise, ngspice's
    adaptive stepping with NOISY_RUN_OPTIONS otherwise."""
    if noise == "file":
        return NOISY_RUN_STEPPING, {}
    return "adaptive", dict(NOISY_RUN_OPTIONS)


#: default of ``--target-tolerance``: the largest relative error of the device's solution / covariance
#: against the ideal target that still "meets the target" (see ValidationSettings).
DEFAULT_TARGET_TOLERANCE = 0.05


@dataclass(frozen=True, kw_only=True)
class ValidationSettings(SpiceRunSettings):
    """runs: independent SPICE runs (own noise seeds, >= 1); target_tolerance: the largest relative error
    (dimensionless, > 0) of the device's solution and covariance against the IDEAL target (A^-1 b, A^-1)
    for "device meets the target: yes"; None = not judged. The default 0.05 sits above the statistical part
    of the covariance error at the default run length (4 x 2500 tau: CI95 about 1-3 % at N = 8), so "no"
    means the hardware (quantization, tolerances, parasitics), not the sampling; the rest:
    :class:`SpiceRunSettings` (duration_tau 2500 τ by default)."""

    runs: int = 4
    target_tolerance: float | None = DEFAULT_TARGET_TOLERANCE

    def __post_init__(self) -> None:
        check_int("runs", self.runs, minimum=1)
        if self.target_tolerance is not None:
            check_float("target_tolerance", self.target_tolerance, minimum=0.0, strict_min=True)
        super().__post_init__()


def _relaxation_fit(t: np.ndarray, x: np.ndarray, x_inf: np.ndarray, t_slow: float) -> float:
    """Slowest relaxation time from the log-decay of ||x(t) - x_inf|| over [t_slow, 4 t_slow] (s)."""
    r = np.linalg.norm(x - x_inf, axis=1)
    m = (t >= t_slow) & (t <= 4 * t_slow) & (r > 0)
    if m.sum() < 5:
        return float("nan")
    slope = np.polyfit(t[m], np.log(r[m]), 1)[0]
    return float(-1.0 / slope) if slope < 0 else float("inf")


def _initial_voltages(circuit: Circuit, cell_values: np.ndarray) -> dict[str, float]:
    """Every node at 0 V except the cell nodes; an ESR's inner node follows its capacitor's outer node."""
    v = {n: 0.0 for n in circuit.nodes()}
    v.update({o: float(x) for o, x in zip(circuit.outputs, cell_values, strict=True)})
    for e in circuit.elements:
        if isinstance(e, Capacitor) and e.n1.endswith("_x"):
            esr = next(r for r in circuit.elements if getattr(r, "name", "") == f"{e.name}_esr")
            v[e.n1] = v.get(esr.n1, 0.0)
    return v


def _autocov(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Per-output autocovariance for lags 0..max_lag (FFT), x of shape [T, P], mean removed."""
    x = x - x.mean(axis=0)
    n = x.shape[0]
    f = np.fft.rfft(x, n=2 * n, axis=0)
    ac = np.fft.irfft(f * np.conj(f), axis=0)[: max_lag + 1] / (n - np.arange(max_lag + 1))[:, None]
    return ac


def run_seed(seed: int, index: int) -> int:
    """The noise seed of run ``index`` of a sweep with settings seed ``seed``."""
    return 1000 * seed + index + 1


def noisy_runs(
    circuit: Circuit,
    settings: SpiceRunSettings,
    *,
    burn_in: float,
    duration: float,
    runs: int | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    extra_probes: tuple[str, ...] = (),
) -> NoisyRuns:
    """Run ``runs`` (default ``settings.runs``) noisy transients of ``circuit`` (run r uses noise seed
    1000·seed + r + 1), each ``burn_in + duration`` s long on the grid NT / STEPS_PER_INTERVAL, in parallel
    on ``executor`` (or run_many's own pool of ``settings.workers`` spawned processes: rebuilt after a
    crashed worker, the interrupted runs retried once). Failed runs are reported, not raised.
    extra_probes: nodes read besides the circuit's outputs (e.g. amplifier output stages, for the clipping
    check); they are in each transient's ``values`` after the outputs, never in ``series``."""
    s = settings
    n_runs = check_int("runs", s.runs if runs is None else runs, minimum=1)
    step = circuit.noise_interval / STEPS_PER_INTERVAL
    t0 = time.perf_counter()
    # file noise: every run starts at the noise-free DC point (SpiceJob.quiet), not at the operating point
    # that holds the t = 0 noise sample as a DC current (an amplifier can start clamped there, and wound up)
    quiet = write_netlist(circuit, noise="off") if s.noise == "file" else None
    stepping, options = noisy_run_mode(s.noise)
    grid_steps = noise_grid_steps(circuit) if stepping == "noise-grid" else None
    jobs = []
    for r in range(n_runs):
        nl = write_netlist(
            circuit, noise=s.noise, seed=run_seed(s.seed, r), duration=burn_in + duration + 3 * step
        )
        # one grid step beyond burn-in + duration, so the observed span is >= duration even when rounding
        # drops the sample at exactly the end of the burn-in
        probes = (*nl.probes, *(p for p in extra_probes if p not in nl.probes)) if extra_probes else None
        jobs.append(
            SpiceJob(
                nl,
                step=step,
                stop=burn_in + duration + step,
                probes=probes,
                engine=s.engine,
                timeout=s.timeout,
                options=options,
                stepping=stepping,
                grid_steps=grid_steps or GRID_STEPS_PER_INTERVAL,
                quiet=quiet,
            )
        )
    t_netlist = time.perf_counter() - t0
    results = run_many(jobs, executor=executor, progress=progress, workers=s.workers)
    ok: list[Transient] = [r for r in results if isinstance(r, Transient)]
    failures = [
        {**dataclasses.asdict(r), "seed": run_seed(s.seed, r.index)}
        for r in results
        if isinstance(r, RunFailure)
    ]
    n_out = len(circuit.outputs)
    series = [tr.values[tr.time >= burn_in - 1e-12 * burn_in, :n_out] for tr in ok]
    return NoisyRuns(ok, series, failures, step, burn_in, t_netlist, grid_steps)


def clipped_fraction(
    transients: list[Transient], nodes: tuple[str, ...], swing: float, burn_in: float
) -> float:
    """Fraction of the post-burn-in samples (pooled over runs) at which at least one of ``nodes`` sits at
    or beyond the swing limit: |v| >= (1 - CLIP_MARGIN) * ``swing`` (V) (:func:`circuits.clipped_fraction`
    on the pooled samples)."""
    if not transients:
        return 0.0
    v = np.vstack(
        [
            tr.values[tr.time >= burn_in - 1e-12 * burn_in][:, [tr.probes.index(n) for n in nodes]]
            for tr in transients
        ]
    )
    return circuits.clipped_fraction(v, swing, margin=CLIP_MARGIN * swing) if v.size else 0.0


def clipping_reason(clipped: float, swing: float) -> str:
    """Why a run with ``clipped`` (> CLIP_THRESHOLD) of its samples at the ±``swing`` V rail is outside the
    linear theory's region, and what to do (validate's verdict, calibrate's refusal)."""
    return (
        f"clipped_fraction {clipped:.3g} > {CLIP_THRESHOLD:g} -- an amplifier output sat at its +-{swing:g} V "
        "swing, outside the linear theory's region (lower --kappa0 or the mean)"
    )


def target_fidelity(
    spec: ArraySpec,
    dc: np.ndarray | None,
    cov: np.ndarray,
    tolerance: float | None,
    covariance_ci95: float,
) -> dict[str, Any]:
    """How close the DEVICE is to the IDEAL target (not to its own model): the relative error of its
    solution (RC: the SPICE operating point ``dc`` (V) / voltage scale vs A^-1 b; None for RLC) and of its
    covariance (``cov`` (V^2) / (kappa0 * matrix scale) vs A^-1), the solution entries whose sign flipped,
    and the verdict ``meets`` (worst error <= ``tolerance``; None without a tolerance) with a ``why``."""
    sc = spec.scaling
    A_inv = np.linalg.inv(spec.target)
    cov_err = float(np.linalg.norm(cov / (sc.kappa0 * sc.matrix_scale) - A_inv) / np.linalg.norm(A_inv))
    sol_err = None
    flips: list[int] = []
    x_true = x_dev = None
    if dc is not None:
        x_true = np.linalg.solve(spec.target, spec.b_vector)
        x_dev = np.asarray(dc, dtype=np.float64) / spec.voltage_scale
        sol_err = float(np.linalg.norm(x_dev - x_true) / np.linalg.norm(x_true))
        floor = 1e-12 * np.linalg.norm(x_true)
        flips = [
            i
            for i in range(x_true.size)
            if abs(x_true[i]) > floor and np.sign(x_dev[i]) != np.sign(x_true[i])
        ]
    errors = {"covariance": cov_err} | ({"solution": sol_err} if sol_err is not None else {})
    worst = max(errors, key=lambda k: errors[k])
    meets = None if tolerance is None else bool(errors[worst] <= tolerance)
    parts = [
        f"worst relative error vs the ideal target: {worst} {errors[worst]:.3g}"
        + ("" if tolerance is None else f" {'<=' if meets else '>'} tolerance {tolerance:g}")
    ]
    others = [f"{k} {v:.3g}" for k, v in errors.items() if k != worst]
    if others:
        parts.append(", ".join(others))
    if flips:
        shown = ", ".join(f"x[{i}] = {x_dev[i]:.3g} (target {x_true[i]:.3g})" for i in flips[:4])
        parts.append(f"{len(flips)} solution sign(s) flipped: {shown}")
    if tolerance is not None and worst == "covariance" and not meets and covariance_ci95 > tolerance:
        parts.append(
            f"the run's covariance CI95 {covariance_ci95:.2g} exceeds the tolerance: run longer to tell"
        )
    return {
        "tolerance": tolerance,
        "solution_rel_error": sol_err,
        "covariance_rel_error": cov_err,
        "covariance_rel_error_ci95": covariance_ci95,
        "solution_sign_flips": flips,
        "worst": worst,
        "meets": meets,
        "why": "; ".join(parts),
    }


def target_line(report: dict[str, Any]) -> str:
    """The second verdict line: ``device meets the target: yes/no (why)``, or ``not judged``."""
    t = report.get("target")
    if not t:
        return "device meets the target: not judged"
    if t["meets"] is None:
        return f"device meets the target: not judged (no --target-tolerance; {t['why']})"
    return f"device meets the target: {'yes' if t['meets'] else 'no'} ({t['why']})"


def validate(
    spec: ArraySpec,
    settings: ValidationSettings = ValidationSettings(),
    *,
    out_dir: str | Path | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    name: str = "array",
    save_traces: bool = False,
    overwrite: bool = False,
    profile: Any = None,
    profile_label: str | None = None,
) -> dict[str, Any]:
    """Run ``spec`` in ngspice and compare with its model. Returns the report (also written to
    ``out_dir/report.json`` with PNG plots when ``out_dir`` is given; ``save_traces`` also writes the
    post-burn-in traces to ``out_dir/traces.npz`` for ``thermotrain calibrate --from out_dir``).

    ``out_dir`` is checked before any SPICE run (a file, a folder holding an earlier run without
    ``overwrite``, or an unwritable place raise :class:`OutputError`) and written atomically: a failure
    leaves nothing, and an earlier folder is replaced only when the new one is complete.
    Runs that fail (retried once after a crashed worker) are named in the report (index, seed, reason);
    the statistics use the successful runs only, and the verdict says why it fails.

    The run is outside the linear theory's region when :func:`thermotrain.circuits.linear_region` predicts
    an amplifier beyond its swing or slew rate (check ``region``, the reason its ``describe()``) or when more
    than CLIP_THRESHOLD of the samples clipped (check ``clipping``).

    ``profile`` (a :class:`thermotrain.models.HardwareProfile`, named ``profile_label`` in the report):
    also compare the SPICE covariance with the profile's prediction for this array
    (:func:`thermotrain.netlists._profile_check.compare_profile`: the instance with this netlist's drawn
    parts, and the population over the profile's tolerance draws); ``report["profile"]``,
    ``profile_covariance_rel_error`` and its ``_ci95``. It does not change ``pass`` (agreement with the
    model); the CLI's exit code includes the instance verdict."""
    from thermotrain._safeio import check_output_dir

    t_start = time.perf_counter()
    if not isinstance(settings, ValidationSettings):
        raise InputError(f"settings must be a ValidationSettings, not {type(settings).__name__}.")
    if out_dir is not None:
        check_output_dir(out_dir, overwrite=overwrite, flag="--out")
    s = settings
    t0 = time.perf_counter()
    circuit = spec.build(s.seed)
    sde = linear_sde(circuit)
    theory = Theory(sde, circuit.noise_interval)
    t_model = time.perf_counter() - t0
    tau, nt = circuit.time_constant, circuit.noise_interval
    t_slow = theory.relaxation_time
    burn = s.burn_in * t_slow
    T_run = s.duration_tau * tau
    step = nt / STEPS_PER_INTERVAL

    # ---- noisy runs ------------------------------------------------------------------------------
    swing = spec.nonideal.opamp.output_swing
    region = linear_region(circuit, spec.nonideal.opamp)
    amp_nodes = region.nodes if swing is not None else ()
    noisy = noisy_runs(
        circuit, s, burn_in=burn, duration=T_run, executor=executor, progress=progress, extra_probes=amp_nodes
    )
    ok, failures, series, t_netlist = noisy.transients, noisy.failures, noisy.series, noisy.t_netlist
    if not ok:
        raise SpiceError(f"every SPICE run of {name} failed: {describe_failures(failures)}.")
    T_total = sum(x.shape[0] * step for x in series)  # each grid sample stands for one step of observed time
    pooled_mean = np.mean(np.vstack(series), axis=0)
    per_run_cov = np.array([np.cov(x.T, bias=True).reshape(len(sde.outputs), -1) for x in series])
    cov = np.mean([((x - pooled_mean).T @ (x - pooled_mean)) / x.shape[0] for x in series], axis=0).reshape(
        per_run_cov.shape[1:]
    )
    model_cov = theory.covariance(PHASES)
    fro = np.linalg.norm(model_cov)
    budget = theory.error_budget(T_total, PHASES, seed=s.seed)
    cov_err = float(np.linalg.norm(cov - model_cov) / fro)
    mean_sigma = float(np.max(np.abs(pooled_mean - theory.mean) / budget.mean_std))
    spread = (
        float(np.sqrt(np.mean([np.linalg.norm(c - per_run_cov.mean(0)) ** 2 for c in per_run_cov])) / fro)
        if len(per_run_cov) > 1
        else None
    )

    # ---- autocovariance ----------------------------------------------------------------------------
    max_lag = int(round(3 * t_slow / step))
    lags = np.arange(max_lag + 1) * step
    emp_ac = np.mean([_autocov(x, max_lag) for x in series], axis=0)
    th_ac = np.einsum("lpp->lp", theory.autocovariance(lags, PHASES))
    ac_err = float(np.linalg.norm(emp_ac - th_ac) / np.linalg.norm(th_ac))

    # ---- DC and relaxation (noise off) ---------------------------------------------------------------
    quiet = write_netlist(circuit, noise="off")
    dc_rel = dc_target = dc = None
    if spec.family == "rc":
        dc = run_operating_point(quiet, engine=s.engine, timeout=s.timeout)
        dc_rel = float(np.linalg.norm(dc - theory.mean) / np.linalg.norm(theory.mean))
        x_target = spec.voltage_scale * np.linalg.solve(spec.target, spec.b_vector)
        dc_target = float(np.linalg.norm(dc - x_target) / np.linalg.norm(x_target))
        v0 = np.zeros(len(sde.outputs))
    else:
        sd = np.sqrt(np.diag(model_cov))
        v0 = 3 * sd * (-1.0) ** np.arange(len(sd))
    ic = _initial_voltages(circuit, v0)
    z0 = theory.initial_state(ic)
    rstep = t_slow / 100
    relax = run_transient(
        quiet,
        step=rstep,
        stop=5 * t_slow,
        initial_conditions=ic,
        engine=s.engine,
        timeout=s.timeout,
        options={"reltol": 1e-6, "abstol": 1e-15, "vntol": 1e-9},
    )
    model_relax = theory.transient_mean(relax.time, z0)
    tau_spice = _relaxation_fit(relax.time, relax.values, theory.mean, t_slow)
    tau_model = _relaxation_fit(relax.time, model_relax, theory.mean, t_slow)
    relax_err = float(abs(tau_spice - tau_model) / tau_model)
    trace_err = float(
        np.linalg.norm(relax.values - model_relax) / np.linalg.norm(model_relax - theory.mean[None, :])
    )

    # ---- the gap to the ideal array ------------------------------------------------------------------
    ideal_gap = None
    if not spec.nonideal.ideal:
        ideal_c = spec.ideal().build(s.seed)
        ith = Theory(linear_sde(ideal_c), ideal_c.noise_interval)
        icov = ith.covariance(PHASES)
        ideal_gap = {
            "covariance_rel": float(np.linalg.norm(model_cov - icov) / np.linalg.norm(icov)),
            "spice_vs_ideal_covariance_rel_error": float(np.linalg.norm(cov - icov) / np.linalg.norm(icov)),
            "mean_rel": float(np.linalg.norm(theory.mean - ith.mean) / max(np.linalg.norm(ith.mean), 1e-300))
            if spec.family == "rc"
            else None,
            "relaxation_time_rel": float(abs(t_slow - ith.relaxation_time) / ith.relaxation_time),
        }

    # ---- what the array computed, in the user's units ----------------------------------------------
    sc = spec.scaling
    A_inv_true = np.linalg.inv(spec.target)
    A_inv_est = cov / (sc.kappa0 * sc.matrix_scale)
    inverse_rel_error = float(np.linalg.norm(A_inv_est - A_inv_true) / np.linalg.norm(A_inv_true))
    z = bonferroni_z(len(sde.outputs))
    checks = {
        "covariance": cov_err <= budget.covariance_rel_error_ci95,
        "mean": mean_sigma <= z,
        "relaxation": relax_err <= 0.01,
    }
    if dc_rel is not None:
        checks["dc"] = dc_rel <= 1e-6
    clipped = None if swing is None else clipped_fraction(ok, amp_nodes, swing, burn)
    details: dict[str, str] = {}
    checks["region"] = region.ok
    details["region"] = f"outside the op-amp's linear region: {region.describe()}"
    if clipped is not None:
        checks["clipping"] = clipped <= CLIP_THRESHOLD
        details["clipping"] = clipping_reason(clipped, swing)
    target = target_fidelity(spec, dc, cov, s.target_tolerance, budget.covariance_rel_error_ci95)
    prof = None
    if profile is not None:
        from thermotrain.netlists._profile_check import compare_profile

        prof = compare_profile(
            profile, spec, circuit, cov, T_total, seed=s.seed, label=profile_label or profile.name
        )
    report: dict[str, Any] = {
        "name": name,
        "ngspice_version": ngspice_version(),
        "spice_stepping": noisy_run_mode(s.noise)[0],
        "spice_grid_steps_per_noise_interval": noisy.grid_steps,
        "preset": name,
        "family": spec.family,
        "size": spec.size,
        "runs": s.runs,
        "runs_ok": len(ok),
        "runs_failed": failures,
        "noise": s.noise,
        "seed": s.seed,
        "duration_tau": s.duration_tau,
        "total_observed_tau": T_total / tau,
        "tau_s": tau,
        "noise_interval_s": nt,
        "slowest_relaxation_tau": t_slow / tau,
        "wall_s": None,
        "timings_s": {"model": t_model, "netlists": t_netlist, "spice_runs": [tr.wall_s for tr in ok]},
        "covariance_rel_error": cov_err,
        "covariance_rel_error_ci95": budget.covariance_rel_error_ci95,
        "covariance_rel_error_expected": budget.covariance_rel_error_expected,
        "spice_spread_rel": spread,
        "mean_error_sigma": mean_sigma,
        "dc_rel_error": dc_rel,
        "dc_target_rel_error": dc_target,
        "relaxation_rel_error": relax_err,
        "relaxation_time_spice_tau": tau_spice / tau,
        "relaxation_time_model_tau": tau_model / tau,
        "relaxation_trace_rel_error": trace_err,
        "autocovariance_rel_error": ac_err,
        "inverse_rel_error": inverse_rel_error,
        "ideal_gap": ideal_gap,
        "thresholds": {
            "mean_error_sigma": z,
            "dc_rel_error": 1e-6,
            "relaxation_rel_error": 0.01,
            "clipped_fraction": CLIP_THRESHOLD,
            "target_tolerance": s.target_tolerance,
        },
        "checks": checks,
        "pass": bool(all(checks.values())) and not failures,
        "verdict": verdict(checks, failures, s.runs, details),
        "clipped_fraction": clipped,
        "output_swing_V": swing,
        "linear_region": region.to_dict() | {"ok": region.ok, "describe": region.describe()},
        "target": target,
        "meets_target": target["meets"],
        "profile": prof,
        "profile_covariance_rel_error": None if prof is None else prof["instance"]["covariance_rel_error"],
        "profile_covariance_rel_error_ci95": None
        if prof is None
        else prof["instance"]["covariance_rel_error_ci95"],
        "profile_pass": None if prof is None else prof["instance"]["pass"],
        "corner": circuits.corner_as_dict(spec.nonideal),
        "scaling": dataclasses.asdict(sc),
        "spec": spec.to_dict(),
        "nonideal": spec.nonideal.to_dict(),
        "model_mean_V": theory.mean,
        "spice_mean_V": pooled_mean,
        "model_covariance_V2": model_cov,
        "spice_covariance_V2": cov,
    }
    report["wall_s"] = time.perf_counter() - t_start
    if out_dir is not None:
        from thermotrain._safeio import output_dir, write_text_atomic

        with output_dir(out_dir, overwrite=overwrite, flag="--out") as out:
            _plots(
                out, name, series[0], step, theory, model_cov, cov, lags, emp_ac, th_ac, relax, model_relax
            )
            write_json(out / "report.json", report)
            if save_traces:  # for `thermotrain calibrate --from DIR`
                _save_traces(out / TRACES_FILE, noisy)
            write_text_atomic(out / "summary.txt", summary(report) + "\n")
            _html_report(out, report)  # last: it embeds every plot written above
    return report


def describe_failures(failures: list[dict[str, Any]]) -> str:
    """The failed runs in one line: ``run 2, seed 3: <reason>; run ...`` (runs counted from 1)."""
    return "; ".join(
        f"run {f['index'] + 1}, seed {f['seed']}: {f['message']}"
        if "seed" in f
        else f"run {f['index'] + 1}: {f['message']}"
        for f in failures
    )


def verdict(
    checks: dict[str, bool], failures: list[dict[str, Any]], runs: int, details: dict[str, str] | None = None
) -> str:
    """``PASS``, or ``FAIL: `` and every reason: the failed runs (index, seed, reason), failed checks, and
    for a failed check named in ``details`` its own reason (e.g. the clipped fraction)."""
    reasons = []
    details = details or {}
    if failures:
        reasons.append(f"{len(failures)} of {runs} runs failed ({describe_failures(failures)})")
    bad = [k for k, ok in checks.items() if not ok and k not in details]
    if bad:
        reasons.append(f"check(s) {', '.join(bad)} out of bounds")
    reasons += [details[k] for k, ok in checks.items() if not ok and k in details]
    return "PASS" if not reasons else "FAIL: " + "; ".join(reasons)


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(quantity, value, bound) rows of the report, for :func:`summary` and the HTML report."""
    r = report
    rows = [
        (
            "covariance rel. error",
            r["covariance_rel_error"],
            f"<= {r['covariance_rel_error_ci95']:.3g} (CI95)",
        ),
        ("mean error (std. errors)", r["mean_error_sigma"], f"<= {r['thresholds']['mean_error_sigma']:.3g}"),
        ("DC rel. error", r["dc_rel_error"], "<= 1e-06" if r["dc_rel_error"] is not None else "n/a (RLC)"),
        ("relaxation time rel. error", r["relaxation_rel_error"], "<= 0.01"),
        ("autocovariance rel. error", r["autocovariance_rel_error"], "(info)"),
        ("inverse rel. error (A^-1)", r["inverse_rel_error"], "(info: includes non-idealities)"),
    ]
    if r.get("clipped_fraction") is not None:
        rows.append(
            ("clipped fraction", r["clipped_fraction"], f"<= {r['thresholds']['clipped_fraction']:g}")
        )
    t = r.get("target")
    if t:
        tol = "(info)" if t["tolerance"] is None else f"<= {t['tolerance']:g} (target)"
        if t["solution_rel_error"] is not None:
            rows.append(("target: solution rel. error", t["solution_rel_error"], tol))
        rows.append(("target: covariance rel. error", t["covariance_rel_error"], tol))
    p = r.get("profile")
    if p:
        i, q = p["instance"], p["population"]
        lo, hi = q["error_vs_nominal_interval95"]
        rows += [
            (
                f"profile {p['name']}: covariance rel. error (instance)",
                i["covariance_rel_error"],
                f"<= {i['covariance_rel_error_ci95']:.3g} (CI95)",
            ),
            (
                f"profile {p['name']}: white-noise error",
                i["white_noise_rel_error"],
                "(info: colour left out)",
            ),
            (
                f"profile {p['name']}: SPICE error vs nominal",
                q["spice_error_vs_nominal"],
                f"in [{lo:.3g}, {hi:.3g}] +- CI95 (population)",
            ),
        ]
    if r["ideal_gap"]:
        g = r["ideal_gap"]
        rows += [
            ("ideal gap: covariance", g["covariance_rel"], "model vs ideal array"),
            ("ideal gap: SPICE covariance", g["spice_vs_ideal_covariance_rel_error"], "SPICE vs ideal array"),
            ("ideal gap: relaxation time", g["relaxation_time_rel"], "model vs ideal array"),
        ]
    return rows


def summary(report: dict[str, Any]) -> str:
    """The report as a table a person reads."""
    r = report
    rows = _summary_rows(r)
    head = (
        f"{r['name']}: {r['family'].upper()} array, N = {r['size']}, ngspice {r['ngspice_version']}, "
        f"{runs_text(r)} x {r['duration_tau']:g} tau ({r['noise']} noise), wall {r['wall_s']:.1f} s -> "
        f"{r.get('verdict') or ('PASS' if r['pass'] else 'FAIL')}"
    )
    failed = "".join(
        f"\nfailed: run {f['index'] + 1}"
        + (f", seed {f['seed']}" if "seed" in f else "")
        + f": {f['message']}"
        for f in r.get("runs_failed") or ()
    )
    lines = [target_line(r), *profile_lines(r)]
    return head + failed + "\n" + "\n".join(lines) + "\n" + table(rows, ("quantity", "value", "bound"))


def _html_report(out: Path, report: dict[str, Any]) -> None:
    """``out/report.html``: the verdict, the checks with their bounds, the failed runs, every plot in ``out``
    and the settings (:func:`thermotrain._html.write_html_report`)."""
    from thermotrain._html import Section, Table, kv_table, write_html_report

    r = report
    checks = kv_table({k: "pass" if ok else "FAIL" for k, ok in r["checks"].items()}, ("check", "result"))
    sections = [
        Section(
            "Checks",
            text=f"{r['family'].upper()} array, N = {r['size']}, {runs_text(r)} x {r['duration_tau']:g} tau "
            f"({r['noise']} noise), wall {r['wall_s']:.1f} s. {' '.join([target_line(r), *profile_lines(r)])}",
            tables=(Table(("quantity", "value", "bound"), tuple(_summary_rows(r))), checks),
        )
    ]
    if r.get("runs_failed"):
        sections.append(Section("Failed runs", pre=describe_failures(r["runs_failed"])))
    keys = """preset family size runs runs_ok noise seed duration_tau total_observed_tau tau_s noise_interval_s
        slowest_relaxation_tau wall_s timings_s nonideal scaling""".split()
    write_html_report(
        out,
        f"thermotrain validate: {r['name']}",
        r["verdict"],
        sections,
        settings={k: r[k] for k in keys if k in r},
        known_versions={"ngspice": r.get("ngspice_version")},
        passed=bool(r["pass"]),
    )


def runs_text(r: dict[str, Any]) -> str:
    """``4 runs``, or ``3 of 4 runs (1 failed)`` when some failed: the statistics use the successful ones."""
    failed = len(r.get("runs_failed") or ())
    if not failed:
        return f"{r['runs']} runs"
    return f"{r['runs'] - failed} of {r['runs']} runs ({failed} failed; statistics from the others)"


def _plots(out, name, x, step, theory, model_cov, cov, lags, emp_ac, th_ac, relax, model_relax) -> None:
    P = x.shape[1]
    show = list(range(min(P, 4)))
    tau_s = theory.relaxation_time
    n = min(x.shape[0], int(20 * tau_s / step))
    t = np.arange(n) * step * 1e6
    sd = np.sqrt(np.diag(model_cov))
    band = {"color": "k", "ls": "--", "lw": 0.8}
    trace_panels(
        out / "traces.png",
        f"{name}: SPICE traces with the model's mean and +-2 sigma",
        "time after burn-in (us)",
        t,
        [("SPICE V{i}", x[:n], {"lw": 0.7})],
        show,
        hlines=[
            (theory.mean, "model mean", {"color": "k", "lw": 1}),
            (theory.mean - 2 * sd, None, band),
            (theory.mean + 2 * sd, None, band),
        ],
    )

    covariance_heatmaps(
        out / "covariance.png", f"{name}: stationary covariance", model_cov, cov, ("model", "SPICE")
    )

    dashed = {"color": "k", "ls": "--", "lw": 0.8}
    overlay_plot(
        out / "autocorrelation.png",
        f"{name}: autocorrelation, SPICE (solid) vs model (dashed)",
        "lag (us)",
        "autocovariance / model variance",
        [
            c
            for i in show
            for c in (
                (lags * 1e6, emp_ac[:, i] / th_ac[0, i], {"lw": 1, "label": f"SPICE V{i}"}),
                (lags * 1e6, th_ac[:, i] / th_ac[0, i], dashed),
            )
        ],
    )
    overlay_plot(
        out / "relaxation.png",
        f"{name}: noise-free relaxation, SPICE (solid) vs model (dashed)",
        "time (us)",
        "V",
        [
            c
            for i in show
            for c in (
                (relax.time * 1e6, relax.values[:, i], {"lw": 1.2, "label": f"SPICE V{i}"}),
                (relax.time * 1e6, model_relax[:, i], dashed),
            )
        ],
    )
