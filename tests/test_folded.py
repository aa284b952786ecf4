"""The folded core (lgn_fpga.gateware.folded): golden agreement in pysim and CXXRTL, the
ready handshake through the UART and BIST tops, the layout arithmetic, the build's core
choice and its refusal of a net that does not fit even folded."""

import json

import numpy as np
import pytest
from amaranth.sim import Simulator
from conftest import invoke, run_bist
from lgn_fpga.sim.uart_link import SIM_DIVISOR, exchange

from lgn_fpga import protocol as p
from lgn_fpga.errors import UserError
from lgn_fpga.flow import profiles
from lgn_fpga.flow.build import BuildOptions, CoreDesign, build, choose_core, estimate_folded
from lgn_fpga.gateware.folded import (
    FoldedCore,
    fold_plan,
    memory_blocks,
    program_image,
)
from lgn_fpga.gateware.spi_flash import FLASH_OFFSET, SPIFlashModel, SPIFlashReader
from lgn_fpga.gateware.tops import BistTop, UartTop
from lgn_fpga.models import resolve
from lgn_fpga.net import golden
from lgn_fpga.net import graph as gg
from lgn_fpga.net.optimize import optimize
from lgn_fpga.net.random_nets import random_bits, random_graph
from lgn_fpga.verify.harness import make_schedule
from lgn_fpga.verify.simulate import check, folded_layer_values, run_pysim_ready, simulate


def _run(graph, lanes, vectors=12, seed=0, gap_rate=0.3):
    bits = random_bits(graph.inputs, vectors, seed)
    core = FoldedCore(graph, lanes=lanes)
    schedule = make_schedule(len(bits), gap_rate=gap_rate, seed=seed)
    outputs = run_pysim_ready(core, bits, schedule, seed=seed)
    return core, outputs, check(golden.predict(graph, bits), schedule, outputs, core.latency)


# (inputs, layers, width, classes): k not a multiple of the lanes, a one-layer net, ties
NETS = [(12, 3, 24, 4), (5, 1, 21, 3), (30, 2, 21, 7), (7, 4, 9, 3)]


@pytest.mark.parametrize("lanes", [1, 2, 4, 8])
@pytest.mark.parametrize("shape", NETS)
def test_folded_core_agrees_with_golden_in_pysim(shape, lanes):
    g = random_graph(*shape, seed=lanes + shape[0])
    core, outputs, (mismatch, measured) = _run(g, lanes, seed=lanes)
    assert mismatch is None, mismatch.describe()
    assert measured == core.latency == fold_plan(g, lanes).latency
    # one input in flight: the next is taken in the cycle the previous result leaves, at
    # the earliest
    assert np.all(np.diff(outputs.accepted) >= core.latency)


def test_ties_go_to_the_lowest_class():
    # every gate of the last layer constant 1: all scores tie, class 0 must win
    g = gg.make(4, [(np.zeros(6, int), np.zeros(6, int), np.full(6, 15, np.uint8))], 3)
    _, outputs, (mismatch, _) = _run(g, 1, vectors=3)
    assert mismatch is None and outputs.classes.tolist() == [0, 0, 0]
    assert outputs.scores.tolist() == [[2, 2, 2]] * 3


def test_latency_and_rows_follow_the_documented_formula():
    g = random_graph(30, 3, 21, 7, seed=1)  # widths 21, 21, 21: k = 3
    plan = fold_plan(g, 2)
    assert plan.layer_rows == [11, 11, 7 * 2]      # ceil(21/2), ceil(21/2), C * ceil(3/2)
    assert plan.load_rows == 15
    assert plan.latency == 1 + 15 + (11 + 11 + 14) + (3 - 1) + 2
    assert plan.addr_width == 5 and plan.entry_width == 14  # 30 sources -> 16 words of 2


def test_lanes_must_be_a_power_of_two():
    g = random_graph(8, 2, 8, 2, seed=0)
    for bad in (0, 3, 32):
        with pytest.raises(ValueError, match="power of two"):
            FoldedCore(g, lanes=bad)


def test_block_ram_counts_use_the_best_aspect_ratio():
    assert memory_blocks("ice40", 1, 2048) == 1       # 2048 x 2
    assert memory_blocks("ice40", 24, 4096) == 24     # 8 x 512, three wide, eight deep
    assert memory_blocks("ecp5", 30, 18861) == 37     # 36 x 512, 37 deep
    assert memory_blocks("gowin", 1, 1) is None


def test_simulate_api_runs_the_folded_core_on_digits():
    graph = gg.load(resolve("digits"))
    bits = random_bits(graph.inputs, 3, 4)
    result = simulate(graph, bits, core="folded", lanes=4, gap_rate=0.5, seed=4)
    assert result.passed, result.mismatch.describe()
    assert result.extra["core"] == "folded" and result.extra["lanes"] == 4
    assert result.latency_measured == result.latency_declared


def test_the_folded_core_shows_every_gate_for_locating_a_mismatch():
    g = random_graph(10, 3, 17, 3, seed=2)  # k = 5, padded to 8 with 4 lanes
    row = random_bits(10, 1, 3)[0]
    want = golden.GoldenModel(g).layer_bits(row[None, :])
    got = folded_layer_values(FoldedCore(g, lanes=4), row)
    for exp, act in zip(want, got):
        assert exp[0].tolist() == act.tolist()


def test_cli_simulate_folded_passes_and_bad_lanes_get_one_line(model_file):
    result = invoke("simulate", model_file, "--core", "folded", "--lanes", 2, "--vectors", 6,
                    "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["passed"] and out["core"] == "folded" and out["lanes"] == 2
    result = invoke("simulate", model_file, "--core", "folded", "--lanes", 3)
    assert result.exit_code != 0
    assert "power of two" in result.output and "Traceback" not in result.output


def test_folded_core_agrees_with_golden_in_cxxrtl():
    g = random_graph(16, 3, 40, 4, seed=5)
    bits = random_bits(g.inputs, 20, 1)
    result = simulate(g, bits, core="folded", lanes=2, engine="cxxrtl")
    assert result.passed, result.mismatch.describe()
    assert result.latency_measured == result.latency_declared


# -- the tops -----------------------------------------------------------------------------


def test_uart_top_with_a_folded_core_answers_back_to_back_frames():
    # latency longer than one frame: the second request waits for the core (in_ready low)
    g = random_graph(10, 3, 110, 4, seed=3)
    core = FoldedCore(g, lanes=1)
    top = UartTop(g, divisor=SIM_DIVISOR, core=core)
    layout = top.layout
    frame_cycles = 10 * SIM_DIVISOR * len(layout.encode_request(0, np.zeros(g.inputs, int)))
    assert frame_cycles < core.latency < frame_cycles + 40 * SIM_DIVISOR
    bits = random_bits(g.inputs, 3, 9)
    data = b"".join(layout.encode_request(20 + i, row) for i, row in enumerate(bits))
    decoder = p.Decoder(p.response_lengths(layout))
    out = exchange(top, data, max_cycles=400_000, until=lambda r: len(p.Decoder(
        p.response_lengths(layout)).feed(r)) >= 3)
    frames = decoder.feed(out)
    want = golden.predict(g, bits)
    assert [k for k, _ in frames] == [p.RSP_RESULT] * 3
    for i, (_, payload) in enumerate(frames):
        seq, cls, scores = layout.decode_result(payload)
        assert (seq, cls, scores.tolist()) == (20 + i, want.classes[i], want.scores[i].tolist())


def _infer_through_uart(top, graph, vectors=3, *, after=0, max_cycles=400_000,
                        divisor=SIM_DIVISOR):
    """Send ``vectors`` INFER frames (once ``after`` cycles have passed) and check every
    answer against the golden model; returns the answers' sequence numbers."""
    layout = top.layout if hasattr(top, "layout") else top.top.layout
    bits = random_bits(graph.inputs, vectors, 9)
    data = b"".join(layout.encode_request(20 + i, row) for i, row in enumerate(bits))
    received = exchange(
        top, data, divisor=divisor, after=after, max_cycles=max_cycles,
        until=lambda r: len(p.Decoder(p.response_lengths(layout)).feed(r)) >= vectors)
    frames = p.Decoder(p.response_lengths(layout)).feed(bytes(received))
    want = golden.predict(graph, bits)
    got = [layout.decode_result(payload) for _, payload in frames]
    assert [(c, s.tolist()) for _, c, s in got] == \
        [(want.classes[i], want.scores[i].tolist()) for i in range(vectors)]
    return [seq for seq, _, _ in got]


@pytest.mark.parametrize("lanes,inputs,divisor,direct", [(1, 21, SIM_DIVISOR, False),
                                                         (16, 21, SIM_DIVISOR, False),
                                                         (2, 400, 16, True)])
def test_uart_top_writes_requests_into_the_core_input_ram(lanes, inputs, divisor, direct):
    # inputs="bytes": no request register, the core loads from the top's byte RAM (1 bit
    # per clock at one lane, a byte per clock into 16-bit words at 16). With long requests
    # the answers go out straight from the core's outputs, with no result FIFO.
    g = random_graph(inputs, 3, 40, 4, seed=3)
    core = FoldedCore(g, lanes=lanes, inputs="bytes")
    assert not hasattr(core, "in_bits")
    assert core.plan.load_rows == -(-inputs // min(lanes, 8))
    top = UartTop(g, divisor=divisor, core=core)
    assert top.direct_results == direct
    assert _infer_through_uart(top, g, divisor=divisor) == [20, 21, 22]


def test_spi_flash_reader_reads_the_model_flash():
    from amaranth.hdl import Module

    image = bytes(np.random.default_rng(1).integers(0, 256, 40, dtype=np.uint8))
    m = Module()
    m.submodules.reader = reader = SPIFlashReader(FLASH_OFFSET + 3, 30, wake_cycles=10)
    m.submodules.flash = flash = SPIFlashModel(image)
    m.d.comb += [flash.cs.eq(reader.cs), flash.sck.eq(reader.sck),
                 flash.copi.eq(reader.copi), reader.cipo.eq(flash.cipo)]
    got = []

    async def bench(ctx):
        for _ in range(3000):
            await ctx.tick()
            if ctx.get(reader.stb):
                got.append(ctx.get(reader.data))
            if ctx.get(reader.done):
                break
        assert ctx.get(flash.reads) == 1  # one READ command: the wake command is not one

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert bytes(got) == image[3:33]


def test_the_program_boots_from_flash_into_spram_and_agrees_with_golden():
    # the UART top's core has its program in (behavioural) SPRAM: after reset the flash
    # reader copies the image in, and only then does the core take requests
    from lgn_fpga.verify.board import FlashBoard, simulated_top

    g = random_graph(21, 3, 40, 4, seed=3)
    board = simulated_top(g, "uart", divisor=SIM_DIVISOR, pipeline=None, lanes=2,
                          optimize=False, program="spram")
    assert isinstance(board, FlashBoard)
    plan = board.core.plan
    assert board.core.image == program_image(plan)
    assert len(board.core.image) == plan.rows * 2 * 2 + 1  # 2 x 14-bit entries: 2 halfwords
    # requests sent while it boots are not heard: send once the image is in
    boot = 2 * 8 + 256 + 2 * (32 + 8 * len(board.core.image)) + 8
    assert _infer_through_uart(board, g, after=boot) == [20, 21, 22]


def test_a_corrupt_program_image_is_caught_at_boot():
    g = random_graph(12, 2, 16, 4, seed=1)
    core = FoldedCore(g, lanes=1, program="spram", inputs="bytes")
    top = UartTop(g, divisor=SIM_DIVISOR, core=core)
    from lgn_fpga.verify.board import FlashBoard

    bad = bytearray(core.image)
    bad[3] ^= 0x10
    board = FlashBoard(top, bytes(bad))
    seen = {}

    async def bench(ctx):
        for _ in range(2 * 8 + 256 + 2 * (32 + 8 * len(bad)) + 50):
            await ctx.tick()
        seen.update(error=ctx.get(top.boot_error), ready=ctx.get(core.in_ready))

    sim = Simulator(board)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"error": 1, "ready": 0}


def test_spram_program_that_does_not_fit_is_refused():
    g = random_graph(64, 2, 40, 4, seed=1)
    with pytest.raises(ValueError, match="needs 8 x 1 SPRAMs, 4 available"):
        FoldedCore(g, lanes=8, program="spram")


def test_flash_writes_the_program_image_before_the_bitstream(tmp_path, monkeypatch):
    import hashlib

    from lgn_fpga.flow.flash import flash

    out = tmp_path / "b"
    out.mkdir()
    (out / "top.bin").write_bytes(b"bits")
    (out / "program.bin").write_bytes(b"program")
    ice = profiles.get("icebreaker")
    report = {"status": "ok", "board": ice.name, "device": ice.device,
              "bitstream": {"file": "top.bin", "sha256": hashlib.sha256(b"bits").hexdigest()},
              "program_image": {"file": "program.bin", "flash_offset": FLASH_OFFSET,
                                "sha256": hashlib.sha256(b"program").hexdigest()}}
    (out / "report.json").write_text(json.dumps(report))
    log = tmp_path / "calls"
    script = tmp_path / "iceprog"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n')
    script.chmod(0o755)
    monkeypatch.setenv("ICEPROG", str(script))
    lines = []
    flash(ice, out=out, dry_run=True, echo=lines.append)
    assert lines == [f"iceprog -o 1M {out / 'program.bin'}", f"iceprog {out / 'top.bin'}"]
    flash(ice, out=out, mode="sram")  # the image still goes to the flash
    assert log.read_text().splitlines() == [f"-o 1M {out / 'program.bin'}",
                                            f"-S {out / 'top.bin'}"]
    (out / "program.bin").write_bytes(b"other")
    with pytest.raises(UserError, match="program.bin: its bytes differ"):
        flash(ice, out=out, dry_run=True, echo=lines.append)


def test_bist_top_with_a_folded_core_passes_and_catches_a_bad_vector():
    g = random_graph(10, 3, 16, 4, seed=3)
    bits = random_bits(g.inputs, 8, 2)
    core = FoldedCore(g, lanes=2)
    out = run_bist(BistTop(g, bits, divisor=SIM_DIVISOR, core=core), 20 * core.latency)
    assert out["done"] and out["passed"]
    assert out["cycles"] >= 8 * core.latency
    top = BistTop(g, bits, divisor=SIM_DIVISOR, core=FoldedCore(g, lanes=2))
    top.expected[5] ^= 1
    out = run_bist(top, 20 * core.latency)
    assert out["done"] and not out["passed"] and out["first"] == 5


def test_bist_top_waits_for_the_program_to_boot_from_flash():
    from lgn_fpga.verify.board import FlashBoard

    g = random_graph(10, 3, 16, 4, seed=3)
    bits = random_bits(g.inputs, 4, 2)
    core = FoldedCore(g, lanes=2, program="spram")
    top = BistTop(g, bits, divisor=SIM_DIVISOR, core=core)
    out = run_bist(FlashBoard(top), 20_000, top=top)
    assert out["done"] and out["passed"]


# -- the build ----------------------------------------------------------------------------


def test_auto_keeps_the_parallel_core_when_it_fits_and_folds_when_it_does_not():
    small = random_graph(16, 3, 48, 4, seed=5)
    ice = profiles.get("icebreaker")
    kind, _, _, why = choose_core(small, ice, kind="auto", lanes=None, top="uart",
                                  design=CoreDesign(2), vectors=0,
                                  score_width=small.score_width)
    assert kind == "parallel" and "fits" in why
    big = random_graph(64, 4, 2000, 10, seed=1)
    kind, lanes, est, why = choose_core(big, ice, kind="auto", lanes=None, top="uart",
                                        design=CoreDesign(2), vectors=0,
                                        score_width=big.score_width)
    assert kind == "folded" and lanes >= 1 and "parallel core needs" in why
    assert est["cycles_per_inference"] == fold_plan(big, lanes).latency


def test_auto_folds_a_big_net_wired_across_whole_layers_but_not_a_local_one(monkeypatch):
    # beyond ROUTABLE_LOGIC_GATES a uniformly wired net stalls the routers (docs/routing.md),
    # so --core auto folds it even where the parallel core would fit; a locally wired one
    # of the same shape stays parallel, and --core parallel still builds either
    from lgn_fpga.flow import build as build_module

    monkeypatch.setattr(build_module, "ROUTABLE_LOGIC_GATES", 100)
    ecp5 = profiles.get("ulx3s-85f")
    uniform = random_graph(64, 3, 400, 10, seed=1)
    local = random_graph(64, 3, 400, 10, seed=1, window=8)
    kinds = {}
    for name, net in (("uniform", uniform), ("local", local)):
        for kind in ("auto", "parallel"):
            kinds[name, kind], _, _, why = choose_core(
                net, ecp5, kind=kind, lanes=None, top="uart", design=CoreDesign(2),
                vectors=0, score_width=net.score_width)
            if (name, kind) == ("uniform", "auto"):
                assert "wired across whole layers" in why and "--core parallel" in why
    assert kinds == {("uniform", "auto"): "folded", ("uniform", "parallel"): "parallel",
                     ("local", "auto"): "parallel", ("local", "parallel"): "parallel"}


def test_a_net_too_big_even_folded_is_refused_before_synthesis_with_the_numbers(tmp_path):
    # 40000 gates of 30-bit entries: 1.2 Mbit, more than the UP5K's block RAM and its four
    # SPRAMs (at one lane, 2 wide x 3 deep) can hold
    path = tmp_path / "big.json"
    gg.save(random_graph(64, 5, 8000, 10, seed=1), path)
    with pytest.raises(UserError, match=r"parallel: ~\d+ LUTs needed, 5280 available; .*even "
                                        r"folded \(1 lane\(s\)\): .*block RAMs, 30 available; "
                                        r"in SPRAM it would need 6 SPRAMs, 4 available"):
        build(BuildOptions(board="icebreaker", model=str(path), out=str(tmp_path),
                           optimize=False))
    assert not (tmp_path / "top.bin").exists()


def test_fashion_mnist_on_the_icebreaker_folds_into_spram_and_writes_its_image(tmp_path,
                                                                              monkeypatch):
    # Yosys replaced by `false`: the build chooses, elaborates and writes the image, then
    # stops at synthesis (bench/folded.py build runs the real thing, ~10 min)
    monkeypatch.setenv("YOSYS", "false")
    with pytest.raises(UserError, match="synth failed"):
        build(BuildOptions(board="icebreaker", model="fashion-mnist", out=str(tmp_path)))
    report = json.loads((tmp_path / "failed" / "report.json").read_text())
    assert report["core"]["kind"] == "folded" and report["core"]["lanes"] == 2
    ram = report["core"]["ram"]
    assert ram["program_in"] == "spram" and ram["spram_blocks"] == 4
    assert report["estimate"]["bram_blocks"] <= 30
    plan = fold_plan(optimize(gg.load(resolve("fashion-mnist")))[0], 2, inputs="bytes")
    assert report["cycles_per_inference"] == plan.latency
    assert report["inferences_per_second"] >= 1000  # at the 12 MHz board clock
    image = report["program_image"]
    assert image["bytes"] == plan.rows * 8 + 1 and image["flash_offset"] == FLASH_OFFSET


def test_cli_build_rejects_bad_lanes_in_one_line(tmp_path):
    result = invoke("build", "--board", "icebreaker", "--core", "folded", "--lanes", 3,
                    "-o", tmp_path)
    assert result.exit_code != 0 and "power of two" in result.output
    assert "Traceback" not in result.output


def test_program_spram_on_a_board_without_spram_gets_one_line(tmp_path):
    result = invoke("build", "--board", "ulx3s-12f", "--core", "folded", "--program", "spram",
                    "-o", tmp_path)
    assert result.exit_code != 0 and "has no SPRAM" in result.output
    assert "Traceback" not in result.output


def test_folded_estimate_counts_the_program_in_blocks():
    g, _ = optimize(gg.load(resolve("digits")))
    est = estimate_folded(g, profiles.get("icebreaker"), top="uart", lanes=1)
    assert est["program_rows"] == g.gates
    assert est["bram_blocks"] <= 30


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "small.json"
    gg.save(random_graph(inputs=16, layers=3, width=48, classes=4, seed=5), path)
    return path


@pytest.mark.slow
def test_real_ice40_build_of_a_folded_uart_top(small_model, tmp_path):
    # the program in SPRAM, booted from the flash: the SPRAM primitives and the flash pins
    # go through the real tools (the ECP5 build below keeps its program in block RAM)
    report = build(BuildOptions(board="icebreaker", model=str(small_model), core="folded",
                                lanes=2, program="spram", out=str(tmp_path)))
    assert report["status"] == "ok" and (tmp_path / "top.bin").exists()
    assert report["core"]["kind"] == "folded" and report["core"]["lanes"] == 2
    # no static placer with SPRAM (toolchain.STATIC_PLACER)
    assert report["flow"]["placement"] == "wirelength-driven (--no-tmdriv --router router2)"
    assert report["utilization"]["spram_blocks"]["used"] == \
        report["core"]["ram"]["spram_blocks"] >= 1
    image = (tmp_path / "program.bin").read_bytes()
    assert report["program_image"]["bytes"] == len(image)
    assert image == program_image(fold_plan(optimize(gg.load(small_model))[0], 2,
                                            inputs="bytes"))
    assert report["cycles_per_inference"] == report["latency_cycles"]
    assert report["inferences_per_second"] == round(12e6 / report["cycles_per_inference"], 1)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["core"] == report["core"]


@pytest.mark.slow
def test_real_ecp5_build_of_a_folded_bist_top(small_model, tmp_path):
    report = build(BuildOptions(board="ulx3s-12f", model=str(small_model), top="bist",
                                core="folded", lanes=1, vectors=16, out=str(tmp_path)))
    assert report["status"] == "ok" and (tmp_path / "top.bit").exists()
    assert report["core"]["kind"] == "folded"
    assert report["utilization"]["bram_blocks"]["used"] >= 3  # program, 2 stores, vectors


def test_sim_board_serves_a_folded_top_and_refuses_one_slower_than_a_frame():
    from lgn_fpga.verify.board import simulated_top

    g = random_graph(10, 3, 16, 4, seed=3)
    top = simulated_top(g, "uart", divisor=SIM_DIVISOR, pipeline=None, lanes=2)
    assert isinstance(top.core, FoldedCore) and top.core.lanes == 2
    top._MustUse__silence = top.core._MustUse__silence = True  # not simulated here
    result = invoke("sim-board", "--model", "digits", "--core", "folded", "--lanes", 1)
    assert result.exit_code != 0 and "use more --lanes" in result.output


@pytest.mark.parametrize("top", ["uart", "bist"])
def test_build_report_states_the_folded_core_and_its_throughput(small_model, tmp_path,
                                                                monkeypatch, top):
    # Yosys replaced by `false`: everything up to synthesis runs, and the failed run's
    # report shows what the build chose (the slow tests run the tools).
    monkeypatch.setenv("YOSYS", "false")
    with pytest.raises(UserError, match="synth failed"):
        build(BuildOptions(board="icebreaker", model=str(small_model), core="folded",
                           top=top, out=str(tmp_path)))
    report = json.loads((tmp_path / "failed" / "report.json").read_text())
    core = FoldedCore(optimize(gg.load(small_model))[0], lanes=report["core"]["lanes"])
    assert report["core"]["kind"] == "folded" and report["core"]["lanes"] in (1, 2, 4, 8)
    assert report["core"]["ram"]["program_rows"] == core.plan.rows
    assert report["cycles_per_inference"] == core.latency == report["latency_cycles"]
    assert report["inferences_per_second"] == round(12e6 / core.latency, 1)
    if top == "bist":  # the default vector count leaves room for the program
        assert 1 <= report["options"]["vectors"] <= 256
        assert report["estimate"]["bram_bits"] <= report["estimate"]["capacity_bram_bits"]
    core._MustUse__silence = True


def test_build_folds_the_net_as_given_with_no_optimize(small_model, tmp_path, monkeypatch):
    monkeypatch.setenv("YOSYS", "false")
    with pytest.raises(UserError, match="synth failed"):
        build(BuildOptions(board="icebreaker", model=str(small_model), core="folded",
                           lanes=1, optimize=False, out=str(tmp_path)))
    report = json.loads((tmp_path / "failed" / "report.json").read_text())
    assert report["core"]["ram"]["program_rows"] == gg.load(small_model).gates
