"""The frame receiver and sender (lgn_fpga.gateware.framing) alone, against the frame format
of lgn_fpga.protocol, with bytes at the pace and spacing the UART gives them."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from lgn_fpga import protocol as p
from lgn_fpga.gateware.framing import FrameReceiver, FrameSender


@pytest.mark.parametrize("length", [0, 1, 2, 5])
def test_sender_frames_the_payload_through_a_stalling_transmitter(length):
    # The caller answers `byte` through two registers (as UartTop does), and the
    # transmitter takes each byte some cycles after it is offered, then stays busy: the
    # frame that comes out is exactly what protocol.encode_frame makes, every time.
    rng = np.random.default_rng(length)
    frames = [bytes(rng.integers(0, 256, length, dtype=np.uint8)) for _ in range(3)]
    m = Module()
    m.submodules.send = send = FrameSender(8)
    payload = Signal(64)
    picked, answer = Signal(8), Signal(8)
    m.d.sync += [picked.eq(payload.word_select(send.index, 8)), answer.eq(picked)]
    m.d.comb += send.byte.eq(answer)
    out, dones = [], []

    async def bench(ctx):
        busy_for = 0
        for frame in frames:
            ctx.set(payload, int.from_bytes(frame.ljust(8, b"\0"), "little"))
            ctx.set(send.kind, 0x81)
            ctx.set(send.length, length)
            ctx.set(send.start, 1)
            await ctx.tick()
            ctx.set(send.start, 0)
            while True:
                ready = busy_for == 0 and rng.random() < 0.5
                ctx.set(send.tx_ready, ready)
                taken = ready and ctx.get(send.tx_stb)
                if taken:
                    out.append(ctx.get(send.tx_data))
                    busy_for = int(rng.integers(2, 12))
                await ctx.tick()
                busy_for = max(0, busy_for - 1)
                if ctx.get(send.done):
                    dones.append(len(out))
                if not ctx.get(send.busy) and not ctx.get(send.tx_stb):
                    break

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    want = b"".join(p.encode_frame(0x81, f) for f in frames)
    assert bytes(out) == want
    assert len(dones) == len(frames)


def _feed(receiver, stream, gaps):
    """Run ``receiver`` on ``stream``, byte i followed by gaps[i] idle cycles; return the
    (infer payload, info, crc_error kind) events in order."""
    events = []

    async def bench(ctx):
        # Each byte goes on rx_data the cycle before its strobe (in the last idle cycle after
        # the previous byte's), as the UART receiver gives it; gaps are at least 2 cycles.
        ctx.set(receiver.rx_data, stream[0])
        await ctx.tick()
        for i, gap in enumerate(gaps):
            assert gap >= 2
            ctx.set(receiver.rx_stb, 1)
            for j in range(1 + gap):
                if j == gap and i + 1 < len(stream):
                    ctx.set(receiver.rx_data, stream[i + 1])
                await ctx.tick()
                ctx.set(receiver.rx_stb, 0)
                if ctx.get(receiver.infer):
                    events.append(("infer", ctx.get(receiver.payload)))
                if ctx.get(receiver.info):
                    events.append(("info", None))
                if ctx.get(receiver.crc_error):
                    events.append(("crc", ctx.get(receiver.kind)))

    sim = Simulator(receiver)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return events


def test_receiver_finds_every_frame_among_garbage_bad_crcs_and_timeouts():
    layout = p.PayloadLayout(20, 4, 3)
    rng = np.random.default_rng(5)
    stream, gaps, want = [], [], []
    for _ in range(40):
        pick = rng.integers(0, 5)
        if pick == 0:  # a request
            seq, bits = int(rng.integers(0, 256)), rng.integers(0, 2, 20)
            frame = layout.encode_request(seq, bits)
            want.append(("infer", int.from_bytes(frame[4:-1], "little")))
        elif pick == 1:
            frame = p.encode_frame(p.REQ_INFO, b"")
            want.append(("info", None))
        elif pick == 2:  # a bad CRC
            frame = bytearray(layout.encode_request(1, np.zeros(20)))
            frame[-1] ^= 0x10
            want.append(("crc", p.REQ_INFER))
        elif pick == 3:  # garbage without SYNC, a wrong length, or an unknown type
            frame = bytes([0x00, 0x41, p.SYNC, p.REQ_INFER, 0x07, 0x00, 0x13, p.SYNC, 0x42])
        else:  # half a frame, then silence past the timeout
            frame = layout.encode_request(2, np.ones(20))[:6]
        stream += frame
        gaps += [int(g) for g in rng.choice([2, 3, 9, 40], len(frame))]
        if pick == 4:
            gaps[-1] = 400
    assert _feed(FrameReceiver(layout, timeout=300), stream, gaps) == want


def test_receiver_timeout_drops_a_frame_only_after_the_idle_gap():
    layout = p.PayloadLayout(8, 2, 2)
    frame = layout.encode_request(3, np.ones(8))
    for gap, heard in ((150, True), (330, False)):
        gaps = [3] * len(frame)
        gaps[2] = gap  # in the middle of the header
        events = _feed(FrameReceiver(layout, timeout=200), frame, gaps)
        assert (len(events) == 1) == heard
