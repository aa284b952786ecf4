"""Hostile input: every bad file, path or option gives one line on stderr naming it, a
non-zero exit and no traceback; nothing is overwritten; memory stays of the order of the
data (issue 13). Most cases run the CLI in-process; a few run it as a real subprocess."""

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lgn_fpga.cli import main
from lgn_fpga.net import graph as gg
from lgn_fpga.net.random_nets import random_graph


def fails_cleanly(*args, env=None, needle=None):
    """Run the CLI in-process; assert a non-zero exit, exactly one line on stderr, no
    traceback; return that line."""
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert result.exit_code != 0, (args, result.output)
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), (args, repr(result.exception))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, (args, result.stderr)
    assert "Traceback" not in result.output + result.stderr
    assert lines[0].startswith("lgn-fpga: error: "), lines
    if needle is not None:
        assert needle in lines[0], lines[0]
    return lines[0]


def run_process(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lgn_fpga.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def doc(**changes):
    d = {"format": gg.FORMAT, "version": 1, "inputs": 4, "classes": 1,
         "layers": [{"a": [0, 1], "b": [2, 3], "op": [1, 6]}]}
    d.update(changes)
    return d


def write_npz(path, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


# -- models -------------------------------------------------------------------------------


def test_index_of_two_to_the_seventy(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc(layers=[{"a": [2**70], "b": [0], "op": [1]}])))
    fails_cleanly("info", path, needle="layers[0].a[0]")


def test_deep_json(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    fails_cleanly("info", path, needle="nested too deeply")


def test_model_path_is_a_folder(tmp_path):
    fails_cleanly("info", tmp_path, needle="folder")


def test_unreadable_model():
    """A file that exists but cannot be read, even by root."""
    fails_cleanly("info", "/proc/self/mem", needle="cannot read")


def test_huge_inputs_refused_before_allocation(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc(inputs=10**9)))
    line = fails_cleanly("info", path, needle="LGN_FPGA_MAX_INPUTS")
    assert '"inputs" = 1000000000' in line


def test_limits_can_be_raised_and_bad_overrides_are_one_line(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc()))
    fails_cleanly("info", path, env={"LGN_FPGA_MAX_GATES": "1"}, needle="LGN_FPGA_MAX_GATES")
    fails_cleanly("info", path, env={"LGN_FPGA_MAX_GATES": "lots"}, needle="LGN_FPGA_MAX_GATES")
    assert CliRunner().invoke(main, ["info", str(path)],
                              env={"LGN_FPGA_MAX_GATES": "2"}).exit_code == 0


def test_too_many_layers(tmp_path):
    path = tmp_path / "m.json"
    layers = [{"a": [0], "b": [0], "op": [3]}] * 20
    path.write_text(json.dumps(doc(inputs=1, layers=layers)))
    fails_cleanly("info", path, env={"LGN_FPGA_MAX_LAYERS": "10"}, needle="layers")


def test_zip_bomb_is_refused_from_the_zip_directory(tmp_path):
    """1 MB on disk, 1 GB inflated: refused before one member is decompressed."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("header.npy", npy_bytes(np.frombuffer(b"{}", np.uint8)))
        with z.open("layers.0.a.npy", "w", force_zip64=True) as f:
            hdr = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                hdr, {"descr": "<i8", "fortran_order": False, "shape": (10**9 // 8,)})
            f.write(hdr.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(1000):
                f.write(chunk)
    assert path.stat().st_size < 2 << 20
    fails_cleanly("info", path, needle="uncompressed")


def test_npy_header_claims_more_than_the_member_holds(tmp_path):
    """A lying .npy header inside the zip: the member's real size decides, nothing is
    allocated for the claimed shape."""
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        hdr, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
    path = tmp_path / "lie.npz"
    write_npz(path, {"header.npy": npy_bytes(np.frombuffer(json.dumps(
        {"format": gg.FORMAT, "version": 1, "inputs": 4, "classes": 1}).encode(), np.uint8)),
        "layers.0.a.npy": hdr.getvalue() + bytes(64)})
    fails_cleanly("info", path, needle="layers.0.a.npy")


@pytest.mark.parametrize("case", ["corrupt", "encrypted", "method", "not-npy", "string-header",
                                  "object-header", "truncated", "not-zip"])
def test_bad_npz_members(tmp_path, case):
    path = tmp_path / "m.npz"
    good = io.BytesIO()
    gg.save(random_graph(8, 2, 8, 2, seed=1), tmp_path / "good.npz")
    raw = (tmp_path / "good.npz").read_bytes()
    if case == "corrupt":
        with zipfile.ZipFile(tmp_path / "good.npz") as z:
            info = z.getinfo("layers.0.a.npy")
        data = bytearray(raw)
        local = info.header_offset
        start = local + 30 + int.from_bytes(data[local + 26:local + 28], "little") \
            + int.from_bytes(data[local + 28:local + 30], "little")
        for i in range(start, start + info.compress_size):
            data[i] ^= 0x5A
        path.write_bytes(bytes(data))
    elif case == "encrypted":
        data = bytearray(raw)
        with zipfile.ZipFile(tmp_path / "good.npz") as z:
            infos = z.infolist()
        for info in infos:  # set the "encrypted" flag in the local and central headers
            data[info.header_offset + 6] |= 1
        central = data.find(b"PK\x01\x02")
        while central >= 0:
            data[central + 8] |= 1
            central = data.find(b"PK\x01\x02", central + 4)
        path.write_bytes(bytes(data))
    elif case == "method":
        data = bytearray(raw)
        central = data.find(b"PK\x01\x02")
        data[central + 10] = 99  # compression method 99 (AES) in the central directory
        path.write_bytes(bytes(data))
    elif case == "not-npy":
        write_npz(path, {"header.npy": b"x", "evil.txt": b"hello"})
    elif case == "string-header":
        write_npz(path, {"header.npy": npy_bytes(np.array(['{"format": 1}']))})
    elif case == "object-header":
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        write_npz(path, {"header.npy": buf.getvalue()})
    elif case == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    else:
        path.write_bytes(b"PK\x03\x04 definitely not a zip")
    del good
    fails_cleanly("info", path)


@pytest.mark.parametrize("key", ["\r", "a\nb", "\u2028", "\x1e"])
def test_a_line_break_inside_a_key_stays_on_the_one_error_line(tmp_path, key):
    # found by the property test below: a key read from the file was echoed raw
    path = tmp_path / "m.json"
    d = doc()
    d["layers"] = [{key: None}]
    path.write_text(json.dumps(d))
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "unknown key" in result.stderr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
                    max_leaves=20))
def test_any_json_document_is_a_clean_error(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("h") / "m.json"
    d = doc()
    d["layers"] = value if not isinstance(value, dict) else [value]
    path.write_text(json.dumps(d))
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    if result.exit_code != 0:
        assert len(result.stderr.strip().splitlines()) == 1


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=400))
def test_any_bytes_as_a_model(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("b")
    for name in ("m.npz", "m.json"):
        (folder / name).write_bytes(data)
        result = CliRunner().invoke(main, ["info", str(folder / name)])
        assert result.exit_code != 0
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        assert len(result.stderr.strip().splitlines()) == 1


def test_loading_memory_is_of_the_order_of_the_data(tmp_path):
    """A model whose arrays are 10 MB loads in well under 100 MB more (a real process, so
    ru_maxrss is this load's alone)."""
    path = tmp_path / "big.npz"
    gg.save(random_graph(256, 4, 250_000, 10, seed=3), path)
    code = ("import resource, sys; from lgn_fpga.net import graph as gg; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "gg.load(sys.argv[1]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")
    grown_kib = int(subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                                   capture_output=True, text=True).stdout)
    assert grown_kib < 100 * 1024


# -- input arrays -------------------------------------------------------------------------


@pytest.fixture
def bits_file(tmp_path):
    path = tmp_path / "bits.npy"
    np.save(path, np.zeros((3, 16), np.uint8))
    return path


@pytest.mark.parametrize("case", ["nan", "strings", "empty-file", "empty-array", "huge-header",
                                  "object", "npz", "folder", "truncated"])
def test_bad_input_arrays(tmp_path, model_file, case):
    path = tmp_path / "x.npy"
    if case == "nan":
        np.save(path, np.full((2, 16), np.nan))
    elif case == "strings":
        np.save(path, np.array([["a"] * 16]))
    elif case == "empty-file":
        path.write_bytes(b"")
    elif case == "empty-array":
        np.save(path, np.zeros((0, 16), np.uint8))
    elif case == "huge-header":
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "|u1", "fortran_order": False, "shape": (10**12, 16)})
            f.write(bytes(100))
    elif case == "object":
        np.save(path, np.array([None, 1], dtype=object), allow_pickle=True)
    elif case == "npz":
        np.savez(path, a=np.zeros(3))
    elif case == "folder":
        path.mkdir()
    else:
        np.save(path, np.zeros((100, 16), np.uint8))
        path.write_bytes(path.read_bytes()[:-50])
    out = tmp_path / "o.npy"
    fails_cleanly("predict", model_file, path, "-o", out, needle=str(path))
    assert not out.exists()


def test_nan_features_refused(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, np.full((1, 64), np.nan))
    fails_cleanly("predict", "digits", path, "--features", "-o", tmp_path / "o.npy",
                  needle="finite")


# -- outputs ------------------------------------------------------------------------------


def test_predict_checks_every_output_before_writing(tmp_path, model_file, bits_file):
    good = tmp_path / "good.npy"
    good.write_bytes(b"precious")
    fails_cleanly("predict", model_file, bits_file, "-o", good, "--scores",
                  tmp_path / "missing" / "s.npy", needle="missing")
    assert good.read_bytes() == b"precious"


UNWRITABLE = "/proc/lgn-fpga-test"  # not writable even for root


@pytest.mark.parametrize("argv", [
    ["predict", "{model}", "{bits}", "-o", f"{UNWRITABLE}/o.npy"],
    ["export", "{model}", "--format", "verilog", "-o", f"{UNWRITABLE}/o.v"],
    ["optimize", "{model}", "-o", f"{UNWRITABLE}/o.json"],
    ["random-model", "--inputs", "4", "--layers", "1", "--width", "4", "--classes", "2", "-o",
     f"{UNWRITABLE}/o.json"],
    ["vectors", "{model}", "-o", f"{UNWRITABLE}/v.npz"],
    ["simulate", "{model}", "--vectors", "2", "--vcd", f"{UNWRITABLE}/w.vcd"],
    ["predict", "{model}", "{bits}", "-o", "/proc/o.npy"],
    ["predict", "{model}", "{bits}", "-o", "{model}/o.npy"],
])
def test_unwritable_outputs(model_file, bits_file, argv):
    args = [a.format(model=model_file, bits=bits_file) for a in argv]
    fails_cleanly(*args)


@pytest.mark.parametrize("command", [
    ["simulate", "{model}"], ["vectors", "{model}", "-o", "{tmp}/v.npz"],
    ["random-model", "--inputs", "4", "--layers", "1", "--width", "4", "--classes", "2",
     "-o", "{tmp}/r.json"]])
def test_negative_seed(tmp_path, model_file, command):
    args = [a.format(model=model_file, tmp=tmp_path) for a in command]
    fails_cleanly(*args, "--seed", "-1", needle="--seed")


@pytest.mark.parametrize("name", ["", "a b; endmodule", "1abc", "module", "x" * 300, "a\nb"])
def test_export_name(tmp_path, model_file, name):
    out = tmp_path / "o.v"
    fails_cleanly("export", model_file, "--format", "verilog", "-o", out, "--name", name,
                  needle="--name")
    assert not out.exists()


def test_vectors_and_sizes_checked_against_memory(tmp_path, model_file):
    fails_cleanly("simulate", model_file, "--vectors", 100_000_000,
                  env={"LGN_FPGA_MAX_BYTES": str(1 << 30)}, needle="--vectors")
    fails_cleanly("vectors", model_file, "-o", tmp_path / "v.npz", "--count", 100_000_000,
                  env={"LGN_FPGA_MAX_BYTES": str(1 << 30)}, needle="--count")
    fails_cleanly("random-model", "--inputs", 4, "--layers", 2, "--width", 10**9, "--classes",
                  2, "-o", tmp_path / "r.json", needle="LGN_FPGA_MAX_GATES")


def test_difflogic_pickle_cannot_run_code(tmp_path):
    """A .pt whose pickle calls os.system: refused with one line, and the command never
    runs (it would create a file)."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path, pickle_module=pickle)
    line = fails_cleanly("import-difflogic", path, "-o", tmp_path / "o.json", "--classes", 2)
    assert "refusing" in line and "system" in line
    assert not marker.exists()


def test_difflogic_pickle_of_a_foreign_class_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "m.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), path)
    line = fails_cleanly("import-difflogic", path, "-o", tmp_path / "o.json", "--classes", 2)
    assert "Linear" in line


# -- a real process -----------------------------------------------------------------------


def test_real_process_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = run_process("info", path)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


# -- the compiled engine ------------------------------------------------------------------


@pytest.fixture
def tiny_model(tmp_path):
    path = tmp_path / "tiny.json"
    gg.save(random_graph(6, 2, 8, 2, seed=11), path)
    return path


def test_bad_cxx_is_one_line(tiny_model, tmp_path):
    fails_cleanly("simulate", tiny_model, "--engine", "cxxrtl", "--vectors", 4,
                  env={"CXX": "/nonexistent/c++", "LGN_FPGA_CACHE": str(tmp_path / "c")},
                  needle="$CXX")


def test_bad_cache_folder_is_one_line(tiny_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    fails_cleanly("simulate", tiny_model, "--engine", "cxxrtl", "--vectors", 4,
                  env={"LGN_FPGA_CACHE": str(blocker)}, needle="LGN_FPGA_CACHE")


def test_corrupt_cache_entry_is_rebuilt(tiny_model, tmp_path):
    env = {"LGN_FPGA_CACHE": str(tmp_path / "cache")}
    args = ["simulate", str(tiny_model), "--engine", "cxxrtl", "--vectors", "8"]
    first = CliRunner().invoke(main, args, env=env)
    assert first.exit_code == 0, first.output
    (binary,) = (tmp_path / "cache" / "cxxrtl").glob("*/sim")
    binary.write_bytes(b"")  # a disk-full or killed copy left an empty file
    again = CliRunner().invoke(main, args, env=env)
    assert again.exit_code == 0, again.output
    assert binary.read_bytes()[:4] == b"\x7fELF"


def test_pll_frequencies_it_cannot_make(tmp_path):
    from lgn_fpga.gateware.pll import ecp5_pll_params, ice40_pll_params

    with pytest.raises(ValueError, match=r"--freq 10 MHz.*16\.\.275 MHz.*nearest possible: 16"):
        ice40_pll_params(12e6, 10e6)
    with pytest.raises(ValueError, match="nearest possible"):
        ice40_pll_params(12e6, 500e6)
    with pytest.raises(ValueError, match="positive number"):
        ice40_pll_params(12e6, float("nan"))
    with pytest.raises(ValueError, match="ECP5.*nearest possible"):
        ecp5_pll_params(25e6, 1e6)
    assert abs(ice40_pll_params(12e6, 40e6)["freq"] - 40e6) <= 0.01 * 40e6
    # build reports its stages on stderr as it goes; the error is its one last line
    r = CliRunner().invoke(main, ["build", "--board", "icebreaker", "--freq", "10", "--out",
                                  str(tmp_path / "b")])
    assert r.exit_code != 0 and isinstance(r.exception, SystemExit)
    errors = [line for line in r.stderr.splitlines() if line.startswith("lgn-fpga: error")]
    assert len(errors) == 1 and "nearest possible: 16" in errors[0]
    assert "Traceback" not in r.output


@pytest.mark.parametrize("args", [
    ("build", "--board", "icebreaker", "--freq", "nan"),
    ("build", "--board", "icebreaker", "--freq", "inf"),
    ("run", "--port", "/dev/null", "--timeout", "nan", "x.npy"),
    ("simulate", "digits", "--board", "icebreaker", "--freq", "nan"),
])
def test_non_finite_numbers_are_refused_by_name(args):
    fails_cleanly(*args, needle="not a finite number")


# -- no orphans after SIGKILL -------------------------------------------------------------


def _proc_table() -> dict:
    """pid -> (parent pid, start time, state) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        table[int(entry)] = (int(fields[1]), int(fields[19]), fields[0].decode())
    return table


def _descendants(root: int) -> dict:
    """pid -> start time of every living descendant of ``root`` (the start time tells a
    process from a later one that reuses its pid)."""
    table = _proc_table()
    found, todo = {}, [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, start, state) in table.items():
            if ppid == parent and pid not in found and state != "Z":
                found[pid] = start
                todo.append(pid)
    return found


def _survivors(processes: dict) -> list:
    table = _proc_table()
    return [pid for pid, start in processes.items()
            if pid in table and table[pid][1] == start and table[pid][2] != "Z"]


def _sigkill_leaves_no_orphans(argv, *, deep: int, timeout: float, env=None) -> None:
    """Start ``argv``; once it has ``deep`` levels of descendants, SIGKILL it and assert that
    every descendant it had is gone within a few seconds."""
    import signal
    import time

    parent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            tree = _descendants(parent.pid)
            table = _proc_table()
            # levels below the parent: a grandchild's parent is one of the descendants
            levels = {pid: 1 for pid in tree if table.get(pid, (0,))[0] == parent.pid}
            for _ in range(deep):
                for pid in tree:
                    ppid = table.get(pid, (0,))[0]
                    if ppid in levels:
                        levels[pid] = levels[ppid] + 1
            if levels and max(levels.values()) >= deep:
                break
            assert parent.poll() is None, "the command ended before it started its tools"
            assert time.monotonic() < deadline, f"no {deep}-deep process tree: {tree}"
            time.sleep(0.1)
        tree = _descendants(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _survivors(tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {pid: open(f"/proc/{pid}/cmdline", "rb").read()[:200]
                for pid in _survivors(tree)}
        for pid in left:   # clean up before failing
            os.kill(pid, signal.SIGKILL)
        assert not left, f"orphans after SIGKILL: {left}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


_STAND_IN = """
import subprocess, sys
from lgn_fpga.flow import processes
script = sys.executable + " -c 'import time; time.sleep(300)' & " \\
         + sys.executable + " -c 'import time; time.sleep(300)' & wait"
if sys.argv[1] == "popen":
    subprocess.Popen(["sh", "-c", script], **processes.popen_kwargs()).wait()
else:
    processes.run_group(["sh", "-c", script])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("how", ["popen", "run_group"])
def test_sigkill_leaves_no_grandchildren(how):
    """A stage's shell dies with lgn-fpga (PR_SET_PDEATHSIG), and so do the tools the shell
    started (the reaper): SIGKILL the parent, then no descendant may be left."""
    _sigkill_leaves_no_orphans([sys.executable, "-c", _STAND_IN, how], deep=2, timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_of_a_real_build_leaves_no_orphans(tiny_model, tmp_path):
    """`lgn-fpga build` killed outright while Yosys runs under the stage's shell."""
    _sigkill_leaves_no_orphans(
        [sys.executable, "-m", "lgn_fpga.cli", "build", "--board", "icebreaker", "--model",
         str(tiny_model), "--out", str(tmp_path / "out")], deep=2, timeout=120)
