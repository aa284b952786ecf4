"""lgn-fpga: logic gate networks onto open FPGAs, checked bit for bit at every stage.

The public API (docs/api.md)::

    from lgn_fpga import load, predict, optimize, simulate, export, build, LogicNetCore

Names are imported on first use, so ``import lgn_fpga`` stays light and the numpy-only
stages (``lgn_fpga.net``, ``lgn_fpga.host``) never pull in Amaranth.
"""

__version__ = "0.1.0"

_API = {
    "load": "lgn_fpga.api", "save": "lgn_fpga.api", "predict": "lgn_fpga.api",
    "optimize": "lgn_fpga.api", "simulate": "lgn_fpga.api", "export": "lgn_fpga.api",
    "build": "lgn_fpga.api", "GateGraph": "lgn_fpga.api", "UserError": "lgn_fpga.api",
    "LogicNetCore": "lgn_fpga.gateware.core",
}

__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'lgn_fpga' has no attribute {name!r}")
