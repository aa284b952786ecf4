"""The stage rule (docs/architecture.md), checked with import-linter's own contracts from
pyproject.toml, and no import cycle among lgn_fpga's modules."""

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_lint_imports_keeps_every_contract():
    tool = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([tool, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_no_import_cycle_among_modules():
    graph = grimp.build_graph("lgn_fpga")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("lgn_fpga") and imported != module and \
                    graph.chain_exists(importer=imported, imported=module):
                # a package's __init__ importing its own children is not a cycle of stages
                if not (module.startswith(imported + ".") or imported.startswith(module + ".")):
                    cycles.append((module, imported))
    assert not cycles, f"import cycles: {cycles[:5]}"
