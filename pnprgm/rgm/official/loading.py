"""Loading official RGM checkpoints (``netG_*.pth``, ``content.pth``) and our self-describing generator files.

Accepted files, all read with ``weights_only=True``:
- ``netG_*.pth``: the EMA generator ``state_dict``, keys prefixed ``module.`` (nn.DataParallel);
- ``content.pth``: the training state, generator under ``netG_dict`` and the train.py ``args`` (argparse.Namespace);
- a plain (unprefixed) ``state_dict``;
- ``{"format": ..., "config": ..., "state_dict": ...}`` written by :func:`save_generator`.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import torch

from pnprgm.device import resolve_device
from pnprgm.errors import UserError
from pnprgm.io import torch_load, torch_save
from pnprgm.rgm.official.configs import CONFIGS, generator_args, official_config
from pnprgm.rgm.official.ncsnpp import NCSNppGenerator, build_generator

FORMAT = "pnprgm.official.ncsnpp/1"
_PREFIX = "module."
_LIST_LIMIT = 4


def save_generator(gen: NCSNppGenerator, path: str | Path) -> Path:
    """Atomically write ``{"format", "config", "state_dict"}`` (CPU tensors), loadable by :func:`load_generator`."""
    state = {key: value.detach().cpu().clone() for key, value in gen.state_dict().items()}
    return torch_save({"format": FORMAT, "config": dict(gen.config), "state_dict": state}, path)


def load_generator(checkpoint: str | Path | Mapping[str, Any], config: str | Mapping[str, Any] | None = None,
                   device: str | torch.device = "cpu") -> NCSNppGenerator:
    """The official generator with the checkpoint's weights, in eval mode on ``device``.

    :param checkpoint: a file path (any format above) or an already loaded object of one of those formats.
    :param config: ``"celebahq256"``, ``"cifar10"`` or an official argument dict. ``None`` uses the config stored in
        the file (our format, or ``args`` of a ``content.pth``) and ``"celebahq256"`` for a bare state_dict.
    :param device: where the generator goes.
    """
    label = str(checkpoint) if isinstance(checkpoint, (str, Path)) else "the given checkpoint"
    obj = _read(checkpoint)
    state, stored_config = _unpack(obj, label)
    chosen = _choose_config(config, stored_config, label)
    with torch.device("meta"):
        gen = build_generator(chosen)
    _check_layout(gen, state, label, _describe(config, stored_config))
    # float32 like the official model; assign=True avoids initialising 40 M parameters only to overwrite them.
    state = {key: value.to(torch.float32) for key, value in state.items()}
    gen.load_state_dict(state, strict=True, assign=True)
    return gen.to(resolve_device(device)).eval()


def _read(checkpoint: str | Path | Mapping[str, Any]) -> Any:
    if isinstance(checkpoint, Mapping):
        return checkpoint
    # content.pth pickles train.py's argparse.Namespace; it only carries plain values, so admit that one class.
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch_load(checkpoint)


def _unpack(obj: Any, label: str) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state_dict without the ``module.`` prefix, stored config or None)."""
    if not isinstance(obj, Mapping):
        raise UserError(f"{label} is not a generator checkpoint (found a {type(obj).__name__}); "
                        "give netG_*.pth or content.pth.")
    from pnprgm.rgm.model_file import CHECKPOINT_FORMAT, MODEL_FORMAT

    if obj.get("format") in (MODEL_FORMAT, CHECKPOINT_FORMAT):  # our own file, given a #CONFIG
        raise UserError(f"{label} is a pnprgm model file, which holds its own config: give it without #CONFIG "
                        f"(#CONFIG is for an official checkpoint such as netG_550.pth#celebahq256).")
    config = None
    if "state_dict" in obj and isinstance(obj.get("config"), Mapping):
        state, config = obj["state_dict"], dict(obj["config"])
    elif "netG_dict" in obj:
        state = obj["netG_dict"]
        args = obj.get("args")
        if isinstance(args, argparse.Namespace):
            config = vars(args)
        elif isinstance(args, Mapping):
            config = dict(args)
    else:
        state = obj
    if not isinstance(state, Mapping) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{label} holds no generator state_dict (keys: {_preview(list(obj))}); "
                        "give netG_*.pth, content.pth or a file written by save_generator.")
    state = dict(state)
    if all(key.startswith(_PREFIX) for key in state):
        state = {key[len(_PREFIX):]: value for key, value in state.items()}
    return state, config


def _choose_config(config: str | Mapping[str, Any] | None, stored: dict[str, Any] | None, label: str) -> dict[str, Any]:
    if config is None:
        return stored if stored is not None else official_config("celebahq256")
    chosen = official_config(config) if isinstance(config, str) else dict(config)
    if stored is not None and generator_args(stored) != generator_args(chosen):
        theirs, ours = asdict(generator_args(stored)), asdict(generator_args(chosen))
        differing = [name for name in ours if ours[name] != theirs[name]]
        raise UserError(f"{label} was saved with a different generator config than the requested config "
                        f"(differs in {', '.join(differing)}); leave the config out to use the stored config.")
    return chosen


def _describe(config: str | Mapping[str, Any] | None, stored: dict[str, Any] | None) -> str:
    if isinstance(config, str):
        return f"official config {config!r}"
    if config is not None:
        return "the given config"
    return "its stored config" if stored is not None else "the default config 'celebahq256'"


def _check_layout(gen: NCSNppGenerator, state: Mapping[str, torch.Tensor], label: str, wanted: str) -> None:
    expected = {key: tuple(value.shape) for key, value in gen.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in state.items()}
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    wrong = [f"{key} {list(found[key])} vs {list(shape)}" for key, shape in expected.items()
             if key in found and found[key] != shape]
    if not (missing or unexpected or wrong):
        return
    parts = [f"{len(missing)} missing ({_preview(missing)})" if missing else "",
             f"{len(unexpected)} unexpected ({_preview(unexpected)})" if unexpected else "",
             f"{len(wrong)} wrongly shaped, file vs model ({_preview(wrong)})" if wrong else ""]
    hint = _matching_config(found)
    fix = (f"it matches the official config {hint!r}; pass that config." if hint
           else "pass the official config (or argument dict) it was trained with.")
    raise UserError(f"{label} does not fit the official generator for {wanted}: "
                    f"{'; '.join(p for p in parts if p)}; {fix}")


def _matching_config(found: Mapping[str, tuple[int, ...]]) -> str | None:
    for name in CONFIGS.names():
        with torch.device("meta"):
            shapes = {key: tuple(value.shape) for key, value in build_generator(official_config(name)).state_dict().items()}
        if shapes == dict(found):
            return name
    return None


def _preview(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", ... {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else "")
