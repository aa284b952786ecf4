"""The golden model: the reference every other engine is checked against.

Samples are packed 64 to a machine word (sample ``j`` is bit ``j % 64`` of word ``j // 64``).
Where the time goes, and what it does about it (about 5x the throughput of one numpy
expression per op group with fancy-index scatter):

* Each layer's gates are reordered once, by op and then by first input (consumers' indices
  are remapped; the last layer only inside each class group, which a popcount does not see),
  so every op is one contiguous slice: no scatter, and reads of ``a`` run forward.
* A block of :data:`BLOCK_WORDS` words per signal (1024 samples) goes through the whole net
  while it stays in cache: two ``take`` calls gather a layer's ``a`` and ``b`` rows into
  reused buffers, and each op group runs in place (an op is split from its truth table into
  and/or/xor with input and output inversions), so there are no temporaries.
* Class scores are counted bit-sliced (ripple adders over halves of the group, all classes
  at once) instead of unpacking every output bit to a byte.

Samples stream through in chunks so memory stays bounded for any number of samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.net import ops
from lgn_fpga.net.graph import GateGraph

#: upper bound on the bytes of the last layer's packed outputs for one chunk of samples.
CHUNK_BYTES = 32 << 20
#: words per signal evaluated through the whole net at once: large enough that numpy's
#: per-call cost vanishes, small enough that a 10k-gate layer stays in the L2 cache.
BLOCK_WORDS = 16


@dataclass(frozen=True)
class Prediction:
    scores: np.ndarray   # int32, (samples, classes): popcount of each class's group
    classes: np.ndarray  # int64, (samples,): argmax of scores, ties to the lowest index


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(samples, N) 0/1 array to (N, ceil(samples/64)) uint64 words."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint8:
        bits = bits.astype(np.uint8)
    samples, n = bits.shape
    words = -(-samples // 64)
    n8 = -(-n // 8) * 8
    if samples != words * 64 or n8 != n or not bits.flags.c_contiguous:
        padded = np.zeros((words * 64, n8), dtype=np.uint8)
        padded[:samples, :n] = bits
        bits = padded
    # Build bytes across 8 samples with whole-row shifts, eight inputs per uint64 operation
    # (a 0/1 byte shifted by t < 8 stays inside its byte), then transpose the 8x smaller
    # byte array into per-input words. packbits along axis 0 is 15x slower.
    ones = np.uint64(0x0101010101010101)
    rows = bits.view(np.uint64).reshape(words * 8, 8, n8 // 8)
    acc = rows[:, 0] & ones
    for t in range(1, 8):
        acc |= (rows[:, t] & ones) << np.uint64(t)
    packed = acc.view(np.uint8).reshape(words * 8, n8)[:, :n]
    return np.ascontiguousarray(packed.T).view("<u8").astype(np.uint64, copy=False)


def unpack_bits(words: np.ndarray, samples: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: (N, words) uint64 to (samples, N) uint8."""
    as_bytes = np.ascontiguousarray(words.astype("<u8", copy=False)).view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :samples]
    return np.ascontiguousarray(bits.T)


_UFUNCS = {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}


def _split(op: int) -> tuple[str, int, int, int]:
    """``op`` as ``(base, invert_a, invert_b, invert_out)`` with base one of and/or/xor,
    found from its truth table (so no second op table), preferring fewest inversions."""
    forms = {"and": lambda x, y: x & y, "or": lambda x, y: x | y, "xor": lambda x, y: x ^ y}
    want = [ops.truth(op, a, b) for a in (0, 1) for b in (0, 1)]
    best = None
    for base, f in forms.items():
        for ia in (0, 1):
            for ib in (0, 1):
                for io in (0, 1):
                    got = [f(a ^ ia, b ^ ib) ^ io for a in (0, 1) for b in (0, 1)]
                    if got == want and (best is None or ia + ib + io < sum(best[1:])):
                        best = (base, ia, ib, io)
    if best is None:
        raise AssertionError(f"op {op} is not an and/or/xor with inversions")
    return best


_SPLIT = [_split(op) if not (ops.IGNORES_A[op] or ops.IGNORES_B[op]) else (None, 0, 0, 0)
          for op in range(16)]


class _LayerPlan:
    """A layer with its gates sorted by op (then by input ``a``): ``order[i]`` is the
    original index of the gate at position ``i``; ``a``/``b`` index the previous layer's
    positions; ``groups`` are ``(op, start, end, split)`` slices of one op."""

    __slots__ = ("width", "order", "a", "b", "groups")

    def __init__(self, layer, previous_position, group_size: int | None):
        a = layer.a.astype(np.intp)
        b = layer.b.astype(np.intp)
        if previous_position is not None:
            a, b = previous_position[a], previous_position[b]
        keys = [a, layer.op]
        if group_size is not None:  # the last layer: stay inside each class group
            keys.append(np.arange(len(a)) // group_size)
        self.order = np.lexsort(keys)
        self.width = len(a)
        self.a = np.ascontiguousarray(a[self.order])
        self.b = np.ascontiguousarray(b[self.order])
        op = layer.op[self.order]
        starts = np.flatnonzero(np.r_[True, op[1:] != op[:-1]])
        ends = np.r_[starts[1:], len(op)]
        self.groups = [(int(op[s]), int(s), int(e), _SPLIT[int(op[s])])
                       for s, e in zip(starts, ends, strict=True)]

    def position(self) -> np.ndarray:
        pos = np.empty(self.width, dtype=np.intp)
        pos[self.order] = np.arange(self.width)
        return pos

    def run(self, x: np.ndarray, out: np.ndarray, spare: np.ndarray) -> np.ndarray:
        """Outputs (in this plan's order) of ``x`` (previous layer's rows, W words each)
        into ``out``; ``spare`` is scratch of the same shape."""
        n = self.width
        va, vb = out[:n], spare[:n]
        # mode="clip" skips numpy's buffered bounds check: indices were validated on load
        np.take(x, self.a, axis=0, out=va, mode="clip")
        np.take(x, self.b, axis=0, out=vb, mode="clip")
        for op, s, e, (base, ia, ib, io) in self.groups:
            ya, yb = va[s:e], vb[s:e]
            if op in ops.CONSTANT_OPS:
                ya.fill(0 if op == ops.FALSE else ~np.uint64(0))
            elif ops.IGNORES_B[op]:       # a or ~a: already gathered
                if op != ops.A:
                    np.invert(ya, out=ya)
            elif ops.IGNORES_A[op]:       # b or ~b
                if op == ops.B:
                    ya[...] = yb
                else:
                    np.invert(yb, out=ya)
            else:
                if ia:
                    np.invert(ya, out=ya)
                if ib:
                    np.invert(yb, out=yb)
                _UFUNCS[base](ya, yb, out=ya)
                if io:
                    np.invert(ya, out=ya)
        return va


def _add(x: list[np.ndarray], y: list[np.ndarray]) -> list[np.ndarray]:
    """Bit-sliced ripple addition of two numbers given as bit planes (least significant
    first); the result has one plane more than the longer."""
    if len(x) < len(y):
        x, y = y, x
    out, carry = [], None
    for t, p in enumerate(x):
        q = y[t] if t < len(y) else None
        s, c = (p, None) if q is None else (p ^ q, p & q)
        if carry is not None:
            c2 = s & carry
            s = s ^ carry
            c = c2 if c is None else c | c2
        out.append(s)
        carry = c
    return out + [carry if carry is not None else np.zeros_like(x[0])]


def _count_planes(x: np.ndarray) -> list[np.ndarray]:
    """Bit planes of the number of ones along axis 1 of (m, n, w) words: ``planes[t]`` is
    (m, w), bit t of each lane's count (possibly followed by zero planes).

    Pairs of numbers (first half + second half) are added bit-sliced, in place where
    possible, so each level halves the rows; an odd row out waits in ``spare`` and is added
    at the end. ``x`` is overwritten."""
    planes = [x]
    spare = []
    while planes[0].shape[1] > 1:
        n = planes[0].shape[1]
        if n % 2:
            spare.append([p[:, n - 1] for p in planes])
            planes = [p[:, :n - 1] for p in planes]
            n -= 1
        h = n // 2
        carry = None
        for p in planes:
            lo, hi = p[:, :h], p[:, h:]
            c = lo & hi
            lo ^= hi
            if carry is not None:
                c |= lo & carry
                lo ^= carry
            carry = c
        planes = [p[:, :h] for p in planes] + [carry]
    total = [p[:, 0] for p in planes]
    for number in spare:
        total = _add(total, number)
    return total


class GoldenModel:
    """A gate graph prepared for repeated packed evaluation."""

    def __init__(self, graph: GateGraph):
        self.graph = graph
        self._plans = []
        position = None
        for n, layer in enumerate(graph.layers):
            last = n == graph.depth - 1
            plan = _LayerPlan(layer, position, graph.group_size if last else None)
            position = plan.position()
            self._plans.append(plan)
        self._rows = max([graph.inputs, *graph.widths])

    def _run_blocks(self, words: np.ndarray, keep_layers: bool):
        """Every block of :data:`BLOCK_WORDS` words through the net; yields (start, words,
        outputs of every layer (``keep_layers``) or of the last one, in plan order)."""
        total = words.shape[1]
        buffers: dict[int, list[np.ndarray]] = {}  # by block width: take() wants contiguous out
        for start in range(0, total, BLOCK_WORDS):
            w = min(BLOCK_WORDS, total - start)
            if w not in buffers:
                buffers[w] = [np.empty((self._rows, w), dtype=np.uint64) for _ in range(3)]
            bufs = buffers[w]
            x = np.ascontiguousarray(words[:, start:start + w])
            current = -1  # which buffer holds x (-1: the input block)
            kept = []
            for plan in self._plans:
                free = [i for i in range(3) if i != current]
                x = plan.run(x, bufs[free[0]], bufs[free[1]])
                current = free[0]
                if keep_layers:
                    kept.append(x.copy())
            yield start, w, kept if keep_layers else [x]

    def run_packed(self, words: np.ndarray, *, keep_layers: bool = False):
        """Evaluate packed inputs (inputs, W); return the last layer's packed outputs,
        or every layer's when ``keep_layers`` (gates in their original order)."""
        words = np.asarray(words, dtype=np.uint64)
        total = words.shape[1]
        last = self._plans[-1]
        results = [np.empty((p.width, total), dtype=np.uint64) if keep_layers or p is last
                   else None for p in self._plans]
        for start, w, kept in self._run_blocks(words, keep_layers):
            for n, y in enumerate(kept, start=len(self._plans) - len(kept)):
                results[n][self._plans[n].order, start:start + w] = y
        return results if keep_layers else results[-1]

    def _chunk_samples(self) -> int:
        words = max(1, CHUNK_BYTES // (8 * max(self.graph.widths[-1], self.graph.inputs)))
        return words * 64

    def predict(self, bits: np.ndarray) -> Prediction:
        bits = _check_bits(bits, self.graph.inputs)
        samples = bits.shape[0]
        g = self.graph
        scores = np.empty((samples, g.classes), dtype=np.int32)
        step = self._chunk_samples()
        for start in range(0, samples, step):
            chunk = bits[start:start + step]
            for s, w, (last,) in self._run_blocks(pack_bits(chunk), False):
                # counted per block while it is in cache; in plan order class c is still
                # rows c*k .. c*k + k - 1
                # planes above the score's width are zero: the count is at most k
                planes = _count_planes(last.reshape(g.classes, g.group_size, w))
                planes = planes[:g.score_width]
                stacked = np.ascontiguousarray(np.stack(planes).astype("<u8", copy=False))
                lane_bits = np.unpackbits(stacked.view(np.uint8), axis=2, bitorder="little")
                weights = (1 << np.arange(len(planes), dtype=np.int32))[:, None, None]
                per_class = (lane_bits * weights.astype(np.uint8 if len(planes) <= 8
                                                        else np.int32)).sum(axis=0,
                                                                            dtype=np.int32)
                first = start + 64 * s
                n = min(64 * w, samples - first)
                scores[first:first + n] = per_class[:, :n].T
        return Prediction(scores, argmax_lowest(scores))

    def layer_bits(self, bits: np.ndarray) -> list[np.ndarray]:
        """Every layer's outputs as (samples, width) 0/1 arrays (for debugging a mismatch)."""
        bits = _check_bits(bits, self.graph.inputs)
        layers = self.run_packed(pack_bits(bits), keep_layers=True)
        return [unpack_bits(x, len(bits)) for x in layers]


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
    if bits.size and (bits.min() < 0 or bits.max() > 1):
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
