"""CLI command of the formal stage: ``lgn-fpga verify`` (registered by lgn_fpga.cli)."""

from __future__ import annotations

import sys

import click

from lgn_fpga.cli.util import FiniteFloatRange, echo_json, load_model, model_argument


@click.command("verify")
@model_argument
@click.option("--board", default="icebreaker", show_default=True,
              help="Board profile (see `lgn-fpga boards`) whose FPGA family to synthesize for.")
@click.option("--pipeline", type=click.IntRange(min=1), default=None,
              help="Gate layers between pipeline registers [default: the core's, registers "
                   "placed from the LUT depth].")
@click.option("--no-optimize", is_flag=True,
              help="Build the net as given (default: optimized, as `build` does; the proof "
                   "is always against MODEL as given).")
@click.option("--timeout", type=FiniteFloatRange(min=1, max=7 * 24 * 3600), default=3600,
              show_default=True, help="Seconds the proof may take before it gives up.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(model, board, pipeline, no_optimize, timeout, as_json):
    """Prove that the synthesized netlist of MODEL's core (after synth_ice40 / synth_ecp5,
    as a board build makes it) computes the same class and scores as the gate graph, for
    every input, with Yosys's SAT solver, piece by piece between the pipeline registers
    (see docs/verify.md).

    Exits 0 when proved, 1 with the first differing output when not."""
    from lgn_fpga.flow import profiles
    from lgn_fpga.verify.formal import prove

    profile = profiles.get(board)
    graph = load_model(model)
    result = prove(graph, family=profile.family, pipeline=pipeline,
                   optimize=not no_optimize, timeout=timeout)
    if as_json:
        echo_json(result.to_json())
    elif result.proved:
        click.echo(f"PROVED: the {profile.family} netlist of {model} ({result.cells} cells, "
                   f"latency {result.latency}) equals the gate graph ({result.gates} gates) "
                   f"on every input; synthesis {result.synth_seconds:.1f} s, proof "
                   f"{result.prove_seconds:.1f} s in {result.pieces} pieces")
    else:
        click.echo(f"FAILED: {result.difference}")
    if not result.proved:
        sys.exit(1)


COMMANDS = [verify]
