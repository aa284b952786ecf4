"""lgn-fpga build and flash: the fit estimate, tool-output parsing, real YoWASP builds."""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from lgn_fpga.cli import main
from lgn_fpga.errors import UserError
from lgn_fpga.flow import profiles
from lgn_fpga.flow.build import BuildOptions, build, parse_yosys_stats, script_stages
from lgn_fpga.net import graph as gg
from lgn_fpga.net.random_nets import random_graph


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "small.json"
    gg.save(random_graph(inputs=16, layers=3, width=48, classes=4, seed=5), path)
    return path


def test_fit_estimate_refuses_a_huge_net_with_the_numbers(tmp_path):
    huge = tmp_path / "huge.npz"
    # 36000 gates as given: too many even for a folded program in the UP5K's SPRAM
    gg.save(random_graph(inputs=128, layers=6, width=6000, classes=10, seed=1), huge)
    result = CliRunner().invoke(main, ["build", "--board", "icebreaker", "--model", str(huge),
                                       "--no-optimize", "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.startswith("lgn-fpga: error")]
    assert len(lines) == 1
    line = lines[0]
    assert "does not fit icebreaker (iCE40UP5K)" in line
    assert "gates" in line and "LUTs needed, 5280 available" in line
    assert not (tmp_path / "out" / "top.bin").exists()


def test_a_bist_top_whose_vectors_cannot_fit_says_so_and_points_to_the_uart_top(tmp_path):
    # 784 inputs: a vector memory 784 bits wide takes 49 SB_RAM40_4K (16 bits wide at most)
    # however few vectors it holds, so no --vectors helps; the build refuses before
    # synthesis and says why (it used to reach place & route and fail there)
    wide = tmp_path / "wide.npz"
    gg.save(random_graph(inputs=784, layers=2, width=400, classes=10, seed=1), wide)
    result = CliRunner().invoke(main, ["build", "--board", "icebreaker", "--top", "bist",
                                       "--model", str(wide), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.startswith("lgn-fpga: error")]
    assert len(lines) == 1, result.output
    assert "--top uart" in lines[0] and "block RAMs" in lines[0]
    assert "fewer --vectors" not in lines[0]
    assert "the parallel core needs 5" in result.output  # the real reason: block RAMs
    assert not (tmp_path / "out" / "top.bin").exists()


def _digits():
    from lgn_fpga.net.optimize import optimize

    return optimize(gg.load(Path(__file__).parents[1] / "lgn_fpga/models/digits.json"))[0]


def test_board_design_places_registers_for_the_clock_and_fills_the_free_block_ram():
    from lgn_fpga.flow.build import AUTO, board_design
    from lgn_fpga.flow.fit import estimate

    ice, ecp = profiles.get("icebreaker"), profiles.get("ulx3s-85f")
    net = _digits()
    slow = board_design(ice, net)
    fast = board_design(ice, net, freq_mhz=100)
    assert slow.pipeline == fast.pipeline == AUTO
    # 100 MHz on the UP5K: two LUT levels a stage (measured: 9.7 ns for two, 14.6 for three)
    assert fast.stage_luts == 2 < slow.stage_luts
    # The UART top's result FIFO took 4 of the 30 SB_RAM40_4K in the placed digits build;
    # of the 26 left, digits' 10 classes of 30 bits use 2 tables of 10 bits each (a
    # popcount keeps 2 bits for its adders).
    assert slow.popcount_tables == fast.popcount_tables == 20
    est = estimate(net, ice, top="uart", **fast.core_options())
    assert est["bram_blocks"] == 24 and est["capacity_bram_blocks"] == 30
    assert est["popcount_tables"] == 20
    no_tables = estimate(net, ice, top="uart", **{**fast.core_options(), "popcount_tables": 0})
    assert no_tables["bram_blocks"] == 4 and no_tables["popcount_tables"] == 0
    # --pipeline k stays the override; ECP5 gets no tables (slow reads, docs/boards.md)
    fixed = board_design(ice, net, pipeline=3)
    assert (fixed.pipeline, fixed.popcount_tables) == (3, 20)
    assert fixed.report()["pipeline"] == 3 and fast.report()["pipeline"] == "auto"
    assert board_design(ecp, net).popcount_tables == 0
    # the BIST top's vectors come first; the tables take what is left
    bist = board_design(ice, net, top="bist", vectors=140)
    assert 0 <= bist.popcount_tables < 20


def test_fit_check_counts_block_rams(tmp_path):
    from lgn_fpga.flow.fit import check_fit, estimate

    ice = profiles.get("icebreaker")
    # a bigger net whose classes can use more tables than the UP5K has block RAMs
    net = random_graph(inputs=64, layers=2, width=400, classes=10, seed=3)
    est = estimate(net, ice, top="uart", popcount_tables=40)
    assert est["bram_blocks"] == est["popcount_tables"] + 5 > 30  # FIFO: 8 + 4 + 10 x 6 bits
    with pytest.raises(UserError, match=r"block RAMs needed, 30 available"):
        check_fit(est, ice)


def test_build_names_an_unknown_board():
    result = CliRunner().invoke(main, ["build", "--board", "de0-nano-x"])
    assert result.exit_code != 0 and "unknown board 'de0-nano-x'" in result.output


def test_script_stages_split_amaranths_script_into_one_stage_per_tool():
    script = ('#!/bin/sh\nset -e\n: ${YOSYS:=yosys}\n"$YOSYS" -q -l top.rpt top.ys\n'
              '"$NEXTPNR_ECP5" --json top.json\n"$ECPPACK" --input top.config\n')
    preamble, stages = script_stages(script)
    assert ": ${YOSYS:=yosys}" in preamble
    assert [s for s, _ in stages] == ["synth", "place & route", "pack"]


def test_yosys_stats_come_from_the_design_hierarchy_totals():
    log = ("2.50. Printing statistics.\n\n=== top ===\n      701   SB_LUT4\n"
           "=== design hierarchy ===\n\n       30 cells\n      284   SB_DFF\n"
           "      701   SB_LUT4\n\n2.51. Executing CHECK pass\n      9   SB_LUT4\n")
    assert parse_yosys_stats(log) == {"SB_DFF": 284, "SB_LUT4": 701}


# -- flash ------------------------------------------------------------------------------


@pytest.mark.parametrize("board,expect", [("icebreaker", "iceprog {}"),
                                          ("ulx3s-85f", "openFPGALoader -b ulx3s {}")])
def test_flash_dry_run_prints_the_exact_command(tmp_path, monkeypatch, board, expect):
    bit = tmp_path / "design.bit"
    bit.write_bytes(b"\x00")
    fake = tmp_path / "programmer"  # --dry-run checks that the programmer exists
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("ICEPROG", str(fake))
    monkeypatch.setenv("OPENFPGALOADER", str(fake))
    result = CliRunner().invoke(main, ["flash", "--board", board, str(bit), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == expect.format(bit)


@pytest.mark.parametrize("board,package", [("icebreaker", "fpga-icestorm"),
                                           ("ulx3s-85f", "openfpgaloader")])
def test_flash_without_the_programmer_says_how_to_install_it(tmp_path, monkeypatch, board,
                                                             package):
    bit = tmp_path / "design.bit"
    bit.write_bytes(b"\x00")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ICEPROG", raising=False)
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    result = CliRunner().invoke(main, ["flash", "--board", board, str(bit)])
    assert result.exit_code != 0
    (line,) = result.output.strip().splitlines()
    assert "not found" in line and package in line


def test_flash_without_a_bitstream_says_to_build_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["flash", "--board", "icebreaker", "--dry-run"])
    assert result.exit_code != 0
    assert "build/icebreaker/top.bin: no such bitstream" in result.output
    assert "lgn-fpga build --board icebreaker" in result.output


# -- real builds (YoWASP) ---------------------------------------------------------------


def _check_report(report, out: Path, board: str):
    profile = profiles.get(board)
    assert report["status"] == "ok"
    saved = json.loads((out / "report.json").read_text())
    assert saved["bitstream"] == report["bitstream"]
    util = report["utilization"]
    assert 0 < util["luts"]["used"] < profile.luts and util["luts"]["available"] == profile.luts
    assert util["ffs"]["used"] > 0
    assert report["timing"]["fmax_mhz"] > 0 and report["timing"]["met"]
    assert report["tools"]["yosys"] and report["tools"]["amaranth"]
    assert {"synth", "place & route", "pack"} <= set(report["stage_seconds"])
    bit = out / report["bitstream"]["file"]
    assert bit.stat().st_size == report["bitstream"]["bytes"]
    # nothing half-built left beside the results
    assert not [p for p in out.iterdir() if p.name.startswith(".build-")]


@pytest.mark.slow
def test_real_ice40_build_is_reproducible_bit_for_bit(small_model, tmp_path):
    reports = []
    for run in ("a", "b"):
        out = tmp_path / run
        reports.append(build(BuildOptions(board="icebreaker", model=str(small_model),
                                          out=str(out), seed=3)))
        _check_report(reports[-1], out, "icebreaker")
    assert reports[0]["bitstream"]["sha256"] == reports[1]["bitstream"]["sha256"]
    assert (tmp_path / "a" / "top.bin").read_bytes() == (tmp_path / "b" / "top.bin").read_bytes()


@pytest.mark.slow
def test_real_ecp5_build_of_the_bist_top(small_model, tmp_path):
    out = tmp_path / "ulx3s"
    report = build(BuildOptions(board="ulx3s-12f", model=str(small_model), top="bist",
                                out=str(out), vectors=64))
    _check_report(report, out, "ulx3s-12f")
    assert report["utilization"]["bram_blocks"]["used"] >= 1  # the vectors sit in block RAM
    assert (out / "top.bit").exists()


@pytest.mark.slow
def test_a_failed_build_leaves_no_bitstream_and_says_why(small_model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "top.bin").write_bytes(b"stale bitstream of an earlier build")
    monkeypatch.setenv("NEXTPNR_ICE40", "false")  # place and route fails
    with pytest.raises(UserError, match="place & route failed"):
        build(BuildOptions(board="icebreaker", model=str(small_model), out=str(out)))
    # the earlier outputs stay as they were; this run's report and logs go to failed/
    assert (out / "top.bin").read_bytes() == b"stale bitstream of an earlier build"
    assert json.loads((out / "failed" / "report.json").read_text())["status"] == "failed"
    assert not [p for p in out.iterdir() if p.name.startswith(".build-")]


def test_build_cli_turns_a_failing_tool_into_one_line(small_model, tmp_path, monkeypatch):
    # Yosys replaced by `false`: this checks the CLI plumbing and the failure path,
    # not the tools (the slow tests do that).
    monkeypatch.setenv("YOSYS", "false")
    result = CliRunner().invoke(main, ["build", "--board", "icebreaker", "--model",
                                       str(small_model), "--out", str(tmp_path), "--json"])
    assert result.exit_code != 0
    assert "synth failed" in result.output
    assert os.path.exists(tmp_path / "failed" / "report.json")


@pytest.mark.slow
def test_real_ice40_build_with_the_pll_constrains_and_divides_at_the_pll_clock(small_model,
                                                                               tmp_path):
    report = build(BuildOptions(board="icebreaker", model=str(small_model), freq_mhz=30,
                                out=str(tmp_path)))
    assert report["clock"]["pll"]["freq"] == 30e6
    assert report["clock"]["uart_divisor"] == round(30e6 / 115200)
    assert report["timing"]["target_mhz"] == 30.0
    assert report["utilization"]["nextpnr"]["ICESTORM_PLL"]["used"] == 1
    assert report["timing"]["met"]  # nextpnr checked paths at 30 MHz, not the 12 MHz pin


def test_an_interrupted_build_leaves_no_bitstream_and_no_temporary_folder(small_model,
                                                                           tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "top.bin").write_bytes(b"stale")

    def interrupt(name, state, seconds):
        if name == "synth" and state == "start":  # Ctrl-C as the tools start
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(BuildOptions(board="icebreaker", model=str(small_model), out=str(out)),
              on_stage=interrupt)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "failed", "top.bin"]
    assert (out / "top.bin").read_bytes() == b"stale"  # the earlier output, untouched
    assert json.loads((out / "failed" / "report.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-12f"])
def test_classic_abc_fallback_scripts_synthesize(board, small_model, tmp_path):
    # The fallback only runs when Yosys's ABC9 crashes, so run it here on purpose.
    import re
    import subprocess

    from lgn_fpga.flow.build import parse_yosys_stats
    from lgn_fpga.flow.toolchain import ABC_FALLBACK, tool_env
    from lgn_fpga.gateware.tops import BoardTop, UartTop

    profile = profiles.get(board)
    top = UartTop(gg.load(small_model), divisor=104)
    plan = profile.make_platform().prepare(BoardTop(top, profile), "top", emit_src=False)
    plan.extract(str(tmp_path))
    ys = tmp_path / "top.ys"
    synth = f"synth_{profile.family}"
    ys.write_text(re.sub(synth + r" (.*)-top top", ABC_FALLBACK[profile.family], ys.read_text()))
    env = tool_env()
    proc = subprocess.run([env["YOSYS"], "-q", "-l", "top.rpt", "top.ys"], cwd=tmp_path,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, (tmp_path / "top.rpt").read_text()[-2000:]
    stats = parse_yosys_stats((tmp_path / "top.rpt").read_text())
    assert stats.get("SB_LUT4" if profile.family == "ice40" else "LUT4", 0) > 100


@pytest.mark.slow
def test_fmax_below_the_target_fails_the_build_unless_allowed(small_model, tmp_path,
                                                               monkeypatch):
    # The tools run for real; only nextpnr's Fmax is read as 5 MHz, below the 12 MHz clock.
    import lgn_fpga.flow.build as b

    real_fmax = b.fmax
    monkeypatch.setattr(b, "fmax", lambda pnr: (5.0, real_fmax(pnr)[1]))
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"timing not met on icebreaker: Fmax 5.0 MHz < 12 MHz"):
        build(BuildOptions(board="icebreaker", model=str(small_model), out=str(out)))
    assert not (out / "top.bin").exists()
    assert json.loads((out / "failed" / "report.json").read_text())["status"] == "timing failed"

    report = build(BuildOptions(board="icebreaker", model=str(small_model), out=str(out),
                                allow_timing_fail=True))
    assert (out / "top.bin").exists() and report["status"] == "ok"
    assert report["warnings"] == ["Fmax 5.0 MHz is below the 12 MHz target"]


def test_bist_vectors_come_from_a_given_set_checked_against_the_model(small_model, tmp_path):
    from lgn_fpga.flow.build import _bist_vectors
    from lgn_fpga.net import vectors as vec

    graph = gg.load(small_model)
    vec.save(vec.make(graph, 40, seed=9), tmp_path / "set.npz")
    opts = BuildOptions(board="icebreaker", model=str(small_model), top="bist",
                        vector_set=str(tmp_path / "set.npz"))
    vset, source = _bist_vectors(opts, graph, 16)
    assert len(vset) == 16 and source.endswith("set.npz")
    assert (vset.bits == vec.make(graph, 40, seed=9).bits[:16]).all()
    other = random_graph(inputs=16, layers=2, width=8, classes=4, seed=99)
    with pytest.raises(UserError, match="not this model"):
        _bist_vectors(opts, other, 16)
    made, source = _bist_vectors(BuildOptions(board="icebreaker", model=str(small_model),
                                              seed=4), graph, 8)
    assert len(made) == 8 and source == "made with seed 4"


@pytest.mark.slow
def test_readme_main_command_builds_the_shipped_digits_model_within_70_percent(tmp_path):
    """`lgn-fpga build --board icebreaker` (the README's main job): the default model, with
    the UART top, fits the UP5K with room to spare and meets the board clock."""
    out = tmp_path / "icebreaker"
    result = CliRunner().invoke(main, ["build", "--board", "icebreaker", "--out", str(out),
                                       "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    _check_report(report, out, "icebreaker")
    from lgn_fpga.cli.util import load_model

    assert report["model"]["sha256"] == load_model("digits").sha256()
    util = report["utilization"]
    assert util["luts"]["used"] <= 0.70 * util["luts"]["available"]
    assert util["logic_cells"]["used"] <= 0.70 * util["logic_cells"]["available"]


def _processes_in(folder: Path) -> list[int]:
    """Pids whose working directory is inside ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd.startswith(str(folder)):
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc")
def test_killing_a_build_stops_its_tools_and_leaves_no_bitstream(small_model, tmp_path):
    """`kill` on `lgn-fpga build` (SIGTERM) cleans up like Ctrl-C: the running tool goes
    too, no temporary folder or bitstream stays, the report says interrupted."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    build = subprocess.Popen([sys.executable, "-m", "lgn_fpga.cli", "build", "--board",
                              "ulx3s-85f", "--model", str(small_model), "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not [p for p in _processes_in(out) if p != build.pid]:  # wait for a tool to run
        assert build.poll() is None, "the build ended before a tool started"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    build.send_signal(signal.SIGTERM)
    assert build.wait(timeout=60) != 0
    time.sleep(0.5)
    assert _processes_in(out) == []
    assert sorted(p.name for p in out.iterdir()) == [".lock", "failed"]
    assert json.loads((out / "failed" / "report.json").read_text())["status"] == "interrupted"
