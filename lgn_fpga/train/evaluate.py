"""How good a hardened model is: accuracy and confusion on a dataset's test split, through
the golden model (numpy only, no torch)."""

from __future__ import annotations

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.net import golden
from lgn_fpga.train.data import load


def evaluation(graph, dataset: str) -> dict:
    """Accuracy and confusion matrix of the hardened model on the dataset's test split, via
    the golden model (numpy only)."""
    if graph.encoding is None:
        raise UserError("the model has no input encoding, so raw features cannot be fed to it")
    data = load(dataset, test_only=True)
    if data.features != graph.encoding.features:
        raise UserError(f"dataset {dataset} has {data.features} features; the model's "
                        f"encoding expects {graph.encoding.features}")
    if data.classes > graph.classes:
        raise UserError(f"dataset {dataset} has {data.classes} classes; the model "
                        f"{graph.classes}")
    predicted = golden.predict_features(graph, data.x_test).classes
    confusion = np.zeros((graph.classes, graph.classes), dtype=np.int64)
    np.add.at(confusion, (data.y_test, predicted), 1)
    return {"dataset": data.name, "split": data.split, "samples": int(len(data.y_test)),
            "accuracy": float(np.mean(predicted == data.y_test)),
            "recorded_accuracy": graph.meta.get("test_accuracy"),
            "confusion": confusion}
