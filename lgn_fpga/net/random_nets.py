"""Random gate graphs for tests and benchmarks: same arguments and seed, same net."""

import numpy as np

from lgn_fpga.net import graph as gg


def random_graph(inputs: int, layers: int, width: int, classes: int, seed: int = 0,
                 *, ops: tuple[int, ...] = tuple(range(16)), window: int = 0) -> gg.GateGraph:
    """``layers`` layers of ``width`` gates with random wiring and ops.

    The last layer is rounded down to a multiple of ``classes`` (at least ``classes``).

    Parameters
    ----------
    inputs, layers, width, classes : int
        The shape of the net; all at least 1.
    seed : int
        Same arguments and seed, same net.
    ops : tuple of int
        The gate ops to draw from, uniformly.
    window : int
        0 (the default): every gate reads two inputs drawn uniformly from the whole previous
        layer. ``W > 0``: local wiring, as ``lgn-fpga train --locality W`` makes it: gate
        ``i`` of a layer of ``w`` gates reads two distinct inputs (where the window holds
        two) within ``±W`` of its proportional position ``(2i+1)*prev // (2w)`` in the
        previous layer of ``prev`` signals, the window clipped to that layer. In the last
        layer the positions restart for every class (each class's gates span the whole
        previous layer), as in training. Wiring decides whether a big net routes: a placer
        can keep local wires short, uniform ones cross the chip (docs/routing.md).

    Raises
    ------
    ValueError
        If a shape argument is below 1 or ``window`` is negative.
    """
    if min(inputs, layers, width, classes) < 1:
        raise ValueError("inputs, layers, width and classes must all be at least 1")
    if window < 0:
        raise ValueError("window must be at least 0")
    rng = np.random.default_rng(seed)
    op_choices = np.asarray(ops, dtype=np.uint8)
    out = []
    previous = inputs
    for n in range(layers):
        w = width if n < layers - 1 else max(classes, width // classes * classes)
        if window:
            a, b = _local_pair(previous, w, window, classes if n == layers - 1 else 1, rng)
        else:
            a = rng.integers(0, previous, w)
            b = rng.integers(0, previous, w)
        op = op_choices[rng.integers(0, len(op_choices), w)]
        out.append((a, b, op))
        previous = w
    meta = {"generator": "random-model", "seed": seed, "inputs": inputs, "layers": layers,
            "width": width, "classes": classes}
    if window:
        # only when set, so the default net's document stays byte-for-byte what it was
        meta["window"] = window
    return gg.make(inputs, out, classes, meta=meta)


def _local_pair(previous: int, w: int, window: int, groups: int, rng: np.random.Generator):
    """Two inputs per gate within ``±window`` of its proportional position among
    ``previous`` signals, distinct where the clipped window holds two. Numpy-only twin of
    :func:`lgn_fpga.train.layers.local_connections` (``net`` must not import ``train``,
    which pulls in torch); the same rule, not the same random stream."""
    per = w // groups
    j = np.arange(w) % per
    centre = (2 * j + 1) * previous // (2 * per)
    lo = np.maximum(centre - window, 0)
    size = np.minimum(centre + window, previous - 1) - lo + 1
    oa = rng.integers(0, size)
    # the second input skips the first: uniform over the other size-1 slots
    ob = np.where(size > 1, (oa + 1 + rng.integers(0, np.maximum(size - 1, 1))) % size, oa)
    return lo + oa, lo + ob


def random_bits(inputs: int, count: int, seed: int) -> np.ndarray:
    """``count`` random input vectors; each vector draws its own density of ones, so both
    sparse and dense inputs occur (uniform bits alone exercise few gate paths)."""
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.05, 0.95, size=(count, 1))
    return (rng.random((count, inputs)) < density).astype(np.uint8)
