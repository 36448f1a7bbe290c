"""Training checkpoints: plain containers and tensors only, so they load with ``torch.load(weights_only=True)``;
written atomically (model files: :mod:`pnprgm.rgm.model_file`).

A checkpoint (``RUN_DIR/checkpoints/step_0000500.pt`` and ``RUN_DIR/last.pt``) holds everything to resume exactly:
the resolved config, the training files with sha256, generator, EMA, discriminator and prior weights, both
(or three) optimisers and schedulers, the step, the sampler position and every RNG state.
"""
from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pnprgm.errors import UserError
from pnprgm.io import torch_load, write_bytes

from pnprgm.rgm.model_file import CHECKPOINT_FORMAT, VERSION  # noqa: F401  (the model file reader knows checkpoints)


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


def run_files(folder: str | Path, pattern: str) -> list[tuple["re.Match[str]", Path]]:
    """``(match, path)`` of the plain files of ``folder`` whose whole name matches ``pattern``: the files a run wrote
    (``step_0000500.pt``, ``samples/step_0000500.png``, ``model.pt``), never a user's ``step_best.pt``, a folder or
    a link."""
    if not Path(folder).is_dir():
        return []
    return [(m, p) for p in Path(folder).iterdir()
            if (m := re.fullmatch(pattern, p.name)) and p.is_file() and not p.is_symlink()]


def step_files(folder: str | Path, pattern: str = r"step_(\d{7,})\.pt") -> list[tuple[int, Path]]:
    """``(step, path)`` of :func:`run_files` (``pattern``'s group: the step), by step."""
    return sorted((int(m[1]), p) for m, p in run_files(folder, pattern))


def prune_checkpoints(folder: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` latest ``step_NNNNNNN.pt`` files of ``folder`` (0: keep every one); other files
    are left alone. Returns the deleted paths."""
    if keep <= 0:
        return []
    steps = step_files(folder)
    removed = [p for _, p in steps[:-keep]]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A training checkpoint (weights_only); a model file or another file is a :class:`UserError`."""
    content = torch_load(path, map_location=map_location)
    if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a pnprgm training checkpoint; give RUN_DIR/last.pt or a checkpoints/step_0000500.pt file.")
    config = content.get("config")
    missing = [key for key in ("step", "config", "G", "G_ema") if key not in content]
    missing += [f"config.{key}" for key in ("process", "train", "model")
                if isinstance(config, dict) and not isinstance(config.get(key), dict)]
    if missing or not isinstance(config, dict):
        raise UserError(f"{path} is a damaged training checkpoint (no {', '.join(missing or ['config'])}); resume from "
                        f"an earlier one (checkpoints/step_NNNNNNN.pt copied to last.pt), or start again with --overwrite.")
    return content
