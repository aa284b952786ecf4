"""CLI commands of the training stage: train, evaluate, import-difflogic (registered by
lgn_fpga.cli).

torch is imported only inside ``train`` (and by import-difflogic for .pt files): the rest of
the CLI, evaluate included, works without the training extras.
"""

from __future__ import annotations

import shlex
import sys

import click

from lgn_fpga.cli.util import FiniteFloatRange, echo_json, load_model, model_argument
from lgn_fpga.errors import INSTALL_TRAIN, UserError

TORCH_MISSING = f"torch is not installed: {INSTALL_TRAIN}"


def _require_torch():
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise UserError(TORCH_MISSING)


def train_arguments(dataset, options, output, nproc: int = 1) -> list[str]:
    """The ``lgn-fpga train`` arguments that train this model again."""
    args = ["--dataset", dataset, "--arch", options.arch,
            "--epochs", str(options.epochs), "--thresholds", str(options.thresholds),
            "--tau", f"{options.tau:g}", "--lr", f"{options.lr:g}",
            "--batch-size", str(options.batch_size), "--seed", str(options.seed),
            "--device", options.device, "--val-fraction", f"{options.val_fraction:g}"]
    if options.encoding != "auto":
        args += ["--encoding", options.encoding]
    if options.schedule != "cosine":
        args += ["--schedule", options.schedule]
    if options.shift:
        args += ["--shift", str(options.shift)]
    if options.jitter:
        args += ["--jitter", f"{options.jitter:g}"]
    if options.residual is False:
        args.append("--no-residual")
    elif options.residual is not True:
        args += ["--residual-logit", f"{options.residual:g}"]
    if options.locality:
        args += ["--locality", str(options.locality)]
    if options.locality_radius:
        args += ["--locality-radius", str(options.locality_radius)]
    if nproc > 1:
        args += ["--nproc", str(nproc)]
    return args + ["-o", str(output)]


def reproduce_command(dataset, options, output, nproc: int = 1) -> str:
    """The exact command line that trains this model again."""
    return shlex.join(["lgn-fpga", "train", *train_arguments(dataset, options, output, nproc)])


def _launch(nproc: int, args: list[str]) -> None:
    """Run ``python -m lgn_fpga.train ARGS`` in ``nproc`` processes under torchrun."""
    import subprocess

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "lgn_fpga.train", *args]
    code = subprocess.run(command).returncode
    if code:
        raise UserError(f"--nproc {nproc}: the training processes failed (exit {code})")


@click.command()
@click.option("--dataset", required=True, metavar="NAME|FILE.npz",
              help="digits, fashion-mnist, mnist-5k, or an .npz with arrays x and y "
                   "(optional image_shape: [H, W] or [H, W, C]).")
@click.option("--arch", default="1000,1000,300", show_default=True,
              help="Stages, e.g. 2000,1000,300 (dense widths) or c16,c32,4000,1000 "
                   "(c<K>[r<R>][d<D>][n]: conv block of K logic-tree kernels).")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--thresholds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Thermometer bits per feature (quantiles of the training split).")
@click.option("--encoding", type=click.Choice(["auto", "foreground", "pooled", "feature"]),
              default="auto", show_default=True,
              help="Threshold fit: auto = foreground for images, feature otherwise.")
@click.option("--tau", type=FiniteFloatRange(min=0, min_open=True), default=3.0,
              show_default=True, help="GroupSum temperature.")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=0.01,
              show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), default="cosine",
              show_default=True, help="Learning rate: cosine decay to 0, or constant.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Same seed, same model (on CPU).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu",
              show_default=True)
@click.option("--no-residual", is_flag=True,
              help="Start gates uniform instead of biased to pass-through 'a'.")
@click.option("--residual-logit", type=float,
              help="Bias of op 'a' at initialization (default 5: ~90% pass-through).")
@click.option("--shift", type=click.IntRange(min=0), default=0, show_default=True,
              help="Image datasets: augment by random shifts of up to this many pixels.")
@click.option("--jitter", type=FiniteFloatRange(min=0), default=0.0, show_default=True,
              help="Add uniform noise of up to this much to raw training features before "
                   "encoding (fresh every batch).")
@click.option("--eval-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Measure the discretized validation accuracy every this many epochs.")
@click.option("--val-fraction", type=FiniteFloatRange(min=0, max=1, max_open=True),
              default=0.1, show_default=True,
              help="Fraction of the training split held out (stratified, seed 0) to choose "
                   "configurations on; the test split is scored once, at the end.")
@click.option("--locality", type=click.IntRange(min=0), default=0, show_default=True,
              metavar="W", help="Local wiring: each dense gate reads inputs within ±W of its "
                   "proportional position in the previous layer (image inputs: a pixel "
                   "neighbourhood, all thresholds). 0 = uniform random wiring.")
@click.option("--locality-radius", type=click.IntRange(min=0), default=0, show_default=True,
              metavar="R", help="With --locality, the pixel radius for dense layers reading "
                   "an image (0: about as many inputs as the ±W window).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel processes (torchrun; gloo on CPU, one GPU each on cuda). "
                   "Same seed and --batch-size (global), same net as 1 process.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write training curves (.png).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (.json or .npz).")
def train(dataset, arch, epochs, thresholds, encoding, tau, lr, batch_size, schedule, seed, device,
          no_residual, residual_logit, shift, jitter, eval_every, val_fraction, locality,
          locality_radius, nproc, plot, output):
    """Train a logic gate network, harden it and write the gate graph; the meta records the
    dataset, split, options, hardened validation and test accuracy (golden model) and the
    command."""
    _require_torch()
    import os

    from lgn_fpga.train.data import load
    from lgn_fpga.train.options import TrainOptions, parse_arch

    if not output.endswith((".json", ".npz")):
        raise UserError(f"{output}: model files end in .json or .npz")
    parse_arch(arch)  # a bad --arch fails before the dataset loads
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set when torchrun started us
    launch = nproc > 1 and world == 1
    if device == "cuda" or not launch:
        # torch is imported here, not in a launcher for CPU processes: each import costs
        # seconds, and the processes import it anyway
        from lgn_fpga.train.loop import cuda_available, cuda_devices

        if device == "cuda" and not cuda_available():
            raise UserError("--device cuda: this torch sees no CUDA device")
        if device == "cuda" and launch and cuda_devices() < nproc:
            raise UserError(f"--nproc {nproc}: this machine has {cuda_devices()} CUDA devices")
    data = load(dataset)
    if parse_arch(arch)[-1] % data.classes:
        raise UserError(f"--arch {arch}: the last layer must be a multiple of the "
                        f"{data.classes} classes of {data.name}")
    options = TrainOptions(arch=arch, epochs=epochs, thresholds=thresholds, encoding=encoding,
                           tau=tau, lr=lr,
                           batch_size=batch_size, schedule=schedule, seed=seed, device=device,
                           residual=_residual(no_residual, residual_logit), shift=shift,
                           jitter=jitter, eval_every=eval_every, val_fraction=val_fraction,
                           locality=locality, locality_radius=locality_radius)
    if launch:
        args = train_arguments(dataset, options, output)
        _launch(nproc, args + (["--plot", plot] if plot else []))
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from lgn_fpga.net import graph as gg
    from lgn_fpga.train.loop import torch_threads
    from lgn_fpga.train.loop import train as run_training

    command = reproduce_command(dataset, options, output, world)

    def describe(stats):
        text = f"loss {stats['loss']:.4f} train {stats['train_accuracy']:.2%}"
        if "val_accuracy" in stats:
            text += f" val(hard) {stats['val_accuracy']:.2%}"
        return text

    meta = {"command": command, "threads": torch_threads()}
    if not sys.stderr.isatty() or world > 1:
        # a log file gets one line per epoch, not a redrawn bar
        def log(epoch, stats):
            click.echo(f"epoch {epoch}/{epochs} {describe(stats)}", err=True)

        result = run_training(data, options, progress=log, meta=meta)
    else:
        with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=Console(stderr=True)) as bar:
            task = bar.add_task("epochs", total=epochs, stats="")

            def progress(epoch, stats):
                bar.update(task, advance=1, stats=describe(stats))

            result = run_training(data, options, progress=progress, meta=meta)
    if result is None:  # not rank 0 of a data-parallel run: rank 0 writes the model
        return
    gg.save(result.graph, output)
    if plot:
        _plot(result.history, plot, f"{data.name} {arch}")
    val = ""
    if result.val_accuracy is not None:
        val = f"validation {result.val_accuracy:.2%} ({result.graph.meta['val_samples']}), "
    click.echo(f"hardened {val}test accuracy {result.test_accuracy:.2%} ({len(data.y_test)} "
               f"samples), {result.graph.gates} gates, {result.seconds:.0f} s -> {output}",
               err=True)


def _residual(no_residual: bool, logit: float | None):
    if no_residual and logit is not None:
        raise UserError("--no-residual and --residual-logit contradict each other")
    if no_residual:
        return False
    return True if logit is None else float(logit)


def _plot(history, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lgn_fpga.files import atomic_write

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(history.epoch, history.loss)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss (relaxed)")
    right.plot(history.epoch, history.train_accuracy, label="train (relaxed)")
    right.plot(history.epoch, history.val_accuracy, label="validation (discretized)")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


@click.command()
@model_argument
@click.option("--dataset", metavar="NAME|FILE.npz",
              help="Dataset whose test split to use (default: the one in the model's meta).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def evaluate(model, dataset, as_json):
    """Accuracy and confusion matrix (rows: true class, columns: predicted) of the hardened
    MODEL on the test split, through the golden model."""
    graph = load_model(model)
    dataset = dataset or graph.meta.get("dataset")
    if not dataset:
        raise UserError("the model does not record its dataset: pass --dataset")
    from lgn_fpga.train.evaluate import evaluation

    result = evaluation(graph, dataset)
    if as_json:
        echo_json(result)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    recorded = result["recorded_accuracy"]
    line = f"{model} on {result['dataset']} test ({result['samples']} samples, " \
           f"{result['split']}): accuracy {result['accuracy']:.2%}"
    if recorded is not None:
        line += f" (recorded {recorded:.2%})"
    console.print(line)
    table = Table(title="confusion (rows true, columns predicted)")
    table.add_column("")
    for c in range(graph.classes):
        table.add_column(str(c), justify="right")
    for c, row in enumerate(result["confusion"]):
        table.add_row(str(c), *[str(int(v)) for v in row])
    console.print(table)


@click.command("import-difflogic")
@click.argument("state", metavar="STATE.pt", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (.json or .npz).")
@click.option("--indices", type=click.Path(dir_okay=False),
              help="The wiring, when STATE is a bare state dict: '<layer>.indices' -> (2, out) "
                   "(.pt or .npz).")
@click.option("--inputs", type=click.IntRange(min=1), help="Input bits (default: the "
              "encoding's bits, else the highest index the first layer reads + 1).")
@click.option("--classes", type=click.IntRange(min=1),
              help="GroupSum k (needed unless STATE is a pickled model).")
@click.option("--tau", type=FiniteFloatRange(min=0, min_open=True), help="GroupSum tau.")
@click.option("--encoding", type=click.Path(dir_okay=False),
              help="Thermometer thresholds (features x T) as .npy, recorded in the model.")
def import_difflogic(state, output, indices, inputs, classes, tau, encoding):
    """Convert a network trained with the difflogic library (a pickled model, or a state dict
    plus its wiring) into a gate graph; difflogic itself is not needed."""
    from lgn_fpga.net import graph as gg
    from lgn_fpga.train import difflogic_import as di

    imported = di.read(state, indices)
    enc = di.read_encoding(encoding) if encoding else None
    graph = di.to_graph(imported, inputs=inputs, classes=classes, tau=tau, encoding=enc,
                        meta={"source": "difflogic", "imported_from": str(state)})
    gg.save(graph, output)
    click.echo(f"{len(imported.layers)} layers, {graph.gates} gates, {graph.classes} classes "
               f"-> {output}", err=True)


@click.command("import-torchlogix")
@click.argument("model", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (.json or .npz).")
@click.option("--classes", type=click.IntRange(min=1),
              help="GroupSum k, where MODEL does not record it (a state dict, a circuit "
                   "without sum nodes).")
@click.option("--parametrization", type=click.Choice(["raw", "warp", "light"]),
              help="The gates' weight parametrization, for a state dict with (out, 4) "
                   "weights (warp and light look alike).")
@click.option("--temperature-softplus", type=FiniteFloatRange(min=0), default=0.1,
              show_default=True,
              help="LearnableBinarization's temperature_softplus, for a state dict.")
def import_torchlogix(model, output, classes, parametrization, temperature_softplus):
    """Convert a net trained with torchlogix 0.2.x into a gate graph: its circuit JSON
    (Circuit.write_json, raw or simplified), a dense model's state dict, or a pickled model,
    dense or conv (LogicConv2d/3d trees, OR pooling), read with an allow-list: no code from
    the file runs. torchlogix itself is not needed."""
    from lgn_fpga.cli.util import check_outputs
    from lgn_fpga.net import graph as gg

    check_outputs(output, suffixes=(".json", ".npz"))
    # torch is imported only for .pt files (a circuit JSON or .npz needs numpy alone)
    from lgn_fpga.train import torchlogix_import as tli

    graph = tli.load(model, classes=classes, parametrization=parametrization,
                     temperature_softplus=temperature_softplus)
    gg.save(graph, output)
    click.echo(f"{graph.depth} layers, {graph.gates} gates, {graph.classes} classes "
               f"-> {output}", err=True)


COMMANDS = [train, evaluate, import_difflogic, import_torchlogix]
