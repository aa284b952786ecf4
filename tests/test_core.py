"""LogicNetCore and its class head: the port contract, exact latency, sim == golden."""

import time

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Shape, Value
from amaranth.lib import data
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from lgn_fpga.gateware.core import LogicNetCore, gate_stages, place_registers
from lgn_fpga.gateware.head import ArgMax, Popcount
from lgn_fpga.net import golden, ops
from lgn_fpga.net import graph as gg
from lgn_fpga.net.random_nets import random_graph
from lgn_fpga.verify.simulate import make_schedule, random_bits, run_pysim

small_nets = st.builds(
    random_graph,
    inputs=st.integers(1, 10), layers=st.integers(1, 5), width=st.integers(1, 12),
    classes=st.integers(1, 4), seed=st.integers(0, 2**16))


def run_and_compare(graph, pipeline, *, vectors=8, gap_rate=0.3, seed=0, head_levels=1):
    core = LogicNetCore(graph, pipeline=pipeline, head_levels_per_stage=head_levels)
    bits = random_bits(graph.inputs, vectors, seed)
    schedule = make_schedule(vectors, gap_rate=gap_rate, seed=seed)
    out = run_pysim(core, bits, schedule, seed=seed)
    expected = golden.predict(graph, bits)
    return core, out, expected, schedule


def test_ports_match_the_contract_the_board_tops_use():
    g = random_graph(12, 3, 30, 5, seed=0)  # 30 bits -> 5 classes x 6 bits
    core = LogicNetCore(g, pipeline=2)
    members = dict(core.signature.members.items())
    assert set(members) == {"in_bits", "in_valid", "out_valid", "out_class", "out_scores"}

    def port(name):
        return members[name].flow.name, Shape.cast(members[name].shape).width

    assert port("in_bits") == ("In", 12)
    assert port("in_valid") == ("In", 1)
    assert port("out_valid") == ("Out", 1)
    assert port("out_class") == ("Out", 3)                # ceil_log2(5)
    assert core.score_width == 3                          # bits_for(6)
    assert members["out_scores"].flow.name == "Out"
    assert members["out_scores"].shape == data.ArrayLayout(3, 5)
    assert core.graph is g
    assert isinstance(core.latency, int) and core.latency >= 1


def test_one_class_still_has_a_one_bit_class_port():
    g = random_graph(4, 2, 4, 1, seed=0)
    assert LogicNetCore(g).out_class.shape().width == 1


@settings(max_examples=150, deadline=None)
@given(graph=small_nets, pipeline=st.integers(0, 4), seed=st.integers(0, 1000),
       head_levels=st.integers(1, 3))
def test_pysim_scores_classes_and_latency_equal_golden_for_random_nets(graph, pipeline, seed,
                                                                      head_levels):
    core, out, expected, schedule = run_and_compare(graph, pipeline, seed=seed,
                                                    head_levels=head_levels)
    assert len(out.cycles) == len(expected.classes)
    np.testing.assert_array_equal(out.scores, expected.scores)
    np.testing.assert_array_equal(out.classes, expected.classes)
    input_cycles = np.flatnonzero(schedule >= 0)
    assert (out.cycles - input_cycles == core.latency).all()


@pytest.mark.parametrize("pipeline", [1, 2, 3, 7])
def test_declared_latency_is_gate_stages_plus_head(pipeline):
    g = random_graph(8, 6, 16, 2, seed=3)
    core, out, expected, schedule = run_and_compare(g, pipeline, vectors=4, gap_rate=0)
    assert core.gate_latency == gate_stages(6, pipeline) == -(-6 // pipeline)
    assert core.latency == core.gate_latency + core.popcount_latency + core.argmax_latency
    assert out.cycles[0] - np.flatnonzero(schedule >= 0)[0] == core.latency


def _xor_tree(levels: int) -> gg.GateGraph:
    """Layer n XORs disjoint pairs of layer n - 1, down to 2 gates (one class of 2 bits):
    a gate of layer n reads 2 ** (n + 1) inputs, so a LUT4 covers two layers and the cone of
    layer n is ceil((n + 1) / 2) LUT4 levels deep (the reference the placement is checked
    against); the popcount's half adder reads both bits of the last layer."""
    width = 2 ** (levels + 1)
    layers = []
    for _ in range(levels):
        width //= 2
        idx = np.arange(width)
        layers.append((2 * idx, 2 * idx + 1, np.full(width, ops.XOR)))
    return gg.make(2 ** (levels + 1), layers, 1)


@pytest.mark.parametrize("depth,stage_luts", [(7, 1), (7, 2), (7, 3), (6, 3), (4, 1)])
def test_registers_are_placed_from_the_lut_depth(depth, stage_luts):
    # With s LUT levels per stage a register goes after every 2 s layers, and before the
    # last layer where the last stage (its layers plus the half adder) would not fit.
    g = _xor_tree(depth)
    cuts = place_registers(g, stage_luts)
    per_stage = 2 * stage_luts
    expected = tuple(n for n in range(g.depth - 1) if (n + 1) % per_stage == 0)
    if g.depth - (expected[-1] + 1 if expected else 0) + 1 > per_stage:
        expected += (g.depth - 2,)
    assert cuts == expected
    core, out, want, schedule = run_and_compare(g, 0, vectors=4, gap_rate=0)
    assert core.register_after == place_registers(g)
    np.testing.assert_array_equal(out.scores, want.scores)
    assert (out.cycles - np.flatnonzero(schedule >= 0) == core.latency).all()


def test_pass_through_layers_get_no_register():
    rng = np.random.default_rng(0)
    layers = [(rng.integers(0, 16, 16), rng.integers(0, 16, 16), np.full(16, ops.A))
              for _ in range(9)]
    g = gg.make(16, layers, 2)
    core = LogicNetCore(g)
    assert core.register_after == () and core.gate_latency == 1


def test_back_to_back_inputs_give_one_output_per_cycle():
    g = random_graph(10, 3, 24, 3, seed=5)
    core, out, expected, schedule = run_and_compare(g, 1, vectors=20, gap_rate=0)
    assert (schedule >= 0).all()
    assert (np.diff(out.cycles) == 1).all()
    np.testing.assert_array_equal(out.scores, expected.scores)


def test_gapped_inputs_keep_order_and_produce_no_output_in_idle_cycles():
    g = random_graph(10, 3, 24, 3, seed=6)
    core, out, expected, schedule = run_and_compare(g, 2, vectors=12, gap_rate=0.7, seed=4)
    assert (schedule < 0).sum() > 5
    assert len(out.cycles) == 12
    np.testing.assert_array_equal(out.scores, expected.scores)
    np.testing.assert_array_equal(out.classes, expected.classes)


@pytest.mark.parametrize("spacing", ["argmax", "back to back"])
def test_held_scores_leave_with_the_class_when_inputs_are_spaced_by_the_argmax(spacing):
    # scores="held" (the UART top): one register loaded as the counts enter the argmax.
    g = random_graph(12, 3, 40, 4, seed=9)
    core = LogicNetCore(g, scores="held")
    assert core.argmax_latency > 1
    bits = random_bits(g.inputs, 10, 3)
    gap = core.argmax_latency - 1 if spacing == "argmax" else 0
    schedule = np.array([x for v in range(10) for x in [-1] * gap + [v]])
    out = run_pysim(core, bits, schedule)
    expected = golden.predict(g, bits)
    np.testing.assert_array_equal(out.classes, expected.classes)
    if gap:
        np.testing.assert_array_equal(out.scores, expected.scores)
    else:  # closer inputs overwrite the register before their predecessor leaves
        assert (out.scores != expected.scores).any()


def test_cores_without_the_carry_out_luts_of_the_ice40_agree_with_golden():
    # carry_out_lut=False (ECP5): carry-outs go straight to their flip-flops.
    g = random_graph(16, 4, 48, 5, seed=11)
    core = LogicNetCore(g, carry_out_lut=False)
    bits = random_bits(g.inputs, 16, 5)
    out = run_pysim(core, bits, make_schedule(16, gap_rate=0.3, seed=2))
    expected = golden.predict(g, bits)
    np.testing.assert_array_equal(out.scores, expected.scores)
    np.testing.assert_array_equal(out.classes, expected.classes)


def test_every_op_is_built_as_its_truth_table():
    # One layer of 16 gates x 4 input pairs: every op on every (a, b).
    a = np.repeat(np.arange(0, 8, 2), 16)
    b = a + 1
    op = np.tile(np.arange(16), 4)
    g = gg.make(8, [(a, b, op)], 64)
    bits = np.array([[0, 0, 0, 1, 1, 0, 1, 1]], dtype=np.uint8)
    core = LogicNetCore(g)
    out = run_pysim(core, bits, np.array([0]))
    expected = golden.naive_predict(g, bits)
    np.testing.assert_array_equal(out.scores, expected.scores)


def _run_component(component, drive, read, cycles):
    results = []

    async def testbench(ctx):
        for inputs in drive:
            for port, value in inputs:
                ctx.set(port, value)
            await ctx.tick()
            results.append(read(ctx))
        for _ in range(cycles):
            await ctx.tick()
            results.append(read(ctx))

    sim = Simulator(component)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return results


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40), levels_per_stage=st.integers(1, 3), seed=st.integers(0, 999))
def test_popcount_counts_ones_after_its_declared_latency(n, levels_per_stage, seed):
    pc = Popcount(n, levels_per_stage=levels_per_stage)
    rng = np.random.default_rng(seed)
    words = [int(x) for x in rng.integers(0, 1 << n, 6, dtype=np.uint64)]
    seen = _run_component(pc, [[(pc.bits, w)] for w in words], lambda ctx: ctx.get(pc.count),
                          pc.latency)
    # After the edge ending cycle t, the output shows cycle t + 1.
    got = seen[pc.latency - 1:pc.latency - 1 + len(words)]
    assert got == [bin(w).count("1") for w in words]


def test_argmax_breaks_ties_toward_the_lowest_index():
    am = ArgMax(5, 3)
    rows = [[1, 4, 4, 0, 2], [7, 7, 7, 7, 7], [0, 0, 0, 0, 1], [3, 1, 6, 6, 6], [2, 5, 1, 5, 0]]
    raw = Value.cast(am.scores)

    def pack(row):
        return sum(s << (3 * c) for c, s in enumerate(row))

    seen = _run_component(am, [[(raw, pack(r))] for r in rows], lambda ctx: ctx.get(am.index),
                          am.latency)
    got = seen[am.latency - 1:am.latency - 1 + len(rows)]
    assert got == [int(np.argmax(r)) for r in rows] == [1, 0, 4, 2, 1]


def test_each_layer_is_one_named_signal_in_rtlil():
    g = random_graph(6, 4, 10, 2, seed=1)
    text = rtlil.convert(LogicNetCore(g, pipeline=2), name="top")
    for n in range(4):
        assert f"wire width 10 \\layer{n}\n" in text or f"\\layer{n}\n" in text
    # The last layer has no register of its own: it is fused into the popcounts.
    assert "\\layer1_q" in text and "\\layer0_q" not in text and "\\layer3_q" not in text


def test_data_registers_have_no_reset_only_the_valid_pipe_does():
    g = random_graph(6, 4, 10, 3, seed=1)
    core = LogicNetCore(g, pipeline=1)
    text = rtlil.convert(core, name="top")
    # Amaranth emits a `switch \rst` only for registers that reset: the valid pipe, one
    # 1-bit register per cycle of latency, and nothing else.
    assert text.count("switch \\rst") == core.latency


def test_a_deep_narrow_net_elaborates_without_recursion_trouble():
    g = random_graph(4, 400, 4, 2, seed=2)
    text = rtlil.convert(LogicNetCore(g, pipeline=3), name="top")
    assert "\\layer399" in text


@pytest.mark.slow
def test_a_50k_gate_net_elaborates_and_converts_to_rtlil():
    g = random_graph(784, 10, 5000, 10, seed=0)
    assert g.gates == 50000
    start = time.perf_counter()
    text = rtlil.convert(LogicNetCore(g, pipeline=2), name="top")
    elapsed = time.perf_counter() - start
    assert "\\layer9" in text
    assert elapsed < 120, f"RTLIL conversion took {elapsed:.0f} s"


def test_a_layer_thousands_of_gates_wide_simulates_in_pysim():
    # One flat Cat of 6000 gates overflows Python's compiler in Amaranth's simulator.
    g = random_graph(16, 1, 6000, 2, seed=3)
    core, out, expected, _ = run_and_compare(g, 1, vectors=2, gap_rate=0)
    np.testing.assert_array_equal(out.scores, expected.scores)
