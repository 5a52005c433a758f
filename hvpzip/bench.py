"""Benchmark harness: hvpzip and reference lossless codecs on a folder of images, round trips verified."""
from __future__ import annotations

import csv
import io
import json
import sys
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


REFIT_LABELS = {None: "", True: "-refit", False: "-norefit"}  # hvpzip label suffix per refit setting


def hvpzip_codec(steps: int | None, model_path: Path | None = None, views: int | None = None, refit: bool | None = None
                 ) -> tuple[Callable[[np.ndarray], tuple[bytes, float]], Callable[[bytes], np.ndarray]]:
    """hvpzip through its public API (the same path as the CLI); encode also returns neg-ELBO bits.
    `model_path` None is the default model, `views` None the default view count, `refit` None
    compress's default, else as compress --refit / --no-refit."""
    from .api import DEFAULT_REFIT, DEFAULT_VIEWS, decompress, encode_image, load_model

    model = load_model(model_path)

    def enc(a: np.ndarray) -> tuple[bytes, float]:
        r = encode_image(a, steps, model, views=views or DEFAULT_VIEWS, refit=DEFAULT_REFIT if refit is None else refit)
        return r.data, r.neg_elbo_bits

    return enc, lambda b: decompress(b, model)


def bench_image(path: Path, codec_names: list[str], steps_list: list[int | None],
                model_path: Path | None = None, views_list: tuple[int | None, ...] = (None,),
                refit_list: tuple[bool | None, ...] = (None,)) -> list[Row]:
    """Every codec on one image; each round trip verified bit-exact (a mismatch raises). hvpzip runs at
    each step count, view count (None: the default; labelled with its count only when given) and
    readout refit setting (None: the default, unlabelled; else -refit / -norefit; at T = 0 and the
    default steps only, as T >= 1 fits nothing)."""
    pixels = np.array(Image.open(path).convert("RGB"))
    h, w = pixels.shape[:2]
    refs = reference_codecs()
    rows = []
    for name in codec_names:
        variants = ([(f"hvpzip-T{'default' if s is None else s}" + (f"-v{v}" if v else "") + REFIT_LABELS[r],
                      s, v, r) for s in steps_list for v in views_list for r in (refit_list if not s else (None,))]
                    # the readout correction is a T = 0 thing: no T >= 1 refit twins
                    if name == "hvpzip" else [(name, None, None, False)])
        for label, steps, views, refit in variants:
            enc, dec = hvpzip_codec(steps, model_path, views, refit) if name == "hvpzip" else refs[name]
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
    return rows


def run_benchmark(folder: Path, codec_names: list[str], steps_list: list[int | None], limit: int | None,
                  workers: int = 1, progress: Callable[[Row], None] | None = None,
                  model_path: Path | None = None, views_list: tuple[int | None, ...] = (None,),
                  refit_list: tuple[bool | None, ...] = (None,)) -> list[Row]:
    """`bench_image` over the first `limit` images of a folder, in `workers` processes."""
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from tqdm import tqdm

    files = list_images(folder)[:limit]
    job = partial(bench_image, codec_names=codec_names, steps_list=steps_list, model_path=model_path,
                  views_list=views_list, refit_list=refit_list)
    rows: list[Row] = []
    with tqdm(total=len(files), desc="images", unit="img", file=sys.stderr, disable=None) as bar:
        results = ProcessPoolExecutor(workers).map(job, files) if workers > 1 else map(job, files)
        for image_rows in results:
            rows += image_rows
            for row in image_rows:
                if progress:
                    progress(row)
            bar.update(1)
    return rows


def summarize(rows: list[Row]) -> str:
    """Markdown table: mean bpsp and total seconds per codec."""
    lines = ["| codec | images | mean bpsp | mean neg-ELBO bpsp | max size/ELBO gap | encode s (total) "
             "| decode s (total) |", "|---|---|---|---|---|---|---|"]
    for codec in dict.fromkeys(r.codec for r in rows):
        rs = [r for r in rows if r.codec == codec]
        with_elbo = [r for r in rs if r.neg_elbo_bpsp is not None]
        elbo = f"{np.mean([r.neg_elbo_bpsp for r in with_elbo]):.4f}" if with_elbo else "-"
        gap = f"{max(abs(r.bpsp / r.neg_elbo_bpsp - 1) for r in with_elbo):.2%}" if with_elbo else "-"
        lines.append(f"| {codec} | {len(rs)} | {np.mean([r.bpsp for r in rs]):.4f} | {elbo} | {gap} | "
                     f"{sum(r.encode_s for r in rs):.1f} | {sum(r.decode_s for r in rs):.1f} |")
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    """Mean bpsp against total encode seconds per codec (log time axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for codec in dict.fromkeys(r.codec for r in rows):
        rs = [r for r in rows if r.codec == codec]
        x, y = sum(r.encode_s for r in rs), float(np.mean([r.bpsp for r in rs]))
        ax.scatter(x, y)
        ax.annotate(codec, (x, y), textcoords="offset points", xytext=(5, 3), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"total encode seconds ({len({r.image for r in rows})} images)")
    ax.set_ylabel("mean bits per sub-pixel")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(rows: list[Row], out_dir: Path) -> None:
    """results.json, results.csv, summary.md and plot.png into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    with (out_dir / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    (out_dir / "summary.md").write_text(summarize(rows) + "\n")
    plot(rows, out_dir / "plot.png")
