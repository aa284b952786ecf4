"""Locality-aware wiring against uniform random wiring, side by side on one dataset: hardened
validation and test accuracy, live gates, and (with --build) LUTs, logic cells, whether it
placed and routed, Fmax and build time on a board.

Both nets share everything but the wiring (same arch, seed, options). The issue's target
configuration (48k gates on fashion-mnist, built for the ULX3S-85F):

    nice -n 10 python bench/locality.py --arch 8000,8000,8000,8000,8000,8000 \\
        --epochs 10 --locality 512 --build --board ulx3s-85f --build-timeout 3600

Smaller runs (the defaults) show the shape of the comparison in minutes. Models and build
folders go to --out (default bench-locality/).
"""

import argparse
import json
import subprocess
import time
from pathlib import Path

#: nextpnr's logic-cell resource per FPGA family
LOGIC_CELLS = ("TRELLIS_COMB", "ICESTORM_LC")


def build(model: Path, board: str, out: Path, timeout: float) -> dict:
    """Run ``lgn-fpga build`` (parallel core) and pick the figures out of its report."""
    t = time.perf_counter()
    try:
        done = subprocess.run(["lgn-fpga", "build", "--board", board, "--model", str(model),
                               "--core", "parallel", "--force", "--allow-timing-fail",
                               "--json", "-q", "-o", str(out)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"gave up after {timeout:.0f} s", "seconds": timeout}
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"status": "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1],
                "seconds": time.perf_counter() - t}
    util = report.get("utilization", {})
    cells = next((v["used"] for k, v in util.get("nextpnr", {}).items() if k in LOGIC_CELLS),
                 None)
    return {"status": report.get("status"), "luts": util.get("luts", {}).get("used"),
            "cells": cells, "fmax_mhz": report.get("timing", {}).get("fmax_mhz"),
            "seconds": report.get("total_seconds", time.perf_counter() - t)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--arch", default="2000,2000,2000")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--thresholds", type=int, default=3)
    p.add_argument("--tau", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--locality", type=int, default=64, help="the window W of the local net")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--residual", action="store_true",
                   help="residual initialization (default off: wide dense nets learn more)")
    p.add_argument("--build", action="store_true", help="also place and route both nets")
    p.add_argument("--board", default="ulx3s-85f")
    p.add_argument("--build-timeout", type=float, default=3600, help="seconds per build")
    p.add_argument("--out", type=Path, default=Path("bench-locality"))
    args = p.parse_args()

    from lgn_fpga.net import graph as gg
    from lgn_fpga.net.optimize import optimize
    from lgn_fpga.train.data import load
    from lgn_fpga.train.loop import TrainOptions, train

    args.out.mkdir(parents=True, exist_ok=True)
    data = load(args.dataset)
    rows = []
    for name, locality in (("uniform", 0), (f"local {args.locality}", args.locality)):
        options = TrainOptions(arch=args.arch, epochs=args.epochs, thresholds=args.thresholds,
                               tau=args.tau, batch_size=args.batch_size, seed=args.seed,
                               residual=args.residual, locality=locality)
        result = train(data, options)
        path = args.out / f"{name.split()[0]}.npz"
        gg.save(result.graph, path)
        live, _ = optimize(result.graph)
        row = {"wiring": name, "val": result.val_accuracy, "test": result.test_accuracy,
               "gates": result.graph.gates, "live": live.gates,
               "train_s": result.seconds}
        if args.build:
            row.update(build(path, args.board, args.out / f"build-{path.stem}",
                             args.build_timeout))
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{args.dataset} {args.arch}, {args.epochs} epoch(s), seed {args.seed}")
    head = f"{'wiring':>10} {'val':>7} {'test':>7} {'gates':>7} {'live':>7} {'train s':>8}"
    if args.build:
        head += f" {'LUTs':>7} {'cells':>7} {'status':>16} {'Fmax':>7} {'build s':>8}"
    print(head)
    for r in rows:
        line = (f"{r['wiring']:>10} {r['val']:7.2%} {r['test']:7.2%} {r['gates']:7d} "
                f"{r['live']:7d} {r['train_s']:8.0f}")
        if args.build:
            line += (f" {r.get('luts') or '-':>7} {r.get('cells') or '-':>7} "
                     f"{str(r['status'])[:16]:>16} {r.get('fmax_mhz') or '-':>7} "
                     f"{r['seconds']:8.0f}")
        print(line)
    u, loc = rows
    print(f"local vs uniform: test {100 * (loc['test'] - u['test']):+.2f} points, "
          f"live gates {loc['live'] / max(u['live'], 1):.2f}x")


if __name__ == "__main__":
    main()
