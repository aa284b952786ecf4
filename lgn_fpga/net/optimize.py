"""Gate-graph optimization: what decides the LUT count of a trained net.

Trained LGNs are mostly dead or pass-through gates. Two passes, keeping the strictly
layered structure (every layer still reads only the previous one):

1. **fold** (forward): a gate fed by a constant, or by the same signal twice, becomes a
   unary op or a constant; an op that ignores an input gets that input tied to the other
   (so the ignored gate can die); gates with the same inputs and op are merged
   (commuted ops are put in a canonical order first). The last layer is never merged: its
   positions are the class bits.
2. **dead** (backward): gates that no class bit depends on are removed.

The result computes the same scores for every input; ``verify=True`` checks that on random
vectors against the golden model.
"""

from __future__ import annotations

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.net import golden, ops
from lgn_fpga.net.analysis import live_masks
from lgn_fpga.net.graph import GateGraph, Layer


def _table(op: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`ops.truth` over arrays of ops and bits."""
    return ops.truth(op.astype(np.int64), a, b)


def _fold_layer(layer: Layer, const_in: np.ndarray, *, merge: bool):
    """Return (a, b, op, const_out, remap) for one layer.

    ``const_in`` holds -1 (not constant), 0 or 1 per input of the layer; ``remap`` maps old
    gate positions to positions in the folded layer."""
    a = layer.a.astype(np.int64)
    b = layer.b.astype(np.int64)
    op = layer.op.astype(np.int64)
    ca = const_in[a]
    cb = const_in[b]

    # Both inputs constant: the gate is a constant.
    both = (ca >= 0) & (cb >= 0)
    op = np.where(both, np.where(_table(op, np.maximum(ca, 0), np.maximum(cb, 0)) == 1,
                                 ops.TRUE, ops.FALSE), op)
    # Only a constant: a unary function of b.
    only_a = (ca >= 0) & (cb < 0)
    fb0 = _table(op, np.maximum(ca, 0), 0)
    fb1 = _table(op, np.maximum(ca, 0), 1)
    op = np.where(only_a, ops.unary_on_b(fb0, fb1), op)
    # Only b constant: a unary function of a.
    only_b = (cb >= 0) & (ca < 0)
    fa0 = _table(op, 0, np.maximum(cb, 0))
    fa1 = _table(op, 1, np.maximum(cb, 0))
    op = np.where(only_b, ops.unary_on_a(fa0, fa1), op)
    # Same signal twice: f(x) = op(x, x).
    same = (a == b) & ~both & ~only_a & ~only_b
    op = np.where(same, ops.unary_on_a(_table(op, 0, 0), _table(op, 1, 1)), op)

    # Tie ignored inputs to the used one; constants read input 0.
    ign_b = ops.IGNORES_B[op]
    ign_a = ops.IGNORES_A[op]
    b = np.where(ign_b, a, b)
    a = np.where(ign_a, b, a)
    is_const = (op == ops.FALSE) | (op == ops.TRUE)
    a = np.where(is_const, 0, a)
    b = np.where(is_const, 0, b)

    # Canonical order for two-input ops, so b∧a and a∧b merge.
    swap = a > b
    op = np.where(swap, ops.SWAPPED[op], op)
    a, b = np.where(swap, b, a), np.where(swap, a, b)

    if merge:
        key = (a << 36) | (b << 4) | op
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")          # keep first-occurrence order
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        keep = first[order]
        remap = position[inverse.reshape(-1)]
        a, b, op = a[keep], b[keep], op[keep]
    else:
        remap = np.arange(len(op))

    const_out = np.full(len(op), -1, dtype=np.int64)
    const_out[op == ops.FALSE] = 0
    const_out[op == ops.TRUE] = 1
    return a, b, op, const_out, remap


def fold(graph: GateGraph) -> GateGraph:
    """Constant folding, input normalization and duplicate merging (forward pass)."""
    const_in = np.full(graph.inputs, -1, dtype=np.int64)
    remap_prev = None
    layers = []
    last = graph.depth - 1
    for n, layer in enumerate(graph.layers):
        if remap_prev is not None:
            layer = Layer(remap_prev[layer.a], remap_prev[layer.b], layer.op)
        a, b, op, const_in, remap_prev = _fold_layer(layer, const_in, merge=n != last)
        layers.append(Layer(a.astype(np.int32), b.astype(np.int32), op.astype(np.uint8)))
    return graph.replace(layers=tuple(layers))


def remove_dead(graph: GateGraph) -> GateGraph:
    """Drop gates no class bit depends on (backward pass); the last layer stays whole."""
    masks = live_masks(graph)
    layers = list(graph.layers)
    for n in range(graph.depth - 1):
        keep = np.flatnonzero(masks[n])
        if keep.size == 0:
            # Nothing downstream reads this layer (all class bits are constant): keep one
            # constant gate so the layer stays valid.
            layers[n] = Layer(np.zeros(1, np.int32), np.zeros(1, np.int32),
                              np.array([ops.FALSE], np.uint8))
            remap = np.zeros(len(masks[n]), dtype=np.int64)
        else:
            layers[n] = Layer(layers[n].a[keep], layers[n].b[keep], layers[n].op[keep])
            remap = np.full(len(masks[n]), 0, dtype=np.int64)
            remap[keep] = np.arange(len(keep))
        nxt = layers[n + 1]
        layers[n + 1] = Layer(remap[nxt.a].astype(np.int32), remap[nxt.b].astype(np.int32),
                              nxt.op)
    return graph.replace(layers=tuple(layers))


def logic_gates(graph: GateGraph) -> int:
    """Gates that are real logic: not constants, not pass-through wires."""
    counts = graph.op_counts()
    trivial = counts[ops.FALSE] + counts[ops.TRUE] + counts[ops.A] + counts[ops.B]
    return int(graph.gates - trivial)


def optimize(graph: GateGraph, *, verify: bool = False, seed: int = 0,
             vectors: int = 4096) -> tuple[GateGraph, dict]:
    """Fold then remove dead gates, until nothing changes. Returns (graph, stats)."""
    result = graph
    for _ in range(8):
        before = result.sha256()
        result = remove_dead(fold(result))
        if result.sha256() == before:
            break
    result = result.replace(meta={**graph.meta, "optimized_from": graph.sha256()})
    if verify:
        check_equivalent(graph, result, seed=seed, vectors=vectors)
    stats = {
        "gates_before": graph.gates,
        "gates_after": result.gates,
        "logic_before": logic_gates(graph),
        "logic_after": logic_gates(result),
        "widths_before": graph.widths,
        "widths_after": result.widths,
    }
    return result, stats


def check_equivalent(original: GateGraph, optimized: GateGraph, *, seed: int = 0,
                     vectors: int = 4096) -> None:
    """Random-vector check that both graphs give the same scores (raises on a difference)."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, (vectors, original.inputs), dtype=np.uint8)
    want = golden.predict(original, bits).scores
    got = golden.predict(optimized, bits).scores
    if not np.array_equal(want, got):
        row = int(np.flatnonzero((want != got).any(axis=1))[0])
        raise UserError(f"internal error: optimization changed the scores of vector {row} "
                        f"({want[row].tolist()} -> {got[row].tolist()}); please report it")


#: :func:`optimize` under a name that :func:`design_graph`'s ``optimize`` flag does not hide.
_optimize_net = optimize


def corrupt(graph: GateGraph, layer: int, gate: int) -> GateGraph:
    """``graph`` with gate ``gate`` of layer ``layer`` complemented (op ^ 15): a fault to
    prove the checks catch a wrong design. A fault in the last layer always changes a score;
    elsewhere it may be masked or dead."""
    if not 0 <= layer < graph.depth:
        raise UserError(f"fault layer {layer} is out of range: the net has {graph.depth} layers")
    if not 0 <= gate < graph.widths[layer]:
        raise UserError(f"fault gate {gate} is out of range: layer {layer} has "
                        f"{graph.widths[layer]} gates")
    layers = list(graph.layers)
    victim = layers[layer]
    op = victim.op.copy()
    op[gate] ^= 15
    layers[layer] = type(victim)(victim.a, victim.b, op)
    return graph.replace(layers=tuple(layers))


def design_graph(graph: GateGraph, *, optimize: bool = True,
                 fault: tuple[int, int] | None = None) -> tuple[GateGraph, dict | None]:
    """The net that gets built: ``graph`` with an optional injected fault, then optimized
    (dead gates, constants, duplicates removed; same scores). Returns (net, optimize stats)."""
    if fault is not None:
        graph = corrupt(graph, *fault)
    if not optimize:
        return graph, None
    return _optimize_net(graph)
