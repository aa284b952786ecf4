"""`lgn-fpga verify`: the synthesized netlist proved equal to the gate graph (yosys SAT), and
a netlist with one LUT corrupted proved different, naming the output."""

import json
import re

import pytest
from click.testing import CliRunner

from lgn_fpga.cli import main
from lgn_fpga.net import graph as gg
from lgn_fpga.net.random_nets import random_graph
from lgn_fpga.verify import formal

pytestmark = pytest.mark.slow  # real yosys synthesis and SAT; still runs in CI


@pytest.fixture(scope="module")
def small():
    return random_graph(16, 3, 48, 4, seed=3)


@pytest.fixture(scope="module")
def synthesized(small):
    return formal.synthesize(small, family="ice40")


@pytest.fixture(scope="module")
def piped(small):
    """Registers after every gate layer but the last: a cut at each."""
    return formal.synthesize(small, family="ice40", pipeline=1)


def test_reference_is_the_gate_graph(small):
    """The reference module has one assign per gate, from the truth table."""
    text = formal.reference_verilog(small)
    assert len(re.findall(r"^  assign l\d+\[\d+\] = ", text, re.M)) == small.gates


def test_netlist_is_balanced(synthesized):
    netlist, latency = synthesized
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "netlist.il").write_text(netlist)
        formal._yosys("read_rtlil netlist.il\nwrite_json netlist.json\n", Path(tmp), "json")
        doc = json.loads((Path(tmp) / "netlist.json").read_text())
    formal.check_balanced(doc, latency)
    with pytest.raises(formal.UserError, match="not balanced"):
        formal.check_balanced(doc, latency + 1)


def test_proves_the_ice40_netlist(small, synthesized):
    netlist, latency = synthesized
    proved, difference, _ = formal.prove_netlist(small, netlist, latency, family="ice40",
                                                 timeout=600)
    assert proved and difference is None


def test_one_corrupted_lut_is_found_and_named(small, synthesized):
    netlist, latency = synthesized
    luts = list(re.finditer(r"parameter \\LUT_INIT 16'([01]+)", netlist))
    found = []
    for m in (luts[len(luts) // 3], luts[len(luts) // 2]):
        bits = m.group(1)
        # flip every entry: the LUT computes the complement, which must show at an output
        flipped = "".join("1" if b == "0" else "0" for b in bits)
        bad = netlist[:m.start(1)] + flipped + netlist[m.end(1):]
        proved, difference, _ = formal.prove_netlist(small, bad, latency, family="ice40",
                                                     timeout=600)
        found.append((proved, difference))
    assert all(not proved for proved, _ in found), found
    # the first differing bit of the piece that fails: a class output, or a register at a
    # cut (a gate layer's, or the head's first) against the gate graph's gate
    named = r"(out_(class|scores)\[\d+\]|layer\d+_q\[\d+\]|popcount\d+\.\w+(\[\d\])?) differs"
    assert all(re.match(named, d) for _, d in found), found


def test_the_proof_is_cut_into_pieces(small, piped):
    """The netlist is cut at every gate layer's register and after the head's first
    registers; each piece is small (see docs/verify.md)."""
    netlist, latency = piped
    proved, _, _, stages = formal._prove_staged(small, netlist, latency, family="ice40",
                                                timeout=600, net=None)
    assert proved
    registered = sorted({int(n) for n in re.findall(r"wire width \d+ \\layer(\d+)_q", netlist)})
    assert registered, "the core registers no gate layer: nothing to cut"
    # a piece per gate stage, then: to the head's first registers, the adder trees, the
    # argmax
    last = small.depth - 1
    assert [s.stop for s in stages] == registered + [last, last, None]
    assert all(len(s.gate["cells"]) < 400 for s in stages)


def test_a_swapped_register_is_found(small, piped):
    """Two registers of a cut layer exchanged (each still a real gate's value): the piece
    after the cut computes from the wrong gates, and the proof fails."""
    netlist, latency = piped
    q = re.search(r"wire width (\d+) \\(layer\d+_q)", netlist)
    # the flip-flops driving bits 0 and 1 of that wire, by their Q connections
    cells = list(re.finditer(rf"connect \\Q \\{q.group(2)} \[(\d+)\]\n", netlist))
    if len(cells) < 2:
        cells = list(re.finditer(rf"connect \\Q \\{q.group(2)}\[(\d+)\]\n", netlist))
    assert len(cells) >= 2, "no flip-flops found on the cut wire"
    a, b = cells[0], cells[1]
    swapped = (netlist[:a.start(1)] + b.group(1) + netlist[a.end(1):b.start(1)] + a.group(1)
               + netlist[b.end(1):])
    proved, difference, _ = formal.prove_netlist(small, swapped, latency, family="ice40",
                                                 timeout=600)
    assert not proved and " differs" in difference, difference


def test_cli_verify_proves(tmp_path, small):
    path = tmp_path / "small.json"
    gg.save(small, path)
    r = CliRunner().invoke(main, ["verify", str(path), "--board", "icebreaker", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["proved"] and result["family"] == "ice40" and result["gates"] == small.gates


def test_cli_verify_ecp5(tmp_path):
    path = tmp_path / "tiny.json"
    gg.save(random_graph(8, 2, 16, 2, seed=5), path)
    r = CliRunner().invoke(main, ["verify", str(path), "--board", "ulx3s-85f"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("PROVED")


def test_cli_verify_bad_board(model_file):
    r = CliRunner().invoke(main, ["verify", str(model_file), "--board", "nope"])
    assert r.exit_code != 0 and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["digits", "fashion-mnist"])
def test_shipped_vector_sets_match_the_naive_evaluator(name):
    """The shipped vector sets pin what every engine must compute: check them against the
    per-gate evaluator that shares no code with the golden model, not against golden."""
    from lgn_fpga.models import resolve
    from lgn_fpga.net import golden, vectors

    graph = gg.load(resolve(name))
    vs = vectors.for_model(name, graph)
    naive = golden.naive_predict(graph, vs.bits)
    assert (naive.scores == vs.scores).all()
    assert (naive.classes == vs.classes).all()
    assert ((0 <= vs.classes) & (vs.classes < graph.classes)).all()


def test_cli_verify_digits_on_icebreaker():
    """The shipped digits model, as CI must prove it: `lgn-fpga verify digits --board
    icebreaker` (synthesis and proof; the time is printed)."""
    r = CliRunner().invoke(main, ["verify", "digits", "--board", "icebreaker"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("PROVED"), r.stdout
    print(r.stdout)
