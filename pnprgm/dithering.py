"""Dithering with a Gaussian texture model ("posterior grain"): a Gaussian perturbation of the restored image that the measurement cannot rule out.

A PnP solver returns one point estimate, close to the posterior mean, which lacks the fine texture (film grain,
fur, gravel) that any single plausible image has; LPIPS and the eye read that as blur (the perception-distortion
trade-off, Blau & Michaeli 2018). Modelling what the estimate misses as ``x ~ N(x_hat, s^2 I)`` around it and the
measurement as ``y = A x + N(0, sigma^2 I)``, the posterior covariance of ``x`` is ``(A^T A / sigma^2 + I / s^2)^-1``
(its mean is taken to be ``x_hat``, which already fits the measurement as well as the solver could make it):
white grain of std ``s`` wherever the measurement says nothing (the null space of A: the sub-block detail of
super-resolution, the frequencies a blur removed), less where it does. One draw is added to the estimate, as RGM's
latent ``z`` adds one plausible texture to ``G(y, z)``: it costs about ``10 log10(1 + s^2 / MSE)`` dB of PSNR and
makes every seed a different plausible restoration (``restore --samples`` then maps that spread).

The draw is exact and cheap by perturb-and-MAP (Papandreou & Yuille 2010): with ``n1``, ``n2`` standard normal,
``d = argmin_d 1/2 ||A d - sigma n1||^2 + sigma^2 / (2 s^2) ||d - s n2||^2``, which is one call of the operator's
closed-form ``prox_l2`` with ``gamma = s^2 / sigma^2``.

It is post-processing of the solver's estimate, off by default (``grain`` 0): white noise of the same std buys the
same LPIPS (benchmarks/tuning.md, "Posterior grain").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from deepinv.physics import LinearPhysics

from pnprgm.solvers.base import NOISE_FLOOR  # the measurement term's floor is the PnP data step's (DPIR's)


@dataclass(frozen=True)
class DitherSettings:
    """Post-processing of a restoration's estimate.

    :param grain: dithering with a Gaussian texture model, off by default: the result is ``x + d`` with one draw
        ``d ~ N(0, (A^T A / max(sigma_n, 0.01)^2 + I / grain^2)^-1)`` (0: the point estimate). It lowers LPIPS
        at a cost in PSNR and SSIM, as white noise of the same std does.
    """

    grain: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.grain <= 1:  # a std in [0, 1] image units (squared: 1e300 overflowed)
            raise ValueError(f"grain is a std in [0, 1] image units (0: off, e.g. 0.02); got {self.grain}")


def dither(x: torch.Tensor, physics: LinearPhysics, settings: DitherSettings, *, noise_sigma: float,
           generator: torch.Generator) -> torch.Tensor:
    """``x`` itself, or ``x`` plus one draw of :func:`posterior_grain` when ``settings.grain`` is set."""
    if settings.grain == 0:
        return x
    return x + posterior_grain(x, physics, grain=settings.grain, noise_sigma=max(noise_sigma, NOISE_FLOOR),
                               generator=generator)


def posterior_grain(x: torch.Tensor, physics: LinearPhysics, *, grain: float, noise_sigma: float,
                    generator: torch.Generator) -> torch.Tensor:
    """One draw of ``d ~ N(0, (A^T A / sigma^2 + I / grain^2)^-1)``, shaped like ``x`` (module docstring).

    :param x: the point estimate (gives shape, dtype and device only).
    :param physics: the linear operator A (its ``prox_l2`` draws the sample).
    :param grain: std ``s`` of the texture the estimate misses, in [0, 1] units (> 0).
    :param noise_sigma: measurement noise std ``sigma`` (> 0; solvers pass it floored at 0.01, as their data step).
    :param generator: source of the two normal draws (seeded by the caller).
    """
    if not grain > 0 or not noise_sigma > 0:
        raise ValueError(f"grain and noise_sigma must be > 0, got {grain!r} and {noise_sigma!r}")
    prior_draw = grain * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    like = physics.A(x)
    measurement_draw = noise_sigma * torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    return physics.prox_l2(prior_draw, measurement_draw, gamma=grain**2 / noise_sigma**2)
