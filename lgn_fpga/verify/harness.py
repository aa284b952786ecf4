"""What every simulation engine shares: the stimulus schedule, the outputs an engine hands
back, and the verdict. The timing being checked is the core's contract
(:mod:`lgn_fpga.gateware.contract`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lgn_fpga.errors import UserError

#: cycles the testbench keeps clocking after the last input, beyond the declared latency,
#: so a core slower than it claims is caught as "late" rather than "missing".
DRAIN_SLACK = 4


@dataclass(frozen=True)
class Outputs:
    """What a simulation engine saw on the output ports: one row per ``out_valid`` cycle."""

    cycles: np.ndarray   # int64 (m,): cycle number of each out_valid
    scores: np.ndarray   # int64 (m, C)
    classes: np.ndarray  # int64 (m,)
    total_cycles: int    # cycles simulated
    #: with a ready handshake (the folded core): the cycle each vector was accepted in,
    #: which replaces the schedule's presentation cycle when latencies are checked.
    accepted: np.ndarray | None = None


@dataclass(frozen=True)
class Mismatch:
    vector: int                 # index of the first failing vector (-1: no vector to blame)
    reason: str
    expected_scores: list[int] | None = None
    actual_scores: list[int] | None = None
    expected_class: int | None = None
    actual_class: int | None = None
    where: str | None = None    # what locate_mismatch found

    def describe(self) -> str:
        text = f"vector {self.vector}: {self.reason}" if self.vector >= 0 else self.reason
        if self.expected_scores is not None:
            text += (f"\n  expected class {self.expected_class} scores {self.expected_scores}"
                     f"\n  actual   class {self.actual_class} scores {self.actual_scores}")
        if self.where:
            text += f"\n  where: {self.where}"
        return text


@dataclass
class SimResult:
    engine: str
    vectors: int
    cycles: int
    latency_declared: int
    latency_measured: int | None
    seconds: float
    mismatch: Mismatch | None = None
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.mismatch is None

    @property
    def vectors_per_second(self) -> float:
        return self.vectors / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict:
        out = {
            "passed": self.passed, "engine": self.engine, "vectors": self.vectors,
            "cycles": self.cycles, "latency_declared": self.latency_declared,
            "latency_measured": self.latency_measured, "seconds": round(self.seconds, 3),
            **self.extra,
        }
        if self.mismatch is not None:
            m = self.mismatch
            out["mismatch"] = {
                "vector": m.vector, "reason": m.reason,
                "expected_scores": m.expected_scores, "actual_scores": m.actual_scores,
                "expected_class": m.expected_class, "actual_class": m.actual_class,
                "where": m.where,
            }
        return out


def make_schedule(vectors: int, *, gap_rate: float, seed: int) -> np.ndarray:
    """Per input cycle, the index of the vector presented, or -1 for an idle cycle.

    Before each vector an idle cycle is inserted with probability ``gap_rate`` (repeatedly,
    so runs of idle cycles occur too); everything else is back to back."""
    if not 0 <= gap_rate < 1:
        raise UserError(f"gap rate must be in [0, 1), got {gap_rate}")
    rng = np.random.default_rng([seed, 0x6A9])
    schedule = []
    for v in range(vectors):
        while gap_rate and rng.random() < gap_rate:
            schedule.append(-1)
        schedule.append(v)
    return np.asarray(schedule, dtype=np.int64)


def pack_rows(bits: np.ndarray) -> list[int]:
    """Each row of 0/1 bits as a Python int, bit ``i`` = column ``i``."""
    packed = np.packbits(np.asarray(bits, dtype=np.uint8), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack_scores(raw: int, classes: int, width: int) -> list[int]:
    mask = (1 << width) - 1
    return [(raw >> (c * width)) & mask for c in range(classes)]
