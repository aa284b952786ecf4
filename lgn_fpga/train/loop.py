"""Training: carve a validation split out of the training split, encode with a thermometer
fitted on what is left, train a LogicNet with Adam on cross-entropy of the GroupSum scores
(watching the discretized validation accuracy, never the test split), harden, and measure the
hardened net's validation and test accuracy once with the golden model (the numbers that go
into the model's meta).

Data parallel: started by torchrun (``WORLD_SIZE`` > 1 in the environment), every process
builds the same net from the seed and draws the same global batch order; each takes a
contiguous shard of every global batch, and DDP sums the shards' gradients (each shard's
loss is its summed cross-entropy over the *global* batch size), so a step follows the same
gradient as one process on the whole batch -- up to the order of floating-point additions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from lgn_fpga.net import golden
from lgn_fpga.net import graph as gg

from .data import Dataset, fit_thermometer, validation_split
from .harden import harden
from .net import LogicNet
from .options import TrainOptions

__all__ = ["History", "Result", "TrainOptions", "train"]


@dataclass
class History:
    """Per evaluated epoch: mean training loss, relaxed train accuracy, hardened validation
    accuracy (torch's discretized forward, the same net the graph computes; empty without
    a validation split)."""

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)


@dataclass
class Result:
    graph: gg.GateGraph
    net: LogicNet
    history: History
    seconds: float
    test_accuracy: float  # hardened, through the golden model
    val_accuracy: float | None  # the same on the validation split (None without one)


def encode(data: Dataset, thresholds: int, how: str = "auto"):
    """The thermometer fitted on the training split, and both splits' bits. ``auto``:
    foreground quantiles for images, per-feature quantiles otherwise."""
    if how == "auto":
        how = "foreground" if data.image_shape is not None else "feature"
    enc = fit_thermometer(data.x_train, thresholds, how=how)
    return enc, enc.encode(data.x_train), enc.encode(data.x_test)


def seed_everything(seed: int) -> None:
    """Same seed, same model on CPU: seeded torch and deterministic kernels."""
    # cuBLAS needs this before its first use to honour deterministic algorithms
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
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


def hard_correct(net: LogicNet, bits: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> int:
    """How many samples the discretized net classifies right."""
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(bits), batch):
            scores = net(bits[start:start + batch], hard=True)
            # argmax returns the first maximum: ties to the lowest class, as the hardware
            correct += int((scores.argmax(1) == y[start:start + batch]).sum())
    net.train()
    return correct


def hard_accuracy(net: LogicNet, bits: torch.Tensor, y: torch.Tensor, batch: int = 2048):
    return hard_correct(net, bits, y, batch) / max(len(bits), 1)


@dataclass
class _World:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    device: str = "cpu"
    owned: bool = False  # we initialized the process group, so we tear it down

    def all_sum(self, values: list[float]) -> list[float]:
        if self.size == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()


def _join_world(device: str) -> _World:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on
    CUDA), if any; ``device`` 'cuda' becomes this process's GPU (LOCAL_RANK)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return _World(device=device)
    import torch.distributed as dist

    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return _World(dist.get_rank(), dist.get_world_size(), device, owned)


def world_rank() -> int:
    """This process's rank under torchrun (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def train(data: Dataset, options: TrainOptions, *,
          progress: Callable[[int, dict], None] | None = None,
          meta: dict | None = None) -> Result | None:
    """Train, harden and measure. ``progress(epoch, stats)`` is called after every epoch
    (stats: loss, train_accuracy, and val_accuracy when evaluated).

    Under torchrun (``WORLD_SIZE`` > 1) every process trains its shard of each global batch;
    rank 0 returns the Result, the other ranks None (and call ``progress`` never)."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    world = _join_world(options.device)
    try:
        seed_everything(options.seed)
        return _train(data, options, progress if world.rank == 0 else None, meta, world)
    finally:  # a process-wide switch: leave it as the caller had it
        torch.use_deterministic_algorithms(deterministic)
        if world.owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(data, options, progress, meta, world: _World) -> Result | None:
    device = torch.device(world.device)
    data, x_val_raw, y_val_np, validation = validation_split(data, options.val_fraction)
    enc, bits_train, bits_test = encode(data, options.thresholds, options.encoding)
    bits_val = enc.encode(x_val_raw) if len(y_val_np) else bits_train[:0]
    image = None
    if data.image_shape is not None:
        # a pixel has C values (colour) of T thermometer bits each: channel c*T + t
        h, w, *c = data.image_shape
        image = (h, w, (c[0] if c else 1) * options.thresholds)
    net = LogicNet(enc.bits, data.classes, options.arch, tau=options.tau, seed=options.seed,
                   image=image, residual=options.residual, locality=options.locality,
                   radius=options.locality_radius, fused=options.fused).to(device)
    model = net
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # the buffers are the wiring: identical on every process (same seed), never changed
        model = DistributedDataParallel(net, forward_sync_buffers=False)
    x_train = torch.from_numpy(bits_train).float().to(device)
    y_train = torch.from_numpy(data.y_train).to(device)
    # the validation samples this process scores (a shard of them when distributed)
    val_shard = slice(world.rank, None, world.size)
    x_val = torch.from_numpy(bits_val[val_shard]).float().to(device)
    y_val = torch.from_numpy(y_val_np[val_shard]).to(device)
    if options.jitter:
        raw_train = torch.from_numpy(data.x_train).to(device)
        thresholds = torch.from_numpy(enc.thresholds).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=options.lr)
    steps = options.epochs * -(-len(x_train) // options.batch_size)
    sched = None
    if options.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    elif options.schedule != "constant":
        raise ValueError(f"unknown schedule {options.schedule!r}")
    # every process draws the same batch order and augmentation from the same generator
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
            labels = y_train[idx]
            if world.size > 1:
                # this process's contiguous shard of the global batch
                batch = torch.tensor_split(batch, world.size)[world.rank]
                labels = torch.tensor_split(labels, world.size)[world.rank]
                scores = model(batch)
                summed = F.cross_entropy(scores, labels, reduction="sum")
                # DDP averages over processes: x size makes it the sum over all shards,
                # / global batch the mean over the global batch, as one process computes
                loss = summed * (world.size / len(idx))
                batch_loss = summed.item()
            else:
                scores = model(batch)
                loss = F.cross_entropy(scores, labels)
                batch_loss = loss.item() * len(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total_loss += batch_loss
            correct += int((scores.argmax(1) == labels).sum())
        total_loss, correct = world.all_sum([total_loss, correct])
        stats = {"loss": total_loss / len(order), "train_accuracy": correct / len(order)}
        if len(y_val_np) and (epoch % options.eval_every == 0 or epoch == options.epochs):
            (val_correct,) = world.all_sum([hard_correct(net, x_val, y_val)])
            stats["val_accuracy"] = val_correct / len(y_val_np)
            history.epoch.append(epoch)
            history.loss.append(stats["loss"])
            history.train_accuracy.append(stats["train_accuracy"])
            history.val_accuracy.append(stats["val_accuracy"])
        if progress is not None:
            progress(epoch, stats)
    seconds = time.perf_counter() - start
    if world.rank != 0:
        return None
    net = net.cpu()
    graph = harden(net, encoding=enc)
    # the test split is scored once, here, after training: nothing above looked at it
    accuracy = float(np.mean(golden.predict(graph, bits_test).classes == data.y_test))
    val_accuracy = None
    if len(y_val_np):
        val_accuracy = float(np.mean(golden.predict(graph, bits_val).classes == y_val_np))
    full_meta = {
        "dataset": data.name, "split": data.split, "seed": options.seed,
        "options": options.to_json(), "test_accuracy": round(accuracy, 6),
        "test_samples": int(len(data.y_test)), "train_samples": int(len(data.y_train)),
        "validation": validation, "val_samples": int(len(y_val_np)),
        "training_seconds": round(seconds, 1), "trainer": "lgn_fpga.train",
        "torch": torch.__version__, "processes": world.size,
    }
    if val_accuracy is not None:
        full_meta["val_accuracy"] = round(val_accuracy, 6)
    if options.locality:
        full_meta["wiring"] = {"locality": options.locality, "layers": net.wiring}
    full_meta.update(meta or {})
    graph = graph.replace(meta=full_meta)
    return Result(graph, net, history, seconds, accuracy, val_accuracy)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def cuda_devices() -> int:
    return torch.cuda.device_count()


def torch_threads() -> int:
    return torch.get_num_threads()
