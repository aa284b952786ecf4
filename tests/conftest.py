import numpy as np
import pytest

from lgn_fpga.random_model import random_graph


@pytest.fixture
def small_graph():
    return random_graph(inputs=12, layers=3, width=24, classes=4, seed=7)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
