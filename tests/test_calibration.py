"""Per-image scale calibration: the encoder's multiplier search and what it does to a file."""
from __future__ import annotations

import numpy as np
import pytest

from hvpzip import calibration, codec, coder, plan
from hvpzip.api import deterministic_coding
from hvpzip.calibration import MEAN_FACTORS, MULTIPLIERS, NEUTRAL, best_multiplier, laplace_bits
from conftest import smooth_image


def laplace_symbols(count: int, scale: float, seed: int) -> np.ndarray:
    return np.round(np.random.default_rng(seed).laplace(0.0, scale, count))


@pytest.mark.parametrize("true_over_predicted", [0.5, 1.0, 1.6])
def test_search_finds_the_grid_optimum_and_the_true_scale(true_over_predicted):
    """The coarse-then-fine search returns the brute-force best multiplier, near the true scale ratio."""
    symbols = laplace_symbols(5000, 3.0 * true_over_predicted, seed=1)
    mean, scale = np.zeros(symbols.size), np.full(symbols.size, 3.0)
    costs = [laplace_bits(symbols, mean, scale * m) for m in MULTIPLIERS]
    chosen = best_multiplier(symbols, mean, scale)
    assert costs[chosen] == pytest.approx(min(costs), rel=1e-12)
    assert abs(np.log2(MULTIPLIERS[chosen] / true_over_predicted)) < 0.1


def test_empty_keys_stay_neutral():
    assert best_multiplier(np.zeros(0), np.zeros(0), np.zeros(0)) == NEUTRAL == int(np.argmin(abs(MULTIPLIERS - 1)))
    empty = np.zeros(0)
    indices = calibration.choose(empty, empty, empty)
    assert np.array_equal(indices, calibration.neutral())
    mean, scale = np.array([3.0, -1.0]), np.array([0.2, 9.0])
    assert np.array_equal(np.stack(calibration.apply(indices, mean, scale)), np.stack([mean, scale]))


def test_choose_finds_shrunk_means_and_per_bucket_scales():
    """Symbols whose true mean is half the predicted one and whose small-scale part is twice as wide
    as predicted: the chosen indices recover both, and code them cheaper than the model as it is."""
    rng = np.random.default_rng(3)
    predicted_mean = rng.normal(0, 8, 8000)
    scale = np.where(np.arange(8000) % 2 == 0, 0.25, 4.0)  # buckets 0 and 2
    true_scale = np.where(scale < 1, 2 * scale, scale)
    symbols = np.round(0.5 * predicted_mean + rng.laplace(0, true_scale))
    indices = calibration.choose(symbols, predicted_mean, scale)
    assert abs(MEAN_FACTORS[indices[calibration.MEAN_INDEX]] - 0.5) <= 0.05
    assert abs(np.log2(MULTIPLIERS[indices[0]] / 2)) < 0.2 and abs(np.log2(MULTIPLIERS[indices[2]])) < 0.1
    assert indices[1] == indices[3] == NEUTRAL  # empty buckets
    mean, scale_out = calibration.apply(indices, predicted_mean, scale)
    assert laplace_bits(symbols, mean, scale_out) < 0.9 * laplace_bits(symbols, predicted_mean, scale)


def test_large_groups_are_searched_on_a_subset_close_to_the_optimum():
    symbols = laplace_symbols(5 * calibration.SEARCH_SAMPLES, 2.0, seed=2)
    mean, scale = np.zeros(symbols.size), np.full(symbols.size, 3.0)
    costs = [laplace_bits(symbols, mean, scale * m) for m in MULTIPLIERS]
    assert costs[best_multiplier(symbols, mean, scale)] < min(costs) * 1.0005


@pytest.mark.parametrize("sample, shape", [("logistic", 0), ("laplace", calibration.LAPLACE_SHAPE)])
def test_shaped_choose_picks_the_shape_the_symbols_follow(sample, shape):
    """In a shaped codec the search also picks the mixture's shape: a pure logistic for logistic
    symbols, a pure Laplace for Laplace ones, and the chosen key codes them cheaper than the default."""
    rng = np.random.default_rng(6)
    scale = np.full(20000, 3.0)
    if sample == "logistic":
        noise = rng.logistic(0, coder.LOGISTIC_RATIO * 3.0, scale.size)
    else:
        noise = rng.laplace(0, 3.0, scale.size)
    symbols, mean = np.round(noise), np.zeros(scale.size)
    indices = calibration.choose(symbols, mean, scale, shaped=True)
    assert indices[calibration.SHAPE_INDEX] == shape
    weights = calibration.shape_weights(indices[calibration.SHAPE_INDEX])
    default = calibration.SHAPE_WEIGHTS[calibration.DEFAULT_SHAPE]
    chosen_bits = calibration.coded_bits(symbols, *calibration.apply(indices, mean, scale), weights)
    assert chosen_bits < calibration.coded_bits(symbols, mean, scale, default) - calibration.KEY_BITS
    assert calibration.is_neutral(calibration.neutral(shaped=True), shaped=True)
    assert not calibration.is_neutral(calibration.neutral(shaped=True))  # the default shapes differ


def keys_of(shape: tuple[int, int], model) -> int:
    """Calibration keys of an RGB image coded at T = 0: (level, context group, band)."""
    levels = len(plan.coding_plan(*shape, [1.0], codec.maps.num_levels(*shape)))
    return levels * codec.Codec(model.prior, 0).group_count * codec.BANDS


def test_calibrated_file_costs_less_and_pays_for_its_table(model, photo_crop):
    """On a photo the calibrated coder beats the uncalibrated one, table included; the table (a flag
    per key, indices for calibrated keys) is in the codelength, which is still what the payload pays
    (without format 7's surprise tables, whose bits the calibration term would also hold)."""
    with deterministic_coding():
        calibrated = codec.Codec(model.prior, 0, surprising=False)
        words, bits = calibrated.encode(photo_crop, "RGB")
        _, plain = codec.Codec(model.prior, 0, calibrated=False).encode(photo_crop, "RGB")
        assert np.array_equal(calibrated.decode(words, "RGB", *photo_crop.shape[:2]), photo_crop)
    keys = keys_of(photo_crop.shape[:2], model)
    calibrated_keys = (bits.per_term()["calibration"] - keys) / (calibration.KEY_BITS + calibration.SHAPE_BITS)
    assert 0 < calibrated_keys < keys and calibrated_keys == pytest.approx(round(calibrated_keys))
    assert "calibration" not in plain.per_term()
    assert bits.total < plain.total
    assert bits.total == pytest.approx(32 * len(words), abs=64)


def test_calibration_costs_a_tiny_image_at_most_a_bit_per_key(model):
    pixels = smooth_image(12, 20, 3, seed=9)
    with deterministic_coding():
        words, bits = codec.Codec(model.prior, 0).encode(pixels, "RGB")
        _, plain = codec.Codec(model.prior, 0, calibrated=False).encode(pixels, "RGB")
        assert np.array_equal(codec.Codec(model.prior, 0).decode(words, "RGB", 12, 20), pixels)
    assert bits.analytic <= plain.analytic + keys_of((12, 20), model)


def test_a_miscalibrated_image_is_rescued(model):
    """Noise far stronger than photos have: calibration widens the model's scales and saves many bits."""
    pixels = np.clip(smooth_image(64, 64, 3, seed=7).astype(int)
                     + np.random.default_rng(0).normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
    with deterministic_coding():
        _, bits = codec.Codec(model.prior, 0).encode(pixels, "RGB")
        _, plain = codec.Codec(model.prior, 0, calibrated=False).encode(pixels, "RGB")
    assert bits.total < 0.99 * plain.total


def test_calibrated_shapes_code_a_photo_smaller_than_the_plain_laplace(model, photo_crop):
    """Format 6's per-key Laplace/logistic shapes beat format 5's plain Laplace on a photo, shape
    indices included, and the payload still costs what the codelength says."""
    with deterministic_coding():
        words, shaped = codec.Codec(model.prior, 0).encode(photo_crop, "RGB")
        _, plain = codec.Codec(model.prior, 0, shaped=False).encode(photo_crop, "RGB")
    assert shaped.total < plain.total
    assert shaped.total == pytest.approx(32 * len(words), abs=64)
