"""Vectors per second of the three engines side by side: golden (numpy), pysim (Amaranth's
Python simulator) and cxxrtl (compiled), on a 2k-gate and a 20k-gate random net.

    python bench/sim.py                 # both nets
    python bench/sim.py --nets 2k       # one
    python bench/sim.py --fresh         # compile the CXXRTL models again (private cache)

Every engine's outputs are checked against the golden model before its time counts.
Rates are per CPU second (process time; for cxxrtl the compiled model's own CPU time), so
they hold on a shared machine. pysim's "setup" is building the core and Amaranth's simulator
for it (measured by a 1-vector run); its rate excludes that. cxxrtl's "setup" is
RTLIL -> write_cxxrtl -> g++ in wall seconds (0 when cached).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

from lgn_fpga.gateware.core import LogicNetCore
from lgn_fpga.net import golden
from lgn_fpga.net.random_nets import random_graph
from lgn_fpga.verify.simulate import check, make_schedule, random_bits, run_pysim

NETS = {
    # name: (inputs, layers, width, classes), pysim vectors, cxxrtl vectors
    "2k": ((256, 8, 256, 8), 1000, 200_000),
    "20k": ((784, 10, 2000, 10), 200, 50_000),
}
GOLDEN_VECTORS = 200_000


def timed(fn):
    """(result, CPU seconds of this process)."""
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def bench_net(name, shape, pysim_vectors, cxxrtl_vectors, console):
    graph = random_graph(*shape, seed=0)
    rows = []

    bits = random_bits(graph.inputs, GOLDEN_VECTORS, seed=1)
    _, seconds = timed(lambda: golden.predict(graph, bits))
    rows.append(("golden", 0.0, GOLDEN_VECTORS, GOLDEN_VECTORS / seconds))

    bits = random_bits(graph.inputs, pysim_vectors, seed=2)
    schedule = make_schedule(pysim_vectors, gap_rate=0.0, seed=2)
    expected = golden.predict(graph, bits)
    _, setup = timed(lambda: run_pysim(LogicNetCore(graph), bits[:1], schedule[:1]))
    core = LogicNetCore(graph)
    outputs, seconds = timed(lambda: run_pysim(core, bits, schedule))
    mismatch, _ = check(expected, schedule, outputs, core.latency)
    assert mismatch is None, mismatch
    rows.append(("pysim", setup, pysim_vectors, pysim_vectors / max(1e-9, seconds - setup)))

    from lgn_fpga.verify.cxxrtl import run_cxxrtl

    bits = random_bits(graph.inputs, cxxrtl_vectors, seed=3)
    schedule = make_schedule(cxxrtl_vectors, gap_rate=0.0, seed=3)
    expected = golden.predict(graph, bits)
    core = LogicNetCore(graph)
    info: dict = {}
    with console.status(f"{name}: building the CXXRTL model"):
        outputs = run_cxxrtl(core, bits, schedule, info=info)
    mismatch, _ = check(expected, schedule, outputs, core.latency)
    assert mismatch is None, mismatch
    rows.append(("cxxrtl", info["build_seconds"], cxxrtl_vectors,
                 cxxrtl_vectors / max(1e-9, info["model_cpu_seconds"])))
    return graph, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default="2k,20k", help="comma-separated: 2k, 20k")
    parser.add_argument("--fresh", action="store_true",
                        help="use an empty CXXRTL cache, so build times include compiling")
    args = parser.parse_args(argv)
    console = Console()
    if args.fresh:
        os.environ["LGN_FPGA_CACHE"] = tempfile.mkdtemp(prefix="lgn-fpga-bench-")
    table = Table(title="simulation engines, vectors per CPU second (one per clock, no gaps)")
    for column in ("net", "gates", "engine", "setup s", "vectors", "vectors/s", "vs pysim"):
        table.add_column(column, justify="right" if column not in ("net", "engine") else "left")
    for name in args.nets.split(","):
        shape, pysim_vectors, cxxrtl_vectors = NETS[name]
        graph, rows = bench_net(name, shape, pysim_vectors, cxxrtl_vectors, console)
        pysim_rate = dict((r[0], r[3]) for r in rows)["pysim"]
        for engine, setup, vectors, rate in rows:
            table.add_row(name, str(graph.gates), engine, f"{setup:.1f}", f"{vectors:,}",
                          f"{rate:,.0f}", f"{rate / pysim_rate:,.1f}x")
        table.add_section()
    console.print(table)
    console.print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; "
                  f"command: python bench/sim.py {' '.join(argv or sys.argv[1:])}")


if __name__ == "__main__":
    main()
