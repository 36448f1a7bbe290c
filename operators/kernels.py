"""Blur and anti-aliasing kernels, and kernels / masks read from user files (validated, one-line errors)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pnprgm.errors import UserError

ARRAY_SUFFIXES = (".npy",)


def gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    """Isotropic ``size x size`` Gaussian (deepinv's), normalised to sum 1."""
    import deepinv.physics.functional as dF

    kernel = dF.gaussian_blur(psf_size=(size, size), sigma=(sigma, sigma), dtype=torch.float64)
    return normalised(kernel.reshape(size, size).numpy(), f"a Gaussian of sigma {sigma:g} on {size}x{size} px")


def normalised(weights: np.ndarray, what: str, fix: str = "use a larger sigma (it is far below one pixel)") -> np.ndarray:
    """``weights / sum(weights)``; a :class:`UserError` when that leaves no usable weight (a sigma far below one pixel:
    every tap underflows to 0; values so large that their sum overflows): dividing would give a NaN or all-zero
    measurement and an all-black result."""
    total = float(weights.sum())
    if math.isfinite(total) and total > 0 and np.isfinite(weights).all():
        weights = weights / total
        if weights.max() > 0:
            return weights
    raise UserError(f"{what} has no usable weight after normalising to sum 1; {fix}.")


#: A Gaussian wider than this is refused by the size checks anyway; the cap keeps ceil() away from infinity.
_HUGE_SIGMA = 1e9


def default_gaussian_size(sigma: float) -> int:
    """Odd size covering +-3 sigma."""
    return 2 * math.ceil(3 * min(sigma, _HUGE_SIGMA)) + 1


#: Kernel sides up to this are always allowed (8 MB in float64), whatever the image size.
MIN_KERNEL_BOUND = 1025


def max_kernel_side(size: tuple[int, int]) -> int:
    """Largest kernel side allowed on an image of ``size`` (H, W): twice its larger side plus one, or
    :data:`MIN_KERNEL_BOUND` for small images (which wrap a larger kernel circularly); beyond it a kernel is refused
    before it is allocated (a sigma of 1e6 asked for terabytes)."""
    return max(2 * max(size) + 1, MIN_KERNEL_BOUND)


def check_when_read(make: Callable[[], np.ndarray], side: float) -> None:
    """Build a kernel that does not depend on the image (``make``) once, when its spec is read, so that one with no
    usable weight (:func:`normalised`) is refused once, before any work, not once per image; one whose ``side``
    exceeds :data:`MIN_KERNEL_BOUND` waits for the image's size check instead."""
    if side <= MIN_KERNEL_BOUND:
        make()


def box_kernel(size: int) -> np.ndarray:
    return np.full((size, size), 1.0 / size**2)


def motion_kernel(length: int, seed: int, spread: float) -> np.ndarray:
    """Random motion trajectory (deepinv's Gaussian-process generator) rasterised on a ``length x length`` grid."""
    from deepinv.physics.generator import MotionBlurGenerator

    generator = MotionBlurGenerator((length, length), rng=torch.Generator().manual_seed(seed), sigma=spread,
                                    dtype=torch.float64)
    kernel = generator.step(seed=seed)["filter"].reshape(length, length).numpy()
    # a long spread can carry the whole trajectory off the grid
    return normalised(kernel, f"motion kernel with seed {seed} and spread {spread:g} (its trajectory left the "
                              f"{length}x{length} grid)", fix="use a smaller spread (the default is 0.25) or another seed")


def _keys_cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    t = np.abs(t)
    inner = (a + 2) * t**3 - (a + 3) * t**2 + 1
    outer = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return np.where(t <= 1, inner, np.where(t < 2, outer, 0.0))


def _offsets(half_width: float, factor: int) -> np.ndarray:
    """Tap positions relative to a low-resolution pixel's centre: half-integers for even r, integers for odd r."""
    start = 0.5 if factor % 2 == 0 else 0.0
    positive = np.arange(start, half_width, 1.0)
    positive = positive[positive < half_width]
    return np.concatenate([-positive[::-1], positive[1:] if start == 0.0 else positive])


def antialias_kernel(kind: str, factor: int, sigma: float | None = None) -> np.ndarray:
    """Separable anti-aliasing kernel for downsampling by ``factor``, centred on the low-resolution pixel centre.

    ``bicubic``: Keys (a = -0.5) cubic stretched by r (MATLAB ``imresize``): 4r taps (4r - 1 for odd r).
    ``gaussian``: Gaussian of std ``sigma`` high-resolution pixels, truncated at 3 sigma.
    """
    if kind == "bicubic":
        taps = _offsets(2 * factor, factor)
        weights = _keys_cubic(taps / factor)
    else:
        assert sigma is not None
        taps = _offsets(3 * sigma + 1e-9, factor)
        if taps.size == 0:
            taps = _offsets(1.0, factor)
        weights = np.exp(-0.5 * (taps / sigma) ** 2)
    weights = normalised(weights, f"a {kind} anti-aliasing filter of sigma {sigma:g} for factor {factor}")
    return np.outer(weights, weights)


def antialias_centre(kernel_size: int, factor: int) -> int:
    """Centre index c placing the kernel's middle on the centre ``(r - 1)/2`` of each r x r block: c = (L + r)/2 - 1."""
    return (kernel_size + factor) // 2 - 1


# ---- user files ----------------------------------------------------------------------------------------------
def _read_2d(path: Path, what: str) -> np.ndarray:
    """A 2-D float array from a .npy file or a gray image (scaled to [0, 1]; an RGB one whose channels agree is
    read as their mean, one whose channels differ is refused)."""
    if not path.exists():
        raise UserError(f"{what} file {path} does not exist; check the path.")
    if not path.is_file():
        raise UserError(f"{what} file {path} is not a file; give a .npy array or an image.")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        from pnprgm.io import load_numpy

        array = load_numpy(path, what, "save a 2-D array of numbers with numpy.save, or give a gray image")
        array = np.squeeze(np.asarray(array))
        if array.ndim != 2 or array.size == 0:
            raise UserError(f"{what} file {path} holds an array of shape {np.shape(array)}; it must be 2-D (H, W) "
                            f"with at least one value.")
        if np.iscomplexobj(array) or (not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_):
            raise UserError(f"{what} file {path} holds {array.dtype} values; it must hold real numbers.")
        array = array.astype(np.float64)
    else:
        from pnprgm.io import CHANNEL_TOLERANCE, channel_spread, read_image

        _refuse_transparency(path, what)
        image = read_image(path).double()  # UserError naming the file when unreadable
        spread = channel_spread(image)
        if spread > CHANNEL_TOLERANCE:  # averaging them would silently use another kernel or mask than drawn
            raise UserError(f"{what} file {path} is a colour image whose channels differ (by up to {spread:.2f}); "
                            f"one {what} serves every channel: save it as a gray image or a 2-D .npy array.")
        array = image.mean(0).numpy()
    if not np.all(np.isfinite(array)):
        raise UserError(f"{what} file {path} holds NaN or infinite values.")
    return array


def _refuse_transparency(path: Path, what: str) -> None:
    """Refuse an image with transparent pixels: reading drops the alpha, so the colours hidden under them (often
    arbitrary, whatever the editor kept) would become kernel or mask values, when the drawing meant the alpha."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if "A" not in image.getbands() and "transparency" not in image.info:
                return
            lowest_alpha = image.convert("RGBA").getchannel("A").getextrema()[0]
    except Exception:  # unreadable: read_image says so in its own words
        return
    if lowest_alpha < 255:
        raise UserError(f"{what} file {path} has transparent pixels, and only its gray values are read (not the "
                        f"alpha): flatten it onto a black or white background and save it without transparency.")


def load_kernel(path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """A blur kernel from ``path``, normalised to sum 1; checked against the image size."""
    kernel = _read_2d(Path(path), "kernel")
    if np.all(kernel == 0):
        raise UserError(f"kernel file {path} is all zeros; a blur kernel needs positive weights.")
    if not kernel.sum() > 0:  # NaN too
        raise UserError(f"kernel file {path} sums to {kernel.sum():.3g}; a blur kernel must sum to a positive value.")
    if kernel.shape[0] > image_size[0] or kernel.shape[1] > image_size[1]:
        raise UserError(
            f"kernel file {path} is {kernel.shape[0]}x{kernel.shape[1]}, larger than the {image_size[0]}x{image_size[1]} image; "
            "use a smaller kernel."
        )
    return normalised(kernel, f"kernel file {path}", fix="scale its values down (only their ratios matter)")


def load_mask(path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """A binary mask from ``path`` (values > 0.5: observed); must match the image's H x W."""
    values = _read_2d(Path(path), "mask")
    if tuple(values.shape) != tuple(image_size):
        raise UserError(
            f"mask file {path} is {values.shape[0]}x{values.shape[1]} but the image is {image_size[0]}x{image_size[1]}; "
            "give a mask of the image's size."
        )
    return values > 0.5
