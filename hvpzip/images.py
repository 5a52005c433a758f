"""Reading and writing image files (Pillow) as uint8 arrays, with clear errors."""
from __future__ import annotations

import io
import numpy as np
from PIL import Image, UnidentifiedImageError

SUPPORTED = ("L", "LA", "RGB", "RGBA")


class ImageError(ValueError):
    """An input that is not a readable image of a supported kind."""


def read_image(data: bytes) -> np.ndarray:
    """Decode image file bytes to (H, W) or (H, W, C) uint8 pixels; refuse what cannot be kept exact."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise ImageError(f"animated {im.format} with {im.n_frames} frames is not supported")
            if im.mode not in SUPPORTED:
                raise ImageError(f"image mode {im.mode} is not supported (supported: {', '.join(SUPPORTED)})")
            im.load()
            return np.array(im)
    except UnidentifiedImageError:
        raise ImageError("not an image file (cannot identify image format)") from None
    except (OSError, SyntaxError) as err:  # Pillow reports truncated/corrupt files as OSError
        raise ImageError(f"cannot read image: {err}") from None


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode pixels as a PNG file."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()

