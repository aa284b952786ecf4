"""Where `lgn-fpga build --board icebreaker` spends its time, and what the build's tool
settings save, side by side: the README's main command (shipped `digits` model, UART top,
iCE40 UP5K) built by several variants of the tool flow, round-robin, each build in a fresh
Python process (imports and elaboration included), WebAssembly already compiled (a first
warm-up build is not counted).

Variants (``--variants``, comma-separated; the first is the reference of the ratios):

* ``before``: the flow as it was: Yosys's own ``synth_ice40`` (its block RAM map) and
  nextpnr's defaults (HeAP placer, timing-driven);
* ``bram-map``: only the fast iCE40 block RAM map (``toolchain.fast_ice40_brams_map``);
* ``heap-no-tmdriv``: the fast map and wirelength-driven HeAP placement (``--no-tmdriv``);
* ``static``: the fast map and the static placer, wirelength-driven, routed by router1;
* ``now``: the build as it ships (the fast map, ``toolchain.FIRST_PNR_OPTS``: the static
  placer, wirelength-driven, routed by router2).

Each stage's CPU time is that of the build process and its children (the tools) from the
stage's start to its end, so it does not drift with other work on the machine the way wall
time does (this machine's speed drifts by tens of percent; compare CPU). Printed per
variant: each stage's median CPU and wall time over ``--rounds`` rounds, the total, and the
ratio to the first variant. Checked, and the run fails (after the table) when not:
every build succeeds and meets the clock, each variant's bitstream is the same in every
round (the build is deterministic), and the variants that differ only in the block RAM map
give the same bitstream (the fast map gives Yosys's own netlist).

Run:  nice python bench/build_time.py [--rounds 2]
      [--variants before,bram-map,heap-no-tmdriv,static,now] [--model digits] [--seed 1]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: What each variant changes in lgn_fpga.flow before the build: (use the fast block RAM
#: map, the iCE40's first place & route options: "" none, i.e. nextpnr's defaults only; None
#: as shipped, ``toolchain.FIRST_PNR_OPTS``).
VARIANTS = {
    "before": (False, ""),
    "bram-map": (True, ""),
    "heap-no-tmdriv": (True, "--no-tmdriv"),
    "static": (True, "--no-tmdriv --placer static"),
    "now": (True, None),
}


#: The child: one build, its stage times (CPU of the process and its children, and wall)
#: as JSON on the last line of stdout.
CHILD = r"""
import json, resource, sys, time
t0 = time.monotonic()
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
from lgn_fpga.flow import build as b
from lgn_fpga.flow import toolchain
fast_map, first = json.loads(sys.argv[1])
if not fast_map:
    b.write_fast_brams_map = lambda *args: None
if first == "":
    toolchain.FIRST_PNR_OPTS.clear()
elif first is not None:
    toolchain.FIRST_PNR_OPTS["ice40"] = first
stages, started = {}, {}
def on_stage(name, state, seconds):
    if state == "start":
        started[name] = (cpu(), time.monotonic())
    elif state == "done" and name in started:
        c, w = started.pop(name)
        stages[name] = {"cpu": cpu() - c, "wall": time.monotonic() - w}
imports = cpu()
report = b.build(b.BuildOptions(board="icebreaker", model=sys.argv[2], out=sys.argv[3],
                                seed=int(sys.argv[4])), on_stage=on_stage)
print(json.dumps({"stages": stages, "imports_cpu": imports, "cpu": cpu(),
                  "wall": time.monotonic() - t0, "sha256": report["bitstream"]["sha256"],
                  "met": report["timing"]["met"], "fmax": report["timing"]["fmax_mhz"],
                  "placement": report["flow"]["placement"],
                  "cells": report["utilization"].get("logic_cells", {}).get("used")}))
"""


def run_build(variant: str, model: str, out: Path, seed: int) -> dict:
    """One build of ``variant`` in a fresh Python process; its figures (see CHILD)."""
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(VARIANTS[variant]), model,
                           str(out), str(seed)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{variant}: the build failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall"] = time.monotonic() - t
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="before,bram-map,heap-no-tmdriv,static,now")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the uncounted first build (WASM already compiled)")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"--variants: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")

    results: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="lgn-bench-build-") as tmp:
        if not args.no_warmup:
            run_build(variants[-1], args.model, Path(tmp) / "warmup", args.seed)
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                res = run_build(v, args.model, Path(tmp) / v, args.seed)
                results[v].append(res)
                print(f"round {r + 1} {v:10s} cpu {res['cpu']:6.1f} s  wall "
                      f"{res['wall']:6.1f} s  Fmax {res['fmax']} MHz  {res['placement']}",
                      file=sys.stderr, flush=True)

    problems = []
    for v, runs in results.items():
        shas = {r["sha256"] for r in runs}
        if len(shas) != 1:
            problems.append(f"{v}: the bitstream differs between rounds: {sorted(shas)}")
        if not all(r["met"] for r in runs):
            problems.append(f"{v}: timing not met")
    for a, b in (("before", "bram-map"),):
        if a in results and b in results and results[a][0]["sha256"] != results[b][0]["sha256"]:
            problems.append(f"{a} and {b} differ only in the block RAM map, yet their "
                            f"bitstreams differ (was the design edited during the run?)")

    names = []
    for runs in results.values():
        for n in runs[0]["stages"]:
            if n not in names:
                names.append(n)

    def med(v, key, stage=None):
        vals = [(r["stages"].get(stage, {}).get(key, 0.0) if stage else r[key])
                for r in results[v]]
        return statistics.median(vals)

    ref = variants[0]
    print(f"lgn-fpga build --board icebreaker --model {args.model} --seed {args.seed}: median "
          f"of {args.rounds} round(s), CPU s (wall s); ratio = CPU / {ref}'s CPU")
    header = f"{'stage':16s}" + "".join(f"{v:>22s}" for v in variants)
    print(header)
    for n in [*names, None]:
        label = n or "total"
        cells = []
        for v in variants:
            c = med(v, "cpu", n) if n else med(v, "cpu")
            w = med(v, "wall", n) if n else med(v, "wall")
            rc = med(ref, "cpu", n) if n else med(ref, "cpu")
            ratio = f" x{c / rc:.2f}" if rc > 0.05 else ""
            cells.append(f"{c:6.1f} ({w:5.1f}){ratio:>7s}")
        print(f"{label:16s}" + "".join(f"{c:>22s}" for c in cells))
    print(f"{'imports':16s}" + "".join(f"{med(v, 'imports_cpu'):>14.1f}        "
                                      for v in variants))
    print("Fmax MHz        " + "".join(f"{results[v][0]['fmax']:>22}" for v in variants))
    print("logic cells     " + "".join(f"{results[v][0]['cells']:>22}" for v in variants))
    print("bitstream       " + "".join(f"{results[v][0]['sha256'][:12]:>22s}"
                                      for v in variants))
    if problems:
        sys.exit("FAILED: " + "; ".join(problems))


if __name__ == "__main__":
    main()
