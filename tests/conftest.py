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
