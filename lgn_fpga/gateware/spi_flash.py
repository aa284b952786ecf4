"""Reading the board's SPI flash after configuration: the folded core's program image.

An iCE40 UP5K configures itself from the SPI flash and then lets go of the flash pins
(they become user I/O). :class:`SPIFlashReader` takes them over: it wakes the flash from
deep power-down (0xAB, in case the last programmer left it asleep), then reads ``length``
bytes from ``offset`` with the plain READ command (0x03: no dummy clocks, up to 50 MHz on
the W25Q128 family, far above the SCK used here) and hands them out one per ``stb``.

:class:`SPIFlashModel` is a behavioural flash for simulation: a byte array answering
0x03 and 0x0B (fast read, 8 dummy clocks), and ignoring 0xAB, sampled on SCK edges as the
datasheet has it (mode 0: data in on the rising edge, out after the falling edge). It runs
in the same clock domain as the reader, so pysim, CXXRTL and ``sim-board`` can use it.
"""


from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["CMD_FAST_READ", "CMD_READ", "CMD_WAKE", "FLASH_OFFSET", "SPIFlashModel",
           "SPIFlashReader", "boot_cycles"]

CMD_READ = 0x03
CMD_FAST_READ = 0x0B
CMD_WAKE = 0xAB
#: Where ``lgn-fpga flash`` writes the program image: 1 MiB in, past any iCE40 bitstream
#: (a UP5K image is 104 kB) and clear of the flash's first erase blocks.
FLASH_OFFSET = 0x100000


def boot_cycles(length: int, wake_cycles: int) -> int:
    """Clocks from reset until the last of ``length`` bytes is out (SCK = clock / 2)."""
    return 2 * 8 + wake_cycles + 2 * (32 + 8 * length) + 4


class SPIFlashReader(wiring.Component):
    """Streams ``length`` bytes from flash address ``offset`` once, after reset.

    Ports: ``cs`` (high selects the flash; the board's ``cs`` pin is active low and the
    platform inverts it), ``sck``, ``copi``, ``cipo``; ``data``/``stb`` (one byte per
    strobe, in flash order), ``done`` (high once all bytes are out). SCK runs at half the
    clock. ``wake_cycles`` clocks pass between the wake command and the read (tRES1, 3 us
    on the W25Q128JV: 256 clocks cover up to 85 MHz).
    """

    cs: Out(1)
    sck: Out(1)
    copi: Out(1)
    cipo: In(1)
    data: Out(8)
    stb: Out(1)
    done: Out(1)

    def __init__(self, offset: int, length: int, *, wake_cycles: int = 256):
        if not (0 <= offset < 1 << 24 and 0 < length <= (1 << 24) - offset):
            raise ValueError(f"flash range {offset:#x} + {length} is outside 16 MiB")
        self.offset = offset
        self.length = length
        self.wake_cycles = wake_cycles
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        out = Signal(32, reset_less=True)   # bits to send, MSB first
        bits = Signal(range(33))            # bits left in this phase
        shift_in = Signal(8, reset_less=True)
        left = Signal(range(self.length + 1), init=self.length)
        wait = Signal(range(self.wake_cycles + 1), init=self.wake_cycles)
        phase = Signal()                    # 0: SCK low (set data), 1: SCK high
        m.d.sync += self.stb.eq(0)
        m.d.comb += [self.sck.eq(phase & self.cs), self.copi.eq(out[31])]

        def clock_bits(on_last):
            """One bit per two clocks; ``on_last`` runs in the clock that ends the last."""
            m.d.sync += phase.eq(~phase)
            with m.If(phase):  # the falling edge: the bit just clocked is done
                m.d.sync += [out.eq(out << 1), shift_in.eq(Cat(self.cipo, shift_in[:7])),
                             bits.eq(bits - 1)]
                with m.If(bits == 1):
                    on_last()

        with m.FSM():
            with m.State("START"):
                m.d.sync += [out.eq(CMD_WAKE << 24), bits.eq(8), phase.eq(0)]
                m.next = "WAKE"
            with m.State("WAKE"):
                m.d.comb += self.cs.eq(1)

                def woke():
                    m.next = "REST"
                clock_bits(woke)
            with m.State("REST"):  # deselected while the flash wakes
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.d.sync += [out.eq((CMD_READ << 24) | self.offset), bits.eq(32),
                                 phase.eq(0)]
                    m.next = "COMMAND"
            with m.State("COMMAND"):
                m.d.comb += self.cs.eq(1)

                def sent():
                    m.d.sync += bits.eq(8)
                    m.next = "READ"
                clock_bits(sent)
            with m.State("READ"):
                m.d.comb += self.cs.eq(1)

                def got_byte():
                    m.d.sync += [self.data.eq(Cat(self.cipo, shift_in[:7])), self.stb.eq(1),
                                 left.eq(left - 1), bits.eq(8)]
                    with m.If(left == 1):
                        m.next = "DONE"
                clock_bits(got_byte)
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
        return m


class SPIFlashModel(wiring.Component):
    """A behavioural SPI flash holding ``image`` at ``offset`` (0xFF elsewhere), for
    simulation only. Commands: 0x03 READ and 0x0B FAST READ (auto-incrementing address,
    for as long as CS stays low), 0xAB wake (no effect); anything else is ignored.
    ``reads`` counts the read commands seen (a testbench can check the reader made one)."""

    cs: In(1)
    sck: In(1)
    copi: In(1)
    cipo: Out(1)
    reads: Out(8)

    def __init__(self, image: bytes, offset: int = FLASH_OFFSET):
        self.image = bytes(image)
        self.offset = offset
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        n = max(2, len(self.image))
        m.submodules.mem = mem = Memory(shape=8, depth=n, init=list(self.image))
        rd = mem.read_port(domain="comb")
        sck_q = Signal()
        m.d.sync += sck_q.eq(self.sck)
        rise = self.sck & ~sck_q & self.cs
        fall = ~self.sck & sck_q & self.cs
        count = Signal(range(64))       # bits clocked in since CS fell
        cmd = Signal(8)
        addr = Signal(24)
        dummy = Signal(4)
        sending = Signal()
        out = Signal(8)
        bit = Signal(3)
        index = Signal(25)
        m.d.comb += [index.eq(addr - self.offset), rd.addr.eq(index[:len(rd.addr)])]
        byte = Signal(8)
        m.d.comb += byte.eq(Const(0xFF, 8))
        with m.If((addr >= self.offset) & (addr < self.offset + len(self.image))):
            m.d.comb += byte.eq(rd.data)

        with m.If(~self.cs):
            m.d.sync += [count.eq(0), sending.eq(0), self.cipo.eq(0)]
        with m.Elif(rise & ~sending):
            m.d.sync += count.eq(count + 1)
            with m.If(count < 8):
                m.d.sync += cmd.eq(Cat(self.copi, cmd[:7]))
            with m.Elif(count < 32):
                m.d.sync += addr.eq(Cat(self.copi, addr[:23]))
            with m.If(count == 31):
                with m.If(cmd == CMD_READ):
                    m.d.sync += [sending.eq(1), bit.eq(0), dummy.eq(0),
                                 self.reads.eq(self.reads + 1)]
                with m.Elif(cmd == CMD_FAST_READ):
                    m.d.sync += [sending.eq(1), bit.eq(0), dummy.eq(8),
                                 self.reads.eq(self.reads + 1)]
        with m.Elif(fall & sending):
            # After each falling edge the next bit goes out (MSB first), after the dummies.
            with m.If(dummy != 0):
                m.d.sync += dummy.eq(dummy - 1)
            with m.Else():
                with m.If(bit == 0):
                    m.d.sync += [self.cipo.eq(byte[7]), out.eq(byte << 1)]
                with m.Else():
                    m.d.sync += [self.cipo.eq(out[7]), out.eq(out << 1)]
                m.d.sync += bit.eq(bit + 1)
                with m.If(bit == 7):
                    m.d.sync += addr.eq(addr + 1)
        return m
