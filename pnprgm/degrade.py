"""``degrade_files``: make measurements of clean images (test inputs for ``restore``) with their sidecars."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from pnprgm import io
from pnprgm.config import hashed_seed
from pnprgm.device import resolve_device
from pnprgm.errors import UserError


@dataclass
class DegradeReport:
    """Inputs degraded, files written and one line per input that failed."""

    degraded: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def image_seed(seed: int, sha256: str) -> int:
    """Noise seed of one image: a hash of ``seed`` and the image's sha256, so images get independent noise draws
    that do not depend on the order or the set of inputs."""
    return hashed_seed(f"{int(seed)}:{sha256}", 63)


def degrade_files(inputs: Iterable[str | Path], operator: str, outdir: str | Path, *, noise: float = 0.0, seed: int = 0,
                  device="cpu", on_written: Optional[Callable[[str], None]] = None,
                  on_error: Optional[Callable[[str], None]] = None, overwrite: bool = False) -> DegradeReport:
    """Degrade every image of ``inputs`` with ``operator`` plus Gaussian noise; write ``OUTDIR/NAME.png`` and its sidecar.

    A bad spec or noise level fails at once; a missing or unreadable input, or an operator that does not fit one
    image (e.g. ``gray`` on a gray image), is reported through ``on_error`` and the other inputs go on.

    :param operator: operator spec (``pnprgm operators``); built per image for its own size.
    :param noise: noise standard deviation in [0, 1] units.
    :param seed: base seed; image NAME uses :func:`image_seed` of it (recorded in the sidecar).
    :param overwrite: replace files in ``outdir`` that pnprgm degrade did not write (or wrote for another image);
        without it such an input is an error and the others go on. Its own measurement of the same image is
        replaced (degrading is deterministic).
    """
    from pnprgm import operators
    from pnprgm.measurement import SourceInfo, check_noise_sigma, save_measurement, sidecar_paths

    try:
        operators.parse(operator)
    except UserError:
        # code (file.py:callable, or module:callable not near any operator's name: a typo keeps the parser's hint)
        left = operator.rpartition(":")[0].strip().lower() if isinstance(operator, str) else ""
        if operators.names_code(operator) and (left.endswith(".py") or operators.closest_name(left) is None):
            raise UserError(f"degrade takes an operator spec (pnprgm operators), not code ({operator}): its sidecar "
                            f"records the operator so that restore can rebuild it. Measure with your own code and "
                            f"restore with --operator {operator}.") from None
        raise
    noise = check_noise_sigma(noise, "--noise")
    device = resolve_device(device)
    io.check_outdir_name(outdir)
    outdir = Path(outdir)
    report = DegradeReport()

    def fail(message: str) -> None:
        report.errors.append(message)
        if on_error is not None:
            on_error(message)

    inputs = list(inputs)
    io.refuse_outdir_among_inputs(outdir, inputs)
    files: list[Path] = []
    seen: set[Path] = set()  # a.png and sub/../a.png (or a link to it) are one photo, measured once
    for item in inputs:
        try:
            found = io.list_images([item])
        except UserError as err:
            fail(str(err))
            continue
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                files.append(path)
    io.warn_passed_over(inputs, outdir=outdir)
    if not files:
        if report.errors:
            return report
        raise io.no_images_found(inputs)
    io.prepare_outdir(outdir)
    # inputs that share a stem (photo.png, photo.gif) get distinct outputs, named as restore names its own
    outputs = lambda stem: [f"{stem}.png", *(s.name for s in sidecar_paths(outdir / f"{stem}.png"))]  # noqa: E731
    stems = io.output_stems(files, outputs)
    protect = files + operators.files_read(operator)  # never replaced, even with --overwrite (a mask:file, blur:file)
    io.sweep_temps(outdir, names=[name for path in files for name in outputs(stems[path])])
    for path in files:
        target = outdir / f"{stems[path]}.png"
        try:
            image = io.read_image(path)
            shape = tuple(image.shape)
            op = operators.build(operator, shape, device=device)
            if tuple(op.out_shape[1:]) == (1, 1) and shape[1:] != (1, 1):  # sr:factor=1000 for sr:factor=10, say
                raise UserError(f"{op.spec} measures the {shape[1]}x{shape[2]} image as one pixel, which nothing can "
                                "be restored from; check --operator (a smaller sr factor or blur kernel).")
            sha = io.sha256_file(path)
            io.refuse_folders([target, *sidecar_paths(target)])
            earlier = _earlier_spec(target, sha)
            if not overwrite:
                _check_replaceable(target, sha, protect)
            noise_seed = image_seed(seed, sha)
            y = operators.measure(op, image[None].to(device), float(noise), noise_seed)
            paths = save_measurement(target, y, op, noise_sigma=float(noise), seed=noise_seed,
                                     source=SourceInfo(str(path), sha, shape), protect=protect, bits=io.image_bits(path),
                                     icc=io.icc_profile(path))
        except UserError as err:
            fail(str(err) if str(path) in str(err) else f"{path}: {err}")
            continue
        except OSError as err:  # the disk filled, or the folder was removed or made read-only during the batch
            fail(f"{path}: {io.cannot_write_into(outdir, err)}")
            continue
        report.degraded.append(path)
        report.written.extend(paths)
        if on_written is not None:
            c, h, w = shape
            oc, oh, ow = op.out_shape
            replaced = f"; replaced its {earlier} measurement" if earlier not in (None, op.spec) else ""
            on_written(f"{path} -> {target} ({c}x{h}x{w} -> {oc}x{oh}x{ow}, {op.spec}, noise {float(noise):g}{replaced})")
    return report


def _earlier_spec(target: Path, sha256: str) -> Optional[str]:
    """The operator of degrade's earlier measurement of the image with ``sha256`` at ``target``, if there is one
    (a rerun with another operator replaces it: said, not done in silence)."""
    from pnprgm.measurement import owned_by_sidecar

    meta = owned_by_sidecar(target) if target.exists() else None
    source, operator = (meta.get("source"), meta.get("operator")) if meta is not None else (None, None)
    if not isinstance(source, dict) or source.get("sha256") != sha256 or not isinstance(operator, dict):
        return None
    spec = operator.get("spec")
    return spec if isinstance(spec, str) else None


def _check_replaceable(target: Path, sha256: str, protect: list[Path]) -> None:
    """A :class:`UserError` when a file of ``target``'s trio exists and is not degrade's measurement of the image
    with ``sha256`` (a user's file, or the measurement of another image)."""
    from pnprgm.measurement import owned_by_sidecar, sidecar_paths

    present = [p for p in (target, *sidecar_paths(target)) if p.exists() or p.is_symlink()]
    if not present:
        return
    if any(p.resolve() == Path(guarded).resolve() for p in present for guarded in protect):
        return  # writing refuses it with its own message
    fix = "pass --overwrite to replace it, or choose another -o"
    meta = owned_by_sidecar(target)
    if meta is None:
        raise UserError(f"{present[0]} already exists and was not written by pnprgm degrade; {fix}.")
    if (meta.get("source") or {}).get("sha256") != sha256:
        raise UserError(f"{target} is the measurement of another image ({(meta.get('source') or {}).get('path')}); {fix}.")
