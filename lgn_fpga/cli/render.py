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
    parts = report.get("breakdown", {}).get("rtl_cells")
    if parts:
        total = max(1, sum(parts.values()))
        table.add_row("cells by part", ", ".join(f"{k} {v} ({100 * v / total:.0f}%)"
                                                 for k, v in parts.items())
                      + " [dim](RTL cells before synthesis)[/dim]")
    timing = report.get("timing")
    if timing:
        ok = "[green]met[/green]" if timing["met"] else "[red]NOT met[/red]"
        table.add_row("Fmax", f"{timing['fmax_mhz']} MHz vs {timing['target_mhz']:g} MHz "
                      f"target: {ok}")
    options = report["options"]
    shape = (f"registers from the LUT depth, {options['stage_luts']} LUT levels a stage"
             if options.get("pipeline") == "auto" and options.get("stage_luts")
             else f"pipeline {options['pipeline']}")
    table.add_row("latency", f"{report['latency_cycles']} cycles ({shape})")
    if report.get("stages"):
        table.add_row("stages", "\n".join(_stage_text(st) for st in report["stages"]))
    else:
        stages = report.get("stage_seconds", {})
        table.add_row("stages", ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    if "bitstream" in report:
        b = report["bitstream"]
        table.add_row("bitstream", f"{b['file']} {b['bytes']} bytes, sha256 "
                      f"{b['sha256'][:16]}")
    for warning in report.get("warnings", []):
        table.add_row("[yellow]warning[/yellow]", warning)
    console.print(table)
    if report.get("out"):
        # last, so that it is what stays on screen: where the results are
        console.print(f"outputs in {report['out']}/", highlight=False)


_FIGURES = (("gates", "{} gates"), ("gates_after", "{} gates left"),
            ("latency_cycles", "latency {} cycles"), ("luts", "{} LUTs"), ("ffs", "{} FFs"),
            ("bram_blocks", "{} block RAMs"), ("logic_cells", "{} logic cells"),
            ("fmax_mhz", "Fmax {} MHz"), ("bitstream_bytes", "{} bytes"))


def _stage_text(stage: dict) -> str:
    """One stage of the report: name, time and its figures (``report["stages"]``)."""
    figures = [text.format(stage[key]) for key, text in _FIGURES
               if stage.get(key) is not None]
    status = "" if stage.get("status", "ok") == "ok" else f" [red]{stage['status']}[/red]"
    more = f": {', '.join(figures)}" if figures else ""
    return f"{stage['name']} {stage['seconds']:.1f} s{status}{more}"


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


def plot_breakdown(report: dict, path) -> None:
    """Write a PNG bar chart of where the design's cells go (``report["breakdown"]``), so
    what to shrink shows at a glance.

    Raises
    ------
    UserError
        Without matplotlib, or when the report has no breakdown.
    """
    import io

    from lgn_fpga.errors import INSTALL_TRAIN, UserError
    from lgn_fpga.files import atomic_write

    parts = report.get("breakdown", {}).get("rtl_cells")
    if not parts:
        raise UserError("--plot: the build report has no cell breakdown")
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        raise UserError(f"--plot needs matplotlib: {INSTALL_TRAIN}") from None
    fig, ax = plt.subplots(figsize=(6, 2.2))
    names = list(parts)[::-1]
    ax.barh(names, [parts[n] for n in names], color=["#8c8c8c", "#e8a33c", "#3c7be8"])
    total = max(1, sum(parts.values()))
    for y, n in enumerate(names):
        ax.text(parts[n], y, f" {parts[n]} ({100 * parts[n] / total:.0f}%)", va="center")
    ax.set_xlabel("RTL cells before synthesis (yosys stat)")
    ax.set_title(f"{report['board']}: {report['model']['built_gates']} gates, "
                 f"{report['top']} top", fontsize=10)
    ax.set_xlim(0, max(parts.values()) * 1.35)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    atomic_write(path, buf.getvalue())
