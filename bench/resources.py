"""Old class head against new, side by side, placed: LUT4, carry, FF, logic cells, Fmax.

Each net is measured with the shared "core alone" stick, ``/work/shared/measure/core_alone.sh``
(``lgn-fpga export`` at the default pipeline, behind a serial-in shift register with the
registered class on pins; Yosys defaults; nextpnr on the UP5K at --freq 150 or the ECP5-85F at
--freq 300), once with the head and core of ``--old-rev`` and once with this checkout's. Both go
through a small ``lgn-fpga`` wrapper put first on PATH: the old one swaps in the old
``gateware/head.py`` and ``core.py``; the new one gives ``LogicNetCore`` the options of
``--core`` (JSON; by default as ``lgn-fpga build`` sets them, see ``NEW_CORE``: on the UP5K
block-RAM popcount tables, 30 as 1024 x 4, all its SB_RAM40_4K, and on ECP5 none; class bits
the last gate register would only copy counted a cycle early; on ECP5 no LUT between a
carry-out and its flip-flop). Where Yosys
0.70's ABC9 crashes (some ECP5 designs), the synthesis is rerun with classic ABC for the LUT
mapping, as ``lgn-fpga build`` does, and the row says ``abc``.

Next to the placed numbers it prints the fit estimate (``lgn_fpga.flow.fit.core_resources``
plus the shift register) and its error.

Nets: ``head800`` (800 inputs, one layer of 800 random 2-input logic gates, 10 classes x
80 bits: the head alone, behind one LUT per class bit), the shipped ``digits``,
``rand400`` (400 inputs, 4 x 800 random gates, 10 classes, seed 1, optimized as the export
does), ``mnist400`` (``bench/nets/mnist400.json``: 400 inputs, 4 x 800, trained, see
docs/core.md), ``conv400`` (``bench/nets/conv400.json``, a trained conv net, if present),
``fashion`` (the shipped fashion-mnist; long builds), ``deep256`` (256 inputs, 8 x 300 random
gates), ``dense48k`` (400 inputs, 6 x 8000 random gates, uniform wiring: the issue's 48k-gate
dense net) and ``dense48k-local`` (the same shape, each gate reading within +-64 of its
place: see docs/routing.md and ``bench/route48k.py``). A net whose fit estimate exceeds the
device is not built; its row gives the estimate. "head/bit" (``head800``) is (logic
cells - the 800-bit shift register - one LUT per gate) / 800 class bits: what the class head
costs per class bit. Run (3 to 20 minutes per net and head on the shared 2-core machine)::

    nice -n 10 python bench/resources.py                       # ice40, default nets
    nice -n 10 python bench/resources.py --family ecp5 --nets digits,mnist400
    nice -n 10 python bench/resources.py --keep DIR --reuse    # re-read finished builds
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from lgn_fpga.flow.fit import core_resources
from lgn_fpga.flow.toolchain import ABC_FALLBACK
from lgn_fpga.models import resolve
from lgn_fpga.net import graph as gg
from lgn_fpga.net.optimize import optimize
from lgn_fpga.net.random_nets import random_graph

MEASURE = Path("/work/shared/measure/core_alone.sh")
HERE = Path(__file__).resolve().parent
#: the revision whose head is "old": the registered-every-level head before issue 11.
OLD_REV = "63b1538"

#: LogicNetCore options of the "new" builds, per family, as ``lgn-fpga build`` deals them: on
#: the UP5K block RAMs as popcount tables (the core alone uses none otherwise: all 30); on
#: ECP5 none (tables measured slower there: the DP16KD's unregistered output is in the path)
#: and no carry-out LUTs (``flow.build.CARRY_OUT_LUT``); early class bits on both.
NEW_CORE = {"ice40": {"popcount_tables": 30, "table_bits": 10, "early_bits": True},
            "ecp5": {"carry_out_lut": False, "early_bits": True}}

OLD_WRAPPER = '''#!/usr/bin/env python3
"""lgn-fpga with gateware/head.py and core.py of an older revision swapped in."""
import importlib.util, os, sys
import lgn_fpga.gateware
import lgn_fpga.gateware.core as new_core
here = os.path.dirname(os.path.abspath(__file__))
for name in ("head", "core"):
    spec = importlib.util.spec_from_file_location(f"lgn_fpga.gateware.{name}",
                                                  os.path.join(here, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    setattr(lgn_fpga.gateware, name, module)
old_core = sys.modules["lgn_fpga.gateware.core"]
for name, value in vars(new_core).items():  # constants newer flows import (DEFAULT_STAGE_LUTS)
    if name.isupper() and not hasattr(old_core, name):
        setattr(old_core, name, value)
core = old_core.LogicNetCore
import functools, inspect
known = set(inspect.signature(core.__init__).parameters)
init = core.__init__
@functools.wraps(init)
def patched(self, graph, **kw):  # options newer flows pass (stage_luts, ...) are dropped,
    # and the AUTO pipeline (0), which the old core did not have, means its default
    init(self, graph, **{k: v for k, v in kw.items() if k in known and (k, v) != ("pipeline", 0)})
core.__init__ = patched
if not hasattr(core, "register_after"):  # what the export header prints
    core.register_after = property(lambda self: tuple(
        n for n in range(self.graph.depth - 1) if (n + 1) % self.pipeline == 0))
from lgn_fpga.cli import main
sys.exit(main())
'''

NEW_WRAPPER = '''#!/usr/bin/env python3
"""lgn-fpga whose LogicNetCore takes the keyword options in $LGN_BENCH_CORE (JSON)."""
import functools, json, os, sys
import lgn_fpga.gateware.core as core
extra = json.loads(os.environ.get("LGN_BENCH_CORE") or "{}")
init = core.LogicNetCore.__init__
@functools.wraps(init)
def patched(self, graph, **kw):
    kw.update(extra)
    init(self, graph, **kw)
core.LogicNetCore.__init__ = patched
from lgn_fpga.cli import main
sys.exit(main())
'''


def head800() -> gg.GateGraph:
    rng = np.random.default_rng(7)
    logic = np.array([1, 2, 4, 6, 7, 8, 9, 11, 13, 14])  # no constants, no wires
    a, b = rng.integers(0, 800, 800), rng.integers(0, 800, 800)
    op = logic[rng.integers(0, len(logic), 800)]
    return gg.make(800, [(a, b, op)], 10, meta={"generator": "bench/resources.py head800"})


NETS = {
    "head800": head800,
    "digits": lambda: gg.load(resolve("digits")),
    "rand400": lambda: random_graph(400, 4, 800, 10, seed=1),
    "mnist400": lambda: gg.load(HERE / "nets" / "mnist400.json"),
    "conv400": lambda: gg.load(HERE / "nets" / "conv400.json"),
    "fashion": lambda: gg.load(resolve("fashion-mnist")),
    "deep256": lambda: random_graph(256, 8, 300, 10, seed=2),
    "dense48k": lambda: random_graph(400, 6, 8000, 10, seed=1),
    "dense48k-local": lambda: random_graph(400, 6, 8000, 10, seed=1, window=64),
}
DEFAULT_NETS = "head800,digits,rand400,mnist400"
#: what the measuring stick places on: logic cells (iCE40 UP5K) or TRELLIS_COMB slots
#: (ECP5-85F). A net whose estimate does not fit is not built: its row gives the estimate.
CAPACITY = {"ice40": 5280, "ecp5": 83640}


def wrappers(work: Path, rev: str) -> tuple[Path, Path]:
    """Directories holding an ``lgn-fpga`` for the old head and one for the new."""
    root = HERE.parent
    old, new = work / "oldhead", work / "newhead"
    for d in (old, new):
        d.mkdir(exist_ok=True)
    for name in ("head", "core"):
        text = subprocess.run(["git", "show", f"{rev}:lgn_fpga/gateware/{name}.py"], cwd=root,
                              check=True, capture_output=True, text=True).stdout
        (old / f"{name}.py").write_text(text)
    for d, text in ((old, OLD_WRAPPER), (new, NEW_WRAPPER)):
        (d / "lgn-fpga").write_text(text)
        (d / "lgn-fpga").chmod(0o755)
    return old, new


def classic_abc_stick(work: Path, family: str) -> Path:
    """The measuring stick with classic ABC for the LUT mapping (what ``lgn-fpga build``
    falls back to when Yosys 0.70's ABC9 asserts)."""
    synth = "synth_ice40" if family == "ice40" else "synth_ecp5"
    script = ABC_FALLBACK[family].replace("\\1", "").replace("\n", "; ")
    text = MEASURE.read_text().replace("$SYN -top top -json out.json",
                                       f"{script}; write_json out.json")
    assert script.startswith(synth) and "write_json out.json" in text
    path = work / f"core_alone_abc_{family}.sh"
    path.write_text(text)
    return path


def parse(outdir: Path, family: str) -> dict | None:
    """The stick's figures from a finished build folder (as core_alone.sh prints them)."""
    try:
        st = (outdir / "final.stat").read_text()
        report = json.loads((outdir / "report.json").read_text())
    except (OSError, ValueError):
        return None

    def cell(name):
        m = re.findall(rf"\s(\d+)\s+{name}\b", st) or re.findall(rf"{name}\s+(\d+)", st)
        return int(m[-1]) if m else 0

    fmax = min(v["achieved"] for v in report["fmax"].values())
    util = report["utilization"]
    if family == "ice40":
        ffs = sum(cell(x) for x in ["SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS",
                                     "SB_DFFESR", "SB_DFFER", "SB_DFFES"])
        return {"LUT4": cell("SB_LUT4"), "carry": cell("SB_CARRY"), "FF": ffs,
                "cells": util["ICESTORM_LC"]["used"], "RAM": util["ICESTORM_RAM"]["used"],
                "Fmax": fmax}
    return {"LUT4": cell("LUT4"), "carry": cell("CCU2C"), "FF": cell("TRELLIS_FF"),
            "cells": util["TRELLIS_COMB"]["used"], "RAM": util.get("DP16KD", {}).get("used", 0),
            "Fmax": fmax}


def measure(model: Path, family: str, outdir: Path, path_prefix: Path, env_extra: dict,
            work: Path, reuse: bool) -> tuple[dict | None, str]:
    if reuse and (r := parse(outdir, family)):
        return r, "reused"
    env = dict(os.environ, PATH=f"{path_prefix}:{os.environ['PATH']}", **env_extra)
    how = ""
    for stick in (MEASURE, None):
        if stick is None:  # ABC9 crashed: classic ABC, as lgn-fpga build does
            stick, how = classic_abc_stick(work, family), "abc"
        r = subprocess.run(["bash", str(stick), str(model), "", family, str(outdir)], env=env,
                           capture_output=True, text=True)
        line = (r.stdout.strip().splitlines() or [r.stderr.strip()] or [""])[-1]
        if "yosys failed" in line:
            continue
        if r.returncode != 0 and not (outdir / "report.json").exists():
            line = f"did not finish ({line or 'timed out'}; see {outdir}/pnr.log)"
        break
    result = parse(outdir, family)
    if result is None:
        print(f"{model.stem}: measuring failed: {line}", flush=True)
    return result, how


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=["ice40", "ecp5"], default="ice40")
    ap.add_argument("--nets", default=DEFAULT_NETS, help=f"of {', '.join(NETS)}")
    ap.add_argument("--old-rev", default=OLD_REV)
    ap.add_argument("--heads", default="old,new", help="which heads to build (old,new)")
    ap.add_argument("--core", help="LogicNetCore options of the new builds (JSON) "
                                   "[default: NEW_CORE: UP5K block RAMs as popcount "
                                   "tables; ECP5 none]")
    ap.add_argument("--keep", help="keep the build folders here")
    ap.add_argument("--reuse", action="store_true",
                    help="read builds already finished in --keep instead of running them")
    ap.add_argument("--pnr-timeout", type=int, default=3600,
                    help="seconds nextpnr-ecp5 may run per build [default: 3600]")
    args = ap.parse_args()
    os.environ["PNR_TO"] = str(args.pnr_timeout)
    work = Path(args.keep or tempfile.mkdtemp(prefix="lgn-resources-"))
    work.mkdir(parents=True, exist_ok=True)
    old_bin, new_bin = wrappers(work, args.old_rev)
    fam = args.family
    options = json.loads(args.core) if args.core else NEW_CORE[fam]
    print(f"{fam}; new core options {json.dumps(options)}")
    print(f"{'net':8} {'head':4} {'LUT4':>6} {'carry':>6} {'FF':>6} {'cells':>6} {'RAM':>4} "
          f"{'Fmax':>6} {'head/bit':>8} | {'est LUT4':>11} {'est FF':>11} {'est cells':>11}")
    for name in args.nets.split(","):
        graph = NETS[name]()
        model = work / f"{name}.json"
        gg.save(graph, model)
        built, _ = optimize(graph)  # what lgn-fpga export builds
        bits = built.outputs
        net_cells = bits  # head800: one LUT per gate of its only layer
        est = core_resources(built, family=fam, scores=False, **options)
        est_cells = est["cells"] + built.inputs * (fam == "ice40")
        if est_cells > CAPACITY[fam]:
            print(f"{name:8} does not fit: estimate {est['luts'] + 0:.0f} LUT4, "
                  f"{est['ffs'] + built.inputs:.0f} FF, {est_cells:.0f} of {CAPACITY[fam]} "
                  "cells; not built", flush=True)
            continue
        for head, prefix, extra in (("old", old_bin, {}),
                                    ("new", new_bin, {"LGN_BENCH_CORE": json.dumps(options)})):
            if head not in args.heads.split(","):
                continue
            r, how = measure(model, fam, work / f"{fam}-{name}-{head}", prefix, extra, work,
                             args.reuse)
            if r is None:
                continue
            per_bit = ((r["cells"] - built.inputs - net_cells) / bits
                       if fam == "ice40" and name == "head800" else None)
            line = (f"{name:8} {head:4} {r['LUT4']:6.0f} {r['carry']:6.0f} {r['FF']:6.0f} "
                    f"{r['cells']:6.0f} {r['RAM']:4.0f} {r['Fmax']:6.1f} "
                    f"{'-' if per_bit is None else f'{per_bit:.2f}':>8}")
            if head == "new":
                # (Yosys counts an ECP5 CCU2C's sum logic in the CCU2C, not as LUT4s)
                est_luts = est["luts"] if fam == "ice40" else est["ecp5_luts"]
                est_ffs = est["ffs"] + built.inputs

                def err(e, m):
                    return f"{e:.0f} ({100 * (e - m) / m:+.0f}%)"
                line += (f" | {err(est_luts, r['LUT4']):>11} {err(est_ffs, r['FF']):>11} "
                         f"{err(est_cells, r['cells']):>11}")
            print(line + (f" {how}" if how else ""), flush=True)


if __name__ == "__main__":
    sys.exit(main())
