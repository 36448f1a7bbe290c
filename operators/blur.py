"""Blur operators: Gaussian, box, random motion, or a kernel from a file; circular or 'valid' boundaries.

``boundary=circular`` (the spec default): the image is treated as periodic, the measurement has the image's size,
and the FFT gives closed-form prox and pseudo-inverse; right for images blurred by ``pnprgm degrade``.
``boundary=valid``: only pixels whose whole neighbourhood lies inside the image are measured
(``(H - kh + 1) x (W - kw + 1)``), no boundary assumption at all; prox and pseudo-inverse use conjugate gradient.

A real photo is the valid part of the blur of a larger scene: assuming it periodic gives the restoration a frame of
artefacts along its edges (on a 64x64 astronaut crop, sigma 2: border 15.6 dB vs interior 27.9 dB). ``pnprgm
restore`` of a plain image (no sidecar) therefore applies :data:`PHOTO_DEFAULTS` to a spec that names no boundary:
it restores the (H + kh - 1) x (W + kw - 1) scene and crops it back to the photo's field of view (border 33.8 dB,
interior 34.1 dB). Replicate / reflect padding (deepinv's ``conv2d_fft``) was measured too and still framed
(31.4 / 23.0 dB border), so it is not offered. Kernels are true convolutions centred at ``((kh-1)//2, (kw-1)//2)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F

from pnprgm.operators.base import Operator, add_variant, from_numpy, param, require_array, required
from pnprgm.operators.fourier import FourierDecimation, KernelSpectrum
from pnprgm.operators.kernels import (box_kernel, check_when_read, default_gaussian_size, gaussian_kernel, load_kernel,
                                      max_kernel_side, motion_kernel)
from pnprgm.config import check_seed
from pnprgm.errors import UserError

Boundary = Literal["circular", "valid"]
BOUNDARY_HELP = ("circular: periodic image, same-size output, closed-form prox; valid: no padding, smaller output "
                 "(the default of `pnprgm restore` for a photo without sidecar, output cropped to the photo)")

#: Parameters that ``pnprgm restore`` gives a plain photo's spec when it names none (see the module docstring).
PHOTO_DEFAULTS = {"boundary": "valid"}


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


class ValidBlur(KernelSpectrum, Operator):
    """``y = k * x`` restricted to the pixels whose kernel footprint lies inside the image (no padding).

    Computed as the matching crop of the circular convolution (those pixels never wrap), so the cost does not grow
    with the kernel size; the adjoint embeds y in zeros and correlates.
    """

    def __init__(self, name, params, in_shape, kernel: np.ndarray, *, device="cpu", dtype=torch.float32):
        c, h, w = in_shape
        kh, kw = kernel.shape
        if kh > h or kw > w:
            raise UserError(f"{name}: the {kh}x{kw} kernel does not fit in the {h}x{w} image with boundary=valid; "
                            "use a smaller kernel or boundary=circular.")
        super().__init__(name, params, in_shape, (c, h - kh + 1, w - kw + 1), device=device)
        self.register_buffer("kernel", from_numpy(kernel, device=device, dtype=dtype))
        self.centre = kernel_centre(kernel)
        self._transfer_cache = {}
        # output pixel i sits on image pixel i + (k - 1 - centre)
        self._offset = (kh - 1 - self.centre[0], kw - 1 - self.centre[1])

    def _window(self) -> tuple[slice, slice]:
        (top, left), (_, h, w) = self._offset, self.out_shape
        return slice(top, top + h), slice(left, left + w)

    def image_size_for(self, size):
        return (int(size[0]) + self.kernel.shape[0] - 1, int(size[1]) + self.kernel.shape[1] - 1)

    def visible_window(self):
        return self._window()

    def A(self, x, **kwargs):
        self._check(x, self.in_shape, "A")
        rows, cols = self._window()
        return self.circular_convolution(x)[..., rows, cols]

    def A_adjoint(self, y, **kwargs):
        self._check(y, self.out_shape, "A_adjoint")
        rows, cols = self._window()
        full = torch.zeros((*y.shape[:2], *self.in_shape[1:]), dtype=y.dtype, device=y.device)
        full[..., rows, cols] = y
        return self.circular_correlation(full)

    def initial_estimate(self, y):
        """The measurement padded back to the image size by edge replication."""
        self._check(y, self.out_shape, "initial_estimate")
        (top, left), (_, h, w) = self._offset, self.in_shape
        return F.pad(y, (left, w - self.out_shape[2] - left, top, h - self.out_shape[1] - top), mode="replicate")


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
        side = self.size or default_gaussian_size(self.sigma)
        check_when_read(lambda: gaussian_kernel(self.sigma, side), side)


@dataclass(frozen=True)
class BoxBlurParams:
    size: int = param(5, "kernel side in pixels (uniform weights)")
    boundary: Boundary = param("circular", BOUNDARY_HELP)

    def __post_init__(self):
        if self.size < 1:
            raise UserError(f"blur:box size must be at least 1, got {self.size}.")


#: Largest motion spread accepted: at 50 only one of seeds 0-4 kept its trajectory on a 15 px grid, at 100 none
#: (and far beyond, deepinv's generator overflows).
MAX_MOTION_SPREAD = 50.0


@dataclass(frozen=True)
class MotionBlurParams:
    length: int = param(15, "kernel side in pixels")
    seed: int = param(0, "random seed of the trajectory")
    spread: float = param(0.25, "trajectory spread (deepinv's Gaussian-process sigma; larger: longer strokes)")
    boundary: Boundary = param("circular", BOUNDARY_HELP)

    def __post_init__(self):
        if self.length < 3:
            raise UserError(f"blur:motion length must be at least 3, got {self.length}.")
        if not 0 < self.spread <= MAX_MOTION_SPREAD:  # beyond it no trajectory stays on the grid (and deepinv overflows)
            raise UserError(f"blur:motion spread must be in (0, {MAX_MOTION_SPREAD:g}], got {self.spread}.")
        check_seed(self.seed, "blur:motion: seed")  # before the trajectory is drawn with it (spec.py checks it later)
        check_when_read(lambda: motion_kernel(self.length, self.seed, self.spread), self.length)


@dataclass(frozen=True)
class FileBlurParams:
    file: Path = required("kernel as a .npy 2-D array or a gray image (.png, ...); normalised to sum 1")
    boundary: Boundary = param("circular", BOUNDARY_HELP)


def _fitting(name: str, side: int, size: tuple[int, int]) -> int:
    """``side`` when a kernel of that side fits the image (:func:`max_kernel_side`); else a :class:`UserError`."""
    largest = max_kernel_side(size)
    if side > largest:
        raise UserError(f"{name}: a kernel of {side} px does not fit a {size[0]}x{size[1]} image (at most {largest} px); "
                        "choose a smaller sigma, size or length.")
    return side


add_variant("blur:gaussian", GaussianBlurParams, "isotropic Gaussian blur", default=True, factory=_blur_factory(
    "blur:gaussian", lambda p, size: gaussian_kernel(p.sigma, _fitting(
        "blur:gaussian", p.size or default_gaussian_size(p.sigma), size))))
add_variant("blur:box", BoxBlurParams, "uniform (box) blur", factory=_blur_factory(
    "blur:box", lambda p, size: box_kernel(_fitting("blur:box", p.size, size))))
add_variant("blur:motion", MotionBlurParams, "random camera-shake motion blur (seeded)", factory=_blur_factory(
    "blur:motion", lambda p, size: motion_kernel(_fitting("blur:motion", p.length, size), p.seed, p.spread)))
add_variant("blur:file", FileBlurParams, "blur with a kernel read from a .npy or image file", factory=_blur_factory(
    "blur:file", lambda p, size: load_kernel(p.file, size)))
