"""Public Python API: compress(pixels) -> bytes and decompress(bytes) -> pixels, with model loading."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import container
from .codec import VIEW_FLIPS, Codec
from .codelength import Codelength
from .container import FormatError, Header
from .plan import DIRECT_TILE, MODES, REGION
from .prior import MultiscalePrior, load_model as load_model_file

MODEL_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL_NAME = "hvpzip-small"
DEFAULT_VIEWS = 3  # flipped views the direct model averages unless told otherwise (codec.VIEW_FLIPS); on the
# held-out photos with the fit (benchmarks/README.md, "Format 10"): 3 views -0.27% against 2 at 1.25x the encoding
# time, 4 views -0.36% at 1.5x; with the float32 fit ("Readout fit in float32") 4 views -0.09% against 3 there at
# 1.18x the encoding time, but +0.006% on 9 training photos
DEFAULT_REFIT = True  # whether the encoder fits the readout correction: -0.13% on the held-out photos at 1.3x
# the encoding time since it fits on the outputs it codes with; with 4 views a Kodak encode took past 60 s in format 9
# (benchmarks/README.md, "Readout fit on the coded tiles")


class ModelMismatchError(FormatError):
    """The file was made with a different model than the one loaded."""


@dataclass(frozen=True)
class Model:
    """A loaded prior with its identity (name and sha256 of the weights file)."""

    prior: MultiscalePrior
    sha256: str
    name: str

    @property
    def default_steps(self) -> int:
        config = self.prior.config
        return config.steps if config.default_steps is None else config.default_steps


def default_model_path() -> Path:
    """$HVPZIP_MODEL, else the shipped models/hvpzip-small.pt."""
    return Path(os.environ.get("HVPZIP_MODEL", MODEL_DIR / f"{DEFAULT_MODEL_NAME}.pt"))


@lru_cache(maxsize=4)
def load_model(path: str | Path | None = None) -> Model:
    """Load (and cache) a model file; the default is `default_model_path()`."""
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    prior, sha = load_model_file(path)
    return Model(prior, sha, path.stem)


def mode_of(pixels: np.ndarray) -> str:
    """Image mode implied by an array's shape: (H, W) L, (H, W, 2) LA, (H, W, 3) RGB, (H, W, 4) RGBA."""
    if pixels.ndim == 2:
        return "L"
    channels = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
    if pixels.ndim != 3 or pixels.shape[2] not in channels:
        raise ValueError(f"unsupported pixel array shape {pixels.shape}: expected (H, W) or (H, W, 1-4)")
    return channels[pixels.shape[2]]


@dataclass
class Compressed:
    """A compressed image and what the model said about it."""

    data: bytes
    codelength: Codelength  # coded bits and the model's negative ELBO, by scale and term
    header: Header

    @property
    def neg_elbo_bits(self) -> float:
        """The model's analytic negative ELBO (the payload pays `codelength.total`)."""
        return self.codelength.analytic


CODING_THREADS = 2  # format 9 on: the thread count the network always runs at (oneDNN's results depend on it)


class deterministic_coding:
    """Context for running the codec's network as a format `version` lays it down, so that encoder and
    decoder (both inside it) agree bit for bit: up to version 8 the native convolutions with oneDNN
    off (oneDNN's results change with the thread count; the native ones do not); from version 9
    oneDNN's, about 3 times faster, at a fixed CODING_THREADS whatever the machine's count."""

    def __init__(self, version: int = container.VERSION):
        self.onednn = version >= 9

    def __enter__(self) -> None:
        self._saved = torch.backends.mkldnn.enabled, torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
        torch.backends.mkldnn.enabled = self.onednn
        torch.use_deterministic_algorithms(True)
        if self.onednn:
            torch.set_num_threads(CODING_THREADS)

    def __exit__(self, *exc: object) -> None:
        torch.backends.mkldnn.enabled, deterministic, threads = self._saved
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def format_codec(prior: MultiscalePrior, steps: int, version: int, views: int = 1, refit: bool = False) -> Codec:
    """The codec as a format version lays out the payload: versions 1 and 2 cut T = 0 levels into
    bits-back tiles, 3 into plain tiles, 4 adds the per-level scale calibration, 5 the view count, 6
    the calibrated shape of the direct coefficients' distribution, 7 the surprise tables, 8 the
    per-image readout correction (fitted when encoding with `refit`); 9 and 10 change only how the
    network runs (9: `deterministic_coding`, 10: on channels-last tensors)."""
    return Codec(prior, steps, DIRECT_TILE if version >= 3 else None, calibrated=version >= 4, views=views,
                 shaped=version >= 6, surprising=version >= 7, refitted=version >= 8, fit_readout=refit,
                 channels_last=version >= 10)


def encode_image(pixels: np.ndarray, steps: int | None = None, model: Model | None = None,
                 progress: Callable[[int], None] | None = None, meta: dict[str, bytes] | None = None,
                 views: int = DEFAULT_VIEWS, refit: bool = DEFAULT_REFIT) -> Compressed:
    """Compress a uint8 pixel array (with metadata records to keep, see `images`); also returns its
    codelength. `views` (1 to 4) trades the direct model's network time for a smaller file, and so
    does `refit` (fit the per-image readout correction, `readout`) with encoding time alone."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"only 8-bit images are supported (got dtype {pixels.dtype})")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    mode = mode_of(pixels)
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError("empty image")
    if max(pixels.shape[:2]) >= 2**31:
        raise ValueError("image too large")
    model = model or load_model()
    steps = model.default_steps if steps is None else steps
    if not 0 <= steps <= 255:
        raise ValueError("steps must be between 0 and 255")
    with deterministic_coding():
        codec = format_codec(model.prior, steps, container.VERSION, views, refit)
        words, codelength = codec.encode(pixels, mode, progress)
    payload, method = container.words_to_bytes(words), container.METHOD_MODEL
    if len(payload) > pixels.nbytes:  # the model lost to raw storage (noise, synthetic input): store instead
        payload, method = np.ascontiguousarray(pixels).tobytes(), container.METHOD_STORED
    header = Header(pixels.shape[1], pixels.shape[0], mode, model.prior.config.map_name, steps, method, model.sha256,
                    container.pixel_crc(pixels), model.name, dict(meta or {}), views)
    return Compressed(container.pack(header, payload), codelength, header)


def compress(pixels: np.ndarray, steps: int | None = None, model: Model | None = None,
             views: int = DEFAULT_VIEWS, refit: bool = DEFAULT_REFIT) -> bytes:
    """Compress a uint8 array ((H, W) or (H, W, 1-4)) to .hvpz bytes."""
    return encode_image(pixels, steps, model, views=views, refit=refit).data


def decompress(data: bytes, model: Model | None = None, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Decompress .hvpz bytes to the exact original uint8 array. Raises FormatError on bad input."""
    return decompress_image(data, model, progress)[0]


def decompress_image(data: bytes, model: Model | None = None,
                     progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, dict[str, bytes]]:
    """Decompress .hvpz bytes to (exact pixels, metadata records that restore the source image)."""
    header, payload = container.unpack(data)
    if header.method == container.METHOD_STORED:
        return _stored_pixels(header, payload), header.meta
    words = container.bytes_to_words(payload)
    model = model or load_model()
    if header.model_hash != model.sha256[:32]:
        raise ModelMismatchError(
            f"file was made with model '{header.model_id}' ({header.model_hash[:12]}), "
            f"but the loaded model is '{model.name}' ({model.sha256[:12]})")
    if header.map_name != model.prior.config.map_name:
        raise FormatError("file's map does not match the model")
    if header.views not in VIEW_FLIPS:
        raise FormatError(f"corrupt header (view count {header.views})")
    try:
        with deterministic_coding(header.version):
            region_side = REGION if header.version >= 2 else max(header.height, header.width)  # v1: one region
            pixels = format_codec(model.prior, header.steps, header.version, header.views).decode(
                words, header.mode, header.height, header.width, progress, region_side)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as err:  # constriction reports malformed streams as Rust panics (BaseException)
        raise FormatError(f"corrupt payload ({type(err).__name__}: {err})") from None
    if container.pixel_crc(pixels) != header.pixel_crc:
        raise FormatError("decoded pixels fail the CRC check: the file is corrupt or was made on an incompatible build")
    return pixels, header.meta


def _stored_pixels(header: Header, payload: bytes) -> np.ndarray:
    """Pixels of a stored (method 1) file."""
    channels = MODES[header.mode]
    if len(payload) != header.width * header.height * channels:
        raise FormatError("corrupt stored payload (wrong length)")
    shape = (header.height, header.width) + (() if channels == 1 else (channels,))
    pixels = np.frombuffer(payload, dtype=np.uint8).reshape(shape).copy()
    if container.pixel_crc(pixels) != header.pixel_crc:
        raise FormatError("stored pixels fail the CRC check: the file is corrupt")
    return pixels


def work_units(height: int, width: int, mode: str) -> int:
    """Progress total for an image of this size (what `progress` callbacks add up to)."""
    return Codec.work_units(height, width, mode)


__all__ = ["MODES", "Model", "Compressed", "Codelength", "FormatError", "ModelMismatchError", "load_model",
           "encode_image", "compress", "decompress", "decompress_image", "mode_of", "work_units",
           "deterministic_coding", "format_codec"]
