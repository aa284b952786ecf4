"""The real host runner (lgn_fpga.host.runner, pyserial) against the UART top running in Amaranth's
simulator, joined by a pseudo-terminal: bytes the host writes reach the top's rx pin bit by
bit; bits from its tx pin come back as bytes. Nothing here agrees with itself: the host only
sees a serial port, the gateware only sees pin levels."""

import json
import os
import time
import tty

import numpy as np
import pytest
from amaranth.utils import bits_for
from click.testing import CliRunner
from lgn_fpga.sim.uart_link import SIM_DIVISOR as DIVISOR
from lgn_fpga.sim.uart_link import PtyBoard as SimulatedBoard

from lgn_fpga import protocol as p
from lgn_fpga.cli import main
from lgn_fpga.gateware.tops import BistTop, UartTop, expected_words
from lgn_fpga.host.runner import Board, BoardError
from lgn_fpga.net import golden
from lgn_fpga.net import graph as gg
from lgn_fpga.net.random_nets import random_graph


@pytest.fixture(scope="module")
def net():
    return random_graph(inputs=20, layers=3, width=24, classes=4, seed=11)


@pytest.fixture
def board_sim(net):
    sim = SimulatedBoard(UartTop(net, divisor=DIVISOR, pipeline=1, model_hash=net.sha256()))
    yield sim
    sim.close()


def test_host_classifies_through_a_pty_like_the_golden_model(net, board_sim):
    bits = np.random.default_rng(2).integers(0, 2, (24, net.inputs), dtype=np.uint8)
    with Board(board_sim.path, timeout=5) as board:
        info = board.info()
        assert (info.inputs, info.classes) == (net.inputs, net.classes)
        assert net.sha256().startswith(info.model_hash)
        result = board.infer(bits, window=4)
    want = golden.predict(net, bits)
    assert result.classes.tolist() == want.classes.tolist()
    assert result.scores.tolist() == want.scores.tolist()
    assert result.throughput > 0 and (result.latencies > 0).all()


def test_host_survives_garbage_on_the_line_both_ways(net):
    sim = SimulatedBoard(UartTop(net, divisor=DIVISOR, pipeline=2))
    try:
        bits = np.random.default_rng(3).integers(0, 2, (6, net.inputs), dtype=np.uint8)
        with Board(sim.path, timeout=5) as board:
            sim.inject(bytes([0x13, p.SYNC, 0x82, 0x00, p.SYNC, 0x77]))
            # garbage towards the board, with SYNC bytes and a bogus length in it
            board.send_raw(bytes([0xFF, p.SYNC, p.REQ_INFER, 0x40, 0x40, p.SYNC, 0x00]))
            result = board.infer(bits)
            assert board.decoder.dropped > 0  # the host skipped the board-side garbage
    finally:
        sim.close()
    assert result.classes.tolist() == golden.predict(net, bits).classes.tolist()


def test_host_reports_a_rejected_malformed_frame_and_the_link_recovers(net, board_sim):
    bits = np.zeros(net.inputs, dtype=np.uint8)
    with Board(board_sim.path, timeout=5) as board:
        board.info()
        frame = bytearray(board.layout.encode_request(5, bits))
        frame[5] ^= 0x01  # one flipped payload bit: the CRC no longer matches
        board.send_raw(bytes(frame))
        with pytest.raises(BoardError, match="rejected a request frame.*CRC mismatch"):
            board.read_frame({p.RSP_RESULT})
        result = board.infer(bits[None, :])
    assert result.classes[0] == golden.predict(net, bits[None, :]).classes[0]


def test_host_times_out_with_a_clear_message_when_nothing_answers():
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        start = time.monotonic()
        with Board(os.ttyname(slave), timeout=0.2) as board:
            with pytest.raises(BoardError, match="no INFO answer from the board .* baud"):
                board.info(attempts=2)
        assert time.monotonic() - start < 3
    finally:
        os.close(master)
        os.close(slave)


def test_run_command_checks_every_answer_against_the_golden_model(net, board_sim, tmp_path):
    model = tmp_path / "net.json"
    gg.save(net, model)
    bits = np.random.default_rng(4).integers(0, 2, (10, net.inputs), dtype=np.uint8)
    np.save(tmp_path / "in.npy", bits)
    result = CliRunner().invoke(main, ["run", "--port", board_sim.path, "--model", str(model),
                                       str(tmp_path / "in.npy"), "--check", "--json",
                                       "--timeout", "5"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["check"]["mismatches"] == 0 and summary["samples"] == 10
    assert summary["model_matches_board"] is True
    assert summary["samples_per_second"] > 0


def test_run_command_refuses_a_board_running_another_net(net, board_sim, tmp_path):
    other = random_graph(inputs=21, layers=2, width=8, classes=4, seed=1)
    gg.save(other, tmp_path / "other.json")
    np.save(tmp_path / "in.npy", np.zeros((1, 21), dtype=np.uint8))
    result = CliRunner().invoke(main, ["run", "--port", board_sim.path, "--model",
                                       str(tmp_path / "other.json"), str(tmp_path / "in.npy"),
                                       "--check", "--timeout", "5"])
    assert result.exit_code != 0
    assert "the board runs a net with 20 inputs" in result.output


def test_run_command_names_a_missing_port(tmp_path):
    np.save(tmp_path / "in.npy", np.zeros((1, 4), dtype=np.uint8))
    result = CliRunner().invoke(main, ["run", "--port", str(tmp_path / "nope"),
                                       str(tmp_path / "in.npy")])
    assert result.exit_code != 0
    assert "cannot open serial port" in result.output


@pytest.mark.parametrize("corrupt", [False, True])
def test_bist_command_reads_the_simulated_bist_report_over_a_pty(net, corrupt):
    bits = np.random.default_rng(8).integers(0, 2, (16, net.inputs), dtype=np.uint8)
    expected = None
    if corrupt:
        expected, _ = expected_words(net, bits_for(net.group_size), bits)
        expected[5] ^= 1  # the stored class of vector 5
    top = BistTop(net, bits, divisor=DIVISOR, expected=expected)
    sim = SimulatedBoard(top)
    try:
        result = CliRunner().invoke(main, ["bist", "--port", sim.path, "--json",
                                           "--timeout", "5"])
    finally:
        sim.close()
    report = json.loads(result.stdout[:result.stdout.rindex("}") + 1])
    assert report["vectors"] == 16 and report["cycles"] == 16 + top.core.latency
    if corrupt:
        assert result.exit_code == 1 and not report["passed"]
        assert report["first_failure"] == 5
    else:
        assert result.exit_code == 0 and report["passed"]


def test_run_command_refuses_input_that_is_not_bits(tmp_path):
    np.save(tmp_path / "in.npy", np.array([[0.5, 3.0]]))
    result = CliRunner().invoke(main, ["run", "--port", "/dev/null", str(tmp_path / "in.npy")])
    assert result.exit_code != 0 and "must hold 0/1 bits" in result.output


def test_sim_board_command_serves_the_uart_top_on_a_pty(tmp_path):
    """`lgn-fpga sim-board` prints a serial device; `lgn-fpga run --check` against it agrees
    with the golden model: the whole user-facing serial path with no hardware."""
    import subprocess
    import sys

    net = random_graph(inputs=10, layers=2, width=12, classes=3, seed=4)
    gg.save(net, tmp_path / "m.json")
    bits = np.random.default_rng(5).integers(0, 2, (8, 10), dtype=np.uint8)
    np.save(tmp_path / "in.npy", bits)
    server = subprocess.Popen(
        [sys.executable, "-m", "lgn_fpga.cli", "sim-board", "--model", str(tmp_path / "m.json"),
         "--seconds", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        assert port.startswith("/dev/"), server.stderr.read()
        r = subprocess.run(
            [sys.executable, "-m", "lgn_fpga.cli", "run", "--port", port, "--model",
             str(tmp_path / "m.json"), str(tmp_path / "in.npy"), "--check", "--json",
             "--timeout", "10"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)
        assert summary["check"]["mismatches"] == 0
        assert summary["model_matches_board"] is True
    finally:
        server.terminate()
        server.wait(timeout=20)
