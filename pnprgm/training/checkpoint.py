"""Training checkpoints and model files: plain containers and tensors only, so both load with
``torch.load(weights_only=True)``; written atomically.

A checkpoint (``RUN_DIR/checkpoints/step_N.pt`` and ``RUN_DIR/last.pt``) holds everything to resume exactly:
the resolved config, the training files with sha256, generator, EMA, discriminator and prior weights, both
(or three) optimisers and schedulers, the step, the sampler position and every RNG state.
A model file (``RUN_DIR/model.pt``) holds the EMA generator, its config, the forward process and the training
record; :func:`load_model` rebuilds the generator from it.
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pnprgm.errors import UserError
from pnprgm.io import torch_load, torch_save, write_bytes

CHECKPOINT_FORMAT = "pnprgm-rgm-checkpoint"
MODEL_FORMAT = "pnprgm-rgm-model"
VERSION = 1


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": {"version": int(py_state[0]), "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss": py_state[2]},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]][: torch.cuda.device_count()])
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(int(v) for v in py_state["state"].tolist()), py_state["gauss"]))


def save_checkpoint(content: dict[str, Any], *paths: str | Path) -> None:
    """Serialise a training checkpoint once (``content`` gets the format tag) and write it atomically to each path."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "version": VERSION, **content}, buffer)
    data = buffer.getvalue()
    for path in paths:
        write_bytes(path, data)


def prune_checkpoints(folder: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` latest ``step_NNNNNNN.pt`` files of ``folder`` (0: keep every one); other files
    are left alone. Returns the deleted paths."""
    import re

    if keep <= 0 or not Path(folder).is_dir():
        return []
    steps = sorted((int(m[1]), p) for p in Path(folder).iterdir()
                   if (m := re.fullmatch(r"step_(\d{7,})\.pt", p.name)) and p.is_file() and not p.is_symlink())
    removed = [p for _, p in steps[:-keep]]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A training checkpoint (weights_only); a model file or another file is a :class:`UserError`."""
    content = torch_load(path, map_location=map_location)
    if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a pnprgm training checkpoint; give RUN_DIR/last.pt or a checkpoints/step_N.pt file.")
    return content


def save_model(path: str | Path, generator_state: dict[str, torch.Tensor], generator_config: dict,
               process: dict, record: dict) -> Path:
    """Atomically write a self-describing model file (EMA weights, architecture, process, training record)."""
    content = {"format": MODEL_FORMAT, "version": VERSION,
               "generator": {"config": generator_config, "state_dict": {k: v.detach().cpu() for k, v in generator_state.items()}},
               "process": process, "record": record}
    return torch_save(content, path)


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The raw content of a model file (a training checkpoint is accepted too: its EMA generator is used)."""
    content = torch_load(path)
    if isinstance(content, dict) and content.get("format") == CHECKPOINT_FORMAT:
        return {"format": MODEL_FORMAT, "generator": {"config": content["config"]["model"], "state_dict": content["G_ema"]},
                "process": content["config"]["process"], "record": content.get("record", {})}
    if not isinstance(content, dict) or content.get("format") != MODEL_FORMAT:
        raise UserError(f"{path} is not a pnprgm RGM model file; give the model.pt written by pnprgm train.")
    return content


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The EMA generator of a model file, in eval mode on ``device``; ``.process`` and ``.record`` hold the
    forward process config and the training record."""
    from pnprgm.training.generator import build_generator_from_config

    content = read_model_file(path)
    generator = build_generator_from_config(content["generator"]["config"])
    missing, unexpected = generator.load_state_dict(content["generator"]["state_dict"], strict=False)
    if missing or unexpected:
        raise UserError(f"{path} does not match its architecture config ({len(missing)} missing, "
                        f"{len(unexpected)} unexpected weights); the file is damaged or from another version.")
    generator.process = dict(content.get("process") or {})
    generator.record = dict(content.get("record") or {})
    return generator.to(torch.device(device)).eval()


@dataclass(frozen=True)
class InitialWeights:
    """Generator weights that start a new run (fine-tuning), with where they came from.

    :param config: the generator's architecture config (the new run keeps it).
    :param state_dict: the EMA generator weights.
    :param provenance: JSON-able record of the source (name or path, sha256, its steps, command and lineage).
    :param process: the forward process config the source was trained with.
    """

    config: dict
    state_dict: dict
    provenance: dict
    process: dict


def read_initial_weights(source: str | Path) -> InitialWeights:
    """The generator of a shipped model name (``pnprgm models``), a model file or a training checkpoint."""
    from pnprgm import models
    from pnprgm.io import sha256_file

    text = str(source)
    path = models.model_path(text, what="--init-from")
    content = read_model_file(path)
    record = content.get("record") or {}
    provenance = {"source": text, "sha256": sha256_file(path), "steps": record.get("steps"),
                  "command": record.get("command"), "history": record.get("history") or [],
                  "val_psnr": record.get("val_psnr"), "init_from": record.get("init_from")}
    config = {k: v for k, v in dict(content["generator"]["config"]).items() if k != "arch"}
    return InitialWeights(config, content["generator"]["state_dict"], provenance, dict(content.get("process") or {}))
