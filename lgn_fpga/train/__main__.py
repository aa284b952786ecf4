"""``python -m lgn_fpga.train ARGS`` is ``lgn-fpga train ARGS``: the program torchrun starts
in every process of a data-parallel run (``torchrun --nproc-per-node N -m lgn_fpga.train
--dataset ... -o model.json``; ``lgn-fpga train --nproc N`` launches exactly that).

This file is a program, not part of the library: like the ``lgn-fpga`` script it sits above
every stage, so it is the one module of ``lgn_fpga.train`` allowed to import the command
line (``ignore_imports`` in pyproject.toml's layers contract names it).
"""

from __future__ import annotations

import sys

from lgn_fpga.cli import main as cli_main


def main() -> None:
    cli_main(["train", *sys.argv[1:]], prog_name="python -m lgn_fpga.train")


if __name__ == "__main__":
    main()
