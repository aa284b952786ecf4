"""The 16 two-input gate functions, in difflogic's order: the one op table.

Read as a 4-bit number, an op *is* its truth table over (a, b) = 00, 01, 10, 11, most
significant bit first: ``out(a, b) = (op >> (3 - (2*a + b))) & 1`` (:func:`truth`).

Every other form is derived from that definition or checked against it when this module is
imported:

* :data:`FORMS`: each op as a bitwise expression over any values that support ``& | ^ ~``
  (packed numpy words, Amaranth values, or :class:`Text` for the Verilog/C/AIGER writers);
  :func:`apply` evaluates one.
* :data:`IGNORES_A`, :data:`IGNORES_B`, :data:`SWAPPED`, :func:`unary_on_a` /
  :func:`unary_on_b`: what the optimizer needs, computed from :func:`truth`.
* :func:`relaxation_basis`: the real-valued form ``c0 + c1*a + c2*b + c3*a*b`` that
  training mixes (exact on {0, 1}).
"""

from __future__ import annotations

import numpy as np

NAMES = (
    "false", "and", "a_and_not_b", "a", "not_a_and_b", "b", "xor", "or",
    "nor", "xnor", "not_b", "a_or_not_b", "not_a", "not_a_or_b", "nand", "true",
)

FALSE, AND, A_AND_NOT_B, A, NOT_A_AND_B, B, XOR, OR = range(8)
NOR, XNOR, NOT_B, A_OR_NOT_B, NOT_A, NOT_A_OR_B, NAND, TRUE = range(8, 16)


def truth(op, a, b):
    """The output of gate ``op`` for bits ``a`` and ``b``: the definition. Works elementwise
    on integer numpy arrays too."""
    return (op >> (3 - (2 * a + b))) & 1


#: Each op as an expression of ``a``, ``b``, ``zero`` and ``one`` using only ``& | ^ ~``.
#: An op that ignores an input never touches it, so callers may pass ``None`` for it.
FORMS = (
    lambda a, b, zero, one: zero,
    lambda a, b, zero, one: a & b,
    lambda a, b, zero, one: a & ~b,
    lambda a, b, zero, one: a,
    lambda a, b, zero, one: ~a & b,
    lambda a, b, zero, one: b,
    lambda a, b, zero, one: a ^ b,
    lambda a, b, zero, one: a | b,
    lambda a, b, zero, one: ~(a | b),
    lambda a, b, zero, one: ~(a ^ b),
    lambda a, b, zero, one: ~b,
    lambda a, b, zero, one: a | ~b,
    lambda a, b, zero, one: ~a,
    lambda a, b, zero, one: ~a | b,
    lambda a, b, zero, one: ~(a & b),
    lambda a, b, zero, one: one,
)


def apply(op: int, a, b, zero, one):
    """Gate ``op`` on ``a`` and ``b``, in whatever algebra the operands live in."""
    if not 0 <= op < 16:
        raise ValueError(f"op {op} is not in 0..15")
    return FORMS[op](a, b, zero, one)


def apply_words(op: int, a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    """Gate ``op`` applied bitwise to packed unsigned integer arrays (``None`` for an input
    the op ignores)."""
    like = a if a is not None else b
    zero = np.zeros_like(like)
    return np.asarray(apply(op, a, b, zero, ~zero))


class Text:
    """A bitwise expression as source text, for the writers (Verilog, C): ``Text("x") & ~Text("y")``
    gives ``(x & ~y)``. ``str()`` of the result is the expression."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __and__(self, other):
        return Text(f"({self.text} & {other.text})")

    def __or__(self, other):
        return Text(f"({self.text} | {other.text})")

    def __xor__(self, other):
        return Text(f"({self.text} ^ {other.text})")

    def __invert__(self):
        return Text(f"~{self.text}")

    def __str__(self):
        return self.text


def _derived_tables():
    ops = np.arange(16)
    t = np.array([[truth(op, a, b) for a in (0, 1) for b in (0, 1)] for op in ops])
    ignores_b = (t[:, 0] == t[:, 1]) & (t[:, 2] == t[:, 3])
    ignores_a = (t[:, 0] == t[:, 2]) & (t[:, 1] == t[:, 3])
    swapped = (t[:, 0] << 3) | (t[:, 2] << 2) | (t[:, 1] << 1) | t[:, 3]
    return ignores_a, ignores_b, swapped.astype(np.int64)


#: Boolean masks over op codes: the output does not depend on a / on b.
IGNORES_A, IGNORES_B, _SWAPPED = _derived_tables()
#: SWAPPED[op] computes op(b, a).
SWAPPED = _SWAPPED
CONSTANT_OPS = frozenset({FALSE, TRUE})


def unary_on_a(f0, f1):
    """The op reading only ``a`` whose outputs for a = 0, 1 are ``f0``, ``f1``."""
    return (f0 << 3) | (f0 << 2) | (f1 << 1) | f1


def unary_on_b(f0, f1):
    """The op reading only ``b`` whose outputs for b = 0, 1 are ``f0``, ``f1``."""
    return (f0 << 3) | (f1 << 2) | (f0 << 1) | f1


def relaxation_basis() -> np.ndarray:
    """(16, 4) coefficients ``(c0, c1, c2, c3)``: op(a, b) = c0 + c1*a + c2*b + c3*a*b on
    {0, 1}, the multilinear form training relaxes (a, b in [0, 1])."""
    basis = np.zeros((16, 4), dtype=np.int64)
    for op in range(16):
        t00, t01, t10, t11 = (truth(op, a, b) for a in (0, 1) for b in (0, 1))
        basis[op] = (t00, t10 - t00, t01 - t00, t11 - t10 - t01 + t00)
    return basis


def _check_forms() -> None:
    """Every form agrees with the definition on all four input pairs (import-time check:
    one table, and a typo in a form cannot survive)."""
    for op in range(16):
        for a in (0, 1):
            for b in (0, 1):
                got = int(apply(op, np.uint8(a), np.uint8(b), np.uint8(0), np.uint8(1))) & 1
                if got != truth(op, a, b):
                    raise AssertionError(f"ops.FORMS[{op}] ({NAMES[op]}) disagrees with its "
                                         f"truth table at a={a} b={b}")


_check_forms()
