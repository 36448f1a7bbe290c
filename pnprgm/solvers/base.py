"""What every splitting solver shares: parameter schedules, the iteration loop, traces and early stopping.

Solvers are written directly rather than through ``deepinv.optim.optim_builder`` because the RGM relaxed
stochastic step, per-iteration traces and early stopping do not fit its iterator interface; a test checks
that DRS, ADMM and HQS produce the same iterates as deepinv's on the same problem.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

import torch
from deepinv.models import Denoiser
from deepinv.physics import LinearPhysics

from pnprgm.config import build_strict, to_dict
from pnprgm.metrics import psnr

#: DPIR's floor on the noise level used to set the data-step weight (noiseless problems would give infinity).
NOISE_FLOOR = 0.01


#: A bound on solver iterations: the schedule is a list per iteration, and PnP converges within tens.
MAX_ITERATIONS = 10_000
#: Smallest non-zero denoiser noise level; with lam in [MIN_LAM, MAX_LAM] every data-step weight stays finite and > 0.
MIN_SIGMA = 1e-6
MIN_LAM, MAX_LAM = 1e-8, 1e8


@dataclass(frozen=True)
class PnPConfig:
    """Parameters of DRS, ADMM and HQS with a denoiser prior.

    Iteration k uses the denoiser level ``sigma_k`` (log-spaced from ``sigma_start`` to ``sigma_end``) and the
    data-step weight ``gamma_k = sigma_k^2 / (lam * max(sigma_n, 0.01)^2)`` (DPIR's rule; the regulariser
    weight ``sigma_k^2 / gamma_k`` stays constant), unless ``stepsize`` fixes gamma.

    :param iterations: maximum number of iterations.
    :param sigma_start: denoiser noise level at the first iteration; None: the measurement noise level.
    :param sigma_end: denoiser noise level at the last iteration; None: the measurement noise level (at least ``sigma_min``).
    :param sigma_min: lower bound of ``sigma_end`` when it follows the noise level.
    :param lam: regularisation strength relative to the noise variance.
    :param stepsize: fixed data-step weight gamma (overrides the rule above).
    :param relaxation: relaxation beta of the dual update (DRS, ADMM).
    :param tol: stop when ``||x_k - x_{k-1}|| / ||x_{k-1}|| < tol`` (0 never stops early).
    """

    iterations: int = 8
    sigma_start: Optional[float] = 49 / 255
    sigma_end: Optional[float] = None
    sigma_min: float = 0.01
    lam: float = 0.23
    stepsize: Optional[float] = None
    relaxation: float = 1.0
    tol: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.iterations <= MAX_ITERATIONS:
            raise ValueError(f"iterations must be between 1 and {MAX_ITERATIONS}, got {self.iterations}")
        for name in ("sigma_start", "sigma_end", "sigma_min", "lam", "stepsize", "relaxation", "tol"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if (self.sigma_start is not None and not self.sigma_start > 0) or self.lam <= 0:
            raise ValueError("sigma_start must be > 0 and lam > 0")
        for name in ("sigma_start", "sigma_end", "sigma_min"):  # noise std in [0, 1] image units
            value = getattr(self, name)
            if value is not None and value > 1:
                raise ValueError(f"{name} is a noise std in [0, 1] image units (e.g. 15/255 = 0.059); got {value}")
        for name in ("sigma_start", "sigma_end", "sigma_min"):  # squared in the step rule: smaller ones underflow it to 0
            value = getattr(self, name)
            if value is not None and 0 < value < MIN_SIGMA:
                raise ValueError(f"{name} is below {MIN_SIGMA:g} (a noise std no denoiser tells from 0); use 0 where "
                                 f"allowed or a larger value, e.g. 1/255 = 0.0039; got {value}")
        if not MIN_LAM <= self.lam <= MAX_LAM:  # beyond these the step rule's gamma overflows or underflows
            raise ValueError(f"lam must be between {MIN_LAM:g} and {MAX_LAM:g} (default 0.23); got {self.lam}")
        if self.sigma_end is not None and not self.sigma_end >= 0:
            raise ValueError(f"sigma_end must be >= 0, got {self.sigma_end}")
        if not self.sigma_min >= 0:
            raise ValueError(f"sigma_min must be >= 0, got {self.sigma_min}")
        if self.stepsize is not None and not self.stepsize > 0:
            raise ValueError(f"stepsize must be > 0, got {self.stepsize}")
        if not 0 < self.relaxation <= 2:  # over-relaxation of DRS/ADMM converges for beta in (0, 2]
            raise ValueError(f"relaxation must be in (0, 2], got {self.relaxation}")
        if not self.tol >= 0:
            raise ValueError(f"tol must be >= 0, got {self.tol}")

    def sigmas(self, noise_sigma: float) -> list[float]:
        """Denoiser level per iteration (log-spaced)."""
        level = max(noise_sigma, self.sigma_min)
        start = self.sigma_start if self.sigma_start is not None else level
        end = self.sigma_end if self.sigma_end is not None else level
        if self.iterations == 1 or start <= 0 or end <= 0:
            return [start] * self.iterations
        ratio = math.log(end / start) / (self.iterations - 1)
        return [start * math.exp(ratio * k) for k in range(self.iterations)]

    def stepsizes(self, noise_sigma: float) -> list[float]:
        """Data-step weight gamma per iteration."""
        if self.stepsize is not None:
            return [self.stepsize] * self.iterations
        floor = max(noise_sigma, NOISE_FLOOR) ** 2
        return [s**2 / (self.lam * floor) for s in self.sigmas(noise_sigma)]


@dataclass
class IterationRecord:
    """One line of a solver trace."""

    iteration: int
    residual: float
    sigma: float
    stepsize: float
    seconds: float
    denoiser_seconds: float
    psnr: Optional[float] = None  # against the ground truth (pnprgm.metrics.psnr, the batch as one image)


@dataclass
class SolverResult:
    """Restored batch and the per-iteration trace."""

    x: torch.Tensor
    trace: list[IterationRecord] = field(default_factory=list)
    stopped_early: bool = False

    def trace_dicts(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(r) for r in self.trace]


Callback = Callable[[int, torch.Tensor, IterationRecord], None]


class _TimedDenoiser:
    """Counts the seconds spent inside the denoiser, so traces separate solver overhead from denoising."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser, self.seconds = denoiser, 0.0

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        start = time.perf_counter()
        out = self.denoiser(x, sigma)
        self.seconds += time.perf_counter() - start
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.denoiser, name)


class PnPSolver:
    """Base class: subclasses define ``init_state``, ``step`` and ``estimate``; the loop lives here."""

    name: ClassVar[str]
    Config: ClassVar[type] = PnPConfig
    #: True for a loop that draws its own randomness and needs the model's own stochastic step (RGM's re-noising
    #: with a fresh latent): such a loop takes the model unwrapped and its estimate is already one draw.
    stochastic: ClassVar[bool] = False

    def __init__(self, config: Any = None, **overrides: Any):
        if config is None:
            base = {}
        elif isinstance(config, dict):
            base = dict(config)
        else:
            base = to_dict(config)
        self.config = build_strict(self.Config, {**base, **overrides}, what=f"solver {self.name!r}")

    # -- to be defined by each solver -------------------------------------------------------------------
    def init_state(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def step(self, state: dict, k: int, y: torch.Tensor, physics: LinearPhysics, denoise: Callable, *,
             sigma: float, stepsize: float, generator: torch.Generator) -> dict:
        raise NotImplementedError

    def estimate(self, state: dict) -> torch.Tensor:
        return state["x"]

    def schedule(self, noise_sigma: float) -> tuple[list[float], list[float]]:
        """(denoiser levels, data-step weights) per iteration."""
        return self.config.sigmas(noise_sigma), self.config.stepsizes(noise_sigma)

    # -- the loop ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def solve(self, y: torch.Tensor, physics: LinearPhysics, denoiser: Denoiser, x0: torch.Tensor, *,
              noise_sigma: float = 0.0, generator: Optional[torch.Generator] = None,
              ground_truth: Optional[torch.Tensor] = None, callback: Optional[Callback] = None,
              progress: bool = False) -> SolverResult:
        """Run the iterations from ``x0`` and return the estimate with its trace.

        :param y: measurement batch.
        :param physics: the linear operator (``prox_l2`` is its data step).
        :param denoiser: ``forward(x, sigma)`` denoiser, x in [0, 1], called as it is (its wrappers, e.g. symmetry,
            are built by :func:`pnprgm.denoisers.pipeline.denoiser_pipeline`).
        :param x0: initial estimate (image space).
        :param noise_sigma: measurement noise standard deviation (sets the default schedule).
        :param generator: randomness of stochastic steps (RGM's re-noising).
        :param ground_truth: if given, the trace records PSNR per iteration.
        :param callback: called as ``callback(k, x_k, record)`` after each iteration.
        :param progress: show a progress bar over iterations.
        """
        from tqdm.auto import tqdm

        if generator is None:
            generator = torch.Generator(device=y.device).manual_seed(0)
        sigmas, stepsizes = self.schedule(noise_sigma)
        timed = _TimedDenoiser(denoiser)
        state = self.init_state(x0)
        previous = self.estimate(state)
        result = SolverResult(x=previous)
        bar = tqdm(range(len(sigmas)), desc=self.name, leave=False, disable=not progress)
        for k in bar:
            start, denoise_before = time.perf_counter(), timed.seconds
            state = self.step(state, k, y, physics, timed, sigma=sigmas[k], stepsize=stepsizes[k], generator=generator)
            x = self.estimate(state)
            residual = float((x - previous).norm() / previous.norm().clamp_min(1e-12))
            record = IterationRecord(
                iteration=k, residual=residual, sigma=float(sigmas[k]), stepsize=float(stepsizes[k]),
                seconds=time.perf_counter() - start, denoiser_seconds=timed.seconds - denoise_before,
                psnr=_batch_psnr(x, ground_truth) if ground_truth is not None else None,
            )
            result.trace.append(record)
            bar.set_postfix(residual=f"{residual:.2e}")
            if callback is not None:
                callback(k, x, record)
            previous = x
            if self.config.tol > 0 and residual < self.config.tol:
                result.stopped_early = True
                break
        result.x = previous
        return result


def _batch_psnr(x: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR of the whole batch taken as one image (one MSE over every image, channel and pixel)."""
    return float(psnr(x.flatten(0, 1)[None], reference.flatten(0, 1)[None]))
