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

        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bits = Signal(range(9))
        shreg = Signal(8)
        m.d.sync += [self.stb.eq(0), self.error.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # From the start edge to the middle of data bit 0: one and a half bits.
                    m.d.sync += [timer.eq(self.divisor * 3 // 2 - 1), bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bits.eq(bits + 1),
                                 timer.eq(self.divisor - 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.d.sync += [self.data.eq(shreg), self.stb.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.error.eq(1)
                        m.next = "BREAK"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
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
        timer = Signal(range(self.divisor))
        shreg = Signal(10)
        bits = Signal(range(11))
        m.d.comb += self.ready.eq(bits == 0)

        with m.If(bits == 0):
            with m.If(self.stb):
                # start bit, 8 data bits LSB first, stop bit
                m.d.sync += [shreg.eq(Cat(0, self.data, 1)), bits.eq(10),
                             timer.eq(self.divisor - 1), self.tx.eq(0)]
        with m.Elif(timer == 0):
            m.d.sync += [timer.eq(self.divisor - 1), bits.eq(bits - 1)]
            with m.If(bits > 1):
                m.d.sync += [self.tx.eq(shreg[1]), shreg.eq(shreg >> 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
