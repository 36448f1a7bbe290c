"""Listings generated from the registries: ``pnprgm solvers``, ``pnprgm denoisers``, ``pnprgm presets``."""
from __future__ import annotations

import dataclasses

import click

from pnprgm.cli.options import Command


@click.command("solvers", cls=Command)
def solvers_command():
    """List the PnP solvers and their parameters (with defaults), then the settings of the denoiser calls and of the
    post-processing that every solver but rgm-drs also takes (restore --set KEY=VALUE sets any of them)."""
    from pnprgm import solvers
    from pnprgm.restoration import WRAPPER_SETTINGS

    for entry in solvers.registry.entries():
        click.echo(f"{entry.name:10s} {entry.summary}")
        for field in dataclasses.fields(entry.obj.Config):
            click.echo(f"    {field.name} = {field.default!r}")
    plain = ", ".join(entry.name for entry in solvers.registry.entries() if not entry.obj.stochastic)
    for label, settings in zip(("denoiser calls", "post-processing"), WRAPPER_SETTINGS):
        click.echo(f"{label} ({plain})")
        for field in dataclasses.fields(settings):
            click.echo(f"    {field.name} = {field.default!r}")


@click.command("denoisers", cls=Command)
def denoisers_command():
    """List the denoisers usable with --denoiser (a model file path works too)."""
    from pnprgm import denoisers

    names = denoisers.names()
    width = max(map(len, names), default=0)
    for name in names:
        click.echo(f"{name:{width}s}  {denoisers.registry.summary(name)}")
    renamed = denoisers.registry.aliases()
    if renamed:
        click.echo("old names, still accepted (with a notice): "
                   + ", ".join(f"{old} -> {new}" for old, new in renamed.items()))


@click.command("presets", cls=Command, epilog="""\b
Examples:
  pnprgm presets                      # every preset
  pnprgm presets --task sr,deblur     # the presets of these tasks
  pnprgm restore meas/ -o out/ --preset sr-drs --set iterations=12   # use one, overriding a value""")
@click.option("--task", default=None, help="Only the presets of these tasks, comma-separated (sr, deblur, inpaint, colorize, denoise).")
def presets_command(task):
    """List the restoration presets: task, solver and parameter values (override with restore --set), and the
    shipped model a preset uses when no --model/--denoiser is given, where it differs from the default."""
    from pnprgm import presets
    from pnprgm.errors import UserError

    known = sorted({entry.obj.task for entry in presets.registry.entries()})
    if task is not None and not task.strip(" ,"):  # --task "" would list every preset, as if it were not given
        raise UserError(f"--task is empty; choose from: {', '.join(known)} (or leave --task out for all).")
    from pnprgm.benchmark.tasks import registry as tasks

    # the benchmark's task names are the presets' (with its old names: sr4, color)
    wanted = {tasks.canonical(name.strip().lower()) for name in task.split(",") if name.strip()} if task else set(known)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise UserError(f"unknown task {', '.join(map(repr, unknown))} for --task; valid: {', '.join(known)}.")
    for entry in presets.registry.entries():
        if entry.obj.task not in wanted:
            continue
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in entry.obj.params.items())
        model = f"  (default denoiser: {entry.obj.denoiser})" if entry.obj.denoiser else ""
        click.echo(f"{entry.name:24s} {entry.obj.solver:8s} {params}{model}")


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


commands = [solvers_command, denoisers_command, presets_command]
