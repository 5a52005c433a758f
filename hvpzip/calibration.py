"""Per-image calibration of the direct model's Laplace parameters (numpy only).

The encoder picks, for each (region, plane, level, context group, band) -- a *key* -- a multiplier
of the predicted scales for each of SCALE_BUCKETS ranges of predicted scale, and a factor that
shrinks the predicted means, whichever code that key's coefficients in the fewest bits, and sends
them ahead of the coefficients: one bit per key says whether it is calibrated at all, so a key
whose saving would not pay for its indices (small images, coarse levels) costs one bit. The
network sees only local context: how noisy or sharp the whole image is, and how well it knows
coarse levels (which 128-pixel training crops barely contain), shows up as per-key biases that a
few bits per key remove.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import schedule
from .coder import snap_params

MULTIPLIERS = 2.0 ** ((np.arange(64) - 40) / 24)  # 0.31 .. 1.95 in steps of 2^(1/24), index 40 = 1
NEUTRAL = 40
MEAN_FACTORS = (np.arange(16) + 8) / 20  # 0.4 .. 1.15 in steps of 0.05, index 12 = 1
MEAN_NEUTRAL = 12
SCALE_EDGES = np.array([-1.0, 1.0, 3.0])  # log2 of the predicted scale (symbol units) between buckets
SCALE_BUCKETS = len(SCALE_EDGES) + 1
PARAMS = SCALE_BUCKETS + 1  # a key's indices: one multiplier per scale bucket, then the mean factor
KEY_BITS = SCALE_BUCKETS * np.log2(len(MULTIPLIERS)) + np.log2(len(MEAN_FACTORS))  # a calibrated key's indices
SEARCH_SAMPLES = 1 << 12  # larger keys are searched on an evenly strided subset
COARSE_STEP = 4


def neutral(shape: tuple[int, ...] = ()) -> np.ndarray:
    """Indices (shape + (PARAMS,)) that leave the model's parameters as they are."""
    out = np.full(shape + (PARAMS,), NEUTRAL)
    out[..., -1] = MEAN_NEUTRAL
    return out


def is_neutral(indices: np.ndarray) -> np.ndarray:
    """Per key (last axis: PARAMS): whether its indices leave the model as it is."""
    return np.all(indices == neutral(), axis=-1)


def table_bits(indices: np.ndarray) -> float:
    """Bits of keys' indices (..., PARAMS) as sent: a flag each, and the indices of calibrated keys."""
    flags = is_neutral(indices)
    return float(flags.size + (~flags).sum() * KEY_BITS)


def laplace_bits(symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Bits of integer symbols under the quantized Laplace the coder uses (params snapped as it snaps
    them), summed over the last axis: (k, n) candidate parameters for n symbols cost k sums in one call."""
    m, s = snap_params(mean, scale)
    return -schedule.laplace_bin_log2prob(np.asarray(symbols, dtype=np.float64), m, s, np).sum(axis=-1)


def scale_bucket(scale: np.ndarray) -> np.ndarray:
    """Which SCALE_BUCKETS range each predicted scale falls in."""
    return np.digitize(np.log2(scale), SCALE_EDGES)


def apply(indices: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated (mean, scale): `indices` is one key's (PARAMS,) or one row per coefficient (n, PARAMS)."""
    indices = np.broadcast_to(indices, scale.shape + (PARAMS,))
    multiplier = MULTIPLIERS[np.take_along_axis(indices, scale_bucket(scale)[:, None], axis=1)[:, 0]]
    return mean * MEAN_FACTORS[indices[:, -1]], scale * multiplier


def _grid_search(costs: Callable[[np.ndarray], np.ndarray], size: int, start: int) -> int:
    """Index in [0, size) minimising `costs` (indices -> their costs): every COARSE_STEP-th index
    (aligned to `start`), then the neighbours of the best; the cost is smooth and unimodal in these grids."""
    coarse = np.arange(start % COARSE_STEP, size, COARSE_STEP)
    best = int(coarse[np.argmin(costs(coarse))])
    fine = np.arange(max(0, best - COARSE_STEP + 1), min(size, best + COARSE_STEP))
    return int(fine[np.argmin(costs(fine))])


def best_multiplier(symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> int:
    """Index into MULTIPLIERS of the scale multiplier that codes `symbols` cheapest (NEUTRAL when empty)."""
    if symbols.size == 0:
        return NEUTRAL
    return _grid_search(lambda i: laplace_bits(symbols, mean, scale * MULTIPLIERS[i][:, None]), len(MULTIPLIERS),
                        NEUTRAL)


def choose(symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """A key's (PARAMS,) indices: the mean factor given per-bucket multipliers, then the multipliers
    again given that factor (one round of coordinate descent); neutral when the estimated saving
    would not pay for the indices."""
    stride = max(1, symbols.size // SEARCH_SAMPLES)
    symbols, mean, scale = symbols[::stride], mean[::stride], scale[::stride]
    indices, bucket = neutral(), scale_bucket(scale)
    if symbols.size == 0:
        return indices

    def fit_multipliers(factor: float) -> None:
        for q in range(SCALE_BUCKETS):
            chosen = bucket == q
            indices[q] = best_multiplier(symbols[chosen], mean[chosen] * factor, scale[chosen])

    fit_multipliers(1.0)
    scaled = scale * MULTIPLIERS[indices[bucket]]
    indices[-1] = _grid_search(lambda i: laplace_bits(symbols, mean * MEAN_FACTORS[i][:, None], scaled),
                               len(MEAN_FACTORS), MEAN_NEUTRAL)
    fit_multipliers(MEAN_FACTORS[indices[-1]])
    saving = laplace_bits(symbols, mean, scale) - laplace_bits(symbols, *apply(indices, mean, scale))
    return indices if saving * stride > KEY_BITS else neutral()
