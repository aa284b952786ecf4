"""The public API (docs/api.md): the documented names exist, and the embedding example in the
document runs as written."""

import re
import sys
from pathlib import Path

import lgn_fpga

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_documented_names_are_importable():
    from lgn_fpga import (  # noqa: F401
        LogicNetCore,
        build,
        export,
        load,
        optimize,
        predict,
        save,
        simulate,
    )


def test_importing_lgn_fpga_does_not_import_amaranth():
    import subprocess

    code = "import sys, lgn_fpga, lgn_fpga.host.check; print('amaranth' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_the_embedding_example_in_docs_api_md_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    example = next(b for b in blocks if "class CountZeros" in b)
    exec(compile(example, str(DOC), "exec"), {"__name__": "docs_api_example"})
    assert "classes" in capsys.readouterr().out


def test_unknown_attribute_is_an_attribute_error():
    try:
        lgn_fpga.no_such_name  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("lgn_fpga.no_such_name should not exist")
