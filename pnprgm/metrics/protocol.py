"""The metric protocol: every choice that changes a PSNR/SSIM/LPIPS number, in one frozen record.

Reports embed :meth:`MetricProtocol.to_dict` so that two tables are comparable only when their protocols are.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pnprgm.errors import UserError

# ITU-R BT.601 luma as MATLAB's rgb2ycbcr and the SR literature compute it: Y = 16/255 + (65.481 R + 128.553 G
# + 24.966 B)/255 for R, G, B in [0, 1], so Y lies in [16/255, 235/255] and PSNR keeps data range 1.
Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
Y_OFFSET = 16.0 / 255.0


@dataclass(frozen=True)
class MetricProtocol:
    """How images are compared.

    :param data_range: peak value of the images (1 for [0, 1] tensors); PSNR = 10 log10(range^2 / MSE).
    :param channel: ``rgb`` (all channels, SSIM averaged over them) or ``y`` (BT.601 luma of RGB images,
        as in super-resolution papers; single-channel images are used as they are). PSNR and SSIM only.
    :param crop: pixels removed from each border before every metric (SR papers crop the scale factor).
    :param clamp: clip both images to [0, data_range] first, i.e. measure what a saved image would hold.
    :param ssim_window: side of the Gaussian SSIM window (Wang et al.: 11).
    :param ssim_sigma: standard deviation of that window (1.5).
    :param ssim_k1: SSIM stabiliser, C1 = (k1 range)^2 (0.01).
    :param ssim_k2: SSIM stabiliser, C2 = (k2 range)^2 (0.03).
    :param lpips_net: LPIPS backbone of the metric ``lpips`` (AlexNet with ImageNet weights, linear layers v0.1);
        the metric ``lpips_vgg`` always uses VGG16 and shares every other field here.
    :param lpips_version: LPIPS linear-layer release.
    :param lpips_input: how [0, 1] images enter LPIPS: ``[-1,1]`` maps x -> 2x - 1 (official convention); gray
        images are repeated to three channels.
    """

    data_range: float = 1.0
    channel: Literal["rgb", "y"] = "rgb"
    crop: int = 0
    clamp: bool = True
    ssim_window: int = 11
    ssim_sigma: float = 1.5
    ssim_k1: float = 0.01
    ssim_k2: float = 0.03
    lpips_net: Literal["alex"] = "alex"
    lpips_version: Literal["0.1"] = "0.1"
    lpips_input: Literal["[-1,1]"] = "[-1,1]"

    def __post_init__(self) -> None:
        if not self.data_range > 0:
            raise UserError(f"metric protocol: data_range must be positive; got {self.data_range}.")
        if self.channel not in ("rgb", "y"):
            raise UserError(f"metric protocol: channel must be rgb or y; got {self.channel!r}.")
        if self.crop < 0:
            raise UserError(f"metric protocol: crop must be >= 0 pixels; got {self.crop}.")
        if self.ssim_window < 1 or self.ssim_window % 2 == 0:
            raise UserError(f"metric protocol: ssim_window must be an odd positive size; got {self.ssim_window}.")
        if not self.ssim_sigma > 0:
            raise UserError(f"metric protocol: ssim_sigma must be positive; got {self.ssim_sigma}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, with the formulas spelled out so a report stands on its own."""
        return {
            "data_range": self.data_range,
            "channel": self.channel,
            "y_definition": "ITU-R BT.601: Y = 16/255 + (65.481 R + 128.553 G + 24.966 B)/255" if self.channel == "y" else None,
            "crop": self.crop,
            "clamp": self.clamp,
            "psnr": "10 log10(data_range^2 / MSE), MSE over channels and pixels, per image",
            "ssim": {
                "window": "gaussian",
                "size": self.ssim_window,
                "sigma": self.ssim_sigma,
                "k1": self.ssim_k1,
                "k2": self.ssim_k2,
                "covariance": "population (use_sample_covariance=False)",
                "border": "valid (no padding)",
                "reduction": "mean over pixels, then over channels",
            },
            "lpips": {
                "net": self.lpips_net,
                "version": self.lpips_version,
                "weights": "ImageNet AlexNet backbone + official LPIPS linear layers",
                "input": self.lpips_input,
                "reduction": "spatial average",
            },
        }

    def config(self) -> dict[str, Any]:
        """The fields only (round-trips through :func:`pnprgm.config.build_strict`)."""
        from pnprgm.config import to_dict

        return to_dict(self)


DEFAULT_PROTOCOL = MetricProtocol()
