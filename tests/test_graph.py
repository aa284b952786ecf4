"""The gate-graph format: round trips and one test per validation error."""

import json

import numpy as np
import pytest

from lgn_fpga.net import graph as gg
from lgn_fpga.net.graph import GraphError


def _doc(**changes):
    doc = {
        "format": "lgn-fpga.gate-graph", "version": 1, "inputs": 4, "classes": 2,
        "layers": [
            {"a": [0, 1, 2], "b": [3, 2, 1], "op": [1, 6, 14]},
            {"a": [0, 1, 2, 0], "b": [1, 2, 0, 0], "op": [7, 8, 3, 12]},
        ],
    }
    doc.update(changes)
    return doc


def _refused(doc, tmp_path, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(GraphError, match=match) as info:
        gg.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_round_trip_keeps_every_field(small_graph, tmp_path, suffix):
    th = np.linspace(0, 1, small_graph.inputs).reshape(3, 4)
    g = small_graph.replace(tau=3.5, encoding=gg.Thermometer(th), meta={"seed": 7, "x": [1]})
    path = tmp_path / f"m{suffix}"
    gg.save(g, path)
    h = gg.load(path)
    assert h.sha256() == g.sha256()
    assert h.tau == 3.5 and h.meta == g.meta and h.classes == g.classes
    np.testing.assert_array_equal(h.encoding.thresholds, th)
    for x, y in zip(g.layers, h.layers, strict=True):
        np.testing.assert_array_equal(x.a, y.a)
        np.testing.assert_array_equal(x.b, y.b)
        np.testing.assert_array_equal(x.op, y.op)


def test_save_leaves_no_temporary_files(small_graph, tmp_path):
    gg.save(small_graph, tmp_path / "m.json")
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_valid_document_loads(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(_doc()))
    g = gg.load(path)
    assert g.widths == [3, 4] and g.group_size == 2


def test_index_out_of_range_names_layer_and_position(tmp_path):
    doc = _doc()
    doc["layers"][1]["a"][2] = 9
    msg = _refused(doc, tmp_path, r"layers\[1\]\.a\[2\] = 9 is out of range: layer 0 has 3 outputs")
    assert "bad.json" in msg


def test_input_index_out_of_range_names_inputs(tmp_path):
    doc = _doc()
    doc["layers"][0]["b"][0] = 4
    _refused(doc, tmp_path, r"layers\[0\]\.b\[0\] = 4 is out of range: the net has 4 inputs")


def test_negative_index_is_refused(tmp_path):
    doc = _doc()
    doc["layers"][0]["a"][1] = -1
    _refused(doc, tmp_path, r"layers\[0\]\.a\[1\] = -1 is out of range")


def test_op_out_of_range_is_refused(tmp_path):
    doc = _doc()
    doc["layers"][1]["op"][3] = 16
    _refused(doc, tmp_path, r"layers\[1\]\.op\[3\] = 16 is out of range: op codes are 0..15")


def test_non_integer_entry_is_refused(tmp_path):
    doc = _doc()
    doc["layers"][0]["op"][1] = 1.5
    _refused(doc, tmp_path, r"layers\[0\]\.op\[1\] must be an integer, got 1.5")


def test_unequal_lengths_are_refused(tmp_path):
    doc = _doc()
    doc["layers"][0]["b"] = [0, 1]
    _refused(doc, tmp_path, r"layers\[0\]: a, b and op must have equal lengths, got 3, 2, 3")


def test_empty_layer_is_refused(tmp_path):
    doc = _doc()
    doc["layers"][0] = {"a": [], "b": [], "op": []}
    _refused(doc, tmp_path, r"layers\[0\] has no gates")


def test_missing_layer_key_is_refused(tmp_path):
    doc = _doc()
    del doc["layers"][1]["op"]
    _refused(doc, tmp_path, r'layers\[1\] is missing "op"')


def test_unknown_layer_key_is_refused(tmp_path):
    doc = _doc()
    doc["layers"][0]["c"] = [1]
    _refused(doc, tmp_path, r'layers\[0\] has unknown key "c"')


def test_no_layers_is_refused(tmp_path):
    _refused(_doc(layers=[]), tmp_path, r'"layers" is empty')


def test_missing_required_key_is_refused(tmp_path):
    doc = _doc()
    del doc["classes"]
    _refused(doc, tmp_path, r'missing required key "classes"')


def test_unknown_top_level_key_is_refused(tmp_path):
    _refused(_doc(colour="red"), tmp_path, r'unknown key "colour"')


def test_wrong_format_name_is_refused(tmp_path):
    _refused(_doc(format="onnx"), tmp_path, r'"format" is "onnx"')


def test_future_version_is_refused_with_upgrade_hint(tmp_path):
    _refused(_doc(version=2), tmp_path, r"format version 2 is not supported.*upgrade lgn-fpga")


def test_classes_must_divide_last_layer(tmp_path):
    _refused(_doc(classes=3), tmp_path,
             r"the last layer has 4 outputs, not a multiple of classes = 3")


def test_zero_inputs_is_refused(tmp_path):
    _refused(_doc(inputs=0), tmp_path, r'"inputs" = 0 must be at least 1')


def test_bad_tau_is_refused(tmp_path):
    _refused(_doc(tau=-1), tmp_path, r'"tau" must be a positive number')


def test_meta_must_be_an_object(tmp_path):
    _refused(_doc(meta=[1]), tmp_path, r'"meta" must be an object')


def test_encoding_size_must_match_inputs(tmp_path):
    enc = {"kind": "thermometer", "thresholds": [[0.5], [0.5], [0.5]]}
    _refused(_doc(encoding=enc), tmp_path,
             r"encoding has 3 features x 1 thresholds = 3 bits, but the net has 4 inputs")


def test_encoding_ragged_thresholds_are_refused(tmp_path):
    enc = {"kind": "thermometer", "thresholds": [[0.5, 1], [0.5]]}
    _refused(_doc(encoding=enc), tmp_path, r"encoding.thresholds\[1\] has 1 thresholds")


def test_unknown_encoding_kind_is_refused(tmp_path):
    _refused(_doc(encoding={"kind": "onehot"}), tmp_path, r'encoding.kind = "onehot"')


def test_invalid_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"format": "lgn-fpga.gate-graph",\n "version": 1,,}')
    with pytest.raises(GraphError, match=r"bad.json:2:15: invalid JSON"):
        gg.load(path)


def test_npz_missing_layer_array_is_refused(small_graph, tmp_path):
    path = tmp_path / "m.npz"
    gg.save(small_graph, path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "layers.1.op"}
    np.savez(path, **arrays)
    with pytest.raises(GraphError, match=r'layers\[1\] is missing "op"'):
        gg.load(path)


def test_npz_bad_index_is_refused_like_json(small_graph, tmp_path):
    path = tmp_path / "m.npz"
    gg.save(small_graph, path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["layers.2.b"] = arrays["layers.2.b"].copy()
    arrays["layers.2.b"][5] = 1000
    np.savez(path, **arrays)
    with pytest.raises(GraphError, match=r"layers\[2\]\.b\[5\] = 1000 is out of range: "
                                         r"layer 1 has 24 outputs"):
        gg.load(path)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(gg.UserError, match="no such file"):
        gg.load(tmp_path / "nope.json")
