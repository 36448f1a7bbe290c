"""``restore``: the library entry point of PnP restoration (the CLI's ``restore`` command calls it).

It picks the preset for the task and solver, builds the denoiser, starts from the operator's initial
estimate, runs the solver and returns the image in [0, 1] at the operator's image size. The same in two steps:
:func:`prepare_restoration` (the choices and the denoiser) and :meth:`RestorationPlan.run` (per seed).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
from deepinv.models import Denoiser
from deepinv.physics import LinearPhysics

from pnprgm import denoisers, presets, solvers
from pnprgm.config import build_strict, check_seed, field_types, to_dict
from pnprgm.denoisers.pipeline import DenoiserSettings, denoiser_pipeline
from pnprgm.denoisers.tiled import check_tile
from pnprgm.device import resolve_device
from pnprgm.dithering import DitherSettings, dither
from pnprgm.errors import UserError
from pnprgm.solvers.base import Callback, PnPSolver, SolverResult

DEFAULT_DENOISER = presets.DEFAULT_DENOISER


@dataclass(frozen=True)
class RestoreSettings:
    """What decided a restoration (written into every run record); ``model``: name and sha256 of the model file
    behind a learned denoiser (the member ``default`` or a family picked for the input), else None."""

    solver: str
    preset: str
    params: dict
    denoiser: str
    noise_sigma: float
    noise_estimated: bool
    seed: int
    device: str
    model: Optional[dict] = None


@dataclass(frozen=True)
class Algorithm:
    """What runs on a measurement: the solver (iterations and schedules), how its denoiser calls are wrapped
    (:class:`~pnprgm.denoisers.pipeline.DenoiserSettings`) and the post-processing of its estimate
    (:class:`~pnprgm.dithering.DitherSettings`)."""

    solver: PnPSolver
    denoiser: DenoiserSettings = DenoiserSettings()
    post: DitherSettings = DitherSettings()

    def params(self) -> dict[str, Any]:
        """Every parameter value, flat (as presets and ``--set`` give them)."""
        if self.solver.stochastic:
            return to_dict(self.solver.config)
        return {**to_dict(self.solver.config), **to_dict(self.denoiser), **to_dict(self.post)}

    def run(self, y: torch.Tensor, physics: LinearPhysics, model: Denoiser, x0: torch.Tensor, *, noise_sigma: float,
            generator: Optional[torch.Generator] = None, tile: Optional[int] = None,
            ground_truth: Optional[torch.Tensor] = None, callback: Optional[Callback] = None,
            progress: bool = False) -> SolverResult:
        """The solver from ``x0`` with the denoiser pipeline around ``model``, then the post-processing;
        ``generator`` (default: seeded with 0) draws every random choice in that order (symmetry, re-noising,
        dithering)."""
        if generator is None:
            generator = torch.Generator(device=y.device).manual_seed(0)
        pipeline = denoiser_pipeline(model, self.denoiser, tile=tile, generator=generator)
        result = self.solver.solve(y, physics, pipeline, x0, noise_sigma=noise_sigma, generator=generator,
                                   ground_truth=ground_truth, callback=callback, progress=progress)
        result.x = dither(result.x, physics, self.post, noise_sigma=noise_sigma, generator=generator)
        return result


#: The settings a PnP restoration takes beside its solver's: the denoiser calls', then the post-processing.
WRAPPER_SETTINGS = (DenoiserSettings, DitherSettings)


def configure(solver: str, params: Optional[dict[str, Any]] = None) -> Algorithm:
    """The :class:`Algorithm` of ``solver`` with flat parameter values (a preset's, ``--set``'s): each key goes to the
    solver, the denoiser settings or the post-processing; unknown keys and bad values are one-line errors."""
    params = dict(params or {})
    solver_class = solvers.registry.get(solver)
    own = field_types(solver_class.Config)
    wrapper_keys = {key: cls for cls in WRAPPER_SETTINGS for key in field_types(cls)}
    if solver_class.stochastic:
        refused = sorted(key for key in params if key in wrapper_keys and key not in own)
        if refused:
            raise UserError(f"{', '.join(refused)} do{'es' if len(refused) == 1 else ''} not apply to the {solver} solver "
                            f"(its loop draws fresh latents and re-noises at every step); drop "
                            f"{'it' if len(refused) == 1 else 'them'} or use --solver drs.")
        return Algorithm(solvers.build(solver, params))
    unknown = sorted(set(params) - set(own) - set(wrapper_keys))
    if unknown:
        raise UserError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for "
                        f"solver {solver!r}; valid: {', '.join([*own, *wrapper_keys])}.")
    parts = {cls: {key: value for key, value in params.items() if wrapper_keys.get(key) is cls} for cls in WRAPPER_SETTINGS}
    return Algorithm(solvers.build(solver, {key: value for key, value in params.items() if key in own}),
                     build_strict(DenoiserSettings, parts[DenoiserSettings], what=f"solver {solver!r}"),
                     build_strict(DitherSettings, parts[DitherSettings], what=f"solver {solver!r}"))


def estimate_noise(y: torch.Tensor, observed: Optional[torch.Tensor] = None) -> float:
    """Gaussian noise std of a measurement batch by Donoho's MAD rule: ``sigma = median|HH| / 0.6745`` on the
    finest diagonal Haar subband, per channel, averaged; with ``observed`` (y's shape, 1 where a pixel is measured,
    e.g. ``A 1`` of a mask) only over 2x2 blocks whose four pixels are all measured (a missing pixel's 0 beside
    measured ones is an edge, not noise: half the pixels missing gave 0.28 for noise of 0.02).

    Written here rather than calling scikit-image's ``estimate_sigma``, which needs PyWavelets (a compiled extra
    dependency) for what is four lines with an orthonormal Haar wavelet.
    """
    h, w = (y.shape[-2] // 2) * 2, (y.shape[-1] // 2) * 2
    if h < 2 or w < 2:
        raise UserError(f"cannot estimate the noise of a {y.shape[-2]}x{y.shape[-1]} measurement; give it (--noise, or noise_sigma=).")
    v = y[..., :h, :w].detach().double()
    diagonal = (v[..., 0::2, 0::2] - v[..., 0::2, 1::2] - v[..., 1::2, 0::2] + v[..., 1::2, 1::2]) / 2
    flat = diagonal.abs().flatten(-2)
    if observed is not None:
        seen = observed.expand_as(y)[..., :h, :w] > 0.99
        whole = (seen[..., 0::2, 0::2] & seen[..., 0::2, 1::2] & seen[..., 1::2, 0::2] & seen[..., 1::2, 1::2]).flatten(-2)
        if int(whole.sum(-1).min()) < 8:  # all blocks would bring back the bias of the missing pixels
            raise UserError("too few fully measured 2x2 pixel blocks to estimate the measurement's noise; give it "
                            "(--noise, or noise_sigma=).")
        return float(torch.stack([row[keep].median() for row, keep in zip(flat.reshape(-1, flat.shape[-1]),
                                                                           whole.reshape(-1, whole.shape[-1]))]
                                 ).mean() / 0.6745)
    return float((flat.median(dim=-1).values / 0.6745).mean())


def observed_pixels(physics: LinearPhysics, y: torch.Tensor) -> Optional[torch.Tensor]:
    """``A 1`` for an operator that keeps the image's shape (a mask: 1 where measured, 0 where missing; a blur:
    1), else None: what :func:`estimate_noise` may trust."""
    try:
        with torch.no_grad():
            ones = torch.ones_like(physics.A_adjoint(y))
            kept = physics.A(ones)
    except Exception:  # an operator that cannot say: estimate over every pixel
        return None
    return kept if kept.shape == ones.shape == y.shape else None


def initial_estimate(physics: LinearPhysics, y: torch.Tensor) -> torch.Tensor:
    """The operator's cheap initial estimate (RGM: nearest replication for block-mean SR); for another operator that
    keeps the image's shape (a deepinv blur or mask), y itself; else A^+ y."""
    own = getattr(physics, "initial_estimate", None)
    if own is not None:
        return own(y)
    if physics.A_adjoint(y).shape == y.shape:
        # A^+ y divides by the operator's spectrum: for a blur it amplifies the noise at the frequencies the kernel
        # removes (a 21.8 dB measurement started at 5.4 dB, and restored to 12.3)
        return y.clone()
    return physics.A_dagger(y)


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
    :param solver: ``drs``, ``admm``, ``hqs`` or ``rgm-drs`` (default: the preset's, else ``hqs`` for motion, box
        and kernel-file blur and a deepinv ``Blur``/``BlurFFT`` of the user's, ``drs`` otherwise:
        :data:`pnprgm.presets.DEFAULT_SOLVER`, :func:`pnprgm.presets.choosing_spec`).
    :param preset: preset name (default: the task's preset for the solver; a ``LinearPhysics`` of the user's other
        than a deepinv blur has no task, so none: the solver's own defaults).
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
    plan = prepare_restoration(y, operator, image_shape=image_shape, denoiser=denoiser, solver=solver, preset=preset,
                               noise_sigma=noise_sigma, device=device, seed=seed, tile=tile, **overrides)
    x, result, settings = plan.run(ground_truth=ground_truth, callback=callback, progress=progress)
    return (x, result, settings) if return_trace else x


@dataclass(frozen=True, eq=False)
class RestorationPlan:
    """A restoration with every choice made (preset, solver settings, noise level) and its denoiser built, not yet
    run: :func:`prepare_restoration` makes it, :meth:`run` restores, once per seed. ``restore(...)`` is
    ``prepare_restoration(...).run()``; a caller that restores one measurement several times (``--samples``)
    or times the restoration alone (the benchmark) loads, and hashes, a model file once, outside the run."""

    y: torch.Tensor
    single: bool
    physics: LinearPhysics
    algorithm: Algorithm
    chosen: Optional[presets.Preset]
    solver: str
    spec: Optional[str]
    sigma_n: float
    estimated: bool
    denoiser_name: str
    model: Denoiser
    model_info: Optional[dict]
    device: torch.device
    tile: Optional[int]
    seed: int

    def run(self, seed: Optional[int] = None, *, ground_truth: Optional[torch.Tensor] = None,
            callback: Optional[Callback] = None, progress: bool = False) -> tuple[torch.Tensor, SolverResult, RestoreSettings]:
        """Restore with ``seed`` (default: the plan's; the denoiser's random streams restart from it, so the result is
        that of a denoiser built with ``seed``): ``(image, solver result, settings)``, as
        ``restore(..., return_trace=True)``."""
        seed = self.seed if seed is None else check_seed(seed)
        _reseed(self.model, seed)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        x0 = initial_estimate(self.physics, self.y)
        if ground_truth is not None:
            ground_truth = (ground_truth[None] if ground_truth.dim() == 3 else ground_truth).to(x0)
        result = self.algorithm.run(self.y, self.physics, self.model, x0, noise_sigma=self.sigma_n, generator=generator,
                                    tile=self.tile, ground_truth=ground_truth, callback=callback, progress=progress)
        if not bool(torch.isfinite(result.x).all()):  # clamp would write NaN as black and call it a restoration
            from pnprgm.rgm.restorer import ONE_STEP

            if self.solver == ONE_STEP:
                raise UserError(f"the restoration holds NaN or infinite values (the model {self.denoiser_name} "
                                f"produced them); check the model file, or report it with the command.")
            raise UserError(f"the restoration holds NaN or infinite values (the solver diverged with "
                            f"{self.denoiser_name} on {self.spec or 'this operator'}); try another --preset or solver, "
                            f"or report it with the command.")
        x = result.x.clamp(0, 1)
        x = x[0] if self.single else x
        settings = RestoreSettings(
            solver=self.solver, preset=_preset_name(self.chosen, self.solver, self.spec), params=self.algorithm.params(),
            denoiser=self.denoiser_name, noise_sigma=self.sigma_n, noise_estimated=self.estimated, seed=seed,
            device=str(self.device), model=self.model_info,
        )
        return x, result, settings


def prepare_restoration(
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
    tile: Optional[int] = None,
    **overrides: Any,
) -> RestorationPlan:
    """Every choice of :func:`restore` made, and its denoiser built (with ``seed``, also the default seed of the runs),
    without restoring: the arguments are :func:`restore`'s, less those of the run (``ground_truth``, ``callback``,
    ``progress``: given to :meth:`RestorationPlan.run`)."""
    device = resolve_device(device)
    _check_measurement(y)
    seed = check_seed(seed)
    if tile is not None:
        tile = check_tile(tile)
    single = y.dim() == 3
    y = (y[None] if single else y).to(device=device, dtype=torch.float32)
    physics = _as_physics(operator, image_shape, device)
    expected = tuple(getattr(physics, "out_shape", ()) or ())
    if expected and tuple(y.shape[1:]) != expected:
        raise UserError(f"y is {tuple(y.shape[1:])} (C, H, W) but the operator measures {expected}; give the "
                        f"measurement the operator makes, or the image_shape it was made from.")
    spec = getattr(physics, "spec", None)
    restorer = _measurement_restorer(denoiser, device=device, seed=seed)
    if restorer is not None:
        if isinstance(operator, str) and restorer.trained_for_code:
            raise UserError(f"this model was trained for the operator that the code {restorer.trained_operator!r} "
                            f"builds, which pnprgm cannot compare with {operator} without running it; give the "
                            f"LinearPhysics that code builds as the operator, or restore with a denoiser.")
        return _one_step_plan(restorer, y, single, physics, denoiser, noise_sigma=noise_sigma, device=device, seed=seed,
                              refused={"solver": solver, "preset": preset, **overrides, "tile": tile})
    # A user's own deepinv blur restores as a kernel file would; another LinearPhysics of theirs has no task: it runs
    # with the solver's defaults unless a preset is named.
    choosing = presets.choosing_spec(physics)
    chosen_solver = presets.solver_for(solver, preset, choosing)
    shown_as = spec or f"a {type(physics).__name__} of yours"
    chosen = (presets.resolve(preset, solver=chosen_solver, spec=choosing or "", shown_as=shown_as)
              if preset or choosing else None)
    params = {**(dict(chosen.params) if chosen else {}), **overrides}
    algorithm = configure(chosen_solver, params)
    sigma_n, estimated = _noise_level(y, physics, noise_sigma)
    channels = (getattr(physics, "in_shape", None) or (y.shape[1],))[0]
    if isinstance(denoiser, str):  # an old name (``rgm``, ``rgm-perceptual``...) is today's, with a notice
        denoiser = presets.denoiser_for(chosen, denoisers.canonical(denoiser))
    model = denoisers.build(denoiser, channels=channels, device=device, seed=seed)
    _check_rgm_use(model, preset=preset, solver=chosen_solver, tile=tile)
    return RestorationPlan(y=y, single=single, physics=physics, algorithm=algorithm, chosen=chosen,
                           solver=chosen_solver, spec=spec, sigma_n=sigma_n, estimated=estimated,
                           denoiser_name=denoiser if isinstance(denoiser, str) else type(denoiser).__name__, model=model,
                           model_info=_model_behind(denoiser, channels), device=device, tile=tile, seed=seed)


def _noise_level(y: torch.Tensor, physics: LinearPhysics, noise_sigma: Optional[float]) -> tuple[float, bool]:
    """``(sigma_n, estimated)``: the measurement noise std given (checked), or estimated from y's measured pixels."""
    estimated = noise_sigma is None
    if not estimated:
        from pnprgm.measurement import check_noise_sigma

        check_noise_sigma(noise_sigma, "noise_sigma")
    sigma_n = estimate_noise(y, observed_pixels(physics, y)) if estimated else float(noise_sigma)
    _check_range(y, sigma_n)
    return sigma_n, estimated


def _measurement_restorer(denoiser: Union[str, Denoiser], *, device, seed: int):
    """The one-step restorer a model of the operator process makes (:mod:`pnprgm.rgm.restorer`), or None for a
    denoiser."""
    from pnprgm.rgm.restorer import MeasurementRestorer, file_process

    if isinstance(denoiser, MeasurementRestorer):
        return denoiser
    if not isinstance(denoiser, str) or file_process(denoiser) is None:
        return None
    return MeasurementRestorer.from_file(denoiser, seed=seed, device=device)


def _one_step_plan(restorer, y: torch.Tensor, single: bool, physics: LinearPhysics, denoiser, *,
                   noise_sigma: Optional[float], device: torch.device, seed: int, refused: dict) -> "RestorationPlan":
    """The plan of a model trained for the measurement's operator: one model call, no solver (so no solver, preset,
    solver parameter or tiling applies: each is a one-line error); the noise level estimated when not given."""
    from pnprgm.rgm.restorer import ONE_STEP, OneStep, refuse_solver_options

    refuse_solver_options(refused, cli=False)
    spec = getattr(physics, "spec", None)
    image_shape = tuple(physics.A_adjoint(y).shape[1:])
    if not restorer.measures(physics, image_shape):
        raise UserError(f"this model restores measurements of {restorer.operator_spec}, and the measurement's operator "
                        f"({spec or type(physics).__name__}) acts otherwise; restore with the model's operator, or "
                        f"with a denoiser (--denoiser default).")
    sigma_n, estimated = _noise_level(y, physics, noise_sigma)
    algorithm = OneStep(restorer.model_sigma(sigma_n, estimated=estimated))
    info = restorer.model_info  # what was loaded (from_file), not what the path holds now
    name = info["name"] if info else denoiser if isinstance(denoiser, str) else type(denoiser).__name__
    return RestorationPlan(y=y, single=single, physics=physics, algorithm=algorithm, chosen=None, solver=ONE_STEP,
                           spec=spec, sigma_n=sigma_n, estimated=estimated, denoiser_name=name, model=restorer,
                           model_info=info, device=device, tile=None, seed=seed)


def _parts(model) -> list:
    """The denoiser and every module inside it (a plain callable is its only part)."""
    return list(model.modules()) if isinstance(model, torch.nn.Module) else [model]


def has_time_levels(model) -> bool:
    """True when the denoiser (or a part of it) has RGM's own stochastic restoration step (re-noise to level j,
    restore with a fresh latent): the ``stochastic_restore`` the rgm-drs solver looks for."""
    return any(getattr(part, "stochastic_restore", None) is not None for part in _parts(model))


def _check_rgm_use(model, *, preset: Optional[str], solver: str, tile: Optional[int]) -> None:
    """Refuse the uses that would silently not be RGM's: an ``official-*`` preset (levels of a time schedule) with a
    model that has no time levels, and ``--tile`` with RGM's loop on such a model (tiles would drop its stochastic
    step: the tiled denoiser has no re-noising restoration)."""
    timed = has_time_levels(model)
    if preset and str(preset).startswith("official-") and not timed:
        raise UserError(f"preset {preset!r} runs RGM's own loop over the time levels of an RGM generator, and this "
                        f"denoiser has none; give a time-conditioned model: an official checkpoint (--model netG.pth "
                        f"--model-config celebahq256) or one trained with pnprgm train --forward ddpm.")
    if tile and any(getattr(getattr(part, "generator", None), "config", {}).get("noise_input") for part in _parts(model)):
        # its noise image is seeded by z alone and a fixed latent is the same in every tile: a texture repeating
        # at the tile stride
        raise UserError("--tile would repeat the same noise image in every tile of this model (it has noise_input); "
                        "restore without --tile.")
    if tile and solver == "rgm-drs" and timed:
        raise UserError("--tile would drop RGM's stochastic restoration step (re-noising and a fresh latent per call) "
                        "in the rgm-drs solver; restore without --tile, or use --solver drs with --tile.")


def _reseed(model: torch.nn.Module, seed: int) -> None:
    """Restart the random streams of every part of ``model`` that has them (an RGM denoiser's latent z), as a
    denoiser built with ``seed`` would have them."""
    for part in _parts(model):
        reseed = getattr(part, "reseed", None)
        if callable(reseed):
            reseed(seed)


def _model_behind(denoiser: Union[str, Denoiser], channels: int) -> Optional[dict]:
    """The model file (name, sha256) that ran, when the denoiser is a learned model given by name or path."""
    from pnprgm.rgm.models import model_behind

    return model_behind(denoiser, channels) if isinstance(denoiser, str) else None


@dataclass
class SampleSet:
    """Several restorations of one measurement with different seeds."""

    mean: torch.Tensor
    std: torch.Tensor
    images: list[torch.Tensor]
    results: list[SolverResult]
    settings: RestoreSettings


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index``: ``seed + index``, wrapping past :data:`MAX_SEED` to 0 (a valid --seed near the
    top of the range must not make a later sample's seed invalid)."""
    from pnprgm.config import MAX_SEED

    return (seed + index) % (MAX_SEED + 1)


def restore_samples(y: torch.Tensor, operator: Union[LinearPhysics, str], *, samples: int, seed: int = 0,
                    on_sample: Optional[Callable[[int, int, float], None]] = None, **kwargs: Any) -> SampleSet:
    """``samples`` restorations with seeds ``seed, seed+1, ...`` (:func:`sample_seed`): their mean and per-pixel std.

    The std map shows where the prior (random z, re-noising), not the data, decided the result.
    Other keyword arguments are those of :func:`restore`. The denoiser is built once (a model file loaded and
    hashed once) and restarted from each sample's seed, so sample ``i`` equals ``restore(..., seed=sample_seed(seed, i))``.
    ``on_sample(i, samples, seconds_so_far)`` is called before sample ``i`` (0-based) starts (progress, ETA).
    """
    if samples < 1:
        raise UserError(f"samples must be at least 1, got {samples}.")
    run_args = {key: kwargs.pop(key) for key in ("ground_truth", "callback", "progress") if key in kwargs}
    kwargs.pop("return_trace", None)
    # the model is loaded (and its file hashed) once; each sample restarts its random streams from its own seed
    plan = prepare_restoration(y, operator, seed=seed, **kwargs)
    runs = []
    started = time.perf_counter()
    for i in range(samples):
        if on_sample is not None:
            on_sample(i, samples, time.perf_counter() - started)
        runs.append(plan.run(seed=sample_seed(seed, i), **run_args))
    stack = torch.stack([image for image, _, _ in runs])
    return SampleSet(mean=stack.mean(0), std=stack.std(0, unbiased=False), images=list(stack),
                     results=[result for _, result, _ in runs], settings=runs[0][2])


def _check_measurement(y: Any) -> None:
    """``y`` as restore() needs it: a float tensor (C, H, W) or (B, C, H, W) of finite values in about [0, 1]."""
    if not isinstance(y, torch.Tensor):
        hint = " (torch.from_numpy(array).permute(2, 0, 1) for an H x W x C array)" if type(y).__module__ == "numpy" else ""
        raise UserError(f"y must be a torch tensor (C, H, W) or (B, C, H, W) in [0, 1], not {type(y).__name__}{hint}.")
    if y.dim() not in (3, 4) or y.numel() == 0:
        raise UserError(f"y must be a (C, H, W) or (B, C, H, W) tensor with at least one pixel; got shape "
                        f"{tuple(y.shape)} (y[None] adds a channel axis to an H x W image).")
    if not torch.is_floating_point(y):
        raise UserError(f"y is a {y.dtype} tensor; give floats in [0, 1] (an 8-bit image: y.float() / 255, or read it "
                        f"with pnprgm.io.read_image).")
    if not bool(torch.isfinite(y).all()):
        raise UserError("y holds NaN or infinite values; check the input.")


def _check_range(y: torch.Tensor, sigma_n: float) -> None:
    """Noise takes a measurement a little outside [0, 1] (up to about 6 sigma); 0-255 values are far outside."""
    low, high, margin = float(y.min()), float(y.max()), 0.5 + 6 * min(sigma_n, 1.0)  # an estimate of 0-255 data is > 1
    if low < -margin or high > 1 + margin:
        raise UserError(f"y ranges over [{low:.3g}, {high:.3g}], too far outside [0, 1] for noise of std "
                        f"{sigma_n:.3g}; give values in [0, 1] (divide 8-bit values by 255, 16-bit by 65535).")


def _as_physics(operator: Union[LinearPhysics, str], image_shape, device) -> LinearPhysics:
    if isinstance(operator, LinearPhysics):
        return operator.to(device)
    if isinstance(operator, str):
        if image_shape is None:
            raise UserError("restore() needs image_shape=(C, H, W) when the operator is given as a spec string.")
        from pnprgm import operators

        return operators.build(operator, tuple(image_shape), device=device)
    raise UserError(f"operator must be a LinearPhysics or a spec string, not {type(operator).__name__}.")


def _preset_name(chosen, solver: str, spec: str) -> str:
    if chosen is None:
        return "(none)"
    for entry in presets.registry.entries():
        if entry.obj is chosen:
            return entry.name
    return f"{presets.task_of_spec(spec)}-{solver}"
