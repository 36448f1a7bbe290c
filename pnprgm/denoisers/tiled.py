"""Tile-wise application of a denoiser: bounded memory on large images, seams hidden by blending."""
from __future__ import annotations

import numbers

import torch
from deepinv.models import Denoiser

from pnprgm.errors import UserError

#: Smallest tile side offered to users: tiles overlap by max(8, tile/8) pixels on each side, so smaller ones are
#: mostly overlap.
MIN_TILE = 32


def check_tile(tile: object, what: str = "tile") -> int:
    """``tile`` as an integer side of at least :data:`MIN_TILE`, else a :class:`UserError` naming ``what`` (the one
    rule of the API's ``tile`` and restore's ``--tile``)."""
    if isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or tile < MIN_TILE:
        raise UserError(f"{what} must be an integer of at least {MIN_TILE} pixels (tiles overlap by max(8, tile/8)); "
                        f"got {tile!r}. Leave {what} out to denoise each image whole.")
    return int(tile)


class TiledDenoiser(Denoiser):
    """Apply ``denoiser`` on overlapping ``tile`` x ``tile`` windows, blended with a separable ramp window.

    Memory is bounded by one tile's activations; weights sum to one everywhere, so a denoiser that is the
    identity stays the identity.

    :param denoiser: any ``forward(x, sigma)`` denoiser.
    :param tile: tile side in pixels (images not larger than this are processed whole).
    :param overlap: overlap between neighbouring tiles in pixels.
    """

    def __init__(self, denoiser: Denoiser, tile: int = 256, overlap: int = 32):
        super().__init__()
        if tile <= 2 * overlap:
            raise ValueError(f"tile ({tile}) must exceed twice the overlap ({overlap})")
        self.denoiser, self.tile, self.overlap = denoiser, tile, overlap

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, **kwargs) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height <= self.tile and width <= self.tile:
            return self.denoiser(x, sigma, **kwargs)
        out = torch.zeros_like(x)
        weight = torch.zeros((1, 1, height, width), dtype=x.dtype, device=x.device)
        for top in self._starts(height):
            for left in self._starts(width):
                bottom, right = min(top + self.tile, height), min(left + self.tile, width)
                window = self._window(bottom - top, right - left, top, left, height, width, x)
                out[..., top:bottom, left:right] += self.denoiser(x[..., top:bottom, left:right], sigma, **kwargs) * window
                weight[..., top:bottom, left:right] += window
        return out / weight

    def _starts(self, size: int) -> list[int]:
        if size <= self.tile:
            return [0]
        stride = self.tile - self.overlap
        starts = list(range(0, size - self.tile, stride)) + [size - self.tile]
        return sorted(set(starts))

    def _window(self, h: int, w: int, top: int, left: int, height: int, width: int, ref: torch.Tensor) -> torch.Tensor:
        def ramp(n: int, at_start: bool, at_end: bool) -> torch.Tensor:
            r = torch.ones(n, dtype=ref.dtype, device=ref.device)
            k = min(self.overlap, n // 2)
            if k > 0:
                edge = (torch.arange(k, dtype=ref.dtype, device=ref.device) + 1) / (k + 1)
                if not at_start:
                    r[:k] = edge
                if not at_end:
                    r[-k:] = edge.flip(0)
            return r

        wy = ramp(h, top == 0, top + h == height)
        wx = ramp(w, left == 0, left + w == width)
        return (wy[:, None] * wx[None, :])[None, None]
