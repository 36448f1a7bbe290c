"""Restore through an operator of your own: any ``deepinv.physics.LinearPhysics`` works with pnprgm's solvers.

Here the degradation is a diagonal motion blur (a 9-pixel line kernel, circular boundary) built directly with
deepinv's ``BlurFFT``, not with one of pnprgm's operator specs. The solvers need only ``A``, ``A_adjoint`` and the
prox of the data term, which deepinv's ``LinearPhysics`` provides (closed form for ``BlurFFT``, conjugate gradient
for any other operator). The figure compares the shipped denoiser against total variation (the ``tv`` denoiser, a
classical prior), both inside HQS with the ``deblur-hqs`` preset.

The presets were tuned for Gaussian blur, and this motion blur shows their limits: on the default photo
(scikit-image's ``chelsea``, 160-px crop, 9-px motion, noise 0.01) the shipped denoiser gives 30.78 dB with HQS
(TV: 29.38 dB), but only 26.24 dB with DRS and 27.58 dB with ADMM, below TV's 29.42 / 29.39 dB with the same presets.
``pnprgm.restore`` with no preset restores a deepinv ``Blur``/``BlurFFT`` as a kernel file of pnprgm's (``blur:file``):
HQS with ``deblur-hqs``, the choice of benchmarks/deblur_solvers.md (24 held-out photos, motion and box kernels), so
30.78 dB here (before, DRS with the solver's defaults: 28.99 dB). On your own photos and operators, compare
``--preset`` values (and a classical prior) before trusting one. Run::

    python examples/your_own_operator.py                  # about 7 s on one CPU thread
"""
from __future__ import annotations

import argparse

import torch
from deepinv.physics import BlurFFT

import pnprgm
from pnprgm import figures, operators
from pnprgm.device import set_threads
from pnprgm.errors import UserError
from pnprgm.metrics.fidelity import psnr, ssim

from _common import at_least, example_parser, figure_path, load_photo, run, write_figure  # the examples' shared parts


def motion_kernel(length: int) -> torch.Tensor:
    """A (1, 1, L, L) diagonal line of ``length`` pixels, summing to 1: a camera moved diagonally during exposure."""
    kernel = torch.eye(length)
    return (kernel / kernel.sum())[None, None]


def parse_args(argv=None) -> argparse.Namespace:
    parser = example_parser(__doc__, "your_own_operator.jpg")
    parser.add_argument("--length", type=at_least(1), default=9,
                        help="motion length in pixels, at most a quarter of the crop (default 9)")
    parser.add_argument("--noise", type=float, default=0.01, help="measurement noise std in [0, 1] units")
    parser.add_argument("--preset", default="deblur-hqs", choices=("deblur-drs", "deblur-admm", "deblur-hqs"),
                        help="solver preset (default deblur-hqs; pnprgm presets)")
    parser.add_argument("--iterations", type=int, help="solver iterations (default: the preset's)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    path = figure_path(args, "your_own_operator.jpg")
    set_threads(args.threads)
    x = load_photo(args.photo, args.crop)
    if args.length > x.shape[-1] // 4:  # a longer kernel wraps around the circular image: not a motion blur
        raise UserError(f"--length {args.length} is more than a quarter of the {x.shape[-1]}-px crop; give at most "
                        f"{x.shape[-1] // 4}, or a larger --crop.")
    physics = BlurFFT(img_size=tuple(x.shape), filter=motion_kernel(args.length))
    y = operators.measure(physics, x[None], args.noise, seed=args.seed)
    overrides = {} if args.iterations is None else {"iterations": args.iterations}
    found = {}
    solver = args.preset.split("-")[1].upper()
    for label, denoiser in ((f"{solver} + TV", "tv"), (f"{solver} + shipped denoiser", "default")):
        restored, _, settings = pnprgm.restore(y, physics, noise_sigma=args.noise, preset=args.preset,
                                               denoiser=denoiser, seed=args.seed, return_trace=True, **overrides)
        found[label] = {"image": restored[0], "psnr": float(psnr(restored, x[None])),
                        "ssim": float(ssim(restored, x[None])), "denoiser": settings.denoiser}
        print(f"{label:26s} {found[label]['psnr']:.2f} dB / SSIM {found[label]['ssim']:.3f}")
    kernel = torch.nn.functional.interpolate(motion_kernel(args.length) / motion_kernel(args.length).max(),
                                             size=tuple(x.shape[1:]), mode="nearest")[0].expand(3, -1, -1)
    measured = (float(psnr(y.clamp(0, 1), x[None])), float(ssim(y.clamp(0, 1), x[None])))
    print(f"{'measurement':26s} {measured[0]:.2f} dB / SSIM {measured[1]:.3f}")
    section = figures.Section(f"deepinv BlurFFT, a {args.length}-pixel diagonal motion, noise {args.noise:.3g}",
                              ["kernel", "measurement", *found, "ground truth"],
                              [[(kernel, f"{args.length} x {args.length}"),
                                (y[0].clamp(0, 1), f"{measured[0]:.2f} dB / {measured[1]:.3f}"),
                                *[(f["image"], f"{f['psnr']:.2f} dB / {f['ssim']:.3f}") for f in found.values()],
                                (x, "PSNR / SSIM")]])
    write_figure(path, [section])
    return {"measurement": {"psnr": measured[0], "ssim": measured[1]}, "restored": found}


if __name__ == "__main__":
    run(main)
