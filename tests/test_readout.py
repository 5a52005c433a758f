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
    assert len(crops) == readout.FIT_POSITIONS // readout.CROP**2 == 4
    for y0, y1, x0, x1 in crops:
        assert (y1 - y0, x1 - x0) == (readout.CROP, readout.CROP)
        assert 0 <= y0 and y1 <= 256 and 0 <= x0 and x1 <= 384
    assert len({(y0 // 128, x0 // 192) for y0, _, x0, _ in crops}) == 4  # one crop in each quarter
    for y0, y1, x0, x1 in readout.fit_crops(20, 5000):  # a thin level: crops as tall as it is
        assert (y0, y1) == (0, 20) and x1 - x0 == readout.CROP


def tiles_of(height: int, width: int) -> list[tuple[int, int, int, int]]:
    return [(y, min(y + 128, height), x, min(x + 128, width)) for y in range(0, height, 128) for x in range(0, width, 128)]


def test_fit_tiles_hold_the_crops_moved_into_one_tile_each():
    pairs = readout.fit_tiles(tiles_of(529, 476), 529, 476)  # the crops of this level straddle tile boundaries
    assert len(pairs) == 4 and sum((y1 - y0) * (x1 - x0) for _, crops in pairs for y0, y1, x0, x1 in crops) == \
        4 * readout.CROP**2
    pairs = readout.fit_tiles(tiles_of(140, 300), 140, 300)  # one row of 4 crops, two in each of two tiles
    assert [(tile, len(crops)) for tile, crops in pairs] == [((0, 128, 0, 128), 2), ((0, 128, 128, 256), 2)]
    for (ty0, ty1, tx0, tx1), crops in pairs:
        for y0, y1, x0, x1 in crops:
            assert ty0 <= y0 < y1 <= ty1 and tx0 <= x0 < x1 <= tx1 and y1 - y0 == readout.CROP
    small = [(0, 40, 0, 128), (0, 40, 128, 200)]  # a level of fewer positions than the fit wants: all of it
    assert readout.fit_tiles(small, 40, 200) == [(r, [r]) for r in small]


def test_delta_is_the_linear_readout_of_the_features_and_zero_weights_change_nothing():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(5, 40)).astype(np.float32)
    weights = rng.integers(-300, 300, (readout.ROWS, 6))
    k = rng.integers(0, readout.ROWS, 40)
    expected = np.einsum("nf,fn->n", weights[k, :5] * readout.STEP, features) + weights[k, 5] * readout.STEP
    assert np.allclose(readout.delta(weights, k, features), expected, rtol=0, atol=1e-12)
    assert np.array_equal(readout.delta(np.zeros_like(weights), k, features), np.zeros(40))


def planted_samples(bias: np.ndarray, count: int = 6000, seed: int = 0) -> readout.FitSamples:
    """Fit samples of one view whose coefficients follow the model's Laplace with the raw means
    shifted by `bias` (ROWS, F + 1) . [h, 1]: what a readout that is off for the whole image looks like."""
    rng = np.random.default_rng(seed)
    samples, features = readout.FitSamples(), bias.shape[1] - 1
    for index in range(9):
        group = np.zeros((COEFS, 20, 30), dtype=bool)
        group[3 * (index // 3): 3 * (index // 3) + 3] = True
        k, yy, xx = np.nonzero(group)
        h = rng.normal(size=(features, 20, 30))[:, yy, xx]
        raw_mean, gain = rng.normal(scale=0.3, size=(COEFS, 20, 30))[group], np.full(k.size, 16.0)
        shifted = raw_mean + readout.delta(bias, k, h)
        symbols = np.round((shifted + rng.laplace(scale=0.1, size=(COEFS, 20, 30))[group]) * gain)
        samples.add(index, group, (0, 0), symbols, raw_mean * gain, np.full(k.size, 1.6), gain, [(h, np.ones(k.size))])
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
    """The public path on a photo crop: --refit (the default) does not make this file larger than
    --no-refit, and every file decodes to the exact pixels."""
    plain = hvpzip.encode_image(photo, 0, model, refit=False)
    refit = hvpzip.encode_image(photo, 0, model)  # the default
    assert container.unpack(refit.data)[0].version == container.VERSION == 10
    assert np.array_equal(hvpzip.decompress(refit.data, model=model), photo)
    assert refit.codelength.total <= plain.codelength.total
    sent = refit.codelength.per_term()["readout"] > 2
    assert sent == (refit.codelength.total < plain.codelength.total)


def full_array_direct_params(coder: codec.Codec, details, coarse, mask, level, weights):
    """The direct model's (mean, scale) per context group as formats 5 to 10 were first written: views
    corrected and combined on whole (9, h, w) arrays, then the group's coefficients picked; the
    gathered computation the codec runs must give them bit for bit (else old files would not decode)."""
    c = coder._level_constants(level, 0)[0]
    band, y = mask[:3].astype(np.float64), details / c
    known, out = np.zeros(mask.shape, dtype=bool), []
    for _, group in coder._direct_groups(mask, (0, 0)):
        params = []
        for axes in codec.VIEW_FLIPS[coder.views]:
            signs = codec.view_signs(axes)
            raw, feats = codec.raw_outputs(coder.model, np.zeros(mask.shape), np.flip(coarse, axes), np.flip(band, axes),
                                           1.0, level, codec.DIRECT_GAMMA, np.flip(known, axes),
                                           np.flip(y * known, axes) * signs, features=True,
                                           channels_last=coder.channels_last)
            raw, feats = np.flip(raw, axes).copy(), np.flip(feats, axes)
            if weights is not None:
                w = weights.astype(np.float64) * readout.STEP
                delta = np.broadcast_to(w[:, -1, None, None], (readout.ROWS,) + feats.shape[1:]).copy()
                for f in range(feats.shape[0]):
                    delta += w[:, f, None, None] * feats[f]
                raw[: readout.ROWS] += delta
            mean, scale = codec.schedule.decoder_laplace(0.0, raw[:COEFS], raw[COEFS: 2 * COEFS], codec.DIRECT_GAMMA,
                                                         c, np)
            params.append((mean * signs, scale))
        if len(params) == 1:
            mean, scale = params[0]
        else:
            mean, scale = np.mean([m for m, _ in params], axis=0), np.exp(np.mean([np.log(s) for _, s in params], axis=0))
        out.append((mean[group], scale[group]))
        known |= group
    return out


@pytest.fixture(scope="module")
def small_level(photo):
    """Level 2 of the photo crop: (details (9, 48, 64), coarse, mask)."""
    from hvpzip import maps, plan

    dec = maps.decompose(plan.image_planes(photo, "RGB")[0][0], "haar")
    return dec.details[1].reshape(9, 48, 64), dec.coarse[1], plan.coef_mask(dec.shapes[1], 1.0)


@pytest.mark.parametrize("views,channels_last", [(1, True), (2, True), (4, True), (2, False)])
def test_the_codec_combines_corrected_views_bit_for_bit_as_on_whole_arrays(model, small_level, views, channels_last):
    coder = codec.Codec(model.prior, 0, views=views, channels_last=channels_last)
    weights = np.random.default_rng(4).integers(-400, 400, (readout.ROWS, model.prior.config.width + 1))
    with deterministic_coding():
        for w in (None, weights):
            want = full_array_direct_params(coder, *small_level, 2, w)
            got = coder.direct_groups(*small_level, 1.0, 2, (0, 0), w)
            assert len(got) == len(want) == coder.group_count
            for g, (mean, scale) in zip(got, want):
                assert np.array_equal(g.mean, mean) and np.array_equal(g.scale, scale)


def test_fit_samples_hold_the_codec_view_of_the_fit_tiles_whose_outputs_are_reused(model, small_level):
    """The fit sees what the coder would use: with zero weights, its Laplace parameters of a small level
    (one tile, the whole level) are the codec's own for the same coefficients, split in two folds, and
    its linear model of the mean moves them as the correction does; the tile's direct groups made from
    the network outputs the fit ran on are, with the chosen correction, bit for bit those of a fresh run."""
    details, coarse, mask = small_level
    coder = codec.Codec(model.prior, 0, views=2)
    captured = {}
    weights = np.random.default_rng(5).integers(-40, 40, (readout.ROWS, model.prior.config.width + 1))
    with deterministic_coding(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(readout, "choose", lambda samples, *args: captured.setdefault("samples", samples) and weights)
        chosen, kept = coder.fit_readout_weights(details, coarse, mask, 1.0, 2, [(0, 48, 0, 64)])
        groups = coder.direct_groups(details, coarse, mask, 1.0, 2)
        corrected = coder.direct_groups(details, coarse, mask, 1.0, 2, (0, 0), weights)
    assert chosen is weights and list(kept) == [(0, 0)]
    for a, b in zip(kept[(0, 0)], corrected, strict=True):
        assert np.array_equal(a.symbols, b.symbols) and np.array_equal(a.mean, b.mean) and np.array_equal(a.scale, b.scale)
    folds = captured["samples"].folds()
    assert 0.4 < folds[0].size / captured["samples"].size < 0.6
    for w, want in ((np.zeros_like(weights), groups), (weights, corrected)):
        tensor = torch.from_numpy(w * readout.STEP).to(torch.float64)
        params = [(fold.symbols, fold.mean + readout._mean_shift(fold, tensor).numpy(), fold.scale) for fold in folds]
        for got, expected in zip(zip(*params), (np.concatenate([getattr(g, name) for g in want]) for name in
                                                ("symbols", "mean", "scale"))):
            assert np.allclose(np.sort(np.concatenate(got)), np.sort(expected), rtol=1e-6, atol=1e-6)
