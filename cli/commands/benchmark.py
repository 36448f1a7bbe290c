"""``pnprgm benchmark``: thin layer over :func:`pnprgm.benchmark.run_benchmark`."""
from __future__ import annotations

import shlex
import sys

import click

from pnprgm.benchmark import tasks as task_registry
from pnprgm.cli.options import Command, NoiseLevel, SEED, parse_assignments, threads_option

EXAMPLES = """
\b
Examples:
  pnprgm benchmark --list                                  # tasks, methods, metrics, data sets and their availability
  pnprgm benchmark --task sr,denoise --method baseline,nlm-hqs,pnp-hqs --json r.json --md r.md --figure r.png
  pnprgm benchmark --data photos/ --task deblur --noise 0.02 --crop 0 --json r.json
  pnprgm benchmark --suite benchmarks/suite.json --json benchmarks/results.json --md benchmarks/results.md \\
      --figure benchmarks/results.jpg                      # the committed results (benchmarks/README.md)
  pnprgm benchmark --suite benchmarks/suite.json --json r.json --resume   # continue an interrupted run
  pnprgm benchmark --from-json r.json --md r.md            # rebuild the markdown report from a results JSON
  pnprgm benchmark --method pnp-drs,tv-admm --model runs/mine/model.pt --json r.json   # your trained model
  pnprgm benchmark --data faces/ --method rgm-stochastic-drs --model netG_550.pth#celebahq256 --json r.json   # RGM loop

\b
Data: public (photos shipped inside pip packages; offline), set14, cbsd68, kodak24, urban100 (deepinv,
downloaded on first use) or a folder. Images are centre-cropped (--crop) and measured with seeds derived from
--seed, the image index and the task, so two runs give the same numbers. The JSON is rewritten after every
record: a run interrupted (Ctrl-C, or SIGTERM from kill or a scheduler) keeps its results and writes a partial
--md; a --json holding records this run would not write again (other
tasks, methods, images or settings) is refused before any image is restored, unless --overwrite. --resume reuses a record only if that run computed every metric
asked for now; otherwise (e.g. lpips_vgg added to --metrics) the record is restored and scored again. A suite file (JSON/YAML) holds the same keys as the options
(data, images, tasks, methods, noise, seed, crop, limit, device, metrics, protocol, overrides, figure_images,
models); options given on the command line override it.
"""


@click.command("benchmark", cls=Command, epilog=EXAMPLES)
@click.option("--suite", type=click.Path(dir_okay=False), default=None, help="Suite file (JSON/YAML) with the settings; options override it.")
@click.option("--data", default=None, help="public, set14, cbsd68, kodak24, urban100 or a folder of images.  [default: public]")
@click.option("--images", default=None, help="Comma-separated image names of the set to use (default: all).")
@click.option("--task", "tasks", default=None,
              help=f"Comma-separated tasks: {', '.join(task_registry.registry.names())} (the presets' tasks).  [default: all]")
@click.option("--method", "methods", default=None, help="Comma-separated methods (see --list).  [default: all]")
@click.option("--noise", type=NoiseLevel(), default=None, help="Measurement noise std in [0, 1] units for every task, e.g. 0.02 or 5/255 (default: each task's).")
@click.option("--seed", type=SEED, default=None, help="Run seed (measurements and methods derive theirs from it).  [default: 0]")
@click.option("--crop", type=int, default=None, help="Centre crop side in pixels, 0 for whole images.  [default: 256]")
@click.option("--limit", type=int, default=None, help="Use only the first N usable images (unreadable or too small ones are skipped, named in the report).")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or auto.  [default: cpu]")
@click.option("--metrics", default=None, help="Comma-separated metrics (see --list), the first shown in the overview.  "
              "[default: the registry's defaults, marked in --list]")
@click.option("--protocol", "protocol_items", multiple=True, metavar="KEY=VALUE", help="Metric protocol field, e.g. channel=y or crop=4 (repeatable).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Solver parameter for every PnP method, e.g. iterations=8 (repeatable).")
@click.option("--figure-images", type=int, default=None, help="Images per task in the figure.  [default: 2]")
@click.option("--model", "model_sources", multiple=True, metavar="MODEL",
              help="Model (shipped name, model.pt or PATH#CONFIG for an official checkpoint) used by the pnp-* and rgm-stochastic-drs methods "
                   "instead of the shipped default for its channel count; repeat for one gray and one colour model.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Results JSON (written as the run goes).")
@click.option("--md", "md_path", type=click.Path(dir_okay=False), default=None, help="Markdown report.")
@click.option("--figure", "figure_path", type=click.Path(dir_okay=False), default=None, help="Figure grid: PNG, or JPEG if the name ends in .jpg.")
@click.option("--resume", is_flag=True, help="Reuse the records of an existing --json made with the same settings.")
@click.option("--overwrite", is_flag=True,
              help="Replace --json/--md/--figure files that pnprgm benchmark did not write, and a --json whose earlier "
                   "records this run would drop (default: refuse, before any image is restored).")
@click.option("--from-json", "from_json", type=click.Path(dir_okay=False), default=None, help="Do not run: rebuild --md from this results JSON.")
@click.option("--list", "list_only", is_flag=True, help="List tasks, methods (with availability), metrics and data sets, then exit.")
@threads_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def command(suite, data, images, tasks, methods, noise, seed, crop, limit, device, metrics, protocol_items,
            assignments, figure_images, model_sources, json_path, md_path, figure_path, resume, overwrite, from_json, list_only, threads, quiet):
    """Compare restoration methods on simulated measurements (PSNR, SSIM, LPIPS; LPIPS-VGG on request)."""
    from pnprgm.benchmark import build_config, report, run_benchmark
    from pnprgm.device import set_threads
    from pnprgm.errors import UserError

    set_threads(threads)

    if list_only:
        _list(device or "cpu")
        return
    if from_json is not None:
        if md_path is None:
            raise UserError("--from-json needs --md PATH (the report to write).")
        report.rebuild_markdown(from_json, md_path, overwrite=overwrite)
        click.echo(f"wrote {md_path}")
        return
    values: dict = {}
    if suite is not None:
        from pnprgm.config import read_config_file

        values.update(read_config_file(suite))
        # merged with --protocol / --set below: a mapping or nothing
        for key, example in (("protocol", "crop: 256"), ("overrides", "iterations: 12")):
            if key in values and not isinstance(values[key], dict):
                raise UserError(f"{suite}: {key} must be a mapping of names to values (e.g. {key}: {{{example}}}), "
                                f"not {type(values[key]).__name__} {values[key]!r}.")
    given = {"data": data, "images": images, "tasks": tasks, "methods": methods, "noise": noise, "seed": seed,
             "crop": crop, "limit": limit, "device": device, "metrics": metrics, "figure_images": figure_images}
    values.update({key: value for key, value in given.items() if value is not None})
    if protocol_items:
        values["protocol"] = {**values.get("protocol", {}), **parse_assignments(protocol_items, "--protocol")}
    if assignments:
        values["overrides"] = {**values.get("overrides", {}), **parse_assignments(assignments)}
    if model_sources:
        values["models"] = tuple(model_sources)
    config = build_config(values)
    if resume and json_path is None:
        raise UserError("--resume needs --json PATH (the results to continue).")

    from tqdm.auto import tqdm

    result = run_benchmark(
        config, json_path=json_path, md_path=md_path, figure_path=figure_path, resume=resume, overwrite=overwrite,
        progress=not quiet,
        command=shlex.join(["pnprgm", *sys.argv[1:]]) if sys.argv[1:2] == ["benchmark"]
        else command_line(config, json_path=json_path, md_path=md_path, figure_path=figure_path),
        log=lambda line: tqdm.write(line, file=sys.stderr), suite=suite,
    )
    click.echo("\n".join(report.overview(result.data)))
    failures = result.failures
    click.echo(f"{len(result.records)} record(s); {len(failures)} failure(s)"
               + (f"; wrote {', '.join(map(str, result.written))}" if result.written else ""))
    for entry in failures:
        where = " ".join(f"{key}={entry[key]}" for key in ("image", "task", "method") if key in entry)
        click.echo(f"  {entry['kind']}: {where}: {entry['reason']}", err=True)
    if not result.ok:
        sys.exit(1)


def command_line(config, *, json_path=None, md_path=None, figure_path=None) -> str:
    """The ``pnprgm benchmark`` command that runs ``config`` (a :class:`pnprgm.benchmark.BenchmarkConfig`) and writes
    the given files; options left at their defaults are left out, except the settings every report should show."""
    from pnprgm.benchmark import BenchmarkConfig

    default = BenchmarkConfig()
    words = ["pnprgm", "benchmark", "--data", config.data]
    if config.images:
        words += ["--images", ",".join(config.images)]
    words += ["--task", ",".join(config.tasks), "--method", ",".join(config.methods)]
    if config.noise is not None:
        words += ["--noise", repr(config.noise)]
    words += ["--seed", str(config.seed), "--crop", str(config.crop)]
    if config.limit:
        words += ["--limit", str(config.limit)]
    if config.device != default.device:
        words += ["--device", config.device]
    if config.metrics != default.metrics:
        words += ["--metrics", ",".join(config.metrics)]
    for key, value in config.protocol.items():
        words += ["--protocol", f"{key}={value}"]
    for key, value in config.overrides.items():
        words += ["--set", f"{key}={value}"]
    if config.figure_images != default.figure_images:
        words += ["--figure-images", str(config.figure_images)]
    for model in config.models:
        words += ["--model", model]
    for flag, path in (("--json", json_path), ("--md", md_path), ("--figure", figure_path)):
        if path is not None:
            words += [flag, str(path)]
    return shlex.join(words)


def _list(device: str) -> None:
    from pnprgm.benchmark import datasets, methods, tasks
    from pnprgm.device import resolve_device
    from pnprgm.metrics import METRICS

    torch_device = resolve_device(device)
    click.echo("tasks:")
    for entry in tasks.registry.entries():
        click.echo(f"  {entry.name:10s} {entry.obj.spec:30s} {entry.summary}")
    click.echo("  old names, still accepted (with a notice): "
               + ", ".join(f"{old} -> {new}" for old, new in tasks.registry.aliases().items()))
    click.echo("methods:")
    for entry in methods.registry.entries():
        reason = entry.obj.unavailable(torch_device)
        click.echo(f"  {entry.name:10s} {entry.summary}" + (f"  [unavailable: {reason}]" if reason else ""))
    click.echo("  old names, still accepted (with a notice): "
               + ", ".join(f"{old} -> {new}" for old, new in methods.registry.aliases().items()))
    click.echo("metrics (* computed unless --metrics says otherwise):")
    for entry in METRICS.entries():
        click.echo(f"  {entry.name:10s} {'*' if entry.obj.default else ' '} {entry.summary}")
    click.echo("data:")
    for entry in datasets.registry.entries():
        click.echo(f"  {entry.name:10s} {entry.summary}")
    public = datasets.public_set()
    click.echo(f"public images: {', '.join(image.name for image in public.images)}")
    for note in public.notes:
        click.echo(f"  note: {note}")
