"""Discrete-time variance-preserving diffusion formulas, shared by training (torch) and coding (numpy).

Every function takes an array namespace `xp` (`numpy` or `torch`) so the coder's float64
arithmetic and the training loss use one definition. gamma is the negative log-SNR:
alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma).
"""
from __future__ import annotations

import math
from typing import Any

GRID_FRACTION = 0.25  # latent grid step as a fraction of the smallest noise std it is coded with
LOG_SCALE_MIN, LOG_SCALE_MAX = -9.0, 6.0
LOG_VAR_RATIO_LIMIT = 4.0


def alpha_sigma(gamma: Any, xp: Any) -> tuple[Any, Any]:
    """(alpha, sigma) of a VP diffusion at negative log-SNR `gamma`."""
    return xp.sqrt(1.0 / (1.0 + xp.exp(gamma))), xp.sqrt(1.0 / (1.0 + xp.exp(-gamma)))


def linear_gammas(gamma_min: float, gamma_max: float, steps: int) -> list[float]:
    """gamma_1 .. gamma_T evenly spaced between the learned endpoints (t = 1 is the least noisy)."""
    if steps == 1:
        return [gamma_min]
    return [gamma_min + (gamma_max - gamma_min) * i / (steps - 1) for i in range(steps)]


def predict_y(z: Any, raw_mean: Any, gamma: Any, xp: Any) -> Any:
    """Clean-signal estimate y_hat = alpha z + sigma F (skip connection of a VP model)."""
    alpha, sigma = alpha_sigma(gamma, xp)
    return alpha * z + sigma * raw_mean


def decoder_laplace(z: Any, raw_mean: Any, raw_log_scale: Any, gamma: Any, scale: Any, xp: Any) -> tuple[Any, Any]:
    """Laplace (mean, scale) of p(detail | z_1) in integer detail units; y = detail / scale."""
    _, sigma = alpha_sigma(gamma, xp)
    mean_y = predict_y(z, raw_mean, gamma, xp)
    log_b = xp.clip(raw_log_scale, LOG_SCALE_MIN, LOG_SCALE_MAX)
    return mean_y * scale, sigma * xp.exp(log_b) * scale


def forward_transition(gamma_prev: Any, gamma_t: Any, xp: Any) -> tuple[Any, Any]:
    """q(z_t | z_{t-1}) = N(a z_{t-1}, s^2): returns (a, s)."""
    alpha_p, _ = alpha_sigma(gamma_prev, xp)
    alpha_t, sigma_t = alpha_sigma(gamma_t, xp)
    ratio = xp.exp(gamma_prev - gamma_t)  # SNR_t / SNR_prev < 1
    return alpha_t / alpha_p, sigma_t * xp.sqrt(1.0 - ratio)


def posterior(z_t: Any, y: Any, gamma_s: Any, gamma_t: Any, xp: Any) -> tuple[Any, Any]:
    """q(z_s | z_t, y) for s = t - 1: returns (mean, std)."""
    alpha_s, sigma_s = alpha_sigma(gamma_s, xp)
    alpha_t, _ = alpha_sigma(gamma_t, xp)
    ratio = xp.exp(gamma_s - gamma_t)
    mean = (alpha_s / alpha_t) * ratio * z_t + alpha_s * (1.0 - ratio) * y
    return mean, sigma_s * xp.sqrt(1.0 - ratio)


def reverse_std(posterior_std: Any, raw_log_var: Any, xp: Any) -> Any:
    """Learned reverse std: the posterior std times a bounded learned factor."""
    return posterior_std * xp.exp(0.5 * xp.clip(raw_log_var, -LOG_VAR_RATIO_LIMIT, LOG_VAR_RATIO_LIMIT))


def gaussian_kl(mean_q: Any, std_q: Any, mean_p: Any, std_p: Any, xp: Any) -> Any:
    """KL(N(mean_q, std_q^2) || N(mean_p, std_p^2)) in nats, elementwise."""
    return xp.log(std_p / std_q) + (std_q**2 + (mean_q - mean_p) ** 2) / (2.0 * std_p**2) - 0.5


def latent_grids(gammas: list[float], xp: Any) -> list[Any]:
    """Grid step of each latent z_1..z_T: a fraction of the smallest std it is popped or pushed with."""
    grids = []
    for t, g in enumerate(gammas):
        stds = [alpha_sigma(g, xp)[1] if t == 0 else forward_transition(gammas[t - 1], g, xp)[1]]
        if t + 1 < len(gammas):
            alpha_s, sigma_s = alpha_sigma(g, xp)
            stds.append(sigma_s * xp.sqrt(1.0 - xp.exp(g - gammas[t + 1])))
        grids.append(GRID_FRACTION * min(stds))
    return grids


def laplace_bin_log2prob(k: Any, mean: Any, scale: Any, xp: Any) -> Any:
    """log2 P(k) of a Laplace(mean, scale) integrated over the bin [k - 1/2, k + 1/2], floored at 2^-24."""
    u = (k - mean + 0.5) / scale
    lo = (k - mean - 0.5) / scale
    log_mass = xp.log(-xp.expm1(-1.0 / scale))
    # each branch is evaluated on clipped inputs so the unselected ones stay finite (no NaN gradients)
    right = math.log(0.5) - xp.clip(lo, 0.0, math.inf) + log_mass  # both bin ends above the mean
    left = math.log(0.5) + xp.clip(u, -math.inf, 0.0) + log_mass  # both below
    inside = -0.5 * xp.exp(-xp.clip(u, 0.0, math.inf)) - 0.5 * xp.exp(xp.clip(lo, -math.inf, 0.0))
    middle = xp.log1p(xp.clip(inside, -1.0 + 2.0**-24, 0.0))
    logp = xp.where(lo >= 0, right, xp.where(u <= 0, left, middle))
    return xp.clip(logp, -24 * math.log(2), 0.0) / math.log(2)
