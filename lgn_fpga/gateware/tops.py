"""Board tops around :class:`~lgn_fpga.gateware.core.LogicNetCore`.

* :class:`UartTop`: inference over the serial frame format of :mod:`lgn_fpga.protocol`.
* :class:`BistTop`: golden vectors in block RAM stream through the core at one per clock;
  the outputs are compared on chip; pass/fail and the cycle count go to LEDs and the UART.
* :class:`BoardTop`: binds either to a board's pins and makes the ``sync`` clock, from the
  board oscillator or through a PLL (:mod:`lgn_fpga.gateware.pll`).

``UartTop`` and ``BistTop`` only see ``rx``/``tx``/``leds`` ports, so the simulator drives
exactly the logic that goes on the board. Either takes another core through ``core=``: a
core with an ``in_ready`` port (:class:`~lgn_fpga.gateware.folded.FoldedCore`) gets its
requests held until it takes them (docs/folded.md).
"""


import numpy as np
from amaranth.hdl import (
    Cat,
    ClockDomain,
    Const,
    Elaboratable,
    Module,
    Mux,
    Signal,
    Value,
)
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from lgn_fpga import protocol as p
from lgn_fpga.gateware import framing
from lgn_fpga.gateware.pll import PLLDomain
from lgn_fpga.gateware.uart import UARTRx, UARTTx
from lgn_fpga.net.graph import GateGraph
from lgn_fpga.net.graph import class_width as graph_class_width

RESULT_FIFO_DEPTH = 8  # results waiting for the UART; the host keeps fewer in flight


def direct_results_ok(layout: p.PayloadLayout, latency: int, load_rows: int,
                      divisor: int) -> bool:
    """Whether a core that holds its outputs (one input in flight) can answer without a
    result FIFO: while a result waits to be sent the core takes no new input, so the
    result frame, plus an INFO or ERROR frame being sent ahead of it, plus the inference
    and the input load must fit in the time one request frame takes to arrive (with two
    bytes to spare). Then a request never waits longer than it takes to arrive, and the
    input RAM still holds it when the core reads it."""
    byte = 10 * divisor
    frame = p.HEADER + 1  # SYNC, TYPE, LEN (2) + CRC
    request = (frame + layout.request_len) * byte
    answers = (2 * frame + layout.result_len + max(p.INFO_LEN, p.ERROR_LEN)) * byte
    return latency + load_rows + answers + 2 * byte <= request


def _boot_ports(core) -> dict:
    """The flash pins (and the boot status) of a top whose core loads its program from
    the board's SPI flash (a folded core with ``program="spram"``), else none."""
    if getattr(core, "image", None) is None:
        return {}
    return {"flash_cs": Out(1), "flash_sck": Out(1), "flash_copi": Out(1),
            "flash_cipo": In(1), "boot_error": Out(1)}


def _boot(m: Module, top, core) -> None:
    """Read the core's program image from the flash into the core (docs/folded.md)."""
    if getattr(core, "image", None) is None:
        return
    from lgn_fpga.gateware.spi_flash import FLASH_OFFSET, SPIFlashReader

    m.submodules.flash = flash = SPIFlashReader(FLASH_OFFSET, len(core.image))
    m.d.comb += [top.flash_cs.eq(flash.cs), top.flash_sck.eq(flash.sck),
                 top.flash_copi.eq(flash.copi), flash.cipo.eq(top.flash_cipo),
                 core.boot_data.eq(flash.data), core.boot_stb.eq(flash.stb),
                 top.boot_error.eq(core.boot_error)]


def _make_core(graph: GateGraph, pipeline: int | None, core, core_options: dict | None):
    """``core`` if given, else the parallel core with ``pipeline`` and ``core_options``
    (more of ``LogicNetCore``'s keyword arguments: ``stage_luts``, ``popcount_tables``, ...,
    as ``lgn_fpga.flow.build.CoreDesign.core_options`` gives them; a ``pipeline`` there
    wins)."""
    if core is not None:
        return core
    from lgn_fpga.gateware.core import DEFAULT_PIPELINE, LogicNetCore

    return LogicNetCore(graph, **{"pipeline": pipeline or DEFAULT_PIPELINE,
                                  **(core_options or {})})


def _result_fifo(m: Module, data, w_en, r_en):
    """A FIFO of :data:`RESULT_FIFO_DEPTH` results in block RAM, read straight from the
    RAM's own output register (``r_data`` is the head a cycle after it moves; the caller
    reads it later): (``r_rdy``, ``r_data``, ``popped``). For 100 MHz and fewer cells than
    ``SyncFIFOBuffered`` (whose output register's enable, a global net, and level logic
    were on the critical path): no output register, and ``r_rdy`` and the full flag are
    registers compared from the pointers, so they lag them by a cycle: the caller must not
    read ``r_rdy`` in the cycle after a pop (``popped``), and a result that arrives within
    a cycle of a pop from a full FIFO is dropped, like one that arrives when it is full
    (results come at most one per request frame)."""
    depth = RESULT_FIFO_DEPTH
    # An asynchronous read port and a register without reset, which Yosys merges into the
    # RAM's read port with `no_rw_check`: a synchronous read port (whose old-data-on-
    # collision Amaranth asks for) got a flip-flop and a LUT per bit after the RAM to
    # give the old data when a write and a read meet at one address (iCE40 block RAM
    # leaves that undefined), 89 cells for mnist400's results, on a critical path. The
    # pointers never let them meet (an entry is read a cycle after it was written at the
    # earliest).
    # Twice the depth: a result that arrives when the FIFO is full is written into the
    # unused half (address bit `full`) and the pointer stays, so the RAM's write enable
    # is `w_en` alone and its address registers (for 100 MHz: the enable, through a LUT
    # from `full`, had a long route to the RAMs); the RAM has the room anyway (256 words).
    mem = Memory(shape=len(data), depth=2 * depth, init=[],
                 attrs={"ram_style": "block", "no_rw_check": 1})
    m.submodules.results = mem
    wr, rd = mem.write_port(), mem.read_port(domain="comb")
    r_data = Signal(len(data), reset_less=True)
    m.d.sync += r_data.eq(rd.data)
    w_ptr, r_ptr = Signal(range(2 * depth)), Signal(range(2 * depth))
    r_rdy, full, popped = Signal(), Signal(), Signal()
    m.d.comb += [wr.addr.eq(Cat(w_ptr[:-1], full)), wr.data.eq(data), wr.en.eq(w_en),
                 rd.addr.eq(Cat(r_ptr[:-1], 0))]
    with m.If(w_en & ~full):
        m.d.sync += w_ptr.eq(w_ptr + 1)
    with m.If(r_en):
        m.d.sync += r_ptr.eq(r_ptr + 1)
    # Compared as kept 2-bit slices, two LUT levels (for 100 MHz; see framing.kept_eq).
    m.d.sync += [r_rdy.eq(~framing.kept_eq(m, w_ptr, r_ptr, "ptr_same")),
                 full.eq(framing.kept_eq(m, w_ptr, r_ptr ^ depth, "ptr_full")),
                 popped.eq(r_en)]
    return r_rdy, r_data, popped


def _pad(value, width: int):
    """``value`` zero-extended (or cut) to ``width`` bits."""
    return value.as_unsigned()[:width] if len(value) >= width else \
        Cat(value, Const(0, width - len(value)))


def _scores_bytes(core, layout: p.PayloadLayout):
    flat = Value.cast(core.out_scores)
    sw = core.score_width
    return [_pad(flat[c * sw:(c + 1) * sw], 8 * layout.score_bytes)
            for c in range(layout.classes)]


class UartTop(wiring.Component):
    """Answers INFER frames with RESULT frames, INFO with the net's description, and frames
    with a bad CRC with an ERROR frame (see :mod:`lgn_fpga.protocol`).

    ``divisor`` is clocks per UART bit at the clock this logic runs at; ``clock_hz`` is only
    reported (INFO). ``timeout`` is the idle gap, in clocks, after which a half-received
    frame is dropped (default: 10 ms, at least 200 bit times).

    A core with ``in_addr``/``in_byte`` (a folded core with ``inputs="bytes"``) gets no
    request register: each payload byte goes straight into a byte-wide block RAM as it
    arrives, and the core reads its input from there while loading. That RAM holds the
    request until the next frame's first input byte, 6 bytes after its CRC, so the build
    checks that the core takes and loads a request within that (docs/folded.md). A core
    that loads its program from flash (``program="spram"``) adds the flash pins; frames
    that arrive while it boots are not heard."""

    def __init__(self, graph: GateGraph, *, divisor: int, clock_hz: int = 0,
                 pipeline: int | None = None, model_hash: str | None = None,
                 timeout: int | None = None, core=None, core_options: dict | None = None):
        self.graph = graph
        # One request per frame: the scores need no delay line as long as the argmax.
        self.core = _make_core(graph, pipeline, core, {"scores": "held", **(core_options or {})})
        self.divisor = divisor
        self.clock_hz = int(clock_hz)
        self.layout = p.PayloadLayout(graph.inputs, graph.classes, self.core.score_width)
        self.timeout = timeout or max(200 * divisor, int(clock_hz * 0.01))
        self.model_hash = model_hash or graph.sha256()
        # INFO carries the latency in 16 bits; a big folded core saturates it.
        self.info = p.BoardInfo(p.VERSION, graph.inputs, graph.classes, self.core.score_width,
                                min(self.core.latency, 0xFFFF),
                                self.model_hash[:2 * p.HASH_BYTES],
                                self.clock_hz)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "activity": Out(1),
                          **_boot_ports(self.core)})

    @property
    def latency(self) -> int:
        return self.core.latency

    @property
    def direct_results(self) -> bool:
        """Whether results go out straight from the core's outputs, with no FIFO: see
        :func:`direct_results_ok`."""
        core = self.core
        return bool(getattr(core, "holds_outputs", False)) and direct_results_ok(
            self.layout, core.latency, getattr(getattr(core, "plan", None), "load_rows", 0),
            self.divisor)

    def elaborate(self, platform):
        m = Module()
        layout = self.layout
        m.submodules.core = core = self.core
        m.submodules.rx = rx = UARTRx(self.divisor)
        m.submodules.tx = tx = UARTTx(self.divisor)
        in_ram = hasattr(core, "in_addr")  # the input goes to RAM, not a register
        m.submodules.recv = recv = framing.FrameReceiver(layout, timeout=self.timeout,
                                                         store=not in_ram)
        send_len = max(layout.result_len, p.INFO_LEN, p.ERROR_LEN)
        m.submodules.send = send = framing.FrameSender(send_len)
        _boot(m, self, core)

        # While the core boots, the line reads idle: frames sent meanwhile are not heard.
        line = (self.rx | ~core.booted) if hasattr(core, "booted") else self.rx
        m.d.comb += [
            rx.rx.eq(line), self.tx.eq(tx.tx),
            recv.rx_data.eq(rx.data), recv.rx_stb.eq(rx.stb),
            tx.data.eq(send.tx_data), tx.stb.eq(send.tx_stb), send.tx_ready.eq(tx.ready),
            self.activity.eq(send.busy),
        ]
        if in_ram:
            # Payload byte 0 is the sequence number, bytes 1.. the input.
            nbytes = -(-self.graph.inputs // 8)
            m.submodules.in_mem = in_mem = Memory(shape=8, depth=max(2, nbytes), init=[],
                                                  attrs={"ram_style": "block"})
            wr, rd = in_mem.write_port(), in_mem.read_port()
            seq_in = Signal(8)
            m.d.comb += [wr.addr.eq(recv.pay_index - 1), wr.data.eq(rx.data),
                         wr.en.eq(recv.pay_stb & (recv.pay_index != 0)),
                         rd.addr.eq(core.in_addr), core.in_byte.eq(rd.data)]
            with m.If(recv.pay_stb & (recv.pay_index == 0)):
                m.d.sync += seq_in.eq(rx.data)
            request_seq = seq_in
        else:
            m.d.comb += core.in_bits.eq(recv.payload[8:8 + self.graph.inputs])
            request_seq = recv.payload[:8]
        handshake = hasattr(core, "in_ready")  # a folded core takes one input at a time
        # A core that holds its outputs until its next input (the folded core) needs no
        # result FIFO when its answers always leave before the next request needs the core
        # (direct_results): the sender reads the result from the core, and the core takes
        # no input while one is unsent. Saves the FIFO's block RAMs and its logic.
        direct = self.direct_results
        result_pending = Signal()
        if handshake:
            # The request waits until the core takes it; the input (register or RAM) holds
            # still meanwhile (until the next frame's input bytes).
            waiting = Signal()
            m.d.comb += core.in_valid.eq((recv.infer | waiting) & ~result_pending)
            with m.If(core.in_valid & core.in_ready):
                m.d.sync += waiting.eq(0)
            with m.Elif(recv.infer):
                m.d.sync += waiting.eq(1)
        else:
            m.d.comb += core.in_valid.eq(recv.infer)

        # The request register holds still until the next frame's payload bytes arrive, at
        # least a header (4 bytes, 40 bit times) later; when the core answers sooner than
        # that, its sequence number can be read straight from there. Otherwise it travels
        # beside the core, delayed by its latency.
        seq = request_seq
        if handshake:
            # One input in flight: its sequence number is latched when the core takes it.
            seq_q = Signal(8)
            with m.If(core.in_valid & core.in_ready):
                m.d.sync += seq_q.eq(seq)
            seq = seq_q
        for stage in range(core.latency if core.latency >= 40 * self.divisor
                           and not handshake else 0):
            delayed = Signal(8, name=f"seq_d{stage}")
            m.d.sync += delayed.eq(seq)
            seq = delayed

        result = Cat(seq, _pad(core.out_class, 8 * layout.class_bytes),
                     *_scores_bytes(core, layout))
        r_en = Signal()
        popped = Const(0, 1)
        if direct:
            r_rdy, r_data = result_pending, result
            with m.If(core.out_valid):
                m.d.sync += result_pending.eq(1)
            with m.Elif(r_en):
                m.d.sync += result_pending.eq(0)
        else:
            r_rdy, r_data, popped = _result_fifo(m, result, core.out_valid, r_en)

        info_pending = Signal()
        error_pending = Signal()
        error_kind = Signal(8)
        # What the sender is sending; its payload bytes are picked from the source, which
        # holds still until the frame is out (the FIFO's head is only popped at `done`).
        source = Signal(range(3))  # 0: result (FIFO head), 1: INFO, 2: ERROR
        info_bytes = p.encode_info(self.info)
        error_bytes = Cat(Const(p.ERR_CRC, 8), error_kind)
        # The byte the sender asks for is picked in registered steps: the 4-byte group of
        # the result (`group`, by index[2:]) and, beside it, the INFO or ERROR byte (`aux`,
        # a function of the index, the source and error_kind); then the byte, from the
        # group by index[:2] or from `aux`. Each step is at most two LUTs deep (index ->
        # 12-byte mux -> CRC -> tx took 26 ns, and a step picking groups of all three
        # sources at once three LUTs plus routing: the critical paths of the UART top at
        # 100 MHz on the UP5K). The sender reads the byte once per UART byte, at least 10
        # bit times after the index moved (the source and the FIFO head hold still while it
        # is busy), so it is always up to date.
        padded = Cat(r_data, Const(0, -len(r_data) % 32))
        # The group is picked by one-hot selects registered a cycle ahead from the index
        # (it moves once per UART byte): an AND-OR of the RAM's outputs, two LUTs deep for
        # up to three groups.
        words = [padded[32 * g:32 * (g + 1)] for g in range(len(padded) // 32)]
        select = Signal(len(words))
        m.d.sync += [select[g].eq(send.index[2:] == g) for g in range(len(words))]
        group = Signal(32, reset_less=True)
        picked_word = 0
        for g, word in enumerate(words):
            picked_word = picked_word | (word & select[g].replicate(32))
        m.d.sync += group.eq(picked_word)
        # The INFO byte is looked up a cycle ahead (`info_byte`, a function of 5 index bits).
        info_byte = Signal(8)
        # Each bit as a truth table over the index (Yosys turned the byte lookup into a ROM
        # of flip-flops and three LUT levels, and ABC still made three of a mux tree, sharing
        # LUTs with the index's increment): 16-entry tables of the low 4 index bits, one LUT
        # each into a register, picked by the high bits a cycle later (the byte is read 10
        # bit times after the index moves).
        ibits = min(len(send.index), max(1, (len(info_bytes) - 1).bit_length()))
        # A copy of the index of its own, so that ABC cannot share the tables' LUTs with
        # the index's increment (it did, three LUTs deep).
        index = Signal.like(send.index, name="info_index")
        m.d.sync += index.eq(send.index)
        for bit in range(8):
            table = sum(((info_bytes[i] >> bit) & 1) << i
                        for i in range(min(len(info_bytes), 1 << ibits)))
            low = min(4, ibits)
            subs = []
            for k in range(1 << (ibits - low)):
                sub = Signal(name=f"info{bit}_{k}")
                m.d.sync += sub.eq(Const(table >> (k << low), 1 << low).bit_select(
                    index[:low], 1))
                subs.append(sub)
            m.d.sync += info_byte[bit].eq(Cat(*subs).bit_select(index[low:ibits], 1)
                                          if len(subs) > 1 else subs[0])
        aux = Signal(8)
        m.d.sync += aux.eq(Mux(source == 1, info_byte,
                               error_bytes.word_select(send.index[:1], 8)))
        m.d.sync += send.byte.eq(Mux(source == 0, group.word_select(send.index[:2], 8), aux))
        with m.If(send.done & (source == 0)):
            m.d.comb += r_en.eq(1)

        # The frame to send next is chosen into registers and started a cycle later
        # (`launch`), so the choice is not in front of the sender's registers (for 100 MHz);
        # no new choice is made while a launch is on its way.
        launch = Signal()
        launch_kind = Signal(8)
        launch_len = Signal(16)
        m.d.comb += [send.start.eq(launch), send.kind.eq(launch_kind),
                     send.length.eq(launch_len)]
        # `idle` (a register) says the sender is free and no launch, `done` or pop (after
        # which the FIFO's `r_rdy` is a cycle late: `popped`) was in the cycle before; a
        # launch this cycle is caught by `~launch`. So the choice reads flip-flops through
        # two LUTs at most (for 100 MHz).
        idle = Signal()
        m.d.sync += idle.eq(~send.busy & ~send.done & ~launch & ~popped)
        free = idle & ~launch
        m.d.sync += launch.eq(free & (error_pending | info_pending | r_rdy))
        # The choice is loaded whenever `free` (a result when nothing else is pending,
        # whether or not one is ready: it is only read once launched, and holds still
        # while a frame is out), so its enable is one LUT and its value a function of the
        # two pending flags.
        with m.If(free):
            with m.If(error_pending):
                m.d.sync += [launch_kind.eq(p.RSP_ERROR), launch_len.eq(p.ERROR_LEN),
                             source.eq(2)]
            with m.Elif(info_pending):
                m.d.sync += [launch_kind.eq(p.RSP_INFO), launch_len.eq(p.INFO_LEN),
                             source.eq(1)]
            with m.Else():
                m.d.sync += [launch_kind.eq(p.RSP_RESULT), launch_len.eq(layout.result_len),
                             source.eq(0)]
        # The pending flag of the frame chosen is cleared a cycle later, with the launch
        # (`clear_*`, registers, so the flags' enables are a LUT of flip-flops; for 100 MHz):
        # nothing reads the flags in that cycle (`free` is low). A request that arrived in
        # the cycle of the choice (`*_again`) keeps its flag, as does one that arrives with
        # the launch (the last assignment wins).
        clear_error, clear_info, error_again, info_again = (Signal(name=n) for n in (
            "clear_error", "clear_info", "error_again", "info_again"))
        m.d.sync += [clear_error.eq(free & error_pending),
                     clear_info.eq(free & ~error_pending & info_pending),
                     error_again.eq(recv.crc_error), info_again.eq(recv.info)]
        with m.If(clear_error & ~error_again):
            m.d.sync += error_pending.eq(0)
        with m.If(clear_info & ~info_again):
            m.d.sync += info_pending.eq(0)
        with m.If(recv.info):
            m.d.sync += info_pending.eq(1)
        with m.If(recv.crc_error):
            m.d.sync += [error_pending.eq(1), error_kind.eq(recv.kind)]
        return m


def expected_words(graph: GateGraph, score_width: int, bits: np.ndarray):
    """Golden (class, scores) of each vector packed as the BIST stores them: class in the
    low bits, then each score in ``score_width`` bits."""
    from lgn_fpga.net import golden

    pred = golden.predict(graph, bits)
    return pack_expected(pred.classes, pred.scores, score_width)


def pack_expected(classes: np.ndarray, scores: np.ndarray, score_width: int):
    """(words, class_width): each vector's class and scores as one BIST memory word (e.g.
    from a golden vector set of :mod:`lgn_fpga.net.vectors`)."""
    num_classes = np.asarray(scores).shape[1]
    class_width = graph_class_width(num_classes)
    words = []
    for cls, row in zip(np.asarray(classes).tolist(), np.asarray(scores).tolist()):
        word = cls
        for c, s in enumerate(row):
            word |= s << (class_width + c * score_width)
        words.append(word)
    return words, class_width


class BistTop(wiring.Component):
    """Built-in self test: ``bits`` (vectors x inputs) and their golden results sit in block
    RAM; after reset every vector enters the core on consecutive clocks, each output is
    compared on chip. ``done``/``passed``/``cycles`` (first input to last output, inclusive)
    and ``first_failure`` are ports; a BIST frame reports them over the UART when the test
    finishes and again whenever a byte arrives. ``expected`` overrides the stored expected
    words (tests corrupt one to prove the compare can fail). A core that loads its program
    from flash adds the flash pins, and the first vector waits until it has booted."""

    def __init__(self, graph: GateGraph, bits: np.ndarray, *, divisor: int,
                 pipeline: int | None = None, expected: list[int] | None = None, core=None,
                 core_options: dict | None = None):
        self.graph = graph
        self.core = _make_core(graph, pipeline, core, core_options)
        self.bits = np.asarray(bits, dtype=np.uint8)
        if self.bits.ndim != 2 or self.bits.shape[1] != graph.inputs or not len(self.bits):
            raise ValueError(f"BIST vectors must have shape (n >= 1, {graph.inputs})")
        self.vectors = len(self.bits)
        words, self.class_width = expected_words(graph, self.core.score_width, self.bits)
        self.expected = list(expected) if expected is not None else words
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "done": Out(1),
                          "passed": Out(1), "failed": Out(1), "cycles": Out(32),
                          "first_failure": Out(32, init=0xFFFFFFFF),
                          **_boot_ports(self.core)})

    @property
    def memory_bits(self) -> int:
        return self.vectors * (self.graph.inputs + self.class_width
                               + self.graph.classes * self.core.score_width)

    def elaborate(self, platform):
        m = Module()
        graph, n = self.graph, self.vectors
        m.submodules.core = core = self.core
        _boot(m, self, core)
        in_words = [int.from_bytes(np.packbits(row, bitorder="little").tobytes(), "little")
                    for row in self.bits]
        exp_width = self.class_width + graph.classes * core.score_width
        # Block RAM even for small sets: Yosys would otherwise turn a small ROM into LUTs,
        # which both costs logic and stops testing what the BIST is meant to show.
        block = {"ram_style": "block", "rom_style": "block"}
        m.submodules.in_mem = in_mem = Memory(shape=graph.inputs, depth=n, init=in_words,
                                              attrs=block)
        m.submodules.exp_mem = exp_mem = Memory(shape=exp_width, depth=n, init=self.expected,
                                                attrs=block)
        in_port = in_mem.read_port()
        exp_port = exp_mem.read_port()

        # Feed: one address per clock; the data arrives a clock later with in_valid.
        feed = Signal(range(n + 1))
        issued = Signal()
        running = Signal()  # counting cycles: from the first input to the last output
        # A core with a ready handshake (folded) may hold an input off: the read port then
        # keeps its data and the feed waits.
        take = (~issued | core.in_ready) if hasattr(core, "in_ready") else Const(1, 1)
        m.d.comb += [in_port.addr.eq(feed), in_port.en.eq(take)]
        with m.If(take):
            m.d.sync += issued.eq(0)
            with m.If(feed != n):
                m.d.sync += [feed.eq(feed + 1), issued.eq(1)]
        m.d.comb += [core.in_bits.eq(in_port.data), core.in_valid.eq(issued)]

        # Check: exp_port shows row `checked` whenever an output arrives; ask for the next
        # row in the same clock so back-to-back outputs each meet their own row.
        checked = Signal(range(n + 1))
        m.d.comb += exp_port.addr.eq(checked + core.out_valid)
        got = Cat(core.out_class, Value.cast(core.out_scores))
        with m.If(issued & (feed == 1)):
            m.d.sync += running.eq(1)
        with m.If(running | (issued & (feed == 1))):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(core.out_valid & ~self.done):
            m.d.sync += checked.eq(checked + 1)
            with m.If(got != exp_port.data):
                m.d.sync += self.failed.eq(1)
                with m.If(~self.failed):
                    m.d.sync += self.first_failure.eq(checked)
            with m.If(checked == n - 1):
                m.d.sync += [self.done.eq(1), running.eq(0)]
        m.d.comb += self.passed.eq(self.done & ~self.failed)

        # Report over the UART: when done, and again for every byte received.
        m.submodules.rx = rx = UARTRx(self.divisor)
        m.submodules.tx = tx = UARTTx(self.divisor)
        m.submodules.send = send = framing.FrameSender(p.BIST_LEN)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx), tx.data.eq(send.tx_data),
                     tx.stb.eq(send.tx_stb), send.tx_ready.eq(tx.ready)]
        pending = Signal()
        done_seen = Signal()
        with m.If(self.done & ~done_seen):
            m.d.sync += [done_seen.eq(1), pending.eq(1)]
        with m.If(rx.stb & self.done):
            m.d.sync += pending.eq(1)
        # Once done, these registers hold still: the sender reads its bytes straight here.
        payload = Cat(self.passed, Const(0, 7), Const(n, 32), self.cycles, self.first_failure)
        m.d.comb += send.byte.eq(payload.word_select(send.index, 8))
        with m.If(pending & ~send.busy):
            m.d.comb += [send.start.eq(1), send.kind.eq(p.RSP_BIST),
                         send.length.eq(p.BIST_LEN)]
            m.d.sync += pending.eq(0)
        return m


class BoardTop(Elaboratable):
    """A top (:class:`UartTop` or :class:`BistTop`) on a board: pins from the profile, the
    ``sync`` clock from the oscillator or, when ``freq`` differs from it, a PLL."""

    def __init__(self, top, profile, *, pll: PLLDomain | None = None):
        self.top = top
        self.profile = profile
        self.pll = pll

    def elaborate(self, platform):
        from amaranth.lib import io

        m = Module()
        m.submodules.top = top = self.top
        if self.pll is not None:
            clk = platform.request(platform.default_clk, dir="-")
            if self.pll.from_pad:
                self.pll.clk_in = clk.io
            else:
                m.submodules.clk_buf = clk_buf = io.Buffer("i", clk)
                self.pll.clk_in = clk_buf.i
            # On iCE40 the reset is asynchronous (it leaves a flip-flop of the same clock, so it
            # is still released on a clock edge): a synchronous one must override the enable
            # of every SB_DFFE*, so Yosys merges it into the enable and data LUTs, where the
            # reset net's route across the chip plus those LUTs limited the UART top to
            # 48 MHz; as an asynchronous one it drives the flip-flops' R pins only (from a
            # global buffer), and those LUTs go.
            m.domains.sync = ClockDomain("sync", async_reset=self.pll.family == "ice40")
            m.submodules.pll = self.pll

        uart = platform.request(*self.profile.uart, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(uart_rx.i), uart_tx.o.eq(top.tx)]

        if hasattr(top, "flash_cs"):
            flash = platform.request("spi_flash_1x", 0, dir="-")
            for name, pin, direction in (("cs", top.flash_cs, "o"), ("clk", top.flash_sck, "o"),
                                         ("copi", top.flash_copi, "o"),
                                         ("cipo", top.flash_cipo, "i")):
                m.submodules[f"flash_{name}"] = buf = io.Buffer(direction, getattr(flash, name))
                m.d.comb += (buf.o.eq(pin) if direction == "o" else pin.eq(buf.i))
            for name in ("wp", "hold"):  # active low pins, held inactive
                if hasattr(flash, name):
                    m.submodules[f"flash_{name}"] = buf = io.Buffer("o", getattr(flash, name))
                    m.d.comb += buf.o.eq(0)

        leds = self.profile.leds(platform, m)
        if isinstance(top, BistTop):
            status = [top.passed, top.failed]
            extra = (top.cycles - top.vectors).as_unsigned()
            values = status + [extra[i] for i in range(max(0, len(leds) - 2))]
        else:
            # A heartbeat shows the clock runs; the second LED lights while answering.
            # In two halves, the upper one counting the lower one's wraps (registered): one
            # 26-bit carry chain took longer than a cycle at 100 MHz on the UP5K.
            low, high, wrap = Signal(13), Signal(13), Signal()
            m.d.sync += [low.eq(low + 1), wrap.eq(low == (1 << 13) - 2)]
            with m.If(wrap):
                m.d.sync += high.eq(high + 1)
            beat = Cat(low, high)
            # A program image that fails its CRC at boot keeps the second LED lit.
            busy = top.activity | top.boot_error if hasattr(top, "boot_error") else \
                top.activity
            values = [beat[-1], busy]
        for led, value in zip(leds, values):
            m.d.comb += led.eq(value)
        return m
