"""random_graph: the default (uniform) nets stay what they were; window=W wires locally."""

from fractions import Fraction

import numpy as np
import pytest

from lgn_fpga.net.random_nets import random_graph


def old_uniform(inputs, layers, width, classes, seed):
    """The generator as it was before ``window`` existed: the default must reproduce it."""
    rng = np.random.default_rng(seed)
    ops = np.arange(16, dtype=np.uint8)
    out, previous = [], inputs
    for n in range(layers):
        w = width if n < layers - 1 else max(classes, width // classes * classes)
        a = rng.integers(0, previous, w)
        b = rng.integers(0, previous, w)
        op = ops[rng.integers(0, 16, w)]
        out.append((a, b, op))
        previous = w
    return out


@pytest.mark.parametrize("shape", [(12, 3, 30, 3), (400, 2, 801, 10), (5, 1, 4, 7)])
def test_default_is_unchanged(shape):
    g = random_graph(*shape, seed=7)
    for layer, (a, b, op) in zip(g.layers, old_uniform(*shape, seed=7), strict=True):
        assert np.array_equal(layer.a, a) and np.array_equal(layer.b, b)
        assert np.array_equal(layer.op, op)
    assert "window" not in g.meta
    assert g.meta == random_graph(*shape, seed=7, window=0).meta


def centre(i, w, previous, groups):
    """Proportional position of gate i, by exact fractions (independent of the int formula)."""
    per = w // groups
    j = i % per
    return int((Fraction(j) + Fraction(1, 2)) * previous / per)


@pytest.mark.parametrize("inputs,width,classes,window", [
    (400, 1000, 10, 64), (50, 37, 1, 3), (9, 20, 4, 1), (30, 40, 4, 100)])
def test_window_keeps_inputs_local(inputs, width, classes, window):
    g = random_graph(inputs, 3, width, classes, seed=3, window=window)
    assert g.meta["window"] == window
    previous = inputs
    for n, layer in enumerate(g.layers):
        w = len(layer)
        groups = classes if n == len(g.layers) - 1 else 1
        for i in range(w):
            c = centre(i, w, previous, groups)
            lo, hi = max(c - window, 0), min(c + window, previous - 1)
            a, b = int(layer.a[i]), int(layer.b[i])
            assert lo <= a <= hi and lo <= b <= hi, (n, i, a, b, lo, hi)
            assert a != b or lo == hi  # distinct whenever the window holds two
        previous = w


def test_window_fills_the_window():
    """Offsets from the centre reach both edges of the window and use every slot: the
    window is really ±W, not narrower, and not one fixed offset."""
    g = random_graph(400, 2, 8000, 10, seed=1, window=16)
    layer = g.layers[0]
    c = np.array([centre(i, 8000, 400, 1) for i in range(8000)])
    inner = (c >= 16) & (c <= 400 - 1 - 16)  # windows not clipped by the layer's edges
    offsets = np.concatenate([layer.a[inner] - c[inner], layer.b[inner] - c[inner]])
    assert set(offsets.tolist()) == set(range(-16, 17))


def test_last_layer_groups_span_the_previous_layer():
    """Each class's gates read from the whole previous layer, left edge to right edge."""
    g = random_graph(100, 2, 600, 6, seed=2, window=4)
    last = g.layers[-1]
    for c in range(6):
        a = last.a[c * 100:(c + 1) * 100]
        assert a.min() < 10 and a.max() > 590


def test_window_is_seeded():
    one = random_graph(40, 3, 60, 4, seed=5, window=8)
    same = random_graph(40, 3, 60, 4, seed=5, window=8)
    other = random_graph(40, 3, 60, 4, seed=6, window=8)
    assert all(np.array_equal(x.a, y.a) and np.array_equal(x.op, y.op)
               for x, y in zip(one.layers, same.layers, strict=True))
    assert any(not np.array_equal(x.a, y.a) for x, y in zip(one.layers, other.layers,
                                                             strict=True))


def test_negative_window_is_refused():
    with pytest.raises(ValueError, match="window"):
        random_graph(10, 2, 10, 2, window=-1)


def test_wire_span_tells_uniform_wiring_from_local():
    # uniform inputs lie a third of a layer from a gate's place on average (E|U - V| = 1/3);
    # ±W wiring about W/2 of the width read: 40/400/2 for the first layer, 40/2000/2 after
    from lgn_fpga.net.analysis import wire_span

    uniform = wire_span(random_graph(400, 4, 2000, 10, seed=3))
    local = wire_span(random_graph(400, 4, 2000, 10, seed=3, window=40))
    assert abs(uniform - 1 / 3) < 0.02
    assert abs(local - (0.05 + 0.01 + 0.01) / 3) < 0.005
