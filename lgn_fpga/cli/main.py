"""The ``lgn-fpga`` command line. Each stage's commands live beside their stage
(cli_sim, cli_board, cli_train); this module holds the group, the shared options and the
foundation commands (info, predict, random-model, optimize)."""

from __future__ import annotations

import signal

import click

from lgn_fpga.cli.util import (
    check_outputs,
    echo_json,
    load_array,
    load_model,
    model_argument,
    save_array,
)
from lgn_fpga.errors import UserError


def _one_line(text: str) -> str:
    """``text`` with every character that is not printable escaped (a line break or a
    carriage return inside a key or a file name read from a hostile file would otherwise
    split the one error line)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in str(text))


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


class _Main(click.Group):
    """Turns UserError into one line on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        # `kill` (SIGTERM) cleans up like Ctrl-C: a build removes its temporary folder and
        # marks its report interrupted instead of vanishing mid-write.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"lgn-fpga: error: {_one_line(e)}", err=True)
            ctx.exit(e.exit_code)
        except click.UsageError as e:
            # A bad option of a subcommand: one line, like every other user error.
            where = f" (see lgn-fpga {e.ctx.info_name} --help)" if e.ctx else ""
            click.echo(f"lgn-fpga: error: {_one_line(e.format_message())}{where}", err=True)
            ctx.exit(e.exit_code)
        except (OSError, RecursionError, MemoryError) as e:
            # The last line of defence: a file, folder or device that failed in a place no
            # check foresaw still gets one line, not a traceback.
            name = getattr(e, "filename", None)
            text = getattr(e, "strerror", None) or str(e) or type(e).__name__
            where = _one_line(f"{name}: ") if name else ""
            click.echo(f"lgn-fpga: error: {where}{_one_line(text)}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("lgn-fpga: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"],
                                          "max_content_width": 100})
@click.version_option(package_name="lgn-fpga")
def main():
    """Logic gate networks onto open FPGAs, checked bit for bit at every stage.

    \b
    A typical session:
      lgn-fpga info digits                 # what is in the shipped model
      lgn-fpga simulate digits --vectors 200   # the core, cycle-accurate, vs the golden model
      lgn-fpga build --board icebreaker    # a real bitstream with YoWASP
      lgn-fpga flash --board icebreaker    # program it
      lgn-fpga run --port /dev/ttyUSB1 input.npy --check
    """


@main.command()
@model_argument
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(model, as_json):
    """Inputs, classes, layer widths, gates by op, depth and dead gates of MODEL."""
    from rich.console import Console
    from rich.table import Table

    from lgn_fpga.net.analysis import summary

    s = summary(load_model(model))
    if as_json:
        echo_json(s)
        return
    console = Console()
    table = Table(title=f"{model}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("inputs", str(s["inputs"]))
    table.add_row("classes", f"{s['classes']} ({s['bits_per_class']} bits each)")
    table.add_row("layers", f"{s['layers']}: " + " ".join(map(str, s["widths"])))
    table.add_row("gates", f"{s['gates']} ({s['logic_gates']} logic, "
                  f"{s['pass_through_gates']} pass-through, {s['constant_gates']} constant)")
    table.add_row("dead gates", f"{s['dead_gates']} (cannot affect the output)")
    table.add_row("ops", ", ".join(f"{k} {v}" for k, v in s["ops"].items() if v))
    if s["encoding"]:
        e = s["encoding"]
        table.add_row("encoding", f"thermometer, {e['features']} features x "
                      f"{e['thresholds_per_feature']} thresholds")
    for key in ("dataset", "test_accuracy"):
        if key in s["meta"]:
            table.add_row(key, str(s["meta"][key]))
    table.add_row("sha256", s["sha256"])
    console.print(table)


@main.command()
@model_argument
@click.argument("input_path", metavar="INPUT.npy", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the predicted classes (.npy, int64).")
@click.option("--scores", type=click.Path(dir_okay=False),
              help="Also write the per-class scores (.npy, int32, samples x classes).")
@click.option("--features", is_flag=True,
              help="INPUT holds raw features: apply the model's encoding first.")
@click.option("--engine", type=click.Choice(["golden", "c"]), default="golden",
              show_default=True,
              help="golden: the numpy reference; c: the net compiled to C with the host's C "
                   "compiler (cached by model hash; same results bit for bit, faster).")
def predict(model, input_path, output, scores, features, engine):
    """Classify INPUT (samples x inputs 0/1 bits) with the golden model (or the C engine)."""
    from lgn_fpga.net import golden

    check_outputs(output, scores, suffixes=(".npy",))
    graph = load_model(model)
    x = load_array(input_path, "INPUT")
    if features:
        if graph.encoding is None:
            raise UserError("the model has no input encoding; pass input bits instead of "
                            "features")
        x = graph.encoding.encode(x)
    if engine == "c":
        from lgn_fpga.flow import c_engine

        result = c_engine.predict(graph, x)
    else:
        result = golden.predict(graph, x)
    save_array(output, result.classes)
    if scores:
        save_array(scores, result.scores)
    click.echo(f"{len(result.classes)} samples classified -> {output}", err=True)


@main.command("import-aiger")
@click.argument("aiger_path", metavar="FILE.aag|FILE.aig", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (.json or .npz).")
@click.option("--classes", type=click.IntRange(min=1),
              help="Class groups the outputs form (default: the file's `lgn-fpga classes K` "
                   "comment, which `export --format aiger` writes).")
def import_aiger(aiger_path, output, classes):
    """Read a combinational AIGER file (ASCII or binary) as a gate graph: AND nodes
    levelized into layers, pass-through gates where a signal skips layers, one last-layer
    gate per output in order."""
    from lgn_fpga.net import aiger
    from lgn_fpga.net import graph as gg

    check_outputs(output, suffixes=(".json", ".npz"))
    g = aiger.load(aiger_path, classes=classes)
    gg.save(g, output)
    click.echo(f"{g.gates} gates in {g.depth} layers, {g.classes} classes -> {output}",
               err=True)


@main.command("random-model")
@click.option("--inputs", type=click.IntRange(min=1), required=True, help="Input bits.")
@click.option("--layers", type=click.IntRange(min=1), required=True, help="Gate layers.")
@click.option("--width", type=click.IntRange(min=1), required=True, help="Gates per layer.")
@click.option("--classes", type=click.IntRange(min=1), required=True, help="Classes.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (.json or .npz).")
def random_model(inputs, layers, width, classes, seed, output):
    """A random net for tests and benchmarks (same seed, same file)."""
    from lgn_fpga.net import graph as gg
    from lgn_fpga.net.random_nets import random_graph

    check_outputs(output, suffixes=(".json", ".npz"))
    limit = gg.limits()
    for option, value, most, key in (("--inputs", inputs, limit.inputs, "inputs"),
                                     ("--layers", layers, limit.layers, "layers"),
                                     ("--layers x --width", layers * width, limit.gates, "gates")):
        if value > most:
            raise UserError(f"{option} = {value} exceeds the limit of {most} {key}; set "
                            f"${gg.LIMITS[key][0]} to allow a bigger net")

    g = random_graph(inputs, layers, width, classes, seed)
    gg.save(g, output)
    click.echo(f"{g.gates} gates in {g.depth} layers -> {output}", err=True)


@main.command()
@model_argument
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Optimized model file to write (.json or .npz).")
@click.option("--json", "as_json", is_flag=True, help="Print the before/after counts as JSON.")
def optimize(model, output, as_json):
    """Remove dead gates, fold constants and merge duplicates; the result computes the same
    scores on every input (checked on random vectors before writing)."""
    from lgn_fpga.net import graph as gg
    from lgn_fpga.net.optimize import optimize as run_optimize

    check_outputs(output, suffixes=(".json", ".npz"))
    graph = load_model(model)
    result, stats = run_optimize(graph, verify=True)
    gg.save(result, output)
    if as_json:
        echo_json(stats)
    else:
        click.echo(f"gates {stats['gates_before']} -> {stats['gates_after']}, logic gates "
                   f"{stats['logic_before']} -> {stats['logic_after']} -> {output}", err=True)


def _register() -> None:
    from lgn_fpga.cli import board as cli_board
    from lgn_fpga.cli import sim as cli_sim
    from lgn_fpga.cli import train as cli_train
    from lgn_fpga.cli import verify as cli_verify

    for module in (cli_sim, cli_board, cli_train, cli_verify):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

