"""Fixtures from the real torchlogix 0.2.2 (Python >= 3.12, torch; not run by the tests):
two small conv models, pickled whole with torch.save, with random inputs and torchlogix's own
eval-mode forward on them (and two dense nets on images). Regenerate with

    python3.12 -m pip install torch torchlogix==0.2.2
    python3.12 tests/data/torchlogix/make_fixtures.py tests/data/torchlogix
"""
import sys

import numpy as np
import torch
from torchlogix.layers import (
    FixedBinarization,
    GroupSum,
    LearnableBinarization,
    LogicConv2d,
    LogicConv3d,
    LogicDense,
    OrPooling2d,
    OrPooling3d,
)
from torchlogix.models.conv import ClgnMnist
from torchlogix.models.dense import Dlgn

out = sys.argv[1]
fixtures_only = "--all" not in sys.argv
torch.manual_seed(0)
gen = np.random.default_rng(0)


def randomize(model, ties=True):
    for name, p in model.named_parameters():
        if "tree_weights" in name or name.endswith(".weight"):
            with torch.no_grad():
                p.normal_()
                if ties and p.shape[-1] == 16:
                    flat = p.view(-1, 16)
                    pick = torch.rand(len(flat)) < 0.2
                    flat[pick, 5] = flat[pick, 2]  # exact ties between ops 2 and 5
                if ties and p.shape[-1] == 4:
                    flat = p.view(-1, 4)
                    flat[torch.rand(flat.shape) < 0.1] = 0.0
    return model


def run(name, model, x, circuit_shape=None):
    model.eval()
    with torch.no_grad():
        y = model(torch.tensor(x)).numpy()
    torch.save(model, f"{out}/{name}.pt")
    if not fixtures_only:
        np.savez(f"{out}/{name}.npz", x=x, y=y)
    else:
        np.savez_compressed(f"{out}/{name}.npz", x=x[:200], y=y[:200])
    if circuit_shape is not None:
        from torchlogix.circuit import Circuit
        try:
            c = Circuit.from_model(torch.nn.Sequential(*list(model)[1:]), circuit_shape)
            c.write_json(f"{out}/{name}.circuit.json")
            print("circuit", len(c.gates), "gates")
        except Exception as e:
            print("circuit failed:", type(e).__name__, str(e)[:200])
    ties = ((y == y.max(1, keepdims=True)).sum(1) > 1).sum()
    print(name, x.shape, "->", y.shape, "distinct", len({tuple(r) for r in y}), "ties", ties)


# A: 2-D, raw, per-channel fixed thermometer (feature_dim 1), padded conv, ragged OR windows,
#    strided conv with channel groups, learnable dense wiring, tau
th = torch.sort(torch.randn(2, 3), dim=1).values
pk = {"weight_init": "random"}
a = torch.nn.Sequential(
    FixedBinarization(th, feature_dim=1),
    LogicConv2d(in_dim=(9, 8), channels=6, num_kernels=5, tree_depth=3,
                receptive_field_size=3, stride=1, padding=1, parametrization_kwargs=pk),
    OrPooling2d(kernel_size=3, stride=2, padding=1),
    LogicConv2d(in_dim=5, channels=5, num_kernels=6, tree_depth=2, receptive_field_size=2,
                stride=2, padding=0, parametrization_kwargs=pk,
                connections_kwargs={"channel_group_size": 2}),
    OrPooling2d(kernel_size=2, stride=2, padding=1),
    torch.nn.Flatten(),
    LogicDense(in_dim=24, out_dim=30, connections="learnable", parametrization_kwargs=pk),
    LogicDense(in_dim=30, out_dim=16, parametrization_kwargs=pk),
    GroupSum(k=4, tau=2.0),
)
x = (gen.integers(-16, 17, size=(600, 2, 9, 8)) / 8).astype(np.float32)  # compresses
x.reshape(-1)[::11] = th.numpy().reshape(-1)[0]   # on a threshold: strict x > t
run("a_raw2d", randomize(a), x)

# B: 3-D, warp, learnable global thermometer (feature_dim 1)
pw = {"weight_init": "random"}
b = torch.nn.Sequential(
    LearnableBinarization(torch.tensor([-0.5, 0.1, 0.7]), feature_dim=1),
    LogicConv3d(in_dim=(4, 5, 5), channels=6, num_kernels=4, tree_depth=2,
                receptive_field_size=2, stride=1, padding=1, parametrization="warp",
                parametrization_kwargs=pw),
    OrPooling3d(kernel_size=2, stride=2, padding=0),
    torch.nn.Flatten(),
    LogicDense(in_dim=72, out_dim=40, parametrization="warp", parametrization_kwargs=pw),
    GroupSum(k=5),
)
with torch.no_grad():
    b[0].raw_diffs.add_(torch.randn(3) * 0.3)
x = (gen.integers(-16, 17, size=(600, 2, 4, 5, 5)) / 8).astype(np.float32)
run("b_warp3d", randomize(b), x)

# C, D: dense nets on an image (B, 3, 4, 4) with per-channel thresholds, the bits folded into
#    the channel axis (feature_dim 1, as DlgnCifar10) or into the width (the default -2)
for name, fd in (("c_dense_image_c", 1), ("d_dense_image_w", -2)):
    th = torch.sort(torch.randn(3, 2), dim=1).values
    m = Dlgn(thresholds=th, binarization="fixed", binarization_kwargs={"feature_dim": fd},
             in_dim=96, n_layers=2, neurons_per_layer=[60, 30], class_count=3, tau=1.0,
             parametrization_kwargs=pk)
    x = (gen.integers(-16, 17, size=(600, 3, 4, 4)) / 8).astype(np.float32)
    run(name, randomize(m), x)

if fixtures_only:
    sys.exit(0)

# C: the real ClgnMnist (dummy binarization: bit input), light gates, and its circuit JSON
c = ClgnMnist(thresholds=None, binarization="dummy", binarization_kwargs={}, k_num=2,
              parametrization="light", tau=3.0)
x = (gen.random((300, 1, 28, 28)) < 0.3).astype(np.float32)
run("x_clgnmnist_light", randomize(c), x, circuit_shape=[1, 28, 28])

# D: ClgnMnist, raw
d = ClgnMnist(thresholds=None, binarization="dummy", binarization_kwargs={}, k_num=2,
              parametrization="raw", parametrization_kwargs=pk)
run("x_clgnmnist_raw", randomize(d), x)
