"""Training data: image lists, the seeded train/validation split and random multiscale crops."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import maps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: Path) -> list[Path]:
    """All image files below `folder`, sorted so lists are reproducible."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images found in {folder}")
    return files


def split_train_val(files: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Deterministic split: an image is held out when a hash of (seed, name) falls below the fraction."""
    def key(p: Path) -> float:
        digest = hashlib.sha256(f"{seed}:{p.parent.name}/{p.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64
    val = [p for p in files if key(p) < val_fraction]
    return [p for p in files if key(p) >= val_fraction], val


def load_rgb(path: Path) -> np.ndarray:
    """(3, H, W) uint8 RGB array of an image file."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1).copy()


def center_crop(im: np.ndarray, size: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Central size x size crop over two `axes` ((0, 1) for (H, W, C), (1, 2) for (C, H, W));
    a side shorter than `size` is kept whole, and size 0 keeps everything."""
    if size <= 0:
        return im
    window = [slice(None)] * im.ndim
    for axis in axes:
        start = max(0, (im.shape[axis] - size) // 2)
        window[axis] = slice(start, start + size)
    return np.ascontiguousarray(im[tuple(window)])


@dataclass
class LevelBatch:
    """One level of a batch of crops, as float32 arrays ready for the prior."""

    details: np.ndarray  # (B, 9, h, w)
    coarse: np.ndarray  # (B, 3, h, w)
    coef_mask: np.ndarray  # (B, 9, h, w)


def crop_to_planes(rgb: np.ndarray, gray: bool) -> tuple[np.ndarray, np.ndarray]:
    """YCoCg-R planes (3, H, W) of a crop; a gray crop is its luma with zero chroma. Returns (planes, chroma flag)."""
    if gray:
        luma = (rgb.astype(np.int64) * np.array([299, 587, 114])[:, None, None]).sum(0) // 1000
        return np.stack([luma, np.zeros_like(luma), np.zeros_like(luma)]), np.float32(0.0)
    return maps.ycocg_r_forward(rgb), np.float32(1.0)


def level_arrays(planes: np.ndarray, map_name: str, chroma: float) -> tuple[list[LevelBatch], np.ndarray]:
    """Per-level (details, coarse, mask) of one image, finest first, plus its top image."""
    dec = maps.decompose(planes, map_name)
    levels = []
    chan = np.array([1.0, chroma, chroma], dtype=np.float32)
    for d, c_img, (h, w) in zip(dec.details, dec.coarse, dec.shapes):
        band = maps.detail_mask(h, w).astype(np.float32)
        mask = (chan[:, None, None, None] * band[None]).reshape(9, *band.shape[1:])
        levels.append(LevelBatch(d.reshape(9, *d.shape[2:]).astype(np.float32), c_img.astype(np.float32), mask))
    return levels, dec.top


class CropSampler:
    """Random crops (with flips and occasional gray conversion) from images held in memory."""

    def __init__(self, files: list[Path], crop: int, seed: int, gray_prob: float = 0.1):
        self.images = [load_rgb(p) for p in files]
        self.images = [im for im in self.images if min(im.shape[1:]) >= crop]
        if not self.images:
            raise ValueError(f"no training image is at least {crop} px on each side")
        self.crop, self.gray_prob = crop, gray_prob
        self.reseed(seed)

    def reseed(self, seed: int | list[int]) -> None:
        """Restart the crop stream from `seed` (a list seeds one stream per data-loading worker)."""
        self.rng = np.random.default_rng(seed)

    def sample(self) -> tuple[np.ndarray, float]:
        im = self.images[self.rng.integers(len(self.images))]
        y = self.rng.integers(im.shape[1] - self.crop + 1)
        x = self.rng.integers(im.shape[2] - self.crop + 1)
        c = im[:, y : y + self.crop, x : x + self.crop]
        if self.rng.random() < 0.5:
            c = c[:, :, ::-1]
        if self.rng.random() < 0.5:
            c = c[:, ::-1, :]
        planes, chroma = crop_to_planes(np.ascontiguousarray(c), self.rng.random() < self.gray_prob)
        return planes, float(chroma)


def batch_levels(samples: list[tuple[np.ndarray, float]], map_name: str) -> tuple[list[LevelBatch], np.ndarray, np.ndarray]:
    """Stack equally sized crops level by level; returns (levels, tops (B,3,h,w), chroma flags (B,))."""
    per = [level_arrays(p, map_name, ch) for p, ch in samples]
    levels = [
        LevelBatch(*(np.stack([getattr(lv[j], f) for lv, _ in per]) for f in ("details", "coarse", "coef_mask")))
        for j in range(len(per[0][0]))
    ]
    tops = np.stack([t for _, t in per]).astype(np.float32)
    return levels, tops, np.array([ch for _, ch in samples], dtype=np.float32)


def detail_rms(files: list[Path], map_name: str, max_levels: int = 8) -> list[list[float]]:
    """Root-mean-square of each level's 9 detail coefficients over whole images (the c_j scales)."""
    sums = np.zeros((max_levels, 9))
    counts = np.zeros((max_levels, 9))
    for p in files:
        planes = maps.ycocg_r_forward(load_rgb(p))
        levels, _ = level_arrays(planes, map_name, 1.0)
        for j, lv in enumerate(levels[:max_levels]):
            sums[j] += (lv.details**2 * lv.coef_mask).sum(axis=(1, 2))
            counts[j] += lv.coef_mask.sum(axis=(1, 2))
    filled = counts[:, 0] > 0
    rms = np.sqrt(sums[filled] / np.maximum(counts[filled], 1))
    return [[round(float(v), 3) for v in row] for row in np.maximum(rms, 0.5)]
