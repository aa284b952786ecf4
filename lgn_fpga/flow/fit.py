"""Will the net fit? LUT4s, flip-flops and logic cells of a build, from the net's shape.

The class head is counted from the very structure the core builds (the same
:func:`~lgn_fpga.gateware.core.class_counts` and
:func:`~lgn_fpga.gateware.head.plan_popcount`): every half adder, adder sum bit, carry-in
feed, comparator and register. The gate layers are counted from the core's own estimate of
the LUT mapping (the one that places its registers) and the registers it places
(``bench/resources.py`` prints estimate and placement side by side).

On iCE40 a logic cell holds one LUT4, one carry cell and one flip-flop; a flip-flop shares a
cell only with the LUT that feeds it, so the cell count is LUT cells + carry-only cells +
flip-flops that copy a wire. On ECP5 LUTs and flip-flops sit in slices separately and the
LUT4 count (plus a LUT slot per carry-chain bit) is what fills the device.
"""

from __future__ import annotations

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.net.analysis import live_masks
from lgn_fpga.net.graph import GateGraph

__all__ = ["LUTS_PER_LOGIC_GATE", "UART_OVERHEAD_FFS", "UART_OVERHEAD_LUTS", "check_fit",
           "core_resources", "estimate", "top_bram_blocks"]

# Receiver, sender, result FIFO, UARTs, heartbeat: measured on iCE40 with a 107-gate net as
# 701 LUT4 and 724 FFs in all, of which the net and its head are ~150 of each.
UART_OVERHEAD_LUTS = 550
UART_OVERHEAD_FFS = 550

#: The UART top around the parallel core, measured on the iCEBreaker build of the shipped
#: digits (384 inputs, pipeline 4: 1804 LUT4, 2556 FFs, 3184 cells in all): the receiver's
#: input register is one FF per input bit (FF-only cells), the rest rides in LUT cells.
UART_TOP_LUTS = 450
UART_TOP_FFS = 300

#: LUT4s per logic gate of a net mapped with registers every other layer (measured on the
#: shipped digits and random nets); the parallel core's estimate now maps the net itself
#: (:func:`core_resources`), this stays for rough per-gate estimates.
LUTS_PER_LOGIC_GATE = 0.55


def _is_gate(origin) -> bool:
    return isinstance(origin[0], int)


def _read_after(graph: GateGraph, core, n: int) -> np.ndarray:
    """Indices of layer ``n`` (the last registered one) that something after its register
    reads: the class bits the popcounts take from the last layer (not those taken a cycle
    early, see ``class_early``), back through the layers between."""
    k = graph.group_size
    need = np.zeros(graph.widths[-1], dtype=bool)
    for c, counted in enumerate(core.class_counts):
        for i, b in enumerate(counted.bits):
            if i not in core.class_early[c]:
                need[c * k + b] = True
    return np.flatnonzero(live_masks(graph, need, down_to=n)[n])


def core_resources(graph: GateGraph, *, pipeline: int | None = 0, stage_luts: int | None = None,
                   family: str = "ice40", scores: bool | str = True,
                   popcount_tables: int = 0,
                   table_bits: int = 10, carry_out_lut: bool = True,
                   early_bits: bool = False, split_compare: bool = True) -> dict:
    """LUT4s, carry cells, flip-flops and logic cells of ``LogicNetCore(graph, ...)`` (the
    same options), counted from the structure the core builds.

    The gate layers are counted from the core's own LUT-depth model
    (:func:`lgn_fpga.gateware.core.map_layers`): a gate is a LUT where another LUT reads
    it, a register or a popcount reads it, or it is a half adder's input the half adder
    cannot absorb; a register behind a LUT that feeds nothing else shares its cell, any
    other one (a pass-through wire, an input) takes a cell of its own. The head is counted
    from ``class_counts`` and ``plan_popcount``: half adders, sum bits, carry-in feeds,
    spares waiting, comparators, mux and copy registers, delay line, valid pipe.

    Returns a dict with ``luts``, ``carries`` (iCE40 SB_CARRY), ``ffs``, ``cells`` (iCE40
    logic cells, or ECP5 TRELLIS_COMB slots: LUT4s plus two per CCU2C), ``ice40_cells``,
    ``tables`` (block RAMs) and the head's share ``head_luts``, ``head_ffs``,
    ``head_cells``."""
    from amaranth.utils import bits_for, ceil_log2

    from lgn_fpga.gateware.core import (
        DEFAULT_STAGE_LUTS,
        LUT_INPUTS,
        LogicNetCore,
        map_layers,
        merge_pair,
    )
    from lgn_fpga.gateware.head import argmax_tree_levels, plan_popcount

    core = LogicNetCore(graph, pipeline=pipeline or 0,  # its shape only: never elaborated
                        stage_luts=stage_luts or DEFAULT_STAGE_LUTS, scores=scores,
                        popcount_tables=popcount_tables, table_bits=table_bits,
                        early_bits=early_bits, split_compare=split_compare)
    core._MustUse__silence = True  # (Amaranth warns about elaboratables never elaborated)
    sw, classes, k = graph.score_width, graph.classes, graph.group_size
    mapped = map_layers(graph, core.register_after, area=True)
    tables_used = 0  # the tables the popcount plans use (of those dealt to the classes)
    roots: set = set()    # gate origins that are LUT outputs
    leaf_uses: dict = {}  # gate origin -> LUTs reading it
    for layer in mapped:
        for m in layer:
            if m.level > 0 and m.origin[0] != "q":
                for leaf in m.leaves:
                    if _is_gate(leaf):
                        roots.add(leaf)
                        leaf_uses[leaf] = leaf_uses.get(leaf, 0) + 1
    # -- gate-layer registers -------------------------------------------------------------
    net_ffs = net_ff_only = 0
    last_cut = max(core.register_after, default=None)
    for n in core.register_after:
        read = _read_after(graph, core, n) if n == last_cut else range(len(mapped[n]))
        held = {mapped[n][j].origin: mapped[n][j] for j in read
                if mapped[n][j].level > 0 or mapped[n][j].leaves}
        for origin, m in held.items():
            net_ffs += 1
            if _is_gate(origin) and m.level > 0:
                roots.add(origin)
                net_ff_only += leaf_uses.get(origin, 0) > 0  # the LUT feeds logic too
            else:
                net_ff_only += 1  # a wire: an input or an earlier register
    # -- popcounts with the last layer ---------------------------------------------------
    last = mapped[-1]
    luts = carries = ffs = ff_only = feeds = ecp5_sum_luts = ecp5_small_luts = ccu2 = 0
    for c, (counted, tables) in enumerate(zip(core.class_counts, core.class_tables)):
        if not counted.bits:
            continue
        plan = plan_popcount(len(counted.bits), counted.weights, counted.offset,
                             tables=tables, table_bits=table_bits, wires=core.class_wires(c),
                             early=tuple(core.class_early[c]))
        bit = [last[c * k + i] for i in counted.bits]
        tables_used += len(plan.tables)
        # bits counted a cycle early: full adders then, their counts summed in level 0's
        # cycle (three LUT4s, no chain), an odd one waiting in two flip-flops
        luts += 2 * len(plan.early_triples)
        ffs += 2 * len(plan.early_triples)
        for _x, y in plan.early_sums:
            luts += 3 * (y >= 0)
            ffs += 3 if y >= 0 else 2
            ff_only += 2 * (y < 0)
        for i, j in plan.pairs:
            ha = merge_pair(bit[i], bit[j], ("ha", c, i), area=True)
            luts += 2
            ffs += 2
            for leaf in ha.leaves:
                if _is_gate(leaf):
                    roots.add(leaf)
        for triple in getattr(plan, "triples", ()):  # level-0 full adders: sum and carry
            luts += 2
            ffs += 2
            for i in triple:
                if bit[i].level > 0:  # (they take wires; a gate stays a LUT of its own)
                    roots.add(bit[i].origin)
        for i in list(plan.spares) + list(plan.singles) + [i for i, _ in plan.weighted]:
            ffs += 1
            if bit[i].level > 0:
                roots.add(bit[i].origin)  # the gate's LUT, its flip-flop in the same cell
            else:
                ff_only += 1
        for group, late in zip(plan.tables, plan.table_late):
            for i in group:
                if late:  # the address register: behind its LUT, or a copy of a wire
                    ffs += 1
                    ff_only += bit[i].level == 0
                if bit[i].level > 0:
                    roots.add(bit[i].origin)
        for level, ops_ in enumerate(plan.levels):
            for j, (_x, y, carry) in enumerate(ops_):
                width = bits_for(plan.maxima[level + 1][j])
                ffs += width
                if y < 0 and carry < 0:  # rides along
                    ff_only += width
                    continue
                luts += width
                carries += width - 1
                ecp5_sum_luts += width
                if width <= ECP5_ALU_LUT_WIDTH:  # Yosys maps it to LUTs: a sum and a carry a bit
                    ecp5_small_luts += 2 * (width - 1)
                else:
                    ccu2 += -(-(width + 1) // 2)
                if carry >= 0:
                    feeds += 1
                    ffs += level  # the spare waits `level` registers
                    ff_only += level
        wait = core.popcount_latency + 1 - (1 + len(plan.levels))
        ffs += wait * sw
        ff_only += wait * sw
    # -- argmax: a chain and a mux per comparison; split: the operands wait a cycle -------
    iw = max(1, ceil_log2(classes))
    count = classes
    compares = 0
    for level in range(argmax_tree_levels(classes)):  # pairwise: compare, then mux
        pairs, odd = divmod(count, 2)
        count = pairs + odd
        varying = min(iw, level)  # index bits that are signals (not constants) coming in
        final = count == 1  # the last winner's score is not used
        compares += pairs
        muxes = pairs * ((0 if final else sw) + min(iw, level + 1))
        luts += muxes
        ffs += muxes
        if core.split_compare:
            copies = pairs * ((0 if final else 2 * sw) + 2 * varying) + 2 * odd * (sw + varying)
        else:
            copies = odd * (sw + varying)
        ffs += copies
        ff_only += copies
    if count > 1:  # all against all: comparisons, one-hot wins, the index
        varying = min(iw, argmax_tree_levels(classes))
        compares += count * (count - 1) // 2
        # the last pairwise level muxes the middle candidates' scores in both polarities
        luts += (count - 2) * sw
        ffs += (count - 2) * sw
        luts += count + iw + iw * max(0, -(-2 * count // LUT_INPUTS) - 1)
        ffs += count + iw + 2 * count * varying
        ff_only += 2 * count * varying  # candidates' index bits waiting
    luts += compares * carry_out_lut  # the carry-out's LUT in front of its register
    carries += compares * sw
    ccu2 += compares * -(-(sw + 1) // 2)
    carry_only = compares * sw  # a comparison needs no sum: its chain cells hold no LUT
    ffs += compares
    if scores == "held" and core.argmax_latency:  # one register, half behind a LUT
        ffs += classes * sw
        ff_only += classes * sw // 2
    elif scores:  # the delay line: the first register behind a LUT, the rest copies
        ffs += classes * sw * core.argmax_latency
        ff_only += classes * sw * max(0, core.argmax_latency - 1)
    valid = core.latency + 8
    ffs += valid
    ff_only += valid
    net_luts = len(roots)
    head_cells = luts + feeds + ff_only + carry_only
    ice40_cells = net_luts + net_ff_only + head_cells
    ecp5_luts = net_luts + luts - ecp5_sum_luts + ecp5_small_luts
    ecp5_comb = ecp5_luts + 2 * ccu2
    return {
        "luts": net_luts + luts, "carries": carries, "ffs": net_ffs + ffs,
        "ice40_cells": ice40_cells,
        "cells": ice40_cells if family == "ice40" else ecp5_comb,
        "ecp5_luts": ecp5_luts, "ccu2c": ccu2,
        "tables": tables_used,
        "head_luts": luts, "head_ffs": ffs, "head_cells": head_cells,
    }


#: The widest adder Yosys's ECP5 flow maps to logic instead of a CCU2C chain
#: (``arith_map_ccu2c.v``: ``_TECHMAP_FAIL_ = Y_WIDTH <= 4``): each of its bits then takes
#: about two LUT4s (a sum and a carry), where the iCE40 takes one LUT4 and a carry cell.
ECP5_ALU_LUT_WIDTH = 4


#: Result bits per block RAM in the UART top's result FIFO (7 words deep: one block wide
#: enough): SB_RAM40_4K as 256 x 16, DP16KD as 512 x 36.
RESULT_BITS_PER_BLOCK = {"ice40": 16, "ecp5": 36}


def top_bram_blocks(graph: GateGraph, family: str, *, top: str, vectors: int = 0,
                    score_width: int | None = None) -> int:
    """Block RAMs the board top itself uses around the parallel core: the UART top's result
    FIFO, or the BIST top's vectors and their answers (each memory in the block shape that
    takes the fewest blocks).

    The FIFO holds the sequence byte, the class and the scores; Yosys drops the bits that
    pad them to whole bytes (always 0), so it takes a block per 16 of the others on iCE40:
    4 SB_RAM40_4K for digits (8 + 4 + 10 x 5 bits) and 6 for mnist400 (8 + 4 + 10 x 7), as
    placed."""
    sw = score_width or graph.score_width
    if top == "uart":
        result_bits = 8 + graph.class_width + graph.classes * sw
        return -(-result_bits // RESULT_BITS_PER_BLOCK.get(family, 16))
    if not vectors:
        return 0
    from lgn_fpga.gateware.folded import memory_blocks

    blocks = 0
    for width in (graph.inputs, graph.class_width + graph.classes * sw):
        blocks += memory_blocks(family, width, vectors) or -(-width * vectors // 4096)
    return blocks


def estimate(graph: GateGraph, profile, *, top: str, pipeline: int | None = 0,
             vectors: int = 0, score_width: int | None = None, stage_luts: int | None = None,
             popcount_tables: int = 0, table_bits: int = 10,
             carry_out_lut: bool = True, early_bits: bool = False) -> dict:
    """LUTs, FFs, logic cells and block RAMs the design should need, from the net's shape
    (see :func:`core_resources`, with ``LogicNetCore``'s options ``pipeline``,
    ``stage_luts``, ``popcount_tables`` and ``table_bits``) plus the board top's overhead.
    Block RAM is counted in whole blocks (``bram_blocks``: the top's own,
    :func:`top_bram_blocks`, plus the popcount tables), and ``bram_bits`` is the larger of
    the BIST's vector bits and those blocks' bits."""
    from lgn_fpga.net.optimize import logic_gates

    logic = logic_gates(graph)
    sw = score_width or graph.score_width
    core = core_resources(graph, pipeline=pipeline, stage_luts=stage_luts,
                          family=profile.family, scores="held" if top == "uart" else True,
                          popcount_tables=popcount_tables, table_bits=table_bits,
                          carry_out_lut=carry_out_lut, early_bits=early_bits)
    luts, ffs, cells = core["luts"], core["ffs"], core["cells"]
    vector_bits = 0
    if top == "uart":
        luts += UART_TOP_LUTS
        ffs += UART_TOP_FFS + graph.inputs
        cells += UART_TOP_LUTS + graph.inputs
    else:
        vector_bits = vectors * (graph.inputs + graph.class_width + graph.classes * sw)
        luts += UART_OVERHEAD_LUTS
        ffs += UART_OVERHEAD_FFS
        cells += UART_OVERHEAD_LUTS
    if profile.family != "ice40":
        # ECP5 slices hold LUTs and FFs separately: the LUT slots (carry chains take two per
        # CCU2C) are what fills the device.
        cells = core["cells"] + (luts - core["luts"])
    blocks = core["tables"] + top_bram_blocks(graph, profile.family, top=top,
                                              vectors=vectors, score_width=sw)
    block_bits = profile.bram_bits // max(1, profile.bram_blocks)
    return {"gates": graph.gates, "logic_gates": logic, "luts": luts, "ffs": ffs,
            "cells": cells, "bram_bits": max(vector_bits, blocks * block_bits),
            "bram_blocks": blocks, "popcount_tables": core["tables"], "top": top,
            "capacity_luts": profile.luts, "capacity_ffs": profile.ffs,
            "capacity_bram_bits": profile.bram_bits,
            "capacity_bram_blocks": profile.bram_blocks,
            "bist_min_blocks": bist_min_blocks(graph, profile.family, top=top,
                                               score_width=sw)}


def bist_min_blocks(graph: GateGraph, family: str, *, top: str,
                    score_width: int | None = None) -> int:
    """Block RAMs the BIST top's vector memories take for a single vector (0 for the UART
    top): a block RAM is at most 16 bits wide on iCE40 (36 on ECP5), so a wide input takes
    many blocks however few vectors it holds, and fewer ``--vectors`` cannot help."""
    return top_bram_blocks(graph, family, top=top, vectors=1, score_width=score_width) \
        if top == "bist" else 0


def check_fit(est: dict, profile) -> None:
    """One line naming the numbers when the design cannot fit the device.

    Raises
    ------
    UserError
        If the estimate exceeds the device's LUTs, logic cells, FFs or block RAM.
    """
    problems = []
    bist = est.get("top", "bist" if est["bram_bits"] else "uart") == "bist"
    if est["luts"] > est["capacity_luts"]:
        problems.append(f"~{est['luts']} LUTs needed, {est['capacity_luts']} available")
    elif est["cells"] > est["capacity_luts"]:
        problems.append(f"~{est['cells']} logic cells needed ({est['luts']} LUTs, "
                        f"{est['ffs']} FFs), {est['capacity_luts']} available")
    if est["ffs"] > est["capacity_ffs"]:
        problems.append(f"~{est['ffs']} FFs needed, {est['capacity_ffs']} available")
    if est.get("bram_blocks", 0) > est.get("capacity_bram_blocks", est.get("bram_blocks", 0)):
        problems.append(f"{est['bram_blocks']} block RAMs needed, "
                        f"{est['capacity_bram_blocks']} available")
    elif est["bram_bits"] > est["capacity_bram_bits"]:
        problems.append(f"{est['bram_bits']} block RAM bits needed, "
                        f"{est['capacity_bram_bits']} available")
    if problems:
        # --vectors only sizes the BIST top's block RAM: never suggest it for the UART top,
        # nor where a single vector's memories already take more blocks than there are
        hopeless = est.get("bist_min_blocks", 0) > est.get("capacity_bram_blocks", 1 << 30)
        raise UserError(
            f"the net does not fit {profile.name} ({profile.device}): {est['gates']} gates "
            f"({est['logic_gates']} logic), {'; '.join(problems)}; "
            + (f"the BIST top's vector memories take {est['bist_min_blocks']} block RAMs "
               f"even for one vector ({est['capacity_bram_blocks']} available): use --top "
               "uart or a bigger board" if bist and hopeless else
               "use a bigger board"
               + (", a smaller net or fewer --vectors" if bist else " or a smaller net"))
            + " (--force builds anyway)")
