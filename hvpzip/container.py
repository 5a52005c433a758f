"""The .hvpz container: a fixed binary header, then the ANS payload (uint32 little-endian words).

Layout (little-endian):
  magic b"HVPZ" | u8 version | u8 header length N | N bytes of header fields | u32 CRC32 of the header fields
  | payload | u32 CRC32 of the payload
Header fields: u32 width, u32 height, u8 mode, u8 map, u8 steps, u8 method, 16 bytes model hash,
u32 pixel CRC32, u8 model-id length + model id (utf-8).
Methods: 0 = bits-back ANS under the model; 1 = stored (raw pixels, for inputs the model cannot beat).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, dataclass

import numpy as np

MAGIC = b"HVPZ"
VERSION = 1
MODE_CODES = {"L": 0, "LA": 1, "RGB": 2, "RGBA": 3}
MAP_CODES = {"haar": 0, "legall53": 1, "pyramid": 2}
_FIXED = struct.Struct("<IIBBBB16sI")
METHOD_MODEL, METHOD_STORED = 0, 1
MAX_PIXELS = 1 << 30


class FormatError(ValueError):
    """The bytes are not a valid .hvpz file (foreign, truncated or corrupt)."""


@dataclass
class Header:
    """Everything the decoder needs besides the payload."""

    width: int
    height: int
    mode: str
    map_name: str
    steps: int
    method: int
    model_hash: str  # hex sha256 of the model file (first 16 bytes stored)
    pixel_crc: int
    model_id: str

    def to_dict(self) -> dict:
        return asdict(self)


def pack(header: Header, payload: bytes) -> bytes:
    """Serialize header and payload to .hvpz bytes."""
    model_id = header.model_id.encode()[:255]
    fields = _FIXED.pack(header.width, header.height, MODE_CODES[header.mode], MAP_CODES[header.map_name],
                         header.steps, header.method, bytes.fromhex(header.model_hash)[:16], header.pixel_crc)
    fields += bytes([len(model_id)]) + model_id
    return (MAGIC + bytes([VERSION, len(fields)]) + fields + struct.pack("<I", zlib.crc32(fields))
            + payload + struct.pack("<I", zlib.crc32(payload)))


def unpack_header(data: bytes) -> tuple[Header, int]:
    """Parse and check the header; returns (header, payload offset). Raises FormatError."""
    if len(data) < 6 or data[:4] != MAGIC:
        raise FormatError("not an hvpzip file (bad magic bytes)")
    if data[4] != VERSION:
        raise FormatError(f"unsupported hvpzip format version {data[4]} (this build reads version {VERSION})")
    n = data[5]
    end = 6 + n + 4
    if len(data) < end or n < _FIXED.size + 1:
        raise FormatError("truncated file (header incomplete)")
    fields = data[6 : 6 + n]
    if struct.unpack("<I", data[6 + n : end])[0] != zlib.crc32(fields):
        raise FormatError("corrupt header (checksum mismatch)")
    width, height, mode, map_code, steps, method, model_hash, pixel_crc = _FIXED.unpack(fields[: _FIXED.size])
    id_len = fields[_FIXED.size]
    model_id = fields[_FIXED.size + 1 : _FIXED.size + 1 + id_len].decode("utf-8", errors="replace")
    modes = {v: k for k, v in MODE_CODES.items()}
    map_names = {v: k for k, v in MAP_CODES.items()}
    if mode not in modes or map_code not in map_names or method > METHOD_STORED or width == 0 or height == 0:
        raise FormatError("corrupt header (invalid field)")
    if width * height > MAX_PIXELS:
        raise FormatError(f"image dimensions {width}x{height} exceed the supported maximum")
    header = Header(width, height, modes[mode], map_names[map_code], steps, method, model_hash.hex(), pixel_crc, model_id)
    return header, end


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Parse a whole .hvpz file into (header, payload). Raises FormatError."""
    header, offset = unpack_header(data)
    payload = data[offset:-4] if len(data) >= offset + 4 else b""
    if len(data) < offset + 4:
        raise FormatError("truncated file (payload incomplete)")
    if struct.unpack("<I", data[-4:])[0] != zlib.crc32(payload):
        raise FormatError("corrupt or truncated payload (checksum mismatch)")
    return header, payload


def words_to_bytes(words: np.ndarray) -> bytes:
    """ANS words as little-endian bytes."""
    return np.ascontiguousarray(words, dtype="<u4").tobytes()


def bytes_to_words(payload: bytes) -> np.ndarray:
    """Inverse of `words_to_bytes`. Raises FormatError on a length that is not whole words."""
    if len(payload) % 4:
        raise FormatError("corrupt payload (not a whole number of words)")
    return np.frombuffer(payload, dtype="<u4").astype(np.uint32)


def pixel_crc(pixels: np.ndarray) -> int:
    """CRC32 of the raw pixel bytes (row-major, interleaved channels)."""
    return zlib.crc32(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
