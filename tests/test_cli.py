"""The foundation commands, run as a user runs them: one process, real files."""

import json
import subprocess
import sys

import numpy as np
import pytest

from lgn_fpga.net import golden
from lgn_fpga.net import graph as gg


def lgn(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lgn_fpga.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.json"
    r = lgn("random-model", "--inputs", 20, "--layers", 3, "--width", 60, "--classes", 6,
            "--seed", 5, "-o", path)
    assert r.returncode == 0, r.stderr
    return path


def test_random_model_is_the_same_for_the_same_seed(model, tmp_path):
    again = tmp_path / "again.json"
    assert lgn("random-model", "--inputs", 20, "--layers", 3, "--width", 60, "--classes", 6,
               "--seed", 5, "-o", again).returncode == 0
    assert again.read_bytes() == model.read_bytes()


def test_predict_writes_classes_and_scores_equal_to_the_golden_model(model, tmp_path):
    bits = np.random.default_rng(0).integers(0, 2, (500, 20), dtype=np.uint8)
    np.save(tmp_path / "in.npy", bits)
    r = lgn("predict", model, tmp_path / "in.npy", "-o", tmp_path / "c.npy",
            "--scores", tmp_path / "s.npy")
    assert r.returncode == 0, r.stderr
    expected = golden.naive_predict(gg.load(model), bits)
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), expected.classes)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), expected.scores)


def test_predict_with_features_applies_the_encoding(tmp_path):
    g = gg.make(4, [([0, 1, 2, 3], [0, 1, 2, 3], [3, 3, 3, 3])], classes=2,
                encoding=gg.Thermometer(np.array([[0.0, 1.0], [0.0, 1.0]])))
    gg.save(g, tmp_path / "m.json")
    np.save(tmp_path / "x.npy", np.array([[2.0, -1.0], [0.5, 0.5]]))
    r = lgn("predict", tmp_path / "m.json", tmp_path / "x.npy", "--features",
            "-o", tmp_path / "c.npy", "--scores", tmp_path / "s.npy")
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "s.npy").tolist() == [[2, 0], [1, 1]]
    assert np.load(tmp_path / "c.npy").tolist() == [0, 0]


def test_info_json_reports_structure(model):
    r = lgn("info", model, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["inputs"] == 20 and s["classes"] == 6 and s["widths"] == [60, 60, 60]
    assert sum(s["ops"].values()) == 180
    assert s["dead_gates"] >= 0


def test_malformed_model_gives_one_line_and_no_traceback(model, tmp_path):
    doc = json.loads(model.read_text())
    doc["layers"][2]["op"][7] = 99
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    np.save(tmp_path / "in.npy", np.zeros((1, 20), np.uint8))
    r = lgn("predict", bad, tmp_path / "in.npy", "-o", tmp_path / "c.npy")
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0
    assert "Traceback" not in r.stderr
    assert "layers[2].op[7] = 99 is out of range" in r.stderr
    assert not (tmp_path / "c.npy").exists()


def test_wrong_input_width_is_a_user_error(model, tmp_path):
    np.save(tmp_path / "in.npy", np.zeros((3, 21), np.uint8))
    r = lgn("predict", model, tmp_path / "in.npy", "-o", tmp_path / "c.npy")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "expects (samples, 20)" in r.stderr


def test_optimize_writes_an_equivalent_smaller_model(model, tmp_path):
    out = tmp_path / "opt.npz"
    r = lgn("optimize", model, "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["gates_after"] <= stats["gates_before"]
    bits = np.random.default_rng(1).integers(0, 2, (300, 20), dtype=np.uint8)
    np.testing.assert_array_equal(golden.predict(gg.load(model), bits).scores,
                                  golden.predict(gg.load(out), bits).scores)


def test_every_command_has_help():
    r = lgn("--help")
    assert r.returncode == 0
    commands = [line.split()[0] for line in r.stdout.split("Commands:")[1].splitlines()
                if line.strip()]
    assert {"info", "predict", "random-model", "optimize"} <= set(commands)
    for command in commands:
        h = lgn(command, "--help")
        assert h.returncode == 0 and "Usage:" in h.stdout, command


def test_cli_does_not_import_torch():
    code = "import sys, lgn_fpga.cli; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr
