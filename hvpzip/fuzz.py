"""Fuzzing the decoder: mutated .hvpz files must fail with FormatError or decode to the exact original.

    python -m hvpzip.fuzz --count 5000 --seed 0

Mutations: truncation, bit flips, inserted and deleted bytes, random bytes, and "valid-looking"
files whose header fields or payload are corrupted with the checksums recomputed, so that the
decoder itself (not only the CRCs) meets garbage.
"""
from __future__ import annotations

import argparse
import json
import re
import struct
import sys
import time
import zlib
from collections import Counter

import numpy as np

MUTATIONS = ("truncate", "flip", "insert", "delete", "random", "payload+crc", "header+crc")


def _refresh_crcs(data: bytearray, payload_start: int) -> bytes:
    """Recompute the header and payload CRC32s of a version-2 file whose payload starts at payload_start."""
    header_crc_at = payload_start - 4
    data[header_crc_at:payload_start] = struct.pack("<I", zlib.crc32(bytes(data[6:header_crc_at])))
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[payload_start:-4])))
    return bytes(data)


def mutate(data: bytes, kind: str, rng: np.random.Generator, payload_start: int) -> bytes:
    """One mutated copy of a valid file."""
    out = bytearray(data)
    n = len(out)
    if kind == "truncate":
        return bytes(out[: int(rng.integers(0, n))])
    if kind == "flip":
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, n * 8))
            out[i // 8] ^= 1 << (i % 8)
        return bytes(out)
    if kind == "insert":
        i = int(rng.integers(0, n + 1))
        return bytes(out[:i] + bytes(rng.integers(0, 256, int(rng.integers(1, 5)), dtype=np.uint8)) + out[i:])
    if kind == "delete":
        i = int(rng.integers(0, n))
        return bytes(out[:i] + out[i + int(rng.integers(1, 5)):])
    if kind == "random":
        head = data[:6] if rng.random() < 0.5 else b""
        return head + bytes(rng.integers(0, 256, int(rng.integers(0, 2 * n)), dtype=np.uint8))
    if kind == "payload+crc":
        if n - 4 > payload_start:
            for _ in range(int(rng.integers(1, 4))):
                out[int(rng.integers(payload_start, n - 4))] = int(rng.integers(0, 256))
        return _refresh_crcs(out, payload_start)
    if kind == "header+crc":  # width, height, mode, map, steps, method, pixel CRC ... with valid checksums
        out[int(rng.integers(6, payload_start - 4))] = int(rng.integers(0, 256))
        return _refresh_crcs(out, payload_start)
    raise ValueError(f"unknown mutation {kind}")


def check_one(data: bytes, original: np.ndarray, model) -> str:
    """Decode mutated bytes; returns 'rejected: <reason>' or 'identical'. Anything else raises AssertionError."""
    from .api import decompress
    from .container import FormatError

    try:
        pixels = decompress(data, model)
    except FormatError as err:
        return "rejected: " + re.sub(r"\d+", "N", str(err).split(" (")[0].split(":")[0])
    if pixels.shape != original.shape or not np.array_equal(pixels, original):
        raise AssertionError("a corrupt file decoded to different pixels without an error")
    return "identical"


def sample_files(model) -> list[tuple[bytes, np.ndarray, int]]:
    """Valid files to mutate, (bytes, pixels, payload offset): model-coded at T=0 and T=model's, stored, palette."""
    from .api import encode_image
    from .container import unpack_header

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:56]
    smooth = np.stack([(yy * 3 + xx * 2) % 256, (yy * 5) % 256, (xx * 4) % 256], -1).astype(np.uint8)
    cases = [(smooth, 0, {}), (smooth, None, {}), (rng.integers(0, 256, (12, 10, 3), dtype=np.uint8), 0, {}),
             (smooth[:, :, 0], 0, {"MODE": b"P", "PLTE": b"RGB\0" + bytes(range(256)) * 3})]
    files = []
    for pixels, steps, meta in cases:
        data = encode_image(pixels, steps, model, meta=meta).data
        files.append((data, pixels, unpack_header(data)[1]))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="mutated inputs to try")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from .api import load_model

    model = load_model()
    files = sample_files(model)
    rng = np.random.default_rng(args.seed)
    outcomes: Counter[str] = Counter()
    slowest = 0.0
    start = time.perf_counter()
    for i in range(args.count):
        data, pixels, payload_start = files[i % len(files)]
        kind = MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
        t0 = time.perf_counter()
        outcomes[check_one(mutate(data, kind, rng, payload_start), pixels, model)] += 1
        slowest = max(slowest, time.perf_counter() - t0)
    report = {"inputs": args.count, "seed": args.seed, "failures": 0, "seconds": round(time.perf_counter() - start, 1),
              "slowest_input_seconds": round(slowest, 3), "outcomes": dict(outcomes.most_common())}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
