"""What the examples share: their common options, the photo they restore, the figure check and the error line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pnprgm import figures, io
from pnprgm.config import check_seed
from pnprgm.errors import UserError

#: marks the figures the examples write (so that a rerun replaces its own figure and nothing else)
STAMP = "pnprgm example"


def example_parser(doc: str, figure: str) -> argparse.ArgumentParser:
    """The options every example takes: the photo, its crop, the seed, threads and where the figure goes."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--photo", type=Path, help="a photo of your own (default: scikit-image's chelsea)")
    parser.add_argument("--crop", type=at_least(32), default=160,
                        help="centre crop side in pixels, at least 32 (default 160; a multiple of 8 is used)")
    parser.add_argument("--out", type=Path, default=Path("."), help=f"folder of the figure {figure}")
    parser.add_argument("--threads", type=at_least(1), help="CPU threads (default: the idle cores)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the measurements and the solvers")
    parser.add_argument("--overwrite", action="store_true", help=f"replace a {figure} this example did not write")
    return parser


def at_least(low: int):
    """An argparse type: an integer >= ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}; got {value}")
        return value
    return parse


def seed(text: str) -> int:
    """An argparse type: a seed as the library takes it (0 to 2^63 - 1)."""
    try:
        return check_seed(int(text))
    except (ValueError, UserError) as err:
        raise argparse.ArgumentTypeError(str(err).rstrip(".") if isinstance(err, UserError) else
                                         f"{text!r} is not a whole number") from None


def figure_path(args: argparse.Namespace, figure: str) -> Path:
    """Where the figure goes, checked before the work: a folder that can hold it, and no file the examples did
    not write in its place (``--overwrite`` aside)."""
    path = Path(args.out) / figure
    if path.is_dir():
        raise UserError(f"--out {args.out} holds a folder named {figure}; choose another --out.")
    io.refuse_foreign(path, owned=lambda p: figures.stamp_of(p) == STAMP, tool="this example", overwrite=args.overwrite)
    io.check_writable(path, option="--out")
    return path


def write_figure(path: Path, sections: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"wrote {figures.write(path, sections, stamp=STAMP)}")


def run(main) -> None:
    """Run an example's ``main``, a bad input as one line."""
    try:
        main()
    except UserError as err:
        sys.exit(f"error: {err}")


def load_photo(path, crop: int) -> torch.Tensor:
    """A (3, crop, crop) centre crop in [0, 1] of ``path`` (a gray photo is repeated to three channels)."""
    if path is None:
        from skimage import data

        image = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float() / 255
    else:
        image = io.read_image(path)
    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    _, height, width = image.shape
    if min(height, width) < 32:
        raise UserError(f"the photo is {height}x{width}: give one of at least 32 pixels per side.")
    side = min(crop, height, width) // 8 * 8
    if side != crop:  # said, not silently another size
        why = f"the photo is {height}x{width}" if min(height, width) < crop else "a multiple of 8"
        print(f"note: a {side}x{side} crop ({why})")
    return io.centre_crop(image, side).contiguous()
