"""``FoldedCore``: a gate graph evaluated ``lanes`` gates per clock from block RAM.

A fully parallel :class:`~lgn_fpga.gateware.core.LogicNetCore` needs about one logic cell
per live gate. The folded core trades time for area: the gates become a *program* in block
RAM and a small datapath applies ``P = lanes`` of them per clock, so a net of any size
needs about the same logic, and block RAM in proportion to its gate count
(docs/folded.md has the memory layout and the arithmetic for the UP5K and the ECP5-85F).

Ports: those of ``LogicNetCore`` plus ``in_ready``::

    in_bits    In(graph.inputs)   captured when in_valid & in_ready
    in_valid   In(1)
    in_ready   Out(1)             high while the core is idle (one input in flight)
    out_valid  Out(1)             high for one cycle, exactly `latency` cycles after the
                                  cycle the input was accepted in
    out_class  Out(class_width)   argmax of the scores, ties to the lowest index
    out_scores Out(ArrayLayout(score_width, C))

How one inference runs (cycle counts in :class:`FoldPlan`):

1. **capture**: ``in_bits`` goes into a shift register in the accepting cycle;
2. **load**: ``P`` bits per clock shift into bank 0 of the value store;
3. **run**: one program row (``P`` gates: operand addresses ``a``, ``b`` and the op) per
   clock, through a 3-stage pipeline (program read, operand reads, gate + write). Layer
   ``l`` reads bank ``l % 2`` and writes bank ``(l + 1) % 2``; one idle clock between
   layers lets the previous layer's last write land before the next layer reads it;
4. **head**: the last layer is never stored. Its gates are laid out class by class, each
   class padded to a multiple of ``P`` with constant-0 gates, so every row belongs to one
   class: an accumulator adds the row's popcount, and at the end of each class a
   comparator keeps the running maximum (strictly greater wins: ties stay with the lower
   index, as in the golden model).

The value store is ``2 P`` copies of one ``2 x words x P``-bit memory (one copy per
operand port: block RAMs have one read port), all written with the same row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from lgn_fpga.gateware.framing import crc8_gateware
from lgn_fpga.net import ops
from lgn_fpga.net.graph import GateGraph

__all__ = ["FoldPlan", "FoldedCore", "INPUT_MODES", "MAX_LANES", "PROGRAM_RAMS", "SPRAM_DEPTH",
           "SPRAM_WIDTH", "fold_plan", "memory_blocks", "plan_blocks", "program_image",
           "spram_shape"]

#: lanes are a power of two (an operand address splits into word and bit without a divider)
#: and at most this many (2 P block RAM copies of the value store).
MAX_LANES = 16
#: Where the program sits: block RAM initialised by the bitstream, or iCE40 UP5K SPRAM
#: (SB_SPRAM256KA, 16k x 16, no initialisation: copied in at boot from ``boot_data`` bytes).
PROGRAM_RAMS = ("bram", "spram")
SPRAM_DEPTH = 16384
SPRAM_WIDTH = 16
#: How the input arrives: ``bits`` (the ``in_bits`` port, captured on accept) or ``bytes``
#: (read byte by byte from the top's input RAM through ``in_addr``/``in_byte`` while loading).
INPUT_MODES = ("bits", "bytes")


@dataclass(frozen=True)
class FoldPlan:
    """The folded core's layout for one net and lane count: all numbers, no gateware.

    Attributes
    ----------
    lanes : int
        Gates per clock (``P``).
    program : list[int]
        One word per row: lane ``j``'s entry at bits ``j * entry_width``; an entry is
        ``a | b << addr_width | op << 2 * addr_width``.
    layer_rows : list[int]
        Rows (clocks) per layer; the last layer's is ``classes * class_rows``.
    class_rows : int
        Rows per class in the last layer, ``ceil(k / P)``.
    addr_width, word_bits, entry_width : int
        Operand address bits (``word_bits + log2(P)``), value-store word address bits per
        bank, and bits per program entry.
    load_rows : int
        Clocks to move the input into the value store, ``ceil(inputs / load_bits)``.
    load_bits : int
        Input bits stored per load clock: ``P`` (``bits`` input), ``min(P, 8)`` (``bytes``).
    latency : int
        Clocks from the accepting cycle to ``out_valid``:
        ``1 + load_rows + rows + (depth - 1) + 2``.
    """

    lanes: int
    program: list[int]
    layer_rows: list[int]
    class_rows: int
    addr_width: int
    word_bits: int
    entry_width: int
    load_rows: int
    latency: int
    load_bits: int = 1

    @property
    def rows(self) -> int:
        return len(self.program)

    @property
    def program_bits(self) -> int:
        return self.rows * self.lanes * self.entry_width

    @property
    def store_words(self) -> int:
        """Words (of ``P`` bits) in one copy of the value store: two banks."""
        return 2 << self.word_bits

    @property
    def store_bits(self) -> int:
        """Bits of the whole value store: 2 P copies of ``store_words`` x P."""
        return 2 * self.lanes * self.store_words * self.lanes

    @property
    def cycles_per_inference(self) -> int:
        """Back-to-back inputs are accepted every ``latency`` clocks (the core accepts the
        next input in the cycle its result leaves)."""
        return self.latency


def _check_lanes(lanes: int) -> None:
    if not (isinstance(lanes, int) and 1 <= lanes <= MAX_LANES and lanes & (lanes - 1) == 0):
        raise ValueError(f"lanes must be a power of two from 1 to {MAX_LANES}, got {lanes!r}")


def fold_plan(graph: GateGraph, lanes: int = 1, *, inputs: str = "bits") -> FoldPlan:
    """Lay ``graph`` out as a folded program for ``lanes`` gates per clock; ``inputs`` (one
    of :data:`INPUT_MODES`) sets how fast the input loads.

    Raises
    ------
    ValueError
        If ``lanes`` is not a power of two in 1..:data:`MAX_LANES`, or ``inputs`` unknown.
    """
    _check_lanes(lanes)
    if inputs not in INPUT_MODES:
        raise ValueError(f"inputs must be one of {', '.join(INPUT_MODES)}, got {inputs!r}")
    p = lanes
    lane_bits = ceil_log2(p)
    sources = [graph.inputs] + graph.widths[:-1]  # what some layer reads
    words = max(-(-w // p) for w in sources)
    word_bits = ceil_log2(words)
    addr_width = word_bits + lane_bits
    entry_width = 2 * addr_width + 4
    k, classes = graph.group_size, graph.classes
    class_rows = -(-k // p)

    def entries(a, b, op):
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        return a | (b << addr_width) | (np.asarray(op, dtype=np.int64) << (2 * addr_width))

    rows: list[int] = []
    layer_rows: list[int] = []

    def add_rows(entry: np.ndarray) -> int:
        # Pad with constant-0 gates reading address 0 (their outputs land past the layer's
        # width, or add nothing to a class count).
        n = -(-len(entry) // p)
        padded = np.zeros(n * p, dtype=np.int64)
        padded[:len(entry)] = entry
        for r in range(n):
            word = 0
            for j in range(p):
                word |= int(padded[r * p + j]) << (j * entry_width)
            rows.append(word)
        return n

    for layer in graph.layers[:-1]:
        layer_rows.append(add_rows(entries(layer.a, layer.b, layer.op)))
    last = graph.layers[-1]
    last_entries = entries(last.a, last.b, last.op)
    total = 0
    for c in range(classes):
        total += add_rows(last_entries[c * k:(c + 1) * k])
    layer_rows.append(total)
    load_bits = p if inputs == "bits" else min(p, 8)
    load_rows = -(-graph.inputs // load_bits)
    latency = 1 + load_rows + len(rows) + (graph.depth - 1) + 2
    return FoldPlan(p, rows, layer_rows, class_rows, addr_width, word_bits, entry_width,
                    load_rows, latency, load_bits)


# iCE40 SB_RAM40_4K and ECP5 DP16KD aspect ratios (width, depth) that Yosys maps to.
_BRAM_SHAPES = {
    "ice40": ((16, 256), (8, 512), (4, 1024), (2, 2048)),
    "ecp5": ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)),
}


def memory_blocks(family: str, width: int, depth: int) -> int | None:
    """Block RAMs one ``width x depth`` memory takes on ``family`` (the best aspect ratio),
    or None for a family without a table."""
    shapes = _BRAM_SHAPES.get(family)
    if shapes is None:
        return None
    return min(-(-width // w) * -(-depth // d) for w, d in shapes)


def spram_shape(plan: FoldPlan) -> tuple[int, int]:
    """(wide, deep): SPRAMs side by side for a program row, and stacked for its rows."""
    return -(-plan.lanes * plan.entry_width // SPRAM_WIDTH), -(-plan.rows // SPRAM_DEPTH)


def program_image(plan: FoldPlan) -> bytes:
    """The program as the SPRAM boot loader reads it: per row, ``wide`` 16-bit halfwords
    (the row's bits from the bottom, little-endian), then one CRC-8 byte
    (:func:`lgn_fpga.protocol.crc8_step`) over all of them."""
    from lgn_fpga.protocol import crc8_step

    wide, _ = spram_shape(plan)
    body = b"".join(row.to_bytes(2 * wide, "little") for row in plan.program)
    crc = 0
    for byte in body:
        crc = crc8_step(crc, byte)
    return body + bytes([crc])


def plan_blocks(plan: FoldPlan, family: str, *, program: str = "bram") -> int | None:
    """Block RAMs of the folded core: the program (unless it sits in SPRAM) plus 2 P
    value-store copies."""
    prog = memory_blocks(family, plan.lanes * plan.entry_width, plan.rows)
    store = memory_blocks(family, plan.lanes, plan.store_words)
    if prog is None:
        return None
    return (prog if program == "bram" else 0) + 2 * plan.lanes * store


class FoldedCore(wiring.Component):
    """The gate network folded onto ``lanes`` gate evaluators, with a sequential class head.

    Same outer contract as :class:`~lgn_fpga.gateware.core.LogicNetCore` except that it
    takes one input at a time: an input is accepted in a cycle with ``in_valid`` and
    ``in_ready`` high, and its result comes out (``out_valid`` high for one cycle) exactly
    ``latency`` cycles later; ``in_ready`` is high again in that same cycle. Outputs are
    meaningful only while ``out_valid`` is high; ties go to the lowest class index. Unlike
    the parallel core, the folded core keeps ``out_class`` and ``out_scores`` still from
    ``out_valid`` until it accepts the next input (``holds_outputs``), so a top may send
    them from there instead of copying them into a FIFO.

    Parameters
    ----------
    graph : GateGraph
        The net to build, as is (optimize it first to drop dead gates).
    lanes : int
        Gates applied per clock, a power of two up to :data:`MAX_LANES`.
    program : str
        ``"bram"``: the program is a block RAM initialised by the bitstream. ``"spram"``:
        it sits in iCE40 UP5K SPRAMs (:func:`spram_shape`; a behavioural memory when not
        built for an iCE40), which start empty: after reset the core takes the bytes of
        :func:`program_image` on ``boot_data``/``boot_stb`` and writes them in, checks the
        image's CRC, and only then raises ``in_ready`` (``booted``; ``boot_error`` when
        the CRC disagrees, and the core never becomes ready).
    inputs : str
        ``"bits"``: ``in_bits`` is captured in the accepting cycle (a register of one flip
        flop per input bit). ``"bytes"``: there is no ``in_bits``; while loading, the core
        reads the input from the top's byte-wide RAM, byte ``in_addr`` on ``in_byte`` one
        clock later (input bit ``i`` is bit ``i % 8`` of byte ``i // 8``). The top holds
        that RAM still for ``plan.load_rows`` clocks after the accepting cycle.

    Attributes
    ----------
    latency : int
        Clocks from the accepting cycle to ``out_valid`` (also the clocks per inference).
    plan : FoldPlan
        The program and its cycle counts.
    score_width, class_width : int
        As for ``LogicNetCore``.
    image : bytes or None
        With ``program="spram"``: the boot image (:func:`program_image`).

    Raises
    ------
    ValueError
        If ``lanes`` is not a power of two in 1..:data:`MAX_LANES`, ``program`` or
        ``inputs`` is unknown, or the program needs more than 4 SPRAMs.
    """

    def __init__(self, graph: GateGraph, *, lanes: int = 1, program: str = "bram",
                 inputs: str = "bits"):
        self.graph = graph
        self.lanes = lanes
        self.program = program
        self.inputs = inputs
        try:
            if program not in PROGRAM_RAMS:
                raise ValueError(f"program must be one of {', '.join(PROGRAM_RAMS)}, got "
                                 f"{program!r}")
            self.plan = fold_plan(graph, lanes, inputs=inputs)
            if program == "spram" and spram_shape(self.plan)[0] * spram_shape(self.plan)[1] > 4:
                wide, deep = spram_shape(self.plan)
                raise ValueError(f"the program ({self.plan.rows} rows of "
                                 f"{lanes * self.plan.entry_width} bits) needs {wide} x {deep} "
                                 f"SPRAMs, 4 available")
        except ValueError:
            self._MustUse__silence = True  # never built: no "created but never used" warning
            raise
        self.image = program_image(self.plan) if program == "spram" else None
        self.holds_outputs = True
        self.latency = self.plan.latency
        self.score_width = graph.score_width
        self.class_width = graph.class_width
        #: (stage-2 valid, layer, row, gate bits) signals for testbenches that look inside.
        self.probe: dict[str, Signal] = {}
        ports = {}
        if inputs == "bits":
            ports["in_bits"] = In(graph.inputs)
        else:
            ports["in_addr"] = Out(range(max(2, -(-graph.inputs // 8))))
            ports["in_byte"] = In(8)
        if program == "spram":
            ports.update(boot_data=In(8), boot_stb=In(1), booted=Out(1), boot_error=Out(1))
        super().__init__({
            **ports,
            "in_valid": In(1),
            "in_ready": Out(1),
            "out_valid": Out(1),
            "out_class": Out(self.class_width),
            "out_scores": Out(data.ArrayLayout(self.score_width, graph.classes)),
        })

    def elaborate(self, platform):
        m = Module()
        plan, graph = self.plan, self.graph
        p = plan.lanes
        lane_bits = ceil_log2(p)
        aw, ew = plan.addr_width, plan.entry_width
        depth = graph.depth
        classes = graph.classes
        block = {"ram_style": "block", "rom_style": "block"}

        # -- memories ---------------------------------------------------------------------
        boot = self.program == "spram"
        if boot:
            prog_addr, prog_data, boot_m = self._spram_program(m, platform)
        else:
            m.submodules.program = program = Memory(shape=p * ew, depth=max(2, plan.rows),
                                                    init=plan.program, attrs=block)
            prog_rd = program.read_port()
            prog_addr, prog_data = prog_rd.addr, prog_rd.data
        # One value-store copy per operand port: the copies are written alike, so reading
        # copy 2j gives lane j's a and copy 2j + 1 its b. Bytes loaded into a word wider
        # than 8 bits go in a byte at a time (write granularity 8).
        gran = 8 if (self.inputs == "bytes" and p > 8) else None
        copies = []
        for c in range(2 * p):
            mem = Memory(shape=p, depth=plan.store_words, init=[], attrs=block)
            m.submodules[f"store{c}"] = mem
            copies.append((mem.read_port(),
                           mem.write_port(granularity=gran) if gran else mem.write_port()))

        # -- control: capture, load, issue --------------------------------------------------
        sw = self.score_width
        acc = Signal(sw, reset_less=True)
        kcnt = Signal(range(max(2, plan.class_rows)))
        cls = Signal(range(max(2, classes)))
        load_i = Signal(range(max(2, plan.load_rows)))
        pc = Signal(range(max(2, plan.rows)))
        layer = Signal(range(max(2, depth)))
        row = Signal(range(max(2, max(plan.layer_rows))))
        bubble = Signal()
        issue = Signal()
        last_row = Array(Const(r - 1, len(row)) for r in plan.layer_rows)
        finished = Signal()  # stage 2 handles the very last row this cycle
        accept = Signal()
        loading = Signal()

        m.d.comb += [accept.eq(self.in_valid & self.in_ready), prog_addr.eq(pc)]
        if self.inputs == "bits":
            shreg = Signal(plan.load_rows * p, reset_less=True)
            with m.If(accept):
                m.d.sync += shreg.eq(self.in_bits)
        else:
            # Load step i covers input bits [i * lb, (i + 1) * lb): byte (i * lb) // 8.
            lb = plan.load_bits
            m.d.comb += self.in_addr.eq(load_i >> ceil_log2(8 // lb))

        with m.FSM() as fsm:
            if boot:
                with m.State("BOOT"):  # the loader owns the SPRAM port meanwhile
                    with m.If(boot_m["done"]):
                        m.next = "IDLE"
                    with m.Elif(boot_m["error"]):
                        m.next = "BOOT_ERROR"
                with m.State("BOOT_ERROR"):
                    m.d.comb += self.boot_error.eq(1)
            with m.State("IDLE"):
                m.d.comb += self.in_ready.eq(1)
                with m.If(self.in_valid):
                    m.d.sync += [load_i.eq(0), pc.eq(0), layer.eq(0), row.eq(0),
                                 bubble.eq(0), acc.eq(0), kcnt.eq(0), cls.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += loading.eq(1)
                m.d.sync += load_i.eq(load_i + 1)
                if self.inputs == "bits":
                    m.d.sync += shreg.eq(shreg >> p)
                with m.If(load_i == plan.load_rows - 1):
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(bubble):
                    m.d.sync += bubble.eq(0)
                with m.Else():
                    m.d.comb += issue.eq(1)
                    m.d.sync += pc.eq(pc + 1)
                    with m.If(row == last_row[layer]):
                        m.d.sync += [row.eq(0), layer.eq(layer + 1), bubble.eq(1)]
                        with m.If(layer == depth - 1):
                            # Back to row 0: the program port reads every clock, and an
                            # address past the program is out of bounds (CXXRTL asserts).
                            m.d.sync += [pc.eq(0), layer.eq(0)]
                            m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += row.eq(row + 1)
            with m.State("DRAIN"):
                with m.If(finished):
                    m.next = "IDLE"

        if boot:
            m.d.comb += self.booted.eq(~fsm.ongoing("BOOT") & ~fsm.ongoing("BOOT_ERROR"))

        # -- stage 1: the program row is on prog_data ----------------------------------------
        s1_valid = Signal()
        s1_layer = Signal.like(layer, reset_less=True)
        s1_row = Signal.like(row, reset_less=True)
        m.d.sync += [s1_valid.eq(issue), s1_layer.eq(layer), s1_row.eq(row)]
        rbank = s1_layer[0]
        entries = [prog_data[j * ew:(j + 1) * ew] for j in range(p)]
        s2_lo = []  # per operand port: the lane bits of its address, for stage 2
        s2_ops = []
        for j, entry in enumerate(entries):
            a, b, op = entry[:aw], entry[aw:2 * aw], entry[2 * aw:2 * aw + 4]
            for c, operand in ((2 * j, a), (2 * j + 1, b)):
                rd = copies[c][0]
                m.d.comb += rd.addr.eq(Cat(operand[lane_bits:], rbank))
                lo = Signal(max(1, lane_bits), name=f"s2_lo{c}", reset_less=True)
                if lane_bits:
                    m.d.sync += lo.eq(operand[:lane_bits])
                s2_lo.append(lo)
            op_q = Signal(4, name=f"s2_op{j}", reset_less=True)
            m.d.sync += op_q.eq(op)
            s2_ops.append(op_q)

        # -- stage 2: operands are on the read ports; apply, then store or count -------------
        s2_valid = Signal()
        s2_layer = Signal.like(layer, reset_less=True)
        s2_row = Signal.like(row, reset_less=True)
        m.d.sync += [s2_valid.eq(s1_valid), s2_layer.eq(s1_layer), s2_row.eq(s1_row)]
        ys = []
        for j in range(p):
            va = copies[2 * j][0].data.bit_select(s2_lo[2 * j][:lane_bits], 1) if lane_bits \
                else copies[2 * j][0].data[0]
            vb = copies[2 * j + 1][0].data.bit_select(s2_lo[2 * j + 1][:lane_bits], 1) \
                if lane_bits else copies[2 * j + 1][0].data[0]
            y = Signal(name=f"y{j}")
            # op is its own truth table, MSB first: out(a, b) = op[3 - (2a + b)] (ops.truth)
            m.d.comb += y.eq(s2_ops[j].bit_select(Cat(vb, va) ^ 3, 1))
            ys.append(y)
        gate_bits = Cat(*ys)
        in_last = s2_layer == depth - 1
        self.probe = {"valid": s2_valid, "layer": s2_layer, "row": s2_row, "bits": gate_bits}

        # Writes: the input during LOAD, a gate row during RUN (never both: the pipeline is
        # empty while loading). Bytes arrive a clock after their address: the last load
        # write lands in RUN's first clock, before row 0's operands are read.
        gate_word = Signal(plan.word_bits)
        load_word = Signal(plan.word_bits)
        m.d.comb += gate_word.eq(s2_row)
        if self.inputs == "bits":
            load_en, load_data, load_mask = loading, shreg[:p], None
            m.d.comb += load_word.eq(load_i)
        else:
            lb = plan.load_bits
            load_en = Signal()
            ld_i = Signal.like(load_i, reset_less=True)
            m.d.sync += [load_en.eq(loading), ld_i.eq(load_i)]
            chunk = self.in_byte.word_select(ld_i[:ceil_log2(8 // lb)], lb) if lb < 8 \
                else self.in_byte
            if p > 8:  # a byte into one of the word's P / 8 bytes
                per = ceil_log2(p // 8)
                m.d.comb += load_word.eq(ld_i >> per)
                load_data = Cat(*([chunk] * (p // 8)))
                load_mask = Signal(p // 8)
                m.d.comb += load_mask.eq(1 << ld_i[:per])
            else:
                m.d.comb += load_word.eq(ld_i)
                load_data, load_mask = chunk, None
        for _, wr in copies:
            with m.If(s2_valid & ~in_last):
                m.d.comb += [wr.addr.eq(Cat(gate_word, ~s2_layer[0])),
                             wr.data.eq(gate_bits), wr.en.eq(-1)]
            with m.Elif(load_en):
                m.d.comb += [wr.addr.eq(Cat(load_word, Const(0, 1))),
                             wr.data.eq(load_data),
                             wr.en.eq(-1 if load_mask is None else load_mask)]

        # -- head: per-class accumulate, running argmax ------------------------------------
        best = Signal(sw, reset_less=True)
        best_idx = Signal(self.class_width, reset_less=True)
        scores = [Signal(sw, name=f"score{c}", reset_less=True) for c in range(classes)]
        row_count = sum((ys[j] for j in range(1, p)), ys[0]) if p > 1 else ys[0]
        acc_next = Signal(sw)
        m.d.comb += acc_next.eq(acc + row_count)
        out_valid = Signal()
        m.d.sync += out_valid.eq(0)
        with m.If(s2_valid & in_last):
            with m.If(kcnt == plan.class_rows - 1):
                m.d.sync += [acc.eq(0), kcnt.eq(0)]
                for c in range(classes):
                    with m.If(cls == c):
                        m.d.sync += scores[c].eq(acc_next)
                with m.If((cls == 0) | (acc_next > best)):  # strictly greater: ties stay low
                    m.d.sync += [best.eq(acc_next), best_idx.eq(cls)]
                with m.If(cls == classes - 1):
                    m.d.comb += finished.eq(1)
                    m.d.sync += [cls.eq(0), out_valid.eq(1)]
                with m.Else():
                    m.d.sync += cls.eq(cls + 1)
            with m.Else():
                m.d.sync += [acc.eq(acc_next), kcnt.eq(kcnt + 1)]

        m.d.comb += [self.out_valid.eq(out_valid), self.out_class.eq(best_idx),
                     self.out_scores.eq(Cat(*scores))]
        return m

    def _spram_program(self, m, platform):
        """The program in SPRAMs, written at boot from the image bytes; returns (read
        address, read data: the row a clock later, boot signals)."""
        plan = self.plan
        wide, deep = spram_shape(plan)
        halfwords = plan.rows * wide
        addr = Signal(range(max(2, deep * SPRAM_DEPTH)))
        # Boot: bytes pair into halfwords; halfword h of the image goes to column h % wide
        # of row h // wide. Then one CRC byte.
        low = Signal(8, reset_less=True)
        odd = Signal()
        col = Signal(range(max(2, wide)))
        brow = Signal(range(max(2, plan.rows + 1)))
        left = Signal(range(halfwords + 2), init=halfwords)
        crc = Signal(8)
        done = Signal()
        error = Signal()
        write = Signal()
        booting = Signal(init=1)
        stb = self.boot_stb & booting
        with m.If(stb):
            with m.If(left == 0):  # the CRC byte
                m.d.sync += booting.eq(0)
                m.d.comb += [done.eq(self.boot_data == crc), error.eq(self.boot_data != crc)]
            with m.Else():
                m.d.sync += [crc.eq(crc8_gateware(crc, self.boot_data)), odd.eq(~odd)]
                with m.If(~odd):
                    m.d.sync += low.eq(self.boot_data)
                with m.Else():
                    m.d.comb += write.eq(1)
                    m.d.sync += left.eq(left - 1)
                    with m.If(col == wide - 1):
                        m.d.sync += [col.eq(0), brow.eq(brow + 1)]
                    with m.Else():
                        m.d.sync += col.eq(col + 1)
        word = Cat(low, self.boot_data)
        raddr = Signal.like(addr)
        bank_q = Signal(range(max(2, deep)))
        m.d.comb += raddr.eq(Mux(booting, brow, addr))
        m.d.sync += bank_q.eq(raddr >> 14)
        rows_out = []
        for b in range(deep):
            cols = []
            for c in range(wide):
                dout = Signal(SPRAM_WIDTH, name=f"spram{b}_{c}_dout")
                we = Signal(name=f"spram{b}_{c}_we")
                m.d.comb += we.eq(write & (col == c) & ((raddr >> 14) == b))
                if _is_ice40(platform):
                    m.submodules[f"spram{b}_{c}"] = Instance(
                        "SB_SPRAM256KA",
                        i_ADDRESS=raddr[:14], i_DATAIN=word, i_MASKWREN=Const(0xF, 4),
                        i_WREN=we, i_CHIPSELECT=Const(1, 1), i_CLOCK=ClockSignal(),
                        i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1), i_POWEROFF=Const(1, 1),
                        o_DATAOUT=dout)
                else:  # behavioural: one port, read or write, registered read data
                    words = min(SPRAM_DEPTH, plan.rows - b * SPRAM_DEPTH)
                    mem = Memory(shape=SPRAM_WIDTH, depth=max(2, words), init=[])
                    m.submodules[f"spram{b}_{c}"] = mem
                    rd, wr = mem.read_port(), mem.write_port()
                    m.d.comb += [rd.addr.eq(raddr[:14]), wr.addr.eq(raddr[:14]),
                                 wr.data.eq(word), wr.en.eq(we), dout.eq(rd.data)]
                cols.append(dout)
            rows_out.append(Cat(*cols))
        data_out = Signal(wide * SPRAM_WIDTH)
        m.d.comb += data_out.eq(Array(rows_out)[bank_q] if deep > 1 else rows_out[0])
        return addr, data_out, {"addr": brow, "done": done, "error": error}


def _is_ice40(platform) -> bool:
    """Whether the design is being built for an iCE40 (SPRAM primitives, iCE40 block
    shapes); simulation and other families get behavioural memories."""
    return platform is not None and "iCE40" in str(getattr(platform, "device", ""))


def _check_truth_table() -> None:
    """The stage-2 mux reads ``op`` as its own truth table: assert that is
    :func:`lgn_fpga.net.ops.truth` (index ``3 - (2a + b)`` = ``(2a + b) ^ 3``)."""
    for op in range(16):
        for a in (0, 1):
            for b in (0, 1):
                if (op >> ((2 * a + b) ^ 3)) & 1 != ops.truth(op, a, b):
                    raise AssertionError(f"the folded gate mux disagrees with ops.truth for "
                                         f"op {op} at a={a} b={b}")


_check_truth_table()
