"""``pnprgm operators``: every operator family, variant and alias with its parameters (from the registry)."""
from __future__ import annotations

import dataclasses
import json

import click

from pnprgm.cli.options import Command


def _type_name(annotation) -> str:
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "|".join(map(str, args))
    if origin is typing.Union:
        return "|".join(_type_name(a) for a in args if a is not type(None))
    return getattr(annotation, "__name__", str(annotation))


def describe() -> list[dict]:
    """One dict per registry entry: name, summary, parameters (type, default, help) or the aliased spec."""
    from pnprgm import operators
    from pnprgm.config import field_types

    listed = []
    for entry in operators.registry.entries():
        if isinstance(entry.obj, operators.Alias):
            listed.append({"name": entry.name, "summary": entry.summary, "alias_of": entry.obj.spec})
            continue
        types = field_types(entry.obj.params)
        params = []
        for f in dataclasses.fields(entry.obj.params):
            default = None if f.default is dataclasses.MISSING else f.default
            params.append({"name": f.name, "type": _type_name(types[f.name]), "default": default,
                           "required": f.default is dataclasses.MISSING, "help": f.metadata.get("help", "")})
        listed.append({"name": entry.name, "summary": entry.summary, "default_variant": entry.obj.default,
                       "params": params})
    return listed


@click.command("operators", cls=Command, epilog="\b\nSpec grammar: family[:variant][,key=value...], joined by '+' (a+b: a first).\n"
               "Examples: sr4, sr:factor=3,kernel=bicubic, blur:gaussian,sigma=2, mask:file=m.png, gray,\n"
               "blur:gaussian,sigma=1.6+sr2. Full description: docs/operators.md.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable listing.")
def command(as_json):
    """List the degradation operators, their parameters and defaults."""
    listed = describe()
    if as_json:
        click.echo(json.dumps(listed, indent=2, default=str))
        return
    for item in listed:
        if "alias_of" in item:
            click.echo(f"{item['name']:16s} = {item['alias_of']}  ({item['summary']})")
            continue
        mark = "  [family default]" if item["default_variant"] and ":" in item["name"] else ""
        click.echo(f"{item['name']:16s} {item['summary']}{mark}")
        for p in item["params"]:
            default = "REQUIRED" if p["required"] else f"default {p['default']}"
            click.echo(f"    {p['name']}={p['type']}  ({default})  {p['help']}")
