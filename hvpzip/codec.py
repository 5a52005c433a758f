"""The codec: image planes -> integer map -> per-tile bits-back chains under the prior -> ANS words.

Compression codes plane by plane, each from the finest level to the top, in the order of
`plan.coding_plan`; decompression runs the exact mirror. Each tile's diffusion chain sees only its
own latents and the (fully known) coarse image; tiles coded at T = 0 use the direct model.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, NamedTuple

import numpy as np

from . import calibration, maps, readout, schedule, surprise
from .calibration import MEAN_FACTORS, MEAN_INDEX, MULTIPLIERS, SCALE_BUCKETS, SHAPE_INDEX, SHAPE_WEIGHTS, laplace_bits
from .codelength import Codelength
from .coder import AnsStack
from .plan import (DIRECT_TILE, MODES, PLANE_CHROMA, REGION, LevelPlan, coding_plan, coef_mask, image_planes,
                   planes_image, regions)
from .prior import COEFS, DIRECT_GAMMA, MultiscalePrior, context_groups, raw_outputs

SEED_COEFFICIENTS = 4096  # tiles starting before this many coded coefficients use the direct model (T = 0)
VALUE_LIMIT = 1 << 15  # details and top values lie in [-VALUE_LIMIT, VALUE_LIMIT]
LATENT_LIMIT = 128.0  # latents z (unit-variance scale) are coded on their grid within +-LATENT_LIMIT
BANDS = 3  # detail bands per channel: LH, HL, HH
# views -> the flips (axes of a (9, h, w) tile) whose direct-model predictions are averaged; on held-out
# photos (benchmarks/direct_coding.py) more views cost proportionally more network time for a smaller file
VIEW_FLIPS = {1: ((),), 2: ((), (1,)), 3: ((), (1,), (2,)), 4: ((), (1,), (2,), (1, 2))}  # 3: format 10 on
# sign each band's details take under a flip of rows (axis 1) or columns (axis 2): the difference
# across the flipped direction changes sign (exactly for Haar's LH and HH, up to rounding for HL)
BAND_FLIP_SIGNS = {1: np.array([-1.0, 1.0, -1.0]), 2: np.array([1.0, -1.0, -1.0])}
Progress = Callable[[int], None]


def push_latent(stack: AnsStack, k: np.ndarray, mean: np.ndarray | float, std: np.ndarray | float, grid: float) -> None:
    """Push latent grid indices k (z = k * grid) under N(mean, std^2) given in z units."""
    limit = math.ceil(LATENT_LIMIT / grid)
    stack.push("gaussian", k, np.asarray(mean) / grid, np.asarray(std) / grid, -limit, limit)


def pop_latent(stack: AnsStack, mean: np.ndarray | float, std: np.ndarray | float, grid: float, count: int) -> np.ndarray:
    """Mirror of `push_latent`: pop (sample) `count` latent grid indices."""
    limit = math.ceil(LATENT_LIMIT / grid)
    return stack.pop("gaussian", np.asarray(mean) / grid, np.asarray(std) / grid, count, -limit, limit)


def view_signs(axes: tuple[int, ...]) -> np.ndarray:
    """(9, 1, 1) sign each coefficient of a (9, h, w) tile takes when the tile is flipped along `axes`."""
    signs = np.ones(BANDS)
    for axis in axes:
        signs = signs * BAND_FLIP_SIGNS[axis]
    return np.tile(signs, 3)[:, None, None]


def coefficient_bands(group: np.ndarray) -> np.ndarray:
    """Band (0 LH, 1 HL, 2 HH) of each coefficient a (9, h, w) mask selects, in the mask's order
    (coefficient index = channel * 3 + band)."""
    return np.nonzero(group)[0] % BANDS


class DirectGroup(NamedTuple):
    """One context group of a directly coded tile as the encoder sees it (teacher-forced)."""

    index: int  # which context group (row of the level's calibration indices)
    bands: np.ndarray  # band of each coefficient (`coefficient_bands`)
    symbols: np.ndarray  # the coefficients, in the group mask's order
    mean: np.ndarray  # the direct model's Laplace parameters for them, before calibration
    scale: np.ndarray


class GroupView(NamedTuple):
    """The direct model's outputs for one context group's coefficients under one flipped view (flipped back)."""

    raw_mean: np.ndarray  # (n,), in the group mask's order
    raw_log_scale: np.ndarray
    features: np.ndarray | None  # (F, n) float32: the network's last features at them, when asked for
    signs: np.ndarray  # (n,) sign the view's mean takes


class CodedGroup(NamedTuple):
    """A context group with the parameters the coder uses, before the level's surprise table."""

    symbols: np.ndarray
    mean: np.ndarray  # calibrated
    scale: np.ndarray
    shapes: np.ndarray  # uint8 SHAPE_WEIGHTS index of each coefficient (the mixture's shape, shaped codecs)
    buckets: np.ndarray  # uint8 surprise bucket of each coefficient (0 when the codec has no surprise tables)


class Codec:
    """Encodes and decodes integer planes with one prior at a fixed number of diffusion steps.

    `direct_tile` is the tile side of levels coded at T = 0 (None: bits-back tiles, as format
    versions 1 and 2 coded them). `calibrated`: each level's directly coded context groups and bands
    carry calibration indices the encoder chose (see `calibration`; format 4 on). `views`: a key of
    VIEW_FLIPS, how many flipped copies of each tile the direct model's predictions average (format 5 on).
    `shaped`: calibrated direct coefficients are coded under the Laplace/logistic mixture whose
    shape each key's calibration picks (format 6 on), not under the plain Laplace. `surprising`: their
    scales are also multiplied by a per-level table by their neighbours' surprise (`surprise`, format 7 on).
    `refitted`: at T = 0, levels of at least `readout.MIN_POSITIONS` positions carry a flag and may
    carry a correction of the direct model's readout fitted to the image (`readout`, format 8 on),
    which the encoder fits only when `fit_readout` (it costs encoding time; the decoder reads either).
    `channels_last`: the network runs on channels-last tensors (format 10 on; `prior.raw_outputs`).
    """

    def __init__(self, model: MultiscalePrior, steps: int, direct_tile: int | None = DIRECT_TILE,
                 calibrated: bool = True, views: int = 1, shaped: bool = True, surprising: bool = True,
                 refitted: bool = True, fit_readout: bool = False, channels_last: bool = True):
        if views not in VIEW_FLIPS:
            raise ValueError(f"views must be one of {sorted(VIEW_FLIPS)}, not {views}")
        self.model, self.steps = model, steps
        self.map_name = model.config.map_name
        self.direct_tile = direct_tile if steps == 0 else None
        self.calibrated, self.views, self.shaped = calibrated, views, shaped and calibrated
        self.surprising = surprising and self.shaped
        self.refitted = refitted and self.calibrated and self.direct_tile is not None
        self.fit_readout = fit_readout and self.refitted
        self.channels_last = channels_last
        config = model.config
        self.group_count = len(context_groups(config.context_groups, 1, 1)) if config.context else 1

    def tile_steps(self, coded_before: int) -> int:
        """Diffusion steps for a tile: the first tiles of an image use the direct model (T = 0), so
        bits-back never pops from an empty stack (garbage latents); their bits seed the later pops."""
        return 0 if coded_before < SEED_COEFFICIENTS else self.steps

    # --- per-level constants ------------------------------------------------------------------
    def _level_constants(self, level: int, steps: int) -> tuple[np.ndarray, list[float], list[float]]:
        """(c (9,1,1), gammas, latent grids) for a level at `steps` diffusion steps."""
        c = self.model.detail_scale(level).double().cpu().numpy()[:, None, None]
        if steps == 0:
            return c, [], []
        gammas = self.model.gammas_float(level, steps)
        return c, gammas, [float(g) for g in schedule.latent_grids(gammas, np)]

    def _net(self, z: np.ndarray, coarse: np.ndarray, band: np.ndarray, chroma: float, level: int, gamma: float):
        out = raw_outputs(self.model, z, coarse, band, chroma, level, gamma, channels_last=self.channels_last)
        return np.split(out, 3)

    # --- one tile ---------------------------------------------------------------------------------
    def direct_groups(self, details: np.ndarray, coarse: np.ndarray, mask: np.ndarray, chroma: float, level: int,
                      origin: tuple[int, int] = (0, 0), weights: np.ndarray | None = None) -> list[DirectGroup]:
        """The direct model's view of a tile's details (9, h, w) at `origin`: each context group in
        coding order, with its Laplace parameters given the groups before it (and the level's
        readout correction `weights`, if any)."""
        views = self._teacher_forced_views(details, coarse, mask, chroma, level, origin, weights is not None)
        return self._corrected_groups(list(views), details, level, weights)

    def _corrected_groups(self, tile_views: list[tuple[int, np.ndarray, list[GroupView]]], details: np.ndarray,
                          level: int, weights: np.ndarray | None) -> list[DirectGroup]:
        """`direct_groups` from a tile's `_teacher_forced_views`, with the readout correction `weights`."""
        c = self._level_constants(level, 0)[0]
        groups = []
        for index, group, views in tile_views:
            mean, scale = self._combine_views(views, np.nonzero(group)[0], c, weights)
            groups.append(DirectGroup(index, coefficient_bands(group), details[group], mean, scale))
        return groups

    def fit_readout_weights(self, details: np.ndarray, coarse: np.ndarray, mask: np.ndarray, chroma: float,
                            level: int, rects: list[tuple[int, int, int, int]]
                            ) -> tuple[np.ndarray | None, dict[tuple[int, int], list[DirectGroup]]]:
        """A level's readout correction (`readout.choose`, or None) fitted on the uncorrected direct
        model's view of the crops of its `readout.fit_tiles` among `rects`, and those tiles'
        `direct_groups` with it by origin, made from the network outputs the fit ran on."""
        c, samples, kept = self._level_constants(level, 0)[0], readout.FitSamples(), {}
        gain = schedule.alpha_sigma(DIRECT_GAMMA, np)[1] * c[:, 0, 0]  # d mean / d raw mean, per coefficient
        for (y0, y1, x0, x1), crops in readout.fit_tiles(rects, *mask.shape[1:]):
            tile = details[:, y0:y1, x0:x1]
            views_of = list(self._teacher_forced_views(tile, coarse[:, y0:y1, x0:x1], mask[:, y0:y1, x0:x1], chroma,
                                                       level, (y0, x0), True))
            uncorrected = self._corrected_groups(views_of, tile, level, None)
            kept[(y0, x0)] = tile, views_of, uncorrected
            crop = np.zeros(tile.shape[1:], dtype=bool)
            for cy0, cy1, cx0, cx1 in crops:
                crop[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = True
            for (index, group, views), g in zip(views_of, uncorrected):
                k, yy, xx = np.nonzero(group)
                inside = crop[yy, xx]
                if inside.any():
                    samples.add(index, group & crop, (y0, x0), g.symbols[inside], g.mean[inside], g.scale[inside],
                                gain[k[inside]], [(v.features[:, inside], v.signs[inside]) for v in views])
        weights = readout.choose(samples, int(mask.sum()), self.model.config.width)
        return weights, {origin: self._corrected_groups(views_of, tile, level, weights) if weights is not None
                         else uncorrected for origin, (tile, views_of, uncorrected) in kept.items()}

    def _teacher_forced_views(self, details: np.ndarray, coarse: np.ndarray, mask: np.ndarray, chroma: float,
                              level: int, origin: tuple[int, int], features: bool = False
                              ) -> Iterator[tuple[int, np.ndarray, list[GroupView]]]:
        """Each context group of a tile (index, mask) in coding order with the direct model's `_views`
        of it given the true values of the groups before it."""
        c = self._level_constants(level, 0)[0]
        band, y = mask[:3].astype(np.float64), details / c
        known = np.zeros(mask.shape, dtype=bool)
        for index, group in self._direct_groups(mask, origin):
            yield index, group, self._views(known, y, coarse, band, chroma, level, group, features)
            known |= group

    def coded_groups(self, groups: list[DirectGroup], calibrated: np.ndarray, mask: np.ndarray,
                     origin: tuple[int, int]) -> list[CodedGroup]:
        """A tile's `direct_groups` (tile mask and origin as given to it) with the parameters the
        level's (groups, 3, PARAMS) calibration indices give them, and their surprise buckets."""
        coded, seen = [], surprise.SurpriseMap(mask.shape)
        for g, (_, group) in zip(groups, self._direct_groups(mask, origin)):
            mean, scale, shapes, buckets = self._calibrated(calibrated, g.index, g.bands, g.mean, g.scale, seen, group)
            if self.surprising:
                seen.add(group, g.symbols, mean, scale)
            coded.append(CodedGroup(g.symbols, mean, scale, shapes, buckets))
        return coded

    def encode_direct_tile(self, stack: AnsStack, groups: list[CodedGroup], table: np.ndarray) -> dict[str, float]:
        """Code a tile's `coded_groups` with the level's surprise table; groups go last-first so the
        decoder pops them in order. Returns bits per term."""
        bits = 0.0
        for g in reversed(groups):
            scale = surprise.apply(table, g.buckets, g.scale)
            if self.shaped:
                bits += self._push_mixture(stack, g.symbols, g.mean, scale, calibration.shape_weights(g.shapes))
            else:
                bits += self._push_laplace(stack, g.symbols, g.mean, scale)
        return {"decoder": bits}

    def encode_chain_tile(self, stack: AnsStack, details: np.ndarray, coarse: np.ndarray, mask: np.ndarray,
                          chroma: float, level: int, steps: int) -> dict[str, float]:
        """Code one tile's details (9, h, w) by bits-back through `steps` >= 1 diffusion steps;
        returns its negative-ELBO bits per term."""
        c, gammas, grids = self._level_constants(level, steps)
        band = mask[:3].astype(np.float64)
        y = details / c
        symbols = details[mask]
        a1, s1 = schedule.alpha_sigma(gammas[0], np)
        k = pop_latent(stack, a1 * y[mask], s1, grids[0], symbols.size)
        z = self._latent(k, grids[0], mask)
        raw_mean, raw_ls, _ = self._net(z, coarse, band, chroma, level, gammas[0])
        mean, scale = schedule.decoder_laplace(z, raw_mean, raw_ls, gammas[0], c, np)
        bits = {"decoder": self._push_laplace(stack, symbols, mean[mask], scale[mask])}
        for t in range(1, steps):
            a, s = schedule.forward_transition(gammas[t - 1], gammas[t], np)
            k_next = pop_latent(stack, a * z[mask], s, grids[t], symbols.size)
            z_next = self._latent(k_next, grids[t], mask)
            mean_p, std_p = self._reverse(z_next, coarse, band, chroma, level, gammas[t - 1], gammas[t])
            push_latent(stack, k, mean_p[mask], std_p[mask], grids[t - 1])
            mean_q, std_q = schedule.posterior(z_next, y, gammas[t - 1], gammas[t], np)
            kl = schedule.gaussian_kl(mean_q, std_q, mean_p, std_p, np)[mask]
            bits[f"kl_{t + 1}"] = float(kl.sum()) / math.log(2)
            k, z = k_next, z_next
        push_latent(stack, k, 0.0, 1.0, grids[-1])
        a_T, s_T = schedule.alpha_sigma(gammas[-1], np)
        prior_nats = 0.5 * (s_T**2 + a_T**2 * y[mask] ** 2 - 1.0 - math.log(s_T**2))
        bits["prior"] = float(prior_nats.sum()) / math.log(2)
        return bits

    def decode_direct_tile(self, stack: AnsStack, coarse: np.ndarray, mask: np.ndarray, chroma: float, level: int,
                           origin: tuple[int, int], calibrated: np.ndarray, table: np.ndarray,
                           weights: np.ndarray | None = None) -> np.ndarray:
        """Mirror of `encode_direct_tile`: returns the tile's details (9, h, w)."""
        c = self._level_constants(level, 0)[0]
        band = mask[:3].astype(np.float64)
        details = np.zeros(mask.shape, dtype=np.int64)
        known, seen = np.zeros(mask.shape, dtype=bool), surprise.SurpriseMap(mask.shape)
        for index, group in self._direct_groups(mask, origin):
            views = self._views(known, details / c, coarse, band, chroma, level, group, weights is not None)
            mean, scale = self._combine_views(views, np.nonzero(group)[0], c, weights)
            mean, scale, shapes, buckets = self._calibrated(calibrated, index, coefficient_bands(group), mean, scale,
                                                            seen, group)
            coded_scale = surprise.apply(table, buckets, scale)
            if self.shaped:
                details[group] = stack.pop_mixture(mean, coded_scale, calibration.shape_weights(shapes), -VALUE_LIMIT,
                                                   VALUE_LIMIT)
            else:
                details[group] = stack.pop("laplace", mean, coded_scale, int(group.sum()), -VALUE_LIMIT, VALUE_LIMIT)
            if self.surprising:
                seen.add(group, details[group], mean, scale)
            known |= group
        return details

    def _calibrated(self, calibrated: np.ndarray, index: int, bands: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                    seen: surprise.SurpriseMap, group: np.ndarray) -> tuple[np.ndarray, ...]:
        """(mean, scale, shape indices, surprise buckets) of a context group's coefficients: the model's
        parameters as the calibration adjusts them, and how surprising the tile's coded neighbours were."""
        indices = calibrated[index][bands]
        buckets = seen.buckets(group) if self.surprising else np.zeros(bands.size, dtype=np.uint8)
        return (*calibration.apply(indices, mean, scale), indices[:, SHAPE_INDEX].astype(np.uint8), buckets)

    def decode_chain_tile(self, stack: AnsStack, coarse: np.ndarray, mask: np.ndarray, chroma: float, level: int,
                          steps: int) -> np.ndarray:
        """Mirror of `encode_chain_tile`: returns the tile's details (9, h, w)."""
        c, gammas, grids = self._level_constants(level, steps)
        band = mask[:3].astype(np.float64)
        count = int(mask.sum())
        details = np.zeros(mask.shape, dtype=np.int64)
        k = pop_latent(stack, 0.0, 1.0, grids[-1], count)
        z = self._latent(k, grids[-1], mask)
        for t in range(steps - 1, 0, -1):
            mean_p, std_p = self._reverse(z, coarse, band, chroma, level, gammas[t - 1], gammas[t])
            k_prev = pop_latent(stack, mean_p[mask], std_p[mask], grids[t - 1], count)
            z_prev = self._latent(k_prev, grids[t - 1], mask)
            a, s = schedule.forward_transition(gammas[t - 1], gammas[t], np)
            push_latent(stack, k, a * z_prev[mask], s, grids[t])
            k, z = k_prev, z_prev
        raw_mean, raw_ls, _ = self._net(z, coarse, band, chroma, level, gammas[0])
        mean, scale = schedule.decoder_laplace(z, raw_mean, raw_ls, gammas[0], c, np)
        details[mask] = stack.pop("laplace", mean[mask], scale[mask], count, -VALUE_LIMIT, VALUE_LIMIT)
        a1, s1 = schedule.alpha_sigma(gammas[0], np)
        push_latent(stack, k, a1 * (details / c)[mask], s1, grids[0])
        return details

    def _direct_groups(self, mask: np.ndarray, origin: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
        """The coefficient groups the direct model codes in turn, with their index: the whole mask, or
        its non-empty context groups."""
        if not self.model.config.context:
            return [(0, mask)]
        groups = context_groups(self.model.config.context_groups, mask.shape[1], mask.shape[2], *origin) & mask[None]
        return [(index, g) for index, g in enumerate(groups) if g.any()]

    # --- calibration ----------------------------------------------------------------------------
    def choose_calibration(self, tiles: list[list[DirectGroup]]) -> np.ndarray:
        """(groups, 3, PARAMS) calibration indices for each context group and band of a level, from its
        directly coded tiles' `direct_groups`; neutral when uncalibrated."""
        choice = calibration.neutral((self.group_count, BANDS), self.shaped)
        if not self.calibrated:
            return choice
        for index in range(self.group_count):
            picked = [(g.symbols, g.mean, g.scale, g.bands) for groups in tiles for g in groups if g.index == index]
            if not picked:
                continue
            symbols, mean, scale, bands = (np.concatenate(parts) for parts in zip(*picked))
            for band in range(BANDS):
                chosen = bands == band
                choice[index, band] = calibration.choose(symbols[chosen], mean[chosen], scale[chosen], self.shaped)
        return choice

    def choose_surprise(self, tiles: list[list[CodedGroup]]) -> np.ndarray:
        """A level's surprise table from its directly coded tiles' `coded_groups`, searched on an evenly
        strided subset of at most about surprise.LEVEL_SAMPLES coefficients; neutral without surprise."""
        groups = [g for groups in tiles for g in groups]
        if not self.surprising or not groups:
            return surprise.neutral()
        stride = max(1, sum(g.symbols.size for g in groups) // surprise.LEVEL_SAMPLES)
        symbols, mean, scale, shapes, buckets = (np.concatenate([part[::stride] for part in parts])
                                                 for parts in zip(*groups))
        return surprise.choose(symbols, mean, scale, calibration.shape_weights(shapes), buckets, stride)

    def push_calibration(self, stack: AnsStack, choice: np.ndarray, table: np.ndarray) -> dict[str, float]:
        """Push a level's calibration: its surprise table's non-neutral entries and a flag per entry
        (format 7 on), the indices of its calibrated keys (shapes last, in shaped codecs), then a
        flag per key (each coded uniformly; nothing when uncalibrated). Returns bits per term."""
        if not self.calibrated:
            return {}
        table_bits = 0.0
        if self.surprising:
            entries = table != calibration.NEUTRAL
            stack.push_uniform(table[entries], len(MULTIPLIERS))
            stack.push_uniform(entries, 2)
            table_bits = surprise.table_bits(table)
        flags = ~calibration.is_neutral(choice, self.shaped)
        if self.shaped:
            stack.push_uniform(choice[flags, SHAPE_INDEX], len(SHAPE_WEIGHTS))
        stack.push_uniform(choice[flags, MEAN_INDEX], len(MEAN_FACTORS))
        stack.push_uniform(choice[flags, :SCALE_BUCKETS], len(MULTIPLIERS))
        stack.push_uniform(flags, 2)
        return {"calibration": calibration.table_bits(choice, self.shaped) + table_bits}

    def pop_calibration(self, stack: AnsStack) -> tuple[np.ndarray, np.ndarray]:
        """Mirror of `push_calibration`: a level's (groups, 3, PARAMS) calibration indices and its surprise table."""
        choice, table = calibration.neutral((self.group_count, BANDS), self.shaped), surprise.neutral()
        if self.calibrated:
            flags = stack.pop_uniform(choice.shape[0] * BANDS, 2).reshape(choice.shape[:2]).astype(bool)
            count = int(flags.sum())
            multipliers = stack.pop_uniform(count * SCALE_BUCKETS, len(MULTIPLIERS))
            choice[flags, :SCALE_BUCKETS] = multipliers.reshape(count, SCALE_BUCKETS)
            choice[flags, MEAN_INDEX] = stack.pop_uniform(count, len(MEAN_FACTORS))
            if self.shaped:
                choice[flags, SHAPE_INDEX] = stack.pop_uniform(count, len(SHAPE_WEIGHTS))
        if self.surprising:
            entries = stack.pop_uniform(surprise.BUCKETS, 2).astype(bool)
            table[entries] = stack.pop_uniform(int(entries.sum()), len(MULTIPLIERS))
        return choice, table

    def _refits(self, mask: np.ndarray) -> bool:
        """Whether a level (its (9, hc, wc) coefficient mask) carries a readout flag (format 8 on, T = 0,
        so every tile of the level is coded directly)."""
        return self.refitted and mask.shape[1] * mask.shape[2] >= readout.MIN_POSITIONS

    def push_readout(self, stack: AnsStack, weights: np.ndarray | None) -> float:
        """Push a level's readout correction (its integer weights, then their coding scale) and a flag
        ahead of them; returns bits."""
        if weights is not None:
            scale = readout.scale_index(weights)
            stack.push("laplace", weights.ravel(), 0.0, readout.SCALES[scale], -readout.LIMIT, readout.LIMIT)
            stack.push_uniform(np.array([scale]), len(readout.SCALES))
        stack.push_uniform(np.array([weights is not None]), 2)
        return 1.0 + (0.0 if weights is None else readout.weight_bits(weights))

    def pop_readout(self, stack: AnsStack) -> np.ndarray | None:
        """Mirror of `push_readout`: a level's integer readout weights (ROWS, F + 1), or None."""
        if not stack.pop_uniform(1, 2)[0]:
            return None
        scale = readout.SCALES[stack.pop_uniform(1, len(readout.SCALES))[0]]
        shape = (readout.ROWS, self.model.config.width + 1)
        return stack.pop("laplace", 0.0, scale, shape[0] * shape[1], -readout.LIMIT, readout.LIMIT).reshape(shape)

    def _views(self, known: np.ndarray, y: np.ndarray, coarse: np.ndarray, band: np.ndarray, chroma: float,
               level: int, group: np.ndarray, features: bool = False) -> list[GroupView]:
        """The direct model's outputs for the coefficients of `group` given those marked `known` (values
        y), once per flipped view, flipped back (with the network's features when asked for)."""
        views, known_y = [], y * known
        k, yy, xx = np.nonzero(group)
        for axes in VIEW_FLIPS[self.views]:
            signs = view_signs(axes)
            out = raw_outputs(self.model, np.zeros(known.shape), np.flip(coarse, axes), np.flip(band, axes), chroma,
                              level, DIRECT_GAMMA, np.flip(known, axes), np.flip(known_y, axes) * signs, features=features,
                              channels_last=self.channels_last)
            raw, feats = (np.flip(a, axes) for a in out) if features else (np.flip(out, axes), None)
            views.append(GroupView(raw[k, yy, xx], raw[COEFS + k, yy, xx],
                                   None if feats is None else feats[:, yy, xx], signs[k, 0, 0]))
        return views

    @staticmethod
    def _combine_views(views: list[GroupView], k: np.ndarray, c: np.ndarray, weights: np.ndarray | None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Laplace (mean, scale) of the direct model for coefficients `k` from their `_views`, each
        view's raw means corrected by the readout `weights` if any: with several views, the mean of
        their means and the geometric mean of their scales (summed view by view, in order)."""
        params = []
        for v in views:
            raw_mean = v.raw_mean if weights is None else v.raw_mean + readout.delta(weights, k, v.features)
            mean, scale = schedule.decoder_laplace(0.0, raw_mean, v.raw_log_scale, DIRECT_GAMMA, c[k, 0, 0], np)
            params.append((mean * v.signs, scale))
        if len(params) == 1:  # as it was before views: exp(log(scale)) need not give scale back bit for bit
            return params[0]
        means, log_scales = [m for m, _ in params], [np.log(s) for _, s in params]
        return sum(means[1:], means[0]) / len(means), np.exp(sum(log_scales[1:], log_scales[0]) / len(log_scales))

    def _reverse(self, z: np.ndarray, coarse: np.ndarray, band: np.ndarray, chroma: float, level: int,
                 gamma_s: float, gamma_t: float) -> tuple[np.ndarray, np.ndarray]:
        """p(z_s | z_t): (mean, std) arrays of the learned reverse step."""
        raw_mean, _, raw_lv = self._net(z, coarse, band, chroma, level, gamma_t)
        y_hat = schedule.predict_y(z, raw_mean, gamma_t, np)
        mean_p, std_q = schedule.posterior(z, y_hat, gamma_s, gamma_t, np)
        return mean_p, schedule.reverse_std(std_q, raw_lv, np)

    @staticmethod
    def _latent(k: np.ndarray, grid: float, mask: np.ndarray) -> np.ndarray:
        z = np.zeros(mask.shape)
        z[mask] = k * grid
        return z

    @staticmethod
    def _push_laplace(stack: AnsStack, symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> float:
        """Push symbols under a quantized Laplace; returns their cost in bits (before escapes)."""
        stack.push("laplace", symbols, mean, scale, -VALUE_LIMIT, VALUE_LIMIT)
        return float(laplace_bits(symbols, mean, scale))

    @staticmethod
    def _push_mixture(stack: AnsStack, symbols: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                      laplace_weight: np.ndarray) -> float:
        """Push symbols under the calibrated Laplace/logistic mixture; returns their cost in bits (before escapes)."""
        stack.push_mixture(symbols, mean, scale, laplace_weight, -VALUE_LIMIT, VALUE_LIMIT)
        return float(calibration.coded_bits(symbols, mean, scale, laplace_weight, np.float64))

    # --- top image ------------------------------------------------------------------------------
    def _top_params(self) -> tuple[np.ndarray, np.ndarray]:
        params = (self.model.top_mean, self.model.top_log_scale)
        mean, log_scale = (p.detach().double().cpu().numpy() for p in params)
        return mean, np.exp(log_scale)

    def encode_top(self, stack: AnsStack, top: np.ndarray, chroma: float) -> float:
        """Push the top image's active channels; returns bits."""
        mean, scale = self._top_params()
        chans = 3 if chroma else 1
        n = top.shape[1] * top.shape[2]
        return self._push_laplace(stack, top[:chans].ravel(), np.repeat(mean[:chans], n), np.repeat(scale[:chans], n))

    def _add_top(self, stack: AnsStack, bits: Codelength, top: np.ndarray, chroma: float, level: int) -> None:
        before = stack.num_bits()
        terms = {"top": self.encode_top(stack, top, chroma)}
        bits.add(level, terms, top[: 3 if chroma else 1].size, stack.num_bits() - before)

    def decode_top(self, stack: AnsStack, shape: tuple[int, int], chroma: float) -> np.ndarray:
        mean, scale = self._top_params()
        chans = 3 if chroma else 1
        n = shape[0] * shape[1]
        top = np.zeros((3,) + shape, dtype=np.int64)
        vals = stack.pop("laplace", np.repeat(mean[:chans], n), np.repeat(scale[:chans], n), chans * n,
                         -VALUE_LIMIT, VALUE_LIMIT)
        top[:chans] = vals.reshape(chans, *shape)
        return top

    # --- whole image ----------------------------------------------------------------------------
    def encode(self, pixels: np.ndarray, mode: str, progress: Progress | None = None,
               region_side: int = REGION) -> tuple[np.ndarray, Codelength]:
        """Pixels -> (ANS words, what the image costs under the model, by scale and term)."""
        stack, bits, coded = AnsStack(), Codelength(), 0
        for y0, y1, x0, x1 in regions(pixels.shape[0], pixels.shape[1], region_side):
            region = pixels[y0:y1, x0:x1]
            self._encode_region(stack, bits, region, mode, coded, progress)
            coded += region.size
        return stack.words(), bits

    def decode(self, words: np.ndarray, mode: str, height: int, width: int, progress: Progress | None = None,
               region_side: int = REGION) -> np.ndarray:
        """Mirror of `encode`: ANS words -> pixels."""
        stack = AnsStack(words)
        channels = MODES[mode]
        pixels = np.empty((height, width) + (() if mode == "L" else (channels,)), dtype=np.uint8)
        rects = regions(height, width, region_side)
        starts = np.cumsum([0] + [(y1 - y0) * (x1 - x0) * channels for y0, y1, x0, x1 in rects])
        for (y0, y1, x0, x1), coded in reversed(list(zip(rects, starts))):
            pixels[y0:y1, x0:x1] = self._decode_region(stack, mode, y1 - y0, x1 - x0, int(coded), progress)
        if not stack.is_empty():
            raise ValueError("the payload has data left after the last coefficient")
        return pixels

    def _encode_region(self, stack: AnsStack, bits: Codelength, pixels: np.ndarray, mode: str, coded_before: int,
                       progress: Progress | None) -> None:
        """Code one region as an image: each plane from the finest level to its top image."""
        height, width = pixels.shape[:2]
        planes = image_planes(pixels, mode)
        levels = maps.num_levels(height, width)
        decs = [maps.decompose(p, self.map_name, levels) for p, _ in planes]
        for plan in coding_plan(height, width, [ch for _, ch in planes], levels, coded_before, self.direct_tile):
            dec = decs[plan.plane]
            j = plan.level - 1
            self._encode_level(stack, bits, plan, dec.details[j].reshape(9, *dec.details[j].shape[2:]), dec.coarse[j],
                               progress)
            if plan.level == levels:
                self._add_top(stack, bits, dec.top, plan.chroma, levels + 1)
        if levels == 0:
            for p, chroma in planes:
                self._add_top(stack, bits, p, chroma, 1)

    def _encode_level(self, stack: AnsStack, bits: Codelength, plan: LevelPlan, details: np.ndarray,
                      coarse: np.ndarray, progress: Progress | None) -> None:
        """Code one level's details (9, hc, wc) tile by tile, then its calibration indices (so the
        decoder pops them first). The direct tiles' model outputs come first, all of them, so the
        calibration can be chosen from the whole level."""
        mask = coef_mask(plan.shape, plan.chroma)
        refits = self._refits(mask)  # only at T = 0, where every tile is direct
        weights, fitted = None, {}
        if refits and self.fit_readout:
            weights, fitted = self.fit_readout_weights(details, coarse, mask, plan.chroma, plan.level,
                                                       [rect for rect, _ in plan.rects])
        direct = {}
        for (y0, y1, x0, x1), coded in plan.rects:
            if (y0, x0) in fitted:
                direct[(y0, x0)] = fitted.pop((y0, x0))
            elif self.tile_steps(coded) == 0:
                direct[(y0, x0)] = self.direct_groups(details[:, y0:y1, x0:x1], coarse[:, y0:y1, x0:x1],
                                                      mask[:, y0:y1, x0:x1], plan.chroma, plan.level, (y0, x0),
                                                      weights)
            if progress and (y0, x0) in direct:  # the network's work on a direct tile is done here
                progress((y1 - y0) * (x1 - x0))
        choice = self.choose_calibration(list(direct.values()))
        for (y0, y1, x0, x1), _ in plan.rects:  # in place, so a level's model outputs are held once
            if (y0, x0) in direct:
                direct[(y0, x0)] = self.coded_groups(direct[(y0, x0)], choice, mask[:, y0:y1, x0:x1], (y0, x0))
        table = self.choose_surprise(list(direct.values()))
        for (y0, y1, x0, x1), coded in plan.rects:
            tile_mask, before = mask[:, y0:y1, x0:x1], stack.num_bits()
            if (y0, x0) in direct:
                terms = self.encode_direct_tile(stack, direct[(y0, x0)], table)
            else:
                terms = self.encode_chain_tile(stack, details[:, y0:y1, x0:x1], coarse[:, y0:y1, x0:x1], tile_mask,
                                               plan.chroma, plan.level, self.tile_steps(coded))
                if progress:
                    progress((y1 - y0) * (x1 - x0))
            bits.add(plan.level, terms, int(tile_mask.sum()), stack.num_bits() - before)
        if direct:
            before = stack.num_bits()
            terms = self.push_calibration(stack, choice, table)
            if refits:
                terms["readout"] = self.push_readout(stack, weights)
            bits.add(plan.level, terms, 0, stack.num_bits() - before)

    def _decode_region(self, stack: AnsStack, mode: str, height: int, width: int, coded_before: int,
                       progress: Progress | None) -> np.ndarray:
        """Mirror of `_encode_region`."""
        chroma_flags = PLANE_CHROMA[mode]
        levels = maps.num_levels(height, width)
        planes: list[np.ndarray] = [np.zeros(0)] * len(chroma_flags)
        if levels == 0:
            for p in reversed(range(len(chroma_flags))):
                planes[p] = self.decode_top(stack, (height, width), chroma_flags[p])
            return planes_image(planes, mode)
        current = None
        for plan in reversed(coding_plan(height, width, chroma_flags, levels, coded_before, self.direct_tile)):
            (h, w), hc, wc = plan.shape, (plan.shape[0] + 1) // 2, (plan.shape[1] + 1) // 2
            if plan.level == levels:
                current = self.decode_top(stack, (hc, wc), plan.chroma)
            details = self._decode_level(stack, plan, current, progress)
            current = maps.merge_level(current, details.reshape(3, 3, hc, wc), h, w, self.map_name)
            if plan.level == 1:
                planes[plan.plane] = current
        return planes_image(planes, mode)

    def _decode_level(self, stack: AnsStack, plan: LevelPlan, coarse: np.ndarray,
                      progress: Progress | None) -> np.ndarray:
        """Mirror of `_encode_level`: one level's details (9, hc, wc) given its coarse image."""
        mask = coef_mask(plan.shape, plan.chroma)
        details = np.zeros((9,) + coarse.shape[1:], dtype=np.int64)
        has_direct = any(self.tile_steps(coded) == 0 for _, coded in plan.rects)
        weights = self.pop_readout(stack) if self._refits(mask) else None
        calibrated, table = self.pop_calibration(stack) if has_direct else (None, None)
        for (y0, y1, x0, x1), coded in reversed(plan.rects):
            tile_coarse, tile_mask = coarse[:, y0:y1, x0:x1], mask[:, y0:y1, x0:x1]
            if self.tile_steps(coded) == 0:
                tile = self.decode_direct_tile(stack, tile_coarse, tile_mask, plan.chroma, plan.level, (y0, x0),
                                               calibrated, table, weights)
            else:
                tile = self.decode_chain_tile(stack, tile_coarse, tile_mask, plan.chroma, plan.level,
                                              self.tile_steps(coded))
            details[:, y0:y1, x0:x1] = tile
            if progress:
                progress((y1 - y0) * (x1 - x0))
        return details

    @staticmethod
    def work_units(height: int, width: int, mode: str, region_side: int = REGION) -> int:
        """Total positions `progress` will report for an image (for a progress bar's total)."""
        total = 0
        for y0, y1, x0, x1 in regions(height, width, region_side):
            h, w = y1 - y0, x1 - x0
            for _ in range(maps.num_levels(h, w)):
                h, w = (h + 1) // 2, (w + 1) // 2
                total += h * w
        return total * len(PLANE_CHROMA[mode])
