"""Data-parallel training: ``lgn-fpga train --nproc 2`` (torchrun, gloo, 2 CPU processes)
gives the same hardened net as one process with the same seed and global batch, including a
last batch that splits unevenly between the processes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lgn_fpga.net import graph as gg  # noqa: E402


def _dataset(path):
    rng = np.random.default_rng(0)
    n, f = 240, 16
    y = rng.integers(0, 3, n)
    x = rng.random((n, f)) * 0.3
    for c in range(3):
        x[y == c, 5 * c:5 * c + 5] += 0.7
    np.savez(path, x=x, y=y)


def test_two_processes_train_the_same_net_as_one(tmp_path):
    from click.testing import CliRunner

    from lgn_fpga.cli import main

    data = tmp_path / "d.npz"
    _dataset(data)
    # 240 samples: 180 train - 18 validation = 162; batches of 31 leave 7 (4 + 3 per process)
    args = ["--dataset", str(data), "--arch", "48,24", "--epochs", "3", "--thresholds", "2",
            "--lr", "0.05", "--batch-size", "31", "--seed", "1", "--jitter", "0.05"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    r = CliRunner().invoke(main, ["train", *args, "-o", str(one)])
    assert r.exit_code == 0, r.output
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # python -m lgn_fpga.train is the torchrun entry point; --nproc makes it launch torchrun
    done = subprocess.run([sys.executable, "-m", "lgn_fpga.train", *args,
                           "--nproc", "2", "-o", str(two)], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    a, b = gg.load(one), gg.load(two)
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert np.array_equal(la.op, lb.op)
        assert np.array_equal(la.a, lb.a) and np.array_equal(la.b, lb.b)
    assert b.meta["processes"] == 2 and a.meta["processes"] == 1
    assert b.meta["test_accuracy"] == a.meta["test_accuracy"]
    assert b.meta["val_accuracy"] == a.meta["val_accuracy"]
    assert "--nproc 2" in b.meta["command"]


def test_nproc_cuda_without_gpus_is_one_line(tmp_path):
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has two GPUs")
    from click.testing import CliRunner

    from lgn_fpga.cli import main

    data = tmp_path / "d.npz"
    _dataset(data)
    r = CliRunner().invoke(main, ["train", "--dataset", str(data), "--arch", "12", "--device",
                                  "cuda", "--nproc", "2", "-o", str(tmp_path / "m.json")])
    assert r.exit_code != 0
    assert "cuda" in r.output.lower() and "Traceback" not in r.output
