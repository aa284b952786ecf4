"""Cycle-accurate simulation of :class:`~lgn_fpga.gateware.core.LogicNetCore`, checked against the
golden model.

Vectors stream in one per clock, with idle cycles (``in_valid = 0``, garbage on
``in_bits``) mixed in by a seeded schedule, so the checks cover back-to-back and gapped
traffic. Every ``out_valid`` cycle is collected; the outputs must come back in order,
one per vector, each exactly ``core.latency`` cycles after its input, with the golden
model's scores and class.

Two engines produce the outputs: Amaranth's Python simulator (``pysim``, here) and a
compiled CXXRTL model (``cxxrtl``, :mod:`lgn_fpga.verify.cxxrtl`). Both hand back
:class:`Outputs`; :func:`check` compares them to the golden model.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.gateware.core import DEFAULT_PIPELINE, LogicNetCore
from lgn_fpga.net import golden
from lgn_fpga.net.graph import GateGraph
from lgn_fpga.net.optimize import corrupt, design_graph
from lgn_fpga.net.random_nets import random_bits
from lgn_fpga.verify.cxxrtl import run_cxxrtl
from lgn_fpga.verify.harness import (
    DRAIN_SLACK,
    Mismatch,
    Outputs,
    SimResult,
    make_schedule,
    pack_rows,
    unpack_scores,
)

__all__ = [
    "ENGINES", "Mismatch", "Outputs", "SimResult", "check", "corrupt", "design_graph",
    "make_schedule", "random_bits", "run_pysim", "simulate",
]

ENGINES = ("pysim", "cxxrtl", "verilog", "netlist")
CORES = ("parallel", "folded")


def paced_schedule(schedule: np.ndarray, latency: int) -> np.ndarray:
    """``schedule`` with ``latency - 1`` idle cycles after every vector: a core that takes
    one input per ``latency`` cycles (the folded core) is then ready for each at once, so
    an engine without a handshake driver can run it."""
    out = []
    for v in np.asarray(schedule).tolist():
        out.append(v)
        if v >= 0:
            out.extend([-1] * (latency - 1))
    return np.asarray(out, dtype=np.int64)

# -- stimulus -----------------------------------------------------------------------------


# -- the design under test ----------------------------------------------------------------


# -- engines ------------------------------------------------------------------------------


def _offer(ctx, core, row: int | None, garbage_rng) -> None:
    """Drive one input cycle: ``row`` with ``in_valid = 1``, or (``None``) an idle cycle
    with random garbage on ``in_bits``, so a core that reads bits without valid is caught."""
    if row is not None:
        ctx.set(core.in_bits, row)
        ctx.set(core.in_valid, 1)
        return
    inputs = core.graph.inputs
    garbage = int.from_bytes(garbage_rng.bytes(-(-inputs // 8)), "little")
    ctx.set(core.in_bits, garbage & ((1 << inputs) - 1))
    ctx.set(core.in_valid, 0)


def _run_simulator(core, testbench, vcd) -> None:
    """Run ``testbench`` against ``core`` in Amaranth's simulator, writing the waveform to
    ``vcd`` (through a temporary file, renamed when the run finished) when one is given."""
    from amaranth.sim import Simulator

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if vcd is None:
        sim.run()
        return
    vcd = Path(vcd)
    tmp = vcd.with_name(f".{vcd.name}.tmp")
    try:
        with sim.write_vcd(str(tmp)):
            sim.run()
        os.replace(tmp, vcd)
    finally:
        if tmp.exists():
            tmp.unlink()


def run_pysim(core: LogicNetCore, bits: np.ndarray, schedule: np.ndarray, *,
              vcd: str | os.PathLike | None = None, seed: int = 0,
              progress: Callable[[int, int], None] | None = None) -> Outputs:
    """Drive ``core`` in Amaranth's simulator: cycle ``t`` presents ``bits[schedule[t]]``
    (or, for -1, ``in_valid = 0`` with random garbage on ``in_bits``)."""
    from amaranth.hdl import Value

    graph = core.graph
    rows = pack_rows(bits)
    garbage_rng = np.random.default_rng([seed, 0x6A4BA6E])
    total = len(schedule) + core.latency + DRAIN_SLACK
    out_cycles: list[int] = []
    out_scores: list[list[int]] = []
    out_classes: list[int] = []
    scores_port = Value.cast(core.out_scores)
    every = max(1, total // 200)

    async def testbench(ctx):
        for cycle in range(total):
            v = int(schedule[cycle]) if cycle < len(schedule) else -1
            _offer(ctx, core, rows[v] if v >= 0 else None, garbage_rng)
            await ctx.tick()
            # After the edge that ends cycle `cycle`, the ports show cycle `cycle + 1`.
            if ctx.get(core.out_valid):
                out_cycles.append(cycle + 1)
                out_classes.append(ctx.get(core.out_class))
                out_scores.append(unpack_scores(ctx.get(scores_port), graph.classes,
                                                core.score_width))
            if progress is not None and (cycle % every == 0 or cycle == total - 1):
                progress(cycle + 1, total)

    _run_simulator(core, testbench, vcd)
    return Outputs(
        cycles=np.asarray(out_cycles, dtype=np.int64),
        scores=np.asarray(out_scores, dtype=np.int64).reshape(-1, graph.classes),
        classes=np.asarray(out_classes, dtype=np.int64),
        total_cycles=total,
    )


def run_pysim_ready(core, bits: np.ndarray, schedule: np.ndarray, *,
                    vcd: str | os.PathLike | None = None, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> Outputs:
    """Drive a core with an ``in_ready`` handshake (:class:`~lgn_fpga.gateware.folded.
    FoldedCore`) in Amaranth's simulator: the schedule's vectors are presented in order,
    each held until accepted; each -1 of the schedule is an idle cycle (``in_valid = 0``,
    garbage on ``in_bits``) before the next vector. Records the accepting cycles."""
    from amaranth.hdl import Value

    graph = core.graph
    rows = pack_rows(bits)
    garbage_rng = np.random.default_rng([seed, 0x6A4BA6E])
    n = int((schedule >= 0).sum())
    # Every vector waits at most one inference for the previous one; then it drains.
    total = len(schedule) + (n + 1) * (core.latency + 1) + DRAIN_SLACK
    out_cycles: list[int] = []
    out_scores: list[list[int]] = []
    out_classes: list[int] = []
    accepted: list[int] = []
    scores_port = Value.cast(core.out_scores)
    ran = [0]

    async def testbench(ctx):
        pos = 0
        cycle = 0
        while cycle < total and (pos < len(schedule) or len(out_cycles) < n):
            v = int(schedule[pos]) if pos < len(schedule) else -1
            _offer(ctx, core, rows[v] if v >= 0 else None, garbage_rng)
            taken = v >= 0 and ctx.get(core.in_ready)
            if v < 0 or taken:
                pos += 1
            if taken:
                accepted.append(cycle)
            await ctx.tick()
            if ctx.get(core.out_valid):
                out_cycles.append(cycle + 1)
                out_classes.append(ctx.get(core.out_class))
                out_scores.append(unpack_scores(ctx.get(scores_port), graph.classes,
                                                core.score_width))
            cycle += 1
            if progress is not None and cycle % 1000 == 0:
                progress(cycle, total)  # total is an upper bound: the run ends when all are out
        # A few more cycles: an output that should not come must not come either.
        ctx.set(core.in_valid, 0)
        for extra in range(DRAIN_SLACK):
            await ctx.tick()
            if ctx.get(core.out_valid):
                out_cycles.append(cycle + extra + 1)
                out_classes.append(ctx.get(core.out_class))
                out_scores.append(unpack_scores(ctx.get(scores_port), graph.classes,
                                                core.score_width))
        ran[0] = cycle + DRAIN_SLACK

    _run_simulator(core, testbench, vcd)
    return Outputs(
        cycles=np.asarray(out_cycles, dtype=np.int64),
        scores=np.asarray(out_scores, dtype=np.int64).reshape(-1, graph.classes),
        classes=np.asarray(out_classes, dtype=np.int64),
        total_cycles=ran[0],
        accepted=np.asarray(accepted, dtype=np.int64),
    )


# -- locating a mismatch ------------------------------------------------------------------

#: nets larger than this are not re-simulated in pysim to locate a mismatch (too slow).
LOCATE_MAX_GATES = 20_000


def layer_values(core: LogicNetCore, row: np.ndarray) -> list[np.ndarray]:
    """Every gate layer's bits for input ``row``, read from inside ``core`` in pysim."""

    graph = core.graph
    [packed] = pack_rows(row[None, :])
    seen: dict[int, int] = {}

    async def testbench(ctx):
        ctx.set(core.in_bits, packed)
        ctx.set(core.in_valid, 1)
        for cycle in range(core.gate_latency):
            for n, signal in enumerate(core.layer_signals):
                if core.layer_cycle[n] == cycle:
                    seen[n] = ctx.get(signal)
            await ctx.tick()
            ctx.set(core.in_valid, 0)

    _run_simulator(core, testbench, None)
    return [np.array([(seen[n] >> i) & 1 for i in range(width)], dtype=np.uint8)
            for n, width in enumerate(graph.widths)]


def folded_layer_values(core, row: np.ndarray) -> list[np.ndarray]:
    """Every gate layer's bits for input ``row``, read from a
    :class:`~lgn_fpga.gateware.folded.FoldedCore`'s gate outputs (``core.probe``) in pysim
    as its rows go by."""

    graph, plan = core.graph, core.plan
    p = plan.lanes
    [packed] = pack_rows(row[None, :])
    layers = [np.zeros(w, dtype=np.uint8) for w in graph.widths]
    k = graph.group_size

    async def testbench(ctx):
        ctx.set(core.in_bits, packed)
        ctx.set(core.in_valid, 1)
        await ctx.tick()
        ctx.set(core.in_valid, 0)
        for _ in range(core.latency):
            if ctx.get(core.probe["valid"]):
                n, r, word = (ctx.get(core.probe[x]) for x in ("layer", "row", "bits"))
                for j in range(p):
                    if n < graph.depth - 1:
                        gate = r * p + j
                    else:  # the last layer is laid out class by class, padded to P
                        slot = (r % plan.class_rows) * p + j
                        gate = (r // plan.class_rows) * k + slot if slot < k else None
                    if gate is not None and gate < graph.widths[n]:
                        layers[n][gate] = (word >> j) & 1
            await ctx.tick()

    _run_simulator(core, testbench, None)
    return layers


def locate_mismatch(model: GateGraph, net: GateGraph, pipeline: int, row: np.ndarray, *,
                    lanes: int | None = None) -> str:
    """Why the core disagrees with the model on input ``row``: the built net itself differs
    (optimizer or injected fault), or the first gate whose hardware value differs from the
    net's golden value, or (every layer right) the class head."""
    want = golden.predict(model, row[None, :])
    built = golden.predict(net, row[None, :])
    if not np.array_equal(want.scores, built.scores):
        return (f"the net as built (optimized and/or with an injected fault) already computes "
                f"scores {built.scores[0].tolist()} in the golden model: the netlist, not the "
                f"hardware, differs from the model")
    if net.gates > LOCATE_MAX_GATES:
        return f"not located (the net has {net.gates} gates; re-run with a smaller net)"
    expected_layers = golden.GoldenModel(net).layer_bits(row[None, :])
    if lanes is None:
        actual_layers = layer_values(LogicNetCore(net, pipeline=pipeline), row)
    else:
        from lgn_fpga.gateware.folded import FoldedCore

        actual_layers = folded_layer_values(FoldedCore(net, lanes=lanes), row)
    for n, (exp, act) in enumerate(zip(expected_layers, actual_layers)):
        bad = np.flatnonzero(exp[0] != act)
        if bad.size:
            g = int(bad[0])
            layer = net.layers[n]
            return (f"layer {n} gate {g} (op {int(layer.op[g])}, inputs {int(layer.a[g])} and "
                    f"{int(layer.b[g])} of the previous layer) is {int(act[g])} in hardware, "
                    f"{int(exp[0][g])} in the golden model ({bad.size} gates of the layer "
                    f"differ)")
    return "every gate layer matches the golden model: the class head (popcount/argmax) is wrong"


# -- checking -----------------------------------------------------------------------------


def check(expected: golden.Prediction, schedule: np.ndarray, outputs: Outputs,
          latency: int) -> tuple[Mismatch | None, int | None]:
    """Compare engine outputs with the golden prediction, in order. Returns the first
    mismatch (or None) and the measured latency (None if no output came back)."""
    n = len(expected.classes)
    input_cycle = np.flatnonzero(schedule >= 0)  # cycle each vector was presented in
    if outputs.accepted is not None:  # a ready handshake: the cycle each was accepted in
        input_cycle = outputs.accepted
    got = len(outputs.cycles)
    measured = int(outputs.cycles[0] - input_cycle[0]) if got and n else None
    for v in range(min(n, got)):
        exp_scores = expected.scores[v].tolist()
        act_scores = outputs.scores[v].tolist()
        exp_class = int(expected.classes[v])
        act_class = int(outputs.classes[v])
        if exp_scores != act_scores or exp_class != act_class:
            what = "scores differ" if exp_scores != act_scores else "class differs"
            return Mismatch(v, what, exp_scores, act_scores, exp_class, act_class), measured
        lat = int(outputs.cycles[v] - input_cycle[v])
        if lat != latency:
            return Mismatch(v, f"came out {lat} cycles after its input; the core declares "
                               f"latency {latency}"), measured
    if got < n:
        return Mismatch(got, f"no output: {got} of {n} vectors came back (out_valid was high "
                             f"{got} times)"), measured
    if got > n:
        return Mismatch(-1, f"{got} outputs for {n} vectors: out_valid was high during idle "
                            f"cycles"), measured
    return None, measured


def simulate(graph: GateGraph, bits: np.ndarray, *, pipeline: int = DEFAULT_PIPELINE,
             engine: str = "pysim", optimize: bool = True, gap_rate: float = 0.25,
             seed: int = 0, vcd: str | os.PathLike | None = None,
             fault: tuple[int, int] | None = None,
             progress: Callable[[int, int], None] | None = None,
             status: Callable[[str], None] | None = None,
             core: str = "parallel", lanes: int = 1,
             core_options: dict | None = None) -> SimResult:
    """Build the core for ``graph`` (optimized unless ``optimize=False``; with ``fault``
    injected), stream ``bits`` through it on ``engine`` and check every output against
    the golden model of the original ``graph``.

    ``core`` is "parallel" (:class:`LogicNetCore`) or "folded"
    (:class:`~lgn_fpga.gateware.folded.FoldedCore` with ``lanes`` gates per clock). The
    folded core's ready handshake is driven in pysim; the compiled engines get the vectors
    paced ``latency`` cycles apart (plus the schedule's gaps), so each is taken at once.
    ``core_options``: more of ``LogicNetCore``'s options (``stage_luts``,
    ``popcount_tables``, ...; a ``pipeline`` there wins), as ``build --board`` sets them."""
    if core not in CORES:
        raise UserError(f"--core must be one of {', '.join(CORES)}, got {core!r}")
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r} (engines: {', '.join(ENGINES)})")
    if vcd is not None and engine != "pysim":
        raise UserError("--vcd needs the pysim engine")
    if vcd is not None and not Path(vcd).resolve().parent.is_dir():
        raise UserError(f"{vcd}: folder {Path(vcd).parent} does not exist")
    bits = golden._check_bits(bits, graph.inputs)
    if len(bits) == 0:
        raise UserError("no input vectors to simulate")
    expected = golden.predict(graph, bits)
    net, stats = design_graph(graph, optimize=optimize, fault=fault)
    schedule = make_schedule(len(bits), gap_rate=gap_rate, seed=seed)
    kind = core
    if kind == "folded":
        from lgn_fpga.gateware.folded import FoldedCore

        try:
            core = FoldedCore(net, lanes=lanes)
        except ValueError as e:
            raise UserError(f"--lanes: {e}") from None
        extra = {"gates": net.gates, "core": "folded", "lanes": lanes,
                 "cycles_per_inference": core.plan.cycles_per_inference,
                 "optimized": stats is not None}
        if engine != "pysim":
            schedule = paced_schedule(schedule, core.latency)
    else:
        options = {"pipeline": pipeline, **(core_options or {})}
        core = LogicNetCore(net, **options)
        extra = {"gates": net.gates, "pipeline": options["pipeline"],
                 "optimized": stats is not None}
    start = time.perf_counter()
    if engine == "pysim" and kind == "folded":
        outputs = run_pysim_ready(core, bits, schedule, vcd=vcd, seed=seed, progress=progress)
        seconds = time.perf_counter() - start
    elif engine == "pysim":
        outputs = run_pysim(core, bits, schedule, vcd=vcd, seed=seed, progress=progress)
        seconds = time.perf_counter() - start
    else:

        source = {"cxxrtl": "rtl"}.get(engine, engine)
        outputs = run_cxxrtl(core, bits, schedule, seed=seed, source=source, status=status,
                             info=extra)
        seconds = extra["run_seconds"]  # the simulation itself; build time is reported apart
    mismatch, measured = check(expected, schedule, outputs, core.latency)
    if mismatch is not None and mismatch.expected_scores is not None:
        where = locate_mismatch(graph, net, pipeline, bits[mismatch.vector],
                                lanes=lanes if kind == "folded" else None)
        mismatch = dataclasses.replace(mismatch, where=where)
    return SimResult(engine, len(bits), outputs.total_cycles, core.latency, measured,
                     seconds, mismatch, extra)
