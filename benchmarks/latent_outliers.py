"""Where the T >= 1 chains' analytic KL terms come from: latents popped far in the tail.

Bits-back pops *sample* the latents z_t from the ANS stack, and after an improbable push the stack's
bits make the next pops improbable too (ANS couples their quantiles), so a few latents land many
noise stds from alpha_t * y. The network has never seen such inputs and predicts nonsense around
them; the closed-form KL is quadratic in that error, while the coder pays at most its bounded
escape cost. This script counts, per image, the latents more than OUTLIER_STDS stds from where
q(z_t | y) puts them, and splits the analytic KL bits between the chain tiles with and without one.

    python benchmarks/latent_outliers.py IMAGE [IMAGE ...] [--steps 4] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

import hvpzip
from hvpzip import schedule
from hvpzip.api import DEFAULT_VIEWS, deterministic_coding
from hvpzip.codec import Codec
from hvpzip.coder import AnsStack

OUTLIER_STDS = 8.0  # a Gaussian sample this far out has probability ~1e-15


class OutlierCountingCodec(Codec):
    """The shipped format's coder, counting each chain tile's outlying latents and KL bits as it encodes."""

    def __init__(self, prior: hvpzip.prior.MultiscalePrior, steps: int, views: int):
        super().__init__(prior, steps, views=views)
        self.tiles: list[dict] = []  # one record per chain tile, in coding order

    def encode_chain_tile(self, stack: AnsStack, details: np.ndarray, coarse: np.ndarray, mask: np.ndarray,
                          chroma: float, level: int, steps: int) -> dict[str, float]:
        y = details / self._level_constants(level, steps)[0]
        self.tiles.append({"level": level, "outliers": 0, "max_abs_z": 0.0, "max_abs_y": float(np.abs(y[mask]).max()),
                           "kl_bits": 0.0})
        self._y, self._mask = y, mask
        bits = super().encode_chain_tile(stack, details, coarse, mask, chroma, level, steps)
        self.tiles[-1]["kl_bits"] = sum(v for k, v in bits.items() if k.startswith("kl_"))
        return bits

    def _net(self, z: np.ndarray, coarse: np.ndarray, band: np.ndarray, chroma: float, level: int, gamma: float):
        """Every latent the chain feeds the network passes here first (z_1 for the decoder, z_t for p(z_{t-1} | z_t))."""
        alpha, sigma = schedule.alpha_sigma(gamma, np)
        tile = self.tiles[-1]
        tile["outliers"] += int((np.abs(z - alpha * self._y)[self._mask] > OUTLIER_STDS * sigma).sum())
        tile["max_abs_z"] = max(tile["max_abs_z"], float(np.abs(z).max()))
        return super()._net(z, coarse, band, chroma, level, gamma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    prior = hvpzip.load_model(args.model).prior
    rows = []
    for path in args.images:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        codec = OutlierCountingCodec(prior, args.steps, views=DEFAULT_VIEWS)
        with deterministic_coding():
            _, bits = codec.encode(pixels, "RGB")
        hit = [t for t in codec.tiles if t["outliers"]]
        row = {"image": path.name, "steps": args.steps, "coded_bpsp": bits.total / pixels.size,
               "analytic_bpsp": bits.analytic / pixels.size, "chain_tiles": len(codec.tiles),
               "tiles_with_outliers": len(hit), "outlying_latents": sum(t["outliers"] for t in hit),
               "kl_bpsp_tiles_with_outliers": sum(t["kl_bits"] for t in hit) / pixels.size,
               "kl_bpsp_other_tiles": sum(t["kl_bits"] for t in codec.tiles if not t["outliers"]) / pixels.size,
               "worst_tiles": sorted(hit, key=lambda t: -t["kl_bits"])[:3]}
        rows.append(row)
        print(f"{path.name}: coded {row['coded_bpsp']:.4f} bpsp, analytic {row['analytic_bpsp']:.4f}; "
              f"{row['outlying_latents']} latents beyond {OUTLIER_STDS:g} stds in {len(hit)} of {len(codec.tiles)} "
              f"chain tiles, whose KL is {row['kl_bpsp_tiles_with_outliers']:.4f} bpsp "
              f"(other tiles {row['kl_bpsp_other_tiles']:.4f})", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"outlier_stds": OUTLIER_STDS, "images": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
