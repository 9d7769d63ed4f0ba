"""The networks: an MLP, the small CNN of the TNGD paper (one convolution + two dense layers) and a small
Vision Transformer (the thermodynamic K-FAC paper's workload, scaled to 28×28 grey images).

Every network keeps the batch as the leading dimension of every layer's input (K-FAC counts examples from
it; see :mod:`thermotrain.training._kfac`), and every trainable matrix of the ViT is an ``nn.Linear`` so K-FAC
preconditions it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from thermotrain._errors import TrainingError

__all__ = ["MODELS", "ViT", "build_model", "cnn", "mlp", "vit"]

MODELS = ("mlp", "cnn", "vit")


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


def build_model(name: str, image_shape: tuple[int, int, int], num_classes: int = 10) -> nn.Module:
    """The default network for a data set's image size (parameters drawn from torch's global RNG: seed it).

    ``mlp``: 784-512-256-10 on 28×28 (the benchmark MLP), 64-32-10 on digits' 8×8.
    ``cnn``: the TNGD paper's CNN on 28×28 (Conv 32@5×5, dense 128); Conv 8@3×3, dense 32 on 8×8.
    ``vit``: patch 7 (16 tokens + class token), width 96, 4 heads, MLP 192, 3 blocks on 28×28 (232 042
    parameters: "a few hundred thousand", as the thermodynamic K-FAC paper's ViT workload); patch 2 (16 tokens),
    width 32, 4 heads, MLP 64, 2 blocks on 8×8 (18 218 parameters).
    """
    c, h, w = image_shape
    large = h * w >= 28 * 28
    if name == "mlp":
        return mlp(c * h * w, (512, 256) if large else (32,), num_classes)
    if name == "cnn":
        return cnn(image_shape, 32, 5, 128, num_classes) if large else cnn(image_shape, 8, 3, 32, num_classes)
    if name == "vit":
        if large:
            return vit(image_shape, patch=7, dim=96, depth=3, heads=4, mlp_dim=192, num_classes=num_classes)
        return vit(image_shape, patch=2, dim=32, depth=2, heads=4, mlp_dim=64, num_classes=num_classes)
    raise TrainingError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")


class _Attention(nn.Module):
    """Multi-head self-attention from plain Linears: ``qkv`` (d → 3d, fused) and ``proj`` (d → d).

    softmax(q kᵀ / √d_head) v per head on inputs (B, T, d); no dropout, no mask.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, T, d_head)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, t, d))


class _Block(nn.Module):
    """Pre-LayerNorm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)) with MLP = Linear→GELU→Linear."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """A small Vision Transformer (Dosovitskiy et al. 2021) for (C, H, W) images, built from ``nn.Linear``.

    Images → non-overlapping p×p patches flattened to (B, T, C·p·p) with T = (H/p)(W/p) → ``patch_embed``
    (a Linear, so K-FAC treats it as one) → prepend the learned class token → add the learned positional
    embedding (T+1 rows) → ``depth`` pre-LN blocks (:class:`_Block`) → final LayerNorm → ``head`` (a Linear)
    on the class token. Every Linear acts on (B, T+1, d) except ``head`` ((B, d)); K-FAC treats the tokens
    with the expand form (:mod:`thermotrain.training._kfac`). The class token and positional embedding are
    bare ``nn.Parameter`` s and LayerNorm weights are not Linear: K-FAC leaves all three on the plain gradient.

    Parameters are drawn from torch's global RNG (seed it for a deterministic model): Linears and
    LayerNorms with torch's defaults, class token and positional embedding N(0, 0.02²).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        patch: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        c, h, w = image_shape
        self.patch = patch
        self.tokens = (h // patch) * (w // patch)
        self.patch_embed = nn.Linear(c * patch * patch, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, self.tokens + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(_Block(dim, heads, mlp_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, T, C·p·p), patches in row-major order, each flattened channel-first."""
        b, c, h, w = x.shape
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.patch_embed(self.patches(x))
        z = torch.cat([self.cls_token.expand(z.shape[0], -1, -1), z], dim=1) + self.pos_embed
        for block in self.blocks:
            z = block(z)
        return self.head(self.norm(z)[:, 0])


def vit(
    image_shape: tuple[int, int, int],
    patch: int,
    dim: int,
    depth: int,
    heads: int,
    mlp_dim: int,
    num_classes: int = 10,
) -> ViT:
    """A :class:`ViT`; ``patch`` must divide H and W and ``heads`` must divide ``dim``.

    Parameters: (C·p²+1)·d + (T+2)·d + depth·(4d + (d+1)·3d + (d+1)·d + (d+1)·m + (m+1)·d) + 2d + (d+1)·k
    for width d, MLP width m, T tokens and k classes.

    Raises:
        TrainingError: a patch that does not tile the image, or a width not divisible by the heads.
    """
    c, h, w = image_shape
    if patch < 1 or h % patch or w % patch:
        raise TrainingError(
            f"Images of {h}x{w} cannot be cut into {patch}x{patch} patches; choose a patch size dividing both."
        )
    if heads < 1 or dim % heads:
        raise TrainingError(f"ViT width {dim} is not divisible by {heads} heads; choose heads dividing it.")
    if depth < 1 or mlp_dim < 1:
        raise TrainingError(f"ViT needs depth ≥ 1 and mlp_dim ≥ 1; got depth={depth}, mlp_dim={mlp_dim}.")
    return ViT(image_shape, patch, dim, depth, heads, mlp_dim, num_classes)
