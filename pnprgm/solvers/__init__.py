"""Splitting solvers with denoiser priors; ``registry`` maps names to solver classes (one per module)."""
from __future__ import annotations

from typing import Any

from pnprgm.registry import Registry
from pnprgm.solvers.admm import ADMM
from pnprgm.solvers.base import IterationRecord, PnPConfig, PnPSolver, SolverResult
from pnprgm.solvers.drs import DRS
from pnprgm.solvers.hqs import HQS
from pnprgm.solvers.rgm_drs import RGMDRS, RGMDRSConfig

registry: Registry[type[PnPSolver]] = Registry("solver")
registry.add("drs", DRS, "Douglas-Rachford splitting (deepinv ordering), annealed denoiser level")
registry.add("admm", ADMM, "ADMM with scaled dual, annealed denoiser level")
registry.add("hqs", HQS, "half-quadratic splitting (DPIR), annealed denoiser level")
registry.add("rgm-drs", RGMDRS, "RGM's relaxed stochastic DRS (official restoration loop)")


def build(name: str, config: Any = None, **overrides: Any) -> PnPSolver:
    """A solver by registry name with its config (a dataclass or dict) and parameter overrides."""
    return registry.get(name)(config, **overrides)


__all__ = ["registry", "build", "PnPSolver", "PnPConfig", "RGMDRSConfig", "SolverResult", "IterationRecord", "DRS", "ADMM", "HQS", "RGMDRS"]
