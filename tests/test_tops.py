"""The board tops in Amaranth's simulator, through their UART pins, bit by bit."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from amaranth.utils import bits_for
from conftest import run_bist
from lgn_fpga.sim.uart_link import SIM_DIVISOR, exchange, uart_testbench

from lgn_fpga import protocol as p
from lgn_fpga.gateware.pll import ecp5_pll_params, ice40_pll_params
from lgn_fpga.gateware.tops import BistTop, UartTop, expected_words
from lgn_fpga.net import golden
from lgn_fpga.net.random_nets import random_graph

DIVISOR = SIM_DIVISOR


def run_uart(top, data: bytes, *, until, max_cycles=200_000):
    """Send ``data`` into ``top``; return what it sends back once ``until(received)``."""
    return exchange(top, data, until=until, divisor=DIVISOR, max_cycles=max_cycles)


def frames_of(data: bytes, layout=None):
    return p.Decoder(p.response_lengths(layout)).feed(data)


@pytest.fixture(scope="module")
def net():
    return random_graph(inputs=10, layers=3, width=16, classes=4, seed=3)


def test_uart_top_answers_inference_frames_like_the_golden_model(net):
    top = UartTop(net, divisor=DIVISOR, pipeline=1)
    layout = top.layout
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (3, net.inputs), dtype=np.uint8)
    data = b"".join(layout.encode_request(40 + i, row) for i, row in enumerate(bits))
    out = run_uart(top, data, until=lambda r: len(frames_of(r, layout)) >= 3)
    frames = frames_of(out, layout)
    want = golden.predict(net, bits)
    assert [k for k, _ in frames] == [p.RSP_RESULT] * 3
    for i, (_, payload) in enumerate(frames):
        seq, cls, scores = layout.decode_result(payload)
        assert seq == 40 + i
        assert cls == want.classes[i]
        assert scores.tolist() == want.scores[i].tolist()


def test_uart_top_survives_garbage_before_a_frame(net):
    top = UartTop(net, divisor=DIVISOR, pipeline=2)
    layout = top.layout
    bits = np.ones(net.inputs, dtype=np.uint8)
    # Garbage with SYNC bytes, a plausible type and a wrong length inside it.
    garbage = bytes([0x00, p.SYNC, 0x37, p.SYNC, p.REQ_INFER, 0xFF, 0xFF, 0x13, p.SYNC])
    out = run_uart(top, garbage + layout.encode_request(7, bits),
                   until=lambda r: len(frames_of(r, layout)) >= 1)
    (kind, payload), = frames_of(out, layout)
    assert kind == p.RSP_RESULT
    seq, cls, scores = layout.decode_result(payload)
    want = golden.predict(net, bits[None])
    assert (seq, cls, scores.tolist()) == (7, want.classes[0], want.scores[0].tolist())


def test_uart_top_rejects_a_frame_with_a_bad_crc_and_keeps_working(net):
    top = UartTop(net, divisor=DIVISOR)
    layout = top.layout
    bits = np.zeros(net.inputs, dtype=np.uint8)
    bad = bytearray(layout.encode_request(1, bits))
    bad[-1] ^= 0x5A
    out = run_uart(top, bytes(bad) + layout.encode_request(2, bits),
                   until=lambda r: len(frames_of(r, layout)) >= 2)
    (k1, p1), (k2, p2) = frames_of(out, layout)
    assert (k1, p1) == (p.RSP_ERROR, bytes([p.ERR_CRC, p.REQ_INFER]))
    assert k2 == p.RSP_RESULT and layout.decode_result(p2)[0] == 2


def test_uart_top_drops_a_half_frame_after_the_idle_timeout(net):
    top = UartTop(net, divisor=DIVISOR, timeout=300)
    layout = top.layout
    bits = np.zeros(net.inputs, dtype=np.uint8)
    half = layout.encode_request(9, bits)[:5]
    sent = []

    def take():
        # the half frame, then silence longer than the timeout, then a whole frame
        if not sent:
            sent.append(0)
            return half
        if len(sent) < 1500:
            sent.append(0)
            return b""
        if len(sent) == 1500:
            sent.append(0)
            return layout.encode_request(10, bits)
        return b""

    received = bytearray()
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(uart_testbench(top.rx, top.tx, DIVISOR, take_input=take,
                                 give_output=received.extend,
                                 stop=lambda: len(frames_of(bytes(received), layout)) >= 1
                                 or len(sent) > 1501 and len(received) > 100))
    sim.run()
    (kind, payload), = frames_of(bytes(received), layout)
    assert kind == p.RSP_RESULT and layout.decode_result(payload)[0] == 10


def test_uart_top_info_describes_the_net(net):
    top = UartTop(net, divisor=DIVISOR, clock_hz=12_000_000, model_hash="ab" * 32)
    out = run_uart(top, p.encode_frame(p.REQ_INFO, b""),
                   until=lambda r: len(frames_of(r)) >= 1)
    (kind, payload), = frames_of(out)
    info = p.decode_info(payload)
    assert kind == p.RSP_INFO
    assert (info.inputs, info.classes, info.latency) == (net.inputs, net.classes, top.latency)
    assert info.model_hash == "ab" * p.HASH_BYTES and info.clock_hz == 12_000_000


@pytest.mark.parametrize("pipeline", [1, 2])
def test_bist_passes_at_one_vector_per_clock(net, pipeline):
    bits = np.random.default_rng(5).integers(0, 2, (40, net.inputs), dtype=np.uint8)
    top = BistTop(net, bits, divisor=DIVISOR, pipeline=pipeline)
    out = run_bist(top)
    assert out["done"] and out["passed"] and not out["failed"]
    # Fully pipelined: N vectors take N clocks plus the core's latency, nothing more.
    assert out["cycles"] == 40 + top.core.latency
    assert out["first"] == 0xFFFFFFFF


def test_bist_fails_when_one_stored_expected_vector_is_corrupted(net):
    bits = np.random.default_rng(5).integers(0, 2, (40, net.inputs), dtype=np.uint8)
    words, class_width = expected_words(net, bits_for(net.group_size), bits)
    words[17] ^= 1 << class_width  # one score bit of vector 17
    top = BistTop(net, bits, divisor=DIVISOR, expected=words)
    out = run_bist(top)
    assert out["done"] and out["failed"] and not out["passed"]
    assert out["first"] == 17


def test_bist_reports_over_the_uart(net):
    bits = np.random.default_rng(6).integers(0, 2, (8, net.inputs), dtype=np.uint8)
    top = BistTop(net, bits, divisor=DIVISOR)
    out = run_uart(top, b"", until=lambda r: len(frames_of(r)) >= 1)
    (kind, payload), = frames_of(out)
    report = p.decode_bist(payload)
    assert kind == p.RSP_BIST
    assert report.passed and report.vectors == 8 and report.first_failure is None
    assert report.cycles == 8 + top.core.latency


def test_expected_words_pack_class_then_scores(net):
    bits = np.zeros((1, net.inputs), dtype=np.uint8)
    words, cw = expected_words(net, 3, bits)
    want = golden.predict(net, bits)
    assert words[0] & ((1 << cw) - 1) == want.classes[0]
    assert (words[0] >> cw) & 7 == want.scores[0][0]


def test_pll_settings_land_near_the_asked_frequency():
    ice = ice40_pll_params(12e6, 48e6)
    assert abs(ice["freq"] - 48e6) < 0.5e6
    assert ice["freq"] == 12e6 / (ice["DIVR"] + 1) * (ice["DIVF"] + 1) / 2 ** ice["DIVQ"]
    ecp = ecp5_pll_params(25e6, 50e6)
    assert ecp["freq"] == 50e6
