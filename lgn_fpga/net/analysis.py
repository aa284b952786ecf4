"""Structural facts about a gate graph: what `lgn-fpga info` reports."""

from __future__ import annotations

import numpy as np

from lgn_fpga.net import ops
from lgn_fpga.net.graph import GateGraph


def live_masks(graph: GateGraph, outputs: np.ndarray | None = None,
               down_to: int = 0) -> list[np.ndarray]:
    """Per layer, which gates can affect the output (walks back from the class bits,
    following only inputs an op actually reads). ``outputs``: a mask of the last layer's
    gates to start from (default: all of them, the class bits); the walk stops at layer
    ``down_to`` (the layers below it stay all False).

    ``optimize`` (dead gates) and the fit estimate (which bits of the last register
    something after it still reads) use this walk; the formal check has its own, from the
    ops' truth tables."""
    masks = [np.zeros(w, dtype=bool) for w in graph.widths]
    masks[-1][:] = True if outputs is None else outputs
    for n in range(graph.depth - 1, down_to, -1):
        layer = graph.layers[n]
        live = masks[n]
        reads_a = live & ~ops.IGNORES_A[layer.op]
        reads_b = live & ~ops.IGNORES_B[layer.op]
        masks[n - 1][layer.a[reads_a]] = True
        masks[n - 1][layer.b[reads_b]] = True
    return masks


def summary(graph: GateGraph) -> dict:
    counts = graph.op_counts()
    live = live_masks(graph)
    dead = int(sum((~m).sum() for m in live))
    passthrough = int(counts[ops.A] + counts[ops.B])
    constant = int(counts[ops.FALSE] + counts[ops.TRUE])
    return {
        "inputs": graph.inputs,
        "classes": graph.classes,
        "bits_per_class": graph.group_size,
        "layers": graph.depth,
        "widths": graph.widths,
        "gates": graph.gates,
        "depth": graph.depth,
        "ops": {ops.NAMES[i]: int(counts[i]) for i in range(16)},
        "dead_gates": dead,
        "pass_through_gates": passthrough,
        "constant_gates": constant,
        "logic_gates": graph.gates - passthrough - constant,
        "encoding": None if graph.encoding is None else
        {"kind": "thermometer", "features": graph.encoding.features,
         "thresholds_per_feature": graph.encoding.thresholds.shape[1]},
        "tau": graph.tau,
        "sha256": graph.sha256(),
        "meta": graph.meta,
    }


def wire_span(graph: GateGraph) -> float:
    """How far a gate's inputs lie from its place, as a fraction of the layer it reads: the
    mean of ``|input - (2i + 1) * prev / (2w)|`` over the inputs of gate ``i`` of every
    layer of ``w`` gates reading ``prev`` signals, divided by ``prev``. Uniformly random
    wiring gives about 1/3, wiring within ±W of a gate's place about W / (2 prev). The last
    layer is left out of a deeper net (its classes each span the whole layer before it,
    however local the rest). A placer keeps short what is local here; wide spans are what
    keeps a big net from routing (docs/routing.md). 0 for a net of no gates."""
    measured = graph.depth - 1 if graph.depth > 1 else graph.depth
    total = count = 0.0
    previous = graph.inputs
    for layer in graph.layers[:measured]:
        w = len(layer.op)
        centre = (2 * np.arange(w) + 1) * previous / (2 * w)
        far = np.abs(layer.a - centre) + np.abs(layer.b - centre)
        total += float(far.sum()) / previous
        count += 2 * w
        previous = w
    return total / count if count else 0.0
