"""Old class head against new, side by side, placed: LUT4, carry, FF, logic cells, Fmax.

Each net is measured with the shared "core alone" stick, ``/work/shared/measure/core_alone.sh``
(``lgn-fpga export`` at the default pipeline, behind a serial-in shift register with the
registered class on pins; Yosys defaults; nextpnr on the UP5K at --freq 150 or the ECP5-85F
at --freq 300), once with this checkout's head and once with the head of ``--old-rev``
(its ``gateware/head.py`` and ``gateware/core.py`` swapped in by a small ``lgn-fpga``
wrapper put first on PATH). Next to the placed numbers it prints the fit estimate
(``lgn_fpga.flow.fit.core_resources`` plus the shift register) and its error.

Nets: ``head800`` (800 inputs, one layer of 800 random 2-input logic gates, 10 classes x
80 bits: the head alone, behind one LUT per class bit), the shipped ``digits``, and
``rand400`` (400 inputs, 4 x 800 random gates, 10 classes, seed 1, optimized as the
export does). "head/bit" (``head800``, iCE40 only) is (logic cells - the 800-bit shift
register - one LUT per gate) / 800 class bits: what the class head costs per class bit.
Run (about 3 minutes per net and head on iCE40)::

    nice -n 10 python bench/resources.py                       # ice40, all nets
    nice -n 10 python bench/resources.py --family ecp5 --nets digits
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from lgn_fpga.flow.fit import core_resources
from lgn_fpga.gateware.core import DEFAULT_PIPELINE
from lgn_fpga.models import resolve
from lgn_fpga.net import graph as gg
from lgn_fpga.net.optimize import optimize
from lgn_fpga.net.random_nets import random_graph

MEASURE = Path("/work/shared/measure/core_alone.sh")
#: the revision whose head is "old": the registered-every-level head before issue 11.
OLD_REV = "63b1538"

WRAPPER = '''#!/usr/bin/env python3
"""lgn-fpga with gateware/head.py and core.py of an older revision swapped in."""
import importlib.util, os, sys
import lgn_fpga.gateware
here = os.path.dirname(os.path.abspath(__file__))
for name in ("head", "core"):
    spec = importlib.util.spec_from_file_location(f"lgn_fpga.gateware.{name}",
                                                  os.path.join(here, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    setattr(lgn_fpga.gateware, name, module)
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
}


def old_head_bin(work: Path, rev: str) -> Path:
    """A directory holding an ``lgn-fpga`` that builds with the head of ``rev``."""
    root = Path(__file__).resolve().parent.parent
    out = work / "oldhead"
    out.mkdir()
    for name in ("head", "core"):
        text = subprocess.run(["git", "show", f"{rev}:lgn_fpga/gateware/{name}.py"], cwd=root,
                              check=True, capture_output=True, text=True).stdout
        (out / f"{name}.py").write_text(text)
    (out / "lgn-fpga").write_text(WRAPPER)
    (out / "lgn-fpga").chmod(0o755)
    return out


def measure(model: Path, family: str, outdir: Path, path_prefix: str | None) -> dict:
    env = dict(os.environ)
    if path_prefix:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    r = subprocess.run(["bash", str(MEASURE), str(model), "", family, str(outdir)], env=env,
                       capture_output=True, text=True)
    line = (r.stdout.strip().splitlines() or [r.stderr.strip()])[-1]
    nums = dict(re.findall(r"(\w+) ([\d.]+|None)", line))
    if "Fmax" not in nums:
        # e.g. Yosys 0.70's ABC9 assertion on some ECP5 designs (lgn-fpga build falls back
        # to classic ABC; the measuring stick does not): say so and go on.
        print(f"{model.stem}: measuring failed: {line}", flush=True)
        return None
    return {k: (float(v) if v != "None" else None) for k, v in nums.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=["ice40", "ecp5"], default="ice40")
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--old-rev", default=OLD_REV)
    ap.add_argument("--heads", default="old,new", help="which heads to build (old,new)")
    ap.add_argument("--keep", help="keep the build folders here")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="lgn-resources-"))
    work.mkdir(parents=True, exist_ok=True)
    old_bin = old_head_bin(work, args.old_rev) if not (work / "oldhead").exists() \
        else work / "oldhead"
    fam = args.family
    cells_key, carry_key = ("LC", "CARRY") if fam == "ice40" else ("COMB", "CCU2C")
    print(f"{'net':8} {'head':4} {'LUT4':>6} {'carry':>6} {'FF':>6} {'cells':>6} {'Fmax':>6} "
          f"{'head/bit':>8} | {'est LUT4':>8} {'est FF':>7} {'est cells':>9}")
    for name in args.nets.split(","):
        graph = NETS[name]()
        model = work / f"{name}.json"
        gg.save(graph, model)
        built, _ = optimize(graph)  # what lgn-fpga export builds
        est = core_resources(built, pipeline=DEFAULT_PIPELINE, scores=False)
        bits = built.outputs
        net_cells = bits  # head800: one LUT per gate of its only layer
        est_luts, est_ffs = est["luts"], est["ffs"] + built.inputs
        est_cells = (est["ice40_cells"] + built.inputs if fam == "ice40"
                     else est_luts + est["carries"])
        for head, prefix in (("old", str(old_bin)), ("new", None)):
            if head not in args.heads.split(","):
                continue
            r = measure(model, fam, work / f"{fam}-{name}-{head}", prefix)
            if r is None:
                continue
            cells = r.get(cells_key)
            per_bit = ((cells - built.inputs - net_cells) / bits
                       if fam == "ice40" and name == "head800" else None)
            line = (f"{name:8} {head:4} {r['LUT4']:6.0f} {r[carry_key]:6.0f} {r['FF']:6.0f} "
                    f"{cells:6.0f} {r['Fmax']:6.1f} "
                    f"{'-' if per_bit is None else f'{per_bit:.2f}':>8}")
            if head == "new":
                def err(e, m):
                    return f"{e:.0f} ({100 * (e - m) / m:+.0f}%)"
                line += (f" | {err(est_luts, r['LUT4']):>8} {err(est_ffs, r['FF']):>7} "
                         f"{err(est_cells, cells):>9}")
            print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
