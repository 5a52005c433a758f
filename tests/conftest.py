"""Shared fixtures: the shipped model, small test images, and where the datasets live."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("HVPZIP_DATA", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def model():
    from hvpzip import load_model

    return load_model()


def smooth_image(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth gradients plus mild noise, uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = []
    for c in range(channels):
        f = rng.uniform(0.02, 0.1, 2)
        base = 128 + 60 * np.sin(f[0] * yy + c) * np.cos(f[1] * xx - c)
        planes.append(base + rng.normal(0, 3, (height, width)))
    out = np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)
    return out[:, :, 0] if channels == 1 else out


def smooth_photo_folder(folder: Path, count: int, height: int, width: int) -> Path:
    """Create `folder` holding `count` RGB smooth_image PNGs named 0.png, 1.png, ... (seed = index)."""
    from PIL import Image

    folder.mkdir()
    for i in range(count):
        Image.fromarray(smooth_image(height, width, 3, seed=i)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def photo_crop() -> np.ndarray:
    """A 96x128 RGB crop of a real photo (Kodak is only read, never trained on); synthetic if absent."""
    path = DATASETS / "kodak" / "kodim23.png"
    if not path.exists():
        return smooth_image(96, 128, 3)
    from PIL import Image

    return np.array(Image.open(path).convert("RGB"))[200:296, 300:428].copy()
