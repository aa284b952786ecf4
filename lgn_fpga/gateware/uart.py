"""8N1 UART receiver and transmitter. ``divisor`` is clocks per bit: derive it from the clock
the logic actually runs at (after any PLL), never from the board's crystal alone."""


from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out


def divisor_for(clock_hz: float, baud: int) -> int:
    """Clocks per bit, refusing rates the clock cannot make within 2% (8N1 tolerates ~4%)."""
    from lgn_fpga.errors import UserError

    divisor = round(clock_hz / baud)
    if divisor < 4:
        raise UserError(f"{baud} baud is too fast for a {clock_hz / 1e6:g} MHz clock "
                        f"(needs at least 4 clocks per bit)")
    error = abs(clock_hz / divisor - baud) / baud
    if error > 0.02:
        raise UserError(f"{baud} baud is {100 * error:.1f}% off at {clock_hz / 1e6:g} MHz "
                        f"(divisor {divisor}); pick another baud rate or clock")
    return divisor


class UARTRx(wiring.Component):
    """Samples each bit in its middle; ``stb`` pulses one cycle with ``data``, which holds
    the byte from a bit time before ``stb`` (once its last data bit is in) until the next
    frame's last data bit. A frame whose stop bit is low (a framing error, or a line break)
    is dropped and strobes ``error`` (``data`` then holds its bits, without ``stb``)."""

    rx: In(1, init=1)
    data: Out(8)
    stb: Out(1)
    error: Out(1)

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError("divisor must be at least 4")
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        # The pin is asynchronous to our clock: synchronise before looking at it.
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)

        # For 100 MHz every decision reads flip-flops only, through one or two LUTs. One
        # timer makes all the waits: while idle it holds `start` (loaded every cycle), so
        # the first tick, half a bit and a bit after the start edge, is the middle of data
        # bit 0. It counts down past 0, and its sign bit (the carry chain's end) is the tick
        # itself, no comparison; at a tick (-1) it adds `divisor - 1` instead of -1, so each
        # tick is `divisor` clocks after the last with the idle load the only constant it
        # takes: one synchronous set/reset net (`idle`, a flip-flop) for all its flip-flops
        # and one unbroken carry chain (two loaded constants split it across logic tiles).
        # Ticks 1..8 sample the data bits (`shreg` shifts on every tick), tick 9
        # (`bits[3]`) the stop bit.
        half_bit = self.divisor // 2 - 1
        start = half_bit + self.divisor - 1  # ticks `start + 1` cycles after it is loaded
        timer = Signal(start.bit_length() + 1, reset_less=True)
        tick = timer[-1]
        idle = Signal(init=1)
        brk = Signal()  # a stop bit was low: wait for the line to go high before hunting
        bits = Signal(4, reset_less=True)
        shreg = Signal(8, reset_less=True)
        stop = bits[3]

        with m.If(idle):
            m.d.sync += [timer.eq(start), bits.eq(0)]
        with m.Else():
            m.d.sync += timer.eq(timer + Mux(tick, self.divisor - 1, -1))
            with m.If(tick):
                m.d.sync += [bits.eq(bits + 1), shreg.eq(Cat(shreg[1:], rx))]

        m.d.sync += [self.stb.eq(tick & stop & rx), self.error.eq(tick & stop & ~rx)]
        # `data` takes the byte as soon as its last data bit is in (`shreg` holds still
        # until the stop bit's tick), a bit time before `stb`: a reader may work on it
        # ahead of the strobe (FrameReceiver compares it through registers, for 100 MHz).
        with m.If(stop & ~idle):
            m.d.sync += self.data.eq(shreg)
        with m.If(idle):
            with m.If(brk):
                with m.If(rx):
                    m.d.sync += brk.eq(0)
            with m.Elif(~rx):
                m.d.sync += idle.eq(0)
        with m.Elif(tick & stop):
            m.d.sync += [idle.eq(1), brk.eq(~rx)]
        return m


class UARTTx(wiring.Component):
    """Sends ``data`` when ``stb`` is high and ``ready`` (a valid/ready handshake)."""

    tx: Out(1, init=1)
    data: In(8)
    stb: In(1)
    ready: Out(1)

    def __init__(self, divisor: int):
        if divisor < 2:
            raise ValueError("divisor must be at least 2")
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        # As in UARTRx: the timer counts down past 0 and its sign bit is the tick; it holds
        # `divisor - 2` while idle (`ready`, its synchronous set/reset), so the first tick
        # is a bit after the start bit begins, and at each tick it loads `divisor - 2`.
        # `ready` is a register (for 100 MHz).
        period = self.divisor - 2
        timer = Signal(max(1, period.bit_length()) + 1, reset_less=True)
        tick = timer[-1]
        shreg = Signal(10, reset_less=True)
        bits = Signal(range(11), reset_less=True)
        ready = Signal(init=1)
        m.d.comb += self.ready.eq(ready)

        with m.If(ready):
            m.d.sync += timer.eq(period)
            with m.If(self.stb):
                # start bit, 8 data bits LSB first, stop bit
                m.d.sync += [shreg.eq(Cat(0, self.data, 1)), bits.eq(10), ready.eq(0),
                             self.tx.eq(0)]
        with m.Else():
            m.d.sync += timer.eq(Mux(tick, self.divisor - 2, timer - 1))
            with m.If(tick):
                # Shifting in ones, so that the last tick (the stop bit's end) keeps the
                # line high without a `bits > 1` test in front of the enables.
                m.d.sync += [bits.eq(bits - 1), ready.eq(bits == 1), self.tx.eq(shreg[1]),
                             shreg.eq(Cat(shreg[1:], 1))]
        return m
