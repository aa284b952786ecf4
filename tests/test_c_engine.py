"""The C engine and `export --format c`: bit for bit with golden (ties included), cached
builds, the documented entry points, and one-line errors."""

import os
import subprocess

import numpy as np
import pytest
from conftest import invoke

from lgn_fpga.errors import UserError
from lgn_fpga.flow import c_engine
from lgn_fpga.net import golden, ops
from lgn_fpga.net import graph as gg
from lgn_fpga.net.c_source import c_source, program
from lgn_fpga.net.random_nets import random_bits, random_graph


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LGN_FPGA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LGN_FPGA_CFLAGS", raising=False)
    monkeypatch.delenv("CC", raising=False)


def tie_heavy_graph(seed=0):
    """Small groups (3 bits) over 5 classes: most samples tie somewhere."""
    return random_graph(inputs=20, layers=3, width=45, classes=5, seed=seed)


@pytest.mark.parametrize("samples", [1, 63, 64, 513, 1100])
def test_c_engine_matches_golden_including_ties(samples):
    g = tie_heavy_graph()
    bits = random_bits(g.inputs, samples, seed=samples)
    want = golden.predict(g, bits)
    got = c_engine.predict(g, bits, optimize=samples % 2 == 1)
    assert np.array_equal(got.scores, want.scores)
    assert np.array_equal(got.classes, want.classes)
    if samples == 1100:  # the case is meaningful only if ties really occur
        top = want.scores.max(axis=1, keepdims=True)
        assert ((want.scores == top).sum(axis=1) > 1).sum() > 50


@pytest.mark.parametrize("flags", ["-std=c99 -O1 -DLGN_NO_VECTOR",
                                   "-std=c99 -O1 -DLGN_BLOCK_WORDS=1",
                                   "-std=c99 -O1 -DLGN_BLOCK_WORDS=16"])
def test_every_word_layout_gives_the_same_results(flags, monkeypatch):
    monkeypatch.setenv("LGN_FPGA_CFLAGS", flags)
    g = random_graph(inputs=33, layers=4, width=70, classes=7, seed=3)
    assert set(np.concatenate([layer.op for layer in g.layers]).tolist()) == set(range(16))
    bits = random_bits(g.inputs, 1500, seed=2)
    got = c_engine.predict(g, bits, optimize=False)  # every op kernel runs
    want = golden.naive_predict(g, bits[:200])
    assert np.array_equal(got.scores[:200], want.scores)
    assert np.array_equal(got.classes, golden.predict(g, bits).classes)


def test_a_wide_group_counts_exactly():
    # 600 bits per class: the carry-save counter needs ten weights
    g = random_graph(inputs=40, layers=2, width=1200, classes=2, seed=5)
    bits = random_bits(g.inputs, 700, seed=4)
    assert np.array_equal(c_engine.predict(g, bits).scores, golden.predict(g, bits).scores)


def test_builds_are_cached_by_model(monkeypatch):
    g = tie_heavy_graph()
    first = c_engine.build(g)

    def no_generation(*args, **kwargs):
        raise AssertionError("a cache hit generated the C again")

    with monkeypatch.context() as m:
        m.setattr(c_engine, "c_source", no_generation)
        again = c_engine.build(g)
    assert first.compiled and not again.compiled
    assert again.binary == first.binary and first.binary.exists()
    other = c_engine.build(tie_heavy_graph(seed=1))
    assert other.key != first.key
    # nothing but the published folders: no temporary build folder is left behind
    assert sorted(p.name for p in first.binary.parent.parent.iterdir()) == sorted(
        [first.key, other.key])


def test_source_is_deterministic_and_documents_its_entry_points():
    g = tie_heavy_graph()
    text = c_source(g)
    assert text == c_source(g)
    assert g.sha256() in text
    assert "void lgn_predict_packed(" in text and "int lgn_classify(" in text


def test_exported_c_is_strict_c99_and_its_single_sample_entry_point_works(tmp_path):
    g = tie_heavy_graph()
    path = tmp_path / "net.c"
    gg.save(g, tmp_path / "net.json")
    result = invoke("export", tmp_path / "net.json", "--format", "c", "-o", path,
                    "--no-optimize")
    assert result.exit_code == 0, result.output
    bits = random_bits(g.inputs, 40, seed=9)
    want = golden.predict(g, bits)
    main = tmp_path / "main.c"
    rows = ",".join("{" + ",".join(map(str, row)) + "}" for row in bits)
    main.write_text(
        '#include <stdio.h>\n#include "net.c"\n'
        f"static const uint8_t bits[{len(bits)}][LGN_INPUTS] = {{{rows}}};\n"
        "int main(void) { int32_t s[LGN_CLASSES];\n"
        f"  for (int i = 0; i < {len(bits)}; i++) {{ int c = lgn_classify(bits[i], s);\n"
        "    printf(\"%d\", c); for (int k = 0; k < LGN_CLASSES; k++) printf(\" %d\", s[k]);\n"
        "    printf(\"\\n\"); }\n  return 0; }\n")
    cc = c_engine.compiler()
    subprocess.run([cc, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1",
                    str(main), "-o", str(tmp_path / "one")], check=True)
    out = subprocess.run([str(tmp_path / "one")], capture_output=True, text=True, check=True)
    rows = np.array([list(map(int, line.split())) for line in out.stdout.splitlines()])
    assert np.array_equal(rows[:, 0], want.classes)
    assert np.array_equal(rows[:, 1:], want.scores)


def test_cli_predict_engine_c_matches_golden(tmp_path, model_file):
    g = gg.load(model_file)
    np.save(tmp_path / "bits.npy", random_bits(g.inputs, 300, seed=1))
    for engine in ("golden", "c"):
        result = invoke("predict", model_file, tmp_path / "bits.npy", "--engine", engine,
                        "-o", tmp_path / f"{engine}.npy", "--scores", tmp_path / f"{engine}-s.npy")
        assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(tmp_path / "c.npy"), np.load(tmp_path / "golden.npy"))
    assert np.array_equal(np.load(tmp_path / "c-s.npy"), np.load(tmp_path / "golden-s.npy"))


def test_no_compiler_is_one_line_and_writes_nothing(tmp_path, model_file, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    np.save(tmp_path / "bits.npy", random_bits(16, 10, seed=1))
    result = invoke("predict", model_file, tmp_path / "bits.npy", "--engine", "c",
                    "-o", tmp_path / "out.npy")
    assert result.exit_code != 0
    assert "compiler" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.npy").exists()
    with pytest.raises(UserError, match="compiler"):
        c_engine.compiler()


def test_a_failing_compiler_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LGN_FPGA_CFLAGS", "--no-such-option-xyz")
    with pytest.raises(UserError, match="compiling the c engine"):
        c_engine.build(tie_heavy_graph())
    assert not list((tmp_path / "cache" / "c-engine").iterdir())


def test_cli_predict_features_with_engine_c(tmp_path):
    g = random_graph(inputs=12, layers=2, width=30, classes=3, seed=4)
    th = np.sort(np.random.default_rng(0).normal(size=(4, 3)), axis=1)
    g = g.replace(encoding=gg.Thermometer(th))
    gg.save(g, tmp_path / "net.json")
    x = np.random.default_rng(1).normal(size=(200, 4))
    np.save(tmp_path / "x.npy", x)
    result = invoke("predict", tmp_path / "net.json", tmp_path / "x.npy", "--features",
                    "--engine", "c", "-o", tmp_path / "c.npy")
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(tmp_path / "c.npy"), golden.predict_features(g, x).classes)


def test_folding_leaves_only_real_two_input_gates():
    # layer 1 over inputs x0, x1: copies, an inversion, a constant, AND twice (once wired
    # the other way round), and x0 XOR x0, which is constant
    layer1 = ([0, 1, 0, 0, 1, 0, 1], [0, 1, 1, 1, 0, 0, 1],
              [ops.A, ops.NOT_A, ops.TRUE, ops.AND, ops.AND, ops.XOR, ops.B])
    # layer 2: NAND of the two ANDs (one repeated gate: ~(g & g) is ~g), AND of the two
    # copies (a real gate: x0 & ~x1), and a pass of the constant (class 1 is all constant)
    layer2 = ([3, 0, 2, 2], [4, 1, 2, 5], [ops.NAND, ops.AND, ops.A, ops.OR])
    g = gg.make(2, [layer1, layer2], classes=2)
    layers, a, b, outputs, offsets = program(g)
    # left: x0 & x1 (layer 1) and x0 & ~x1 (layer 2, reading the inputs directly)
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 1), (0, 1)]
    assert layers == [[(ops.AND, 1)], [(ops.A_AND_NOT_B, 1)]]
    assert [len(o) for o in outputs] == [2, 0] and offsets == [0, 2]
    assert sorted(inv for _, inv in outputs[0]) == [0, 1]  # the NAND reads x0 & x1 inverted
    bits = np.array([[x, y] for x in (0, 1) for y in (0, 1)], dtype=np.uint8)
    want = golden.naive_predict(g, bits)
    got = c_engine.predict(g, bits, optimize=False)
    assert np.array_equal(got.scores, want.scores)
    assert np.array_equal(got.classes, want.classes)


@pytest.mark.parametrize("seed", range(3))
def test_nets_full_of_copies_and_constants_match_golden(seed):
    # few inputs and ops that fold (copies, inversions, constants, XOR/XNOR that cancel):
    # many gates read one row twice, many outputs are constant or inverted rows
    g = random_graph(inputs=3, layers=4, width=24, classes=4, seed=seed,
                     ops=(ops.A, ops.NOT_A, ops.B, ops.NOT_B, ops.FALSE, ops.TRUE, ops.XOR,
                          ops.XNOR, ops.NAND))
    bits = random_bits(g.inputs, 300, seed=seed)
    want = golden.naive_predict(g, bits)
    got = c_engine.predict(g, bits, optimize=False)
    assert np.array_equal(got.scores, want.scores)
    assert np.array_equal(got.classes, want.classes)


def test_the_compiler_runs_in_its_own_process_group(tmp_path, monkeypatch):
    # a stand-in compiler records its process and process group, then fails
    record = tmp_path / "record"
    cc = tmp_path / "fake-cc"
    cc.write_text(f"#!/bin/sh\necho $$ $(ps -o pgid= -p $$) > {record}\n"
                  "echo 'fake-cc: error: nothing compiled' >&2\nexit 1\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    with pytest.raises(UserError, match="fake-cc: error: nothing compiled"):
        c_engine.build(tie_heavy_graph())
    pid, pgid = record.read_text().split()
    assert pid == pgid  # a group leader: Ctrl-C or a kill reaches cc1 through its group
    assert int(pgid) != os.getpgid(0)
    assert not list((tmp_path / "cache" / "c-engine").iterdir())
