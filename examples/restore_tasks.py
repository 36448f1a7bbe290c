"""Every restoration task on one photo: super-resolution, deblurring, inpainting, colorization and denoising.

Each task's measurement is made with the benchmark's operator and noise (``pnprgm.benchmark.tasks``) and restored
with the task's default preset (DRS with the shipped denoisers) by :func:`pnprgm.restore`. The figure shows, per
task, the ground truth, the measurement, the operator's cheap estimate (nearest replication, the measurement
itself, the gray image: what you have without a prior) and pnprgm's restoration, with PSNR / SSIM against the
ground truth under each. Run::

    python examples/restore_tasks.py                      # about 20 s on one CPU thread
    python examples/restore_tasks.py --photo my.png --out gallery/

The photo (default: scikit-image's ``chelsea``, one of the public benchmark photos that chose the presets) is
centre-cropped to ``--crop`` pixels.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import pnprgm
from pnprgm import figures, io, operators
from pnprgm.benchmark import tasks
from pnprgm.config import check_seed
from pnprgm.device import set_threads
from pnprgm.errors import UserError
from pnprgm.metrics.fidelity import psnr, ssim
from pnprgm.restoration import initial_estimate

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


def parse_args(argv=None) -> argparse.Namespace:
    parser = example_parser(__doc__, "restore_tasks.jpg")
    parser.add_argument("--task", action="append", choices=tasks.registry.names(),
                        help="a task to run (repeat; default: all five)")
    parser.add_argument("--iterations", type=int, help="solver iterations (default: each preset's)")
    return parser.parse_args(argv)


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
    top, left = (height - side) // 2, (width - side) // 2
    return image[:, top : top + side, left : left + side].contiguous()


def restore_task(name: str, x: torch.Tensor, *, seed: int, iterations=None) -> dict:
    """The measurement of ``x`` for task ``name``, its cheap estimate and pnprgm's restoration, with their scores."""
    task = tasks.registry.get(name)
    physics = operators.build(task.spec, tuple(x.shape))
    y = operators.measure(physics, x[None], task.noise, seed=seed)
    started = time.perf_counter()
    overrides = {} if iterations is None else {"iterations": iterations}
    restored = pnprgm.restore(y, physics, noise_sigma=task.noise, seed=seed, **overrides)
    seconds = time.perf_counter() - started
    cheap = initial_estimate(physics, y).clamp(0, 1)
    cheap = cheap.expand_as(x[None]) if cheap.shape[1] != x.shape[0] else cheap
    score = lambda estimate: (float(psnr(estimate, x[None])), float(ssim(estimate, x[None])))  # noqa: E731
    return {"task": name, "spec": task.spec, "noise": task.noise, "y": y[0], "cheap": cheap[0],
            "restored": restored[0], "cheap_score": score(cheap), "score": score(restored), "seconds": seconds}


def figure(results: list[dict], x: torch.Tensor) -> list[figures.Section]:
    caption = lambda score: f"{score[0]:.2f} dB / {score[1]:.3f}"  # noqa: E731
    return [figures.Section(f"{r['task']}: {r['spec']}, noise {r['noise'] * 255:.3g}/255",
                            ["ground truth", "measurement", "initial estimate", "pnprgm (default preset)"],
                            [[(x, "PSNR / SSIM"), (figures.display_measurement(r["y"], tuple(x.shape)), ""),
                              (r["cheap"], caption(r["cheap_score"])), (r["restored"], caption(r["score"]))]])
            for r in results]


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    path = figure_path(args, "restore_tasks.jpg")
    set_threads(args.threads)
    x = load_photo(args.photo, args.crop)
    results = []
    for name in args.task or tasks.registry.names():
        results.append(restore_task(name, x, seed=args.seed, iterations=args.iterations))
        r = results[-1]
        print(f"{name:9s} initial estimate {r['cheap_score'][0]:6.2f} dB / {r['cheap_score'][1]:.3f}   "
              f"pnprgm {r['score'][0]:6.2f} dB / {r['score'][1]:.3f}   ({r['seconds']:.1f} s)")
    write_figure(path, figure(results, x))
    return results


if __name__ == "__main__":
    run(main)
