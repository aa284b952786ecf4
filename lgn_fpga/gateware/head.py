"""The class head: per-class popcount and argmax, built for cost and clock speed.

Both are trees whose levels can be registered. iCE40 and ECP5 logic cells pair every LUT
with a flip-flop, so a register after a LUT level costs (almost) no extra cells: the head
registers every ``levels_per_stage`` levels (default 1) and declares its latency exactly.

* :class:`Popcount` counts ``n`` bits. Its first level is a row of 3:2 compressors (full
  adders: 3 bits in, a 2-bit count out, two LUT4s each); after that an adder tree sums
  pairs of counts, each sum exactly as wide as its largest possible value, so the adders
  map to short carry chains. About 2 LUTs per input bit in total.
* :class:`ArgMax` picks the class with the highest score through a tree of comparators
  that carry (index, score); the left operand always holds the lower indices and wins ties,
  so ties go to the lowest class index like the golden model.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from lgn_fpga.gateware.contract import with_contract

__all__ = ["ArgMax", "Popcount", "popcount_latency", "argmax_latency"]


def _tree_levels(leaves: int) -> int:
    """Pairwise levels to reduce ``leaves`` items to one."""
    return ceil_log2(max(1, leaves))


def _stages(levels: int, levels_per_stage: int) -> int:
    """Registers on a path through ``levels`` levels registered every ``levels_per_stage``
    (the last level is always registered, so the output comes straight from flip-flops)."""
    if levels == 0:
        return 0
    return -(-levels // levels_per_stage)


def _registered(level: int, levels: int, levels_per_stage: int) -> bool:
    return (level + 1) % levels_per_stage == 0 or level == levels - 1


def popcount_latency(n: int, levels_per_stage: int = 1) -> int:
    """Cycles through a :class:`Popcount` of ``n`` bits: one compressor level, then the
    adder tree over ceil(n/3) partial counts."""
    return _stages(1 + _tree_levels(-(-n // 3)), levels_per_stage)


def argmax_latency(classes: int, levels_per_stage: int = 1) -> int:
    return _stages(_tree_levels(classes), levels_per_stage)


@with_contract
class Popcount(wiring.Component):
    """``count`` = number of ones in ``bits``, ``latency`` cycles later (there is no valid
    port: the enclosing core carries valid beside it).

{stream_contract}"""

    def __init__(self, n: int, *, levels_per_stage: int = 1):
        if n < 1:
            raise ValueError("a popcount needs at least one bit")
        if levels_per_stage < 1:
            raise ValueError("levels_per_stage must be at least 1")
        self.n = n
        self.levels_per_stage = levels_per_stage
        self.latency = popcount_latency(n, levels_per_stage)
        super().__init__({"bits": In(n), "count": Out(bits_for(n))})

    def elaborate(self, platform):
        m = Module()
        levels = 1 + _tree_levels(-(-self.n // 3))
        level = 0

        def signal(width, name):
            registered = _registered(level, levels, self.levels_per_stage)
            sig = Signal(width, name=name, reset_less=True)
            return sig, (m.d.sync if registered else m.d.comb)

        # Level 0: 3:2 compressors. Each partial count is (signal, largest value it can hold).
        counts = []
        for g, start in enumerate(range(0, self.n, 3)):
            group = [self.bits[i] for i in range(start, min(start + 3, self.n))]
            if len(group) == 1:
                expr, top = group[0], 1
            elif len(group) == 2:
                a, b = group
                expr, top = Cat(a ^ b, a & b), 2
            else:
                a, b, c = group
                expr, top = Cat(a ^ b ^ c, (a & b) | (a & c) | (b & c)), 3
            sig, domain = signal(bits_for(top), f"fa{g}")
            domain += sig.eq(expr)
            counts.append((sig, top))

        # Adder tree: sum neighbours; an odd one out rides along (through a register if
        # this level is registered, so every path has the same latency).
        while len(counts) > 1:
            level += 1
            paired = []
            for i in range(0, len(counts), 2):
                if i + 1 < len(counts):
                    (x, xt), (y, yt) = counts[i], counts[i + 1]
                    expr, top = x + y, xt + yt
                else:
                    (expr, top) = counts[i]
                sig, domain = signal(bits_for(top), f"sum{level}_{i // 2}")
                domain += sig.eq(expr)
                paired.append((sig, top))
            counts = paired

        m.d.comb += self.count.eq(counts[0][0])
        return m


@with_contract
class ArgMax(wiring.Component):
    """``index`` of the largest of ``scores``, ``latency`` cycles later.

{stream_contract}"""

    def __init__(self, classes: int, score_width: int, *, levels_per_stage: int = 1):
        if classes < 1:
            raise ValueError("an argmax needs at least one class")
        if levels_per_stage < 1:
            raise ValueError("levels_per_stage must be at least 1")
        self.classes = classes
        self.score_width = score_width
        self.levels_per_stage = levels_per_stage
        self.index_width = max(1, ceil_log2(classes))
        self.latency = argmax_latency(classes, levels_per_stage)
        super().__init__({
            "scores": In(data.ArrayLayout(score_width, classes)),
            "index": Out(self.index_width),
        })

    def elaborate(self, platform):
        m = Module()
        levels = _tree_levels(self.classes)
        # Candidates (index, score), in class order: the left of a pair has the lower indices.
        candidates = [(Const(c, self.index_width), self.scores[c])
                      for c in range(self.classes)]
        level = 0
        while len(candidates) > 1:
            registered = _registered(level, levels, self.levels_per_stage)
            domain = m.d.sync if registered else m.d.comb
            reduced = []
            for i in range(0, len(candidates), 2):
                index = Signal(self.index_width, name=f"index{level}_{i // 2}", reset_less=True)
                score = Signal(self.score_width, name=f"score{level}_{i // 2}", reset_less=True)
                if i + 1 < len(candidates):
                    (li, ls), (ri, rs) = candidates[i], candidates[i + 1]
                    right_wins = Signal(name=f"right_wins{level}_{i // 2}")
                    m.d.comb += right_wins.eq(rs > ls)  # strictly greater: ties stay left
                    domain += [index.eq(Mux(right_wins, ri, li)),
                               score.eq(Mux(right_wins, rs, ls))]
                else:
                    li, ls = candidates[i]
                    domain += [index.eq(li), score.eq(ls)]
                reduced.append((index, score))
            candidates = reduced
            level += 1
        m.d.comb += self.index.eq(candidates[0][0])
        return m
