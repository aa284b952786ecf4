"""A gate graph as one self-contained C file (C99, no dependencies beyond the C library's
``stdint.h``/``string.h``): the net, the per-class popcount and the argmax, for CPUs and
microcontrollers. ``lgn-fpga export --format c`` writes it; ``predict --engine c`` compiles
and runs it (:mod:`lgn_fpga.flow.c_engine`).

How it is fast without being big: the net is *data* (index tables), not code, so the file
compiles in about a second whatever the net's size (straight-line C with one statement per
gate takes minutes for 50k gates). Each layer's gates are reordered so gates with the same
op are contiguous; one small loop per op (16 kernels, their expressions derived from
:data:`lgn_fpga.net.ops.FORMS` through :class:`lgn_fpga.net.ops.Text`) then evaluates a run
of gates with no branch per gate, writing its outputs in order. Consumers' indices are
remapped to the new order; the last layer is reordered only inside each class group, which
a popcount does not see. A block of ``LGN_BLOCK_WORDS`` 64-bit words (256 samples by
default, a GCC/Clang vector type) flows through every gate at once. Class scores are counted
bit-sliced with carry-save adders (Harley-Seal: about six word operations per output
bit for 256 samples),
then the argmax goes to the lowest index on ties, as in :mod:`lgn_fpga.net.golden`.
"""

from __future__ import annotations

import numpy as np

from lgn_fpga.net import ops
from lgn_fpga.net.graph import GateGraph, score_width

__all__ = ["c_source", "reorder", "MAGIC"]

#: First 8 bytes of the stdin stream the ``LGN_MAIN`` driver reads (see the file header).
MAGIC = b"LGNC\x01\x00\x00\x00"
#: Numbers per line in the generated tables (keeps lines short for editors and diffs).
_PER_LINE = 24


def reorder(graph: GateGraph) -> list[tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]]:
    """Each layer as ``(a, b, runs)`` with gates sorted by op (the last layer: by class
    group, then op), then by input ``a``, and inputs remapped to the previous layer's new
    order. ``runs`` is ``[(op, count), ...]`` in order; the gates of a class group stay
    inside the group."""
    k = graph.group_size
    position = None  # new position of each old output of the previous layer
    out = []
    for n, layer in enumerate(graph.layers):
        op = layer.op.astype(np.int64)
        key = op if n < graph.depth - 1 else (np.arange(len(op)) // k) * 16 + op
        a = layer.a.astype(np.int64)
        b = layer.b.astype(np.int64)
        if position is not None:
            a, b = position[a], position[b]
        # within a run, by first input: its reads then sweep the previous layer forward
        order = np.lexsort((a, key))
        a, b = a[order], b[order]
        sorted_key = key[order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        ends = np.r_[starts[1:], len(order)]
        runs = [(int(op[order[s]]), int(e - s)) for s, e in zip(starts, ends, strict=True)]
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        out.append((a, b, runs))
    return out


def _kernel(op: int) -> str:
    uses_a = not ops.IGNORES_A[op]
    uses_b = not ops.IGNORES_B[op]
    expr = ops.apply(op, ops.Text("A") if uses_a else None, ops.Text("B") if uses_b else None,
                     ops.Text("LGN_ZERO"), ops.Text("~LGN_ZERO"))
    body = []
    if uses_a:
        body.append("lgn_vec A = x[a[i]];")
    if uses_b:
        body.append("lgn_vec B = x[b[i]];")
    body.append(f"y[i] = {expr};")
    unused = "".join(f" (void){v};" for v, used in (("x", uses_a or uses_b), ("a", uses_a),
                                                      ("b", uses_b)) if not used)
    return (f"/* op {op}: {ops.NAMES[op]} */\n"
            f"static void lgn_op{op}(const lgn_vec *restrict x, lgn_vec *restrict y,\n"
            f"                     const lgn_idx *restrict a, const lgn_idx *restrict b, "
            f"uint32_t n)\n{{\n   {unused}\n"
            f"    for (uint32_t i = 0; i < n; i++) {{ {' '.join(body)} }}\n}}\n").replace(
                "{\n   \n", "{\n")


def _table(ctype: str, name: str, values) -> str:
    values = [str(int(v)) for v in values]
    lines = [", ".join(values[i:i + _PER_LINE]) for i in range(0, len(values), _PER_LINE)]
    return (f"static const {ctype} {name}[{max(1, len(values))}] = {{\n    "
            + ",\n    ".join(lines or ["0"]) + "\n};\n")


def c_source(graph: GateGraph, *, model_sha256: str | None = None, source: str | None = None,
             version: str = "") -> str:
    """The net as C99 source text (deterministic: same graph, same text).

    Parameters
    ----------
    graph : GateGraph
        The net, as given (not optimized here).
    model_sha256, source : str, optional
        Recorded in the header comment.
    version : str
        The lgn-fpga version, for the header comment.

    Returns
    -------
    str
        The C file. Its header documents the entry points.
    """
    layers = reorder(graph)
    widest = max(graph.inputs, *graph.widths)
    idx_type = "uint16_t" if widest <= 0xFFFF else "uint32_t"
    sw = score_width(graph.group_size)
    sha = model_sha256 or graph.sha256()
    a_all = np.concatenate([a for a, _, _ in layers])
    b_all = np.concatenate([b for _, b, _ in layers])
    run_op = [op for _, _, runs in layers for op, _ in runs]
    run_len = [count for _, _, runs in layers for _, count in runs]
    layer_runs = np.cumsum([0] + [len(runs) for _, _, runs in layers])
    g = graph
    head = f"""\
/* Generated by lgn-fpga {version}: logic gate network as C99, no dependencies.
 * Model sha256 {sha}{f" ({source})" if source else ""}
 * Net as written: {g.inputs} inputs, {g.gates} gates in {g.depth} layers, {g.classes} classes x \
{g.group_size} bits.
 *
 * Entry points (not reentrant: they share static scratch buffers):
 *
 *   void lgn_predict_packed(const uint64_t *inputs, size_t n_words, size_t samples,
 *                           int32_t *scores, int32_t *classes);
 *     inputs: LGN_INPUTS rows of n_words words; bit j of inputs[i * n_words + w] is input
 *     bit i of sample 64 * w + j (samples <= 64 * n_words). Writes scores[s * LGN_CLASSES
 *     + c] (popcount of class c's group of the last layer) and classes[s] (argmax, ties to
 *     the lowest index); either may be NULL.
 *
 *   int lgn_classify(const uint8_t *bits, int32_t *scores);
 *     One sample: bits[LGN_INPUTS] holds 0/1; returns the class, fills scores[LGN_CLASSES]
 *     unless NULL.
 *
 * Compile with -DLGN_MAIN for a filter program: stdin carries the 8 bytes "LGNC" 1 0 0 0,
 * then uint64 samples, uint64 inputs, then the packed inputs as above (n_words =
 * ceil(samples / 64)), all little-endian; stdout gets samples * LGN_CLASSES int32 scores,
 * then samples int32 classes. Exit status 2 on a malformed stream.
 *
 * Speed: -O3 (and -march=native for wide vectors). LGN_BLOCK_WORDS (default 4) words of 64
 * samples go through each gate at once with GCC/Clang vector types; define LGN_NO_VECTOR
 * (or use another compiler) for plain uint64_t, and LGN_BLOCK_WORDS=1 to shrink the two
 * scratch buffers to 8 * LGN_SCRATCH bytes each on a microcontroller.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LGN_INPUTS {g.inputs}
#define LGN_CLASSES {g.classes}
#define LGN_GROUP_SIZE {g.group_size}
#define LGN_LAYERS {g.depth}
#define LGN_GATES {g.gates}
#define LGN_SCRATCH {widest}
#define LGN_SCORE_BITS {sw}

#ifndef LGN_BLOCK_WORDS
#define LGN_BLOCK_WORDS 4
#endif
#if (defined(__GNUC__) || defined(__clang__)) && !defined(LGN_NO_VECTOR)
typedef uint64_t lgn_vec __attribute__((vector_size(8 * LGN_BLOCK_WORDS)));
#define LGN_WORDS LGN_BLOCK_WORDS
#define LGN_LANE(v, w) ((v)[w])
#else
typedef uint64_t lgn_vec;
#define LGN_WORDS 1
#define LGN_LANE(v, w) (v)
#endif
#define LGN_ZERO ((lgn_vec){{0}})
typedef {idx_type} lgn_idx;

"""
    tables = (
        "/* Gate inputs, layer after layer, each layer's gates grouped by op. */\n"
        + _table("lgn_idx", "lgn_a", a_all) + _table("lgn_idx", "lgn_b", b_all)
        + "/* Runs of gates sharing an op: op and length; lgn_layer_runs[l] is layer l's "
          "first run. */\n"
        + _table("uint8_t", "lgn_run_op", run_op) + _table("uint32_t", "lgn_run_len", run_len)
        + _table("uint32_t", "lgn_layer_runs", layer_runs) + "\n")
    kernels = "\n".join(_kernel(op) for op in range(16))
    kernels += ("\ntypedef void (*lgn_kernel)(const lgn_vec *restrict, lgn_vec *restrict,\n"
                "                           const lgn_idx *restrict, const lgn_idx *restrict,"
                " uint32_t);\nstatic const lgn_kernel lgn_kernels[16] = {\n    "
                + ", ".join(f"lgn_op{op}" for op in range(16)) + "\n};\n\n")
    return head + tables + kernels + _BODY


_BODY = r"""static lgn_vec lgn_buf0[LGN_SCRATCH], lgn_buf1[LGN_SCRATCH];

/* All layers on one block; returns the last layer's outputs. */
static const lgn_vec *lgn_net(void)
{
    const lgn_idx *a = lgn_a, *b = lgn_b;
    lgn_vec *x = lgn_buf0, *y = lgn_buf1;
    for (uint32_t l = 0; l < LGN_LAYERS; l++) {
        lgn_vec *out = y;
        for (uint32_t r = lgn_layer_runs[l]; r < lgn_layer_runs[l + 1]; r++) {
            uint32_t n = lgn_run_len[r];
            lgn_kernels[lgn_run_op[r]](x, out, a, b, n);
            a += n; b += n; out += n;
        }
        lgn_vec *t = x; x = y; y = t;
    }
    return x;
}

/* Count the ones of n words per lane, bit-sliced (Harley-Seal): carry-save adders fold
 * each 8 words into ones, twos, fours and one word of weight 8 that a ripple adds into a
 * counter of the higher bits. The total is ones + 2 twos + 4 fours + 8 E, and the first
 * three are single bits, so the count's bit planes are ones, twos, fours, E[0], E[1], ...
 * (E < 2^(LGN_SCORE_BITS - 3) as the count < 2^LGN_SCORE_BITS). */
#define LGN_CSA(h, l, a, b, c) \
    do { lgn_vec u_ = (a) ^ (b); h = ((a) & (b)) | (u_ & (c)); l = u_ ^ (c); } while (0)
#define LGN_E_BITS (LGN_SCORE_BITS > 3 ? LGN_SCORE_BITS - 3 : 1)

static void lgn_count(const lgn_vec *y, uint32_t n, lgn_vec *plane)
{
    lgn_vec ones = LGN_ZERO, twos = LGN_ZERO, fours = LGN_ZERO;
    lgn_vec twos_a, twos_b, fours_a, fours_b, eights, e[LGN_E_BITS];
    for (uint32_t t = 0; t < LGN_E_BITS; t++) e[t] = LGN_ZERO;
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        LGN_CSA(twos_a, ones, ones, y[i], y[i + 1]);
        LGN_CSA(twos_b, ones, ones, y[i + 2], y[i + 3]);
        LGN_CSA(fours_a, twos, twos, twos_a, twos_b);
        LGN_CSA(twos_a, ones, ones, y[i + 4], y[i + 5]);
        LGN_CSA(twos_b, ones, ones, y[i + 6], y[i + 7]);
        LGN_CSA(fours_b, twos, twos, twos_a, twos_b);
        LGN_CSA(eights, fours, fours, fours_a, fours_b);
        for (uint32_t t = 0; t < LGN_E_BITS; t++) {
            lgn_vec c = e[t] & eights;
            e[t] ^= eights;
            eights = c;
        }
    }
    for (; i < n; i++) {  /* the last n % 8 words: ripple each in at weight 1 */
        lgn_vec carry = y[i], c;
        c = ones & carry; ones ^= carry; carry = c;
        c = twos & carry; twos ^= carry; carry = c;
        c = fours & carry; fours ^= carry; carry = c;
        for (uint32_t t = 0; t < LGN_E_BITS; t++) {
            c = e[t] & carry;
            e[t] ^= carry;
            carry = c;
        }
    }
    for (uint32_t t = 0; t < LGN_SCORE_BITS; t++)
        plane[t] = t == 0 ? ones : t == 1 ? twos : t == 2 ? fours : e[t - 3];
}

static int32_t lgn_block_scores[LGN_WORDS * 64][LGN_CLASSES];

/* Transpose an 8x8 bit matrix held as 8 bytes (row i = byte i). */
static uint64_t lgn_transpose8(uint64_t x)
{
    uint64_t t;
    t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull; x = x ^ t ^ (t << 7);
    t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull; x = x ^ t ^ (t << 14);
    t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull; x = x ^ t ^ (t << 28);
    return x;
}

/* Scores and classes of the lanes < lanes of the block now in lgn_buf0. */
static void lgn_block(size_t lanes, int32_t *scores, int32_t *classes)
{
    const lgn_vec *y = lgn_net();
    lgn_vec plane[LGN_SCORE_BITS];
    for (uint32_t c = 0; c < LGN_CLASSES; c++) {
        lgn_count(y + (size_t)c * LGN_GROUP_SIZE, LGN_GROUP_SIZE, plane);
        /* Lane j's score is bit j of every plane: 8 planes x 8 lanes at a time are an 8x8
         * bit matrix, transposed so each lane's 8 score bits land in one byte. */
        for (uint32_t w = 0; w < LGN_WORDS; w++) {
            for (uint32_t j = 0; j < 64; j++) lgn_block_scores[w * 64 + j][c] = 0;
            for (uint32_t t0 = 0; t0 < LGN_SCORE_BITS; t0 += 8) {
                uint64_t p[8];
                for (uint32_t t = 0; t < 8; t++)
                    p[t] = t0 + t < LGN_SCORE_BITS ? LGN_LANE(plane[t0 + t], w) : 0;
                for (uint32_t q = 0; q < 8; q++) {
                    uint64_t m = 0;
                    for (uint32_t t = 0; t < 8; t++) m |= ((p[t] >> (8 * q)) & 0xFFu) << (8 * t);
                    m = lgn_transpose8(m);
                    for (uint32_t j = 0; j < 8; j++)
                        lgn_block_scores[w * 64 + 8 * q + j][c] |=
                            (int32_t)((m >> (8 * j)) & 0xFFu) << t0;
                }
            }
        }
    }
    for (size_t s = 0; s < lanes; s++) {
        const int32_t *sc = lgn_block_scores[s];
        int32_t best = 0;
        for (int32_t c = 1; c < LGN_CLASSES; c++)
            if (sc[c] > sc[best]) best = c;  /* strictly greater: ties to the lowest index */
        if (scores) memcpy(scores + s * LGN_CLASSES, sc, sizeof(int32_t) * LGN_CLASSES);
        if (classes) classes[s] = best;
    }
}

void lgn_predict_packed(const uint64_t *inputs, size_t n_words, size_t samples,
                        int32_t *scores, int32_t *classes)
{
    for (size_t base = 0; base * 64 < samples; base += LGN_WORDS) {
        for (size_t i = 0; i < LGN_INPUTS; i++) {
            uint64_t words[LGN_WORDS];
            for (size_t w = 0; w < LGN_WORDS; w++)
                words[w] = base + w < n_words ? inputs[i * n_words + base + w] : 0;
            memcpy(&lgn_buf0[i], words, sizeof words);
        }
        size_t lanes = samples - base * 64;
        if (lanes > (size_t)LGN_WORDS * 64) lanes = (size_t)LGN_WORDS * 64;
        lgn_block(lanes, scores ? scores + base * 64 * LGN_CLASSES : NULL,
                  classes ? classes + base * 64 : NULL);
    }
}

int lgn_classify(const uint8_t *bits, int32_t *scores)
{
    static uint64_t packed[LGN_INPUTS];
    int32_t cls;
    for (size_t i = 0; i < LGN_INPUTS; i++) packed[i] = bits[i] & 1u;
    lgn_predict_packed(packed, 1, 1, scores, &cls);
    return cls;
}

#ifdef LGN_MAIN
#include <stdio.h>
#include <stdlib.h>

static int lgn_fail(const char *why)
{
    fprintf(stderr, "lgn: %s\n", why);
    return 2;
}

int main(void)
{
    unsigned char magic[8];
    uint64_t samples, inputs;
    if (fread(magic, 1, 8, stdin) != 8 || memcmp(magic, "LGNC\1\0\0\0", 8) != 0)
        return lgn_fail("stdin is not an LGNC stream");
    if (fread(&samples, 8, 1, stdin) != 1 || fread(&inputs, 8, 1, stdin) != 1)
        return lgn_fail("truncated header");
    if (inputs != LGN_INPUTS) return lgn_fail("wrong number of inputs");
    size_t n_words = (size_t)((samples + 63) / 64);
    uint64_t *in = malloc(sizeof(uint64_t) * (n_words * LGN_INPUTS + 1));
    int32_t *scores = malloc(sizeof(int32_t) * (samples * LGN_CLASSES + 1));
    int32_t *classes = malloc(sizeof(int32_t) * (samples + 1));
    if (!in || !scores || !classes) return lgn_fail("out of memory");
    if (fread(in, 8, n_words * LGN_INPUTS, stdin) != n_words * LGN_INPUTS)
        return lgn_fail("truncated inputs");
    lgn_predict_packed(in, n_words, (size_t)samples, scores, classes);
    if (fwrite(scores, 4, samples * LGN_CLASSES, stdout) != samples * LGN_CLASSES
            || fwrite(classes, 4, samples, stdout) != samples || fflush(stdout) != 0)
        return lgn_fail("cannot write the results");
    return 0;
}
#endif
"""
