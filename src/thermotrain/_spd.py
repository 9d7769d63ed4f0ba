"""The one positive-definiteness check of thermotrain, for numpy arrays and torch tensors alike.

``circuits`` (numpy targets), ``models`` (torch matrices and the loaded device matrix) and ``training``
(curvature factors) all ask the same question -- is this symmetric matrix positive definite, and if not, how
far from it is it? -- so they share :func:`smallest_eigenvalue_if_indefinite` (one Cholesky when the answer
is yes, an eigenvalue solve only on failure) and :func:`spd_cholesky` (the same, with the one-line
CircuitError naming the smallest eigenvalue and the damping that fixes it). Lives here, with no heavy
imports, because ``circuits`` may not import ``models``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from thermotrain._errors import CircuitError

__all__ = ["smallest_eigenvalue_if_indefinite", "spd_cholesky"]


def _cholesky(A: Any) -> tuple[Any, bool]:
    """(lower Cholesky factor or None, success) of a numpy array or a torch tensor."""
    if isinstance(A, np.ndarray):
        try:
            return np.linalg.cholesky(A), True
        except np.linalg.LinAlgError:
            return None, False
    import torch

    L, info = torch.linalg.cholesky_ex(A)
    return L, int(info) == 0


def _smallest_eigenvalue(A: Any) -> float:
    if isinstance(A, np.ndarray):
        return float(np.linalg.eigvalsh(A)[0])
    import torch

    return float(torch.linalg.eigvalsh(A)[0])


def smallest_eigenvalue_if_indefinite(A: Any, shift: float = 0.0) -> float | None:
    """None when the symmetric ``A`` − ``shift``·I is positive definite (one Cholesky, O(n³/3)), else the
    smallest eigenvalue of ``A`` itself (O(n³), only on failure). ``A``: numpy array or torch tensor."""
    if shift:
        eye = np.eye(A.shape[0]) if isinstance(A, np.ndarray) else _torch_eye(A)
        _, ok = _cholesky(A - shift * eye)
    else:
        _, ok = _cholesky(A)
    return None if ok else _smallest_eigenvalue(A)


def _torch_eye(A: Any) -> Any:
    import torch

    return torch.eye(A.shape[0], dtype=A.dtype, device=A.device)


def spd_cholesky(A: Any, name: str = "A", *, hint: str = "check how the matrix was built") -> Any:
    """The lower Cholesky factor of the symmetric ``A`` (numpy array or torch tensor; symmetry and
    finiteness are the caller's checks), or :class:`CircuitError` in one line: ``{name} must be symmetric
    positive definite; its smallest eigenvalue is λ. Add damping ({name} + lam·I with lam > −λ) or {hint}.``
    Cost O(n³/3), plus O(n³) on failure."""
    L, ok = _cholesky(A)
    if ok:
        return L
    lam = _smallest_eigenvalue(A)
    raise CircuitError(
        f"{name} must be symmetric positive definite; its smallest eigenvalue is {lam:.4g}. "
        f"Add damping ({name} + lam·I with lam > {max(-lam, 0.0):.3g}) or {hint}."
    )
