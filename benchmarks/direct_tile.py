"""T = 0 tile side: rate and time of direct coding with plain tiles of several sides, against the
growing bits-back tiles that format versions 1 and 2 used at T = 0 (`codec.DIRECT_TILE` is chosen here).

    python benchmarks/direct_tile.py FOLDER [--sides 64,128,256,512] [--model FILE] [--out results.json]

Run it on held-out training photos (the model card's `val_files`), not on Kodak, so the choice
stays out of the evaluation set. Reports each image's and the mean bpsp (the model's codelength,
which the coder pays within 0.1%) and encode seconds, one image at a time.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

import hvpzip
from hvpzip.api import deterministic_coding
from hvpzip.codec import Codec


def direct_codelength(prior: hvpzip.prior.MultiscalePrior, pixels: np.ndarray, tile: int | None) -> tuple[float, float]:
    """(bpsp, encode seconds) of `pixels` at T = 0 with plain tiles of side `tile` (None: bits-back tiles)."""
    start = time.perf_counter()
    with deterministic_coding():
        _, bits = Codec(prior, 0, direct_tile=tile, calibrated=False).encode(pixels, "RGB")
    return bits.analytic / pixels.size, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sides", default="64,128,256,512")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    prior = hvpzip.load_model(args.model).prior
    layouts = [None] + [int(s) for s in args.sides.split(",")]
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    rows = []
    for path in files:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        for tile in layouts:
            bpsp, seconds = direct_codelength(prior, pixels, tile)
            rows.append({"image": path.name, "tile": tile, "bpsp": bpsp, "encode_s": seconds})
            print(f"{path.name} tile {tile or 'bits-back'}: {bpsp:.4f} bpsp, {seconds:.1f} s", flush=True)
    print("| T=0 tiles | mean bpsp | mean encode s |\n|---|---|---|")
    for tile in layouts:
        mine = [r for r in rows if r["tile"] == tile]
        print(f"| {tile or 'bits-back (format 2)'} | {np.mean([r['bpsp'] for r in mine]):.4f} "
              f"| {np.mean([r['encode_s'] for r in mine]):.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
