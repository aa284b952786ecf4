"""``LogicNetCore``: a gate graph as a fully pipelined Amaranth component.

Ports (the contract board tops code against)::

    in_bits    In(graph.inputs)   the input bits, sampled when in_valid = 1
    in_valid   In(1)
    out_valid  Out(1)             high for one cycle per accepted input, `latency` cycles later
    out_class  Out(max(1, ceil_log2(C)))            argmax of the scores, ties to lowest index
    out_scores Out(ArrayLayout(score_width, C))     popcount of each class's group of k bits

The timing contract is :data:`lgn_fpga.gateware.contract.STREAM_CONTRACT`. ``in_bits``
feeds the first gate layer combinationally; the result of every ``pipeline``-th gate layer,
and always the last layer, is registered. The class head (see :mod:`lgn_fpga.gateware.head`)
adds a registered popcount tree and a registered comparator tree.

Every gate layer is one named Signal (``layer0``, ``layer1``, ...; its register, where it
has one, is ``layerN_q``) driven by a single ``Cat`` of per-gate expressions: one
assignment per layer converts to RTLIL about 4x faster than one per bit, and keeps every
expression shallow however deep the net is. The ``Cat`` is nested in chunks of
:data:`CAT_CHUNK` so Amaranth's simulator copes with layers of any width.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from lgn_fpga.gateware.contract import with_contract
from lgn_fpga.gateware.head import ArgMax, Popcount, argmax_latency, popcount_latency
from lgn_fpga.net import ops
from lgn_fpga.net.graph import GateGraph

__all__ = ["DEFAULT_PIPELINE", "LogicNetCore", "gate_stages"]

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

    Attributes
    ----------
    latency : int
        Cycles from ``in_valid`` to ``out_valid`` (see the contract above).
    score_width : int
        ``bits_for(bits per class)``: the width of one score.
    """

    def __init__(self, graph: GateGraph, *, pipeline: int = DEFAULT_PIPELINE,
                 head_levels_per_stage: int = 1):
        if pipeline < 1:
            raise ValueError(f"pipeline must be at least 1 gate layer per stage, got {pipeline}")
        self.graph = graph
        self.pipeline = pipeline
        self.head_levels_per_stage = head_levels_per_stage
        self.score_width = graph.score_width
        self.class_width = graph.class_width
        self.gate_latency = gate_stages(graph.depth, pipeline)
        self.popcount_latency = popcount_latency(graph.group_size, head_levels_per_stage)
        self.argmax_latency = argmax_latency(graph.classes, head_levels_per_stage)
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
        previous = self.in_bits
        for n, layer in enumerate(graph.layers):
            bits = [previous[i] for i in range(len(previous))]
            gates = [gate_expression(op, bits[a], bits[b])
                     for a, b, op in zip(layer.a.tolist(), layer.b.tolist(), layer.op.tolist())]
            comb = Signal(len(layer), name=f"layer{n}")
            m.d.comb += comb.eq(_wide_cat(gates))
            self.layer_signals.append(comb)
            if (n + 1) % self.pipeline == 0 or n == graph.depth - 1:
                reg = Signal(len(layer), name=f"layer{n}_q", reset_less=True)
                m.d.sync += reg.eq(comb)
                previous = reg
            else:
                previous = comb

        # -- class head -----------------------------------------------------------------
        k = graph.group_size
        argmax = ArgMax(graph.classes, self.score_width,
                        levels_per_stage=self.head_levels_per_stage)
        m.submodules.argmax = argmax
        for c in range(graph.classes):
            popcount = Popcount(k, levels_per_stage=self.head_levels_per_stage)
            m.submodules[f"popcount{c}"] = popcount
            m.d.comb += [popcount.bits.eq(previous[c * k:(c + 1) * k]),
                         argmax.scores[c].eq(popcount.count)]

        # The scores wait beside the argmax so class and scores leave together.
        scores = argmax.scores
        for stage in range(argmax.latency):
            delayed = Signal.like(scores, name=f"scores_d{stage}", reset_less=True)
            m.d.sync += delayed.eq(scores)
            scores = delayed
        m.d.comb += [self.out_scores.eq(scores), self.out_class.eq(argmax.index)]

        # -- valid pipe (the only registers with a reset) --------------------------------
        valid = self.in_valid
        for stage in range(self.latency):
            delayed = Signal(name=f"valid_d{stage}")
            m.d.sync += delayed.eq(valid)
            valid = delayed
        m.d.comb += self.out_valid.eq(valid)
        return m
