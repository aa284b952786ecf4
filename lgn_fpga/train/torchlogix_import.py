"""Networks trained with torchlogix 0.2.x (the pure-PyTorch LGN library) to gate graphs,
without importing torchlogix (it needs Python 3.12; nothing of it runs here).

What torchlogix's eval-mode forward computes, and so what is read (facts from 0.2.2's
source):

* ``LogicDense``: ``connections`` gathers ``x[:, indices]`` with ``indices`` (2, out) for
  fixed wiring; learnable wiring picks ``indices[weights.argmax(0), l, o]`` from candidate
  ``weights``/``indices`` (C, 2, out). The gate comes from ``weight`` by parametrization:
  *raw* (out, 16): the op is ``weight.argmax(-1)``, in difflogic's order (ours);
  *light* (out, 4): truth-table entry (a, b) = 00, 01, 10, 11 is ``weight[:, k] > 0``;
  *warp* (out, 4): entry (a, b) is 1 when ``((w0 + w1*B) + w2*A) + w3*A*B < 0`` with
  A = 1 - 2a, B = 1 - 2b, evaluated in float32 in that order as its forward does.
  The two 4-wide parametrizations cannot be told apart by shape: a state dict needs
  ``--parametrization`` (a pickled model names its parametrization class).
* ``GroupSum(k, tau, beta)``: contiguous blocks of the last layer; tau and beta do not move
  the argmax. It has no state: a state dict needs ``--classes``.
* Binarization: ``x > thresholds`` (strict), feature-major (bit ``f*T + t``), our
  thermometer. ``LearnableBinarization``'s ``thresholds`` buffer is stale: the effective
  thresholds are ``cumsum([d0, s*softplus(d[1:]/s)])`` of ``raw_diffs`` with
  ``s = temperature_softplus + 1e-6`` (0.1 by default; a pickled model records it).
* The circuit JSON IR (``Circuit.write_json``, raw or simplified): ``n_inputs``,
  ``outputs`` (ids), ``gates`` (``gate_id``, ``op`` name, ``in0``/``in1``; ids below
  ``n_inputs`` are input bits), optional ``sum_nodes`` (``input_ids``, ``tau``, ``beta``:
  the classes). Gates are levelized into layers with pass-through gates; class groups of
  unequal size (a simplified circuit drops constant gates and moves them into ``beta``) are
  padded with constant gates so every class keeps its exact count + (beta - min beta).

* ``LogicConv2d``/``LogicConv3d`` (``_LogicConvNd.forward``): the input is zero-padded by
  ``padding``; ``connections._indices_L0`` (2, K, P, S, nd + 1) holds, per tap row (a, b),
  kernel, output position (row-major over ``kernel_positions``) and leaf, the padded
  coordinates (``*spatial, channel``) -- stride and receptive field are baked into it;
  ``_indices_L{l}`` (2, nodes) pairs the previous level's nodes (row 0 is a, row 1 is b);
  ``tree_weights[l]`` is (nodes, K, params), the first level's ``2**(depth-1)`` nodes first;
  the output is (K, *kernel_positions). Padding taps read the constant 0, folded into the
  gate's op.
* ``OrPooling2d``/``3d`` (eval mode): ``max_pool`` of 0/1 values (floor mode, its padding
  never a maximum) = OR over each window's in-bounds elements: a balanced OR tree, pass-through
  gates for windows cut short by the border. ``Flatten`` is row-major (K, *spatial).
* An image's binarization compares ``x.unsqueeze(-1)`` with the thresholds (per channel as
  (1, C, 1, 1, T) for 4-D input, else broadcast) and folds the T bits into axis
  ``feature_dim``; the imported net reads the raw input flattened in torch's order, each
  feature's T bits feature-major, so the first conv's input (or a dense model's flattened
  input) is a permutation of our bits.

Formats: the circuit JSON; a dense model's state dict (``torch.save(model.state_dict())``,
read with ``weights_only=True``); a pickled whole model, dense or conv, read with an
allow-list unpickler whose torchlogix classes are inert stand-ins (no code from the file
runs). A conv model's state dict is refused with one line: it records neither padding nor
input size nor pooling. Transposed convs, residual blocks, lut_rank > 2 and any other
torchlogix layer are refused with one line too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lgn_fpga.errors import INSTALL_TRAIN, UserError
from lgn_fpga.net import graph as gg
from lgn_fpga.net import ops

__all__ = ["load", "from_circuit", "from_state_dict", "PARAMETRIZATIONS"]

PARAMETRIZATIONS = ("raw", "warp", "light")
#: torchlogix.circuit.GateOp names -> (our op, reads in0, reads in1). A translation of
#: names, not a second op table: each entry is one of :mod:`lgn_fpga.net.ops`' constants.
_GATE_NAMES = {
    "CONST_FALSE": (ops.FALSE, False, False), "CONST_TRUE": (ops.TRUE, False, False),
    "WIRE": (ops.A, True, False), "NOT": (ops.NOT_A, True, False),
    "NOT_A": (ops.NOT_A, True, False), "NOT_B": (ops.NOT_B, False, True),
    "AND": (ops.AND, True, True), "OR": (ops.OR, True, True), "XOR": (ops.XOR, True, True),
    "NAND": (ops.NAND, True, True), "NOR": (ops.NOR, True, True),
    "XNOR": (ops.XNOR, True, True), "AND_NOT_B": (ops.A_AND_NOT_B, True, True),
    "AND_NOT_A": (ops.NOT_A_AND_B, True, True), "OR_NOT_B": (ops.A_OR_NOT_B, True, True),
    "OR_NOT_A": (ops.NOT_A_OR_B, True, True),
}


# -- the circuit JSON IR -----------------------------------------------------------------


def from_circuit(doc, *, classes: int | None = None, source: str = "circuit") -> gg.GateGraph:
    """A torchlogix circuit (``Circuit.to_dict()`` / ``write_json``) as a gate graph.

    Raises
    ------
    UserError
        A malformed circuit, or no class grouping (no sum nodes and no ``classes``).
    """
    from lgn_fpga.net.aiger import levelize

    def bad(why):
        raise UserError(f"{source}: {why}")

    if not isinstance(doc, dict) or "gates" not in doc or "n_inputs" not in doc:
        bad("not a torchlogix circuit: expected an object with n_inputs, gates, outputs")
    n = doc["n_inputs"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        bad(f"n_inputs must be a positive integer, got {n!r}")
    gates = {}
    for i, g in enumerate(doc["gates"] if isinstance(doc["gates"], list) else bad(
            "gates must be a list")):
        where = f"gates[{i}]"
        if not isinstance(g, dict) or not all(k in g for k in ("gate_id", "op", "in0", "in1")):
            bad(f"{where} must have gate_id, op, in0, in1")
        if g["op"] not in _GATE_NAMES:
            bad(f"{where}.op = {g['op']!r} is not a torchlogix GateOp")
        op, uses0, uses1 = _GATE_NAMES[g["op"]]
        gid = _id(g["gate_id"], f"{where}.gate_id", bad)
        if gid < n or gid in gates:
            bad(f"{where}.gate_id = {gid} is an input id or defined twice")
        ins = []
        for key, used in (("in0", uses0), ("in1", uses1)):
            if not used:
                ins.append(None)
                continue
            ref = _id(g[key], f"{where}.{key}", bad)
            ins.append(("in", ref) if ref < n else ref)
        gates[gid] = (op, ins[0], ins[1])
    outputs = doc.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        bad("outputs must be a non-empty list of ids")
    sums = {}
    for j, sr in enumerate(doc.get("sum_nodes") or []):
        if not isinstance(sr, dict) or "node_id" not in sr or not isinstance(
                sr.get("input_ids"), list):
            bad(f"sum_nodes[{j}] must have node_id and input_ids")
        sums[sr["node_id"]] = sr

    def signal(ref, where):
        ref = _id(ref, where, bad)
        return ("in", ref) if ref < n else ref

    meta = {"imported_from": "torchlogix circuit", "source": Path(source).name}
    tau = None
    if all(o in sums for o in outputs):
        groups, betas, taus = [], [], set()
        for o in outputs:
            sr = sums[o]
            groups.append([signal(r, f"sum node {o} input") for r in sr["input_ids"]])
            betas.append(float(sr.get("beta", 0.0)))
            taus.add(float(sr.get("tau", 1.0)))
        shift = min(betas)
        extra = [b - shift for b in betas]
        if any(abs(e - round(e)) > 0 for e in extra):
            bad(f"class offsets beta = {betas} differ by non-integers: no popcount can "
                "express that")
        extra = [int(round(e)) for e in extra]
        size = max(len(gr) + e for gr, e in zip(groups, extra, strict=True))
        out_bits = []
        for gr, e in zip(groups, extra, strict=True):
            out_bits += [(k, False) for k in gr] + [(None, True)] * e
            out_bits += [(None, False)] * (size - len(gr) - e)
        k = len(outputs)
        if len(taus) == 1 and taus != {1.0}:
            tau = taus.pop()
        if shift:
            meta["score_offset"] = shift  # torchlogix's score = (ours + offset) / tau
    elif any(o in sums for o in outputs):
        bad("outputs mix sum nodes and gate bits")
    else:
        if classes is None:
            bad("the circuit has no sum nodes (GroupSum): give --classes")
        out_bits = [(signal(o, "outputs"), False) for o in outputs]
        k = classes
    if classes is not None and classes != k:
        bad(f"--classes {classes} disagrees with the circuit's {k} sum nodes")
    if len(out_bits) % k:
        bad(f"{len(out_bits)} output bits cannot form {k} equal class groups")
    inputs = {("in", i): i for i in range(n)}
    graph = levelize(n, inputs, gates, out_bits, k, source=source, meta=meta)
    return graph.replace(tau=tau) if tau is not None else graph


def _id(value, where, bad) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        bad(f"{where} must be a non-negative integer id, got {value!r}")
    return value


# -- state dicts and pickled models -------------------------------------------------------


@dataclass
class _Dense:
    """A LogicDense: gate ``i`` is ``op[i](x[a[i]], x[b[i]])``."""

    name: str
    op: np.ndarray
    a: np.ndarray
    b: np.ndarray
    kind: str
    in_dim: int | None = None


@dataclass
class _Conv:
    """A LogicConv2d/3d as its eval forward reads it (torchlogix/layers/conv.py,
    ``_LogicConvNd.forward``; torchlogix/connections.py, ``FixedConvConnections``)."""

    name: str
    in_shape: tuple          # (channels, *in_dim)
    padding: int
    kernel_positions: tuple  # output spatial shape
    ops: list                # per tree level: (nodes, num_kernels) op codes
    leaves: np.ndarray       # _indices_L0: (2, K, P, S, nd + 1), last axis (*spatial, c)
    up: list                 # _indices_L1..: (2, nodes) into the previous level's nodes
    kind: str


@dataclass
class _Pool:
    """An OrPooling2d/3d: eval mode is ``max_pool{n}d`` of 0/1 values, i.e. OR over each
    window's in-bounds elements (its implicit padding is -inf, never a maximum)."""

    name: str
    kernel: tuple
    stride: tuple
    padding: tuple


@dataclass
class _Flatten:
    name: str


@dataclass
class _Model:
    """What a torchlogix model holds, however it was stored: its stages in forward order."""

    stages: list = field(default_factory=list)
    thresholds: np.ndarray | None = None
    feature_dim: int = -2
    classes: int | None = None
    tau: float | None = None


def _module_key(name: str):
    return [int(p) if p.isdigit() else p for p in name.split(".")]


def _gate_ops(weight: np.ndarray, kind: str, where: str) -> np.ndarray:
    """The op of each neuron, as torchlogix's eval-mode forward computes it."""
    if kind == "raw":
        if weight.ndim != 2 or weight.shape[1] != 16:
            raise UserError(f"{where}: raw parametrization weight must be (out, 16), got "
                            f"{weight.shape}")
        return np.argmax(weight, axis=1).astype(np.int64)  # first maximum, as torch
    if weight.ndim != 2 or weight.shape[1] != 4:
        raise UserError(f"{where}: {kind} parametrization weight must be (out, 4) (lut_rank "
                        f"2), got {weight.shape}")
    w = weight.astype(np.float32)
    op = np.zeros(len(w), dtype=np.int64)
    for a in (0, 1):
        for b in (0, 1):
            if kind == "light":
                bit = w[:, 2 * a + b] > 0
            else:  # warp: the Walsh sum, term by term in float32, then (-v > 0)
                big_a, big_b = np.float32(1 - 2 * a), np.float32(1 - 2 * b)
                v = w[:, 0] * np.float32(1) + w[:, 1] * big_b
                v = v + w[:, 2] * big_a
                v = v + w[:, 3] * (big_a * big_b)
                bit = -v > 0
            op |= bit.astype(np.int64) << (3 - (2 * a + b))
    return op


def _learned_thresholds(raw_diffs: np.ndarray, temperature_softplus: float) -> np.ndarray:
    """LearnableBinarization.get_thresholds(), computed with torch as torchlogix does (so
    float32 rounding agrees)."""
    import torch
    import torch.nn.functional as F

    d = torch.as_tensor(np.asarray(raw_diffs, dtype=np.float32))
    first = d[..., :1]
    if d.shape[-1] > 1:
        s = temperature_softplus + 1e-6
        d = torch.cat([first, s * F.softplus(d[..., 1:] / s)], dim=-1)
    return torch.cumsum(d, dim=-1).numpy()


def from_state_dict(arrays: dict, *, classes: int | None, parametrization: str | None = None,
                    temperature_softplus: float = 0.1, source: str = "state dict"
                    ) -> gg.GateGraph:
    """A torchlogix dense model's state dict (name -> numpy array) as a gate graph.

    Raises
    ------
    UserError
        Missing wiring, conv layers, an ambiguous parametrization, or no ``classes``.
    """
    if any(re.search(r"(^|\.)(_indices_L\d+|tree_weights\.\d+)$", k) for k in arrays):
        # the shapes do not say: padding and input size (only padded coordinates are
        # stored), nor OR pooling at all (it has no state)
        raise UserError(f"{source}: a state dict of a conv model (LogicConv/OrPooling) does "
                        "not record padding, input size or pooling; save the whole model "
                        "(torch.save(model)) or its circuit JSON instead")
    model = _Model()
    prefixes = sorted({k[:-len(".connections.indices")] for k in arrays
                       if k.endswith(".connections.indices")}, key=_module_key)
    if not prefixes:
        raise UserError(f"{source}: no '<layer>.connections.indices' entries: not a torchlogix "
                        "dense model")
    for p in prefixes:
        model.stages.append(_layer_from_arrays(arrays, p, parametrization, source))
    th = [k for k in arrays if k.endswith(".thresholds") or k == "thresholds"]
    if th:
        name = th[0][:-len("thresholds")]
        if f"{name}raw_diffs" in arrays:
            model.thresholds = _learned_thresholds(arrays[f"{name}raw_diffs"],
                                                   temperature_softplus)
        else:
            model.thresholds = np.asarray(arrays[th[0]], dtype=np.float32)
    model.classes = classes
    return _build(model, source)


def _layer_from_arrays(arrays, p, parametrization, source) -> _Dense:
    weight = np.asarray(arrays.get(f"{p}.weight"))
    if weight.ndim != 2:
        raise UserError(f"{source}: {p}.weight is missing or not 2-D")
    idx = np.asarray(arrays[f"{p}.connections.indices"]).astype(np.int64)
    if f"{p}.connections.weights" in arrays:  # learnable wiring
        cw = np.asarray(arrays[f"{p}.connections.weights"], dtype=np.float32)
        if cw.ndim != 3 or cw.shape[1] != 2 or idx.shape != cw.shape:
            raise UserError(f"{source}: {p}.connections weights/indices have shapes "
                            f"{cw.shape}/{idx.shape}; expected (candidates, 2, out) both")
        chosen = np.argmax(cw, axis=0)
        idx = np.take_along_axis(idx, chosen[None], axis=0)[0]
    if idx.shape != (2, len(weight)):
        raise UserError(f"{source}: {p}.connections.indices has shape {idx.shape}; expected "
                        f"(2, {len(weight)}) (lut_rank 2)")
    if idx.size and idx.min() < 0:
        raise UserError(f"{source}: {p}.connections.indices has a negative index")
    kind = parametrization
    if kind is None:
        if f"{p}._export_lut_ids" in arrays:
            ops_ = np.asarray(arrays[f"{p}._export_lut_ids"]).astype(np.int64).reshape(-1)
            return _Dense(p, ops_, idx[0], idx[1], "export ids")
        if weight.shape[1] != 16:
            raise UserError(f"{source}: {p}.weight is (out, 4): warp or light "
                            "parametrization; say which with --parametrization")
        kind = "raw"
    return _Dense(p, _gate_ops(np.asarray(weight), kind, f"{source}: {p}"), idx[0], idx[1],
                  kind)


# -- building the gate graph --------------------------------------------------------------


class _Stack:
    """Gate layers under construction. Each stage maps an index array (where every element
    of the torch tensor lives in the newest layer, or in the input bits before the first
    layer) to the next; every stage reads only the layer before it, as harden.py does."""

    def __init__(self):
        self.layers: list = []

    def add(self, a, b, op) -> np.ndarray:
        """Append a layer; ``-1`` in ``a``/``b`` is the constant 0 (conv padding), folded
        into the op. Returns the positions of its gates, in ``a``'s shape."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        shape = a.shape
        a, b = a.reshape(-1).copy(), b.reshape(-1).copy()
        op = np.broadcast_to(np.asarray(op, dtype=np.int64), shape).reshape(-1).copy()
        ca, cb = a < 0, b < 0

        def f(x, y):  # the op's truth-table bit at (a, b) = (x, y)
            return (op >> (3 - (2 * x + y))) & 1

        only_b = cb & ~ca  # op(a, 0): a unary op of a
        op[only_b] = ops.unary_on_a(f(0, 0), f(1, 0))[only_b]
        b[only_b] = a[only_b]
        only_a = ca & ~cb  # op(0, b): a unary op of b, moved onto a
        op[only_a] = ops.unary_on_a(f(0, 0), f(0, 1))[only_a]
        a[only_a] = b[only_a]
        both = ca & cb
        op[both] = np.where(f(0, 0) == 1, ops.TRUE, ops.FALSE)[both]
        a[both] = b[both] = 0
        self.layers.append((a.astype(np.int32), b.astype(np.int32), op.astype(np.uint8)))
        return np.arange(len(op), dtype=np.int64).reshape(shape)


def _merge_dim_with_last(x: np.ndarray, k: int) -> np.ndarray:
    """torchlogix.layers.binarization.merge_dim_with_last, transcribed: fold the last axis
    into axis ``k`` (index ``i_k * T + t``)."""
    n = x.ndim
    k = k + n if k < 0 else k
    perm = list(range(n))
    perm.pop(n - 1)
    perm.insert(k + 1, n - 1)
    y = x.transpose(perm)
    shape = list(y.shape)
    shape[k] *= shape[k + 1]
    shape.pop(k + 1)
    return y.reshape(shape)


def _image_input(model: _Model, first: _Conv, source: str):
    """Where each element of the first conv's input lives in the input bits, and the
    thermometer encoding of the raw features (None without binarization).

    The binarizations compute ``x.unsqueeze(-1) > thresholds`` (per-channel thresholds of an
    image viewed as (1, C, 1, 1, T)) and fold the T bits into axis ``feature_dim``; our input
    is the raw input flattened in torch order, each feature's T bits feature-major."""
    bshape = tuple(first.in_shape)
    if model.thresholds is None:  # DummyBinarization or none: the input is already bits
        return np.arange(int(np.prod(bshape))).reshape(bshape), None
    th = np.asarray(model.thresholds, dtype=np.float32)
    t = th.shape[-1] if th.ndim else 0
    n = len(bshape) + 2  # the binarization's (batch, *raw, T)
    k = model.feature_dim + n if model.feature_dim < 0 else model.feature_dim
    if not 1 <= k <= n - 2 or t < 1:
        raise UserError(f"{source}: binarization feature_dim = {model.feature_dim} with "
                        f"thresholds {th.shape} does not fit the conv input {bshape}")
    raw = list(bshape)
    if raw[k - 1] % t:
        raise UserError(f"{source}: the conv input {bshape} is not its binarization's "
                        f"{t} bits folded into axis {k}")
    raw[k - 1] //= t
    view = th.reshape(1, -1, 1, 1, t) if th.ndim == 2 and n == 5 else th
    try:
        full = np.broadcast_shapes((1, *raw, 1), view.shape)
    except ValueError:
        full = None
    if full != (1, *raw, t):
        raise UserError(f"{source}: binarization thresholds {th.shape} do not broadcast to "
                        f"the input {tuple(raw)} x {t} bits")
    thresholds = np.broadcast_to(view, full).reshape(-1, t)
    bits = np.arange(thresholds.size).reshape(1, *raw, t)
    return _merge_dim_with_last(bits, k)[0], gg.Thermometer(thresholds.astype(np.float64))


def _conv_stage(st: _Conv, where: np.ndarray, stack: _Stack, source: str) -> np.ndarray:
    """torchlogix's ``_LogicConvNd.forward``: pad, gather the leaves ``x[:, c, *spatial]`` of
    ``_indices_L0``, then per tree level ``x[..., _indices_L{l}]`` pairs (row 0 is a, row 1
    is b), the gates of level l coming from ``tree_weights[l]`` (nodes, kernels, params)."""
    nd = len(st.in_shape) - 1
    if where.ndim != nd + 1:
        raise UserError(f"{source}: {st.name} is a {nd}-D conv but receives a tensor of "
                        f"shape {where.shape}")
    # torchlogix never checks in_dim/channels against the tensor it receives: its forward
    # is defined whenever the taps fall inside the padded input, so that is what we check
    p = st.padding
    padded = np.pad(where, [(0, 0)] + [(p, p)] * nd, constant_values=-1)  # 0-padding
    leaves = st.leaves
    nodes, k = st.ops[0].shape
    if (leaves.shape[:2] != (2, k) or leaves.ndim != 5 or leaves.shape[3:] != (nodes, nd + 1)
            or leaves.size == 0):
        raise UserError(f"{source}: {st.name}.connections._indices_L0 has shape "
                        f"{leaves.shape}; expected (2, {k}, positions, {nodes}, {nd + 1})")
    bounds = [*padded.shape[1:], padded.shape[0]]
    for d, n in enumerate(bounds):
        if leaves[..., d].min() < 0 or leaves[..., d].max() >= n:
            raise UserError(f"{source}: {st.name}.connections._indices_L0 points outside "
                            f"the padded input {tuple(padded.shape)} it receives")

    def gather(row):
        return padded[(row[..., nd],) + tuple(row[..., d] for d in range(nd))]

    op0 = st.ops[0].T[:, None, :]  # (kernels, 1, nodes): the einsum 'fc,bcsf->bcsf'
    out = stack.add(gather(leaves[0]), gather(leaves[1]), op0)  # (K, P, S)
    for level, (up, op) in enumerate(zip(st.up, st.ops[1:], strict=True), start=1):
        if up.shape != (2, len(op)) or up.size == 0 or up.min() < 0 \
                or up.max() >= out.shape[-1]:
            raise UserError(f"{source}: {st.name}.connections._indices_L{level} has shape "
                            f"{up.shape} or values outside the {out.shape[-1]} nodes below")
        out = stack.add(out[..., up[0]], out[..., up[1]], op.T[:, None, :])
    if out.shape[-1] != 1 or out.shape[1] != int(np.prod(st.kernel_positions)):
        raise UserError(f"{source}: {st.name}'s tree ends in {out.shape[-1]} nodes over "
                        f"{out.shape[1]} positions; expected 1 over {st.kernel_positions}")
    return out.reshape(out.shape[0], *st.kernel_positions)


def _pool_stage(st: _Pool, where: np.ndarray, stack: _Stack, source: str) -> np.ndarray:
    """OR over each window (max_pool of 0/1 values, floor mode), as a balanced tree of OR
    gates; a window cut by the border has fewer elements, its shorter branches are carried by
    pass-through gates so every output lives in the newest layer."""
    from numpy.lib.stride_tricks import sliding_window_view

    nd = len(st.kernel)
    if where.ndim != nd + 1:
        raise UserError(f"{source}: {st.name} pools {nd}-D images but receives a tensor of "
                        f"shape {where.shape}")
    for k, s, p, n in zip(st.kernel, st.stride, st.padding, where.shape[1:], strict=True):
        if k < 1 or s < 1 or p < 0 or 2 * p > k or n + 2 * p < k:
            raise UserError(f"{source}: {st.name}: kernel {st.kernel}, stride {st.stride}, "
                            f"padding {st.padding} do not fit an input of {where.shape[1:]}")
    padded = np.pad(where, [(0, 0)] + [(p, p) for p in st.padding], constant_values=-1)
    win = sliding_window_view(padded, st.kernel, axis=tuple(range(1, nd + 1)))
    win = win[(slice(None),) + tuple(slice(None, None, s) for s in st.stride)]
    elems = win.reshape(*win.shape[:nd + 1], -1)  # (C, *out, window), -1: outside
    # each window's in-bounds elements first, so the tree is only as deep as the fullest
    elems = np.take_along_axis(elems, np.argsort(elems < 0, axis=-1, kind="stable"), -1)
    elems = elems[..., :max(1, int((elems >= 0).sum(-1).max()))]
    while elems.shape[-1] > 1:
        if elems.shape[-1] % 2:
            elems = np.concatenate([elems, np.full(elems.shape[:-1] + (1,), -1)], axis=-1)
        x, y = elems[..., 0::2], elems[..., 1::2]
        live = (x >= 0) | (y >= 0)
        a = np.where(x >= 0, x, y)[live]
        b = np.where(y >= 0, y, x)[live]
        op = np.where((x >= 0) & (y >= 0), ops.OR, ops.A)[live]
        pos = stack.add(a, b, op)
        elems = np.full(x.shape, -1, dtype=np.int64)
        elems[live] = pos
    if (elems < 0).any():
        raise UserError(f"{source}: {st.name} has a window entirely in its padding")
    return elems[..., 0]


def _build(model: _Model, source: str) -> gg.GateGraph:
    if model.classes is None:
        raise UserError(f"{source}: the file does not record GroupSum's k; give --classes")
    dense = [s for s in model.stages if isinstance(s, _Dense)]
    meta = {"imported_from": "torchlogix", "source": Path(source).name,
            "parametrization": sorted({s.kind for s in model.stages
                                       if isinstance(s, (_Dense, _Conv))})}
    if not any(isinstance(s, (_Conv, _Pool)) for s in model.stages):
        return _build_dense(model, dense, meta, source)
    first = model.stages[0]
    if not isinstance(first, _Conv):
        raise UserError(f"{source}: the model starts with {first.name}, not a conv layer: "
                        "its input shape is not recorded")
    where, encoding = _image_input(model, first, source)
    inputs = encoding.bits if encoding is not None else where.size
    stack = _Stack()
    for st in model.stages:
        if isinstance(st, _Conv):
            where = _conv_stage(st, where, stack, source)
        elif isinstance(st, _Pool):
            where = _pool_stage(st, where, stack, source)
        elif isinstance(st, _Flatten):
            where = where.reshape(-1)
        else:
            if where.ndim != 1:
                raise UserError(f"{source}: {st.name} receives a tensor of shape "
                                f"{where.shape}; a Flatten must come before a LogicDense")
            if (st.in_dim is not None and st.in_dim != len(where)) or \
                    max(st.a.max(), st.b.max()) >= len(where):
                raise UserError(f"{source}: {st.name} reads {st.in_dim} inputs or an index "
                                f"beyond the {len(where)} it receives")
            where = stack.add(where[st.a], where[st.b], st.op)
    if where.ndim != 1:
        raise UserError(f"{source}: GroupSum receives a tensor of shape {where.shape}; the "
                        "model must flatten it first")
    if not stack.layers:
        raise UserError(f"{source}: the model has no gates")
    if not np.array_equal(where, np.arange(len(stack.layers[-1][2]))):
        stack.add(where, where, ops.A)  # outputs picked by a pooling: carry them in order
    try:
        return gg.make(inputs, stack.layers, model.classes, tau=model.tau,
                       encoding=encoding, meta=meta)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None


def _build_dense(model: _Model, dense: list, meta: dict, source: str) -> gg.GateGraph:
    first = dense[0]
    need = int(max(first.a.max(), first.b.max())) + 1
    if first.in_dim is not None and first.in_dim >= need:
        need = first.in_dim
    encoding, where = None, None
    if model.thresholds is not None:
        encoding, where = _dense_input(np.asarray(model.thresholds, dtype=np.float64),
                                       model.feature_dim, need, source)
    layers = [(s.a, s.b, s.op) for s in dense]
    if where is not None:  # the first layer reads the binarized input through the layout
        layers[0] = (where[first.a], where[first.b], first.op)
    inputs = encoding.bits if encoding is not None else need
    try:
        return gg.make(inputs, layers, model.classes, tau=model.tau, encoding=encoding,
                       meta=meta)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None


def _dense_input(th: np.ndarray, feature_dim: int, need: int, source: str):
    """The thermometer encoding of a dense model, and where each flattened binarized bit lives
    in our feature-major input bits (None: in the same place).

    The raw input's shape is not recorded, only the first layer's width (``need``). Its
    layout follows: (T,) thresholds shared by all features; (F, T) for flat features; (C, T)
    per channel of an image (B, C, H, W) otherwise (``need`` = C*H*W*T). The bits fold into
    axis ``feature_dim``: the last raw axis (the default -2) keeps each feature's bits
    together, the channel axis (1, as torchlogix's DlgnCifar10) puts them channel-major."""
    t = th.shape[-1] if th.ndim in (1, 2) else 0
    if t < 1:
        raise UserError(f"{source}: binarization thresholds of shape {th.shape} are neither "
                        "(bits,) nor (features or channels, bits)")
    if th.ndim == 1:
        if feature_dim != -2:
            raise UserError(f"{source}: binarization folds its bits into axis {feature_dim} "
                            "of an input whose shape a dense model does not record; only "
                            "the default feature_dim -2 can be read")
        return gg.Thermometer(np.tile(th, (-(-need // t), 1))), None
    rows = th.shape[0]
    if rows * t >= need:  # (features, T) of a flat (B, F) input: axis 1 is its last
        if feature_dim not in (-2, 1):
            raise UserError(f"{source}: binarization feature_dim {feature_dim} does not fit "
                            f"a flat input of {rows} features")
        return gg.Thermometer(th), None
    pixels = -(-need // (rows * t))  # an image (B, C, H, W): thresholds per channel
    encoding = gg.Thermometer(np.repeat(th, pixels, axis=0))  # our features (c, h*W + w)
    if feature_dim in (-2, 3):  # folded into W: bit ((c*H + h)*W + w)*T + t, as ours
        return encoding, None
    if feature_dim in (1, -4):  # folded into C: bit (c*T + t)*H*W + p
        ours = np.arange(rows * pixels * t).reshape(rows, pixels, t)
        return encoding, ours.transpose(0, 2, 1).reshape(-1)
    raise UserError(f"{source}: binarization folds its bits into axis {feature_dim} (the "
                    "image height), whose size a dense model does not record")


# -- pickled whole models -----------------------------------------------------------------

_PARAMETRIZATIONS = {"RawLUTParametrization": "raw", "WarpLUTParametrization": "warp",
                     "LightLUTParametrization": "light"}
#: torchlogix classes that only hold other modules and run them in order.
_TLX_CONTAINERS = "torchlogix.models."


def _from_module(root, classes, parametrization, source) -> gg.GateGraph:
    """Walk a pickled torchlogix model (inert stand-ins) in module order."""
    from lgn_fpga.train.difflogic_import import _numpy

    model = _Model()
    done = []  # a GroupSum ends the net

    def tensors(mod, kind):
        return getattr(mod, kind, None) or {}

    def param_kind(mod, name):
        par = type(tensors(mod, "_modules").get("parametrization")).__name__
        kind = _PARAMETRIZATIONS.get(par, parametrization)  # None: told by the weights
        if getattr(mod, "lut_rank", 2) != 2:
            raise UserError(f"{source}: {name} has lut_rank {mod.lut_rank}; only 2-input "
                            "gates become a gate graph")
        return kind

    def conv(mod, name, kind):
        children = tensors(mod, "_modules")
        conn = children.get("connections")
        if type(conn).__name__ != "FixedConvConnections":
            raise UserError(f"{source}: {name}'s connections ({type(conn).__name__}) are not "
                            "FixedConvConnections")
        pkind = param_kind(mod, name)
        weights = tensors(children.get("tree_weights"), "_parameters")
        levels = [_numpy(weights[key]) for key in sorted(weights, key=int)]
        buffers = tensors(conn, "_buffers")
        idx = [_numpy(buffers.get(f"_indices_L{i}", np.zeros(0))).astype(np.int64)
               for i in range(len(levels))]
        nd = int(getattr(mod, "conv_dimension", 2 if kind.endswith("2d") else 3))
        in_dim = tuple(int(v) for v in np.broadcast_to(getattr(mod, "in_dim", -1), (nd,)))
        pad, positions = getattr(mod, "padding", None), getattr(mod, "kernel_positions", None)
        if (not levels or isinstance(pad, bool) or not isinstance(pad, int) or pad < 0
                or min(in_dim) < 1 or positions is None or len(positions) != nd):
            raise UserError(f"{source}: {name} lacks tree_weights, in_dim, an integer padding "
                            "or kernel_positions")
        ops_ = []
        for level, w in enumerate(levels):
            if w.ndim != 3 or w.shape[1] != levels[0].shape[1]:
                raise UserError(f"{source}: {name}.tree_weights.{level} has shape {w.shape}; "
                                "expected (nodes, kernels, params)")
            if pkind is None and w.shape[-1] != 16:
                raise UserError(f"{source}: {name}.tree_weights are (.., 4): warp or light "
                                "parametrization; say which with --parametrization")
            ops_.append(_gate_ops(w.reshape(-1, w.shape[-1]), pkind,
                                  f"{source}: {name}.tree_weights.{level}").reshape(w.shape[:2]))
        return _Conv(name, (int(getattr(mod, "channels", 1)), *in_dim), pad,
                     tuple(int(v) for v in positions), ops_, idx[0], idx[1:], pkind or "raw")

    def pool(mod, name, nd):
        def tup(key, default=None):
            v = getattr(mod, key, default)
            v = default if v is None else v  # max_pool's stride=None is the kernel size
            try:
                v = tuple(int(x) for x in np.broadcast_to(np.asarray(v), (nd,)))
            except (ValueError, TypeError):
                raise UserError(f"{source}: {name}.{key} = {v!r} is not {nd} integers") \
                    from None
            return v

        kernel = tup("kernel_size")
        return _Pool(name, kernel, tup("stride", kernel), tup("padding", 0))

    def walk(mod, name):
        kind = type(mod).__name__
        origin = getattr(type(mod), "_tlx_origin", "")
        params, buffers = tensors(mod, "_parameters"), tensors(mod, "_buffers")
        children = tensors(mod, "_modules")
        if done and kind not in ("Sequential", "ModuleList", "ModuleDict"):
            raise UserError(f"{source}: {kind} ({name}) comes after the GroupSum")
        if kind.endswith("Binarization") and model.stages:
            raise UserError(f"{source}: {kind} ({name}) comes after a logic layer; only an "
                            "input binarization becomes the encoding")
        if kind == "LogicDense":
            conn = children.get("connections")
            cp, cb = tensors(conn, "_parameters"), tensors(conn, "_buffers")
            arrays = {f"{name}.weight": _numpy(params["weight"]),
                      f"{name}.connections.indices": _numpy(cb["indices"])}
            if "weights" in cp:
                arrays[f"{name}.connections.weights"] = _numpy(cp["weights"])
            layer = _layer_from_arrays(arrays, name, param_kind(mod, name), source)
            in_dim = getattr(mod, "in_dim", None)
            layer.in_dim = in_dim if isinstance(in_dim, int) else None
            model.stages.append(layer)
        elif kind in ("LogicConv2d", "LogicConv3d"):
            model.stages.append(conv(mod, name, kind))
        elif kind in ("OrPooling2d", "OrPooling3d"):
            model.stages.append(pool(mod, name, int(kind[-2])))
        elif kind == "Flatten":
            if (getattr(mod, "start_dim", 1), getattr(mod, "end_dim", -1)) != (1, -1):
                raise UserError(f"{source}: {name} flattens dims {mod.start_dim}..."
                                f"{mod.end_dim}; only Flatten() (1...-1) is supported")
            model.stages.append(_Flatten(name))
        elif kind == "GroupSum":
            model.classes = int(mod.k)
            tau = float(getattr(mod, "tau", 1.0))
            model.tau = tau if tau != 1.0 else None
            done.append(name)
        elif kind == "LearnableBinarization":
            model.thresholds = _learned_thresholds(
                _numpy(params["raw_diffs"]), float(getattr(mod, "temperature_softplus", 0.1)))
            model.feature_dim = int(getattr(mod, "feature_dim", -2))
        elif kind in ("FixedBinarization", "SoftBinarization"):
            model.thresholds = _numpy(buffers["thresholds"]).astype(np.float32)
            model.feature_dim = int(getattr(mod, "feature_dim", -2))
        elif kind == "DummyBinarization":
            pass  # x.float(): the input is already bits
        elif origin.startswith("torchlogix.") and not origin.startswith(_TLX_CONTAINERS):
            raise UserError(f"{source}: {kind} ({name or 'the model'}) is not supported: "
                            "dense and conv logic layers, OR pooling, binarization and "
                            "GroupSum are")
        else:  # a torch container or a torchlogix model class: its children, in order
            for child_name, child in children.items():
                walk(child, f"{name}.{child_name}" if name else child_name)

    try:
        walk(root, "")
    except (KeyError, AttributeError, TypeError, ValueError) as e:  # a stand-in lacks a part
        raise UserError(f"{source}: not a well-formed torchlogix model ({type(e).__name__}: "
                        f"{e})") from None
    if not any(isinstance(s, (_Dense, _Conv)) for s in model.stages):
        raise UserError(f"{source}: the pickled model holds no torchlogix LogicDense or "
                        "LogicConv")
    if classes is not None:
        if model.classes is not None and model.classes != classes:
            raise UserError(f"{source}: --classes {classes} disagrees with the model's "
                            f"GroupSum k = {model.classes}")
        model.classes = classes
    return _build(model, source)


def _torch_load(path: Path):
    """torch.load: plain tensors with weights_only=True, else our allow-list unpickler with
    torchlogix's classes as inert stand-ins."""
    import pickle

    try:
        import torch
    except ImportError:
        raise UserError(f"{path}: reading .pt files needs torch: {INSTALL_TRAIN}") \
            from None
    from lgn_fpga.train import difflogic_import as dl

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not plain tensors: try the allow-list next
        pass

    class Unpickler(dl._AllowListUnpickler):
        def find_class(self, module, name):
            if module == "torchlogix" or module.startswith("torchlogix.") or (
                    module, name) == ("torch.nn.modules.container", "ParameterList"):
                # an inert stand-in that remembers where the class came from
                return type(name, (dl._Inert,), {"__module__": "lgn_fpga.torchlogix_standin",
                                                 "_tlx_origin": f"{module}.{name}"})
            if (module, name) == ("torch", "device"):  # a layer's device="cuda": inert data
                return torch.device
            return super().find_class(module, name)

    class Pickle:
        __name__ = "pickle"

        @staticmethod
        def load(file, **kwargs):
            return Unpickler(file, **kwargs).load()

    Pickle.Unpickler = Unpickler
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=Pickle)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any other failure: one line, no traceback
        raise UserError(f"{path}: not a readable torch file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None


def load(path: str | Path, *, classes: int | None = None, parametrization: str | None = None,
         temperature_softplus: float = 0.1) -> gg.GateGraph:
    """Read a torchlogix net: circuit JSON, state dict or pickled model (by content).

    Parameters
    ----------
    path : str or Path
        The file.
    classes : int, optional
        GroupSum's k where the file does not record it (state dicts, circuits without sum
        nodes).
    parametrization : {"raw", "warp", "light"}, optional
        For a state dict whose (out, 4) weights do not say.
    temperature_softplus : float
        LearnableBinarization's, for a state dict (a pickled model records it).

    Returns
    -------
    GateGraph

    Raises
    ------
    UserError
        Naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if parametrization is not None and parametrization not in PARAMETRIZATIONS:
        raise UserError(f"--parametrization {parametrization!r}: choose one of "
                        f"{', '.join(PARAMETRIZATIONS)}")
    head = path.read_bytes()[:64].lstrip()
    if head.startswith(b"{"):
        try:
            doc = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: invalid JSON ({e})") from None
        return from_circuit(doc, classes=classes, source=str(path))
    if path.suffix == ".npz":
        arrays = dict(np.load(path, allow_pickle=False))
        return from_state_dict(arrays, classes=classes, parametrization=parametrization,
                               temperature_softplus=temperature_softplus, source=str(path))
    from lgn_fpga.train.difflogic_import import _numpy

    obj = _torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict):
        arrays = {k: _numpy(v) for k, v in obj.items() if hasattr(v, "shape")}
        return from_state_dict(arrays, classes=classes, parametrization=parametrization,
                               temperature_softplus=temperature_softplus, source=str(path))
    return _from_module(obj, classes, parametrization, str(path))
