"""Gate-evaluations per second: the bit-packed golden model against the naive evaluator.

Both run side by side in one process on the same nets, so the ratio holds on a noisy
machine. Run:  python bench/golden.py [--samples N] [--naive-samples M]
"""

import argparse
import time

import numpy as np

from lgn_fpga.net import golden
from lgn_fpga.net.random_nets import random_graph

NETS = {  # name: (inputs, layers, width, classes)
    "2k gates": (256, 4, 500, 10),
    "50k gates": (784, 10, 5000, 10),
}


def rate(fn, gates, samples, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return gates * samples / best, best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--naive-samples", type=int, default=20)
    args = p.parse_args()
    print(f"{'net':>10} {'engine':>8} {'samples':>8} {'seconds':>8} {'gate-evals/s':>13} "
          f"{'vs naive':>9}")
    for name, (inputs, layers, width, classes) in NETS.items():
        g = random_graph(inputs, layers, width, classes, seed=1)
        rng = np.random.default_rng(0)
        bits = rng.integers(0, 2, (args.samples, inputs), dtype=np.uint8)
        small = bits[:args.naive_samples]
        model = golden.GoldenModel(g)
        # correctness first: the figures mean nothing if the engines disagree
        assert np.array_equal(model.predict(small).scores, golden.naive_predict(g, small).scores)
        naive_rate, naive_t = rate(lambda g=g, s=small: golden.naive_predict(g, s), g.gates,
                                   len(small), repeats=1)
        fast_rate, fast_t = rate(lambda m=model, b=bits: m.predict(b), g.gates, len(bits))
        print(f"{name:>10} {'naive':>8} {len(small):>8} {naive_t:>8.3f} {naive_rate:>13.3g} "
              f"{1:>9.0f}x")
        print(f"{name:>10} {'golden':>8} {len(bits):>8} {fast_t:>8.3f} {fast_rate:>13.3g} "
              f"{fast_rate / naive_rate:>9.0f}x")


if __name__ == "__main__":
    main()
