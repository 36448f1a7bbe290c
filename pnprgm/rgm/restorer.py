"""A generator trained for one measurement operator (``pnprgm train --forward operator``) as a deepinv
``Reconstructor``: it restores a real measurement of that operator in one step, ``pnprgm restore --model``.

Such a generator was trained on ``y = A x + sigma n`` in [-1, 1] units, with the image-shaped estimate of its
process (nearest replication for block-mean SR, y itself for a blur or mask, ``A^+ y`` otherwise) and the noise
std as inputs. A measurement in [0, 1] units, ``y01 = A x01 + n01``, is that ``y`` after ``y = 2 y01 - A 1``
(linear A: ``A (2 x01 - 1) = 2 A x01 - A 1``), with ``sigma = 2 sigma01``. It does not fit a PnP solver (it is
not a denoiser), and needs none: no iterations, no preset. Different seeds draw different latents z, so
``--samples`` maps what the model leaves open.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from deepinv.models import Reconstructor
from deepinv.physics import LinearPhysics
from torch import nn

from pnprgm.errors import UserError

#: the solver name a one-step restoration records (``settings.solver``): no PnP solver runs
ONE_STEP = "one-step"


def operator_process(generator: nn.Module, operator: Optional[str] = None):
    """The process config of an operator-process generator with the operator to restore with: the model file's
    own, its files checked against their recorded sha256, or ``operator`` typed by the user (the only way to use
    a model whose operator names Python code, which is never imported from a file)."""
    from pnprgm.training.processes import check_operator_files
    from pnprgm.training.sampling import model_process_config

    config = model_process_config(generator)
    if operator is None:
        check_operator_files((getattr(generator, "record", None) or {}).get("operator_files"), config,
                             when="the model was trained with it")
        return config
    if config.name != "operator":
        raise UserError(f"--operator replaces the operator of an operator-process model; this one was trained "
                        f"for the {config.name} process: drop --operator.")
    return dataclasses.replace(config, operator=operator)


@dataclass(frozen=True)
class OperatorModelFile:
    """What an operator-process model file says about its operator: the process config (``operator`` is the spec)
    and the sha256 of each file the spec reads, by the path the spec names (``blur:file``, ``mask:file``)."""

    process: dict
    files: dict

    @property
    def operator(self) -> str:
        return str(self.process["operator"])


def file_process(source: str, channels: int = 3) -> Optional[OperatorModelFile]:
    """The operator of an operator-process model file, or None for any other model or name (reads the file's
    config, not its generator)."""
    from pnprgm.rgm import models
    from pnprgm.rgm.model_file import read_model_file

    found = models.resolve(source, channels, required=False)
    if found is None or found.official_config is not None or found.entry is not None:
        return None  # the shipped models are denoisers; an official checkpoint is a ddpm generator
    try:
        content = read_model_file(found.path)
    except UserError:
        return None  # not a model file of ours: loading it as a denoiser says why, per input
    process = content.get("process") or {}
    if process.get("name") != "operator" or not process.get("operator"):
        return None
    return OperatorModelFile(dict(process), recorded_files(content.get("record")))


def recorded_files(record: Optional[dict]) -> dict:
    """``{path: sha256}`` of the operator files a training record lists."""
    return {str(entry.get("path")): entry.get("sha256") for entry in (record or {}).get("operator_files") or []
            if isinstance(entry, dict) and entry.get("sha256")}


def same_operator(spec: str, other: str, *, recorded: Optional[dict] = None) -> bool:
    """Whether two operator specs make the same operator: the same parsed operators, where a file they read
    (``blur:file``, ``mask:file``) counts by its contents (sha256; ``recorded`` gives it for the paths of ``other``
    that a model file lists, whose file may be elsewhere now), so a kernel copied to another folder is the same
    operator and another kernel at the same path is not. A spec that names code equals only itself."""
    from pnprgm.training.processes import names_code

    if names_code(spec) or names_code(other):
        return spec == other
    return _identity(spec, {}) == _identity(other, recorded or {})


def _identity(spec: str, recorded: dict) -> list:
    from pnprgm import io, operators

    parts = []
    for part in operators.parse(spec):
        values = {}
        for item in dataclasses.fields(part.params):
            value = getattr(part.params, item.name)
            if isinstance(value, Path):
                value = recorded.get(str(value)) or (io.sha256_file(value) if value.is_file() else f"missing {value}")
            values[item.name] = value
        parts.append((part.variant.name, values))
    return parts


def refuse_solver_options(given: dict) -> None:
    """A :class:`UserError` naming the solver options given (``{"solver": ..., "preset": ..., "tile": ...,
    parameter: value}``, None for not given): a one-step restoration has no solver for them."""
    named = [key for key, value in given.items() if value is not None]
    if named:
        options = ", ".join("--tile" if key == "tile" else f"--{key}" if key in ("solver", "preset")
                            else f"--set {key}" for key in named)
        raise UserError(f"{options} {'does' if len(named) == 1 else 'do'} not apply: this model was trained for the "
                        f"measurement's operator and restores it in one step, without a solver; drop "
                        f"{'it' if len(named) == 1 else 'them'}.")


def trained_noise(process: dict) -> tuple[float, float]:
    """The noise std range (in [0, 1] units) an operator-process model was trained at."""
    from pnprgm.config import build_strict
    from pnprgm.training.config import ProcessConfig, resolve_process

    resolved = resolve_process(build_strict(ProcessConfig, process, what="process"))
    return float(resolved.noise_min), float(resolved.noise_max)


def check_given_noise(sigma: float, noise_range: tuple[float, float]) -> None:
    """A :class:`UserError` when a noise level the user gave lies outside the range the model was trained at."""
    low, high = noise_range
    if not low * (1 - 1e-6) <= sigma <= high * (1 + 1e-6):
        span = f"{low:.4g} ({low * 255:.3g}/255) to {high:.4g} ({high * 255:.3g}/255)"
        raise UserError(f"this model was trained at noise std {span}; give --noise within that range (got "
                        f"{sigma:.4g}), or leave it out to estimate it.")


class MeasurementRestorer(Reconstructor):
    """``x = (G(E(2 y - A 1), 2 sigma, z) + 1) / 2``: one step of a generator trained for the operator A.

    :param generator: a sigma-conditioned generator of the operator process (``pnprgm.rgm.model_file.load_model``).
    :param operator: the operator spec to restore with instead of the model file's (typed by the user).
    :param seed: seed of the latent z (:meth:`reseed` restarts it).
    """

    def __init__(self, generator: nn.Module, *, operator: Optional[str] = None, seed: int = 0,
                 device: str | torch.device = "cpu"):
        super().__init__(device="cpu")
        from pnprgm.denoisers.rgm import size_multiple

        trained_for = (getattr(generator, "process", None) or {}).get("name", "ddpm")
        if trained_for != "operator":
            raise UserError(f"this model was trained for the {trained_for} process; a one-step restorer needs a "
                            f"model of the operator process (pnprgm train --forward operator).")
        from pnprgm.training.sampling import model_process_config

        # the files its operator reads are checked where that operator is built (physics), not here: a measurement
        # comes with its own operator, which must only be the same (same_operator, by the files' contents)
        self.process = model_process_config(generator) if operator is None else operator_process(generator, operator)
        self.recorded = recorded_files(getattr(generator, "record", None))
        self.code_operator = operator
        self.noise_range = trained_noise(generator.process)
        self.generator = generator.eval()
        for p in self.generator.parameters():
            p.requires_grad_(False)
        self.nz, self.multiple = int(generator.nz), size_multiple(generator)
        self.channels = int(generator.config.get("channels", 3))
        self.seed = int(seed)
        self.to(device)

    @property
    def operator_spec(self) -> str:
        return str(self.process.operator)

    def measures(self, spec: str) -> bool:
        """Whether an operator spec is the model's operator (:func:`same_operator`)."""
        return same_operator(spec, self.operator_spec, recorded=self.recorded)

    def reseed(self, seed: int) -> None:
        """Draw the next latents from ``seed``."""
        self.seed = int(seed)

    def physics(self, image_shape: tuple[int, int, int], device: str | torch.device = "cpu") -> LinearPhysics:
        """The operator the model was trained for, for images of ``image_shape`` (C, H, W)."""
        from pnprgm.training.processes import build_process

        self._check_channels(image_shape[0])
        if self.code_operator is None:
            operator_process(self.generator)  # its files as they were in training
        return build_process(self.process, tuple(image_shape), device, code_operator=self.code_operator).physics(
            tuple(image_shape))

    def model_sigma(self, sigma: float, *, estimated: bool) -> float:
        """The noise level the model is given for a measurement of noise std ``sigma``: ``sigma`` itself within the
        trained range; an estimate outside it is clamped to the range (the model has seen nothing else), a level the
        user gave is a :class:`UserError`."""
        low, high = self.noise_range
        if not estimated:
            check_given_noise(sigma, self.noise_range)
        return float(min(max(sigma, low), high))

    def forward(self, y: torch.Tensor, physics: LinearPhysics, *, sigma: float, **kwargs) -> torch.Tensor:
        """Restore ``y`` (B, C', H', W') in [0, 1], measured by ``physics`` (the model's operator) with noise std
        ``sigma`` ([0, 1] units); z is drawn from the current seed."""
        from pnprgm.denoisers.rgm import run_padded
        from pnprgm.restoration import initial_estimate

        shape = tuple(physics.A_adjoint(y).shape[1:])
        self._check_channels(shape[0])
        ones = torch.ones((1, *shape), device=y.device, dtype=y.dtype)
        ym = 2 * y - physics.A(ones)
        estimate = initial_estimate(physics, ym)  # the process's: replication for block means, y, else A^+ y
        level = torch.full((y.shape[0],), 2 * float(sigma), device=y.device, dtype=y.dtype)
        rng = torch.Generator(device=y.device).manual_seed(self.seed)
        z = torch.randn(y.shape[0], self.nz, device=y.device, generator=rng)
        return run_padded(self.generator, estimate, level, z, self.multiple)

    def _check_channels(self, channels: int) -> None:
        if channels != self.channels:
            kind = {1: "gray", 3: "colour"}
            raise UserError(f"this model restores {kind.get(self.channels, self.channels)} images and the measurement "
                            f"is of {kind.get(channels, channels)} ones; give a {kind.get(self.channels)} image or "
                            f"train a model for {kind.get(channels, channels)} images.")


@dataclass(frozen=True)
class OneStep:
    """The algorithm of a :class:`MeasurementRestorer`: one model call at ``model_sigma``, no solver."""

    model_sigma: float
    #: like the stochastic solvers, no denoiser wrapper or post-processing applies
    stochastic = True

    def params(self) -> dict:
        return {"model_noise_sigma": self.model_sigma}

    def run(self, y: torch.Tensor, physics: LinearPhysics, model: MeasurementRestorer, x0: torch.Tensor, *,
            noise_sigma: float, generator: Optional[torch.Generator] = None, tile: Optional[int] = None,
            ground_truth: Optional[torch.Tensor] = None, callback=None, progress: bool = False):
        """The restoration and a one-line trace (seconds, relative data residual ``||A x - y|| / ||y||``, PSNR)."""
        from pnprgm.metrics import psnr
        from pnprgm.solvers.base import IterationRecord, SolverResult

        start = time.perf_counter()
        x = model(y, physics, sigma=self.model_sigma)
        seconds = time.perf_counter() - start
        residual = float((physics.A(x) - y).norm() / y.norm().clamp_min(1e-12))
        record = IterationRecord(iteration=0, residual=residual, sigma=self.model_sigma, stepsize=0.0, seconds=seconds,
                                 denoiser_seconds=seconds,
                                 psnr=None if ground_truth is None else float(psnr(x, ground_truth)))
        if callback is not None:
            callback(0, x, record)
        return SolverResult(x, [record])
