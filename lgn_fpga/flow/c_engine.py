"""The compiled CPU engine: the C file of :mod:`lgn_fpga.net.c_source` built with the host's
C compiler as a shared library and called in this process through :mod:`ctypes` (as
difflogic's ``CompiledLogicNet`` runs its C): the unpacked 0/1 bytes go in, scores and
classes come back in numpy arrays, with no copy through a pipe and the bits packed in C.

Libraries are cached under ``<cache>/c-engine/<key>/`` (:mod:`lgn_fpga.flow.cache`), where the
key hashes the net, the code that writes its C, the compiler, its version, the flags and,
with ``-march=native``, the CPU's model and feature flags (a cache on a shared home folder
must not hand AVX-512 code to a machine without it). A build happens in a temporary folder
published with one rename, so a concurrent or interrupted build never leaves a half-written
library under a key. The compiler runs in its own process group that dies with lgn-fpga
(:mod:`lgn_fpga.flow.processes`): Ctrl-C or a SIGKILL of lgn-fpga leaves no ``cc1``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgn_fpga import __version__
from lgn_fpga.errors import UserError
from lgn_fpga.flow import cache, processes
from lgn_fpga.net import golden
from lgn_fpga.net.c_source import c_source
from lgn_fpga.net.graph import GateGraph

__all__ = ["CompiledNet", "build", "cache_dir", "cflags", "compiler", "predict", "run"]

#: -O3 vectorizes the per-op loops (25% faster than -O2 here); -march=native lets the
#: 256-bit block use AVX2 (the cache key then names the CPU). ``$LGN_FPGA_CFLAGS``
#: overrides both; -shared -fPIC are always added.
CFLAGS = ("-std=c99", "-O3", "-march=native", "-w")
#: Seconds a compile may take before it is stopped (a 50k-gate net takes about one).
COMPILE_TIMEOUT = 600.0

cache_dir = cache.cache_dir


def compiler() -> str:
    """``$CC``, else ``cc``, ``gcc`` or ``clang`` on PATH.

    Raises
    ------
    UserError
        No C compiler is found.
    """
    cc = os.environ.get("CC") or next(
        (found for name in ("cc", "gcc", "clang") if (found := shutil.which(name))), None)
    if not cc:
        raise UserError("the c engine needs a C compiler (cc, gcc or clang on PATH, or set CC); "
                        "use --engine golden instead")
    if not shutil.which(cc):
        raise UserError(f"the c engine's compiler {cc!r} (from CC) is not found; "
                        "use --engine golden instead")
    return cc


def cflags() -> tuple[str, ...]:
    """The compiler flags: ``$LGN_FPGA_CFLAGS`` split on spaces, else :data:`CFLAGS`."""
    if os.environ.get("LGN_FPGA_CFLAGS"):
        return tuple(os.environ["LGN_FPGA_CFLAGS"].split())
    return CFLAGS


def _compiler_id(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True,
                              timeout=60, **processes.popen_kwargs()).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_id() -> str:
    """What -march=native code depends on: the CPU's model and feature flags."""
    try:
        with open("/proc/cpuinfo") as f:
            wanted = [line for line in f if line.startswith(("model name", "flags",
                                                                "Features", "isa"))]
        return "".join(sorted(set(wanted)))
    except OSError:
        return platform.processor() + platform.node()


def _generator_id() -> str:
    """The source of the modules that write the C (the C file, the folding it shares with
    golden, the op table): a change to any of them is a new key."""
    from lgn_fpga.net import c_source as c_module
    from lgn_fpga.net import ops

    h = hashlib.sha256()
    for module in (c_module, golden, ops):
        h.update(Path(module.__file__).read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class CompiledNet:
    binary: Path      # the shared library
    key: str
    compiled: bool    # False when it came from the cache
    seconds: float    # generation + compilation time (0 from the cache)


def build(graph: GateGraph) -> CompiledNet:
    """The engine library for ``graph``: from the cache, or generated and compiled now.

    Raises
    ------
    UserError
        No C compiler, the compiler failed (its last message is shown) or timed out, or the
        cache folder cannot be written.
    """
    start = time.perf_counter()
    cc = compiler()
    flags = cflags()
    h = hashlib.sha256()
    # the net and the code that writes its C stand for the C itself: a cache hit then
    # costs no generation (0.4 s for a 50k-gate net)
    for part in (graph.sha256(), _generator_id(), __version__, cc, _compiler_id(cc),
                 " ".join(flags), platform.machine(),
                 _cpu_id() if "-march=native" in flags else ""):
        h.update(part.encode())
        h.update(b"\0")
    key = h.hexdigest()[:32]
    home = cache.cache_dir() / "c-engine" / key
    binary = home / "net.so"
    if binary.exists():
        return CompiledNet(binary, key, False, 0.0)
    with cache.building(home) as work:
        (work / "net.c").write_text(c_source(graph, version=__version__))
        code, output = processes.run_group(
            [cc, *flags, "-shared", "-fPIC", "net.c", "-o", "net.so"], cwd=work,
            timeout=COMPILE_TIMEOUT)
        if code != 0:
            last = (output.strip().splitlines() or ["(no message)"])[-1]
            why = f"timed out after {COMPILE_TIMEOUT:.0f} s" if code is None else f"failed: {last}"
            raise UserError(f"compiling the c engine with {cc} {why}")
        (work / "net.c").unlink()
    return CompiledNet(binary, key, True, time.perf_counter() - start)


_LOADED: dict[Path, tuple[ctypes.CDLL, threading.Lock]] = {}


def _library(compiled: CompiledNet) -> tuple[ctypes.CDLL, threading.Lock]:
    """The loaded library and the lock its calls take (its scratch buffers are static)."""
    if compiled.binary not in _LOADED:
        try:
            lib = ctypes.CDLL(str(compiled.binary))
        except OSError as e:
            raise UserError(f"the c engine ({compiled.binary}) cannot be loaded: {e}") from None
        fn = lib.lgn_predict_bits
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
        _LOADED[compiled.binary] = (lib, threading.Lock())
    return _LOADED[compiled.binary]


def run(compiled: CompiledNet, graph: GateGraph, bits: np.ndarray) -> golden.Prediction:
    """Run a built engine on (samples, inputs) 0/1 bits; see :func:`predict`.

    Raises
    ------
    UserError
        Bad input bits (as golden), or the library cannot be loaded.
    """
    bits = np.ascontiguousarray(golden.check_bits(bits, graph.inputs))
    samples = len(bits)
    scores = np.empty((samples, graph.classes), dtype=np.int32)
    classes = np.empty(samples, dtype=np.int32)
    lib, lock = _library(compiled)
    with lock:  # ctypes lets go of the GIL during the call
        lib.lgn_predict_bits(bits.ctypes.data, samples, scores.ctypes.data,
                             classes.ctypes.data)
    return golden.Prediction(scores, classes.astype(np.int64))


def predict(graph: GateGraph, bits: np.ndarray, *, optimize: bool = True
            ) -> golden.Prediction:
    """Scores and classes of ``graph`` on (samples, inputs) 0/1 bits, computed by the
    compiled C engine: bit for bit what :func:`lgn_fpga.net.golden.predict` gives.

    Unless ``optimize`` is false the net is first optimized as ``export`` does (dead gates,
    constants and duplicates removed: same scores on every input; a random 50k-gate net
    keeps 27k), which takes milliseconds and saves as much run time.

    Raises
    ------
    UserError
        Bad input bits (as golden), no C compiler, or a failed compile or run.
    """
    from lgn_fpga.net.optimize import design_graph

    bits = golden.check_bits(bits, graph.inputs)
    net, _ = design_graph(graph, optimize=optimize)
    return run(build(net), net, bits)
