"""The per-image readout correction (format 8): geometry of the fit, the linear correction, the fit
and its decision, and files that carry a correction decoding bit-exactly at the cost they claim."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hvpzip
from hvpzip import codec, container, readout
from hvpzip.api import deterministic_coding, format_codec
from hvpzip.prior import COEFS

from conftest import DATASETS, smooth_image


def test_fit_crops_cover_small_levels_and_sample_large_ones_evenly():
    assert readout.fit_crops(96, 128) == [(0, 96, 0, 128)]
    crops = readout.fit_crops(256, 384)
    assert len(crops) * readout.CROP**2 == readout.FIT_POSITIONS
    for y0, y1, x0, x1 in crops:
        assert (y1 - y0, x1 - x0) == (readout.CROP, readout.CROP) and y0 % 2 == x0 % 2 == 0
        assert 0 <= y0 and y1 <= 256 and 0 <= x0 and x1 <= 384
    assert len({(y0 // 128, x0 // 192) for y0, _, x0, _ in crops}) == 4  # one crop in each quarter
    for y0, y1, x0, x1 in readout.fit_crops(20, 5000):  # a thin level: crops as tall as it is
        assert (y0, y1) == (0, 20) and x1 - x0 == readout.CROP


def test_delta_is_the_linear_readout_of_the_features_and_zero_weights_change_nothing():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(5, 4, 6))
    weights = rng.integers(-300, 300, (readout.ROWS, 6))
    expected = np.einsum("rf,fhw->rhw", weights[:, :5] * readout.STEP, features) + weights[:, 5, None, None] * readout.STEP
    assert np.allclose(readout.delta(weights, features), expected, rtol=0, atol=1e-12)
    raw = rng.normal(size=(3 * COEFS, 4, 6))
    corrected = readout.add_delta(raw, weights, features)
    assert np.array_equal(corrected[readout.ROWS:], raw[readout.ROWS:])  # log-scales and variances untouched
    assert np.allclose(corrected[: readout.ROWS], raw[: readout.ROWS] + expected)
    assert readout.add_delta(raw, None, features) is raw
    assert np.array_equal(readout.add_delta(raw, np.zeros_like(weights), features), raw)


def planted_samples(bias: np.ndarray, count: int = 6000, seed: int = 0) -> readout.FitSamples:
    """Fit samples of one view whose coefficients follow the model's Laplace with the raw means
    shifted by `bias` (ROWS, F + 1) . [h, 1]: what a readout that is off for the whole image looks like."""
    rng = np.random.default_rng(seed)
    samples, features = readout.FitSamples(), bias.shape[1] - 1
    for index in range(9):
        group = np.zeros((COEFS, 20, 30), dtype=bool)
        group[3 * (index // 3): 3 * (index // 3) + 3] = True
        h = rng.normal(size=(features, 20, 30))
        raw = np.zeros((3 * COEFS, 20, 30))
        raw[:COEFS] = rng.normal(scale=0.3, size=(COEFS, 20, 30))
        raw[COEFS: 2 * COEFS] = np.log(0.1)
        c = np.full((COEFS, 1, 1), 16.0)
        shifted = raw[:COEFS] + readout.delta(bias, h)
        symbols = np.round((shifted + rng.laplace(scale=0.1, size=shifted.shape)) * c)
        samples.add(index, group, (0, 0), symbols[group], c, [(raw, h, np.ones((COEFS, 1, 1)))])
    assert samples.size == 9 * 3 * 600
    return samples


def test_the_fit_finds_a_planted_readout_error_and_sends_nothing_when_there_is_none():
    features = 4
    bias = np.zeros((readout.ROWS, features + 1), dtype=np.int64)
    bias[:, 0] = 40  # every mean off by 40 STEPs per unit of feature 0 (0.08 of a unit of y, 1.25 symbols here)
    bias[2, -1] = -60
    found = readout.choose(planted_samples(bias), 10**6, features)
    assert found is not None and np.abs(found - bias).max() <= 3
    assert readout.choose(planted_samples(np.zeros_like(bias), seed=1), 10**6, features) is None
    assert readout.choose(planted_samples(bias), 100, features) is None  # a tiny level would not pay for it


def test_weight_bits_price_the_weights_as_pushed():
    weights = np.random.default_rng(2).integers(-50, 50, (readout.ROWS, 49))
    scale = readout.SCALES[readout.scale_index(weights)]
    assert 12 <= scale <= 36  # near the mean |weight| (25)
    stack = codec.AnsStack()
    stack.push_uniform(np.arange(8), 256)  # something underneath, as a level's tiles are
    coder = codec.Codec(hvpzip.load_model().prior, 0)
    before = stack.num_bits()
    bits = coder.push_readout(stack, weights)
    assert bits == pytest.approx(1 + readout.weight_bits(weights)) and abs(stack.num_bits() - before - bits) < 64
    assert np.array_equal(coder.pop_readout(stack), weights)
    assert coder.push_readout(stack, None) == 1.0 and coder.pop_readout(stack) is None
    assert np.array_equal(stack.pop_uniform(8, 256), np.arange(8)) and stack.is_empty()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 192x256 RGB crop of a real photo (its level 1 carries a readout flag); synthetic if absent."""
    path = DATASETS / "kodak" / "kodim23.png"
    if not path.exists():
        return smooth_image(192, 256, 3)
    from PIL import Image

    return np.array(Image.open(path).convert("RGB"))[150:342, 250:506].copy()


def test_a_file_with_a_readout_correction_decodes_bit_exactly_at_its_codelength(model, photo, monkeypatch):
    """A level's correction changes every coefficient's mean: the decoder must apply the very same
    one. Weights are forced (as if the fit had paid) so the test does not hang on one photo's fit."""
    forced = np.random.default_rng(3).integers(-40, 40, (readout.ROWS, model.prior.config.width + 1))
    monkeypatch.setattr(readout, "choose", lambda *args: forced)
    with deterministic_coding():
        refitted = format_codec(model.prior, 0, 8, 2, refit=True)
        words, bits = refitted.encode(photo, "RGB")
        assert bits.per_term()["readout"] == pytest.approx(1 + readout.weight_bits(forced))
        assert bits.total == pytest.approx(32 * len(words))
        assert np.array_equal(refitted.decode(words, "RGB", *photo.shape[:2]), photo)
        plain_words, plain = format_codec(model.prior, 0, 8, 2).encode(photo, "RGB")
        assert plain.per_term()["readout"] == 1.0  # a flag for the one level of at least MIN_POSITIONS positions
        assert not np.array_equal(plain_words, words)
        try:  # format 7 has no readout flags: read as format 7 the stream desynchronises
            misread = format_codec(model.prior, 0, 7, 2).decode(words, "RGB", *photo.shape[:2])
        except ValueError:  # values out of range, data left over or a stream ending early
            misread = None
        assert misread is None or not np.array_equal(misread, photo)  # the container's pixel CRC refuses it


def test_compress_refit_only_sends_a_correction_that_pays(model, photo):
    """The public path on a photo crop: --refit does not make this file larger than without it,
    and every file decodes to the exact pixels."""
    plain = hvpzip.encode_image(photo, 0, model)
    refit = hvpzip.encode_image(photo, 0, model, refit=True)
    assert container.unpack(refit.data)[0].version == container.VERSION == 9
    assert np.array_equal(hvpzip.decompress(refit.data, model=model), photo)
    assert refit.codelength.total <= plain.codelength.total
    sent = refit.codelength.per_term()["readout"] > 2
    assert sent == (refit.codelength.total < plain.codelength.total)


def test_fit_samples_hold_the_codec_view_of_the_crops(model, photo):
    """The fit sees what the coder would use: with zero weights, its Laplace parameters of a small level
    (one crop, the whole level) are the codec's own for the same coefficients, split in two folds."""
    from hvpzip import maps, plan

    coder = codec.Codec(model.prior, 0, views=2)
    dec = maps.decompose(plan.image_planes(photo, "RGB")[0][0], "haar")
    details, coarse = dec.details[1].reshape(9, 48, 64), dec.coarse[1]
    mask = plan.coef_mask(dec.shapes[1], 1.0)
    with deterministic_coding():
        samples = coder.readout_samples(details, coarse, mask, 1.0, 2)
        groups = coder.direct_groups(details, coarse, mask, 1.0, 2)
    zero = torch.zeros(readout.ROWS, model.prior.config.width + 1, dtype=torch.float64)
    folds = samples.folds()
    assert 0.4 < sum(t["symbols"].numel() for _, t in folds[0]) / samples.size < 0.6
    params = [(t["symbols"].numpy(), mean.numpy(), scale.numpy()) for fold in folds for t, mean, scale in
              readout._params(fold, zero)]
    for got, want in zip(zip(*params), (np.concatenate([getattr(g, name) for g in groups]) for name in
                                        ("symbols", "mean", "scale"))):
        assert np.allclose(np.sort(np.concatenate(got)), np.sort(want), rtol=1e-9, atol=1e-12)
