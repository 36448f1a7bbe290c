"""The denoiser a solver calls: the model with the restoration's wrappers around it, built in one place.

``D'(v, s) = B(S(T(D)))(v, strength * s)``: ``D`` the model (a shipped model already picked for the input's
channels by :func:`pnprgm.denoisers.build`), ``T`` overlapping tiles (bounded memory), ``S`` the dihedral
symmetry (:mod:`pnprgm.denoisers.symmetry`), ``B`` the blend that keeps detail (:mod:`pnprgm.denoisers.detail`),
and ``strength`` the factor on the level each call receives. Solvers receive the result as a plain ``Denoiser``
and know nothing of these settings; every default leaves the model itself (no wrapper hides, for instance, an RGM
generator's ``stochastic_restore``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from deepinv.models import Denoiser

from pnprgm.denoisers.base import sigma_per_image
from pnprgm.denoisers.detail import keep_detail
from pnprgm.denoisers.symmetry import SYMMETRIES, symmetrize
from pnprgm.denoisers.tiled import TiledDenoiser


@dataclass(frozen=True)
class DenoiserSettings:
    """How each denoiser call of a PnP solver is wrapped (the model and the solver stay as they are).

    :param symmetry: ``none``, ``random`` (one random 90-degree turn / flip around each denoiser call) or
        ``average`` (mean over all 8, eight calls); see :mod:`pnprgm.denoisers.symmetry`.
    :param detail_sigma: std of the detail the denoiser misses; each call returns
        ``(s^2 D + detail_sigma^2 v) / (s^2 + detail_sigma^2)`` of its input v at level s (0: D itself); see
        :mod:`pnprgm.denoisers.detail`.
    :param strength: the denoiser is called at ``strength * sigma_k`` while the solver's data-step weight keeps
        ``sigma_k`` (< 1: each call removes less and keeps more texture); the same iterates as ``sigma_start``,
        ``sigma_end`` times ``strength`` and ``lam`` times ``strength^2``, but still following the noise level.
    """

    symmetry: str = "none"
    detail_sigma: float = 0.0
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.symmetry not in SYMMETRIES:
            raise ValueError(f"symmetry must be one of {', '.join(SYMMETRIES)}; got {self.symmetry!r}")
        if not 0 <= self.detail_sigma <= 1:  # a std in [0, 1] image units (squared: 1e300 overflowed)
            raise ValueError(f"detail_sigma is a std in [0, 1] image units (0: off, e.g. 0.02); got {self.detail_sigma}")
        if not self.strength > 0:
            raise ValueError(f"strength must be > 0, got {self.strength}")

    @property
    def is_identity(self) -> bool:
        """True when the settings wrap nothing."""
        return self == DenoiserSettings()


class ScaledLevelDenoiser(Denoiser):
    """``D(v, strength * s)``: the wrapped denoiser called at a scaled level."""

    def __init__(self, denoiser: Denoiser, strength: float):
        super().__init__()
        self.denoiser, self.strength = denoiser, float(strength)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, **kwargs) -> torch.Tensor:
        # a float level stays a float (the product a solver would have passed), a per-image level is scaled per image
        level = self.strength * sigma if isinstance(sigma, (int, float)) else self.strength * sigma_per_image(sigma, x)
        return self.denoiser(x, level, **kwargs)


def tile_overlap(tile: int) -> int:
    """Overlap of neighbouring tiles: an eighth of the tile, at least 8 pixels."""
    return max(8, tile // 8)


def denoiser_pipeline(model: Denoiser, settings: DenoiserSettings = DenoiserSettings(), *, tile: Optional[int] = None,
                      generator: Optional[torch.Generator] = None) -> Denoiser:
    """The denoiser a solver calls (module docstring); ``generator`` draws the random symmetry per call."""
    denoiser = TiledDenoiser(model, tile=tile, overlap=tile_overlap(tile)) if tile else model
    denoiser = keep_detail(symmetrize(denoiser, settings.symmetry, generator=generator), settings.detail_sigma)
    return denoiser if settings.strength == 1 else ScaledLevelDenoiser(denoiser, settings.strength)
