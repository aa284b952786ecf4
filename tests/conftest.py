import numpy as np
import pytest
from click.testing import CliRunner

from lgn_fpga.cli import main
from lgn_fpga.net import graph as gg
from lgn_fpga.net.random_nets import random_graph


@pytest.fixture
def small_graph():
    return random_graph(inputs=12, layers=3, width=24, classes=4, seed=7)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def model_file(tmp_path):
    """A small random net saved as JSON."""
    path = tmp_path / "net.json"
    gg.save(random_graph(16, 4, 40, 4, seed=7), path)
    return path


def invoke(*args):
    """Run the CLI in-process; exceptions propagate so a traceback fails the test loudly."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def run_bist(design, max_cycles=20_000, *, top=None):
    """Run a BIST ``design`` (or a wrapper of the BistTop ``top``) in Amaranth's simulator
    until it is done or ``max_cycles`` have passed; returns its result registers."""
    from amaranth.sim import Simulator

    top = top or design
    out = {}

    async def bench(ctx):
        for _ in range(max_cycles):
            await ctx.tick()
            if ctx.get(top.done):
                break
        out.update(done=ctx.get(top.done), passed=ctx.get(top.passed),
                   failed=ctx.get(top.failed), cycles=ctx.get(top.cycles),
                   first=ctx.get(top.first_failure))

    sim = Simulator(design)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out
