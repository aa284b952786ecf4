"""lgn-fpga: logic gate networks onto open FPGAs, checked bit for bit at every stage."""

__version__ = "0.1.0"
