"""``pnprgm restore``: thin layer over :func:`pnprgm.restore_job.run_restore_job`."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from pnprgm.cli.options import Command, NoiseLevel, device_option, parse_assignments, parse_size, seed_option, threads_option

EXAMPLES = """
\b
Examples:
  pnprgm degrade photo.png --operator sr4 -o meas/ && pnprgm restore meas/ -o out/
  pnprgm restore small.png --operator sr4 -o out/                 # no sidecar: say the operator
  pnprgm restore blurred.png --operator "blur:gaussian,sigma=2" --noise 0.02 --solver hqs -o out/
  pnprgm restore masked.png --operator mask:file=mask.png --samples 8 -o out/   # mean + uncertainty map
  pnprgm restore face.png --operator sr4 --model netG_550.pth --model-config celebahq256 --preset official-sr4 -o out/
  pnprgm restore big.png --operator "blur:gaussian,sigma=1.5" --tile 256 -o out/
  pnprgm restore blurred/ --model runs/deblur/model.pt --samples 8 -o out/   # a model trained for its operator

\b
Writes OUT/NAME.png (the restored image, at the original size), OUT/NAME.json (every parameter, package
versions, seed, per-iteration trace, seconds) and with --samples N>1 OUT/NAME_std.png (per-pixel std,
scaled to its maximum, which the JSON records). A 16-bit PNG or TIFF input (gray or colour) gives a 16-bit
PNG. Solver parameters: `pnprgm presets` lists the presets and their values; --set changes any of them, e.g.
--set iterations=12 --set lam=0.3. Every preset returns the estimate itself. --set grain=S adds dithering with a Gaussian texture model (one draw of std about S where the
measurement is silent, different per --seed): it lowers LPIPS at a cost in PSNR and SSIM, and plain white noise
of the same std does as much; it is never on by default.

\b
Output names: each input keeps its stem unless two inputs share it:
  inputs                        outputs
  a.png                         a.png
  a.png, a.tif                  a_png.png, a_tif.png        (the suffix tells them apart)
  x/a.png, y/a.png              a.png, a-2.png              (same name in two folders)
  a.png, a.tif, a_tif.png       a_png.png, a_tif-2.png, a_tif.png   (a unique name keeps its own)
So adding a file to a rerun batch can move another input's output name: an old output then under another input's
name is reported as such, never replaced. A file in OUT that pnprgm did not write is never replaced (--overwrite
replaces it); an input whose outputs and record exist from the same settings is skipped, so rerunning a killed
batch continues where it stopped, and one restored with other settings is refused, naming the options that differ.

\b
A model trained for an operator (pnprgm train --operator SPEC) restores measurements of that operator in one
step, without a solver: --operator (or the sidecar) must name its operator or be left out, and --solver,
--preset, --set and --tile do not apply. --samples N draws N latents (the std map is the model's spread).

\b
A job that cannot fit in the device's free memory is refused before computing, with an estimate and the --tile
that would fit (the denoiser needs about 2 KB per pixel on a whole image; the solver about 200 bytes per pixel
even tiled). A blurred photo without sidecar is restored with boundary=valid unless the spec names a boundary:
the larger scene behind it is restored and cropped back to the photo, so its edges get no frame.
"""


@click.command("restore", cls=Command, epilog=EXAMPLES)
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--out", "outdir", required=True, type=click.Path(), help="Output folder (created if needed; not an input folder, whose next run would read the outputs as inputs).")
@click.option("--operator", default=None, help="Degradation spec (pnprgm operators), or your own code: file.py:callable or module:callable, called as fn(shape=(C, H, W), device=device) and returning a deepinv LinearPhysics for an image of that shape (the input's, or --size), imported because you typed it. Default: the sidecar written by `pnprgm degrade`.")
@click.option("--size", default=None, metavar="HxW", help="Size of the image to restore when it cannot be inferred (e.g. SR of odd sizes).")
@click.option("--solver", default=None, help="drs, admm, hqs or rgm-drs (default: the preset's, else hqs for blur:motion, blur:box and blur:file and an --operator of your code that returns a deepinv Blur/BlurFFT, drs otherwise).")
@click.option("--preset", default=None, help="Parameter preset (default: the task's preset for the solver).")
@click.option("--denoiser", default=None, help="Denoiser name (pnprgm denoisers) or a model file.  [default: default]")
@click.option("--model", "model_path", default=None, type=click.Path(),
              help="Model file (ours, or an official RGM netG_*.pth / content.pth) or a shipped model's name (pnprgm models).")
@click.option("--model-config", default=None, help="Generator config of an official checkpoint: celebahq256, cifar10, or a JSON/YAML file of the official arguments.")
@click.option("--model-preset", default=None, hidden=True, help="Old name of --model-config.")
@click.option("--iters", type=int, default=None, help="Number of solver iterations (overrides the preset).")
@click.option("--noise", "--sigma", "noise_sigma", type=NoiseLevel(), default=None,
              help="Measurement noise std in [0,1] units, e.g. 0.02 or 5/255 (default: sidecar, else estimated).")
@click.option("--samples", type=int, default=1, show_default=True, help="Restorations with different seeds; N>1 writes mean and std map.")
@click.option("--tile", type=int, default=None, help="Run the denoiser on overlapping tiles of this size, at least 32 (bounded memory).")
@click.option("--overwrite", is_flag=True,
              help="Replace files in -o that pnprgm did not write, and restore again inputs already restored "
                   "(default: such an input is an error, resp. skipped, so a rerun continues a killed batch).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override one solver parameter (repeatable).")
@seed_option
@device_option
@threads_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def command(inputs, outdir, operator, size, solver, preset, denoiser, model_path, model_config, model_preset, iters, noise_sigma,
            samples, tile, overwrite, assignments, seed, device, threads, quiet):
    """Restore degraded images with a denoiser inside a PnP solver (or, with a model trained for the operator,
    in one step)."""
    from pnprgm.restore_job import RestoreJob, run_restore_job
    from pnprgm.device import set_threads
    from pnprgm.errors import UserError
    from pnprgm.rgm.models import resolve, split_official

    set_threads(threads)

    overrides = parse_assignments(assignments)
    if iters is not None:
        if "iterations" in overrides:
            raise UserError(f"--iters {iters} and --set iterations={overrides['iterations']} both set the iteration "
                            "count; give one of them.")
        overrides["iterations"] = iters
    if model_preset is not None:
        if model_config is not None:
            raise UserError(f"--model-config {model_config} and --model-preset {model_preset} (its old name) both "
                            f"name the generator config; give --model-config once.")
        click.echo("notice: --model-preset is now called --model-config.", err=True)
        model_config = model_config or model_preset
    if model_path is not None and denoiser is not None:
        raise UserError(f"--denoiser {denoiser} and --model {model_path} both choose the denoiser; give one of them.")
    if model_config is not None and model_path is None:  # it would silently restore with another denoiser
        if denoiser and Path(split_official(denoiser)[0]).is_file():
            fix = f"give it as --model {denoiser} instead of --denoiser"
        elif denoiser:
            fix = f"drop --model-config (--denoiser {denoiser} is not a checkpoint file)"
        else:
            fix = f"add --model PATH (e.g. --model netG_550.pth --model-config {model_config})"
        raise UserError(f"--model-config {model_config} describes the official checkpoint given with --model; {fix}.")
    if model_path is not None:
        file, config = split_official(model_path)  # PATH#CONFIG names an official checkpoint's config inline
        shipped = not Path(file).is_file() and resolve(file, required=False) is not None  # old names too
        if shipped and (config or model_config is not None):
            raise UserError(f"--model {file} is a shipped model, and a generator config (#CONFIG, --model-config) is "
                            f"only for an official checkpoint file (netG_*.pth); drop the config.")
        if not Path(file).is_file() and not shipped:  # a shipped name as everywhere a model goes
            missing = f"{file} is a folder" if Path(file).is_dir() else f"{file} does not exist"
            raise UserError(f"--model {missing}; give a model file (pnprgm train's model.pt or an official "
                            f"netG_*.pth), or a shipped model's name (pnprgm models).")
        if config and model_config is not None:
            raise UserError(f"--model {model_path} and --model-config {model_config} both name the generator config; "
                            f"give one of them.")
    denoiser = denoiser or "default"
    if model_path is not None:
        denoiser = model_path if model_config is None else f"{model_path}#{model_config}"
    job = RestoreJob(
        inputs=tuple(inputs), outdir=outdir, operator=operator, image_size=parse_size(size), denoiser=denoiser,
        solver=solver, preset=preset, noise_sigma=noise_sigma, samples=samples, tile=tile, seed=seed,
        device=device, overrides=overrides, overwrite=overwrite,
    )
    report = run_restore_job(job, on_error=lambda line: click.echo(line, err=True), on_skip=click.echo, progress=not quiet)
    click.echo(f"restored {len(report.restored)} image(s) into {outdir}"
               + (f"; {len(report.skipped)} already restored (skipped)" if report.skipped else "")
               + (f"; {len(report.errors)} failed" if report.errors else ""))
    if not report.ok:
        sys.exit(1)
