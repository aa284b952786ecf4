"""import-difflogic: networks in difflogic 0.1.0's layout, predictions checked against a
direct evaluation of difflogic's semantics (its bin_op formulas, eval mode = argmax)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from lgn_fpga.cli import main  # noqa: E402
from lgn_fpga.net import golden  # noqa: E402
from lgn_fpga.net import graph as gg  # noqa: E402
from lgn_fpga.train import difflogic_import as di  # noqa: E402

INPUTS, WIDTHS, CLASSES, TAU = 24, (40, 30, 20), 4, 2.5


def bin_op(a, b, i):
    """difflogic.functional.bin_op, as published."""
    return [torch.zeros_like(a), a * b, a - a * b, a, b - a * b, b, a + b - 2 * a * b,
            a + b - a * b, 1 - (a + b - a * b), 1 - (a + b - 2 * a * b), 1 - b,
            1 - b + a * b, 1 - a, 1 - a + a * b, 1 - a * b, torch.ones_like(a)][i]


def difflogic_eval(layers, x, k, tau):
    """difflogic's eval mode: one-hot argmax weights into bin_op_s, then GroupSum."""
    for weights, (ia, ib) in layers:
        a, b = x[..., ia], x[..., ib]
        w = torch.nn.functional.one_hot(weights.argmax(-1), 16).to(torch.float32)
        x = sum(w[..., i] * bin_op(a, b, i) for i in range(16))
    return x.reshape(*x.shape[:-1], k, x.shape[-1] // k).sum(-1) / tau


def _difflogic_layers(seed=0):
    """Weights and (a, b) index tuples as difflogic's LogicLayer makes them ('random')."""
    g = torch.Generator().manual_seed(seed)
    layers, in_dim = [], INPUTS
    for out_dim in WIDTHS:
        c = torch.randperm(2 * out_dim, generator=g) % in_dim
        c = torch.randperm(in_dim, generator=g)[c].reshape(2, out_dim)
        weights = torch.randn(out_dim, 16, generator=g) * 3
        layers.append((weights, (c[0].long(), c[1].long())))
        in_dim = out_dim
    return layers


def _expected(layers, bits):
    with torch.no_grad():
        return difflogic_eval(layers, torch.from_numpy(bits).float(), CLASSES, TAU).numpy()


def _check(graph, layers):
    bits = np.random.default_rng(1).integers(0, 2, (500, INPUTS)).astype(np.uint8)
    scores = golden.predict(graph, bits).scores
    assert np.array_equal(scores, np.rint(_expected(layers, bits) * TAU))


def _state_dict(layers, with_indices):
    # torch.nn.Sequential(Flatten(), LogicLayer, ..., GroupSum): keys 1.weights, 2.weights...
    sd = {f"{n + 1}.weights": w for n, (w, _) in enumerate(layers)}
    if with_indices:
        sd.update({f"{n + 1}.indices": torch.stack(ind) for n, (_, ind) in enumerate(layers)})
    return sd


def test_state_dict_with_indices_keys(tmp_path):
    layers = _difflogic_layers()
    path = tmp_path / "sd.pt"
    torch.save(_state_dict(layers, True), path)
    graph = di.to_graph(di.read(path), classes=CLASSES, inputs=INPUTS)
    _check(graph, layers)


def test_state_dict_without_indices_says_why_and_takes_an_indices_file(tmp_path):
    layers = _difflogic_layers(2)
    path = tmp_path / "sd.pt"
    torch.save(_state_dict(layers, False), path)
    with pytest.raises(di.UserError, match="issue #34"):
        di.read(path)
    idx = tmp_path / "idx.pt"
    torch.save({f"{n + 1}.indices": ind for n, (_, ind) in enumerate(layers)}, idx)
    _check(di.to_graph(di.read(path, idx), classes=CLASSES), layers)


def test_npz_needs_no_torch(tmp_path):
    layers = _difflogic_layers(3)
    path = tmp_path / "net.npz"
    np.savez(path, **{k: v.numpy() for k, v in _state_dict(layers, True).items()})
    _check(di.to_graph(di.read(path), classes=CLASSES), layers)


def test_pickled_model_without_difflogic_installed(tmp_path):
    """torch.save(model) of difflogic modules; difflogic is absent when we read it back."""
    layers = _difflogic_layers(4)
    fake = types.ModuleType("difflogic")
    fake_mod = types.ModuleType("difflogic.difflogic")

    class LogicLayer(torch.nn.Module):
        def __init__(self, weights, indices):
            super().__init__()
            self.weights = torch.nn.Parameter(weights)
            self.indices = indices  # a plain tuple, as difflogic keeps it

    class GroupSum(torch.nn.Module):
        def __init__(self, k, tau):
            super().__init__()
            self.k, self.tau = k, tau

    for cls in (LogicLayer, GroupSum):
        cls.__module__ = "difflogic.difflogic"
        cls.__qualname__ = cls.__name__
        setattr(fake_mod, cls.__name__, cls)
    fake.difflogic = fake_mod
    sys.modules["difflogic"], sys.modules["difflogic.difflogic"] = fake, fake_mod
    try:
        model = torch.nn.Sequential(torch.nn.Flatten(),
                                    *[LogicLayer(w, ind) for w, ind in layers],
                                    GroupSum(CLASSES, TAU))
        path = tmp_path / "model.pt"
        torch.save(model, path)
    finally:
        del sys.modules["difflogic"], sys.modules["difflogic.difflogic"]
    imported = di.read(path)
    assert imported.classes == CLASSES and imported.tau == TAU
    graph = di.to_graph(imported)
    assert graph.inputs == INPUTS and graph.tau == TAU
    _check(graph, layers)


def test_cli_import_difflogic(tmp_path):
    layers = _difflogic_layers(5)
    path = tmp_path / "sd.pt"
    torch.save(_state_dict(layers, True), path)
    enc = tmp_path / "th.npy"
    np.save(enc, np.tile([[0.5, 1.5]], (INPUTS // 2, 1)))
    out = tmp_path / "m.json"
    r = CliRunner().invoke(main, ["import-difflogic", str(path), "-o", str(out), "--classes",
                                  str(CLASSES), "--encoding", str(enc)])
    assert r.exit_code == 0, r.output
    graph = gg.load(out)
    assert graph.encoding.bits == INPUTS
    _check(graph, layers)
    r = CliRunner().invoke(main, ["import-difflogic", str(path), "-o", str(out)])
    assert r.exit_code != 0 and "--classes" in r.output
