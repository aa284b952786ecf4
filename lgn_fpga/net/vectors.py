"""Golden vector sets: input bits with the scores and classes the golden model gives them.

A vector set pins what a model must compute, independent of any engine: simulations, the
board's built-in self test (BIST) and regression tests replay it and compare. Each set
records the ``sha256`` of the gate graph it was made from, so it is never checked against
another model by mistake.

Every shipped model ``lgn_fpga/models/<name>.*`` has a set ``sim/<name>.vectors.npz``
(installed as ``lgn_fpga.sim``); ``sim/README.md`` has the command that regenerates them.

File format (``.npz``, no pickles)::

    bits      uint8 (n, inputs)   0/1 input bits
    scores    int32 (n, classes)  golden per-class scores
    classes   int64 (n,)          golden argmax (ties to the lowest index)
    header    uint8 JSON bytes    {"format": "lgn-fpga.vectors", "version": 1,
                                   "model_sha256": ..., "seed": ..., "model": ...}
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.files import atomic_write
from lgn_fpga.net import golden
from lgn_fpga.net.graph import GateGraph

__all__ = ["VectorSet", "check", "for_model", "load", "make", "save", "shipped_path"]

FORMAT = "lgn-fpga.vectors"
VERSION = 1
#: vectors per shipped set: enough to touch every class; small enough for a BIST ROM.
DEFAULT_COUNT = 256


@dataclass(frozen=True)
class VectorSet:
    bits: np.ndarray      # uint8 (n, inputs)
    scores: np.ndarray    # int32 (n, classes)
    classes: np.ndarray   # int64 (n,)
    model_sha256: str
    seed: int | None = None
    model: str | None = None  # the model's name or file, for messages only

    def __len__(self) -> int:
        return len(self.bits)

    @property
    def inputs(self) -> int:
        return self.bits.shape[1]

    @property
    def num_classes(self) -> int:
        return self.scores.shape[1]


def make(graph: GateGraph, count: int = DEFAULT_COUNT, *, seed: int = 0,
         model: str | None = None) -> VectorSet:
    """``count`` vectors for ``graph``: all zeros, all ones, then random vectors of varying
    density (see :func:`lgn_fpga.net.random_nets.random_bits`), with their golden outputs.

    For a model with a thermometer encoding every other random vector is instead the
    encoding of random features (uniform over each feature's threshold range): codes the
    model sees in use, which reach classes random bits rarely do."""
    from lgn_fpga.net.random_nets import random_bits

    if count < 1:
        raise UserError(f"a vector set needs at least one vector, got {count}")
    bits = random_bits(graph.inputs, count, seed)
    if graph.encoding is not None:
        th = graph.encoding.thresholds
        low, high = th.min(axis=1), th.max(axis=1)
        margin = 0.1 * (high - low) + 1e-9
        rng = np.random.default_rng([seed, 0xE1C])
        rows = np.arange(3, count, 2)
        features = rng.uniform(low - margin, high + margin, size=(len(rows), len(low)))
        encoded = graph.encoding.encode(features)
        bits[rows] = encoded
    bits[0] = 0
    if count > 1:
        bits[1] = 1
    expected = golden.predict(graph, bits)
    return VectorSet(bits, expected.scores.astype(np.int32), expected.classes.astype(np.int64),
                     graph.sha256(), seed, model)


def save(vectors: VectorSet, path: str | os.PathLike) -> None:
    """Write ``vectors`` as ``.npz`` (atomically)."""
    if not str(path).endswith(".npz"):
        raise UserError(f"{path}: vector sets are written as .npz; name the file *.npz")
    header = {"format": FORMAT, "version": VERSION, "model_sha256": vectors.model_sha256,
              "seed": vectors.seed, "model": vectors.model}
    buf = io.BytesIO()
    np.savez_compressed(
        buf, bits=vectors.bits.astype(np.uint8), scores=vectors.scores.astype(np.int32),
        classes=vectors.classes.astype(np.int64),
        header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    atomic_write(path, buf.getvalue())


def load(path: str | os.PathLike, graph: GateGraph | None = None) -> VectorSet:
    """Read a vector set; with ``graph``, also make sure it belongs to that model."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = dict(z.items())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable vector set ({e})") from None
    for key in ("bits", "scores", "classes", "header"):
        if key not in files:
            raise UserError(f'{path}: not a vector set (no "{key}" array)')
    try:
        header = json.loads(bytes(files["header"].astype(np.uint8)).decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path}: vector set header is not valid JSON") from None
    if header.get("format") != FORMAT:
        raise UserError(f'{path}: format is {header.get("format")!r}, expected "{FORMAT}"')
    if header.get("version") != VERSION:
        raise UserError(f"{path}: vector set version {header.get('version')} is not supported "
                        f"(this lgn-fpga reads version {VERSION})")
    bits, scores, classes = files["bits"], files["scores"], files["classes"]
    n = len(bits)
    if bits.ndim != 2 or scores.ndim != 2 or classes.shape != (n,) or len(scores) != n:
        raise UserError(f"{path}: inconsistent shapes bits {bits.shape}, scores {scores.shape}, "
                        f"classes {classes.shape}")
    vectors = VectorSet(bits.astype(np.uint8), scores.astype(np.int32),
                        classes.astype(np.int64), str(header.get("model_sha256")),
                        header.get("seed"), header.get("model"))
    if graph is not None:
        _check_model(vectors, graph, path)
    return vectors


def _check_model(vectors: VectorSet, graph: GateGraph, where) -> None:
    if vectors.model_sha256 != graph.sha256():
        raise UserError(f"{where}: made for model sha256 {vectors.model_sha256[:16]}..., not "
                        f"this model ({graph.sha256()[:16]}...); regenerate it "
                        f"(see sim/README.md)")
    if vectors.inputs != graph.inputs or vectors.num_classes != graph.classes:
        raise UserError(f"{where}: vectors have {vectors.inputs} inputs and "
                        f"{vectors.num_classes} classes; the model {graph.inputs} and "
                        f"{graph.classes}")


def check(vectors: VectorSet, graph: GateGraph) -> None:
    """Raise :class:`UserError` naming the first vector whose golden output differs."""
    _check_model(vectors, graph, vectors.model or "vector set")
    got = golden.predict(graph, vectors.bits)
    bad = np.flatnonzero((got.scores != vectors.scores).any(axis=1)
                         | (got.classes != vectors.classes))
    if bad.size:
        v = int(bad[0])
        raise UserError(f"vector {v}: golden model gives class {int(got.classes[v])} scores "
                        f"{got.scores[v].tolist()}; the set says class "
                        f"{int(vectors.classes[v])} scores {vectors.scores[v].tolist()}")


def shipped_path(name: str) -> Path:
    """Where the vector set of shipped model ``name`` lives (it may not exist yet)."""
    return Path(str(resources.files("lgn_fpga.sim") / f"{name}.vectors.npz"))


def for_model(name: str, graph: GateGraph | None = None) -> VectorSet:
    """The shipped vector set of shipped model ``name`` (checked against ``graph`` if given)."""
    path = shipped_path(name)
    if not path.exists():
        raise UserError(f"no vector set for model {name!r} (expected {path}); make one with "
                        f"`lgn-fpga vectors {name} -o {path.name}`")
    return load(path, graph)
