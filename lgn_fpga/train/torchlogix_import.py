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

Formats: the circuit JSON; a state dict (``torch.save(model.state_dict())``, read with
``weights_only=True``); a pickled whole model, read with an allow-list unpickler whose
torchlogix classes are inert stand-ins (no code from the file runs). Conv blocks
(``LogicConv2d``/``OrPooling2d``) are refused with one line: not supported yet.
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
class _Model:
    """What a torchlogix dense model holds, however it was stored."""

    layers: list = field(default_factory=list)  # (name, weight, a, b, parametrization|None)
    thresholds: np.ndarray | None = None
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
    if any(re.search(r"(^|\.)_indices_L\d+$", k) for k in arrays):
        raise UserError(f"{source}: conv logic blocks (LogicConv2d/OrPooling2d) are not "
                        "supported yet; dense models only")
    model = _Model()
    prefixes = sorted({k[:-len(".connections.indices")] for k in arrays
                       if k.endswith(".connections.indices")}, key=_module_key)
    if not prefixes:
        raise UserError(f"{source}: no '<layer>.connections.indices' entries: not a torchlogix "
                        "dense model")
    for p in prefixes:
        model.layers.append(_layer_from_arrays(arrays, p, parametrization, source))
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


def _layer_from_arrays(arrays, p, parametrization, source):
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
    kind = parametrization
    if kind is None:
        if f"{p}._export_lut_ids" in arrays:
            ops_ = np.asarray(arrays[f"{p}._export_lut_ids"]).astype(np.int64).reshape(-1)
            return (p, ops_, idx[0], idx[1], "export ids")
        if weight.shape[1] != 16:
            raise UserError(f"{source}: {p}.weight is (out, 4): warp or light "
                            "parametrization; say which with --parametrization")
        kind = "raw"
    return (p, _gate_ops(np.asarray(weight), kind, f"{source}: {p}"), idx[0], idx[1], kind)


def _build(model: _Model, source: str) -> gg.GateGraph:
    layers = [(a, b, op) for _, op, a, b, _ in model.layers]
    first = model.layers[0]
    encoding = None
    inputs = None
    if model.thresholds is not None:
        th = np.asarray(model.thresholds, dtype=np.float64)
        if th.ndim == 1:  # one thermometer shared by every feature
            need = int(max(first[2].max(), first[3].max())) + 1
            features = -(-need // len(th))
            th = np.tile(th, (features, 1))
        if th.ndim != 2:
            raise UserError(f"{source}: binarization thresholds of shape {th.shape} are not "
                            "(features, bits) -- a conv model? not supported yet")
        encoding = gg.Thermometer(th)
        inputs = th.size
    if inputs is None:
        inputs = int(max(first[2].max(), first[3].max())) + 1
    if model.classes is None:
        raise UserError(f"{source}: the file does not record GroupSum's k; give --classes")
    meta = {"imported_from": "torchlogix", "source": Path(source).name,
            "parametrization": sorted({layer[4] for layer in model.layers})}
    try:
        return gg.make(inputs, layers, model.classes, tau=model.tau, encoding=encoding,
                       meta=meta)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None


# -- pickled whole models -----------------------------------------------------------------


def _from_module(root, classes, parametrization, source) -> gg.GateGraph:
    """Walk a pickled torchlogix model (inert stand-ins) in module order."""
    from lgn_fpga.train.difflogic_import import _numpy

    model = _Model()

    def walk(mod, name):
        kind = type(mod).__name__
        params = getattr(mod, "_parameters", None) or {}
        buffers = getattr(mod, "_buffers", None) or {}
        children = getattr(mod, "_modules", None) or {}
        if kind.startswith(("LogicConv", "OrPooling")):
            raise UserError(f"{source}: {kind} ({name}): conv logic blocks are not supported "
                            "yet; dense models only")
        if kind == "LogicDense":
            conn = children.get("connections")
            cp = getattr(conn, "_parameters", None) or {}
            cb = getattr(conn, "_buffers", None) or {}
            arrays = {f"{name}.weight": _numpy(params["weight"]),
                      f"{name}.connections.indices": _numpy(cb["indices"])}
            if "weights" in cp:
                arrays[f"{name}.connections.weights"] = _numpy(cp["weights"])
            par = type(children.get("parametrization")).__name__
            pkind = {"RawLUTParametrization": "raw", "WarpLUTParametrization": "warp",
                     "LightLUTParametrization": "light"}.get(par, parametrization)
            if getattr(mod, "lut_rank", 2) != 2:
                raise UserError(f"{source}: {name} has lut_rank {mod.lut_rank}; only 2-input "
                                "gates become a gate graph")
            model.layers.append(_layer_from_arrays(arrays, name, pkind, source))
            return
        if kind == "GroupSum":
            model.classes = int(mod.k)
            tau = float(getattr(mod, "tau", 1.0))
            model.tau = tau if tau != 1.0 else None
            return
        if kind in ("LearnableBinarization",):
            model.thresholds = _learned_thresholds(
                _numpy(params["raw_diffs"]), float(getattr(mod, "temperature_softplus", 0.1)))
            return
        if kind in ("FixedBinarization", "SoftBinarization"):
            model.thresholds = _numpy(buffers["thresholds"]).astype(np.float32)
            return
        for child_name, child in children.items():
            walk(child, f"{name}.{child_name}" if name else child_name)

    walk(root, "")
    if not model.layers:
        raise UserError(f"{source}: the pickled model holds no torchlogix LogicDense")
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
            if module == "torchlogix" or module.startswith("torchlogix."):
                return type(name, (dl._Inert,), {"__module__": "lgn_fpga.torchlogix_standin"})
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
