"""Entropy coding primitives over constriction's ANS stack (numpy only, no torch).

`push` encodes integer symbols in a known range [lo, hi] onto the stack, `pop` decodes them (in
bits-back coding a pop also *samples*). Distribution parameters are float64 in symbol units,
snapped to a coarse grid before use so both sides agree.

Each symbol is coded relative to its rounded mean inside a window of +-W (W from the largest std
of the call); a symbol on the window's edge is followed by its exact position beyond the edge,
uniform over what is left of [lo, hi]. The window keeps constriction's 2^-24 probability floor
per symbol negligible, and the hard range keeps every value representable even after improbable
pushes, whose bits make the next pop equally improbable (ANS couples their quantiles).
"""
from __future__ import annotations

import math

import numpy as np
import constriction

MEAN_GRID = 64.0  # means snapped to 1/64 of a symbol
LOG_STD_GRID = 16.0  # log-stds snapped to 1/16
MIN_STD = 2.0**-8
WINDOW_STDS = 16.0
MIN_WINDOW, MAX_WINDOW = 16, 4096
LOGISTIC_RATIO = 0.73  # the mixture's logistic scale per Laplace scale: the best single ratio on held-out residuals
MIXTURE_WINDOW_STDS = 12.0  # the mixture's tails are light enough for a narrower window (its tables cost per entry)
MIXTURE_CHUNK = 1024  # symbols per probability table, sorted by std so each chunk's window fits it
MIXTURE_TABLE_ENTRIES = 1 << 20  # fewer symbols per table where wide windows would make it larger (bounded memory)
_MODEL = constriction.stream.model
_CATEGORICAL = _MODEL.Categorical(perfect=False)


def snap_params(mean: np.ndarray, std: np.ndarray, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Snap (mean, std) to the shared grid; both sides of the codec call exactly this (in float64:
    float32 only for estimates, `mixture_log2prob`)."""
    mean = np.round(np.asarray(mean, dtype=dtype) * MEAN_GRID) / MEAN_GRID
    std = np.exp(np.round(np.log(np.maximum(np.asarray(std, dtype=dtype), MIN_STD)) * LOG_STD_GRID) / LOG_STD_GRID)
    return mean, std


def _window(std: np.ndarray, stds: float = WINDOW_STDS) -> int:
    return int(min(MAX_WINDOW, max(MIN_WINDOW, math.ceil(stds * float(std.max())))))


def mixture_cdf(x: np.ndarray, std: np.ndarray, laplace_weight: np.ndarray) -> np.ndarray:
    """CDF at offset x from the mean of laplace_weight * Laplace(std) + (1 - laplace_weight) *
    logistic(LOGISTIC_RATIO * std)."""
    laplace = 0.5 + 0.5 * np.sign(x) * -np.expm1(-np.abs(x) / std)
    logistic = 0.5 + 0.5 * np.tanh(0.5 * x / (LOGISTIC_RATIO * std))
    return laplace_weight * laplace + (1.0 - laplace_weight) * logistic


def mixture_log2prob(symbols: np.ndarray, mean: np.ndarray, std: np.ndarray, laplace_weight: np.ndarray | float,
                     dtype: type = np.float64) -> np.ndarray:
    """log2 P(symbol) under the quantized mixture the coder uses (params snapped), floored at 2^-24.

    Each bin's probability is taken on the far side of the mean, as differences of exponential and
    sigmoid tails, which stay relatively exact where they are small: so the arithmetic may be float32
    (a bin's bits ~1e-5 off, a sum's ~1e-7 relative; 4 times faster: what the encoder's searches use).
    """
    mean, std = snap_params(mean, std, dtype)
    distance = np.abs(np.asarray(symbols, dtype=dtype) - mean)
    rate = 1.0 / std
    with np.errstate(over="ignore"):  # exp of a far tail: inf, whose sigmoid is 0 as it should be
        lower = np.exp(-(distance + 0.5) * rate)
        upper = np.exp(-np.abs(distance - 0.5) * rate)
        laplace = 0.5 * (np.where(distance > 0.5, upper, 2.0 - upper) - lower)
        rate = rate * dtype(1.0 / LOGISTIC_RATIO)
        logistic = 1.0 / (1.0 + np.exp((distance - 0.5) * rate)) - 1.0 / (1.0 + np.exp((distance + 0.5) * rate))
    weight = np.asarray(laplace_weight, dtype=dtype)
    p = weight * laplace + (1.0 - weight) * logistic
    return np.log2(np.clip(p, 2.0**-24, 1.0))


def _mixture_table(offset_mean: np.ndarray, std: np.ndarray, laplace_weight: np.ndarray, window: int) -> np.ndarray:
    """(n, 2 * window + 1) bin probabilities of offsets -window..window from each window centre;
    the edge bins hold the tails. Snapped parameters repeat (a chunk of symbols holds ~2.6 times
    fewer distinct rows than symbols), so each distinct row is computed once: the same values."""
    params, row = np.unique(np.stack([offset_mean, std, laplace_weight]), axis=1, return_inverse=True)
    cdf = mixture_cdf(np.arange(-window, window + 2) - 0.5 - params[0][:, None], params[1][:, None], params[2][:, None])
    cdf[:, 0], cdf[:, -1] = 0.0, 1.0
    return np.diff(cdf, axis=1)[row]


def _room(center: int, upward: bool, window: int, lo: int, hi: int) -> int:
    """How many values lie on or beyond the window's edge (at least 1: the edge itself)."""
    return (hi - center - window if upward else center - window - lo) + 1


def _family(kind: str, window: int):
    if kind == "gaussian":
        return _MODEL.QuantizedGaussian(-window, window)
    if kind == "laplace":
        return _MODEL.QuantizedLaplace(-window, window)
    raise ValueError(f"unknown distribution {kind!r}")


class StackEmptyError(ValueError):
    """A pop found nothing left to read: the stream is shorter than its decoder expects."""


class AnsStack:
    """A bits-back ANS stack: push = encode, pop = decode, both with per-symbol parameters."""

    def __init__(self, words: np.ndarray | None = None):
        if words is None or len(words) == 0:
            self._coder = constriction.stream.stack.AnsCoder()
        else:
            self._coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))

    @staticmethod
    def _layout(mean: np.ndarray, std: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Snapped params, window centres (kept W inside [lo, hi]) and the window half-width W."""
        mean, std = snap_params(mean, std)
        window = min(_window(std), (hi - lo) // 2)
        center = np.clip(np.round(mean), lo + window, hi - window)
        return mean, std, center, window

    def push(self, kind: str, symbols: np.ndarray, mean: np.ndarray | float, std: np.ndarray | float,
             lo: int, hi: int) -> None:
        """Encode int symbols in [lo, hi] under a quantized `kind` ("gaussian" or "laplace") distribution."""
        symbols = np.asarray(symbols, dtype=np.int64).ravel()
        if symbols.size == 0:
            return
        if symbols.min() < lo or symbols.max() > hi:
            raise ValueError(f"value outside the coder's range [{lo}, {hi}]")
        mean, std, center, window = self._layout(np.broadcast_to(mean, symbols.shape),
                                                 np.broadcast_to(std, symbols.shape), lo, hi)
        offset = symbols - center.astype(np.int64)
        self._push_escapes(offset, center, window, lo, hi)
        main = np.clip(offset, -window, window).astype(np.int32)
        self._coder.encode_reverse(main, _family(kind, window), mean - center, std)

    def _push_escapes(self, offset: np.ndarray, center: np.ndarray, window: int, lo: int, hi: int) -> None:
        """Each offset on or beyond the window's edge: its position past the edge, uniform over the
        rest of [lo, hi]; pushed before the main symbols, so popped after them."""
        for i in np.flatnonzero(np.abs(offset) >= window)[::-1]:
            room = _room(int(center[i]), offset[i] > 0, window, lo, hi)
            if room > 1:  # with room 1 the edge itself is the value
                self._coder.encode_reverse(np.array([abs(offset[i]) - window], dtype=np.int32), _MODEL.Uniform(room))

    def _pop_escapes(self, offset: np.ndarray, center: np.ndarray, window: int, lo: int, hi: int) -> np.ndarray:
        """Mirror of `_push_escapes`: the main offsets -> the exact ones."""
        for i in np.flatnonzero(np.abs(offset) >= window):
            room = _room(int(center[i]), offset[i] > 0, window, lo, hi)
            if room > 1:
                offset[i] = np.sign(offset[i]) * (window + int(self._coder.decode(_MODEL.Uniform(room), 1)[0]))
        return offset

    def pop(self, kind: str, mean: np.ndarray | float, std: np.ndarray | float, count: int, lo: int, hi: int) -> np.ndarray:
        """Decode `count` symbols: the exact mirror of `push` with the same parameters.

        Codec streams never pop from an empty stack (bits-back is seeded), so an empty stack here
        means a truncated or corrupt stream: raise rather than return constriction's edge values.
        """
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if self._coder.is_empty():
            raise StackEmptyError("the stream ended early")
        mean, std, center, window = self._layout(np.broadcast_to(mean, (count,)), np.broadcast_to(std, (count,)), lo, hi)
        offset = np.asarray(self._coder.decode(_family(kind, window), mean - center, std), dtype=np.int64)
        return center.astype(np.int64) + self._pop_escapes(offset, center, window, lo, hi)

    @staticmethod
    def _mixture_chunks(mean: np.ndarray, std: np.ndarray, lo: int,
                        hi: int) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray, int]]]:
        """Snapped params and, per chunk of at most MIXTURE_CHUNK symbols in order of std (fewer where
        the table would pass MIXTURE_TABLE_ENTRIES), (positions, window centres, window): sorting by
        std keeps each chunk's table as narrow as its symbols allow."""
        mean, std = snap_params(mean, std)
        order = np.argsort(std, kind="stable")
        chunks, start = [], 0
        while start < order.size:
            at = order[start:start + MIXTURE_CHUNK]
            window = min(_window(std[at], MIXTURE_WINDOW_STDS), (hi - lo) // 2)
            at = at[:max(1, MIXTURE_TABLE_ENTRIES // (2 * window + 1))]
            chunks.append((at, np.clip(np.round(mean[at]), lo + window, hi - window), window))
            start += at.size
        return mean, std, chunks

    def push_mixture(self, symbols: np.ndarray, mean: np.ndarray, std: np.ndarray, laplace_weight: np.ndarray,
                     lo: int, hi: int) -> None:
        """Encode int symbols in [lo, hi] under the quantized Laplace/logistic mixture of `mixture_cdf`
        (per-symbol params and weights), as probability tables over windows with escapes."""
        symbols = np.asarray(symbols, dtype=np.int64).ravel()
        if symbols.size and (symbols.min() < lo or symbols.max() > hi):
            raise ValueError(f"value outside the coder's range [{lo}, {hi}]")
        mean, std, chunks = self._mixture_chunks(mean, std, lo, hi)
        for at, center, window in reversed(chunks):
            offset = symbols[at] - center.astype(np.int64)
            self._push_escapes(offset, center, window, lo, hi)
            table = _mixture_table(mean[at] - center, std[at], laplace_weight[at], window)
            main = (np.clip(offset, -window, window) + window).astype(np.int32)
            self._coder.encode_reverse(main, _CATEGORICAL, table)

    def pop_mixture(self, mean: np.ndarray, std: np.ndarray, laplace_weight: np.ndarray, lo: int,
                    hi: int) -> np.ndarray:
        """Mirror of `push_mixture` with the same parameters (one symbol per entry of `mean`)."""
        symbols = np.zeros(np.size(mean), dtype=np.int64)
        if symbols.size and self._coder.is_empty():
            raise StackEmptyError("the stream ended early")
        mean, std, chunks = self._mixture_chunks(mean, std, lo, hi)
        for at, center, window in chunks:
            table = _mixture_table(mean[at] - center, std[at], laplace_weight[at], window)
            offset = np.asarray(self._coder.decode(_CATEGORICAL, table), dtype=np.int64) - window
            symbols[at] = center.astype(np.int64) + self._pop_escapes(offset, center, window, lo, hi)
        return symbols

    def push_uniform(self, symbols: np.ndarray, size: int) -> None:
        """Encode int symbols in [0, size) with equal probabilities (log2(size) bits each)."""
        symbols = np.asarray(symbols, dtype=np.int32).ravel()
        if symbols.size == 0:
            return
        if symbols.min() < 0 or symbols.max() >= size:
            raise ValueError(f"value outside the coder's range [0, {size})")
        self._coder.encode_reverse(symbols, _MODEL.Uniform(size))

    def pop_uniform(self, count: int, size: int) -> np.ndarray:
        """Mirror of `push_uniform`."""
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if self._coder.is_empty():
            raise StackEmptyError("the stream ended early")
        return np.asarray(self._coder.decode(_MODEL.Uniform(size), count), dtype=np.int64)

    def is_empty(self) -> bool:
        return bool(self._coder.is_empty())

    def num_bits(self) -> int:
        return int(self._coder.num_bits())

    def words(self) -> np.ndarray:
        """The compressed stack as uint32 words."""
        return np.asarray(self._coder.get_compressed(), dtype=np.uint32)
