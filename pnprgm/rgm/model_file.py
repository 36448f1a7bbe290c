"""Model files: the EMA generator's weights and architecture config, the forward process it was trained for and
its training record, in plain containers and tensors (loadable with ``torch.load(weights_only=True)``), written
atomically. :func:`load_model` rebuilds the generator; a training checkpoint is read as a model file too.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from torch import nn

from pnprgm.errors import UserError
from pnprgm.io import torch_load, torch_save

CHECKPOINT_FORMAT = "pnprgm-rgm-checkpoint"
MODEL_FORMAT = "pnprgm-rgm-model"
VERSION = 1


def save_model(path: str | Path, generator_state: dict[str, torch.Tensor], generator_config: dict,
               process: dict, record: dict, operator_file_data: Optional[dict[str, torch.Tensor]] = None) -> Path:
    """Atomically write a self-describing model file (EMA weights, architecture, process, training record, and the
    files its operator reads: :func:`pnprgm.training.processes.operator_file_data`)."""
    content = {"format": MODEL_FORMAT, "version": VERSION,
               "generator": {"config": generator_config, "state_dict": {k: v.detach().cpu() for k, v in generator_state.items()}},
               "process": process, "record": record}
    if operator_file_data:
        content["operator_file_data"] = dict(operator_file_data)
    return torch_save(content, path)


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The raw content of a model file (a training checkpoint is accepted too: its EMA generator is used)."""
    content = torch_load(path)
    if isinstance(content, dict) and content.get("format") == CHECKPOINT_FORMAT:
        config = content.get("config")
        if not isinstance(config, dict) or "G_ema" not in content:
            raise _damaged(path, "its config or EMA weights are missing")
        content = {"format": MODEL_FORMAT, "generator": {"config": config.get("model"), "state_dict": content["G_ema"]},
                   "process": config.get("process"), "record": content.get("record") or {},
                   "operator_file_data": content.get("operator_file_data") or {}}
    if isinstance(content, dict) and content and all(isinstance(v, torch.Tensor) for v in content.values()):
        # bare weights, as the official RGM code saves them: they need the generator config beside them
        raise UserError(f"{path} holds bare weights without a config (an official RGM checkpoint?); name its "
                        f"generator config with it: {path}#celebahq256 (or #cifar10, or #the official arguments' "
                        f"JSON/YAML), or restore --model {path} --model-config celebahq256.")
    if not isinstance(content, dict) or content.get("format") != MODEL_FORMAT:
        raise UserError(f"{path} is not a pnprgm RGM model file; give the model.pt written by pnprgm train.")
    generator = content.get("generator")
    if not isinstance(generator, dict) or not isinstance(generator.get("config"), dict) \
            or not isinstance(generator.get("state_dict"), dict):
        raise _damaged(path, "its generator's config or weights are missing")
    if not isinstance(content.get("process"), dict) or not isinstance(content.get("record") or {}, dict):
        raise _damaged(path, "its forward process or training record is missing")
    return content


def _damaged(path, what: str) -> UserError:
    return UserError(f"{path} is a pnprgm model file, but {what}: the file is damaged or from another version; "
                     f"copy it again or retrain.")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The EMA generator of a model file, in eval mode on ``device``; ``.process`` and ``.record`` hold the
    forward process config and the training record."""
    from pnprgm.rgm.architectures import build_generator_from_config

    content = read_model_file(path)
    generator = build_generator_from_config(content["generator"]["config"])
    weights = content["generator"]["state_dict"]
    try:
        missing, unexpected = generator.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # a weight of another shape
        raise _damaged(path, f"its weights do not fit its architecture ({str(err).splitlines()[-1].strip()})") from None
    if any(isinstance(w, torch.Tensor) and w.is_floating_point() and not bool(torch.isfinite(w).all())
           for w in weights.values()):
        raise _damaged(path, "it holds NaN or infinite weights (it would restore every image as noise or black)")
    if missing or unexpected:
        raise _damaged(path, f"it does not match its architecture config ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected weights)")
    generator.process, generator.record = with_operator_files(content)
    return generator.to(torch.device(device)).eval()


def with_operator_files(content: dict[str, Any], *, warn: bool = True) -> tuple[dict, dict]:
    """``(process, record)`` of a model file's content, its operator reading the files the model file holds where
    those at the recorded paths are missing or changed (:func:`with_embedded_files`)."""
    process, record = dict(content.get("process") or {}), dict(content.get("record") or {})
    return with_embedded_files(process, record, content.get("operator_file_data"), warn=warn)


def with_embedded_files(process: dict, record: dict, data: Any, *, warn: bool = True) -> tuple[dict, dict]:
    """``(process, record)`` of a model file whose operator reads each file that is missing or changed at the
    path the spec names from the copy the model file holds (``data``: :func:`pnprgm.training.processes.operator_file_data`), written once to
    ``<cache>/operator-files/<sha256>/<name>`` (:func:`pnprgm.io.cache_root`); the spec and the record's
    ``operator_files`` name that copy. Unchanged where the named files are as trained or no copy is held. A file
    that is there with other contents is a warning (``warn``: where the model loads, once)."""
    from pnprgm import io, operators

    if not isinstance(data, dict) or not data or process.get("name") != "operator" \
            or not isinstance(process.get("operator"), str) or operators.names_code(process["operator"]):
        return process, record
    recorded = [entry for entry in (record or {}).get("operator_files") or [] if isinstance(entry, dict)]
    moved: dict[str, Path] = {}
    for entry in recorded:
        path, sha = str(entry.get("path")), entry.get("sha256")
        held = data.get(sha) if isinstance(sha, str) else None
        if not isinstance(held, torch.Tensor) or held.dtype != torch.uint8 or held.dim() != 1:
            continue
        present = Path(path).is_file()
        if present and io.sha256_file(path) == sha:
            continue
        content = held.numpy().tobytes()
        if io.sha256_bytes(content) != sha:
            raise UserError(f"the model file's copy of {path} does not match its recorded sha256; the model file is "
                            f"damaged: copy it again.")
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(path).name) or "file"
        copy = io.cache_root() / "operator-files" / sha / name
        if not (copy.is_file() and io.sha256_file(copy) == sha):
            try:
                copy.parent.mkdir(parents=True, exist_ok=True)
                io.write_bytes(copy, content)
            except OSError as err:
                raise UserError(f"cannot write the model's copy of {path} into the cache {copy.parent} "
                                f"({err.strerror or err}); set PNPRGM_CACHE to a writable folder.") from None
        moved[path] = copy
        if present and warn:  # the user may have meant the new contents: say which ones run
            warnings.warn(f"{path} has changed since the model was trained; its operator reads the copy the model file "
                          f"holds ({copy}); to restore with another operator, train a model for it.", UserWarning,
                          stacklevel=2)
    if not moved:
        return process, record
    process = {**process, "operator": operators.with_files(process["operator"], moved)}
    record = {**record, "operator_files": [{**entry, "path": str(moved.get(str(entry.get("path")),
                                                                           entry.get("path")))}
                                           for entry in recorded]}
    return process, record


@dataclass(frozen=True)
class InitialWeights:
    """Generator weights that start a new run (fine-tuning or a continuation), with where they came from.

    :param arch: the generator's architecture name (``unet``, ``drunet``, ``ncsnpp``).
    :param config: the generator's architecture config without ``arch`` (the new run keeps it).
    :param state_dict: the EMA generator weights.
    :param provenance: JSON-able record of the source (name or path, sha256, its steps, command, validation PSNR
        and lineage).
    :param process: the forward process config the source was trained with.
    """

    arch: str
    config: dict
    state_dict: dict
    provenance: dict
    process: dict

    @property
    def channels(self) -> int:
        return int(self.config.get("channels", 0))


def refuse_replacing_initial(sources: Iterable[str | Path], outputs: Iterable[str | Path]) -> None:
    """A :class:`UserError` when a training run would write one of its ``outputs`` over an ``--init-from`` file it
    starts from, --overwrite or not: the new record's lineage would name a file that no longer exists."""
    from pnprgm import io
    from pnprgm.rgm import models

    io.refuse_inputs(outputs, [models.model_path(str(source), what="--init-from") for source in sources],
                     option="--out")


def read_initial_weights(source: str | Path, *, what: str = "--init-from") -> InitialWeights:
    """The generator of a shipped model name (``pnprgm models``), a model file or a training checkpoint, read once."""
    from pnprgm.io import sha256_file
    from pnprgm.rgm import models

    text = str(source)
    path = models.model_path(text, what=what)
    content = read_model_file(path)
    record = content.get("record") or {}
    provenance = {"source": text, "sha256": sha256_file(path), "steps": record.get("steps"),
                  "steps_total": record.get("steps_total", record.get("steps")),
                  "command": record.get("command"), "history": record.get("history") or [],
                  "val_psnr": record.get("val_psnr"), "val_psnr_by_sigma255": record.get("val_psnr_by_sigma255"),
                  "init_from": record.get("init_from")}
    stored = dict(content["generator"]["config"])
    arch = stored.pop("arch", None) or ("ncsnpp" if "num_channels_dae" in stored else "unet")
    return InitialWeights(arch, stored, content["generator"]["state_dict"], provenance, dict(content.get("process") or {}))
