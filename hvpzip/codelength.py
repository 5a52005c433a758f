"""Codelength: the bits an image costs, by scale and term, as the codec coded them."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Codelength:
    """What an image costs under the model, in bits, split by scale and term.

    Scales are map levels (1 = finest details, L + 1 = the top image). Terms are the analytic
    negative-ELBO terms, 'decoder' (the discretized Laplace over the integers; the whole cost of
    tiles coded directly), 'kl_t' for diffusion step t >= 2, 'prior' (KL of the last latent to
    N(0, 1)), 'top' and 'calibration' (the per-level calibration indices sent ahead of directly coded
    tiles), plus 'residual': what the ANS stack actually grew by minus those terms. The
    residual comes from coding one sample of discretized latents instead of taking expectations
    (and ANS rounding), so `total` is exactly the payload's growth. `dims` counts the sub-pixels
    each scale codes; the map is volume-preserving, so they add up to the image's.
    """

    bits: dict[int, dict[str, float]] = field(default_factory=dict)
    dims: dict[int, int] = field(default_factory=dict)

    def add(self, level: int, terms: dict[str, float], dims: int, coded_bits: int) -> None:
        """Record a tile's analytic terms and the bits its coding actually added to the stack."""
        scale = self.bits.setdefault(level, {})
        for name, value in {**terms, "residual": coded_bits - sum(terms.values())}.items():
            scale[name] = scale.get(name, 0.0) + value
        self.dims[level] = self.dims.get(level, 0) + dims

    @property
    def total(self) -> float:
        """Coded bits: the single-sample negative ELBO of the discretized model, as the file pays it."""
        return sum(sum(terms.values()) for terms in self.bits.values())

    @property
    def analytic(self) -> float:
        """The model's negative ELBO with expectations taken analytically (what training minimises)."""
        return self.total - sum(terms["residual"] for terms in self.bits.values())

    def per_term(self) -> dict[str, float]:
        """Bits per term summed over scales."""
        out: dict[str, float] = {}
        for terms in self.bits.values():
            for name, value in terms.items():
                out[name] = out.get(name, 0.0) + value
        return out
