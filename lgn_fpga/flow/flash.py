"""Programming a board: iceprog for iCE40 boards, openFPGALoader for ECP5 boards.

The bitstream is found the way ``build`` writes it (``--out`` or ``build/<board>``), and the
``report.json`` beside it must say it was built for this board and device (and, when asked,
from this model), so an iCEBreaker bitstream never goes into an icestick by accident.

A folded core whose program sits in UP5K SPRAM reads it from the board's flash at boot: its
build writes ``program.bin`` beside the bitstream, and ``flash`` writes that image first
(``iceprog -o 1M program.bin``, always into the flash, even with ``--sram``), then the
bitstream, so that the board boots with both in place (docs/folded.md).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from lgn_fpga.errors import UserError
from lgn_fpga.flow.profiles import Profile

_CAD_SUITE = "the OSS CAD Suite (https://github.com/YosysHQ/oss-cad-suite-build)"
#: How to get each programmer. Both need libusb/libftdi, so they come from the system's
#: packages (or a bundle that carries the libraries), not from pip.
INSTALL_HINTS = {
    "iceprog": "install it with `sudo apt install fpga-icestorm` (Debian/Ubuntu), "
               f"`brew install icestorm` (macOS) or {_CAD_SUITE}",
    "openFPGALoader": "install it with `sudo apt install openfpgaloader` (Debian 12/Ubuntu "
                      f"22.04 or newer), `brew install openfpgaloader` (macOS) or {_CAD_SUITE}",
}
#: What the programmer can write: volatile configuration memory or the board's SPI flash.
MODES = ("sram", "flash")
#: Exit statuses of a shell or exec that mean the tool itself could not start.
COULD_NOT_RUN = {126: "found but not executable", 127: "not found or its libraries are missing"}


def default_bitstream(profile: Profile) -> Path:
    return profile.default_out / profile.bitstream_name


def find_tool(profile: Profile) -> str | None:
    """The programmer's path: the environment variable Amaranth uses (ICEPROG,
    OPENFPGALOADER) first, then PATH."""
    env = os.environ.get(profile.programmer.upper())
    if env:
        return shutil.which(env) or (env if os.path.exists(env) else None)
    return shutil.which(profile.programmer)


def _dfu(profile: Profile) -> bool:
    # A DFU bootloader (the OrangeCrab's) only ever writes the flash.
    return any(a in ("--dfu", "-D") or a.lower() == "orangecrab"
               for a in profile.programmer_args)


def modes(profile: Profile) -> tuple[str, tuple[str, ...]]:
    """(the mode the profile's arguments program, the modes its programmer supports)."""
    args = profile.programmer_args
    if profile.programmer == "iceprog":
        return ("sram" if "-S" in args else "flash"), MODES
    if _dfu(profile):
        return "flash", ("flash",)
    return ("flash" if ("-f" in args or "--write-flash" in args) else "sram"), MODES


def command(profile: Profile, bitstream: str | os.PathLike, tool: str | None = None,
            mode: str | None = None) -> list[str]:
    """The programmer command line for ``bitstream``; ``mode`` ("sram" or "flash") overrides
    what the profile's arguments program.

    Raises
    ------
    UserError
        When the board's programmer cannot write ``mode``.
    """
    default, supported = modes(profile)
    mode = mode or default
    if mode not in supported:
        raise UserError(f"--{mode}: {profile.name} is programmed with {profile.programmer} "
                        f"{shlex.join(profile.programmer_args)}, which writes only the "
                        f"{' and '.join(supported)}")
    args = list(profile.programmer_args)
    if mode != default:
        if profile.programmer == "iceprog":
            args = [a for a in args if a != "-S"] + (["-S"] if mode == "sram" else [])
        else:
            args = [a for a in args if a not in ("-f", "--write-flash")]
            args += ["-f"] if mode == "flash" else []
    return [tool or profile.programmer, *args, str(bitstream)]


def read_report(bitstream: Path) -> dict | None:
    """The ``report.json`` beside ``bitstream`` if it describes that file, else None."""
    path = bitstream.parent / "report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("bitstream", {}).get("file") != bitstream.name:
        return None
    return report


def locate(profile: Profile | None, bitstream=None, out=None) -> Path:
    """The bitstream to program: the given file, else the one ``build --out OUT`` (or
    ``build --board B``, into ``build/<board>``) wrote.

    Raises
    ------
    UserError
        When it does not exist, or no board says where to look.
    """
    if bitstream:
        path = Path(bitstream)
    elif out:
        names = [profile.bitstream_name] if profile else ["top.bin", "top.bit"]
        path = next((Path(out) / n for n in names if (Path(out) / n).is_file()),
                    Path(out) / names[0])
    elif profile is not None:
        path = default_bitstream(profile)
    else:
        raise UserError("flash needs --board, --out or a BITSTREAM file")
    if not path.is_file():
        if bitstream:
            raise UserError(f"{path}: no such bitstream")
        board = profile.name if profile else "BOARD"
        where = f" --out {out}" if out else ""
        raise UserError(f"{path}: no such bitstream; build it first: lgn-fpga build "
                        f"--board {board}{where}")
    return path


def check(path: Path, profile: Profile, *, model_sha256: str | None = None,
          model_name: str | None = None, force: bool = False) -> dict | None:
    """Refuse (unless ``force``) a bitstream whose report says it was built for another board
    or device, from another model, or whose bytes are not those the report describes.

    Raises
    ------
    UserError
        On any mismatch, naming both sides.
    """
    report = read_report(path)
    if report is None:
        if model_sha256 and not force:
            raise UserError(f"{path}: no report.json beside it says which model it holds; "
                            f"pass --force to program it anyway")
        return None
    problems = []
    if report.get("board") != profile.name or report.get("device") != profile.device:
        problems.append(f"it was built for {report.get('board')} ({report.get('device')}), "
                        f"not {profile.name} ({profile.device})")
    if model_sha256 and report.get("model", {}).get("sha256") != model_sha256:
        problems.append(f"it was built from {report.get('model', {}).get('path')}, not "
                        f"{model_name or 'the given model'}")
    want = report.get("bitstream", {}).get("sha256")
    if want:
        import hashlib

        if hashlib.sha256(path.read_bytes()).hexdigest() != want:
            problems.append("its bytes differ from those its report.json describes")
    if problems and not force:
        raise UserError(f"{path}: {'; '.join(problems)}; build it again for "
                        f"{profile.name} or pass --force to program it anyway")
    return report


def image_command(profile: Profile, report: dict | None, bitstream: Path,
                  tool: str | None = None, *, force: bool = False) -> list[str] | None:
    """The programmer command that writes the build's program image into the flash, or
    None when the build has none (its program is in the bitstream).

    Raises
    ------
    UserError
        When the image is missing, or its bytes are not those the report describes
        (unless ``force``), or the board's programmer cannot write at an offset.
    """
    image = (report or {}).get("program_image")
    if not image:
        return None
    path = bitstream.parent / image["file"]
    if not path.is_file():
        raise UserError(f"{path}: no such program image; the report beside {bitstream.name} "
                        f"says the core reads it from the flash: build again")
    import hashlib

    if hashlib.sha256(path.read_bytes()).hexdigest() != image.get("sha256") and not force:
        raise UserError(f"{path}: its bytes differ from those report.json describes; build "
                        f"again or pass --force to program it anyway")
    if profile.programmer != "iceprog":
        raise UserError(f"{profile.name}: writing a program image at a flash offset needs "
                        f"iceprog, not {profile.programmer}")
    offset = int(image["flash_offset"])
    where = f"{offset >> 20}M" if offset % (1 << 20) == 0 else str(offset)
    args = [a for a in profile.programmer_args if a != "-S"]
    return [tool or profile.programmer, *args, "-o", where, str(path)]


def flash(profile: Profile, bitstream: str | os.PathLike | None = None, *, out=None,
          dry_run: bool = False, mode: str | None = None, force: bool = False,
          model_sha256: str | None = None, model_name: str | None = None,
          echo=print, say=None) -> list[str]:
    """Program a bitstream (default: the last build for this board) into the board.

    Returns the command. With ``dry_run`` the command is printed (through ``echo``), and
    only checked: the bitstream, its report and that the programmer can be found. ``say``
    hears what is about to be programmed.

    Raises
    ------
    UserError
        No bitstream, a report that names another board/device/model (unless ``force``),
        a missing programmer (with how to install it), a programmer that could not run or
        that failed.
    """
    path = locate(profile, bitstream, out)
    report = check(path, profile, model_sha256=model_sha256, model_name=model_name,
                   force=force)
    tool = find_tool(profile)
    cmd = command(profile, path, tool, mode)
    image_cmd = image_command(profile, report, path, tool, force=force)
    if dry_run:
        if image_cmd is not None:
            echo(shlex.join(image_command(profile, report, path, None, force=force)))
        echo(shlex.join(command(profile, path, None, mode)))
    if tool is None:
        raise UserError(f"{profile.programmer} not found (needed to program "
                        f"{profile.name}): {INSTALL_HINTS.get(profile.programmer, '')}")
    if not os.access(tool, os.X_OK):
        raise UserError(f"could not run {tool}: it is not executable")
    if dry_run:
        return cmd
    # The image first: writing the bitstream last restarts the board with both in place.
    for step in ([image_cmd] if image_cmd is not None else []) + [cmd]:
        what = step[-1]
        if say is not None:
            say(f"programming {what} into {profile.name} with {shlex.join(step)}")
        _run_programmer(profile, tool, step)
    return cmd


def _run_programmer(profile: Profile, tool: str, cmd: list[str]) -> None:
    """Run one programmer command; a failure becomes one line saying what to check."""
    try:
        proc = subprocess.run(cmd)
    except OSError as e:
        raise UserError(f"could not run {tool}: {e.strerror or e}; "
                        f"{INSTALL_HINTS.get(profile.programmer, '')}") from None
    if proc.returncode in COULD_NOT_RUN:
        raise UserError(f"could not run {shlex.join(cmd)} (exit status {proc.returncode}: "
                        f"{COULD_NOT_RUN[proc.returncode]}); reinstall it: "
                        f"{INSTALL_HINTS.get(profile.programmer, '')}")
    if proc.returncode != 0:
        raise UserError(f"{shlex.join(cmd)} failed with exit status {proc.returncode}: is the "
                        f"board plugged in, and may this user use its USB device (udev rules: "
                        f"see the README's Troubleshooting)?")
