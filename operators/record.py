"""Serialisation: an operator as a JSON-able record plus named arrays (kernels, masks), and back, identically.

The record lists the parts of the operator (one, or several for a composition) with their variant name,
parameters and input shape; arrays are stored under ``"<part index>.<name>"`` and are used as stored (a mask
or kernel is never re-derived from a seed or re-read from a file).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pnprgm.operators.base import Operator, Variant, check_shape, registry
from pnprgm import io
from pnprgm.config import build_strict, to_dict
from pnprgm.device import resolve_device
from pnprgm.errors import UserError

FORMAT = "pnprgm-operator"
VERSION = 1


def _parts(op: Operator) -> list[Operator]:
    from pnprgm.operators.composition import Composed

    return list(op.parts) if isinstance(op, Composed) else [op]


def to_record(op: Operator) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)``: meta is JSON-able (spec, shapes, per-part variant and parameters), arrays are numpy."""
    parts, arrays = [], {}
    for index, part in enumerate(_parts(op)):
        parts.append({"name": part.variant_name, "params": to_dict(part.params), "in_shape": list(part.in_shape)})
        for key, value in part.arrays().items():
            arrays[f"{index}.{key}"] = np.asarray(value)
    meta = {"format": FORMAT, "version": VERSION, "spec": op.spec, "in_shape": list(op.in_shape),
            "out_shape": list(op.out_shape), "parts": parts}
    return meta, arrays


def from_record(meta: dict[str, Any], arrays: dict[str, np.ndarray], *, device="cpu",
                dtype: torch.dtype = torch.float32) -> Operator:
    """Rebuild the operator of :func:`to_record` (same outputs); a malformed record is a one-line :class:`UserError`."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"not a pnprgm operator record (format {meta.get('format') if isinstance(meta, dict) else None!r}).")
    if meta.get("version") != VERSION:
        raise UserError(f"operator record version {meta.get('version')!r} is not supported (expected {VERSION}); degrade again.")
    device = resolve_device(device)
    try:
        built = []
        for index, part in enumerate(meta["parts"]):
            entry = registry.get(part["name"]) if part["name"] in registry else None
            if not isinstance(entry, Variant):
                raise UserError(f"operator record names an unknown operator {part['name']!r}; it was written by another pnprgm version.")
            params = build_strict(entry.params, part["params"], what=entry.name)
            prefix = f"{index}."
            own = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
            built.append(entry.factory(params, check_shape(part["in_shape"]), arrays=own, device=device, dtype=dtype))
        if len(built) == 1:
            op = built[0]
        else:
            from pnprgm.operators.composition import Composed

            op = Composed(built)
        in_shape, out_shape = tuple(meta["in_shape"]), tuple(meta["out_shape"])
    except (KeyError, TypeError, ValueError, IndexError) as err:
        if isinstance(err, UserError):
            raise
        raise UserError(f"invalid operator record ({type(err).__name__}: {err}); degrade again.") from None
    if op.in_shape != in_shape or op.out_shape != out_shape:
        raise UserError(f"operator record of {meta.get('spec')!r} is inconsistent: shapes {op.in_shape}->{op.out_shape}, "
                        f"recorded {in_shape}->{out_shape}.")
    if meta.get("spec") != op.spec:  # the parts run; a spec that says otherwise would mislabel every record made
        raise UserError(f"operator record is inconsistent: its spec says {meta.get('spec')!r} and its parts are "
                        f"{op.spec!r}; degrade again.")
    return op


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix.lower() != ".json":
        path = path.with_name(path.name + ".json")
    return path, path.with_suffix(".npz")


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray], *, protect=()) -> Path:
    """Atomically write ``arrays`` as a compressed .npz (numpy would append .npz to the temporary name)."""
    return io.atomic_write(path, arrays_writer(arrays), protect=protect)


def arrays_writer(arrays: dict[str, np.ndarray]):
    """``writer(tmp)`` of :func:`save_arrays` (for ``pnprgm.io.stage``)."""

    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    return writer


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays of an .npz written by :func:`save_arrays` (no pickles)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"array file {path} is missing; it must sit beside its .json.")
    if path.suffix.lower() != ".npz":
        raise UserError(f"array file {path} must be the .npz written beside its .json; degrade again.")
    return io.load_numpy(path, "array", "degrade again")


def save(op: Operator, path: str | Path, *, protect=()) -> Path:
    """Write ``op`` as ``NAME.json`` (the record) and ``NAME.npz`` (its arrays); returns the JSON path."""
    json_path, npz_path = _paths(path)
    meta, arrays = to_record(op)
    save_arrays(npz_path, arrays, protect=protect)
    meta = {**meta, "arrays_file": npz_path.name, "arrays_sha256": io.sha256_file(npz_path)}
    return io.write_json(json_path, meta, protect=protect)


def load(path: str | Path, *, device="cpu", dtype: torch.dtype = torch.float32) -> Operator:
    """The operator saved by :func:`save` at ``path`` (the .json; its .npz beside it)."""
    json_path, npz_path = _paths(path)
    try:
        meta = io.read_json(json_path)
    except OSError as err:
        raise UserError(f"cannot read operator file {json_path}: {err.strerror}; check the path.") from None
    except ValueError as err:
        raise UserError(f"operator file {json_path} is not valid JSON ({err}).") from None
    if isinstance(meta, dict) and meta.get("arrays_sha256") and npz_path.is_file():
        if io.sha256_file(npz_path) != meta["arrays_sha256"]:
            raise UserError(f"{npz_path} does not match {json_path.name} (sha256 differs); save the operator again.")
    return from_record(meta, load_arrays(npz_path), device=device, dtype=dtype)


__all__ = ["to_record", "from_record", "save", "load", "save_arrays", "load_arrays"]
