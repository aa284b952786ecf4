"""Pins lgn-fpga's op order to difflogic's, without torch.

``bin_op`` below is a numpy transcription of ``difflogic.functional.bin_op`` (difflogic 0.1.0,
Petersen et al.): the real-valued relaxation of each of the 16 two-input gates, indexed as
difflogic indexes its weights. A hardened difflogic neuron is ``bin_op(a, b, argmax(w))``, so
op ``i`` in a gate graph must be the gate that formula ``i`` is at the corners {0, 1}^2.
"""

import numpy as np
import pytest

from lgn_fpga.net import ops


def bin_op(a, b, i):
    """difflogic.functional.bin_op, as published, for numpy arrays."""
    assert 0 <= i < 16
    if i == 0:
        return np.zeros_like(a)
    if i == 1:
        return a * b
    if i == 2:
        return a - a * b
    if i == 3:
        return a
    if i == 4:
        return b - a * b
    if i == 5:
        return b
    if i == 6:
        return a + b - 2 * a * b
    if i == 7:
        return a + b - a * b
    if i == 8:
        return 1 - (a + b - a * b)
    if i == 9:
        return 1 - (a + b - 2 * a * b)
    if i == 10:
        return 1 - b
    if i == 11:
        return 1 - b + a * b
    if i == 12:
        return 1 - a
    if i == 13:
        return 1 - a + a * b
    if i == 14:
        return 1 - a * b
    return np.ones_like(a)


A = np.array([0.0, 0.0, 1.0, 1.0])
B = np.array([0.0, 1.0, 0.0, 1.0])


@pytest.mark.parametrize("op", range(16))
def test_truth_is_difflogic_bin_op_at_the_corners(op):
    expected = bin_op(A, B, op)
    assert set(expected.tolist()) <= {0.0, 1.0}
    got = [ops.truth(op, int(a), int(b)) for a, b in zip(A, B)]
    assert got == expected.astype(int).tolist()


@pytest.mark.parametrize("op", range(16))
def test_forms_and_packed_words_agree_with_difflogic(op):
    """ops.FORMS (what the core and the golden model use) on 64-bit words, bit by bit."""
    rng = np.random.default_rng(op)
    a_bits = rng.integers(0, 2, 64)
    b_bits = rng.integers(0, 2, 64)
    pack = (1 << np.arange(64, dtype=np.uint64))
    a = np.array([np.bitwise_or.reduce(pack * a_bits.astype(np.uint64))], dtype=np.uint64)
    b = np.array([np.bitwise_or.reduce(pack * b_bits.astype(np.uint64))], dtype=np.uint64)
    word = ops.apply_words(op, a, b)[0]
    got = [(int(word) >> i) & 1 for i in range(64)]
    assert got == bin_op(a_bits.astype(float), b_bits.astype(float), op).astype(int).tolist()


def test_relaxation_is_a_probability_inside_the_square():
    """Between the corners bin_op interpolates: the expectation of the gate for independent
    Bernoulli inputs, so always in [0, 1]."""
    rng = np.random.default_rng(0)
    a, b = rng.random(1000), rng.random(1000)
    for op in range(16):
        y = bin_op(a, b, op)
        corners = [ops.truth(op, x, z) for x in (0, 1) for z in (0, 1)]
        expect = ((1 - a) * (1 - b) * corners[0] + (1 - a) * b * corners[1]
                  + a * (1 - b) * corners[2] + a * b * corners[3])
        assert np.allclose(y, expect) and (y >= -1e-12).all() and (y <= 1 + 1e-12).all()
