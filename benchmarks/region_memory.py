"""Peak memory of the codec alone on one region, with format 4's calibration off or on.

    python benchmarks/region_memory.py IMAGE --calibration off|on [--side 2000]

Tiles IMAGE 2x2, crops a side x side region (one region of the codec), encodes it at T = 0 in this
process and prints the process's peak RSS; run it once per setting (fresh processes).
"""
from __future__ import annotations

import argparse
import resource
from pathlib import Path

import numpy as np
from PIL import Image

from hvpzip import codec, load_model
from hvpzip.api import deterministic_coding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--calibration", choices=["off", "on"], required=True)
    parser.add_argument("--side", type=int, default=2000)
    args = parser.parse_args()
    pixels = np.tile(np.asarray(Image.open(args.image).convert("RGB")), (2, 2, 1))[: args.side, : args.side].copy()
    model = load_model()
    with deterministic_coding():
        codec.Codec(model.prior, 0, calibrated=args.calibration == "on").encode(pixels, "RGB")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{pixels.shape[1]}x{pixels.shape[0]} calibration {args.calibration}: peak RSS {peak} MiB")


if __name__ == "__main__":
    main()
