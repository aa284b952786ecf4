"""Human-readable summaries of a build report (``report.json``) and of a board run."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _pct(used, available) -> str:
    if used is None or not available:
        return "-"
    return f"{used} / {available} ({100 * used / available:.1f}%)"


def print_summary(report: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"build: {report['board']} ({report['device']}), {report['top']} top",
                  show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    model = report["model"]
    table.add_row("model", f"{model['path']} ({model['sha256'][:12]})")
    table.add_row("gates", f"{model['gates']} -> {model['built_gates']} built "
                  f"({model['built_logic_gates']} logic)")
    util = report.get("utilization", {})
    if util:
        table.add_row("LUTs", _pct(util["luts"]["used"], util["luts"]["available"]))
        table.add_row("FFs", _pct(util["ffs"]["used"], util["ffs"]["available"]))
        if "logic_cells" in util:
            table.add_row("logic cells", _pct(util["logic_cells"]["used"],
                                              util["logic_cells"]["available"]))
        table.add_row("block RAM", _pct(util["bram_blocks"]["used"],
                                        util["bram_blocks"]["available"]))
        table.add_row("LUTs per gate", f"{report['luts_per_gate']} "
                      f"({report['luts_per_logic_gate']} per logic gate)")
    timing = report.get("timing")
    if timing:
        ok = "[green]met[/green]" if timing["met"] else "[red]NOT met[/red]"
        table.add_row("Fmax", f"{timing['fmax_mhz']} MHz vs {timing['target_mhz']:g} MHz "
                      f"target: {ok}")
    table.add_row("latency", f"{report['latency_cycles']} cycles "
                  f"(pipeline {report['options']['pipeline']})")
    stages = report.get("stage_seconds", {})
    table.add_row("stages", ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    if "bitstream" in report:
        b = report["bitstream"]
        table.add_row("bitstream", f"{b['file']} {b['bytes']} bytes, sha256 "
                      f"{b['sha256'][:16]}")
    for warning in report.get("warnings", []):
        table.add_row("[yellow]warning[/yellow]", warning)
    console.print(table)


def print_run(summary: dict, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="board run", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("samples", f"{summary['samples']} in {summary['seconds']:.3f} s")
    table.add_row("throughput", f"{summary['samples_per_second']:g} samples/s (the serial "
                  f"line allows {summary['wire_limit_samples_per_second']:g})")
    lat = summary["latency_ms"]
    table.add_row("latency", f"median {lat['median']} ms, p99 {lat['p99']} ms (host round "
                  f"trip); {summary['board']['latency_cycles']} cycles in the core")
    if "model_matches_board" in summary:
        table.add_row("model", "matches the board" if summary["model_matches_board"] else
                      "[yellow]differs from the model the board was built from[/yellow]")
    if "check" in summary:
        c = summary["check"]
        table.add_row("check", "[green]all answers match the golden model[/green]"
                      if not c["mismatches"] else
                      f"[red]{c['mismatches']} mismatches[/red] (first: {c['first_mismatch']})")
    if summary.get("unframed_bytes"):
        table.add_row("line noise", f"{summary['unframed_bytes']} unframed bytes skipped")
    console.print(table)
