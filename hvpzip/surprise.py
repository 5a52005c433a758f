"""Local surprise: scale multipliers by how far the model missed a coefficient's coded neighbours (numpy only).

The direct model sees the values of the context groups coded before a coefficient, but not how well
it predicted them, so a patch it keeps getting wrong (texture it does not know, noise, sharp edges)
gets scales as confident as a patch it gets right. In format 7, each coefficient's *surprise* is the
weighted mean |calibrated residual| / calibrated scale of the coefficients already coded in its tile
next to it (the same channel in the 3x3 window around it, the other channels at its position, all
channels in the window at half weight); per level, the encoder picks a scale multiplier for each
range of surprise (EDGES) and sends the table ahead of the level, as it sends the calibration.
On the held-out photos: -0.25% (benchmarks/results/surprise/).
"""
from __future__ import annotations

import numpy as np

from .calibration import MULTIPLIERS, NEUTRAL, best_multiplier, coded_bits

EDGES = np.array([0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0])
BUCKETS = len(EDGES) + 2  # bucket 0: no coded neighbour (the first group of a tile)
SAME_POSITION, SAME_CHANNEL, ALL_CHANNELS = 1.0, 1.0, 0.5  # weights of the three neighbourhoods
ENTRY_BITS = float(np.log2(len(MULTIPLIERS)))  # a non-neutral table entry; every entry also has a flag bit
SEARCH_SAMPLES = 1 << 14  # larger buckets are searched on an evenly strided subset
LEVEL_SAMPLES = 1 << 20  # ... and larger levels gathered as one first (codec.Codec.choose_surprise), bounding memory


def _neighbourhood_sums(values: np.ndarray) -> np.ndarray:
    """(c, h, w) -> each coefficient's weighted sum of `values` over its three neighbourhoods."""
    padded = np.pad(values, ((0, 0), (1, 1), (1, 1)))
    height, width = values.shape[1:]
    window = sum(padded[:, dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3))
    return SAME_CHANNEL * window + SAME_POSITION * values.sum(0) + ALL_CHANNELS * window.sum(0)


class SurpriseMap:
    """The |normalized residuals| of a tile's coefficients coded so far, and the surprise bucket of
    the next ones; the encoder and the decoder fill it in the same order with the same numbers."""

    def __init__(self, shape: tuple[int, int, int]):
        self.residuals = np.zeros(shape)
        self.known = np.zeros(shape)

    def add(self, group: np.ndarray, symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> None:
        """Record a coded group (its (c, h, w) mask, and its symbols and calibrated parameters in mask order)."""
        self.residuals[group] = np.abs(symbols - mean) / scale
        self.known[group] = 1.0

    def buckets(self, group: np.ndarray) -> np.ndarray:
        """Surprise bucket (0 .. BUCKETS-1) of each coefficient the (c, h, w) mask selects, in mask order."""
        sums, counts = _neighbourhood_sums(self.residuals)[group], _neighbourhood_sums(self.known)[group]
        surprise = sums / np.maximum(counts, 1e-9)
        return np.where(counts > 0, np.digitize(surprise, EDGES) + 1, 0).astype(np.uint8)


def neutral() -> np.ndarray:
    """A table that leaves every scale as it is."""
    return np.full(BUCKETS, NEUTRAL)


def apply(table: np.ndarray, buckets: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Scales multiplied by their buckets' entries of a (BUCKETS,) table of MULTIPLIERS indices."""
    return scale * MULTIPLIERS[table[buckets]]


def table_bits(table: np.ndarray) -> float:
    """Bits of a table as sent: a flag per bucket and the index of each non-neutral entry."""
    return float(BUCKETS + (table != NEUTRAL).sum() * ENTRY_BITS)


def choose(symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray, laplace_weight: np.ndarray,
           buckets: np.ndarray, stride: int = 1) -> np.ndarray:
    """A level's (BUCKETS,) table: per bucket the multiplier of the calibrated scales that codes its
    coefficients (under their calibrated mixture) in the fewest bits, neutral where that saving
    would not pay for the entry (each coefficient given stands for `stride` of the level's)."""
    table = neutral()
    for bucket in range(BUCKETS):
        chosen = np.flatnonzero(buckets == bucket)
        subset = max(1, chosen.size // SEARCH_SAMPLES)
        chosen = chosen[::subset]
        if chosen.size == 0:
            continue
        args = symbols[chosen], mean[chosen], scale[chosen], laplace_weight[chosen]
        index = best_multiplier(*args)
        saving = (_bits(*args, NEUTRAL) - _bits(*args, index)) * subset * stride
        table[bucket] = index if saving > ENTRY_BITS else NEUTRAL
    return table


def _bits(symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray, laplace_weight: np.ndarray, index: int) -> float:
    """Bits of symbols under their mixture with scales times MULTIPLIERS[index]."""
    return float(coded_bits(symbols, mean, scale * MULTIPLIERS[index], laplace_weight))
