"""Every kind of image Pillow opens is either kept exactly (pixels, mode, palette, ICC, EXIF) or refused clearly."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from conftest import smooth_image
from test_cli import assert_clean_failure, run


def round_trip(tmp_path: Path, image: Image.Image, suffix: str = ".png", **save_options) -> Image.Image:
    """Save, compress and decompress through the CLI; return the decompressed file, opened."""
    src = tmp_path / f"src{suffix}"
    image.save(src, **save_options)
    assert run("compress", "-q", "--steps", "0", str(src)).exit_code == 0
    result = run("decompress", "-q", str(src.with_suffix(".hvpz")), "-o", str(tmp_path / "out.png"))
    assert result.exit_code == 0, result.output
    return Image.open(tmp_path / "out.png")


def test_palette_image_keeps_indices_palette_and_transparency(tmp_path):
    rng = np.random.default_rng(1)
    im = Image.frombytes("P", (40, 30), rng.integers(0, 16, 40 * 30, dtype=np.uint8).tobytes())
    im.putpalette(rng.integers(0, 256, 16 * 3, dtype=np.uint8).tobytes())
    alpha = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    back = round_trip(tmp_path, im, transparency=alpha)
    original = Image.open(tmp_path / "src.png")
    assert back.mode == "P"
    assert np.array_equal(np.array(back), np.array(original))
    assert back.getpalette() == original.getpalette()
    assert back.info["transparency"] == original.info["transparency"]
    assert np.array_equal(np.array(back.convert("RGBA")), np.array(original.convert("RGBA")))


def test_one_bit_image_is_exact(tmp_path):
    bits = np.random.default_rng(2).random((33, 47)) < 0.3
    im = Image.fromarray(bits)
    back = round_trip(tmp_path, im)
    assert back.mode == "1" and np.array_equal(np.array(back), bits)


def test_sixteen_bit_gray_is_exact(tmp_path):
    values = np.random.default_rng(3).integers(0, 65536, (21, 34), dtype=np.uint16)
    values[0, :4] = [0, 1, 255, 65535]
    back = round_trip(tmp_path, Image.fromarray(values))
    assert back.mode in ("I;16", "I") and np.array_equal(np.array(back).astype(np.int64), values.astype(np.int64))


def test_sixteen_bit_colour_is_refused_not_truncated(tmp_path):
    imagecodecs = pytest.importorskip("imagecodecs")
    src = tmp_path / "deep.png"
    src.write_bytes(imagecodecs.png_encode(np.full((8, 8, 3), 1000, dtype=np.uint16)))
    assert_clean_failure(run("compress", str(src)), "16-bit RGB images are not supported")
    assert not src.with_suffix(".hvpz").exists()


def test_icc_profile_and_exif_orientation_survive(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    exif[0x010F] = "hvpzip test camera"
    pixels = smooth_image(20, 28, 3)
    back = round_trip(tmp_path, Image.fromarray(pixels), icc_profile=icc, exif=exif.tobytes())
    assert np.array_equal(np.array(back), pixels)  # pixels are not rotated: the tag says how to show them
    assert back.info["icc_profile"] == icc
    assert back.getexif()[0x0112] == 6 and back.getexif()[0x010F] == "hvpzip test camera"


def test_jpeg_exif_is_kept(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 3
    back = round_trip(tmp_path, Image.fromarray(smooth_image(16, 16, 3)), suffix=".jpg", exif=exif.tobytes())
    assert back.getexif()[0x0112] == 3


def test_rgba_png_with_colour_key_transparency(tmp_path):
    pixels = smooth_image(12, 9, 3)
    back = round_trip(tmp_path, Image.fromarray(pixels), transparency=tuple(int(v) for v in pixels[0, 0]))
    assert np.array_equal(np.array(back), pixels)
    assert back.info["transparency"] == tuple(int(v) for v in pixels[0, 0])


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr", "F", "PA"])
def test_other_modes_are_refused_with_the_reason(tmp_path, mode):
    src = tmp_path / "odd.tif"
    try:
        Image.new(mode, (4, 4)).save(src)
    except (OSError, ValueError, KeyError):
        pytest.skip(f"Pillow cannot write {mode} TIFF here")
    if Image.open(src).mode != mode:
        pytest.skip(f"{mode} does not survive a TIFF round trip here")
    assert_clean_failure(run("compress", str(src)), f"mode {mode} is not supported")


def test_animated_gif_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    frames = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    (tmp_path / "anim.gif").write_bytes(buf.getvalue())
    assert_clean_failure(run("compress", str(tmp_path / "anim.gif")), "animated GIF with 3 frames")
