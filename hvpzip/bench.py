"""Benchmark harness: hvpzip and reference lossless codecs on a folder of images, round trips verified."""
from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .data import list_images

Codec = tuple[Callable[[np.ndarray], bytes], Callable[[bytes], np.ndarray]]


@dataclass
class Row:
    """One codec on one image."""

    codec: str
    image: str
    width: int
    height: int
    bytes: int
    bpsp: float
    encode_s: float
    decode_s: float
    neg_elbo_bpsp: float | None = None


def _pillow(fmt: str, **kw) -> Codec:
    def enc(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format=fmt, **kw)
        return buf.getvalue()

    return enc, lambda b: np.array(Image.open(io.BytesIO(b)))


def _jpegls() -> Codec:
    """JPEG-LS through imagecodecs with a reversible (R-G, G, B-G) colour transform, mod 256."""
    import imagecodecs

    def enc(a: np.ndarray) -> bytes:
        a16 = a.astype(np.int16)
        t = np.stack([(a16[..., 0] - a16[..., 1]) % 256, a16[..., 1], (a16[..., 2] - a16[..., 1]) % 256], -1)
        return imagecodecs.jpegls_encode(t.astype(np.uint8))

    def dec(b: bytes) -> np.ndarray:
        t = imagecodecs.jpegls_decode(b).astype(np.int16)
        return np.stack([(t[..., 0] + t[..., 1]) % 256, t[..., 1], (t[..., 2] + t[..., 1]) % 256], -1).astype(np.uint8)

    return enc, dec


DEFAULT_CODECS = ("hvpzip", "png", "webp", "jxl-e7", "jxl-e9", "jpeg2000", "jpegls", "qoi")


def find_dataset(name: str, data_dir: Path | None) -> Path:
    """--data-dir, else NAME if it is a folder, else $HVPZIP_DATA/NAME, else ../shared/datasets/NAME."""
    import os

    candidates = [data_dir] if data_dir is not None else []
    candidates += [Path(name)]
    if "HVPZIP_DATA" in os.environ:
        candidates.append(Path(os.environ["HVPZIP_DATA"]) / name)
    candidates.append(Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / name)
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"dataset '{name}' not found; put its images in a folder and pass --data-dir DIR "
                            f"(or set HVPZIP_DATA to a folder containing '{name}/')")


def reference_codecs() -> dict[str, Codec]:
    """Name -> (encode, decode) for the reference codecs available here."""
    import imagecodecs

    codecs: dict[str, Codec] = {
        "png": _pillow("PNG", compress_level=9),
        "webp": _pillow("WEBP", lossless=True),
        "webp-max": _pillow("WEBP", lossless=True, quality=100, method=6),
        "jxl-e7": (lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=7), imagecodecs.jpegxl_decode),
        "jxl-e9": (lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=9), imagecodecs.jpegxl_decode),
        "jpeg2000": (lambda a: imagecodecs.jpeg2k_encode(a, level=0, reversible=True), imagecodecs.jpeg2k_decode),
        "jpegls": _jpegls(),
        "qoi": (imagecodecs.qoi_encode, imagecodecs.qoi_decode),
    }
    return codecs


def hvpzip_codec(steps: int | None) -> tuple[Callable[[np.ndarray], tuple[bytes, float]], Callable[[bytes], np.ndarray]]:
    """hvpzip through its public API (the same path as the CLI); encode also returns neg-ELBO bits."""
    from .api import decompress, encode_image, load_model

    model = load_model()

    def enc(a: np.ndarray) -> tuple[bytes, float]:
        r = encode_image(a, steps, model)
        return r.data, r.neg_elbo_bits

    return enc, lambda b: decompress(b, model)


def run_benchmark(folder: Path, codec_names: list[str], steps_list: list[int | None], limit: int | None,
                  progress: Callable[[str], None] | None = None) -> list[Row]:
    """Every codec on every image (round trips verified bit-exact; a mismatch raises)."""
    files = list_images(folder)[:limit]
    refs = reference_codecs()
    rows: list[Row] = []
    for path in files:
        pixels = np.array(Image.open(path).convert("RGB"))
        h, w = pixels.shape[:2]
        for name in codec_names:
            variants = [(f"hvpzip-T{s if s is not None else 'default'}", s) for s in steps_list] if name == "hvpzip" else [(name, None)]
            for label, steps in variants:
                if name == "hvpzip":
                    enc, dec = hvpzip_codec(steps)
                else:
                    enc, dec = refs[name]
                t0 = time.perf_counter()
                out = enc(pixels)
                t1 = time.perf_counter()
                data, elbo = out if isinstance(out, tuple) else (out, None)
                back = dec(data)
                t2 = time.perf_counter()
                if not np.array_equal(back, pixels):
                    raise RuntimeError(f"{label} round trip of {path.name} is NOT bit-exact")
                sub = h * w * 3
                rows.append(Row(label, path.name, w, h, len(data), 8 * len(data) / sub, t1 - t0, t2 - t1,
                                None if elbo is None else elbo / sub))
                if progress:
                    progress(f"{path.name} {label}: {8 * len(data) / sub:.3f} bpsp, {t1 - t0:.1f}+{t2 - t1:.1f} s")
    return rows


def summarize(rows: list[Row]) -> str:
    """Markdown table: mean bpsp and total seconds per codec."""
    lines = ["| codec | images | mean bpsp | mean neg-ELBO bpsp | encode s (total) | decode s (total) |",
             "|---|---|---|---|---|---|"]
    for codec in dict.fromkeys(r.codec for r in rows):
        rs = [r for r in rows if r.codec == codec]
        elbos = [r.neg_elbo_bpsp for r in rs if r.neg_elbo_bpsp is not None]
        elbo = f"{np.mean(elbos):.4f}" if elbos else "-"
        lines.append(f"| {codec} | {len(rs)} | {np.mean([r.bpsp for r in rs]):.4f} | {elbo} | "
                     f"{sum(r.encode_s for r in rs):.1f} | {sum(r.decode_s for r in rs):.1f} |")
    return "\n".join(lines)


def write_results(rows: list[Row], out_dir: Path) -> None:
    """results.json, results.csv and summary.md into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    with (out_dir / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    (out_dir / "summary.md").write_text(summarize(rows) + "\n")
