"""Whole-image coding through the Python API: exact round trips, size == negative ELBO, determinism."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hvpzip
from hvpzip import codec, container, maps, plan
from conftest import smooth_image

SIZES = [(1, 1), (1, 9), (7, 13), (64, 64), (301, 203)]


@pytest.mark.parametrize("mode,channels", [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
@pytest.mark.parametrize("height,width", SIZES)
def test_round_trip_all_modes_and_sizes(model, mode, channels, height, width):
    steps = 1 if height * width > 5000 else 2
    pixels = smooth_image(height, width, channels, seed=height + width)
    data = hvpzip.compress(pixels, steps=steps, model=model)
    out = hvpzip.decompress(data, model=model)
    assert out.dtype == np.uint8 and out.shape == pixels.shape
    assert np.array_equal(out, pixels)


def test_random_noise_round_trips(model):
    pixels = np.random.default_rng(5).integers(0, 256, (33, 17, 3)).astype(np.uint8)
    assert np.array_equal(hvpzip.decompress(hvpzip.compress(pixels, steps=2, model=model), model=model), pixels)


@pytest.mark.parametrize("steps", [0, 4])
def test_file_size_matches_negative_elbo(model, photo_crop, steps):
    """Bits-back works: the file costs what the model says (initial bits, header and ANS tail included)."""
    result = hvpzip.encode_image(photo_crop, steps=steps, model=model)
    assert result.header.method == container.METHOD_MODEL
    size_bits = 8 * len(result.data)
    assert abs(size_bits - result.neg_elbo_bits) / result.neg_elbo_bits < 0.03
    _, payload = container.unpack(result.data)
    assert 8 * len(payload) == pytest.approx(result.codelength.total, abs=1e-6)  # the accounting is the payload
    assert np.array_equal(hvpzip.decompress(result.data, model=model), photo_crop)


def test_decode_in_fresh_process_with_other_thread_count(model, photo_crop, tmp_path):
    import torch

    torch.set_num_threads(2)
    data = hvpzip.compress(photo_crop, steps=2, model=model)
    (tmp_path / "x.hvpz").write_bytes(data)
    script = (
        "import sys, torch, numpy as np, hvpzip; torch.set_num_threads(1); "
        f"sys.stdout.buffer.write(hvpzip.decompress(open(r'{tmp_path / 'x.hvpz'}', 'rb').read()).tobytes())"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout
    assert out == photo_crop.tobytes()


def test_coding_runs_the_network_as_the_format_version_did_and_restores_torch():
    """Version 9 runs oneDNN at CODING_THREADS whatever the caller set, 8 and before the native
    convolutions; the caller's settings come back afterwards."""
    import torch

    from hvpzip.api import CODING_THREADS, deterministic_coding

    before = torch.get_num_threads(), torch.backends.mkldnn.enabled, torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    try:
        with deterministic_coding(9):
            assert torch.backends.mkldnn.enabled and torch.get_num_threads() == CODING_THREADS
            assert torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == 1
        with deterministic_coding(8):
            assert not torch.backends.mkldnn.enabled and torch.get_num_threads() == 1
        assert (torch.backends.mkldnn.enabled, torch.are_deterministic_algorithms_enabled()) == before[1:]
    finally:
        torch.set_num_threads(before[0])


def test_tile_schedule_covers_each_position_once_and_grows():
    rects = plan.tile_schedule(100, 70, 9, 0)
    cover = np.zeros((100, 70), dtype=int)
    coded = 0
    for (y0, y1, x0, x1), before in rects:
        assert before == coded
        cover[y0:y1, x0:x1] += 1
        size = (y1 - y0) * (x1 - x0) * 9
        assert size <= max(9, plan.GROWTH * coded)
        coded += size
    assert (cover == 1).all()
    assert rects[0] == ((0, 1, 0, 1), 0), "an image's first tile is a single position"
    big = plan.tile_schedule(100, 70, 9, 10**9)
    assert [r for r, _ in big] == [(0, 64, 0, 64), (0, 64, 64, 70), (64, 100, 0, 64), (64, 100, 64, 70)]


def test_first_tiles_use_the_direct_model(model):
    c = codec.Codec(model.prior, 4)
    assert c.tile_steps(0) == 0 and c.tile_steps(codec.SEED_COEFFICIENTS - 1) == 0
    assert c.tile_steps(codec.SEED_COEFFICIENTS) == 4


def test_planes_round_trip():
    rng = np.random.default_rng(0)
    for mode, shape in [("L", (5, 4)), ("LA", (5, 4, 2)), ("RGB", (5, 4, 3)), ("RGBA", (5, 4, 4))]:
        px = rng.integers(0, 256, shape).astype(np.uint8)
        planes = [p for p, _ in plan.image_planes(px, mode)]
        assert np.array_equal(plan.planes_image(planes, mode), px)


def test_coding_plan_counts_every_coefficient():
    h, w = 37, 23
    plans = plan.coding_plan(h, w, [1.0, 0.0], maps.num_levels(h, w))
    coded = sum(int(plan.coef_mask(p.shape, p.chroma).sum()) for p in plans)
    top = maps.decompose(np.zeros((1, h, w)), "haar").top.size
    assert coded + top * 4 == h * w * 4


def test_large_images_are_coded_as_regions(model):
    """Images above the region side split into independent regions on one stack, exactly invertible."""
    assert plan.regions(4000, 6000) == [(0, 2000, 0, 2000), (0, 2000, 2000, 4000), (0, 2000, 4000, 6000),
                                         (2000, 4000, 0, 2000), (2000, 4000, 2000, 4000), (2000, 4000, 4000, 6000)]
    assert plan.regions(5, 7, side=3) == [(0, 2, 0, 2), (0, 2, 2, 4), (0, 2, 4, 7),
                                           (2, 5, 0, 2), (2, 5, 2, 4), (2, 5, 4, 7)]
    assert plan.regions(768, 512) == [(0, 768, 0, 512)]
    pixels = smooth_image(70, 90, 4, seed=5)
    coder, seen = codec.Codec(model.prior, 2), []
    words, bits = coder.encode(pixels, "RGBA", seen.append, region_side=40)
    assert sum(seen) == codec.Codec.work_units(70, 90, "RGBA", 40)
    assert sum(bits.dims.values()) == pixels.size and bits.total == pytest.approx(32 * len(words))
    assert np.array_equal(coder.decode(words, "RGBA", 70, 90, region_side=40), pixels)
    with pytest.raises(ValueError):  # the region layout is part of the format
        coder.decode(words, "RGBA", 70, 90, region_side=50)


def test_older_format_versions_still_decode(model, photo_crop):
    """Files from format versions 1 (no metadata block, one region), 2 (bits-back tiles at T = 0), 3
    (plain tiles, no calibration), 4 (one view, no view count in the header), 5 (Laplace only, no
    calibrated shapes), 6 (no surprise tables), 7 (no readout flags; the same bytes as 8 for an
    image this small, whose levels are all below readout.MIN_POSITIONS), 8 (the native
    convolutions, not oneDNN's) and 9 (oneDNN's on contiguous tensors, not channels-last ones) stay
    readable, each encoded as its version ran the network; the
    version byte picks the layout, so a payload under the wrong version fails the checks instead of
    giving a wrong image (8 read as 7: tests/test_readout.py). 8 and 9 differ only in how the network
    rounds, so where both paths round alike on an image (the synthetic one, with r24) their bytes are
    the same and either version reads them exactly."""
    import struct
    import zlib

    from hvpzip.api import DEFAULT_VIEWS, deterministic_coding, format_codec

    def build(version: int, fields: bytes, payload: bytes) -> bytes:
        checked = fields + (struct.pack("<I", 0) if version >= 2 else b"")  # empty metadata block
        return (b"HVPZ" + bytes([version, len(fields)]) + checked + struct.pack("<I", zlib.crc32(checked))
                + payload + struct.pack("<I", zlib.crc32(payload)))

    data = hvpzip.compress(photo_crop, steps=0, model=model)
    header, payload = container.unpack(data)
    assert header.version == container.VERSION == 10 and header.views == DEFAULT_VIEWS > 1 and header.meta == {}
    fields = data[6 : 6 + data[5]]
    assert build(10, fields, payload) == data and fields[-1] == DEFAULT_VIEWS
    with deterministic_coding(9):
        words, _ = format_codec(model.prior, 0, 9, DEFAULT_VIEWS).encode(photo_crop, "RGB")
    contiguous = container.words_to_bytes(words)
    assert contiguous != payload and np.array_equal(hvpzip.decompress(build(9, fields, contiguous), model=model), photo_crop)
    for version, body in ((10, contiguous), (9, payload)):
        with pytest.raises(container.FormatError):
            hvpzip.decompress(build(version, fields, body), model=model)  # run on the other layout
    with deterministic_coding(8):
        words, _ = format_codec(model.prior, 0, 8, DEFAULT_VIEWS).encode(photo_crop, "RGB")
        native = container.words_to_bytes(words)
        words, _ = format_codec(model.prior, 0, 7, DEFAULT_VIEWS).encode(photo_crop, "RGB")
    assert container.words_to_bytes(words) == native != payload  # other roundings, other bytes
    for version in (7, 8):
        assert np.array_equal(hvpzip.decompress(build(version, fields, native), model=model), photo_crop)
    for version, body in ((8, contiguous), (9, native)):
        if contiguous == native:  # both network paths rounded alike on this image: either reads it
            assert np.array_equal(hvpzip.decompress(build(version, fields, body), model=model), photo_crop)
        else:
            with pytest.raises(container.FormatError):
                hvpzip.decompress(build(version, fields, body), model=model)  # run with the other network path
    viewed = {7: native}
    for version in (5, 6):
        with deterministic_coding(version):
            words, _ = format_codec(model.prior, 0, version, DEFAULT_VIEWS).encode(photo_crop, "RGB")
        viewed[version] = container.words_to_bytes(words)
        assert viewed[version] != native
        assert np.array_equal(hvpzip.decompress(build(version, fields, viewed[version]), model=model), photo_crop)
    for version, body in ((6, viewed[5]), (5, viewed[6]), (7, viewed[6]), (6, viewed[7])):
        with pytest.raises(container.FormatError):
            hvpzip.decompress(build(version, fields, body), model=model)  # another version's layout
    old_fields = fields[:-1]  # before version 5 the header ended with the model id
    olds = {}
    for version in (2, 3, 4):
        with deterministic_coding(version):  # as compress of that version ran the network
            words, _ = format_codec(model.prior, 0, version).encode(photo_crop, "RGB")
        olds[version] = container.words_to_bytes(words)
        assert olds[version] != native  # the layouts differ, so the version matters
        assert np.array_equal(hvpzip.decompress(build(version, old_fields, olds[version]), model=model), photo_crop)
        with pytest.raises(container.FormatError):
            hvpzip.decompress(build(8, fields, olds[version]), model=model)  # read as version 8
    with pytest.raises(container.FormatError):
        hvpzip.decompress(build(4, old_fields, payload), model=model)  # 4 views read as one
    with pytest.raises(container.FormatError, match="header incomplete"):
        hvpzip.decompress(build(8, old_fields, payload), model=model)  # version 8 without its view count
    with pytest.raises(container.FormatError, match="view count 5"):
        hvpzip.decompress(build(8, old_fields + bytes([5]), payload), model=model)
    v1 = build(1, old_fields, olds[2])
    header, _ = container.unpack(v1)
    assert header.version == 1 and header.meta == {} and header.views == 1
    assert np.array_equal(hvpzip.decompress(v1, model=model), photo_crop)


@pytest.mark.parametrize("views", [2, 3, 4])
def test_flipped_views_code_exactly_and_save_bits_on_a_photo(model, photo_crop, views):
    """With 2 to 4 views the direct model averages the predictions of flipped copies of each tile:
    still bit-exact (colour, grey, T = 0 and the direct seed tiles of T = 4), recorded in the header,
    and on a real photo crop cheaper than one view; an unknown view count is a clear error."""
    from hvpzip.api import encode_image

    for pixels, steps in ((photo_crop, 0), (smooth_image(37, 29, 1, seed=2), 0), (smooth_image(30, 41, 3, seed=3), 4)):
        data = hvpzip.compress(pixels, steps=steps, model=model, views=views)
        assert container.unpack(data)[0].views == views
        assert np.array_equal(hvpzip.decompress(data, model=model), pixels)
    one, more = (encode_image(photo_crop, 0, model, views=v).codelength.total for v in (1, views))
    assert more < 0.998 * one
    with pytest.raises(ValueError, match="views"):
        hvpzip.compress(photo_crop, model=model, views=5)


def test_band_signs_under_flips_match_the_haar_map():
    """The signs the views apply: flipping a plane flips its Haar details, negating the bands that
    difference across the flipped direction (exactly, except HL under a column flip: up to rounding)."""
    rng = np.random.default_rng(1)
    plane = rng.integers(0, 256, (3, 20, 24)).astype(np.int64)
    details = maps.decompose(plane, "haar", 1).details[0].reshape(9, 10, 12)
    for axis in (1, 2):
        flipped = np.flip(maps.decompose(np.flip(plane, axis).copy(), "haar", 1).details[0].reshape(9, 10, 12), axis)
        expected = details * codec.view_signs((axis,))
        for band in range(3):
            got, want = flipped[band::3], expected[band::3]
            if axis == 2 and band == 1:  # HL: -d up to the lifting's rounding, far from +d
                assert np.abs(got - want).max() <= 1 and np.abs(got - details[band::3]).max() > 100
            else:
                assert np.array_equal(got, want)


def test_direct_levels_are_cut_into_plain_large_tiles():
    """At T = 0 (format 3) levels are cut into plain tiles of DIRECT_TILE positions a side, never split to grow."""
    h, w = 1000, 500
    plans = plan.coding_plan(h, w, [1.0], maps.num_levels(h, w), direct_tile=200)
    assert [r for r, _ in plans[0].rects] == [(0, 200, 0, 200), (0, 200, 200, 250), (200, 400, 0, 200),
                                              (200, 400, 200, 250), (400, 500, 0, 200), (400, 500, 200, 250)]
    assert [r for r, _ in plans[1].rects] == [(0, 200, 0, 125), (200, 250, 0, 125)]
    assert all(len(p.rects) == 1 for p in plans[2:])
    bits_back = plan.coding_plan(h, w, [1.0], maps.num_levels(h, w))
    assert bits_back[0].rects[0] == ((0, 1, 0, 1), 0) and len(bits_back[0].rects) > 50
