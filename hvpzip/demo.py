"""Quick-start demo: compress and decompress a sample image with the shipped model through the CLI.

python -m hvpzip.demo [IMAGE]   (default: a 256x256 crop of Kodak 23 if ../shared/datasets is present,
else a synthetic photo-like image)
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

KODAK_SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "kodak" / "kodim23.png"


def sample_image() -> np.ndarray:
    """A 256x256 RGB sample: a Kodak crop when available, else smooth synthetic content."""
    if KODAK_SAMPLE.exists():
        return np.array(Image.open(KODAK_SAMPLE).convert("RGB"))[128:384, 256:512].copy()
    yy, xx = np.mgrid[0:256, 0:256] / 256.0
    planes = [128 + 90 * np.sin(6 * yy + c) * np.cos(5 * xx - c) for c in range(3)]
    return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


def cli(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "hvpzip", *args, "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"demo failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "sample.png"
        if len(sys.argv) > 1:
            src.write_bytes(Path(sys.argv[1]).read_bytes())
        else:
            Image.fromarray(sample_image()).save(src, optimize=True)
        c = cli("compress", str(src))
        d = cli("decompress", c["output"], "-o", str(Path(tmp) / "roundtrip.png"))
        original = np.array(Image.open(src))
        exact = np.array_equal(original, np.array(Image.open(d["output"])))
        png_bytes = src.stat().st_size
        subpixels = c["width"] * c["height"] * c["channels"]
        print(f"image        {c['width']}x{c['height']}, {c['channels']} channels")
        print(f"PNG          {png_bytes} bytes, {8 * png_bytes / subpixels:.3f} bpsp")
        print(f"hvpzip       {c['bytes']} bytes, {c['bpsp']:.3f} bpsp (T={c['steps']}; model negative ELBO "
              f"{c['neg_elbo_bits'] / subpixels:.3f} bpsp), encode {c['seconds']:.1f} s, decode {d['seconds']:.1f} s")
        print(f"bit-exact    {'yes' if exact else 'NO'}")
        if not exact:
            sys.exit(1)


if __name__ == "__main__":
    main()
