"""Random gate graphs for tests and benchmarks: same arguments and seed, same net."""

import numpy as np

from lgn_fpga.net import graph as gg


def random_graph(inputs: int, layers: int, width: int, classes: int, seed: int = 0,
                 *, ops: tuple[int, ...] = tuple(range(16))) -> gg.GateGraph:
    """``layers`` layers of ``width`` gates with uniformly random wiring and ops.

    The last layer is rounded down to a multiple of ``classes`` (at least ``classes``)."""
    if min(inputs, layers, width, classes) < 1:
        raise ValueError("inputs, layers, width and classes must all be at least 1")
    rng = np.random.default_rng(seed)
    op_choices = np.asarray(ops, dtype=np.uint8)
    out = []
    previous = inputs
    for n in range(layers):
        w = width if n < layers - 1 else max(classes, width // classes * classes)
        a = rng.integers(0, previous, w)
        b = rng.integers(0, previous, w)
        op = op_choices[rng.integers(0, len(op_choices), w)]
        out.append((a, b, op))
        previous = w
    meta = {"generator": "random-model", "seed": seed, "inputs": inputs, "layers": layers,
            "width": width, "classes": classes}
    return gg.make(inputs, out, classes, meta=meta)


def random_bits(inputs: int, count: int, seed: int) -> np.ndarray:
    """``count`` random input vectors; each vector draws its own density of ones, so both
    sparse and dense inputs occur (uniform bits alone exercise few gate paths)."""
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.05, 0.95, size=(count, 1))
    return (rng.random((count, inputs)) < density).astype(np.uint8)
