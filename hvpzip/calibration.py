"""Per-image calibration of the direct model's Laplace parameters and distribution shape (numpy only).

The encoder picks, for each (region, plane, level, context group, band) -- a *key* -- a multiplier
of the predicted scales for each of SCALE_BUCKETS ranges of predicted scale, a factor that
shrinks the predicted means and, in shaped codecs (format 6 on), the distribution's shape (the
weight of the Laplace in a mix with a lighter-tailed logistic, `coder.mixture_cdf`), whichever code
that key's coefficients in the fewest bits, and sends them ahead of the coefficients: one bit per
key says whether it is calibrated at all, so a key whose saving would not pay for its indices
(small images, coarse levels) costs one bit. The network sees only local context: how noisy or
sharp the whole image is, and how well it knows coarse levels (which 128-pixel training crops
barely contain), shows up as per-key biases that a few bits per key remove.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import schedule
from .coder import mixture_log2prob, snap_params

MULTIPLIERS = 2.0 ** ((np.arange(64) - 40) / 24)  # 0.31 .. 1.95 in steps of 2^(1/24), index 40 = 1
NEUTRAL = 40
MEAN_FACTORS = (np.arange(16) + 8) / 20  # 0.4 .. 1.15 in steps of 0.05, index 12 = 1
MEAN_NEUTRAL = 12
SCALE_EDGES = np.array([-1.0, 1.0, 3.0])  # log2 of the predicted scale (symbol units) between buckets
SCALE_BUCKETS = len(SCALE_EDGES) + 1
SHAPE_WEIGHTS = (0.0, 0.25, 0.5, 1.0)  # the Laplace's weight in the mixture; on held-out photos the model's
# residuals are lighter-tailed than its Laplace: a logistic codes them 0.2-0.7% smaller, a per-key choice 0.1% more
DEFAULT_SHAPE = 1  # an uncalibrated key of a shaped codec: the best single weight on held-out photos
LAPLACE_SHAPE = 3  # the only shape of unshaped codecs (formats 4 and 5), coded as a plain quantized Laplace
MEAN_INDEX, SHAPE_INDEX = SCALE_BUCKETS, SCALE_BUCKETS + 1
PARAMS = SCALE_BUCKETS + 2  # a key's indices: one multiplier per scale bucket, the mean factor, the shape
KEY_BITS = SCALE_BUCKETS * np.log2(len(MULTIPLIERS)) + np.log2(len(MEAN_FACTORS))  # a calibrated key's indices
SHAPE_BITS = np.log2(len(SHAPE_WEIGHTS))  # ... and its shape, in shaped codecs
SEARCH_SAMPLES = 1 << 12  # larger keys are searched on an evenly strided subset
COARSE_STEP = 4


def neutral(shape: tuple[int, ...] = (), shaped: bool = False) -> np.ndarray:
    """Indices (shape + (PARAMS,)) of an uncalibrated key: the model's parameters as they are, in
    the default shape."""
    out = np.full(shape + (PARAMS,), NEUTRAL)
    out[..., MEAN_INDEX] = MEAN_NEUTRAL
    out[..., SHAPE_INDEX] = DEFAULT_SHAPE if shaped else LAPLACE_SHAPE
    return out


def is_neutral(indices: np.ndarray, shaped: bool = False) -> np.ndarray:
    """Per key (last axis: PARAMS): whether it is uncalibrated (sent as a flag alone)."""
    return np.all(indices == neutral(shaped=shaped), axis=-1)


def calibrated_key_bits(shaped: bool = False) -> float:
    """Bits of one calibrated key's indices as sent (its shape too, in shaped codecs)."""
    return KEY_BITS + SHAPE_BITS * shaped


def table_bits(indices: np.ndarray, shaped: bool = False) -> float:
    """Bits of keys' indices (..., PARAMS) as sent: a flag each, and the indices of calibrated keys."""
    flags = is_neutral(indices, shaped)
    return float(flags.size + (~flags).sum() * calibrated_key_bits(shaped))


def shape_weights(shapes: np.ndarray) -> np.ndarray:
    """The Laplace's weight in the mixture for SHAPE_WEIGHTS indices."""
    return np.asarray(SHAPE_WEIGHTS)[shapes]


def coded_bits(symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray, laplace_weight: np.ndarray | float | None,
               dtype: type = np.float32) -> np.ndarray:
    """Bits of symbols as the coder codes them, summed over the last axis (in float64): under the
    quantized Laplace (laplace_weight None, unshaped codecs) or the mixture with that weight, whose
    arithmetic is float32 unless told (~1e-7 relative: the searches' estimates, 4 times faster)."""
    if laplace_weight is None:
        return laplace_bits(symbols, mean, scale)
    return -mixture_log2prob(symbols, mean, scale, laplace_weight, dtype).sum(axis=-1, dtype=np.float64)


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
    return mean * MEAN_FACTORS[indices[:, MEAN_INDEX]], scale * multiplier


def _grid_search(costs: Callable[[np.ndarray], np.ndarray], size: int, start: int) -> int:
    """Index in [0, size) minimising `costs` (indices -> their costs): every COARSE_STEP-th index
    (aligned to `start`), then the neighbours of the best; the cost is smooth and unimodal in these grids."""
    coarse = np.arange(start % COARSE_STEP, size, COARSE_STEP)
    best = int(coarse[np.argmin(costs(coarse))])
    fine = np.arange(max(0, best - COARSE_STEP + 1), min(size, best + COARSE_STEP))
    return int(fine[np.argmin(costs(fine))])


def best_multiplier(symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                    laplace_weight: float | None = None) -> int:
    """Index into MULTIPLIERS of the scale multiplier that codes `symbols` cheapest (NEUTRAL when
    empty), under the Laplace (weight None) or the mixture with that Laplace weight."""
    if symbols.size == 0:
        return NEUTRAL
    return _grid_search(lambda i: coded_bits(symbols, mean, scale * MULTIPLIERS[i][:, None], laplace_weight),
                        len(MULTIPLIERS), NEUTRAL)


def choose(symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray, shaped: bool = False) -> np.ndarray:
    """A key's (PARAMS,) indices: per-bucket multipliers, the mean factor given them, in a shaped
    codec the shape given both, then the multipliers again (one round of coordinate descent);
    neutral when the estimated saving would not pay for the indices."""
    stride = max(1, symbols.size // SEARCH_SAMPLES)
    symbols, mean, scale = symbols[::stride], mean[::stride], scale[::stride]
    indices, bucket = neutral(shaped=shaped), scale_bucket(scale)
    if symbols.size == 0:
        return indices

    def weight(shape: int) -> float | None:
        return SHAPE_WEIGHTS[shape] if shaped else None

    def fit_multipliers() -> None:
        factor, laplace_weight = MEAN_FACTORS[indices[MEAN_INDEX]], weight(indices[SHAPE_INDEX])
        for q in range(SCALE_BUCKETS):
            chosen = bucket == q
            indices[q] = best_multiplier(symbols[chosen], mean[chosen] * factor, scale[chosen], laplace_weight)

    fit_multipliers()
    scaled = scale * MULTIPLIERS[indices[bucket]]
    indices[MEAN_INDEX] = _grid_search(
        lambda i: coded_bits(symbols, mean * MEAN_FACTORS[i][:, None], scaled, weight(indices[SHAPE_INDEX])),
        len(MEAN_FACTORS), MEAN_NEUTRAL)
    if shaped:
        adjusted = apply(indices, mean, scale)
        costs = [coded_bits(symbols, *adjusted, weight(shape)) for shape in range(len(SHAPE_WEIGHTS))]
        indices[SHAPE_INDEX] = int(np.argmin(costs))
    fit_multipliers()
    saving = (coded_bits(symbols, mean, scale, weight(DEFAULT_SHAPE))
              - coded_bits(symbols, *apply(indices, mean, scale), weight(indices[SHAPE_INDEX])))
    return indices if saving * stride > calibrated_key_bits(shaped) else neutral(shaped=shaped)
