"""Structural facts about a gate graph: what `lgn-fpga info` reports."""

from __future__ import annotations

import numpy as np

from lgn_fpga.net import ops
from lgn_fpga.net.graph import GateGraph


def live_masks(graph: GateGraph) -> list[np.ndarray]:
    """Per layer, which gates can affect the output (walks back from the class bits,
    following only inputs an op actually reads)."""
    masks = [np.zeros(w, dtype=bool) for w in graph.widths]
    masks[-1][:] = True
    for n in range(graph.depth - 1, 0, -1):
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
