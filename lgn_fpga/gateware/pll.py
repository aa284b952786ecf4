"""Clock generation: divider solvers for the iCE40 and ECP5 PLLs and the ``sync`` clock
domain they drive."""

from __future__ import annotations

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)

#: Relative error from the requested frequency a PLL setting may have and still be taken as
#: what was asked for (the PLLs make a discrete set; 40 MHz from 12 MHz is 39.75 MHz).
TOLERANCE = 0.01

#: Each family's PLL output range (datasheets: iCE40 SB_PLL40 16..275 MHz, ECP5 EHXPLLL
#: CLKOP 3.125..400 MHz); the solvers below also keep the PFD and VCO in range.
OUTPUT_RANGE = {"ice40": (16e6, 275e6), "ecp5": (3.125e6, 400e6)}
_NAME = {"ice40": "iCE40", "ecp5": "ECP5"}


def _ice40_settings(f_in: float):
    """Every SB_PLL40 setting (simple feedback) from ``f_in``: (f_out, DIVR, DIVF, DIVQ,
    f_pfd), as icepll searches them."""
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f = f_vco / 2 ** divq
                if OUTPUT_RANGE["ice40"][0] <= f <= OUTPUT_RANGE["ice40"][1]:
                    yield f, divr, divf, divq, f_pfd


def _ecp5_settings(f_in: float):
    """Every EHXPLLL setting with CLKOP as feedback from ``f_in``: (f_out, CLKI_DIV,
    CLKFB_DIV, CLKOP_DIV, f_vco), as ecppll searches them."""
    for refclk_div in range(1, 129):
        f_pfd = f_in / refclk_div
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for fb_div in range(1, 81):
            f = f_pfd * fb_div
            if not OUTPUT_RANGE["ecp5"][0] <= f <= OUTPUT_RANGE["ecp5"][1]:
                continue
            # the smallest output divider that puts the VCO in 400..800 MHz
            for op_div in range(1, 129):
                if 400e6 <= f * op_div <= 800e6:
                    yield f, refclk_div, fb_div, op_div, f * op_div
                    break


def _closest(settings, f_out: float, family: str, f_in: float):
    best = below = above = None
    for setting in settings:
        f = setting[0]
        if best is None or abs(f - f_out) < abs(best[0] - f_out):
            best = setting
        if f <= f_out and (below is None or f > below):
            below = f
        if f >= f_out and (above is None or f < above):
            above = f
    if best is None:
        raise ValueError(f"the {_NAME[family]} PLL has no setting from a "
                         f"{f_in / 1e6:g} MHz clock")
    if abs(best[0] - f_out) > TOLERANCE * f_out:
        low, high = OUTPUT_RANGE[family]
        nearest = " or ".join(f"{f / 1e6:.4g} MHz" for f in (below, above) if f is not None)
        raise ValueError(
            f"--freq {f_out / 1e6:g} MHz: the {_NAME[family]} PLL cannot make it from the "
            f"{f_in / 1e6:g} MHz board clock (its outputs span {low / 1e6:g}..{high / 1e6:g} "
            f"MHz in discrete steps); the nearest possible: {nearest}")
    return best


def _check_request(f_out: float) -> None:
    import math

    if not isinstance(f_out, (int, float)) or not math.isfinite(f_out) or f_out <= 0:
        raise ValueError(f"--freq must be a positive number of MHz, got {f_out / 1e6}")


def ice40_pll_params(f_in: float, f_out: float) -> dict:
    """SB_PLL40 divider settings closest to ``f_out`` (the search icepll does).

    Raises
    ------
    ValueError
        ``f_out`` not finite and positive, or no setting within :data:`TOLERANCE` of it;
        the message names the nearest frequencies the PLL can make.
    """
    _check_request(f_out)
    f, divr, divf, divq, f_pfd = _closest(_ice40_settings(f_in), f_out, "ice40", f_in)
    filter_range = next(i for i, lim in enumerate((17e6, 26e6, 44e6, 66e6, 101e6), 1)
                        if f_pfd < lim) if f_pfd < 101e6 else 6
    return {"freq": f, "DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filter_range}


def ecp5_pll_params(f_in: float, f_out: float) -> dict:
    """EHXPLLL settings closest to ``f_out`` with CLKOP as feedback (as ecppll does).

    Raises
    ------
    ValueError
        ``f_out`` not finite and positive, or no setting within :data:`TOLERANCE` of it;
        the message names the nearest frequencies the PLL can make.
    """
    _check_request(f_out)
    f, refclk_div, fb_div, op_div, _ = _closest(_ecp5_settings(f_in), f_out, "ecp5", f_in)
    return {"freq": f, "CLKI_DIV": refclk_div, "CLKFB_DIV": fb_div, "CLKOP_DIV": op_div,
            "CLKOP_CPHASE": op_div - 1}


class PLLDomain(Elaboratable):
    """Drives ``sync`` from the board clock through the family's PLL, held in reset until the
    PLL locks and then for ``hold`` more clocks (iCE40 BRAMs read zero for ~3 us after
    configuration, so the hold covers that too). The ``sync`` domain itself is defined by
    the parent (:class:`BoardTop`): Amaranth 0.6 drops domains used above where they are
    defined."""

    def __init__(self, family: str, clk_in, f_in: float, f_out: float, *,
                 ice40_from_pad: bool = False):
        self.family = family
        self.clk_in = clk_in
        # SB_PLL40_PAD takes the clock pin itself (on the UP5K the oscillator pin is the
        # PLL's own pad, which an ordinary input buffer would block); SB_PLL40_CORE takes a
        # buffered clock from any pin.
        self.from_pad = family == "ice40" and ice40_from_pad
        self.params = (ice40_pll_params if family == "ice40" else ecp5_pll_params)(f_in, f_out)
        self.freq = self.params["freq"]

    def elaborate(self, platform):
        m = Module()
        pll_clk = Signal()
        locked = Signal()
        q = self.params
        if self.family == "ice40":
            source = {"i_PACKAGEPIN": self.clk_in} if self.from_pad else \
                {"i_REFERENCECLK": self.clk_in}
            m.submodules.pll = Instance(
                "SB_PLL40_PAD" if self.from_pad else "SB_PLL40_CORE",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=q["DIVR"], p_DIVF=q["DIVF"],
                p_DIVQ=q["DIVQ"], p_FILTER_RANGE=q["FILTER_RANGE"],
                i_RESETB=1, i_BYPASS=0, o_PLLOUTGLOBAL=pll_clk, o_LOCK=locked, **source)
        else:
            m.submodules.pll = Instance(
                "EHXPLLL",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                p_CLKI_DIV=q["CLKI_DIV"], p_CLKFB_DIV=q["CLKFB_DIV"],
                p_CLKOP_DIV=q["CLKOP_DIV"], p_CLKOP_CPHASE=q["CLKOP_CPHASE"],
                a_FREQUENCY_PIN_CLKI=f"{platform.default_clk_frequency / 1e6:g}"
                if platform else "25",
                a_FREQUENCY_PIN_CLKOP=f"{self.freq / 1e6:g}",
                i_CLKI=self.clk_in, i_CLKFB=pll_clk, i_RST=0, i_STDBY=0,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
                i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=pll_clk, o_LOCK=locked)
        m.d.comb += ClockSignal("sync").eq(pll_clk)
        if platform is not None:
            platform.add_clock_constraint(pll_clk, self.freq)
        # Reset: counted in the new domain, restarted whenever the PLL drops lock, for at
        # least `limit` cycles. For 100 MHz the count has no comparison with its limit and
        # no long carry chain: 64-cycle units (`low`, whose wrap `unit` is registered)
        # counted by `high` from 2**w - units, and the reset ends (sticky until lock is
        # lost) as its top bit first sets.
        limit = int(20e-6 * self.freq) + 1
        units = -(-limit // 64)
        w = units.bit_length()
        low = Signal(6)
        unit = Signal()
        high = Signal(w + 1, init=(1 << w) - units)
        m.domains.por = ClockDomain("por", reset_less=True)
        m.d.comb += ClockSignal("por").eq(pll_clk)
        with m.If(~locked):
            m.d.por += [low.eq(0), unit.eq(0), high.eq((1 << w) - units)]
        with m.Else():
            m.d.por += [low.eq(low + 1), unit.eq(low == 62)]
            with m.If(unit):
                m.d.por += high.eq(high + 1)
        # The reset leaves a flip-flop: with the comparison's LUTs in front of the net that
        # reaches every reset of the design, that net was the critical path of the UART top
        # at 100 MHz on the UP5K (2 LUTs, then 8.7 ns of routing across the chip).
        rst = Signal(init=1)
        m.d.por += rst.eq(~locked | (rst & ~high[w]))
        m.d.comb += ResetSignal("sync").eq(rst)
        return m
