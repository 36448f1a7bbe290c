"""Super-resolution operators: RGM's r x r block mean, and anti-aliased (bicubic / Gaussian) decimation.

Sizes: the measurement of an H x W image has ``ceil(H/r) x ceil(W/r)`` pixels for every kernel. For the block
mean, a last partial block (when r does not divide H or W) is the mean of the pixels it holds, so no pixel is
cropped or invented and the adjoint stays exact; for divisible sizes it equals RGM's block mean and deepinv's
``Downsampling(filter=ones(r,r)/r^2, factor=r, padding='valid')``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F

from pnprgm.operators.base import DiagonalGram, add_variant, param, register_alias, require_array
from pnprgm.operators.fourier import FourierDecimation, transfer_function
from pnprgm.operators.kernels import antialias_centre, antialias_kernel, check_when_read, max_kernel_side
from pnprgm.errors import UserError


@dataclass(frozen=True)
class SRParams:
    factor: int = param(4, "downsampling factor r (output ceil(H/r) x ceil(W/r))")
    kernel: Literal["box", "bicubic", "gaussian"] = param(
        "box", "box: r x r block mean (RGM); bicubic / gaussian: anti-aliasing filter then every r-th pixel (circular)")
    sigma: Optional[float] = param(None, "Gaussian std in high-res pixels (kernel=gaussian only; default r/2)")

    def __post_init__(self):
        if self.factor < 2:
            raise UserError(f"sr factor must be at least 2, got {self.factor}; use identity for no downsampling.")
        if self.sigma is not None and self.kernel != "gaussian":
            raise UserError(f"sr sigma applies to kernel=gaussian only, not kernel={self.kernel}; remove sigma.")
        if self.sigma is not None and self.sigma <= 0:
            raise UserError(f"sr sigma must be positive, got {self.sigma}.")
        if self.kernel == "gaussian" and self.sigma is not None:  # its taps span 6 sigma
            check_when_read(lambda: antialias_kernel("gaussian", self.factor, self.sigma), 6 * self.sigma)


class BlockMean(DiagonalGram):
    """Mean of each r x r block (RGM's SR operator); partial border blocks average the pixels they hold.

    ``A A^T = diag(1 / count)``, so the pseudo-inverse is nearest-neighbour replication (RGM's initialisation).
    """

    def __init__(self, params: SRParams, in_shape, *, arrays=None, device="cpu", dtype=torch.float32):
        c, h, w = in_shape
        r = params.factor
        super().__init__("sr", params, in_shape, (c, -(-h // r), -(-w // r)), device=device)
        self.factor = r
        rows = torch.full((self.out_shape[1],), float(r))
        cols = torch.full((self.out_shape[2],), float(r))
        rows[-1], cols[-1] = h - r * (self.out_shape[1] - 1), w - r * (self.out_shape[2] - 1)
        self.register_buffer("count", (rows[:, None] * cols[None, :]).to(device=device, dtype=dtype)[None, None])

    def image_size_for(self, size):
        return (int(size[0]) * self.factor, int(size[1]) * self.factor)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w = self.in_shape
        return F.pad(x, (0, self.out_shape[2] * self.factor - w, 0, self.out_shape[1] * self.factor - h))

    def A(self, x, **kwargs):
        self._check(x, self.in_shape, "A")
        sums = F.avg_pool2d(self._pad(x), self.factor) * self.factor**2
        return sums / self.count.to(x)

    def A_adjoint(self, y, **kwargs):
        self._check(y, self.out_shape, "A_adjoint")
        return self._replicate(y / self.count.to(y))

    def _replicate(self, y: torch.Tensor) -> torch.Tensor:
        r = self.factor
        _, h, w = self.in_shape
        return y.repeat_interleave(r, dim=-2).repeat_interleave(r, dim=-1)[..., :h, :w]

    def gram_diagonal(self, y):
        return 1.0 / self.count.to(y)

    def A_dagger(self, y, **kwargs):
        self._check(y, self.out_shape, "A_dagger")
        return self._replicate(y)

    def initial_estimate(self, y):
        """Nearest-neighbour replication, as RGM initialises SR (equal to the pseudo-inverse)."""
        return self.A_dagger(y)

    def fourier_form(self):
        _, h, w = self.in_shape
        r = self.factor
        if h % r or w % r:
            return None
        box = torch.full((r, r), 1.0 / r**2, dtype=self.count.dtype, device=self.count.device)
        return transfer_function(box, (r - 1, r - 1), (h, w)), r


class AntiAliasedSR(FourierDecimation):
    """Anti-aliasing filter (bicubic or Gaussian), circular boundaries, then every r-th pixel.

    The filter is centred on each r x r block's centre, so it is aligned with the block mean and with bicubic
    upsampling (``align_corners=False``), which is the initial estimate.
    """

    def __init__(self, params: SRParams, in_shape, *, arrays=None, device="cpu", dtype=torch.float32):
        r = params.factor
        if arrays is None:
            sigma = params.sigma if params.sigma is not None else r / 2
            if params.kernel == "gaussian" and 6 * sigma > max_kernel_side(in_shape[-2:]):  # its taps span 6 sigma
                raise UserError(f"sr: a Gaussian of sigma {sigma:g} spans {6 * sigma:.0f} px and does not fit a "
                                f"{in_shape[-2]}x{in_shape[-1]} image; choose a smaller sigma.")
            kernel = antialias_kernel(params.kernel, r, sigma)
        else:

            kernel = require_array(arrays, "kernel", None, "sr")
            if kernel.ndim != 2:
                raise UserError(f"operator record of sr: kernel must be 2-D, got shape {kernel.shape}.")
        centre = (antialias_centre(kernel.shape[0], r), antialias_centre(kernel.shape[1], r))
        super().__init__("sr", params, in_shape, kernel, centre, r, device=device, dtype=dtype)

    def initial_estimate(self, y):
        """Bicubic upsampling to the image size (the usual SR baseline)."""
        self._check(y, self.out_shape, "initial_estimate")
        _, h, w = self.in_shape
        r = self.factor
        up = F.interpolate(y, scale_factor=r, mode="bicubic", align_corners=False)
        return up[..., :h, :w].contiguous()


_SR_CLASSES = {"box": BlockMean, "bicubic": AntiAliasedSR, "gaussian": AntiAliasedSR}


def _build_sr(params: SRParams, in_shape, *, arrays=None, device="cpu", dtype=torch.float32):
    largest = max_kernel_side(in_shape[-2:])
    if params.factor > largest:  # a block padded far past the image (sr:factor=10^6: terabytes)
        raise UserError(f"sr factor {params.factor} is far larger than the {in_shape[-2]}x{in_shape[-1]} image; choose "
                        f"a factor of at most {largest}.")
    return _SR_CLASSES[params.kernel](params, in_shape, arrays=arrays, device=device, dtype=dtype)


add_variant("sr", SRParams, "super-resolution: r x r block mean (RGM) or anti-aliased decimation",
                 default=True, factory=_build_sr)
for _factor in (2, 4, 8):
    register_alias(f"sr{_factor}", f"sr:factor={_factor}", f"x{_factor} block-mean super-resolution (RGM's SR operator)")
