"""CPU engines side by side: the golden model, the C engine (lgn_fpga.flow.c_engine) and
difflogic-style straight-line C, on one random net (issue 14's: 256 inputs, 5 x 10000
gates, 10 classes, 65,536 samples), by CPU time of this process and its children.

The difflogic-style reference is written here the way difflogic's ``CompiledLogicNet``
writes its C: one ``const uint64_t`` statement per gate in one function (gcc -O1 by
default), a driver that packs the 0/1 input bytes 64 samples to a word bit by bit and a
bit-sliced ripple adder per class for the group sum, built as a shared library and called
through ctypes on the same bits. "gates only" runs the same library without the group sum
(packing and gates), for its gates' own throughput.

Every engine runs end to end (from the same (samples, inputs) 0/1 bytes to scores and
classes) and must agree with golden bit for bit, ties included, before any figure is
printed. Then they run round-robin, ``--repeat`` rounds (this machine's speed drifts by tens
of percent, so each engine's best run comes from the same stretch of time as the others'),
and the fastest run of each counts. gate-evals/s is the net's gates (as given) times samples
over seconds, whatever an engine removes first: the C engine as ``predict --engine c`` runs
it optimizes the net (dead gates, constants, duplicates), gcc does the same to the straight-
line C, golden skips dead gates.

Compiling the straight-line C of a 50k-gate net takes gcc about 100 s, so that library is
cached (with its measured compile time) under ``$LGN_FPGA_CACHE/bench-difflogic/``: only the
first run pays it (``--fresh-reference`` recompiles). The C engine is always compiled
afresh, in a temporary cache.

Run:  nice python bench/cpu.py [--samples 65536] [--repeat 3] [--inputs 256 --layers 5
      --width 10000 --classes 10] [--reference-flags -O1] [--fresh-reference]
"""

import argparse
import ctypes
import hashlib
import math
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from lgn_fpga.flow import c_engine
from lgn_fpga.flow.cache import building, cache_dir
from lgn_fpga.net import golden, ops
from lgn_fpga.net.optimize import design_graph
from lgn_fpga.net.random_nets import random_graph


def cpu() -> float:
    """CPU seconds of this process and its waited-for children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def straight_line_c(graph) -> str:
    """difflogic-style C for ``graph``: ``lgn_ref_net`` has one statement per gate; the
    entry points ``lgn_ref_apply`` (packing, net, group sum: scores) and
    ``lgn_ref_gates`` (packing and net only) take (samples, inputs) 0/1 bytes."""
    lines = ["#include <stdint.h>", "#include <stddef.h>", "#include <stdlib.h>", "",
             "static void lgn_ref_net(const uint64_t *restrict in, uint64_t *restrict out) {"]
    names = [f"in[{i}]" for i in range(graph.inputs)]
    zero, one = ops.Text("(uint64_t)0"), ops.Text("~(uint64_t)0")
    count = 0
    for n, layer in enumerate(graph.layers):
        last = n == graph.depth - 1
        new = []
        for a, b, op in zip(layer.a.tolist(), layer.b.tolist(), layer.op.tolist(),
                            strict=True):
            expr = ops.apply(op, ops.Text(names[a]), ops.Text(names[b]), zero, one)
            if last:
                lines.append(f"  out[{len(new)}] = {expr};")
                new.append(None)
            else:
                lines.append(f"  const uint64_t v{count} = {expr};")
                new.append(f"v{count}")
                count += 1
        names = new
    k, m, n_in = graph.group_size, graph.classes, graph.inputs
    bits = max(1, math.ceil(math.log2(k + 1)))  # difflogic's width of a class sum
    lines += ["}", f"""
/* Pack 64 samples (a short last block is padded with zero samples) bit by bit. */
static void lgn_ref_pack(const uint8_t *inp, size_t first, size_t len, uint64_t *word)
{{
    for (size_t d = 0; d < {n_in}; ++d) {{
        uint64_t res = 0;
        for (size_t b = 0; b < 64; ++b) {{
            res <<= 1;
            size_t s = first + 63 - b;
            res += s < len ? !!inp[s * {n_in} + d] : 0;
        }}
        word[d] = res;
    }}
}}

void lgn_ref_apply(const uint8_t *inp, int32_t *scores, size_t len)
{{
    uint64_t *in = malloc(sizeof(uint64_t) * {n_in});
    uint64_t *out = malloc(sizeof(uint64_t) * {graph.outputs});
    uint64_t sum[{bits}];
    for (size_t first = 0; first < len; first += 64) {{
        lgn_ref_pack(inp, first, len, in);
        lgn_ref_net(in, out);
        for (size_t c = 0; c < {m}; ++c) {{
            for (size_t d = 0; d < {bits}; ++d) sum[d] = 0;
            for (size_t a = 0; a < {k}; ++a) {{  /* ripple-add one output bit */
                uint64_t carry = out[c * {k} + a];
                for (int d = {bits} - 1; d >= 0; --d) {{
                    uint64_t t = sum[d];
                    sum[d] = carry ^ t;
                    carry = carry & t;
                }}
            }}
            for (size_t b = 0; b < 64 && first + b < len; ++b) {{
                int32_t res = 0;
                for (size_t d = 0; d < {bits}; ++d) {{
                    res <<= 1;
                    res += !!(sum[d] & ((uint64_t)1 << b));
                }}
                scores[(first + b) * {m} + c] = res;
            }}
        }}
    }}
    free(in);
    free(out);
}}

uint64_t lgn_ref_gates(const uint8_t *inp, size_t len)
{{
    uint64_t *in = malloc(sizeof(uint64_t) * {n_in});
    uint64_t *out = malloc(sizeof(uint64_t) * {graph.outputs});
    uint64_t seen = 0;
    for (size_t first = 0; first < len; first += 64) {{
        lgn_ref_pack(inp, first, len, in);
        lgn_ref_net(in, out);
        seen ^= out[(first / 64) % {graph.outputs}];  /* keeps the net from being dropped */
    }}
    free(in);
    free(out);
    return seen;
}}
"""]
    return "\n".join(lines)


def reference_library(graph, flags: list[str], fresh: bool):
    """The straight-line C built as a shared library, from the bench cache or compiled now;
    returns (library, compile CPU seconds, whether it came from the cache)."""
    text = straight_line_c(graph)
    cc = c_engine.compiler()
    key = hashlib.sha256("\0".join([text, cc, *flags]).encode()).hexdigest()[:32]
    home = cache_dir() / "bench-difflogic" / key
    if fresh and home.exists():
        shutil.rmtree(home)
    cached = (home / "ref.so").exists()
    if not cached:
        print(f"compiling the difflogic-style C ({graph.gates} statements, {' '.join(flags)}; "
              "about 100 s for 50k gates, once) ...", flush=True)
        with building(home) as work:
            (work / "ref.c").write_text(text)
            t = cpu()
            subprocess.run([cc, *flags, "-w", "-shared", "-fPIC", "ref.c", "-o", "ref.so"],
                           cwd=work, check=True)
            (work / "compile-seconds").write_text(f"{cpu() - t:.3f}\n")
            (work / "ref.c").unlink()
    lib = ctypes.CDLL(str(home / "ref.so"))
    lib.lgn_ref_apply.restype = None
    lib.lgn_ref_apply.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.lgn_ref_gates.restype = ctypes.c_uint64
    lib.lgn_ref_gates.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return lib, float((home / "compile-seconds").read_text()), cached


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=65536)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--inputs", type=int, default=256)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--width", type=int, default=10000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--reference-flags", default="-O1",
                   help="gcc flags of the straight-line reference (difflogic-style: -O1)")
    p.add_argument("--fresh-reference", action="store_true",
                   help="recompile the straight-line reference instead of using the cache")
    args = p.parse_args()
    g = random_graph(args.inputs, args.layers, args.width, args.classes, seed=1)
    bits = np.random.default_rng(0).integers(0, 2, (args.samples, g.inputs), dtype=np.uint8)
    evals = g.gates * args.samples
    print(f"net: {g.inputs} inputs, {g.depth} x {args.width} = {g.gates} gates, {g.classes} "
          f"classes; {args.samples} samples; best of {args.repeat}; CPU seconds "
          "(process + children)")

    # Every engine is built and checked first, then timed round-robin: this machine's speed
    # drifts by tens of percent over seconds, and interleaving makes each engine's best run
    # come from the same stretch of time as the others'.
    model = golden.GoldenModel(g)
    want = model.predict(bits)

    def same(got, name):
        if not (np.array_equal(got.scores, want.scores)
                and np.array_equal(got.classes, want.classes)):
            raise SystemExit(f"{name} disagrees with golden")

    engines = [("golden (numpy)", lambda: model.predict(bits), None)]
    # the reference in the user's cache (compiling it takes minutes); the C engine afresh
    lib, compile_ref, cached = reference_library(g, args.reference_flags.split(),
                                                 args.fresh_reference)
    work = Path(tempfile.mkdtemp(prefix="lgn-bench-"))
    saved = os.environ.get("LGN_FPGA_CACHE")
    try:
        os.environ["LGN_FPGA_CACHE"] = str(work / "cache")
        t = cpu()
        net, _ = design_graph(g, optimize=True)
        built_opt = c_engine.build(net)
        compile_opt = cpu() - t
        same(c_engine.run(built_opt, net, bits), "the C engine")
        engines.append((f"C engine (predict: {net.gates} gates)",
                        lambda: c_engine.run(built_opt, net, bits), compile_opt))
        t = cpu()
        built_raw = c_engine.build(g)
        compile_raw = cpu() - t
        same(c_engine.run(built_raw, g, bits), "the C engine (net as given)")
        engines.append(("C engine (net as given)", lambda: c_engine.run(built_raw, g, bits),
                        compile_raw))

        bits_c = np.ascontiguousarray(bits)

        def reference():
            scores = np.empty((len(bits), g.classes), dtype=np.int32)
            lib.lgn_ref_apply(bits_c.ctypes.data, scores.ctypes.data, len(bits))
            return golden.Prediction(scores, golden.argmax_lowest(scores))

        same(reference(), "the difflogic-style C")
        engines.append((f"difflogic-style C {args.reference_flags}", reference, compile_ref))
        engines.append(("difflogic-style, gates only",
                        lambda: lib.lgn_ref_gates(bits_c.ctypes.data, len(bits)), None))
        best = [math.inf] * len(engines)
        for _ in range(args.repeat):
            for i, (_, fn, _) in enumerate(engines):
                t = cpu()
                fn()
                best[i] = min(best[i], cpu() - t)
    finally:
        if saved is None:
            os.environ.pop("LGN_FPGA_CACHE", None)
        else:
            os.environ["LGN_FPGA_CACHE"] = saved
        shutil.rmtree(work, ignore_errors=True)
    rows = [(name, seconds, compile_s)
            for (name, _, compile_s), seconds in zip(engines, best, strict=True)]
    ref_full, ref_gates = best[-2], best[-1]

    print(f"{'engine':>34} {'CPU s':>7} {'gate-evals/s':>13} {'vs difflogic':>13} "
          f"{'vs its gates':>13} {'compile s':>10}")
    for name, seconds, compile_s in rows:
        rate = evals / seconds
        comp = f"{compile_s:10.1f}" if compile_s is not None else f"{'-':>10}"
        print(f"{name:>34} {seconds:7.3f} {rate:13.3g} {ref_full / seconds:12.2f}x "
              f"{ref_gates / seconds:12.2f}x {comp}")
    print(f"(all engines agree with golden bit for bit, ties included; difflogic-style "
          f"compile {'from the bench cache, measured when built' if cached else 'measured now'}"
          f"; {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
