"""Will the net fit? LUT4s, flip-flops and logic cells of a build, from the net's shape.

The class head is counted from the very structure the core builds (the same
:func:`~lgn_fpga.gateware.core.class_counts` and
:func:`~lgn_fpga.gateware.head.plan_popcount`): every half adder, adder sum bit, carry-in
feed, comparator and register. The gate layers are counted from their logic gates and their
registers, with two constants measured on placed designs (``bench/resources.py`` prints
estimate and placement side by side).

On iCE40 a logic cell holds one LUT4, one carry cell and one flip-flop; a flip-flop shares a
cell only with the LUT that feeds it, so the cell count is LUT cells + carry-only cells +
flip-flops that copy a wire. On ECP5 LUTs and flip-flops sit in slices separately and the
LUT4 count (plus a LUT slot per carry-chain bit) is what fills the device.
"""

from __future__ import annotations

from lgn_fpga.errors import UserError
from lgn_fpga.net.graph import GateGraph

__all__ = ["LUTS_PER_LOGIC_GATE", "UART_OVERHEAD_FFS", "UART_OVERHEAD_LUTS", "check_fit",
           "core_resources", "estimate"]

# Receiver, sender, result FIFO, UARTs, heartbeat: measured on iCE40 with a 107-gate net as
# 701 LUT4 and 724 FFs in all, of which the net and its head are ~150 of each.
UART_OVERHEAD_LUTS = 550
UART_OVERHEAD_FFS = 550

#: The UART top around the parallel core, measured on the iCEBreaker build of the shipped
#: digits (384 inputs, pipeline 4: 1804 LUT4, 2556 FFs, 3184 cells in all): the receiver's
#: input register is one FF per input bit (FF-only cells), the rest rides in LUT cells.
UART_TOP_LUTS = 450
UART_TOP_FFS = 300

#: LUT4s per logic gate of the layers before the last, after Yosys/ABC packing (the last
#: layer is merged into the popcounts' half adders and counted with the head). Measured on
#: the shipped digits and random nets, see docs/core.md.
LUTS_PER_LOGIC_GATE = 0.55

#: Of the gate-layer flip-flops, the share that shares a cell with a LUT on iCE40 (the rest
#: copy a pass-through gate or a LUT that also feeds other logic).
NET_FF_PACKED = 0.5


def core_resources(graph: GateGraph, *, pipeline: int, scores: bool = True) -> dict:
    """LUT4s, carry cells, flip-flops and cells of ``LogicNetCore(graph, pipeline=...)``.

    Returns a dict with ``luts``, ``carries``, ``ffs``, ``ice40_cells`` and the head's share
    ``head_luts``, ``head_ffs``, ``head_cells`` (the last gate layer, fused into the head,
    counted with it)."""
    from amaranth.utils import bits_for, ceil_log2

    from lgn_fpga.gateware.core import class_counts, gate_stages
    from lgn_fpga.gateware.head import argmax_latency, plan_popcount
    from lgn_fpga.net import ops
    from lgn_fpga.net.optimize import logic_gates

    sw, classes = graph.score_width, graph.classes
    # -- gate layers before the last ------------------------------------------------------
    last = graph.layers[-1]
    trivial_last = sum(int(((last.op == op)).sum()) for op in (ops.FALSE, ops.TRUE, ops.A, ops.B))
    net_logic = logic_gates(graph) - (len(last.op) - trivial_last)
    net_luts = int(net_logic * LUTS_PER_LOGIC_GATE)
    net_ffs = sum(w for n, w in enumerate(graph.widths[:-1]) if (n + 1) % pipeline == 0)
    net_ff_only = int(net_ffs * (1 - NET_FF_PACKED))

    # -- popcounts (with the last layer) ------------------------------------------------
    luts = carries = ffs = feeds = ff_only = 0
    for counted in class_counts(graph):
        if not counted.bits:
            continue
        plan = plan_popcount(len(counted.bits), counted.weights, counted.offset)
        level0 = 2 * len(plan.pairs) + len(plan.spares) + len(plan.singles) + len(plan.weighted)
        luts += level0
        ffs += level0
        for level, ops_ in enumerate(plan.levels):
            maxima = plan.maxima[level + 1]
            for k, (_x, y, carry) in enumerate(ops_):
                width = bits_for(maxima[k])
                ffs += width
                if y < 0 and carry < 0:  # rides along
                    ff_only += width
                    continue
                luts += width
                carries += width - 1
                feeds += carry >= 0
    # -- argmax: a chain and a mux per comparison; split: the operands wait a cycle -----------
    iw = max(1, ceil_log2(classes))
    compares = classes - 1
    luts += compares * (1 + sw + iw)  # the carry-out's LUT, the muxes
    carries += compares * sw
    carry_only = compares * sw  # a comparison needs no sum: its chain cells hold no LUT
    ffs += compares * (sw + iw + 1)
    split_copies = compares * 2 * sw + iw * max(0, compares - classes // 2)
    ffs += split_copies
    ff_only += split_copies
    latency = argmax_latency(classes)
    if scores:  # the delay line: the first register behind a LUT, the rest copies
        ffs += classes * sw * latency
        ff_only += classes * sw * max(0, latency - 1)
    valid = gate_stages(graph.depth, pipeline) + latency + 8
    ffs += valid
    ff_only += valid
    head_cells = luts + feeds + ff_only + carry_only
    return {
        "luts": net_luts + luts, "carries": carries, "ffs": net_ffs + ffs,
        "ice40_cells": net_luts + net_ff_only + head_cells,
        "head_luts": luts, "head_ffs": ffs, "head_cells": head_cells,
    }


def estimate(graph: GateGraph, profile, *, top: str, pipeline: int, vectors: int = 0,
             score_width: int | None = None) -> dict:
    """LUTs, FFs, logic cells and block RAM bits the design should need, from the net's
    shape (see :func:`core_resources`) plus the board top's overhead."""
    from lgn_fpga.net.optimize import logic_gates

    logic = logic_gates(graph)
    sw = score_width or graph.score_width
    core = core_resources(graph, pipeline=pipeline, scores=True)
    luts, ffs, cells = core["luts"], core["ffs"], core["ice40_cells"]
    bram_bits = 0
    if top == "uart":
        luts += UART_TOP_LUTS
        ffs += UART_TOP_FFS + graph.inputs
        cells += UART_TOP_LUTS + graph.inputs
    else:
        bram_bits = vectors * (graph.inputs + graph.class_width + graph.classes * sw)
        luts += UART_OVERHEAD_LUTS
        ffs += UART_OVERHEAD_FFS
        cells += UART_OVERHEAD_LUTS
    if profile.family != "ice40":
        # ECP5 slices hold LUTs and FFs separately; a carry chain takes a LUT slot per bit.
        cells = luts + core["carries"]
    return {"gates": graph.gates, "logic_gates": logic, "luts": luts, "ffs": ffs,
            "cells": cells, "bram_bits": bram_bits, "capacity_luts": profile.luts,
            "capacity_ffs": profile.ffs, "capacity_bram_bits": profile.bram_bits}


def check_fit(est: dict, profile) -> None:
    """One line naming the numbers when the design cannot fit the device.

    Raises
    ------
    UserError
        If the estimate exceeds the device's LUTs, logic cells, FFs or block RAM.
    """
    problems = []
    if est["luts"] > est["capacity_luts"]:
        problems.append(f"~{est['luts']} LUTs needed, {est['capacity_luts']} available")
    elif est["cells"] > est["capacity_luts"]:
        problems.append(f"~{est['cells']} logic cells needed ({est['luts']} LUTs, "
                        f"{est['ffs']} FFs), {est['capacity_luts']} available")
    if est["ffs"] > est["capacity_ffs"]:
        problems.append(f"~{est['ffs']} FFs needed, {est['capacity_ffs']} available")
    if est["bram_bits"] > est["capacity_bram_bits"]:
        problems.append(f"{est['bram_bits']} block RAM bits needed, "
                        f"{est['capacity_bram_bits']} available")
    if problems:
        raise UserError(
            f"the net does not fit {profile.name} ({profile.device}): {est['gates']} gates "
            f"({est['logic_gates']} logic), {'; '.join(problems)}; use a bigger board"
            # --vectors only sizes the BIST top's block RAM: never suggest it for the UART top
            f"{', a smaller net or fewer --vectors' if est['bram_bits'] else ' or a smaller net'}"
            f" (--force builds anyway)")
