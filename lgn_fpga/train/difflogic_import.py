"""Networks trained with the difflogic library (Petersen et al.; difflogic 0.1.0) to gate
graphs, without importing difflogic.

difflogic's layout: ``LogicLayer`` has a parameter ``weights`` (out_dim x 16, gate logits in
the same op order as ours) and ``indices``, a plain tuple ``(a, b)`` of int64 tensors -- NOT
a buffer, so ``state_dict()`` loses the wiring (difflogic issue #34). ``GroupSum(k, tau)``
has no state: class c's score is the sum of outputs [c*n/k, (c+1)*n/k), as ours. The
hardened gate is ``weights.argmax(-1)`` (difflogic's eval mode).

So we accept, in order of preference:

* a pickled model (``torch.save(model)``): the wiring, k and tau come with it. It is read
  with an allow-list unpickler (:class:`_AllowListUnpickler`) that never runs code from the
  file: difflogic's ``LogicLayer`` / ``GroupSum`` and torch's container modules become inert
  stand-ins that only keep their attributes, tensors are rebuilt by torch's own rebuild
  functions, and any other global (``os.system``, ``builtins.eval``, another library's
  class, ...) is refused with one line. difflogic need not be installed;
* a state dict plus the wiring: keys ``<layer>.indices`` (2 x out) or ``<layer>.indices.0``
  and ``<layer>.indices.1`` in the same file, or in a separate ``--indices`` file;
* an ``.npz`` with the same keys (numpy only: no torch needed).

Layers are taken in the order of their keys' module position (``0.weights``, ``1.weights``,
... ``10.weights`` sorted numerically).
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgn_fpga.errors import INSTALL_TRAIN, UserError
from lgn_fpga.net import graph as gg


@dataclass(frozen=True)
class ImportedLayer:
    name: str
    weights: np.ndarray  # (out, 16)
    a: np.ndarray
    b: np.ndarray


@dataclass(frozen=True)
class Imported:
    layers: list[ImportedLayer]
    classes: int | None = None  # GroupSum k, when the file said
    tau: float | None = None


# -- reading ------------------------------------------------------------------------------


class _Inert:
    """Stands in for any difflogic class while unpickling: keeps the pickled attributes."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple):  # (dict, slots)
            state = state[0] or {}
        self.__dict__.update(state)


#: Module classes a difflogic model is made of: unpickled as inert stand-ins, never imported.
_MODULE_CLASSES = {
    ("difflogic.difflogic", "LogicLayer"), ("difflogic.difflogic", "GroupSum"),
    ("difflogic", "LogicLayer"), ("difflogic", "GroupSum"),
    ("torch.nn.modules.container", "Sequential"), ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.container", "ModuleDict"), ("torch.nn.modules.flatten", "Flatten"),
}
#: Functions and classes a torch file may name, besides storages (which torch itself maps
#: before our find_class sees them) and dtypes: the rebuild functions torch's own
#: ``weights_only`` loader allows for tensors and parameters.
_ALLOWED = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    # torch.nn.Module keeps a set (_non_persistent_buffers_set); protocol 2 names builtins
    # by their Python 2 module
    ("builtins", "set"), ("__builtin__", "set"), ("builtins", "frozenset"),
    ("__builtin__", "frozenset"),
}


class _AllowListUnpickler(pickle.Unpickler):
    """Resolves only :data:`_MODULE_CLASSES` (as inert stand-ins), :data:`_ALLOWED` and torch
    dtypes; everything else raises ``pickle.UnpicklingError`` naming the global."""

    def find_class(self, module, name):
        if (module, name) in _MODULE_CLASSES:
            return type(name, (_Inert,), {"__module__": "lgn_fpga.difflogic_standin"})
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch":
            import torch

            if isinstance(getattr(torch, name, None), torch.dtype):
                return getattr(torch, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only difflogic's LogicLayer/GroupSum, torch "
            f"containers and tensors are allowed (no code runs from model files)")


class _AllowListPickle:
    """A ``pickle_module`` for torch.load whose Unpickler is :class:`_AllowListUnpickler`."""

    Unpickler = _AllowListUnpickler
    __name__ = "pickle"

    @staticmethod
    def load(file, **kwargs):
        return _AllowListUnpickler(file, **kwargs).load()


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _module_key(name: str):
    """Sort 'model.10.weights' after 'model.2.weights'."""
    return [int(p) if p.isdigit() else p for p in re.split(r"[.]", name)]


def _from_mapping(arrays: dict, source: str) -> list[ImportedLayer]:
    prefixes = sorted((k[:-len(".weights")] if k != "weights" else ""
                       for k in arrays if k == "weights" or k.endswith(".weights")),
                      key=_module_key)
    if not prefixes:
        raise UserError(f"{source}: no '<layer>.weights' entries: not a difflogic network")
    layers = []
    for prefix in prefixes:
        dot = f"{prefix}." if prefix else ""
        w = np.asarray(arrays[f"{dot}weights"], dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != 16:
            raise UserError(f"{source}: {dot}weights has shape {w.shape}; difflogic's "
                            f"LogicLayer weights are (out_dim, 16)")
        if f"{dot}indices" in arrays:
            ind = np.asarray(arrays[f"{dot}indices"])
            if ind.shape != (2, len(w)):
                raise UserError(f"{source}: {dot}indices has shape {ind.shape}; expected "
                                f"(2, {len(w)})")
            a, b = ind[0], ind[1]
        elif f"{dot}indices.0" in arrays and f"{dot}indices.1" in arrays:
            a, b = np.asarray(arrays[f"{dot}indices.0"]), np.asarray(arrays[f"{dot}indices.1"])
        else:
            raise UserError(
                f"{source}: no wiring for layer '{prefix}': difflogic keeps LogicLayer.indices "
                f"out of the state dict (difflogic issue #34); save the whole model "
                f"(torch.save(model, ...)) or add '{dot}indices' = torch.stack(layer.indices), "
                f"or pass --indices")
        layers.append(ImportedLayer(prefix, w, np.asarray(a).reshape(-1).astype(np.int64),
                                    np.asarray(b).reshape(-1).astype(np.int64)))
    return layers


def _from_module(model, source: str) -> Imported:
    """Walk a pickled model (torch modules and inert difflogic stand-ins) in order."""
    layers: list[ImportedLayer] = []
    found = {"classes": None, "tau": None}

    def walk(mod, name):
        params = getattr(mod, "_parameters", None) or {}
        if "weights" in params and hasattr(mod, "indices"):
            a, b = mod.indices
            layers.append(ImportedLayer(name, _numpy(params["weights"]).astype(np.float64),
                                        _numpy(a).astype(np.int64).reshape(-1),
                                        _numpy(b).astype(np.int64).reshape(-1)))
        elif type(mod).__name__ == "GroupSum" and hasattr(mod, "k"):
            found["classes"], found["tau"] = int(mod.k), float(getattr(mod, "tau", 1.0))
        for child_name, child in (getattr(mod, "_modules", None) or {}).items():
            walk(child, f"{name}.{child_name}" if name else child_name)

    walk(model, "")
    if not layers:
        raise UserError(f"{source}: the pickled model holds no difflogic LogicLayer")
    return Imported(layers, found["classes"], found["tau"])


def read(path: str | Path, indices: str | Path | None = None) -> Imported:
    """Read a difflogic network from ``path`` (.pt/.pth via torch, or .npz)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.suffix == ".npz":
        arrays = dict(np.load(path, allow_pickle=False))
        imported = None
    else:
        obj = _torch_load(path)
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]  # a common checkpoint wrapper
        if isinstance(obj, dict):
            arrays = {k: _numpy(v) for k, v in obj.items() if hasattr(v, "shape")
                      or isinstance(v, (list, tuple))}
            imported = None
        else:
            imported = _from_module(obj, str(path))
    if imported is None:
        if indices is not None:
            extra = read_indices(indices)
            arrays = {**extra, **arrays}
        imported = Imported(_from_mapping(arrays, str(path)))
    return imported


def read_indices(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.suffix == ".npz":
        return dict(np.load(path, allow_pickle=False))
    obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: an indices file holds a dict '<layer>.indices' -> (2, out)")
    out = {}
    for k, v in obj.items():
        if isinstance(v, (tuple, list)) and len(v) == 2:
            out[k] = np.stack([_numpy(v[0]), _numpy(v[1])])
        else:
            out[k] = _numpy(v)
    return out


def _torch_load(path: Path):
    try:
        import torch
    except ImportError:
        raise UserError(f"{path}: reading .pt files needs torch: {INSTALL_TRAIN} "
                        f"(or convert to .npz)") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not plain tensors: try the allow-list next
        pass
    # A pickled model: torch's own loader with our allow-list unpickler, never standard
    # pickle (weights_only=False only lets torch take our pickle_module; find_class above
    # decides what may be loaded).
    try:
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=_AllowListPickle)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any failure of a foreign file is one line
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(f"{path}: cannot read ({type(e).__name__}: {message})") from None


# -- converting ---------------------------------------------------------------------------


def to_graph(imported: Imported, *, inputs: int | None = None, classes: int | None = None,
             tau: float | None = None, encoding: gg.Thermometer | None = None,
             meta: dict | None = None) -> gg.GateGraph:
    """The gate graph difflogic's eval mode computes (argmax gate per neuron)."""
    classes = classes or imported.classes
    if classes is None:
        raise UserError("the number of classes (difflogic's GroupSum k) is not in the file: "
                        "pass --classes")
    first = imported.layers[0]
    needed = int(max(first.a.max(), first.b.max())) + 1
    if inputs is None:
        inputs = encoding.bits if encoding is not None else needed
    elif needed > inputs:
        raise UserError(f"layer '{first.name}' reads input {needed - 1}, but --inputs is "
                        f"{inputs}")
    for prev, layer in zip(imported.layers, imported.layers[1:]):
        if not (len(layer.a) == len(layer.b) == len(layer.weights)):
            raise UserError(f"layer '{layer.name}': indices and weights disagree in length")
        top = int(max(layer.a.max(), layer.b.max()))
        if top >= len(prev.weights):
            raise UserError(f"layer '{layer.name}' reads output {top} of layer "
                            f"'{prev.name}', which has {len(prev.weights)}")
    layers = [(lay.a, lay.b, lay.weights.argmax(-1)) for lay in imported.layers]
    return gg.make(inputs, layers, classes, tau=tau or imported.tau, encoding=encoding,
                   meta=meta)


def read_encoding(path: str | Path) -> gg.Thermometer:
    """Thermometer thresholds (features, T) from an .npy file."""
    path = Path(path)
    try:
        th = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .npy of thresholds ({e})") from None
    if not isinstance(th, np.ndarray) or th.ndim != 2 or th.dtype.kind not in "fiu":
        raise UserError(f"{path}: thresholds must be a (features, T) numeric array")
    return gg.Thermometer(th.astype(np.float64))
