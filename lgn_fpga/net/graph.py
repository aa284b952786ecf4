"""The gate graph: lgn-fpga's versioned on-disk model format (see docs/format.md).

A net is a stack of layers of 2-input gates. Gate ``i`` of a layer reads outputs ``a[i]``
and ``b[i]`` of the previous layer (layer 0 reads the input bits) and applies ``op[i]``
(difflogic's order, see :mod:`lgn_fpga.net.ops`). The last layer's bits are split into
``classes`` equal groups; a class's score is the popcount of its group.

Loading validates everything and stops at the first problem, naming its place, e.g.
``layers[3].a[17] = 900 is out of range: layer 2 has 512 outputs``.

Size limits are checked before anything big is allocated: an ``.npz`` model's members from
the zip directory and each ``.npy`` header before a byte is decompressed, a JSON model from
its file size, and every model's ``inputs``, gates and layers (:func:`limits`). A genuinely
huge net raises them through the environment, e.g. ``LGN_FPGA_MAX_GATES=100000000``
(also ``LGN_FPGA_MAX_INPUTS``, ``LGN_FPGA_MAX_LAYERS``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.files import atomic_write

FORMAT = "lgn-fpga.gate-graph"
VERSION = 1


class GraphError(UserError):
    """A gate graph that breaks the format; the message names the place."""


#: Default size limits and the environment variables that raise them. 16M gates take
#: ~150 MB as arrays (int32 a, b + uint8 op); the shipped fashion-mnist model has 42k.
LIMITS = {
    "inputs": ("LGN_FPGA_MAX_INPUTS", 1 << 20),
    "gates": ("LGN_FPGA_MAX_GATES", 1 << 24),
    "layers": ("LGN_FPGA_MAX_LAYERS", 10_000),
}
#: Bytes of the JSON header of an ``.npz`` model (thresholds and meta live there).
MAX_HEADER_BYTES = 64 << 20
#: Bytes of a JSON model per allowed gate (about three indices of up to 8 digits each), plus
#: room for thresholds and meta; json.loads takes ~10x the text in Python objects.
JSON_BYTES_PER_GATE = 32


@dataclass(frozen=True)
class Limits:
    """The most inputs, gates (all layers together) and layers a model may have."""

    inputs: int
    gates: int
    layers: int

    @property
    def json_bytes(self) -> int:
        return JSON_BYTES_PER_GATE * self.gates + MAX_HEADER_BYTES


def limits() -> Limits:
    """The size limits in force: :data:`LIMITS`, each raised (or lowered) by its environment
    variable.

    Raises
    ------
    UserError
        An environment variable that is not a positive integer.
    """
    values = {}
    for key, (var, default) in LIMITS.items():
        text = os.environ.get(var)
        if text is None or text == "":
            values[key] = default
            continue
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise UserError(f"${var} = {text!r} must be a positive integer")
        values[key] = value
    return Limits(**values)


def _too_big(what: str, value: int, key: str) -> GraphError:
    var, _ = LIMITS[key]
    return GraphError(f"{what} = {value} exceeds the limit of {getattr(limits(), key)} "
                      f"{key}; set ${var} to allow a bigger net")


@dataclass(frozen=True)
class Layer:
    """One layer of gates as three equal-length arrays (int32 indices, uint8 ops)."""

    a: np.ndarray
    b: np.ndarray
    op: np.ndarray

    def __len__(self) -> int:
        return len(self.op)


@dataclass(frozen=True)
class Thermometer:
    """Raw features to bits: bit ``f*T + t`` is ``feature[f] > thresholds[f][t]``."""

    thresholds: np.ndarray  # float64, shape (features, T)

    @property
    def features(self) -> int:
        return self.thresholds.shape[0]

    @property
    def bits(self) -> int:
        return self.thresholds.size

    def encode(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.features:
            raise UserError(
                f"features have shape {x.shape}; the encoding expects (samples, {self.features})")
        bits = x[:, :, None] > self.thresholds[None, :, :]
        return bits.reshape(len(x), -1).astype(np.uint8)

    def to_json(self) -> dict:
        return {"kind": "thermometer", "thresholds": self.thresholds.tolist()}


def score_width(group_size: int) -> int:
    """Bits of one class score, a count of 0..``group_size`` ones: the one formula every
    stage (core, protocol, tops, fit estimate) uses."""
    return max(1, int(group_size).bit_length())


def class_width(classes: int) -> int:
    """Bits of a class index 0..``classes - 1`` (at least 1)."""
    return max(1, (int(classes) - 1).bit_length())


@dataclass(frozen=True)
class GateGraph:
    inputs: int
    layers: tuple[Layer, ...]
    classes: int
    tau: float | None = None
    encoding: Thermometer | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def widths(self) -> list[int]:
        return [len(layer) for layer in self.layers]

    @property
    def outputs(self) -> int:
        return len(self.layers[-1])

    @property
    def group_size(self) -> int:
        """Bits per class in the last layer (k)."""
        return self.outputs // self.classes

    @property
    def score_width(self) -> int:
        """Bits of one class score (a popcount of 0..k): see :func:`score_width`."""
        return score_width(self.group_size)

    @property
    def class_width(self) -> int:
        """Bits of a class index: see :func:`class_width`."""
        return class_width(self.classes)

    @property
    def gates(self) -> int:
        return sum(self.widths)

    @property
    def depth(self) -> int:
        return len(self.layers)

    def op_counts(self) -> np.ndarray:
        """Gates per op code, shape (16,)."""
        counts = np.zeros(16, dtype=np.int64)
        for layer in self.layers:
            counts += np.bincount(layer.op, minlength=16)
        return counts

    def sha256(self) -> str:
        """A hash of what the net computes (inputs, wiring, ops, classes), not of meta."""
        h = hashlib.sha256()
        h.update(f"{FORMAT}/{VERSION}/{self.inputs}/{self.classes}/".encode())
        for layer in self.layers:
            for arr in (layer.a, layer.b, layer.op):
                h.update(np.ascontiguousarray(arr, dtype="<i4").tobytes())
            h.update(b"|")
        return h.hexdigest()

    def replace(self, **changes) -> GateGraph:
        fields = {
            "inputs": self.inputs, "layers": self.layers, "classes": self.classes,
            "tau": self.tau, "encoding": self.encoding, "meta": self.meta,
        }
        fields.update(changes)
        return GateGraph(**fields)


def make(inputs: int, layers, classes: int, *, tau=None, encoding=None, meta=None) -> GateGraph:
    """Build and validate a graph from Python/numpy data: ``layers`` holds (a, b, op) triples
    or :class:`Layer` objects."""
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "inputs": inputs, "classes": classes,
        "layers": [
            {"a": layer.a, "b": layer.b, "op": layer.op} if isinstance(layer, Layer)
            else {"a": layer[0], "b": layer[1], "op": layer[2]}
            for layer in layers
        ],
    }
    if tau is not None:
        doc["tau"] = tau
    if encoding is not None:
        doc["encoding"] = encoding.to_json() if isinstance(encoding, Thermometer) else encoding
    if meta is not None:
        doc["meta"] = meta
    return from_document(doc)


# -- validation ---------------------------------------------------------------------------


def _int(value, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GraphError(f"{where} must be an integer, got {_show(value)}")
    if value < minimum:
        raise GraphError(f"{where} = {value} must be at least {minimum}")
    return int(value)


def _show(value) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, list, dict, type(None))) \
        else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int_array(value, where: str) -> np.ndarray:
    """A 1-D integer array, or a GraphError naming the first element that is not an integer."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise GraphError(f"{where} must be a list of integers, got an array of shape "
                             f"{value.shape}")
        if value.dtype.kind in "iu":
            return value.astype(np.int64)
        if value.dtype.kind == "b" or value.size:
            value = value.tolist()
        else:
            return value.astype(np.int64)
    if not isinstance(value, (list, tuple)):
        raise GraphError(f"{where} must be a list of integers, got {_show(value)}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise GraphError(f"{where}[{i}] must be an integer, got {_show(v)}")
        if not -(1 << 63) <= v < (1 << 63):
            raise GraphError(f"{where}[{i}] = {_show(int(v))} is out of range")
    return np.asarray(value, dtype=np.int64).reshape(-1)


def _length(value) -> int:
    """Elements of a layer array as given (0 for anything that is not a list or 1-D array;
    _int_array names that problem)."""
    if isinstance(value, np.ndarray):
        return int(value.size) if value.ndim == 1 else 0
    return len(value) if isinstance(value, (list, tuple)) else 0


def _check_range(arr: np.ndarray, where: str, low: int, high: int, why: str) -> None:
    bad = np.flatnonzero((arr < low) | (arr >= high))
    if bad.size:
        i = int(bad[0])
        raise GraphError(f"{where}[{i}] = {int(arr[i])} is out of range: {why}")


def from_document(doc: Any, *, source: str = "model") -> GateGraph:
    """Validate a decoded document (dict of JSON values and/or numpy arrays)."""
    if not isinstance(doc, dict):
        raise GraphError(f"{source}: top level must be an object, got {_show(doc)}")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise GraphError(f'"format" is {_show(fmt)}; expected "{FORMAT}"')
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)):
        raise GraphError(f'"version" must be an integer, got {_show(version)}')
    if version != VERSION:
        raise GraphError(
            f"format version {version} is not supported: this lgn-fpga reads version {VERSION}"
            + ("; upgrade lgn-fpga" if version > VERSION else ""))
    known = {"format", "version", "inputs", "layers", "classes", "tau", "encoding", "meta"}
    for key in doc:
        if key not in known:
            raise GraphError(f'unknown key "{key}" (known keys: {", ".join(sorted(known))})')
    for key in ("inputs", "layers", "classes"):
        if key not in doc:
            raise GraphError(f'missing required key "{key}"')
    limit = limits()
    inputs = _int(doc["inputs"], '"inputs"', minimum=1)
    if inputs > limit.inputs:
        raise _too_big('"inputs"', inputs, "inputs")
    classes = _int(doc["classes"], '"classes"', minimum=1)
    if classes > limit.gates:
        raise _too_big('"classes"', classes, "gates")

    raw_layers = doc["layers"]
    if not isinstance(raw_layers, (list, tuple)):
        raise GraphError(f'"layers" must be a list, got {_show(raw_layers)}')
    if not raw_layers:
        raise GraphError('"layers" is empty: a net needs at least one layer')
    if len(raw_layers) > limit.layers:
        raise _too_big('"layers"', len(raw_layers), "layers")
    layers = []
    previous = inputs
    gates = 0
    for n, raw in enumerate(raw_layers):
        where = f"layers[{n}]"
        if not isinstance(raw, dict):
            raise GraphError(f"{where} must be an object with a, b, op, got {_show(raw)}")
        for key in raw:
            if key not in ("a", "b", "op"):
                raise GraphError(f'{where} has unknown key "{key}" (expected a, b, op)')
        for key in ("a", "b", "op"):
            if key not in raw:
                raise GraphError(f'{where} is missing "{key}"')
        # Count before converting: a list of a billion ints must not become an array first.
        gates += max(_length(raw[k]) for k in ("a", "b", "op"))
        if gates > limit.gates:
            raise _too_big(f"gates up to {where}", gates, "gates")
        a = _int_array(raw["a"], f"{where}.a")
        b = _int_array(raw["b"], f"{where}.b")
        op = _int_array(raw["op"], f"{where}.op")
        if not (len(a) == len(b) == len(op)):
            raise GraphError(f"{where}: a, b and op must have equal lengths, got "
                             f"{len(a)}, {len(b)}, {len(op)}")
        if len(op) == 0:
            raise GraphError(f"{where} has no gates")
        why = (f"the net has {previous} inputs" if n == 0
               else f"layer {n - 1} has {previous} outputs")
        _check_range(a, f"{where}.a", 0, previous, why)
        _check_range(b, f"{where}.b", 0, previous, why)
        _check_range(op, f"{where}.op", 0, 16, "op codes are 0..15")
        layers.append(Layer(a.astype(np.int32), b.astype(np.int32), op.astype(np.uint8)))
        previous = len(op)

    if previous % classes:
        raise GraphError(f"the last layer has {previous} outputs, not a multiple of "
                         f"classes = {classes}")

    tau = doc.get("tau")
    if tau is not None:
        if isinstance(tau, bool) or not isinstance(tau, (int, float, np.number)) \
                or not np.isfinite(tau) or tau <= 0:
            raise GraphError(f'"tau" must be a positive number, got {_show(tau)}')
        tau = float(tau)

    encoding = None
    if doc.get("encoding") is not None:
        encoding = _encoding(doc["encoding"], inputs)

    meta = doc.get("meta", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise GraphError(f'"meta" must be an object, got {_show(meta)}')
    return GateGraph(inputs, tuple(layers), classes, tau, encoding, meta)


def _encoding(enc: Any, inputs: int) -> Thermometer:
    if not isinstance(enc, dict):
        raise GraphError(f'"encoding" must be an object, got {_show(enc)}')
    kind = enc.get("kind")
    if kind != "thermometer":
        raise GraphError(f'encoding.kind = {_show(kind)} is not supported (version 1 defines '
                         f'"thermometer")')
    for key in enc:
        if key not in ("kind", "thresholds"):
            raise GraphError(f'encoding has unknown key "{key}"')
    th = enc.get("thresholds")
    if isinstance(th, np.ndarray):
        th = th.tolist()
    if not isinstance(th, list) or not th:
        raise GraphError("encoding.thresholds must be a non-empty list of lists")
    width = None
    for f, row in enumerate(th):
        if not isinstance(row, list) or not row:
            raise GraphError(f"encoding.thresholds[{f}] must be a non-empty list of numbers")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise GraphError(f"encoding.thresholds[{f}] has {len(row)} thresholds; "
                             f"thresholds[0] has {width}: all lists must be the same length")
        for t, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise GraphError(f"encoding.thresholds[{f}][{t}] must be a finite number, "
                                 f"got {_show(v)}")
    arr = np.asarray(th, dtype=np.float64)
    if arr.size != inputs:
        raise GraphError(f"encoding has {arr.shape[0]} features x {arr.shape[1]} thresholds = "
                         f"{arr.size} bits, but the net has {inputs} inputs")
    return Thermometer(arr)


# -- files --------------------------------------------------------------------------------


def to_document(graph: GateGraph) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "inputs": graph.inputs,
        "classes": graph.classes,
    }
    if graph.tau is not None:
        doc["tau"] = graph.tau
    if graph.encoding is not None:
        doc["encoding"] = graph.encoding.to_json()
    doc["meta"] = graph.meta
    doc["layers"] = [
        {"a": layer.a.tolist(), "b": layer.b.tolist(), "op": layer.op.tolist()}
        for layer in graph.layers
    ]
    return doc


def dumps(graph: GateGraph) -> str:
    """JSON text with one line per layer array, so diffs and `head` stay readable."""
    doc = to_document(graph)
    layers = doc.pop("layers")
    head = json.dumps(doc, indent=1, sort_keys=False)
    parts = []
    for layer in layers:
        parts.append(
            '  {"a": ' + json.dumps(layer["a"], separators=(",", ":")) +
            ',\n   "b": ' + json.dumps(layer["b"], separators=(",", ":")) +
            ',\n   "op": ' + json.dumps(layer["op"], separators=(",", ":")) + "}")
    return head[:-2] + ',\n "layers": [\n' + ",\n".join(parts) + "\n ]\n}\n"


def save(graph: GateGraph, path: str | os.PathLike) -> None:
    """Write ``.json`` or ``.npz`` (compressed, same keys) by the file's suffix."""
    path = Path(path)
    if path.suffix == ".npz":
        doc = to_document(graph)
        header = {k: v for k, v in doc.items() if k != "layers"}
        arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        for n, layer in enumerate(graph.layers):
            arrays[f"layers.{n}.a"] = layer.a
            arrays[f"layers.{n}.b"] = layer.b
            arrays[f"layers.{n}.op"] = layer.op
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write(path, buf.getvalue())
    elif path.suffix == ".json":
        atomic_write(path, dumps(graph).encode())
    else:
        raise UserError(f"{path}: model files end in .json or .npz")


def load(path: str | os.PathLike) -> GateGraph:
    """Read and validate a ``.json`` or ``.npz`` gate graph; GraphError names the problem.

    Sizes are checked before allocation (see :func:`limits`), so a hostile file costs memory
    of the order of its data, never more.

    Raises
    ------
    UserError
        No such file, a folder, an unreadable file.
    GraphError
        Anything wrong with the contents, naming the place.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise UserError(f"{path}: no such file")
        if path.is_dir():
            raise UserError(f"{path}: is a folder, not a model file")
        if path.suffix == ".npz" or zipfile.is_zipfile(path):
            doc = _read_npz(path)
        else:
            doc = _read_json(path)
        return from_document(doc, source=str(path))
    except GraphError as e:
        message = str(e)
        if not message.startswith(str(path)):
            message = f"{path}: {message}"
        raise GraphError(message) from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def _read_json(path: Path) -> Any:
    size = path.stat().st_size
    limit = limits().json_bytes
    if size > limit:
        var = LIMITS["gates"][0]
        raise GraphError(f"a JSON model of {size} bytes exceeds the limit of {limit} bytes; "
                         f"save big nets as .npz, or set ${var} to allow a bigger net")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise GraphError(f"not a JSON or .npz model ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise GraphError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise GraphError("invalid JSON: nested too deeply") from None


#: what a model's arrays may hold: integers (booleans are refused later, by name)
_INTEGER_KINDS = "biu"


def read_npy(f, where: str, *, max_elements: int, kinds: str = _INTEGER_KINDS,
             hint: str = "") -> np.ndarray:
    """One ``.npy`` array from the binary stream ``f``, checked from its header before its
    data is read: no pickles, a dtype of one of ``kinds``, at most ``max_elements``
    elements. Memory is the array's own size.

    Raises
    ------
    UserError
        A bad magic or header, an object, string or other dtype not in ``kinds``, too many
        elements, or data shorter or longer than the header says; the message starts
        with ``where``.
    """
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise UserError(f"{where}: .npy format version {version} is not supported")
    except (ValueError, EOFError) as e:
        raise UserError(f"{where}: not a .npy array ({e})") from None
    if dtype.hasobject or dtype.kind not in kinds or dtype.fields is not None \
            or dtype.subdtype is not None:
        raise UserError(f"{where}: holds {dtype} values; expected "
                        + {"biu": "integers", "biuf": "numbers"}.get(kinds, f"kind {kinds}"))
    count = 1
    for n in shape:
        count *= int(n)
    if count > max_elements:
        raise UserError(f"{where}: its header claims shape {shape} = {count} elements, over "
                        f"the limit of {max_elements}{hint}")
    nbytes = count * dtype.itemsize
    data = f.read(nbytes)
    if len(data) != nbytes:
        raise UserError(f"{where}: truncated: its header claims shape {shape} "
                        f"({nbytes} bytes), but only {len(data)} bytes follow")
    if f.read(1):
        raise UserError(f"{where}: has data after the {nbytes} bytes its header describes")
    arr = np.frombuffer(data, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


#: failures of a corrupt, encrypted or exotic zip member
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
               ValueError, OSError)


def _read_npz(path: Path) -> dict[str, Any]:
    limit = limits()
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as e:
        raise GraphError(f"not a readable .npz model ({e})") from None
    with archive:
        members: dict[str, zipfile.ZipInfo] = {}
        layers: dict[int, dict[str, zipfile.ZipInfo]] = {}
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise GraphError(f'member "{name}" is not a .npy array (an .npz model holds '
                                 f'header.npy and layers.N.a/b/op.npy)')
            key = name[:-4]
            if key in members:
                raise GraphError(f'member "{name}" appears twice')
            if info.flag_bits & 0x1:
                raise GraphError(f'member "{name}" is encrypted')
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise GraphError(f'member "{name}" uses compression method '
                                 f'{info.compress_type}; .npz files use stored or deflate')
            parts = key.split(".")
            if key != "header" and (len(parts) != 3 or parts[0] != "layers"
                                    or not parts[1].isdigit() or parts[2] not in ("a", "b", "op")):
                raise GraphError(f'unexpected array "{key}" (expected header and '
                                 f'layers.N.a/b/op)')
            # The zip directory's sizes, before a byte is decompressed (read_npy checks the
            # real data against the .npy header again, so a lying directory gains nothing).
            most = MAX_HEADER_BYTES if key == "header" else 8 * limit.gates
            if info.file_size > most + 4096:
                raise GraphError(f'member "{name}" is {info.file_size} bytes uncompressed, '
                                 f'over the limit of {most}; set ${LIMITS["gates"][0]} to '
                                 f'allow a bigger net')
            members[key] = info
            if key != "header":
                if int(parts[1]) >= limit.layers:
                    raise _too_big(f"layer index {parts[1]}", int(parts[1]) + 1, "layers")
                layers.setdefault(int(parts[1]), {})[parts[2]] = info
        if "header" not in members:
            raise GraphError('missing "header" array (an .npz model holds the JSON header '
                             'plus "layers.N.a/b/op" arrays)')
        header = _member(archive, members["header"], MAX_HEADER_BYTES)
        if header.ndim != 1 or header.dtype != np.uint8:
            raise GraphError(f"header must be a 1-D uint8 array of JSON bytes, got "
                             f"{header.dtype} of shape {header.shape}")
        try:
            doc = json.loads(header.tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise GraphError(f"header is not valid JSON ({e})") from None
        except RecursionError:
            raise GraphError("header is not valid JSON: nested too deeply") from None
        if not isinstance(doc, dict):
            raise GraphError("header must be a JSON object")
        if "layers" in doc:
            raise GraphError('"layers" belongs in the layers.N.a/b/op arrays, not the header')
        count = len(layers)
        for n in range(count):
            if n not in layers:
                raise GraphError(f"layers.{n} is missing but layers up to {max(layers)} exist")
        left = limit.gates
        arrays: list[dict[str, np.ndarray]] = []
        for n in range(count):
            arrays.append({})
            for part, info in sorted(layers[n].items()):
                arr = _member(archive, info, left)
                arrays[n][part] = arr
            # every gate has an a, b and op: the longest of the three counts
            left -= max((a.size for a in arrays[n].values()), default=0)
            if left < 0:
                raise _too_big(f"gates up to layers.{n}", limit.gates - left, "gates")
    doc["layers"] = arrays
    return doc


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_elements: int) -> np.ndarray:
    where = f'member "{info.filename}"'
    try:
        with archive.open(info) as f:
            return read_npy(f, where, max_elements=max_elements)
    except UserError as e:
        raise GraphError(str(e)) from None
    except _ZIP_ERRORS as e:
        raise GraphError(f"{where} is corrupt ({type(e).__name__}: {e})") from None
