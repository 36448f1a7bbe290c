"""Blur operators: Gaussian, box, random motion, or a kernel from a file; circular or 'valid' boundaries.

``boundary=circular`` (default): the image is treated as periodic, the measurement has the image's size, and
the FFT gives closed-form prox and pseudo-inverse. ``boundary=valid``: only pixels whose whole neighbourhood lies
inside the image are measured (``(H - kh + 1) x (W - kw + 1)``), no boundary assumption at all; prox and
pseudo-inverse use conjugate gradient. Kernels are true convolutions centred at ``((kh-1)//2, (kw-1)//2)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F

from operators.base import Operator, from_numpy, param, register_variant, require_array, required
from operators.fourier import FourierDecimation
from operators.kernels import box_kernel, default_gaussian_size, gaussian_kernel, load_kernel, motion_kernel
from pnprgm.errors import UserError

Boundary = Literal["circular", "valid"]
BOUNDARY_HELP = "circular: periodic image, same-size output, closed-form prox; valid: no padding, smaller output"


def kernel_centre(kernel: np.ndarray) -> tuple[int, int]:
    return (kernel.shape[0] - 1) // 2, (kernel.shape[1] - 1) // 2


class CircularBlur(FourierDecimation):
    """``y = k * x`` with periodic boundaries (same size as the image)."""

    def __init__(self, name, params, in_shape, kernel: np.ndarray, *, device="cpu", dtype=torch.float32):
        super().__init__(name, params, in_shape, kernel, kernel_centre(kernel), 1, device=device, dtype=dtype)

    def initial_estimate(self, y):
        """The blurred image itself: the pseudo-inverse amplifies noise at frequencies the kernel removes."""
        self._check(y, self.out_shape, "initial_estimate")
        return y.clone()


class ValidBlur(Operator):
    """``y = k * x`` restricted to the pixels whose kernel footprint lies inside the image (no padding)."""

    def __init__(self, name, params, in_shape, kernel: np.ndarray, *, device="cpu", dtype=torch.float32):
        c, h, w = in_shape
        kh, kw = kernel.shape
        if kh > h or kw > w:
            raise UserError(f"{name}: the {kh}x{kw} kernel does not fit in the {h}x{w} image with boundary=valid; "
                            "use a smaller kernel or boundary=circular.")
        super().__init__(name, params, in_shape, (c, h - kh + 1, w - kw + 1), device=device)
        self.register_buffer("kernel", from_numpy(kernel, device=device, dtype=dtype))
        self.centre = kernel_centre(kernel)

    def arrays(self):
        return {"kernel": self.kernel.detach().cpu().numpy()}

    def _weight(self, like: torch.Tensor) -> torch.Tensor:
        # torch's conv2d is a correlation: flip for a true convolution
        return self.kernel.to(like).flip(-2, -1)[None, None]

    def A(self, x, **kwargs):
        self._check(x, self.in_shape, "A")
        b, c, h, w = x.shape
        out = F.conv2d(x.reshape(b * c, 1, h, w), self._weight(x))
        return out.reshape(b, c, *out.shape[-2:])

    def A_adjoint(self, y, **kwargs):
        self._check(y, self.out_shape, "A_adjoint")
        b, c, h, w = y.shape
        out = F.conv_transpose2d(y.reshape(b * c, 1, h, w), self._weight(y))
        return out.reshape(b, c, *out.shape[-2:])

    def initial_estimate(self, y):
        """The measurement padded back to the image size by edge replication."""
        self._check(y, self.out_shape, "initial_estimate")
        kh, kw = self.kernel.shape
        cy, cx = self.centre
        return F.pad(y, (kw - 1 - cx, cx, kh - 1 - cy, cy), mode="replicate")


_BOUNDARIES = {"circular": CircularBlur, "valid": ValidBlur}


def _blur_factory(name: str, make_kernel):
    """Factory of variant ``name``: the kernel from the parameters (or a record's arrays), then the boundary class."""

    def build(params, in_shape, *, arrays=None, device="cpu", dtype=torch.float32):
        if arrays is None:
            kernel = make_kernel(params, tuple(in_shape[1:]))
        else:
            kernel = require_array(arrays, "kernel", None, name).astype(np.float64)
            if kernel.ndim != 2:
                raise UserError(f"operator record of {name}: kernel must be 2-D, got shape {kernel.shape}.")
        return _BOUNDARIES[params.boundary](name, params, in_shape, kernel, device=device, dtype=dtype)

    return build


@dataclass(frozen=True)
class GaussianBlurParams:
    sigma: float = param(2.0, "standard deviation in pixels")
    size: Optional[int] = param(None, "kernel side in pixels (default 2*ceil(3*sigma)+1)")
    boundary: Boundary = param("circular", BOUNDARY_HELP)

    def __post_init__(self):
        if self.sigma <= 0:
            raise UserError(f"blur:gaussian sigma must be positive, got {self.sigma}.")
        if self.size is not None and self.size < 1:
            raise UserError(f"blur:gaussian size must be at least 1, got {self.size}.")


@dataclass(frozen=True)
class BoxBlurParams:
    size: int = param(5, "kernel side in pixels (uniform weights)")
    boundary: Boundary = param("circular", BOUNDARY_HELP)

    def __post_init__(self):
        if self.size < 1:
            raise UserError(f"blur:box size must be at least 1, got {self.size}.")


@dataclass(frozen=True)
class MotionBlurParams:
    length: int = param(15, "kernel side in pixels")
    seed: int = param(0, "random seed of the trajectory")
    spread: float = param(0.25, "trajectory spread (deepinv's Gaussian-process sigma; larger: longer strokes)")
    boundary: Boundary = param("circular", BOUNDARY_HELP)

    def __post_init__(self):
        if self.length < 3:
            raise UserError(f"blur:motion length must be at least 3, got {self.length}.")
        if self.spread <= 0:
            raise UserError(f"blur:motion spread must be positive, got {self.spread}.")


@dataclass(frozen=True)
class FileBlurParams:
    file: Path = required("kernel as a .npy 2-D array or a gray image (.png, ...); normalised to sum 1")
    boundary: Boundary = param("circular", BOUNDARY_HELP)


register_variant("blur:gaussian", GaussianBlurParams, "isotropic Gaussian blur", default=True, factory=_blur_factory(
    "blur:gaussian", lambda p, size: gaussian_kernel(p.sigma, p.size or default_gaussian_size(p.sigma))))
register_variant("blur:box", BoxBlurParams, "uniform (box) blur", factory=_blur_factory(
    "blur:box", lambda p, size: box_kernel(p.size)))
register_variant("blur:motion", MotionBlurParams, "random camera-shake motion blur (seeded)", factory=_blur_factory(
    "blur:motion", lambda p, size: motion_kernel(p.length, p.seed, p.spread)))
register_variant("blur:file", FileBlurParams, "blur with a kernel read from a .npy or image file", factory=_blur_factory(
    "blur:file", lambda p, size: load_kernel(p.file, size)))
