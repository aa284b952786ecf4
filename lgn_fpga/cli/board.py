"""CLI commands of the board stage (registered by lgn_fpga.cli): boards, build, flash, run."""

from __future__ import annotations

import click

from lgn_fpga.cli.util import echo_json
from lgn_fpga.errors import UserError


@click.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def boards_command(as_json):
    """List the board profiles: device, capacity, clock, programmer."""
    from rich.console import Console
    from rich.table import Table

    from lgn_fpga.flow import profiles

    rows = [p.summary() for p in profiles.profiles().values()]
    if as_json:
        echo_json(rows)
        return
    table = Table(title="boards")
    for col in ("board", "device", "LUTs", "FFs", "BRAM kbit", "clock", "programmer"):
        table.add_column(col, justify="right" if col in ("LUTs", "FFs", "BRAM kbit") else
                         "left", no_wrap=True)
    for r in rows:
        table.add_row(r["name"], r["device"], str(r["luts"]),
                      str(r["ffs"]), str(r["bram_bits"] // 1024),
                      f"{r['clock_hz'] / 1e6:g} MHz", r["programmer"])
    Console().print(table)


@click.command("build")
@click.option("--board", "-b", required=True, help="Board profile (see `lgn-fpga boards`).")
@click.option("--model", "-m", default=None,
              help="Model file or shipped model name [default: the shipped default].")
@click.option("--top", type=click.Choice(["uart", "bist"]), default="uart", show_default=True,
              help="uart: inference over the serial port; bist: on-chip self test.")
@click.option("--pipeline", type=click.IntRange(min=1), default=None,
              help="Gate layers between pipeline registers [default: the board profile's "
                   "value at the board clock, else the core's default, 2].")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: build/<board>].")
@click.option("--seed", type=int, default=1, show_default=True,
              help="nextpnr placement seed (same inputs and seed, same bitstream).")
@click.option("--freq", "freq_mhz", type=click.FloatRange(min=1), default=None,
              help="Clock in MHz through the PLL [default: the board oscillator].")
@click.option("--baud", type=click.IntRange(min=300), default=115200, show_default=True)
@click.option("--vectors", type=click.IntRange(min=1), default=None,
              help="BIST vectors in block RAM [default: up to 256, what fits half the RAM].")
@click.option("--vector-set", type=click.Path(dir_okay=False), default=None,
              help="BIST: golden vector set (.npz, see `lgn_fpga.net.vectors`) [default: the "
              "shipped set of a shipped model, else one made with --seed].")
@click.option("--no-optimize", is_flag=True, help="Build the net as given (no dead-gate "
              "removal or constant folding).")
@click.option("--allow-timing-fail", is_flag=True,
              help="Keep the bitstream when Fmax is below the target clock (warns).")
@click.option("--force", is_flag=True, help="Skip the fit estimate.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def build_command(board, model, top, pipeline, out, seed, freq_mhz, baud, vectors, vector_set,
                  no_optimize, allow_timing_fail, force, as_json):
    """Build a bitstream for BOARD with YoWASP Yosys and nextpnr.

    Writes the bitstream and report.json (utilization, Fmax, tool versions, stage times,
    bitstream sha256) into the output folder. A failed build leaves no bitstream."""
    from rich.console import Console

    from lgn_fpga.cli.render import print_summary
    from lgn_fpga.flow.build import BuildOptions, build

    console = Console(stderr=True)
    opts = BuildOptions(board=board, model=model, top=top, pipeline=pipeline, out=out,
                        seed=seed, optimize=not no_optimize, freq_mhz=freq_mhz, baud=baud,
                        vectors=vectors, vector_set=vector_set,
                        allow_timing_fail=allow_timing_fail, force=force)
    status = None

    def on_stage(name, state, seconds):
        nonlocal status
        if state == "start":
            status = console.status(f"{name}...")
            status.start()
        elif state == "done":
            if status is not None:
                status.stop()
            console.print(f"[green]✓[/green] {name} [dim]{seconds:.1f} s[/dim]")
        elif state == "note":
            console.print(f"[yellow]![/yellow] {name}")

    try:
        report = build(opts, on_stage=on_stage)
    finally:
        if status is not None:
            status.stop()
    if as_json:
        echo_json(report)
    else:
        print_summary(report, Console())


@click.command("flash")
@click.option("--board", "-b", required=True, help="Board profile (see `lgn-fpga boards`).")
@click.argument("bitstream", required=False, type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the programmer command, run nothing.")
def flash_command(board, bitstream, dry_run):
    """Program BITSTREAM [default: build/<board>/top.bin or top.bit] into BOARD."""
    from lgn_fpga.flow import profiles
    from lgn_fpga.flow.flash import flash

    flash(profiles.get(board), bitstream, dry_run=dry_run, echo=click.echo)


@click.command("run")
@click.option("--port", "-p", required=True, help="Serial device, e.g. /dev/ttyUSB1.")
@click.option("--model", "-m", default=None,
              help="Model for --check and --features [default: the shipped default].")
@click.argument("input_path", metavar="INPUT.npy", type=click.Path(dir_okay=False))
@click.option("--features", is_flag=True, help="INPUT holds raw features: encode them first.")
@click.option("--check", is_flag=True, help="Compare every answer with the golden model.")
@click.option("--baud", type=click.IntRange(min=300), default=115200, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds to wait for each answer.")
@click.option("--window", type=click.IntRange(1, 8), default=4, show_default=True,
              help="Requests in flight (the board buffers 8 answers).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the board's classes (.npy).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def run_command(port, model, input_path, features, check, baud, timeout, window, output,
                as_json):
    """Classify INPUT.npy on a board running the UART top; report throughput and latency."""
    from lgn_fpga.cli.render import print_run
    from lgn_fpga.cli.util import load_array, load_model, save_array
    from lgn_fpga.host.check import check_board_runs, golden_check, input_bits, run_summary
    from lgn_fpga.host.runner import Board

    x = load_array(input_path, "INPUT")
    graph = load_model(model) if (check or features or model) else None
    x = input_bits(x, graph, features=features, name=input_path)
    with Board(port, baud=baud, timeout=timeout) as board:
        info = board.info()
        check_board_runs(info, graph)
        result = board.infer(x, window=window)
    summary = run_summary(result, info, board.layout, baud, graph)
    mismatches = 0
    if check:
        summary["check"] = golden_check(graph, x, result)
        mismatches = summary["check"]["mismatches"]
    if output:
        save_array(output, result.classes)
    if as_json:
        echo_json(summary)
    else:
        print_run(summary)
    if mismatches:
        raise UserError(f"{mismatches} of {len(x)} answers differ from the golden model "
                        f"(first: sample {summary['check']['first_mismatch']})", exit_code=1)


@click.command("bist")
@click.option("--port", "-p", required=True, help="Serial device, e.g. /dev/ttyUSB1.")
@click.option("--baud", type=click.IntRange(min=300), default=115200, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0.05), default=2.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bist_command(port, baud, timeout, as_json):
    """Read the self-test report of a board running the BIST top (`build --top bist`)."""
    from lgn_fpga.host.runner import Board

    with Board(port, baud=baud, timeout=timeout) as board:
        report = board.bist()
    summary = {"passed": report.passed, "vectors": report.vectors, "cycles": report.cycles,
               "first_failure": report.first_failure,
               "cycles_per_vector": round(report.cycles / max(1, report.vectors), 3)}
    if as_json:
        echo_json(summary)
    else:
        verdict = "PASS" if report.passed else f"FAIL (first failing vector {report.first_failure})"
        click.echo(f"BIST {verdict}: {report.vectors} vectors in {report.cycles} cycles")
    if not report.passed:
        raise UserError(f"BIST failed at vector {report.first_failure}", exit_code=1)


@click.command("sim-board")
@click.option("--model", "-m", default=None, help="Model to serve [default: the shipped default].")
@click.option("--top", type=click.Choice(["uart", "bist"]), default="uart", show_default=True)
@click.option("--pipeline", type=click.IntRange(min=1), default=None,
              help="Gate layers between pipeline registers [default: the core's].")
@click.option("--no-optimize", is_flag=True, help="Serve the net exactly as the file gives it.")
@click.option("--seconds", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Stop after this long (0: until interrupted).")
def sim_board_command(model, top, pipeline, no_optimize, seconds):
    """A board with no hardware: the board top runs in Amaranth's simulator, its UART wired
    bit by bit to a pseudo-terminal. Point `lgn-fpga run --port` (or `bist`) at the printed
    device to try the whole serial path before you own a board. Simulated time runs far
    slower than a real clock, so expect a few answers per second."""
    import time

    from lgn_fpga.cli.util import load_model
    from lgn_fpga.sim.uart_link import SIM_DIVISOR, PtyBoard
    from lgn_fpga.verify.board import simulated_top

    graph = load_model(model)
    design = simulated_top(graph, top, divisor=SIM_DIVISOR, pipeline=pipeline,
                           optimize=not no_optimize)
    board = PtyBoard(design)
    click.echo(board.path)
    click.echo(f"simulated {top} top of {design.core.graph.gates} gates on {board.path}; "
               "Ctrl-C to stop", err=True)
    deadline = time.monotonic() + seconds if seconds else None
    try:
        while board.running and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        board.close()


COMMANDS = [boards_command, build_command, flash_command, run_command, bist_command,
            sim_board_command]
