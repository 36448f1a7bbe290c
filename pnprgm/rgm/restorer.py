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


class NoiseLevelWarning(UserWarning):
    """A measurement's noise level outside the range a model was trained at, brought into it."""


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
    channels: int = 3

    @property
    def operator(self) -> str:
        return str(self.process["operator"])


def file_process(source: str, channels: int = 3) -> Optional[OperatorModelFile]:
    """The operator of an operator-process model file, or None for any other model or name (reads the file's
    config, not its generator)."""
    from pnprgm.rgm import models
    from pnprgm.rgm.model_file import with_operator_files

    found = models.resolve(source, channels, required=False)
    if found is None or found.official_config is not None or found.entry is not None:
        return None  # the shipped models are denoisers; an official checkpoint is a ddpm generator
    content = _model_file_header(found.path)
    if content is None:
        return None  # not a model file of ours: loading it as a denoiser says why, per input
    process = content.get("process") or {}
    if process.get("name") != "operator" or not process.get("operator"):
        return None
    # the operator's files are looked up on every call: their paths are relative to the folder, and they may change
    process, record = with_operator_files(content, warn=False)  # said where the model loads
    channels = int(((content.get("generator") or {}).get("config") or {}).get("channels", 3))
    return OperatorModelFile(process, recorded_files(record), channels)


def _model_file_header(path) -> Optional[dict]:
    """A model file's content without its weights (process, record, held operator files, generator config), or
    None where it is not a model file of ours; read once per version of the file (path, inode, modification and
    change times, size): every image of a folder asks :func:`file_process`."""
    from pnprgm.rgm.model_file import read_model_file

    try:
        stat = Path(path).stat()
        # the inode and ctime too: a file replaced within one mtime tick, or copied in with its old mtime, is new
        key = (str(Path(path).resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
    except OSError:
        key = None
    if key is not None and key in _HEADERS:
        return _HEADERS[key]
    try:
        content = read_model_file(path)
    except UserError:
        content = None
    else:
        content = {"process": content.get("process"), "record": content.get("record"),
                   "operator_file_data": content.get("operator_file_data"),
                   "generator": {"config": (content.get("generator") or {}).get("config")}}
    if key is not None:
        if len(_HEADERS) >= 4:  # each may hold up to 8 MiB of operator files
            _HEADERS.pop(next(iter(_HEADERS)))
        _HEADERS[key] = content
    return content


_HEADERS: dict[tuple, Optional[dict]] = {}


def recorded_files(record: Optional[dict]) -> dict:
    """``{path: sha256}`` of the operator files a training record lists."""
    return {str(entry.get("path")): entry.get("sha256") for entry in (record or {}).get("operator_files") or []
            if isinstance(entry, dict) and entry.get("sha256")}


def clearly_other(spec: str, model: OperatorModelFile) -> bool:
    """True when a registry spec is clearly not the model's operator, decided without a measurement: other operator
    variants, or, where both build on a probe image (the model's files present and unchanged), another action
    (:func:`same_action`). Anything undecided here is left to :meth:`MeasurementRestorer.measures`, per image."""
    from pnprgm import operators

    if operators.names_code(spec) or operators.names_code(model.operator):
        return False
    if [p.variant.name for p in operators.parse(spec)] != [p.variant.name for p in operators.parse(model.operator)]:
        return True
    if operators.files_read(spec) or operators.files_read(model.operator):
        return False  # files: the comparison needs the image's shape (a mask file has one) and may need hashes
    probe = (3, 48, 48)
    try:
        return not same_action(operators.build(spec, probe), operators.build(model.operator, probe), probe)
    except UserError:
        return False


def _identity(spec: str, recorded: dict) -> list:
    """The parsed parts of a registry spec with each file it reads replaced by the file's sha256 (``recorded``
    first, by the path the spec names; a missing file by its path)."""
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


def same_action(physics: LinearPhysics, other: LinearPhysics, image_shape: tuple[int, int, int],
                device: str | torch.device = "cpu") -> bool:
    """Whether two linear operators act alike on images of ``image_shape``: ``A x`` equal for a random x (for
    different operators, ``(A - B) x = 0`` has probability 0), so equal kernels given by other paths, other but
    equivalent parameters (a Gaussian's default size given explicitly) and a sidecar's stored kernel all compare
    by what they do."""
    x = torch.rand((1, *image_shape), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        a, b = physics.A(x), other.A(x)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5))


def refuse_solver_options(given: dict, *, cli: bool = True) -> None:
    """A :class:`UserError` naming the solver options given (``{"solver": ..., "preset": ..., "tile": ...,
    parameter: value}``, None for not given, as ``pnprgm restore`` options or, ``cli=False``, as ``restore()``
    arguments): a one-step restoration has no solver for them."""
    named = [key for key, value in given.items() if value is not None]
    if not named:
        return
    if cli:
        flag = {"solver": "--solver", "preset": "--preset", "tile": "--tile", "iterations": "--iters"}
        options = ", ".join(flag.get(key, f"--set {key}") for key in named)
    else:
        options = ", ".join(f"{key}=" for key in named)
    raise UserError(f"{options} {'does' if len(named) == 1 else 'do'} not apply: this model was trained for the "
                    f"measurement's operator and restores it in one step, without a solver; drop "
                    f"{'it' if len(named) == 1 else 'them'}.")


def trained_noise(process: dict) -> tuple[float, float]:
    """The noise std range (in [0, 1] units) an operator-process model was trained at."""
    from pnprgm.config import build_strict
    from pnprgm.training.config import ProcessConfig, resolve_process

    resolved = resolve_process(build_strict(ProcessConfig, process, what="process"))
    return float(resolved.noise_min), float(resolved.noise_max)


def describe_noise(noise_range: tuple[float, float]) -> str:
    low, high = noise_range
    one = f"{low:.4g} ({low * 255:.3g}/255)"
    return one if high <= low * (1 + 1e-6) else f"{one} to {high:.4g} ({high * 255:.3g}/255)"


def above_range(sigma: float, noise_range: tuple[float, float]) -> bool:
    return sigma > noise_range[1] * (1 + 1e-6)


def check_given_noise(sigma: float, noise_range: tuple[float, float], *, option: str = "--noise") -> None:
    """A :class:`UserError` when a noise level the user gave is above the range the model was trained at (the model
    would leave noise in); a level below it is lifted to the range with a warning (:meth:`MeasurementRestorer.model_sigma`)."""
    if above_range(sigma, noise_range):
        raise UserError(f"this model was trained at noise std {describe_noise(noise_range)}; give {option} within "
                        f"that range (got {sigma:.6g}), or restore with a denoiser (--denoiser default).")


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
                            f"model of the operator process (pnprgm train --operator SPEC).")
        from pnprgm.training.sampling import model_process_config

        # the files its operator reads are checked where that operator is built (physics), not here: a measurement
        # comes with its own operator, which must only act the same (measures)
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
        self.model_info: Optional[dict] = None  # name and sha256 of the file, when loaded by from_file
        self.to(device)

    @classmethod
    def from_file(cls, source: str, *, operator: Optional[str] = None, seed: int = 0,
                  device: str | torch.device = "cpu") -> "MeasurementRestorer":
        """The restorer of a model file (or name), with ``model_info`` (name, sha256) of what was loaded: a caller
        that restores many images loads it once, so a file replaced meanwhile cannot change the method midway."""
        from pnprgm import io
        from pnprgm.rgm import models

        found = models.resolve(source)
        sha256 = io.sha256_file(found.path)
        restorer = cls(models.load_generator_file(found.path, device=device), operator=operator, seed=seed, device=device)
        restorer.model_info = {"name": found.name, "sha256": sha256}
        return restorer

    @property
    def operator_spec(self) -> str:
        """The operator it restores with: the model file's, or the one typed by the user (``operator``)."""
        return str(self.process.operator)

    @property
    def trained_operator(self) -> str:
        """The operator spec the model file records, whatever it restores with."""
        return str((self.generator.process or {}).get("operator"))

    @property
    def trained_for_code(self) -> bool:
        """Whether the model was trained for an operator built by the user's code (``file.py:callable``), which
        pnprgm never runs from a model file, so nothing of the registry can be shown to be that operator."""
        from pnprgm import operators

        return operators.names_code(self.trained_operator)

    def measures(self, physics: LinearPhysics, image_shape: tuple[int, int, int]) -> bool:
        """Whether ``physics`` is the model's operator on images of ``image_shape``: the same action
        (:func:`same_action`; a sidecar's stored mask counts, not the spec it names) as the model's operator built from
        its own files. Where those are not here (a model used away from its training folder), a spec reading files of
        the same contents (sha256, as recorded) whose operator acts like ``physics`` (a sidecar's stored kernel must be
        that file's) is the same; otherwise the files' absence is the :class:`UserError`. A model whose operator is
        the user's code (given as ``operator``) measures with whatever that code built."""
        from pnprgm import operators

        if self.code_operator is not None or operators.names_code(self.operator_spec):
            return True
        spec = getattr(physics, "spec", None)
        ours = spec is not None and not operators.names_code(spec)
        device = next(self.generator.parameters()).device
        try:
            model_physics = self.physics(image_shape, device=device)
        except UserError:
            if not (ours and operators.files_read(spec)
                    and _identity(spec, {}) == _identity(self.operator_spec, self.recorded)):
                raise
            model_physics = operators.build(spec, image_shape, device=device)  # the same files, found elsewhere
        return same_action(model_physics, physics, image_shape, device)

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

    def model_sigma(self, sigma: float, *, estimated: bool, option: str = "noise_sigma") -> float:
        """The noise level the model is given for a measurement of noise std ``sigma``: ``sigma`` within the trained
        range, else the nearest end of it (with a warning: the model has seen nothing else), except a level the user
        gave above the range, a :class:`UserError` (``option`` names it)."""
        import warnings

        low, high = self.noise_range
        if not estimated:
            check_given_noise(sigma, self.noise_range, option=option)
        used = float(min(max(sigma, low), high))
        if abs(used - sigma) > 1e-6 * max(sigma, low):
            what = "estimated noise std" if estimated else "noise std"
            warnings.warn(NoiseLevelWarning(f"the measurement's {what} {sigma:.4g} ({sigma * 255:.3g}/255) is outside the "
                          f"{describe_noise(self.noise_range)} the model was trained at; it is given {used:.4g}"
                          f"{' (--noise sets the level)' if estimated else ''}."), stacklevel=3)
        return used

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
            from pnprgm.io import channel_kind as kind

            raise UserError(f"this model restores {kind(self.channels)} images and the measurement is of "
                            f"{kind(channels)} ones; give a {kind(self.channels)} image or train a model for "
                            f"{kind(channels)} images.")


@dataclass(frozen=True)
class OneStep:
    """The algorithm of a :class:`MeasurementRestorer`: one model call at ``model_sigma``, no solver."""

    model_sigma: float

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
