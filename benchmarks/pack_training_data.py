"""Pack the training photos small enough to travel to a lent GPU (the device tool sends at most 64 MiB).

    python benchmarks/pack_training_data.py ../shared/datasets/train .gpudata --keep models/MODEL_CARD.json --parts 3

Each training photo is re-encoded as lossless WebP (pixel-identical RGB, checked here; about 0.75x the PNG
bytes) under the same relative path with a .webp suffix. The photos a model card holds out (`val_files`)
are copied unchanged, so `hvpzip train --init-from` finds its source's validation split by name. The
files are spread over PARTS folders (DST/part1, ...) of about equal size, one per device call, to be
merged into one tree on the device.
"""
from __future__ import annotations

import argparse
import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from hvpzip.data import list_images, load_rgb


def webp_copy(source: Path, target: Path) -> None:
    """Write `source` as lossless WebP at `target`; fails if the pixels differ."""
    target.parent.mkdir(parents=True, exist_ok=True)
    pixels = load_rgb(source)
    Image.fromarray(pixels.transpose(1, 2, 0)).save(target, "WEBP", lossless=True, quality=100, method=4)
    if not np.array_equal(load_rgb(target), pixels):
        raise RuntimeError(f"{target} does not decode to the pixels of {source}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--keep", type=Path, required=True, help="model card whose val_files are copied unchanged")
    ap.add_argument("--parts", type=int, default=2)
    args = ap.parse_args()
    keep = set(json.loads(args.keep.read_text())["val_files"])
    files = sorted(list_images(args.src), key=lambda p: -p.stat().st_size)
    totals = [0] * args.parts
    jobs = []
    for path in files:  # largest first, each into the lightest part so far
        part = totals.index(min(totals))
        name = path.relative_to(args.src)
        totals[part] += path.stat().st_size
        jobs.append((path, args.dst / f"part{part + 1}" / (name if str(name) in keep else name.with_suffix(".webp"))))
    with ProcessPoolExecutor() as pool:
        futures = []
        for source, target in jobs:
            if target.suffix == ".webp":
                futures.append(pool.submit(webp_copy, source, target))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        for future in futures:
            future.result()
    for part in sorted(args.dst.iterdir()):
        packed = [p for p in part.rglob("*") if p.is_file()]
        print(f"{part}: {len(packed)} files, {sum(p.stat().st_size for p in packed) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
