"""Differentiable logic layers (Petersen et al., NeurIPS 2022) in torch.

Each neuron reads two fixed inputs a, b and outputs a softmax mixture of the 16 real-valued
relaxations of the two-input gates (difflogic's order, see :mod:`lgn_fpga.net.ops`). Every
relaxation is affine in (1, a, b, ab), so the mixture is too: we mix the 16 coefficient rows
once per neuron and evaluate ``c0 + c1*a + c2*b + c3*a*b`` -- four multiply-adds per neuron
instead of sixteen op evaluations, and the same code serves the hardened (one-hot) net.

The fused dense layer (:class:`FusedGates`) goes further: activations are kept
feature-major (width, batch), so gathering a gate's inputs copies whole contiguous rows, and
a custom backward recomputes the two gathered inputs from the layer input instead of letting
autograd keep them and the products: per layer only the input (which exists anyway) and the
(n, 4) coefficients are saved.

Wiring: uniformly random (difflogic's 'random'), or local (:func:`local_connections`,
:func:`spatial_connections`): every gate reads two inputs from a window around its
proportional position in the previous layer, so neighbouring gates talk to neighbouring
gates and a placer can keep the wires short.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

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


class FusedGates(torch.autograd.Function):
    """``out[g] = c0 + c1*x[a[g]] + c2*x[b[g]] + c3*x[a[g]]*x[b[g]]`` on feature-major
    activations ``xt`` (in, B) → (n, B), with a hand-written backward.

    Saved for backward: ``xt`` (the previous layer's output, alive anyway), the indices and
    ``coef`` (n, 4); the gathered inputs are gathered again in backward (two row copies),
    which is cheaper than keeping four (n, B) intermediates per layer."""

    @staticmethod
    def forward(ctx, xt, a, b, coef):
        xa, xb = xt.index_select(0, a), xt.index_select(0, b)
        c0, c1, c2, c3 = (coef[:, k:k + 1] for k in range(4))
        # c0 + c1 a + b (c2 + c3 a): three fused passes over (n, B), no extra temporaries
        out = torch.addcmul(c2, xa, c3).mul_(xb)
        out.addcmul_(xa, c1).add_(c0)
        ctx.save_for_backward(xt, a, b, coef)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        xt, a, b, coef = ctx.saved_tensors
        xa, xb = xt.index_select(0, a), xt.index_select(0, b)
        c1, c2, c3 = (coef[:, k:k + 1] for k in range(1, 4))
        # every (n, B) temporary is reused in place as soon as it is free: the peak is
        # g, xa, xb and one more, not a dozen
        gcoef = None
        if ctx.needs_input_grad[3]:
            gcoef = torch.stack([g.sum(1), _rowdot(g, xa), _rowdot(g, xb),
                                 _rowdot(g * xb, xa)], dim=1)
        gx = None
        if ctx.needs_input_grad[0]:  # not for the first layer: its input is data
            # d/da = g (c1 + c3 b), d/db = g (c2 + c3 a)
            gx = torch.zeros_like(xt)
            gx.index_add_(0, a, xb.mul_(c3).add_(c1).mul_(g))
            del xb
            gx.index_add_(0, b, xa.mul_(c3).add_(c2).mul_(g))
        return gx, None, None, gcoef


def _rowdot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products of two (n, B) tensors without an (n, B) product."""
    return torch.bmm(u.unsqueeze(1), v.unsqueeze(2)).reshape(-1)


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


def window_centers(out_dim: int, positions: int, groups: int = 1) -> np.ndarray:
    """The proportional position of each gate among ``positions``: gate ``i`` → ``floor((j +
    1/2) * positions / (out_dim / groups))`` with ``j = i mod (out_dim / groups)``.

    ``groups > 1`` is for the last layer: GroupSum gives class ``c`` the consecutive gates
    ``[c*k, (c+1)*k)``, and each class must see the whole previous layer, not a slice of it,
    so the positions restart in every group."""
    per = out_dim // groups
    j = np.arange(out_dim) % per
    return ((2 * j + 1) * positions // (2 * per)).astype(np.int64)


def _two_distinct(sizes: np.ndarray, rng: np.random.Generator):
    """Two offsets in [0, size) per gate, distinct where size > 1."""
    u = rng.random((2, len(sizes)))
    oa = np.minimum((u[0] * sizes).astype(np.int64), sizes - 1)
    ob = np.minimum((u[1] * np.maximum(sizes - 1, 1)).astype(np.int64),
                    np.maximum(sizes - 2, 0))
    ob = np.where(sizes > 1, (oa + 1 + ob) % sizes, oa)
    return oa, ob


def local_connections(in_dim: int, out_dim: int, window: int, rng: np.random.Generator, *,
                      groups: int = 1):
    """Two distinct inputs per gate, both within ``±window`` of the gate's proportional
    position :func:`window_centers` (the window clipped to the layer)."""
    c = window_centers(out_dim, in_dim, groups)
    lo = np.maximum(c - window, 0)
    hi = np.minimum(c + window, in_dim - 1)
    oa, ob = _two_distinct(hi - lo + 1, rng)
    return lo + oa, lo + ob


def spatial_connections(grid: np.ndarray, out_dim: int, radius: int,
                        rng: np.random.Generator, *, groups: int = 1):
    """Two distinct inputs per gate from a spatial neighbourhood: ``grid`` (H, W, C) holds
    the input index of channel ``c`` at pixel (y, x) (for thermometer-encoded images the C
    thresholds of a pixel). Gate ``i`` is centred on pixel ``divmod(p, W)``,
    ``p = window_centers(out_dim, H*W, groups)[i]``, and reads any channel of the pixels
    within ``radius`` of it in y and in x (clipped to the image)."""
    h, w, ch = grid.shape
    p = window_centers(out_dim, h * w, groups)
    cy, cx = np.divmod(p, w)
    y0, y1 = np.maximum(cy - radius, 0), np.minimum(cy + radius, h - 1)
    x0, x1 = np.maximum(cx - radius, 0), np.minimum(cx + radius, w - 1)
    wy, wx = y1 - y0 + 1, x1 - x0 + 1
    oa, ob = _two_distinct(wy * wx * ch, rng)

    def pick(o):
        dy, rest = np.divmod(o, wx * ch)
        dx, t = np.divmod(rest, ch)
        return grid[y0 + dy, x0 + dx, t]

    return pick(oa).astype(np.int64), pick(ob).astype(np.int64)


def image_radius(window: int, channels: int) -> int:
    """The spatial radius whose neighbourhood holds about as many inputs as a ``±window``
    run: ``(2R+1)**2 * channels ≈ 2*window + 1``, at least 1."""
    return max(1, round((math.sqrt((2 * window + 1) / channels) - 1) / 2))


class LogicLayer(nn.Module):
    """A layer of ``out_dim`` learnable two-input gates with fixed wiring: uniformly random,
    or the given ``wiring`` (a, b). ``fused``: evaluate with :class:`FusedGates` (the
    default); False keeps the plain autograd version (for the benchmark and as a
    reference)."""

    def __init__(self, in_dim: int, out_dim: int, *, rng: np.random.Generator,
                 generator: torch.Generator, residual: bool | float = False,
                 wiring: tuple[np.ndarray, np.ndarray] | None = None, fused: bool = True):
        super().__init__()
        self.in_dim, self.out_dim, self.fused = in_dim, out_dim, fused
        a, b = wiring if wiring is not None else random_connections(in_dim, out_dim, rng)
        self.register_buffer("a", torch.from_numpy(np.asarray(a, dtype=np.int64)))
        self.register_buffer("b", torch.from_numpy(np.asarray(b, dtype=np.int64)))
        self.logits = gate_logits(out_dim, generator, residual)

    def forward(self, x: torch.Tensor, hard: bool = False) -> torch.Tensor:
        """(B, in) → (B, out)."""
        if self.fused:
            return self.forward_t(x.t().contiguous(), hard).t()
        coef = mix(self.logits, hard)
        return apply_gates(coef, x[:, self.a], x[:, self.b])

    def forward_t(self, xt: torch.Tensor, hard: bool = False) -> torch.Tensor:
        """Feature-major (in, B) → (out, B): consecutive dense layers stay in this layout."""
        if not self.fused:
            return self.forward(xt.t(), hard).t()
        return FusedGates.apply(xt, self.a, self.b, mix(self.logits, hard).to(xt.dtype))

    def ops(self) -> np.ndarray:
        return self.logits.argmax(dim=-1).cpu().numpy().astype(np.uint8)


class GroupSum(nn.Module):
    """Class scores: the sum of ``k`` consecutive outputs per class, divided by ``tau``
    (difflogic's GroupSum; the hardened net keeps the popcount and drops tau)."""

    def __init__(self, classes: int, tau: float):
        super().__init__()
        self.classes, self.tau = classes, tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.classes, x.shape[1] // self.classes).sum(-1) / self.tau
