"""A trained LogicNet to a gate graph: argmax gate per neuron, and every stage (conv trees,
OR pooling, flattening, dense layers) flattened into plain layers, each reading only the
previous one.

We carry an index array per torch tensor: where each of its elements lives in the newest
graph layer. A stage appends gate layers and returns the new index array; flattening is a
reshape of that array, not a layer. No stage reads from further back than the layer before
it, so no pass-through gates are needed (a stage that did would add op-3 gates here).
"""

from __future__ import annotations

import numpy as np

from lgn_fpga.net import graph as gg
from lgn_fpga.net import ops

from .conv import ConvLogicBlock, Flatten, ImageView
from .layers import LogicLayer
from .net import LogicNet


class _LayerStack:
    def __init__(self):
        self.layers: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, a, b, op) -> np.ndarray:
        """Append a layer of gates; returns the positions of its gates (0..n-1)."""
        a, b, op = (np.asarray(v).reshape(-1) for v in (a, b, op))
        self.layers.append((a.astype(np.int32), b.astype(np.int32), op.astype(np.uint8)))
        return np.arange(len(op))


def _conv(block: ConvLogicBlock, where: np.ndarray, stack: _LayerStack) -> np.ndarray:
    """``where``: (C, H, W) positions of the block's input in the newest layer."""
    c, h, w = block.in_shape
    r = block.field
    k, oh, ow = block.conv_shape()
    # taps → (channel, dy, dx), as F.unfold orders the field
    def tap_positions(taps):
        taps = taps.cpu().numpy()
        ch, rest = np.divmod(taps, r * r)
        dy, dx = np.divmod(rest, r)
        ys = np.arange(oh)[None, :, None] + dy[:, None, None]
        xs = np.arange(ow)[None, None, :] + dx[:, None, None]
        return where[ch[:, None, None], ys, xs]  # (gates, oh, ow)

    level_ops = block.level_ops()
    a, b = tap_positions(block.tap_a), tap_positions(block.tap_b)
    op = np.broadcast_to(level_ops[0][:, None, None], a.shape)
    out = stack.add(a, b, op).reshape(a.shape)
    for ops_j in level_ops[1:]:
        a, b = out[0::2], out[1::2]
        op = np.broadcast_to(ops_j[:, None, None], a.shape)
        out = stack.add(a, b, op).reshape(a.shape)
    if not block.pool:
        return out
    # 2x2 OR pooling (floor, as max_pool2d): pairs along x, then along y
    ph, pw = oh // 2, ow // 2
    out = out[:, :2 * ph, :2 * pw]
    a, b = out[:, :, 0::2], out[:, :, 1::2]
    out = stack.add(a, b, np.full(a.shape, ops.OR)).reshape(a.shape)
    a, b = out[:, 0::2, :], out[:, 1::2, :]
    return stack.add(a, b, np.full(a.shape, ops.OR)).reshape(a.shape)


def harden(net: LogicNet, *, encoding: gg.Thermometer | None = None,
           meta: dict | None = None) -> gg.GateGraph:
    """The gate graph that computes ``net(x, hard=True)`` exactly on 0/1 inputs."""
    stack = _LayerStack()
    where = np.arange(net.inputs)
    for stage in net.stages:
        if isinstance(stage, ImageView):
            # bit (y*W + x)*T + t is channel t at (y, x)
            where = where.reshape(stage.height, stage.width, stage.thresholds)
            where = where.transpose(2, 0, 1)
        elif isinstance(stage, ConvLogicBlock):
            where = _conv(stage, where, stack)
        elif isinstance(stage, Flatten):
            where = where.reshape(-1)
        elif isinstance(stage, LogicLayer):
            a = where[stage.a.cpu().numpy()]
            b = where[stage.b.cpu().numpy()]
            where = stack.add(a, b, stage.ops())
        else:
            raise TypeError(f"cannot harden a {type(stage).__name__}")
    # the last stage is a dense layer (parse_arch insists), so its gates are in class order
    return gg.make(net.inputs, stack.layers, net.classes, tau=net.tau, encoding=encoding,
                   meta=meta)
