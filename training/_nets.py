"""The networks: an MLP and the small CNN of the TNGD paper (one convolution + two dense layers)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from thermotrain._errors import TrainingError

__all__ = ["MODELS", "build_model", "cnn", "mlp"]

MODELS = ("mlp", "cnn")


def mlp(in_features: int, hidden: Sequence[int], num_classes: int = 10) -> nn.Sequential:
    """Flatten → [Linear → ReLU] × len(hidden) → Linear. Parameters: Σ (d_in+1)·d_out."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def cnn(image_shape: tuple[int, int, int], channels: int, kernel: int, hidden: int, num_classes: int = 10):
    """Conv2d(c, channels, kernel) → ReLU → MaxPool(2) → Flatten → Linear(·, hidden) → ReLU → Linear(hidden, classes).

    With (1, 28, 28), channels 32, kernel 5, hidden 128 this is the TNGD paper's CNN (4608 → 128 → 10).
    """
    c, h, w = image_shape
    oh, ow = (h - kernel + 1) // 2, (w - kernel + 1) // 2
    if oh < 1 or ow < 1:
        raise TrainingError(
            f"Images of {h}x{w} are too small for a {kernel}x{kernel} convolution + 2x2 pooling."
        )
    return nn.Sequential(
        nn.Conv2d(c, channels, kernel),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * oh * ow, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def build_model(name: str, image_shape: tuple[int, int, int], num_classes: int = 10) -> nn.Sequential:
    """The default network for a data set's image size.

    ``mlp``: 784-512-256-10 on 28×28 (the benchmark MLP), 64-32-10 on digits' 8×8.
    ``cnn``: the TNGD paper's CNN on 28×28 (Conv 32@5×5, dense 128); Conv 8@3×3, dense 32 on 8×8.
    """
    c, h, w = image_shape
    large = h * w >= 28 * 28
    if name == "mlp":
        return mlp(c * h * w, (512, 256) if large else (32,), num_classes)
    if name == "cnn":
        return cnn(image_shape, 32, 5, 128, num_classes) if large else cnn(image_shape, 8, 3, 32, num_classes)
    raise TrainingError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")
