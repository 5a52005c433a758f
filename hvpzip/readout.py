"""Per-image readout correction (format 8, fitted by default): a per-level refit of the direct model's mean readout.

The direct model's raw mean of coefficient k is a linear readout (a 1x1 conv) of the network's last
features h. Where an image differs from the training photos (film grain, chroma that was subsampled
once, another sharpness) that readout is off for the whole image in ways that the calibration's
scale multipliers and mean factors per key cannot undo. For each (region, plane, level) with at
least MIN_POSITIONS positions, the encoder (unless told `compress --no-refit`) keeps the network's
outputs and features for the level's tiles holding a few crops spread over it (`fit_tiles`) and fits

    raw_mean_k += w_k . h + b_k      (k = 0..8)

by minimising the Laplace codelength of the crops' coefficients (FIT_POSITIONS positions in all),
once on each of two folds of them.
The mean of the two fits, rounded to multiples of STEP, is sent when the saving each fit makes on
the *other* fold, scaled to the level, pays for its bits; else a flag says there is none. Both
sides add the correction in float64, feature by feature, to every view's raw means before anything
else sees them; since the combined mean is linear in the weights, the fit works on the views'
sign-averaged features, at a cost that does not grow with the view count. On the held-out photos
(benchmarks/results/readout/) correcting the log-scales too made two of seven photos larger after
calibration (+0.2%, +0.27%), the means alone none by more than 0.01%. Fitting is torch (autograd,
L-BFGS); applying it is numpy.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from . import calibration, schedule
from .prior import COEFS

STEP = 2.0**-9  # weights are sent as integer multiples of STEP
MIN_POSITIONS = 1 << 13  # smaller levels carry no flag (too few coefficients to pay for ROWS x (F + 1) weights)
FIT_POSITIONS = 1 << 15  # positions the fit sees: the whole level, or crops of it
CROP = 90  # side of the fit crops of larger levels
ROWS = COEFS  # corrected outputs: the 9 raw means
FIT_ITERATIONS = 30
FOLD_BLOCK = 16  # the fit's two folds are a checkerboard of FOLD_BLOCK x FOLD_BLOCK blocks of positions
LIMIT = (1 << 15) - 1  # largest |weight| in STEPs (inside the coder's range)
SCALES = 2.0 ** (np.arange(24) / 2)  # Laplace scales (in STEPs) a level's weights may be coded with
Rect = tuple[int, int, int, int]


def fit_crops(height: int, width: int) -> list[Rect]:
    """Rectangles (y0, y1, x0, x1) of a level's (height, width) position grid that the fit sees: the
    whole level if it is small, else FIT_POSITIONS / CROP^2 crops centred in a grid of equal cells."""
    if height * width <= FIT_POSITIONS:
        return [(0, height, 0, width)]
    count = FIT_POSITIONS // (CROP * CROP)
    rows = int(np.clip(round(math.sqrt(count * height / width)), 1, count))
    cols = count // rows
    side_y, side_x = min(CROP, height), min(CROP, width)
    rects = []
    for i in range(rows):
        for j in range(cols):
            y0 = int(np.clip((height * (2 * i + 1)) // (2 * rows) - side_y // 2, 0, height - side_y))
            x0 = int(np.clip((width * (2 * j + 1)) // (2 * cols) - side_x // 2, 0, width - side_x))
            rects.append((y0, y0 + side_y, x0, x0 + side_x))
    return rects


def fit_tiles(rects: list[Rect], height: int, width: int) -> list[tuple[Rect, list[Rect]]]:
    """The tiles among `rects` that the fit sees, each with its crops: every one of `fit_crops` of a
    level's (height, width) grid moved into the tile holding its centre (cut to it where the tile is
    smaller), so the fit keeps at most one tile's network outputs per crop and runs no network itself;
    every tile of a small level, whole."""
    if height * width <= FIT_POSITIONS:
        return [(rect, [rect]) for rect in rects]
    crops: dict[Rect, list[Rect]] = {}
    for y0, y1, x0, x1 in fit_crops(height, width):
        tile = next(r for r in rects if r[0] <= (y0 + y1) // 2 < r[1] and r[2] <= (x0 + x1) // 2 < r[3])
        side_y, side_x = min(y1 - y0, tile[1] - tile[0]), min(x1 - x0, tile[3] - tile[2])
        top, left = int(np.clip(y0, tile[0], tile[1] - side_y)), int(np.clip(x0, tile[2], tile[3] - side_x))
        crops.setdefault(tile, []).append((top, top + side_y, left, left + side_x))
    return list(crops.items())


def delta(weights: np.ndarray, k: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Corrections of the raw means of coefficients `k` (n,) from integer `weights` (ROWS, F + 1) and
    the network's features at them (F, n), in float64 summed feature by feature (the same order on both sides)."""
    w = weights.astype(np.float64) * STEP
    out = w[k, -1]
    for f in range(features.shape[0]):
        out = out + w[k, f] * features[f]
    return out


class FitSamples:
    """Coefficients of a level's fit tiles with what the fit needs: their fold, calibration key, the
    direct model's Laplace (mean, scale) for them and how the mean moves with the weights of their row
    k (the views' sign-averaged features, with a constant 1, times d mean / d raw mean)."""

    def __init__(self):
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, index: int, group: np.ndarray, origin: tuple[int, int], symbols: np.ndarray, mean: np.ndarray,
            scale: np.ndarray, gain: np.ndarray, views: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Record context group `index` (its (9, h, w) mask at `origin` in the level, symbols in mask
        order), its uncorrected Laplace (mean, scale), the mean's gain per unit of raw mean, and its
        views' (features (F, n), signs (n,)) at its coefficients."""
        k, yy, xx = np.nonzero(group)
        signed = sum(np.concatenate([f, np.ones((1, k.size), np.float32)]) * s for f, s in views) / len(views)
        self.parts.append(dict(
            k=k, key=index * 3 + k % 3, fold=((yy + origin[0]) // FOLD_BLOCK + (xx + origin[1]) // FOLD_BLOCK) % 2,
            symbols=symbols.astype(np.float64), mean=mean, scale=scale,
            design=(signed * gain).T.astype(np.float32)))

    @property
    def size(self) -> int:
        return sum(p["k"].size for p in self.parts)

    def folds(self) -> list[Fold]:
        """The samples of each fold ordered by coefficient index k."""
        whole = {key: np.concatenate([p[key] for p in self.parts]) for key in self.parts[0]}
        folds = []
        for fold in range(2):
            order = np.flatnonzero(whole["fold"] == fold)
            order = order[np.argsort(whole["k"][order], kind="stable")]
            k = whole["k"][order]
            designs = [(int(value), torch.from_numpy(whole["design"][order[k == value]])) for value in np.unique(k)]
            folds.append(Fold(designs, whole["key"][order], whole["symbols"][order], whole["mean"][order],
                              whole["scale"][order]))
        return folds


class Fold(NamedTuple):
    """One fold's samples ordered by coefficient index k: each k's design rows (n_k, F + 1), and every
    sample's calibration key, symbol and uncorrected Laplace (mean, scale)."""
    designs: list[tuple[int, torch.Tensor]]
    key: np.ndarray
    symbols: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @property
    def size(self) -> int:
        return self.key.size


def _mean_shift(fold: Fold, weights: torch.Tensor) -> torch.Tensor:
    """How much the fold's Laplace means move with float `weights` (ROWS, F + 1) added to the raw
    means: linear in them, views combined (the mean of their means)."""
    return torch.cat([design.to(weights.dtype) @ weights[k] for k, design in fold.designs])


def _calibrated_bits(fold: Fold, weights: np.ndarray) -> float:
    """Bits of the fold under the model with `weights` added as the coder pays them once each key
    (context group and band) is calibrated, calibration indices included: what the decision compares."""
    with torch.no_grad():
        mean = fold.mean + _mean_shift(fold, torch.from_numpy(weights)).numpy()
    total = 0.0
    for chosen in (fold.key == value for value in np.unique(fold.key)):
        indices = calibration.choose(fold.symbols[chosen], mean[chosen], fold.scale[chosen], shaped=True)
        adjusted = calibration.apply(indices, mean[chosen], fold.scale[chosen])
        total += float(calibration.coded_bits(fold.symbols[chosen], *adjusted,
                                              calibration.shape_weights(indices[calibration.SHAPE_INDEX])))
        total += calibration.table_bits(indices, shaped=True)
    return total


def weight_bits(weights: np.ndarray) -> float:
    """Bits of integer weights as sent: the index of their coding scale, then the weights under a
    quantized Laplace of that scale."""
    return math.log2(len(SCALES)) + float(calibration.laplace_bits(weights.ravel(), 0.0, SCALES[scale_index(weights)]))


def scale_index(weights: np.ndarray) -> int:
    """Index into SCALES closest to the weights' mean absolute value (the Laplace's ML scale)."""
    return int(np.argmin(np.abs(np.log2(SCALES) - math.log2(max(np.abs(weights).mean(), 1.0)))))


def _fit(fold: Fold, width: int) -> np.ndarray:
    """Float weights (ROWS, width + 1) minimising the fold's Laplace bits (L-BFGS from zero), in float32:
    the encoder's search only, whose result is rounded to STEPs and priced in float64."""
    symbols, mean, scale = (torch.from_numpy(a).to(torch.float32) for a in (fold.symbols, fold.mean, fold.scale))
    weights = torch.zeros(ROWS, width + 1, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights], max_iter=FIT_ITERATIONS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = -schedule.laplace_bin_log2prob(symbols, mean + _mean_shift(fold, weights), scale, torch).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    return weights.detach().numpy().astype(np.float64)


def choose(samples: FitSamples, level_coefficients: int, width: int) -> np.ndarray | None:
    """Integer weights (ROWS, width + 1) for features of `width` channels fitted on `samples`, or None
    when they would not pay.

    Each fold is fitted alone and scored on the other, calibrated as the coder would calibrate it, so
    the estimated saving is out of sample and net of what the calibration would gain anyway; the
    weights sent are the two fits' mean, when that saving, scaled to the level's `level_coefficients`,
    exceeds their cost."""
    if samples.size == 0:
        return None
    folds = samples.folds()
    if not all(fold.size for fold in folds):
        return None
    fits = [_fit(fold, width) for fold in folds]
    rounded = np.clip(np.round((fits[0] + fits[1]) / 2 / STEP), -LIMIT, LIMIT).astype(np.int64)
    zero = np.zeros_like(fits[0])
    saving = sum(_calibrated_bits(fold, zero) - _calibrated_bits(fold, other) for fold, other in zip(folds, reversed(fits)))
    return rounded if saving * level_coefficients / samples.size > weight_bits(rounded) else None
