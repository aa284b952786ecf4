"""UART receiver and transmitter against a bit-level model of the line."""

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from lgn_fpga.errors import UserError
from lgn_fpga.gateware.uart import UARTRx, UARTTx, divisor_for


def line_bits(byte, divisor, *, stop=1):
    return [b for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [stop]
            for b in [bit] * divisor]


@pytest.mark.parametrize("divisor", [4, 7])
def test_receiver_decodes_every_byte_value(divisor):
    rx = UARTRx(divisor)
    got = []

    async def bench(ctx):
        for byte in range(256):
            for level in line_bits(byte, divisor) + [1] * divisor:
                ctx.set(rx.rx, level)
                await ctx.tick()
                if ctx.get(rx.stb):
                    got.append(ctx.get(rx.data))

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == list(range(256))


@pytest.mark.parametrize("divisor", [4, 7])
def test_receiver_data_leads_and_outlasts_its_strobe(divisor):
    """The frame receiver compares ``data`` a cycle before ``stb`` and reads it a cycle after:
    each byte must be on ``data`` then too."""
    rx = UARTRx(divisor)
    seen = []

    async def bench(ctx):
        history = []
        for byte in (0x00, 0xFF, 0xA5, 0x5A, 0x01):
            for level in line_bits(byte, divisor) + [1] * 2:
                ctx.set(rx.rx, level)
                await ctx.tick()
                history.append(ctx.get(rx.data))
                if len(history) >= 3 and seen and seen[-1][1] is None:
                    seen[-1] = (seen[-1][0], history[-1])  # the cycle after the strobe
                if ctx.get(rx.stb):
                    seen.append(((history[-2], history[-1]), None))

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert [(before, at, after) for (before, at), after in seen] == [
        (b, b, b) for b in (0x00, 0xFF, 0xA5, 0x5A, 0x01)]


def test_receiver_drops_a_byte_whose_stop_bit_is_low_and_recovers():
    rx = UARTRx(4)
    got, errors = [], []

    async def bench(ctx):
        levels = line_bits(0x55, 4, stop=0) + [0] * 12 + [1] * 8 + line_bits(0xA3, 4) + [1] * 8
        for level in levels:
            ctx.set(rx.rx, level)
            await ctx.tick()
            if ctx.get(rx.stb):
                got.append(ctx.get(rx.data))
            if ctx.get(rx.error):
                errors.append(1)

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [0xA3] and errors == [1]


def test_transmitter_sends_8n1_at_the_divisor_and_handshakes():
    tx = UARTTx(5)
    levels = []

    async def bench(ctx):
        ctx.set(tx.data, 0x4B)
        ctx.set(tx.stb, 1)
        assert ctx.get(tx.ready)
        await ctx.tick()
        ctx.set(tx.stb, 0)
        for _ in range(10 * 5):
            levels.append(ctx.get(tx.tx))
            assert not ctx.get(tx.ready) or len(levels) == 50
            await ctx.tick()
        assert ctx.get(tx.ready) and ctx.get(tx.tx) == 1

    sim = Simulator(tx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert levels == line_bits(0x4B, 5)


def test_transmitter_into_receiver_round_trips():
    m = Module()
    m.submodules.tx = tx = UARTTx(6)
    m.submodules.rx = rx = UARTRx(6)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [0x00, 0xFF, 0xA5, 0x3C, 0x81]
    got = []

    async def bench(ctx):
        pending = list(data)
        for _ in range(len(data) * 80):
            if pending and ctx.get(tx.ready):
                ctx.set(tx.data, pending.pop(0))
                ctx.set(tx.stb, 1)
            else:
                ctx.set(tx.stb, 0)
            await ctx.tick()
            if ctx.get(rx.stb):
                got.append(ctx.get(rx.data))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == data


def test_divisor_follows_the_clock_and_refuses_impossible_rates():
    assert divisor_for(12e6, 115200) == 104
    assert divisor_for(30e6, 115200) == 260
    assert divisor_for(12e6, 3_000_000) == 4  # exact
    with pytest.raises(UserError, match="too fast"):
        divisor_for(12e6, 6_000_000)
    with pytest.raises(UserError, match="% off"):
        divisor_for(12e6, 2_500_000)  # divisor 5 gives 2.4 Mbaud, 4% off


@pytest.mark.parametrize("divisor", [5, 8, 13])
def test_receiver_samples_every_bit_in_its_middle(divisor):
    # Each data bit holds its value only in the middle of its time (a window of 3 cycles
    # around cycle divisor // 2 of the bit, or 1 at divisor 5) and the opposite level
    # elsewhere: only a receiver whose timer ticks exactly every `divisor` cycles from half
    # a bit after the start edge reads the bytes. The start bit is low throughout, so the
    # start edge is where the frame begins.
    rx = UARTRx(divisor)
    half = 0 if divisor < 7 else 1
    got, errors = [], []

    def levels(byte):
        out = [0] * divisor
        for bit in [(byte >> i) & 1 for i in range(8)]:
            out += [bit if abs(k - divisor // 2) <= half else 1 - bit for k in range(divisor)]
        return out + [1] * 2 * divisor

    async def bench(ctx):
        for byte in (0x00, 0xFF, 0x55, 0xAA, 0x0F, 0x96):
            for level in levels(byte):
                ctx.set(rx.rx, level)
                await ctx.tick()
                if ctx.get(rx.stb):
                    got.append(ctx.get(rx.data))
                if ctx.get(rx.error):
                    errors.append(byte)

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [0x00, 0xFF, 0x55, 0xAA, 0x0F, 0x96] and errors == []
