"""RGM's T-step sampler and sample grids.

Unconditioned processes (ddpm, sr) start from the process's pure-noise ``x_T``; for i = T-1..0:
``x0 = G(x, i, z)`` with a fresh z, ``x = process.step_back(x0, i)`` (the official re-degradation with noise
factor 0.999); the last G output is returned. Conditioned processes (denoise, operator) restore degraded
versions of given clean images in one step.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from pnprgm.errors import UserError
from pnprgm.training.processes import ForwardProcess, nearest_upsample


def _forked(device: torch.device):
    """Keep the caller's global RNG state: sampling seeds its own stream."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


#: most pixels ``sample`` draws from noise in one batch (64 samples of 512x512; a 4096x4096 one)
MAX_NOISE_PIXELS = 2**24


@torch.no_grad()
def sample_from_noise(generator: nn.Module, process: ForwardProcess, n: int, shape: tuple[int, int, int],
                      *, seed: int = 0, device: str | torch.device = "cpu") -> torch.Tensor:
    """``n`` images (in [0, 1]) drawn by the T-step sampler; the global RNG state is left untouched."""
    device = torch.device(device)
    with _forked(device):
        torch.manual_seed(seed)
        x = process.init_sample(n, shape).to(device)
        x0 = x
        for i in reversed(range(process.T)):
            t = torch.full((n,), i, dtype=torch.long, device=device)
            z = torch.randn(n, generator.nz, device=device)
            x0 = generator(x, t, z)
            x = process.step_back(x0, i)
    return ((x0 + 1) / 2).clamp(0, 1)


@torch.no_grad()
def restore_degraded(generator: nn.Module, process: ForwardProcess, clean01: torch.Tensor, *, sigma01: Optional[float],
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Degrade clean images (in [0, 1]) at the validation level and restore them in one generator step.

    :returns: ``(generator input, restoration)``, both in [0, 1] (the input is shown as the model sees it).
    """
    device = clean01.device
    with _forked(device):
        torch.manual_seed(seed)
        g_in, level = process.validation_input(2 * clean01 - 1, sigma01)
        z = torch.randn(clean01.shape[0], generator.nz, device=device)
        x0 = generator(g_in, level, z)
    return ((g_in + 1) / 2).clamp(0, 1), ((x0 + 1) / 2).clamp(0, 1)


@torch.no_grad()
def super_resolve(generator: nn.Module, process: ForwardProcess, low01: torch.Tensor, factor: int, *,
                  seed: int = 0) -> torch.Tensor:
    """Super-resolve block-mean low-resolution images with an ``sr``-process model, through its own levels.

    A ``factor = r^d`` block mean of x0 is what level ``t = 2d`` of the process keeps of the image, so the sampler
    starts there: ``x_t = a_d up(y) + r^d s_d downup_d(eps)`` (up: nearest, y in [-1, 1]), then runs
    ``i = t-1..0`` as :func:`sample_from_noise`, and finally restores the measured block means exactly
    (``x += up(y - blockmean(x))``).

    :param low01: (B, C, h, w) low-resolution images in [0, 1].
    :param factor: upscaling factor, a power of the process's block size up to its deepest level.
    :returns: (B, C, factor h, factor w) images in [0, 1].
    """
    if getattr(process, "name", "") != "sr":
        raise UserError(f"super-resolution through the levels needs an sr-process model; this one is {process.name!r}.")
    scale, d = process.scale, 0
    while scale ** d < factor:
        d += 1
    if scale ** d != factor or not 1 <= d <= process.T // 2:
        choices = ", ".join(str(scale ** k) for k in range(1, process.T // 2 + 1))
        raise UserError(f"this sr model upscales by {choices}; got {factor}.")
    device = low01.device
    low = 2 * low01 - 1
    up = nearest_upsample(low, factor)
    n, t0 = low.shape[0], 2 * d
    with _forked(device):
        torch.manual_seed(seed)
        levels = torch.full((n,), d, dtype=torch.long, device=device)
        noise = process.downup(torch.randn_like(up), levels)
        x = process.a[d].to(up) * up + process.s_sample[d].to(up) * noise
        x0 = x
        for i in reversed(range(t0)):
            t = torch.full((n,), i, dtype=torch.long, device=device)
            z = torch.randn(n, generator.nz, device=device)
            x0 = generator(x, t, z)
            x = process.step_back(x0, i)
    block_means = torch.nn.functional.avg_pool2d(x0, factor)
    x0 = x0 + nearest_upsample(low - block_means, factor)
    return ((x0 + 1) / 2).clamp(0, 1)


def grid(images: torch.Tensor, nrow: Optional[int] = None, padding: int = 2) -> torch.Tensor:
    """Tile (B, C, H, W) images into one (C, H', W') image."""
    from torchvision.utils import make_grid

    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    out = make_grid(images.detach().cpu().clamp(0, 1), nrow=nrow, padding=padding, pad_value=1.0)
    return out[:1] if images.shape[1] == 1 else out


def model_process_config(generator: nn.Module):
    """The forward process config a generator was trained with (``generator.process``; official models: ddpm)."""
    from pnprgm.config import build_strict
    from pnprgm.training.config import ProcessConfig

    config = dict(getattr(generator, "process", None) or {})
    if config.get("name") in ("denoise", "operator") and config.get("noise_min") == 0:
        # the GPU recipe trains plain denoisers from noise 0 (train-denoisers); a process config, made for RGM
        # training, needs a positive lower end (its fidelity divides by sigma^2): 1/255, the denoise default
        config["noise_min"] = min(1 / 255, float(config.get("noise_max") or 1 / 255))
    if not config:
        schedule = generator.schedule
        config = {"name": "ddpm", "T": schedule.T, "beta_min": schedule.beta_min, "beta_max": schedule.beta_max}
    return build_strict(ProcessConfig, config, what="process")


def checked_noise(process_config, noise: Optional[float], default: float, *,
                  trained_low: Optional[float] = None) -> Optional[float]:
    """The noise std a restoration grid measures with: ``noise`` if the model was trained at it, else an error (the
    process would clamp it to the trained range without a word); without ``noise``, ``default`` clamped to that range.
    None for the ddpm and sr processes, whose noise comes from their schedules (``noise`` is then an error).

    :param trained_low: the lower end the model was really trained from, where the process config had to raise it
        (the GPU recipe's 0: :func:`model_process_config`)."""
    from pnprgm.rgm.restorer import above_range, describe_noise
    from pnprgm.training.config import resolve_process

    trained = resolve_process(process_config)
    if trained.name not in ("denoise", "operator"):
        if noise is not None:
            raise UserError(f"this model was trained on the {trained.name} process, whose noise comes from its "
                            f"schedule; remove --noise.")
        return None
    if noise == 0:
        raise UserError("--noise 0 leaves nothing to restore; give a noise std > 0.")
    low = float(trained.noise_min if trained_low is None else trained_low)
    high = float(trained.noise_max)
    if noise is None:
        return min(max(default, low), high)
    if noise < low * (1 - 1e-6) or above_range(noise, (low, high)):
        raise UserError(f"this model was trained at noise std {describe_noise((low, high))}; give --noise within that "
                        f"range (got {noise:.4g}).")
    return noise


#: Keys of every GRID.json this command writes (they mark the pair as replaceable by it).
GRID_RECORD_KEYS = frozenset({"model", "model_sha256", "process", "mode", "rows", "versions"})


def check_grid_outputs(out: Path, *, overwrite: bool = False) -> None:
    """A :class:`UserError` before any work when ``out`` (an image name) or its ``.json`` sidecar cannot be written or
    hold files ``pnprgm sample`` did not write (unless ``overwrite``)."""
    from pnprgm.io import IMAGE_SUFFIXES, check_writable, read_json_object, refuse_foreign, sha256_file

    if out.suffix.lower() not in IMAGE_SUFFIXES:
        # ".png" is a hidden file's name, without a suffix
        fix = f"give it a name before {out.name}" if out.name.lower() in IMAGE_SUFFIXES else "end it in .png or .jpg"
        raise UserError(f"-o names the grid image; {fix} (e.g. samples.png; got {out}).")
    sidecar = out.with_suffix(".json")
    record = read_json_object(sidecar)
    ours = record is not None and GRID_RECORD_KEYS <= set(record)

    def grid_is_ours(path: Path) -> bool:  # grids written before output_sha256 was recorded count as ours
        # the record is renamed into place before its grid: a run stopped between the two leaves the grid it was
        # replacing, which the record names too
        return ours and ("output_sha256" not in record
                         or sha256_file(path) in (record["output_sha256"], record.get("replaced_output_sha256")))

    other = Path(record["output"]).name if ours and isinstance(record.get("output"), str) else out.name
    if other != out.name and (out.with_name(other)).exists() and not overwrite:
        raise UserError(f"{sidecar} is the record of the grid {other}; name this grid otherwise (e.g. "
                        f"{out.stem}-2{out.suffix}), or pass --overwrite.")
    refuse_foreign(out, owned=grid_is_ours, tool="pnprgm sample", overwrite=overwrite)
    refuse_foreign(sidecar, owned=lambda path: ours, tool="pnprgm sample", overwrite=overwrite)
    check_writable(out)


def _without_small(used: list[Path], images: list[torch.Tensor], least: int) -> tuple[list[Path], list[torch.Tensor]]:
    """The inputs of at least ``least`` pixels on each side (the model's size multiple); each smaller one is named in a
    warning and left out of the grid (the others still make it); none left is a :class:`UserError`."""
    import warnings

    kept = [(path, image) for path, image in zip(used, images) if min(image.shape[1:]) >= least]
    for path, image in zip(used, images):
        if min(image.shape[1:]) < least:
            warnings.warn(f"{path} ({image.shape[1]}x{image.shape[2]} px) is left out of the grid: this model needs "
                          f"at least {least} pixels on each side.", stacklevel=2)
    if not kept:
        raise UserError(f"input images must be at least {least} pixels on each side for this model.")
    return [path for path, _ in kept], [image for _, image in kept]


def _read_inputs(files: list[Path], count: int) -> tuple[list[Path], list[torch.Tensor]]:
    """The first ``count`` ``--input`` images that can be read, with their pixels (each decoded once); each unreadable
    one met on the way is named in a warning and left out of the grid (the others still make it); none readable is
    the first one's error. Images after the first ``count`` readable ones are not read."""
    from pnprgm.io import read_image

    paths, images, first_error = [], [], None
    for path in files:
        if len(paths) == count:
            break
        try:
            image = read_image(path)
        except UserError as err:
            first_error = first_error or err
            warnings.warn(f"{err} It is left out of the grid.", stacklevel=3)
            continue
        paths.append(path)
        images.append(image)
    if files and not paths:
        raise first_error
    return paths, images


def _check_same_operator(generator, physics, shape: tuple[int, int, int], operator: str) -> None:
    """A :class:`UserError` when ``--operator`` acts otherwise than the operator the model was trained for (compared
    by action on images of ``shape``, as restore does; a model whose own operator is code accepts the user's)."""
    from pnprgm.rgm.restorer import MeasurementRestorer

    device = next(generator.parameters()).device  # the restorer moves the generator to its device
    if not MeasurementRestorer(generator, device=device).measures(physics, shape):
        trained = model_process_config(generator).operator
        raise UserError(f"--operator {operator} acts otherwise than {trained}, the operator the model was trained "
                        f"for: drop --operator (the model's is used), or train a model for {operator}.")


def sample_model_grid(model: str, out: str | Path, *, count: int = 16, size: Optional[int] = None,
                      inputs: Sequence[str | Path] = (), noise: Optional[float] = None, nrow: Optional[int] = None,
                      seed: int = 0, device: str | torch.device = "cpu", upscale: Optional[int] = None,
                      operator: Optional[str] = None, overwrite: bool = False) -> Path:
    """Write a grid of samples of a model file (``pnprgm sample``) and its JSON sidecar; returns the grid path.

    :param model: a shipped model name (``pnprgm models``), our model file, or ``PATH#CONFIG`` for an official
        checkpoint.
    :param out: the grid image to write (PNG): every sample (or input row) tiled into one picture.
    :param count: number of samples (or of inputs used).
    :param size: sample size (default: the training crop); for inputs, the centre-crop size (default up to 256).
    :param inputs: clean images/folders to degrade and restore (required by denoise/operator models).
    :param noise: noise std in [0, 1] units for restoring inputs (default: the training validation level).
    :param nrow: images per row.
    :param seed: seed of noise and latents.
    :param device: torch device.
    :param upscale: sr models: the inputs are low-resolution images, super-resolved by this factor through the
        process's levels (:func:`super_resolve`); the grid rows are the nearest-upsampled input and the result.
    :param operator: the operator of an operator-process model, typed by the user: replaces the one in the model
        file. A model file's own operator is used only when it is a registry spec; one naming code
        (``module:callable``) is never imported from the file, only from this argument.
    :param overwrite: replace ``out`` or its sidecar when this command did not write them (default: refuse, before
        any work).
    """
    from pnprgm.device import resolve_device
    from pnprgm import io
    from pnprgm.io import centre_crop, list_images, no_images_found, refuse_inputs, sha256_file, versions
    from pnprgm.denoisers.rgm import size_multiple
    from pnprgm.rgm.restorer import operator_process
    from pnprgm.rgm.models import load_generator_file, resolve
    from pnprgm.training.data import convert_channels
    from pnprgm.training.processes import build_process, process_size_multiple

    if count < 1:
        raise UserError(f"-n must be >= 1; got {count}.")
    if size is not None and size < 1:
        raise UserError(f"--size must be >= 1 pixel; got {size}.")
    if nrow is not None and nrow < 1:
        raise UserError(f"--nrow must be >= 1; got {nrow}.")
    if noise is not None and not 0 <= noise <= 1:
        raise UserError(f"--noise must be a std in [0, 1] units (e.g. 0.1 or 25/255); got {noise}.")
    # a shipped model name (pnprgm models; hash-checked, found beside the package from any folder) or a file
    found = resolve(model)
    files = list_images(inputs) if inputs else []
    if inputs and not files:
        raise no_images_found(inputs)
    protect = [*found.files_read, *files]
    # what this run reads is never an output, even with --overwrite: said before the advice to pass --overwrite
    refuse_inputs([out, Path(out).with_suffix(".json")], protect)
    check_grid_outputs(Path(out), overwrite=overwrite)
    device = resolve_device(device)
    path = str(found.path)
    generator = load_generator_file(found.path, device=device, official_config=found.official_config).to(device).eval()
    config = generator.config
    channels = int(config.get("channels", config.get("num_channels", 3)))
    multiple = size_multiple(generator)
    record = dict(getattr(generator, "record", None) or {})
    process_config = operator_process(generator, operator)

    def build(config, shape, device):
        process = build_process(config, shape, device, code_operator=operator)
        if operator is not None:
            _check_same_operator(generator, process.physics(shape), shape, operator)
        return process

    train_cfg = record.get("train") or {}
    used, images = _read_inputs(files, count)
    images = [convert_channels(image, channels) for image in images]
    raw_low = (getattr(generator, "process", None) or {}).get("noise_min")
    sigma01 = checked_noise(process_config, noise, float(train_cfg.get("val_sigma", 25 / 255)),
                            trained_low=0.0 if raw_low == 0 else None)
    if sigma01 is not None and process_config.noise_min is not None and sigma01 < process_config.noise_min:
        process_config = dataclasses.replace(process_config, noise_min=sigma01)  # else the process would raise it
    if upscale is not None and not files:
        raise UserError("--upscale super-resolves --input images; give the low-resolution images with --input.")
    if upscale is not None:
        full = math.lcm(multiple, process_size_multiple(process_config))  # the high-resolution side's multiple
        need = full // math.gcd(full, upscale)
        used, images = _without_small(used, images, need)
        side = min(min(im.shape[1:]) for im in images) // need * need
        low = torch.stack([centre_crop(im, side) for im in images]).to(device)  # as restore mode crops
        process = build(process_config, (channels, side * upscale, side * upscale), device)
        restored = super_resolve(generator, process, low, upscale, seed=seed)
        nearest = nearest_upsample(low, upscale)
        picture = grid(torch.cat([nearest, restored]), nrow=nrow or low.shape[0])
        mode, side = "super-resolve", side * upscale
    elif files:
        multiple = math.lcm(multiple, process_size_multiple(process_config))
        used, images = _without_small(used, images, multiple)
        side = min(size or 256, *(min(im.shape[1:]) for im in images))
        side = side // multiple * multiple
        if side < multiple:  # every input is large enough (above): --size is what is too small
            raise UserError(f"--size {size} is below this model's {multiple}-pixel multiple; give --size {multiple} "
                            f"or more.")
        clean = torch.stack([centre_crop(im, side) for im in images]).to(device)
        process = build(process_config, (channels, side, side), device)
        g_in, restored = restore_degraded(generator, process, clean, sigma01=sigma01, seed=seed)
        rows = [g_in, restored, clean] if g_in.shape == clean.shape else [restored, clean]
        picture = grid(torch.cat(rows), nrow=nrow or clean.shape[0])
        mode = "restore"
    else:
        side = size or int(train_cfg.get("crop", config.get("image_size", 64)))
        multiple = math.lcm(multiple, process_size_multiple(process_config))
        if side % multiple:
            raise UserError(f"--size must be a multiple of {multiple} for this model; got {side}.")
        if count * side * side > MAX_NOISE_PIXELS:  # drawn in one batch: a typo must not ask for 375 GB
            raise UserError(f"-n {count} samples of {side}x{side} px are {count * side * side / 1e6:.3g} Mpx in one "
                            f"batch, more than the {MAX_NOISE_PIXELS / 1e6:.3g} Mpx this command draws; give a smaller "
                            f"-n or --size.")
        process = build(process_config, (channels, side, side), device)
        if process.conditioned:
            raise UserError(f"this model restores {process.name} degradations; give --input images to degrade and restore.")
        picture = grid(sample_from_noise(generator, process, count, (channels, side, side), seed=seed, device=device),
                       nrow=nrow)
        mode = "noise"
    out = Path(out)
    # the record (which vouches for the grid by its sha256) is renamed into place first: a run killed between the
    # two renames leaves a record whose grid is missing, never a grid the next run refuses as not its own
    staged = [(io.stage(out, io.image_writer(out, picture), protect=protect), out)]
    try:
        record = {
            "output": out.name, "output_sha256": sha256_file(staged[0][0]),
            "replaced_output_sha256": sha256_file(out) if io.is_file(out) else None, "model": str(model),
            "model_sha256": sha256_file(path), "process": process.config(), "mode": mode,
            "count": count if mode == "noise" else len(used), "size": side, "seed": seed,
            "noise": sigma01 if mode == "restore" else None, "inputs": [str(f) for f in used], "upscale": upscale,
            "rows": {"restore": "model input, restoration, original", "super-resolve": "nearest-upsampled input, "
                     "restoration", "noise": "samples"}[mode], "versions": versions(),
        }
        staged.insert(0, (io.stage(out.with_suffix(".json"), io.json_writer(record), protect=protect),
                          out.with_suffix(".json")))
    except BaseException:
        io.discard(staged)
        raise
    io.commit(staged)
    return out

