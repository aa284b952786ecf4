"""Helpers shared by every CLI command module: model/array loading and atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from lgn_fpga.errors import UserError

model_argument = click.argument("model", metavar="MODEL")


def load_model(model):
    """MODEL is a path to a .json/.npz gate graph or the name of a shipped model."""
    from lgn_fpga.models import resolve
    from lgn_fpga.net import graph as gg

    return gg.load(resolve(model))


def load_array(path, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .npy array ({e})") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        raise UserError(f"{path}: {what} must be a single .npy array, not an .npz archive")
    return arr


def save_array(path, arr: np.ndarray) -> None:
    """np.save through a temporary file, so a failure never leaves a partial output."""
    import io

    from lgn_fpga.files import atomic_write

    if not str(path).endswith(".npy"):
        raise UserError(f"{path}: output arrays are written as .npy; name the file *.npy")
    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write(path, buf.getvalue())


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=_json_default))


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
