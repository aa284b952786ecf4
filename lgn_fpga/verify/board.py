"""The board top that ``lgn-fpga sim-board`` serves on a pseudo-terminal: the same design a
build would put on the board, reporting the hash of the model the user named."""

from __future__ import annotations

from lgn_fpga.gateware.tops import BistTop, UartTop
from lgn_fpga.net import vectors
from lgn_fpga.net.graph import GateGraph
from lgn_fpga.net.optimize import optimize as optimize_net


def simulated_top(graph: GateGraph, top: str, *, divisor: int, pipeline: int | None,
                  optimize: bool = True, bist_vectors: int = 64, lanes: int | None = None):
    """A :class:`UartTop` or :class:`BistTop` (``top`` = "uart" or "bist") for ``graph``;
    with ``lanes``, around a :class:`~lgn_fpga.gateware.folded.FoldedCore` of that many
    lanes instead of the parallel core."""
    model_hash = graph.sha256()  # the board reports the net the user named, as a build does
    if optimize:
        graph, _ = optimize_net(graph)
    core = None
    if lanes is not None:
        from lgn_fpga.gateware.folded import FoldedCore

        core = FoldedCore(graph, lanes=lanes)
    if top == "uart":
        return UartTop(graph, divisor=divisor, pipeline=pipeline, model_hash=model_hash,
                       core=core)
    bits = vectors.make(graph, count=bist_vectors, seed=0).bits
    return BistTop(graph, bits, divisor=divisor, pipeline=pipeline, core=core)
