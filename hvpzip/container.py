"""The .hvpz container: a fixed binary header, metadata, then the ANS payload (uint32 little-endian words).

Layout of versions 2 to 10 (little-endian):
  magic b"HVPZ" | u8 version | u8 header length N | N bytes of header fields | u32 metadata length M
  | M bytes of metadata | u32 CRC32 of everything from the header fields to here | payload | u32 CRC32 of the payload
Header fields: u32 width, u32 height, u8 mode, u8 map, u8 steps, u8 method, 16 bytes model hash,
u32 pixel CRC32, u8 model-id length + model id (utf-8), and from version 5 on a u8 view count.
Metadata: records of a 4-byte ASCII tag, a u32 length and that many bytes (what restores the source
file's image beyond its pixels: original mode, palette, transparency, ICC profile, EXIF).
Version 1 (still read) had no metadata: the CRC32 followed the header fields directly.
Versions 1 and 2 (still read) cut T = 0 levels into bits-back tiles; versions 3 and 4 into plain tiles
(plan.DIRECT_TILE). Version 4 adds each level's calibration indices of the directly coded groups
(hvpzip.calibration; codec.Codec.calibrated). Version 5 adds the view count: how many flipped copies
of each tile the direct model's predictions average (codec.VIEW_FLIPS; 1 before version 5).
Version 6 (same header as 5) codes the calibrated direct coefficients under a Laplace/logistic mixture
whose shape each calibration key picks (codec.Codec.shaped), not under the plain Laplace.
Version 7 (same header) also multiplies their scales by a per-level table indexed by how surprising
the tile's already coded neighbours were (hvpzip.surprise; codec.Codec.surprising).
Version 8 (same header) adds, ahead of each T = 0 level of at least readout.MIN_POSITIONS positions,
a flag and, when set, the integer weights of a correction of the direct model's readout that the
encoder fitted to the image (hvpzip.readout; codec.Codec.refitted).
Version 9 (same layout as 8) runs the network through oneDNN at a fixed thread count instead of the
native convolutions (hvpzip.api.deterministic_coding): the same model, other float32 roundings.
Version 10 (same layout) runs those convolutions on channels-last tensors (about 30% faster; again
other float32 roundings, so the version says which the decoder must use), and its encoder also writes
a view count of 3 (codec.VIEW_FLIPS).
Methods: 0 = bits-back ANS under the model; 1 = stored (raw pixels, for inputs the model cannot beat).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

MAGIC = b"HVPZ"
VERSION = 10
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
META_TAGS = ("MODE", "PLTE", "TRNS", "ICCP", "EXIF")  # a tag this build does not know is refused, never dropped
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
    meta: dict[str, bytes] = field(default_factory=dict)
    views: int = 1  # flipped views the direct model averages (codec.VIEW_FLIPS)
    version: int = VERSION

    def to_dict(self) -> dict:
        out = asdict(self)
        out["meta"] = {tag: len(value) for tag, value in self.meta.items()}  # sizes: the bytes are binary
        return out


def pack(header: Header, payload: bytes) -> bytes:
    """Serialize header and payload to .hvpz bytes."""
    model_id = header.model_id.encode()[:255]
    fields = _FIXED.pack(header.width, header.height, MODE_CODES[header.mode], MAP_CODES[header.map_name],
                         header.steps, header.method, bytes.fromhex(header.model_hash)[:16], header.pixel_crc)
    fields += bytes([len(model_id)]) + model_id + bytes([header.views])
    meta = pack_meta(header.meta)
    checked = fields + struct.pack("<I", len(meta)) + meta
    return (MAGIC + bytes([VERSION, len(fields)]) + checked + struct.pack("<I", zlib.crc32(checked))
            + payload + struct.pack("<I", zlib.crc32(payload)))


def pack_meta(meta: dict[str, bytes]) -> bytes:
    """Metadata records: tag, length, bytes."""
    out = b""
    for tag, value in meta.items():
        if tag not in META_TAGS:
            raise ValueError(f"unknown metadata tag {tag!r}")
        out += tag.encode("ascii") + struct.pack("<I", len(value)) + value
    return out


def unpack_meta(data: bytes) -> dict[str, bytes]:
    """Inverse of `pack_meta`. Raises FormatError on malformed records or tags from a newer format."""
    meta, pos = {}, 0
    while pos < len(data):
        if pos + 8 > len(data):
            raise FormatError("corrupt metadata (truncated record)")
        tag, length = data[pos : pos + 4].decode("ascii", errors="replace"), struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if tag not in META_TAGS:
            raise FormatError(f"metadata record {tag!r} is unknown to this build (file from a newer hvpzip?)")
        if pos + 8 + length > len(data):
            raise FormatError("corrupt metadata (record overruns)")
        meta[tag] = data[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return meta


def unpack_header(data: bytes) -> tuple[Header, int]:
    """Parse and check the header; returns (header, payload offset). Raises FormatError."""
    if len(data) < 6 or data[:4] != MAGIC:
        raise FormatError("not an hvpzip file (bad magic bytes)")
    version = data[4]
    if version not in READABLE_VERSIONS:
        raise FormatError(f"unsupported hvpzip format version {version}"
                          f" (this build reads versions {READABLE_VERSIONS[0]} to {READABLE_VERSIONS[-1]})")
    n = data[5]
    fields_end = 6 + n
    if len(data) < fields_end + 4 or n < _FIXED.size + 1:
        raise FormatError("truncated file (header incomplete)")
    fields = data[6:fields_end]
    meta_bytes = b""
    if version >= 2:
        meta_len = struct.unpack("<I", data[fields_end : fields_end + 4])[0]
        if len(data) < fields_end + 8 + meta_len:
            raise FormatError("truncated file (header incomplete)")
        meta_bytes = data[fields_end + 4 : fields_end + 4 + meta_len]
        fields_end += 4 + meta_len
    end = fields_end + 4
    if struct.unpack("<I", data[fields_end:end])[0] != zlib.crc32(data[6:fields_end]):
        raise FormatError("corrupt header (checksum mismatch)")
    width, height, mode, map_code, steps, method, model_hash, pixel_crc = _FIXED.unpack(fields[: _FIXED.size])
    id_len = fields[_FIXED.size]
    model_id = fields[_FIXED.size + 1 : _FIXED.size + 1 + id_len].decode("utf-8", errors="replace")
    views = 1
    if version >= 5:
        if n < _FIXED.size + 2 + id_len:
            raise FormatError("truncated file (header incomplete)")
        views = fields[_FIXED.size + 1 + id_len]
    modes = {v: k for k, v in MODE_CODES.items()}
    map_names = {v: k for k, v in MAP_CODES.items()}
    if mode not in modes or map_code not in map_names or method > METHOD_STORED or width == 0 or height == 0:
        raise FormatError("corrupt header (invalid field)")
    if width * height > MAX_PIXELS:
        raise FormatError(f"image dimensions {width}x{height} exceed the supported maximum")
    header = Header(width, height, modes[mode], map_names[map_code], steps, method, model_hash.hex(), pixel_crc, model_id,
                    unpack_meta(meta_bytes), views, version)
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
