"""DRUNet-style denoiser in the generator protocol, so that its model files load, list and run wherever an RGM
generator does (``pnprgm models``, ``--model``, the ``RGMDenoiser`` wrapper).

The network is deepinv's own :class:`deepinv.models.DRUNet` (residual UNet, noise-level map as an extra input
channel, no biases), built without pretrained weights; we only adapt its interface:
``G(x, sigma, z) = 2 D((x + 1) / 2, sigma / 2) - 1`` with ``D = DRUNet`` (or ``y - DRUNet`` with ``residual``) for images in [-1, 1] and sigma in [-1, 1] units.
It has no latent: ``nz = 0`` and z is ignored (a plain MMSE-style denoiser, not an RGM generator).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

import torch
from torch import nn

from pnprgm.config import build_strict, to_dict
from pnprgm.errors import UserError


@dataclass(frozen=True)
class DRUNetConfig:
    """Architecture of a DRUNet denoiser (stored in its model file).

    :param arch: ``drunet``.
    :param channels: image channels (1 gray, 3 colour).
    :param nc: widths of the four resolution levels (DRUNet: 64, 128, 256, 512).
    :param nb: residual blocks per level (DRUNet: 4).
    :param conditioning: always ``sigma`` (continuous noise std).
    :param residual: the network predicts the noise, ``D(y) = y - DRUNet(y, sigma)`` (residual learning, as
        DnCNN): an untrained network already returns its input, so short runs start from the noisy PSNR.
    """

    arch: Literal["drunet"] = "drunet"
    channels: int = 3
    nc: tuple[int, ...] = (32, 64, 128, 256)
    nb: int = 4
    conditioning: Literal["sigma"] = "sigma"
    residual: bool = False

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise UserError(f"drunet channels must be 1 or 3; got {self.channels}.")
        if len(self.nc) != 4 or any(int(c) < 1 for c in self.nc) or self.nb < 1:
            raise UserError("drunet config: nc must be four positive widths and nb >= 1.")


#: Named sizes (parameters; 256x256 colour forward on 2 CPU cores, 2 threads, from REFERENCE.md).
DRUNET_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(nc=(8, 16, 16, 32), nb=1),  # tests and CPU rehearsals only
    "small": dict(nc=(32, 64, 128, 256), nb=2),  # 4.3 M, 0.13 s
    "default": dict(nc=(32, 64, 128, 256), nb=4),  # 8.2 M, 0.27 s; 15.7 MiB stored in float16
}


class DRUNetGenerator(nn.Module):
    """deepinv's DRUNet behind the generator protocol (``nz``, ``conditioning``, ``config``, ``forward(x, level, z)``)."""

    nz = 0
    conditioning = "sigma"
    schedule = None
    size_multiple = 8

    def __init__(self, config: DRUNetConfig):
        super().__init__()
        from deepinv.models import DRUNet

        self.config = to_dict(config)
        self.residual = config.residual
        self.net = DRUNet(in_channels=config.channels, out_channels=config.channels, nc=list(config.nc), nb=config.nb,
                          pretrained=None)

    def forward(self, x: torch.Tensor, level: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """``2 DRUNet((x + 1) / 2, level / 2) - 1``; x in [-1, 1], level the noise std in [-1, 1] units, (B,)."""
        level = torch.as_tensor(level, device=x.device, dtype=torch.float32).view(-1)
        if level.numel() == 1:
            level = level.expand(x.shape[0])
        return 2 * self.denoise01((x + 1) / 2, level / 2) - 1

    def denoise01(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The denoiser on [0, 1] images with noise std ``sigma`` (B,) in [0, 1] units (training uses this)."""
        out = self.net(x, sigma)
        return x - out if self.residual else out


def build_drunet(config: Mapping[str, Any] | DRUNetConfig) -> DRUNetGenerator:
    if not isinstance(config, DRUNetConfig):
        config = build_strict(DRUNetConfig, dict(config), what="drunet model")
    return DRUNetGenerator(config)
