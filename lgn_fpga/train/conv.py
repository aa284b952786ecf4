"""Convolutional logic blocks (Petersen et al., "Convolutional Differentiable Logic Gate
Networks", NeurIPS 2024).

A kernel is a binary tree of learnable gates: the ``2**(depth-1)`` leaf gates each read two
taps (channel, dy, dx) of an r x r receptive field, each next level combines pairs, and the
root is the kernel's output channel. The same tree (taps and gates) slides over every
position ("valid": no padding, so the hardened net needs no constant inputs). Logical-OR
pooling over 2x2 follows; its relaxation is max, which on {0, 1} is exactly OR, so the
hardened pooling is two levels of OR gates.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .layers import apply_gates, gate_logits, mix


class ImageView(nn.Module):
    """Thermometer bits (B, H*W*T), feature-major, as an image (B, T, H, W): threshold t is
    channel t."""

    def __init__(self, height: int, width: int, thresholds: int):
        super().__init__()
        self.height, self.width, self.thresholds = height, width, thresholds

    def forward(self, x: torch.Tensor, hard: bool = False) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.height, self.width, self.thresholds)
        return x.permute(0, 3, 1, 2)

    def out_shape(self):
        return (self.thresholds, self.height, self.width)


class ConvLogicBlock(nn.Module):
    """``kernels`` logic-tree kernels of ``depth`` gate levels over an r x r field, then
    2x2 OR pooling when ``pool``. Input (B, C, H, W), output (B, kernels, H', W')."""

    def __init__(self, in_shape, kernels: int, *, field: int = 3, depth: int = 3,
                 pool: bool = True, rng: np.random.Generator, generator: torch.Generator,
                 residual: bool | float = True):
        super().__init__()
        c, h, w = in_shape
        if h < field or w < field:
            raise ValueError(f"a {field}x{field} kernel does not fit a {h}x{w} input")
        self.in_shape = (c, h, w)
        self.kernels, self.field, self.depth, self.pool = kernels, field, depth, pool
        leaves = kernels * 2 ** (depth - 1)
        # taps index the unfolded field, ordered (channel, dy, dx) as F.unfold does
        taps = c * field * field
        ta = rng.integers(0, taps, leaves)
        tb = rng.integers(0, taps, leaves)
        clash = ta == tb
        tb[clash] = (tb[clash] + 1 + rng.integers(0, max(taps - 1, 1), clash.sum())) % taps
        self.register_buffer("tap_a", torch.from_numpy(ta.astype(np.int64)))
        self.register_buffer("tap_b", torch.from_numpy(tb.astype(np.int64)))
        # level j has kernels * 2**(depth-1-j) gates; gate g of level j+1 reads gates 2g and
        # 2g+1 of level j, so a kernel's gates are contiguous at every level
        self.levels = nn.ParameterList([
            gate_logits(kernels * 2 ** (depth - 1 - j), generator, residual)
            for j in range(depth)])

    def conv_shape(self):
        c, h, w = self.in_shape
        return (self.kernels, h - self.field + 1, w - self.field + 1)

    def out_shape(self):
        k, h, w = self.conv_shape()
        return (k, h // 2, w // 2) if self.pool else (k, h, w)

    def forward(self, x: torch.Tensor, hard: bool = False) -> torch.Tensor:
        k, h, w = self.conv_shape()
        u = F.unfold(x, self.field)  # (B, C*r*r, h*w)
        y = None
        for j, logits in enumerate(self.levels):
            coef = mix(logits, hard)[:, None, :]  # broadcast over positions
            if j == 0:
                a, b = u[:, self.tap_a], u[:, self.tap_b]
            else:
                a, b = y[:, 0::2], y[:, 1::2]
            y = apply_gates(coef, a, b)
        y = y.reshape(x.shape[0], k, h, w)
        return F.max_pool2d(y, 2) if self.pool else y

    def level_ops(self) -> list[np.ndarray]:
        return [p.argmax(dim=-1).cpu().numpy().astype(np.uint8) for p in self.levels]


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor, hard: bool = False) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)
