"""Locality-aware wiring (``--locality W``): on the hardened graph, every gate of a dense
layer reads two distinct inputs within ±W of its proportional position in the previous layer,
or, when the layer reads an image, from the pixels within the radius of its own pixel (any
thermometer channel); the last layer's class groups each span the whole previous layer; the
graph still computes torch's discretized forward bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lgn_fpga.net import golden  # noqa: E402
from lgn_fpga.train.data import Dataset  # noqa: E402
from lgn_fpga.train.harden import harden  # noqa: E402
from lgn_fpga.train.layers import image_radius  # noqa: E402
from lgn_fpga.train.loop import TrainOptions, train  # noqa: E402
from lgn_fpga.train.net import LogicNet  # noqa: E402


def centers(out_dim, positions, groups=1):
    """The spec, written out independently: gate j of a group of k sits at (j + 1/2) / k of
    the previous layer."""
    k = out_dim // groups
    return np.array([int((i % k + 0.5) * positions / k) for i in range(out_dim)])


def check_window(layer, in_dim, window, groups=1):
    c = centers(len(layer.op), in_dim, groups)
    for inputs in (layer.a, layer.b):
        assert np.all(np.abs(inputs.astype(int) - c) <= window)
    assert np.all(layer.a != layer.b)


def check_spatial(layer, pixel_of, height, width, radius, groups=1):
    """``pixel_of``: input index → (y, x) of the pixel it belongs to."""
    cy, cx = np.divmod(centers(len(layer.op), height * width, groups), width)
    for inputs in (layer.a, layer.b):
        y, x = pixel_of(inputs.astype(int))
        assert np.all(np.abs(y - cy) <= radius) and np.all(np.abs(x - cx) <= radius)
    assert np.all(layer.a != layer.b)


def _randomize(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 3)


def _bit_for_bit(net, graph, inputs):
    bits = np.random.default_rng(0).integers(0, 2, (200, inputs)).astype(np.uint8)
    with torch.no_grad():
        expected = net.outputs(torch.from_numpy(bits).float(), hard=True).numpy()
    assert np.array_equal(golden.GoldenModel(graph).layer_bits(bits)[-1],
                          expected.astype(np.uint8))


@pytest.mark.parametrize("window", [1, 3, 7])
def test_dense_windows_hold(window):
    net = LogicNet(50, 4, "80,120,30,40", tau=1.0, seed=window, locality=window)
    _randomize(net, 1)
    graph = harden(net)
    widths = [50, *graph.widths]
    for k, layer in enumerate(graph.layers):
        last = k == len(graph.layers) - 1
        check_window(layer, widths[k], window, groups=4 if last else 1)
    _bit_for_bit(net, graph, 50)
    assert net.wiring[-1] == {"window": window, "groups": 4}


def test_every_class_group_spans_the_whole_previous_layer():
    net = LogicNet(50, 4, "200,40", tau=1.0, seed=0, locality=3)
    head = harden(net).layers[-1]
    for c in range(4):
        group = np.concatenate([head.a[c * 10:(c + 1) * 10], head.b[c * 10:(c + 1) * 10]])
        assert group.min() < 20 and group.max() >= 180  # not a tenth of the layer


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_image_input_reads_a_pixel_neighbourhood_with_its_thresholds(radius):
    h, w, t = 7, 9, 3
    net = LogicNet(h * w * t, 3, "100,60,12", tau=1.0, seed=radius, image=(h, w, t),
                   locality=5, radius=radius)
    _randomize(net, 2)
    graph = harden(net)
    r = radius or image_radius(5, t)
    # thermometer bit (y*W + x)*T + t: the encoding's order (graph.Thermometer)
    check_spatial(graph.layers[0], lambda i: np.divmod(i // t, w), h, w, r)
    check_window(graph.layers[1], 100, 5)
    check_window(graph.layers[2], 60, 5, groups=3)
    # every threshold channel is reachable, not only the first
    assert set(graph.layers[0].a % t) == set(range(t))
    _bit_for_bit(net, graph, h * w * t)


def test_dense_after_conv_reads_a_neighbourhood_of_all_kernels():
    h, w, t = 8, 10, 2
    net = LogicNet(h * w * t, 2, "c4n,30,10", tau=1.0, seed=3, image=(h, w, t),
                   locality=4, radius=1)
    _randomize(net, 3)
    graph = harden(net)
    # the conv output (4 kernels, 6 x 8) is the last conv layer, gate k*48 + y*8 + x
    dense = graph.layers[len(graph.layers) - 2]
    check_spatial(dense, lambda i: np.divmod(i % 48, 8), 6, 8, 1)
    assert set(dense.a // 48) | set(dense.b // 48) == {0, 1, 2, 3}
    _bit_for_bit(net, graph, h * w * t)


def test_window_wider_than_the_layer_is_clipped():
    net = LogicNet(6, 2, "10,4", tau=1.0, seed=0, locality=100)
    graph = harden(net)
    for layer, width in zip(graph.layers, [6, 10]):
        assert layer.a.max() < width and layer.b.max() < width


def test_training_records_the_wiring_and_keeps_the_windows():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    x = rng.random((120, 16)) + y[:, None] * 0.5
    data = Dataset("tiny", x[:90], y[:90], x[90:], y[90:], 2, "first 90 / last 30", (4, 4))
    result = train(data, TrainOptions(arch="40,20", epochs=1, thresholds=2, locality=3,
                                      batch_size=32, seed=0))
    meta = result.graph.meta
    assert meta["wiring"]["locality"] == 3
    assert meta["wiring"]["layers"][0]["spatial_radius"] == image_radius(3, 2)
    assert meta["options"]["locality"] == 3
    check_spatial(result.graph.layers[0], lambda i: np.divmod(i // 2, 4), 4, 4,
                  image_radius(3, 2))
    check_window(result.graph.layers[1], 40, 3, groups=2)
