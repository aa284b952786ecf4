"""The gateware half of the serial frame format (:mod:`lgn_fpga.protocol` defines it once
for both sides): the CRC network, the request parser and the response sender."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
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


def kept_eq(m: Module, a, b, name: str, *, registered: bool = False):
    """``a == b`` (``b`` a value or an int) as an AND of equalities of 4-bit slices (2-bit
    slices against a value), each a LUT of its own: kept wires (two LUT levels up to 16
    input bits), or with ``registered`` flip-flops (one LUT each side; the AND then
    compares the value of a cycle before). ABC otherwise shares parts between comparisons
    of one byte and maps some of them three LUTs deep, the critical paths of the UART top
    at 100 MHz on the UP5K."""
    a = Value.cast(a)
    step = 4 if isinstance(b, int) else 2
    parts = []
    for i in range(0, len(a), step):
        part = Signal(name=f"{name}_eq{i // step}",
                      **({} if registered else {"attrs": {"keep": 1}}))
        want = (b >> i) & ((1 << step) - 1) if isinstance(b, int) else Value.cast(b)[i:i + step]
        (m.d.sync if registered else m.d.comb).__iadd__(part.eq(a[i:i + step] == want))
        parts.append(part)
    return Cat(*parts).all()


class FrameReceiver(wiring.Component):
    """Parses request frames from a byte stream (``rx_data``/``rx_stb``).

    On a good INFER frame, ``payload`` holds the request (seq in byte 0) and ``infer``
    strobes; a good INFO frame strobes ``info``; a frame with a bad CRC strobes
    ``crc_error`` with its type in ``kind``. ``timeout`` cycles without a byte drop a
    half-received frame. Each payload byte also strobes ``pay_stb`` (the byte is
    ``rx_data``, its index ``pay_index``), before the CRC is checked; with ``store=False``
    ``payload`` is not kept (a top that writes the bytes into RAM saves the register).
    ``rx_data`` must hold each byte from the cycle before its strobe to the cycle after it
    (as :class:`~lgn_fpga.gateware.uart.UARTRx`'s ``data`` does), and strobes come at least
    3 cycles apart (as a UART's do); ``payload`` takes each byte a cycle after its
    ``pay_stb``."""

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
        # The FSM looks at each byte a cycle after it arrives: `stb` and `byte` are
        # registered copies of rx_stb and rx_data, and the comparisons it makes on the byte
        # are registered beside them, in two steps: 4-bit slices of the byte against the
        # constants and 2-bit slices against the CRC, from rx_data and the CRC alone, a
        # cycle before the strobe (rx_data holds the byte from the cycle before it), then
        # the slices together and against the frame's registers (`is_sync`, `known`,
        # `go_pay`, `go_crc`, `len_one`, `crc_ok`), so no comparison sits in front of the FSM
        # and the payload's enables, and each step reads flip-flops through one LUT (for
        # 100 MHz). The length check is split in the same way: `lo_ok[k]` (the low byte
        # read is kind k's, and the frame is of kind k) is registered from registers, and at
        # the high byte `go_pay`/`go_crc` say whether a payload or the CRC follows (neither:
        # garbage). So bytes must come at least 3 cycles apart (a UART's: 10 bit times).
        stb = Signal()
        byte = Signal(8)
        rx = self.rx_data
        is_sync, known, go_pay, go_crc, len_one, lo_one, crc_ok = (
            Signal(name=n) for n in ("is_sync", "known", "go_pay", "go_crc", "len_one",
                                     "lo_one", "crc_ok"))
        kinds = list(lengths)
        is_kind = Signal(len(kinds))  # the byte is kind k
        of_kind = Signal(len(kinds))  # the frame is of kind k (set at TYPE)
        lo_ok = Signal(len(kinds))
        m.d.sync += [lo_ok[i].eq(of_kind[i] & kept_eq(m, length[:8], n & 0xFF, f"lo{i}"))
                     for i, n in enumerate(lengths.values())]
        # First step: slices of the byte against the constants and the CRC, in registers.
        sync_eq = kept_eq(m, rx, SYNC, "sync", registered=True)
        kind_eq = [kept_eq(m, rx, kind, f"kind{i}", registered=True)
                   for i, kind in enumerate(kinds)]
        highs = sorted({n >> 8 for n in lengths.values()})
        high_eq = [kept_eq(m, rx, h, f"high{i}", registered=True) for i, h in enumerate(highs)]
        zero_eq = kept_eq(m, rx, 0, "zero", registered=True)
        crc_eq = kept_eq(m, rx, crc, "crc", registered=True)
        hi_ok = [lo_ok[i] & high_eq[highs.index(n >> 8)] for i, n in enumerate(lengths.values())]
        # Second step: those slices together, and against the frame's registers.
        m.d.sync += [stb.eq(self.rx_stb), byte.eq(rx), is_sync.eq(sync_eq),
                     is_kind.eq(Cat(*kind_eq)), known.eq(Cat(*kind_eq).any()),
                     go_pay.eq(Cat(ok for ok, n in zip(hi_ok, lengths.values()) if n).any()),
                     go_crc.eq(Cat(ok for ok, n in zip(hi_ok, lengths.values())
                                   if not n).any()),
                     lo_one.eq(kept_eq(m, length[:8], 1, "lo_one")),
                     len_one.eq(lo_one & zero_eq), crc_ok.eq(crc_eq)]

        # The idle timeout, for 100 MHz: a down-counter of units of 2**k cycles (k keeps it
        # at most 8 bits; a free-running prescaler marks the units), loaded with one
        # constant at each byte and without a reset, so its adder feeds its flip-flops
        # directly; it counts past 0 and its sign bit is `expired`. A frame is dropped after
        # `timeout` to `timeout + 2**k` cycles without a byte.
        k = max(0, self.timeout.bit_length() - 8)
        units = -(-self.timeout // (1 << k)) + (1 if k else 0)
        idle = Signal(units.bit_length() + 1, reset_less=True)
        expired = idle[-1]
        unit = Signal(init=1)
        if k:
            pre = Signal(k, reset_less=True)
            m.d.sync += [pre.eq(pre + 1), unit.eq(kept_eq(m, pre, (1 << k) - 2, "unit"))]

        # One flip-flop per state (one-hot), so each next state is a small function of
        # flip-flops; a timeout (`expired` outside HUNT) clears them through their
        # synchronous reset and sets HUNT.
        hunt = Signal(init=1)
        typ, len_lo, len_hi, pay, crcs = (Signal(name=n) for n in (
            "typ", "len_lo", "len_hi", "pay", "crcs"))
        drop = Signal()
        m.d.comb += drop.eq(expired & ~hunt)

        with m.If(stb):
            m.d.sync += idle.eq(units - 1)
        with m.Elif(~hunt & ~expired & unit):
            m.d.sync += idle.eq(idle - 1)

        # The payload shifts in from the top (after LEN bytes, byte 0 sits at the bottom), a
        # cycle after the FSM takes the byte, when `shift`, a flip-flop, says so: the enable
        # of every payload flip-flop is one net (400 and more of them, through a global
        # buffer), and with the FSM's decision in front of it, it was the critical path at
        # 100 MHz on the UP5K. `byte` still holds the byte then (rx_data holds still between
        # bytes), and the frame's CRC byte, and so `infer`, comes at least a byte later.
        shift = Signal()
        m.d.sync += shift.eq(pay & stb & ~expired)
        if self.max_len and self.store:
            with m.If(shift):
                m.d.sync += self.payload.eq(
                    Cat(self.payload[8:], byte) if self.max_len > 1 else byte)
        m.d.comb += [self.pay_stb.eq(pay & stb & ~expired), self.pay_index.eq(count)]

        # The CRC is linear: crc8(crc, byte) = crc8(crc, 0) ^ crc8(0, byte), and the second
        # half (`byte_crc`) is registered with the byte; the CRC starts from 0 at TYPE.
        byte_crc = Signal(8)
        m.d.sync += byte_crc.eq(crc8_gateware(Const(0, 8), rx))
        # The first half is registered from the CRC too (it only changes at strobes), so
        # the CRC's next value is an XOR of two registers.
        crc_shift = Signal(8)
        m.d.sync += crc_shift.eq(crc8_gateware(crc, Const(0, 8)))
        # The payload's next count and `last` are worked out ahead into registers too.
        count_next, left_next, left_two = Signal.like(count), Signal.like(left), Signal()
        m.d.sync += [count_next.eq(count + 1), left_next.eq(left - 1), left_two.eq(left == 2)]
        # The registers a state loads from its byte take it whether or not the frame has
        # timed out in that very cycle (a later state loads them again before they are
        # read), so `drop` is only in front of the states and the strobes.
        with m.If(stb):
            with m.If(~hunt & ~crcs):
                m.d.sync += crc.eq(byte_crc ^ Mux(typ, 0, crc_shift))
            with m.If(typ):
                m.d.sync += [self.kind.eq(byte), of_kind.eq(is_kind)]
            with m.If(len_lo):
                m.d.sync += length[:8].eq(byte)
            with m.If(len_hi):
                full = Cat(length[:8], byte)
                m.d.sync += [length.eq(full), count.eq(0), left.eq(full[:len(left)]),
                             last.eq(len_one)]
            with m.If(pay):
                m.d.sync += [count.eq(count_next), left.eq(left_next), last.eq(left_two)]
        # The next state, one flip-flop each, written out so that each is a function of a
        # few flip-flops: HUNT waits for SYNC; at TYPE a known type goes on, a repeated SYNC
        # may be the real one, anything else is garbage; LEN_HI goes to the payload, or to
        # the CRC for an empty one, or (no request type has this length) back to HUNT.
        go_hunt = (typ & ~known & ~is_sync) | (len_hi & ~go_pay & ~go_crc) | crcs
        with m.If(drop):
            m.d.sync += [hunt.eq(1), typ.eq(0), len_lo.eq(0), len_hi.eq(0), pay.eq(0),
                         crcs.eq(0)]
        with m.Elif(stb):
            m.d.sync += [hunt.eq(Mux(hunt, ~is_sync, go_hunt)),
                         typ.eq((hunt | typ & ~known) & is_sync),
                         len_lo.eq(typ & known),
                         len_hi.eq(len_lo),
                         pay.eq(len_hi & go_pay | pay & ~last),
                         crcs.eq(len_hi & ~go_pay & go_crc | pay & last)]
        good = crcs & stb & ~expired & crc_ok
        m.d.sync += [self.infer.eq(good & of_kind[kinds.index(REQ_INFER)]),
                     self.info.eq(good & of_kind[kinds.index(REQ_INFO)]),
                     self.crc_error.eq(crcs & stb & ~expired & ~crc_ok)]
        return m


class FrameSender(wiring.Component):
    """Sends one frame: ``kind`` and ``length`` are taken at ``start`` (which must come
    only while not ``busy``); SYNC, LEN and CRC are added here. The payload is not copied:
    the sender asks for byte ``index`` and the caller answers on ``byte`` (from data it
    holds still while ``busy``), which costs a byte multiplexer instead of a register per
    payload bit. ``byte`` is read once per byte sent, when the transmitter is ready again
    after taking the previous byte (a UART: a byte time after ``index`` moved, so the
    caller may answer through registers). ``done`` pulses as the last byte is handed on.
    Bytes go out through ``tx_data``/``tx_stb`` (a valid/ready handshake with
    ``tx_ready``), both from registers."""

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
        # For 100 MHz every decision reads flip-flops through at most two LUTs:
        # * the byte offered to the transmitter sits in a register (`out`, `tx_stb` =
        #   `full`), so neither the choice of byte nor the byte multiplexer is in front of
        #   the transmitter; it is loaded when `free` (a register: the transmitter was ready
        #   and nothing was offered, a cycle ago; it skips a cycle after each load);
        # * the header is a shift register (`hdr`: SYNC, TYPE, LEN), `hleft` marks the
        #   header bytes still to go, `pay`/`crc_next` the payload and the CRC;
        # * a byte enters the CRC as the transmitter takes it (`out_crc`: SYNC and the CRC
        #   do not), from `out`; the CRC byte is loaded 10 bit times later, when the
        #   transmitter is ready again.
        crc = Signal(8)
        hdr = Signal(32)
        hleft = Signal(4)
        pay = Signal()
        crc_next = Signal()
        len0 = Signal()
        last = Signal()  # the next payload byte is the last one, in a register
        left = Signal(range(self.max_len + 1))  # payload bytes still to send
        out = Signal(8)
        full = Signal()
        out_crc = Signal()
        free = Signal()
        m.d.comb += [self.tx_data.eq(out), self.tx_stb.eq(full)]
        m.d.sync += [self.done.eq(0), free.eq(self.tx_ready & ~full & ~free)]
        # The payload's next index, count and `last` are worked out ahead into registers
        # (payload bytes are loaded at least two cycles apart).
        index_next = Signal.like(self.index)
        left_next = Signal.like(left)
        left_two = Signal()
        m.d.sync += [index_next.eq(self.index + 1), left_next.eq(left - 1),
                     left_two.eq(left == 2)]
        with m.If(full & self.tx_ready):
            m.d.sync += full.eq(0)
            with m.If(out_crc):
                m.d.sync += crc.eq(crc8_gateware(crc, out))

        # hleft[0], `pay` and `crc_next` are one-hot while busy, so each load tests one.
        # The index and the CRC are cleared while idle; `left`, `last` and `len0` are
        # loaded with the TYPE byte from the length in `hdr` (compared a cycle ahead).
        len_one, len_zero = Signal(), Signal()
        m.d.sync += [len_one.eq(hdr[8:24] == 1), len_zero.eq(hdr[8:24] == 0)]
        with m.If(~self.busy):
            m.d.sync += [self.index.eq(0), crc.eq(0)]
        with m.If(self.start):
            m.d.sync += [hdr.eq(Cat(Const(SYNC, 8), self.kind, self.length)),
                         hleft.eq(0b1111), self.busy.eq(1)]
        # Each load's enable is a register, `free` and the state it tests worked out a
        # cycle ahead (the state only changes at loads, after which `free` is low, and at
        # `start`, which at worst skips one chance to load).
        can = self.tx_ready & ~full & ~free
        ld_any, ld_hdr, ld_type, ld_len_hi, ld_pay, ld_crc = (Signal(name=n) for n in (
            "ld_any", "ld_hdr", "ld_type", "ld_len_hi", "ld_pay", "ld_crc"))
        # The header states that test two bits of `hleft` are registered from it too (it
        # only changes at loads and at `start`, as above), so each enable is one LUT.
        at_type, at_len_hi = Signal(), Signal()
        m.d.sync += [at_type.eq(hleft[2] & ~hleft[3]), at_len_hi.eq(hleft[0] & ~hleft[1])]
        m.d.sync += [ld_any.eq(can & self.busy), ld_hdr.eq(can & hleft[0]),
                     ld_type.eq(can & at_type), ld_len_hi.eq(can & at_len_hi),
                     ld_pay.eq(can & pay), ld_crc.eq(can & crc_next)]
        with m.If(ld_any):
            m.d.sync += [full.eq(1), out_crc.eq(~hleft[3] & ~crc_next)]
        with m.If(ld_hdr):
            m.d.sync += [out.eq(hdr[:8]), hdr.eq(hdr[8:]), hleft.eq(hleft[1:])]
        with m.If(ld_type):
            m.d.sync += [left.eq(hdr[8:8 + len(left)]), last.eq(len_one), len0.eq(len_zero)]
        with m.If(ld_len_hi):  # the last header byte
            m.d.sync += [pay.eq(~len0), crc_next.eq(len0)]
        with m.If(ld_pay):
            m.d.sync += out.eq(self.byte)
            with m.If(last):
                m.d.sync += [pay.eq(0), crc_next.eq(1)]
            with m.Else():
                m.d.sync += [self.index.eq(index_next), left.eq(left_next),
                             last.eq(left_two)]
        with m.If(ld_crc):
            # The last payload byte entered the CRC as it was taken, before `free`.
            m.d.sync += [out.eq(crc), crc_next.eq(0), self.busy.eq(0), self.done.eq(1)]
        return m
