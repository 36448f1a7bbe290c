"""The operator spec grammar (documented in docs/operators.md) and ``build``.

::

    spec     := operator ("+" operator)*          # a+b: apply a, then b
    operator := name [":" first] ("," key=value)*
    first    := variant | key=value
    name     := family | alias                    # sr, blur, mask, gray, identity | sr2, sr4, sr8

Examples: ``sr4``, ``sr:factor=3,kernel=bicubic``, ``blur:gaussian,sigma=2``, ``mask:file=m.png``,
``blur:gaussian,sigma=1.6+sr2``. Values are typed by the variant's parameter dataclass (strict: unknown keys
and wrong types are one-line :class:`UserError` s listing the valid choices).
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from pnprgm.operators.base import Alias, Operator, Variant, check_shape, format_spec, registry
from pnprgm.config import build_strict, check_seed
from pnprgm.device import resolve_device
from pnprgm.errors import UserError


@dataclass(frozen=True)
class ParsedOperator:
    """One operator of a spec: its registry variant and typed parameters."""

    variant: Variant
    params: Any


def variants() -> list[Variant]:
    return [entry.obj for entry in registry.entries() if isinstance(entry.obj, Variant)]


def aliases() -> dict[str, Alias]:
    return {entry.name: entry.obj for entry in registry.entries() if isinstance(entry.obj, Alias)}


def families() -> dict[str, list[Variant]]:
    """Family name -> its variants (registration order, the default first)."""
    grouped: dict[str, list[Variant]] = {}
    for variant in variants():
        grouped.setdefault(variant.family, []).append(variant)
    return {name: sorted(group, key=lambda v: not v.default) for name, group in grouped.items()}


def names() -> list[str]:
    """Every registered variant and alias that builds with default parameters (file-based variants need a file)."""
    return [
        entry.name for entry in registry.entries()
        if isinstance(entry.obj, Alias) or entry.obj.buildable_with_defaults()
    ]


def _choices() -> str:
    listed = []
    for family, group in families().items():
        labels = [v.variant for v in group if v.variant]
        listed.append(f"{family}[:{'|'.join(labels)}]" if labels else family)
    return ", ".join(listed + list(aliases()))


def _split_operators(spec: str) -> list[str]:
    """Split at '+' only where a family or alias name follows, so '+' in numbers (1e+3) stays in the value."""
    heads = sorted(list(families()) + list(aliases()), key=len, reverse=True)
    pattern = r"\+(?=\s*(?:(?:" + "|".join(map(re.escape, heads)) + r")\s*(?:[:,+]|$)|\+|$))"
    return [part.strip() for part in re.split(pattern, spec)]


def parse(spec: str, defaults: Optional[dict[str, str]] = None) -> list[ParsedOperator]:
    """Parse a spec into its operators (in application order) without building them (no image shape needed).

    :param defaults: parameter values for the operators that have such a parameter and whose spec does not give
        it (``pnprgm restore`` of a photo: ``operators.PHOTO_DEFAULTS``).
    """
    if not isinstance(spec, str):
        raise UserError(f"an operator spec is text such as 'sr4' or 'blur:gaussian,sigma=2', not {type(spec).__name__} "
                        f"{spec!r} (pnprgm operators lists them).")
    if not spec.strip():
        raise UserError(f"empty operator spec; give one such as sr4 or blur:gaussian,sigma=2 (pnprgm operators lists them).")
    return [_parse_one(part, spec, defaults or {}) for part in _split_operators(spec.strip())]


def files_read(spec: str) -> list[Path]:
    """The files ``spec`` reads (``mask:file``, ``blur:file``): outputs must never replace them."""
    return [getattr(part.params, field.name) for part in parse(spec) for field in dataclasses.fields(part.params)
            if isinstance(getattr(part.params, field.name), Path)]


def with_files(spec: str, moved: dict[str, Path]) -> str:
    """``spec`` with each file it reads that ``moved`` maps (keyed by the path as the spec names it) read from the
    mapped path instead; the same operator otherwise, its parameters written out in full."""
    parts = []
    for part in parse(spec):
        params = part.params
        for item in dataclasses.fields(params):
            value = getattr(params, item.name)
            if isinstance(value, Path) and str(value) in moved:
                params = dataclasses.replace(params, **{item.name: Path(moved[str(value)])})
        parts.append(format_spec(part.variant.name, params))
    rewritten = "+".join(parts)
    wanted = [Path(moved.get(str(path), path)) for path in files_read(spec)]
    try:
        same = files_read(rewritten) == wanted
    except UserError:
        same = False
    if not same:  # a path with the spec's separators (',', '+', '=') would be cut apart
        raise UserError(f"cannot name {', '.join(map(str, moved.values()))} in an operator spec (it holds ',', '+' "
                        f"or '='); set PNPRGM_CACHE to a folder whose path has none of them.")
    return rewritten


def names_code(spec: str) -> bool:
    """Whether an operator spec names Python code (``file.py:callable``, or ``module:callable`` where the registry
    parser fails) rather than an operator of the registry (``pnprgm operators``); as :func:`load_operator` reads it,
    without importing anything. A spec that is neither (``blur:defocus,radius=3``) is not code: its parser error
    is the one to show."""
    left, _, right = spec.rpartition(":")
    if left.endswith(".py") and right.isidentifier():
        return True
    try:
        parse(spec)
    except UserError:
        if left.strip().lower() in set(families()) | set(aliases()):
            return False  # a mistyped variant (blur:gausian): the parser's error is the one to show
        return bool(left) and right.isidentifier() and all(part.isidentifier() for part in left.split("."))
    return False


def last_variant(spec: str) -> Variant:
    """The variant of ``spec``'s last operator, which decides its restoration task and default solver. Its parameters
    are read but not required to hold: ``blur:file`` naming no file (the presets' stand-in for a user's deepinv blur)
    is the ``blur:file`` variant."""
    try:
        return parse(spec)[-1].variant
    except UserError:
        if not isinstance(spec, str) or not spec.strip():
            raise
        text = _split_operators(spec.strip())[-1]
        name, group, variant_name, rest = _head(text, spec)
        keys = {item.partition("=")[0].strip().lower(): None for item in rest}  # only the keys pick a variant
        return _pick_variant(name, group, variant_name, keys)


def closest_name(name: str) -> Optional[str]:
    """The operator family or alias nearest a mistyped name (``blurr`` -> ``blur``), as the parser's hint names it;
    None when none is near."""
    close = difflib.get_close_matches(name, list(families()) + list(aliases()), n=1)
    return close[0] if close else None


def _head(text: str, whole: str) -> tuple[str, list[Variant], str | None, list[str]]:
    """One operator's text as (family, its variants, the variant named or None, the key=value items), aliases
    expanded (``sr4,kernel=box`` -> sr, ..., None, [factor=4, kernel=box])."""
    if not text:
        raise UserError(f"empty operator in spec {whole!r}; '+' must join two operators, e.g. blur:gaussian+sr2.")
    items = [item.strip() for item in text.split(",")]
    name, colon, first = items[0].partition(":")
    name = name.strip().lower()
    rest = items[1:]
    if name in aliases():
        if colon:
            raise UserError(f"{name} is a short name for {aliases()[name].spec!r} and takes no variant; write {name},key=value.")
        return _head(",".join([aliases()[name].spec, *rest]), whole)
    group = families().get(name)
    if group is None:
        close = closest_name(name)
        hint = f" Did you mean {close!r}?" if close else ""
        raise UserError(f"unknown operator {name!r} in {whole!r}.{hint} Valid: {_choices()} (pnprgm operators).")
    if colon:
        rest.insert(0, first.strip())
    variant_name = None
    if rest and "=" not in rest[0]:
        variant_name = rest.pop(0).lower()
    return name, group, variant_name, rest


def _parse_one(text: str, whole: str, defaults: dict) -> ParsedOperator:
    name, group, variant_name, rest = _head(text, whole)
    values: dict[str, str] = {}
    for item in rest:
        key, equals, value = item.partition("=")
        key = key.strip().lower()
        if not equals or not key:
            raise UserError(f"expected key=value in operator {text!r}, got {item!r}; e.g. {group[0].name},{_example_key(group[0])}=...")
        if key in values:
            raise UserError(f"parameter {key!r} given twice in operator {text!r}; keep one.")
        values[key] = value.strip()
    variant = _pick_variant(name, group, variant_name, values)
    fields = {f.name for f in dataclasses.fields(variant.params)}
    values = {**{k: v for k, v in defaults.items() if k in fields}, **values}
    params = build_strict(variant.params, values, what=variant.name)
    seed = getattr(params, "seed", None)
    if seed is not None:  # one rule for every seeded family, as --seed
        check_seed(seed, f"{variant.name}: seed")
    return ParsedOperator(variant, params)


def _example_key(variant: Variant) -> str:
    fields = dataclasses.fields(variant.params)
    return fields[0].name if fields else "key"


def _pick_variant(family: str, group: list[Variant], name: str | None, values: dict) -> Variant:
    by_name = {v.variant: v for v in group if v.variant}
    if name is not None:
        if name not in by_name and not by_name:  # sr:0: a value where a variant would go
            keys = [field.name for field in dataclasses.fields(group[0].params)]
            if not keys:
                raise UserError(f"{family} takes no variant or parameter ({name!r}); give just {family}.")
            raise UserError(f"{family} has no variants; give its parameters as key=value ({', '.join(keys)}): "
                            f"pnprgm operators shows {family}'s with an example.")
        if name not in by_name:
            raise UserError(f"unknown {family} variant {name!r}; valid: {', '.join(by_name)}.")
        return by_name[name]
    if "file" in values and "file" in by_name:  # blur:file=k.npy and mask:file=m.png name their variant by the key
        return by_name["file"]
    return group[0]


def build(spec: str, shape: tuple[int, int, int], *, device="cpu", dtype: torch.dtype = torch.float32,
          defaults: Optional[dict[str, str]] = None) -> Operator:
    """The operator of ``spec`` for images of ``shape`` (C, H, W); compositions chain the shapes.

    :param device: where buffers live (``cpu``, ``cuda``, ``auto``).
    :param dtype: floating dtype of kernels and masks (float64 for exact tests).
    :param defaults: see :func:`parse`.
    """
    shape = check_shape(shape)
    device = resolve_device(device)
    parts: list[Operator] = []
    for parsed in parse(spec, defaults):
        part = parsed.variant.factory(parsed.params, shape, arrays=None, device=device, dtype=dtype)
        parts.append(part)
        shape = part.out_shape
    if len(parts) == 1:
        return parts[0]
    from pnprgm.operators.composition import Composed

    return Composed(parts)


def image_shape(spec: str, measurement_shape: tuple[int, int, int], *, defaults: Optional[dict[str, str]] = None) -> tuple[int, int, int]:
    """The image shape (C, H, W) whose measurement under ``spec`` has ``measurement_shape``.

    Walks the parts backwards, building each at the size of its own output (every operator accepts an image of the
    size of its measurement except a 'valid' blur with a kernel larger than it) and asking it for the image size
    (:meth:`Operator.image_size_for`); a part's own error (a mask file of another size, an unreadable kernel) is
    shown as it is. Channels: as measured, or 3 for an operator that needs colour (gray).
    """
    channels, height, width = check_shape(measurement_shape)
    size = (height, width)
    for parsed in reversed(parse(spec, defaults)):
        first_error = None
        for candidate in dict.fromkeys((channels, 3)):
            try:
                part = parsed.variant.factory(parsed.params, (candidate, *size), arrays=None, device="cpu", dtype=torch.float64)
            except UserError as err:
                first_error = first_error or err
                continue
            if part.out_shape[0] == channels:
                channels, size = candidate, part.image_size_for(size)
                break
        else:
            if first_error is not None:
                raise first_error
            raise UserError(f"a {measurement_shape[0]}-channel image cannot be a measurement of {spec!r}; check --operator.")
    return (channels, *size)
