"""Likelihood scoring: an image's negative log-likelihood bound in bits per sub-pixel, by scale and term.

The score runs the coder (same tiles, same bits-back latents) without writing a file: `bpsp` is the
single-sample negative ELBO of the discretized model, which is exactly what the payload costs;
`analytic_bpsp` is the same bound with the expectations over latents taken in closed form.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .api import Model, encode_image
from .codelength import Codelength


def scale_breakdown(codelength: Codelength) -> list[dict]:
    """Per-scale bits, coarsest (the top image) to finest (level 1 details)."""
    rows = []
    for level in sorted(codelength.bits, reverse=True):
        terms = codelength.bits[level]
        bits, dims = sum(terms.values()), codelength.dims[level]
        rows.append({"level": level, "kind": "top" if "top" in terms else "details", "bits": bits, "dims": dims,
                     "bpsp": bits / dims, "terms": terms})
    return rows


def score_pixels(pixels: np.ndarray, steps: int | None = None, model: Model | None = None,
                 progress: Callable[[int], None] | None = None) -> dict:
    """Score one uint8 image: neg-ELBO bits and bpsp, the size compress would write, per scale and term."""
    result = encode_image(pixels, steps, model, progress)
    subpixels = int(pixels.size)
    bits = result.codelength.total
    return {"bpsp": bits / subpixels, "neg_elbo_bits": bits, "analytic_bpsp": result.codelength.analytic / subpixels,
            "subpixels": subpixels,
            "file_bits": 8 * len(result.data), "file_bpsp": 8 * len(result.data) / subpixels,
            "steps": result.header.steps, "per_scale": scale_breakdown(result.codelength),
            "per_term": result.codelength.per_term()}


def describe(record: dict) -> str:
    """One human-readable line per scored image."""
    scales = " ".join(f"{'top' if s['kind'] == 'top' else 'L' + str(s['level'])}:{s['bpsp']:.2f}"
                      for s in record["per_scale"])
    terms = " ".join(f"{k}:{v / record['subpixels']:.3f}" for k, v in sorted(record["per_term"].items()))
    return (f"{record['input']}: {record['bpsp']:.4f} bpsp (analytic {record['analytic_bpsp']:.4f}, "
            f"file {record['file_bpsp']:.4f}) "
            f"| per scale {scales} | per term {terms}")
