"""A trainable LGN: optional convolutional blocks, dense logic layers, GroupSum, built
from the ``--arch`` text (parsed in :mod:`.options`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lgn_fpga.errors import UserError

from .conv import ConvLogicBlock, Flatten, ImageView
from .layers import (
    GroupSum,
    LogicLayer,
    image_radius,
    local_connections,
    spatial_connections,
)
from .options import ConvSpec, parse_arch

__all__ = ["ConvSpec", "LogicNet", "parse_arch"]


class LogicNet(nn.Module):
    """Input bits (B, inputs) as floats in [0, 1] → class scores (B, classes).

    ``locality`` W > 0 wires every dense layer locally (:mod:`.layers`): each gate reads two
    inputs within ±W of its proportional position in the previous layer; a dense layer that
    reads an image (the thermometer bits, or a flattened conv output) reads instead from the
    pixels within ``radius`` (0: :func:`~.layers.image_radius` of W) of its position, any
    channel. The last layer restarts the positions in every class group, so each class sees
    the whole previous layer. ``fused``: the fused dense layer (default) or the plain one."""

    def __init__(self, inputs: int, classes: int, arch: str, *, tau: float, seed: int,
                 image: tuple[int, int, int] | None = None, residual: bool | float = True,
                 locality: int = 0, radius: int = 0, fused: bool = True):
        super().__init__()
        self.inputs, self.classes, self.arch, self.tau = inputs, classes, arch, tau
        self.locality = locality
        #: per dense layer, how it is wired (recorded in the model's meta)
        self.wiring: list[dict] = []
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
        # the input index of (y, x, channel): thermometer bit (y*W + x)*T + t
        grid = np.arange(inputs).reshape(image) if image is not None else None
        dense = [i for i, s in enumerate(specs) if isinstance(s, int)]
        for i, s in enumerate(specs):
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
                    # a flattened conv output is channel-major: (K, H, W) → grid (H, W, K)
                    grid = np.arange(width).reshape(shape).transpose(1, 2, 0)
                    shape = None
                wiring = None
                if locality:
                    groups = classes if i == dense[-1] else 1
                    if grid is not None:
                        r = radius or image_radius(locality, grid.shape[2])
                        wiring = spatial_connections(grid, s, r, rng, groups=groups)
                        self.wiring.append({"spatial_radius": r, "groups": groups})
                    else:
                        wiring = local_connections(width, s, locality, rng, groups=groups)
                        self.wiring.append({"window": locality, "groups": groups})
                else:
                    self.wiring.append({"uniform": True})
                stages.append(LogicLayer(width, s, rng=rng, generator=generator,
                                         residual=residual, wiring=wiring, fused=fused))
                width, grid = s, None
        self.stages = nn.ModuleList(stages)
        self.head = GroupSum(classes, tau)

    def outputs(self, x: torch.Tensor, hard: bool = False) -> torch.Tensor:
        """The last layer's outputs (B, width): bits when ``hard`` and x is 0/1."""
        transposed = False  # consecutive dense layers run feature-major (width, B)
        for stage in self.stages:
            if isinstance(stage, LogicLayer) and stage.fused:
                if not transposed:
                    x, transposed = x.t().contiguous(), True
                x = stage.forward_t(x, hard)
                continue
            if transposed:
                x, transposed = x.t(), False
            x = stage(x, hard)
        return x.t() if transposed else x

    def forward(self, x: torch.Tensor, hard: bool = False) -> torch.Tensor:
        return self.head(self.outputs(x, hard))
