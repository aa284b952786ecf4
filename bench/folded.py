"""The folded core (docs/folded.md): layout arithmetic for the target nets, and real builds.

Two parts:

* ``plan``: for each target net (shipped digits and fashion-mnist after optimize, and a
  48k-gate dense net of 6 x 8000 gates over 400 inputs) and each lane count, the program
  rows and bits, the value-store bits, the cycles per inference and the fit estimate
  (block RAMs and logic cells) on the iCEBreaker (UP5K) and the ULX3S-85F. Seconds.
* ``build``: a real ``lgn-fpga build --core folded`` of a model on a board, printing
  logic cells, block RAMs, SPRAMs, Fmax and inferences per second from report.json. Minutes
  (fashion-mnist on the iCEBreaker: ~2 min of tools on an idle core), so run it on purpose.
  ``--model dense-48k`` writes the 6 x 8000 random net first.
* ``table``: the targets of docs/folded.md side by side, one row per report.json given
  (from ``build --keep DIR`` or ``lgn-fpga build -o DIR``): net, board, lanes, where the
  program sits, logic cells, block RAMs, SPRAMs, Fmax, cycles and inferences/s, and the
  ratio of each figure to the device's capacity. With ``--build`` it runs the five target
  builds first (tens of minutes).

    python bench/folded.py plan
    python bench/folded.py build --model fashion-mnist --board icebreaker --keep /tmp/fm
    python bench/folded.py table /tmp/fm/report.json /tmp/dg/report.json ...
    python bench/folded.py table --build /tmp/folded-targets
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
#: The issue's targets: (model, board, --lanes or None for the build's choice, extra flags).
TARGETS = (
    ("digits", "icebreaker", 1, ()),
    ("fashion-mnist", "icebreaker", None, ()),
    ("dense-48k", "icebreaker", None, ()),
    ("fashion-mnist", "ulx3s-85f", 2, ()),
    ("dense-48k", "ulx3s-85f", None, ()),
)


def model_path(model: str, folder: Path) -> str:
    """A model name or path for ``lgn-fpga build``; ``dense-48k`` is written into
    ``folder`` first (``lgn-fpga random-model``, seed 0)."""
    if model != "dense-48k":
        return model
    path = folder / "dense-48k.npz"
    if not path.exists():
        gg.save(random_graph(400, 6, 8000, 10, seed=0), path)
    return str(path)


def target_nets() -> dict:
    nets = {m: optimize(gg.load(resolve(m)))[0] for m in ("digits", "fashion-mnist")}
    dense = random_graph(400, 6, 8000, 10, seed=0)
    nets["dense-48k"] = optimize(dense)[0]       # what the build folds: 23874 live gates
    nets["dense-48k (--no-optimize)"] = dense    # all 48000
    return nets


def plan(lanes_list=(1, 2, 4, 8)) -> list[dict]:
    rows = []
    for name, g in target_nets().items():
        for lanes in lanes_list:
            p = fold_plan(g, lanes, inputs="bytes")  # as in the UART top
            row = {"net": name, "gates": g.gates, "lanes": lanes, "rows": p.rows,
                   "entry_bits": p.entry_width, "program_bits": p.program_bits,
                   "store_bits": p.store_bits, "cycles": p.latency}
            for board in BOARDS:
                prof = profiles.get(board)
                est = estimate_folded(g, prof, top="uart", lanes=lanes)
                row[board] = {"program_in": est["program_ram"],
                              "bram_blocks": f"{est['bram_blocks']}/{prof.bram_blocks}",
                              "spram": f"{est['spram_needed']}/{est['capacity_spram_blocks']}",
                              "cells": f"{est['cells']}/{prof.luts}",
                              "inferences_per_s": round(prof.clock_hz / p.latency)}
            rows.append(row)
    return rows


def build(model: str, board: str, lanes: int | None, top: str = "uart",
          keep: str | None = None) -> dict:
    """Run ``lgn-fpga build --core folded`` (under nice) and summarize its report.json."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(keep or tmp)
        out.mkdir(parents=True, exist_ok=True)
        cmd = ["nice", "-n", "10", "lgn-fpga", "build", "--board", board, "--model",
               model_path(model, out), "--core", "folded", "--top", top, "-o", str(out),
               "--json", "--allow-timing-fail"] + (["--lanes", str(lanes)] if lanes else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        report_path = out / "report.json"
        if proc.returncode != 0 or not report_path.exists():
            report_path = out / "failed" / "report.json"
        if not report_path.exists():
            sys.exit(proc.stderr.strip())
        return summarize(json.loads(report_path.read_text()))


def summarize(r: dict, name: str | None = None) -> dict:
    """One row of the side-by-side table from a build's report.json."""
    u = r.get("utilization", {})
    core = r.get("core") or {}
    ram = core.get("ram") or {}
    nextpnr = u.get("nextpnr", {})
    cells = (u.get("logic_cells") or {}).get("used") or \
        (nextpnr.get("TRELLIS_COMB") or {}).get("used")
    cap = (u.get("logic_cells") or {}).get("available") or \
        (nextpnr.get("TRELLIS_COMB") or {}).get("available") or r.get("estimate", {}).get(
            "capacity_luts")
    model = name or Path(r.get("model", {}).get("path", "?")).stem
    return {"model": model, "board": r.get("board"), "status": r.get("status"),
            "error": r.get("error"), "gates": r.get("model", {}).get("built_gates"),
            "lanes": core.get("lanes"), "program_in": ram.get("program_in"),
            "logic_cells": cells, "cells_available": cap,
            "luts": (u.get("luts") or {}).get("used"), "ffs": (u.get("ffs") or {}).get("used"),
            "bram_blocks": (u.get("bram_blocks") or {}).get("used"),
            "bram_available": (u.get("bram_blocks") or {}).get("available"),
            "spram": (nextpnr.get("ICESTORM_SPRAM") or {}).get("used", 0),
            "fmax_mhz": (r.get("timing") or {}).get("fmax_mhz"),
            "clock_mhz": (r.get("timing") or {}).get("target_mhz"),
            "timing_met": (r.get("timing") or {}).get("met"),
            "cycles_per_inference": r.get("cycles_per_inference"),
            "inferences_per_second": r.get("inferences_per_second"),
            "seconds": r.get("total_seconds"),
            "estimate": {k: r.get("estimate", {}).get(k) for k in ("cells", "bram_blocks")}}


def print_table(rows: list[dict]) -> None:
    cols = ("model", "board", "gates", "lanes", "program_in", "cells", "BRAM", "SPRAM",
            "Fmax", "clock", "cycles", "inf/s", "build s")
    lines = [cols]
    for r in rows:
        cells = f"{r['logic_cells']}/{r['cells_available']}" if r["logic_cells"] else "-"
        if r["logic_cells"] and r["cells_available"]:
            cells += f" ({r['logic_cells'] / r['cells_available']:.0%})"
        bram = f"{r['bram_blocks']}/{r['bram_available']}" if r["bram_blocks"] is not None \
            else "-"
        lines.append((r["model"], r["board"], str(r["gates"]), str(r["lanes"]),
                      str(r["program_in"]), cells, bram, str(r["spram"]),
                      f"{r['fmax_mhz']}" + ("" if r["timing_met"] else " (!)"),
                      f"{r['clock_mhz']}", str(r["cycles_per_inference"]),
                      str(r["inferences_per_second"]), str(r["seconds"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols))]
    for line in lines:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)))


def check(model: str, lanes: int, vectors: int) -> dict:
    from lgn_fpga.verify.simulate import simulate

    g = gg.load(resolve(model)) if model != "dense-48k" else \
        random_graph(400, 6, 8000, 10, seed=0)  # simulate() optimizes it, as the build
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
    b.add_argument("--lanes", type=int, default=None)
    b.add_argument("--top", default="uart")
    b.add_argument("--keep", default=None, help="output folder to keep (default: temporary)")
    t = sub.add_parser("table")
    t.add_argument("reports", nargs="*", help="report.json files of folded builds")
    t.add_argument("--build", metavar="DIR", default=None,
                   help="run the target builds into DIR/<model>-<board> first")
    c = sub.add_parser("check")
    c.add_argument("--model", default="digits")
    c.add_argument("--lanes", type=int, default=1)
    c.add_argument("--vectors", type=int, default=20)
    args = ap.parse_args()
    if args.what == "plan":
        for row in plan():
            print(json.dumps(row))
    elif args.what == "build":
        print(json.dumps(build(args.model, args.board, args.lanes, args.top, args.keep),
                         indent=2))
    elif args.what == "table":
        rows = []
        if args.build:
            for model, board, lanes, _ in TARGETS:
                rows.append(build(model, board, lanes, keep=str(Path(args.build) /
                                                                f"{model}-{board}")))
        for path in args.reports:
            rows.append(summarize(json.loads(Path(path).read_text())))
        print_table(rows)
    else:
        print(json.dumps(check(args.model, args.lanes, args.vectors), indent=2))


if __name__ == "__main__":
    main()
