"""``LogicNetCore``: a gate graph as a fully pipelined Amaranth component.

Ports (the contract board tops code against)::

    in_bits    In(graph.inputs)   the input bits, sampled when in_valid = 1
    in_valid   In(1)
    out_valid  Out(1)             high for one cycle per accepted input, `latency` cycles later
    out_class  Out(max(1, ceil_log2(C)))            argmax of the scores, ties to lowest index
    out_scores Out(ArrayLayout(score_width, C))     popcount of each class's group of k bits

The timing contract is :data:`lgn_fpga.gateware.contract.STREAM_CONTRACT`. ``in_bits``
feeds the first gate layer combinationally; the gate layers in ``register_after`` are
registered: by default where the estimated LUT depth of a stage reaches ``stage_luts``
(:func:`place_registers`), or after every ``pipeline``-th layer; never the last. The last
layer feeds the class head's half adders directly (no register between them, so the mapper
merges the two; their registers end the last gate stage), then come the registered adder
trees and comparator tree (see :mod:`lgn_fpga.gateware.head`; latency formula in
docs/core.md).

Every gate layer is one named Signal (``layer0``, ``layer1``, ...; its register, where it
has one, is ``layerN_q``) driven by a single ``Cat`` of per-gate expressions: one
assignment per layer converts to RTLIL about 4x faster than one per bit, and keeps every
expression shallow however deep the net is. The ``Cat`` is nested in chunks of
:data:`CAT_CHUNK` so Amaranth's simulator copes with layers of any width.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from lgn_fpga.gateware.contract import with_contract
from lgn_fpga.gateware.head import (
    ArgMax,
    Popcount,
    argmax_latency,
    left_inverted,
    popcount_latency,
)
from lgn_fpga.net import ops
from lgn_fpga.net.graph import GateGraph

__all__ = ["AUTO", "DEFAULT_PIPELINE", "DEFAULT_STAGE_LUTS", "ClassCount", "LogicNetCore",
           "class_counts", "class_early", "class_wires", "gate_stages", "place_registers"]

#: ``pipeline`` value that places the gate-layer registers from the mapped LUT depth (see
#: :func:`place_registers`) instead of after every ``pipeline``-th layer.
AUTO = 0

#: the core's default ``pipeline``: registers placed from the mapped LUT depth.
DEFAULT_PIPELINE = AUTO

#: LUT4 levels per register stage when registers are placed from the mapped depth: two LUT
#: levels and their routing take just under 10 ns on the iCE40 UP5K (docs/core.md).
DEFAULT_STAGE_LUTS = 2

#: inputs of a LUT (iCE40 and ECP5 both have LUT4s).
LUT_INPUTS = 4


def gate_stages(depth: int, pipeline: int) -> int:
    """Registers along the gate layers registered every ``pipeline``-th layer: after every
    ``pipeline``-th layer and the last (the last one is the popcounts' level 0)."""
    return -(-depth // pipeline)


class _Mapped:
    """Per signal of one layer: estimated LUT level since the last register, the signals
    its LUT reads (``leaves``) and its origin (pass-through gates are their input's wire)."""

    __slots__ = ("level", "leaves", "origin")

    def __init__(self, level, leaves, origin):
        self.level, self.leaves, self.origin = level, leaves, origin


def _merge(parts: list, origin) -> _Mapped:
    """The LUT a gate of ``parts`` (its inputs' :class:`_Mapped`) maps to: merged into its
    inputs' LUTs where the union of their inputs still fits one LUT4 (what ABC's
    depth-oriented mapping does with trees of 2-input gates), otherwise a new LUT level."""
    top = max(p.level for p in parts)
    if top == 0:
        return _Mapped(1, frozenset().union(*(p.leaves for p in parts)), origin)
    leaves = frozenset().union(*(p.leaves if p.level == top else frozenset((p.origin,))
                                 for p in parts))
    if len(leaves) <= LUT_INPUTS:
        return _Mapped(top, leaves, origin)
    return _Mapped(top + 1, frozenset(p.origin for p in parts), origin)


def _merge_area(parts: list, origin) -> _Mapped:
    """As :func:`_merge`, but where a gate starts a new LUT level, an input whose own inputs
    still fit beside the others is absorbed instead of being a LUT of its own (the area
    ABC's mapping recovers; the depth is the same). For counting LUTs (the fit estimate),
    not for placing registers."""
    merged = _merge(parts, origin)
    if merged.level == max(p.level for p in parts):
        return merged
    chosen = [frozenset((p.origin,)) for p in parts]
    for i in sorted(range(len(parts)), key=lambda i: len(parts[i].leaves)):
        trial = chosen[:i] + [parts[i].leaves] + chosen[i + 1:]
        if len(frozenset().union(*trial)) <= LUT_INPUTS:
            chosen = trial
    return _Mapped(merged.level, frozenset().union(*chosen), origin)


def _map_layer(layer, previous: list, layer_index: int, merge=_merge) -> list:
    """:class:`_Mapped` of every gate of ``layer`` reading ``previous``."""
    out = []
    for g, (a, b, op) in enumerate(zip(layer.a.tolist(), layer.b.tolist(),
                                       layer.op.tolist())):
        origin = (layer_index, g)
        if op in ops.CONSTANT_OPS:
            out.append(_Mapped(0, frozenset(), origin))
        elif op == ops.A:
            out.append(previous[a])
        elif op == ops.B:
            out.append(previous[b])
        elif ops.IGNORES_B[op] or a == b:
            out.append(merge([previous[a]], origin))
        elif ops.IGNORES_A[op]:
            out.append(merge([previous[b]], origin))
        else:
            out.append(merge([previous[a], previous[b]], origin))
    return out


def _registered(mapped: list, layer_index: int) -> list:
    """A layer's signals after a register: level 0, one flip-flop per distinct origin."""
    return [_Mapped(0, frozenset((("q", layer_index, m.origin),)), ("q", layer_index, m.origin))
            for m in mapped]


def map_layers(graph: GateGraph, register_after, *, area: bool = False) -> list:
    """The estimated LUT mapping of every gate layer (see :func:`place_registers`), with
    registers after the layers in ``register_after``: one list of per-gate records
    (``level``, ``leaves``, ``origin``) per layer, as read before its register. A gate
    origin ``(n, g)`` named among some LUT's ``leaves`` is a LUT output of its own.
    ``area``: absorb what still fits where a gate starts a new level (:func:`_merge_area`;
    the depths are the same, fewer LUTs)."""
    cuts = set(register_after)
    merge = _merge_area if area else _merge
    state = [_Mapped(0, frozenset((("in", i),)), ("in", i)) for i in range(graph.inputs)]
    result = []
    for n, layer in enumerate(graph.layers):
        mapped = _map_layer(layer, state, n, merge)
        result.append(mapped)
        state = _registered(mapped, n) if n in cuts else mapped
    return result


def merge_pair(x, y, origin, *, area: bool = False):
    """The LUT of a half adder reading class bits mapped as ``x`` and ``y`` (``area``: as
    :func:`_merge_area`, for counting)."""
    return (_merge_area if area else _merge)([x, y], origin)


def place_registers(graph: GateGraph, stage_luts: int = DEFAULT_STAGE_LUTS) -> tuple:
    """The gate layers after which :class:`LogicNetCore` registers (``pipeline=AUTO``):
    as few as keep every stage within ``stage_luts`` LUT4 levels, each placed as late as
    possible, so that a register sits behind a LUT (its flip-flop shares the LUT's cell)
    rather than copying a wire of an earlier stage.

    The depth is estimated from the net (pass-through gates are wires, a gate merges into
    its inputs' LUT while the union of their inputs fits a LUT4); the last stage includes
    the popcounts' level-0 half adders, which read two class bits each.

    Raises
    ------
    ValueError
        If ``stage_luts`` is below 1.
    """
    if stage_luts < 1:
        raise ValueError(f"stage_luts must be at least 1 LUT level, got {stage_luts}")
    cuts = []
    state = [_Mapped(0, frozenset((("in", i),)), ("in", i)) for i in range(graph.inputs)]
    previous_layer = None
    start = 0
    k = graph.group_size
    last_index = graph.depth - 1
    for n, layer in enumerate(graph.layers):
        mapped = _map_layer(layer, state, n)
        over = max((m.level for m in mapped), default=0) > stage_luts
        if n == last_index and not over:
            # the half adders of level 0 read pairs of class bits in the last stage
            heads = [_merge([mapped[c * k + i], mapped[c * k + i + 1]], ("ha", c, i))
                     for c in range(graph.classes) for i in range(0, k - 1, 2)]
            over = max((m.level for m in heads), default=0) > stage_luts
        if over and n > start:
            cuts.append(n - 1)
            state = _registered(previous_layer, n - 1)
            mapped = _map_layer(layer, state, n)
            start = n
        state, previous_layer = mapped, mapped
    return tuple(cuts)


def gate_expression(op: int, a, b):
    """One gate as an Amaranth expression of 1-bit values ``a`` and ``b`` (from
    :data:`lgn_fpga.net.ops.FORMS`)."""
    return ops.apply(op, a, b, Const(0, 1), Const(1, 1))


#: most operands in one Cat: Amaranth's Python simulator compiles a Cat into one flat chain
#: of ``|``, which overflows Python's compiler recursion limit beyond a few thousand operands.
CAT_CHUNK = 256


def _wide_cat(parts: list):
    """``Cat(*parts)``, nested in chunks of :data:`CAT_CHUNK` (the same bits, the same single
    assignment in RTLIL) so any layer width simulates."""
    if len(parts) <= CAT_CHUNK:
        return Cat(*parts)
    return Cat(*(Cat(*parts[i:i + CAT_CHUNK]) for i in range(0, len(parts), CAT_CHUNK)))


@dataclass(frozen=True)
class ClassCount:
    """How one class's score is counted: ``offset`` + sum of ``weights[i]`` x (last-layer
    gate ``bits[i]``).

    Constant class bits fold into ``offset``; a gate that computes the same function of the
    same inputs as another in the class is counted once with a larger weight; a gate and
    its complement together always count 1 (into ``offset``)."""

    bits: tuple
    weights: tuple
    offset: int


def _gate_key(a: int, b: int, op: int) -> tuple:
    """(inputs, truth table) of a gate, canonical: an op that ignores an input reads the
    other input alone, and two-input gates read their inputs in ascending order. A gate's
    complement has the key (inputs, 15 - op)."""
    if ops.IGNORES_B[op] or a == b:
        f0, f1 = ops.truth(op, 0, 0), ops.truth(op, 1, 1 if a == b else 0)
        return (a, a, int(ops.unary_on_a(f0, f1)))
    if ops.IGNORES_A[op]:
        return (b, b, int(ops.unary_on_a(ops.truth(op, 0, 0), ops.truth(op, 0, 1))))
    if a > b:
        return (b, a, int(ops.SWAPPED[op]))
    return (a, b, op)


def class_counts(graph: GateGraph) -> list[ClassCount]:
    """Each class's :class:`ClassCount` from the net's last layer."""
    last = graph.layers[-1]
    k = graph.group_size
    result = []
    for c in range(graph.classes):
        offset = 0
        first: dict[tuple, int] = {}   # key -> the first gate with that function
        count: dict[tuple, int] = {}
        for g in range(c * k, (c + 1) * k):
            op = int(last.op[g])
            if op in ops.CONSTANT_OPS:
                offset += op == ops.TRUE
                continue
            key = _gate_key(int(last.a[g]), int(last.b[g]), op)
            first.setdefault(key, g)
            count[key] = count.get(key, 0) + 1
        for key in list(count):  # x + ~x = 1
            complement = (key[0], key[1], 15 - key[2])
            if key in count and complement in count:
                both = min(count[key], count[complement])
                offset += both
                for kk in (key, complement):
                    count[kk] -= both
        keys = [key for key in first if count[key] > 0]
        result.append(ClassCount(tuple(first[key] - c * k for key in keys),
                                 tuple(count[key] for key in keys), offset))
    return result


def class_wires(graph: GateGraph, c: int, counted: ClassCount) -> tuple:
    """Indices into ``counted.bits`` (class ``c``'s) of the bits that are wires: pass-through
    gates of the last layer, so straight from a register or an input."""
    last = graph.layers[-1].op
    base = c * graph.group_size
    return tuple(i for i, b in enumerate(counted.bits) if int(last[base + b]) in (ops.A, ops.B))


def class_early(graph: GateGraph, register_after, c: int, counted: ClassCount,
                mapped: list | None = None) -> dict:
    """Class ``c``'s counted bits (indices into ``counted.bits``, unit weight) that the
    last gate register only copies: passed through (ops 3, 5) from layer n, the last one
    registered, where they are wires themselves (an input or an earlier register). Each
    maps to its index in layer n, whose Signal holds it a cycle before the last layer does.
    The popcount counts them from there (``Popcount(early=...)``), so the register copying
    them is not built. ``mapped``: :func:`map_layers` of ``register_after``, if at hand."""
    if not register_after:
        return {}
    n = max(register_after)
    mapped = mapped if mapped is not None else map_layers(graph, register_after)
    k = graph.group_size
    found = {}
    for i, (b, w) in enumerate(zip(counted.bits, counted.weights)):
        if w != 1:
            continue
        x = c * k + b
        for layer in range(graph.depth - 1, n, -1):
            gates = graph.layers[layer]
            op = int(gates.op[x])
            if op not in (ops.A, ops.B):
                break
            x = int(gates.a[x] if op == ops.A else gates.b[x])
        else:
            if mapped[n][x].level == 0 and mapped[n][x].leaves:
                found[i] = x
    return found


def _wires_first(counted: ClassCount, ops_of_bits: list) -> ClassCount:
    order = sorted(range(len(counted.bits)),
                   key=lambda i: ops_of_bits[i] not in (ops.A, ops.B))
    return ClassCount(tuple(counted.bits[i] for i in order),
                      tuple(counted.weights[i] for i in order), counted.offset)


def spread_tables(counts: list, tables: int, table_bits: int) -> tuple:
    """Lookup tables per class: ``tables`` dealt round robin over the classes, each class
    taking at most as many as its unit-weight bits fill."""
    room = [sum(w == 1 for w in c.weights) // table_bits if table_bits >= 2 else 0
            for c in counts]
    given = [0] * len(counts)
    left = max(0, tables)
    while left and any(g < r for g, r in zip(given, room)):
        for c in range(len(counts)):
            if left and given[c] < room[c]:
                given[c] += 1
                left -= 1
    return tuple(given)


@with_contract
class LogicNetCore(wiring.Component):
    """The gate network plus class head, one input per cycle, ``latency`` cycles deep.

{stream_contract}

    Parameters
    ----------
    graph : GateGraph
        The net to build (as is: run :func:`lgn_fpga.net.optimize.optimize` first to drop dead
        gates and constants).
    pipeline : int
        Gate layers between pipeline registers (``k``, an override); ``AUTO`` (0, the
        default) places them from the mapped LUT depth (:func:`place_registers`).
    stage_luts : int
        With ``pipeline=AUTO``: LUT4 levels per register stage (from the target clock;
        :data:`DEFAULT_STAGE_LUTS` for 100 MHz on iCE40, 250 MHz on ECP5).
    head_levels_per_stage : int
        Popcount/argmax tree levels between registers.
    scores : bool or "held"
        ``True``: a delay line as long as the argmax, so ``out_scores`` leaves with
        ``out_class`` for every input (the BIST top, whose inputs come back to back).
        ``"held"``: one register instead, loaded as the counts enter the argmax and held
        until the next input's counts do; ``out_scores`` is then right at ``out_valid``
        whenever inputs are at least ``argmax_latency`` cycles apart (the UART top, one
        input per request frame: ``classes x score_width`` flip-flops instead of
        ``argmax_latency`` times as many). ``False``: none, ``out_scores`` stays 0.
    split_compare : bool
        Register each argmax comparison before its mux (two registers per tree level, for
        the clock); ``False``: one register per level, fewer cells, about half the Fmax.
    popcount_tables : int
        Lookup tables (block RAMs) the popcounts may use, spread over the classes: each
        counts ``table_bits`` class bits (see :class:`~lgn_fpga.gateware.head.Popcount`).
        0 (the default): logic only, for a core that does not know its device.
    full_adders : bool
        Let the popcounts sum class bits that are wires three at a time at level 0 (full
        adders; see :func:`~lgn_fpga.gateware.head.plan_popcount`); ``False``: half adders
        and carry-ins only, as before.
    early_bits : bool
        Count the class bits that the last gate register would only copy (passed through
        from an input or an earlier register) from before that register, a cycle early,
        three at a time through full adders (:func:`class_early`), so that register is not
        built for them; ``False`` (the default): through the register like the others.
        Board builds turn it on; the formal check (``lgn-fpga verify``) proves the core
        without it, since its staged proof reads each piece from the previous cut only.
    carry_out_lut : bool
        Put a LUT between each carry-out and its flip-flop (``x ^ ~valid``, exact whenever
        the data is valid): on iCE40 the flip-flop then shares the LUT's cell instead of
        taking one of its own. ``False`` for ECP5, whose slice flip-flops take a carry-out
        directly: there the LUT is only delay (it was on the critical path of mnist400's
        core at 243 MHz).
    table_bits : int
        Address bits of one table: 10 on iCE40 (SB_RAM40_4K as 1024 x 4), 12 on ECP5
        (DP16KD as 4096 x 4).

    Attributes
    ----------
    register_after : tuple of int
        The gate layers whose outputs are registered (``layerN_q``); never the last.
    layer_cycle : tuple of int
        For each gate layer, the cycle (after the input's) in which its ``layerN`` Signal
        holds that input's result.
    latency : int
        Cycles from ``in_valid`` to ``out_valid`` (see the contract above): ``gate_latency``
        + ``popcount_latency`` + ``argmax_latency``.
    class_counts : list of ClassCount
        How each class's score is counted (constant bits as an offset, duplicates weighted).
    score_width : int
        ``bits_for(bits per class)``: the width of one score.
    """

    def __init__(self, graph: GateGraph, *, pipeline: int | None = DEFAULT_PIPELINE,
                 stage_luts: int = DEFAULT_STAGE_LUTS, head_levels_per_stage: int = 1,
                 scores: bool = True, split_compare: bool = True, popcount_tables: int = 0,
                 table_bits: int = 10, full_adders: bool = True, carry_out_lut: bool = True,
                 early_bits: bool = False):
        pipeline = pipeline or AUTO
        if pipeline < 0:
            raise ValueError(f"pipeline must be at least 1 gate layer per stage (or 0: "
                             f"placed from the LUT depth), got {pipeline}")
        self.graph = graph
        self.pipeline = pipeline
        self.stage_luts = stage_luts
        if pipeline == AUTO:
            self.register_after = place_registers(graph, stage_luts)
        else:
            self.register_after = tuple(n for n in range(graph.depth - 1)
                                        if (n + 1) % pipeline == 0)
        cuts = set(self.register_after)
        cycle, cycles = 0, []
        for n in range(graph.depth):
            cycles.append(cycle)
            cycle += n in cuts
        self.layer_cycle = tuple(cycles)
        self.head_levels_per_stage = head_levels_per_stage
        if scores not in (True, False, "held"):
            raise ValueError(f"scores must be True, False or 'held', got {scores!r}")
        self.scores = scores
        self.split_compare = split_compare
        self.score_width = graph.score_width
        self.class_width = graph.class_width
        self.class_counts = class_counts(graph)
        if popcount_tables > 0:
            # Class bits that are wires (pass-through gates) go to the lookup tables first:
            # a RAM address reads a register directly, where a half adder would need a LUT
            # of its own for them (a logic gate merges into the half adder's LUT instead).
            last = graph.layers[-1].op
            self.class_counts = [_wires_first(c, [int(last[cls * graph.group_size + i])
                                                  for i in c.bits])
                                 for cls, c in enumerate(self.class_counts)]
        self.table_bits = table_bits
        self.full_adders = full_adders
        self.carry_out_lut = carry_out_lut
        self.class_tables = spread_tables(self.class_counts, popcount_tables, table_bits)
        self.early_bits = early_bits
        mapped = map_layers(graph, self.register_after) if early_bits else None
        #: per class, {counted bit: its index in the last registered layer} for the bits
        #: the popcount takes a cycle early (see class_early)
        self.class_early = [class_early(graph, self.register_after, c, counted, mapped)
                            if early_bits else {}
                            for c, counted in enumerate(self.class_counts)]
        # The last gate stage ends in the popcounts' level-0 register (fused), so it counts
        # as a gate stage and the popcount adds only its adder levels.
        self.gate_latency = len(self.register_after) + 1
        self.popcount_latency = max(
            (popcount_latency(len(c.bits), head_levels_per_stage, c.weights, c.offset,
                              tables=t, table_bits=table_bits, wires=self.class_wires(cls),
                              full_adders=full_adders, early=tuple(self.class_early[cls]))
             - 1 for cls, (c, t) in enumerate(zip(self.class_counts, self.class_tables))
             if c.bits), default=0)
        self.argmax_latency = argmax_latency(graph.classes, head_levels_per_stage, split_compare)
        self.latency = self.gate_latency + self.popcount_latency + self.argmax_latency
        self.layer_signals: list[Signal] = []  # filled by elaborate()
        super().__init__({
            "in_bits": In(graph.inputs),
            "in_valid": In(1),
            "out_valid": Out(1),
            "out_class": Out(self.class_width),
            "out_scores": Out(data.ArrayLayout(self.score_width, graph.classes)),
        })

    def class_wires(self, c: int) -> tuple:
        """Indices into class ``c``'s counted bits of those that are wires (pass-through
        gates of the last layer, so straight from a register or an input)."""
        return class_wires(self.graph, c, self.class_counts[c])

    def elaborate(self, platform):
        m = Module()
        graph = self.graph
        # The gate layers' Signals, for testbenches that look inside (see
        # lgn_fpga.verify.simulate.locate_mismatch). Layer n holds the result for an input
        # presented in cycle t during cycle t + layer_cycle[n].
        self.layer_signals = []

        # -- gate layers ----------------------------------------------------------------
        # The layers in register_after are registered; the last is not: its gates feed the
        # popcounts' half adders directly, whose register ends the stage (see head.py).
        previous = self.in_bits
        for n, layer in enumerate(graph.layers):
            bits = [previous[i] for i in range(len(previous))]
            gates = [gate_expression(op, bits[a], bits[b])
                     for a, b, op in zip(layer.a.tolist(), layer.b.tolist(), layer.op.tolist())]
            comb = Signal(len(layer), name=f"layer{n}")
            m.d.comb += comb.eq(_wide_cat(gates))
            self.layer_signals.append(comb)
            if n in self.register_after:
                reg = Signal(len(layer), name=f"layer{n}_q", reset_less=True)
                m.d.sync += reg.eq(comb)
                previous = reg
            else:
                previous = comb

        # -- class head -----------------------------------------------------------------
        k = graph.group_size
        inverted = left_inverted(graph.classes) if self.split_compare else None
        argmax = ArgMax(graph.classes, self.score_width,
                        levels_per_stage=self.head_levels_per_stage, split=self.split_compare,
                        inverted=inverted, carry_out_lut=self.carry_out_lut)
        m.submodules.argmax = argmax
        valid_at_argmax = Signal()  # the counts entering the argmax are valid
        taps = []
        for c, counted in enumerate(self.class_counts):
            invert = argmax.inverted[c]
            if not counted.bits:  # every bit constant
                value = Const(counted.offset, self.score_width)
                m.d.comb += argmax.scores[c].eq(~value if invert else value)
                continue
            popcount = Popcount(len(counted.bits), weights=counted.weights,
                                offset=counted.offset,
                                levels_per_stage=self.head_levels_per_stage,
                                invert=invert, width=self.score_width,
                                tables=self.class_tables[c], table_bits=self.table_bits,
                                wires=self.class_wires(c), full_adders=self.full_adders,
                                carry_out_lut=self.carry_out_lut,
                                early=tuple(self.class_early[c]))
            m.submodules[f"popcount{c}"] = popcount
            m.d.comb += popcount.bits.eq(Cat(previous[c * k + i] for i in counted.bits))
            if popcount.early:  # from the last registered layer, before its register
                before = self.layer_signals[max(self.register_after)]
                m.d.comb += popcount.early_bits.eq(
                    Cat(before[self.class_early[c][i]] for i in popcount.early))
            # Register stage i of the popcount holds the data of valid register
            # gate_latency + i (1-based); the taps are filled in with the valid pipe below.
            taps.append(popcount.stage_valid)
            # A class whose duplicates made its tree shorter waits for the others.
            score = popcount.count
            for stage in range(popcount.latency - 1, self.popcount_latency):
                delayed = Signal.like(score, name=f"count{c}_d{stage}", reset_less=True)
                m.d.sync += delayed.eq(score)
                score = delayed
            m.d.comb += argmax.scores[c].eq(score)

        # The scores wait beside the argmax so class and scores leave together (the first
        # delay register undoes the complement of the argmax's left operands: a LUT in
        # front of a flip-flop, free). A core built with scores=False has no delay line
        # and out_scores stays 0; with scores="held" one register takes the counts as
        # they enter the argmax (valid) and holds them.
        first = self.gate_latency + self.popcount_latency - 1  # pipe index at the argmax
        if self.scores:
            scores = Cat(~argmax.scores[c] if argmax.inverted[c] else argmax.scores[c]
                         for c in range(graph.classes))
            if self.scores == "held" and argmax.latency:
                held = Signal(len(scores), name="scores_held", reset_less=True)
                with m.If(valid_at_argmax):
                    m.d.sync += held.eq(scores)
                scores = held
            else:
                for stage in range(argmax.latency):
                    delayed = Signal(len(scores), name=f"scores_d{stage}", reset_less=True)
                    m.d.sync += delayed.eq(scores)
                    scores = delayed
            m.d.comb += self.out_scores.eq(scores)
        m.d.comb += self.out_class.eq(argmax.index)

        # -- valid pipe (the only registers with a reset) --------------------------------
        valid = self.in_valid
        pipe = []
        for stage in range(self.latency):
            delayed = Signal(name=f"valid_d{stage}")
            m.d.sync += delayed.eq(valid)
            valid = delayed
            pipe.append(delayed)
        m.d.comb += self.out_valid.eq(valid)
        for tap in taps:
            m.d.comb += tap.eq(Cat(pipe[self.gate_latency - 1:self.gate_latency - 1 + len(tap)]))
        # ArgMax stage i reads the data held in core register gate + popcount + i (1-based).
        m.d.comb += argmax.stage_valid.eq(Cat(pipe[first:first + argmax.latency]))
        if argmax.latency:
            m.d.comb += valid_at_argmax.eq(pipe[first])
        return m
