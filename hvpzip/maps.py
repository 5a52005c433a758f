"""Exactly invertible integer maps (numpy only): colour transform and multi-level wavelets.

Every map here is a bijection Z^n -> Z^n (a lifting scheme), the discrete analogue of a
volume-preserving map, so P(image) = P(coefficients) with no rounding loss.

Layout used throughout: an image is (C, H, W) int64. One level splits it into a coarse
image (C, ceil(H/2), ceil(W/2)) and a detail array (C, 3, ceil(H/2), ceil(W/2)) holding
the bands LH (vertical high), HL (horizontal high) and HH, zero where a band has no sample
because H or W is odd (see `detail_mask`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

MAPS = ("haar", "legall53", "pyramid")
TOP_SIZE = 8  # decompose until the coarse image fits in TOP_SIZE x TOP_SIZE


def ycocg_r_forward(rgb: np.ndarray) -> np.ndarray:
    """Reversible YCoCg-R colour transform of (3, ...) integer RGB: returns (Y, Co, Cg)."""
    r, g, b = (rgb[i].astype(np.int64) for i in range(3))
    co = r - b
    t = b + (co >> 1)
    cg = g - t
    y = t + (cg >> 1)
    return np.stack([y, co, cg])


def ycocg_r_inverse(ycc: np.ndarray) -> np.ndarray:
    """Exact inverse of `ycocg_r_forward`."""
    y, co, cg = (ycc[i].astype(np.int64) for i in range(3))
    t = y - (cg >> 1)
    g = cg + t
    b = t - (co >> 1)
    r = b + co
    return np.stack([r, g, b])


def haar_lift_forward(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """S-transform along `axis`: d = a - b, s = b + floor(d / 2) (= floor((a + b) / 2)).

    An odd trailing sample passes to the low band unchanged.
    """
    x = np.moveaxis(x.astype(np.int64), axis, -1)
    n = x.shape[-1]
    a, b = x[..., 0 : n - 1 : 2], x[..., 1:n:2]
    d = a - b
    s = np.concatenate([b + (d >> 1), x[..., n - (n % 2) :]], axis=-1)
    return np.moveaxis(s, -1, axis), np.moveaxis(d, -1, axis)


def haar_lift_inverse(s: np.ndarray, d: np.ndarray, axis: int) -> np.ndarray:
    """Exact inverse of `haar_lift_forward`."""
    s, d = np.moveaxis(s, axis, -1), np.moveaxis(d, axis, -1)
    m = d.shape[-1]
    b = s[..., :m] - (d >> 1)
    a = d + b
    x = np.empty(s.shape[:-1] + (s.shape[-1] + m,), dtype=np.int64)
    x[..., 0 : 2 * m : 2], x[..., 1 : 2 * m : 2] = a, b
    x[..., 2 * m :] = s[..., m:]
    return np.moveaxis(x, -1, axis)


def _neighbours(v: np.ndarray, length: int, shift: int) -> np.ndarray:
    """v[i + shift] along the last axis for i < length, with symmetric (mirror) extension."""
    idx = np.arange(length) + shift
    idx = np.clip(idx, 0, v.shape[-1] - 1)
    return v[..., idx]


def legall53_lift_forward(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Reversible LeGall 5/3 lifting (JPEG 2000 lossless) along `axis`, symmetric borders.

    d[i] = x[2i+1] - floor((x[2i] + x[2i+2]) / 2);  s[i] = x[2i] + floor((d[i-1] + d[i] + 2) / 4)
    """
    x = np.moveaxis(x.astype(np.int64), axis, -1)
    even, odd = x[..., 0::2], x[..., 1::2]
    m = odd.shape[-1]
    if m == 0:
        return np.moveaxis(even, -1, axis), np.moveaxis(odd, -1, axis)
    right = _neighbours(even, m, 1)  # x[2i+2], mirrored to x[2i] past the end
    d = odd - ((even[..., :m] + right) >> 1)
    n_even = even.shape[-1]
    d_prev = d[..., np.clip(np.arange(n_even) - 1, 0, m - 1)]
    d_next = d[..., np.clip(np.arange(n_even), 0, m - 1)]
    s = even + ((d_prev + d_next + 2) >> 2)
    return np.moveaxis(s, -1, axis), np.moveaxis(d, -1, axis)


def legall53_lift_inverse(s: np.ndarray, d: np.ndarray, axis: int) -> np.ndarray:
    """Exact inverse of `legall53_lift_forward`."""
    s, d = np.moveaxis(s, axis, -1), np.moveaxis(d, axis, -1)
    m, n_even = d.shape[-1], s.shape[-1]
    if m == 0:
        return np.moveaxis(s, -1, axis)
    d_prev = d[..., np.clip(np.arange(n_even) - 1, 0, m - 1)]
    d_next = d[..., np.clip(np.arange(n_even), 0, m - 1)]
    even = s - ((d_prev + d_next + 2) >> 2)
    odd = d + ((even[..., :m] + _neighbours(even, m, 1)) >> 1)
    x = np.empty(s.shape[:-1] + (n_even + m,), dtype=np.int64)
    x[..., 0::2], x[..., 1::2] = even, odd
    return np.moveaxis(x, -1, axis)


Lift = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
Unlift = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def detail_mask(height: int, width: int) -> np.ndarray:
    """(3, ceil(H/2), ceil(W/2)) bool: which packed detail positions hold a real coefficient."""
    hc, wc, hh, wh = (height + 1) // 2, (width + 1) // 2, height // 2, width // 2
    mask = np.zeros((3, hc, wc), dtype=bool)
    mask[0, :hh, :] = True  # LH: vertical high-pass of the horizontal low band
    mask[1, :, :wh] = True  # HL: vertical low-pass of the horizontal high band
    mask[2, :hh, :wh] = True  # HH
    return mask


def _split_2d(x: np.ndarray, lift: Lift) -> tuple[np.ndarray, np.ndarray]:
    """One separable 2-D level: (C, H, W) -> coarse (C, hc, wc), packed details (C, 3, hc, wc)."""
    c, h, w = x.shape
    lo, hi = lift(x, 2)
    ll, lh = lift(lo, 1)
    hl, hh = lift(hi, 1)
    hc, wc = (h + 1) // 2, (w + 1) // 2
    details = np.zeros((c, 3, hc, wc), dtype=np.int64)
    details[:, 0, : lh.shape[1], :] = lh
    details[:, 1, :, : hl.shape[2]] = hl
    details[:, 2, : hh.shape[1], : hh.shape[2]] = hh
    return ll, details


def _merge_2d(coarse: np.ndarray, details: np.ndarray, height: int, width: int, unlift: Unlift) -> np.ndarray:
    """Inverse of `_split_2d` for an output of size (height, width)."""
    hh, wh = height // 2, width // 2
    lo = unlift(coarse, details[:, 0, :hh, :], 1)
    hi = unlift(details[:, 1, :, :wh], details[:, 2, :hh, :wh], 1)
    return unlift(lo, hi, 2)


def pyramid_prediction(coarse: np.ndarray) -> np.ndarray:
    """Integer prediction of the packed Haar details from the coarse image alone.

    A smooth image has Haar differences a - b ~ -(one-pixel gradient); the gradient is
    estimated by central differences of the coarse image (spacing 2 pixels, so / 4).
    """
    c = coarse.astype(np.int64)
    pred = np.zeros((c.shape[0], 3) + c.shape[1:], dtype=np.int64)
    if c.shape[1] > 1:
        up = np.concatenate([c[:, :1], c[:, :-1]], axis=1)
        down = np.concatenate([c[:, 1:], c[:, -1:]], axis=1)
        pred[:, 0] = (up - down + 2) >> 2
    if c.shape[2] > 1:
        left = np.concatenate([c[:, :, :1], c[:, :, :-1]], axis=2)
        right = np.concatenate([c[:, :, 1:], c[:, :, -1:]], axis=2)
        pred[:, 1] = (left - right + 2) >> 2
    return pred


def split_level(x: np.ndarray, map_name: str) -> tuple[np.ndarray, np.ndarray]:
    """One level of `map_name`: (C, H, W) int -> (coarse, packed details); details are 0 off-mask."""
    if map_name == "haar":
        return _split_2d(x, haar_lift_forward)
    if map_name == "legall53":
        return _split_2d(x, legall53_lift_forward)
    if map_name == "pyramid":
        coarse, details = _split_2d(x, haar_lift_forward)
        mask = detail_mask(x.shape[1], x.shape[2])
        return coarse, np.where(mask, details - pyramid_prediction(coarse), 0)
    raise ValueError(f"unknown map {map_name!r}; choose one of {', '.join(MAPS)}")


def merge_level(coarse: np.ndarray, details: np.ndarray, height: int, width: int, map_name: str) -> np.ndarray:
    """Exact inverse of `split_level`."""
    if map_name == "haar":
        return _merge_2d(coarse, details, height, width, haar_lift_inverse)
    if map_name == "legall53":
        return _merge_2d(coarse, details, height, width, legall53_lift_inverse)
    if map_name == "pyramid":
        restored = np.where(detail_mask(height, width), details + pyramid_prediction(coarse), 0)
        return _merge_2d(coarse, restored, height, width, haar_lift_inverse)
    raise ValueError(f"unknown map {map_name!r}; choose one of {', '.join(MAPS)}")


def num_levels(height: int, width: int, top_size: int = TOP_SIZE) -> int:
    """Number of levels that bring max(H, W) down to at most `top_size`."""
    levels, size = 0, max(height, width)
    while size > top_size:
        size = (size + 1) // 2
        levels += 1
    return levels


@dataclass
class Decomposition:
    """A multi-level transform, finest level first: level j splits an image of size `shapes[j]`
    into `coarse[j]` and `details[j]`; `top` is the last coarse image."""

    details: list[np.ndarray]
    coarse: list[np.ndarray]
    shapes: list[tuple[int, int]]
    map_name: str
    top: np.ndarray


def decompose(x: np.ndarray, map_name: str, levels: int | None = None) -> Decomposition:
    """Multi-level forward map of a (C, H, W) integer image."""
    if levels is None:
        levels = num_levels(x.shape[1], x.shape[2])
    current = x.astype(np.int64)
    details, coarse, shapes = [], [], []
    for _ in range(levels):
        shapes.append((current.shape[1], current.shape[2]))
        current, d = split_level(current, map_name)
        details.append(d)
        coarse.append(current)
    return Decomposition(details, coarse, shapes, map_name, current)


def reconstruct(dec: Decomposition) -> np.ndarray:
    """Exact inverse of `decompose`."""
    current = dec.top
    for d, (h, w) in zip(reversed(dec.details), reversed(dec.shapes)):
        current = merge_level(current, d, h, w, dec.map_name)
    return current
