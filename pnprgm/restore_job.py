"""Restore files and folders: the library function behind ``pnprgm restore``.

Each input is restored independently: a bad file gets a one-line error and the others are still restored.
Outputs (image, optional uncertainty map, JSON run record) are written atomically beside nothing else than
themselves in the output folder; inputs are never overwritten.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from pnprgm import io
from pnprgm.errors import UserError


@dataclass(frozen=True)
class RestoreJob:
    """Everything ``pnprgm restore`` was asked to do.

    :param inputs: image files or folders (a measurement sidecar beside an image is used automatically).
    :param outdir: output folder.
    :param operator: operator spec; None: read it from each input's sidecar.
    :param image_size: (H, W) of the image to restore when it cannot be inferred (no sidecar).
    :param denoiser: denoiser name or model path.
    :param solver: solver name (None: the preset's, else drs).
    :param preset: preset name (None: the task's default).
    :param noise_sigma: measurement noise std; None: from the sidecar, else estimated from the image.
    :param samples: number of restorations with different seeds (mean and std map are written).
    :param tile: denoiser tile size in pixels (None: whole image).
    :param seed: base seed.
    :param device: torch device name.
    :param overrides: solver parameters overriding the preset.
    """

    inputs: tuple[str, ...]
    outdir: str
    operator: Optional[str] = None
    image_size: Optional[tuple[int, int]] = None
    denoiser: str = "rgm"
    solver: Optional[str] = None
    preset: Optional[str] = None
    noise_sigma: Optional[float] = None
    samples: int = 1
    tile: Optional[int] = None
    seed: int = 0
    device: str = "cpu"
    overrides: dict = field(default_factory=dict)


@dataclass
class JobReport:
    """Written files and per-input errors."""

    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def run_restore_job(job: RestoreJob, *, on_error: Callable[[str], None] = print, progress: bool = True) -> JobReport:
    """Restore every input of ``job``; errors are reported per file and do not stop the others."""
    from tqdm.auto import tqdm

    if job.operator is not None:
        import operators

        operators.parse(job.operator)  # a bad spec fails once, before any work
    report = JobReport()
    files = io.list_images(job.inputs)
    if not files:
        raise UserError(f"no images found in {', '.join(job.inputs)}; give PNG/JPEG/TIFF/BMP files or folders.")
    outdir = Path(job.outdir)
    for path in tqdm(files, desc="restore", unit="image", disable=not progress):
        try:
            report.written.extend(_restore_one(path, job, outdir, files, progress))
        except UserError as err:
            message = f"{path}: {err}"
            report.errors.append(message)
            on_error(f"error: {message}")
    return report


def _restore_one(path: Path, job: RestoreJob, outdir: Path, protect: list[Path], progress: bool) -> list[Path]:
    from pnprgm.restoration import restore_samples

    start = time.perf_counter()
    y, physics, noise_sigma, source = _load_problem(path, job)
    kwargs = dict(denoiser=job.denoiser, solver=job.solver, preset=job.preset, noise_sigma=noise_sigma,
                  device=job.device, tile=job.tile, progress=progress, **job.overrides)
    drawn = restore_samples(y, physics, samples=job.samples, seed=job.seed, **kwargs)
    x, result, settings = drawn.mean, drawn.results[0], drawn.settings
    std = drawn.std if job.samples > 1 else None
    written = []
    stem = path.stem
    written.append(io.write_image(outdir / f"{stem}.png", x, protect=protect))
    if std is not None:
        # One channel (the mean std over colours), scaled so that white is the largest std (recorded in the JSON).
        std_map = std[0].mean(0, keepdim=True)
        scale = float(std_map.max().clamp_min(1e-8))
        written.append(io.write_image(outdir / f"{stem}_std.png", std_map / scale, protect=protect))
    record = {
        "input": str(path), "input_sha256": io.sha256_file(path), "output": str(written[0]),
        "operator": getattr(physics, "spec", None), "image_shape": list(x.shape[-3:]), "measurement_shape": list(y.shape[-3:]),
        "source": source, "settings": dataclasses.asdict(settings),
        "samples": job.samples, "std_map": None if std is None else {"file": str(written[1]), "white_is_std": scale, "mean": float(std.mean())},
        "trace": result.trace_dicts(), "seconds": time.perf_counter() - start, "versions": io.versions(),
        "job": {**dataclasses.asdict(job), "inputs": list(job.inputs)},
    }
    written.append(io.write_json(outdir / f"{stem}.json", record, protect=protect))
    return written


def _load_problem(path: Path, job: RestoreJob):
    """(y, operator, noise sigma, source info) from the sidecar beside ``path`` or from the job's options."""
    from pnprgm.measurement import load_measurement

    measurement = load_measurement(path, device=job.device) if job.operator is None else None
    if measurement is not None:
        sigma = job.noise_sigma if job.noise_sigma is not None else measurement.noise_sigma
        return measurement.y, measurement.operator, sigma, dataclasses.asdict(measurement.source) if dataclasses.is_dataclass(measurement.source) else measurement.source
    if job.operator is None:
        raise UserError("no measurement sidecar beside this image; pass --operator SPEC (pnprgm operators lists them).")
    import operators

    y = io.read_image(path)[None]
    shape = image_shape_for(job.operator, tuple(y.shape[1:]), job.image_size)
    physics = operators.build(job.operator, shape, device=job.device)
    if tuple(physics.A(torch.zeros((1, *shape), device=job.device)).shape[1:]) != tuple(y.shape[1:]):
        raise UserError(f"image of shape {tuple(y.shape[1:])} is not a measurement of {job.operator!r} for a {shape} image; pass --size HxW.")
    return y, physics, job.noise_sigma, {"image": str(path)}


def image_shape_for(spec: str, measurement_shape: tuple[int, int, int], size: Optional[tuple[int, int]] = None) -> tuple[int, int, int]:
    """Image shape (C, H, W) whose measurement under ``spec`` has ``measurement_shape``.

    The channel count and scale factor are read from the operator itself at a probe size; ``size`` overrides H, W.
    """
    import operators

    channels_out, height, width = measurement_shape
    probe = 96
    for channels in (3, 1):
        try:
            out = operators.build(spec, (channels, probe, probe)).out_shape
        except UserError:
            continue
        if out[0] == channels_out:
            if size is not None:
                return (channels, int(size[0]), int(size[1]))
            return (channels, round(height * probe / out[1]), round(width * probe / out[2]))
    raise UserError(f"a {channels_out}-channel image cannot be a measurement of {spec!r}; check --operator.")

