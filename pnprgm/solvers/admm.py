"""ADMM with a denoiser as the prior's prox (deepinv's ``g_first=False`` ordering, scaled dual)."""
from __future__ import annotations

import torch

from pnprgm.solvers.base import PnPSolver


class ADMM(PnPSolver):
    """``u = prox_{gamma f}(x - z); x = D(u + z, sigma); z = z + beta (u - x)``, f = 1/2||Ax - y||^2."""

    name = "admm"

    def init_state(self, x0):
        return {"x": x0, "z": torch.zeros_like(x0)}

    def step(self, state, k, y, physics, denoise, *, sigma, stepsize, generator):
        u = physics.prox_l2(state["x"] - state["z"], y, stepsize)
        x = denoise(u + state["z"], sigma)
        return {"x": x, "z": state["z"] + self.config.relaxation * (u - x)}
