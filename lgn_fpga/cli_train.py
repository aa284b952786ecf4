"""CLI commands of this stage (registered by lgn_fpga.cli)."""

COMMANDS = []
