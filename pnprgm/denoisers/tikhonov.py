"""A linear Gaussian (Tikhonov) denoiser with a closed form, used to check that solvers reach the MAP.

Prior ``g(x) = w/2 ||grad x||^2`` (circular finite differences), so
``D(v, sigma) = prox_{sigma^2 g}(v) = (I + sigma^2 w grad^T grad)^-1 v``, diagonal in the Fourier domain.
"""
from __future__ import annotations

import math

import torch
from deepinv.models import Denoiser

from pnprgm.denoisers.base import registry, sigma_per_image


class TikhonovDenoiser(Denoiser):
    """``D(v, sigma) = (I + sigma^2 w L)^-1 v`` with L the circular discrete Laplacian (grad^T grad).

    :param weight: prior weight w.
    """

    def __init__(self, weight: float = 1.0, device: str | torch.device = "cpu"):
        super().__init__(device)
        self.weight = weight

    @staticmethod
    def laplacian_symbol(height: int, width: int, dtype=torch.float64, device=None) -> torch.Tensor:
        """Eigenvalues of grad^T grad (circular): ``4 sin^2(pi k/H) + 4 sin^2(pi l/W)``."""
        ky = torch.arange(height, dtype=dtype, device=device)
        kx = torch.arange(width, dtype=dtype, device=device)
        return (4 * torch.sin(math.pi * ky / height) ** 2)[:, None] + (4 * torch.sin(math.pi * kx / width) ** 2)[None, :]

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, **kwargs) -> torch.Tensor:
        symbol = self.laplacian_symbol(x.shape[-2], x.shape[-1], dtype=x.dtype, device=x.device)
        scale = (sigma_per_image(sigma, x) ** 2 * self.weight).view(-1, 1, 1, 1)
        spectrum = torch.fft.fft2(x) / (1 + scale * symbol)
        return torch.fft.ifft2(spectrum).real

    def regulariser(self, x: torch.Tensor) -> torch.Tensor:
        """``g(x) = w/2 ||grad x||^2`` per image."""
        dx = torch.roll(x, -1, -1) - x
        dy = torch.roll(x, -1, -2) - x
        return 0.5 * self.weight * (dx.pow(2) + dy.pow(2)).flatten(1).sum(1)


registry.add("tikhonov", lambda *, channels, device, seed: TikhonovDenoiser(device=device), "linear Gaussian smoothness prior (closed form; for checks, not quality)")
