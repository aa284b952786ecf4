"""The golden model: the reference every other engine is checked against.

Samples are packed 64 to a machine word (sample ``j`` is bit ``j % 64`` of word ``j // 64``)
so one numpy operation evaluates one gate on 64 samples; gates of a layer that share an op
are evaluated together. Samples stream through in chunks so memory stays bounded for any
number of samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.net import ops
from lgn_fpga.net.graph import GateGraph

#: upper bound on the bytes of one layer's packed outputs for one chunk of samples.
CHUNK_BYTES = 32 << 20


@dataclass(frozen=True)
class Prediction:
    scores: np.ndarray   # int32, (samples, classes): popcount of each class's group
    classes: np.ndarray  # int64, (samples,): argmax of scores, ties to the lowest index


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(samples, N) 0/1 array to (N, ceil(samples/64)) uint64 words."""
    bits = np.asarray(bits)
    samples, n = bits.shape
    words = -(-samples // 64)
    if samples != words * 64:
        padded = np.zeros((words * 64, n), dtype=np.uint8)
        padded[:samples] = bits
        bits = padded
    # Build bytes across samples with whole-row shifts (contiguous, unlike packbits along
    # axis 0), then transpose the 8x smaller byte array into per-input words.
    groups = bits.reshape(words * 8, 8, n).astype(np.uint8, copy=False)
    packed = groups[:, 0, :] & 1
    for t in range(1, 8):
        packed |= (groups[:, t, :] & 1) << t
    return np.ascontiguousarray(packed.T).view("<u8").astype(np.uint64, copy=False)


def unpack_bits(words: np.ndarray, samples: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: (N, words) uint64 to (samples, N) uint8."""
    as_bytes = np.ascontiguousarray(words.astype("<u8", copy=False)).view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :samples]
    return np.ascontiguousarray(bits.T)


class _LayerPlan:
    """A layer's gates grouped by op, so each op is one vectorized numpy expression."""

    __slots__ = ("width", "groups")

    def __init__(self, layer):
        self.width = len(layer)
        self.groups = []
        for op in np.unique(layer.op):
            idx = np.flatnonzero(layer.op == op)
            self.groups.append((int(op), idx, layer.a[idx], layer.b[idx]))

    def run(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((self.width, x.shape[1]), dtype=np.uint64)
        for op, idx, a, b in self.groups:
            if op in ops.CONSTANT_OPS:
                out[idx] = 0 if op == ops.FALSE else ~np.uint64(0)
            else:  # gather only the inputs the op reads
                out[idx] = ops.apply_words(op, None if ops.IGNORES_A[op] else x[a],
                                           None if ops.IGNORES_B[op] else x[b])
        return out


class GoldenModel:
    """A gate graph prepared for repeated packed evaluation."""

    def __init__(self, graph: GateGraph):
        self.graph = graph
        self._plans = [_LayerPlan(layer) for layer in graph.layers]

    def run_packed(self, words: np.ndarray, *, keep_layers: bool = False):
        """Evaluate packed inputs (inputs, W); return the last layer's packed outputs,
        or every layer's when ``keep_layers``."""
        x = words
        kept = []
        for plan in self._plans:
            x = plan.run(x)
            if keep_layers:
                kept.append(x)
        return kept if keep_layers else x

    def _chunk_samples(self) -> int:
        widest = max([self.graph.inputs, *self.graph.widths])
        words = max(1, CHUNK_BYTES // (8 * widest))
        return words * 64

    def predict(self, bits: np.ndarray) -> Prediction:
        bits = _check_bits(bits, self.graph.inputs)
        samples = bits.shape[0]
        g = self.graph
        scores = np.empty((samples, g.classes), dtype=np.int32)
        step = self._chunk_samples()
        for start in range(0, samples, step):
            chunk = bits[start:start + step]
            out = self.run_packed(pack_bits(chunk))
            as_bytes = np.ascontiguousarray(out.astype("<u8", copy=False)).view(np.uint8)
            out_bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :len(chunk)]
            per_class = out_bits.reshape(g.classes, g.group_size, -1).sum(axis=1,
                                                                          dtype=np.int32)
            scores[start:start + len(chunk)] = per_class.T
        return Prediction(scores, argmax_lowest(scores))

    def layer_bits(self, bits: np.ndarray) -> list[np.ndarray]:
        """Every layer's outputs as (samples, width) 0/1 arrays (for debugging a mismatch)."""
        bits = _check_bits(bits, self.graph.inputs)
        layers = self.run_packed(pack_bits(bits), keep_layers=True)
        return [unpack_bits(x, len(bits)) for x in layers]


def argmax_lowest(scores: np.ndarray) -> np.ndarray:
    """Index of the highest score per row; ties go to the lowest class index."""
    return np.argmax(scores, axis=1).astype(np.int64)  # numpy returns the first maximum


def _check_bits(bits, inputs: int) -> np.ndarray:
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
