"""The streaming timing contract that the core and the two halves of its class head share,
written once and put into each class's docstring (as Amaranth's ``FIFOInterface`` shares
its doc template)."""

#: Inserted where a docstring says ``{stream_contract}``.
STREAM_CONTRACT = """\
    Timing contract (the same for :class:`~lgn_fpga.gateware.core.LogicNetCore`,
    :class:`~lgn_fpga.gateware.head.Popcount` and :class:`~lgn_fpga.gateware.head.ArgMax`):

    * one input per cycle: an input presented in cycle ``t`` (valid high during cycle
      ``t``, sampled by the clock edge that ends it) comes out in cycle ``t + latency``,
      with its valid high, whatever came before or after it (gaps included);
    * ``latency`` is declared as an attribute before elaboration and equals the number of
      registers on the valid pipe;
    * data registers have no reset (a design-wide reset net was the critical path in
      earlier measurements); only the valid pipe resets, so outputs are meaningful only
      while valid is high;
    * ties in any argmax go to the lowest class index, as in the golden model.
"""


def with_contract(cls):
    """Class decorator: fill ``{stream_contract}`` in ``cls.__doc__``."""
    if cls.__doc__:
        cls.__doc__ = cls.__doc__.replace("{stream_contract}", STREAM_CONTRACT)
    return cls
