"""A simulated board on a pseudo-terminal: a board top running in Amaranth's simulator with
its UART pins wired, bit by bit, to a pty. Anything that talks to a serial port — the
`lgn-fpga run` host runner, a terminal program — talks to the simulated gateware exactly as
it would to the FTDI of a real board. Used by `lgn-fpga sim-board` and by the tests.
"""

from __future__ import annotations

import os
import threading
import tty
from collections import deque

from amaranth.sim import Simulator

#: clocks per UART bit in simulation: the smallest the receiver takes, so runs stay short.
SIM_DIVISOR = 4


def uart_testbench(rx, tx, divisor: int, *, take_input, give_output, stop):
    """An async testbench that is the far end of a UART: bytes from ``take_input()`` go out
    on ``rx`` bit by bit (8N1); bits seen on ``tx`` become bytes for ``give_output(bytes)``.
    Runs until ``stop()`` is true."""

    async def bench(ctx):
        out_bits = deque()
        sampling = None  # (clocks to the next sample, bits so far, value)
        while not stop():
            if not out_bits:
                for byte in take_input():
                    frame = [0] + [(byte >> i) & 1 for i in range(8)] + [1]
                    for bit in frame:
                        out_bits.extend([bit] * divisor)
            ctx.set(rx, out_bits.popleft() if out_bits else 1)
            await ctx.tick()
            level = ctx.get(tx)
            if sampling is None:
                if level == 0:
                    sampling = (divisor + divisor // 2, 0, 0)  # middle of data bit 0
                continue
            wait, count, value = sampling
            wait -= 1
            if wait:
                sampling = (wait, count, value)
                continue
            if count < 8:
                sampling = (divisor, count + 1, value | level << count)
            else:
                if level != 1:
                    raise AssertionError("the top sent a byte without a stop bit")
                give_output(bytes([value]))
                sampling = None

    return bench


def exchange(top, data: bytes, *, until, divisor: int = SIM_DIVISOR, after: int = 0,
             max_cycles: int = 200_000) -> bytes:
    """Run ``top`` (with ``rx``/``tx`` ports) in Amaranth's simulator, send it ``data`` over
    its UART once ``after`` clocks have passed, and return what it sends back once
    ``until(received)`` is true or ``max_cycles`` clocks have run."""
    pending, received, cycles = [bytes(data)], bytearray(), [0]

    def take():
        return pending.pop() if pending and cycles[0] > after else b""

    def stop():
        cycles[0] += 1
        return until(bytes(received)) or cycles[0] > max_cycles

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(uart_testbench(top.rx, top.tx, divisor, take_input=take,
                                     give_output=received.extend, stop=stop))
    sim.run()
    return bytes(received)


class PtyBoard:
    """A top with ``rx``/``tx`` ports in a simulator thread, its UART on a pty.

    ``path`` is the serial device to open (the pty's slave side). Use as a context manager,
    or call :meth:`close`."""

    def __init__(self, top, *, divisor: int = SIM_DIVISOR):
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: a plain byte pipe like a USB UART
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)
        self._stop = threading.Event()
        self.error: BaseException | None = None
        sim = Simulator(top)
        sim.add_clock(1e-6)
        sim.add_testbench(uart_testbench(top.rx, top.tx, divisor, take_input=self._take,
                                         give_output=self._give, stop=self._stop.is_set))
        self._thread = threading.Thread(target=self._run, args=(sim,), daemon=True)
        self._thread.start()

    def _run(self, sim):
        try:
            sim.run()
        except BaseException as e:  # reported by close(); the thread must not die silently
            self.error = e

    def _take(self) -> bytes:
        try:
            return os.read(self.master, 64)
        except (BlockingIOError, OSError):
            return b""

    def _give(self, data: bytes) -> None:
        os.write(self.master, data)

    def inject(self, noise: bytes) -> None:
        """Line noise from the board's side, written beside the simulated UART's bytes."""
        os.write(self.master, noise)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        os.close(self.master)
        os.close(self._slave)
        if self.error is not None:
            raise self.error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
