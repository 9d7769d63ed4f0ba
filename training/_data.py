"""Data sets that work offline: sklearn's digits (fast tests) and Fashion-MNIST from Debian's package.

Images are returned as float32 tensors of shape (n, 1, H, W), standardised with the training set's mean and
standard deviation (one scalar each); labels as int64 in [0, 10).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from thermotrain._errors import TrainingError

__all__ = ["DATASETS", "FASHION_MNIST_DIR", "Dataset", "load_dataset", "validation_split"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("digits", "fashion-mnist")


@dataclass(frozen=True)
class Dataset:
    """A classification data set held in memory.

    Attributes:
        name: ``"digits"`` or ``"fashion-mnist"``.
        x_train, x_test: images, float32 (n, 1, H, W), standardised (dimensionless).
        y_train, y_test: labels, int64 (n,).
        num_classes: number of classes (10 for both).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int = 10

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


def _read_idx(path: Path, offset: int) -> np.ndarray:
    try:
        with gzip.open(path) as fh:
            return np.frombuffer(fh.read(), np.uint8, offset=offset)
    except (OSError, EOFError) as exc:
        raise TrainingError(
            f"Cannot read {path}: {exc}. Reinstall it with `apt-get install --reinstall dataset-fashion-mnist`."
        ) from exc


def _fashion_mnist(root: Path) -> tuple[np.ndarray, ...]:
    files = {
        "xtr": "train-images-idx3-ubyte.gz",
        "ytr": "train-labels-idx1-ubyte.gz",
        "xte": "t10k-images-idx3-ubyte.gz",
        "yte": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [name for name in files.values() if not (root / name).exists()]
    if missing:
        raise TrainingError(
            f"Fashion-MNIST files {missing} not found under {root}. Install them with "
            "`sudo apt-get install dataset-fashion-mnist` (Debian), or pass the folder holding the IDX .gz files."
        )
    xtr = _read_idx(root / files["xtr"], 16).reshape(-1, 1, 28, 28)
    ytr = _read_idx(root / files["ytr"], 8)
    xte = _read_idx(root / files["xte"], 16).reshape(-1, 1, 28, 28)
    yte = _read_idx(root / files["yte"], 8)
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise TrainingError(
            f"Fashion-MNIST under {root} is truncated (image/label counts differ); reinstall it."
        )
    return xtr / np.float32(255), ytr, xte / np.float32(255), yte


def _digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None] / np.float32(16)
    y = bunch.target
    perm = np.random.default_rng(0).permutation(len(x))  # fixed split, independent of the training seed
    n_test = 360
    return x[perm[n_test:]], y[perm[n_test:]], x[perm[:n_test]], y[perm[:n_test]]


def load_dataset(name: str, subset: int | None = None, root: Path | str | None = None) -> Dataset:
    """Load ``name`` (``"digits"`` or ``"fashion-mnist"``) into memory.

    Args:
        name: data-set name.
        subset: keep only the first ``subset`` examples of a fixed shuffle of the training set and at most
            ``subset`` test examples (quick runs); ``None`` keeps everything.
        root: folder of the Fashion-MNIST IDX files (default ``/usr/share/datasets/fashion-mnist``).

    Raises:
        TrainingError: unknown name, missing or corrupt files, ``subset`` < 1.
    """
    if name == "digits":
        xtr, ytr, xte, yte = _digits()
    elif name == "fashion-mnist":
        xtr, ytr, xte, yte = _fashion_mnist(Path(root) if root is not None else FASHION_MNIST_DIR)
    else:
        raise TrainingError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")
    if subset is not None:
        if subset < 1:
            raise TrainingError(f"subset must be ≥ 1 example; got {subset}.")
        perm = np.random.default_rng(1).permutation(len(xtr))[:subset]
        xtr, ytr = xtr[perm], ytr[perm]
        xte, yte = xte[:subset], yte[:subset]
    mean, std = float(xtr.mean()), float(xtr.std()) or 1.0

    def _x(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32))

    def _y(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return Dataset(name, _x(xtr), _y(ytr), _x(xte), _y(yte))


def validation_split(data: Dataset, fraction: float = 0.2, seed: int = 123) -> Dataset:
    """The training set split into train / validation by a fixed permutation (``seed``); the validation part
    takes the place of the test set, so hyperparameters are chosen without looking at test results.

    Args:
        data: a loaded data set.
        fraction: share of the training examples held out (0 < fraction < 1).
        seed: seed of the fixed permutation (independent of training seeds).
    """
    if not (isinstance(fraction, float | int) and 0 < fraction < 1):
        raise TrainingError(f"validation fraction must be in (0, 1); got {fraction!r}.")
    n = len(data.x_train)
    n_val = max(1, round(fraction * n))
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    val, train = perm[:n_val], perm[n_val:]
    return Dataset(
        data.name + "/validation",
        data.x_train[train],
        data.y_train[train],
        data.x_train[val],
        data.y_train[val],
        data.num_classes,
    )
