"""The compiled CPU engine: the C file of :mod:`lgn_fpga.net.c_source` built with the host's
C compiler and run as a filter (packed inputs on stdin, scores and classes on stdout).

Binaries are cached under ``<cache>/c-engine/<key>/`` (the cache folder of the CXXRTL engine:
``$LGN_FPGA_CACHE``, else ``$XDG_CACHE_HOME/lgn-fpga``, else ``~/.cache/lgn-fpga``), where
the key hashes the C source, the compiler, its version and the flags. A build happens in a
temporary folder published with one rename, so a concurrent or interrupted build never
leaves a half-written binary under a key.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgn_fpga import __version__
from lgn_fpga.errors import UserError
from lgn_fpga.net import golden
from lgn_fpga.net.c_source import MAGIC, c_source
from lgn_fpga.net.graph import GateGraph

__all__ = ["CompiledNet", "build", "cache_dir", "cflags", "compiler", "predict"]

#: -O3 vectorizes the per-op loops (25% faster than -O2 here); -march=native lets the
#: 256-bit block use AVX2. ``$LGN_FPGA_CFLAGS`` overrides both.
CFLAGS = ("-std=c99", "-O3", "-march=native", "-w")
#: Samples per run of the binary: bounds the memory of the packed inputs and the results.
CHUNK_SAMPLES = 1 << 20


def cache_dir() -> Path:
    """The folder :func:`lgn_fpga.verify.cxxrtl.cache_dir` names (duplicated here because
    flow may not import verify)."""
    if os.environ.get("LGN_FPGA_CACHE"):
        return Path(os.environ["LGN_FPGA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lgn-fpga"


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
    if os.environ.get("LGN_FPGA_CFLAGS"):
        return tuple(os.environ["LGN_FPGA_CFLAGS"].split())
    return CFLAGS


def _compiler_id(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True,
                              timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@dataclass(frozen=True)
class CompiledNet:
    binary: Path
    key: str
    compiled: bool    # False when it came from the cache
    seconds: float    # generation + compilation time (0 from the cache)


def build(graph: GateGraph) -> CompiledNet:
    """The engine binary for ``graph``: from the cache, or generated and compiled now.

    Raises
    ------
    UserError
        No C compiler, or the compiler failed (its last message is shown).
    """
    start = time.perf_counter()
    cc = compiler()
    flags = cflags()
    text = c_source(graph, version=__version__)
    h = hashlib.sha256()
    # -march=native makes the binary specific to this CPU: a cache on a shared home folder
    # must not hand it to another machine.
    for part in (text, cc, _compiler_id(cc), " ".join(flags), platform.machine(),
                 platform.node() if "-march=native" in flags else ""):
        h.update(part.encode())
        h.update(b"\0")
    key = h.hexdigest()[:32]
    home = cache_dir() / "c-engine" / key
    binary = home / "net"
    if binary.exists():
        return CompiledNet(binary, key, False, 0.0)
    try:
        home.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=home.parent))
    except OSError as e:
        raise UserError(f"{home.parent}: cannot create the c engine cache ({e.strerror}); "
                        "set LGN_FPGA_CACHE") from None
    try:
        (work / "net.c").write_text(text)
        result = subprocess.run([cc, *flags, "-DLGN_MAIN", "net.c", "-o", "net"], cwd=work,
                                capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise UserError(f"compiling the c engine with {cc} failed: {last}")
        (work / "net.c").unlink()
        try:
            os.rename(work, home)
        except OSError:
            if not binary.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return CompiledNet(binary, key, True, time.perf_counter() - start)


def run(compiled: CompiledNet, graph: GateGraph, bits: np.ndarray) -> golden.Prediction:
    """Run a built engine on (samples, inputs) 0/1 bits; see :func:`predict`."""
    bits = golden.check_bits(bits, graph.inputs)
    samples = len(bits)
    scores = np.empty((samples, graph.classes), dtype=np.int32)
    classes = np.empty(samples, dtype=np.int64)
    for start in range(0, samples, CHUNK_SAMPLES):
        chunk = bits[start:start + CHUNK_SAMPLES]
        n = len(chunk)
        packed = golden.pack_bits(chunk).astype("<u8", copy=False)
        stream = MAGIC + np.array([n, graph.inputs], dtype="<u8").tobytes() + packed.tobytes()
        result = subprocess.run([str(compiled.binary)], input=stream, capture_output=True)
        expected = 4 * n * (graph.classes + 1)
        if result.returncode != 0 or len(result.stdout) != expected:
            why = result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}"
            raise UserError(f"the c engine ({compiled.binary}) failed: {why}")
        out = np.frombuffer(result.stdout, dtype="<i4")
        scores[start:start + n] = out[:n * graph.classes].reshape(n, graph.classes)
        classes[start:start + n] = out[n * graph.classes:]
    return golden.Prediction(scores, classes)


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
