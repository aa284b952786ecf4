"""``LogicNetCore``: a gate graph as a fully pipelined Amaranth component.

Ports (the contract board tops code against)::

    in_bits    In(graph.inputs)   the input bits, sampled when in_valid = 1
    in_valid   In(1)
    out_valid  Out(1)             high for one cycle per accepted input, `latency` cycles later
    out_class  Out(max(1, ceil_log2(C)))            argmax of the scores, ties to lowest index
    out_scores Out(ArrayLayout(score_width, C))     popcount of each class's group of k bits

The timing contract is :data:`lgn_fpga.gateware.contract.STREAM_CONTRACT`. ``in_bits``
feeds the first gate layer combinationally; the result of every ``pipeline``-th gate layer
except the last is registered. The last layer feeds the class head's half adders directly
(no register between them, so the mapper merges the two; their registers end the last gate
stage), then come the registered adder trees and comparator tree (see
:mod:`lgn_fpga.gateware.head`; latency formula in docs/core.md).

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

__all__ = ["DEFAULT_PIPELINE", "ClassCount", "LogicNetCore", "class_counts", "gate_stages"]

#: gate layers between pipeline registers; see docs/core.md for the measurements behind it.
DEFAULT_PIPELINE = 2


def gate_stages(depth: int, pipeline: int) -> int:
    """Registers along the gate layers: after every ``pipeline``-th layer and the last."""
    return -(-depth // pipeline)


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
        Gate layers between pipeline registers (``k``).
    head_levels_per_stage : int
        Popcount/argmax tree levels between registers.
    scores : bool
        Build the scores delay line so ``out_scores`` leaves with ``out_class`` (the UART
        and BIST tops need it). ``False``: no delay line, ``out_scores`` stays 0.
    split_compare : bool
        Register each argmax comparison before its mux (two registers per tree level, for
        the clock); ``False``: one register per level, fewer cells, about half the Fmax.

    Attributes
    ----------
    latency : int
        Cycles from ``in_valid`` to ``out_valid`` (see the contract above): ``gate_latency``
        + ``popcount_latency`` + ``argmax_latency``.
    class_counts : list of ClassCount
        How each class's score is counted (constant bits as an offset, duplicates weighted).
    score_width : int
        ``bits_for(bits per class)``: the width of one score.
    """

    def __init__(self, graph: GateGraph, *, pipeline: int = DEFAULT_PIPELINE,
                 head_levels_per_stage: int = 1, scores: bool = True,
                 split_compare: bool = True):
        if pipeline < 1:
            raise ValueError(f"pipeline must be at least 1 gate layer per stage, got {pipeline}")
        self.graph = graph
        self.pipeline = pipeline
        self.head_levels_per_stage = head_levels_per_stage
        self.scores = scores
        self.split_compare = split_compare
        self.score_width = graph.score_width
        self.class_width = graph.class_width
        self.class_counts = class_counts(graph)
        # The last gate stage ends in the popcounts' level-0 register (fused), so it counts
        # as a gate stage and the popcount adds only its adder levels.
        self.gate_latency = gate_stages(graph.depth, pipeline)
        self.popcount_latency = max(
            (popcount_latency(len(c.bits), head_levels_per_stage, c.weights, c.offset) - 1
             for c in self.class_counts if c.bits), default=0)
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

    def elaborate(self, platform):
        m = Module()
        graph = self.graph
        # The gate layers' Signals, for testbenches that look inside (see
        # lgn_fpga.verify.simulate.locate_mismatch). Layer n holds the result for an input
        # presented in cycle t during cycle t + n // pipeline.
        self.layer_signals = []

        # -- gate layers ----------------------------------------------------------------
        # Every pipeline-th layer is registered; the last stage is not: its layers feed the
        # popcounts' half adders directly, whose register ends the stage (see head.py).
        previous = self.in_bits
        for n, layer in enumerate(graph.layers):
            bits = [previous[i] for i in range(len(previous))]
            gates = [gate_expression(op, bits[a], bits[b])
                     for a, b, op in zip(layer.a.tolist(), layer.b.tolist(), layer.op.tolist())]
            comb = Signal(len(layer), name=f"layer{n}")
            m.d.comb += comb.eq(_wide_cat(gates))
            self.layer_signals.append(comb)
            if (n + 1) % self.pipeline == 0 and n != graph.depth - 1:
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
                        inverted=inverted)
        m.submodules.argmax = argmax
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
                                invert=invert, width=self.score_width)
            m.submodules[f"popcount{c}"] = popcount
            m.d.comb += popcount.bits.eq(Cat(previous[c * k + i] for i in counted.bits))
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
        # and out_scores stays 0.
        if self.scores:
            scores = Cat(~argmax.scores[c] if argmax.inverted[c] else argmax.scores[c]
                         for c in range(graph.classes))
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
        first = self.gate_latency + self.popcount_latency - 1
        m.d.comb += argmax.stage_valid.eq(Cat(pipe[first:first + argmax.latency]))
        return m
