"""torchlogix import without torchlogix: fixtures in torchlogix 0.2.2's shapes, and an
independent numpy forward of its eval-mode semantics (written from its source: the raw
basis sum, the Walsh sum, the light basis, GroupSum, binarization) as the reference."""

import itertools
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke

from lgn_fpga.errors import UserError
from lgn_fpga.net import golden
from lgn_fpga.train import torchlogix_import as tli

torch = pytest.importorskip("torch")


# -- the reference: torchlogix's eval forward, transcribed --------------------------------


def ref_raw(a, b, w):
    """functional.weighted_raw_basis_sum with RawLUTParametrization._sample_eval's
    one_hot(argmax) weights; ``w`` (..., 16) broadcasts against a and b."""
    w = np.eye(16, dtype=np.float32)[w.argmax(-1)]          # one_hot(argmax)
    c1 = w[..., 8:16].sum(-1)
    ca = w[..., [2, 3, 6, 7]].sum(-1) - w[..., [8, 9, 12, 13]].sum(-1)
    cb = w[..., [4, 5, 6, 7]].sum(-1) - w[..., [8, 9, 10, 11]].sum(-1)
    cab = (w[..., 1] - w[..., 2] - w[..., 4] - 2 * w[..., 6] - w[..., 7] + w[..., 8]
           + 2 * w[..., 9] + w[..., 11] + w[..., 13] - w[..., 14])
    return c1 + ca * a + cb * b + cab * a * b


def ref_warp(a, b, w):
    """WarpLUTParametrization.forward (eval): weighted_walsh_basis_sum_2 term by term, then
    _sample_eval(-x) = (-x > 0)."""
    big_a, big_b = (1 - 2 * a).astype(np.float32), (1 - 2 * b).astype(np.float32)
    v = w[..., 0] * np.float32(1) + w[..., 1] * big_b
    v = v + w[..., 2] * big_a
    v = v + w[..., 3] * (big_a * big_b)
    return (-v > 0).astype(np.float32)


def ref_light(a, b, w):
    """LightLUTParametrization.forward (eval): (w > 0) in weighted_light_basis_sum_2."""
    w = (w > 0).astype(np.float32)
    return (w[..., 0] * (1 - a) * (1 - b) + w[..., 1] * (1 - a) * b
            + w[..., 2] * a * (1 - b) + w[..., 3] * a * b)


REF = {"raw": ref_raw, "warp": ref_warp, "light": ref_light}


def ref_forward(x, thresholds, layers, k, tau=1.0, beta=0.0):
    bits = (x[:, :, None] > thresholds[None]).reshape(len(x), -1).astype(np.float32)
    for kind, w, idx in layers:
        bits = REF[kind](bits[:, idx[0]], bits[:, idx[1]], w)
    return (bits.reshape(len(x), k, -1).sum(-1) + beta) / tau


def make_state_dict(seed, kind="raw", learnable_first=False, widths=(60, 48, 30)):
    rng = np.random.default_rng(seed)
    features, t = 6, 3
    th = np.sort(rng.normal(size=(features, t)).astype(np.float32), axis=1)
    sd = {"0.thresholds": torch.tensor(th)}
    layers = []
    previous = features * t
    for n, width in enumerate(widths):
        p = f"{n + 2}"
        w = rng.normal(size=(width, 16 if kind == "raw" else 4)).astype(np.float32)
        if kind == "raw":
            w[rng.random(width) < 0.2, :] = 0.5   # ties in the logits: argmax takes the first
        sd[f"{p}.weight"] = torch.tensor(w)
        if learnable_first and n == 0:
            cand = rng.integers(0, previous, size=(4, 2, width))
            cw = rng.random((4, 2, width)).astype(np.float32)
            sd[f"{p}.connections.indices"] = torch.tensor(cand)
            sd[f"{p}.connections.weights"] = torch.tensor(cw)
            chosen = cw.argmax(0)
            idx = np.take_along_axis(cand, chosen[None], 0)[0]
        else:
            idx = rng.integers(0, previous, size=(2, width))
            sd[f"{p}.connections.indices"] = torch.tensor(idx)
        layers.append((kind, w, idx))
        previous = width
    return sd, th, layers


def features(seed, n=600):
    return np.random.default_rng(seed).normal(size=(n, 6)).astype(np.float32)


def check_against_reference(graph, x, th, layers, k, **kw):
    want = ref_forward(x, th, layers, k, **kw)
    got = golden.predict_features(graph, x)
    assert np.array_equal(got.classes, np.argmax(want, axis=1))
    return want, got


@pytest.mark.parametrize("kind", ["raw", "warp", "light"])
def test_state_dict_matches_torchlogix_forward(tmp_path, kind):
    sd, th, layers = make_state_dict(1, kind, learnable_first=True)
    torch.save(sd, tmp_path / "m.pt")
    g = tli.load(tmp_path / "m.pt", classes=5, parametrization=None if kind == "raw" else kind)
    x = features(2)
    want, got = check_against_reference(g, x, th, layers, 5)
    assert np.array_equal(got.scores, want.astype(np.int32))
    ties = (want == want.max(1, keepdims=True)).sum(1) > 1
    assert ties.sum() > 10  # the tie rule is exercised


def test_learnable_binarization_uses_recomputed_thresholds(tmp_path):
    sd, _, layers = make_state_dict(3)
    raw = np.random.default_rng(4).normal(size=(6, 3)).astype(np.float32)
    sd["0.raw_diffs"] = torch.tensor(raw)   # the stale "0.thresholds" stays in the file
    torch.save(sd, tmp_path / "m.pt")
    g = tli.load(tmp_path / "m.pt", classes=5)
    s = 0.1 + 1e-6
    softplus = np.log1p(np.exp(raw[:, 1:].astype(np.float64) / s)) * s
    th = np.cumsum(np.concatenate([raw[:, :1], softplus], axis=1), axis=1)
    assert np.allclose(g.encoding.thresholds, th, rtol=1e-6)
    x = features(5)
    check_against_reference(g, x, g.encoding.thresholds.astype(np.float32), layers, 5)


def test_ambiguous_or_missing_information_is_one_line(tmp_path):
    sd, _, _ = make_state_dict(1, "warp")
    torch.save(sd, tmp_path / "m.pt")
    with pytest.raises(UserError, match="--parametrization"):
        tli.load(tmp_path / "m.pt", classes=5)
    sd, _, _ = make_state_dict(1)
    torch.save(sd, tmp_path / "m.pt")
    with pytest.raises(UserError, match="--classes"):
        tli.load(tmp_path / "m.pt")
    torch.save({"4._indices_L0": torch.zeros(3)}, tmp_path / "c.pt")
    with pytest.raises(UserError, match="conv"):
        tli.load(tmp_path / "c.pt")


# -- circuit JSON --------------------------------------------------------------------------

EVAL = {  # torchlogix.circuit._eval_gate_op, transcribed
    "CONST_FALSE": lambda a, b: 0, "CONST_TRUE": lambda a, b: 1, "WIRE": lambda a, b: a,
    "NOT": lambda a, b: 1 - a, "NOT_A": lambda a, b: 1 - a, "NOT_B": lambda a, b: 1 - b,
    "AND": lambda a, b: a & b, "OR": lambda a, b: a | b, "XOR": lambda a, b: a ^ b,
    "NAND": lambda a, b: 1 - (a & b), "NOR": lambda a, b: 1 - (a | b),
    "XNOR": lambda a, b: 1 - (a ^ b), "AND_NOT_B": lambda a, b: a & (1 - b),
    "AND_NOT_A": lambda a, b: (1 - a) & b, "OR_NOT_B": lambda a, b: a | (1 - b),
    "OR_NOT_A": lambda a, b: (1 - a) | b,
}


def random_circuit(seed, n_inputs=10, n_gates=80, classes=3, simplified=True):
    rng = np.random.default_rng(seed)
    names = sorted(EVAL)
    gates = []
    for i in range(n_gates):
        gid = n_inputs + 2 * i + 5  # ids need not be contiguous after simplify
        pool = list(range(n_inputs)) + [g["gate_id"] for g in gates]
        op = names[rng.integers(len(names))]
        gates.append({"gate_id": gid, "op": op, "in0": int(rng.choice(pool)),
                      "in1": int(rng.choice(pool)), "node_idx": -1})
    pool = list(range(n_inputs)) + [g["gate_id"] for g in gates]
    sums = []
    for c in range(classes):
        size = 7 + (c if simplified else 0)   # unequal groups, as simplify leaves them
        ids = [int(v) for v in rng.choice(pool, size)]
        sums.append({"node_id": 10_000 + c, "input_ids": ids, "tau": 2.0,
                     "beta": float(3 - c if simplified else 0)})
    return {"n_inputs": n_inputs, "input_shape": [n_inputs],
            "outputs": [s["node_id"] for s in sums], "output_shape": [classes],
            "gates": gates, "sum_nodes": sums}


def eval_circuit(doc, bits):
    out = []
    for row in bits:
        v = {i: int(row[i]) for i in range(doc["n_inputs"])}
        for g in doc["gates"]:
            v[g["gate_id"]] = EVAL[g["op"]](v.get(g["in0"], 0), v.get(g["in1"], 0))
        out.append([(sum(v[i] for i in s["input_ids"]) + s["beta"]) / s["tau"]
                    for s in doc["sum_nodes"]])
    return np.array(out)


@pytest.mark.parametrize("simplified", [False, True])
def test_circuit_json_matches_the_circuit(tmp_path, simplified):
    doc = random_circuit(7, simplified=simplified)
    (tmp_path / "c.json").write_text(json.dumps(doc))
    g = tli.load(tmp_path / "c.json")
    bits = np.random.default_rng(8).integers(0, 2, (400, 10), dtype=np.uint8)
    want = eval_circuit(doc, bits)
    got = golden.predict(g, bits)
    assert np.array_equal(got.classes, np.argmax(want, axis=1))
    offset = g.meta.get("score_offset", 0.0)
    assert np.array_equal((got.scores + offset) / 2.0, want)
    assert g.tau == 2.0


def test_circuit_without_sum_nodes_needs_classes(tmp_path):
    doc = random_circuit(9)
    doc.pop("sum_nodes")
    doc["outputs"] = [g["gate_id"] for g in doc["gates"][-6:]]
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="--classes"):
        tli.load(tmp_path / "c.json")
    assert tli.load(tmp_path / "c.json", classes=2).outputs == 6


# -- pickled whole models (stand-in classes under torchlogix's module names) ---------------


FAKE = {  # torchlogix 0.2.2's class paths
    "torchlogix.models.dense": ["Dlgn"], "torchlogix.models.conv": ["ClgnMnist"],
    "torchlogix.layers.dense": ["LogicDense"], "torchlogix.layers.groupsum": ["GroupSum"],
    "torchlogix.layers.binarization": ["FixedBinarization", "LearnableBinarization",
                                       "DummyBinarization"],
    "torchlogix.layers.conv": ["LogicConv2d", "LogicConv3d", "LogicConvTranspose2d"],
    "torchlogix.layers.pool": ["OrPooling2d", "OrPooling3d"],
    "torchlogix.modules.resblock": ["ResidualLogicBlock"],
    "torchlogix.connections": ["FixedDenseConnections", "FixedConvConnections"],
    "torchlogix.parametrization": ["RawLUTParametrization", "WarpLUTParametrization",
                                   "LightLUTParametrization"],
}
SEQUENTIAL = {"Dlgn", "ClgnMnist"}


def fake_torchlogix(monkeypatch):
    """Register modules named like torchlogix's, so torch.save pickles real class paths."""
    mods = {}
    for module in ["torchlogix", "torchlogix.layers", "torchlogix.models",
                   "torchlogix.modules", *FAKE]:
        mods[module] = types.ModuleType(module)
        monkeypatch.setitem(sys.modules, module, mods[module])
    classes = {}
    for module, names in FAKE.items():
        for name in names:
            base = torch.nn.Sequential if name in SEQUENTIAL else torch.nn.Module
            c = type(name, (base,), {"__module__": module, "forward": lambda self, x: x})
            c.__qualname__ = name
            setattr(mods[module], name, c)
            classes[name] = c
    return classes


def test_pickled_model_reads_without_torchlogix(tmp_path, monkeypatch):
    sd, th, layers = make_state_dict(11, "light")
    with monkeypatch.context() as m:
        c = fake_torchlogix(m)
        binar = c["FixedBinarization"]()
        binar.register_buffer("thresholds", torch.tensor(th))
        mods = [binar, torch.nn.Flatten()]
        for _, w, idx in layers:
            layer = c["LogicDense"]()
            layer.weight = torch.nn.Parameter(torch.tensor(w))
            layer.lut_rank = 2
            layer.parametrization = c["LightLUTParametrization"]()
            layer.connections = c["FixedDenseConnections"]()
            layer.connections.register_buffer("indices", torch.tensor(idx))
            mods.append(layer)
        gs = c["GroupSum"]()
        gs.k, gs.tau, gs.beta = 5, 3.0, 0.0
        model = c["Dlgn"](*mods, gs)
        torch.save(model, tmp_path / "model.pt")
    assert "torchlogix.layers.dense" not in sys.modules  # gone: nothing of it can run
    g = tli.load(tmp_path / "model.pt")
    assert g.classes == 5 and g.tau == 3.0
    check_against_reference(g, features(12), th, layers, 5)


def test_pickle_with_a_foreign_global_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="refusing"):
        tli.load(tmp_path / "evil.pt")


def test_cli_import_torchlogix(tmp_path):
    sd, th, layers = make_state_dict(1)
    torch.save(sd, tmp_path / "m.pt")
    out = tmp_path / "net.json"
    result = invoke("import-torchlogix", tmp_path / "m.pt", "-o", out, "--classes", 5)
    assert result.exit_code == 0, result.output
    result = invoke("import-torchlogix", tmp_path / "m.pt", "-o", tmp_path / "x.json")
    assert result.exit_code != 0 and "--classes" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists()


# -- conv logic blocks with OR pooling -----------------------------------------------------
#
# A model is a list of stage specs; `build_pickle` makes it a torchlogix-shaped pickle (fake
# classes, the attributes and tensors torchlogix 0.2.2 keeps), `ref_model_forward` runs its
# eval forward transcribed from torchlogix's source in numpy.


def merge_dim_with_last(x, k):
    """torchlogix/layers/binarization.py, merge_dim_with_last."""
    n = x.ndim
    k = k + n if k < 0 else k
    perm = list(range(n))
    perm.pop(n - 1)
    perm.insert(k + 1, n - 1)
    y = x.transpose(perm)
    shape = list(y.shape)
    shape[k] = shape[k] * shape[k + 1]
    shape.pop(k + 1)
    return y.reshape(shape)


def ref_binarize(x, th, feature_dim):
    """FixedBinarization.forward / LearnableBinarization._sample_eval (eval): strict x > t,
    per-channel thresholds viewed as (1, C, 1, 1, T) for a 4-D image batch."""
    x = x[..., None]
    if th.ndim == 2 and x.ndim == 5:
        th = th.reshape(1, -1, 1, 1, th.shape[1])
    return merge_dim_with_last((x > th).astype(np.float32), feature_dim)


def ref_conv(x, st):
    """_LogicConvNd.forward (eval): F.pad with 0, FixedConvConnections.forward level 0
    (x[:, c, *spatial] of _indices_L0), then per level x[..., _indices_Ll].movedim(-2, 1);
    the parametrization reduces dim 1 with contraction 'fc,bcsf->bcsf', weights (S, K, n)."""
    nd = x.ndim - 2
    p = st["padding"]
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p)] * nd)
    idx = st["indices"][0]
    x = x[(slice(None), idx[..., -1]) + tuple(idx[..., d] for d in range(nd))]
    x = REF[st["kind"]](x[:, 0], x[:, 1], st["weights"][0].transpose(1, 0, 2)[:, None])
    for level in range(1, len(st["weights"])):
        x = np.moveaxis(x[..., st["indices"][level]], -2, 1)
        x = REF[st["kind"]](x[:, 0], x[:, 1], st["weights"][level].transpose(1, 0, 2)[:, None])
    return x.reshape(x.shape[0], x.shape[1], *st["positions"])


def ref_pool(x, st):
    """OrPooling{2,3}d.forward (eval): F.max_pool of x.float(), floor mode; its padding is
    -inf. Written as loops over output positions, not windows of a padded array."""
    nd = x.ndim - 2
    k, s, p = st["kernel"], st["stride"], st["padding"]
    out_shape = [(n + 2 * q - kk) // ss + 1 for n, kk, ss, q in zip(x.shape[2:], k, s, p)]
    out = np.empty(x.shape[:2] + tuple(out_shape), dtype=np.float32)
    for pos in itertools.product(*(range(n) for n in out_shape)):
        sl = tuple(slice(max(o * ss - q, 0), min(o * ss - q + kk, n))
                   for o, ss, q, kk, n in zip(pos, s, p, k, x.shape[2:]))
        out[(slice(None), slice(None)) + pos] = x[(slice(None), slice(None)) + sl].max(
            axis=tuple(range(2, 2 + nd)))
    return out


def ref_model_forward(x, spec):
    for st in spec:
        if st["type"] == "binarize":   # DummyBinarization: x.float()
            x = x if st["thresholds"] is None else ref_binarize(x, st["effective"],
                                                                st["feature_dim"])
        elif st["type"] == "conv":
            x = ref_conv(x, st)
        elif st["type"] == "pool":
            x = ref_pool(x, st)
        elif st["type"] == "flatten":
            x = x.reshape(len(x), -1)
        elif st["type"] == "dense":
            x = REF[st["kind"]](x[:, st["indices"][0]], x[:, st["indices"][1]], st["weight"])
        elif st["type"] == "groupsum":
            x = x.reshape(len(x), st["k"], -1).sum(-1)
    return x


def conv_spec(rng, in_shape, kernels, depth, field, stride, padding, kind="raw",
              shuffle_tree=False, prefer=None):
    """A LogicConv layer's tensors as torchlogix 0.2.2 builds them: random receptive-field
    taps (FixedConvConnections._get_random_receptive_field_tensor), slid over the padded input
    (_apply_sliding_window_tensor), tree indices arange(size).view(-1, 2).T per level."""
    c, *spatial = in_shape
    nd = len(spatial)
    field = (field,) * nd if isinstance(field, int) else tuple(field)
    s_nodes = 2 ** (depth - 1)
    taps = np.stack([rng.integers(0, r, (2, kernels, s_nodes)) for r in field]
                    + [rng.integers(0, c, (2, kernels, s_nodes))], axis=-1)  # (L, K, S, nd+1)
    starts = [np.arange(0, n + 2 * padding - r + 1, stride) for n, r in zip(spatial, field)]
    offsets = [g.reshape(-1) for g in np.meshgrid(*starts, indexing="ij")]
    p = offsets[0].size
    pairs = taps.transpose(1, 0, 2, 3)  # (K, L, S, nd+1)
    idx = [pairs[..., d][:, None] + offsets[d].reshape(1, p, 1, 1) for d in range(nd)]
    c_idx = np.broadcast_to(pairs[..., -1][:, None], (kernels, p, 2, s_nodes))
    indices = [np.stack([*idx, c_idx], axis=-1).transpose(2, 0, 1, 3, 4)]
    for level in range(1, depth):
        size = 2 ** (depth - level)
        order = rng.permutation(size) if shuffle_tree else np.arange(size)
        indices.append(order.reshape(-1, 2).T.copy())
    weights = [gate_weights(rng, (2 ** (depth - 1 - level), kernels), kind,
                            (prefer or {})[level] if level in (prefer or {}) else BALANCED)
               for level in range(depth)]
    positions = [len(s) for s in starts]
    return {"type": "conv", "kind": kind, "in_shape": tuple(in_shape), "field": field,
            "stride": stride, "padding": padding, "depth": depth, "kernels": kernels,
            "indices": indices, "weights": weights, "positions": positions}


def dense_spec(rng, in_dim, out_dim, kind="raw"):
    w = gate_weights(rng, (out_dim,), kind)
    return {"type": "dense", "kind": kind, "in_dim": in_dim, "weight": w,
            "indices": rng.integers(0, in_dim, (2, out_dim))}


BALANCED = (3, 5, 6, 9, 10, 12)   # a, b, xor, xnor, not b, not a: keep bits at p = 1/2
AND = (1,)


def gate_weights(rng, shape, kind, prefer=BALANCED):
    """Weights whose eval-mode gate is mostly one of ``prefer`` (random nets of random ops
    collapse to constants), some any op, with exact ties and zeros where they matter."""
    n = shape[0] if len(shape) == 1 else int(np.prod(shape))
    ops_ = np.where(rng.random(n) < 0.75, rng.choice(prefer, n), rng.integers(0, 16, n))
    if kind == "raw":
        w = rng.normal(size=(n, 16)).astype(np.float32)
        w[np.arange(n), ops_] += 4
        tie = rng.random(n) < 0.2   # a tie in the logits: argmax takes the first
        other = rng.integers(0, 16, n)
        w[tie, other[tie]] = w[tie, ops_[tie]]
        return w.reshape(*shape, 16)
    tt = (ops_[:, None] >> (3 - np.arange(4))) & 1   # truth table over ab = 00, 01, 10, 11
    if kind == "light":
        mag = rng.random((n, 4)).astype(np.float32) + 0.1
        w = np.where(tt == 1, mag, -mag)
        w[(tt == 0) & (rng.random((n, 4)) < 0.2)] = 0   # exactly 0: not > 0
        return w.astype(np.float32).reshape(*shape, 4)
    sgn = 1 - 2 * tt   # warp: v(A, B) = sum w_i * basis_i must be < 0 where the gate is 1
    big_a, big_b = np.array([1, 1, -1, -1]), np.array([1, -1, 1, -1])
    basis = np.stack([np.ones(4), big_b, big_a, big_a * big_b])   # walsh_basis_2's order
    w = sgn @ basis.T / 4 + rng.normal(scale=0.05, size=(n, 4))
    return w.astype(np.float32).reshape(*shape, 4)


PARAM_CLASS = {"raw": "RawLUTParametrization", "warp": "WarpLUTParametrization",
               "light": "LightLUTParametrization"}


def build_module(c, st):
    """One stage as torchlogix 0.2.2's module would pickle."""
    kind = st["type"]
    if kind == "binarize":
        m = c[st["cls"]]()
        th = st["thresholds"]   # DummyBinarization registers None
        m.register_buffer("thresholds", None if th is None else torch.tensor(th))
        m.feature_dim = st.get("feature_dim", -2)
        if st["cls"] == "LearnableBinarization":
            m.raw_diffs = torch.nn.Parameter(torch.tensor(st["raw_diffs"]))
            m.temperature_softplus = st["temperature_softplus"]
        return m
    if kind == "conv":
        nd = len(st["in_shape"]) - 1
        m = c[st.get("cls", f"LogicConv{nd}d")]()
        m.in_dim, m.channels = tuple(st["in_shape"][1:]), st["in_shape"][0]
        m.num_kernels, m.tree_depth = st["kernels"], st["depth"]
        m.receptive_field_size, m.stride, m.padding = st["field"], st["stride"], st["padding"]
        m.conv_dimension, m.lut_rank = nd, st.get("lut_rank", 2)
        m.device, m.grad_factor, m.connections_kwargs = torch.device("cpu"), 1.0, {}
        m.kernel_positions = list(st["positions"])
        m.n_kernel_positions = int(np.prod(st["positions"]))
        m.parametrization = c[PARAM_CLASS[st["kind"]]]()
        m.tree_weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.tensor(w)) for w in st["weights"]])
        m.connections = c["FixedConvConnections"]()
        for i, t in enumerate(st["indices"]):
            m.connections.register_buffer(f"_indices_L{i}", torch.tensor(t))
        return m
    if kind == "pool":
        m = c[f"OrPooling{len(st['kernel'])}d"]()
        m.kernel_size, m.stride, m.padding = st["raw"]
        return m
    if kind == "flatten":
        return torch.nn.Flatten()
    if kind == "dense":
        m = c["LogicDense"]()
        m.in_dim, m.out_dim, m.lut_rank = st["in_dim"], len(st["weight"]), 2
        m.weight = torch.nn.Parameter(torch.tensor(st["weight"]))
        m.parametrization = c[PARAM_CLASS[st["kind"]]]()
        m.connections = c["FixedDenseConnections"]()
        m.connections.register_buffer("indices", torch.tensor(st["indices"]))
        return m
    m = c["GroupSum"]()
    m.k, m.tau, m.beta = st["k"], 1.0, 0.0
    return m


def build_pickle(path, spec, monkeypatch, container="ClgnMnist"):
    with monkeypatch.context() as m:
        c = fake_torchlogix(m)
        torch.save(c[container](*(build_module(c, st) for st in spec)), path)
    assert "torchlogix.layers.conv" not in sys.modules  # gone: nothing of it can run


def pool_spec(kernel, stride, padding, nd=2):
    def tup(v):
        return (v,) * nd if isinstance(v, int) else tuple(v)

    return {"type": "pool", "raw": (kernel, stride, padding), "kernel": tup(kernel),
            "stride": tup(kernel if stride is None else stride), "padding": tup(padding)}


def model_2d_raw(rng):
    """Channel-wise thermometer (feature_dim 1, as ClgnCifar10), a padded non-square conv,
    ragged OR windows (3x3, stride 2, padding 1), a strided conv, windows of one element."""
    th = np.sort(rng.normal(size=(2, 3)).astype(np.float32), axis=1)
    spec = [{"type": "binarize", "cls": "FixedBinarization", "thresholds": th,
             "effective": th, "feature_dim": 1}]
    spec.append(conv_spec(rng, (6, 9, 8), 5, 3, (3, 2), 1, 1, prefer={1: AND, 2: AND}))
    spec.append(pool_spec(3, 2, 1))                             # -> (5, 5, 5)
    spec.append(conv_spec(rng, (5, 5, 5), 6, 2, 2, 2, 0, shuffle_tree=True))   # -> (6, 2, 2)
    spec.append(pool_spec((2, 2), None, 1))                     # -> (6, 2, 2), 1 each
    spec += [{"type": "flatten"}, dense_spec(rng, 24, 30), dense_spec(rng, 30, 12),
             {"type": "groupsum", "k": 4}]
    return spec, (2, 9, 8)


def model_3d_warp(rng):
    """Input bits (no binarization: DummyBinarization), LogicConv3d and OrPooling3d."""
    spec = [{"type": "binarize", "cls": "DummyBinarization", "thresholds": None}]
    spec.append(conv_spec(rng, (2, 4, 5, 5), 4, 2, 2, 1, 1, kind="warp",
                          prefer={1: AND}))                        # -> (4, 5, 6, 6)
    spec.append(pool_spec(2, 2, 0, nd=3))                                  # -> (4, 2, 3, 3)
    spec += [{"type": "flatten"}, dense_spec(rng, 72, 20, "warp"),
             {"type": "groupsum", "k": 5}]
    return spec, None


def model_light_learnable(rng):
    """Global learnable thresholds with the default feature_dim -2 (bits fold into the width),
    a conv straight into GroupSum through a 1x1 pooling that only subsamples."""
    raw = rng.normal(size=3).astype(np.float32)
    s = 0.1 + 1e-6
    d = torch.tensor(raw)
    effective = torch.cumsum(torch.cat([d[:1], s * torch.nn.functional.softplus(d[1:] / s)]),
                             0).numpy()   # LearnableBinarization.get_thresholds
    spec = [{"type": "binarize", "cls": "LearnableBinarization", "thresholds": raw * 0,
             "raw_diffs": raw, "temperature_softplus": 0.1, "effective": effective,
             "feature_dim": -2}]
    spec.append(conv_spec(rng, (1, 6, 12), 6, 3, 3, 1, 2, kind="light"))  # -> (6, 8, 14)
    spec.append(pool_spec(1, 2, 0))                                      # -> (6, 4, 7)
    spec += [{"type": "flatten"}, {"type": "groupsum", "k": 3}]
    return spec, (1, 6, 4)


def conv_inputs(rng, spec, raw_shape, n=500):
    if raw_shape is None:  # bits
        shape = spec[1]["in_shape"]
        return rng.integers(0, 2, (n, *shape)).astype(np.float32)
    x = rng.normal(size=(n, *raw_shape)).astype(np.float32)
    flat = x.reshape(-1)
    flat[::7] = rng.choice(spec[0]["effective"].reshape(-1), flat[::7].size)  # x == t: strict
    return x


@pytest.mark.parametrize("make", [model_2d_raw, model_3d_warp, model_light_learnable])
def test_conv_pickle_matches_torchlogix_forward(tmp_path, monkeypatch, make):
    rng = np.random.default_rng(27)
    spec, raw_shape = make(rng)
    build_pickle(tmp_path / "m.pt", spec, monkeypatch)
    g = tli.load(tmp_path / "m.pt")
    x = conv_inputs(rng, spec, raw_shape)
    want = ref_model_forward(x, spec)
    if g.encoding is None:
        got = golden.predict(g, x.reshape(len(x), -1).astype(np.uint8))
    else:
        got = golden.predict_features(g, x.reshape(len(x), -1))
    assert np.array_equal(got.scores, want.astype(np.int32))
    assert np.array_equal(got.classes, np.argmax(want, axis=1))  # ties: the lowest class
    ties = (want == want.max(1, keepdims=True)).sum(1) > 1
    assert ties.sum() > 10  # the tie rule is exercised
    assert len(set(map(tuple, want))) > 20  # and the net is not constant


def test_conv_reference_sees_a_changed_wiring(tmp_path, monkeypatch):
    """The check can fail: a single swapped leaf tap changes torchlogix's forward, and the
    importer follows it."""
    rng = np.random.default_rng(5)
    spec, raw_shape = model_2d_raw(rng)
    x = conv_inputs(rng, spec, raw_shape)
    before = ref_model_forward(x, spec)
    spec[1]["indices"][0] = spec[1]["indices"][0][::-1].copy()   # a and b of every leaf
    spec[1]["weights"][0][..., [2, 4]] = spec[1]["weights"][0][..., [4, 2]]  # asymmetric ops
    after = ref_model_forward(x, spec)
    assert not np.array_equal(before, after)
    build_pickle(tmp_path / "m.pt", spec, monkeypatch)
    got = golden.predict_features(tli.load(tmp_path / "m.pt"), x.reshape(len(x), -1))
    assert np.array_equal(got.scores, after.astype(np.int32))


def test_conv_gate_graph_is_layered_with_or_pooling(tmp_path, monkeypatch):
    spec, _ = model_2d_raw(np.random.default_rng(27))
    build_pickle(tmp_path / "m.pt", spec, monkeypatch)
    g = tli.load(tmp_path / "m.pt")
    # conv 3 levels, pool 3x3 = 9 taps -> 4 OR levels, conv 2, pool of one tap -> 0, dense 2
    assert g.depth == 3 + 4 + 2 + 0 + 2
    assert g.widths[:3] == [5 * 81 * 4, 5 * 81 * 2, 5 * 81]
    assert g.layers[3].op.max() <= 7 and set(np.unique(g.layers[3].op)) <= {3, 7}
    assert g.classes == 4 and g.encoding.thresholds.shape == (2 * 9 * 8, 3)


def test_conv_bad_input_is_one_line(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    spec, _ = model_2d_raw(rng)
    sd = {"1.tree_weights.0": torch.zeros(4, 5, 16),
          "1.connections._indices_L0": torch.zeros(2, 5, 81, 4, 3, dtype=torch.long)}
    torch.save(sd, tmp_path / "sd.pt")
    with pytest.raises(UserError, match="save the whole model") as e:
        tli.load(tmp_path / "sd.pt", classes=4)
    assert "\n" not in str(e.value) and "sd.pt" in str(e.value)
    cases = {
        "no_flatten": ([s for s in spec if s["type"] != "flatten"], "Flatten"),
        "transposed": ([dict(s, cls="LogicConvTranspose2d") if s["type"] == "conv" else s
                        for s in spec], "LogicConvTranspose2d"),
        "wrong_shape": ([conv_spec(rng, (5, 7, 7), 6, 2, 2, 2, 0) if s.get("in_shape")
                         == (5, 5, 5) else s for s in spec], "outside the padded input"),
        "no_image": (spec[:6] + [spec[1], spec[-1]], "receives a tensor of shape"),
        "rank4": ([dict(s, lut_rank=4) if s["type"] == "conv" else s for s in spec],
                  "lut_rank 4"),
        "bad_taps": ([dict(s, indices=[s["indices"][0] + 50] + s["indices"][1:])
                      if s["type"] == "conv" else s for s in spec], "outside"),
    }
    for name, (bad, match) in cases.items():
        build_pickle(tmp_path / f"{name}.pt", bad, monkeypatch)
        with pytest.raises(UserError, match=match) as e:
            tli.load(tmp_path / f"{name}.pt")
        assert "\n" not in str(e.value) and f"{name}.pt" in str(e.value)
    with monkeypatch.context() as m:
        c = fake_torchlogix(m)
        torch.save(c["ClgnMnist"](c["ResidualLogicBlock"](), c["GroupSum"]()),
                   tmp_path / "res.pt")
    with pytest.raises(UserError, match="ResidualLogicBlock.*not supported"):
        tli.load(tmp_path / "res.pt")
    with monkeypatch.context() as m:
        c = fake_torchlogix(m)
        torch.save(c["ClgnMnist"](c["LogicDense"](), c["GroupSum"]()), tmp_path / "part.pt")
    with pytest.raises(UserError, match="not a well-formed torchlogix model") as e:
        tli.load(tmp_path / "part.pt")
    assert "\n" not in str(e.value)


def test_cli_import_torchlogix_conv(tmp_path, monkeypatch):
    spec, raw_shape = model_2d_raw(np.random.default_rng(27))
    build_pickle(tmp_path / "m.pt", spec, monkeypatch)
    result = invoke("import-torchlogix", tmp_path / "m.pt", "-o", tmp_path / "net.npz")
    assert result.exit_code == 0, result.output
    from lgn_fpga.net import graph as gg

    assert gg.load(tmp_path / "net.npz").sha256() == tli.load(tmp_path / "m.pt").sha256()
    result = invoke("import-torchlogix", tmp_path / "m.pt", "-o", tmp_path / "x.json",
                    "--classes", 5)
    assert result.exit_code != 0 and "disagrees" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists()


FIXTURES = Path(__file__).parent / "data" / "torchlogix"


@pytest.mark.parametrize("name", ["a_raw2d", "b_warp3d", "c_dense_image_c",
                                  "d_dense_image_w"])
def test_real_torchlogix_pickles_match_its_forward(name):
    """Made by the real torchlogix 0.2.2 (tests/data/torchlogix/make_fixtures.py, Python 3.12):
    a 2-D raw net (per-channel thermometer, padded conv, ragged 3x3 OR windows, a strided conv
    with channel groups whose in_dim torchlogix never checks, learnable dense wiring, tau 2)
    and a 3-D warp net (learnable thresholds), with torchlogix's eval-mode outputs."""
    data = np.load(FIXTURES / f"{name}.npz")
    x, want = data["x"], data["y"]
    g = tli.load(FIXTURES / f"{name}.pt")
    got = golden.predict_features(g, x.reshape(len(x), -1))
    assert np.array_equal(got.scores / (g.tau or 1.0), want)
    assert np.array_equal(got.classes, np.argmax(want, axis=1))
    assert ((want == want.max(1, keepdims=True)).sum(1) > 1).sum() > 10   # ties


def test_dense_binarization_layout_that_is_not_recorded_is_one_line(tmp_path, monkeypatch):
    """Global thresholds folded into axis 1 of an image: the channel count decides the bit
    order, and a dense model does not record it."""
    rng = np.random.default_rng(4)
    spec = [{"type": "binarize", "cls": "FixedBinarization", "feature_dim": 1,
             "thresholds": np.array([-0.5, 0.5], dtype=np.float32)},
            {"type": "flatten"}, dense_spec(rng, 96, 30), {"type": "groupsum", "k": 3}]
    build_pickle(tmp_path / "m.pt", spec, monkeypatch, container="Dlgn")
    with pytest.raises(UserError, match="feature_dim -2") as e:
        tli.load(tmp_path / "m.pt")
    assert "\n" not in str(e.value) and "m.pt" in str(e.value)
    spec[0]["feature_dim"] = -2   # the default: each feature's bits together, as ours
    build_pickle(tmp_path / "m.pt", spec, monkeypatch, container="Dlgn")
    g = tli.load(tmp_path / "m.pt")
    assert g.encoding.thresholds.shape == (48, 2) and g.inputs == 96
