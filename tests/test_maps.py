"""The integer maps are exact bijections and track the float wavelets of PyWavelets."""
from __future__ import annotations

import numpy as np
import pywt
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from hvpzip import maps

shapes = st.tuples(st.integers(1, 4), st.integers(1, 40), st.integers(1, 40))


@settings(max_examples=150, deadline=None)
@given(shape=shapes, map_name=st.sampled_from(maps.MAPS), data=st.data())
def test_multilevel_round_trip_is_exact(shape, map_name, data):
    x = data.draw(arrays(np.int64, shape, elements=st.integers(-(2**20), 2**20)))
    dec = maps.decompose(x, map_name)
    assert np.array_equal(maps.reconstruct(dec), x)
    assert max(dec.top.shape[1:]) <= maps.TOP_SIZE
    for details, (h, w) in zip(dec.details, dec.shapes):
        assert not details[:, ~maps.detail_mask(h, w)].any(), "padding positions must stay zero"


@settings(max_examples=100, deadline=None)
@given(shape=shapes, map_name=st.sampled_from(maps.MAPS), data=st.data())
def test_levels_are_non_redundant(shape, map_name, data):
    """Coefficient count equals pixel count: the map is a bijection Z^n -> Z^n."""
    x = data.draw(arrays(np.int64, shape, elements=st.integers(0, 255)))
    dec = maps.decompose(x, map_name)
    count = dec.top.size + sum(int(maps.detail_mask(h, w).sum()) * x.shape[0] for h, w in dec.shapes)
    assert count == x.size


def test_extreme_shapes_round_trip():
    rng = np.random.default_rng(1)
    for shape in [(3, 1, 1), (1, 1, 9), (3, 7, 13), (4, 64, 64), (3, 301, 203), (1, 1, 5000), (2, 3000, 2)]:
        x = rng.integers(0, 256, shape)
        for name in maps.MAPS:
            assert np.array_equal(maps.reconstruct(maps.decompose(x, name)), x), (shape, name)


@settings(max_examples=100, deadline=None)
@given(arrays(np.int64, st.tuples(st.just(3), st.integers(1, 20), st.integers(1, 20)), elements=st.integers(0, 255)))
def test_ycocg_r_round_trip(rgb):
    ycc = maps.ycocg_r_forward(rgb)
    assert np.array_equal(maps.ycocg_r_inverse(ycc), rgb)
    assert ycc[0].min() >= 0 and ycc[0].max() <= 255


def test_haar_lifting_matches_pywt():
    """S-transform: d = a - b is pywt's Haar detail times sqrt(2); s is the floor of its approximation / sqrt(2)."""
    x = np.random.default_rng(2).integers(0, 256, 64)
    s, d = maps.haar_lift_forward(x, 0)
    ca, cd = pywt.dwt(x.astype(float), "haar")
    np.testing.assert_allclose(d, cd * np.sqrt(2), atol=1e-9)
    assert np.array_equal(s, np.floor(ca / np.sqrt(2) + 1e-9).astype(int))


def test_legall53_lifting_matches_pywt_bior22():
    """Integer 5/3 lifting equals pywt's bior2.2 (CDF 5/3) up to scaling and rounding (interior samples)."""
    x = np.random.default_rng(3).integers(0, 256, 256).astype(float)
    s, d = maps.legall53_lift_forward(x.astype(np.int64), 0)
    ca, cd = pywt.dwt(x, "bior2.2", mode="periodization")
    # pywt's alignment puts the detail of pair i at index i and the low band shifted by one
    inner = slice(4, 120)
    assert np.abs(d[inner] + cd[inner] * np.sqrt(2)).max() <= 1.0
    lows = ca / np.sqrt(2)
    best = min(np.abs(s[inner] - np.roll(lows, k)[inner]).max() for k in (-1, 0, 1))
    assert best <= 1.0


def test_pyramid_details_are_smaller_on_smooth_images():
    """The pyramid's coarse-image prediction removes the gradient part of the Haar details."""
    yy, xx = np.mgrid[0:64, 0:64]
    x = (2 * yy + 3 * xx)[None].astype(np.int64)
    haar = maps.decompose(x, "haar", 1).details[0]
    pyr = maps.decompose(x, "pyramid", 1).details[0]
    assert np.abs(pyr).mean() < 0.5 * np.abs(haar).mean()


def test_num_levels():
    assert maps.num_levels(1, 1) == 0
    assert maps.num_levels(8, 8) == 0
    assert maps.num_levels(9, 1) == 1
    assert maps.num_levels(512, 768) == 7
