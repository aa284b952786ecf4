"""CPU engines side by side: the golden model, the C engine (lgn_fpga.flow.c_engine) and
difflogic-style straight-line C (one statement per gate over uint64, as difflogic's
``CompiledLogicNet`` writes; its generator is below), on one random net, by CPU time.

Every engine runs end to end (packing, gates, class popcount, argmax) on the same bits and
must agree with golden bit for bit before any figure is printed. CPU time is this process's
plus its children's (the compiled programs), so a loaded machine inflates wall time only;
"program" is the compiled program's own CPU time (without Python packing the bits and
reading the results). The reference's group sum counts bit by bit, as difflogic's does;
"gates only" runs it without, for its gates' own throughput.

Run:  nice python bench/cpu.py [--samples N] [--inputs 256 --layers 5 --width 10000]
"""

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from lgn_fpga.flow import c_engine
from lgn_fpga.net import golden, ops
from lgn_fpga.net.c_source import MAGIC
from lgn_fpga.net.random_nets import random_graph


def cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime + children()


def children() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def straight_line_c(graph) -> str:
    """difflogic-style C: each gate one ``const uint64_t`` statement in one function, then a
    per-bit group sum, as difflogic's CompiledLogicNet does; reads the same LGNC stream as
    the C engine's driver so both pay the same I/O."""
    lines = ["#include <stdint.h>", "#include <stdio.h>", "#include <stdlib.h>",
             "#include <string.h>",
             "static void net(const uint64_t *restrict in, uint64_t *restrict out) {"]
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
    k = graph.group_size
    lines += ["}", f"""
int main(int argc, char **argv) {{
  int gates_only = argc > 1;  /* skip the group sum: the gates' own throughput */
  unsigned char magic[8]; uint64_t samples, inputs;
  if (fread(magic, 1, 8, stdin) != 8 || fread(&samples, 8, 1, stdin) != 1
      || fread(&inputs, 8, 1, stdin) != 1 || inputs != {graph.inputs}) return 2;
  size_t words = (samples + 63) / 64;
  uint64_t *in = malloc(8 * words * inputs), word_in[{graph.inputs}], word_out[{graph.outputs}];
  int32_t *scores = calloc(samples * {graph.classes} + 1, 4), *classes = malloc(4 * samples + 4);
  if (fread(in, 8, words * inputs, stdin) != words * inputs) return 2;
  for (size_t w = 0; w < words; w++) {{
    for (size_t i = 0; i < inputs; i++) word_in[i] = in[i * words + w];
    net(word_in, word_out);
    if (gates_only) {{ scores[0] += (int32_t)word_out[w % {graph.outputs}]; continue; }}
    for (size_t c = 0; c < {graph.classes}; c++)
      for (size_t a = 0; a < {k}; a++)
        for (size_t j = 0; j < 64 && w * 64 + j < samples; j++)
          scores[(w * 64 + j) * {graph.classes} + c] += (word_out[c * {k} + a] >> j) & 1;
  }}
  for (size_t s = 0; s < samples; s++) {{
    int best = 0;
    for (int c = 1; c < {graph.classes}; c++)
      if (scores[s * {graph.classes} + c] > scores[s * {graph.classes} + best]) best = c;
    classes[s] = best;
  }}
  fwrite(scores, 4, samples * {graph.classes}, stdout); fwrite(classes, 4, samples, stdout);
  return 0;
}}
"""]
    return "\n".join(lines)


def run_binary(binary, graph, bits, *extra):
    packed = golden.pack_bits(bits).astype("<u8", copy=False)
    stream = MAGIC + np.array([len(bits), graph.inputs], dtype="<u8").tobytes() + packed.tobytes()
    out = subprocess.run([str(binary), *extra], input=stream, capture_output=True,
                         check=True).stdout
    out = np.frombuffer(out, dtype="<i4")
    n = len(bits) * graph.classes
    return out[:n].reshape(len(bits), graph.classes), out[n:]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=65536)
    p.add_argument("--inputs", type=int, default=256)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--width", type=int, default=10000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--reference-flags", default="-O1",
                   help="gcc flags of the straight-line reference (difflogic-style: -O1)")
    args = p.parse_args()
    g = random_graph(args.inputs, args.layers, args.width, args.classes, seed=1)
    bits = np.random.default_rng(0).integers(0, 2, (args.samples, g.inputs), dtype=np.uint8)
    print(f"net: {g.inputs} inputs, {g.depth} x {args.width} = {g.gates} gates, {g.classes} "
          f"classes; {args.samples} samples; CPU seconds (process + children)")

    rows = []  # (engine, end-to-end CPU s, compiled program's own CPU s, compile CPU s)
    t = cpu()
    want = golden.predict(g, bits)
    rows.append(("golden (numpy)", cpu() - t, None, None))

    work = Path(tempfile.mkdtemp(prefix="lgn-bench-"))
    try:
        os.environ["LGN_FPGA_CACHE"] = str(work / "cache")
        t = cpu()
        built = c_engine.build(g)
        compile_c = cpu() - t
        t, k = cpu(), children()
        got = c_engine.run(built, g, bits)
        rows.append(("C engine", cpu() - t, children() - k, compile_c))
        assert np.array_equal(got.scores, want.scores) and np.array_equal(got.classes,
                                                                          want.classes)

        (work / "ref.c").write_text(straight_line_c(g))
        t = cpu()
        subprocess.run([c_engine.compiler(), *args.reference_flags.split(), "-w", "ref.c",
                        "-o", "ref"], cwd=work, check=True)
        compile_ref = cpu() - t
        t, k = cpu(), children()
        scores, classes = run_binary(work / "ref", g, bits)
        ref = (cpu() - t, children() - k)
        assert np.array_equal(scores, want.scores) and np.array_equal(classes, want.classes)
        t, k = cpu(), children()
        run_binary(work / "ref", g, bits, "gates-only")
        rows.append(("difflogic-style, gates only", cpu() - t, children() - k, None))
        rows.append((f"difflogic-style C {args.reference_flags}", *ref, compile_ref))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ref_rate = g.gates * args.samples / rows[-1][1]  # end to end, with its group sum
    print(f"{'engine':>28} {'CPU s':>7} {'gate-evals/s':>13} {'vs difflogic-style':>19} "
          f"{'program s':>10} {'program evals/s':>16} {'compile s':>10}")
    for name, seconds, program, compile_s in rows:
        rate = g.gates * args.samples / seconds
        prog = (f"{program:10.3f} {g.gates * args.samples / program:16.3g}" if program
                else f"{'-':>10} {'-':>16}")
        comp = f"{compile_s:10.1f}" if compile_s is not None else f"{'-':>10}"
        print(f"{name:>28} {seconds:7.3f} {rate:13.3g} {rate / ref_rate:18.2f}x {prog} {comp}")
    print(f"(all engines agree with golden bit for bit; {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()
