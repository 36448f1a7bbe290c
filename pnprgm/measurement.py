"""Measurement sidecars: what ``pnprgm degrade`` writes beside each measurement image and ``restore`` reloads.

For ``OUT/photo.png`` the sidecar is ``OUT/photo.measurement.json`` (operator record, noise level, seed, source
image hash and shape, hashes of the image and of the arrays) plus ``OUT/photo.measurement.npz`` (the exact float
measurement ``y``, which the clipped 8-bit PNG cannot hold, and the operator's arrays: masks, kernels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch

from pnprgm import io
from pnprgm.errors import UserError, first_line

FORMAT = "pnprgm-measurement"
VERSION = 1
SUFFIX = ".measurement"


@dataclass(frozen=True)
class SourceInfo:
    """The clean image a measurement was made from."""

    path: str
    sha256: str
    shape: tuple[int, int, int]


@dataclass(frozen=True, eq=False)
class Measurement:
    """A reloaded measurement: ``y`` (1, C', H', W') float, its operator and how it was made."""

    y: torch.Tensor
    operator: "object"  # operators.Operator (not imported here so that pnprgm does not import operators eagerly)
    noise_sigma: float
    seed: int
    source: SourceInfo
    image_path: Path
    sidecar_path: Path


def check_noise_sigma(value, what: str) -> float:
    """``value`` as a noise std: a finite number in [0, 1] (image units), else a :class:`UserError` naming ``what``."""
    try:
        sigma = math.nan if isinstance(value, bool) else float(value)  # JSON true is not a noise level of 1
    except (TypeError, ValueError):
        sigma = math.nan
    if not (math.isfinite(sigma) and 0 <= sigma <= 1):
        raise UserError(f"{what} must be a noise std in [0, 1] image units (e.g. 0.02 or 5/255); got {value}.")
    return sigma


def sidecar_paths(image_path: str | Path) -> tuple[Path, Path]:
    """``(json, npz)`` sidecar paths of a measurement image."""
    image_path = Path(image_path)
    base = image_path.with_name(image_path.stem + SUFFIX)
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".npz")


def _names_another_image(meta: Any, image_path: Path) -> bool:
    """True when the sidecar ``meta`` records another image of the same stem (``x.png``'s, read beside the original
    ``x.jpg``): another name, and other contents (the measurement renamed ``x.PNG`` is still its own)."""
    info = meta.get("measurement") if isinstance(meta, dict) else None
    recorded = info.get("image") if isinstance(info, dict) else None
    if not isinstance(recorded, str) or recorded.casefold() == image_path.name.casefold():
        return False
    return not (io.is_file(image_path) and io.sha256_file(image_path) == info.get("image_sha256"))


def has_sidecar(image_path: str | Path) -> bool:
    """Whether ``image_path`` has a measurement sidecar of its own: the stem's ``.measurement.json`` exists and does
    not record another image (the original ``x.jpg`` beside the measurement ``x.png`` that degrade wrote into the
    same folder has none); a sidecar that cannot be read counts (restoring it then says what is wrong)."""
    image_path = Path(image_path)
    json_path = sidecar_paths(image_path)[0]
    if not io.is_file(json_path):
        return False
    try:
        return not _names_another_image(io.read_json(json_path), image_path)
    except (OSError, ValueError):
        return True


def save_measurement(image_path: str | Path, y: torch.Tensor, operator, *, noise_sigma: float, seed: int,
                     source: SourceInfo, protect: Iterable[str | Path] = (), bits: int = 8,
                     icc: Optional[bytes] = None) -> list[Path]:
    """Write the measurement image (PNG of ``bits`` 8 or 16, clipped to [0, 1]) and its sidecar; returns the paths
    written. ``pnprgm degrade`` writes 16 bits for a 16-bit input, and ``restore`` then writes 16 bits too.

    :param y: the exact measurement, (1, C', H', W') or (C', H', W').
    :param operator: the operator that made it (``operators.Operator``).
    :param protect: paths never to overwrite (the inputs).
    :param icc: the input's colour profile (:func:`pnprgm.io.icc_profile`), embedded where it fits the measurement.
    """
    from pnprgm import operators

    y = y.detach()
    if y.dim() == 4:
        if y.shape[0] != 1:
            raise ValueError("save one measurement at a time")
        y = y[0]
    if tuple(y.shape) != tuple(operator.out_shape):
        raise ValueError(f"measurement of shape {tuple(y.shape)} does not match {operator.spec} output {operator.out_shape}")
    protect = list(protect)
    image_path = Path(image_path)
    json_path, npz_path = sidecar_paths(image_path)
    meta, arrays = operators.to_record(operator)
    stored = {"y": y.cpu().numpy(), **{f"operator.{key}": value for key, value in arrays.items()}}
    staged: list[tuple[Path, Path]] = []
    try:
        image_tmp = io.stage(image_path, io.image_writer(image_path, y.float().cpu(), bits, icc=icc), protect=protect)
        staged.append((image_tmp, image_path))
        npz_tmp = io.stage(npz_path, operators.record.arrays_writer(stored), protect=protect)
        staged.append((npz_tmp, npz_path))
        sidecar = {
            "format": FORMAT,
            "version": VERSION,
            "operator": meta,
            "noise_sigma": float(noise_sigma),
            "seed": int(seed),
            "source": {"path": source.path, "sha256": source.sha256, "shape": list(source.shape)},
            "measurement": {
                "image": image_path.name, "image_sha256": io.sha256_file(image_tmp), "shape": list(y.shape),
                "dtype": str(y.dtype).replace("torch.", ""), "arrays": npz_path.name, "arrays_sha256": io.sha256_file(npz_tmp),
            },
            "versions": io.versions(),
        }
        staged.insert(0, (io.stage(json_path, io.json_writer(sidecar), protect=protect), json_path))
    except BaseException:
        io.discard(staged)
        raise
    sidecar_first, image, arrays = staged
    io.commit([sidecar_first, arrays, image])  # the sidecar first: it vouches for the others (:func:`owned_by_sidecar`)
    return [image_path, npz_path, json_path]


def owned_by_sidecar(image_path: str | Path) -> Optional[dict]:
    """The sidecar of ``image_path`` when every existing file of the trio (image, .measurement.json, .npz) is the
    one ``pnprgm degrade`` wrote (the sidecar lists the sha256 of the others); None otherwise."""
    image_path = Path(image_path)
    json_path, npz_path = sidecar_paths(image_path)
    try:
        meta = io.read_json(json_path)
        info = meta["measurement"]
        if meta.get("format") != FORMAT:
            return None
        for path, key in ((image_path, "image_sha256"), (npz_path, "arrays_sha256")):
            if (path.exists() or path.is_symlink()) and (not path.is_file() or io.sha256_file(path) != info[key]):
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta


def load_measurement(image_path: str | Path, *, device="cpu", dtype: torch.dtype = torch.float32) -> Optional[Measurement]:
    """The measurement beside ``image_path``, or None when it has no sidecar; a damaged sidecar is a :class:`UserError`."""
    from pnprgm import operators

    image_path = Path(image_path)
    json_path, npz_path = sidecar_paths(image_path)
    if not json_path.is_file():
        return None
    try:
        meta = io.read_json(json_path)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the sidecar {json_path}: {first_line(err)}; delete it or degrade again.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{json_path} is not a pnprgm measurement sidecar; delete it or degrade again.")
    if _names_another_image(meta, image_path):  # x.png's sidecar, beside the original x.jpg: a plain image
        return None
    if meta.get("version") != VERSION:
        raise UserError(f"{json_path} has sidecar version {meta.get('version')!r}, this pnprgm reads {VERSION}; degrade again.")
    try:
        info = meta["measurement"]
        if image_path.is_file() and io.sha256_file(image_path) != info["image_sha256"]:
            raise UserError(f"{image_path} changed after pnprgm degrade wrote it; delete {json_path.name} to restore it as a plain image.")
        if not npz_path.is_file():
            raise UserError(f"{npz_path} is missing beside {json_path.name}; degrade again.")
        if io.sha256_file(npz_path) != info["arrays_sha256"]:
            raise UserError(f"{npz_path} does not match {json_path.name} (sha256 differs); degrade again.")
        stored = operators.record.load_arrays(npz_path)
        arrays = {key[len("operator."):]: value for key, value in stored.items() if key.startswith("operator.")}
        operator = operators.from_record(meta["operator"], arrays, device=device, dtype=dtype)
        if "y" not in stored:
            raise UserError(f"{npz_path} holds no measurement; degrade again.")
        y = torch.from_numpy(np.asarray(stored["y"])).to(device=device, dtype=dtype)[None]
        if tuple(y.shape[1:]) != tuple(operator.out_shape):
            raise UserError(f"{npz_path}: measurement shape {tuple(y.shape[1:])} does not match the operator's {operator.out_shape}; degrade again.")
        if not bool(torch.isfinite(y).all()):
            raise UserError(f"{npz_path}: the measurement holds NaN or infinite values; degrade again.")
        noise_sigma = check_noise_sigma(meta["noise_sigma"], f"noise_sigma in {json_path}")
        source = meta["source"]
        return Measurement(
            y=y, operator=operator, noise_sigma=noise_sigma, seed=int(meta["seed"]),
            source=SourceInfo(str(source["path"]), str(source["sha256"]), tuple(int(v) for v in source["shape"])),
            image_path=image_path, sidecar_path=json_path,
        )
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, UserError):
            raise
        raise UserError(f"sidecar {json_path} is incomplete ({type(err).__name__}: {err}); degrade again.") from None
