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
import time

import torch

import pnprgm
from pnprgm import figures, operators
from pnprgm.benchmark import tasks
from pnprgm.device import set_threads
from pnprgm.metrics.fidelity import psnr, ssim
from pnprgm.restoration import initial_estimate

from _common import example_parser, figure_path, load_photo, run, write_figure  # the examples' shared parts

def parse_args(argv=None) -> argparse.Namespace:
    parser = example_parser(__doc__, "restore_tasks.jpg")
    parser.add_argument("--task", action="append", choices=tasks.registry.names(),
                        help="a task to run (repeat; default: all five)")
    parser.add_argument("--iterations", type=int, help="solver iterations (default: each preset's)")
    return parser.parse_args(argv)


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
