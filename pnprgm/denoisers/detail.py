"""Keep the detail a denoiser cannot recover: blend its output with its input, most at low noise.

An MMSE-trained denoiser returns the mean of the plausible clean images, which lacks their fine texture (LPIPS
sees it as blur). Modelling that missing detail as ``x ~ N(D(v), s^2 I)`` and the input as ``v = x + N(0, sigma^2 I)``,
the MAP estimate of ``x`` is ``(sigma^2 D(v) + s^2 v) / (sigma^2 + s^2)``: at ``sigma >> s`` the denoiser's output,
at ``sigma << s`` the input with its grain. It is the per-pixel optimum of RGM's objective with a fidelity weight
``lmbda`` against a supervised term (``pnprgm.training.config.TrainConfig.lmbda``), applied at restoration time
instead of being trained into the weights, so one denoiser serves both fidelity-first and texture-first presets.
"""
from __future__ import annotations

import torch
from deepinv.models import Denoiser

from pnprgm.denoisers.base import sigma_per_image
from pnprgm.errors import UserError


class DetailPreservingDenoiser(Denoiser):
    """``(sigma^2 D(v, sigma) + s^2 v) / (sigma^2 + s^2)`` with ``s = detail_sigma`` (module docstring).

    :param denoiser: any ``forward(x, sigma)`` denoiser.
    :param detail_sigma: std ``s`` of the detail the denoiser misses, in [0, 1] units (> 0).
    """

    def __init__(self, denoiser: Denoiser, detail_sigma: float):
        super().__init__()
        if not detail_sigma > 0:
            raise UserError(f"detail_sigma must be > 0 for the wrapper (0: use the denoiser itself); got {detail_sigma!r}.")
        self.denoiser, self.detail_sigma = denoiser, float(detail_sigma)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, **kwargs) -> torch.Tensor:
        sigma = sigma_per_image(sigma, x)
        variance = sigma.pow(2).view(-1, *([1] * (x.dim() - 1)))
        detail = self.detail_sigma**2
        return (variance * self.denoiser(x, sigma, **kwargs) + detail * x) / (variance + detail)


def keep_detail(denoiser: Denoiser, detail_sigma: float) -> Denoiser:
    """``denoiser`` itself for ``detail_sigma == 0``, else wrapped in a :class:`DetailPreservingDenoiser`."""
    return denoiser if detail_sigma == 0 else DetailPreservingDenoiser(denoiser, detail_sigma)
