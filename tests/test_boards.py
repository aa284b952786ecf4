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
