"""The 16 two-input gate functions, in difflogic's order.

Read as a 4-bit number, an op is the truth table over (a, b) = 00, 01, 10, 11, most
significant bit first: ``out(a, b) = (op >> (3 - (2*a + b))) & 1``.
"""

import numpy as np

NAMES = (
    "false", "and", "a_and_not_b", "a", "not_a_and_b", "b", "xor", "or",
    "nor", "xnor", "not_b", "a_or_not_b", "not_a", "not_a_or_b", "nand", "true",
)

FALSE, AND, A_AND_NOT_B, A, NOT_A_AND_B, B, XOR, OR = range(8)
NOR, XNOR, NOT_B, A_OR_NOT_B, NOT_A, NOT_A_OR_B, NAND, TRUE = range(8, 16)

CONSTANT_OPS = frozenset({FALSE, TRUE})
#: ops that copy one input unchanged: wires in hardware, not logic.
PASS_THROUGH_OPS = frozenset({A, B})
#: ops whose output does not depend on b / on a.
IGNORES_B = frozenset({FALSE, A, NOT_A, TRUE})
IGNORES_A = frozenset({FALSE, B, NOT_B, TRUE})


def truth(op: int, a: int, b: int) -> int:
    """The output of gate ``op`` for single bits ``a`` and ``b`` (the naive definition)."""
    return (op >> (3 - (2 * a + b))) & 1


def swap_inputs(op: int) -> int:
    """The op that computes ``op(b, a)``: exchange the truth-table rows 01 and 10."""
    t00 = (op >> 3) & 1
    t01 = (op >> 2) & 1
    t10 = (op >> 1) & 1
    t11 = op & 1
    return (t00 << 3) | (t10 << 2) | (t01 << 1) | t11


def apply_words(op: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Gate ``op`` applied bitwise to packed unsigned integer arrays."""
    if op == FALSE:
        return np.zeros_like(a)
    if op == AND:
        return a & b
    if op == A_AND_NOT_B:
        return a & ~b
    if op == A:
        return a.copy()
    if op == NOT_A_AND_B:
        return ~a & b
    if op == B:
        return b.copy()
    if op == XOR:
        return a ^ b
    if op == OR:
        return a | b
    if op == NOR:
        return ~(a | b)
    if op == XNOR:
        return ~(a ^ b)
    if op == NOT_B:
        return ~b
    if op == A_OR_NOT_B:
        return a | ~b
    if op == NOT_A:
        return ~a
    if op == NOT_A_OR_B:
        return ~a | b
    if op == NAND:
        return ~(a & b)
    if op == TRUE:
        return ~np.zeros_like(a)
    raise ValueError(f"op {op} is not in 0..15")
