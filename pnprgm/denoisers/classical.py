"""Classical denoisers, so the engine is useful and testable without learned weights.

TV (deepinv's primal-dual TV prox), non-local means (scikit-image) and BM3D (optional ``bm3d`` package).
"""
from __future__ import annotations

import numpy as np
import torch
from deepinv.models import Denoiser, TVDenoiser as _DeepinvTV

from pnprgm.denoisers.base import registry, sigma_per_image
from pnprgm.errors import UserError


class TVDenoiser(Denoiser):
    """Isotropic TV denoiser: ``argmin_x 1/2||x - v||^2 + weight * sigma * TV(x)``.

    :param weight: TV weight per unit noise level (tuned once on training photos at sigma 25/255).
    :param iterations: primal-dual iterations of deepinv's TV prox (step 0.05: within 0.02 of convergence in 40).
    """

    def __init__(self, weight: float = 0.8, iterations: int = 40, device: str | torch.device = "cpu"):
        super().__init__(device)
        self.weight = weight
        self.tv = _DeepinvTV(n_it_max=iterations, crit=1e-6, tau=0.05)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, **kwargs) -> torch.Tensor:
        ths = sigma_per_image(sigma, x).view(-1, 1, 1, 1) * self.weight
        # deepinv warm-starts from the previous call; a cold start keeps the denoiser a function of its input.
        self.tv.restart = True
        return self.tv(x, ths=ths)


class NLMDenoiser(Denoiser):
    """Non-local means (scikit-image, fast mode): filter strength ``h = strength * sigma``.

    :param strength: h / sigma ratio (scikit-image recommends about 0.8 with ``sigma`` given).
    :param patch_size: patch side in pixels.
    :param patch_distance: search radius in pixels.
    """

    def __init__(self, strength: float = 0.8, patch_size: int = 5, patch_distance: int = 6, device: str | torch.device = "cpu"):
        super().__init__(device)
        self.strength, self.patch_size, self.patch_distance = strength, patch_size, patch_distance

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, **kwargs) -> torch.Tensor:
        from skimage.restoration import denoise_nl_means

        sigmas = sigma_per_image(sigma, x).tolist()
        out = []
        for image, level in zip(x.detach().cpu().double().numpy(), sigmas):
            level = max(level, 1e-4)
            result = denoise_nl_means(
                np.moveaxis(image, 0, -1), h=self.strength * level, sigma=level, fast_mode=True,
                patch_size=self.patch_size, patch_distance=self.patch_distance, channel_axis=-1,
            )
            out.append(np.moveaxis(np.asarray(result).reshape(image.shape[1], image.shape[2], -1), -1, 0))
        return torch.from_numpy(np.stack(out)).to(x)


class BM3DDenoiser(Denoiser):
    """BM3D (the optional ``bm3d`` package; its compiled library is under a non-commercial licence)."""

    def __init__(self, device: str | torch.device = "cpu"):
        super().__init__(device)
        try:
            import bm3d  # noqa: F401
        except ImportError:
            raise UserError(
                "denoiser 'bm3d' needs the optional bm3d package (non-commercial licence): pip install bm3d."
            ) from None

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, **kwargs) -> torch.Tensor:
        import bm3d

        sigmas = sigma_per_image(sigma, x).tolist()
        out = []
        height, width = x.shape[-2:]
        # bm3d raises ValueError on an image smaller than its blocks (8-12 px by profile and noise): mirror a small
        # image up to BM3D_MIN_SIDE and crop the result back
        pad = ((0, 0), (0, max(0, BM3D_MIN_SIDE - height)), (0, max(0, BM3D_MIN_SIDE - width)))
        for image, level in zip(x.detach().cpu().double().numpy(), sigmas):
            level = max(level, 1e-4)
            image = np.pad(image, pad, mode="symmetric")
            result = None
            if image.shape[0] == 3:
                with np.errstate(divide="ignore", invalid="ignore"):
                    result = np.moveaxis(bm3d.bm3d_rgb(np.moveaxis(image, 0, -1), sigma_psd=level), -1, 0)
            if result is None or not np.isfinite(result).all():
                # bm3d_rgb scales each opponent channel by its range and divides by zero where one is flat (a
                # gray image stored as RGB, a flat patch): each channel on its own then
                result = np.stack([bm3d.bm3d(channel, sigma_psd=level) for channel in image])
            out.append(result[:, :height, :width])
        return torch.from_numpy(np.stack(out)).to(x)


#: Smallest side handed to the bm3d package (its largest block is 12 px at high noise; a margin for matching).
BM3D_MIN_SIDE = 16


registry.add("tv", lambda *, channels, device, seed: TVDenoiser(device=device), "total variation (deepinv prox), fast, blocky at high noise")
registry.add("nlm", lambda *, channels, device, seed: NLMDenoiser(device=device), "non-local means (scikit-image), fast classical baseline")
registry.add("bm3d", lambda *, channels, device, seed: BM3DDenoiser(device=device), "BM3D (optional: pip install bm3d; non-commercial licence)")
