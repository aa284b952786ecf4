"""Optimization removes dead, constant and duplicate gates and never changes a score."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lgn_fpga.net import golden, ops
from lgn_fpga.net import graph as gg
from lgn_fpga.net.optimize import optimize
from lgn_fpga.net.random_nets import random_graph


@settings(max_examples=60, deadline=None)
@given(inputs=st.integers(1, 16), layers=st.integers(1, 5), width=st.integers(1, 40),
       classes=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_optimized_net_gives_identical_scores_on_random_nets(inputs, layers, width, classes,
                                                              seed):
    g = random_graph(inputs, layers, width, classes, seed)
    h, stats = optimize(g)
    assert h.depth == g.depth and h.outputs == g.outputs and h.inputs == g.inputs
    assert stats["gates_after"] <= stats["gates_before"]
    bits = np.random.default_rng(seed).integers(0, 2, (256, inputs), dtype=np.uint8)
    np.testing.assert_array_equal(golden.predict(g, bits).scores,
                                  golden.predict(h, bits).scores)


def test_dead_gates_are_removed():
    # layer 0: gate 1 is read by nobody
    g = gg.make(2, [([0, 1], [1, 0], [ops.AND, ops.OR]), ([0], [0], [ops.NOT_A])], classes=1)
    h, _ = optimize(g)
    assert h.widths == [1, 1]


def test_constant_inputs_fold_into_unary_ops():
    # layer 0: gate 0 = TRUE, gate 1 = x0; layer 1: AND(TRUE, x0) is x0 → pass-through
    g = gg.make(1, [([0, 0], [0, 0], [ops.TRUE, ops.A]), ([0], [1], [ops.AND])], classes=1)
    h, _ = optimize(g)
    assert h.layers[1].op.tolist() == [ops.B] or h.layers[1].op.tolist() == [ops.A]
    assert h.widths[0] == 1


def test_commuted_duplicates_merge():
    g = gg.make(2, [([0, 1], [1, 0], [ops.A_AND_NOT_B, ops.NOT_A_AND_B]),
                    ([0, 1], [0, 1], [ops.A, ops.A])], classes=2)
    h, _ = optimize(g)
    assert h.widths == [1, 2]
    assert h.layers[1].a.tolist() == [0, 0]


def test_last_layer_positions_are_kept():
    g = gg.make(2, [([0, 0, 0, 0], [1, 1, 1, 1], [ops.XOR] * 4)], classes=2)
    h, _ = optimize(g)
    assert h.widths == [4]
