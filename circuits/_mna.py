"""Modified nodal analysis: element list -> descriptor system -> linear SDE (:class:`CircuitSDE`).

Each element type's stamp is written once (``_stamp``) over an abstract scalar: sympy symbols give the
symbolic model (small arrays, hand-checkable), floats give the numeric one (any size). The descriptor
system is

    E x' = F x + B u + K xi          x: node voltages, then branch currents (inductors, sources)

with u the DC source values and xi the noise currents (white, PSD ``psd``). Reduction to a state-space
SDE uses the capacitor/inductor forest, which makes it exact and the same for sympy and numpy:

    E = T W T^T  (T: incidence of a spanning forest of capacitor branches, plus inductor unit vectors)
    z = T^T x    (forest capacitor voltages and inductor currents: the states)
    W z' = P_top (F x + B u + K xi),   0 = P_bot (F x + B u + K xi),   P = [T N]^{-1},  x = [T N]^{-T}[z; y]

The algebraic part y is eliminated (index-1 check), giving

    dz = (M z + B_z u) dt + Q dW,      x = C_z z + D_u u (+ D_xi xi, which must vanish on outputs)

Cost: O(n^3) dense in the number of MNA unknowns n (about 4-6 per cell), milliseconds at 64 cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from thermotrain._errors import CircuitError
from thermotrain.circuits._elements import (
    GROUND,
    VCCS,
    VCVS,
    Capacitor,
    Circuit,
    CurrentSource,
    Element,
    Inductor,
    Resistor,
    VoltageSource,
)


@dataclass(frozen=True)
class DescriptorSystem:
    """E x' = F x + B u + K xi. Matrices are numpy arrays or sympy Matrices (same code path)."""

    E: Any
    F: Any
    B: Any
    K: Any
    unknowns: tuple[str, ...]
    inputs: tuple[str, ...]
    noises: tuple[str, ...]
    psd: Any  # per-noise two-sided PSD, A^2/Hz (vector)
    n_nodes: int


@dataclass(frozen=True)
class CircuitSDE:
    """A circuit's state-space SDE from MNA (numpy, SI units, named states/outputs/noise sources; the torch
    surrogate in units of τ is :class:`thermotrain.models.LinearSDE`):
    dz = (M z + B_z u) dt + Q dW (Q = K_z diag(sqrt(psd))); node voltages of ``outputs`` = C z + D u.

    Units: z in V (capacitor voltages) and A (inductor currents), time in s, u in V. ``K_z`` maps unit
    white noise currents to the state (so the sampled-noise theory can use the per-source PSDs).
    """

    M: np.ndarray
    B_z: np.ndarray
    u: np.ndarray
    K_z: np.ndarray
    psd: np.ndarray
    C: np.ndarray
    D: np.ndarray
    states: tuple[str, ...]
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]
    noises: tuple[str, ...]
    state_nodes: tuple[tuple[str, str], ...]  # per state: (n1, n2) of its capacitor, or (inductor name, "")

    @property
    def Q(self) -> np.ndarray:
        return self.K_z * np.sqrt(self.psd)[None, :]

    @property
    def D_noise(self) -> np.ndarray:  # state diffusion QQ^T
        return (self.K_z * self.psd[None, :]) @ self.K_z.T

    @property
    def drift_offset(self) -> np.ndarray:
        return self.B_z @ self.u


def _value(e: Element, symbolic: bool) -> Any:
    """The element's value as a sympy symbol or a float. Gains enter as their reciprocal (0 = ideal)."""
    if isinstance(e, Resistor):
        return sp.Symbol(e.name, positive=True) if symbolic else e.ohms
    if isinstance(e, Capacitor):
        return sp.Symbol(e.name, positive=True) if symbolic else e.farads
    if isinstance(e, Inductor):
        return sp.Symbol(e.name, positive=True) if symbolic else e.henries
    if isinstance(e, VCVS):
        if math.isinf(e.gain):
            return 0
        return 1 / sp.Symbol(e.name, nonzero=True) if symbolic else 1.0 / e.gain
    if isinstance(e, VoltageSource):
        return sp.Symbol(e.name) if symbolic else e.volts
    if isinstance(e, CurrentSource):
        return sp.Symbol(e.name) if symbolic else e.amps
    if isinstance(e, VCCS):
        return sp.Symbol(e.name, nonzero=True) if symbolic else e.gm
    raise TypeError(e)


def dc_inputs(circuit: Circuit) -> list[VoltageSource | CurrentSource]:
    """The DC sources in element order: the input vector u (V for voltage sources, A for current ones)."""
    return [e for e in circuit.elements if isinstance(e, VoltageSource | CurrentSource)]


def input_values(circuit: Circuit) -> np.ndarray:
    """u: each DC source's value (V or A), in :func:`dc_inputs` order."""
    return np.array(
        [e.volts if isinstance(e, VoltageSource) else e.amps for e in dc_inputs(circuit)], dtype=float
    )


def descriptor_system(circuit: Circuit, *, symbolic: bool = False) -> DescriptorSystem:
    """Stamp every element into E, F, B, K (sympy with one symbol per element value if ``symbolic``)."""
    nodes = circuit.nodes()
    branches = [e for e in circuit.elements if isinstance(e, Inductor | VCVS | VoltageSource)]
    unknowns = tuple(nodes) + tuple(f"I({e.name})" for e in branches)
    index = {n: i for i, n in enumerate(nodes)}
    bidx = {e.name: len(nodes) + k for k, e in enumerate(branches)}
    sources = dc_inputs(circuit)
    noises = circuit.noise_sources()
    n, m, q = len(unknowns), len(sources), len(noises)
    if symbolic:
        E, F, B, K = (sp.zeros(n, n), sp.zeros(n, n), sp.zeros(n, max(m, 0)), sp.zeros(n, q))
    else:
        E, F, B, K = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, m)), np.zeros((n, q))

    def add(Mat: Any, r: str | int, c: str | int, v: Any) -> None:
        ri = r if isinstance(r, int) else index.get(r)
        ci = c if isinstance(c, int) else index.get(c)
        if ri is None or ci is None:  # ground row/column is dropped
            return
        Mat[ri, ci] += v

    for e in circuit.elements:
        if isinstance(e, Resistor):
            g = 1 / _value(e, symbolic)
            for a, b_, s in ((e.n1, e.n1, -1), (e.n1, e.n2, 1), (e.n2, e.n1, 1), (e.n2, e.n2, -1)):
                add(F, a, b_, s * g)
        elif isinstance(e, Capacitor):
            c = _value(e, symbolic)
            for a, b_, s in ((e.n1, e.n1, 1), (e.n1, e.n2, -1), (e.n2, e.n1, -1), (e.n2, e.n2, 1)):
                add(E, a, b_, s * c)
        elif isinstance(e, Inductor):
            k = bidx[e.name]
            add(F, e.n1, k, -1)
            add(F, e.n2, k, 1)
            E[k, k] += _value(e, symbolic)
            add(F, k, e.n1, 1)
            add(F, k, e.n2, -1)
        elif isinstance(e, VoltageSource):
            k = bidx[e.name]
            add(F, e.n_p, k, -1)
            add(F, e.n_n, k, 1)
            add(F, k, e.n_p, 1)
            add(F, k, e.n_n, -1)
            B[k, sources.index(e)] = -1
        elif isinstance(e, CurrentSource):  # from n_p through the source into n_n
            col = sources.index(e)
            add(B, e.n_n, col, 1)
            add(B, e.n_p, col, -1)
        elif isinstance(e, VCCS):  # gm (V(c_p) - V(c_n)) from n_p through the source into n_n
            gm = _value(e, symbolic)
            for r, sr in ((e.n_n, 1), (e.n_p, -1)):
                add(F, r, e.c_p, sr * gm)
                add(F, r, e.c_n, -sr * gm)
        elif isinstance(e, VCVS):
            k = bidx[e.name]
            inv_gain = _value(e, symbolic)
            add(F, e.out_p, k, -1)
            add(F, e.out_n, k, 1)
            add(F, k, e.out_p, inv_gain)
            add(F, k, e.out_n, -inv_gain)
            add(F, k, e.in_p, -1)
            add(F, k, e.in_n, 1)
    for j, s in enumerate(noises):  # current from n_p through the source into n_n
        add(K, s.n_n, j, 1)
        add(K, s.n_p, j, -1)
    if symbolic:
        psd = sp.Matrix([sp.Symbol(f"S_{s.name}", nonnegative=True) for s in noises])
        u_names = tuple(s.name for s in sources)
    else:
        psd = np.array([s.psd for s in noises], dtype=float)
        u_names = tuple(s.name for s in sources)
    return DescriptorSystem(E, F, B, K, unknowns, u_names, tuple(s.name for s in noises), psd, len(nodes))


def _incidence(branches: list, index: dict[str, int], n: int) -> np.ndarray:
    """[n, len(branches)] node-branch incidence: +1 at each branch's n1, -1 at its n2 (ground has no row)."""
    A = np.zeros((n, len(branches)))
    for k, c in enumerate(branches):
        if c.n1 != GROUND:
            A[index[c.n1], k] += 1
        if c.n2 != GROUND:
            A[index[c.n2], k] -= 1
    return A


def _dynamic_forest(circuit: Circuit, ds: DescriptorSystem) -> tuple[np.ndarray, list, list[int], list]:
    """T (n x k, integer), forest element list, pivot unknown per column, and for every capacitor the
    coefficient vector alpha with a_cap = T alpha (forest caps: unit vectors; loop caps: +-1 paths)."""
    n, nn = len(ds.unknowns), ds.n_nodes
    index = {u: i for i, u in enumerate(ds.unknowns[:nn])}
    caps = [e for e in circuit.elements if isinstance(e, Capacitor)]
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    forest, loops = [], []
    adj: dict[str, list[tuple[str, int]]] = {}
    for c in caps:
        ra, rb = find(c.n1), find(c.n2)
        if ra == rb:
            loops.append(c)
            continue
        parent[ra] = rb
        adj.setdefault(c.n1, []).append((c.n2, len(forest)))
        adj.setdefault(c.n2, []).append((c.n1, len(forest)))
        forest.append(c)

    # Root each tree at ground when it contains ground; BFS gives each branch a child (pivot) node.
    pivots: list[int | None] = [None] * len(forest)
    visited: set[str] = set()
    roots = [GROUND] + [v for v in adj if v != GROUND]
    for r in roots:
        if r in visited or r not in adj:
            continue
        visited.add(r)
        queue = [r]
        while queue:
            v = queue.pop(0)
            for w, k in adj[v]:
                if w not in visited:
                    visited.add(w)
                    pivots[k] = index[w]
                    queue.append(w)
    T = _incidence(forest, index, n)
    inds = [e for e in circuit.elements if isinstance(e, Inductor)]
    cols = [T]
    for e in inds:
        col = np.zeros((n, 1))
        col[ds.unknowns.index(f"I({e.name})"), 0] = 1
        cols.append(col)
        pivots.append(ds.unknowns.index(f"I({e.name})"))
    T = np.hstack(cols)
    # every capacitor's incidence a_c = T_f alpha_c; the pivot rows of T_f are square and triangular
    Acap = _incidence(caps, index, n)
    kf = len(forest)
    piv_f = pivots[:kf]
    alphas = np.rint(np.linalg.solve(T[piv_f, :kf], Acap[piv_f])) if kf else np.zeros((0, len(caps)))
    if kf and not np.allclose(T[:, :kf] @ alphas, Acap):
        raise CircuitError("internal: capacitor loop decomposition failed")
    return T, forest + inds, [int(p) for p in pivots], list(zip(caps, alphas.T, strict=True))


def reduce_to_sde(circuit: Circuit, *, symbolic: bool = False) -> tuple[Any, ...]:
    """Return (M, B_z, K_z, C, D, D_xi, states, state_nodes) of the reduced system (see module docstring).

    Raises CircuitError if the circuit is not index-1 (a floating node, a loop of ideal sources, a node
    with noise but neither capacitance nor a resistive path)."""
    ds = descriptor_system(circuit, symbolic=symbolic)
    T, dyn, pivots, cap_alpha = _dynamic_forest(circuit, ds)
    n, k = T.shape
    if k == 0:
        raise CircuitError(f"circuit {circuit.title!r} has no capacitor or inductor: nothing to integrate.")
    kc = sum(isinstance(e, Capacitor) for e in dyn)
    # W (k x k): capacitances in forest coordinates plus inductances.
    if symbolic:
        W = sp.zeros(k, k)
    else:
        W = np.zeros((k, k))
    for c, alpha in cap_alpha:
        val = _value(c, symbolic)
        for i in np.nonzero(alpha)[0]:
            for j in np.nonzero(alpha)[0]:
                W[int(i), int(j)] += int(alpha[i] * alpha[j]) * val
    for j, e in enumerate(dyn[kc:]):
        W[kc + j, kc + j] += _value(e, symbolic)
    pivot_set = set(pivots)
    others = [i for i in range(n) if i not in pivot_set]
    N = np.zeros((n, len(others)))
    for j, i in enumerate(others):
        N[i, j] = 1
    S = np.hstack([T, N])
    P = np.linalg.inv(S)
    R = P.T  # x = R [z; y]
    if symbolic:
        Pm, Rm = sp.Matrix(np.rint(P).astype(int)), sp.Matrix(np.rint(R).astype(int))
        if not np.allclose(np.rint(P), P):
            raise CircuitError("internal: forest transform is not unimodular")
        Ft, Bt, Kt = Pm * ds.F * Rm, Pm * ds.B, Pm * ds.K
        inv: Callable = lambda X: X.inv()  # noqa: E731
    else:
        Pm, Rm = P, R
        Ft, Bt, Kt = P @ ds.F @ R, P @ ds.B, P @ ds.K
        inv = np.linalg.inv
    F11, F12, F21, F22 = Ft[:k, :k], Ft[:k, k:], Ft[k:, :k], Ft[k:, k:]
    if n > k:
        if not symbolic and np.linalg.cond(F22) > 1e14:
            raise CircuitError(
                f"circuit {circuit.title!r} is singular after eliminating its algebraic nodes "
                "(a floating node, a loop of ideal sources/op-amps, or a node reached only through "
                "capacitors and current sources). Add a DC path or check the topology."
            )
        F22i = inv(F22)
        Ared = F11 - F12 @ F22i @ F21 if not symbolic else F11 - F12 * F22i * F21
        Bred = Bt[:k, :] - (F12 @ F22i @ Bt[k:, :] if not symbolic else F12 * F22i * Bt[k:, :])
        Kred = Kt[:k, :] - (F12 @ F22i @ Kt[k:, :] if not symbolic else F12 * F22i * Kt[k:, :])
        # outputs x = R [z; y], y = -F22^{-1}(F21 z + B2 u + K2 xi)
        Ry = Rm[:, k:]
        if symbolic:
            C = Rm[:, :k] - Ry * F22i * F21
            D = -Ry * F22i * Bt[k:, :]
            Dxi = -Ry * F22i * Kt[k:, :]
        else:
            C = Rm[:, :k] - Ry @ F22i @ F21
            D = -Ry @ F22i @ Bt[k:, :]
            Dxi = -Ry @ F22i @ Kt[k:, :]
    else:
        Ared, Bred, Kred = F11, Bt, Kt
        C = Rm
        D = sp.zeros(n, Bt.shape[1]) if symbolic else np.zeros((n, Bt.shape[1]))
        Dxi = sp.zeros(n, Kt.shape[1]) if symbolic else np.zeros((n, Kt.shape[1]))
    Wi = inv(W)
    if symbolic:
        M, Bz, Kz = sp.simplify(Wi * Ared), sp.simplify(Wi * Bred), sp.simplify(Wi * Kred)
    else:
        M, Bz, Kz = Wi @ Ared, Wi @ Bred, Wi @ Kred
    states = tuple(f"V({e.n1},{e.n2})" if isinstance(e, Capacitor) else f"I({e.name})" for e in dyn)
    state_nodes = tuple((e.n1, e.n2) if isinstance(e, Capacitor) else (e.name, "") for e in dyn)
    return ds, M, Bz, Kz, C, D, Dxi, states, state_nodes


def linear_sde(circuit: Circuit) -> CircuitSDE:
    """Numeric reduced model of ``circuit`` with the node voltages of ``circuit.outputs`` as outputs."""
    ds, M, Bz, Kz, C, D, Dxi, states, state_nodes = reduce_to_sde(circuit, symbolic=False)
    rows = [ds.unknowns.index(o) for o in circuit.outputs]
    leak = np.abs(Dxi[rows]).max() if Dxi.size else 0.0
    if leak > 0:
        bad = [circuit.outputs[i] for i in range(len(rows)) if np.abs(Dxi[rows[i]]).max() > 0]
        raise CircuitError(
            f"outputs {bad} see white noise directly (no capacitance on a noisy node): their variance would "
            "be infinite. Add parasitic capacitance (NonIdealities.parasitic_capacitance) or move the source."
        )
    u = input_values(circuit)
    return CircuitSDE(
        M=np.asarray(M, float),
        B_z=np.asarray(Bz, float).reshape(len(states), len(u)),
        u=u,
        K_z=np.asarray(Kz, float),
        psd=np.asarray(ds.psd, float),
        C=np.asarray(C[rows], float),
        D=np.asarray(D[rows], float).reshape(len(rows), len(u)),
        states=states,
        outputs=circuit.outputs,
        inputs=ds.inputs,
        noises=ds.noises,
        state_nodes=state_nodes,
    )


@dataclass(frozen=True)
class SymbolicModel:
    """The reduced model with element values as sympy symbols (use for small circuits: the algebra is
    exact, e.g. kT/C falls out of the Lyapunov equation). ``numeric()`` lambdifies once."""

    M: sp.Matrix
    B_z: sp.Matrix
    K_z: sp.Matrix
    C: sp.Matrix
    D: sp.Matrix
    psd: sp.Matrix
    symbols: tuple[sp.Symbol, ...]
    states: tuple[str, ...]
    outputs: tuple[str, ...]

    def numeric(self) -> Callable[..., tuple[np.ndarray, ...]]:
        """f(*values in ``symbols`` order) -> (M, B_z, K_z, C, D, psd) as numpy arrays."""
        return sp.lambdify(self.symbols, (self.M, self.B_z, self.K_z, self.C, self.D, self.psd), "numpy")

    def stationary_covariance(self, subs: dict | None = None) -> sp.Matrix:
        """Output covariance C Sigma C^T with M Sigma + Sigma M^T + K diag(psd) K^T = 0, solved exactly.
        ``subs`` (symbol -> exact value, e.g. sympy Rationals) is applied first: much faster for N > 1."""
        k = self.M.shape[0]
        sig = sp.Matrix(k, k, lambda i, j: sp.Symbol(f"s_{min(i, j)}_{max(i, j)}"))
        subs = subs or {}
        DD = (self.K_z * sp.diag(*self.psd) * self.K_z.T).subs(subs)
        M = self.M.subs(subs)
        eqs = M * sig + sig * M.T + DD
        unknowns = sorted(sig.free_symbols - set(self.symbols) - set(self.psd), key=str)
        sol = sp.solve([eqs[i, j] for i in range(k) for j in range(i, k)], unknowns, dict=True)
        if not sol:
            raise CircuitError("no stationary covariance: the symbolic drift is not stable")
        return sp.simplify(self.C.subs(subs) * sig.subs(sol[0]) * self.C.T.subs(subs))


def symbolic_model(circuit: Circuit) -> SymbolicModel:
    """Sympy model of a small circuit (every element value a symbol; ideal op-amps exact)."""
    ds, M, Bz, Kz, C, D, _Dxi, states, _ = reduce_to_sde(circuit, symbolic=True)
    rows = [ds.unknowns.index(o) for o in circuit.outputs]
    C = sp.Matrix(C)[rows, :]
    D = sp.Matrix(D)[rows, :] if D.shape[1] else sp.zeros(len(rows), 0)
    syms = set()
    for X in (M, Bz, Kz, C, D):
        syms |= X.free_symbols
    symbols = tuple(sorted(syms | set(ds.psd), key=str))
    return SymbolicModel(M, Bz, Kz, C, D, ds.psd, symbols, states, circuit.outputs)
