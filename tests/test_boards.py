"""Board profiles agree with their amaranth-boards platforms and the CLI lists them."""

import json

import pytest
from amaranth.hdl import Module
from click.testing import CliRunner

from lgn_fpga.cli import main
from lgn_fpga.errors import UserError
from lgn_fpga.flow import profiles

ALL = sorted(profiles.profiles())


def test_the_boards_the_issue_asks_for_are_shipped():
    assert {"icebreaker", "ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f", "icestick",
            "ice40-hx8k", "orangecrab"} <= set(ALL)
    assert profiles.get("ice40_hx8k_b_evn").name == "ice40-hx8k"


@pytest.mark.parametrize("name", ALL)
def test_profile_matches_its_platform(name):
    prof = profiles.get(name)
    platform = prof.make_platform()
    assert platform.device == prof.device
    assert platform.package == prof.package
    assert platform.default_clk_frequency == prof.clock_hz
    assert min(prof.luts, prof.ffs, prof.bram_bits, prof.bram_blocks) > 0
    assert prof.programmer == ("iceprog" if prof.family == "ice40" else "openFPGALoader")
    # The UART and every LED named in the profile exist on the platform.
    uart = platform.request(*prof.uart, dir="-")
    assert hasattr(uart, "rx") and hasattr(uart, "tx")
    assert len(prof.leds(platform, Module())) == len(prof.led_names) >= 2


def test_unknown_board_names_the_known_ones():
    with pytest.raises(UserError, match="icebreaker"):
        profiles.get("nonesuch")


def test_a_profile_missing_capacity_is_refused_with_its_name():
    with pytest.raises(UserError, match="x.toml: missing 'capacity'"):
        profiles.parse('name = "x"\nfamily = "ice40"\n', "x.toml")


def test_boards_command_lists_profiles_as_json():
    result = CliRunner().invoke(main, ["boards", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ALL
    ice = next(r for r in rows if r["name"] == "icebreaker")
    assert ice["luts"] == 5280 and ice["device"] == "iCE40UP5K"


def test_boards_command_prints_a_table():
    result = CliRunner().invoke(main, ["boards"])
    assert result.exit_code == 0
    assert "ulx3s-85f" in result.output and "83640" in result.output


PROFILE = """name = "x"
family = "ice40"
platform = "amaranth_boards.icebreaker:ICEBreakerPlatform"
device = "iCE40UP5K"
package = "SG48"
clock_hz = 12_000_000
uart = ["uart", 0]
leds = ["led_g:0", "led_r:0"]
{extra}
[capacity]
luts = 5280
ffs = 5280
bram_bits = 122_880
bram_blocks = 30

[programmer]
tool = "iceprog"
"""


def test_stage_luts_grow_with_the_clock_period():
    prof = profiles.get("icebreaker")
    fixed, level = profiles.STAGE_TIMING["ice40"]
    for hz in (12e6, 48e6, 60e6, 75e6, 100.5e6, 150e6):
        n = prof.stage_luts(hz)
        # the most levels whose modelled delay fits in the period
        assert fixed + n * level <= 1e9 / hz < fixed + (n + 1) * level or n == 1
    assert prof.stage_luts(1e9) == 1
    assert prof.stage_luts(1e3) == profiles.MAX_STAGE_LUTS
    assert profiles.get("ulx3s-85f").stage_luts(250e6) == 2


def test_an_old_profile_with_a_pipeline_still_loads_and_timing_can_be_overridden():
    old = profiles.parse(PROFILE.format(extra="pipeline = 4\n"), "old.toml")
    assert old.stage_luts(100e6) == 2
    fast = profiles.parse(PROFILE.format(extra="lut_level_ns = 1.0\nstage_fixed_ns = 1\n"),
                          "fast.toml")
    assert fast.stage_luts(100e6) == 9
    with pytest.raises(UserError, match="bad.toml: 'lut_level_ns' must be a positive"):
        profiles.parse(PROFILE.format(extra="lut_level_ns = 0\n"), "bad.toml")
