"""Full-reference fidelity metrics: PSNR and SSIM (Wang et al. 2004), per image.

Both take (B, C, H, W) tensors in [0, 1] (a single (C, H, W) image is accepted) and return a (B,) tensor.
They are written here rather than taken from deepinv because the protocol (BT.601 luma, border crop, valid
Gaussian window, population covariance) must be exactly the one written in reports and checked against
scikit-image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pnprgm.errors import UserError
from pnprgm.metrics.protocol import DEFAULT_PROTOCOL, Y_OFFSET, Y_WEIGHTS, MetricProtocol


def _work_dtype(device: torch.device) -> torch.dtype:
    # float64 makes results independent of the device and of summation order; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def as_batch(x: torch.Tensor, y: torch.Tensor, *, what: str = "metric") -> tuple[torch.Tensor, torch.Tensor]:
    """Check that ``x`` and ``y`` are same-shaped images and return them as (B, C, H, W)."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise UserError(f"{what}: images must be torch tensors; got {type(x).__name__} and {type(y).__name__}.")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if y.dim() == 3:
        y = y.unsqueeze(0)
    if x.dim() != 4 or y.dim() != 4:
        raise UserError(f"{what}: images must be (B, C, H, W) or (C, H, W); got shapes {tuple(x.shape)} and {tuple(y.shape)}.")
    if x.shape != y.shape:
        raise UserError(f"{what}: images differ in shape {tuple(x.shape)} vs {tuple(y.shape)}; compare same-sized images.")
    return x, y


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of a (B, 3, H, W) [0, 1] tensor, in [16/255, 235/255]: Y = 16/255 + (65.481 R + 128.553 G + 24.966 B)/255."""
    weights = torch.tensor(Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True) + Y_OFFSET


def prepare(
    x: torch.Tensor,
    y: torch.Tensor,
    protocol: MetricProtocol,
    *,
    device: str | torch.device | None = None,
    luma: bool = True,
    what: str = "metric",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the protocol's device move, clamping, border crop and (if ``luma``) channel choice to both images."""
    x, y = as_batch(x, y, what=what)
    device = torch.device(device) if device is not None else x.device
    dtype = _work_dtype(device)
    x = x.detach().to(device=device, dtype=dtype)
    y = y.detach().to(device=device, dtype=dtype)
    if protocol.clamp:
        x = x.clamp(0, protocol.data_range)
        y = y.clamp(0, protocol.data_range)
    crop = protocol.crop
    if crop:
        height, width = x.shape[-2:]
        if height <= 2 * crop or width <= 2 * crop:
            raise UserError(f"{what}: a border crop of {crop} px leaves nothing of a {height}x{width} image; lower crop.")
        x = x[..., crop:-crop, crop:-crop]
        y = y[..., crop:-crop, crop:-crop]
    if luma and protocol.channel == "y":
        if x.shape[1] == 3:
            scale = protocol.data_range
            # the luma formula is for [0, 1]; rescale so other data ranges keep Y in the same relative range
            x, y = rgb_to_y(x / scale) * scale, rgb_to_y(y / scale) * scale
        elif x.shape[1] != 1:
            raise UserError(f"{what}: channel 'y' needs RGB or grayscale images; got {x.shape[1]} channels.")
    return x, y


@torch.no_grad()
def psnr(
    x: torch.Tensor,
    y: torch.Tensor,
    protocol: MetricProtocol = DEFAULT_PROTOCOL,
    *,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Peak signal-to-noise ratio per image: 10 log10(R^2 / mean((x - y)^2)); identical images give +inf.

    :param x: estimate, (B, C, H, W) in [0, data_range].
    :param y: reference, same shape.
    :param protocol: range, channel, crop and clamping.
    :param device: where to compute (default: x's device); the result is returned on x's device.
    """
    home = x.device
    a, b = prepare(x, y, protocol, device=device, what="psnr")
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    value = 10.0 * torch.log10(protocol.data_range**2 / mse)  # mse 0 -> +inf by IEEE division
    return value.float().to(home)


def gaussian_window(size: int, sigma: float, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps: g_i proportional to exp(-(i - c)^2 / (2 sigma^2))."""
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filtering of every channel of (N, C, H, W)."""
    channels = x.shape[1]
    kh = g.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    kw = g.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    return F.conv2d(F.conv2d(x, kh, groups=channels), kw, groups=channels)


@torch.no_grad()
def ssim_map(x: torch.Tensor, y: torch.Tensor, protocol: MetricProtocol = DEFAULT_PROTOCOL) -> torch.Tensor:
    """SSIM index map of prepared (B, C, H, W) images (valid region only).

    SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)), local Gaussian moments.
    """
    size = protocol.ssim_window
    if x.shape[-2] < size or x.shape[-1] < size:
        raise UserError(
            f"ssim: images of {x.shape[-2]}x{x.shape[-1]} px (after crop) are smaller than the {size}x{size} window; "
            "use larger images or a smaller crop."
        )
    g = gaussian_window(size, protocol.ssim_sigma, dtype=x.dtype, device=x.device)
    c1 = (protocol.ssim_k1 * protocol.data_range) ** 2
    c2 = (protocol.ssim_k2 * protocol.data_range) ** 2
    batch = x.shape[0]
    # one conv pass for the five local moments
    moments = _filter(torch.cat([x, y, x * x, y * y, x * y], dim=0), g)
    mu_x, mu_y, xx, yy, xy = moments.split(batch, dim=0)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator / denominator


@torch.no_grad()
def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    protocol: MetricProtocol = DEFAULT_PROTOCOL,
    *,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), mean over the valid pixels then over channels.

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=...)``.

    :param x: estimate, (B, C, H, W) in [0, data_range].
    :param y: reference, same shape.
    :param protocol: range, channel, crop, window and constants.
    :param device: where to compute (default: x's device); the result is returned on x's device.
    """
    home = x.device
    a, b = prepare(x, y, protocol, device=device, what="ssim")
    return ssim_map(a, b, protocol).mean(dim=(2, 3)).mean(dim=1).float().to(home)

