"""8N1 UART receiver and transmitter. ``divisor`` is clocks per bit: derive it from the clock
the logic actually runs at (after any PLL), never from the board's crystal alone."""


from amaranth.hdl import Cat, Module, Signal
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
    """Samples each bit in its middle; ``stb`` pulses one cycle with ``data``. A frame whose
    stop bit is low (a framing error, or a line break) is dropped and strobes ``error``."""

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

        # For 100 MHz: each counter reloads one constant only and has no reset (it is loaded
        # before it is read), so Yosys loads it through the flip-flops' synchronous set/reset
        # pins and the adder's sum LUT feeds the flip-flop directly; `tick`/`half_tick` are
        # `timer == 0`/`half == 0` kept in registers. The first wait, from the start edge to
        # the middle of data bit 0, is half a bit (`half`) and then a bit (`timer`).
        timer = Signal(range(self.divisor), reset_less=True)
        tick = Signal(reset_less=True)
        half_bit = self.divisor // 2 - 1
        half = Signal(range(half_bit + 1), reset_less=True)
        half_tick = Signal(reset_less=True)
        bits = Signal(range(9), reset_less=True)
        shreg = Signal(8, reset_less=True)
        m.d.sync += [self.stb.eq(0), self.error.eq(0)]

        def reload():
            m.d.sync += [timer.eq(self.divisor - 1), tick.eq(self.divisor - 1 == 0)]

        def count_down():
            m.d.sync += [timer.eq(timer - 1), tick.eq(timer == 1)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += [half.eq(half_bit), half_tick.eq(half_bit == 0), bits.eq(0)]
                    m.next = "HALF"
            with m.State("HALF"):
                with m.If(half_tick):
                    reload()
                    m.next = "DATA"
                with m.Else():
                    m.d.sync += [half.eq(half - 1), half_tick.eq(half == 1)]
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bits.eq(bits + 1)]
                    reload()
                    with m.If(bits == 7):
                        m.next = "STOP"
                with m.Else():
                    count_down()
            with m.State("STOP"):
                with m.If(tick):
                    with m.If(rx):
                        m.d.sync += [self.data.eq(shreg), self.stb.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.error.eq(1)
                        m.next = "BREAK"
                with m.Else():
                    count_down()
            with m.State("BREAK"):
                # Wait for the line to return high before hunting for the next start bit.
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """Sends ``data`` when ``stb`` is high and ``ready`` (a valid/ready handshake)."""

    tx: Out(1, init=1)
    data: In(8)
    stb: In(1)
    ready: Out(1)

    def __init__(self, divisor: int):
        if divisor < 1:
            raise ValueError("divisor must be at least 1")
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        # As in UARTRx: the counters reload one constant and have no reset (they are loaded
        # before they are read), and `ready` (bits == 0) and `tick` (timer == 0) are kept in
        # registers, set as bits and timer change (for 100 MHz).
        timer = Signal(range(self.divisor), reset_less=True)
        shreg = Signal(10, reset_less=True)
        bits = Signal(range(11), reset_less=True)
        ready = Signal(init=1)
        tick = Signal(reset_less=True)
        reload = int(self.divisor - 1 == 0)
        m.d.comb += self.ready.eq(ready)

        with m.If(ready):
            with m.If(self.stb):
                # start bit, 8 data bits LSB first, stop bit
                m.d.sync += [shreg.eq(Cat(0, self.data, 1)), bits.eq(10), ready.eq(0),
                             timer.eq(self.divisor - 1), tick.eq(reload), self.tx.eq(0)]
        with m.Elif(tick):
            m.d.sync += [timer.eq(self.divisor - 1), tick.eq(reload), bits.eq(bits - 1),
                         ready.eq(bits == 1)]
            with m.If(bits > 1):
                m.d.sync += [self.tx.eq(shreg[1]), shreg.eq(shreg >> 1)]
        with m.Else():
            m.d.sync += [timer.eq(timer - 1), tick.eq(timer == 1)]
        return m
