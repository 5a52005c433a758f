"""What gets coded where: image modes and planes, regions, tiles and the order of (plane, level).

Pure geometry and bookkeeping on numpy integer planes; the codec walks a `coding_plan` forwards to
encode and backwards to decode. The first tiles of the finest level grow from a single position so
that bits-back always has bits to pop (see `tile_schedule`); at T = 0 nothing is popped, so levels
are cut only into plain tiles (DIRECT_TILE), where most coefficients have their whole context.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import maps

MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
PLANE_CHROMA = {"L": [0.0], "LA": [0.0, 0.0], "RGB": [1.0], "RGBA": [1.0, 0.0]}  # coded planes per mode
REGION = 2048  # larger images are coded as independent regions of at most REGION x REGION (bounded memory)
TILE = 64  # coding tile side, in positions of a level
DIRECT_TILE = 128  # tile side when every tile is coded directly (T = 0); on held-out photos
# (benchmarks/direct_coding.py) 0.7% below format 2's bits-back tiles at the same speed; 256 saves 0.2% more at +50% time
GROWTH = 0.25  # a tile may hold at most this fraction of the coefficients coded before it
Rect = tuple[int, int, int, int]


def image_planes(pixels: np.ndarray, mode: str) -> list[tuple[np.ndarray, float]]:
    """(H, W, C) uint8 pixels -> list of ((3, H, W) int64 planes, chroma flag) to code in order.

    Colour goes through YCoCg-R; a gray or alpha channel becomes a plane with zero chroma.
    """
    if mode not in MODES:
        raise ValueError(f"unsupported image mode {mode}")
    chans = pixels.reshape(pixels.shape[0], pixels.shape[1], -1).transpose(2, 0, 1).astype(np.int64)
    colour = mode in ("RGB", "RGBA")
    planes = [maps.ycocg_r_forward(chans[:3])] if colour else []
    planes += [np.stack([c, np.zeros_like(c), np.zeros_like(c)]) for c in chans[3 if colour else 0 :]]
    return list(zip(planes, PLANE_CHROMA[mode]))


def planes_image(planes: list[np.ndarray], mode: str) -> np.ndarray:
    """Inverse of `image_planes`: (H, W, C) uint8 pixels (squeezed to (H, W) for mode L)."""
    if mode in ("RGB", "RGBA"):
        chans = list(maps.ycocg_r_inverse(planes[0])) + [p[0] for p in planes[1:]]
    else:
        chans = [p[0] for p in planes]
    out = np.stack(chans, axis=-1)
    if out.min() < 0 or out.max() > 255:
        raise ValueError("decoded values out of range: the payload is corrupt")
    out = out.astype(np.uint8)
    return out[:, :, 0] if mode == "L" else out


def tile_schedule(height: int, width: int, coefs_per_position: int, coded_before: int,
                  tile: int = TILE, growth: float | None = GROWTH) -> list[tuple[Rect, int]]:
    """Rectangles (y0, y1, x0, x1) covering a level's position grid, in encoding order, each with the
    number of coefficients coded before it.

    Regular tiles in raster order, each split in halves (recursively) while it holds more than
    `growth` times the coefficients coded before it; so an image starts from a single position.
    `growth` None: plain tiles, never split.
    """
    rects: list[tuple[Rect, int]] = []
    coded = coded_before

    def place(y0: int, y1: int, x0: int, x1: int) -> None:
        nonlocal coded
        size = (y1 - y0) * (x1 - x0) * coefs_per_position
        if growth is None or size <= max(coefs_per_position, growth * coded):
            rects.append(((y0, y1, x0, x1), coded))
            coded += size
        elif y1 - y0 >= x1 - x0:
            mid = (y0 + y1) // 2
            place(y0, mid, x0, x1)
            place(mid, y1, x0, x1)
        else:
            mid = (x0 + x1) // 2
            place(y0, y1, x0, mid)
            place(y0, y1, mid, x1)

    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            place(y0, min(y0 + tile, height), x0, min(x0 + tile, width))
    return rects


def regions(height: int, width: int, side: int = REGION) -> list[Rect]:
    """Near-equal rectangles (y0, y1, x0, x1) of at most side x side covering the image, in raster order.

    Each region is coded as an image of its own on the shared stack, so memory stays bounded by the
    region size whatever the image size.
    """
    ny, nx = -(-height // side), -(-width // side)
    ys = [height * i // ny for i in range(ny + 1)]
    xs = [width * i // nx for i in range(nx + 1)]
    return [(ys[i], ys[i + 1], xs[j], xs[j + 1]) for i in range(ny) for j in range(nx)]


@dataclass
class LevelPlan:
    """Where and how one (plane, level) is coded."""

    plane: int
    level: int  # 1 = finest
    shape: tuple[int, int]  # (H, W) of the image this level splits
    chroma: float
    rects: list[tuple[Rect, int]]  # tiles in encoding order, each with the coefficients coded before it


def coding_plan(height: int, width: int, chroma_flags: list[float], map_levels: int,
                coded_before: int = 0, direct_tile: int | None = None) -> list[LevelPlan]:
    """Every (plane, level) in encoding order with its tiles; the decoder walks it backwards.

    `direct_tile`: every tile is coded directly (T = 0), so levels are cut into plain tiles of this
    side (None: the growing bits-back tiles of `tile_schedule`).
    """
    plans, coded = [], coded_before
    for p, chroma in enumerate(chroma_flags):
        h, w = height, width
        per_position = 9 if chroma else 3
        for level in range(1, map_levels + 1):
            hc, wc = (h + 1) // 2, (w + 1) // 2
            if direct_tile is None:
                rects = tile_schedule(hc, wc, per_position, coded)
            else:
                rects = tile_schedule(hc, wc, per_position, coded, tile=direct_tile, growth=None)
            plans.append(LevelPlan(p, level, (h, w), chroma, rects))
            coded += int(maps.detail_mask(h, w).sum()) * (3 if chroma else 1)
            h, w = hc, wc
        coded += h * w * (3 if chroma else 1)
    return plans


def coef_mask(shape: tuple[int, int], chroma: float) -> np.ndarray:
    """(9, hc, wc) bool: detail coefficients that are coded (real band positions, active channels)."""
    band = maps.detail_mask(*shape)
    chans = np.array([True, bool(chroma), bool(chroma)])
    return (chans[:, None, None, None] & band[None]).reshape(9, *band.shape[1:])
