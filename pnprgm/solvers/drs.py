"""Douglas-Rachford splitting with a denoiser as the prior's prox (deepinv's ``g_first=False`` ordering)."""
from __future__ import annotations

from pnprgm.solvers.base import PnPSolver


class DRS(PnPSolver):
    """``u = prox_{gamma f}(z); x = D(2u - z, sigma); z = z + beta (x - u)``, f = 1/2||Ax - y||^2."""

    name = "drs"

    def init_state(self, x0):
        return {"x": x0, "z": x0}

    def step(self, state, k, y, physics, denoise, *, sigma, stepsize, generator):
        u = physics.prox_l2(state["z"], y, stepsize)
        x = denoise(2 * u - state["z"], sigma)
        return {"x": x, "z": state["z"] + self.config.relaxation * (x - u)}
