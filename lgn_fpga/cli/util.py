"""Helpers shared by every CLI command module: model/array loading and atomic output."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import click
import numpy as np

from lgn_fpga.errors import UserError

model_argument = click.argument("model", metavar="MODEL")


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN and infinities (NaN compares false with
    every bound, so a plain range lets ``--freq nan`` through)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def load_model(model):
    """MODEL is a path to a .json/.npz gate graph or the name of a shipped model."""
    from lgn_fpga.models import resolve
    from lgn_fpga.net import graph as gg

    return gg.load(resolve(model))


def memory_budget() -> int:
    """Bytes one input array, or the vectors of one command, may take: a quarter of this
    machine's memory, or ``$LGN_FPGA_MAX_BYTES``.

    Raises
    ------
    UserError
        ``$LGN_FPGA_MAX_BYTES`` is not a positive integer.
    """
    text = os.environ.get("LGN_FPGA_MAX_BYTES")
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise UserError(f"$LGN_FPGA_MAX_BYTES = {text!r} must be a positive integer")
        return value
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def check_memory(nbytes: int, what: str) -> None:
    """Refuse work that would need more than :func:`memory_budget` bytes, before allocating.

    Raises
    ------
    UserError
        Naming ``what``, the bytes it needs and the budget.
    """
    budget = memory_budget()
    if nbytes > budget:
        raise UserError(f"{what} needs about {nbytes / 2**20:.0f} MiB, over the limit of "
                        f"{budget / 2**20:.0f} MiB (a quarter of this machine's memory; "
                        f"set $LGN_FPGA_MAX_BYTES to change it)")


def load_array(path, what: str) -> np.ndarray:
    """A numeric ``.npy`` array (no pickles), checked from its header against
    :func:`memory_budget` before its data is read; NaN and infinities are refused.

    Raises
    ------
    UserError
        No such file, a folder, an unreadable or truncated file, an ``.npz``, a non-numeric
        dtype, an empty array, non-finite values, or too big an array.
    """
    from lgn_fpga.net.graph import read_npy

    where = f"{path} ({what})"
    try:
        if os.path.isdir(path):
            raise UserError(f"{where}: is a folder, not a .npy file")
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                raise UserError(f"{where}: must be a single .npy array, not an .npz archive")
            f.seek(0)
            # 8 bytes per element: what float64 / int64 data becomes downstream at most
            arr = read_npy(f, where, max_elements=memory_budget() // 8, kinds="biuf",
                           hint=" (a quarter of this machine's memory at 8 bytes each; "
                                "set $LGN_FPGA_MAX_BYTES to change it)")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{where}: cannot read ({e.strerror or e})") from None
    if arr.size == 0:
        raise UserError(f"{where}: is empty (shape {arr.shape})")
    if arr.dtype.kind == "f":
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            place = ", ".join(map(str, bad[0]))
            raise UserError(f"{where}: [{place}] = {arr[tuple(bad[0])]}: values must be "
                            f"finite numbers")
    return arr


def check_outputs(*paths, suffixes: tuple[str, ...] | None = None) -> None:
    """Check every output path can be written (its folder exists and is writable, it is not
    a folder itself, its suffix is right) before any output is written, so a bad second
    path never leaves the first one overwritten.

    Raises
    ------
    UserError
        Naming the first path that cannot be written.
    """
    seen = set()
    for path in paths:
        if path is None:
            continue
        text = str(path)
        if suffixes and not text.endswith(suffixes):
            raise UserError(f"{path}: name the file *{' or *'.join(suffixes)}")
        full = os.path.abspath(text)
        if full in seen:
            raise UserError(f"{path}: named as two different outputs")
        seen.add(full)
        folder = os.path.dirname(full)
        if os.path.isdir(full):
            raise UserError(f"{path}: is a folder")
        if not os.path.isdir(folder):
            what = "is not a folder" if os.path.exists(folder) else "does not exist"
            raise UserError(f"{path}: folder {os.path.dirname(text) or '.'} {what}")
        # Try it: permission bits say nothing for root, nor for read-only mounts.
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{os.path.basename(full)}.", suffix=".probe",
                                         dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise UserError(f"{path}: folder {os.path.dirname(text) or '.'} is not writable "
                            f"({e.strerror or e})") from None


def save_array(path, arr: np.ndarray) -> None:
    """np.save through a temporary file, so a failure never leaves a partial output."""
    import io

    from lgn_fpga.files import atomic_write

    if not str(path).endswith(".npy"):
        raise UserError(f"{path}: output arrays are written as .npy; name the file *.npy")
    check_outputs(path)
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
