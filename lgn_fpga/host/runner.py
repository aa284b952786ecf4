"""The host side of the UART top: frames requests, reads answers, measures the link.

Everything about the bytes on the wire comes from :mod:`lgn_fpga.protocol`, the same module
the gateware is built from. Requests are pipelined (``window`` in flight) so the link, not
the USB round trip, sets the throughput; answers must come back in order.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from lgn_fpga import protocol as p
from lgn_fpga.errors import UserError


class BoardError(UserError):
    """The board answered something wrong, or nothing at all."""


@dataclass
class RunResult:
    scores: np.ndarray
    classes: np.ndarray
    seconds: float
    latencies: np.ndarray  # seconds from sending each request to its answer
    dropped_bytes: int = 0
    info: p.BoardInfo | None = None
    extra: dict = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return len(self.classes) / self.seconds if self.seconds > 0 else float("inf")


def open_serial(port: str, baud: int):
    import serial

    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=0.02, write_timeout=5)
    except (serial.SerialException, OSError, ValueError) as e:
        raise UserError(f"cannot open serial port {port}: {e}") from None


class Board:
    """A connection to a board running the UART top (or the BIST top, for :meth:`bist`)."""

    def __init__(self, port: str, *, baud: int = 115200, timeout: float = 2.0, link=None):
        self.port = port
        self.baud = baud
        self.timeout = timeout
        self.link = link if link is not None else open_serial(port, baud)
        self.layout: p.PayloadLayout | None = None
        self.decoder = p.Decoder(p.response_lengths(None))
        self.board_info: p.BoardInfo | None = None
        self._pending: deque[tuple[int, bytes]] = deque()  # decoded, not yet consumed

    def close(self):
        self.link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- bytes ------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.link.write(data)
        self.link.flush()

    def _set_layout(self, layout: p.PayloadLayout) -> None:
        self.layout = layout
        self.decoder.lengths = p.response_lengths(layout)

    def read_frame(self, kinds, *, timeout: float | None = None, what: str = "an answer"):
        """The next frame of one of ``kinds``; ERROR frames raise; other frames and garbage
        are skipped. Times out with a message that says what to check."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if self._pending:
                kind, payload = self._pending.popleft()
                if kind == p.RSP_ERROR:
                    code, req = payload[0], payload[1]
                    why = "CRC mismatch" if code == p.ERR_CRC else f"error code {code}"
                    raise BoardError(f"the board rejected a request frame (type 0x{req:02x}): "
                                     f"{why}; the serial line may be noisy or the baud rate "
                                     f"wrong")
                if kind in kinds:
                    return kind, payload
                continue
            if time.monotonic() > deadline:
                raise BoardError(
                    f"no {what} from the board on {self.port} within "
                    f"{self.timeout if timeout is None else timeout:g} s "
                    f"({self.decoder.dropped} unframed bytes seen): is it flashed with the "
                    f"right top, and is {self.baud} baud right?")
            chunk = self.link.read(max(1, self.link.in_waiting or 1))
            if chunk:
                self._pending.extend(self.decoder.feed(chunk))

    # -- requests ---------------------------------------------------------------------------

    def info(self, *, attempts: int = 3) -> p.BoardInfo:
        """Ask the board what it runs. Retried: a first request may land in the middle of a
        stale half-frame, which the board drops after its idle timeout."""
        last = None
        for _ in range(attempts):
            self.send_raw(p.encode_frame(p.REQ_INFO, b""))
            try:
                _, payload = self.read_frame({p.RSP_INFO}, what="INFO answer")
            except BoardError as e:
                last = e
                continue
            info = p.decode_info(payload)
            if info.version != p.VERSION:
                raise BoardError(f"the board speaks protocol version {info.version}; this "
                                 f"lgn-fpga speaks {p.VERSION}: rebuild the bitstream")
            self.board_info = info
            self._set_layout(p.PayloadLayout(info.inputs, info.classes, info.score_width))
            return info
        raise last

    def infer(self, bits: np.ndarray, *, window: int = 4, progress=None) -> RunResult:
        """Classify every row of ``bits`` (samples x inputs, 0/1) on the board.

        ``progress(done, total)`` (optional) hears how many answers are in, at most ten
        times a second and once at the end (a progress bar with samples/s)."""
        if self.layout is None:
            self.info()
        layout = self.layout
        bits = np.asarray(bits, dtype=np.uint8)
        if bits.ndim != 2 or bits.shape[1] != layout.inputs:
            raise UserError(f"input bits have shape {bits.shape}; the board's net expects "
                            f"(samples, {layout.inputs})")
        window = max(1, min(window, 8))
        n = len(bits)
        scores = np.zeros((n, layout.classes), dtype=np.int32)
        classes = np.zeros(n, dtype=np.int64)
        latencies = np.zeros(n)
        in_flight: deque[tuple[int, float]] = deque()
        sent = done = 0
        start = next_report = time.monotonic()
        while done < n:
            while sent < n and len(in_flight) < window:
                self.send_raw(layout.encode_request(sent & 0xFF, bits[sent]))
                in_flight.append((sent, time.monotonic()))
                sent += 1
            _, payload = self.read_frame({p.RSP_RESULT},
                                         what=f"answer to request {in_flight[0][0]}")
            seq, cls, sc = layout.decode_result(payload)
            index, t_sent = in_flight.popleft()
            if seq != index & 0xFF:
                raise BoardError(f"answer {seq} came back where {index & 0xFF} was expected: "
                                 f"a request or answer was lost on the line")
            if cls >= layout.classes:
                raise BoardError(f"the board answered class {cls}, but the net has "
                                 f"{layout.classes} classes")
            latencies[index] = time.monotonic() - t_sent
            scores[index] = sc
            classes[index] = cls
            done += 1
            if progress is not None and (done == n or time.monotonic() >= next_report):
                progress(done, n)
                next_report = time.monotonic() + 0.1
        return RunResult(scores, classes, time.monotonic() - start, latencies,
                         self.decoder.dropped, self.board_info)

    def bist(self) -> p.BistReport:
        """Any byte makes the BIST top repeat its report."""
        for _ in range(3):
            self.send_raw(b"\x00")
            try:
                _, payload = self.read_frame({p.RSP_BIST}, what="BIST report")
            except BoardError:
                continue
            return p.decode_bist(payload)
        raise BoardError(f"no BIST report from the board on {self.port}: is the BIST top "
                         f"flashed, and is {self.baud} baud right?")


def wire_limit(layout: p.PayloadLayout, baud: int) -> float:
    """Samples per second the serial line allows (10 bits per byte, both directions at
    once, so the longer frame sets the pace)."""
    longest = max(layout.request_len, layout.result_len) + p.HEADER + 1
    return baud / (10 * longest)
