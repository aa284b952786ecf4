"""The gateware half of the serial frame format (:mod:`lgn_fpga.protocol` defines it once
for both sides): the CRC network, the request parser and the response sender."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from lgn_fpga.protocol import (
    REQ_INFER,
    REQ_INFO,
    SYNC,
    PayloadLayout,
    crc8_step,
)


def _crc8_matrix() -> list[list[int]]:
    """For each output bit, the bits of ``crc ^ byte`` it XORs: CRC is linear over GF(2), so
    probing :func:`crc8_step` with unit vectors gives the hardware network."""
    columns = [crc8_step(1 << j, 0) for j in range(8)]
    return [[j for j in range(8) if columns[j] >> i & 1] for i in range(8)]


def crc8_gateware(crc, byte):
    """Amaranth expression for ``crc8_step(crc, byte)`` (both 8-bit values)."""
    x = crc ^ byte
    bits = []
    for taps in _crc8_matrix():
        acc = x[taps[0]]
        for j in taps[1:]:
            acc = acc ^ x[j]
        bits.append(acc)
    return Cat(*bits)


class FrameReceiver(wiring.Component):
    """Parses request frames from a byte stream (``rx_data``/``rx_stb``).

    On a good INFER frame, ``payload`` holds the request (seq in byte 0) and ``infer``
    strobes; a good INFO frame strobes ``info``; a frame with a bad CRC strobes
    ``crc_error`` with its type in ``kind``. ``timeout`` cycles without a byte drop a
    half-received frame. Each payload byte also strobes ``pay_stb`` (the byte is
    ``rx_data``, its index ``pay_index``), before the CRC is checked; with ``store=False``
    ``payload`` is not kept (a top that writes the bytes into RAM saves the register)."""

    def __init__(self, layout: PayloadLayout, *, timeout: int, store: bool = True):
        self.layout = layout
        self.timeout = max(1, timeout)
        self.store = store
        self.max_len = max(layout.request_lengths().values())
        super().__init__({
            "rx_data": In(8), "rx_stb": In(1),
            "payload": Out(8 * max(1, self.max_len)),
            "pay_stb": Out(1), "pay_index": Out(range(max(2, self.max_len + 2))),
            "kind": Out(8),
            "infer": Out(1), "info": Out(1), "crc_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lengths = self.layout.request_lengths()
        count = Signal(range(self.max_len + 2))
        length = Signal(16)
        crc = Signal(8)
        idle = Signal(range(self.timeout + 1))
        busy = Signal()

        with m.If(self.rx_stb):
            m.d.sync += idle.eq(0)
        with m.Elif(busy & (idle != self.timeout)):
            m.d.sync += idle.eq(idle + 1)

        m.d.sync += [self.infer.eq(0), self.info.eq(0), self.crc_error.eq(0)]
        byte = self.rx_data
        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += busy.eq(0)
                with m.If(self.rx_stb & (byte == SYNC)):
                    m.next = "TYPE"
            with m.State("TYPE"):
                m.d.comb += busy.eq(1)
                with m.If(idle == self.timeout):
                    m.next = "HUNT"
                with m.Elif(self.rx_stb):
                    m.d.sync += [self.kind.eq(byte),
                                 crc.eq(crc8_gateware(Const(0, 8), byte))]
                    known = 0
                    for kind in lengths:
                        known = known | (byte == kind)
                    with m.If(known):
                        m.next = "LEN_LO"
                    with m.Elif(byte == SYNC):
                        m.next = "TYPE"  # a repeated SYNC may be the real one
                    with m.Else():
                        m.next = "HUNT"
            with m.State("LEN_LO"):
                m.d.comb += busy.eq(1)
                with m.If(idle == self.timeout):
                    m.next = "HUNT"
                with m.Elif(self.rx_stb):
                    m.d.sync += [length[:8].eq(byte), crc.eq(crc8_gateware(crc, byte))]
                    m.next = "LEN_HI"
            with m.State("LEN_HI"):
                m.d.comb += busy.eq(1)
                full = Cat(length[:8], byte)
                expected = Signal(16)
                for kind, n in lengths.items():
                    with m.If(self.kind == kind):
                        m.d.comb += expected.eq(n)
                with m.If(idle == self.timeout):
                    m.next = "HUNT"
                with m.Elif(self.rx_stb):
                    m.d.sync += [length.eq(full), crc.eq(crc8_gateware(crc, byte)),
                                 count.eq(0)]
                    with m.If(full != expected):
                        m.next = "HUNT"  # garbage: no request type has this length
                    with m.Elif(full == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += busy.eq(1)
                with m.If(idle == self.timeout):
                    m.next = "HUNT"
                with m.Elif(self.rx_stb):
                    m.d.comb += [self.pay_stb.eq(1), self.pay_index.eq(count)]
                    # Shift in from the top: after LEN bytes, byte 0 sits at the bottom.
                    if self.max_len and self.store:
                        m.d.sync += self.payload.eq(
                            Cat(self.payload[8:], byte) if self.max_len > 1 else byte)
                    m.d.sync += [crc.eq(crc8_gateware(crc, byte)), count.eq(count + 1)]
                    with m.If(count + 1 == length):
                        m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += busy.eq(1)
                with m.If(idle == self.timeout):
                    m.next = "HUNT"
                with m.Elif(self.rx_stb):
                    with m.If(byte == crc):
                        m.d.sync += [self.infer.eq(self.kind == REQ_INFER),
                                     self.info.eq(self.kind == REQ_INFO)]
                    with m.Else():
                        m.d.sync += self.crc_error.eq(1)
                    m.next = "HUNT"
        return m

class FrameSender(wiring.Component):
    """Sends one frame: ``kind`` and ``length`` are taken at ``start``; SYNC, LEN and CRC
    are added here. The payload is not copied: the sender asks for byte ``index`` and the
    caller answers on ``byte`` (combinationally, from data it holds still while ``busy``),
    which costs a byte multiplexer instead of a register per payload bit. ``done`` pulses
    as the last byte leaves. Bytes go out through ``tx_data``/``tx_stb`` when ``tx_ready``."""

    def __init__(self, max_len: int):
        self.max_len = max(1, max_len)
        super().__init__({
            "start": In(1), "kind": In(8), "length": In(16),
            "index": Out(range(self.max_len)), "byte": In(8),
            "busy": Out(1), "done": Out(1),
            "tx_data": Out(8), "tx_stb": Out(1), "tx_ready": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        kind = Signal(8)
        length = Signal(16)
        crc = Signal(8)
        m.d.comb += self.tx_stb.eq(0)
        m.d.sync += self.done.eq(0)

        def send(value, nxt, *, crc_in=True):
            m.d.comb += [self.tx_data.eq(value), self.tx_stb.eq(self.tx_ready)]
            with m.If(self.tx_ready):
                if crc_in:
                    m.d.sync += crc.eq(crc8_gateware(crc, value))
                m.next = nxt

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [kind.eq(self.kind), length.eq(self.length), crc.eq(0),
                                 self.index.eq(0), self.busy.eq(1)]
                    m.next = "SYNC"
            with m.State("SYNC"):
                send(SYNC, "TYPE", crc_in=False)
            with m.State("TYPE"):
                send(kind, "LEN_LO")
            with m.State("LEN_LO"):
                send(length[:8], "LEN_HI")
            with m.State("LEN_HI"):
                send(length[8:], "PAYLOAD")
                with m.If(self.tx_ready & (length == 0)):
                    m.next = "CRC"
            with m.State("PAYLOAD"):
                send(self.byte, "PAYLOAD")
                with m.If(self.tx_ready):
                    with m.If(self.index + 1 == length):
                        m.next = "CRC"
                    with m.Else():
                        m.d.sync += self.index.eq(self.index + 1)
            with m.State("CRC"):
                send(crc, "IDLE", crc_in=False)
                with m.If(self.tx_ready):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
