"""ADMM with a denoiser as the prior's prox (deepinv's ``g_first=False`` ordering, scaled dual)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pnprgm.solvers.base import PnPConfig, PnPSolver


@dataclass(frozen=True)
class ADMMConfig(PnPConfig):
    """:class:`PnPConfig` plus:

    :param rescale_dual: when the data-step weight changes from gamma to gamma', scale the scaled dual z by
        gamma' / gamma so that the unscaled dual z / gamma is kept (Boyd et al. 2011, section 3.4.1). Off by
        default, which reproduces deepinv's iterates; with DPIR's schedule gamma falls about 370-fold over the
        iterations, and rescaling adds about 1 dB for the shipped UNet denoiser on deblurring (README).
    """

    rescale_dual: bool = False


class ADMM(PnPSolver):
    """``u = prox_{gamma f}(x - z); x = D(u + z, sigma); z = z + beta (u - x)``, f = 1/2||Ax - y||^2."""

    name = "admm"
    Config = ADMMConfig

    def init_state(self, x0):
        return {"x": x0, "z": torch.zeros_like(x0)}

    def step(self, state, k, y, physics, denoise, *, sigma, stepsize, generator):
        z = state["z"]
        if self.config.rescale_dual and "gamma" in state:
            z = z * (stepsize / state["gamma"])
        u = physics.prox_l2(state["x"] - z, y, stepsize)
        x = denoise(u + z, sigma)
        return {"x": x, "z": z + self.config.relaxation * (u - x), "gamma": stepsize}
