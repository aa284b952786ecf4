"""Training step: samples/s and peak memory of the plain dense layer (gather, then autograd
through c0 + c1 a + c2 b + c3 ab) against the fused one (feature-major gather, custom
backward), on the same net, side by side in one run.

Each variant runs in its own child process, so its peak resident memory (ru_maxrss) is its
own; "step memory" is that peak minus the resident memory just before the first step (the
net, the batch and torch itself), i.e. what the forward and backward pass add.
Run:  python bench/train.py [--arch 8000,8000,8000,8000,8000,8000] [--batch 256] [--steps 5]
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def child(args):
    import torch
    import torch.nn.functional as F

    from lgn_fpga.train.net import LogicNet

    torch.set_num_threads(args.threads)
    inputs = 28 * 28 * 3  # fashion-mnist with 3 thresholds
    net = LogicNet(inputs, 10, args.arch, tau=10.0, seed=0, residual=False,
                   fused=args.variant == "fused")
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(args.batch, inputs, generator=g) > 0.5).float()
    y = torch.randint(0, 10, (args.batch,), generator=g)

    def step():
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()  # warm-up: Adam's state, allocator
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"samples_per_s": args.batch * args.steps / seconds,
                      "peak_mib": peak / 1024, "step_mib": (peak - before) / 1024}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="8000,8000,8000,8000,8000,8000")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variant", choices=["plain", "fused"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.variant:
        return child(args)
    print(f"net {args.arch}, batch {args.batch}, {args.steps} steps, {args.threads} thread(s)")
    print(f"{'layer':>6} {'samples/s':>10} {'peak MiB':>9} {'step MiB':>9}")
    results = {}
    for variant in ("plain", "fused"):
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--arch",
                              args.arch, "--batch", str(args.batch), "--steps",
                              str(args.steps), "--threads", str(args.threads)],
                             check=True, capture_output=True, text=True).stdout
        r = results[variant] = json.loads(out.strip().splitlines()[-1])
        print(f"{variant:>6} {r['samples_per_s']:10.0f} {r['peak_mib']:9.0f} "
              f"{r['step_mib']:9.0f}")
    old, new = results["plain"], results["fused"]
    print(f"fused vs plain: {new['samples_per_s'] / old['samples_per_s']:.2f}x samples/s, "
          f"{old['step_mib'] / max(new['step_mib'], 1e-9):.2f}x less step memory")


if __name__ == "__main__":
    main()
