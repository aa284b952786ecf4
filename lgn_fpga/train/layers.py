"""Differentiable logic layers (Petersen et al., NeurIPS 2022) in torch.

Each neuron reads two fixed inputs a, b and outputs a softmax mixture of the 16 real-valued
relaxations of the two-input gates (difflogic's order, see :mod:`lgn_fpga.net.ops`). Every
relaxation is affine in (1, a, b, ab), so the mixture is too: we mix the 16 coefficient rows
once per neuron and evaluate ``c0 + c1*a + c2*b + c3*a*b`` -- four multiply-adds per neuron
instead of sixteen op evaluations, and the same code serves the hardened (one-hot) net.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lgn_fpga.net import ops

#: OP_BASIS[op] = (c0, c1, c2, c3): op(a, b) = c0 + c1*a + c2*b + c3*a*b, exact on {0, 1}
OP_BASIS = torch.tensor(ops.relaxation_basis(), dtype=torch.float32)

PASS_A = 3
#: logit given to op 'a' at residual initialization: softmax puts ~90% on it (e^5/(e^5+15)),
#: so a deep stack starts close to identity and gradients reach the first layers.
RESIDUAL_LOGIT = 5.0


def gate_logits(n: int, generator: torch.Generator, residual: bool | float) -> nn.Parameter:
    """(n, 16) gate logits: Gaussian noise, plus a bias on op 'a': :data:`RESIDUAL_LOGIT`
    when ``residual`` is True, none when False, else that many logits."""
    w = torch.randn(n, 16, generator=generator)
    bias = RESIDUAL_LOGIT if residual is True else float(residual)
    if bias:
        w[:, PASS_A] += bias
    return nn.Parameter(w)


def mix(logits: torch.Tensor, hard: bool) -> torch.Tensor:
    """(n, 4) basis coefficients: softmax mixture while training, argmax op when ``hard``."""
    if hard:
        return OP_BASIS.to(logits.device)[logits.argmax(dim=-1)]
    return torch.softmax(logits, dim=-1) @ OP_BASIS.to(logits.device)


def apply_gates(coef: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Gates with coefficients ``coef`` (n, 4) on inputs whose LAST-but-broadcast axis is the
    gate axis: ``a``, ``b`` shaped (..., n) or (..., n, L) with ``coef`` reshaped to match."""
    c0, c1, c2, c3 = coef.unbind(-1)
    return c0 + c1 * a + c2 * b + c3 * (a * b)


def random_connections(in_dim: int, out_dim: int, rng: np.random.Generator):
    """Two input indices per neuron, every input used about equally often (as difflogic's
    'random' connections: a shuffled repetition of all inputs), and a != b where possible."""
    reps = -(-2 * out_dim // in_dim)
    pool = np.concatenate([rng.permutation(in_dim) for _ in range(reps)])[:2 * out_dim]
    a, b = pool[:out_dim].copy(), pool[out_dim:].copy()
    if in_dim > 1:
        same = np.flatnonzero(a == b)
        b[same] = (b[same] + 1 + rng.integers(0, in_dim - 1, len(same))) % in_dim
    return a.astype(np.int64), b.astype(np.int64)


class LogicLayer(nn.Module):
    """A layer of ``out_dim`` learnable two-input gates with fixed random wiring."""

    def __init__(self, in_dim: int, out_dim: int, *, rng: np.random.Generator,
                 generator: torch.Generator, residual: bool | float = False):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        a, b = random_connections(in_dim, out_dim, rng)
        self.register_buffer("a", torch.from_numpy(a))
        self.register_buffer("b", torch.from_numpy(b))
        self.logits = gate_logits(out_dim, generator, residual)

    def forward(self, x: torch.Tensor, hard: bool = False) -> torch.Tensor:
        coef = mix(self.logits, hard)
        return apply_gates(coef, x[:, self.a], x[:, self.b])

    def ops(self) -> np.ndarray:
        return self.logits.argmax(dim=-1).cpu().numpy().astype(np.uint8)


class GroupSum(nn.Module):
    """Class scores: the sum of ``k`` consecutive outputs per class, divided by ``tau``
    (difflogic's GroupSum; the hardened net keeps the popcount and drops tau)."""

    def __init__(self, classes: int, tau: float):
        super().__init__()
        self.classes, self.tau = classes, tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.classes, -1).sum(-1) / self.tau
