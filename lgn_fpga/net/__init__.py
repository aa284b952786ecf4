"""The net itself, numpy only: the op table, the gate-graph format, the golden model,
the optimizer, vector sets and random nets. Depends on nothing else of ours but errors
and files."""
