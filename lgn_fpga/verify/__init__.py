"""Cycle-accurate checks of the gateware against the golden model: the simulation
harness and its engines (pysim, CXXRTL of the RTL, the exported Verilog and the
synthesized netlist)."""
