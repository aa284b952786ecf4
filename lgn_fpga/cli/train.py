"""CLI commands of the training stage: train, evaluate, import-difflogic (registered by
lgn_fpga.cli).

torch is imported only inside ``train`` (and by import-difflogic for .pt files): the rest of
the CLI, evaluate included, works without the training extras.
"""

from __future__ import annotations

import shlex
import sys

import click

from lgn_fpga.cli.util import echo_json, load_model, model_argument
from lgn_fpga.errors import UserError

TORCH_MISSING = "torch is not installed: pip install -e '.[train]'"


def _require_torch():
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise UserError(TORCH_MISSING)


def reproduce_command(dataset, options, output) -> str:
    """The exact command line that trains this model again."""
    args = ["lgn-fpga", "train", "--dataset", dataset, "--arch", options.arch,
            "--epochs", str(options.epochs), "--thresholds", str(options.thresholds),
            "--tau", f"{options.tau:g}", "--lr", f"{options.lr:g}",
            "--batch-size", str(options.batch_size), "--seed", str(options.seed),
            "--device", options.device]
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
    args += ["-o", str(output)]
    return shlex.join(args)


@click.command()
@click.option("--dataset", required=True, metavar="NAME|FILE.npz",
              help="digits, fashion-mnist, mnist-5k, or an .npz with arrays x and y.")
@click.option("--arch", default="1000,1000,300", show_default=True,
              help="Stages, e.g. 2000,1000,300 (dense widths) or c16,c32,4000,1000 "
                   "(c<K>[r<R>][d<D>][n]: conv block of K logic-tree kernels).")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--thresholds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Thermometer bits per feature (quantiles of the training split).")
@click.option("--encoding", type=click.Choice(["auto", "foreground", "pooled", "feature"]),
              default="auto", show_default=True,
              help="Threshold fit: auto = foreground for images, feature otherwise.")
@click.option("--tau", type=click.FloatRange(min=0, min_open=True), default=3.0,
              show_default=True, help="GroupSum temperature.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.01,
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
@click.option("--jitter", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Add uniform noise of up to this much to raw training features before "
                   "encoding (fresh every batch).")
@click.option("--eval-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Measure the discretized test accuracy every this many epochs.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write training curves (.png).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (.json or .npz).")
def train(dataset, arch, epochs, thresholds, encoding, tau, lr, batch_size, schedule, seed, device,
          no_residual, residual_logit, shift, jitter, eval_every, plot, output):
    """Train a logic gate network, harden it and write the gate graph; the meta records the
    dataset, split, options, hardened test accuracy (golden model) and the command."""
    _require_torch()
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
    from lgn_fpga.train.data import load
    from lgn_fpga.train.loop import TrainOptions, cuda_available, torch_threads
    from lgn_fpga.train.loop import train as run_training
    from lgn_fpga.train.net import parse_arch

    if not output.endswith((".json", ".npz")):
        raise UserError(f"{output}: model files end in .json or .npz")
    parse_arch(arch)  # a bad --arch fails before the dataset loads
    if device == "cuda" and not cuda_available():
        raise UserError("--device cuda: this torch sees no CUDA device")
    data = load(dataset)
    if parse_arch(arch)[-1] % data.classes:
        raise UserError(f"--arch {arch}: the last layer must be a multiple of the "
                        f"{data.classes} classes of {data.name}")
    options = TrainOptions(arch=arch, epochs=epochs, thresholds=thresholds, encoding=encoding,
                           tau=tau, lr=lr,
                           batch_size=batch_size, schedule=schedule, seed=seed, device=device,
                           residual=_residual(no_residual, residual_logit), shift=shift,
                           jitter=jitter, eval_every=eval_every)
    command = reproduce_command(dataset, options, output)
    def describe(stats):
        text = f"loss {stats['loss']:.4f} train {stats['train_accuracy']:.2%}"
        if "test_accuracy" in stats:
            text += f" test(hard) {stats['test_accuracy']:.2%}"
        return text

    meta = {"command": command, "threads": torch_threads()}
    if not sys.stderr.isatty():
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
    gg.save(result.graph, output)
    if plot:
        _plot(result.history, plot, f"{data.name} {arch}")
    click.echo(f"hardened test accuracy {result.test_accuracy:.2%} ({len(data.y_test)} "
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
    right.plot(history.epoch, history.test_accuracy, label="test (discretized)")
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
@click.option("--tau", type=click.FloatRange(min=0, min_open=True), help="GroupSum tau.")
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


COMMANDS = [train, evaluate, import_difflogic]
