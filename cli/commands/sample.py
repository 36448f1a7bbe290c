"""``pnprgm sample``: draw images from an RGM model with its T-step sampler (one grid PNG + JSON sidecar)."""
from __future__ import annotations

import click

from pnprgm.cli.options import Command, SEED, NoiseLevel, threads_option

EXAMPLES = """
\b
Examples:
  pnprgm sample unet-denoiser-color-v1 --input photos/ -n 4 -o grid.png   # a shipped model (pnprgm models)
  pnprgm sample runs/ddpm/model.pt -n 16 -o grid.png --seed 3
  pnprgm sample runs/ddpm/model.pt -n 4 --size 128 -o big.png
  pnprgm sample runs/deblur/model.pt --input photos/ -o restored_grid.png --noise 0.01   # within its training noise
  pnprgm sample netG_550.pth#celebahq256 -n 4 -o faces.png --device cuda
  pnprgm sample rgm-sr --input lowres.png --upscale 4 -o sr.png   # SR through the sr levels

\b
MODEL is a shipped model name (`pnprgm models` lists them; found from any folder) or a model file. -o writes one
grid image: all the images tiled into one PNG, not one file per image.

\b
ddpm/sr models sample from pure noise (x_T) through their T levels. Models of denoise/operator processes
(and any model given --input) restore degraded centre crops of the input images in one step; the grid rows are
then: model input, restoration, original. GRID.json records the model, its sha256, the process and the seed.
"""


@click.command("sample", cls=Command, epilog=EXAMPLES)
@click.argument("model")
@click.option("-n", "count", type=int, default=16, show_default=True, help="Number of images (inputs used at most).")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Grid image to write (PNG): all the images tiled into one picture, plus GRID.json.")
@click.option("--size", type=int, default=None, help="Image size (default: the training crop; inputs: up to 256).")
@click.option("--input", "inputs", multiple=True, type=click.Path(), help="Clean images or folders to degrade and restore.")
@click.option("--noise", type=NoiseLevel(), default=None, help="Noise std in [0,1] units for restoring inputs such as 0.1 or 25/255 (default: the training validation level).")
@click.option("--upscale", type=int, default=None,
              help="sr models: super-resolve the --input low-resolution images by this factor (2, 4, 8) through the model's levels.")
@click.option("--operator", default=None,
              help="Operator-process models: the operator to use instead of the model file's; a model trained with "
                   "module:callable or file.py:callable needs it (code named inside a model file is never imported).")
@click.option("--nrow", type=int, default=None, help="Images per grid row (default: square-ish).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the noise and latents.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@threads_option
@click.option("--overwrite", is_flag=True, help="Replace -o (or its .json) when pnprgm sample did not write it (default: refuse).")
def command(model, count, out, size, inputs, noise, upscale, operator, nrow, seed, device, threads, overwrite):
    """Sample images from an RGM model (a shipped name, our model file, or PATH#CONFIG for an official checkpoint)
    into one grid image (-o)."""
    from pnprgm.device import set_threads
    from pnprgm.training.sampling import sample_model_grid

    set_threads(threads)
    path = sample_model_grid(model, out, count=count, size=size, inputs=inputs, noise=noise, nrow=nrow, seed=seed,
                             device=device, upscale=upscale, operator=operator, overwrite=overwrite)
    click.echo(f"wrote {path}")

