"""RGM's relaxed stochastic Douglas-Rachford loop (the official restoration algorithm).

Each iteration runs, for j = T..1: re-noise x to level j, restore it with a fresh latent z, relax,
``y = (1 - alpha) x + alpha G(x_j)``, then ``v = prox_{gamma f}(2y - x)``, ``x = x + v - y``.
It is deepinv's DRS with ``g_first=True`` and a relaxed stochastic denoiser; the estimate is x.
"""
from __future__ import annotations

from dataclasses import dataclass
import torch

from pnprgm.solvers.base import PnPSolver


@dataclass(frozen=True)
class RGMDRSConfig:
    """Parameters of RGM's DRS (defaults: the official SR x4 setting).

    :param iterations: outer iterations (``max_iter``).
    :param alpha: relaxation towards the generator output.
    :param stepsize: data-step weight (RGM's ``lambda``): ``prox = (I + lambda A^T A)^-1 (v + lambda A^T y)``.
    :param levels: noise levels used per iteration (RGM's "T used"), j = levels..1.
    :param noise_scale: re-noising factor on the level's noise (official 0.99).
    :param level_sigmas: for denoisers without a time schedule: noise std (in [0, 1] units) of level j = 1, 2, ...
    :param tol: early-stopping threshold on the relative change (0 never stops early).
    """

    iterations: int = 40
    alpha: float = 0.05
    stepsize: float = 10.0
    levels: int = 1
    noise_scale: float = 0.99
    level_sigmas: tuple[float, ...] = (25 / 255, 50 / 255, 75 / 255, 100 / 255)
    tol: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")


class RGMDRS(PnPSolver):
    """RGM's restoration loop; works with any denoiser, and with RGM generators' own time schedule."""

    name = "rgm-drs"
    Config = RGMDRSConfig
    stochastic = True

    def schedule(self, noise_sigma: float) -> tuple[list[float], list[float]]:
        return [float("nan")] * self.config.iterations, [self.config.stepsize] * self.config.iterations

    def init_state(self, x0):
        return {"x": x0}

    def step(self, state, k, y, physics, denoise, *, sigma, stepsize, generator):
        x = state["x"]
        for level in range(self.config.levels, 0, -1):
            restored = stochastic_restore(denoise, x, level, self.config, generator)
            relaxed = (1 - self.config.alpha) * x + self.config.alpha * restored
            v = physics.prox_l2(2 * relaxed - x, y, stepsize)
            x = x + v - relaxed
        return {"x": x}


def stochastic_restore(denoise, x: torch.Tensor, level: int, config: RGMDRSConfig, generator: torch.Generator) -> torch.Tensor:
    """Re-noise x to ``level`` and restore it with fresh randomness.

    A denoiser exposing ``stochastic_restore`` (RGM generators with a time schedule) uses its own
    ``x_j = a_j x + noise_scale s_j eps`` in [-1, 1]; others get ``x + noise_scale sigma_j eps`` and ``D(., sigma_j)``.
    """
    own = getattr(denoise, "stochastic_restore", None)
    if own is not None:
        return own(x, level, noise_scale=config.noise_scale, generator=generator)
    sigma = config.level_sigmas[min(level, len(config.level_sigmas)) - 1]
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return denoise(x + config.noise_scale * sigma * noise, sigma)
