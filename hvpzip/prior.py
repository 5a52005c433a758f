"""The multiscale diffusion prior (torch): one shared denoiser for all levels, plus a top model.

Per level j, y = details_j / c_j is modelled given the coarse image by a discrete-time VP
diffusion with T steps, learned schedule endpoints, learned reverse variances and a learned
discretized-Laplace decoder on the integer grid. T = 0 is the direct model p(details | coarse),
the same network evaluated at infinite noise; with `context` it is autoregressive over groups of a
level's coefficients (checkerboard anchors then the rest, for luma then chroma, or for each of
Y, Co and Cg in turn, or the anchors split in two phases), each group conditioned on the groups before it.
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import schedule

COEFS = 9  # 3 colour channels x 3 detail bands per position
MAX_LEVEL_EMBED = 4  # levels >= 4 share an embedding (natural images are near scale-invariant)
DIRECT_GAMMA = 14.0  # noise embedding used for the T = 0 direct model
COARSE_OFFSET = (128.0, 0.0, 0.0)
COARSE_SCALE = 64.0
BASE_INPUTS = COEFS + 3 + 3 + 1  # z, coarse image, band mask, chroma flag
CONTEXT_INPUTS = 2 * COEFS  # known coefficient values and their mask (direct model with context)
# context group count -> (the colour channels coded together in coding order, spatial phases of each)
CONTEXT_LAYOUTS = {4: (((0,), (1, 2)), 2), 6: (((0,), (1,), (2,)), 2), 9: (((0,), (1,), (2,)), 3)}


def spatial_phases(phases: int, yy: np.ndarray, xx: np.ndarray) -> list[np.ndarray]:
    """The positions of a channel set coded in turn: 2 phases are the checkerboard anchors then the
    rest; 3 phases split the anchors into even and odd rows, so the odd ones see their diagonal
    neighbours (the rest then sees all four direct neighbours, as with 2)."""
    anchor = (yy + xx) % 2 == 0
    if phases == 2:
        return [anchor, ~anchor]
    return [anchor & (yy % 2 == 0), anchor & (yy % 2 == 1), ~anchor]


def context_groups(count: int, height: int, width: int, y0: int = 0, x0: int = 0) -> np.ndarray:
    """(count, 9, h, w) bool coding groups of a level tile at (y0, x0): for each channel set of
    CONTEXT_LAYOUTS[count] in turn, its spatial phases."""
    channel_sets, phases = CONTEXT_LAYOUTS[count]
    yy, xx = np.mgrid[y0 : y0 + height, x0 : x0 + width]
    channel = np.arange(COEFS) // 3  # coefficient index = channel * 3 + band
    groups = []
    for channels in channel_sets:
        chosen = np.isin(channel, channels)[:, None, None]
        groups += [chosen & phase for phase in spatial_phases(phases, yy, xx)]
    return np.stack(groups)


@dataclass
class PriorConfig:
    """Everything needed to rebuild a model; stored with its weights."""

    map_name: str = "haar"
    steps: int = 4  # the T the model was trained at
    default_steps: int | None = None  # the T `compress` uses by default (None: `steps`), chosen by benchmark
    width: int = 32
    blocks: int = 4
    embed: int = 64
    detail_scales: list[list[float]] = field(default_factory=lambda: [[8.0] * COEFS])
    context: bool = False  # the direct model codes a level in groups, each seeing the earlier ones
    context_groups: int = 4  # a key of CONTEXT_LAYOUTS: luma/chroma (4) or Y/Co/Cg (6) in checkerboard halves, Y/Co/Cg in 3 phases (9)


def sinusoidal(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sinusoidal features of a scalar per batch element."""
    freqs = torch.exp(torch.linspace(0.0, math.log(100.0), dim // 2, dtype=x.dtype, device=x.device))
    angles = x[:, None] * freqs[None] / 4.0
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResBlock(nn.Module):
    """Pre-activation residual block with an additive level/noise embedding."""

    def __init__(self, width: int, embed: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.emb = nn.Linear(embed, width)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(x)) + self.emb(emb)[:, :, None, None]
        return x + self.conv2(self.act(h))


class Denoiser(nn.Module):
    """Shared conv net: (z, coarse, band mask, chroma flag) + (level, gamma) -> 3 x 9 raw outputs."""

    def __init__(self, width: int, blocks: int, embed: int, inputs: int = BASE_INPUTS):
        super().__init__()
        self.embed = embed
        self.inp = nn.Conv2d(inputs, width, 3, padding=1)
        self.level_emb = nn.Embedding(MAX_LEVEL_EMBED, embed)
        self.noise_mlp = nn.Sequential(nn.Linear(embed, embed), nn.SiLU(), nn.Linear(embed, embed))
        self.blocks = nn.ModuleList(ResBlock(width, embed, 1 + (i % 2)) for i in range(blocks))
        self.out = nn.Conv2d(width, 3 * COEFS, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def features(self, x: torch.Tensor, level: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """The last features (B, width, h, w) that the 1x1 output layer reads out."""
        emb = self.noise_mlp(sinusoidal(gamma, self.embed)) + self.level_emb(level)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return nn.functional.silu(h)

    def forward(self, x: torch.Tensor, level: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x, level, gamma))


class MultiscalePrior(nn.Module):
    """Denoiser + learned per-level schedule endpoints + a per-channel Laplace for the top image."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        if config.context_groups not in CONTEXT_LAYOUTS:
            raise ValueError(f"context_groups must be one of {sorted(CONTEXT_LAYOUTS)}, not {config.context_groups}")
        self.config = config
        self.denoiser = Denoiser(config.width, config.blocks, config.embed,
                                 BASE_INPUTS + CONTEXT_INPUTS * config.context)
        self.gamma_min = nn.Parameter(torch.full((MAX_LEVEL_EMBED,), -6.0))
        self.gamma_span = nn.Parameter(torch.full((MAX_LEVEL_EMBED,), 12.0))  # softplus(12) ~ 12: gamma_max ~ 6
        self.top_mean = nn.Parameter(torch.tensor([110.0, 0.0, 0.0]))
        self.top_log_scale = nn.Parameter(torch.tensor([3.5, 3.0, 3.0]))

    # --- schedule -------------------------------------------------------------------------
    def level_index(self, level: int) -> int:
        """Embedding/schedule row of 1-based `level` (1 = finest)."""
        return min(level, MAX_LEVEL_EMBED) - 1

    def gamma_endpoints(self, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.level_index(level)
        g_min = self.gamma_min[i].clamp(-10.0, 8.0)
        return g_min, (g_min + nn.functional.softplus(self.gamma_span[i])).clamp(max=12.0)

    def gammas(self, level: int, steps: int) -> torch.Tensor:
        """gamma_1..gamma_T for this level as a differentiable tensor."""
        g_min, g_max = self.gamma_endpoints(level)
        if steps == 1:
            return g_min[None]
        frac = torch.arange(steps, dtype=torch.float32, device=g_min.device) / (steps - 1)
        return g_min + (g_max - g_min) * frac

    def gammas_float(self, level: int, steps: int) -> list[float]:
        """The same schedule as python floats, for the coder's float64 arithmetic."""
        with torch.no_grad():
            g_min, g_max = self.gamma_endpoints(level)
        return schedule.linear_gammas(g_min.item(), g_max.item(), steps)

    def detail_scale(self, level: int) -> torch.Tensor:
        """c_j: per-coefficient normalisation of level j's details (9,)."""
        scales = self.config.detail_scales
        return torch.tensor(scales[min(level, len(scales)) - 1], dtype=torch.float32, device=self.gamma_min.device)

    # --- network --------------------------------------------------------------------------
    def network(self, z: torch.Tensor, coarse: torch.Tensor, band_mask: torch.Tensor, chroma: torch.Tensor,
                level: int, gamma: torch.Tensor, known: torch.Tensor | None = None,
                known_y: torch.Tensor | None = None, features: bool = False,
                channels_last: bool = False) -> torch.Tensor:
        """Raw outputs (B, 27, h, w): [mean F, decoder log-scale, reverse log-variance ratio].

        With context, `known` (B, 9, h, w) marks the coefficients the direct model has already
        coded and `known_y` holds their values y (zero elsewhere); both default to none known.
        `features`: return the denoiser's last features (B, width, h, w) instead, which the output
        layer reads out. `channels_last`: run the convolutions on channels-last tensors (about 30%
        faster through oneDNN on CPU, with other float32 roundings).
        """
        offset = torch.tensor(COARSE_OFFSET, dtype=coarse.dtype, device=coarse.device)[None, :, None, None]
        chroma_map = chroma[:, None, None, None].expand(-1, 1, *z.shape[2:])
        inputs = [z, (coarse - offset) / COARSE_SCALE, band_mask, chroma_map]
        if self.config.context:
            known = torch.zeros_like(z) if known is None else known
            inputs += [torch.zeros_like(z) if known_y is None else known_y * known, known]
        x = torch.cat(inputs, dim=1)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        levels = torch.full((z.shape[0],), self.level_index(level), dtype=torch.long, device=z.device)
        # float32 out whatever ran inside (bfloat16 under the trainer's autocast; a no-op otherwise)
        return (self.denoiser.features if features else self.denoiser)(x, levels, gamma).float()

    # --- training / scoring -----------------------------------------------------------------
    def level_loss_terms(self, details: torch.Tensor, coarse: torch.Tensor, coef_mask: torch.Tensor,
                         chroma: torch.Tensor, level: int, t: torch.Tensor, steps: int,
                         group: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-element bits for one random term t of each element (0 = direct, 1 = decoder, >=2 = KL).

        details (B, 9, h, w) integer-valued floats, coarse (B, 3, h, w), coef_mask (B, 9, h, w).
        With context, direct elements code context group `group` (B,) given the groups before it,
        times the number of groups (an unbiased estimate of the level's bits; None: random groups).
        Returns 'term' (bits of the sampled term) and 'prior' (bits of KL(q(z_T|y) || N(0, 1))).
        """
        c = self.detail_scale(level)[None, :, None, None]
        y = details / c
        band_mask = coef_mask[:, :3]
        t = t.to(details.device)
        gam = self.gammas(level, steps) if steps > 0 else torch.zeros(1, device=details.device)
        t_idx = (t - 1).clamp(min=0, max=max(steps - 1, 0))
        gamma_t = torch.where(t > 0, gam[t_idx], torch.full_like(t_idx, DIRECT_GAMMA, dtype=torch.float32))
        alpha_t, sigma_t = schedule.alpha_sigma(gamma_t, torch)
        direct = (t == 0)[:, None, None, None]
        eps = torch.randn_like(y)
        z = torch.where(direct, torch.zeros_like(y), alpha_t[:, None, None, None] * y + sigma_t[:, None, None, None] * eps)
        z = z * coef_mask
        known, target = self._context_masks(t, coef_mask, group)
        out = self.network(z, coarse, band_mask, chroma, level, gamma_t, known, y)
        raw_mean, raw_log_scale, raw_log_var = out.split(COEFS, dim=1)
        g4 = gamma_t[:, None, None, None]
        # decoder / direct term (direct with context: one group, weighted to estimate the level's total)
        mean_d, scale_d = schedule.decoder_laplace(z, raw_mean, raw_log_scale, g4, c, torch)
        dec_bits = -(schedule.laplace_bin_log2prob(details, mean_d, scale_d, torch) * target).sum(dim=(1, 2, 3))
        # diffusion KL term for t >= 2
        if steps >= 2:
            # elements with t < 2 get a harmless stand-in for gamma_{t-1} (their KL is discarded)
            g_s = torch.where(t >= 2, gam[(t_idx - 1).clamp(min=0)], gamma_t - 1.0)[:, None, None, None]
            mean_q, std_q = schedule.posterior(z, y, g_s, g4, torch)
            y_hat = schedule.predict_y(z, raw_mean, g4, torch)
            mean_p, _ = schedule.posterior(z, y_hat, g_s, g4, torch)
            std_p = schedule.reverse_std(std_q, raw_log_var, torch)
            kl_bits = (schedule.gaussian_kl(mean_q, std_q, mean_p, std_p, torch) * coef_mask).sum(dim=(1, 2, 3)) / math.log(2)
            term = torch.where(t >= 2, kl_bits, dec_bits)
        else:
            term = dec_bits
        if steps > 0:
            a_T, s_T = schedule.alpha_sigma(gam[-1], torch)
            prior_nats = 0.5 * (s_T**2 + a_T**2 * y**2 - 1.0 - torch.log(s_T**2))
            prior = (prior_nats * coef_mask).sum(dim=(1, 2, 3)) / math.log(2)
        else:
            prior = torch.zeros_like(term)
        return {"term": term, "prior": prior}

    def _context_masks(self, t: torch.Tensor, coef_mask: torch.Tensor,
                       group: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(known, target) masks: which coefficients the network sees as context and which it is scored on."""
        if not self.config.context:
            return None, coef_mask
        b, _, h, w = coef_mask.shape
        count = self.config.context_groups
        groups = torch.from_numpy(context_groups(count, h, w)).to(coef_mask.device, coef_mask.dtype)  # (G, 9, h, w)
        if group is None:
            group = torch.randint(0, count, (b,), device=coef_mask.device)
        before = torch.cumsum(groups, 0) - groups  # groups coded before each group
        direct = (t == 0).to(coef_mask.dtype)[:, None, None, None]
        known = before[group] * coef_mask * direct
        target = torch.where(direct > 0, groups[group] * coef_mask * count, coef_mask)
        return known, target

    def top_bits(self, top: torch.Tensor, chan_mask: torch.Tensor) -> torch.Tensor:
        """Bits of the top image (B, 3, h, w) under the per-channel Laplace, masked by (B, 3)."""
        mean = self.top_mean[None, :, None, None].expand_as(top)
        scale = torch.exp(self.top_log_scale)[None, :, None, None].expand_as(top)
        return -(schedule.laplace_bin_log2prob(top, mean, scale, torch) * chan_mask[:, :, None, None]).sum(dim=(1, 2, 3))


# --- model files -------------------------------------------------------------------------------
def save_model(model: MultiscalePrior, path: Path) -> None:
    """Write config + float32 weights to one small file."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"config": asdict(model.config), "state": state}, path)


def load_model(path: Path) -> tuple[MultiscalePrior, str]:
    """Load a model file; returns (model in eval mode, sha256 of the file).

    Raises ValueError for a file that is not a model (torch.load fails in many ways on foreign bytes).
    """
    data = Path(path).read_bytes()
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        model = MultiscalePrior(PriorConfig(**blob["config"]))
        model.load_state_dict(blob["state"])
    except Exception as err:
        raise ValueError(f"{path} is not an hvpzip model file ({type(err).__name__})") from None
    model.eval()
    return model, hashlib.sha256(data).hexdigest()


def raw_outputs(model: MultiscalePrior, z: np.ndarray, coarse: np.ndarray, band_mask: np.ndarray, chroma: float,
                level: int, gamma: float, known: np.ndarray | None = None,
                known_y: np.ndarray | None = None, features: bool = False,
                channels_last: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Network outputs (27, h, w) as float64 for one tile, computed in float32 with batch size 1
    (on channels-last tensors if asked, `MultiscalePrior.network`), returned C-contiguous whatever the
    layout; with `features`, also the last features (width, h, w) they were read out from, kept in
    float32 (exact: the readout correction's float64 arithmetic upcasts them losslessly, at half the memory).

    The coder calls this with identical inputs on both sides, so the outputs are bit-identical
    (on one device type: CPU and GPU arithmetic differ).
    """
    device = model.gamma_min.device
    tensor = lambda a: torch.from_numpy(a.astype(np.float32))[None].to(device)
    with torch.no_grad():
        h = model.network(tensor(z), tensor(coarse), tensor(band_mask),
                          torch.tensor([chroma], dtype=torch.float32, device=device), level,
                          torch.tensor([gamma], dtype=torch.float32, device=device),
                          None if known is None else tensor(known), None if known_y is None else tensor(known_y),
                          features=True, channels_last=channels_last)
        out = model.denoiser.out(h)
    array = lambda t: t[0].cpu().contiguous().numpy()
    if features:
        return array(out.double()), array(h)
    return array(out.double())
