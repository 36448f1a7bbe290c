"""Half-quadratic splitting (DPIR's solver) with a denoiser as the prior's prox."""
from __future__ import annotations

from pnprgm.solvers.base import PnPSolver


class HQS(PnPSolver):
    """``u = prox_{gamma f}(x); x = D(u, sigma)``, f = 1/2||Ax - y||^2.

    With fixed parameters it converges to ``argmin_x env_{gamma f}(x) + (sigma^2/gamma) g(x)`` (the Moreau
    envelope of f replaces f), which approaches the MAP as gamma grows.
    """

    name = "hqs"

    def init_state(self, x0):
        return {"x": x0}

    def step(self, state, k, y, physics, denoise, *, sigma, stepsize, generator):
        return {"x": denoise(physics.prox_l2(state["x"], y, stepsize), sigma)}
