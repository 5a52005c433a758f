"""Large-image check: compress and decompress a 6000x4000 photo mosaic through the CLI, reporting
seconds, peak resident memory (RSS) of each process, bpsp, and whether the round trip is bit-exact.

    python benchmarks/large_image.py [--width 6000] [--height 4000] [--steps N] [--out benchmarks/results/large]

The mosaic is made of 1000x1000 crops of training photos (seeded), so it has photo statistics;
Kodak is not used.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO.parent / "shared" / "datasets" / "train"


def photo_mosaic(width: int, height: int, seed: int = 0, tile: int = 1000) -> np.ndarray:
    """(height, width, 3) uint8 mosaic of random crops of training photos (upscaled when smaller than a tile)."""
    files = sorted(p for p in TRAIN.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    rng = np.random.default_rng(seed)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            with Image.open(files[int(rng.integers(len(files)))]) as im:
                im = im.convert("RGB")
                if min(im.size) < tile:
                    im = im.resize((max(tile, im.size[0] * tile // min(im.size)),
                                    max(tile, im.size[1] * tile // min(im.size))), Image.BICUBIC)
                x0, y0 = int(rng.integers(0, im.size[0] - tile + 1)), int(rng.integers(0, im.size[1] - tile + 1))
                crop = np.asarray(im.crop((x0, y0, x0 + tile, y0 + tile)))
            h, w = min(tile, height - y), min(tile, width - x)
            out[y : y + h, x : x + w] = crop[:h, :w]
    return out


def run_measured(args: list[str]) -> tuple[float, float]:
    """Run a command; return (seconds, peak RSS in MiB) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(args)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(args)}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, packed, back = Path(tmp) / "large.png", Path(tmp) / "large.hvpz", Path(tmp) / "back.png"
        pixels = photo_mosaic(args.width, args.height)
        Image.fromarray(pixels).save(src)
        steps = [] if args.steps is None else ["--steps", str(args.steps)]
        cli = [sys.executable, "-m", "hvpzip"]
        enc_s, enc_rss = run_measured(cli + ["compress", "-f", *steps, str(src), "-o", str(packed)])
        dec_s, dec_rss = run_measured(cli + ["decompress", "-f", str(packed), "-o", str(back)])
        exact = bool(np.array_equal(np.asarray(Image.open(back)), pixels))
        result = {"width": args.width, "height": args.height, "steps": args.steps or "default",
                  "bpsp": 8 * packed.stat().st_size / pixels.size, "png_bpsp": 8 * src.stat().st_size / pixels.size,
                  "encode_seconds": round(enc_s, 1), "decode_seconds": round(dec_s, 1),
                  "encode_peak_rss_mib": round(enc_rss), "decode_peak_rss_mib": round(dec_rss),
                  "bit_exact": exact, "cpu_threads": os.cpu_count()}
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    if not exact:
        raise SystemExit("round trip was not bit-exact")


if __name__ == "__main__":
    main()
