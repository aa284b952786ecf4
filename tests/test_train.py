"""Training stage: relaxed layers, hardening (dense and conv) bit for bit against torch's
discretized forward, a few training steps end to end, shipped models' recorded accuracy,
and the rule that the CLI does not import torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lgn_fpga.models import shipped  # noqa: E402
from lgn_fpga.net import golden, ops  # noqa: E402
from lgn_fpga.net import graph as gg  # noqa: E402
from lgn_fpga.train.data import Dataset  # noqa: E402
from lgn_fpga.train.harden import harden  # noqa: E402
from lgn_fpga.train.layers import OP_BASIS, apply_gates, mix  # noqa: E402
from lgn_fpga.train.loop import TrainOptions, train  # noqa: E402
from lgn_fpga.train.net import LogicNet, parse_arch  # noqa: E402


def _randomize(net: LogicNet, seed: int) -> None:
    """Spread gate logits so the argmax lands on every op, not just the residual 'a'."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 3)


def test_op_basis_matches_truth_tables():
    for op in range(16):
        for a in (0, 1):
            for b in (0, 1):
                c0, c1, c2, c3 = OP_BASIS[op].tolist()
                assert c0 + c1 * a + c2 * b + c3 * a * b == ops.truth(op, a, b)


def test_relaxed_mixture_is_the_weighted_sum_of_relaxed_ops():
    # difflogic's relaxations, written out, mixed by softmax weights
    def relaxed(op, a, b):
        return [0 * a, a * b, a - a * b, a, b - a * b, b, a + b - 2 * a * b, a + b - a * b,
                1 - (a + b - a * b), 1 - (a + b - 2 * a * b), 1 - b, 1 - b + a * b, 1 - a,
                1 - a + a * b, 1 - a * b, 1 + 0 * a][op]

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 16, generator=g)
    a, b = torch.rand(7, 5, generator=g), torch.rand(7, 5, generator=g)
    w = torch.softmax(logits, -1)
    expected = sum(w[:, op] * relaxed(op, a, b) for op in range(16))
    assert torch.allclose(apply_gates(mix(logits, False), a, b), expected, atol=1e-6)


def test_hardening_takes_the_argmax_gate():
    net = LogicNet(12, 2, "16,8", tau=1.0, seed=3)
    _randomize(net, 4)
    graph = harden(net)
    for layer, stage in zip(graph.layers, net.stages):
        assert np.array_equal(layer.op, stage.logits.argmax(-1).numpy())
        assert np.array_equal(layer.a, stage.a.numpy())
        assert np.array_equal(layer.b, stage.b.numpy())


def _check_bit_for_bit(net: LogicNet, inputs: int, seed: int):
    graph = harden(net)
    bits = np.random.default_rng(seed).integers(0, 2, (300, inputs)).astype(np.uint8)
    with torch.no_grad():
        torch_bits = net.outputs(torch.from_numpy(bits).float(), hard=True).numpy()
        torch_scores = net(torch.from_numpy(bits).float(), hard=True).numpy() * net.tau
    assert set(np.unique(torch_bits)) <= {0.0, 1.0}
    graph_bits = golden.GoldenModel(graph).layer_bits(bits)[-1]
    assert np.array_equal(graph_bits, torch_bits.astype(np.uint8))
    assert np.array_equal(golden.predict(graph, bits).scores, np.rint(torch_scores))
    return graph


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_graph_equals_discretized_forward(seed):
    net = LogicNet(20, 3, "40,30,12", tau=2.0, seed=seed)
    _randomize(net, seed + 10)
    graph = _check_bit_for_bit(net, 20, seed)
    assert graph.widths == [40, 30, 12]


@pytest.mark.parametrize("arch", ["c4,12", "c3r2d2,c4d3n,10", "c2n,c3,8", "c5r3d1,10"])
def test_conv_graph_equals_discretized_forward(arch):
    # 7x9 image, 2 thresholds: odd sizes exercise the floor of the pooling
    net = LogicNet(7 * 9 * 2, 2, arch, tau=1.0, seed=5, image=(7, 9, 2))
    _randomize(net, 6)
    graph = _check_bit_for_bit(net, 7 * 9 * 2, 7)
    # every layer reads only the one before it: the format guarantees it, make() checked
    assert graph.depth > len(parse_arch(arch))


def _tiny_dataset(image=False) -> Dataset:
    rng = np.random.default_rng(0)
    n, f = 240, 16
    y = rng.integers(0, 3, n)
    # class c lights up features [5c, 5c+5): learnable in a few steps
    x = rng.random((n, f)) * 0.3
    for c in range(3):
        x[y == c, 5 * c:5 * c + 5] += 0.7
    return Dataset("tiny", x[:180], y[:180], x[180:], y[180:], 3, "first 180 / last 60",
                   (4, 4) if image else None)


def test_a_few_training_steps_give_a_valid_model_whose_accuracy_is_the_torch_one(tmp_path):
    data = _tiny_dataset()
    result = train(data, TrainOptions(arch="48,24", epochs=8, thresholds=2, tau=2.0,
                                      lr=0.05, batch_size=32, seed=1))
    path = tmp_path / "m.json"
    gg.save(result.graph, path)
    graph = gg.load(path)
    assert graph.sha256() == result.graph.sha256()
    bits = graph.encoding.encode(data.x_test)
    with torch.no_grad():
        torch_pred = result.net(torch.from_numpy(bits).float(), hard=True).argmax(1).numpy()
    golden_pred = golden.predict_features(graph, data.x_test).classes
    assert np.array_equal(torch_pred, golden_pred)
    assert graph.meta["test_accuracy"] == pytest.approx(np.mean(golden_pred == data.y_test))
    assert graph.meta["test_accuracy"] > 0.6  # it learned something
    for key in ("dataset", "split", "seed", "options", "training_seconds"):
        assert key in graph.meta


def test_conv_training_runs_and_hardens():
    data = _tiny_dataset(image=True)
    result = train(data, TrainOptions(arch="c4r2d2,12", epochs=2, thresholds=2, tau=1.0,
                                      batch_size=64, seed=0))
    assert result.graph.inputs == 16 * 2
    assert 0.0 <= result.test_accuracy <= 1.0


def test_same_seed_same_model():
    data = _tiny_dataset()
    opts = TrainOptions(arch="30,12", epochs=2, thresholds=2, batch_size=32, seed=7)
    assert train(data, opts).graph.sha256() == train(data, opts).graph.sha256()


@pytest.mark.parametrize("name", sorted(shipped()))
def test_shipped_model_reproduces_its_recorded_accuracy(name):
    from lgn_fpga.errors import UserError
    from lgn_fpga.train.evaluate import evaluation

    graph = gg.load(shipped()[name])
    try:
        result = evaluation(graph, graph.meta["dataset"])
    except UserError as e:  # e.g. the Debian dataset package is not installed here
        pytest.skip(str(e))
    assert result["accuracy"] == pytest.approx(graph.meta["test_accuracy"], abs=1e-6)
    assert result["confusion"].sum() == result["samples"]


def test_importing_the_cli_does_not_import_torch():
    code = ("import sys, lgn_fpga.cli, lgn_fpga.cli.train, lgn_fpga.train.data, "
            "lgn_fpga.train.difflogic_import; print(json.dumps('torch' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out) is False


def test_cli_train_and_evaluate(tmp_path):
    from click.testing import CliRunner

    from lgn_fpga.cli import main

    rng = np.random.default_rng(0)
    x = rng.random((120, 6))
    y = (x[:, 0] > 0.5).astype(np.int64)
    data = tmp_path / "d.npz"
    np.savez(data, x=x, y=y)
    out = tmp_path / "m.json"
    runner = CliRunner()
    r = runner.invoke(main, ["train", "--dataset", str(data), "--arch", "24,8", "--epochs",
                             "3", "--thresholds", "2", "--jitter", "0.05", "-o", str(out),
                             "--plot", str(tmp_path / "c.png")])
    assert r.exit_code == 0, r.output
    meta = gg.load(out).meta
    assert meta["command"].startswith("lgn-fpga train --dataset")
    assert (tmp_path / "c.png").stat().st_size > 0
    r = runner.invoke(main, ["evaluate", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["accuracy"] == pytest.approx(meta["test_accuracy"])
    r = runner.invoke(main, ["train", "--dataset", "nope", "-o", str(out)])
    assert r.exit_code != 0 and "unknown dataset" in r.output


@pytest.mark.parametrize("hard", [False, True])
def test_fused_layer_equals_the_plain_one_forward_and_backward(hard):
    from lgn_fpga.train.layers import LogicLayer

    rng = np.random.default_rng(0)
    layers = [LogicLayer(30, 20, rng=np.random.default_rng(1),
                         generator=torch.Generator().manual_seed(2), fused=fused)
              for fused in (False, True)]
    x = torch.from_numpy(rng.random((9, 30))).float()
    outs, grads = [], []
    for layer in layers:
        xi = x.clone().requires_grad_(True)
        out = layer(xi, hard)
        (out * torch.arange(20.0)).sum().backward()
        outs.append(out.detach())
        grads.append((xi.grad, layer.logits.grad))
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    if not hard:
        assert torch.allclose(grads[0][1], grads[1][1], atol=1e-5)


def test_fused_gates_backward_is_the_exact_gradient():
    from lgn_fpga.train.layers import FusedGates

    g = torch.Generator().manual_seed(0)
    xt = torch.rand(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    a, b = torch.randint(0, 12, (8,), generator=g), torch.randint(0, 12, (8,), generator=g)
    coef = torch.randn(8, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, c: FusedGates.apply(x, a, b, c), (xt, coef))


def test_validation_split_is_carved_from_training_and_scored_once(tmp_path):
    from lgn_fpga.train.data import validation_split

    data = _tiny_dataset()
    train_part, x_val, y_val, how = validation_split(data, 0.2)
    assert len(train_part.y_train) + len(y_val) == len(data.y_train)
    assert "seed 0" in how
    # disjoint, and every training row is in exactly one part
    rows = {tuple(r) for r in data.x_train}
    assert {tuple(r) for r in train_part.x_train} | {tuple(r) for r in x_val} == rows
    assert not {tuple(r) for r in train_part.x_train} & {tuple(r) for r in x_val}
    # stratified: every class in the validation split
    assert set(y_val) == set(data.y_train)
    assert np.array_equal(validation_split(data, 0.2)[2], y_val)  # seeded
    assert np.array_equal(train_part.x_test, data.x_test)

    result = train(data, TrainOptions(arch="48,24", epochs=3, thresholds=2, tau=2.0,
                                      lr=0.05, batch_size=32, seed=1, val_fraction=0.2))
    meta = result.graph.meta
    assert meta["val_samples"] == len(y_val) and meta["train_samples"] == len(train_part.y_train)
    pred_val = golden.predict_features(result.graph, x_val).classes
    assert meta["val_accuracy"] == pytest.approx(np.mean(pred_val == y_val))
    pred_test = golden.predict_features(result.graph, data.x_test).classes
    assert meta["test_accuracy"] == pytest.approx(np.mean(pred_test == data.y_test))
    # the per-epoch curve is the validation one; the test split is not looked at
    assert len(result.history.val_accuracy) == 3
    assert not hasattr(result.history, "test_accuracy")


def test_no_validation_split():
    result = train(_tiny_dataset(), TrainOptions(arch="30,12", epochs=1, thresholds=2,
                                                 batch_size=32, val_fraction=0.0))
    assert result.val_accuracy is None and "val_accuracy" not in result.graph.meta
    assert result.graph.meta["train_samples"] == 180


def test_npz_image_shape_colour_channels_feed_conv_blocks(tmp_path):
    from lgn_fpga.errors import UserError
    from lgn_fpga.train.data import load

    rng = np.random.default_rng(0)
    x, y = rng.random((80, 6 * 6 * 3)), rng.integers(0, 2, 80)
    path = tmp_path / "rgb.npz"
    np.savez(path, x=x, y=y, image_shape=np.array([6, 6, 3]))
    data = load(str(path))
    assert data.image_shape == (6, 6, 3)
    result = train(data, TrainOptions(arch="c3n,12", epochs=1, thresholds=2, batch_size=32))
    assert result.graph.inputs == 6 * 6 * 3 * 2
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x, y=y, image_shape=np.array([6, 6]))
    with pytest.raises(UserError, match="image_shape"):
        load(str(bad))
