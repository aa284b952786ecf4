"""Datasets and the thermometer encoding (numpy only: no torch needed)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from lgn_fpga.errors import UserError
from lgn_fpga.train import data


def test_stratified_split_is_fixed_disjoint_and_balanced():
    y = np.repeat(np.arange(4), [40, 20, 12, 8])
    train, test = data.stratified_split(y)
    again = data.stratified_split(y)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert not set(train) & set(test) and len(train) + len(test) == len(y)
    assert list(np.bincount(y[test])) == [10, 5, 3, 2]


def test_digits_split():
    pytest.importorskip("sklearn")
    d = data.load("digits")
    assert d.x_train.shape[1] == 64 and d.image_shape == (8, 8) and d.classes == 10
    assert len(d.y_train) + len(d.y_test) == 1797 and len(d.y_test) == 450


def test_thermometer_thresholds_are_distinct_midpoints():
    x = np.repeat(np.arange(17.0), 10).reshape(-1, 1) * np.ones((1, 3))
    enc = data.fit_thermometer(x, 4, how="foreground")
    th = enc.thresholds
    assert th.shape == (3, 4) and np.all(th == th[0])
    assert len(np.unique(th[0])) == 4 and np.all(th[0] % 1 == 0.5)
    # per feature: a constant feature still gets a valid (all-ones) encoding
    x2 = np.column_stack([np.arange(100.0), np.full(100, 3.0)])
    enc2 = data.fit_thermometer(x2, 3, how="feature")
    pooled = data.fit_thermometer(x, 4, how="pooled").thresholds[0]
    assert len(np.unique(pooled)) == 4
    assert enc2.encode(x2)[:, 3:].all()
    bits = enc2.encode(x2)[:, :3]
    assert np.all(np.diff(bits.sum(1)) >= 0)  # monotone in the value


def test_read_idx_and_missing_fashion_mnist(tmp_path, monkeypatch):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + arr.tobytes()))
    assert np.array_equal(data.read_idx(path), arr)
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        data.load("fashion-mnist")


def test_npz_datasets(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "a.npz"
    np.savez(p, x=rng.random((40, 3)), y=np.arange(40) % 2)
    d = data.load(str(p))
    assert len(d.y_test) == 10 and d.classes == 2
    q = tmp_path / "b.npz"
    np.savez(q, x_train=rng.random((5, 2)), y_train=np.zeros(5, int), x_test=rng.random((3, 2)),
             y_test=np.ones(3, int))
    assert data.load(str(q)).split == "given by the file"
    r = tmp_path / "c.npz"
    np.savez(r, z=np.zeros(3))
    with pytest.raises(UserError, match="needs arrays x and y"):
        data.load(str(r))
    with pytest.raises(UserError, match="unknown dataset"):
        data.load("imagenet")
