"""The serial frame format, defined once for both sides: the host runner (:mod:`lgn_fpga.host`)
and the gateware (:mod:`lgn_fpga.gateware.framing`) are built from the constants,
the CRC step and the :class:`PayloadLayout` in this module.

A frame on the wire, in either direction::

    SYNC  TYPE  LEN_LO LEN_HI  PAYLOAD[LEN]  CRC8

``CRC8`` is CRC-8 (polynomial 0x07, init 0x00, no reflection) over TYPE, LEN and PAYLOAD.

Resynchronisation: a receiver hunts for SYNC; a frame whose TYPE is unknown or whose LEN is
not the one length that TYPE allows is dropped at once (so garbage can never make a receiver
wait for 64 KiB), and the hunt restarts. A frame whose CRC fails is answered with an ERROR
frame (it looked like a real request, so the host gets a reason instead of a timeout). The
gateware also drops a half-received frame after an idle gap, so a host that died mid-frame
cannot wedge the board.

Requests (host to board): INFER (payload: seq, packed input bits, bit ``i`` in byte ``i//8``
at bit ``i%8``), INFO (empty payload). Responses: RESULT (seq, class, scores, little-endian),
INFO (see :func:`encode_info`), BIST (see :func:`decode_bist`), ERROR (code, type).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from lgn_fpga.errors import UserError
from lgn_fpga.net.graph import class_width

SYNC = 0xA5
VERSION = 1

REQ_INFER = 0x01
REQ_INFO = 0x02
RSP_RESULT = 0x81
RSP_INFO = 0x82
RSP_BIST = 0x83
RSP_ERROR = 0xEE

ERR_CRC = 0x01

CRC_POLY = 0x07
HEADER = 4  # SYNC, TYPE, LEN_LO, LEN_HI
HASH_BYTES = 8
INFO_LEN = 1 + 2 + 2 + 1 + 2 + HASH_BYTES + 4  # version inputs classes sw latency hash clk
BIST_LEN = 1 + 4 + 4 + 4  # passed, vectors, cycles, first failing vector (or 0xffffffff)
ERROR_LEN = 2


def crc8_step(crc: int, byte: int) -> int:
    """One byte of CRC-8/0x07. The gateware derives its XOR network from this function."""
    crc ^= byte
    for _ in range(8):
        crc = ((crc << 1) ^ CRC_POLY) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = crc8_step(crc, byte)
    return crc


def encode_frame(kind: int, payload: bytes) -> bytes:
    body = bytes([kind, len(payload) & 0xFF, len(payload) >> 8]) + bytes(payload)
    return bytes([SYNC]) + body + bytes([crc8(body)])


@dataclass(frozen=True)
class PayloadLayout:
    """Byte sizes of the INFER request and RESULT response for one net."""

    inputs: int
    classes: int
    score_width: int

    @property
    def in_bytes(self) -> int:
        return (self.inputs + 7) // 8

    @property
    def class_bytes(self) -> int:
        return (class_width(self.classes) + 7) // 8

    @property
    def score_bytes(self) -> int:
        return max(1, (self.score_width + 7) // 8)

    @property
    def request_len(self) -> int:
        return 1 + self.in_bytes

    @property
    def result_len(self) -> int:
        return 1 + self.class_bytes + self.classes * self.score_bytes

    def request_lengths(self) -> dict[int, int]:
        """The one payload length each request type may have (anything else is garbage)."""
        return {REQ_INFER: self.request_len, REQ_INFO: 0}

    def encode_request(self, seq: int, bits) -> bytes:
        bits = np.asarray(bits, dtype=np.uint8).reshape(-1)
        if bits.size != self.inputs:
            raise UserError(f"a request holds {self.inputs} input bits, got {bits.size}")
        packed = np.packbits(bits, bitorder="little").tobytes()
        return encode_frame(REQ_INFER, bytes([seq & 0xFF]) + packed)

    def decode_result(self, payload: bytes) -> tuple[int, int, np.ndarray]:
        """(seq, class, scores) from a RESULT payload."""
        if len(payload) != self.result_len:
            raise ValueError(f"RESULT payload is {len(payload)} bytes, expected "
                             f"{self.result_len}")
        seq = payload[0]
        cls = int.from_bytes(payload[1:1 + self.class_bytes], "little")
        at = 1 + self.class_bytes
        sb = self.score_bytes
        scores = np.array([int.from_bytes(payload[at + c * sb:at + (c + 1) * sb], "little")
                           for c in range(self.classes)], dtype=np.int32)
        return seq, cls, scores


@dataclass(frozen=True)
class BoardInfo:
    version: int
    inputs: int
    classes: int
    score_width: int
    latency: int
    model_hash: str  # first HASH_BYTES bytes of the model's sha256, as hex
    clock_hz: int


def encode_info(info: BoardInfo) -> bytes:
    return (struct.pack("<BHHBH", info.version, info.inputs, info.classes, info.score_width,
                        info.latency)
            + bytes.fromhex(info.model_hash[:2 * HASH_BYTES])
            + struct.pack("<I", info.clock_hz))


def decode_info(payload: bytes) -> BoardInfo:
    if len(payload) != INFO_LEN:
        raise ValueError(f"INFO payload is {len(payload)} bytes, expected {INFO_LEN}")
    version, inputs, classes, sw, latency = struct.unpack_from("<BHHBH", payload)
    h = payload[8:8 + HASH_BYTES].hex()
    (clock,) = struct.unpack_from("<I", payload, 8 + HASH_BYTES)
    return BoardInfo(version, inputs, classes, sw, latency, h, clock)


@dataclass(frozen=True)
class BistReport:
    passed: bool
    vectors: int
    cycles: int
    first_failure: int | None


def decode_bist(payload: bytes) -> BistReport:
    if len(payload) != BIST_LEN:
        raise ValueError(f"BIST payload is {len(payload)} bytes, expected {BIST_LEN}")
    passed, vectors, cycles, first = struct.unpack("<BIII", payload)
    return BistReport(bool(passed), vectors, cycles, None if first == 0xFFFFFFFF else first)


class Decoder:
    """Software receiver: feed bytes, get (type, payload) frames; resynchronises like the
    gateware. ``lengths`` maps each acceptable type to its one payload length."""

    def __init__(self, lengths: dict[int, int]):
        self.lengths = dict(lengths)
        self.buf = bytearray()
        self.dropped = 0  # bytes skipped while hunting
        self.bad_crc = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        frames = []
        while True:
            start = self.buf.find(SYNC)
            if start < 0:
                self.dropped += len(self.buf)
                self.buf.clear()
                return frames
            if start:
                self.dropped += start
                del self.buf[:start]
            if len(self.buf) < HEADER:
                return frames
            kind = self.buf[1]
            length = self.buf[2] | self.buf[3] << 8
            if self.lengths.get(kind) != length:
                self.dropped += 1
                del self.buf[:1]  # not a frame start: hunt again from the next byte
                continue
            total = HEADER + length + 1
            if len(self.buf) < total:
                return frames
            if crc8(bytes(self.buf[1:total - 1])) != self.buf[total - 1]:
                self.bad_crc += 1
                self.dropped += 1
                del self.buf[:1]
                continue
            frames.append((kind, bytes(self.buf[HEADER:total - 1])))
            del self.buf[:total]


def response_lengths(layout: PayloadLayout | None) -> dict[int, int]:
    lengths = {RSP_INFO: INFO_LEN, RSP_BIST: BIST_LEN, RSP_ERROR: ERROR_LEN}
    if layout is not None:
        lengths[RSP_RESULT] = layout.result_len
    return lengths
