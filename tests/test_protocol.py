"""The frame format: CRC, encoding, and the software receiver's resynchronisation."""

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from lgn_fpga import protocol as p
from lgn_fpga.gateware.framing import crc8_gateware


def test_crc8_is_the_standard_crc8_smbus():
    assert p.crc8(b"123456789") == 0xF4  # the catalogue check value of CRC-8 (poly 0x07)


def test_gateware_crc_step_equals_the_software_step():
    crc, byte = Signal(8), Signal(8)
    m = Module()
    out = Signal(8)
    m.d.comb += out.eq(crc8_gateware(crc, byte))
    pairs = np.random.default_rng(0).integers(0, 256, (300, 2)).tolist() + [[0, 0], [255, 255]]
    seen = []

    async def bench(ctx):
        for c, b in pairs:
            ctx.set(crc, c)
            ctx.set(byte, b)
            seen.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [p.crc8_step(c, b) for c, b in pairs]


def test_request_packs_input_bit_i_into_byte_i_div_8_bit_i_mod_8():
    layout = p.PayloadLayout(inputs=10, classes=3, score_width=4)
    bits = np.zeros(10, dtype=np.uint8)
    bits[[0, 9]] = 1
    frame = layout.encode_request(0x42, bits)
    assert frame[:4] == bytes([p.SYNC, p.REQ_INFER, 3, 0])
    assert frame[4:7] == bytes([0x42, 0x01, 0x02])
    assert frame[7] == p.crc8(frame[1:7])


def test_result_payload_round_trips():
    layout = p.PayloadLayout(inputs=5, classes=3, score_width=9)  # 2-byte scores
    payload = bytes([7, 2]) + (300).to_bytes(2, "little") + (5).to_bytes(2, "little") + \
        (511).to_bytes(2, "little")
    seq, cls, scores = layout.decode_result(payload)
    assert (seq, cls, scores.tolist()) == (7, 2, [300, 5, 511])


def test_info_round_trips():
    info = p.BoardInfo(p.VERSION, 256, 10, 6, 9, "0123456789abcdef", 48_000_000)
    assert p.decode_info(p.encode_info(info)) == info


frames = st.lists(st.tuples(st.sampled_from([p.RSP_INFO, p.RSP_BIST, p.RSP_ERROR]),
                            st.integers(0, 2**32 - 1)), min_size=1, max_size=5)
noise = st.binary(max_size=12)


@settings(max_examples=200, deadline=None)
@given(frames, st.lists(noise, min_size=6, max_size=6), st.integers(1, 7))
def test_decoder_recovers_every_frame_between_noise_split_anywhere(items, noises, chunk):
    lengths = p.response_lengths(None)
    wire = bytearray()
    sent = []
    for (kind, seed), junk in zip(items, noises):
        payload = np.random.default_rng(seed).integers(0, 256, lengths[kind]).astype(
            np.uint8).tobytes()
        wire += junk + p.encode_frame(kind, payload)
        sent.append((kind, payload))
    decoder = p.Decoder(lengths)
    got = []
    for i in range(0, len(wire), chunk):  # bytes arrive in arbitrary pieces
        got += decoder.feed(bytes(wire[i:i + chunk]))
    # Noise may, rarely, itself contain a valid frame; every real frame still comes through.
    real = iter(got)
    assert all(any(f == s for f in real) for s in sent)


def test_decoder_skips_a_frame_with_a_bad_crc_and_finds_the_next():
    lengths = {p.RSP_ERROR: 2}
    good = p.encode_frame(p.RSP_ERROR, b"\x01\x02")
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    decoder = p.Decoder(lengths)
    assert decoder.feed(bytes(bad) + good) == [(p.RSP_ERROR, b"\x01\x02")]
    assert decoder.bad_crc == 1


def test_decoder_never_waits_on_a_garbage_length():
    decoder = p.Decoder({p.RSP_ERROR: 2})
    # SYNC + known type + a 64 KiB length: rejected at once, not buffered forever
    decoder.feed(bytes([p.SYNC, p.RSP_ERROR, 0xFF, 0xFF]))
    assert len(decoder.buf) == 0
