"""Per-image scale calibration of the direct model (numpy only).

The encoder picks, for each (region, plane, level, context group, band), the multiplier of the predicted
Laplace scales that codes that group's coefficients in the fewest bits, and sends its index ahead of
them. The network sees only local context: how noisy or sharp the whole image is, and how well it
knows coarse levels (which 128-pixel training crops barely contain), shows up as a per-group scale
bias that six bits per group and band remove.
"""
from __future__ import annotations

import numpy as np

from . import schedule
from .coder import snap_params

MULTIPLIERS = 2.0 ** ((np.arange(64) - 40) / 24)  # 0.31 .. 1.95 in steps of 2^(1/24), index 40 = 1
NEUTRAL = 40
SEARCH_SAMPLES = 1 << 14  # larger groups are searched on an evenly strided subset
COARSE_STEP = 4


def laplace_bits(symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> float:
    """Bits of integer symbols under the quantized Laplace the coder uses (params snapped as it snaps them)."""
    m, s = snap_params(mean, scale)
    return -float(schedule.laplace_bin_log2prob(symbols.astype(np.float64), m, s, np).sum())


def best_multiplier(symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> int:
    """Index into MULTIPLIERS of the scale multiplier that codes `symbols` cheapest (NEUTRAL when empty).

    A coarse pass over every COARSE_STEP-th multiplier, then the neighbours of the best: the cost is
    smooth and unimodal in the log multiplier, so this finds the grid optimum in a third of the work.
    """
    if symbols.size == 0:
        return NEUTRAL
    stride = max(1, symbols.size // SEARCH_SAMPLES)
    symbols, mean, scale = symbols[::stride], mean[::stride], scale[::stride]
    costs: dict[int, float] = {}

    def cost(i: int) -> float:
        if i not in costs:
            costs[i] = laplace_bits(symbols, mean, scale * MULTIPLIERS[i])
        return costs[i]

    coarse = min(range(NEUTRAL % COARSE_STEP, len(MULTIPLIERS), COARSE_STEP), key=cost)
    fine = range(max(0, coarse - COARSE_STEP + 1), min(len(MULTIPLIERS), coarse + COARSE_STEP))
    return min(fine, key=cost)
