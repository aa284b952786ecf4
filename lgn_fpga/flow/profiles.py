"""Board profiles: the TOML files in ``boards/`` (shipped as package data).

A profile names the amaranth-boards platform class and adds what lgn-fpga needs beyond it:
capacity (LUTs, FFs, block RAM) for the fit estimate, which resources are the UART and the
LEDs, and how to program the board. See docs/boards.md for the fields.
"""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lgn_fpga.errors import UserError

FAMILIES = {"ice40": "iCE40", "ecp5": "ECP5"}

#: The register-to-register delay model that places the parallel core's registers from the
#: target clock, per family: ``(fixed_ns, level_ns)``; a gate stage of L LUT4 levels takes
#: about ``fixed_ns + L * level_ns`` (``fixed_ns``: clock-to-out plus setup; ``level_ns``:
#: one LUT4 and the routing into the next, which is most of it). Calibrated on placed
#: builds (docs/boards.md): on the UP5K a two-level stage of the shipped digits takes
#: 9.7 ns (1.4 ns clock-to-out, 1.2 ns setup, so 3.55 ns a level); on the ECP5 ... (see
#: :data:`STAGE_TIMING` calibration in docs/boards.md). A profile may override either
#: number (``stage_fixed_ns``, ``lut_level_ns``), e.g. for a faster speed grade.
STAGE_TIMING = {"ice40": (2.2, 3.85), "ecp5": (1.0, 1.3)}
#: The most LUT levels a stage is given, however slow the clock: beyond this the whole net
#: of any shipped or benchmark model is one stage already.
MAX_STAGE_LUTS = 32


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    platform: str  # "module:Class"
    family: str
    device: str
    package: str
    clock_hz: int
    max_freq_hz: int
    uart: tuple[str, int]
    led_names: tuple[str, ...]
    luts: int
    ffs: int
    bram_bits: int
    bram_blocks: int
    programmer: str
    programmer_args: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    uart_pins: dict | None = None
    pll_from_pad: bool = False  # iCE40: the clock pin is a PLL pad (SB_PLL40_PAD)
    #: the stage delay model (:data:`STAGE_TIMING`); None: the family's
    stage_fixed_ns: float | None = None
    lut_level_ns: float | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    def stage_luts(self, clock_hz: float) -> int:
        """LUT4 levels one register stage of the parallel core may have at ``clock_hz``:
        the most whose estimated delay (:data:`STAGE_TIMING`) fits in a clock period, at
        least 1 and at most :data:`MAX_STAGE_LUTS`."""
        fixed, level = STAGE_TIMING[self.family]
        fixed = fixed if self.stage_fixed_ns is None else self.stage_fixed_ns
        level = level if self.lut_level_ns is None else self.lut_level_ns
        levels = int((1e9 / clock_hz - fixed) // level)
        return max(1, min(MAX_STAGE_LUTS, levels))

    @property
    def bitstream_name(self) -> str:
        """The file the build writes and ``flash`` programs."""
        return "top.bin" if self.family == "ice40" else "top.bit"

    @property
    def default_out(self) -> Path:
        """Where ``build`` writes, and ``flash`` looks, when no folder is given."""
        return Path("build") / self.name

    def platform_class(self):
        module, _, cls = self.platform.partition(":")
        try:
            return getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError) as e:
            raise UserError(f"board {self.name}: platform {self.platform} is not available "
                            f"({e}); is amaranth-boards installed and recent enough?") from None

    def make_platform(self):
        """The amaranth-boards platform, with the profile's extra UART pins if it has any."""
        platform = self.platform_class()()
        if self.uart_pins:
            from amaranth.build import Attrs
            from amaranth_boards.resources import UARTResource

            pins = self.uart_pins
            conn = tuple(pins["connector"]) if "connector" in pins else None
            platform.add_resources([UARTResource(
                self.uart[1], rx=pins["rx"], tx=pins["tx"], conn=conn,
                attrs=Attrs(**pins.get("attrs", {})))])
        return platform

    def leds(self, platform, m) -> list:
        """The outputs of the profile's LEDs, in order; each is ``"led:0"`` or
        ``"rgb_led:0.g"`` (one colour of a resource, which is requested only once). Output
        buffers are added to module ``m``."""
        from amaranth.lib import io

        requested = {}
        outputs = []
        for spec in self.led_names:
            name, _, rest = spec.partition(":")
            number, _, sub = rest.partition(".")
            key = (name, int(number or 0))
            if key not in requested:
                requested[key] = platform.request(*key, dir="-")
            port = getattr(requested[key], sub) if sub else requested[key]
            buffer = io.Buffer("o", port)
            m.submodules[f"led_{len(outputs)}"] = buffer
            outputs.append(buffer.o)
        return outputs

    def summary(self) -> dict:
        return {
            "name": self.name, "description": self.description, "family": self.family,
            "device": self.device, "package": self.package, "platform": self.platform,
            "clock_hz": self.clock_hz, "max_freq_hz": self.max_freq_hz,
            "luts": self.luts, "ffs": self.ffs, "bram_bits": self.bram_bits,
            "bram_blocks": self.bram_blocks, "uart": list(self.uart),
            "leds": list(self.led_names), "programmer": self.programmer,
            "programmer_args": list(self.programmer_args), "aliases": list(self.aliases),
        }


def _need(doc: dict, key: str, kind, where: str):
    if key not in doc:
        raise UserError(f"{where}: missing {key!r}")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _ns(doc: dict, key: str, where: str) -> float | None:
    if key not in doc:
        return None
    value = doc[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise UserError(f"{where}: {key!r} must be a positive number of ns, got {value!r}")
    return float(value)


def parse(text: str, where: str) -> Profile:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{where}: not valid TOML ({e})") from None
    cap = _need(doc, "capacity", dict, where)
    prog = _need(doc, "programmer", dict, where)
    family = _need(doc, "family", str, where)
    if family not in FAMILIES:
        raise UserError(f"{where}: family {family!r} is not one of {', '.join(FAMILIES)}")
    uart = _need(doc, "uart", list, where)
    return Profile(
        name=_need(doc, "name", str, where),
        description=doc.get("description", ""),
        platform=_need(doc, "platform", str, where),
        family=family,
        device=_need(doc, "device", str, where),
        package=_need(doc, "package", str, where),
        clock_hz=_need(doc, "clock_hz", int, where),
        max_freq_hz=int(doc.get("max_freq_hz", doc["clock_hz"])),
        uart=(str(uart[0]), int(uart[1])),
        led_names=tuple(_need(doc, "leds", list, where)),
        luts=_need(cap, "luts", int, f"{where} [capacity]"),
        ffs=_need(cap, "ffs", int, f"{where} [capacity]"),
        bram_bits=_need(cap, "bram_bits", int, f"{where} [capacity]"),
        bram_blocks=_need(cap, "bram_blocks", int, f"{where} [capacity]"),
        programmer=_need(prog, "tool", str, f"{where} [programmer]"),
        programmer_args=tuple(prog.get("args", [])),
        aliases=tuple(doc.get("aliases", [])),
        uart_pins=doc.get("uart_pins"),
        pll_from_pad=doc.get("pll", "core") == "pad",
        # An older profile's `pipeline` (a fixed spacing at the board clock) is accepted and
        # ignored: the registers are placed from the clock now (docs/boards.md).
        stage_fixed_ns=_ns(doc, "stage_fixed_ns", where),
        lut_level_ns=_ns(doc, "lut_level_ns", where),
        source=where,
    )


def profile_dir() -> Path:
    """Where the TOML profiles are: the top-level ``boards/`` folder, which ships inside the
    package as ``lgn_fpga.boards`` (so an installed wheel and a checkout read the same files).
    """
    folder = Path(str(resources.files("lgn_fpga.boards")))
    if not any(folder.glob("*.toml")):
        raise UserError(f"no board profiles found in {folder}; the installation is incomplete")
    return folder


def profiles() -> dict[str, Profile]:
    """Every shipped profile by name, sorted."""
    found = {}
    for entry in sorted(profile_dir().glob("*.toml")):
        profile = parse(entry.read_text(), entry.name)
        found[profile.name] = profile
    return dict(sorted(found.items()))


def get(name: str) -> Profile:
    all_profiles = profiles()
    if name in all_profiles:
        return all_profiles[name]
    for profile in all_profiles.values():
        if name in profile.aliases:
            return profile
    raise UserError(f"unknown board {name!r}; known boards: {', '.join(all_profiles)} "
                    f"(see `lgn-fpga boards`)")
