"""CLI commands of the board stage (registered by lgn_fpga.cli): boards, build, flash, run."""

from __future__ import annotations

import click

from lgn_fpga.cli.util import FiniteFloatRange, echo_json
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
              help="Gate layers between pipeline registers [default: registers placed from "
                   "the mapped LUT depth, as many LUT levels a stage as the clock allows].")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: build/<board>].")
@click.option("--seed", type=int, default=1, show_default=True,
              help="nextpnr placement seed (same inputs and seed, same bitstream).")
@click.option("--freq", "freq_mhz", type=FiniteFloatRange(min=1), default=None,
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
@click.option("--core", "core_kind", type=click.Choice(["parallel", "folded", "auto"]),
              default="auto", show_default=True,
              help="parallel: every gate in logic, one input per clock; folded: the gates as "
                   "a program in block RAM, --lanes gates per clock (docs/folded.md); auto: "
                   "parallel when it fits with margin, else folded.")
@click.option("--lanes", type=click.IntRange(min=1), default=None,
              help="Folded core: gates per clock, a power of two [default: the most that "
                   "fit, up to 8].")
@click.option("--program", "program_ram", type=click.Choice(["bram", "spram"]), default=None,
              help="Folded core: where its program sits. spram (iCE40 UP5K): loaded at boot "
                   "from the board's flash, where `lgn-fpga flash` writes program.bin beside "
                   "the bitstream [default: block RAM, SPRAM when it does not fit].")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as JSON (also when the build fails or is interrupted).")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr, only errors.")
@click.option("--verbose", "-v", is_flag=True,
              help="Every stage start and tool progress update on a line of its own.")
@click.option("--plot", is_flag=True,
              help="Also write <out>/breakdown.png: where the cells go (needs matplotlib).")
def build_command(board, model, top, pipeline, out, seed, freq_mhz, baud, vectors, vector_set,
                  no_optimize, allow_timing_fail, force, as_json, quiet=False, verbose=False,
                  plot=False,
                  core_kind="auto", lanes=None, program_ram=None):
    """Build a bitstream for BOARD with YoWASP Yosys and nextpnr.

    Each run works in a staging folder inside the output folder; on success its bitstream,
    report.json (utilization, Fmax, tool versions, every stage with its time and figures,
    bitstream sha256) and the tool logs replace the previous build's. A failed or
    interrupted run leaves the previous outputs as they were and puts its own logs and
    report into <out>/failed/. Two builds into one folder refuse (a lock file).
    On a terminal each stage shows a live line with its elapsed time and the placer's and
    router's progress; elsewhere one line per finished stage."""
    import signal

    from rich.console import Console

    from lgn_fpga.cli.progress import StageProgress
    from lgn_fpga.cli.render import print_summary
    from lgn_fpga.flow.build import BuildOptions, build

    # A closed terminal (SIGHUP) cleans up like Ctrl-C and `kill`: tools stopped, the
    # previous outputs kept, this run's logs in <out>/failed/.
    signal.signal(signal.SIGHUP, signal.default_int_handler)  # raises KeyboardInterrupt
    opts = BuildOptions(board=board, model=model, top=top, pipeline=pipeline, out=out,
                        seed=seed, optimize=not no_optimize, freq_mhz=freq_mhz, baud=baud,
                        vectors=vectors, vector_set=vector_set,
                        allow_timing_fail=allow_timing_fail, force=force,
                        core=core_kind, lanes=lanes, program=program_ram)
    try:
        with StageProgress(quiet=quiet, verbose=verbose) as on_stage:
            report = build(opts, on_stage=on_stage)
    except (UserError, KeyboardInterrupt) as e:
        if as_json:  # the report of what ran, even when it failed or was interrupted
            echo_json(getattr(e, "report", None) or {
                "status": "interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                "board": board, "error": str(e) or type(e).__name__, "stages": []})
        elif getattr(e, "report", None) and e.report.get("failed_dir") and not quiet:
            click.echo(f"logs and report of this run: {e.report['failed_dir']}", err=True)
        raise
    if plot:
        from pathlib import Path

        from lgn_fpga.cli.render import plot_breakdown

        plot_breakdown(report, Path(report["out"]) / "breakdown.png")
    if as_json:
        echo_json(report)
    else:
        print_summary(report, Console())


@click.command("flash")
@click.option("--board", "-b", default=None,
              help="Board profile (see `lgn-fpga boards`) [default: the board in the "
                   "report.json beside the bitstream].")
@click.argument("bitstream", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="The build's output folder, as given to `build --out` "
                   "[default: build/<board>].")
@click.option("--model", "-m", default=None,
              help="Refuse a bitstream built from another model (checked in report.json).")
@click.option("--sram/--flash", "sram", default=None,
              help="Write the volatile configuration (lost at power-off) or the board's "
                   "flash [default: the board profile's choice].")
@click.option("--force", is_flag=True,
              help="Program even when report.json names another board, device or model.")
@click.option("--dry-run", is_flag=True,
              help="Print the programmer command and check that it can run; program nothing.")
def flash_command(board, bitstream, out, model, sram, force, dry_run):
    """Program BITSTREAM [default: the bitstream `build` wrote into --out, or
    build/<board>/top.bin or top.bit] into BOARD.

    The report.json beside the bitstream must say it was built for BOARD's board and
    device (and from --model, if given); a mismatch is refused unless --force."""
    from pathlib import Path

    from lgn_fpga.flow import profiles
    from lgn_fpga.flow.flash import flash, locate, read_report

    profile = profiles.get(board) if board else None
    if profile is None:
        # no --board: the report beside the bitstream names it
        report = read_report(locate(None, bitstream, out))
        if not report or not report.get("board"):
            raise UserError("--board is needed: no report.json beside the bitstream says "
                            "which board it was built for")
        profile = profiles.get(report["board"])
    sha = None
    if model:
        from lgn_fpga.cli.util import load_model

        sha = load_model(model).sha256()
    mode = None if sram is None else ("sram" if sram else "flash")
    flash(profile, Path(bitstream) if bitstream else None, out=out, dry_run=dry_run,
          mode=mode, force=force, model_sha256=sha, model_name=model, echo=click.echo,
          say=lambda text: click.echo(text, err=True))


@click.command("run")
@click.option("--port", "-p", required=True, help="Serial device, e.g. /dev/ttyUSB1.")
@click.option("--model", "-m", default=None,
              help="Model for --check and --features [default: the shipped default].")
@click.argument("input_path", metavar="INPUT.npy", type=click.Path(dir_okay=False))
@click.option("--features", is_flag=True, help="INPUT holds raw features: encode them first.")
@click.option("--check", is_flag=True, help="Compare every answer with the golden model.")
@click.option("--baud", type=click.IntRange(min=300), default=115200, show_default=True)
@click.option("--timeout", type=FiniteFloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds to wait for each answer.")
@click.option("--window", type=click.IntRange(1, 8), default=4, show_default=True,
              help="Requests in flight (the board buffers 8 answers).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the board's classes (.npy).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def run_command(port, model, input_path, features, check, baud, timeout, window, output,
                as_json, quiet=False):
    """Classify INPUT.npy on a board running the UART top; report throughput and latency.

    On a terminal a progress bar shows the samples done and the samples per second."""
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
        from lgn_fpga.cli.progress import rate_bar

        bar = rate_bar(len(x), quiet=quiet or as_json)
        if bar is None:
            result = board.infer(x, window=window)
        else:
            with bar[0]:
                result = board.infer(x, window=window, progress=bar[1])
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
@click.option("--timeout", type=FiniteFloatRange(min=0.05), default=2.0, show_default=True)
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


#: Vectors in the simulated BIST top's block RAM (fewer than a build's: simulated time is slow).
SIM_BIST_VECTORS = 64


@click.command("sim-board")
@click.option("--model", "-m", default=None, help="Model to serve [default: the shipped default].")
@click.option("--top", type=click.Choice(["uart", "bist"]), default="uart", show_default=True)
@click.option("--pipeline", type=click.IntRange(min=1), default=None,
              help="Gate layers between pipeline registers [default: registers placed from "
                   "the LUT depth; with --board as `build --board` places them].")
@click.option("--no-optimize", is_flag=True, help="Serve the net exactly as the file gives it.")
@click.option("--seconds", type=FiniteFloatRange(min=0), default=0, show_default=True,
              help="Stop after this long (0: until interrupted).")
@click.option("--board", "-b", "board_name", default=None,
              help="Serve the core `build --board BOARD` would make (its registers and "
                   "popcount tables, at the board clock).")
@click.option("--core", "core_kind", type=click.Choice(["parallel", "folded"]),
              default="parallel", show_default=True,
              help="The core inside the top (folded: docs/folded.md).")
@click.option("--lanes", type=click.IntRange(min=1), default=8, show_default=True,
              help="Folded core: gates per clock (a power of two).")
@click.option("--program", "program_ram", type=click.Choice(["bram", "spram"]),
              default="bram", show_default=True,
              help="Folded core: the program in block RAM, or in SPRAM booted from a "
                   "simulated SPI flash (as `build` places it on the iCEBreaker when it does "
                   "not fit block RAM).")
def sim_board_command(model, top, pipeline, no_optimize, seconds, core_kind="parallel",
                      lanes=8, board_name=None, program_ram="bram"):
    """A board with no hardware: the board top runs in Amaranth's simulator, its UART wired
    bit by bit to a pseudo-terminal. Point `lgn-fpga run --port` (or `bist`) at the printed
    device to try the whole serial path before you own a board. Simulated time runs far
    slower than a real clock, so expect a few answers per second."""
    import time

    from lgn_fpga.cli.util import load_model
    from lgn_fpga.sim.uart_link import SIM_DIVISOR, PtyBoard
    from lgn_fpga.verify.board import simulated_top

    graph = load_model(model)
    core_options = None
    if board_name is not None:
        from lgn_fpga.flow import profiles
        from lgn_fpga.flow.build import board_design
        from lgn_fpga.net.optimize import design_graph

        net, _ = design_graph(graph, optimize=not no_optimize)
        core_options = board_design(profiles.get(board_name), net, pipeline=pipeline, top=top,
                                    vectors=SIM_BIST_VECTORS if top == "bist" else 0
                                    ).core_options()
    try:
        design = simulated_top(graph, top, divisor=SIM_DIVISOR, pipeline=pipeline,
                               optimize=not no_optimize,
                               lanes=lanes if core_kind == "folded" else None,
                               program=program_ram, core_options=core_options,
                               bist_vectors=SIM_BIST_VECTORS)
    except ValueError as e:
        raise UserError(f"--lanes {lanes}: {e}") from None
    frame_cycles = 10 * SIM_DIVISOR * (graph.inputs // 8 + 8)
    if core_kind == "folded" and top == "uart" and design.core.latency > frame_cycles:
        # the request register holds a waiting payload only until the next frame arrives;
        # the top is dropped unbuilt, without Amaranth's "created but never used" warning
        for unused in (design, design.core, getattr(design, "top", design)):
            unused._MustUse__silence = True
        raise UserError(f"--lanes {lanes}: the folded core takes {design.core.latency} "
                        f"cycles per inference, longer than a request frame takes to arrive "
                        f"({frame_cycles} cycles); use more --lanes")
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
