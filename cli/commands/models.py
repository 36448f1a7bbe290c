"""``pnprgm models``: the shipped models with their metadata."""
from __future__ import annotations

import json

import click

from pnprgm.cli.options import Command


@click.command("models", cls=Command)
@click.option("--json", "as_json", is_flag=True, help="Print the full index (training records included) as JSON.")
@click.option("--verify", is_flag=True, help="Check every shipped file against its sha256.")
def command(as_json, verify):
    """List the shipped models: role, channels, size, sha256, objective, how each was trained and its old names."""
    from pnprgm.rgm import models

    entries = [entry.obj for entry in models.registry.entries()]
    if verify:
        for entry in entries:
            models.verify(entry)
    if as_json:
        click.echo(json.dumps([models.describe(e) for e in entries], indent=2))
        return
    if not entries:
        click.echo("no shipped models (pretrained/index.json is empty)")
    for entry in entries:
        record = entry.record
        size = entry.path.stat().st_size / 1e6 if entry.path.is_file() else float("nan")
        # the default of its role: the denoiser for its channel count, or the sr-process model `sample` uses
        default = "default" if entry.role == "denoiser" else f"default {entry.role} model"
        flag = f" ({default})" if entry.default else (f" (family {entry.family})" if entry.family else "")
        click.echo(f"{entry.name}{flag}: {entry.summary}")
        click.echo(f"    role={entry.role} channels={entry.channels} file={entry.file} ({size:.1f} MB) sha256={entry.sha256[:16]}...")
        old = models.old_names(entry.name) + [f"{name} (family)" for name in models.old_names(entry.family or "")]
        if old:
            click.echo(f"    formerly {', '.join(old)} (still accepted, with a notice)")
        if record:
            hw = record.get("hardware") or {}
            where = hw.get("gpu") or f"{hw.get('device', '?')} x{hw.get('world_size', 1)} ({hw.get('cpu_count', '?')} cores)"
            minutes = float(record.get("seconds") or record.get("train_seconds") or 0) / 60
            files = models.training_files(record)
            inputs = f" (input {record['val_psnr_input']} dB)" if record.get("val_psnr_input") is not None else ""
            click.echo(f"    objective: {models.objective(record)}")
            click.echo(f"    trained: {record.get('steps', '?')} steps, {minutes:.1f} min on {where}, "
                       f"{len(files)} training files; validation PSNR {_validation(record)}{inputs}")
            if record.get("history"):
                stops = ", ".join(str(segment.get("until_step", "?")) for segment in record["history"])
                click.echo(f"    resumed at step {stops} (earlier commands: pnprgm models --json)")
            source = record.get("init_from")
            if source:
                click.echo(f"    fine-tuned from {_source_name(source, entries, entry.name)} ({source.get('steps', '?')} "
                           f"steps, validation PSNR {_validation(source)}; its record: pnprgm models --json)")
    if verify:
        click.echo("all shipped files match their sha256")



def _source_name(source: dict, entries, name: str) -> str:
    """The model a fine-tuning started from, as recorded, with today's name when it is a shipped file since renamed,
    and as an earlier version when it bears the name of the model it became (``name``)."""
    recorded = str(source.get("source"))
    today = next((entry.name for entry in entries if entry.sha256 == source.get("sha256")), None)
    if today is None:
        if recorded == name:
            return f"an earlier {recorded} (sha256 {str(source.get('sha256', '?'))[:16]}...)"
        return recorded
    return recorded if today == recorded else f"{today} (recorded as {recorded})"


def _validation(record: dict) -> str:
    """Validation PSNR as recorded: per noise level (/255) when the record has them, else the single value."""
    levels = record.get("val_psnr_by_sigma255")
    if levels:
        return ", ".join(f"{value} dB at {level}/255" for level, value in levels.items())
    value = record.get("val_psnr")
    return f"{value} dB" if value is not None else "not recorded"
