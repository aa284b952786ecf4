"""The class head: per-class popcount and argmax, built for the iCE40/ECP5 logic cell.

An iCE40 logic cell is one LUT4, one carry cell and one flip-flop; an ECP5 slice pairs two
LUT4s with a carry chain and two flip-flops. A flip-flop behind a LUT (or behind a carry-chain
sum bit) rides in the LUT's cell for free; a flip-flop that only copies a wire costs a whole
cell. The head is shaped by that:

* :class:`Popcount` counts the class bits in three kinds of step.

  1. *Level 0, fused*: pairs of bits go through half adders (``a ^ b``, ``a & b``). There is
     no register in front of them, so in the core the mapper merges each half adder with the
     two gates of the net's last layer that feed it: ``g1(a, b) ^ g2(c, d)`` is one LUT4,
     as the gates alone would be, so this level costs (almost) nothing. Its outputs are
     registered (the LUT's own flip-flop). A class bit that is a wire (a pass-through gate,
     so a register's output or an input) has no LUT for a half adder to take the place of:
     wires go three at a time, or two with a logic gate, through full adders (sum and
     majority, two LUT4s for three bits). Bits that are not paired ("spares") are
     registered too and enter the adder levels as carry-ins; groups of bits may instead be
     counted by lookup tables in block RAM (``tables``).
  2. *Adder levels*: neighbouring counts are summed, ``x + y + carry_in``, each sum exactly
     as wide as its largest value, so each maps to one short carry chain (one cell per sum
     bit) and the spare bits ride in as the chains' carry-ins (a third operand per adder
     for one cell each). Every level is registered by default (the sum bits' own flip-flops);
     an odd count out rides along through a register.
  3. *Weights and an offset*: the core counts a class bit that appears ``m`` times (the same
     gate twice in a class) once, with weight ``m`` (a shift, for powers of two), a gate and
     its complement as a constant 1, and constant bits as a constant offset.

* :class:`ArgMax` picks the class with the highest score through a tree of comparators that
  carry (index, score); the left operand always holds the lower indices and wins ties, so
  ties go to the lowest class index like the golden model. With ``split=True`` (default) a
  level takes two registers: the comparison (one carry chain) is registered alone, and the
  mux that follows reads only flip-flops, so no path holds a chain and a wide mux together.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from lgn_fpga.gateware.contract import with_contract

__all__ = ["ArgMax", "Popcount", "PopcountPlan", "argmax_latency", "left_inverted",
           "plan_popcount", "popcount_latency"]


def _registered(level: int, levels: int, levels_per_stage: int) -> bool:
    return (level + 1) % levels_per_stage == 0 or level == levels - 1


def _stages(levels: int, levels_per_stage: int) -> int:
    """Registers on a path through ``levels`` levels registered every ``levels_per_stage``
    (the last level is always registered)."""
    return sum(_registered(level, levels, levels_per_stage) for level in range(levels))


# -- popcount -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PopcountPlan:
    """The shape of one popcount, decided before elaboration (so latency is known).

    ``pairs``: (i, j) bit indices summed by the level-0 half adders; ``spares``: bit indices
    that enter the adder levels as carry-ins; ``singles``: bit indices counted as a
    1-bit number; ``weighted``: (i, weight) bits counted ``weight`` times; ``tables``: groups
    of bit indices each counted by a lookup table (block RAM, see :class:`Popcount`);
    ``offset``: a constant added. ``levels``: for each adder level, a list of (x, y, carry)
    where x, y index the previous level's numbers (y = -1: none) and carry indexes
    ``spares`` (-1: none); level 0's numbers are ordered pairs, triples, singles, weighted, the
    tables read with level 0, then the offset if nonzero; after the first adder level the
    late tables' counts follow its sums."""

    n: int
    pairs: tuple
    spares: tuple
    singles: tuple
    weighted: tuple
    offset: int
    levels: tuple
    maxima: tuple  # the largest value of each number, level by level (level 0 first)
    tables: tuple = ()
    #: per table: read a cycle late, its address registered first (its count then joins
    #: the numbers after the first adder level, at the end); else read with level 0.
    table_late: tuple = ()
    #: (i, j, l) bit indices summed by level-0 full adders (numbers up to 3), after the
    #: pairs in level 0's numbers.
    triples: tuple = ()
    #: (i, j, l) bit indices that arrive a cycle early (:class:`Popcount`'s
    #: ``early_bits``), summed by full adders in that cycle; then ``early_sums``: (x, y)
    #: indices into ``early_triples`` (y = -1: the odd one waits a register), each summed in
    #: the cycle of level 0. Their numbers (up to 6, or 3) follow the offset in level 0's.
    early_triples: tuple = ()
    early_sums: tuple = ()

    @property
    def top(self) -> int:
        """The largest count."""
        return self.maxima[-1][0] if self.maxima[-1] else 0

    @property
    def cells(self) -> int:
        """iCE40 logic cells of the adder levels (each registered): a cell per sum bit (a
        chain's carry-out included), per carry-in fed into a chain, per bit copied along,
        and per register a spare waits in before its level."""
        total = 0
        for level, ops in enumerate(self.levels):
            for k, (_x, _y, carry) in enumerate(ops):
                total += bits_for(self.maxima[level + 1][k]) + (carry >= 0) * (1 + level)
        return total


def _adder_levels(numbers: list, spares: int, late=()) -> tuple:
    """Adder levels over ``numbers`` (their largest values): neighbours by size summed
    pairwise, a spare bit as each adder's carry-in while there are spares; the numbers
    ``late`` join after the first level."""
    maxima = [tuple(numbers)]
    levels = []
    free = list(range(spares))
    late = list(late)
    while len(numbers) > 1 or (free and numbers) or late:
        order = sorted(range(len(numbers)), key=lambda k: (numbers[k], k))
        ops, new = [], []
        for k in range(0, len(order), 2):
            x = order[k]
            y = order[k + 1] if k + 1 < len(order) else -1
            carry = free.pop(0) if free else -1
            ops.append((x, y, carry))
            new.append(numbers[x] + (numbers[y] if y >= 0 else 0) + (carry >= 0))
        levels.append(tuple(ops))
        numbers, late = new + late, []
        maxima.append(tuple(numbers))
    return tuple(levels), tuple(maxima)


def plan_popcount(n: int, weights=None, offset: int = 0, *, carry_ins: bool = True,
                  tables: int = 0, table_bits: int = 10, wires=(),
                  full_adders: bool = True, early=()) -> PopcountPlan:
    """The :class:`PopcountPlan` for ``n`` bits (``weights``: one positive int per bit, or
    ``None`` for all ones) plus a constant ``offset``, with up to ``tables`` groups of
    ``table_bits`` bits counted by lookup tables (consecutive unit-weight bits; at least two
    bits are left to the adders). A group whose bits are all in ``wires`` (bits that come
    straight from registers) is read with level 0; any other is read a cycle late, behind
    an address register that shares the cells of the LUTs computing its bits, because the
    block RAMs sit in fixed columns and the route to them would not fit the cycle behind a
    LUT.

    The split between half-adder pairs and spare bits (carry-ins) is the one with the
    fewest logic cells (:attr:`PopcountPlan.cells`): a carry-in costs one cell for one bit,
    a pair adds a number and so an adder. ``carry_ins=False`` pairs every bit (no spares),
    the layout measured against in docs/core.md.

    ``full_adders`` (the default): bits in ``wires`` may instead be summed three at a time
    at level 0, by a full adder (sum and majority: two LUTs), two wires with a logic gate
    where there is one (the gate merges into both LUTs, as into a half adder). A half adder
    is free only on two logic gates, whose LUTs it replaces; on a wire it costs a LUT, so
    three bits in two LUTs pay. The split is then chosen by the cells of the adder levels
    plus the LUTs and flip-flops that wires add at level 0 (a pair: one per wire; a full
    adder: one per wire but one; a spare wire: its flip-flop).

    ``early``: unit-weight bits that can also be had a cycle before the others (in the core,
    class bits passed through from an input or an earlier register across the last gate
    register, which would only copy them). They go three at a time through full adders in
    that earlier cycle, and two full adders' counts are summed in the cycle of level 0, so
    six bits take four LUTs and a three-bit adder instead of six copying flip-flops; the
    bits left over (fewer than three) are counted with the others.

    Raises
    ------
    ValueError
        If a weight is below 1, the offset is negative or ``table_bits`` is below 2.
    """
    weights = [1] * n if weights is None else [int(w) for w in weights]
    if len(weights) != n or any(w < 1 for w in weights) or offset < 0:
        raise ValueError("a popcount needs n weights of at least 1 and an offset >= 0")
    if tables and table_bits < 2:
        raise ValueError("a lookup table counts at least 2 bits")
    units = [i for i in range(n) if weights[i] == 1]
    early_units = [i for i in dict.fromkeys(early) if 0 <= i < n and weights[i] == 1]
    early_units = early_units[:len(early_units) - len(early_units) % 3]
    early_triples = tuple(tuple(early_units[t:t + 3]) for t in range(0, len(early_units), 3))
    early_sums = tuple((t, t + 1 if t + 1 < len(early_triples) else -1)
                       for t in range(0, len(early_triples), 2))
    taken = frozenset(early_units)
    units = [i for i in units if i not in taken]
    tables = max(0, min(tables, (len(units) - 2) // table_bits)) if table_bits >= 2 else 0
    groups = tuple(tuple(units[t * table_bits:(t + 1) * table_bits]) for t in range(tables))
    wires = frozenset(wires)
    table_late = tuple(not all(i in wires for i in g) for g in groups)
    units = units[tables * table_bits:]
    weighted = tuple((i, weights[i]) for i in range(n) if weights[i] > 1)
    fixed = ([w for _, w in weighted] + [table_bits] * table_late.count(False)
             + ([offset] if offset else []) + [3 + 3 * (y >= 0) for _, y in early_sums])
    late = [table_bits] * table_late.count(True)

    def plan(p: int, triples=(), units=units) -> PopcountPlan:
        pairs = tuple((units[2 * k], units[2 * k + 1]) for k in range(p))
        rest = units[2 * p:]
        # bits left with nothing to carry into (no number at all) are counted as singles
        spares = tuple(rest) if p + len(triples) + len(fixed) else ()
        singles = tuple(rest[len(spares):])
        numbers = [2] * p + [3] * len(triples) + [1] * len(singles) + fixed
        levels, maxima = _adder_levels(numbers, len(spares), late)
        return PopcountPlan(n, pairs, spares, singles, weighted, offset, levels, maxima,
                            groups, table_late, tuple(triples), early_triples, early_sums)

    if not carry_ins:
        return plan(len(units) // 2)  # an odd bit out rides in as a carry-in
    if not (full_adders and any(i in wires for i in units)):
        u = len(units)
        candidates = [plan(p) for p in range(1 if u >= 2 else 0, u // 2 + 1)] or [plan(0)]
        return min(candidates, key=lambda pl: (pl.cells, len(pl.levels), -len(pl.pairs)))

    def wire_cost(pl: PopcountPlan) -> int:
        return (sum((i in wires) + (j in wires) for i, j in pl.pairs)
                + sum(sum(i in wires for i in t) - 1 for t in pl.triples)
                + sum(i in wires for i in pl.spares))

    def key(pl: PopcountPlan) -> tuple:
        return pl.cells + wire_cost(pl), len(pl.levels), -len(pl.pairs)

    def best_pairs(triples, rest) -> PopcountPlan:
        # every pair count on small classes; on wide ones a coarse pass, then the
        # neighbourhood of its best (a plan costs O(n log n) to lay out)
        top = len(rest) // 2
        step = max(1, top // 16)
        found = min((plan(p, triples, rest) for p in range(0, top + 1, step)), key=key)
        if step > 1:
            p0 = len(found.pairs)
            found = min([found] + [plan(p, triples, rest) for p in
                                   range(max(0, p0 - step + 1), min(top, p0 + step - 1) + 1)],
                        key=key)
        return found

    def with_triples(t: int):
        triples, w_left, g_left = [], list(wired), list(gates)
        for _ in range(t):
            if len(w_left) < 2 + (not g_left):
                return None
            a, b = w_left.pop(0), w_left.pop(0)
            triples.append((a, b, g_left.pop() if g_left else w_left.pop(0)))
        return best_pairs(triples, g_left + w_left)  # gates pair first (free), wires after

    wired = [i for i in units if i in wires]
    gates = [i for i in units if i not in wires]
    most = len(wired) // 2
    step = max(1, most // 8)  # as for the pairs: coarse, then around the best
    candidates = [c for c in map(with_triples, range(0, most + 1, step)) if c is not None]
    if step > 1:
        t0 = len(min(candidates, key=key).triples)
        candidates += [c for c in map(with_triples, range(max(0, t0 - step + 1),
                                                          min(most, t0 + step - 1) + 1))
                       if c is not None]
    return min(candidates, key=key)


def popcount_latency(n: int, levels_per_stage: int = 1, weights=None, offset: int = 0, *,
                     tables: int = 0, table_bits: int = 10, wires=(),
                     full_adders: bool = True, early=()) -> int:
    """Cycles through a :class:`Popcount`: level 0 (always registered) plus the adder
    levels registered every ``levels_per_stage``."""
    plan = plan_popcount(n, weights, offset, tables=tables if levels_per_stage == 1 else 0,
                         table_bits=table_bits, wires=wires, full_adders=full_adders,
                         early=early)
    return 1 + _stages(len(plan.levels), levels_per_stage)


@with_contract
class Popcount(wiring.Component):
    """``count`` = ``offset`` + the weighted number of ones in ``bits``, ``latency`` cycles
    later (there is no valid port: the enclosing core carries valid beside it).

    Level 0 (half adders) reads ``bits`` combinationally and is registered; in the core its
    register is the last gate stage's, so the net's last layer and the half adders share
    LUTs. ``tables`` groups of ``table_bits`` bits are counted instead by lookup tables, a
    read-only memory of ``2 ** table_bits`` counts with a registered read (Yosys maps it to
    block RAM: an iCE40 SB_RAM40_4K as 1024 x 4 counts 10 bits, an ECP5 DP16KD as
    4096 x 4 counts 12), in the same cycle as level 0. ``wires``: the bits that come
    straight from registers (for the tables and ``full_adders``, see :func:`plan_popcount`).
    ``carry_out_lut`` (the default): a register fed by a chain's carry-out takes it through a
    LUT (iCE40, where the flip-flop then shares that LUT's cell); ``False`` for ECP5, whose
    slice flip-flop takes the carry-out directly, so the LUT would only add delay.

{stream_contract}"""

    def __init__(self, n: int, *, levels_per_stage: int = 1, weights=None, offset: int = 0,
                 invert: bool = False, width: int = 0, tables: int = 0, table_bits: int = 10,
                 wires=(), full_adders: bool = True, carry_out_lut: bool = True, early=()):
        if n < 1:
            raise ValueError("a popcount needs at least one bit")
        if levels_per_stage < 1:
            raise ValueError("levels_per_stage must be at least 1")
        self.n = n
        self.levels_per_stage = levels_per_stage
        self.invert = invert
        self.carry_out_lut = carry_out_lut
        # (a late table's count joins after the first adder level, which must be registered)
        self.plan = plan_popcount(n, weights, offset,
                                  tables=tables if levels_per_stage == 1 else 0,
                                  table_bits=table_bits, wires=wires,
                                  full_adders=full_adders, early=early)
        self.latency = 1 + _stages(len(self.plan.levels), levels_per_stage)
        #: the bits ``early_bits`` carries, in its order (see :func:`plan_popcount`)
        self.early = tuple(i for t in self.plan.early_triples for i in t)
        super().__init__({
            "bits": In(n),
            # early_bits[k]: bit early[k], a cycle before `bits` has it
            "early_bits": In(max(1, len(self.early))),
            # stage_valid[i]: the data in register stage i (0: level 0) is valid. Only used
            # to turn carry-outs into LUTs (see elaborate); all ones (the default) is exact.
            "stage_valid": In(self.latency, init=(1 << self.latency) - 1),
            "count": Out(max(width, bits_for(max(1, self.plan.top)))),
        })

    def elaborate(self, platform):
        m = Module()
        plan, bits = self.plan, self.bits
        numbers = []  # (value, largest value) of the current level
        for k, (i, j) in enumerate(plan.pairs):
            s = Signal(2, name=f"ha{k}", reset_less=True)
            m.d.sync += s.eq(Cat(bits[i] ^ bits[j], bits[i] & bits[j]))
            numbers.append(s)
        for k, (i, j, t) in enumerate(plan.triples):
            s = Signal(2, name=f"fa{k}", reset_less=True)
            x, y, z = bits[i], bits[j], bits[t]
            m.d.sync += s.eq(Cat(x ^ y ^ z, (x & y) | (x & z) | (y & z)))
            numbers.append(s)
        for k, i in enumerate(plan.singles):
            s = Signal(1, name=f"single{k}", reset_less=True)
            m.d.sync += s.eq(bits[i])
            numbers.append(s)
        for k, (i, w) in enumerate(plan.weighted):
            s = Signal(1, name=f"weighted{k}", reset_less=True)
            m.d.sync += s.eq(bits[i])
            # w * s: a shift for a power of two, the bit repeated where w has ones.
            numbers.append(Cat(*(s if (w >> b) & 1 else Const(0, 1)
                                 for b in range(w.bit_length()))))
        late = []
        for k, group in enumerate(plan.tables):
            # A ROM of counts with a registered read (the block RAM's own address register).
            table = Memory(shape=bits_for(len(group)), depth=1 << len(group),
                           init=[bin(a).count("1") for a in range(1 << len(group))])
            m.submodules[f"table{k}"] = table
            port = table.read_port(domain="sync")
            address = Cat(bits[i] for i in group)
            if plan.table_late[k]:
                # bits from LUTs: registered first (each flip-flop in its LUT's cell)
                registered = Signal(len(group), name=f"table{k}_address", reset_less=True)
                m.d.sync += registered.eq(address)
                address = registered
                late.append(port.data)
            else:
                numbers.append(port.data)
            m.d.comb += port.addr.eq(address)
        if plan.offset:
            numbers.append(Const(plan.offset, bits_for(plan.offset)))
        early = []
        for k, (x, y, z) in enumerate(plan.early_triples):
            # a cycle early: a full adder, its sum and majority registered behind their LUTs
            e = [self.early_bits[self.early.index(i)] for i in (x, y, z)]
            s = Signal(2, name=f"efa{k}", reset_less=True)
            m.d.sync += s.eq(Cat(e[0] ^ e[1] ^ e[2], (e[0] & e[1]) | (e[0] & e[2]) | (e[1] & e[2])))
            early.append(s)
        for k, (x, y) in enumerate(plan.early_sums):
            # in the cycle of level 0: two early counts summed (a 3-bit carry chain)
            s = Signal(3 if y >= 0 else 2, name=f"esum{k}", reset_less=True)
            if y >= 0:
                # each sum bit a function of the four input bits: three LUT4s, no carry
                # chain (whose carry-out would want a flip-flop of its own on iCE40)
                (x0, x1), (y0, y1) = early[x], early[y]
                carry = x0 & y0
                m.d.sync += s.eq(Cat(x0 ^ y0, x1 ^ y1 ^ carry, (x1 & y1) | ((x1 ^ y1) & carry)))
            else:
                m.d.sync += s.eq(early[x])
            numbers.append(s)
        spares = []
        for k, i in enumerate(plan.spares):
            s = Signal(1, name=f"spare{k}", reset_less=True)
            m.d.sync += s.eq(bits[i])
            spares.append(s)

        levels = len(plan.levels)
        if self.invert and not levels:  # no adder level: complement the level-0 result
            numbers = [~Cat(numbers[0], Const(0, len(self.count) - len(numbers[0])))]
        stage = 0  # the register stage holding the current level's inputs
        delayed = {}

        def spare_at(k, stage):
            """Spare ``k`` in register stage ``stage`` (level 0 is stage 0): a spare that
            rides in at a later adder level waits in registers (one cell each)."""
            if stage == 0:
                return spares[k]
            if (k, stage) not in delayed:
                d = Signal(1, name=f"spare{k}_d{stage}", reset_less=True)
                m.d.sync += d.eq(spare_at(k, stage - 1))
                delayed[k, stage] = d
            return delayed[k, stage]

        for level, ops in enumerate(plan.levels):
            registered = _registered(level, levels, self.levels_per_stage)
            domain = m.d.sync if registered else m.d.comb
            maxima = plan.maxima[level + 1]
            new = []
            for k, (x, y, carry) in enumerate(ops):
                operands = [numbers[x]] + ([numbers[y]] if y >= 0 else [])
                expr = operands[0] if len(operands) == 1 else operands[0] + operands[1]
                if carry >= 0:
                    expr = expr + spare_at(carry, stage)
                width = bits_for(maxima[k])
                s = Signal(width, name=f"sum{level + 1}_{k}", reset_less=True)
                grows = width > max(len(v) for v in operands) and (y >= 0 or carry >= 0)
                if registered and grows and self.carry_out_lut:
                    # The top bit is the chain's carry-out. A flip-flop fed straight from a
                    # carry-out costs a cell of its own on iCE40 (beside the cell that brings
                    # the carry out); as a real LUT (x ^ ~valid: the carry itself whenever
                    # the data is valid, don't-care otherwise) it shares that cell.
                    full = Signal(width, name=f"add{level + 1}_{k}")
                    m.d.comb += full.eq(expr)
                    expr = Cat(full[:-1], full[-1] ^ ~self.stage_valid[stage])
                if self.invert and level == levels - 1:
                    s = Signal(len(self.count), name=f"sum{level + 1}_{k}_n", reset_less=True)
                    expr = ~Cat(Value.cast(expr)[:width], Const(0, len(self.count) - width))
                domain += s.eq(expr)
                new.append(s)
            numbers = new + (late if level == 0 else [])
            stage += registered
        m.d.comb += self.count.eq(numbers[0])
        return m


# -- argmax -------------------------------------------------------------------------------


#: Most candidates an :class:`ArgMax` compares all against all (one stage of comparisons,
#: no operand copies) instead of reducing them pairwise (a comparison, then a mux, each
#: registered, every operand copied across the first): 5 candidates take 10 comparisons
#: where a tree takes 4 plus 2 odd ones out and their copies (about 80 cells less for 10
#: classes, 3 cycles shorter). A candidate's win is the AND of its G - 1 comparisons, one
#: LUT4 up to 5 candidates.
ALL_PAIRS = 5


def argmax_tree_levels(classes: int, all_pairs: int = ALL_PAIRS) -> int:
    """Pairwise levels an :class:`ArgMax` of ``classes`` runs before the all-against-all
    stage: at least one (its muxes give each candidate in both polarities, which every
    comparison of the stage wants: an iCE40 carry chain comparing two values of the same
    polarity needs an inverter LUT per bit and measured half the clock), then until at
    most ``all_pairs`` candidates are left (three or more; two are compared by one more
    pairwise level). ``all_pairs`` below 3: the whole tree."""
    levels, count = 0, classes
    while count > 1 and (levels == 0 or not 3 <= count <= all_pairs):
        count, levels = -(-count // 2), levels + 1
    return levels


def argmax_latency(classes: int, levels_per_stage: int = 1, split: bool = True,
                   all_pairs: int = ALL_PAIRS) -> int:
    """Cycles through an :class:`ArgMax` of ``classes`` scores."""
    levels = argmax_tree_levels(classes, all_pairs)
    stages = _stages(levels, levels_per_stage)
    tree = 2 * stages if split else stages
    left = classes
    for _ in range(levels):
        left = -(-left // 2)
    return tree + (3 if left > 1 else 0)


def left_inverted(classes: int) -> tuple:
    """Which scores an :class:`ArgMax` wants complemented: the left of each first-level pair
    (``rs > ls`` is then the carry-out of ``rs + ~ls``, a plain carry chain, where a
    comparison of two true values needs an inverter LUT per bit)."""
    return tuple(c % 2 == 0 and c + 1 < classes for c in range(classes))


@with_contract
class ArgMax(wiring.Component):
    """``index`` of the largest of ``scores``, ``latency`` cycles later; ties go to the
    lowest index.

    Two parts. First pairwise levels (:func:`argmax_tree_levels`: none for 3 to
    ``all_pairs`` classes, one for 10), each candidate pair reduced to its winner (index
    and score); then, once at most ``all_pairs`` candidates are left, every candidate is
    compared with every other in one registered stage, a one-hot "wins" register follows
    (candidate j wins if it beats every lower candidate strictly and no higher one beats
    it), and the winner's index is encoded from it. The all-against-all stage needs no copy
    of any score (only comparisons read them), where a pairwise level registers its
    comparison before its mux and so copies both operands across that register.

    ``split``: register each pairwise comparison before the mux it drives (two registers
    per tree level, for the clock); otherwise a comparison and its mux share a stage.
    ``inverted``: per class, whether its score arrives complemented (``~score``); see
    :func:`left_inverted`. The tree passes each winner on in the polarity its next
    comparison wants (the muxes are LUTs, so either polarity is free).
    ``carry_out_lut``: as in :class:`Popcount`, for each comparison's register.
    ``all_pairs``: see :data:`ALL_PAIRS`; below 3, pairwise levels only (the tree of
    before, ``2 * ceil_log2(classes)`` cycles with ``split``).

{stream_contract}"""

    def __init__(self, classes: int, score_width: int, *, levels_per_stage: int = 1,
                 split: bool = True, inverted=None, carry_out_lut: bool = True,
                 all_pairs: int = ALL_PAIRS):
        if classes < 1:
            raise ValueError("an argmax needs at least one class")
        if levels_per_stage < 1:
            raise ValueError("levels_per_stage must be at least 1")
        self.classes = classes
        self.score_width = score_width
        self.levels_per_stage = levels_per_stage
        self.split = split
        self.carry_out_lut = carry_out_lut
        self.all_pairs = all_pairs
        self.inverted = tuple(bool(x) for x in inverted) if inverted else (False,) * classes
        if len(self.inverted) != classes:
            raise ValueError("inverted needs one entry per class")
        self.index_width = max(1, ceil_log2(classes))
        self.tree_levels = argmax_tree_levels(classes, all_pairs)
        self.latency = argmax_latency(classes, levels_per_stage, split, all_pairs)
        super().__init__({
            "scores": In(data.ArrayLayout(score_width, classes)),
            "index": Out(self.index_width),
            # stage_valid[i]: the data entering register stage i is valid; as in Popcount,
            # only used to put a LUT in front of the flip-flop a carry-out goes to.
            "stage_valid": In(max(1, self.latency), init=(1 << max(1, self.latency)) - 1),
        })

    def _greater(self, r, r_inv, l, l_inv):
        """``r > l`` (true values) from operands in the given polarities."""
        w = self.score_width
        if not r_inv and l_inv:
            return (Cat(r, Const(0, 1)) + l)[w]  # r + ~l_true overflows iff r > l_true
        if r_inv and not l_inv:
            # l + ~r + 1 overflows iff l >= r; r > l is its negation (a tie is not a win)
            return ~(Cat(l, Const(0, 1)) + r + 1)[w]
        return (~r if r_inv else r) > (~l if l_inv else l)

    def _through_lut(self, value, stage):
        """``value`` for a register fed by a carry-out: through a LUT (``x ^ ~valid``, exact
        whenever the data is valid) where ``carry_out_lut``, so that on iCE40 the flip-flop
        shares the LUT's cell."""
        return value ^ ~self.stage_valid[stage] if self.carry_out_lut else value

    def _index_bit(self, m, right_wins, ri, li, registered, stage, name):
        """Bit ``right_wins ? ri : li`` of a winner's index, each bit a constant or a 1-bit
        signal: equal constants stay constant (no flip-flop). Where one side is a constant,
        Yosys would build the register from the flip-flop's set/reset pin, which nextpnr
        places apart from the LUT that drives it (the critical path of the head); XOR with
        ~valid (exact whenever the data is valid) keeps the LUT in front of the flip-flop."""
        if isinstance(ri, Const) and isinstance(li, Const) and ri.value == li.value:
            return ri
        mux = Mux(right_wins, ri, li)
        if not registered:
            return mux
        bit = Signal(name=name, reset_less=True)
        both_constant = isinstance(ri, Const) and isinstance(li, Const)
        m.d.sync += bit.eq(mux if both_constant else mux ^ ~self.stage_valid[stage])
        return bit

    @staticmethod
    def _delayed(m, bits, stages, name):
        """Index ``bits`` (constants or 1-bit signals) ``stages`` registers later."""
        out = []
        for b, bit in enumerate(bits):
            for k in range(stages if not isinstance(bit, Const) else 0):
                q = Signal(name=f"{name}_{b}_d{k}", reset_less=True)
                m.d.sync += q.eq(bit)
                bit = q
            out.append(bit)
        return out

    def elaborate(self, platform):
        m = Module()
        levels = self.tree_levels
        iw = self.index_width
        # Candidates (index bits, score, score is complemented), in class order: the left of
        # a pair has the lower indices.
        candidates = [([Const((c >> b) & 1, 1) for b in range(iw)], self.scores[c],
                       self.inverted[c]) for c in range(self.classes)]
        level = stage = 0
        while level < levels:
            registered = _registered(level, levels, self.levels_per_stage)
            domain = m.d.sync if registered else m.d.comb
            count = -(-len(candidates) // 2)
            # the level before the all-against-all stage gives each candidate's score in the
            # polarities its comparisons read: true as the higher of a pair, complemented
            # as the lower one
            both = level == levels - 1 and count > 1
            reduced = []
            for i in range(0, len(candidates), 2):
                j = i // 2
                name = f"{level}_{j}"
                # The polarity the next comparison wants: complemented on its left (for the
                # all-against-all stage, every other candidate).
                want_inv = j % 2 == 0 and j + 1 < count
                score = Signal(self.score_width, name=f"score{name}", reset_less=True)
                polarities = [p for p, wanted in ((False, j > 0), (True, j + 1 < count))
                              if wanted] if both else [want_inv]
                if i + 1 < len(candidates):
                    (li, ls, l_inv), (ri, rs, r_inv) = candidates[i], candidates[i + 1]
                    right_wins = Signal(name=f"right_wins{name}", reset_less=True)
                    greater = self._greater(rs, r_inv, ls, l_inv)  # strictly: ties stay left
                    if self.split and registered:
                        # Stage 1: the comparison alone, beside copies of the operands.
                        ls_q = Signal.like(ls, name=f"ls{name}", reset_less=True)
                        rs_q = Signal.like(rs, name=f"rs{name}", reset_less=True)
                        m.d.sync += [ls_q.eq(ls), rs_q.eq(rs)]
                        ls, rs = ls_q, rs_q
                        li = self._delayed(m, li, 1, f"li{name}")
                        ri = self._delayed(m, ri, 1, f"ri{name}")
                        # Through a LUT (see Popcount): the flip-flop shares its cell.
                        m.d.sync += right_wins.eq(self._through_lut(greater, stage))
                    else:
                        m.d.comb += right_wins.eq(greater)
                    at = stage + (1 if self.split else 0)
                    index = [self._index_bit(m, right_wins, ri[b], li[b], registered, at,
                                             f"index{name}_{b}") for b in range(iw)]
                    scores = []
                    for inv in polarities:
                        out = score if not scores else Signal.like(
                            score, name=f"score{name}_n", reset_less=True)
                        domain += out.eq(Mux(right_wins, ~rs if r_inv != inv else rs,
                                             ~ls if l_inv != inv else ls))
                        scores.append(out)
                else:
                    li, ls, l_inv = candidates[i]
                    waits = (2 if self.split else 1) if registered else 0
                    index = self._delayed(m, li, waits, f"li{name}")
                    if self.split and registered:  # the odd one out waits for stage 1
                        ls_q = Signal.like(score, name=f"ls{name}", reset_less=True)
                        m.d.sync += ls_q.eq(ls)
                        ls = ls_q
                    scores = []
                    for inv in polarities:
                        out = score if not scores else Signal.like(
                            score, name=f"score{name}_n", reset_less=True)
                        domain += out.eq(~ls if l_inv != inv else ls)
                        scores.append(out)
                if both:  # (index, true score or None, complemented score or None)
                    by = dict(zip(polarities, scores))
                    reduced.append((index, by.get(False), by.get(True)))
                else:
                    reduced.append((index, scores[0], want_inv))
            candidates = reduced
            level += 1
            stage += (2 if self.split else 1) if registered else 0
        if len(candidates) > 1:
            candidates_index = self._all_pairs(m, candidates, stage)
        else:
            candidates_index = candidates[0][0]
        m.d.comb += self.index.eq(Cat(*candidates_index))
        return m

    def _all_pairs(self, m, candidates, stage):
        """The all-against-all stage over ``candidates`` ((index bits, true score,
        complemented score), as the last pairwise level gives them): the winner's index
        bits, three registers later (comparisons, one-hot wins, index)."""
        g = len(candidates)
        beats = {}  # (i, j), i < j: candidate j's score is strictly above i's
        for i in range(g):
            for j in range(i + 1, g):
                # j's true score against i's complement: one plain carry chain
                si_n, sj = candidates[i][2], candidates[j][1]
                gt = Signal(name=f"gt{i}_{j}", reset_less=True)
                m.d.sync += gt.eq(self._through_lut(self._greater(sj, False, si_n, True), stage))
                beats[i, j] = gt
        wins = []
        for j in range(g):
            # j wins: above every lower candidate (ties go low) and below none of the higher
            terms = [beats[i, j] for i in range(j)] + [~beats[j, i] for i in range(j + 1, g)]
            win = Signal(name=f"win{j}", reset_less=True)
            term = terms[0]
            for t in terms[1:]:
                term = term & t
            m.d.sync += win.eq(term)
            wins.append(win)
        bits = []
        for b in range(self.index_width):
            terms = []
            for j, (index, _, _) in enumerate(candidates):
                bit = self._delayed(m, [index[b]], 2, f"cand{j}_{b}")[0]
                if isinstance(bit, Const):
                    if bit.value:
                        terms.append(wins[j])
                else:
                    terms.append(wins[j] & bit)
            if not terms:
                bits.append(Const(0, 1))
                continue
            out = Signal(name=f"index_bit{b}", reset_less=True)
            term = terms[0]
            for t in terms[1:]:
                term = term | t
            m.d.sync += out.eq(term)
            bits.append(out)
        return bits
