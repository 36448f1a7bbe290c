"""``pnprgm train``: thin layer over :func:`pnprgm.training.train`."""
from __future__ import annotations

import shlex
import sys
from typing import Any

import click

from pnprgm.cli.options import Command, SEED, NoiseRange, parse_assignments, write_failures_named
from pnprgm.errors import UserError

EXAMPLES = """
\b
Examples:
  pnprgm train --data photos/ --forward ddpm --prior kld --steps 20000 --out runs/ddpm
  pnprgm train --data photos/ --forward denoise --noise 0.004:0.2 --steps 20000 --out runs/denoiser
  pnprgm train --data photos/ --operator "blur:gaussian,sigma=2" --noise 0.01 --steps 20000 --out runs/deblur
  pnprgm train --data photos/ --operator mylib.physics:make_operator --steps 20000 --out runs/custom
  pnprgm train --data photos/ --forward ddpm --steps 40000 --out runs/ddpm --resume
  pnprgm train --data photos/ --forward denoise --noise 0.001:0.25 --init-from unet-denoiser-color --out runs/tuned
  torchrun --nproc_per_node=4 -m pnprgm.cli.main train --data photos/ --forward ddpm --device cuda --out runs/ddp

\b
--operator takes a spec (pnprgm operators lists them), module:callable or file.py:callable; the callable is
called as fn(shape=(C, H, W), device=device) and returns a deepinv LinearPhysics. Code is imported only from
--operator: a config file or a checkpoint naming module:callable is refused (resume such a run with the same
--operator). --config FILE (JSON or YAML)
has sections model, process, train (and size); their keys are the fields of GeneratorConfig, ProcessConfig
and TrainConfig; --set SECTION.KEY=VALUE overrides one. Precedence: defaults < --size < --config < --set <
the other options. Writes RUN_DIR/config.json, log.csv, samples/step_0000500.png, checkpoints/step_0000500.pt
(the step in 7 digits; the latest 3: --keep-checkpoints), model_step0000500.pt for each train.model_at_steps,
last.pt, record.json and model.pt (the EMA generator with its config and training record). A denoise or ddpm
model is a PnP denoiser: `pnprgm restore --model RUN_DIR/model.pt` uses it for any operator. Every model runs in
`pnprgm sample RUN_DIR/model.pt --input photos/`, which degrades clean photos with the model's own process and
restores them; an operator model restores its own operator's measurements in `pnprgm restore --model` (one step,
no solver); an sr model does not run in restore.
"""


def _list_choices(ctx: click.Context, _param, value: bool) -> None:
    """Print the registries (generator sizes, forward processes, priors) and exit."""
    if not value or ctx.resilient_parsing:
        return
    from pnprgm.rgm.unet import SIZES
    from pnprgm.training.priors import PRIORS
    from pnprgm.training.processes import PROCESSES

    for title, registry in (("generator sizes (--size)", SIZES), ("forward processes (--forward / --operator)", PROCESSES),
                            ("priors (--prior)", PRIORS)):
        click.echo(title + ":")
        for entry in registry.entries():
            how = " (chosen by --operator SPEC, not --forward)" if registry is PROCESSES and entry.name == "operator" else ""
            click.echo(f"  {entry.name:10s} {entry.summary}{how}")
    ctx.exit(0)


@click.command("train", cls=Command, epilog=EXAMPLES)
@click.option("--list", "list_choices", is_flag=True, is_eager=True, expose_value=False, callback=_list_choices,
              help="List the generator sizes, forward processes and priors, then exit.")
@click.option("--data", required=True, type=click.Path(), help="Folder of training images (grayscale or colour).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (created).")
@click.option("--forward", type=click.Choice(["ddpm", "sr", "denoise"]), default=None,
              help="Forward process (default ddpm; --operator selects the operator process).")
@click.option("--operator", default=None, help="Operator spec, module:callable or file.py:callable (operator process).")
@click.option("--noise", type=NoiseRange(), default=None,
              help="Measurement noise std in [0,1] units (denoise/operator), fixed or a log-uniform range MIN:MAX "
                   "(default: 1/255:50/255 for denoise, 0.01 for an operator).")
@click.option("--T", "levels", type=int, default=None, help="Number of levels of ddpm/sr (default 4 / 7).")
@click.option("--prior", type=click.Choice(["kld", "mmd", "dswd"]), default=None, help="Prior term (default kld).")
@click.option("--steps", type=int, default=None, help="Generator updates (default 1000).")
@click.option("--minutes", type=click.FloatRange(min=0), default=None,
              help="Stop after this many minutes of training (as if --steps were reached: validate, write model.pt); "
                   "for a machine lent for a fixed time. 0: no limit (default). The cosine learning-rate schedule "
                   "follows --steps: give about the steps that fit, or training stops near the peak rate.")
@click.option("--model-every", "model_every", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Also write model.pt every SECONDS (default 0: only at the end), so a killed run leaves a model.")
@click.option("--batch-size", type=int, default=None, help="Images per step over all processes (default 8).")
@click.option("--crop", type=int, default=None, help="Training crop size (default 64).")
@click.option("--lmbda", type=float, default=None, help="Weight of the fidelity term (default 1e-3).")
@click.option("--supervised", type=float, default=None,
              help="Weight of an auxiliary supervised MSE to the clean image (not RGM; default 0). Short CPU runs need it. "
                   "Without a trained prior the fidelity term then only shrinks the output towards the noisy input, "
                   "most at low noise: for a PnP denoiser give --lmbda 0 (see TrainConfig.lmbda).")
@click.option("--perceptual", type=float, default=None,
              help="Weight of an auxiliary LPIPS-alex term to the clean image (not RGM; default 0): keeps the fine "
                   "texture an MSE-trained denoiser averages away, at some PSNR.")
@click.option("--size", default=None, help="Generator size: tiny, small (CPU, default), base, large (--list); with "
                                         "--resume or --init-from the model's own.")
@click.option("--preset", default=None, hidden=True, help="Old name of --size.")
@click.option("--val", type=click.Path(), default=None, help="Validation images (default: a held-out 10 percent of --data).")
@click.option("--config", "config_file", type=click.Path(), default=None, help="JSON/YAML file with model/process/train sections.")
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE", help="Override one config value (repeatable).")
@click.option("--keep-checkpoints", "keep_checkpoints", type=click.IntRange(min=0), default=None,
              help="Keep the latest K checkpoints/step_0000500.pt (older ones are deleted; last.pt stays); 0 keeps all (default 3).")
@click.option("--overwrite", is_flag=True,
              help="Start a new run in --out although it holds a run's files (config.json, log.csv, model.pt...); "
                   "default: refuse.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt, exactly: with its own "
                                             "settings (an option that differs from them is refused, except --steps, "
                                             "--minutes, --model-every, --keep-checkpoints, train.*_every and "
                                             "train.model_at_steps).")
@click.option("--init-from", "init_from", default=None, metavar="MODEL",
              help="Fine-tune: start the generator from a shipped model (pnprgm models) or a model.pt, keeping its "
                   "architecture; the discriminator and optimisers start afresh.")
@click.option("--seed", type=SEED, default=None, help="Seed of everything (default 0).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--threads", type=click.IntRange(1, 4096), default=None,
              help="CPU threads of this process (default: torch's, one per core). Runs side by side must share the "
                   "cores: two runs of 2 threads each on 2 cores trained 25 times slower than one run (their threads "
                   "wait on each other); give each --threads 1, or cores/runs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def command(data, out, forward, operator, noise, levels, prior, steps, minutes, model_every, batch_size, crop, lmbda, supervised, perceptual, size, preset, val,
            config_file, assignments, keep_checkpoints, overwrite, resume, init_from, seed, device, threads, quiet):
    """Train an RGM generator (a denoiser or a restorer for your operator) on a folder of images."""
    import torch

    from pnprgm.config import read_config_file
    from pnprgm.training import train
    from pnprgm.training.config import split_sections

    sections: dict[str, Any] = split_sections(read_config_file(config_file), source=str(config_file)) if config_file else {}
    if config_file:
        _check_file_values(sections, config_file)
    model = dict(sections.get("model") or {})
    process = dict(sections.get("process") or {})
    train_args = dict(sections.get("train") or {})
    if preset is not None:
        if size is not None:
            raise UserError(f"--size {size} and --preset {preset} (its old name) both set the size; give --size once.")
        click.echo("notice: pnprgm train --preset is now called --size.", err=True)
    size = size or preset or sections.get("size")  # None: small, or the --resume / --init-from model's own
    for key, value in parse_assignments(assignments).items():
        section, dot, field = key.partition(".")
        if not dot or section not in ("model", "process", "train"):
            raise UserError(f"--set expects SECTION.KEY=VALUE with SECTION model, process or train; got {key!r}.")
        {"model": model, "process": process, "train": train_args}[section][field] = value
    if forward and operator:
        raise UserError("give either --forward or --operator, not both.")
    if operator:
        process.update(name="operator", operator=operator)
    elif forward:
        process["name"] = forward
    if noise is not None:
        process["noise_min"], process["noise_max"] = noise
    if levels is not None:
        process["T"] = levels
    cli_train = {"prior": prior, "steps": steps, "minutes": minutes, "model_every": model_every, "batch_size": batch_size, "crop": crop, "lmbda": lmbda, "supervised": supervised,
                 "perceptual": perceptual, "seed": seed, "keep_checkpoints": keep_checkpoints}
    train_args.update({k: v for k, v in cli_train.items() if v is not None})
    if threads is not None:
        torch.set_num_threads(threads)
    with write_failures_named(out):
        summary = train(data, out, process=process, train=train_args if (train_args or not resume) else None,
                        size=size, model=model, val=val, resume=resume, init_from=init_from, device=device,
                        command="pnprgm " + shlex.join(sys.argv[1:]), progress=not quiet, code_operator=operator,
                        overwrite=overwrite)
    if summary.get("model"):
        psnr = summary.get("val_psnr")
        total, now = summary["steps"], summary.get("steps_this_run", summary["steps"])
        steps = lambda n: f"{n} step{'' if n == 1 else 's'}"  # noqa: E731
        done = (f"trained {steps(now)}" if now == total else
                f"trained {steps(now)} more (step {total} in all)" if now else
                f"trained no steps: the run was already at step {total}")
        click.echo(f"{done}; model: {summary['model']}"
                   + (f"; validation PSNR {psnr:.2f} dB" if psnr is not None else ""))


def _check_file_values(sections: dict[str, Any], source: Any) -> None:
    """Every value of a --config file checked as the run would check it, also those an option or --set replaces
    (a file that says ``steps: many`` is wrong whatever this command line gives)."""
    from pnprgm.config import build_strict, coerce, field_types
    from pnprgm.rgm.unet import SIZES, GeneratorConfig
    from pnprgm.training.config import ProcessConfig, TrainConfig

    try:
        build_strict(TrainConfig, dict(sections.get("train") or {}), what="train")
        build_strict(ProcessConfig, dict(sections.get("process") or {}), what="process")
        types = field_types(GeneratorConfig)
        for key, value in (sections.get("model") or {}).items():
            if key in types:
                coerce(value, types[key], name=f"model.{key}")
        if sections.get("size") is not None:
            SIZES.get(sections["size"])
    except UserError as err:
        raise UserError(f"{source}: {str(err).rstrip('.')}.") from None

