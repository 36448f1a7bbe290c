"""Run a denoiser trained for one channel count on images with another."""
from __future__ import annotations

import torch
from deepinv.models import Denoiser


class ChannelAdapter(Denoiser):
    """Gray input to a colour model: replicate to 3 channels and average back; colour input to a gray
    model: denoise each channel as a batch item.

    :param denoiser: the wrapped denoiser.
    :param channels: channel count the wrapped denoiser expects (1 or 3).
    """

    def __init__(self, denoiser: Denoiser, channels: int):
        super().__init__()
        self.denoiser, self.channels = denoiser, channels

    def forward(self, x: torch.Tensor, sigma, **kwargs) -> torch.Tensor:
        if x.shape[1] == self.channels:
            return self.denoiser(x, sigma, **kwargs)
        if self.channels == 3 and x.shape[1] == 1:
            return self.denoiser(x.expand(-1, 3, -1, -1), sigma, **kwargs).mean(1, keepdim=True)
        if self.channels == 1:
            b, c, h, w = x.shape
            sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).flatten()
            sigma = sigma.repeat_interleave(c) if sigma.numel() == b else sigma
            return self.denoiser(x.reshape(b * c, 1, h, w), sigma, **kwargs).view(b, c, h, w)
        raise ValueError(f"cannot adapt {x.shape[1]} channels to a {self.channels}-channel denoiser")
