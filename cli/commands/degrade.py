"""``pnprgm degrade``: thin layer over :func:`pnprgm.degrade.degrade_files`."""
from __future__ import annotations

import sys

import click

from pnprgm.cli.options import Command, SEED, NoiseLevel, device_option, threads_option

EXAMPLES = """
\b
Examples:
  pnprgm degrade photo.png --operator sr4 -o meas/
  pnprgm degrade photos/ --operator "blur:gaussian,sigma=2" --noise 0.02 -o meas/
  pnprgm degrade face.png --operator gray --noise 5/255 --seed 3 -o meas/
  pnprgm degrade a.png b.jpg --operator "mask:random,rate=0.7,seed=1" -o meas/
  pnprgm degrade photo.png --operator "blur:gaussian,sigma=1.6+sr2" -o meas/   # blur, then x2 block mean

\b
Writes OUTDIR/NAME.png (the measurement at its own size, e.g. 4x smaller for sr4, clipped to [0, 1], in
8 bits, or 16 for a 16-bit input; for viewing) and
OUTDIR/NAME.measurement.json + .npz (operator with its masks/kernels, noise level, noise seed, source sha256
and shape, and the exact float measurement), which `pnprgm restore OUTDIR/ -o OUT/` reads. Operators and their
parameters: `pnprgm operators`; the spec grammar: docs/operators.md. Inputs sharing a name (a.png, a.gif) get
distinct outputs (a_png.png, a_gif.png), as in restore. Inputs are never overwritten, nor is a
file in OUTDIR that degrade did not write for the same image (--overwrite replaces it); an input that fails is
reported and the others go on (exit status 1 if any failed).
"""


@click.command("degrade", cls=Command, epilog=EXAMPLES)
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-p", "--operator", "spec", required=True, help="Operator spec, e.g. sr4 or 'blur:gaussian,sigma=2' (pnprgm operators).")
@click.option("--noise", type=NoiseLevel(), default=0.0, show_default=True, help="Gaussian noise std in [0, 1] units (0.02 or 5/255).")
@click.option("-o", "--out", "outdir", required=True, type=click.Path(), help="Output folder (created if needed; not an input folder, whose next run would read the outputs as inputs).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Noise seed (each image hashes it with its sha256); masks/motion kernels use the spec's seed=.")
@click.option("--overwrite", is_flag=True, help="Replace files in -o that pnprgm degrade did not write (default: refuse that input).")
@device_option
@threads_option
def command(inputs, spec, noise, outdir, seed, device, threads, overwrite):
    """Make measurements of clean images: operator + noise, saved with a sidecar for `pnprgm restore`."""
    from pnprgm.degrade import degrade_files
    from pnprgm.device import set_threads

    set_threads(threads)
    report = degrade_files(inputs, spec, outdir, noise=noise, seed=seed, device=device,
                           on_written=click.echo, on_error=lambda line: click.echo(f"error: {line}", err=True),
                           overwrite=overwrite)
    click.echo(f"degraded {len(report.degraded)} image(s) into {outdir}"
               + (f"; {len(report.errors)} failed" if report.errors else ""))
    if not report.ok:
        sys.exit(1)
