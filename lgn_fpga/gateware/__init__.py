"""Amaranth gateware: the parallel core, its class head, the UART and frame gateware,
the board tops and clock generation. Depends on ``net``."""
