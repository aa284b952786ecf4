"""The ``lgn-fpga`` command line: thin click commands over the stage packages, and the
rendering of their reports. Nothing imports this package."""

from lgn_fpga.cli.main import main

__all__ = ["main"]
