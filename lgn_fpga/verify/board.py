"""The board top that ``lgn-fpga sim-board`` serves on a pseudo-terminal: the same design a
build would put on the board, reporting the hash of the model the user named."""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module

from lgn_fpga.gateware.tops import BistTop, UartTop
from lgn_fpga.net import vectors
from lgn_fpga.net.graph import GateGraph
from lgn_fpga.net.optimize import optimize as optimize_net


class FlashBoard(Elaboratable):
    """A top whose folded core boots its program from flash, with a behavioural SPI flash
    (:class:`~lgn_fpga.gateware.spi_flash.SPIFlashModel`) holding the core's image on its
    flash pins: what the board is after ``lgn-fpga flash`` wrote the bitstream and the
    image. ``rx``, ``tx``, ``core`` and ``latency`` are the top's."""

    def __init__(self, top, image: bytes | None = None):
        from lgn_fpga.gateware.spi_flash import SPIFlashModel

        self.top = top
        self.core = top.core
        self.rx, self.tx = top.rx, top.tx
        self.flash = SPIFlashModel(top.core.image if image is None else image)

    @property
    def latency(self) -> int:
        return self.top.latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self.top
        m.submodules.flash = flash = self.flash
        m.d.comb += [flash.cs.eq(top.flash_cs), flash.sck.eq(top.flash_sck),
                     flash.copi.eq(top.flash_copi), top.flash_cipo.eq(flash.cipo)]
        return m


def simulated_top(graph: GateGraph, top: str, *, divisor: int, pipeline: int | None,
                  optimize: bool = True, bist_vectors: int = 64, lanes: int | None = None,
                  program: str = "bram", core_options: dict | None = None):
    """A :class:`UartTop` or :class:`BistTop` (``top`` = "uart" or "bist") for ``graph``;
    with ``lanes``, around a :class:`~lgn_fpga.gateware.folded.FoldedCore` of that many
    lanes instead of the parallel core, taking its input as a build makes it (the UART top
    writes request bytes into the core's input RAM). ``program="spram"`` puts the folded
    core's program in SPRAM, booted from a simulated flash (:class:`FlashBoard`).
    ``core_options``: more of the parallel core's options, as ``build --board`` sets them.

    Raises
    ------
    ValueError
        For a lane count or program placement the folded core does not support.
    """
    model_hash = graph.sha256()  # the board reports the net the user named, as a build does
    if optimize:
        graph, _ = optimize_net(graph)
    core = None
    if lanes is not None:
        from lgn_fpga.gateware.folded import FoldedCore

        core = FoldedCore(graph, lanes=lanes, program=program,
                          inputs="bytes" if top == "uart" else "bits")
    if top == "uart":
        design = UartTop(graph, divisor=divisor, pipeline=pipeline, model_hash=model_hash,
                         core=core, core_options=core_options)
    else:
        bits = vectors.make(graph, count=bist_vectors, seed=0).bits
        design = BistTop(graph, bits, divisor=divisor, pipeline=pipeline, core=core,
                         core_options=core_options)
    if core is not None and core.image is not None:
        return FlashBoard(design)
    return design
