"""The denoiser registry and helpers shared by the denoisers."""
from __future__ import annotations

from typing import Protocol

import torch
from deepinv.models import Denoiser

from pnprgm.registry import Registry


class DenoiserFactory(Protocol):
    def __call__(self, *, channels: int, device: torch.device, seed: int) -> Denoiser: ...


registry: Registry[DenoiserFactory] = Registry("denoiser")


def sigma_per_image(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Noise level as a (B,) float tensor on x's device."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).flatten()
    return sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma
