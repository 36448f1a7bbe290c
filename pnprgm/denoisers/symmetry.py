"""Dihedral symmetrisation of a denoiser: rotations by multiples of 90 degrees and a horizontal flip.

``average``: ``D_eq(x) = 1/8 sum_g T_g^{-1} D(T_g x)`` over the 8 elements of the group (the "x8" self-ensemble,
8 denoiser calls). ``random``: ``T_g^{-1} D(T_g x)`` with one ``g`` drawn per call (the Monte Carlo equivariant
PnP of Terris et al. 2024): one call, and inside an iterative solver the draws average out over iterations.

Written with ``torch.rot90`` rather than deepinv's ``EquivariantDenoiser``: deepinv's ``Rotate`` either keeps the
input size (cropping the corners of a turned non-square image) or pads it (``constant_shape=False`` gives 8x11
for a turned 6x9 image), and it stacks all copies into one batch, which turned non-square copies cannot share.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from deepinv.models import Denoiser

from pnprgm.denoisers.base import sigma_per_image
from pnprgm.errors import UserError

Symmetry = Literal["none", "random", "average"]
SYMMETRIES: tuple[str, ...] = ("none", "random", "average")
#: The group as (quarter turns, flip): ``T(x) = rot90(flip(x), turns)``.
DIHEDRAL: tuple[tuple[int, bool], ...] = tuple((turns, flip) for turns in range(4) for flip in (False, True))


def transform(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """``T_g x``: flip the width (if ``flip``), then turn by ``turns`` quarter turns."""
    return torch.rot90(x.flip(-1) if flip else x, turns, dims=(-2, -1))


def inverse(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """``T_g^{-1} x``."""
    x = torch.rot90(x, -turns, dims=(-2, -1))
    return x.flip(-1) if flip else x


class SymmetrizedDenoiser(Denoiser):
    """``D`` made equivariant to 90-degree turns and flips (see the module docstring).

    :param denoiser: any ``forward(x, sigma)`` denoiser.
    :param symmetry: ``random`` (one transform per call) or ``average`` (all 8).
    :param generator: draws of ``random`` (seeded by the caller, so runs repeat).
    """

    def __init__(self, denoiser: Denoiser, symmetry: Symmetry, *, generator: Optional[torch.Generator] = None):
        super().__init__()
        if symmetry not in ("random", "average"):
            raise UserError(f"unknown symmetry {symmetry!r} for a wrapper; choose random or average "
                            f"(none: use the denoiser itself).")
        self.denoiser, self.symmetry, self.generator = denoiser, symmetry, generator

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, **kwargs) -> torch.Tensor:
        sigma = sigma_per_image(sigma, x)
        if self.symmetry == "average":
            elements = DIHEDRAL
        else:
            draw = torch.randint(len(DIHEDRAL), (1,), generator=self.generator, device=_device_of(self.generator))
            elements = (DIHEDRAL[int(draw)],)
        total = sum(inverse(self.denoiser(transform(x, *g), sigma, **kwargs), *g) for g in elements)
        return total / len(elements)


def _device_of(generator: Optional[torch.Generator]) -> str | torch.device:
    return generator.device if generator is not None else "cpu"


def symmetrize(denoiser: Denoiser, symmetry: Symmetry, *, generator: Optional[torch.Generator] = None) -> Denoiser:
    """``denoiser`` itself for ``none``, else wrapped in a :class:`SymmetrizedDenoiser` (which rejects other names)."""
    return denoiser if symmetry == "none" else SymmetrizedDenoiser(denoiser, symmetry, generator=generator)
