"""Whole-image coding through the Python API: exact round trips, size == negative ELBO, determinism."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hvpzip
from hvpzip import codec, container, maps
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


def test_tile_schedule_covers_each_position_once_and_grows():
    rects = codec.tile_schedule(100, 70, 9, 0)
    cover = np.zeros((100, 70), dtype=int)
    coded = 0
    for (y0, y1, x0, x1), before in rects:
        assert before == coded
        cover[y0:y1, x0:x1] += 1
        size = (y1 - y0) * (x1 - x0) * 9
        assert size <= max(9, codec.GROWTH * coded)
        coded += size
    assert (cover == 1).all()
    assert rects[0] == ((0, 1, 0, 1), 0), "an image's first tile is a single position"
    big = codec.tile_schedule(100, 70, 9, 10**9)
    assert [r for r, _ in big] == [(0, 64, 0, 64), (0, 64, 64, 70), (64, 100, 0, 64), (64, 100, 64, 70)]


def test_first_tiles_use_the_direct_model(model):
    c = codec.Codec(model.prior, 4)
    assert c.tile_steps(0) == 0 and c.tile_steps(codec.SEED_COEFFICIENTS - 1) == 0
    assert c.tile_steps(codec.SEED_COEFFICIENTS) == 4


def test_planes_round_trip():
    rng = np.random.default_rng(0)
    for mode, shape in [("L", (5, 4)), ("LA", (5, 4, 2)), ("RGB", (5, 4, 3)), ("RGBA", (5, 4, 4))]:
        px = rng.integers(0, 256, shape).astype(np.uint8)
        planes = [p for p, _ in codec.image_planes(px, mode)]
        assert np.array_equal(codec.planes_image(planes, mode), px)


def test_coding_plan_counts_every_coefficient():
    h, w = 37, 23
    plans = codec.coding_plan(h, w, [1.0, 0.0], maps.num_levels(h, w))
    coded = sum(int(codec.coef_mask(p.shape, p.chroma).sum()) for p in plans)
    top = maps.decompose(np.zeros((1, h, w)), "haar").top.size
    assert coded + top * 4 == h * w * 4


def test_large_images_are_coded_as_regions(model):
    """Images above the region side split into independent regions on one stack, exactly invertible."""
    assert codec.regions(4000, 6000) == [(0, 2000, 0, 2000), (0, 2000, 2000, 4000), (0, 2000, 4000, 6000),
                                         (2000, 4000, 0, 2000), (2000, 4000, 2000, 4000), (2000, 4000, 4000, 6000)]
    assert codec.regions(5, 7, side=3) == [(0, 2, 0, 2), (0, 2, 2, 4), (0, 2, 4, 7),
                                           (2, 5, 0, 2), (2, 5, 2, 4), (2, 5, 4, 7)]
    assert codec.regions(768, 512) == [(0, 768, 0, 512)]
    pixels = smooth_image(70, 90, 4, seed=5)
    coder, seen = codec.Codec(model.prior, 2), []
    words, bits = coder.encode(pixels, "RGBA", seen.append, region_side=40)
    assert sum(seen) == codec.Codec.work_units(70, 90, "RGBA", 40)
    assert sum(bits.dims.values()) == pixels.size and bits.total == pytest.approx(32 * len(words))
    assert np.array_equal(coder.decode(words, "RGBA", 70, 90, region_side=40), pixels)
    with pytest.raises(ValueError):  # the region layout is part of the format
        coder.decode(words, "RGBA", 70, 90, region_side=50)


def test_older_format_versions_still_decode(model, photo_crop):
    """Files from format versions 1 (no metadata block, one region), 2 (bits-back tiles at T = 0) and
    3 (plain tiles, no calibration) stay readable; the version byte picks the layout, so a payload
    under the wrong version fails the checks instead of giving a wrong image."""
    import struct
    import zlib

    from hvpzip.api import deterministic_coding, format_codec

    data = hvpzip.compress(photo_crop, steps=0, model=model)
    header, payload = container.unpack(data)
    assert header.version == container.VERSION == 4
    olds = {}
    for version in (2, 3):
        with deterministic_coding():  # as compress runs the network
            words, _ = format_codec(model.prior, 0, version).encode(photo_crop, "RGB")
        old_payload = container.words_to_bytes(words)
        assert old_payload != payload  # the layouts differ, so the version matters
        olds[version] = data[: data.index(payload)] + old_payload + struct.pack("<I", zlib.crc32(old_payload))
        labelled = olds[version][:4] + bytes([version]) + olds[version][5:]  # the version byte is outside the header CRC
        assert np.array_equal(hvpzip.decompress(labelled, model=model), photo_crop)
        with pytest.raises(container.FormatError):
            hvpzip.decompress(olds[version], model=model)  # read as version 4
    fields = data[6 : 6 + data[5]]
    v2_payload = container.unpack(olds[2])[1]
    v1 = (b"HVPZ" + bytes([1, len(fields)]) + fields + struct.pack("<I", zlib.crc32(fields))
          + v2_payload + struct.pack("<I", zlib.crc32(v2_payload)))
    header, _ = container.unpack(v1)
    assert header.version == 1 and header.meta == {}
    assert np.array_equal(hvpzip.decompress(v1, model=model), photo_crop)


def test_direct_levels_are_cut_into_plain_large_tiles():
    """At T = 0 (format 3) levels are cut into plain tiles of DIRECT_TILE positions a side, never split to grow."""
    h, w = 1000, 500
    plans = codec.coding_plan(h, w, [1.0], maps.num_levels(h, w), direct_tile=200)
    assert [r for r, _ in plans[0].rects] == [(0, 200, 0, 200), (0, 200, 200, 250), (200, 400, 0, 200),
                                              (200, 400, 200, 250), (400, 500, 0, 200), (400, 500, 200, 250)]
    assert [r for r, _ in plans[1].rects] == [(0, 200, 0, 125), (200, 250, 0, 125)]
    assert all(len(p.rects) == 1 for p in plans[2:])
    bits_back = codec.coding_plan(h, w, [1.0], maps.num_levels(h, w))
    assert bits_back[0].rects[0] == ((0, 1, 0, 1), 0) and len(bits_back[0].rects) > 50
