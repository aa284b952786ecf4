"""The host side of a board: the serial runner and its check against golden. Never
imports Amaranth."""
