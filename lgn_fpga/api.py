"""The public Python API: the flow as functions, for scripts and for people who embed the core
in their own Amaranth design (docs/api.md). Each function is a thin door into its stage
package; the CLI goes through the same stages.

Every function raises :class:`lgn_fpga.errors.UserError` (one line naming the file or option
and the problem) for bad input; anything else is a bug.
"""

from __future__ import annotations

import os

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.net.graph import GateGraph

__all__ = ["GateGraph", "UserError", "build", "export", "load", "optimize", "predict",
           "save", "simulate"]


def load(model: str | os.PathLike) -> GateGraph:
    """Read and validate a gate graph.

    Parameters
    ----------
    model : str or path
        A ``.json``/``.npz`` file (format v1, docs/format.md), or the name of a shipped
        model (``"digits"``, ``"fashion-mnist"``).

    Raises
    ------
    UserError
        The file does not exist and no shipped model has that name.
    lgn_fpga.net.graph.GraphError
        (a ``UserError``) The file is not a valid gate graph; the message names the first
        problem and where it is.
    """
    from lgn_fpga.models import resolve
    from lgn_fpga.net import graph as gg

    return gg.load(resolve(model))


def save(graph: GateGraph, path: str | os.PathLike) -> None:
    """Write ``graph`` as ``.json`` or ``.npz`` (by the suffix), atomically.

    Raises
    ------
    UserError
        The suffix is neither, or the folder does not exist.
    """
    from lgn_fpga.net import graph as gg

    gg.save(graph, path)


def predict(graph: GateGraph, bits: np.ndarray, *, features: bool = False):
    """The golden model: scores and classes (ties to the lowest class) of ``graph``.

    Parameters
    ----------
    bits : ndarray
        (samples, inputs) 0/1 bits, or raw features when ``features`` is true (encoded
        with the model's thermometer encoding first).

    Returns
    -------
    lgn_fpga.net.golden.Prediction
        ``scores`` (samples, classes) and ``classes`` (samples,).

    Raises
    ------
    UserError
        Wrong shape, values other than 0/1, or ``features`` without an encoding.
    """
    from lgn_fpga.net import golden

    if features:
        return golden.predict_features(graph, bits)
    return golden.predict(graph, bits)


def optimize(graph: GateGraph) -> tuple[GateGraph, dict]:
    """``graph`` without dead gates, constants and duplicates (same scores for every input),
    and the statistics of what was removed."""
    from lgn_fpga.net.optimize import optimize as run_optimize

    return run_optimize(graph)


def simulate(graph: GateGraph, bits: np.ndarray, **options):
    """Stream ``bits`` through the core in a cycle-accurate simulation and check every
    output against the golden model (see :func:`lgn_fpga.verify.simulate.simulate` for the
    options: ``pipeline``, ``engine``, ``optimize``, ``gap_rate``, ``seed``, ``vcd``).

    Returns a :class:`~lgn_fpga.verify.harness.SimResult`; ``.passed`` is the verdict and
    ``.mismatch`` names the first wrong vector.

    Raises
    ------
    UserError
        Bad options, or an engine's tool (g++, Yosys) failed.
    """
    from lgn_fpga.verify.simulate import simulate as run_simulation

    return run_simulation(graph, bits, **options)


def export(graph: GateGraph, fmt: str = "verilog", **options) -> str:
    """The core alone as Verilog or RTLIL text (options: ``pipeline``, ``name``,
    ``optimize``)."""
    from lgn_fpga.flow.export import export as run_export

    return run_export(graph, fmt, **options)


def build(board: str, model: str | os.PathLike | None = None, **options) -> dict:
    """Synthesize, place and route ``model`` for ``board`` and write the bitstream and
    ``report.json`` (options as :class:`lgn_fpga.flow.build.BuildOptions`: ``top``,
    ``pipeline``, ``out``, ``seed``, ``freq_mhz``, ...). Returns the report.

    Raises
    ------
    UserError
        Unknown board, a model that cannot fit (with the numbers), a tool that failed, or
        timing not met (unless ``allow_timing_fail``).
    """
    from lgn_fpga.flow.build import BuildOptions
    from lgn_fpga.flow.build import build as run_build

    return run_build(BuildOptions(board=board, model=None if model is None else str(model),
                                  **options))
