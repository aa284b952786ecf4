"""The folded core (docs/folded.md): layout arithmetic for the target nets, and real builds.

Two parts:

* ``plan``: for each target net (shipped digits and fashion-mnist after optimize, and a
  48k-gate dense net of 6 x 8000 gates over 400 inputs) and each lane count, the program
  rows and bits, the value-store bits, the cycles per inference and the fit estimate
  (block RAMs and logic cells) on the iCEBreaker (UP5K) and the ULX3S-85F. Seconds.
* ``build``: a real ``lgn-fpga build --core folded`` of a shipped model on a board, printing
  logic cells, block RAMs, Fmax and inferences per second from report.json. Minutes (digits
  on the iCEBreaker: ~5 min on one core), so run it on purpose:

    python bench/folded.py plan
    python bench/folded.py build --model digits --board icebreaker --lanes 1
    python bench/folded.py check --model digits --vectors 20   # CXXRTL against golden
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from lgn_fpga.flow import profiles
from lgn_fpga.flow.build import estimate_folded
from lgn_fpga.gateware.folded import fold_plan
from lgn_fpga.models import resolve
from lgn_fpga.net import graph as gg
from lgn_fpga.net.optimize import optimize
from lgn_fpga.net.random_nets import random_bits, random_graph

BOARDS = ("icebreaker", "ulx3s-85f")


def target_nets() -> dict:
    nets = {m: optimize(gg.load(resolve(m)))[0] for m in ("digits", "fashion-mnist")}
    nets["dense-48k"] = random_graph(400, 6, 8000, 10, seed=0)
    return nets


def plan(lanes_list=(1, 2, 4, 8)) -> list[dict]:
    rows = []
    for name, g in target_nets().items():
        for lanes in lanes_list:
            p = fold_plan(g, lanes)
            row = {"net": name, "gates": g.gates, "lanes": lanes, "rows": p.rows,
                   "entry_bits": p.entry_width, "program_bits": p.program_bits,
                   "store_bits": p.store_bits, "cycles": p.latency}
            for board in BOARDS:
                prof = profiles.get(board)
                est = estimate_folded(g, prof, top="uart", lanes=lanes)
                row[board] = {"bram_blocks": f"{est['bram_blocks']}/{prof.bram_blocks}",
                              "cells": f"{est['cells']}/{prof.luts}",
                              "inferences_per_s": round(prof.clock_hz / p.latency)}
            rows.append(row)
    return rows


def build(model: str, board: str, lanes: int, top: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = ["nice", "-n", "10", "lgn-fpga", "build", "--board", board, "--model", model,
               "--core", "folded", "--lanes", str(lanes), "--top", top, "-o", out, "--json",
               "--allow-timing-fail"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        report_path = Path(out) / "report.json"
        if not report_path.exists():
            report_path = Path(out) / "failed" / "report.json"
        if proc.returncode != 0 and not report_path.exists():
            sys.exit(proc.stderr.strip())
        r = json.loads(report_path.read_text())
    u = r.get("utilization", {})
    return {"model": model, "board": board, "lanes": lanes, "status": r["status"],
            "error": r.get("error"),
            "logic_cells": (u.get("logic_cells") or {}).get("used"),
            "luts": (u.get("luts") or {}).get("used"), "ffs": (u.get("ffs") or {}).get("used"),
            "bram_blocks": (u.get("bram_blocks") or {}).get("used"),
            "fmax_mhz": (r.get("timing") or {}).get("fmax_mhz"),
            "cycles_per_inference": r.get("cycles_per_inference"),
            "inferences_per_second": r.get("inferences_per_second"),
            "estimate": {k: r["estimate"].get(k) for k in ("cells", "bram_blocks")}}


def check(model: str, lanes: int, vectors: int) -> dict:
    from lgn_fpga.verify.simulate import simulate

    g = gg.load(resolve(model)) if model != "dense-48k" else target_nets()["dense-48k"]
    result = simulate(g, random_bits(g.inputs, vectors, 0), core="folded", lanes=lanes,
                      engine="cxxrtl")
    return result.to_json()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("plan")
    b = sub.add_parser("build")
    b.add_argument("--model", default="digits")
    b.add_argument("--board", default="icebreaker")
    b.add_argument("--lanes", type=int, default=1)
    b.add_argument("--top", default="uart")
    c = sub.add_parser("check")
    c.add_argument("--model", default="digits")
    c.add_argument("--lanes", type=int, default=1)
    c.add_argument("--vectors", type=int, default=20)
    args = ap.parse_args()
    if args.what == "plan":
        for row in plan():
            print(json.dumps(row))
    elif args.what == "build":
        print(json.dumps(build(args.model, args.board, args.lanes, args.top), indent=2))
    else:
        print(json.dumps(check(args.model, args.lanes, args.vectors), indent=2))


if __name__ == "__main__":
    main()
