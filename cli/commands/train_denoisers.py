"""``pnprgm train-denoisers``: thin layer over :func:`pnprgm.training.recipe.train_denoisers` (the GPU recipe)."""
from __future__ import annotations

import shlex
import sys

import click

from pnprgm.cli.options import Command, SEED, IntRangeText, NoiseRange, write_failures_named

EXAMPLES = """
\b
Examples:
  scripts/pack_gpu.sh                                   # fills .gpu/data and .gpu/wheels (CPU machine with pip)
  scripts/train_gpu.sh runs/gpu 8                       # one GPU, 8 minutes: wraps this command
  pnprgm train-denoisers --data .gpu/data --out runs/gpu --minutes 8 --device cuda
  pnprgm train-denoisers --data .gpu/data --out runs/cpu --minutes 0.2 --device cpu --size tiny --batch-size 4
  scripts/train_gpu.sh runs/gpu2 3 --init-from drunet-denoiser-color --init-from drunet-denoiser-gray --lr 1e-4

\b
Trains the default colour and gray DRUNet denoisers in ONE process (steps interleaved, --gray-share of them gray)
for --minutes, then stops. Every --save-every seconds and at the end it writes OUT/drunet-denoiser-color.pt and
OUT/drunet-denoiser-gray.pt (EMA weights in float16, config and training record, the format `pnprgm models` and
`--model` read) over the previous ones, with validation PSNR at 15/25/50 /255 on the pack's val/ photos, and
appends throughput and losses to OUT/recipe_log.jsonl. Publish a result with pnprgm.rgm.models.publish (see
pretrained/README.md).
"""


@click.command("train-denoisers", cls=Command, epilog=EXAMPLES)
@click.option("--data", required=True, type=click.Path(), help="Pack folder (train/, val/, manifest.json) or a folder of photos.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (created).")
@click.option("--minutes", type=float, default=8.0, show_default=True, help="Training time; the run stops itself after it.")
@click.option("--size", default="default", show_default=True, help="DRUNet size: tiny (tests), small (4.3 M), default (8.2 M).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Crops per step.")
@click.option("--crop", type=click.IntRange(min=32), default=128, show_default=True, help="Crop size (multiple of 8).")
@click.option("--noise", type=NoiseRange(), default="0:55/255", show_default=True,
              help="Training noise std range in [0, 1] units, drawn uniformly per crop (e.g. 0:30/255 to fine-tune "
                   "for low noise).")
@click.option("--jpeg-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of the clean crops saved as JPEG (and decoded) before the noise is added, so that the "
                   "model knows JPEG's blocks and colour smearing as part of a photo, as in most users' photos.")
@click.option("--jpeg-quality", type=IntRangeText(1, 100), default="60:95", show_default=True,
              help="JPEG quality range of those crops, drawn uniformly per crop.")
@click.option("--precision", type=click.Choice(["auto", "bf16", "float32"]), default="auto", show_default=True,
              help="Forward pass in bf16 autocast or float32; auto: bf16 where the hardware has it (CUDA GPUs from "
                   "Ampere on, CPUs with AVX512-BF16 or AMX: about twice as fast), float32 elsewhere.")
@click.option("--lr", type=float, default=4e-4, show_default=True, help="Peak learning rate (cosine decay over the time budget).")
@click.option("--gray-share", type=click.FloatRange(0, 1), default=0.4, show_default=True,
              help="Fraction of the steps that train the gray model (0: colour only).")
@click.option("--save-every", type=float, default=60.0, show_default=True, help="Seconds between model files.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Data-loading worker processes (default: min(8, cores - 2), at least 1).")
@click.option("--init-from", "init_from", multiple=True, metavar="MODEL",
              help="Continue from a DRUNet model (shipped name or file; repeat for the colour and the gray one): its "
                   "architecture and weights are kept, the optimiser and the learning-rate schedule start afresh.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the weights, crops and noise.")
@click.option("--device", default="cuda", show_default=True, help="cuda, cuda:N, cpu or auto (CUDA missing: CPU with a warning).")
@click.option("--threads", type=click.IntRange(1, 4096), default=None, help="CPU threads of the training process.")
@click.option("--overwrite", is_flag=True, help="Start although --out holds an earlier run's model files (default: refuse).")
def command(data, out, minutes, size, batch_size, crop, noise, jpeg_share, jpeg_quality, precision, lr, gray_share,
            save_every, workers, init_from, seed, device, threads, overwrite):
    """Train the default colour and gray DRUNet denoisers for a fixed time (the GPU recipe)."""
    import torch

    from pnprgm.config import build_strict
    from pnprgm.training.recipe import RecipeConfig, train_denoisers

    if threads is not None:
        torch.set_num_threads(threads)
    cfg = build_strict(RecipeConfig, dict(minutes=minutes, size=size, batch_size=batch_size, crop=crop, lr=lr,
                                          noise_min=noise[0], noise_max=noise[1], jpeg_share=jpeg_share,
                                          jpeg_quality=jpeg_quality, precision=precision,
                                          gray_share=gray_share, save_every=save_every, workers=workers, seed=seed),
                       what="recipe")
    with write_failures_named(out):
        summary = train_denoisers(data, out, cfg, device=device, init_from=init_from, overwrite=overwrite,
                                  command="pnprgm " + shlex.join(sys.argv[1:]),
                                  echo=lambda line: click.echo(line, err=False))
    for name, steps in summary["steps"].items():
        click.echo(f"{name}: {steps} steps, validation PSNR {summary['val_psnr'][name]}")
