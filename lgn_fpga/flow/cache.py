"""The build cache shared by the compiled engines (the C engine, the CXXRTL simulator).

Entries live under ``<cache>/<kind>/<key>/`` where ``<cache>`` is ``$LGN_FPGA_CACHE``, else
``$XDG_CACHE_HOME/lgn-fpga``, else ``~/.cache/lgn-fpga``. An entry is built in a temporary
folder beside it and published with one rename (:func:`building`), so a concurrent or
interrupted build never leaves a half-written file under a key; a bad entry is moved aside
the same way before it is deleted (:func:`discard`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lgn_fpga.errors import UserError

__all__ = ["building", "cache_dir", "discard"]


def cache_dir() -> Path:
    """``$LGN_FPGA_CACHE``, else ``$XDG_CACHE_HOME/lgn-fpga``, else ``~/.cache/lgn-fpga``."""
    if os.environ.get("LGN_FPGA_CACHE"):
        return Path(os.environ["LGN_FPGA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lgn-fpga"


@contextmanager
def building(home: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``home`` to build an entry in; when the block ends
    without an exception it becomes ``home`` with one rename (if another process published
    ``home`` first, that entry stays and this one is dropped). The temporary folder is
    always removed.

    Raises
    ------
    UserError
        The cache folder cannot be created or written.
    """
    try:
        home.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{home.name}.", dir=home.parent))
    except OSError as e:
        raise UserError(f"cache folder {home.parent} cannot be written ({e.strerror or e}); "
                        "set $LGN_FPGA_CACHE to a writable folder") from None
    try:
        yield work
        try:
            os.rename(work, home)
        except OSError:
            # a concurrent build won the race: its entry is as good as ours
            if not home.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def discard(home: Path) -> None:
    """Move a bad cache entry aside (atomically, so a concurrent run never sees half of it)
    and delete it."""
    trash = home.with_name(f".{home.name}.bad.{os.getpid()}")
    try:
        os.rename(home, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)
