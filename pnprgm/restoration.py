"""``restore``: the library entry point of PnP restoration (the CLI's ``restore`` command calls it).

It picks the preset for the task and solver, builds the denoiser, starts from the operator's initial
estimate, runs the solver and returns the image in [0, 1] at the operator's image size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from deepinv.models import Denoiser
from deepinv.physics import LinearPhysics

from pnprgm import denoisers, presets, solvers
from pnprgm.device import resolve_device
from pnprgm.errors import UserError
from pnprgm.solvers.base import Callback, SolverResult

DEFAULT_DENOISER = "rgm"


@dataclass(frozen=True)
class RestoreSettings:
    """What decided a restoration (written into every run record); ``model``: name and sha256 of the model file
    behind a learned denoiser (the member ``rgm`` or a family picked for the input), else None."""

    solver: str
    preset: str
    params: dict
    denoiser: str
    noise_sigma: float
    noise_estimated: bool
    seed: int
    device: str
    model: Optional[dict] = None


def estimate_noise(y: torch.Tensor) -> float:
    """Gaussian noise std of a measurement batch by Donoho's MAD rule: ``sigma = median|HH| / 0.6745`` on the
    finest diagonal Haar subband, per channel, averaged.

    Written here rather than calling scikit-image's ``estimate_sigma``, which needs PyWavelets (a compiled extra
    dependency) for what is four lines with an orthonormal Haar wavelet.
    """
    h, w = (y.shape[-2] // 2) * 2, (y.shape[-1] // 2) * 2
    if h < 2 or w < 2:
        raise UserError(f"cannot estimate the noise of a {y.shape[-2]}x{y.shape[-1]} measurement; give --sigma.")
    v = y[..., :h, :w].detach().double()
    diagonal = (v[..., 0::2, 0::2] - v[..., 0::2, 1::2] - v[..., 1::2, 0::2] + v[..., 1::2, 1::2]) / 2
    per_channel = diagonal.abs().flatten(-2).median(dim=-1).values / 0.6745
    return float(per_channel.mean())


def initial_estimate(physics: LinearPhysics, y: torch.Tensor) -> torch.Tensor:
    """The operator's cheap initial estimate (RGM: nearest replication for block-mean SR), else A^+ y."""
    own = getattr(physics, "initial_estimate", None)
    return own(y) if own is not None else physics.A_dagger(y)


def restore(
    y: torch.Tensor,
    operator: Union[LinearPhysics, str],
    *,
    image_shape: Optional[tuple[int, int, int]] = None,
    denoiser: Union[str, Denoiser] = DEFAULT_DENOISER,
    solver: Optional[str] = None,
    preset: Optional[str] = None,
    noise_sigma: Optional[float] = 0.0,
    device: Union[str, torch.device] = "cpu",
    seed: int = 0,
    ground_truth: Optional[torch.Tensor] = None,
    callback: Optional[Callback] = None,
    progress: bool = False,
    tile: Optional[int] = None,
    return_trace: bool = False,
    **overrides: Any,
) -> Union[torch.Tensor, tuple[torch.Tensor, SolverResult, RestoreSettings]]:
    """Restore ``x`` from ``y = A x + n`` with a denoiser prior inside a splitting solver.

    :param y: measurement, (C', H', W') or (B, C', H', W'), roughly in [0, 1].
    :param operator: a ``LinearPhysics`` (e.g. from ``operators.build``) or a spec string with ``image_shape``.
    :param image_shape: (C, H, W) of the image, needed only when ``operator`` is a spec string.
    :param denoiser: a registry name (``pnprgm.denoisers.names()``), a model path, or a Denoiser.
    :param solver: ``drs``, ``admm``, ``hqs`` or ``rgm-drs`` (default: the preset's, else ``drs``).
    :param preset: preset name (default: the task's preset for the solver).
    :param noise_sigma: measurement noise std in [0, 1] units; None estimates it from y.
    :param device: torch device.
    :param seed: seed of every random choice (re-noising, latent z).
    :param ground_truth: optional clean image for PSNR in the trace.
    :param callback: ``callback(k, x_k, record)`` after each iteration.
    :param progress: progress bar over iterations.
    :param tile: apply the denoiser on overlapping tiles of this size (bounded memory).
    :param return_trace: also return the solver result (trace) and the resolved settings.
    :param overrides: solver parameters overriding the preset one by one (e.g. ``iterations=12``).
    :returns: the restored image (same batching as y), or ``(image, result, settings)``.
    """
    device = resolve_device(device)
    single = y.dim() == 3
    y = (y[None] if single else y).to(device=device, dtype=torch.float32)
    physics = _as_physics(operator, image_shape, device)
    spec = getattr(physics, "spec", None)
    chosen_solver = solver or (presets.registry.get(preset).solver if preset else "drs")
    # A user's own LinearPhysics has no spec (so no task): it runs with the solver's defaults unless a preset is named.
    chosen = presets.resolve(preset, solver=chosen_solver, spec=spec or "") if preset or spec else None
    params = {**(dict(chosen.params) if chosen else {}), **overrides}
    algorithm = solvers.build(chosen_solver, params)
    estimated = noise_sigma is None
    if not estimated:
        from pnprgm.measurement import check_noise_sigma

        check_noise_sigma(noise_sigma, "noise_sigma")
    elif not bool(torch.isfinite(y).all()):
        raise UserError("the measurement holds NaN or infinite values; check the input.")
    sigma_n = estimate_noise(y) if estimated else float(noise_sigma)
    channels = (getattr(physics, "in_shape", None) or (y.shape[1],))[0]
    if isinstance(denoiser, str):
        denoiser = presets.denoiser_for(chosen, denoiser)
    model = denoisers.build(denoiser, channels=channels, device=device, seed=seed)
    if tile:
        model = denoisers.TiledDenoiser(model, tile=tile, overlap=max(8, tile // 8))
    generator = torch.Generator(device=device).manual_seed(seed)
    x0 = initial_estimate(physics, y)
    if ground_truth is not None:
        ground_truth = (ground_truth[None] if ground_truth.dim() == 3 else ground_truth).to(x0)
    result = algorithm.solve(y, physics, model, x0, noise_sigma=sigma_n, generator=generator,
                             ground_truth=ground_truth, callback=callback, progress=progress)
    x = result.x.clamp(0, 1)
    x = x[0] if single else x
    if not return_trace:
        return x
    settings = RestoreSettings(
        solver=chosen_solver, preset=_preset_name(chosen, chosen_solver, spec), params=_plain(algorithm.config),
        denoiser=denoiser if isinstance(denoiser, str) else type(denoiser).__name__,
        noise_sigma=sigma_n, noise_estimated=estimated, seed=seed, device=str(device),
        model=_model_behind(denoiser, channels),
    )
    return x, result, settings


def _model_behind(denoiser: Union[str, Denoiser], channels: int) -> Optional[dict]:
    """The model file (name, sha256) that ran, when the denoiser is a learned model given by name or path."""
    if not isinstance(denoiser, str):
        return None
    try:
        from pnprgm.models import model_behind
    except ImportError:  # the learned-model modules are optional for classical use
        return None
    return model_behind(denoiser, channels)


@dataclass
class SampleSet:
    """Several restorations of one measurement with different seeds."""

    mean: torch.Tensor
    std: torch.Tensor
    images: list[torch.Tensor]
    results: list[SolverResult]
    settings: RestoreSettings


def restore_samples(y: torch.Tensor, operator: Union[LinearPhysics, str], *, samples: int, seed: int = 0,
                    **kwargs: Any) -> SampleSet:
    """``samples`` restorations with seeds ``seed, seed+1, ...``: their mean and per-pixel std.

    The std map shows where the prior (random z, re-noising), not the data, decided the result.
    Other keyword arguments are those of :func:`restore`.
    """
    if samples < 1:
        raise UserError(f"samples must be at least 1, got {samples}.")
    runs = [restore(y, operator, seed=seed + i, return_trace=True, **kwargs) for i in range(samples)]
    stack = torch.stack([image for image, _, _ in runs])
    return SampleSet(mean=stack.mean(0), std=stack.std(0, unbiased=False), images=list(stack),
                     results=[result for _, result, _ in runs], settings=runs[0][2])


def _as_physics(operator: Union[LinearPhysics, str], image_shape, device) -> LinearPhysics:
    if isinstance(operator, LinearPhysics):
        return operator.to(device)
    if isinstance(operator, str):
        if image_shape is None:
            raise UserError("restore() needs image_shape=(C, H, W) when the operator is given as a spec string.")
        import operators

        return operators.build(operator, tuple(image_shape), device=device)
    raise UserError(f"operator must be a LinearPhysics or a spec string, not {type(operator).__name__}.")


def _preset_name(chosen, solver: str, spec: str) -> str:
    if chosen is None:
        return "(none)"
    for entry in presets.registry.entries():
        if entry.obj is chosen:
            return entry.name
    return f"{presets.task_of_spec(spec)}-{solver}"


def _plain(config) -> dict:
    from pnprgm.config import to_dict

    return to_dict(config)
