"""AIGER (https://fmv.jku.at/aiger/), both ways: a gate graph as an and-inverter graph, and
a combinational AIGER file as a gate graph.

Writing: each gate becomes AND nodes and inverted edges by evaluating its form from
:data:`lgn_fpga.net.ops.FORMS` over :class:`_Lit` (an AIG literal algebra with constant
folding and structural hashing), so there is no second op table. Inputs are the net's input
bits in order; outputs are the last layer's bits in order (class c's group is outputs
``c*k .. c*k + k - 1``). A comment line ``lgn-fpga classes K`` records the grouping.

Reading: the AND nodes in the outputs' cone are levelized (a node's level is one more than
its deepest fan-in; inputs are level 0) into layers of 2-input gates; a signal needed more
than one layer later is carried by pass-through gates (op ``a``); the last layer holds one
gate per output, in order, with output inversions folded into its op. Latches, and the
AIGER 1.9 bad/constraint/justice/fairness sections, are refused: the net is combinational.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lgn_fpga.errors import UserError
from lgn_fpga.net import graph as gg
from lgn_fpga.net import ops

__all__ = ["AigerError", "levelize", "load", "parse", "to_aig", "write_aag", "write_aig"]

_CLASSES_COMMENT = re.compile(rb"^lgn-fpga classes (\d+)$", re.M)


class AigerError(UserError):
    """A malformed or unsupported AIGER file; the message names the place."""


class _Builder:
    """AND nodes in creation (hence topological) order, with structural hashing."""

    def __init__(self, inputs: int):
        self.inputs = inputs
        self.ands: list[tuple[int, int]] = []
        self._hash: dict[tuple[int, int], int] = {}

    def lit(self, value: int) -> _Lit:
        return _Lit(value, self)

    def conj(self, x: int, y: int) -> int:
        if x < y:
            x, y = y, x            # binary AIGER wants rhs0 >= rhs1
        if y == 0:
            return 0               # x & 0
        if y == 1:
            return x               # x & 1
        if x == y:
            return x
        if x == y ^ 1:
            return 0               # x & ~x
        key = (x, y)
        found = self._hash.get(key)
        if found is None:
            found = 2 * (self.inputs + 1 + len(self.ands))
            self.ands.append(key)
            self._hash[key] = found
        return found


class _Lit:
    """An AIG literal (2*var + inverted) that :func:`ops.apply` can compute with."""

    __slots__ = ("value", "builder")

    def __init__(self, value: int, builder: _Builder):
        self.value = value
        self.builder = builder

    def __and__(self, other):
        return _Lit(self.builder.conj(self.value, other.value), self.builder)

    def __invert__(self):
        return _Lit(self.value ^ 1, self.builder)

    def __or__(self, other):
        return ~(~self & ~other)

    def __xor__(self, other):
        return (self & ~other) | (~self & other)


def to_aig(graph: gg.GateGraph) -> tuple[list[tuple[int, int]], list[int]]:
    """The AND nodes ``(rhs0, rhs1)`` (node ``i`` is variable ``inputs + 1 + i``) and the
    output literals of ``graph``."""
    builder = _Builder(graph.inputs)
    zero, one = builder.lit(0), builder.lit(1)
    signals = [builder.lit(2 * (i + 1)) for i in range(graph.inputs)]
    for layer in graph.layers:
        signals = [ops.apply(int(op), signals[a], signals[b], zero, one)
                   for a, b, op in zip(layer.a.tolist(), layer.b.tolist(), layer.op.tolist(),
                                       strict=True)]
    return builder.ands, [s.value for s in signals]


def _comment_block(graph: gg.GateGraph, comments) -> bytes:
    lines = [*(comments or []), f"lgn-fpga classes {graph.classes}"]
    return ("c\n" + "".join(f"{line}\n" for line in lines)).encode()


def write_aag(graph: gg.GateGraph, *, comments: list[str] | None = None) -> str:
    """``graph`` as ASCII AIGER (``.aag``) text.

    Parameters
    ----------
    graph : GateGraph
        The net.
    comments : list of str, optional
        Lines for the comment section (after them comes ``lgn-fpga classes K``).

    Returns
    -------
    str
    """
    ands, outputs = to_aig(graph)
    i = graph.inputs
    lines = [f"aag {i + len(ands)} {i} 0 {len(outputs)} {len(ands)}"]
    lines += [str(2 * (n + 1)) for n in range(i)]
    lines += [str(o) for o in outputs]
    lines += [f"{2 * (i + 1 + n)} {x} {y}" for n, (x, y) in enumerate(ands)]
    return "\n".join(lines) + "\n" + _comment_block(graph, comments).decode()


def _varint(x: int, out: bytearray) -> None:
    while x >= 0x80:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)


def write_aig(graph: gg.GateGraph, *, comments: list[str] | None = None) -> bytes:
    """``graph`` as binary AIGER (``.aig``) bytes; see :func:`write_aag`.

    Returns
    -------
    bytes
    """
    ands, outputs = to_aig(graph)
    i = graph.inputs
    out = bytearray(f"aig {i + len(ands)} {i} 0 {len(outputs)} {len(ands)}\n".encode())
    out += "".join(f"{o}\n" for o in outputs).encode()
    for n, (x, y) in enumerate(ands):
        lhs = 2 * (i + 1 + n)
        _varint(lhs - x, out)
        _varint(x - y, out)
    return bytes(out) + _comment_block(graph, comments)


# -- reading ------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data = data
        self.pos = 0
        self.line = 0
        self.source = source

    def fail(self, why: str):
        raise AigerError(f"{self.source}:{self.line}: {why}")

    def next_line(self, what: str) -> bytes:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            if self.pos >= len(self.data):
                self.fail(f"file ends where {what} was expected")
            end = len(self.data)
        text = self.data[self.pos:end]
        self.pos = end + 1
        self.line += 1
        return text

    def numbers(self, what: str, count: int) -> list[int]:
        text = self.next_line(what)
        parts = text.split()
        if len(parts) != count or not all(p.isdigit() for p in parts):
            self.fail(f"expected {what} ({count} unsigned numbers), got "
                      f"{text[:40].decode(errors='replace')!r}")
        return [int(p) for p in parts]

    def varint(self) -> int:
        x = shift = 0
        while True:
            if self.pos >= len(self.data):
                self.fail("binary AND section ends early")
            byte = self.data[self.pos]
            self.pos += 1
            x |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return x
            shift += 7


def parse(data: bytes, *, classes: int | None = None, source: str = "AIGER") -> gg.GateGraph:
    """A combinational AIGER file (ASCII ``aag`` or binary ``aig``) as a validated gate
    graph.

    Parameters
    ----------
    data : bytes
        The file's contents.
    classes : int, optional
        How many class groups the outputs form; default: the file's ``lgn-fpga classes K``
        comment.
    source : str
        The file name for messages.

    Returns
    -------
    GateGraph

    Raises
    ------
    AigerError
        Malformed, sequential, or no inputs/outputs, or no grouping known; the message names
        the file and line.
    """
    r = _Reader(data, source)
    header = r.next_line("the header").split()
    if not header or header[0] not in (b"aag", b"aig"):
        r.fail('not an AIGER file: the header must start with "aag" or "aig"')
    binary = header[0] == b"aig"
    if len(header) < 6 or len(header) > 10 or not all(p.isdigit() for p in header[1:]):
        r.fail("the header must be 'aag|aig M I L O A' (then optionally B C J F)")
    m, i, latches, o, a = (int(p) for p in header[1:6])
    extra = [int(p) for p in header[6:]]
    if latches:
        r.fail(f"{latches} latches: only combinational AIGER can become a gate graph")
    if any(extra):
        r.fail("bad-state, constraint, justice and fairness sections are not supported")
    if i == 0:
        r.fail("no inputs: a gate graph needs at least one input")
    if o == 0:
        r.fail("no outputs: a gate graph needs at least one output")
    if m < i + a:
        r.fail(f"M = {m} is less than I + A = {i + a}")
    limit = 2 * m + 1
    if binary:
        if m != i + a:
            r.fail(f"binary AIGER needs M = I + L + A, got M = {m}, I + A = {i + a}")
        inputs = [2 * (n + 1) for n in range(i)]
    else:
        inputs = [r.numbers("an input literal", 1)[0] for _ in range(i)]
    outputs = []
    for _ in range(o):
        lit = r.numbers("an output literal", 1)[0]
        if lit > limit:
            r.fail(f"output literal {lit} exceeds 2*M+1 = {limit}")
        outputs.append(lit)
    fanin: dict[int, tuple[int, int]] = {}
    if binary:
        for n in range(a):
            lhs = 2 * (i + 1 + n)
            d0 = r.varint()
            d1 = r.varint()
            if d0 > lhs or d1 > lhs - d0:
                r.fail(f"AND {n}: delta encoding points below literal 0")
            fanin[lhs >> 1] = (lhs - d0, lhs - d0 - d1)
    else:
        input_vars = {}
        for n, lit in enumerate(inputs):
            if lit < 2 or lit & 1 or lit > limit or (lit >> 1) in input_vars:
                r.line = 2 + n
                r.fail(f"input literal {lit} must be even, unique and in 2..2*M")
            input_vars[lit >> 1] = n
        for _ in range(a):
            lhs, x, y = r.numbers("an AND line 'lhs rhs0 rhs1'", 3)
            if lhs < 2 or lhs & 1 or lhs > limit or max(x, y) > limit:
                r.fail(f"AND {lhs} {x} {y}: lhs must be even and literals at most 2*M+1")
            if (lhs >> 1) in fanin or (lhs >> 1) in input_vars:
                r.fail(f"variable {lhs >> 1} is defined twice")
            fanin[lhs >> 1] = (x, y)
    # the classes comment, if any, sits in the comment section after the symbol table
    found = _CLASSES_COMMENT.search(data[r.pos:])
    if classes is None:
        if found is None:
            raise AigerError(f"{source}: the file does not record the class grouping; give "
                             f"--classes")
        classes = int(found.group(1))
    if classes < 1 or o % classes:
        raise AigerError(f"{source}: {o} outputs cannot form {classes} equal class groups")
    input_index = ({lit >> 1: n for n, lit in enumerate(inputs)})
    return _levelize(i, input_index, fanin, outputs, classes, source)


def levelize(n_inputs: int, inputs: dict, gates: dict, outputs: list, classes: int, *,
             source: str, meta: dict | None = None) -> gg.GateGraph:
    """A combinational netlist of 2-input gates as a layered gate graph.

    Parameters
    ----------
    n_inputs : int
        Input bits of the net.
    inputs : dict
        Signal key -> input bit index.
    gates : dict
        Signal key -> ``(op, a, b)``: an op of :mod:`lgn_fpga.net.ops` reading signals ``a``
        and ``b`` (``None`` where the op ignores that input).
    outputs : list
        ``(key, invert)`` per output bit in order; ``key`` None is the constant 0.
    classes : int
        Class groups of the outputs.
    source, meta
        For messages, and the graph's meta.

    Returns
    -------
    GateGraph
        A gate's layer is one more than its deepest input's (inputs are layer 0); a signal
        needed more than one layer later is carried by pass-through gates (op ``a``); the
        last layer holds one gate per output, output inversions folded into its op.

    Raises
    ------
    UserError
        A signal is used but never defined, or the gates form a cycle.
    """
    level: dict = {k: 0 for k in inputs}
    roots = {k for k, _ in outputs if k is not None}
    for root in roots:  # iterative DFS: deep netlists would overflow Python's recursion
        stack = [(root, False)]
        active = set()
        while stack:
            v, done = stack.pop()
            if v in level:
                continue
            if v not in gates:
                raise AigerError(f"{source}: signal {v} is used but never defined")
            fanin = [w for w in gates[v][1:] if w is not None]
            if done:
                level[v] = 1 + max((level[w] for w in fanin), default=0)
                active.discard(v)
                continue
            if v in active:
                raise AigerError(f"{source}: the gates form a cycle through signal {v}")
            active.add(v)
            stack.append((v, True))
            stack.extend((w, False) for w in fanin if w not in level)
    depth = max(1, *(level[k] for k, _ in outputs if k is not None), 1)
    direct = {k for k, _ in outputs if k in gates and level[k] == depth}
    need: dict = {}  # the deepest layer whose gates read the signal

    def needs(w, layer):
        if w is not None:
            need[w] = max(need.get(w, 0), layer)

    for k, _ in outputs:
        if k is not None and k not in direct:
            needs(k, depth)
    for k in direct:
        for w in gates[k][1:]:
            needs(w, depth)
    by_level: list[list] = [[] for _ in range(depth + 1)]
    for v, lev in level.items():
        if v in gates and lev < depth:
            by_level[lev].append(v)
    for lev in range(depth - 1, 0, -1):
        for v in by_level[lev]:
            if v in need:
                for w in gates[v][1:]:
                    needs(w, lev)
    position = dict(inputs)  # index of each available signal in the previous layer

    def pick(w):
        return 0 if w is None else position[w]

    # signal w is carried through layers level[w] + 1 .. need[w] - 1 (bucketed once, so the
    # work is the number of pass-through gates, not depth x signals)
    carried: list[list] = [[] for _ in range(depth)]
    for w in sorted(need, key=_order):
        for lev in range(level[w] + 1, need[w]):
            carried[lev].append(w)
    layers = []
    for lev in range(1, depth):
        a, b, op, new_position = [], [], [], {}
        for v in sorted((v for v in by_level[lev] if v in need), key=_order):
            g_op, x, y = gates[v]
            new_position[v] = len(op)
            a.append(pick(x)), b.append(pick(y)), op.append(g_op)
        for v in carried[lev]:
            new_position[v] = len(op)
            a.append(position[v]), b.append(position[v]), op.append(ops.A)
        if not op:  # nothing crosses this layer: keep it non-empty
            a.append(0), b.append(0), op.append(ops.FALSE)
        layers.append((a, b, op))
        position = new_position
    a, b, op = [], [], []
    for k, inv in outputs:
        if k is None:
            a.append(0), b.append(0), op.append(ops.TRUE if inv else ops.FALSE)
        elif k in direct:
            g_op, x, y = gates[k]
            a.append(pick(x)), b.append(pick(y))
            op.append(g_op ^ (15 if inv else 0))  # inverting an op inverts its truth table
        else:
            a.append(position[k]), b.append(position[k])
            op.append(ops.unary_on_a(int(inv), 1 - int(inv)))
    layers.append((a, b, op))
    return gg.make(n_inputs, layers, classes, meta=meta or {})


def _order(key):
    """Deterministic order of signal keys (ints, or tuples for other formats)."""
    return (str(type(key)), key)


def _levelize(n_inputs, input_index, fanin, outputs, classes, source) -> gg.GateGraph:
    gates = {}
    for v, (x, y) in fanin.items():
        gates[v] = (_and_op(x, y), x >> 1 or None, y >> 1 or None)
    outs = [((lit >> 1) or None, lit & 1) for lit in outputs]
    meta = {"imported_from": "aiger", "source": os.path.basename(source)}
    return levelize(n_inputs, input_index, gates, outs, classes, source=source, meta=meta)


def _and_op(x: int, y: int) -> int:
    """The op of a gate reading x's signal as a and y's as b that computes AND(x, y) with
    the literals' inversions (a constant literal ignores its input)."""
    op = 0
    for va in (0, 1):
        for vb in (0, 1):
            fx = (va if x >> 1 else 0) ^ (x & 1)
            fy = (vb if y >> 1 else 0) ^ (y & 1)
            op |= (fx & fy) << (3 - (2 * va + vb))
    return op


def load(path: str | os.PathLike, *, classes: int | None = None) -> gg.GateGraph:
    """Read a ``.aag``/``.aig`` file as a gate graph; see :func:`parse`.

    Raises
    ------
    UserError
        The file is missing, unreadable, malformed or not combinational.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    return parse(data, classes=classes, source=str(path))

