"""What ``lgn-fpga run`` makes of a board's answers: the input checks before anything is
sent, the run summary, and the bit-for-bit check against the golden model."""

from __future__ import annotations

import numpy as np

from lgn_fpga import protocol as p
from lgn_fpga.errors import UserError
from lgn_fpga.host.runner import wire_limit
from lgn_fpga.net import golden
from lgn_fpga.net.graph import GateGraph


def input_bits(x: np.ndarray, graph: GateGraph | None, *, features: bool, name: str) -> np.ndarray:
    """``x`` as a (samples, inputs) array of 0/1 bits, encoded first when ``features``.

    Raises
    ------
    UserError
        When the model has no encoding for ``features``, or ``x`` has the wrong shape or
        holds anything but 0 and 1.
    """
    if features:
        if graph is None or graph.encoding is None:
            raise UserError("--features: the model has no input encoding")
        x = graph.encoding.encode(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise UserError(f"{name}: INPUT must be a (samples, inputs) array, got shape {x.shape}")
    if x.size and not ((x == 0) | (x == 1)).all():
        raise UserError(f"{name}: INPUT must hold 0/1 bits"
                        + ("" if features else " (raw features? pass --features)"))
    return x


def check_board_runs(info: p.BoardInfo, graph: GateGraph | None) -> None:
    """Refuse a board whose net has another shape than the model's."""
    if graph is not None and (info.inputs, info.classes) != (graph.inputs, graph.classes):
        raise UserError(f"the board runs a net with {info.inputs} inputs and "
                        f"{info.classes} classes; the model has {graph.inputs} and "
                        f"{graph.classes}: flash a bitstream built from this model")


def _quantile(values, q):
    return np.quantile(values, q) if len(values) else float("nan")


def run_summary(result, info: p.BoardInfo, layout: p.PayloadLayout, baud: int,
                graph: GateGraph | None) -> dict:
    """Throughput, latency and what the board said about itself, as a JSON-able dict."""
    summary = {
        "samples": int(len(result.classes)),
        "seconds": round(result.seconds, 4),
        "samples_per_second": round(result.throughput, 1),
        "wire_limit_samples_per_second": round(wire_limit(layout, baud), 1),
        "latency_ms": {"median": round(1e3 * float(_quantile(result.latencies, 0.5)), 3),
                       "p99": round(1e3 * float(_quantile(result.latencies, 0.99)), 3)},
        "board": {"inputs": info.inputs, "classes": info.classes,
                  "latency_cycles": info.latency, "clock_hz": info.clock_hz,
                  "model_hash": info.model_hash},
        "unframed_bytes": result.dropped_bytes,
    }
    if graph is not None:
        summary["model_matches_board"] = graph.sha256().startswith(info.model_hash)
    return summary


def golden_check(graph: GateGraph, x: np.ndarray, result) -> dict:
    """Compare every answer (class and all scores) with the golden model."""
    want = golden.predict(graph, x)
    bad = (want.classes != result.classes) | (want.scores != result.scores).any(axis=1)
    mismatches = int(bad.sum())
    return {"mismatches": mismatches, "first_mismatch": int(bad.argmax()) if mismatches else None}
