"""Run a model trained for one channel count on images with another: the one rule, used by every learned denoiser.

A gray image to a colour model: replicate it to 3 channels and average the output back. A colour image to a gray
model: each channel is denoised as a gray image (its colour is kept). Other rules differ on purpose and are named
where they live: gray training data is made with BT.601 luma (:func:`pnprgm.training.data.convert_channels`),
metrics on the Y channel use the offset BT.601 Y (:func:`pnprgm.metrics.fidelity.rgb_to_y`), and the ``gray``
operators are degradations (``gray:flat`` mean, ``gray:rec601`` luma).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from deepinv.models import Denoiser

from pnprgm.errors import UserError


def adapt_channels(run: Callable[..., torch.Tensor], x: torch.Tensor, channels: int, *per_image: Any) -> torch.Tensor:
    """``run(x', *per_image')`` for a ``channels``-channel model on ``x`` (B, C, H, W) (module docstring); tensors
    in ``per_image`` whose first dimension is B (a noise level, a latent) are repeated for the per-channel batch."""
    c = x.shape[1]
    if c == channels:
        return run(x, *per_image)
    if channels == 3 and c == 1:
        return run(x.expand(-1, 3, -1, -1), *per_image).mean(1, keepdim=True)
    if channels == 1:
        b, _, h, w = x.shape
        repeated = [p.repeat_interleave(c, dim=0) if torch.is_tensor(p) and p.dim() > 0 and p.shape[0] == b else p
                    for p in per_image]
        return run(x.reshape(b * c, 1, h, w), *repeated).view(b, c, h, w)
    raise UserError(f"a {channels}-channel model cannot take {c}-channel images; give gray (1) or colour (3) images.")


class ChannelAdapter(Denoiser):
    """A denoiser trained for ``channels`` channels on images with another count (:func:`adapt_channels`).

    :param denoiser: the wrapped denoiser.
    :param channels: channel count the wrapped denoiser expects (1 or 3).
    """

    def __init__(self, denoiser: Denoiser, channels: int):
        super().__init__()
        self.denoiser, self.channels = denoiser, channels

    def forward(self, x: torch.Tensor, sigma, **kwargs) -> torch.Tensor:
        if torch.is_tensor(sigma) and sigma.numel() == x.shape[0] and sigma.dim() != 1:
            sigma = sigma.flatten()
        return adapt_channels(lambda v, s: self.denoiser(v, s, **kwargs), x, self.channels, sigma)
