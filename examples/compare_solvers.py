"""Douglas-Rachford, ADMM and HQS side by side on one deblurring problem, with PSNR at every iteration.

The three splitting solvers run with the same shipped denoiser and the same noise-level schedule (each one's
``deblur-*`` preset, ``pnprgm presets``), from the same measurement (Gaussian blur sigma 1.6 px, noise 0.01).
:func:`pnprgm.restore` with ``ground_truth`` and ``return_trace=True`` records PSNR after every iteration; the
figure shows each solver's restoration and the PSNR curves. Run::

    python examples/compare_solvers.py                    # about 12 s on one CPU thread
    python examples/compare_solvers.py --iterations 16 --out gallery/
"""
from __future__ import annotations

import argparse
import time

import pnprgm
from pnprgm import figures, operators
from pnprgm.device import set_threads
from pnprgm.metrics.fidelity import psnr, ssim

from _common import example_parser, figure_path, load_photo, run, write_figure  # the examples' shared parts

SOLVERS = ("drs", "admm", "hqs")


def parse_args(argv=None) -> argparse.Namespace:
    parser = example_parser(__doc__, "compare_solvers.jpg")
    parser.add_argument("--operator", default="blur:gaussian,sigma=1.6", help="the degradation (pnprgm operators)")
    parser.add_argument("--noise", type=float, default=0.01, help="measurement noise std in [0, 1] units")
    parser.add_argument("--iterations", type=int, help="iterations of every solver (default: the presets')")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    path = figure_path(args, "compare_solvers.jpg")
    set_threads(args.threads)
    x = load_photo(args.photo, args.crop)
    physics = operators.build(args.operator, tuple(x.shape))
    y = operators.measure(physics, x[None], args.noise, seed=args.seed)
    overrides = {} if args.iterations is None else {"iterations": args.iterations}
    found = {}
    for solver in SOLVERS:
        started = time.perf_counter()
        restored, result, settings = pnprgm.restore(y, physics, noise_sigma=args.noise, solver=solver, seed=args.seed,
                                                    ground_truth=x[None], return_trace=True, **overrides)
        found[solver] = {"image": restored[0], "psnr": [r.psnr for r in result.trace], "preset": settings.preset,
                         "ssim": float(ssim(restored, x[None])), "seconds": time.perf_counter() - started}
        print(f"{solver:5s} ({settings.preset}): {len(result.trace)} iteration{'s' if len(result.trace) != 1 else ''}, PSNR "
              f"{' '.join(f'{p:.2f}' for p in found[solver]['psnr'])}, SSIM {found[solver]['ssim']:.3f}, "
              f"{found[solver]['seconds']:.1f} s")
    # a measurement of the image's shape (a blur) is scored as an estimate; another (sr, gray) is not comparable
    measured = (f"{float(psnr(y.clamp(0, 1), x[None])):.2f} dB / {float(ssim(y.clamp(0, 1), x[None])):.3f}"
                if y.shape == x[None].shape else "")
    curves = figures.chart({s: f["psnr"] for s, f in found.items()}, x_label="iteration", y_label="PSNR (dB)",
                           size=tuple(x.shape[1:]))
    cells = [(f["image"], f"{f['psnr'][-1]:.2f} dB / {f['ssim']:.3f}") for f in found.values()]
    section = figures.Section(f"{args.operator}, noise {args.noise:.3g}: the same denoiser in three solvers (PSNR / SSIM under each)",
                              ["measurement", *(f"{s} ({f['preset']})" for s, f in found.items()), "PSNR per iteration"],
                              [[(figures.display_measurement(y[0], tuple(x.shape)), measured), *cells,
                                (curves, "")]])
    write_figure(path, [section])
    return found


if __name__ == "__main__":
    run(main)
