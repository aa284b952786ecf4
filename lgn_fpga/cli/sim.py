"""CLI commands of the simulation stage: simulate, export, vectors (registered by
lgn_fpga.cli)."""

from __future__ import annotations

import sys

import click

from lgn_fpga.cli.util import (
    FiniteFloatRange,
    check_memory,
    check_outputs,
    echo_json,
    load_array,
    load_model,
    model_argument,
)
from lgn_fpga.errors import UserError
from lgn_fpga.gateware.core import DEFAULT_PIPELINE

pipeline_option = click.option(
    "--pipeline", type=click.IntRange(min=1), default=None,
    help="Gate layers between pipeline registers [default: registers placed from the LUT "
         "depth; with --board as `build --board` places them for its clock].")
board_option = click.option(
    "--board", "-b", default=None,
    help="Use exactly the design `build --board BOARD` makes: its registers, popcount "
         "tables and core.")
freq_option = click.option(
    "--freq", "freq_mhz", type=FiniteFloatRange(min=1), default=None,
    help="With --board: the clock `build --freq` would use (it places the registers).")


def design_options(graph, *, board=None, pipeline=None, freq_mhz=None, optimize=True,
                   core="parallel", lanes=None, top="uart") -> tuple[dict, dict]:
    """(options, core options) of the core to simulate or export: with ``board`` the design
    ``build --board`` would make (:func:`lgn_fpga.flow.build.board_design`, and its core
    choice), else the core's defaults. ``options`` says what was chosen (``pipeline``
    "auto" or k, ``stage_luts``, ``popcount_tables``, ``core``, ``lanes``, ``source``: where
    they came from, ``describe``: in words); the core options are ``LogicNetCore``'s
    keyword arguments."""
    from lgn_fpga.flow.build import CoreDesign, board_core, board_design
    from lgn_fpga.gateware.core import DEFAULT_STAGE_LUTS

    if board is None:
        if freq_mhz is not None:
            raise UserError("--freq needs --board (it places the registers for the board)")
        design = CoreDesign(pipeline or DEFAULT_PIPELINE, DEFAULT_STAGE_LUTS)
        kind, lanes_chosen = ("folded" if core == "folded" else "parallel"), lanes or 1
        source = "given" if pipeline else "default"
    else:
        from lgn_fpga.flow import profiles
        from lgn_fpga.net.optimize import design_graph

        profile = profiles.get(board)
        net, _ = design_graph(graph, optimize=optimize)
        design = board_design(profile, net, pipeline=pipeline, freq_mhz=freq_mhz, top=top)
        kind, lanes_chosen = core, lanes or 1
        if core == "auto":
            kind, lanes_chosen = board_core(net, profile, design=design, core=core,
                                            lanes=lanes, top=top)
        source = f"build --board {profile.name}" + (f" --freq {freq_mhz:g}" if freq_mhz
                                                     else "")
    options = {**design.report(), "core": kind, "lanes": lanes_chosen or 1,
               "source": source, "describe": design.describe()}
    return options, design.core_options()


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
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the random vectors and of the idle-cycle schedule.")
@pipeline_option
@click.option("--engine", type=click.Choice(["pysim", "cxxrtl", "verilog", "netlist"]),
              default="pysim",
              show_default=True,
              help="pysim: Amaranth's Python simulator; cxxrtl: the RTL compiled with CXXRTL "
                   "(fast; needs g++); verilog: the Verilog that `export` writes, read back "
                   "by Yosys and compiled the same way; netlist: the core after Yosys's iCE40 "
                   "synthesis, its LUT4/carry/FF cells simulated with Yosys's cell models.")
@click.option("--gap-rate", type=FiniteFloatRange(0, 1, max_open=True), default=0.25,
              show_default=True, help="Chance of an idle cycle (in_valid = 0) before a vector.")
@click.option("--vcd", type=click.Path(dir_okay=False), metavar="OUT.vcd",
              help="Write a waveform (pysim only); gate layers appear as layer0, layer1, ...")
@no_optimize_option
@click.option("--fault", metavar="LAYER:GATE", hidden=True,
              help="Complement one gate in the built design (not in the golden model) to "
                   "prove the check catches it.")
@click.option("--core", "core_kind", type=click.Choice(["parallel", "folded", "auto"]),
              default="auto", show_default=True,
              help="parallel: one input per clock; folded: the gates from block RAM, --lanes "
                   "per clock (docs/folded.md); auto: what `build` picks with --board, else "
                   "parallel.")
@click.option("--lanes", type=click.IntRange(min=1), default=None,
              help="Folded core: gates per clock (a power of two) [default: with --board what "
                   "`build` picks, else 1].")
@board_option
@freq_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def simulate(model, inputs_path, count, seed, pipeline, engine, gap_rate, vcd, no_optimize,
             fault, core_kind, lanes, as_json, board=None, freq_mhz=None):
    """Stream vectors through the core, one per clock with idle gaps, cycle-accurately, and
    check every output against the golden model.

    Exits 0 when every output matches, 1 at a mismatch (the first failing vector is shown
    with its expected and actual scores). Prints the latency and the options used; a
    compiled engine's compile time is reported apart from its simulation rate."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from lgn_fpga.verify.simulate import random_bits
    from lgn_fpga.verify.simulate import simulate as run_simulation

    check_outputs(vcd)
    graph = load_model(model)
    if inputs_path is None:
        # the bits, the schedule, golden and simulated scores: ~4 bytes per input bit and
        # class score of every vector, checked before any is made
        check_memory(count * (graph.inputs + 8 * graph.classes + 64) * 4, f"--vectors {count}")
    if inputs_path is not None and str(inputs_path).endswith(".npz"):
        from lgn_fpga.net import vectors

        vector_set = vectors.load(inputs_path, graph)
        vectors.check(vector_set, graph)
        bits = vector_set.bits
    elif inputs_path is not None:
        bits = load_array(inputs_path, "--inputs")
    else:
        bits = random_bits(graph.inputs, count, seed)
    design, core_options = design_options(graph, board=board, pipeline=pipeline,
                                          freq_mhz=freq_mhz, optimize=not no_optimize,
                                          core=core_kind, lanes=lanes)
    core_kind, lanes = design["core"], design["lanes"]
    console = Console(stderr=True)
    # A compile has no cycle count yet: show its step and the elapsed time, not "0/?".
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                  console=console, transient=True,
                  disable=as_json or not console.is_terminal) as progress:
        task = progress.add_task(f"{engine}", total=None, counts="")

        def on_progress(done, total):
            progress.update(task, completed=done, total=total, counts=f"{done}/{total} cycles")

        def on_status(text):
            progress.update(task, description=f"{engine}: {text}")

        result = run_simulation(
            graph, bits, pipeline=core_options["pipeline"], engine=engine,
            optimize=not no_optimize, core_options=core_options,
            gap_rate=gap_rate, seed=seed, vcd=vcd, fault=_parse_fault(fault),
            progress=on_progress, status=on_status,
            core="folded" if core_kind == "folded" else "parallel", lanes=lanes)
    used = (f"{core_kind} core" + (f", {lanes} lane(s)" if core_kind == "folded" else
                                   f", {design['describe']}")
            + f", {'not ' if no_optimize else ''}optimized ({design['source']})")
    compiled = ""
    if "build_seconds" in result.extra:  # a compiled engine: its compile is not its rate
        compiled = (f"; model compiled in {result.extra['build_seconds']:.1f} s"
                    if result.extra.get("compiled") else "; compiled model from the cache")
    if as_json:
        echo_json({**result.to_json(), "options": design})
    elif result.passed:
        click.echo(f"PASS: {result.vectors} vectors in {result.cycles} cycles on {engine}, "
                   f"latency {result.latency_measured} (declared {result.latency_declared}), "
                   f"{result.vectors_per_second:.0f} vectors/s simulated{compiled}; {used}")
    else:
        click.echo(f"FAIL on {engine}: {result.mismatch.describe()} ({used})")
    if vcd and not as_json:
        click.echo(f"waveform -> {vcd}", err=True)
    if not result.passed:
        sys.exit(1)


@click.command()
@model_argument
@click.option("--format", "fmt", type=click.Choice(["verilog", "rtlil", "c", "aiger", "aig"]),
              required=True,
              help="verilog/rtlil: the clocked core; c: the net, popcount and argmax as one "
                   "self-contained C file (entry points documented in its header); "
                   "aiger/aig: the net as an ASCII/binary AIGER and-inverter graph whose "
                   "outputs are the last layer's bits in order.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="File to write.")
@pipeline_option
@click.option("--name", default="lgn_core", show_default=True, help="Module name.")
@no_optimize_option
@board_option
@freq_option
def export(model, fmt, output, pipeline, name, no_optimize, board=None, freq_mhz=None):
    """Write the core alone (no board top) as Verilog or RTLIL, with a header comment that
    documents its ports and latency; or the net alone as C (--format c) or AIGER."""
    from lgn_fpga.flow.export import check_name, export_file

    check_name(name)
    check_outputs(output)
    graph = load_model(model)
    design, core_options = design_options(graph, board=board, pipeline=pipeline,
                                          freq_mhz=freq_mhz, optimize=not no_optimize,
                                          core="auto" if board else "parallel")
    export_file(graph, fmt, output, pipeline=core_options["pipeline"], name=name,
                optimize=not no_optimize, source=str(model), core=design["core"],
                lanes=design["lanes"], core_options=core_options)
    shape = (f"folded, {design['lanes']} lane(s)" if design["core"] == "folded"
             else design["describe"])
    click.echo(f"{fmt} -> {output} ({shape}, {design['source']})", err=True)


@click.command()
@model_argument
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Vector set to write (.npz).")
@click.option("--count", type=click.IntRange(min=1), default=256, show_default=True,
              help="Number of vectors.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def vectors(model, output, count, seed):
    """Write a golden vector set for MODEL: input bits with their expected scores and
    classes (used by tests, simulations and the board self test)."""
    from lgn_fpga.net import vectors as vec

    check_outputs(output, suffixes=(".npz",))
    graph = load_model(model)
    check_memory(count * (graph.inputs + 12 * graph.classes + 8) * 4, f"--count {count}")
    vs = vec.make(graph, count, seed=seed, model=str(model))
    vec.save(vs, output)
    click.echo(f"{len(vs)} vectors for model {graph.sha256()[:16]}... -> {output}", err=True)


COMMANDS = [simulate, export, vectors]
