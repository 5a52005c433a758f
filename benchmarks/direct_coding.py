"""T = 0 coding layout: rate and time of direct coding with plain tiles of several sides, with and
without per-image calibration, with 1, 2 or 4 flipped views, with the calibrated coefficients
under the plain Laplace or the calibrated Laplace/logistic mixture, with or without surprise
tables, with or without the per-image readout correction, against the growing bits-back tiles that
format versions 1 and 2 used at T = 0 (`plan.DIRECT_TILE`, format 4's calibration, format 5's default
view count, format 6's shapes, format 7's surprise tables and format 8's readout are chosen here).

    python benchmarks/direct_coding.py FOLDER [--sides 0,64,128,256,512] [--calibration off,on]
                                       [--views 1,2,4] [--shapes off,on] [--surprise off,on]
                                       [--readout off,on]
                                       [--model FILE] [--out results.json]

Run it on held-out training photos (the model card's `val_files`), not on Kodak, so the choice
stays out of the evaluation set. Reports each image's and the mean bpsp (the model's codelength,
calibration indices included, which the coder pays within 0.1%) and encode seconds, one image at a time.
"""
from __future__ import annotations

import argparse
import json
import time
from itertools import product
from pathlib import Path

import numpy as np
from PIL import Image

import hvpzip
from hvpzip.api import deterministic_coding
from hvpzip.codec import Codec


SWITCH = {"off": False, "on": True}


def direct_codelength(prior: hvpzip.prior.MultiscalePrior, pixels: np.ndarray, tile: int | None,
                      **options: bool | int) -> tuple[float, float]:
    """(bpsp, encode seconds) of `pixels` at T = 0 with plain tiles of side `tile` (None: bits-back
    tiles) and the codec's `options` (calibrated, views, shaped, surprising, fit_readout)."""
    start = time.perf_counter()
    with deterministic_coding():
        codec = Codec(prior, 0, direct_tile=tile, **options)
        _, bits = codec.encode(pixels, "RGB")
    return bits.analytic / pixels.size, time.perf_counter() - start


def describe(variant: dict) -> str:
    """A variant as a table row's leading cells."""
    on = {True: "on", False: "off"}
    return (f"| {variant['tile'] or 'bits-back (format 2)'} | {on[variant['calibrated']]} | {variant['views']} "
            f"| {on[variant['shaped']]} | {on[variant['surprising']]} | {on[variant['fit_readout']]} ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sides", default="0,64,128,256,512", help="plain tile sides; 0 = format 2's bits-back tiles")
    parser.add_argument("--calibration", default="off", help="off, on or off,on")
    parser.add_argument("--views", default="1", help="view counts, e.g. 1,2,4")
    parser.add_argument("--shapes", default="off", help="calibrated mixture shapes (format 6): off, on or off,on")
    parser.add_argument("--surprise", default="off", help="surprise tables (format 7): off, on or off,on")
    parser.add_argument("--readout", default="off", help="per-image readout correction (format 8): off, on or off,on")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    prior = hvpzip.load_model(args.model).prior
    variants = [dict(tile=tile, calibrated=calibrated, views=views, shaped=shaped, surprising=surprising,
                     fit_readout=refitted)
                for tile, calibrated, views, shaped, surprising, refitted in product(
                    [int(s) or None for s in args.sides.split(",")], [SWITCH[c] for c in args.calibration.split(",")],
                    [int(v) for v in args.views.split(",")], [SWITCH[c] for c in args.shapes.split(",")],
                    [SWITCH[c] for c in args.surprise.split(",")], [SWITCH[c] for c in args.readout.split(",")])]
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    rows = []
    for path in files:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        for variant in variants:
            bpsp, seconds = direct_codelength(prior, pixels, **variant)
            rows.append({"image": path.name, **variant, "bpsp": bpsp, "encode_s": seconds})
            print(f"{path.name} {describe(variant)}: {bpsp:.4f} bpsp, {seconds:.1f} s", flush=True)
    print("| T=0 tiles | calibration | views | shapes | surprise | readout | mean bpsp | mean encode s |\n"
          "|---|---|---|---|---|---|---|---|")
    for variant in variants:
        mine = [r for r in rows if all(r[k] == v for k, v in variant.items())]
        print(f"{describe(variant)}| {np.mean([r['bpsp'] for r in mine]):.4f} "
              f"| {np.mean([r['encode_s'] for r in mine]):.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
