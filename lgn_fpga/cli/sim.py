"""CLI commands of the simulation stage: simulate, export, vectors (registered by
lgn_fpga.cli)."""

from __future__ import annotations

import sys

import click

from lgn_fpga.cli.util import echo_json, load_array, load_model, model_argument
from lgn_fpga.errors import UserError
from lgn_fpga.gateware.core import DEFAULT_PIPELINE

pipeline_option = click.option(
    "--pipeline", type=click.IntRange(min=1), default=DEFAULT_PIPELINE, show_default=True,
    help="Gate layers between pipeline registers.")
no_optimize_option = click.option(
    "--no-optimize", is_flag=True,
    help="Build the net as given (default: remove dead gates, constants and duplicates first).")


def _parse_fault(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        layer, gate = (int(part) for part in text.split(":"))
    except ValueError:
        raise UserError(f"--fault takes LAYER:GATE, got {text!r}") from None
    return layer, gate


@click.command()
@model_argument
@click.option("--inputs", "inputs_path", type=click.Path(dir_okay=False), metavar="BITS.npy",
              help="Input vectors (samples x inputs, 0/1), or a golden vector set (.npz, "
                   "checked against the model first). Default: random vectors.")
@click.option("--vectors", "count", type=click.IntRange(min=1), default=100, show_default=True,
              help="How many random vectors (without --inputs).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the random vectors and of the idle-cycle schedule.")
@pipeline_option
@click.option("--engine", type=click.Choice(["pysim", "cxxrtl", "verilog", "netlist"]),
              default="pysim",
              show_default=True,
              help="pysim: Amaranth's Python simulator; cxxrtl: the RTL compiled with CXXRTL "
                   "(fast; needs g++); verilog: the Verilog that `export` writes, read back "
                   "by Yosys and compiled the same way; netlist: the core after Yosys's iCE40 "
                   "synthesis, its LUT4/carry/FF cells simulated with Yosys's cell models.")
@click.option("--gap-rate", type=click.FloatRange(0, 1, max_open=True), default=0.25,
              show_default=True, help="Chance of an idle cycle (in_valid = 0) before a vector.")
@click.option("--vcd", type=click.Path(dir_okay=False), metavar="OUT.vcd",
              help="Write a waveform (pysim only); gate layers appear as layer0, layer1, ...")
@no_optimize_option
@click.option("--fault", metavar="LAYER:GATE", hidden=True,
              help="Complement one gate in the built design (not in the golden model) to "
                   "prove the check catches it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def simulate(model, inputs_path, count, seed, pipeline, engine, gap_rate, vcd, no_optimize,
             fault, as_json):
    """Stream vectors through the core, one per clock with idle gaps, cycle-accurately, and
    check every output against the golden model.

    Exits 0 when every output matches, 1 at a mismatch (the first failing vector is shown
    with its expected and actual scores)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from lgn_fpga.verify.simulate import random_bits
    from lgn_fpga.verify.simulate import simulate as run_simulation

    graph = load_model(model)
    if inputs_path is not None and str(inputs_path).endswith(".npz"):
        from lgn_fpga.net import vectors

        vector_set = vectors.load(inputs_path, graph)
        vectors.check(vector_set, graph)
        bits = vector_set.bits
    elif inputs_path is not None:
        bits = load_array(inputs_path, "--inputs")
    else:
        bits = random_bits(graph.inputs, count, seed)
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("cycles"), TimeRemainingColumn(),
                  console=console, transient=True,
                  disable=as_json or not console.is_terminal) as progress:
        task = progress.add_task(f"{engine}", total=None)

        def on_progress(done, total):
            progress.update(task, completed=done, total=total)

        def on_status(text):
            progress.update(task, description=f"{engine}: {text}")

        result = run_simulation(
            graph, bits, pipeline=pipeline, engine=engine, optimize=not no_optimize,
            gap_rate=gap_rate, seed=seed, vcd=vcd, fault=_parse_fault(fault),
            progress=on_progress, status=on_status)
    if as_json:
        echo_json(result.to_json())
    elif result.passed:
        click.echo(f"PASS: {result.vectors} vectors in {result.cycles} cycles on {engine}, "
                   f"latency {result.latency_measured} (declared {result.latency_declared}), "
                   f"{result.vectors_per_second:.0f} vectors/s")
    else:
        click.echo(f"FAIL on {engine}: {result.mismatch.describe()}")
    if vcd and not as_json:
        click.echo(f"waveform -> {vcd}", err=True)
    if not result.passed:
        sys.exit(1)


@click.command()
@model_argument
@click.option("--format", "fmt", type=click.Choice(["verilog", "rtlil"]), required=True,
              help="Output language.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="File to write.")
@pipeline_option
@click.option("--name", default="lgn_core", show_default=True, help="Module name.")
@no_optimize_option
def export(model, fmt, output, pipeline, name, no_optimize):
    """Write the core alone (no board top) as Verilog or RTLIL, with a header comment that
    documents its ports and latency."""
    from lgn_fpga.flow.export import export_file

    graph = load_model(model)
    export_file(graph, fmt, output, pipeline=pipeline, name=name, optimize=not no_optimize,
                source=str(model))
    click.echo(f"{fmt} -> {output}", err=True)


@click.command()
@model_argument
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Vector set to write (.npz).")
@click.option("--count", type=click.IntRange(min=1), default=256, show_default=True,
              help="Number of vectors.")
@click.option("--seed", type=int, default=0, show_default=True)
def vectors(model, output, count, seed):
    """Write a golden vector set for MODEL: input bits with their expected scores and
    classes (used by tests, simulations and the board self test)."""
    from lgn_fpga.net import vectors as vec

    graph = load_model(model)
    vs = vec.make(graph, count, seed=seed, model=str(model))
    vec.save(vs, output)
    click.echo(f"{len(vs)} vectors for model {graph.sha256()[:16]}... -> {output}", err=True)


COMMANDS = [simulate, export, vectors]
