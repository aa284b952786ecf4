"""Cycle-accurate simulation of :class:`~lgn_fpga.core.LogicNetCore`, checked against the
golden model.

Vectors stream in one per clock, with idle cycles (``in_valid = 0``, garbage on
``in_bits``) mixed in by a seeded schedule, so the checks cover back-to-back and gapped
traffic. Every ``out_valid`` cycle is collected; the outputs must come back in order,
one per vector, each exactly ``core.latency`` cycles after its input, with the golden
model's scores and class.

Two engines produce the outputs: Amaranth's Python simulator (``pysim``, here) and a
compiled CXXRTL model (``cxxrtl``, :mod:`lgn_fpga.cxxrtl`). Both hand back
:class:`Outputs`; :func:`check` compares them to the golden model.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import golden
from .core import DEFAULT_PIPELINE, LogicNetCore
from .errors import UserError
from .graph import GateGraph

__all__ = [
    "ENGINES", "Mismatch", "Outputs", "SimResult", "check", "corrupt", "design_graph",
    "make_schedule", "random_bits", "run_pysim", "simulate",
]

ENGINES = ("pysim", "cxxrtl", "verilog", "netlist")

#: cycles the testbench keeps clocking after the last input, beyond the declared latency,
#: so a core slower than it claims is caught as "late" rather than "missing".
DRAIN_SLACK = 4


@dataclass(frozen=True)
class Outputs:
    """What a simulation engine saw on the output ports: one row per ``out_valid`` cycle."""

    cycles: np.ndarray   # int64 (m,): cycle number of each out_valid
    scores: np.ndarray   # int64 (m, C)
    classes: np.ndarray  # int64 (m,)
    total_cycles: int    # cycles simulated


@dataclass(frozen=True)
class Mismatch:
    vector: int                 # index of the first failing vector (-1: no vector to blame)
    reason: str
    expected_scores: list[int] | None = None
    actual_scores: list[int] | None = None
    expected_class: int | None = None
    actual_class: int | None = None
    where: str | None = None    # what locate_mismatch found

    def describe(self) -> str:
        text = f"vector {self.vector}: {self.reason}" if self.vector >= 0 else self.reason
        if self.expected_scores is not None:
            text += (f"\n  expected class {self.expected_class} scores {self.expected_scores}"
                     f"\n  actual   class {self.actual_class} scores {self.actual_scores}")
        if self.where:
            text += f"\n  where: {self.where}"
        return text


@dataclass
class SimResult:
    engine: str
    vectors: int
    cycles: int
    latency_declared: int
    latency_measured: int | None
    seconds: float
    mismatch: Mismatch | None = None
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.mismatch is None

    @property
    def vectors_per_second(self) -> float:
        return self.vectors / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict:
        out = {
            "passed": self.passed, "engine": self.engine, "vectors": self.vectors,
            "cycles": self.cycles, "latency_declared": self.latency_declared,
            "latency_measured": self.latency_measured, "seconds": round(self.seconds, 3),
            **self.extra,
        }
        if self.mismatch is not None:
            m = self.mismatch
            out["mismatch"] = {
                "vector": m.vector, "reason": m.reason,
                "expected_scores": m.expected_scores, "actual_scores": m.actual_scores,
                "expected_class": m.expected_class, "actual_class": m.actual_class,
                "where": m.where,
            }
        return out


# -- stimulus -----------------------------------------------------------------------------


def random_bits(inputs: int, count: int, seed: int) -> np.ndarray:
    """``count`` random input vectors; each vector draws its own density of ones, so both
    sparse and dense inputs occur (uniform bits alone exercise few gate paths)."""
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.05, 0.95, size=(count, 1))
    return (rng.random((count, inputs)) < density).astype(np.uint8)


def make_schedule(vectors: int, *, gap_rate: float, seed: int) -> np.ndarray:
    """Per input cycle, the index of the vector presented, or -1 for an idle cycle.

    Before each vector an idle cycle is inserted with probability ``gap_rate`` (repeatedly,
    so runs of idle cycles occur too); everything else is back to back."""
    if not 0 <= gap_rate < 1:
        raise UserError(f"gap rate must be in [0, 1), got {gap_rate}")
    rng = np.random.default_rng([seed, 0x6A9])
    schedule = []
    for v in range(vectors):
        while gap_rate and rng.random() < gap_rate:
            schedule.append(-1)
        schedule.append(v)
    return np.asarray(schedule, dtype=np.int64)


def pack_rows(bits: np.ndarray) -> list[int]:
    """Each row of 0/1 bits as a Python int, bit ``i`` = column ``i``."""
    packed = np.packbits(np.asarray(bits, dtype=np.uint8), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


# -- the design under test ----------------------------------------------------------------


def corrupt(graph: GateGraph, layer: int, gate: int) -> GateGraph:
    """``graph`` with gate ``gate`` of layer ``layer`` complemented (op ^ 15): a fault to
    prove the checks catch a wrong design. A fault in the last layer always changes a score;
    elsewhere it may be masked or dead."""
    if not 0 <= layer < graph.depth:
        raise UserError(f"fault layer {layer} is out of range: the net has {graph.depth} layers")
    if not 0 <= gate < graph.widths[layer]:
        raise UserError(f"fault gate {gate} is out of range: layer {layer} has "
                        f"{graph.widths[layer]} gates")
    layers = list(graph.layers)
    victim = layers[layer]
    op = victim.op.copy()
    op[gate] ^= 15
    layers[layer] = type(victim)(victim.a, victim.b, op)
    return graph.replace(layers=tuple(layers))


def design_graph(graph: GateGraph, *, optimize: bool = True,
                 fault: tuple[int, int] | None = None) -> tuple[GateGraph, dict | None]:
    """The net that gets built: ``graph`` with an optional injected fault, then optimized
    (dead gates, constants, duplicates removed; same scores). Returns (net, optimize stats)."""
    if fault is not None:
        graph = corrupt(graph, *fault)
    if not optimize:
        return graph, None
    from .optimize import optimize as run_optimize

    return run_optimize(graph)


# -- engines ------------------------------------------------------------------------------


def unpack_scores(raw: int, classes: int, width: int) -> list[int]:
    mask = (1 << width) - 1
    return [(raw >> (c * width)) & mask for c in range(classes)]


def run_pysim(core: LogicNetCore, bits: np.ndarray, schedule: np.ndarray, *,
              vcd: str | os.PathLike | None = None, seed: int = 0,
              progress: Callable[[int, int], None] | None = None) -> Outputs:
    """Drive ``core`` in Amaranth's simulator: cycle ``t`` presents ``bits[schedule[t]]``
    (or, for -1, ``in_valid = 0`` with random garbage on ``in_bits``)."""
    from amaranth.hdl import Value
    from amaranth.sim import Simulator

    graph = core.graph
    rows = pack_rows(bits)
    garbage_rng = np.random.default_rng([seed, 0x6A4BA6E])
    total = len(schedule) + core.latency + DRAIN_SLACK
    out_cycles: list[int] = []
    out_scores: list[list[int]] = []
    out_classes: list[int] = []
    scores_port = Value.cast(core.out_scores)
    every = max(1, total // 200)
    garbage_bytes = -(-graph.inputs // 8)
    garbage_mask = (1 << graph.inputs) - 1

    async def testbench(ctx):
        for cycle in range(total):
            v = int(schedule[cycle]) if cycle < len(schedule) else -1
            if v >= 0:
                ctx.set(core.in_bits, rows[v])
                ctx.set(core.in_valid, 1)
            else:
                ctx.set(core.in_bits, int.from_bytes(garbage_rng.bytes(garbage_bytes), "little")
                        & garbage_mask)
                ctx.set(core.in_valid, 0)
            await ctx.tick()
            # After the edge that ends cycle `cycle`, the ports show cycle `cycle + 1`.
            if ctx.get(core.out_valid):
                out_cycles.append(cycle + 1)
                out_classes.append(ctx.get(core.out_class))
                out_scores.append(unpack_scores(ctx.get(scores_port), graph.classes,
                                                core.score_width))
            if progress is not None and (cycle % every == 0 or cycle == total - 1):
                progress(cycle + 1, total)

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if vcd is None:
        sim.run()
    else:
        vcd = Path(vcd)
        tmp = vcd.with_name(f".{vcd.name}.tmp")
        try:
            with sim.write_vcd(str(tmp)):
                sim.run()
            os.replace(tmp, vcd)
        finally:
            if tmp.exists():
                tmp.unlink()
    return Outputs(
        cycles=np.asarray(out_cycles, dtype=np.int64),
        scores=np.asarray(out_scores, dtype=np.int64).reshape(-1, graph.classes),
        classes=np.asarray(out_classes, dtype=np.int64),
        total_cycles=total,
    )


# -- locating a mismatch ------------------------------------------------------------------

#: nets larger than this are not re-simulated in pysim to locate a mismatch (too slow).
LOCATE_MAX_GATES = 20_000


def layer_values(core: LogicNetCore, row: np.ndarray) -> list[np.ndarray]:
    """Every gate layer's bits for input ``row``, read from inside ``core`` in pysim."""
    from amaranth.sim import Simulator

    graph = core.graph
    [packed] = pack_rows(row[None, :])
    seen: dict[int, int] = {}

    async def testbench(ctx):
        ctx.set(core.in_bits, packed)
        ctx.set(core.in_valid, 1)
        for cycle in range(core.gate_latency):
            for n, signal in enumerate(core.layer_signals):
                if n // core.pipeline == cycle:
                    seen[n] = ctx.get(signal)
            await ctx.tick()
            ctx.set(core.in_valid, 0)

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return [np.array([(seen[n] >> i) & 1 for i in range(width)], dtype=np.uint8)
            for n, width in enumerate(graph.widths)]


def locate_mismatch(model: GateGraph, net: GateGraph, pipeline: int, row: np.ndarray) -> str:
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
    actual_layers = layer_values(LogicNetCore(net, pipeline=pipeline), row)
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
             status: Callable[[str], None] | None = None) -> SimResult:
    """Build the core for ``graph`` (optimized unless ``optimize=False``; with ``fault``
    injected), stream ``bits`` through it on ``engine`` and check every output against
    the golden model of the original ``graph``."""
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
    core = LogicNetCore(net, pipeline=pipeline)
    extra = {"gates": net.gates, "pipeline": pipeline, "optimized": stats is not None}
    start = time.perf_counter()
    if engine == "pysim":
        outputs = run_pysim(core, bits, schedule, vcd=vcd, seed=seed, progress=progress)
        seconds = time.perf_counter() - start
    else:
        from .cxxrtl import run_cxxrtl

        source = {"cxxrtl": "rtl"}.get(engine, engine)
        outputs = run_cxxrtl(core, bits, schedule, seed=seed, source=source, status=status,
                             info=extra)
        seconds = extra["run_seconds"]  # the simulation itself; build time is reported apart
    mismatch, measured = check(expected, schedule, outputs, core.latency)
    if mismatch is not None and mismatch.expected_scores is not None:
        where = locate_mismatch(graph, net, pipeline, bits[mismatch.vector])
        mismatch = dataclasses.replace(mismatch, where=where)
    return SimResult(engine, len(bits), outputs.total_cycles, core.latency, measured,
                     seconds, mismatch, extra)
