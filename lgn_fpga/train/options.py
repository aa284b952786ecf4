"""What a training run is, without torch: :class:`TrainOptions` and the ``--arch`` text.

``lgn-fpga train --nproc N`` checks its options with these and launches torchrun before any
process imports torch (importing torch costs seconds per process).

Arch text: comma-separated stages, e.g. ``c16,c32,2000,1000`` or ``1000,1000,300``.
``c<K>[r<R>][d<D>][n]``: a conv block of K tree kernels over an R x R field (default 3),
D gate levels (default 3), 2x2 OR pooling unless ``n``. A number: a dense layer of that
many gates. The last dense layer's width must be a multiple of the classes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lgn_fpga.errors import UserError

from .data import VAL_FRACTION

_CONV = re.compile(r"^c(\d+)(?:r(\d+))?(?:d(\d+))?(n?)$")


@dataclass(frozen=True)
class ConvSpec:
    kernels: int
    field: int = 3
    depth: int = 3
    pool: bool = True


def parse_arch(text: str) -> list:
    """Arch text to a list of ConvSpec and int (dense widths); UserError names a bad token."""
    stages: list = []
    for token in [t.strip() for t in text.split(",") if t.strip()]:
        m = _CONV.match(token)
        if m:
            if any(isinstance(s, int) for s in stages):
                raise UserError(f"--arch {text}: conv block {token} after a dense layer")
            k, r, d, nopool = m.groups()
            stages.append(ConvSpec(int(k), int(r or 3), int(d or 3), not nopool))
        elif token.isdigit() and int(token) > 0:
            stages.append(int(token))
        else:
            raise UserError(f"--arch {text}: cannot read {token!r} (a width like 1000, or a "
                            f"conv block like c16, c16r3d3, c16n)")
    if not stages or not isinstance(stages[-1], int):
        raise UserError(f"--arch {text}: must end with a dense layer")
    return stages



@dataclass(frozen=True)
class TrainOptions:
    arch: str = "1000,1000,300"
    epochs: int = 100
    thresholds: int = 3
    #: how the thresholds are fitted: auto, foreground, pooled, feature (see data.py)
    encoding: str = "auto"
    tau: float = 10.0
    lr: float = 0.01
    batch_size: int = 128
    #: "cosine": the learning rate decays to 0 over the run, which settles the gate choices
    #: so the last epoch's hardened net is not a random draw from a noisy plateau
    schedule: str = "cosine"
    seed: int = 0
    device: str = "cpu"
    #: residual initialization: True = bias op 'a' by RESIDUAL_LOGIT, False = none, a number
    #: = that bias. Deep or conv stacks need it; wide dense nets learn more logic without.
    residual: bool | float = True
    #: image datasets: shift each training image by up to this many pixels (0 = off)
    shift: int = 0
    #: add uniform noise in [-jitter, +jitter] to the raw training features before encoding,
    #: fresh every batch: values near a threshold land on both sides, so the net cannot
    #: memorize exact bit patterns (it overfits small sets like digits otherwise)
    jitter: float = 0.0
    #: evaluate the hardened (discretized) net on the validation split every this many epochs
    eval_every: int = 1
    #: fraction of the training split held out (stratified, fixed seed) for validation
    val_fraction: float = VAL_FRACTION
    #: local wiring of the dense layers: inputs within ±locality of each gate's proportional
    #: position (0 = uniform random wiring); see LogicNet
    locality: int = 0
    #: the pixel radius of dense layers that read an image (0: derived from locality)
    locality_radius: int = 0
    #: the fused dense layer (False: the plain autograd one, slower, more memory)
    fused: bool = True

    def to_json(self) -> dict:
        return dict(self.__dict__)
