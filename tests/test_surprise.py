"""Surprise tables (format 7): the neighbourhood feature, the encoder's table search, what they do to a file."""
from __future__ import annotations

import numpy as np
import pytest

from hvpzip import codec, plan, surprise
from hvpzip.api import deterministic_coding
from hvpzip.calibration import MULTIPLIERS, NEUTRAL, coded_bits


def test_buckets_see_only_coded_neighbours():
    """A coefficient's bucket depends on the coded coefficients in its window (any channel) and at its
    position, not on coefficients outside them nor on ones not yet coded; with none coded it is 0."""
    seen = surprise.SurpriseMap((9, 8, 8))
    target = np.zeros((9, 8, 8), dtype=bool)
    target[4, 4, 4] = True
    assert surprise.SurpriseMap((9, 8, 8)).buckets(target).tolist() == [0]

    def bucket_after(where: tuple[int, int, int], residual: float) -> int:
        mask = np.zeros((9, 8, 8), dtype=bool)
        mask[where] = True
        seen.add(mask, np.array([residual]), np.zeros(1), np.ones(1))
        return int(seen.buckets(target)[0])

    assert bucket_after((4, 4, 5), 0.1) == 1  # a well predicted neighbour: the lowest bucket
    assert bucket_after((0, 0, 0), 50.0) == 1  # far away: no effect
    seen = surprise.SurpriseMap((9, 8, 8))
    assert bucket_after((0, 4, 4), 5.0) == surprise.BUCKETS - 1  # another channel at the same position
    assert bucket_after((8, 3, 3), 0.0) < surprise.BUCKETS - 1  # a calm diagonal neighbour lowers it


def test_buckets_follow_the_weighted_mean_of_normalized_residuals():
    """Equal residuals in every neighbourhood give the bucket of that residual, whatever the scale."""
    seen = surprise.SurpriseMap((9, 6, 6))
    coded = np.zeros((9, 6, 6), dtype=bool)
    coded[:4] = True
    count = int(coded.sum())
    seen.add(coded, np.full(count, 3.0), np.full(count, 1.0), np.full(count, 2.4))  # |3 - 1| / 2.4 = 0.83
    target = np.zeros((9, 6, 6), dtype=bool)
    target[6, 2:4, 2:4] = True
    assert set(seen.buckets(target).tolist()) == {int(np.digitize(2 / 2.4, surprise.EDGES)) + 1}


def test_choose_widens_surprising_buckets_and_leaves_calm_ones():
    """Symbols twice as wide as their scale says in one bucket, as wide as it says in another: the
    table doubles the first bucket's scales, keeps the second neutral (nothing to save), and costs
    a flag per bucket plus one entry."""
    rng = np.random.default_rng(4)
    count = 20000
    buckets = np.where(np.arange(count) % 2 == 0, 3, 12)
    scale = np.full(count, 4.0)
    symbols = np.round(rng.laplace(0, np.where(buckets == 12, 8.0, 4.0)))
    weight = np.ones(count)  # the plain Laplace
    table = surprise.choose(symbols, np.zeros(count), scale, weight, buckets)
    assert abs(np.log2(MULTIPLIERS[table[12]] / 2)) < 0.1
    assert table[3] == NEUTRAL and (np.delete(table, 12) == NEUTRAL).all()
    assert surprise.table_bits(table) == surprise.BUCKETS + surprise.ENTRY_BITS
    widened = surprise.apply(table, buckets, scale)
    assert coded_bits(symbols, np.zeros(count), widened, weight) < 0.97 * coded_bits(symbols, np.zeros(count), scale,
                                                                                        weight)
    assert np.array_equal(surprise.apply(surprise.neutral(), buckets, scale), scale)  # neutral: bit for bit


def test_a_subsampled_level_weighs_its_saving_by_the_stride():
    """A saving too small to pay for an entry on the coefficients given pays once each stands for
    many of the level's (`stride`, as `Codec.choose_surprise` subsamples large levels)."""
    symbols = np.round(np.random.default_rng(2).laplace(0, 4.4, 400))  # saves ~3 bits at 1.09x the scale
    args = symbols, np.zeros(400), np.full(400, 4.0), np.ones(400), np.full(400, 7, dtype=np.uint8)
    assert surprise.choose(*args)[7] == NEUTRAL
    assert surprise.choose(*args, stride=1000)[7] != NEUTRAL


def test_surprise_tables_code_a_photo_smaller_and_exactly(model, photo_crop):
    """Format 7's surprise tables beat format 6 on a photo, tables included; the payload costs what
    the codelength says and decodes bit-exact."""
    with deterministic_coding():
        coder = codec.Codec(model.prior, 0)
        words, tables = coder.encode(photo_crop, "RGB")
        _, plain = codec.Codec(model.prior, 0, surprising=False).encode(photo_crop, "RGB")
        assert np.array_equal(coder.decode(words, "RGB", *photo_crop.shape[:2]), photo_crop)
    assert tables.total < plain.total
    assert tables.total == pytest.approx(32 * len(words), abs=64)
    levels = len(plan.coding_plan(*photo_crop.shape[:2], [1.0], codec.maps.num_levels(*photo_crop.shape[:2])))
    entries = (tables.per_term()["calibration"] - plain.per_term()["calibration"] - levels * surprise.BUCKETS
               ) / surprise.ENTRY_BITS  # a flag per bucket and level, and the index of each non-neutral entry
    assert 0 < entries < levels * surprise.BUCKETS and entries == pytest.approx(round(entries))
