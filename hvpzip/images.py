"""Reading image files (Pillow) into codable uint8 pixels plus the metadata that restores them, and back.

The codec codes 8-bit L, LA, RGB and RGBA. Other kinds are mapped onto those exactly and restored
from metadata: palette images code their indices (palette and transparency kept), 1-bit images
code 0/255, 16-bit grayscale codes its high and low bytes as two planes. ICC profiles and EXIF
(orientation included) are kept byte for byte. Anything else is refused with the reason, never
approximated.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

CODED_MODES = ("L", "LA", "RGB", "RGBA")
SIXTEEN_BIT_GRAY = ("I;16", "I;16B", "I;16L", "I")


class ImageError(ValueError):
    """An input that is not a readable image of a supported kind."""


@dataclass
class SourceImage:
    """Pixels in a coded mode and the metadata records (container tags) that restore the source image."""

    pixels: np.ndarray
    meta: dict[str, bytes] = field(default_factory=dict)


def read_image(data: bytes) -> SourceImage:
    """Decode image file bytes; refuse, with the reason, what cannot be kept exact."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise ImageError(f"animated {im.format} with {im.n_frames} frames is not supported")
            if any(";16" in str(_rawmode(tile)) for tile in im.tile) and im.mode not in SIXTEEN_BIT_GRAY:
                raise ImageError(f"16-bit {im.mode} images are not supported (only 16-bit grayscale is kept exact)")
            im.load()
            return SourceImage(_coded_pixels(im), _metadata(im))
    except UnidentifiedImageError:
        raise ImageError("not an image file (cannot identify image format)") from None
    except (OSError, SyntaxError) as err:  # Pillow reports truncated/corrupt files as OSError
        raise ImageError(f"cannot read image: {err}") from None


def _rawmode(tile: tuple) -> object:
    """The raw (file) mode of a Pillow tile descriptor, e.g. 'RGB;16B' for 16-bit RGB PNG data."""
    args = tile[3]
    return args[0] if isinstance(args, tuple) and args else args


def _coded_pixels(im: Image.Image) -> np.ndarray:
    if im.mode in CODED_MODES:
        return np.array(im)
    if im.mode == "P":
        return np.array(im)  # the palette indices
    if im.mode == "1":
        return np.array(im.convert("L"))  # 0 / 255
    if im.mode in SIXTEEN_BIT_GRAY:
        values = np.array(im).astype(np.int64)
        if values.min() < 0 or values.max() > 0xFFFF:
            raise ImageError(f"{im.mode} image with values outside 0..65535 is not supported")
        return np.stack([values >> 8, values & 0xFF], axis=-1).astype(np.uint8)
    raise ImageError(f"image mode {im.mode} is not supported (supported: L, LA, RGB, RGBA, P, 1, 16-bit gray)")


def _metadata(im: Image.Image) -> dict[str, bytes]:
    meta: dict[str, bytes] = {}
    if im.mode not in CODED_MODES:
        meta["MODE"] = ("I;16" if im.mode in SIXTEEN_BIT_GRAY else im.mode).encode()
    if im.mode == "P":
        meta["PLTE"] = im.palette.mode.encode() + b"\0" + im.palette.tobytes()
    if "transparency" in im.info:
        value = im.info["transparency"]
        meta["TRNS"] = json.dumps(list(value) if isinstance(value, (bytes, tuple)) else value).encode()
    if im.info.get("icc_profile"):
        meta["ICCP"] = im.info["icc_profile"]
    exif = im.info.get("exif")
    if exif:
        meta["EXIF"] = exif
    return meta


def restore(pixels: np.ndarray, meta: dict[str, bytes]) -> Image.Image:
    """The source image (mode, palette, transparency) from coded pixels and metadata."""
    mode = meta.get("MODE", b"").decode()
    if mode == "P":
        im = Image.frombytes("P", (pixels.shape[1], pixels.shape[0]), np.ascontiguousarray(pixels).tobytes())
        palette_mode, _, palette = meta["PLTE"].partition(b"\0")
        im.putpalette(palette, palette_mode.decode())
    elif mode == "1":
        im = Image.fromarray(pixels).convert("1", dither=Image.Dither.NONE)
    elif mode == "I;16":
        values = (pixels[:, :, 0].astype(np.uint16) << 8) | pixels[:, :, 1]
        im = Image.fromarray(values)
    elif not mode:
        im = Image.fromarray(pixels)
    else:
        raise ImageError(f"cannot restore image mode {mode}")
    if "TRNS" in meta:
        value = json.loads(meta["TRNS"])
        im.info["transparency"] = bytes(value) if mode == "P" and isinstance(value, list) else (
            tuple(value) if isinstance(value, list) else value)
    return im


def png_bytes(pixels: np.ndarray, meta: dict[str, bytes] | None = None) -> bytes:
    """A PNG file of the restored image, with its transparency, ICC profile and EXIF."""
    meta = meta or {}
    im = restore(pixels, meta)
    options = {}
    if "TRNS" in meta:
        options["transparency"] = im.info["transparency"]
    if "ICCP" in meta:
        options["icc_profile"] = meta["ICCP"]
    if "EXIF" in meta:
        options["exif"] = meta["EXIF"]
    buf = io.BytesIO()
    im.save(buf, format="PNG", **options)
    return buf.getvalue()
