"""A trainable LGN: optional convolutional blocks, dense logic layers, GroupSum; and the
``--arch`` text that describes one.

Arch text: comma-separated stages, e.g. ``c16,c32,2000,1000`` or ``1000,1000,300``.
``c<K>[r<R>][d<D>][n]``: a conv block of K tree kernels over an R x R field (default 3),
D gate levels (default 3), 2x2 OR pooling unless ``n``. A number: a dense layer of that
many gates. The last dense layer's width must be a multiple of the classes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lgn_fpga.errors import UserError

from .conv import ConvLogicBlock, Flatten, ImageView
from .layers import GroupSum, LogicLayer

_CONV = re.compile(r"^c(\d+)(?:r(\d+))?(?:d(\d+))?(n?)$")


@dataclass(frozen=True)
class ConvSpec:
    kernels: int
    field: int = 3
    depth: int = 3
    pool: bool = True


def parse_arch(text: str) -> list:
    """Arch text to a list of ConvSpec and int (dense widths); UserError names a bad token."""
    stages: list = []
    for token in [t.strip() for t in text.split(",") if t.strip()]:
        m = _CONV.match(token)
        if m:
            if any(isinstance(s, int) for s in stages):
                raise UserError(f"--arch {text}: conv block {token} after a dense layer")
            k, r, d, nopool = m.groups()
            stages.append(ConvSpec(int(k), int(r or 3), int(d or 3), not nopool))
        elif token.isdigit() and int(token) > 0:
            stages.append(int(token))
        else:
            raise UserError(f"--arch {text}: cannot read {token!r} (a width like 1000, or a "
                            f"conv block like c16, c16r3d3, c16n)")
    if not stages or not isinstance(stages[-1], int):
        raise UserError(f"--arch {text}: must end with a dense layer")
    return stages


class LogicNet(nn.Module):
    """Input bits (B, inputs) as floats in [0, 1] → class scores (B, classes)."""

    def __init__(self, inputs: int, classes: int, arch: str, *, tau: float, seed: int,
                 image: tuple[int, int, int] | None = None, residual: bool | float = True):
        super().__init__()
        self.inputs, self.classes, self.arch, self.tau = inputs, classes, arch, tau
        specs = parse_arch(arch)
        if specs[-1] % classes:
            raise UserError(f"--arch {arch}: the last layer ({specs[-1]} gates) must be a "
                            f"multiple of the {classes} classes")
        rng = np.random.default_rng(seed)  # wiring
        generator = torch.Generator().manual_seed(seed)  # gate logits
        stages: list[nn.Module] = []
        shape = None
        if any(isinstance(s, ConvSpec) for s in specs):
            if image is None:
                raise UserError(f"--arch {arch}: conv blocks need an image dataset")
            view = ImageView(*image)
            stages.append(view)
            shape = view.out_shape()
        width = inputs
        for s in specs:
            if isinstance(s, ConvSpec):
                block = ConvLogicBlock(shape, s.kernels, field=s.field, depth=s.depth,
                                       pool=s.pool, rng=rng, generator=generator,
                                       residual=residual)
                stages.append(block)
                shape = block.out_shape()
                if min(shape[1:]) < 1:
                    raise UserError(f"--arch {arch}: the image shrinks to nothing")
            else:
                if shape is not None:
                    stages.append(Flatten())
                    width = int(np.prod(shape))
                    shape = None
                stages.append(LogicLayer(width, s, rng=rng, generator=generator,
                                         residual=residual))
                width = s
        self.stages = nn.ModuleList(stages)
        self.head = GroupSum(classes, tau)

    def outputs(self, x: torch.Tensor, hard: bool = False) -> torch.Tensor:
        """The last layer's outputs (B, width): bits when ``hard`` and x is 0/1."""
        for stage in self.stages:
            x = stage(x, hard)
        return x

    def forward(self, x: torch.Tensor, hard: bool = False) -> torch.Tensor:
        return self.head(self.outputs(x, hard))
