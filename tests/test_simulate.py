"""`lgn-fpga simulate` (pysim engine), the output checker, and golden vector sets."""

import json

import numpy as np
import pytest
from conftest import invoke
from hypothesis import given, settings
from hypothesis import strategies as st

from lgn_fpga.net import golden, vectors
from lgn_fpga.net import graph as gg
from lgn_fpga.net.random_nets import random_graph
from lgn_fpga.verify.simulate import Outputs, check, corrupt, make_schedule, random_bits, simulate

# -- the command ---------------------------------------------------------------------------


def test_simulate_passes_and_reports_vectors_cycles_and_latency(model_file):
    result = invoke("simulate", model_file, "--vectors", 30, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] is True
    assert report["vectors"] == 30
    assert report["cycles"] > 30
    assert report["latency_measured"] == report["latency_declared"]


def test_simulate_text_output_says_pass(model_file):
    result = invoke("simulate", model_file, "--vectors", 10, "--pipeline", 1)
    assert result.exit_code == 0
    assert result.output.startswith("PASS: 10 vectors")


def test_a_corrupted_gate_makes_simulate_fail_with_exit_1_and_show_the_vector(model_file):
    # Complementing a last-layer gate changes a class bit for every input.
    result = invoke("simulate", model_file, "--vectors", 10, "--fault", "3:0")
    assert result.exit_code == 1
    assert "FAIL" in result.output and "vector 0" in result.output
    assert "expected class" in result.output and "actual   class" in result.output


def test_a_corrupted_gate_shows_in_json_with_expected_and_actual_scores(model_file):
    result = invoke("simulate", model_file, "--vectors", 5, "--fault", "3:1", "--json",
                    "--no-optimize")
    assert result.exit_code == 1
    mismatch = json.loads(result.output)["mismatch"]
    assert mismatch["vector"] == 0
    assert mismatch["expected_scores"] != mismatch["actual_scores"]
    assert sum(abs(e - a) for e, a in zip(mismatch["expected_scores"],
                                          mismatch["actual_scores"])) == 1


def test_simulate_reads_input_bits_from_npy(model_file, tmp_path):
    bits = random_bits(16, 12, seed=3)
    np.save(tmp_path / "in.npy", bits)
    result = invoke("simulate", model_file, "--inputs", tmp_path / "in.npy", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["vectors"] == 12


def test_simulate_rejects_input_of_the_wrong_width_as_a_user_error(model_file, tmp_path):
    np.save(tmp_path / "in.npy", np.zeros((3, 5), dtype=np.uint8))
    result = invoke("simulate", model_file, "--inputs", tmp_path / "in.npy")
    assert result.exit_code == 2
    assert "expects (samples, 16)" in result.output


def test_vcd_is_written_and_names_the_layer_signals(model_file, tmp_path):
    vcd = tmp_path / "wave.vcd"
    result = invoke("simulate", model_file, "--vectors", 4, "--vcd", vcd, "--pipeline", 1)
    assert result.exit_code == 0
    text = vcd.read_text()
    for n in range(4):
        assert f" layer{n} $end" in text
    assert " in_bits $end" in text and " out_scores $end" in text
    assert not list(tmp_path.glob(".*.tmp"))


# -- the Python API ------------------------------------------------------------------------


@pytest.mark.parametrize("gap_rate", [0.0, 0.5, 0.9])
def test_back_to_back_and_gapped_streams_match_golden(gap_rate):
    g = random_graph(12, 3, 30, 3, seed=11)
    result = simulate(g, random_bits(12, 15, 1), pipeline=2, gap_rate=gap_rate, seed=2)
    assert result.passed, result.mismatch
    assert result.latency_measured == result.latency_declared


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), pipeline=st.integers(1, 3), optimize=st.booleans())
def test_simulate_matches_golden_with_and_without_optimization(seed, pipeline, optimize):
    g = random_graph(8, 3, 16, 2, seed=seed)
    result = simulate(g, random_bits(8, 6, seed), pipeline=pipeline, optimize=optimize,
                      seed=seed)
    assert result.passed, result.mismatch


def test_corrupt_complements_exactly_one_gate():
    g = random_graph(8, 3, 16, 2, seed=1)
    bad = corrupt(g, 1, 5)
    assert int(bad.layers[1].op[5]) == int(g.layers[1].op[5]) ^ 15
    assert sum(int((x.op != y.op).sum()) for x, y in zip(g.layers, bad.layers)) == 1


def _outputs(cycles, scores, classes):
    return Outputs(np.asarray(cycles), np.asarray(scores).reshape(len(cycles), -1),
                   np.asarray(classes), 20)


def test_checker_reports_a_late_output_as_a_latency_mismatch():
    expected = golden.Prediction(np.array([[1, 2]], dtype=np.int32), np.array([1]))
    mismatch, measured = check(expected, np.array([0]), _outputs([4], [[1, 2]], [1]), 3)
    assert measured == 4 and "declares latency 3" in mismatch.reason


def test_checker_reports_missing_and_extra_outputs():
    expected = golden.Prediction(np.array([[1, 2], [2, 1]], dtype=np.int32), np.array([1, 0]))
    mismatch, _ = check(expected, np.array([0, 1]), _outputs([3], [[1, 2]], [1]), 3)
    assert "1 of 2 vectors came back" in mismatch.reason
    mismatch, _ = check(expected, np.array([0, 1]),
                        _outputs([3, 4, 5], [[1, 2], [2, 1], [0, 0]], [1, 0, 0]), 3)
    assert "3 outputs for 2 vectors" in mismatch.reason


def test_schedule_is_deterministic_and_contains_every_vector_once():
    a = make_schedule(50, gap_rate=0.4, seed=9)
    assert (a == make_schedule(50, gap_rate=0.4, seed=9)).all()
    assert (a[a >= 0] == np.arange(50)).all()
    assert (make_schedule(50, gap_rate=0.0, seed=9) == np.arange(50)).all()


# -- golden vector sets ---------------------------------------------------------------------


def test_vector_set_round_trips_and_matches_golden(tmp_path):
    g = random_graph(20, 3, 30, 5, seed=4)
    vs = vectors.make(g, 40, seed=1, model="net")
    assert vs.bits[0].sum() == 0 and vs.bits[1].sum() == 20   # all zeros, all ones first
    vectors.save(vs, tmp_path / "net.vectors.npz")
    back = vectors.load(tmp_path / "net.vectors.npz", g)
    np.testing.assert_array_equal(back.bits, vs.bits)
    np.testing.assert_array_equal(back.scores, golden.predict(g, vs.bits).scores)
    np.testing.assert_array_equal(back.classes, golden.predict(g, vs.bits).classes)
    assert back.model_sha256 == g.sha256() and back.seed == 1 and back.model == "net"
    vectors.check(back, g)


def test_vector_set_refuses_another_model(tmp_path):
    vectors.save(vectors.make(random_graph(20, 3, 30, 5, seed=4), 4), tmp_path / "v.npz")
    with pytest.raises(vectors.UserError, match="made for model sha256"):
        vectors.load(tmp_path / "v.npz", random_graph(20, 3, 30, 5, seed=5))


def test_vector_check_names_the_first_wrong_vector():
    g = random_graph(20, 3, 30, 5, seed=4)
    vs = vectors.make(g, 8)
    scores = vs.scores.copy()
    scores[3, 0] += 1
    tampered = vectors.VectorSet(vs.bits, scores, vs.classes, vs.model_sha256)
    with pytest.raises(vectors.UserError, match="^vector 3:"):
        vectors.check(tampered, g)


def test_vectors_command_writes_a_loadable_set(model_file, tmp_path):
    out = tmp_path / "net.vectors.npz"
    result = invoke("vectors", model_file, "-o", out, "--count", 16)
    assert result.exit_code == 0
    vs = vectors.load(out, gg.load(model_file))
    assert len(vs) == 16


def test_simulate_replays_a_golden_vector_set(model_file, tmp_path):
    out = tmp_path / "net.vectors.npz"
    assert invoke("vectors", model_file, "-o", out, "--count", 8).exit_code == 0
    result = invoke("simulate", model_file, "--inputs", out, "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["vectors"] == 8


def _shipped_models():
    from lgn_fpga.models import shipped

    return sorted(shipped().items())


@pytest.mark.parametrize("name,path", _shipped_models() or [pytest.param(
    None, None, marks=pytest.mark.skip(reason="no shipped models yet"))])
def test_every_shipped_model_matches_its_golden_vector_set(name, path):
    if not vectors.shipped_path(name).exists():
        pytest.skip(f"no sim/{name}.vectors.npz yet")
    g = gg.load(path)
    vectors.check(vectors.for_model(name, g), g)


@pytest.mark.slow
@pytest.mark.parametrize("name,path", _shipped_models() or [pytest.param(
    None, None, marks=pytest.mark.skip(reason="no shipped models yet"))])
def test_every_shipped_model_core_reproduces_its_vector_set_in_pysim(name, path):
    if not vectors.shipped_path(name).exists():
        pytest.skip(f"no sim/{name}.vectors.npz yet")
    g = gg.load(path)
    vs = vectors.for_model(name, g)
    result = simulate(g, vs.bits[:64], gap_rate=0.25)
    assert result.passed, result.mismatch


def test_a_fault_in_the_netlist_is_blamed_on_the_netlist_not_the_hardware():
    g = random_graph(8, 3, 16, 2, seed=1)
    result = simulate(g, random_bits(8, 4, 0), fault=(2, 0))
    assert not result.passed
    assert "the netlist, not the hardware" in result.mismatch.where


def test_a_wrong_gate_in_the_hardware_is_located_to_its_layer_and_gate(monkeypatch):
    import lgn_fpga.gateware.core as core_module
    from lgn_fpga.net import ops

    right = core_module.gate_expression

    def xor_built_as_xnor(op, a, b):
        return ~(a ^ b) if op == ops.XOR else right(op, a, b)

    monkeypatch.setattr(core_module, "gate_expression", xor_built_as_xnor)
    a = np.array([0, 1, 2, 0])
    b = np.array([1, 2, 3, 3])
    op = np.array([ops.AND, ops.OR, ops.XOR, ops.A])
    g = gg.make(4, [(a, b, op), (np.arange(4), np.arange(4), np.full(4, ops.A))], 2)
    result = simulate(g, np.array([[1, 0, 1, 1]], dtype=np.uint8), optimize=False,
                      pipeline=1)
    assert not result.passed
    assert result.mismatch.where.startswith("layer 0 gate 2 (op 6")
