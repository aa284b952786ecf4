"""The golden model: the reference every other engine is checked against.

Samples are packed 64 to a machine word (sample ``j`` is bit ``j % 64`` of word ``j // 64``).
Where the time goes, and what it does about it (bench/cpu.py: about 4x the numpy model
that evaluated every gate layer by layer; the bit-exact reference stays
:func:`naive_predict`, which shares none of this):

* Only work that reaches a score is done (:func:`fold`, which the C engine shares): a gate
  that copies or inverts one input, is constant, repeats another gate or feeds no output
  is folded into its readers, and inversions move into readers too, so what is left is
  AND, OR, XOR and AND with one input inverted over two different rows (a random 50k-gate
  net keeps 13k gates); constant outputs become a per-class offset.
* Every row lives in one arena (inputs first), so a signal that skips layers costs
  nothing. Each layer's gates are sorted by op, then by first input: one ``take`` gathers
  the layer's ``a`` rows straight into the layer's own rows, another its ``b`` rows into a
  reused buffer, and each op is one in-place ufunc over one contiguous slice (no scatter,
  no temporaries).
* A block of :data:`BLOCK_WORDS` words per row (1024 samples) goes through the whole net
  while it stays in cache.
* Class scores are counted bit-sliced with carry-save adders over whole contiguous slices
  (rows laid out output-major, class-minor, so a slice never mixes classes), a block at a
  time, instead of unpacking every output bit to a byte; inverted outputs come first, so
  only those rows are inverted. The count's bit planes become numbers once per chunk (one
  unpack, one einsum).
* Inputs are packed with one einsum pass (8 samples' 0/1 bytes weighted into a byte) and
  one tiled byte transpose.

Samples stream through in chunks so memory stays bounded for any number of samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.net import ops
from lgn_fpga.net.graph import GateGraph

#: upper bound on the bytes of the packed class outputs for one chunk of samples.
CHUNK_BYTES = 32 << 20
#: words per row evaluated through the whole net, then counted, at once: large enough that
#: numpy's per-call cost vanishes (the count takes many small steps), small enough that a
#: block's rows stay in cache. 16, 24 and 32 are within this machine's noise on a 50k-gate
#: net (8 and 12 slower); in a fresh process 16 settled fastest, and it holds the least.
BLOCK_WORDS = 16


@dataclass(frozen=True)
class Prediction:
    scores: np.ndarray   # int32, (samples, classes): popcount of each class's group
    classes: np.ndarray  # int64, (samples,): argmax of scores, ties to the lowest index


def _numbers(planes: np.ndarray) -> np.ndarray:
    """(P, m, W) bit planes (plane t = bit t of each lane's number, lane j = bit j % 64 of
    word j // 64) to (64 W, m) int32 numbers: each plane unpacked to a byte per lane, then
    the planes weighted by 2**t and summed in one einsum pass."""
    p = planes.shape[0]
    lanes = np.unpackbits(np.ascontiguousarray(planes, dtype="<u8").view(np.uint8), axis=-1,
                          bitorder="little")
    return np.einsum("p,pml->lm", np.left_shift(1, np.arange(p), dtype=np.int32), lanes)


#: powers of two that gather 8 samples' 0/1 bytes into one byte each (see pack_bits)
_SAMPLE_WEIGHTS = np.uint64(1) << np.arange(8, dtype=np.uint64)
#: sample bytes per step of pack_bits' byte transpose (a (rows, inputs) tile stays in cache)
_TRANSPOSE_ROWS = 512


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(samples, N) 0/1 array to (N, ceil(samples/64)) uint64 words."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint8:
        bits = bits.astype(np.uint8)
    samples, n = bits.shape
    words, nb = -(-samples // 64), -(-n // 8)
    if samples != words * 64 or n != nb * 8:  # zero samples to a word, inputs to a byte
        padded = np.zeros((words * 64, nb * 8), dtype=np.uint8)
        padded[:samples, :n] = bits
        bits = padded
    bits = np.ascontiguousarray(bits)
    # word [p, q, g]: sample 8p + q's 0/1 bytes of inputs 8g .. 8g + 7. Summed with weight
    # 2**q over q (one einsum pass over the input: no byte can carry into the next), byte k
    # of [p, g] holds input 8g + k's bits of samples 8p .. 8p + 7
    x = bits.view("<u8").reshape(words * 8, 8, nb)
    gathered = np.einsum("pqg,q->pg", x, _SAMPLE_WEIGHTS).view(np.uint8)
    # (sample byte, input) -> (input, sample byte): 8 sample bytes are one little-endian word
    out = np.empty((nb * 8, words * 8), dtype=np.uint8)
    for r in range(0, words * 8, _TRANSPOSE_ROWS):
        out[:, r:r + _TRANSPOSE_ROWS] = gathered[r:r + _TRANSPOSE_ROWS].T
    return out.view("<u8")[:n].astype(np.uint64, copy=False)


def unpack_bits(words: np.ndarray, samples: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: (N, words) uint64 to (samples, N) uint8."""
    as_bytes = np.ascontiguousarray(words.astype("<u8", copy=False)).view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :samples]
    return np.ascontiguousarray(bits.T)


#: the ops :func:`fold` leaves, as numpy ufuncs (an inverted input is inverted first)
_UFUNCS = {ops.AND: np.bitwise_and, ops.OR: np.bitwise_or, ops.XOR: np.bitwise_xor,
           ops.A_AND_NOT_B: np.bitwise_and, ops.NOT_A_AND_B: np.bitwise_and}


def _op_of(table) -> int:
    """The op whose truth table over (00, 01, 10, 11) is ``table``."""
    return (table[0] << 3) | (table[1] << 2) | (table[2] << 1) | table[3]


_IGNORES_A = [bool(x) for x in ops.IGNORES_A]
_IGNORES_B = [bool(x) for x in ops.IGNORES_B]
_SWAPPED = [int(x) for x in ops.SWAPPED]
#: _THROUGH[op][ia][ib]: op read through inputs stored inverted (ia, ib)
_THROUGH = [[[_op_of([int(ops.truth(op, x ^ ia, y ^ ib)) for x in (0, 1) for y in (0, 1)])
              for ib in (0, 1)] for ia in (0, 1)] for op in range(16)]


def _resolve(op: int, da, db, nodes: list, seen: dict):
    """What gate ``op`` over inputs described by ``da``, ``db`` computes, as a descriptor:
    ``("c", value)`` for a constant or ``(node, inverted)`` for a row of the arena. A real
    two-input function of two different rows becomes a node (reused if it exists)."""
    if (da[0] != "c" and db[0] != "c" and da[0] != db[0] and not _IGNORES_A[op]
            and not _IGNORES_B[op]):  # the common case, by table
        na, nb, g = da[0], db[0], _THROUGH[op][da[1]][db[1]]
        if na > nb:  # one order for a pair, so repeats are found whichever way they are wired
            na, nb, g = nb, na, _SWAPPED[g]
        # store AND, OR, XOR or an AND with one input inverted; NAND, NOR, XNOR and the ORs
        # with one input inverted are those inverted, which the reader folds in
        inverted = int(g >= 8)
        key = (15 - g if inverted else g, na, nb)
        if key not in seen:
            seen[key] = len(nodes)
            nodes.append(key)
        return (seen[key], inverted)
    used = [(d, which) for d, which, ignored in ((da, 0, _IGNORES_A[op]),
                                                  (db, 1, _IGNORES_B[op])) if not ignored]
    free = sorted({d[0] for d, _ in used if d[0] != "c"})

    def value(assign):  # the gate's output with each free node set by ``assign``
        xy = [0, 0]
        for d, which in used:
            xy[which] = d[1] if d[0] == "c" else assign[d[0]] ^ d[1]
        return int(ops.truth(op, xy[0], xy[1]))

    if not free:
        return ("c", value({}))
    if len(free) == 1:
        f0, f1 = value({free[0]: 0}), value({free[0]: 1})
        return ("c", f0) if f0 == f1 else (free[0], f0)
    # a gate both of whose inputs read one row was handled above (one free row)
    raise AssertionError(f"op {op} over {da}, {db}")


def fold(graph: GateGraph):
    """The net reduced to the work an evaluator must do (golden and the C engine evaluate
    this).

    Returns ``(layers, a, b, outputs, offsets)``: ``layers[l]`` is layer l's runs
    ``[(op, count), ...]`` over the arena rows after the inputs, in order (each layer's gates
    sorted by op, then by first input); ``a``, ``b`` their input rows; ``outputs[c]`` the
    ``(row, inverted)`` pairs of class ``c``'s non-constant outputs and ``offsets[c]`` its
    number of outputs that are constant 1. Gates that are constant, copy or invert one
    input, repeat another gate or reach no output are folded away, and inversions move
    into their readers: every remaining gate reads two different rows with AND, OR, XOR,
    ``a & ~b`` or ``~a & b``."""
    nodes: list[tuple[int, int, int]] = [(-1, -1, -1)] * graph.inputs  # inputs are rows
    seen: dict = {}
    layer_of = [0] * graph.inputs
    desc = [(i, 0) for i in range(graph.inputs)]
    for n, layer in enumerate(graph.layers):
        desc = [_resolve(op, desc[a], desc[b], nodes, seen)
                for a, b, op in zip(layer.a.tolist(), layer.b.tolist(), layer.op.tolist(),
                                    strict=True)]
        layer_of += [n + 1] * (len(nodes) - len(layer_of))
    live = [False] * len(nodes)
    for d in desc:
        if d[0] != "c":
            live[d[0]] = True
    for i in range(len(nodes) - 1, graph.inputs - 1, -1):
        if live[i]:
            live[nodes[i][1]] = live[nodes[i][2]] = True
    # rows: inputs, then the live nodes layer by layer, by op and first input
    row = list(range(graph.inputs)) + [-1] * (len(nodes) - graph.inputs)
    layers, a_rows, b_rows = [], [], []
    next_row = graph.inputs
    for n in range(1, graph.depth + 1):
        ids = [i for i in range(graph.inputs, len(nodes)) if layer_of[i] == n and live[i]]
        ids.sort(key=lambda i: (nodes[i][0], row[nodes[i][1]]))
        runs = []
        layers.append(runs)
        for i in ids:
            op, na, nb = nodes[i]
            row[i] = next_row
            next_row += 1
            a_rows.append(row[na])
            b_rows.append(row[nb])
            if runs and runs[-1][0] == op:
                runs[-1] = (op, runs[-1][1] + 1)
            else:
                runs.append((op, 1))
    k = graph.group_size
    outputs, offsets = [], []
    for c in range(graph.classes):
        group = desc[c * k:(c + 1) * k]
        outputs.append([(row[d[0]], d[1]) for d in group if d[0] != "c"])
        offsets.append(sum(d[1] for d in group if d[0] == "c"))
    return layers, np.array(a_rows, dtype=np.int64), np.array(b_rows, dtype=np.int64), \
        outputs, offsets


def _count(z: np.ndarray, scratch: np.ndarray) -> list[np.ndarray]:
    """Bit planes of the number of ones along axis 0 of ``z`` (rows first, each row of any
    shape): ``planes[t]`` is bit t of each lane's count (possibly followed by zero planes).
    ``z`` is overwritten; ``scratch`` holds at least a third of its rows.

    Carry-save: full adders over the first, second and third third of the rows leave the
    sums (weight 1) in place of the third and the carries (weight 2) in place of the first,
    so each round removes a third of the rows with five in-place operations over whole
    contiguous slices; carries are counted the same way one weight up."""
    planes = []
    level = z
    while True:
        carries = []
        while len(level) >= 3:
            t = len(level) // 3
            a, b, c, u = level[:t], level[t:2 * t], level[2 * t:3 * t], scratch[:t]
            np.bitwise_xor(a, b, out=u)
            np.bitwise_and(a, b, out=a)
            np.bitwise_and(u, c, out=b)
            np.bitwise_or(a, b, out=a)       # carry: majority of a, b, c
            np.bitwise_xor(u, c, out=c)      # sum: a ^ b ^ c
            carries.append(a)
            level = level[2 * t:]
        if len(level) == 2:                  # a half adder
            carries.append((level[0] & level[1])[None])
            np.bitwise_xor(level[0], level[1], out=level[0])
        planes.append(level[0] if len(level) else np.zeros(z.shape[1:], dtype=z.dtype))
        if not carries:
            return planes
        level = carries[0] if len(carries) == 1 else np.concatenate(carries)


class GoldenModel:
    """A gate graph prepared for repeated packed evaluation (see the module docstring)."""

    def __init__(self, graph: GateGraph):
        self.graph = graph
        layers, a, b, outputs, offsets = fold(graph)
        self._inputs = graph.inputs
        self._layers = []  # (first row, end row, a rows, b rows, [(op, start, end), ...])
        row = graph.inputs
        for runs in layers:
            n = sum(count for _, count in runs)
            steps, r = [], 0
            for op, count in runs:
                steps.append((op, r, r + count))
                r += count
            first = row - graph.inputs
            self._layers.append((row, row + n, np.ascontiguousarray(a[first:first + n]),
                                 np.ascontiguousarray(b[first:first + n]), steps))
            row += n
        self._rows = row + 1          # the last row stays 0: what padding rows read
        self._widest = max([1, *(end - start for start, end, *_ in self._layers)])
        # the count reads (k', classes) rows: row r * classes + c is class c's r-th output;
        # shorter classes read the zero row
        m = graph.classes
        self._depth = max(1, max(len(group) for group in outputs))
        order = np.full((self._depth, m), row, dtype=np.intp)
        invert = np.zeros((self._depth, m), dtype=np.uint64)
        for c, group in enumerate(outputs):
            # inverted outputs first: only the first rows of the gathered block need the xor
            group = sorted(group, key=lambda out: not out[1])
            for r, (out_row, inverted) in enumerate(group):
                order[r, c] = out_row
                invert[r, c] = ~np.uint64(0) if inverted else 0
        self._count_order = order.ravel()
        inverted_rows = max([sum(inv for _, inv in group) for group in outputs], default=0)
        self._invert = invert[:inverted_rows].reshape(-1, 1) if inverted_rows else None
        self._offsets = np.array(offsets, dtype=np.int32)

    def _blocks(self, words: np.ndarray):
        """Every block of :data:`BLOCK_WORDS` words through the net; yields (start word,
        words, the arena: every row of the block)."""
        total = words.shape[1]
        buffers: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for start in range(0, total, BLOCK_WORDS):
            w = min(BLOCK_WORDS, total - start)
            if w not in buffers:  # take() wants a contiguous out: buffers per width
                buffers[w] = (np.zeros((self._rows, w), dtype=np.uint64),
                              np.empty((self._widest, w), dtype=np.uint64))
            arena, vb = buffers[w]
            arena[:self._inputs] = words[:, start:start + w]
            for first, end, a, b, steps in self._layers:
                # each gate's a row is gathered straight into its own row, then combined
                # with its b row in place. The source of that take() is the arena before the
                # layer, which the out does not overlap (an overlapping out goes through a
                # temporary copy). mode="clip" skips numpy's buffered bounds check: fold()
                # made the rows
                y = arena[first:end]
                np.take(arena[:first], a, axis=0, out=y, mode="clip")
                np.take(arena[:first], b, axis=0, out=vb[:end - first], mode="clip")
                for op, s, e in steps:
                    ya, yb = y[s:e], vb[s:e]
                    if op == ops.A_AND_NOT_B:
                        np.invert(yb, out=yb)
                    elif op == ops.NOT_A_AND_B:
                        np.invert(ya, out=ya)
                    _UFUNCS[op](ya, yb, out=ya)
            yield start, w, arena

    def _chunk_samples(self) -> int:
        """Samples per chunk: its packed inputs, class outputs and unpacked count bits
        (a byte per lane and plane) each fit in :data:`CHUNK_BYTES`."""
        m = self.graph.classes
        planes = max(1, self._depth.bit_length())
        words = min(CHUNK_BYTES // (8 * max(self._depth * m, self.graph.inputs)),
                    CHUNK_BYTES // (64 * planes * m))
        return max(1, words) * 64

    def predict(self, bits: np.ndarray) -> Prediction:
        bits = _check_bits(bits, self.graph.inputs)
        samples = bits.shape[0]
        m = self.graph.classes
        scores = np.empty((samples, m), dtype=np.int32)
        width = max(1, self._depth.bit_length())  # planes above the count's width are zero
        counters: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per block width
        step = self._chunk_samples()
        for start in range(0, samples, step):
            chunk = bits[start:start + step]
            packed = pack_bits(chunk)
            # the count's bit planes of every block: (planes, classes, words), turned into
            # numbers once per chunk
            planes_all = np.empty((width, m, packed.shape[1]), dtype="<u8")
            for s, w, arena in self._blocks(packed):
                if w not in counters:  # take() wants a contiguous out: buffers per width
                    counters[w] = (np.empty((self._depth * m, w), dtype=np.uint64),
                                   np.empty((self._depth // 3 + 1, m, w), dtype=np.uint64))
                z, scratch = counters[w]
                np.take(arena, self._count_order, axis=0, out=z, mode="clip")
                if self._invert is not None:
                    head = z[:len(self._invert)]
                    np.bitwise_xor(head, self._invert, out=head)
                planes = _count(z.reshape(self._depth, m, w), scratch)
                for t in range(width):
                    planes_all[t, :, s:s + w] = planes[t] if t < len(planes) else 0
            counts = _numbers(planes_all)  # (lanes, classes)
            n = len(chunk)
            scores[start:start + n] = counts[:n]
            scores[start:start + n] += self._offsets
        return Prediction(scores, argmax_lowest(scores))

    def layer_bits(self, bits: np.ndarray) -> list[np.ndarray]:
        """Every layer's outputs as (samples, width) 0/1 arrays (for debugging a mismatch):
        one numpy expression per gate group, dead gates included, sharing nothing with the
        fast path but :func:`pack_bits`."""
        bits = _check_bits(bits, self.graph.inputs)
        x = pack_bits(bits)
        layers = []
        for layer in self.graph.layers:
            y = np.empty((len(layer.op), x.shape[1]), dtype=np.uint64)
            for op in np.unique(layer.op).tolist():
                sel = np.flatnonzero(layer.op == op)
                y[sel] = ops.apply_words(op, x[layer.a[sel]], x[layer.b[sel]])
            layers.append(y)
            x = y
        return [unpack_bits(y, len(bits)) for y in layers]


def argmax_lowest(scores: np.ndarray) -> np.ndarray:
    """Index of the highest score per row; ties go to the lowest class index."""
    return np.argmax(scores, axis=1).astype(np.int64)  # numpy returns the first maximum


def check_bits(bits, inputs: int) -> np.ndarray:
    """``bits`` as a (samples, ``inputs``) uint8 array of 0/1 (one sample may be 1-D).

    Raises
    ------
    UserError
        Wrong shape, a non-integer dtype, or a value other than 0 and 1.
    """
    bits = np.asarray(bits)
    if bits.ndim == 1 and bits.size == inputs:
        bits = bits[None, :]
    if bits.ndim != 2 or bits.shape[1] != inputs:
        raise UserError(f"input bits have shape {bits.shape}; the model expects "
                        f"(samples, {inputs})")
    if bits.dtype != np.uint8 and bits.dtype != bool:
        if bits.dtype.kind not in "iub":
            raise UserError(f"input bits must be integers 0/1, got dtype {bits.dtype}")
    # one pass for unsigned bytes (the common case): no value is below 0
    if bits.size and ((bits.dtype.kind != "u" and bits.min() < 0) or bits.max() > 1):
        bad = np.argwhere((bits < 0) | (bits > 1))[0]
        raise UserError(f"input bits must be 0 or 1: [{bad[0]}, {bad[1]}] = "
                        f"{bits[bad[0], bad[1]]}")
    return bits.astype(np.uint8, copy=False)


_check_bits = check_bits  # the name other modules used before it was public


def predict(graph: GateGraph, bits: np.ndarray) -> Prediction:
    """Scores and classes of ``graph`` on (samples, inputs) 0/1 bits."""
    return GoldenModel(graph).predict(bits)


def predict_features(graph: GateGraph, features: np.ndarray) -> Prediction:
    """Like :func:`predict`, after applying the model's input encoding to raw features."""
    if graph.encoding is None:
        raise UserError("the model has no input encoding; pass input bits instead of features")
    return predict(graph, graph.encoding.encode(features))


def naive_predict(graph: GateGraph, bits: np.ndarray) -> Prediction:
    """Per sample, per gate, straight from the op definition. Slow: the reference for tests
    and benchmarks of :func:`predict`, sharing none of its code."""
    bits = np.asarray(bits, dtype=np.uint8)
    samples = bits.shape[0]
    scores = np.zeros((samples, graph.classes), dtype=np.int32)
    layers = [(layer.a.tolist(), layer.b.tolist(), layer.op.tolist()) for layer in graph.layers]
    k = graph.group_size
    for s in range(samples):
        values = bits[s].tolist()
        for a, b, op in layers:
            values = [ops.truth(o, values[i], values[j]) for i, j, o in zip(a, b, op, strict=True)]
        for c in range(graph.classes):
            scores[s, c] = sum(values[c * k:(c + 1) * k])
    classes = np.zeros(samples, dtype=np.int64)
    for s in range(samples):
        best = 0
        for c in range(1, graph.classes):
            if scores[s, c] > scores[s, best]:
                best = c
        classes[s] = best
    return Prediction(scores, classes)
