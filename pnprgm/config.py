"""Strict construction of frozen configuration dataclasses.

Unknown keys are errors (with the valid keys listed); strings from the CLI or spec strings are coerced to
the field's declared type. YAML/JSON are read at the CLI edge and arrive here as dicts, with one exception:
:func:`read_config_file` also serves ``PATH#FILE.yaml`` model names (an official checkpoint and its argument dict,
the form the official code saves), which the Python API takes as the CLI does, so the reader lives here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import re
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from pnprgm.errors import UserError, first_line

C = TypeVar("C")
#: Largest seed: torch, numpy and Python all accept 0..MAX_SEED (a larger one overflowed torch's generator); derived
#: seeds are reduced modulo it.
MAX_SEED = 2**63 - 1


def hashed_seed(text: str, bits: int = 63) -> int:
    """A seed of ``bits`` bits from the sha256 of ``text`` (its first bytes, little-endian): seeds derived from several
    values (a run seed, an image, a task) without collisions between them, the same on every machine."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[: (bits + 8) // 8], "little") & (2**bits - 1)


def check_seed(seed: Any, what: str = "seed") -> int:
    """``seed`` as an integer in [0, MAX_SEED] (the range of ``--seed``), else a :class:`UserError` naming ``what``
    (the one rule for every seed: the API's, the configs', the operator specs')."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{what} must be an integer between 0 and {MAX_SEED}; got {seed!r}.")
    return int(seed)


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type of each dataclass field."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce(value: Any, annotation: Any, *, name: str = "value") -> Any:
    """Convert ``value`` (often a string) to ``annotation``; raise :class:`UserError` naming ``name`` on failure."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, name=name)
            except UserError as err:
                errors.append(str(err))
        raise UserError(errors[0] if errors else f"{name}: cannot use {value!r}")
    if origin is typing.Literal:
        for choice in args:
            if value == choice or str(value) == str(choice):
                return choice
        raise UserError(f"{name} must be one of {', '.join(map(str, args))}; got {value!r}.")
    if origin in (tuple, list):
        # Strings: "1:2:4", "1,2,4" or "[1, 2, 4]" (the forms a shell user types).
        if not isinstance(value, (str, list, tuple)):  # a number where a list belongs (a suite's "tasks": 5)
            raise UserError(f"{name} must be a list (or a comma-separated string); got {value!r}.")
        items = ([v for v in re.split(r"[:,]", value.strip().strip("[]()")) if v.strip()]
                 if isinstance(value, str) else list(value))
        inner = args[0] if args else Any
        converted = [coerce(v, inner, name=name) for v in items]
        return tuple(converted) if origin is tuple else converted
    try:
        if annotation is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if annotation in (int, float) and isinstance(value, bool):  # true is not 1 (a suite's "noise": true)
            raise ValueError
        if annotation is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if annotation is float:
            number = float(value)
            if math.isfinite(number):  # nan and inf pass every range check and poison the result
                return number
        if annotation is str:
            return str(value)
        if annotation is Path:
            return Path(value)
    except (TypeError, ValueError):
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string", Path: "a path"}.get(
            annotation, f"a {getattr(annotation, '__name__', str(annotation))}")
        raise UserError(f"{name} must be {kind}; got {value!r}.") from None
    if annotation is float:
        raise UserError(f"{name} must be a finite number; got {value!r}.")
    return value


def build_strict(cls: type[C], values: Mapping[str, Any] | None = None, *, what: str | None = None) -> C:
    """Instantiate dataclass ``cls`` from ``values``: unknown keys are errors, values coerced to field types.

    :param what: name used in error messages (defaults to the class name).
    """
    values = dict(values or {})
    types = field_types(cls)
    label = what or cls.__name__
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise UserError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for {label}; "
            f"valid: {', '.join(types) or '(none)'}."
        )
    for field in dataclasses.fields(cls):  # named with its description, not as __init__'s "missing argument"
        if field.name not in values and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            described = f" ({field.metadata['help']})" if "help" in field.metadata else ""
            raise UserError(f"{label} needs {field.name}=...{described}.")
    converted = {k: coerce(v, types[k], name=f"{label}.{k}") for k, v in values.items()}
    try:
        return cls(**converted)
    except UserError:
        raise
    except (TypeError, ValueError) as err:  # __post_init__ range checks name the value; one line, no traceback
        raise UserError(f"{label}: {str(err).rstrip('.')}.") from None


class FrozenDict(dict):
    """A dict that cannot be changed after it is made: the mapping fields of frozen configurations (a registered preset
    is shared by the whole process). Unlike ``types.MappingProxyType`` it pickles, deep-copies, goes through
    ``dataclasses.asdict`` and ``json.dumps`` as a dict does."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"this {type(self).__name__} is read-only; make a new one, e.g. {{**values, key: value}}")

    __setitem__ = __delitem__ = __ior__ = _refuse  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __reduce__(self):
        return type(self), (dict(self),)

    def __copy__(self) -> "FrozenDict":
        return self

    def __deepcopy__(self, memo: dict) -> "FrozenDict":
        import copy

        return type(self)(copy.deepcopy(dict(self), memo))


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists, paths strings)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or YAML (if PyYAML is installed) mapping; errors name the file."""
    from pnprgm.io import read_text

    path = Path(path)
    try:
        text = read_text(path)
    except OSError as err:
        raise UserError(f"cannot read config file {path}: {err.strerror}; check the path.") from None
    except UnicodeDecodeError:
        raise UserError(f"cannot parse config file {path}: it is not UTF-8 text; give a JSON or YAML file.") from None
    except ValueError as err:
        raise UserError(f"cannot read config file {path}: {err}; give a JSON or YAML file.") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise UserError(f"{path} is YAML but PyYAML is not installed; pip install pyyaml or use JSON.") from None
            data = yaml.safe_load(text)
        else:
            from pnprgm.io import parse_json

            data = parse_json(text)
    except (ValueError, Exception) as err:  # yaml.YAMLError is not importable without PyYAML
        if isinstance(err, UserError):
            raise
        raise UserError(f"cannot parse config file {path}: {first_line(err)}.") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of parameter: value.")
    return data
