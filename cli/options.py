"""Options and parsers shared by several commands (so each command stays a thin layer)."""
from __future__ import annotations

import argparse
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import click

from pnprgm.config import MAX_SEED
from pnprgm.errors import UserError

class Command(click.Command):
    """A click command in which a single-valued option may be given once: click keeps the last value silently, so
    ``--operator sr2 --operator sr4`` (or ``--noise`` beside its alias ``--sigma``) would drop one without a word."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:
            _, _, order = self.make_parser(ctx).parse_args(args=list(args))  # order: one entry per occurrence
            if any(param.is_eager for param in order):  # --help (or train --list) answers whatever else was given
                return super().parse_args(ctx, args)
            given = Counter(param for param in order
                            if isinstance(param, click.Option) and not (param.multiple or param.count or param.is_flag))
            for param, times in given.items():
                if times > 1:
                    raise click.UsageError(f"{' / '.join(param.opts)} was given {times} times; give it once (only "
                                           f"the last would count).", ctx)
        return super().parse_args(ctx, args)


class OnceParser(argparse.ArgumentParser):
    """The scripts' argparse parser with :class:`Command`'s rule: a single-valued option given twice is an error
    (argparse, like click, would keep the last silently)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if args and str(args[0]).startswith(self.prefix_chars) and kwargs.get("action", "store") == "store":
            kwargs["action"] = _StoreOnce
        return super().add_argument(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        parsed, extra = super().parse_known_args(args, namespace)
        vars(parsed).pop(_GIVEN, None)
        return parsed, extra


_GIVEN = "_options_given"


class _StoreOnce(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        given = vars(namespace).setdefault(_GIVEN, set())
        if self.dest in given:
            parser.error(f"{' / '.join(self.option_strings)} was given twice; give it once (only the last would count).")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


SEED = click.IntRange(0, MAX_SEED)
seed_option = click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of every random choice (results are reproducible).")
threads_option = click.option(
    "--threads", type=click.IntRange(1, 4096), default=None,
    help="CPU threads (default: OMP_NUM_THREADS, else the physical cores not already busy, so runs side by side do "
         "not oversubscribe: on a busy 2-core machine 2 threads ran 10x slower than 1).")
device_option = click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto (CUDA if available).")


def parse_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    """``"HxW"`` -> (H, W)."""
    if text is None:
        return None
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size must look like 256x320 (height x width), got {text!r}.") from None
    if max(height, width) > MAX_SIZE_SIDE:  # beyond it the operator's buffers fail to allocate, with no word on why
        raise UserError(f"--size sides are at most {MAX_SIZE_SIDE} pixels (height x width of the image to restore); "
                        f"got {text}.")
    return height, width


#: The largest side --size takes: a 65536-pixel side is already a gigapixel image.
MAX_SIZE_SIDE = 65536


def parse_assignments(items: tuple[str, ...], option: str = "--set") -> dict[str, Any]:
    """``("iterations=12", "lam=0.3")`` -> dict of strings (the solver config coerces the types); ``option`` names
    the flag in the error."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option} expects KEY=VALUE, got {item!r}.")
        if key.strip() in values:
            raise UserError(f"{option} {key.strip()} was given twice ({values[key.strip()]}, {value.strip()}); give it "
                            f"once.")
        values[key.strip()] = value.strip()
    return values


class NoiseLevel(click.ParamType):
    """A noise std in [0, 1] units: ``0.02`` or ``5/255`` (the range is checked by the command, in one line)."""

    name = "SIGMA"

    def convert(self, value, param, ctx):
        return self._parse(value, param, ctx) + 0.0  # -0 is 0 (a record would say -0.0)

    def _parse(self, value, param, ctx) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip()
        try:
            if "/" in text:
                numerator, denominator = text.split("/")
                return float(numerator) / float(denominator)
            return float(text)
        except (ValueError, ZeroDivisionError):
            self.fail(f"{value!r} is not a noise level; give a number such as 0.02 or 5/255.", param, ctx)


NOISE_LEVEL = NoiseLevel()


def noise_level_argument(text: str) -> float:
    """argparse ``type=`` of the scripts for a noise std in [0, 1] units (``0.02``, ``5/255``): NOISE_LEVEL's twin."""
    try:
        value = NOISE_LEVEL.convert(text, None, None)
    except click.BadParameter as err:
        raise argparse.ArgumentTypeError(err.format_message()) from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a std in [0, 1]; got {text}")
    return value


class NoiseRange(click.ParamType):
    """A noise std or a range ``MIN:MAX`` in [0, 1] units, each part a :class:`NoiseLevel` (``1/255:50/255``)."""

    name = "S or MIN:MAX"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        low_text, colon, high_text = str(value).partition(":")
        if colon and (not low_text.strip() or not high_text.strip()):
            self.fail(f"{value!r} is not a noise range; give MIN:MAX such as 0.004:0.2 or 1/255:50/255.", param, ctx)
        low = NOISE_LEVEL.convert(low_text, param, ctx)
        high = NOISE_LEVEL.convert(high_text, param, ctx) if colon else low
        if not 0 <= low <= high <= 1:
            self.fail(f"{value!r}: need 0 <= MIN <= MAX <= 1 (a std in [0, 1] units; 25/255 for 25 on the 0-255 "
                      "scale).", param, ctx)
        return low, high


class IntRangeText(click.ParamType):
    """An integer range ``MIN:MAX`` (or one integer, ``N`` meaning ``N:N``) inside ``[lowest, highest]``."""

    def __init__(self, lowest: int, highest: int):
        self.lowest, self.highest = lowest, highest
        self.name = "MIN:MAX"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        low_text, colon, high_text = str(value).partition(":")
        try:
            low = int(low_text)
            high = int(high_text) if colon else low
        except ValueError:
            self.fail(f"{value!r} is not a range; give MIN:MAX of whole numbers such as "
                      f"{self.lowest}:{self.highest}.", param, ctx)
        if not self.lowest <= low <= high <= self.highest:
            self.fail(f"{value!r}: need {self.lowest} <= MIN <= MAX <= {self.highest}.", param, ctx)
        return low, high


@contextlib.contextmanager
def write_failures_named(out: Any, option: str = "--out"):
    """A failed write into the output folder ``out`` (a full disk, a refused permission) as one line naming
    ``option``; any other OSError as it is."""
    from pnprgm.io import cannot_write_into, is_write_failure

    try:
        yield
    except OSError as err:
        if not is_write_failure(err, out):
            raise
        raise UserError(cannot_write_into(out, err, option)) from None


# ---- the benchmark scripts' shared rules (benchmarks/*.py): one-line errors, outputs never replaced unasked ----

def stem_files(stem: str | Path, *suffixes: str) -> list[Path]:
    """The output files of an output stem, ``f"{stem}{suffix}"`` (not ``with_suffix``, which would turn the stem
    ``results.v2`` into ``results.json``)."""
    return [Path(f"{stem}{suffix}") for suffix in suffixes]


def claim_outputs(paths: Iterable[str | Path], *, overwrite: bool, option: str = "--out",
                  inputs: Iterable[str | Path] = ()) -> None:
    """Before any work: a :class:`UserError` when an output is one of the files the run reads (``inputs``, never
    replaced), a folder, or named twice, or when one exists and ``overwrite`` was not given (a script replaces only
    the files it is told to replace)."""
    from pnprgm import io

    paths = [Path(p) for p in paths]
    io.refuse_inputs(paths, inputs, option=option)
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            raise UserError(f"{path} is named twice as an output; give each output its own name.")
        seen.add(path.resolve())
        if path.is_dir():
            raise UserError(f"{path} is a folder; give a file name or stem ({option}).")
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise UserError(f"{path} already exists; pass --overwrite to replace it, or choose another {option}.")
        io.check_writable(path, option=option)


def script_main(main: Callable[[], Optional[int]]) -> int:
    """Run a script's ``main``: bad input (a :class:`UserError`) is one line on stderr and exit code 2, as with the
    ``pnprgm`` commands; the script's own return value otherwise (None: 0)."""
    import sys

    from pnprgm.errors import first_line

    try:
        return int(main() or 0)
    except UserError as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        return 2
