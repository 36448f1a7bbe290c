"""Circular convolution followed by decimation, ``A x = S_r (k * x)``, diagonalised by the FFT.

One implementation serves circular blur (r = 1), anti-aliased super-resolution and compositions of circular
blurs with a final decimation: when r divides H and W, ``A A^T`` is diagonal on the low-resolution Fourier grid
(the alias average of ``|T|^2``), which gives the closed-form prox of Zhao et al. (2016) and the pseudo-inverse.
deepinv's BlurFFT has no decimation and its circular Downsampling shifts even-sized filters (REFERENCE.md), hence
this shared class.

Convention: true convolution with the kernel's centre ``(cy, cx)``: ``(k * x)[m] = sum_j k[j] x[m + c - j]``,
indices modulo (H, W); ``S_r`` keeps pixels ``0, r, 2r, ...``, so the output has ``ceil(H / r) x ceil(W / r)`` pixels.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from pnprgm.operators.base import Operator, as_lambda, from_numpy

_fft2 = torch.fft.fft2
_ifft2 = torch.fft.ifft2


def transfer_function(kernel: torch.Tensor, centre: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """``T = fft2(K)`` where K is the kernel wrapped onto the (H, W) grid with its centre at (0, 0)."""
    height, width = size
    kh, kw = kernel.shape
    rows = (torch.arange(kh, device=kernel.device) - centre[0]) % height
    cols = (torch.arange(kw, device=kernel.device) - centre[1]) % width
    wrapped = torch.zeros(size, dtype=kernel.dtype, device=kernel.device)
    wrapped.index_put_((rows[:, None].expand(kh, kw), cols[None, :].expand(kh, kw)), kernel, accumulate=True)
    return _fft2(wrapped)


def alias_mean(spectrum: torch.Tensor, factor: int) -> torch.Tensor:
    """Fourier transform of the decimated signal from the full one: mean over the r x r aliases."""
    if factor == 1:
        return spectrum
    *lead, height, width = spectrum.shape
    h, w = height // factor, width // factor
    return spectrum.reshape(*lead, factor, h, factor, w).mean(dim=(-4, -2))


def alias_tile(spectrum: torch.Tensor, factor: int) -> torch.Tensor:
    """Fourier transform of zero-insertion upsampling: the low-resolution spectrum tiled r x r."""
    return spectrum if factor == 1 else spectrum.repeat(*([1] * (spectrum.dim() - 2)), factor, factor)


def fourier_prox(T: torch.Tensor, factor: int, z: torch.Tensor, y: torch.Tensor, gamma) -> torch.Tensor:
    """Closed-form prox: ``z + A^T (A A^T + I/gamma)^{-1} (y - A z)`` with everything diagonal in Fourier."""
    d = alias_mean(T.abs() ** 2, factor)
    lam = as_lambda(gamma, y)
    residual = _fft2(y) - alias_mean(T * _fft2(z), factor)
    correction = T.conj() * alias_tile(residual / (d + lam), factor)
    return z + _ifft2(correction).real


def fourier_dagger(T: torch.Tensor, factor: int, y: torch.Tensor) -> torch.Tensor:
    """``A^T (A A^T)^+ y``; singular values below the dtype's resolution count as zero."""
    d = alias_mean(T.abs() ** 2, factor)
    floor = 10 * torch.finfo(y.dtype).eps * d.max()
    inverse = torch.where(d > floor, 1.0 / torch.where(d > floor, d, torch.ones_like(d)), torch.zeros_like(d))
    return _ifft2(T.conj() * alias_tile(_fft2(y) * inverse, factor)).real


class KernelSpectrum:
    """Mixin for operators holding a ``kernel`` buffer, its ``centre`` and ``in_shape``: the cached transfer function."""

    kernel: torch.Tensor
    centre: tuple[int, int]
    in_shape: tuple[int, int, int]
    _transfer_cache: dict

    def arrays(self) -> dict[str, np.ndarray]:
        return {"kernel": self.kernel.detach().cpu().numpy()}

    def transfer(self, like: torch.Tensor) -> torch.Tensor:
        """T on the full (H, W) grid, cached per device and dtype."""
        key = (like.device, like.dtype)
        if key not in self._transfer_cache:
            kernel = self.kernel.to(device=like.device, dtype=like.dtype)
            self._transfer_cache = {key: transfer_function(kernel, self.centre, self.in_shape[1:])}
        return self._transfer_cache[key]

    def circular_convolution(self, x: torch.Tensor) -> torch.Tensor:
        return _ifft2(self.transfer(x) * _fft2(x)).real

    def circular_correlation(self, y: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`circular_convolution`."""
        return _ifft2(self.transfer(y).conj() * _fft2(y)).real


class FourierDecimation(KernelSpectrum, Operator):
    """``A x = S_r (k * x)`` with circular boundaries; closed-form prox and pseudo-inverse when r divides H and W.

    :param kernel: 2-D kernel (numpy array), applied to every channel.
    :param centre: kernel index that sits on the output pixel (before decimation).
    :param factor: decimation factor r (1: plain circular blur).
    """

    def __init__(self, name, params, in_shape, kernel: np.ndarray, centre: tuple[int, int], factor: int, *,
                 device="cpu", dtype=torch.float32):
        c, h, w = in_shape
        out_shape = (c, -(-h // factor), -(-w // factor))
        super().__init__(name, params, in_shape, out_shape, device=device)
        self.register_buffer("kernel", from_numpy(kernel, device=device, dtype=dtype))
        self.centre = (int(centre[0]), int(centre[1]))
        self.factor = int(factor)
        self._transfer_cache = {}

    def image_size_for(self, size):
        return (int(size[0]) * self.factor, int(size[1]) * self.factor)

    @property
    def closed_form_prox(self) -> bool:  # type: ignore[override]
        return self.in_shape[1] % self.factor == 0 and self.in_shape[2] % self.factor == 0

    def fourier_form(self) -> Optional[tuple[torch.Tensor, int]]:
        if not self.closed_form_prox:
            return None
        return self.transfer(self.kernel), self.factor

    def A(self, x, **kwargs):
        self._check(x, self.in_shape, "A")
        return self.circular_convolution(x)[..., :: self.factor, :: self.factor]

    def A_adjoint(self, y, **kwargs):
        self._check(y, self.out_shape, "A_adjoint")
        if self.factor > 1:
            full = torch.zeros((*y.shape[:2], *self.in_shape[1:]), dtype=y.dtype, device=y.device)
            full[..., :: self.factor, :: self.factor] = y
            y = full
        return self.circular_correlation(y)

    def prox_l2(self, z, y, gamma, **kwargs):
        if not self.closed_form_prox:
            return super().prox_l2(z, y, gamma, **kwargs)
        return fourier_prox(self.transfer(y), self.factor, self._as_image(z, y), y, gamma)

    def A_dagger(self, y, **kwargs):
        if not self.closed_form_prox:
            return super().A_dagger(y, **kwargs)
        return fourier_dagger(self.transfer(y), self.factor, y)
