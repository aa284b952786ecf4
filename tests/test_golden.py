"""The golden model agrees with a deliberately naive per-sample, per-gate evaluator."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lgn_fpga.net import golden, ops
from lgn_fpga.net import graph as gg
from lgn_fpga.net.random_nets import random_graph


@settings(max_examples=40, deadline=None)
@given(inputs=st.integers(1, 20), layers=st.integers(1, 4), width=st.integers(1, 30),
       classes=st.integers(1, 5), seed=st.integers(0, 2**31), samples=st.integers(1, 150))
def test_golden_equals_naive_evaluator_on_random_nets(inputs, layers, width, classes, seed,
                                                      samples):
    g = random_graph(inputs, layers, width, classes, seed)
    bits = np.random.default_rng(seed).integers(0, 2, (samples, inputs), dtype=np.uint8)
    fast = golden.predict(g, bits)
    slow = golden.naive_predict(g, bits)
    np.testing.assert_array_equal(fast.scores, slow.scores)
    np.testing.assert_array_equal(fast.classes, slow.classes)


def test_every_op_matches_its_truth_table():
    # one layer of 16 gates over inputs (a, b): all four input combinations as samples
    g = gg.make(2, [(np.zeros(16, int), np.ones(16, int), np.arange(16))], classes=16)
    bits = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.uint8)
    scores = golden.predict(g, bits).scores
    for op in range(16):
        expected = [ops.truth(op, a, b) for a, b in bits]
        assert scores[:, op].tolist() == expected, ops.NAMES[op]
    # the op read as a number is the truth table over 00, 01, 10, 11
    for op in range(16):
        assert int("".join(str(x) for x in scores[:, op]), 2) == op


def test_ties_go_to_the_lowest_class():
    assert golden.argmax_lowest(np.array([[3, 5, 5, 1], [2, 2, 2, 2]])).tolist() == [1, 0]


def test_pack_and_unpack_are_inverse():
    bits = np.random.default_rng(0).integers(0, 2, (130, 7), dtype=np.uint8)
    np.testing.assert_array_equal(golden.unpack_bits(golden.pack_bits(bits), 130), bits)


def test_chunked_evaluation_matches_one_chunk(monkeypatch):
    g = random_graph(30, 3, 50, 5, seed=3)
    bits = np.random.default_rng(3).integers(0, 2, (1000, 30), dtype=np.uint8)
    whole = golden.predict(g, bits)
    monkeypatch.setattr(golden, "CHUNK_BYTES", 8 * 50 * 2)  # 128 samples per chunk
    chunked = golden.predict(g, bits)
    np.testing.assert_array_equal(whole.scores, chunked.scores)


def test_features_go_through_the_thermometer_encoding():
    th = np.array([[0.0, 1.0], [0.5, 2.0]])
    g = gg.make(4, [(np.arange(4), np.arange(4), np.full(4, ops.A))], classes=4,
                encoding=gg.Thermometer(th))
    x = np.array([[0.5, 3.0], [-1.0, 1.0]])
    np.testing.assert_array_equal(golden.predict_features(g, x).scores,
                                  [[1, 0, 1, 1], [0, 0, 1, 0]])


@pytest.mark.parametrize("blocks", [1.5, 2.5, 3, 3.1])
def test_many_blocks_and_a_short_last_one_match_the_naive_evaluator(blocks):
    # whole blocks of golden.BLOCK_WORDS words, then a short last block or none; a net of
    # copies, inversions and constants exercises the stored inversions (polarity) and the
    # dead gates left out
    g = random_graph(9, 4, 40, 4, seed=11,
                     ops=(ops.A, ops.NOT_A, ops.NOT_B, ops.TRUE, ops.NAND, ops.XNOR, ops.NOR,
                          ops.A_AND_NOT_B, ops.NOT_A_OR_B))
    samples = int(blocks * 64 * golden.BLOCK_WORDS)
    bits = np.random.default_rng(5).integers(0, 2, (samples, 9), dtype=np.uint8)
    fast = golden.predict(g, bits)
    slow = golden.naive_predict(g, bits)
    np.testing.assert_array_equal(fast.scores, slow.scores)
    np.testing.assert_array_equal(fast.classes, slow.classes)


def test_layer_bits_are_every_gates_value():
    g = random_graph(6, 3, 10, 2, seed=4)
    bits = np.random.default_rng(2).integers(0, 2, (70, 6), dtype=np.uint8)
    layers = golden.GoldenModel(g).layer_bits(bits)
    values = bits.astype(int)
    for layer, got in zip(g.layers, layers, strict=True):
        values = ops.truth(layer.op[None, :], values[:, layer.a], values[:, layer.b])
        np.testing.assert_array_equal(got, values)
