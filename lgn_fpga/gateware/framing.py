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
        # `last`: the next payload byte is the last one (`count + 1 == length`), kept in a
        # register beside `left` (payload bytes still to come) so that no adder and 16-bit
        # comparison sit in front of the FSM (for 100 MHz)
        last = Signal()
        left = Signal(range(self.max_len + 1))  # a valid frame's length is at most max_len
        length = Signal(16)
        crc = Signal(8)
        busy = Signal()
        # The FSM looks at each byte a cycle after it arrives: `stb` and `byte` are
        # registered copies of rx_stb and rx_data, and the comparisons it makes on the byte
        # are registered beside them (rx_data holds still between bytes, and the CRC, the
        # length's low byte and the kind they read were set by earlier bytes), so no
        # comparison sits in front of the FSM and the payload's enables (for 100 MHz).
        stb = Signal()
        byte = Signal(8)
        rx = self.rx_data
        is_sync, known, len_ok, len_zero, len_one, crc_ok = (Signal(name=n) for n in (
            "is_sync", "known", "len_ok", "len_zero", "len_one", "crc_ok"))
        expected = Signal(16)
        for kind, n in lengths.items():
            with m.If(self.kind == kind):
                m.d.comb += expected.eq(n)
        any_kind = 0
        for kind in lengths:
            any_kind = any_kind | (rx == kind)
        m.d.sync += [stb.eq(self.rx_stb), byte.eq(rx), is_sync.eq(rx == SYNC),
                     known.eq(any_kind), len_ok.eq(Cat(length[:8], rx) == expected),
                     len_zero.eq(Cat(length[:8], rx) == 0),
                     len_one.eq(Cat(length[:8], rx) == 1), crc_ok.eq(rx == crc)]

        # The idle timeout, for 100 MHz: a down-counter of units of 2**k cycles (k keeps it
        # at most 12 bits; a free-running prescaler marks the units), reloaded with one
        # constant at each byte and without a reset, so its adder feeds its flip-flops
        # directly; `expired` is set as it reaches 0. A frame is dropped after `timeout`
        # to `timeout + 2**k` cycles without a byte.
        k = max(0, self.timeout.bit_length() - 12)
        units = -(-self.timeout // (1 << k)) + (1 if k else 0)
        idle = Signal(range(units + 1), reset_less=True)
        expired = Signal()
        unit = Signal(init=1)
        if k:
            pre = Signal(k, reset_less=True)
            m.d.sync += [pre.eq(pre + 1), unit.eq(pre == (1 << k) - 2)]

        with m.If(stb):
            m.d.sync += [idle.eq(units), expired.eq(0)]
        with m.Elif(busy & ~expired & unit):
            m.d.sync += [idle.eq(idle - 1), expired.eq(idle == 1)]

        m.d.sync += [self.infer.eq(0), self.info.eq(0), self.crc_error.eq(0)]
        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += busy.eq(0)
                with m.If(stb & is_sync):
                    m.next = "TYPE"
            with m.State("TYPE"):
                m.d.comb += busy.eq(1)
                with m.If(expired):
                    m.next = "HUNT"
                with m.Elif(stb):
                    m.d.sync += [self.kind.eq(byte),
                                 crc.eq(crc8_gateware(Const(0, 8), byte))]
                    with m.If(known):
                        m.next = "LEN_LO"
                    with m.Elif(is_sync):
                        m.next = "TYPE"  # a repeated SYNC may be the real one
                    with m.Else():
                        m.next = "HUNT"
            with m.State("LEN_LO"):
                m.d.comb += busy.eq(1)
                with m.If(expired):
                    m.next = "HUNT"
                with m.Elif(stb):
                    m.d.sync += [length[:8].eq(byte), crc.eq(crc8_gateware(crc, byte))]
                    m.next = "LEN_HI"
            with m.State("LEN_HI"):
                m.d.comb += busy.eq(1)
                full = Cat(length[:8], byte)
                with m.If(expired):
                    m.next = "HUNT"
                with m.Elif(stb):
                    m.d.sync += [length.eq(full), crc.eq(crc8_gateware(crc, byte)),
                                 count.eq(0), left.eq(full[:len(left)]), last.eq(len_one)]
                    with m.If(~len_ok):
                        m.next = "HUNT"  # garbage: no request type has this length
                    with m.Elif(len_zero):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += busy.eq(1)
                with m.If(expired):
                    m.next = "HUNT"
                with m.Elif(stb):
                    m.d.comb += [self.pay_stb.eq(1), self.pay_index.eq(count)]
                    # Shift in from the top: after LEN bytes, byte 0 sits at the bottom.
                    if self.max_len and self.store:
                        m.d.sync += self.payload.eq(
                            Cat(self.payload[8:], byte) if self.max_len > 1 else byte)
                    m.d.sync += [crc.eq(crc8_gateware(crc, byte)), count.eq(count + 1),
                                 left.eq(left - 1), last.eq(left == 2)]
                    with m.If(last):
                        m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += busy.eq(1)
                with m.If(expired):
                    m.next = "HUNT"
                with m.Elif(stb):
                    with m.If(crc_ok):
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
        last = Signal()  # `index + 1 == length`, in a register (as in FrameReceiver)
        left = Signal(range(self.max_len + 1))  # payload bytes still to send
        m.d.comb += self.tx_stb.eq(0)
        m.d.sync += self.done.eq(0)

        # A byte that goes out enters the CRC a cycle later, from a register (`sent`): the
        # byte multiplexer and the CRC network in one cycle were too deep for 100 MHz. The
        # next byte (or the CRC itself) goes out at least 10 bit times later.
        sent = Signal(8)
        sent_crc = Signal()
        m.d.sync += sent_crc.eq(0)
        with m.If(sent_crc):
            m.d.sync += crc.eq(crc8_gateware(crc, sent))

        def send(value, nxt, *, crc_in=True):
            m.d.comb += [self.tx_data.eq(value), self.tx_stb.eq(self.tx_ready)]
            with m.If(self.tx_ready):
                if crc_in:
                    m.d.sync += [sent.eq(value), sent_crc.eq(1)]
                m.next = nxt

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [kind.eq(self.kind), length.eq(self.length), crc.eq(0),
                                 self.index.eq(0), self.busy.eq(1)]
                    m.next = "SYNC"
            with m.State("SYNC"):
                # from the registered length, bytes before the payload needs it
                m.d.sync += [left.eq(length[:len(left)]), last.eq(length == 1)]
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
                    with m.If(last):
                        m.next = "CRC"
                    with m.Else():
                        m.d.sync += [self.index.eq(self.index + 1), left.eq(left - 1),
                                     last.eq(left == 2)]
            with m.State("CRC"):
                send(crc, "IDLE", crc_in=False)
                with m.If(self.tx_ready):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
