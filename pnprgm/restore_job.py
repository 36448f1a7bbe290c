"""Restore files and folders: the library function behind ``pnprgm restore``.

Each input is restored independently: a bad file gets a one-line error and the others are still restored.
Outputs (image, optional uncertainty map, JSON run record) never replace a file pnprgm did not write: an output
name that is taken by another file is an error for that input unless ``overwrite``. Two inputs never share an
output name (``a.png`` and ``a.tif`` give ``a_png.png`` and ``a_tif.png``). An input whose outputs and record
already exist, from the same settings, is skipped, so rerunning a killed batch continues where it stopped. The
record is written first and lists the sha256 of each image it describes, so no restored image is ever without
its record; temporaries left by a killed run are swept. Inputs are never overwritten.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional


from pnprgm import io
from pnprgm.config import FrozenDict
from pnprgm.device import available_bytes
from pnprgm.errors import UserError, differ
from pnprgm.denoisers.tiled import MIN_TILE, check_tile
from pnprgm.presets import DEFAULT_DENOISER

if TYPE_CHECKING:
    from pnprgm.rgm.restorer import OperatorModelFile

RECORD_FORMAT = "pnprgm-restore-record"

#: Peak memory per image pixel (all channels), measured on CPU with RSS for sr4 of 128..576 px squares:
#: the denoiser run on a whole image (activations) and the solver's own image-sized buffers (with --tile).
DENOISER_BYTES_PER_PIXEL = 2000
SOLVER_BYTES_PER_PIXEL = 200

#: job fields that do not change a restoration (a rerun with other values still skips the images done)
_NOT_SETTINGS = ("inputs", "outdir", "device", "overwrite")


@dataclass(frozen=True)
class RestoreJob:
    """Everything ``pnprgm restore`` was asked to do.

    :param inputs: image files or folders (a measurement sidecar beside an image is used automatically).
    :param outdir: output folder.
    :param operator: operator spec; None: read it from each input's sidecar.
    :param image_size: (H, W) of the image to restore when it cannot be inferred (no sidecar).
    :param denoiser: denoiser name or model path.
    :param solver: solver name (None: the preset's, else :func:`pnprgm.presets.default_solver`).
    :param preset: preset name (None: the task's default).
    :param noise_sigma: measurement noise std; None: from the sidecar, else estimated from the image.
    :param samples: number of restorations with different seeds (mean and std map are written).
    :param tile: denoiser tile size in pixels (None: whole image).
    :param seed: base seed.
    :param device: torch device name.
    :param overrides: solver parameters overriding the preset.
    :param overwrite: replace files in ``outdir`` that pnprgm did not write, and restore again the inputs whose
        outputs exist (default: such an input is an error, resp. skipped).
    """

    inputs: tuple[str, ...]
    outdir: str
    operator: Optional[str] = None
    image_size: Optional[tuple[int, int]] = None
    denoiser: str = DEFAULT_DENOISER
    solver: Optional[str] = None
    preset: Optional[str] = None
    noise_sigma: Optional[float] = None
    samples: int = 1
    tile: Optional[int] = None
    seed: int = 0
    device: str = "cpu"
    overrides: dict = field(default_factory=dict)
    overwrite: bool = False

    def __post_init__(self):
        object.__setattr__(self, "overrides", FrozenDict(self.overrides))  # a frozen job: its mapping too


@dataclass
class JobReport:
    """Written files, inputs restored and skipped (already restored), and per-input errors."""

    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    restored: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class Targets:
    """The output files of one input."""

    image: Path
    record: Path
    std: Optional[Path] = None

    def all(self) -> list[Path]:
        return [p for p in (self.image, self.std, self.record) if p is not None]


def _output_stems(files: list[Path], *, samples: int = 1) -> dict[Path, str]:
    """A distinct output stem per input (:func:`pnprgm.io.output_stems`), counting the ``_std`` map of ``samples > 1``."""
    return io.output_stems(files, lambda stem: _names(stem, samples))


def _names(stem: str, samples: int) -> list[str]:
    return [f"{stem}.png", f"{stem}.json"] + ([f"{stem}_std.png"] if samples > 1 else [])


def _without_sidecars(files: list[Path], fail: Callable[[str], None]) -> list[Path]:
    """``files`` less the measurement sidecars among them (``restore folder/*`` names them too): one whose image is
    also given is dropped quietly (it is read beside that image), any other is reported with its image's name."""
    from pnprgm.measurement import SUFFIX, sidecar_paths

    beside_given = {sidecar.resolve() for path in files for sidecar in sidecar_paths(path)}
    kept = []
    for path in files:
        ends = [end for end in (SUFFIX + ".json", SUFFIX + ".npz") if path.name.lower().endswith(end)]
        if not ends:
            kept.append(path)
        elif path.resolve() not in beside_given:
            stem = path.name[: -len(ends[0])]
            image = next((p for p in path.parent.iterdir() if p.is_file() and p.stem == stem
                          and p.suffix.lower() in io.READ_SUFFIXES), path.with_name(f"{stem}.png"))
            fail(f"{path} is a measurement sidecar, not an image; give its image {image} (the sidecar is read from "
                 f"beside it).")
    return kept


def _note_ignored_sidecars(files: list[Path], operator: str) -> None:
    """One warning when ``--operator`` overrides measurement sidecars: the exact measurement and its recorded noise
    level are then not used (the 8-bit image is read as a photo and its noise estimated)."""
    import warnings

    from pnprgm.measurement import has_sidecar

    with_sidecar = [p for p in files if has_sidecar(p)]
    if with_sidecar:
        some = ", ".join(map(str, with_sidecar[:3])) + (f" and {len(with_sidecar) - 3} more" if len(with_sidecar) > 3
                                                       else "")
        warnings.warn(f"--operator {operator} is used instead of the measurement sidecar of {some} (its exact "
                      f"measurement and noise level are then ignored); leave --operator out to restore from the "
                      f"sidecar.", stacklevel=2)


def _os_problem(err: OSError, outdir: Path, inputs: list[Path]) -> str:
    """One line for an OSError during one image: a failed read of an input (the input itself, or a file outside
    ``outdir``) wants the file checked, a failed write the folder (:func:`io.cannot_write_into`)."""
    name = getattr(err, "filename", None)
    if name:
        where, folder = Path(name).resolve(), outdir.resolve()
        written = where == folder or where.parent == folder  # the folder itself (made again), or a file in it
        if where in {p.resolve() for p in inputs} or not written:
            return f"cannot read {name} ({err.strerror or err}); check that the file is still there and readable."
    return io.cannot_write_into(outdir, err)


def _targets(outdir: Path, stem: str, samples: int) -> Targets:
    return Targets(outdir / f"{stem}.png", outdir / f"{stem}.json", outdir / f"{stem}_std.png" if samples > 1 else None)


def run_restore_job(job: RestoreJob, *, on_error: Callable[[str], None] = print,
                    on_skip: Optional[Callable[[str], None]] = None, progress: bool = True) -> JobReport:
    """Restore every input of ``job``; errors are reported per file and do not stop the others.

    ``progress``: bars on a terminal; to a log file or pipe (stderr not a TTY) plain lines instead, one per image
    and per sample, with no carriage returns or escape codes.
    """
    from tqdm.auto import tqdm

    from pnprgm.device import resolve_device

    bars = progress and _is_terminal(sys.stderr)
    say = _sayer(bars) if progress else None

    model_operator = check_job(job)
    # "auto" and an unavailable CUDA become the CPU (with a warning) once, for the sidecars, operators and solver
    job = dataclasses.replace(job, device=str(resolve_device(job.device)))
    report = JobReport()

    def fail(message: str) -> None:
        report.errors.append(message)
        on_error(f"error: {message}")

    io.refuse_outdir_among_inputs(job.outdir, job.inputs)
    files: list[Path] = []
    seen: set[Path] = set()
    for item in job.inputs:  # a missing path is reported and the others are restored
        try:
            found = io.list_images([item])
        except UserError as err:
            fail(str(err))
            continue
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                files.append(path)
    io.warn_passed_over(job.inputs, outdir=job.outdir)
    files = _without_sidecars(files, fail)
    if not files:
        if report.errors:
            return report
        raise io.no_images_found(job.inputs)
    if job.operator is not None:
        _note_ignored_sidecars(files, job.operator)
    outdir = io.prepare_outdir(job.outdir)
    stems = _output_stems(files, samples=job.samples)
    # never replaced, even with --overwrite: the inputs, the files the operator reads (mask:file, blur:file) and the
    # model's files (its official config)
    from pnprgm import operators

    spec = model_operator.spec if model_operator is not None else job.operator
    restorer = None
    if model_operator is not None:  # loaded once: a file replaced during the batch cannot change the method midway
        from pnprgm.rgm.restorer import MeasurementRestorer

        code = model_operator.spec if operators.names_code(model_operator.model.operator) else None
        restorer = MeasurementRestorer.from_file(job.denoiser, operator=code, seed=job.seed, device=job.device)
    # hashed only to compare with a record; a restorer's file as it was loaded for this batch
    model_sha256 = (functools.cache(lambda: _model_file_sha256(job)) if restorer is None
                    else lambda: restorer.model_info["sha256"])
    # the user's operator code, hashed once: a result of an earlier version of that code is not "already restored"
    code_sha256 = None
    if job.operator is not None and operators.names_code(job.operator):
        from pnprgm.training.processes import code_sha256 as hash_code

        code_sha256 = hash_code(job.operator)
    protect = files + (operators.files_read(spec) if spec is not None and not operators.names_code(spec) else [])
    # an input's measurement sidecar is read too: another input's record must not replace it, --overwrite or not
    from pnprgm.measurement import sidecar_paths

    protect += [side for path in files for side in sidecar_paths(path) if io.is_file(side)]
    if isinstance(job.denoiser, str):  # the model file and its official config (PATH#cfg.yaml) are inputs too
        from pnprgm.rgm.models import resolve as resolve_model

        try:
            source = resolve_model(job.denoiser, required=False) if job.denoiser else None
        except UserError:  # e.g. a shipped member of another channel count set aside: the restoration says so if used
            source = None
        protect += source.files_read if source is not None else []
        # a file that is no model, an official config that is none: said once for the batch, not once per image
        if source is not None and source.entry is None and source.official_config is None:
            from pnprgm.rgm.model_file import read_model_file

            read_model_file(source.path)
        elif source is not None and source.official_config is not None:
            from pnprgm.rgm.models import official_generator_config

            official_generator_config(source.official_config)
    said_once: set[str] = set()  # warnings about the whole batch (a preset that does not fit), said for its first image
    io.sweep_temps(outdir, names=[name for stem in stems.values() for name in _names(stem, job.samples)])
    for number, path in enumerate(tqdm(files, desc="restore", unit="image", disable=not bars), start=1):
        targets = _targets(outdir, stems[path], job.samples)
        if say is not None and not bars and len(files) > 1:
            say(f"image {number}/{len(files)}: {path}")
        try:
            if _already_restored(path, targets, job, protect, model_sha256, code_sha256):
                report.skipped.append(path)
                if on_skip is not None:
                    on_skip(f"skipped {path}: {targets.image} and its record exist (pass --overwrite to restore it again)")
                continue
            stale = _stale_std_map(targets)
            report.written.extend(_restore_one(path, job, targets, protect, bars, say, model_operator, restorer,
                                               code_sha256, said_once))
            report.restored.append(path)
            if stale is not None:
                stale.unlink(missing_ok=True)
        except UserError as err:
            fail(f"{path}: {err}")
        except OSError as err:  # the disk filled, the folder was removed or made read-only during the batch
            fail(f"{path}: {_os_problem(err, outdir, files)}")
        except (MemoryError, RecursionError, RuntimeError) as err:
            # a hand-edited sidecar (a 10^12-pixel shape, a structure nested too deeply) must not stop the batch;
            # torch reports a failed allocation as RuntimeError, and other RuntimeErrors are bugs to see in full
            # (RecursionError is a RuntimeError too: hence the exact type)
            if type(err) is RuntimeError and "allocate" not in str(err):
                raise
            from pnprgm.measurement import has_sidecar, sidecar_paths

            cause = (f"check its sidecar ({sidecar_paths(path)[0].name})" if has_sidecar(path)
                     else "check --size" if job.image_size is not None else "restore a smaller crop")
            fail(f"{path}: too large or too deeply nested to restore here ({type(err).__name__}); {cause}"
                 f"{'' if model_operator is not None else ', or restore it with --tile on a larger machine'}.")
    return report


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        return False


def _sayer(bars: bool) -> Callable[[str], None]:
    """A progress line on stderr: above the bars on a terminal (tqdm.write), a plain flushed line otherwise."""

    def say(line: str) -> None:
        if bars:
            from tqdm.auto import tqdm

            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    return say


def sample_progress(say: Callable[[str], None]) -> Callable[[int, int, float], None]:
    """``on_sample`` for :func:`pnprgm.restoration.restore_samples`: "sample k/N" with the time left, estimated
    from the samples done so far."""

    def on_sample(index: int, total: int, elapsed: float) -> None:
        if index == 0:
            say(f"sample 1/{total}")
            return
        each = elapsed / index
        say(f"sample {index + 1}/{total} ({each:.1f} s per sample, ETA {_duration(each * (total - index))})")

    return on_sample


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def check_job(job: RestoreJob) -> Optional["ModelOperator"]:
    """Every option of ``job`` in range (a :class:`UserError` naming the option and the fix), before any work:
    a bad value must not fail once per image, nor give a black image (a NaN noise level did). Returns the operator
    of a model trained for one (:func:`_model_operator`), else None."""
    from pnprgm.measurement import check_noise_sigma
    from pnprgm import denoisers, operators, presets, solvers

    io.check_outdir_name(job.outdir)
    if isinstance(job.denoiser, str):
        denoisers.check_name(job.denoiser)
    model_operator = _model_operator(job)
    if job.operator is not None:  # a bad spec, or code that is not there, fails once, before any work
        if operators.names_code(job.operator):
            from pnprgm.training.processes import typed_operator_callable

            typed_operator_callable(job.operator)
        else:
            operators.parse(job.operator)
    if job.solver is not None:
        solvers.registry.get(job.solver)  # an unknown name fails here, not as "other settings" beside an old result
    if job.preset is not None:
        presets.registry.get(job.preset)
    if job.noise_sigma is not None:
        check_noise_sigma(job.noise_sigma, "--noise")
    if job.samples < 1:
        raise UserError(f"--samples must be >= 1; got {job.samples}.")
    if job.tile is not None:
        check_tile(job.tile, "--tile")
    if job.image_size is not None and min(job.image_size) < 1:
        raise UserError(f"--size must be positive, HEIGHTxWIDTH; got {job.image_size[0]}x{job.image_size[1]}.")
    if job.overrides:  # each --set value coerced and range-checked by the solver's or the denoiser settings' config, once
        from pnprgm.restoration import configure

        configure(presets.solver_for(job.solver, job.preset, job.operator), dict(job.overrides))
    return model_operator


def estimate_bytes(image_shape: tuple[int, int, int], tile: Optional[int], samples: int = 1) -> int:
    """Peak memory of restoring one image of ``image_shape`` (C, H, W): the solver's buffers for every pixel
    (and one image per kept sample) plus the denoiser's activations on the whole image or on one tile."""
    _, height, width = image_shape
    pixels = height * width
    denoised = pixels if tile is None else min(pixels, tile * tile)
    return pixels * SOLVER_BYTES_PER_PIXEL + pixels * 12 * max(0, samples - 1) + denoised * DENOISER_BYTES_PER_PIXEL


def _size(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.0f} MB"


def check_memory(image_shape: tuple[int, int, int], job: RestoreJob) -> None:
    """A :class:`UserError` with the estimate and the ``--tile`` advice when restoring an image of ``image_shape``
    cannot fit in the device's free memory, before any computing (sr4 of a 4000x3000 photo needs about 40 GB
    even tiled: the solver's buffers alone)."""
    free = available_bytes(job.device)
    need = estimate_bytes(image_shape, job.tile, job.samples)
    if free is None or need <= free:
        return
    start = (f"restoring the {image_shape[1]}x{image_shape[2]} image needs about {_size(need)}"
             f"{f' with --tile {job.tile}' if job.tile else ''}"
             f"{f' and --samples {job.samples}' if job.samples > 1 else ''} but {job.device} has {_size(free)} free")
    if job.samples > 1 and estimate_bytes(image_shape, job.tile, 1) <= free:  # the kept samples are what does not fit
        per_sample = estimate_bytes(image_shape, job.tile, 2) - estimate_bytes(image_shape, job.tile, 1)
        fits = 1 + (free - estimate_bytes(image_shape, job.tile, 1)) // max(per_sample, 1)
        raise UserError(f"{start}; pass --samples {fits} or fewer (each kept sample adds about {_size(per_sample)}).")
    for tile in (512, 256, 128, 64, MIN_TILE):
        if (job.tile is None or tile < job.tile) and tile * tile < image_shape[1] * image_shape[2]:
            tiled = estimate_bytes(image_shape, tile, job.samples)
            if tiled <= free:
                raise UserError(f"{start}; pass --tile {tile} (about {_size(tiled)}).")
    smallest = estimate_bytes(image_shape, MIN_TILE, job.samples)
    raise UserError(f"{start}, and about {_size(smallest)} even with --tile {MIN_TILE} (the solver keeps about "
                    f"{SOLVER_BYTES_PER_PIXEL} bytes per pixel); restore a smaller crop or a downscaled image.")


def read_record(path: Path) -> Optional[dict]:
    """The restore record at ``path``, or None when there is none or the file is something else."""
    try:
        record = io.read_json(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


#: The restore options that set each job field, for naming what changed since an earlier result.
_OPTION_OF = {"operator": "--operator", "image_size": "--size", "denoiser": "--denoiser/--model", "solver": "--solver",
              "preset": "--preset", "noise_sigma": "--noise", "samples": "--samples", "tile": "--tile",
              "seed": "--seed", "overrides": "--iters/--set"}


def _settings(job: dict) -> dict:
    """The job fields that decide a restoration, JSON-normalised (tuples become lists); a denoiser by an old
    name (a record written before a rename) counts as today's."""
    from pnprgm import denoisers

    settings = {k: v for k, v in job.items() if k not in _NOT_SETTINGS}
    if isinstance(settings.get("denoiser"), str):
        settings["denoiser"] = denoisers.canonical(settings["denoiser"], notice=False)
    return json.loads(json.dumps(settings, default=str))


def _already_restored(path: Path, targets: Targets, job: RestoreJob, protect: list[Path],
                      model_sha256: Callable[[], Optional[str]] = lambda: None,
                      code_sha256: Optional[str] = None) -> bool:
    """True when the outputs of ``path`` exist from the same settings (skip it); a :class:`UserError` when an
    output name is taken by a file pnprgm did not write for this input (unless ``job.overwrite``)."""
    present = [p for p in targets.all() if p.exists() or p.is_symlink()]
    io.refuse_folders(present)  # even with --overwrite: the rename would fail after the others were written
    io.refuse_inputs(present, protect)
    for taken in present:  # x_std.png's restoration meets x's std map: another result's file, --overwrite or not
        owner = _std_map_owner(taken)
        if owner is not None and owner != targets.record:
            raise UserError(f"{taken} is the std map of the restoration {owner.name} records; choose another -o (or "
                            f"rename the input).")
    if not present or job.overwrite:
        return False
    fix = "pass --overwrite to replace it, or choose another -o"
    record = read_record(targets.record)
    if record is None:
        raise UserError(f"{present[0]} already exists and was not written by pnprgm restore; {fix}.")
    listed = {targets.image: record.get("output_sha256"),
              targets.std: (record.get("std_map") or {}).get("sha256") if targets.std else None}
    for target in present:
        if target != targets.record and (not target.is_file() or io.sha256_file(target) != listed.get(target)):
            raise UserError(f"{target} already exists and is not the file its record {targets.record.name} lists; {fix}.")
    if record.get("input_sha256") != io.sha256_file(path):
        recorded = record.get("input")
        same_path = recorded is not None and Path(str(recorded)).resolve() == path.resolve()
        what = ("the restoration of an earlier version of this input (it changed since)" if same_path
                else f"the restoration of another image ({recorded})")
        raise UserError(f"{targets.image.name} in {targets.image.parent} is {what}; {fix}.")
    # Settings before completeness: a result of --samples 1 lacks the _std.png that --samples 2 writes, and must not
    # be taken for a killed run of the new settings.
    theirs, ours = _settings(record.get("job") or {}), _settings(_job_dict(job))
    if theirs != ours:
        changed = sorted(_OPTION_OF.get(k, k) for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise UserError(f"{targets.image} was restored with other settings ({differ(changed)}); {fix}.")
    recorded_model = ((record.get("settings") or {}).get("model") or {}).get("sha256")
    current_model = model_sha256() if recorded_model is not None else None
    if current_model is not None and recorded_model != current_model:
        raise UserError(f"{targets.image} was restored with another version of the model file {job.denoiser} (sha256 "
                        f"{str(recorded_model)[:12]}... then, {current_model[:12]}... now); {fix}.")
    if code_sha256 is not None and record.get("operator_code_sha256") != code_sha256:
        raise UserError(f"{targets.image} was restored with another version of the operator code {job.operator} "
                        f"(its file, or a module of its own it imports, changed since); {fix}.")
    complete = all(p.is_file() for p in targets.all())
    return complete  # incomplete: a killed run of these settings (its record came first); restore again


def _model_file_sha256(job: RestoreJob) -> Optional[str]:
    """The sha256 of the job's model when it is a file (a shipped model is fixed by its name): a result of another
    version of that file is not "already restored"."""
    from pnprgm.rgm import models

    if not isinstance(job.denoiser, str):
        return None
    found = models.resolve(job.denoiser, required=False)
    return io.sha256_file(found.path) if found is not None and found.entry is None else None


def _lists_std_map(record_path: Path, std: Path) -> bool:
    """Whether the restore record ``record_path`` lists ``std`` as its std map (the file there has its sha256)."""
    listed = ((read_record(record_path) or {}).get("std_map") or {}).get("sha256")
    return bool(listed) and io.is_file(std) and io.sha256_file(std) == listed


def _std_map_owner(path: Path) -> Optional[Path]:
    """The record (``x.json``) whose restoration wrote ``path`` as its std map (``x_std.png``, same sha256), or None."""
    if not path.stem.endswith("_std"):
        return None
    owner = path.with_name(f"{path.stem[: -len('_std')]}.json")
    return owner if _lists_std_map(owner, path) else None


def _stale_std_map(targets: Targets) -> Optional[Path]:
    """The ``_std.png`` an earlier ``--samples N`` result of this stem left, when this run writes none: the file its
    record lists (same sha256), which a replaced result must not leave behind; a user's file of that name is kept."""
    if targets.std is not None:
        return None
    std = _targets(targets.image.parent, targets.image.stem, samples=2).std
    return std if _lists_std_map(targets.record, std) else None


def _job_dict(job: RestoreJob) -> dict:
    return {**dataclasses.asdict(job), "inputs": list(job.inputs)}


def _restore_one(path: Path, job: RestoreJob, targets: Targets, protect: list[Path], progress: bool,
                 say: Optional[Callable[[str], None]] = None,
                 model_operator: Optional["ModelOperator"] = None, restorer=None,
                 code_sha256: Optional[str] = None, said_once: Optional[set] = None) -> list[Path]:
    from pnprgm.restoration import restore_samples

    start = time.perf_counter()
    if model_operator is None:
        y, physics, noise_sigma, source, window = _load_problem(path, job)
    else:
        y, physics, noise_sigma, source, window = _load_for_model(path, job, model_operator)
    # a user's deepinv operator (from code) may have no in_shape
    check_memory(tuple(getattr(physics, "in_shape", None) or physics.A_adjoint(y).shape[1:]), job)
    kwargs = dict(denoiser=restorer if restorer is not None else job.denoiser, solver=job.solver, preset=job.preset, noise_sigma=noise_sigma,
                  device=job.device, tile=job.tile, progress=progress, **job.overrides)
    on_sample = sample_progress(say) if say is not None and job.samples > 1 else None
    with _warnings_naming(path, said_once):
        drawn = restore_samples(y, physics, samples=job.samples, seed=job.seed, on_sample=on_sample, **kwargs)
    x, result, settings = drawn.mean, drawn.results[0], drawn.settings
    std = drawn.std if job.samples > 1 else None
    scene_shape = list(x.shape[-3:])
    if window is not None:  # the photo's field of view out of the larger scene that a 'valid' blur restores
        x = x[..., window[0], window[1]]
        std = std[..., window[0], window[1]] if std is not None else None
    staged: list[tuple[Path, Path]] = []
    try:
        bits = io.image_bits(path)  # 16-bit input, 16-bit output (PNG)
        # the input's colour profile too: the restoration's values are in its colour space
        image_tmp = io.stage(targets.image, io.image_writer(targets.image, x, bits, icc=io.icc_profile(path)),
                             protect=protect)
        staged.append((image_tmp, targets.image))
        std_info = None
        if std is not None:
            # One channel (the mean std over colours), scaled so that white is the largest std (recorded in the JSON).
            std_map = std[0].mean(0, keepdim=True)
            scale = float(std_map.max().clamp_min(1e-8))
            std_tmp = io.stage(targets.std, io.image_writer(targets.std, std_map / scale), protect=protect)
            staged.append((std_tmp, targets.std))
            std_info = {"file": str(targets.std), "sha256": io.sha256_file(std_tmp), "white_is_std": scale,
                        "mean": float(std.mean())}
        record = {
            "format": RECORD_FORMAT,
            "input": str(path), "input_sha256": io.sha256_file(path), "output": str(targets.image),
            "output_sha256": io.sha256_file(image_tmp),
            "operator": getattr(physics, "spec", None) or (model_operator and model_operator.spec) or job.operator,
            **({"operator_code_sha256": code_sha256} if code_sha256 is not None else {}), "image_shape": list(x.shape[-3:]), "bits": bits, "measurement_shape": list(y.shape[-3:]),
            "field_of_view": None if window is None else {
                "scene_shape": scene_shape, "rows": [window[0].start, window[0].stop], "cols": [window[1].start, window[1].stop]},
            "source": source, "settings": dataclasses.asdict(settings),
            "samples": job.samples, "std_map": std_info,
            "trace": result.trace_dicts(), "seconds": time.perf_counter() - start, "versions": io.versions(),
            "job": _job_dict(job),
        }
        record_tmp = io.stage(targets.record, io.json_writer(record), protect=protect)
        staged.insert(0, (record_tmp, targets.record))  # the record first: an image never exists without it
    except BaseException:
        io.discard(staged)
        raise
    return io.commit(staged)


@dataclass(frozen=True)
class ModelOperator:
    """A job whose model was trained for an operator (restored in one step, :mod:`pnprgm.rgm.restorer`): the spec to
    build for images without a sidecar (``--operator`` when given, else the model's) and what the model file says."""

    spec: str
    model: "OperatorModelFile"


@contextlib.contextmanager
def _warnings_naming(path: Path, said_once: Optional[set] = None):
    """A noise level brought into a model's range is said once per image, starting with the image's name (in a batch,
    identical lines would not say which image they are about, and the default filter would show only the first);
    a warning about the batch's settings (:class:`pnprgm.presets.PresetMisfitWarning`) once per batch (its text
    in ``said_once``); every other warning goes through the filters as usual."""
    from pnprgm.presets import PresetMisfitWarning
    from pnprgm.rgm.restorer import NoiseLevelWarning

    shown: set[str] = set()
    said_once = set() if said_once is None else said_once
    with warnings.catch_warnings():
        warnings.simplefilter("always", NoiseLevelWarning)
        warnings.simplefilter("always", PresetMisfitWarning)
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, PresetMisfitWarning):
                if str(message) in said_once:
                    return
                said_once.add(str(message))
            if issubclass(category, NoiseLevelWarning):
                text = f"{path}: {message}"
                if text in shown:  # every sample of --samples says it again
                    return
                shown.add(text)
                message = NoiseLevelWarning(text)
            original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def _model_operator(job: RestoreJob) -> Optional[ModelOperator]:
    """The operator of the job's model when it is a model of the operator process, else None; the options that do
    not apply to it, a noise level outside its range and another operator are refused here, once for the job. For a
    model whose operator names code, ``--operator`` (typed by the user, so it may run) replaces it."""
    from pnprgm import operators
    from pnprgm.rgm import restorer

    model = restorer.file_process(job.denoiser) if isinstance(job.denoiser, str) else None
    if model is None:
        return None
    restorer.refuse_solver_options({"solver": job.solver, "preset": job.preset, **job.overrides, "tile": job.tile})
    if job.noise_sigma is not None:
        restorer.check_given_noise(job.noise_sigma, restorer.trained_noise(model.process))
    trained = model.operator
    if job.operator is None:
        if operators.names_code(trained):
            raise UserError(f"the model's operator {trained!r} names Python code, which is never imported from a "
                            f"model file; if you trust it, pass --operator {trained!r}.")
        return ModelOperator(trained, model)
    if operators.names_code(trained) and not operators.names_code(job.operator):
        raise UserError(f"the model was trained for the operator that the code {trained!r} builds, which pnprgm "
                        f"cannot compare with {job.operator} without running it; pass --operator {trained!r} (if you "
                        f"trust that code), or restore {job.operator} measurements with a denoiser (--denoiser default).")
    # clearly another operator: now; the same family with other parameters or files: compared by action, per image
    if restorer.clearly_other(job.operator, model):
        raise UserError(f"the model restores measurements of {trained}, the operator it was trained for, not of "
                        f"{job.operator}; drop --operator (the model's is used), or restore {job.operator} "
                        f"measurements with a denoiser (--denoiser default).")
    return ModelOperator(job.operator, model)


def _load_for_model(path: Path, job: RestoreJob, model_operator: ModelOperator):
    """:func:`_load_problem` for a model trained for an operator: the measurement's sidecar, else the image itself as
    ``y`` with the operator built as the model was trained (no photo defaults: the model saw that operator's
    measurements); the noise level from ``--noise``, the sidecar, else estimated. That the measurement's operator
    is the model's is checked where it restores (:meth:`pnprgm.rgm.restorer.MeasurementRestorer.measures`)."""
    from pnprgm import operators
    from pnprgm.measurement import load_measurement
    from pnprgm.rgm import restorer
    from pnprgm.training.processes import check_operator_files, load_operator

    spec, model = model_operator.spec, model_operator.model
    measurement = load_measurement(path, device=job.device) if job.operator is None else None
    if measurement is not None:
        if restorer.clearly_other(measurement.operator.spec, model):
            raise UserError(f"its sidecar records the operator {measurement.operator.spec}, and the model restores "
                            f"{model.operator}; restore it with a denoiser (--denoiser default), or with a model "
                            f"trained for it.")
        _check_sidecar_size(measurement, job)
        sigma = job.noise_sigma if job.noise_sigma is not None else measurement.noise_sigma
        trained = restorer.trained_noise(model.process)
        if job.noise_sigma is None and sigma is not None and restorer.above_range(sigma, trained):
            raise UserError(f"its sidecar records noise std {sigma:.4g}, above the {restorer.describe_noise(trained)} "
                            f"the model was trained at (it would leave noise in); restore it with a denoiser "
                            f"(--denoiser default), or with a model trained for that noise.")
        return measurement.y, measurement.operator, sigma, dataclasses.asdict(measurement.source), None
    if job.operator is None:  # the model's own spec: the files it reads must be those it was trained with
        from pnprgm.training.config import ProcessConfig

        check_operator_files([{"path": k, "sha256": v} for k, v in model.files.items()],
                             ProcessConfig(name="operator", operator=spec), when="the model was trained with it")
    if operators.names_code(spec):
        y, physics = _measured_by_code(path, spec, job, channels=model.channels)
        return y, physics, job.noise_sigma, {"image": str(path)}, None
    y, shape = _read_measurement(path, spec, job.image_size, channels=model.channels)
    physics = load_operator(spec, shape, job.device)
    _check_measured_shape(physics, spec, shape, tuple(y.shape[1:]), job.device)
    return y, physics, job.noise_sigma, {"image": str(path)}, None


def _measured_by_code(path: Path, spec: str, job: RestoreJob, channels: Optional[int] = None):
    """``(y, physics)`` of an image measured by the user's operator code (typed, so it may run), built for the image's
    shape: the measurement's, or ``--size``; a gray model (``channels`` 1) reads a gray photo saved as RGB as gray."""
    from pnprgm.training.processes import load_operator

    y = _as_gray_if_gray_content(io.read_image(path)[None], channels)
    shape = tuple(y.shape[1:]) if job.image_size is None else (y.shape[1], *map(int, job.image_size))
    physics = load_operator(spec, shape, job.device, allow_code=True)
    _check_measured_shape(physics, spec, shape, tuple(y.shape[1:]), job.device)
    return y, physics


def _check_sidecar_size(measurement, job: RestoreJob) -> None:
    restored = tuple(measurement.operator.in_shape[1:])
    if job.image_size is not None and tuple(job.image_size) != restored:
        raise UserError(f"its sidecar restores a {restored[0]}x{restored[1]} image, not the --size "
                        f"{job.image_size[0]}x{job.image_size[1]}; leave --size out (it is for images without a "
                        f"sidecar).")


def _read_measurement(path: Path, spec: str, image_size: Optional[tuple[int, int]], defaults: Optional[dict] = None,
                      channels: Optional[int] = None):
    """``(y, image shape)`` of an image read as a measurement of ``spec``; a black-and-white photo saved as RGB
    (equal channels) is read as gray for an operator that measures one channel, or for a gray model (``channels``
    1); ``image_size`` (H, W) replaces the inferred size."""
    from pnprgm import operators

    y = _as_gray_if_gray_content(io.read_image(path)[None], channels)
    try:
        shape = operators.image_shape(spec, tuple(y.shape[1:]), defaults=defaults)
    except UserError:
        gray = _as_gray_if_gray_content(y, 1)
        if gray is y:
            raise
        y, shape = gray, operators.image_shape(spec, tuple(gray.shape[1:]), defaults=defaults)
    if image_size is not None:
        shape = (shape[0], int(image_size[0]), int(image_size[1]))
    return y, shape


def _as_gray_if_gray_content(y, channels: Optional[int]):
    """``y`` (1, C, H, W) as one channel when a gray model (``channels`` 1) gets a photo saved as RGB whose channels
    are equal up to :data:`io.CHANNEL_TOLERANCE` (:func:`io.looks_gray`); otherwise unchanged."""
    if channels == 1 and y.shape[1] == 3 and io.looks_gray(y[0]):
        return y.mean(1, keepdim=True)
    return y


def _check_measured_shape(physics, spec: str, shape: tuple[int, int, int], measured: tuple[int, int, int],
                          device: str = "cpu") -> None:
    """A :class:`UserError` unless the operator built for an image of ``shape`` measures what the image holds (a
    user's deepinv operator may lack ``out_shape``: its output on zeros says)."""
    import torch

    from pnprgm.training.processes import probe_operator

    out = tuple(getattr(physics, "out_shape", None) or ())
    if not out:
        out = tuple(probe_operator(spec, shape, lambda: physics.A(torch.zeros((1, *shape), device=device)),
                                   fix="give an image of the size it is made for, or --size").shape[1:])
    if out != measured:
        raise UserError(f"{spec} maps a {shape[1]}x{shape[2]} image to {out[-2]}x{out[-1]}, not to this "
                        f"{measured[1]}x{measured[2]} image; fix --size (or leave it out).")


def _load_problem(path: Path, job: RestoreJob):
    """(y, operator, noise sigma, source info, window) from the sidecar beside ``path`` or from the job's options.

    ``window``: the rows and columns of the restored image to write (the photo's field of view when a 'valid'
    blur restores a larger scene than a plain photo shows), or None for the whole image.
    """
    from pnprgm.measurement import load_measurement

    measurement = load_measurement(path, device=job.device) if job.operator is None else None
    if measurement is not None:
        _check_sidecar_size(measurement, job)
        sigma = job.noise_sigma if job.noise_sigma is not None else measurement.noise_sigma
        return measurement.y, measurement.operator, sigma, dataclasses.asdict(measurement.source), None
    if job.operator is None:
        raise UserError("no measurement sidecar beside this image; pass --operator SPEC (pnprgm operators lists them).")
    from pnprgm import operators

    if operators.names_code(job.operator):  # the user's code (typed, so it may run) builds for the image's shape
        y, physics = _measured_by_code(path, job.operator, job)
        return y, physics, job.noise_sigma, {"image": str(path)}, None
    # a real photo is the valid part of the blur of a larger scene (operators.blur): no circular frame
    y, shape = _read_measurement(path, job.operator, job.image_size, defaults=operators.PHOTO_DEFAULTS)
    physics = operators.build(job.operator, shape, device=job.device, defaults=operators.PHOTO_DEFAULTS)
    _check_measured_shape(physics, physics.spec, shape, tuple(y.shape[1:]), job.device)
    window = physics.visible_window() if job.image_size is None else None
    return y, physics, job.noise_sigma, {"image": str(path)}, window
