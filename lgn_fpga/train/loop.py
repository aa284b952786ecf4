"""Training: encode with a thermometer fitted on the training split, train a LogicNet with
Adam on cross-entropy of the GroupSum scores, harden, and measure the hardened net's test
accuracy with the golden model (the number that goes into the model's meta)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from lgn_fpga.net import golden
from lgn_fpga.net import graph as gg

from .data import Dataset, fit_thermometer
from .harden import harden
from .net import LogicNet


@dataclass(frozen=True)
class TrainOptions:
    arch: str = "1000,1000,300"
    epochs: int = 100
    thresholds: int = 3
    #: how the thresholds are fitted: auto, foreground, pooled, feature (see data.py)
    encoding: str = "auto"
    tau: float = 10.0
    lr: float = 0.01
    batch_size: int = 128
    #: "cosine": the learning rate decays to 0 over the run, which settles the gate choices
    #: so the last epoch's hardened net is not a random draw from a noisy plateau
    schedule: str = "cosine"
    seed: int = 0
    device: str = "cpu"
    #: residual initialization: True = bias op 'a' by RESIDUAL_LOGIT, False = none, a number
    #: = that bias. Deep or conv stacks need it; wide dense nets learn more logic without.
    residual: bool | float = True
    #: image datasets: shift each training image by up to this many pixels (0 = off)
    shift: int = 0
    #: add uniform noise in [-jitter, +jitter] to the raw training features before encoding,
    #: fresh every batch: values near a threshold land on both sides, so the net cannot
    #: memorize exact bit patterns (it overfits small sets like digits otherwise)
    jitter: float = 0.0
    #: evaluate the hardened (discretized) net on the test split every this many epochs
    eval_every: int = 1

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class History:
    """Per evaluated epoch: mean training loss, relaxed train accuracy, hardened test
    accuracy (torch's discretized forward, the same net the graph computes)."""

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)


@dataclass
class Result:
    graph: gg.GateGraph
    net: LogicNet
    history: History
    seconds: float
    test_accuracy: float  # hardened, through the golden model


def encode(data: Dataset, thresholds: int, how: str = "auto"):
    """The thermometer fitted on the training split, and both splits' bits. ``auto``:
    foreground quantiles for images, per-feature quantiles otherwise."""
    if how == "auto":
        how = "foreground" if data.image_shape is not None else "feature"
    enc = fit_thermometer(data.x_train, thresholds, how=how)
    return enc, enc.encode(data.x_train), enc.encode(data.x_test)


def seed_everything(seed: int) -> None:
    """Same seed, same model on CPU: seeded torch and deterministic kernels."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def random_shift(x: torch.Tensor, image: tuple[int, int, int], shift: int,
                 generator: torch.Generator) -> torch.Tensor:
    """Move each encoded image (B, H*W*T) by a random (dy, dx) in [-shift, shift], filling
    with 0 bits (a value below every threshold: background). Small digits and clothes are
    the same class a pixel to the left; the net learns that from 1.3k digits only if shown."""
    h, w, t = image
    img = x.reshape(len(x), h, w, t)
    out = torch.zeros_like(img)
    d = torch.randint(-shift, shift + 1, (2, len(x)), generator=generator)
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            sel = ((d[0] == dy) & (d[1] == dx)).nonzero().flatten().to(x.device)
            if len(sel) == 0:
                continue
            src = img[sel, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
            out[sel, max(dy, 0):h - max(-dy, 0), max(dx, 0):w - max(-dx, 0)] = src
    return out.reshape(len(x), -1)


def hard_accuracy(net: LogicNet, bits: torch.Tensor, y: torch.Tensor, batch: int = 2048):
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(bits), batch):
            scores = net(bits[start:start + batch], hard=True)
            # argmax returns the first maximum: ties to the lowest class, as the hardware
            correct += int((scores.argmax(1) == y[start:start + batch]).sum())
    net.train()
    return correct / max(len(bits), 1)


def train(data: Dataset, options: TrainOptions, *,
          progress: Callable[[int, dict], None] | None = None,
          meta: dict | None = None) -> Result:
    """Train, harden and measure. ``progress(epoch, stats)`` is called after every epoch
    (stats: loss, train_accuracy, and test_accuracy when evaluated)."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        seed_everything(options.seed)
        return _train(data, options, progress, meta)
    finally:  # a process-wide switch: leave it as the caller had it
        torch.use_deterministic_algorithms(deterministic)


def _train(data, options, progress, meta) -> Result:
    device = torch.device(options.device)
    enc, bits_train, bits_test = encode(data, options.thresholds, options.encoding)
    image = None
    if data.image_shape is not None:
        image = (*data.image_shape, options.thresholds)
    net = LogicNet(enc.bits, data.classes, options.arch, tau=options.tau, seed=options.seed,
                   image=image, residual=options.residual).to(device)
    x_train = torch.from_numpy(bits_train).float().to(device)
    y_train = torch.from_numpy(data.y_train).to(device)
    x_test = torch.from_numpy(bits_test).float().to(device)
    if options.jitter:
        raw_train = torch.from_numpy(data.x_train).to(device)
        thresholds = torch.from_numpy(enc.thresholds).to(device)
    y_test = torch.from_numpy(data.y_test).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=options.lr)
    steps = options.epochs * -(-len(x_train) // options.batch_size)
    sched = None
    if options.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    elif options.schedule != "constant":
        raise ValueError(f"unknown schedule {options.schedule!r}")
    shuffle = torch.Generator().manual_seed(options.seed)
    history = History()
    start = time.perf_counter()
    for epoch in range(1, options.epochs + 1):
        order = torch.randperm(len(x_train), generator=shuffle).to(device)
        total_loss, correct = 0.0, 0
        for i in range(0, len(order), options.batch_size):
            idx = order[i:i + options.batch_size]
            if options.jitter:
                raw = raw_train[idx]
                noise = torch.rand(raw.shape, generator=shuffle, dtype=raw.dtype)
                raw = raw + (2 * noise - 1).to(device) * options.jitter
                batch = (raw[:, :, None] > thresholds[None]).reshape(len(idx), -1).float()
            else:
                batch = x_train[idx]
            if options.shift and image is not None:
                batch = random_shift(batch, image, options.shift, shuffle)
            scores = net(batch)
            loss = F.cross_entropy(scores, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total_loss += loss.item() * len(idx)
            correct += int((scores.argmax(1) == y_train[idx]).sum())
        stats = {"loss": total_loss / len(order), "train_accuracy": correct / len(order)}
        if epoch % options.eval_every == 0 or epoch == options.epochs:
            stats["test_accuracy"] = hard_accuracy(net, x_test, y_test)
            history.epoch.append(epoch)
            history.loss.append(stats["loss"])
            history.train_accuracy.append(stats["train_accuracy"])
            history.test_accuracy.append(stats["test_accuracy"])
        if progress is not None:
            progress(epoch, stats)
    seconds = time.perf_counter() - start
    net = net.cpu()
    graph = harden(net, encoding=enc)
    accuracy = float(np.mean(golden.predict(graph, bits_test).classes == data.y_test))
    full_meta = {
        "dataset": data.name, "split": data.split, "seed": options.seed,
        "options": options.to_json(), "test_accuracy": round(accuracy, 6),
        "test_samples": int(len(data.y_test)), "train_samples": int(len(data.y_train)),
        "training_seconds": round(seconds, 1), "trainer": "lgn_fpga.train",
        "torch": torch.__version__,
    }
    full_meta.update(meta or {})
    graph = graph.replace(meta=full_meta)
    return Result(graph, net, history, seconds, accuracy)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def torch_threads() -> int:
    return torch.get_num_threads()
