"""The compiled engine: CXXRTL model == golden, cached by design hash."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from lgn_fpga.cli import main
from lgn_fpga.gateware.core import LogicNetCore
from lgn_fpga.net import graph as gg
from lgn_fpga.net.random_nets import random_graph
from lgn_fpga.verify.cxxrtl import (
    build,
    cache_dir,
    read_outputs,
    run_cxxrtl,
    split_eval,
    write_stimulus,
)
from lgn_fpga.verify.simulate import make_schedule, random_bits, run_pysim, simulate

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                                reason="the cxxrtl engine needs a C++ compiler")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    # One cache for this module: hermetic, yet each design compiles only once here.
    monkeypatch.setenv("LGN_FPGA_CACHE", str(tmp_path_factory.getbasetemp() / "cxxrtl-cache"))


NET = dict(inputs=12, layers=3, width=30, classes=3, seed=21)


def test_cxxrtl_outputs_equal_pysim_outputs_cycle_for_cycle():
    g = random_graph(**NET)
    core = LogicNetCore(g, pipeline=2)
    bits = random_bits(12, 40, seed=1)
    schedule = make_schedule(40, gap_rate=0.4, seed=1)
    compiled = run_cxxrtl(core, bits, schedule, seed=1)
    python = run_pysim(LogicNetCore(g, pipeline=2), bits, schedule, seed=1)
    np.testing.assert_array_equal(compiled.cycles, python.cycles)
    np.testing.assert_array_equal(compiled.scores, python.scores)
    np.testing.assert_array_equal(compiled.classes, python.classes)


@pytest.mark.parametrize("pipeline,gap_rate", [(1, 0.0), (3, 0.6)])
def test_cxxrtl_engine_matches_golden_on_many_vectors(pipeline, gap_rate):
    g = random_graph(**NET)
    result = simulate(g, random_bits(12, 3000, seed=2), pipeline=pipeline, engine="cxxrtl",
                      gap_rate=gap_rate)
    assert result.passed, result.mismatch
    assert result.latency_measured == result.latency_declared


@settings(max_examples=6, deadline=None)
@given(graph=st.builds(random_graph, inputs=st.integers(1, 40), layers=st.integers(1, 4),
                       width=st.integers(1, 24), classes=st.integers(1, 5),
                       seed=st.integers(0, 2**16)),
       pipeline=st.integers(1, 3), gap_rate=st.sampled_from([0.0, 0.3]))
def test_cxxrtl_engine_matches_golden_for_random_small_nets(graph, pipeline, gap_rate):
    result = simulate(graph, random_bits(graph.inputs, 200, seed=5), pipeline=pipeline,
                      engine="cxxrtl", gap_rate=gap_rate, optimize=False)
    assert result.passed, result.mismatch
    assert result.latency_measured == result.latency_declared


def test_cxxrtl_handles_wide_inputs_and_many_classes():
    # 200 inputs span several 32-bit chunks; 10 classes x 7 bits = 70 score bits.
    g = random_graph(200, 2, 70, 10, seed=3)
    result = simulate(g, random_bits(200, 500, seed=3), engine="cxxrtl", optimize=False)
    assert result.passed, result.mismatch


def test_a_corrupted_gate_makes_cxxrtl_simulate_exit_1(tmp_path):
    path = tmp_path / "net.json"
    gg.save(random_graph(**NET), path)
    runner = CliRunner()
    result = runner.invoke(main, ["simulate", str(path), "--engine", "cxxrtl", "--vectors",
                                  "50", "--fault", "2:0", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["mismatch"]["vector"] == 0


def test_a_design_compiles_once_and_then_comes_from_the_cache():
    g = random_graph(**NET)
    first = build(LogicNetCore(g, pipeline=2))
    again = build(LogicNetCore(g, pipeline=2))
    assert again.compiled is False and again.key == first.key
    assert again.binary.exists()
    assert str(cache_dir()) in str(again.binary)
    other = build(LogicNetCore(g, pipeline=1))
    assert other.key != first.key
    assert sorted(p.name for p in again.binary.parent.iterdir()) == ["sim"]


def test_stimulus_and_output_files_round_trip(tmp_path):
    bits = random_bits(13, 5, seed=0)
    schedule = np.array([0, -1, 1, 2, -1, -1, 3, 4])
    write_stimulus(tmp_path / "s.bin", bits, schedule, 10, 13, seed=0)
    raw = (tmp_path / "s.bin").read_bytes()
    assert raw[:4] == b"LGNS" and len(raw) == 8 + 10 * 3
    records = np.frombuffer(raw[8:], dtype=np.uint8).reshape(10, 3)
    assert records[:, 0].tolist() == [1, 0, 1, 1, 0, 0, 1, 1, 0, 0]
    assert (records[:, 2] < 32).all()   # bits above the 13 inputs stay zero, even in gaps
    out = tmp_path / "o.bin"
    out.write_bytes(b"LGNO" + np.array([4, 2], "<u4").tobytes()
                    + np.array([7], "<u8").tobytes() + np.array([1], "<u4").tobytes()
                    + bytes([0b0101_0011, 0b0000_0010]))
    parsed = read_outputs(out, 3, 4, 10)   # 3 classes x 4 bits = 12 bits in 2 bytes
    assert parsed.cycles.tolist() == [7] and parsed.classes.tolist() == [1]
    assert parsed.scores.tolist() == [[3, 5, 2]]


def test_a_model_split_into_many_eval_parts_still_matches_golden(monkeypatch):
    import lgn_fpga.verify.cxxrtl

    monkeypatch.setattr(lgn_fpga.verify.cxxrtl, "SPLIT_STATEMENTS", 10)
    g = random_graph(30, 4, 60, 3, seed=8)
    result = simulate(g, random_bits(30, 300, seed=8), engine="cxxrtl", gap_rate=0.3)
    assert result.passed, result.mismatch


def test_split_eval_moves_locals_to_members_and_calls_parts_in_order():
    source = (
        "struct p_top : public module {\n\tvalue<1> p_a;\n}; // struct p_top\n"
        "bool p_top::eval(performer *performer) {\n"
        "\tbool converged = true;\n"
        "\tbool posedge_p_clk = this->posedge_p_clk();\n"
        "\tvalue<1> i_x;\n"
        "\ti_x = p_a;\n"
        "\tif (posedge_p_clk) {\n\t\tp_a = i_x;\n\t}\n"
        "\tp_b = value<1>{0u};\n"
        "\treturn converged;\n}\n"
    )
    split = split_eval(source, statements=2)
    assert "\tvalue<1> i_x;\n" in split.split("}; // struct p_top")[0]   # now a member
    assert split.count("void p_top::eval_part") == 2
    eval_body = split[split.index("bool p_top::eval("):]
    assert eval_body.index("eval_part0(") < eval_body.index("eval_part1(")
    # The `if` block stays whole inside one part.
    part0 = split[split.index("void p_top::eval_part0"):split.index("void p_top::eval_part1")]
    assert "if (posedge_p_clk) {" in part0 and "p_a = i_x;" in part0
    assert split_eval("not cxxrtl output") == "not cxxrtl output"


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", [1, 3])
def test_synthesized_ice40_netlist_matches_golden(pipeline):
    """The netlist engine: the core after Yosys's iCE40 synthesis (LUT4, carry and FF cells,
    simulated with Yosys's own cell models) gives the golden scores and classes."""
    g = random_graph(inputs=14, layers=4, width=40, classes=4, seed=20 + pipeline)
    result = simulate(g, random_bits(g.inputs, 300, seed=pipeline), pipeline=pipeline,
                      engine="netlist", gap_rate=0.3, seed=pipeline)
    assert result.mismatch is None
    assert result.latency_measured == result.latency_declared


@pytest.mark.slow
def test_a_corrupted_gate_makes_the_netlist_engine_exit_1(tmp_path):
    path = tmp_path / "net.json"
    gg.save(random_graph(**NET), path)
    result = CliRunner().invoke(main, ["simulate", str(path), "--engine", "netlist",
                                       "--vectors", "50", "--fault", "2:0", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["mismatch"]["vector"] == 0


def test_exported_verilog_read_back_by_yosys_matches_golden():
    """The verilog engine compiles the Verilog `lgn-fpga export` writes (through Yosys's
    Verilog frontend, not Amaranth's RTLIL), so the exported file itself is checked."""
    g = random_graph(inputs=10, layers=3, width=24, classes=3, seed=31)
    result = simulate(g, random_bits(g.inputs, 200, seed=3), pipeline=2, engine="verilog",
                      gap_rate=0.3, seed=3)
    assert result.mismatch is None
    assert result.latency_measured == result.latency_declared


@pytest.mark.slow
def test_shipped_digits_model_synthesized_for_ice40_reproduces_its_vector_set():
    """The default model, as Yosys synthesizes it for the iCEBreaker, replays its golden
    vector set from sim/ bit for bit."""
    from lgn_fpga.cli.util import load_model
    from lgn_fpga.net import vectors

    graph = load_model("digits")
    vset = vectors.for_model("digits", graph)
    result = simulate(graph, vset.bits, pipeline=4, engine="netlist", seed=0)
    assert result.mismatch is None
