"""Slow acceptance checks on all 24 Kodak images at the default setting (run with: pytest -m slow)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import hvpzip
from conftest import DATASETS

KODAK = sorted((DATASETS / "kodak").glob("kodim*.png"))


@pytest.mark.slow
@pytest.mark.skipif(not KODAK, reason="Kodak images not found")
@pytest.mark.parametrize("path", KODAK, ids=lambda p: p.stem)
def test_kodak_round_trip_and_rate(model, path):
    pixels = np.array(Image.open(path).convert("RGB"))
    result = hvpzip.encode_image(pixels, model=model)
    assert np.array_equal(hvpzip.decompress(result.data, model=model), pixels)
    bits = 8 * len(result.data)
    assert abs(bits - result.neg_elbo_bits) / result.neg_elbo_bits < 0.01
    assert bits / pixels.size < 4.46  # PNG level 9 on Kodak
