"""torchlogix import without torchlogix: fixtures in torchlogix 0.2.2's shapes, and an
independent numpy forward of its eval-mode semantics (written from its source: the raw
basis sum, the Walsh sum, the light basis, GroupSum, binarization) as the reference."""

import json
import sys
import types

import numpy as np
import pytest
from conftest import invoke

from lgn_fpga.errors import UserError
from lgn_fpga.net import golden
from lgn_fpga.train import torchlogix_import as tli

torch = pytest.importorskip("torch")


# -- the reference: torchlogix's eval forward, transcribed --------------------------------


def ref_raw(a, b, w):
    w = np.eye(16, dtype=np.float32)[w.argmax(-1)]          # one_hot(argmax)
    c1 = w[:, 8:16].sum(1)
    ca = w[:, [2, 3, 6, 7]].sum(1) - w[:, [8, 9, 12, 13]].sum(1)
    cb = w[:, [4, 5, 6, 7]].sum(1) - w[:, [8, 9, 10, 11]].sum(1)
    cab = (w[:, 1] - w[:, 2] - w[:, 4] - 2 * w[:, 6] - w[:, 7] + w[:, 8] + 2 * w[:, 9]
           + w[:, 11] + w[:, 13] - w[:, 14])
    return c1 + ca * a + cb * b + cab * a * b


def ref_warp(a, b, w):
    big_a, big_b = (1 - 2 * a).astype(np.float32), (1 - 2 * b).astype(np.float32)
    v = w[:, 0] * np.float32(1) + w[:, 1] * big_b
    v = v + w[:, 2] * big_a
    v = v + w[:, 3] * (big_a * big_b)
    return (-v > 0).astype(np.float32)


def ref_light(a, b, w):
    w = (w > 0).astype(np.float32)
    return (w[:, 0] * (1 - a) * (1 - b) + w[:, 1] * (1 - a) * b + w[:, 2] * a * (1 - b)
            + w[:, 3] * a * b)


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


def fake_torchlogix(monkeypatch):
    """Register modules named like torchlogix's, so torch.save pickles real class paths."""
    mods = {}
    for name in ("torchlogix", "torchlogix.layers", "torchlogix.layers.dense",
                 "torchlogix.layers.groupsum", "torchlogix.layers.binarization",
                 "torchlogix.connections", "torchlogix.parametrization", "torchlogix.models",
                 "torchlogix.models.dense"):
        mods[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, mods[name])

    def cls(module, name, base=torch.nn.Module):
        c = type(name, (base,), {"__module__": module, "forward": lambda self, x: x})
        c.__qualname__ = name
        setattr(mods[module], name, c)
        return c

    return {
        "Dlgn": cls("torchlogix.models.dense", "Dlgn", torch.nn.Sequential),
        "LogicDense": cls("torchlogix.layers.dense", "LogicDense"),
        "GroupSum": cls("torchlogix.layers.groupsum", "GroupSum"),
        "FixedBinarization": cls("torchlogix.layers.binarization", "FixedBinarization"),
        "FixedDenseConnections": cls("torchlogix.connections", "FixedDenseConnections"),
        "LightLUTParametrization": cls("torchlogix.parametrization",
                                       "LightLUTParametrization"),
    }


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
